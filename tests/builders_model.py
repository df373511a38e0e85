"""Tiny corpora and models for the trainer, evaluation and transcription tests.

The corpus is a toy language of "tone words": each word is a chord at its own pitch, so a
d=32 Conformer-Transducer learns it in a few hundred steps on a CPU. ``overfit_model``
trains one such model once per test session and caches the file.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from asrprune.data.batching import UtteranceDataset
from asrprune.data.features import Cmvn, FeatureStore, compute_cmvn, extract_features
from asrprune.data.manifest import Utterance, write_manifest
from asrprune.data.tokenizer import Tokenizer, train_bpe
from asrprune.model import save_model
from asrprune.model.lowrank import factorize
from asrprune.train import TrainSettings, TransducerLoss
from tests.model.tiny import TINY, pruned_structure, tiny_model

PITCHES = {
    "ONE": 330.0,
    "TWO": 520.0,
    "THREE": 780.0,
    "FOUR": 1100.0,
    "FIVE": 1500.0,
    "SIX": 2100.0,
}
WORD_SECONDS = 0.22
GAP_SECONDS = 0.08
VOCAB = 24
OVERFIT_STEPS = 300  # 200 already transcribes every training utterance here

TRAIN_TEXTS = [
    "ONE TWO",
    "THREE FOUR FIVE",
    "SIX ONE",
    "TWO THREE",
    "FOUR FIVE SIX",
    "FIVE ONE THREE",
    "SIX TWO",
    "FOUR ONE",
]
DEV_TEXTS = ["ONE FOUR", "TWO FIVE SIX", "THREE SIX"]


def tone_words(text: str, rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Audio of ``text``: per word a chord (fundamental + 2 harmonics), short gaps, noise."""
    rng = np.random.default_rng(seed)
    parts = [np.zeros(int(GAP_SECONDS * rate))]
    for word in text.split():
        t = np.arange(int(WORD_SECONDS * rate)) / rate
        f = PITCHES[word]
        chord = sum(np.sin(2 * np.pi * k * f * t) / k for k in (1, 2, 3))
        ramp = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.02)  # no clicks
        parts += [0.2 * chord * ramp, np.zeros(int(GAP_SECONDS * rate))]
    audio = np.concatenate(parts)
    return (audio + 0.002 * rng.standard_normal(audio.size)).astype(np.float32)


def write_tone_words(path: Path, text: str, rate: int = 16000, channels: int = 1, seed: int = 0):
    audio = tone_words(text, rate, seed)
    if channels > 1:
        audio = np.stack([audio] * channels, axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, rate)
    return path


@dataclass
class ToneCorpus:
    root: Path
    train_manifest: Path
    train_store: Path
    dev_manifest: Path
    dev_store: Path
    bpe: Path
    cmvn_json: Path

    @property
    def tokenizer(self) -> Tokenizer:
        return Tokenizer.load(self.bpe)

    @property
    def cmvn(self) -> Cmvn:
        return Cmvn.load(self.cmvn_json)

    def datasets(self) -> tuple[UtteranceDataset, UtteranceDataset]:
        tok, cmvn = self.tokenizer, self.cmvn
        return (
            UtteranceDataset(self.train_manifest, self.train_store, tok, cmvn),
            UtteranceDataset(self.dev_manifest, self.dev_store, tok, cmvn),
        )


def tone_corpus(root: Path) -> ToneCorpus:
    """Audio, manifests, feature stores, BPE and CMVN of the toy language under ``root``."""
    root = Path(root)
    paths = {}
    for split, texts in (("train", TRAIN_TEXTS), ("dev", DEV_TEXTS)):
        utts = []
        for i, text in enumerate(texts):
            uid = f"{split}-{i:02d}"
            audio = write_tone_words(root / "audio" / f"{uid}.flac", text, seed=i)
            duration = sf.info(audio).duration
            utts.append(Utterance(uid, str(audio), duration, text, f"spk{i % 2}"))
        write_manifest(root / f"{split}.jsonl", utts)
        extract_features(root / f"{split}.jsonl", root / "features" / split)
        paths[split] = (root / f"{split}.jsonl", root / "features" / split)
    train_bpe(TRAIN_TEXTS + DEV_TEXTS, VOCAB, root / "bpe.model")
    compute_cmvn(FeatureStore(paths["train"][1])).save(root / "cmvn.json")
    return ToneCorpus(
        root,
        *paths["train"],
        *paths["dev"],
        bpe=root / "bpe.model",
        cmvn_json=root / "cmvn.json",
    )


def tiny_model_config(**overrides) -> dict:
    """A d=32, 2-block Conformer-Transducer; vocab_size comes from the tokenizer."""
    return {**TINY, "predictor_dim": 32, "joiner_dim": 32, **overrides}


def tiny_settings(**overrides) -> TrainSettings:
    values = dict(
        max_steps=10,
        max_frames=400,
        peak_lr=3e-3,
        warmup_steps=5,
        final_lr_ratio=0.1,
        weight_decay=1e-3,
        ctc_weight_start=1.0,
        ctc_weight_end=0.3,
        ctc_weight_switch_step=4,
        specaug_start_step=0,
        specaug_time_masks=2,
        specaug_freq_width=8,
        checkpoint_every=5,
        log_every=2,
        eval_every=5,
        eval_utterances=2,
        seed=7,
    )
    return TrainSettings(**{**values, **overrides})


@functools.cache
def overfit_model() -> tuple[Path, ToneCorpus]:
    """A teacher model file trained to transcribe the toy language, once per session."""
    from asrprune.train import train_teacher

    root = Path(tempfile.mkdtemp(prefix="asrprune-overfit-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    corpus = tone_corpus(root / "corpus")
    settings = tiny_settings(
        max_steps=OVERFIT_STEPS,
        warmup_steps=20,
        checkpoint_every=OVERFIT_STEPS,
        log_every=50,
        eval_every=0,
        specaug_start_step=OVERFIT_STEPS,
    )
    train_teacher(
        **teacher_data(corpus),
        model_config=tiny_model_config(),
        settings=settings,
        out_model=root / "teacher.pt",
        work_dir=root / "work",
        progress=False,
    )
    return root / "teacher.pt", corpus


def teacher_data(corpus) -> dict:
    """``train_teacher``'s data arguments for a tone corpus."""
    return dict(
        train_manifest=corpus.train_manifest,
        train_features=corpus.train_store,
        dev_manifest=corpus.dev_manifest,
        dev_features=corpus.dev_store,
        tokenizer_path=corpus.bpe,
        cmvn_path=corpus.cmvn_json,
    )


class Killed(Exception):
    """Stands for SIGKILL: the job stops between two statements, nothing is cleaned up."""


def dying_at(step_to_die: int, settings: TrainSettings):
    """The default loss, until the job is killed at ``step_to_die``."""
    base = TransducerLoss(settings)

    def loss_fn(model, batch, step):
        if step == step_to_die:
            raise Killed
        return base(model, batch, step)

    return loss_fn


def random_model_file(path, variant: str = "stateless"):
    """A random tiny model file, ``variant``: "stateless" (full); "pruned" (stateless);
    "lstm-pruned" (with per-utterance CMVN); or "svd" (full, some layers low-rank).
    The tokenizer (trained on the toy language) is written beside it."""
    tokenizer = train_bpe(TRAIN_TEXTS + DEV_TEXTS, VOCAB, path.parent / "bpe.model")
    g = torch.Generator().manual_seed(1)
    mean, std = torch.randn(80, generator=g) + 8.0, torch.rand(80, generator=g) + 0.5
    if variant == "stateless":
        model, cmvn = tiny_model(vocab_size=VOCAB), Cmvn(mean, std)
    elif variant == "pruned":
        model, cmvn = tiny_model(1, pruned_structure(), vocab_size=VOCAB), Cmvn(mean, std)
    elif variant == "lstm-pruned":
        model = tiny_model(vocab_size=VOCAB, structure=pruned_structure(), predictor="lstm")
        cmvn = Cmvn(mean, std, per_utterance=True)
    else:
        model, cmvn = tiny_model(vocab_size=VOCAB), Cmvn(mean, std)
        factorize(model, {"encoder.blocks.0.ffn1.up": 4, "encoder.blocks.1.mhsa.q": 3})
    save_model(path, model.eval(), tokenizer.to_bytes(), cmvn.to_dict())
    return path
