"""Manifests: JSON lines, one utterance a line (id, audio, duration, text, speaker)."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from asrprune.errors import AsrpruneError
from asrprune.io import atomic_open

# The splits every corpus has, LibriSpeech's names.
SPLITS = ("train", "dev", "test-clean", "test-other")
# Evaluation splits only the embedded corpus can have: a text domain never trained on,
# and the few clips of real speech that Debian packages ship.
OPTIONAL_SPLITS = ("test-newtext", "test-real")
# Every split in one fixed order: a split's position seeds its random choices.
ALL_SPLITS = SPLITS + OPTIONAL_SPLITS


def data_splits(data: dict) -> tuple[str, ...]:
    """The splits a run's data stage makes, from its ``data`` config section."""
    embedded = data.get("embedded", {}) if data.get("source") == "embedded" else {}
    return (
        *SPLITS,
        *(["test-newtext"] if embedded.get("newtext_domain") else []),
        *(["test-real"] if embedded.get("real_speech") else []),
    )


@dataclass(frozen=True)
class Utterance:
    """One utterance. ``audio`` is a path, absolute or relative to the working directory."""

    id: str
    audio: str
    duration: float
    text: str
    speaker: str

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False)


_REQUIRED = {f.name: f.type for f in dataclasses.fields(Utterance)}


def write_manifest(path: str | os.PathLike, utterances: Iterable[Utterance]) -> int:
    """Write utterances atomically; return how many were written."""
    n = 0
    with atomic_open(path) as f:
        for utt in utterances:
            f.write(utt.to_json() + "\n")
            n += 1
    return n


def read_manifest(path: str | os.PathLike) -> list[Utterance]:
    """Read a manifest, refusing malformed lines with the file and line number."""
    path = Path(path)
    if not path.is_file():
        raise AsrpruneError(f"manifest not found: {path}")
    utterances = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise AsrpruneError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise AsrpruneError(f"{path}:{lineno}: expected a JSON object")
            missing = [k for k in _REQUIRED if k not in row]
            extra = [k for k in row if k not in _REQUIRED]
            if missing or extra:
                raise AsrpruneError(
                    f"{path}:{lineno}: fields must be {sorted(_REQUIRED)}; "
                    f"missing {missing}, unknown {extra}"
                )
            try:
                utt = Utterance(
                    id=str(row["id"]),
                    audio=str(row["audio"]),
                    duration=float(row["duration"]),
                    text=str(row["text"]),
                    speaker=str(row["speaker"]),
                )
            except (TypeError, ValueError):
                raise AsrpruneError(
                    f"{path}:{lineno}: duration must be a number, got {row['duration']!r}"
                ) from None
            utterances.append(utt)
    ids = [u.id for u in utterances]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise AsrpruneError(f"{path}: utterance id {dup!r} appears more than once")
    return utterances
