"""Why is test-other hard? Separate its unseen voices from its noise and room.

Test-other of the embedded corpus differs from test-clean in two ways at once: its
voices are never heard in training (espeak-ng variants held out in every accent, plus any
accent held out whole with ``heldout_accents``; flite and festival voices held out), and
every utterance has noise and reverberation. This script decodes samples of the corpus
under conditions that change one thing at a time, with one model file, and prints a
Markdown table of WER per condition:

    train-clean        training utterances without noise: how well the model fits
    train-noisy        training utterances with noise and a room
    test-clean         held-out sentences read by training voices
    test-clean+noise   the same audio with test-other's noise and room (utterance i gets
                       test-other utterance i's noise kind, SNR, RT60 and noise seed)
    new-variants-clean test-other's sentences read by espeak-ng voices of training accents
                       with held-out variants: unseen espeak timbres alone (what
                       test-other's espeak voices are when no accent is held out)
    new-variants       the same with test-other's noise and room
    test-other-clean   test-other re-synthesised without noise and room: unseen voices alone
    test-other         as built: unseen voices, noise and room

and a second table of WER per base voice (engine and accent) for the test conditions.

    .venv/bin/python scripts/corpus_breakdown.py --model results/embedded/models/teacher.pt

The corpus plan is rebuilt from the corpus folder's settings.json, so utterances, their
speakers and their degradations are those of the build; only utterances whose audio
exists (kept by synthesis) are sampled. Re-synthesis needs the TTS engines of the build.
The test conditions sample the same utterance indices, so they are paired. Decoding is
one utterance at a time (greedy by default), so WERs match ``evaluate``'s
only up to batching and beam.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from asrprune.cli import positive_int
from asrprune.data import voices as V
from asrprune.data.corpus import (
    EmbeddedCorpusSettings,
    PlannedUtterance,
    degrade_as_planned,
    plan_corpus,
    speaker_pool,
    split_voices,
    synthesise_clean,
)
from asrprune.data.features import SAMPLE_RATE, load_audio
from asrprune.data.sentences import load_split_sentences
from asrprune.evaluate import word_errors
from asrprune.io import read_json, write_json
from asrprune.transcribe import Recogniser

# Each condition and the split it samples.
CONDITIONS = {
    "train-clean": "train",
    "train-noisy": "train",
    "test-clean": "test-clean",
    "test-clean+noise": "test-clean",
    "new-variants-clean": "test-other",
    "new-variants": "test-other",
    "test-other-clean": "test-other",
    "test-other": "test-other",
}


def read_audio(job: PlannedUtterance) -> np.ndarray:
    return load_audio(job.audio, SAMPLE_RATE).numpy()


def condition_audio(
    name: str,
    job: PlannedUtterance,
    partner: PlannedUtterance,
    clean: Callable[[PlannedUtterance], np.ndarray] = synthesise_clean,
) -> np.ndarray:
    """The waveform of ``job`` under condition ``name``; ``partner`` lends test-other's
    degradation to test-clean+noise; ``clean`` synthesises ``job`` without degradation."""
    if name == "test-clean+noise":
        return degrade_as_planned(read_audio(job), partner)
    if name in ("test-other-clean", "new-variants-clean"):
        return clean(job)
    if name == "new-variants":
        return degrade_as_planned(clean(job), job)
    return read_audio(job)


def new_variant_speakers(settings: EmbeddedCorpusSettings) -> list[V.Speaker]:
    """Pseudo-speakers on espeak-ng voices whose accent is heard in training and whose
    variant is not: test-other's new timbres without any held-out accent."""
    _, other = split_voices(settings)
    held_accents = set(settings.heldout_accents)
    voices = [v for v in other if v.engine == "espeak" and v.accent not in held_accents]
    if not voices:
        return []  # no variant is held out
    return speaker_pool(voices, settings.test_other_speakers, settings, stream=2)


def sample(
    plan: list[PlannedUtterance], name: str, count: int, seed: int
) -> list[PlannedUtterance]:
    """Up to ``count`` planned utterances of the condition's split whose audio exists,
    drawn without replacement by ``seed``; train-clean and train-noisy split train."""
    jobs = [j for j in plan if j.split == CONDITIONS[name] and Path(j.audio).is_file()]
    if name.startswith("train-"):
        jobs = [j for j in jobs if (j.noise_kind is None) == (name == "train-clean")]
    picked = np.random.default_rng(seed).choice(len(jobs), min(count, len(jobs)), replace=False)
    return [jobs[i] for i in sorted(picked)]


def breakdown(corpus: Path, model: Path, count: int, beam: int, seed: int) -> dict:
    settings = EmbeddedCorpusSettings.from_dict(read_json(corpus / "settings.json"))
    domains = settings.training_domains
    sentences = load_split_sentences(
        settings.min_words,
        settings.max_words,
        corpus / "cache",
        domains,
        settings.newtext_domain,
    )
    plan = plan_corpus(settings, corpus, sentences)
    other = [j for j in plan if j.split == "test-other"]
    new_speakers = new_variant_speakers(settings)
    recognise = Recogniser(model, beam)
    # new-variants degrades the very audio new-variants-clean synthesised: TTS runs once
    clean = functools.cache(synthesise_clean)
    rows: dict[str, list[dict]] = {}
    for name in CONDITIONS:
        rows[name] = []
        if name.startswith("new-variants") and not new_speakers:
            continue  # no variant is held out
        for job in sample(plan, name, count, seed):
            if name.startswith("new-variants"):
                job = dataclasses.replace(job, speaker=new_speakers[job.index % len(new_speakers)])
            audio = condition_audio(name, job, other[job.index % len(other)], clean)
            voice = f"{job.speaker.voice.engine}/{job.speaker.voice.accent}"
            hyp = recognise(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)))
            rows[name].append({"id": job.id, "voice": voice, "ref": job.sentence.text, "hyp": hyp})
    return {
        "model": str(model),
        "beam": beam,
        "wer": {name: _wer(r) for name, r in rows.items() if r},
        "utterances": {name: len(r) for name, r in rows.items()},
        "by_voice": {
            name: {v: _wer(r) for v, r in sorted(_by_voice(rows[name]).items())}
            for name in CONDITIONS
            if not name.startswith("train-")
        },
    }


def _wer(rows: list[dict]) -> float:
    return round(word_errors([r["ref"] for r in rows], [r["hyp"] for r in rows]).wer, 2)


def _by_voice(rows: list[dict]) -> dict[str, list[dict]]:
    out = defaultdict(list)
    for r in rows:
        out[r["voice"]].append(r)
    return out


def markdown(result: dict) -> str:
    lines = ["| condition | utterances | WER % |", "| --- | --- | --- |"]
    lines += [f"| {c} | {result['utterances'][c]} | {w:.1f} |" for c, w in result["wer"].items()]
    lines += ["", "| condition | voice | WER % |", "| --- | --- | --- |"]
    for c, voices in result["by_voice"].items():
        lines += [f"| {c} | {v} | {w:.1f} |" for v, w in voices.items()]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, required=True, help="a model file of the workflow")
    p.add_argument("--corpus", type=Path, default=Path("results/embedded/corpus"))
    p.add_argument("--utterances", type=int, default=150, help="per condition")
    p.add_argument("--beam", type=int, default=0, help="beam size; 0 is greedy")
    p.add_argument("--seed", type=int, default=0, help="seed of the samples")
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--out", type=Path, help="also write the result as JSON here")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    result = breakdown(a.corpus, a.model, a.utterances, a.beam, a.seed)
    if a.out:
        write_json(a.out, result)
    print(markdown(result))


if __name__ == "__main__":
    main()
