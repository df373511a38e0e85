"""LibriSpeech: manifests from an extracted folder, and the optional download.

The layout is ``<root>/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`` beside
``<speaker>-<chapter>-<utt>.flac``; ``root`` is the ``LibriSpeech/`` folder the archives
unpack to.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tarfile
import urllib.request
from pathlib import Path

import soundfile as sf

from asrprune.data.manifest import Utterance
from asrprune.errors import AsrpruneError

SUBSETS = (
    "train-clean-100",
    "train-clean-360",
    "train-other-500",
    "dev-clean",
    "dev-other",
    "test-clean",
    "test-other",
)

# The MD5s OpenSLR publishes for resource 12 (openslr.org/12, its md5sum.txt).
ARCHIVE_MD5 = {
    "train-clean-100": "2a93770f6d5c6c964bc36631d331a522",
    "train-clean-360": "c0e676e450a7ff2f54aeade5171606fa",
    "train-other-500": "d1a0fd59409feb2c614ce4d30c387708",
    "dev-clean": "42e2234ba48799c1f50f24a7926300a1",
    "dev-other": "c8d0bcc9cca99d4f8b62fcc847357931",
    "test-clean": "32fa31d27d2e1cad72775fee3f4849a9",
    "test-other": "fb5a50374b501bb3bac4815ee91d3135",
}


def check_root(root: str | Path | None, subsets: list[str]) -> Path:
    """Fail early, naming the folder, when the corpus or one of its subsets is missing."""
    if not root:
        raise AsrpruneError(
            "data.source is librispeech but data.librispeech.root is not set: name the "
            "extracted LibriSpeech/ folder (or run the download_librispeech rule first)"
        )
    root = Path(root)
    if not root.is_dir():
        raise AsrpruneError(f"data.librispeech.root: folder not found: {root}")
    missing = [s for s in subsets if not (root / s).is_dir()]
    if missing:
        raise AsrpruneError(
            f"data.librispeech.root: {root} lacks the subset folder(s) {', '.join(missing)}"
        )
    return root


def subset_utterances(root: Path, subset: str) -> list[Utterance]:
    """Every utterance of one subset, sorted by id; unreadable audio keeps duration 0.

    Durations come from the FLAC headers (cheap); the checks stage reads the samples and
    excludes whatever is unreadable, so nothing is dropped silently here.
    """
    utterances = []
    for trans in sorted((root / subset).glob("*/*/*.trans.txt")):
        for lineno, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            utt_id, _, text = line.strip().partition(" ")
            audio = trans.parent / f"{utt_id}.flac"
            try:
                duration = sf.info(str(audio)).duration
            except Exception:
                duration = 0.0
            if not utt_id.count("-") == 2:
                raise AsrpruneError(f"{trans}:{lineno}: expected '<spk>-<chapter>-<n> TEXT'")
            utterances.append(
                Utterance(
                    id=utt_id,
                    audio=str(audio),
                    duration=round(duration, 4),
                    text=text.strip(),
                    speaker=utt_id.split("-")[0],
                )
            )
    return utterances


def split_utterances(root: str | Path, subsets: list[str]) -> list[Utterance]:
    root = check_root(root, subsets)
    return [u for s in subsets for u in subset_utterances(root, s)]


def download_subset(mirror: str, subset: str, dest: str | Path) -> Path:
    """Download ``<mirror>/<subset>.tar.gz`` and unpack it so ``dest/<subset>`` exists.

    The archive unpacks as ``LibriSpeech/<subset>/...``; ``dest`` is that LibriSpeech/
    folder. Its MD5, computed as it downloads, must equal the published one
    (``ARCHIVE_MD5``) before anything is unpacked, so a truncated or corrupted download
    is refused, naming the archive and both digests. Only regular files and folders
    inside it are extracted.
    """
    if subset not in SUBSETS:
        raise AsrpruneError(f"unknown LibriSpeech subset {subset!r} (one of {', '.join(SUBSETS)})")
    dest = Path(dest)
    url = f"{mirror.rstrip('/')}/{subset}.tar.gz"
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / f".{subset}.tar.gz.part"
    staging = dest / f".{subset}.extracting"
    try:
        print(f"downloading {url}", file=sys.stderr)
        try:
            with urllib.request.urlopen(url) as response, open(archive, "wb") as f:
                actual = _copy_with_md5(response, f)
        except OSError as e:
            raise AsrpruneError(f"download of {url} failed: {e}") from None
        expected = ARCHIVE_MD5[subset]
        if actual != expected:
            raise AsrpruneError(
                f"{url}: MD5 of {subset}.tar.gz is {actual}, expected {expected} (published "
                "on openslr.org/12); the download is corrupt or incomplete, nothing was "
                "unpacked: run the rule again"
            )
        print(f"{subset}.tar.gz: MD5 {actual} as published", file=sys.stderr)
        shutil.rmtree(staging, ignore_errors=True)
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
        unpacked = staging / "LibriSpeech" / subset
        if not unpacked.is_dir():
            raise AsrpruneError(f"{url}: archive has no LibriSpeech/{subset}/ folder")
        # The subset folder appears whole or not at all.
        shutil.rmtree(dest / subset, ignore_errors=True)
        unpacked.rename(dest / subset)
    finally:
        archive.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
    return dest / subset


def _copy_with_md5(src, dst) -> str:
    """Copy one file object to another; return the MD5 of what was copied (hex)."""
    md5 = hashlib.md5()
    while chunk := src.read(1 << 20):
        md5.update(chunk)
        dst.write(chunk)
    return md5.hexdigest()
