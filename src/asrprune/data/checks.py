"""Per-utterance checks: bad audio or transcripts are reported, counted and excluded.

One unreadable file or empty transcript must not cost a training run (a traceback deep in
a data loader, or a NaN loss hours later), so every utterance is checked before anything
is trained on it, and each exclusion keeps its id, path and reason for the data report.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from asrprune.data.manifest import Utterance, read_manifest, write_manifest
from asrprune.data.text import has_digits, normalize_transcript
from asrprune.errors import AsrpruneError
from asrprune.io import write_json

# Reasons, in the order they are tested; the data report counts each.
UNREADABLE = "unreadable_audio"
WRONG_RATE = "wrong_sample_rate"
EMPTY_AUDIO = "empty_audio"
TOO_LONG = "too_long"
SILENT = "silent_audio"
EMPTY_TEXT = "empty_transcript"
NON_TEXT = "non_text_transcript"
REASONS = (UNREADABLE, WRONG_RATE, EMPTY_AUDIO, TOO_LONG, SILENT, EMPTY_TEXT, NON_TEXT)


@dataclass(frozen=True)
class CheckSettings:
    """The ``data.checks`` config section."""

    sample_rate: int = 16000  # required rate; others are excluded, not silently resampled
    min_seconds: float = 0.3  # shorter audio counts as empty
    max_seconds: float = 20.0  # longer audio would not fit a batch
    silence_dbfs: float = -60.0  # RMS below this level counts as silent


@dataclass(frozen=True)
class Exclusion:
    id: str
    audio: str
    reason: str
    detail: str


def check_transcript(text: str) -> tuple[str, str] | None:
    """Return (reason, detail) if ``text`` cannot be a training target, else None."""
    if not text.strip():
        return EMPTY_TEXT, "transcript is empty"
    if has_digits(text):
        return NON_TEXT, f"transcript has digits, which have no spelled-out form: {text[:60]!r}"
    if normalize_transcript(text) != text.strip():
        return NON_TEXT, f"transcript is not normalised text (A-Z, apostrophes): {text[:60]!r}"
    return None


def check_audio(path: str, settings: CheckSettings) -> tuple[tuple[str, str] | None, float]:
    """Return ((reason, detail) or None, duration in seconds) for one audio file."""
    try:
        info = sf.info(path)
    except Exception as e:  # soundfile raises several types for missing/corrupt files
        return (UNREADABLE, f"{type(e).__name__}: {e}"), 0.0
    duration = info.frames / info.samplerate if info.samplerate else 0.0
    if info.samplerate != settings.sample_rate:
        return (WRONG_RATE, f"{info.samplerate} Hz, expected {settings.sample_rate} Hz"), duration
    if duration < settings.min_seconds:
        return (EMPTY_AUDIO, f"{duration:.3f} s, shorter than {settings.min_seconds} s"), duration
    if duration > settings.max_seconds:
        return (TOO_LONG, f"{duration:.1f} s, longer than {settings.max_seconds} s"), duration
    try:
        audio, _ = sf.read(path, dtype="float32", always_2d=True)
    except Exception as e:
        return (UNREADABLE, f"{type(e).__name__}: {e}"), duration
    if not np.isfinite(audio).all():
        return (UNREADABLE, "audio holds NaN or infinite samples"), duration
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    level = 20 * math.log10(rms) if rms > 0 else -math.inf
    if level < settings.silence_dbfs:
        return (SILENT, f"RMS level {level:.1f} dBFS, below {settings.silence_dbfs}"), duration
    return None, duration


def check_utterance(
    utt: Utterance, settings: CheckSettings
) -> tuple[Utterance | None, Exclusion | None]:
    """Check one utterance; return it (with its measured duration) or its exclusion."""
    problem = check_transcript(utt.text)
    duration = utt.duration
    if problem is None:
        problem, duration = check_audio(utt.audio, settings)
    if problem is not None:
        return None, Exclusion(utt.id, utt.audio, *problem)
    # The measured duration wins over the manifest's: batching relies on it.
    return Utterance(utt.id, utt.audio, round(duration, 4), utt.text, utt.speaker), None


def check_utterances(
    utterances: list[Utterance], settings: CheckSettings, threads: int = 1
) -> tuple[list[Utterance], list[Exclusion]]:
    """Check every utterance (I/O-bound, so threads help); keep the manifest's order."""
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        results = list(pool.map(lambda u: check_utterance(u, settings), utterances))
    kept = [u for u, _ in results if u is not None]
    excluded = [x for _, x in results if x is not None]
    return kept, excluded


def count_reasons(excluded: list[Exclusion]) -> dict[str, int]:
    counts = Counter(x.reason for x in excluded)
    return {reason: counts.get(reason, 0) for reason in REASONS}


def prepare_split(
    raw_manifest: str, manifest_out: str, excluded_out: str, settings: CheckSettings, threads: int
) -> tuple[int, int]:
    """Check a raw manifest; write the clean manifest and the exclusions (JSON).

    A split the checks leave empty is an error here, naming it and the reasons counted,
    rather than an obscure failure later in BPE training, features or decoding.
    """
    kept, excluded = check_utterances(read_manifest(raw_manifest), settings, threads)
    for x in excluded:
        print(f"excluded {x.id} ({x.audio}): {x.reason}: {x.detail}", file=sys.stderr)
    if not kept:
        split = Path(raw_manifest).stem
        if not excluded:
            raise AsrpruneError(f"split {split!r} ({raw_manifest}) has no utterances")
        counts = ", ".join(f"{r} {n}" for r, n in count_reasons(excluded).items() if n)
        raise AsrpruneError(
            f"split {split!r} ({raw_manifest}): the data checks exclude all "
            f"{len(excluded)} utterances ({counts}); each is listed above with its reason"
        )
    write_manifest(manifest_out, kept)
    write_json(
        excluded_out,
        {
            "counts": count_reasons(excluded),
            "utterances": [dataclasses.asdict(x) for x in excluded],
        },
    )
    return len(kept), len(excluded)
