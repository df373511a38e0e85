"""The embedded corpus: a small LibriSpeech-like corpus synthesised from Debian packages.

Nothing on PyPI or Debian ships enough real English speech to train on, so the default
corpus is Bible text read by espeak-ng, flite and festival voices, each voice turned into
several pseudo-speakers. Test-other is harder in the way LibriSpeech's is: its voices are
never heard in training, and it is noisy and reverberant.

Everything is planned up front from the seed (which sentence, which speaker, which noise),
so a build is reproducible, and the plan for utterance ``i`` of a split does not depend on
how many utterances are asked for. Synthesis then runs in a process pool; each FLAC is
written atomically, and files already present are kept, so a killed build resumes.
"""

from __future__ import annotations

import math
import multiprocessing
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm import tqdm

from asrprune.apportion import largest_remainder
from asrprune.config import settings_from_dict
from asrprune.data import voices as V
from asrprune.data.augment import NOISE_KINDS, degrade
from asrprune.data.manifest import ALL_SPLITS, SPLITS, Utterance, write_manifest
from asrprune.data.real_speech import SPLIT as REAL_SPLIT
from asrprune.data.real_speech import build_real_split
from asrprune.data.sentences import (
    BOOKS,
    NEWTEXT_SPLIT,
    TEXT_PROGRAMS,
    Sentence,
    cache_file,
    check_domain_choice,
    load_split_sentences,
)
from asrprune.errors import AsrpruneError
from asrprune.io import atomic_path, read_json, write_json
from asrprune.workdir import set_aside

_BOOK_CODES = dict(BOOKS)
# Peak level of an utterance before degradation: recordings are not all equally loud.
_PEAK_RANGE = (0.3, 0.95)
# Streams of the seeded RNG, so that no two decisions share random numbers.
_SENTENCE, _SPEAKER, _AUGMENT, _NOISE, _POOL, _VARIANTS, _DOMAIN = range(7)


def _default_utterances() -> dict[str, int]:
    return {"train": 5000, "dev": 500, "test-clean": 500, "test-other": 500}


def _default_engine_weights() -> dict[str, float]:
    return {"espeak": 0.6, "flite": 0.2, "festival": 0.2}


def _default_text_domains() -> dict[str, float]:
    return {"scripture": 1.0}


@dataclass(frozen=True)
class EmbeddedCorpusSettings:
    """What to synthesise; every field has a default, sized for a CPU workstation."""

    # Seed of every random choice: same seed, same corpus.
    seed: int = 0
    # Utterances per split (train, dev, test-clean, test-other; test-newtext when a
    # domain is held out).
    utterances: dict[str, int] = field(default_factory=_default_utterances)
    # Share of training utterances per text domain (asrprune.data.domains); renormalised.
    text_domains: dict[str, float] = field(default_factory=_default_text_domains)
    # A domain never trained on, read by training voices as the test-newtext split.
    newtext_domain: str | None = None
    # The test-real split: real speech clips from Debian packages (asrprune.data.real_speech).
    real_speech: bool = False
    # Shortest sentence kept, in words.
    min_words: int = 4
    # Longest sentence kept, in words (short sentences train better).
    max_words: int = 20
    # Utterances whose audio is longer than this (seconds) are dropped.
    max_seconds: float = 20.0
    # Pseudo-speakers shared by train, dev and test-clean.
    train_speakers: int = 200
    # Pseudo-speakers of test-other (built only on held-out voices).
    test_other_speakers: int = 40
    # Share of pseudo-speakers per engine (espeak, flite, festival); renormalised.
    engine_weights: dict[str, float] = field(default_factory=_default_engine_weights)
    # espeak-ng accents heard only in test-other (all their variants).
    heldout_accents: tuple[str, ...] = ()
    # Fraction of espeak-ng voice variants (drawn with the seed) heard only in test-other.
    heldout_variant_fraction: float = 0.2
    # flite and festival voices ("engine/name") heard only in test-other.
    heldout_voices: tuple[str, ...] = ("flite/awb", "festival/ked_diphone")
    # Range of the sox speed factor of a pseudo-speaker (pitch and tempo together).
    speed: tuple[float, float] = (0.9, 1.1)
    # Range of the sox pitch shift of a pseudo-speaker, in cents.
    pitch_cents: tuple[int, int] = (-300, 300)
    # Range of the sox tempo factor of a pseudo-speaker (speaking rate).
    tempo: tuple[float, float] = (0.85, 1.15)
    # Fraction of training utterances that also get noise and reverberation.
    train_noisy_fraction: float = 0.3
    # Range of signal-to-noise ratios (dB) of noisy utterances.
    snr_db: tuple[float, float] = (10.0, 20.0)
    # Range of reverberation times RT60 (seconds) of noisy utterances.
    rt60_s: tuple[float, float] = (0.2, 0.5)

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | str) -> EmbeddedCorpusSettings:
        """Settings from the ``data.embedded`` config section; unknown keys are refused."""
        return settings_from_dict(cls, d, "data.embedded")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(self).items()}

    @property
    def training_domains(self) -> list[str]:
        """The text domains training reads: those of ``text_domains`` with a share."""
        return [d for d, w in self.text_domains.items() if w > 0]

    @property
    def synthesised_splits(self) -> tuple[str, ...]:
        """LibriSpeech's four splits, then test-newtext if a domain is held out."""
        return SPLITS + ((NEWTEXT_SPLIT,) if self.newtext_domain is not None else ())

    @property
    def splits(self) -> tuple[str, ...]:
        """Every split of the corpus: the synthesised ones, then test-real if asked for."""
        return self.synthesised_splits + ((REAL_SPLIT,) if self.real_speech else ())


def _fail(name: str, value: Any, need: str) -> None:
    raise AsrpruneError(f"embedded corpus setting {name}={value!r}: {need}")


def _number(name: str, value: Any, lo: float, hi: float, integer: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not lo <= value <= hi:
        _fail(name, value, f"need {'an integer' if integer else 'a number'} in [{lo}, {hi}]")


def _range(name: str, value: Any, lo: float, hi: float, integer: bool = False) -> None:
    if not isinstance(value, tuple) or len(value) != 2:
        _fail(name, value, "need a [min, max] pair")
    for v in value:
        _number(name, v, lo, hi, integer)
    if value[0] > value[1]:
        _fail(name, value, "min is above max")


def _validate(s: EmbeddedCorpusSettings) -> None:
    _number("seed", s.seed, 0, 2**63 - 1, integer=True)
    if not isinstance(s.text_domains, dict) or not s.text_domains:
        _fail("text_domains", s.text_domains, "need a share per training text domain")
    for domain, w in s.text_domains.items():
        _number(f"text_domains.{domain}", w, 0.0, 1e6)
    if s.newtext_domain is not None and not isinstance(s.newtext_domain, str):
        _fail("newtext_domain", s.newtext_domain, "need a domain name or null")
    try:
        check_domain_choice(s.training_domains, s.newtext_domain)
    except AsrpruneError as e:
        raise AsrpruneError(f"embedded corpus setting {e}") from None
    if not isinstance(s.real_speech, bool):
        _fail("real_speech", s.real_speech, "need true or false")
    splits = s.synthesised_splits
    if not isinstance(s.utterances, dict) or set(s.utterances) != set(splits):
        _fail("utterances", s.utterances, f"need a count for exactly the splits {list(splits)}")
    for split, n in s.utterances.items():
        _number(f"utterances.{split}", n, 0, 10**7, integer=True)
    _number("min_words", s.min_words, 1, 200, integer=True)
    _number("max_words", s.max_words, s.min_words, 200, integer=True)
    _number("max_seconds", s.max_seconds, 1.0, 600.0)
    _number("train_speakers", s.train_speakers, 1, 10**5, integer=True)
    _number("test_other_speakers", s.test_other_speakers, 1, 10**5, integer=True)
    if not isinstance(s.engine_weights, dict) or not set(s.engine_weights) <= set(V.ENGINES):
        _fail("engine_weights", s.engine_weights, f"keys must be among {list(V.ENGINES)}")
    for engine, w in s.engine_weights.items():
        _number(f"engine_weights.{engine}", w, 0.0, 1e6)
    if sum(s.engine_weights.values()) <= 0:
        _fail("engine_weights", s.engine_weights, "at least one weight must be positive")
    for name in ("heldout_accents", "heldout_voices"):
        value = getattr(s, name)
        if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
            _fail(name, value, "need a list of strings")
    for v in s.heldout_voices:
        if v.split("/")[0] not in ("flite", "festival") or v.count("/") != 1:
            _fail("heldout_voices", v, 'need "flite/<voice>" or "festival/<voice>"')
    _number("heldout_variant_fraction", s.heldout_variant_fraction, 0.0, 0.9)
    _range("speed", s.speed, 0.5, 2.0)
    _range("pitch_cents", s.pitch_cents, -1200, 1200, integer=True)
    _range("tempo", s.tempo, 0.5, 2.0)
    _number("train_noisy_fraction", s.train_noisy_fraction, 0.0, 1.0)
    _range("snr_db", s.snr_db, -10.0, 60.0)
    _range("rt60_s", s.rt60_s, 0.05, 3.0)


@dataclass(frozen=True)
class PlannedUtterance:
    """Everything needed to render one utterance, decided before any audio exists."""

    split: str
    index: int
    id: str
    sentence: Sentence
    speaker: V.Speaker
    audio: str  # FLAC path, as stored in the manifest
    peak: float  # peak level of the clean audio
    noise_kind: str | None  # None: clean
    snr_db: float | None
    rt60_s: float | None
    noise_seed: tuple[int, ...]  # seeds the noise and room of this utterance


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, *stream])


def split_voices(settings: EmbeddedCorpusSettings) -> tuple[list[V.BaseVoice], list[V.BaseVoice]]:
    """Base voices of (train/dev/test-clean, test-other); disjoint by construction.

    An espeak voice (accent + variant) is held out for test-other if its accent or its
    variant is. With no accent held out, test-other's espeak voices are the held-out
    variants in every training accent: new speakers of known accents, as LibriSpeech's
    test-other has new speakers of the same English.
    """
    accents = V.espeak_accents()
    for a in settings.heldout_accents:
        if a not in accents:
            _fail("heldout_accents", a, f"not an espeak-ng English accent here; have {accents}")
    catalogue = V.voice_catalogue()
    ids = {v.id for v in catalogue}
    for v in settings.heldout_voices:
        if v not in ids:
            known = sorted(i for i in ids if not i.startswith("espeak/"))
            _fail("heldout_voices", v, f"unknown voice; known: {known}")
    variants = list(V.espeak_variants())
    n_held = round(settings.heldout_variant_fraction * len(variants))
    held_variants = set(_rng(settings.seed, _VARIANTS).permutation(variants)[:n_held].tolist())
    train, other = [], []
    for v in catalogue:
        if v.engine == "espeak":
            held = v.accent in settings.heldout_accents or v.variant in held_variants
            (other if held else train).append(v)
        elif v.id in settings.heldout_voices:
            other.append(v)
        else:
            train.append(v)
    return train, other


def _apportion(total: int, weights: dict[str, float]) -> dict[str, int]:
    """Split ``total`` by ``weights`` with largest remainders; ties go in sorted order."""
    norm = sum(weights.values())
    keys = sorted(weights)
    counts = largest_remainder([total * weights[k] / norm for k in keys], total)
    return dict(zip(keys, counts, strict=True))


def speaker_pool(
    voices: list[V.BaseVoice], n: int, settings: EmbeddedCorpusSettings, stream: int
) -> list[V.Speaker]:
    """``n`` distinct pseudo-speakers on ``voices``, spread over engines by weight and,
    within an engine, round-robin over accents so none is over-represented."""
    rng = _rng(settings.seed, _POOL, stream)
    weights = {
        e: w
        for e, w in settings.engine_weights.items()
        if w > 0 and any(v.engine == e for v in voices)
    }
    if not weights:
        raise AsrpruneError(
            f"no voices left for a speaker pool: engine_weights={settings.engine_weights}, "
            f"voices={[v.id for v in voices][:5]}..."
        )
    pool: list[V.Speaker] = []
    taken: set[str] = set()
    for engine, count in _apportion(n, weights).items():
        groups: dict[str, list[V.BaseVoice]] = {}
        for v in voices:
            if v.engine == engine:
                groups.setdefault(v.accent, []).append(v)
        shuffled = [list(rng.permutation(len(g))) for g in groups.values()]
        order = [
            group[shuffled[gi][k % len(group)]]
            for k in range(math.ceil(count / len(groups)))
            for gi, group in enumerate(groups.values())
        ][:count]
        for voice in order:
            for _ in range(1000):
                speaker = V.Speaker(
                    voice,
                    speed=round(float(rng.uniform(*settings.speed)), 2),
                    pitch=int(round(float(rng.uniform(*settings.pitch_cents)) / 10) * 10),
                    tempo=round(float(rng.uniform(*settings.tempo)), 2),
                )
                if speaker.id not in taken:
                    break
            taken.add(speaker.id)
            pool.append(speaker)
    return pool


class _Cycler:
    """Walks through fresh seeded permutations of ``n`` items, one after another, so every
    item is used once before any is used twice; position ``i`` never depends on how many
    positions are asked for."""

    def __init__(self, n: int, seed: int, *stream: int) -> None:
        self._n, self._key, self._perms = n, (seed, *stream), {}

    def __getitem__(self, i: int) -> int:
        cycle, pos = divmod(i, self._n)
        if cycle not in self._perms:
            self._perms[cycle] = _rng(*self._key, cycle).permutation(self._n)
        return int(self._perms[cycle][pos])


def _book_code(book: str) -> str:
    return _BOOK_CODES.get(book) or re.sub(r"[^A-Za-z]", "", book)[:6]


def _sentence_picker(
    split: str, sentences: list[Sentence], settings: EmbeddedCorpusSettings
) -> Callable[[int], Sentence]:
    """The sentence of utterance ``i``, asked for in order i = 0, 1, 2, ...

    One domain: a seeded walk through the sentences (the Bible-only corpus of old). Several
    (training text): each utterance draws its domain by ``text_domains`` share, then takes
    that domain's next sentence of its own walk, so a large domain cannot crowd out a small
    one, and the plan of utterance ``i`` still depends only on utterances before it.
    """
    s_idx = ALL_SPLITS.index(split)
    groups: dict[str, list[Sentence]] = {}
    for sentence in sentences:
        groups.setdefault(sentence.domain, []).append(sentence)
    if len(groups) <= 1:
        order = _Cycler(len(sentences), settings.seed, _SENTENCE, s_idx)
        return lambda i: sentences[order[i]]
    names = settings.training_domains
    missing = [d for d in names if d not in groups]
    if missing or set(groups) - set(names):
        raise AsrpruneError(
            f"split {split}: domains with sentences {sorted(groups)} do not match "
            f"text_domains {names} (no {settings.min_words}-{settings.max_words}-word "
            f"sentences of {missing}?)"
        )
    shares = np.array([settings.text_domains[d] for d in names], dtype=float)
    shares /= shares.sum()
    walks = {
        d: _Cycler(len(groups[d]), settings.seed, _SENTENCE, s_idx, k + 1)
        for k, d in enumerate(names)
    }
    used = dict.fromkeys(names, 0)

    def pick(i: int) -> Sentence:
        domain = names[int(_rng(settings.seed, _DOMAIN, s_idx, i).choice(len(names), p=shares))]
        j = used[domain]
        used[domain] += 1
        return groups[domain][walks[domain][j]]

    return pick


def plan_split(
    split: str,
    count: int,
    sentences: list[Sentence],
    speakers: list[V.Speaker],
    settings: EmbeddedCorpusSettings,
    out_dir: Path,
) -> list[PlannedUtterance]:
    """Decide sentence, speaker and degradation of each utterance of ``split``.

    Sentences are used in a seeded random order, and only reused (by other speakers)
    once every sentence of the split (of its domain, when training mixes domains) has
    been read; speakers take turns likewise.
    """
    if count and not sentences:
        raise AsrpruneError(
            f"split {split}: no sentences of {settings.min_words}-{settings.max_words} words"
        )
    s_idx = ALL_SPLITS.index(split)
    noisy_share = {"train": settings.train_noisy_fraction, "test-other": 1.0}.get(split, 0.0)
    pick_sentence = _sentence_picker(split, sentences, settings)
    speaker_order = _Cycler(len(speakers), settings.seed, _SPEAKER, s_idx)
    plan = []
    for i in range(count):
        sentence = pick_sentence(i)
        speaker = speakers[speaker_order[i]]
        rng = _rng(settings.seed, _AUGMENT, s_idx, i)
        peak = float(rng.uniform(*_PEAK_RANGE))
        noisy = bool(rng.random() < noisy_share)
        kind = NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
        snr = round(float(rng.uniform(*settings.snr_db)), 2)
        rt60 = round(float(rng.uniform(*settings.rt60_s)), 3)
        uid = f"{speaker.id}-{_book_code(sentence.book)}{sentence.chapter:03d}-{i:06d}"
        audio = out_dir / "audio" / split / speaker.id / f"{uid}.flac"
        plan.append(
            PlannedUtterance(
                split=split,
                index=i,
                id=uid,
                sentence=sentence,
                speaker=speaker,
                audio=str(audio),
                peak=peak,
                noise_kind=kind if noisy else None,
                snr_db=snr if noisy else None,
                rt60_s=rt60 if noisy else None,
                noise_seed=(settings.seed, _NOISE, s_idx, i),
            )
        )
    return plan


def plan_corpus(
    settings: EmbeddedCorpusSettings,
    out_dir: Path,
    sentences: dict[str, list[Sentence]],
) -> list[PlannedUtterance]:
    """The whole corpus plan, split after split, from the seed alone."""
    train_voices, other_voices = split_voices(settings)
    pools = {
        "train": speaker_pool(train_voices, settings.train_speakers, settings, 0),
        "test-other": speaker_pool(other_voices, settings.test_other_speakers, settings, 1),
    }
    plan = []
    for split in settings.synthesised_splits:
        pool = pools["test-other" if split == "test-other" else "train"]
        count = settings.utterances[split]
        plan += plan_split(split, count, sentences[split], pool, settings, out_dir)
    return plan


def synthesise_clean(job: PlannedUtterance) -> np.ndarray:
    """The utterance as its speaker reads it, at its planned peak, before degradation."""
    with tempfile.TemporaryDirectory(prefix="asrprune-tts-") as tmp:
        audio = V.synthesize(job.sentence.spoken, job.speaker, Path(tmp))
    return audio * (job.peak / max(float(np.max(np.abs(audio))), 1e-6))


def degrade_as_planned(audio: np.ndarray, job: PlannedUtterance) -> np.ndarray:
    """``audio`` with ``job``'s noise and room (just peak-limited when ``job`` is clean)."""
    rng = np.random.default_rng(list(job.noise_seed))
    return degrade(audio, rng, job.snr_db, job.rt60_s, job.noise_kind or "pink", V.SAMPLE_RATE)


def render(job: PlannedUtterance, max_seconds: float) -> float | None:
    """Synthesise, degrade and write one utterance; return its duration in seconds.

    An existing FLAC is kept (its duration read from the header). None means the audio
    came out longer than ``max_seconds`` and was not written.
    """
    path = Path(job.audio)
    if path.is_file():
        return sf.info(str(path)).frames / V.SAMPLE_RATE
    audio = synthesise_clean(job)
    if audio.size > max_seconds * V.SAMPLE_RATE:
        return None
    audio = degrade_as_planned(audio, job)
    with atomic_path(path) as tmp_path:
        sf.write(str(tmp_path), audio, V.SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return audio.size / V.SAMPLE_RATE


def _render_job(args: tuple[PlannedUtterance, float]) -> float | None:
    return render(*args)


def _claim_corpus_dir(out_dir: Path, settings: EmbeddedCorpusSettings) -> None:
    """Make ``out_dir`` a corpus folder of ``settings``. A corpus of other settings
    (other than its sizes, which grow and shrink by prefix) is moved aside, not mixed
    in or deleted: its audio took a quarter of an hour to make."""
    path = out_dir / "settings.json"
    new = settings.to_dict()
    if path.is_file():
        old = read_json(path)
        # A setting added since that corpus was built reads as its default there.
        default = EmbeddedCorpusSettings().to_dict()
        changed = [k for k in new if k != "utterances" and old.get(k, default[k]) != new[k]]
        if changed:
            set_aside(out_dir, f"a corpus built with other settings ({', '.join(changed)})")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(path, new)


def build_embedded_corpus(
    settings: EmbeddedCorpusSettings,
    out_dir: Path,
    threads: int,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """Build (or finish building) the corpus in ``out_dir``; return a summary.

    Writes ``out_dir/audio/<split>/<speaker>/<id>.flac`` and ``out_dir/<split>.jsonl``.
    Sentences extracted from the Bibles are cached in ``cache_dir`` (default
    ``out_dir/cache``).
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    if threads < 1:
        raise AsrpruneError(f"threads must be at least 1, got {threads}")
    _claim_corpus_dir(out_dir, settings)
    cache_dir = cache_dir or out_dir / "cache"
    # One message listing everything a fresh machine lacks (the text is needed only once).
    programs = [*V.PROGRAM_PACKAGES]
    if not cache_file(cache_dir).is_file():
        programs += TEXT_PROGRAMS
    V.check_programs(programs, {**V.PROGRAM_PACKAGES, **TEXT_PROGRAMS})
    domains = settings.training_domains
    sentences = load_split_sentences(
        settings.min_words, settings.max_words, cache_dir, domains, settings.newtext_domain
    )
    plan = plan_corpus(settings, out_dir, sentences)
    V.check_engines({job.speaker.voice for job in plan})
    for stale in (out_dir / "audio").glob("*/*/.*.tmp"):
        stale.unlink()  # left by a job killed while writing
    existing = sum(Path(job.audio).is_file() for job in plan)
    args = [(job, settings.max_seconds) for job in plan]
    synth_start = time.perf_counter()
    progress = tqdm(total=len(plan), desc="synthesising", unit="utt", file=sys.stderr)
    durations: list[float | None] = []
    try:
        if threads == 1:
            for a in args:
                durations.append(_render_job(a))
                progress.update()
        else:
            with multiprocessing.Pool(threads) as pool:
                for d in pool.imap(_render_job, args, chunksize=4):
                    durations.append(d)
                    progress.update()
    finally:
        progress.close()
        V.close_engines()
    synth_seconds = time.perf_counter() - synth_start
    summary: dict[str, Any] = {"splits": {}}
    for split in settings.synthesised_splits:
        rows = [(job, d) for job, d in zip(plan, durations, strict=True) if job.split == split]
        kept = [
            Utterance(job.id, job.audio, d, job.sentence.text, job.speaker.id)
            for job, d in rows
            if d is not None
        ]
        write_manifest(out_dir / f"{split}.jsonl", kept)
        texts = Counter(job.sentence.text for job, _ in rows)
        summary["splits"][split] = {
            "utterances": len(kept),
            "hours": round(sum(u.duration for u in kept) / 3600, 4),
            "speakers": len({u.speaker for u in kept}),
            "dropped_too_long": len(rows) - len(kept),
            "sentences_available": len(sentences[split]),
            "sentences_reused": sum(n - 1 for n in texts.values()),
            "domains": dict(
                sorted(Counter(j.sentence.domain for j, d in rows if d is not None).items())
            ),
            "engines": dict(
                sorted(Counter(j.speaker.voice.engine for j, d in rows if d is not None).items())
            ),
        }
    if settings.real_speech:
        n = build_real_split(out_dir)
        summary["splits"][REAL_SPLIT] = {
            "utterances": n,
            "domains": {"real speech": n},
            "engines": {"human": n},
        }
    seconds = time.perf_counter() - start
    summary["synthesised"] = len(plan) - existing
    summary["reused_files"] = existing
    summary["seconds"] = round(seconds, 2)
    summary["synthesis_seconds"] = round(synth_seconds, 2)
    summary["utterances_per_second"] = round((len(plan) - existing) / synth_seconds, 2)
    return summary
