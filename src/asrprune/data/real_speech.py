"""``test-real``: the few clips of real, human English speech that Debian packages ship.

Nothing in Debian or on PyPI holds enough real speech to train on, but a handful of test
and sound-theme recordings come with a transcript the package states (or that their file
names spell): enough to ask whether a recogniser trained on synthetic voices hears people
at all. Evaluation only; about a minute of audio, so its WER moves by several points from
a single word and says more about a collapse than about a small difference.

=========================  ============================================  ==============
package                    clips                                         licence
=========================  ============================================  ==============
pocketsphinx-testdata      5 LibriVox sentences (Sense and Sensibility,  BSD-2 (CMU);
                           read by a volunteer), "go forward ten         LibriVox audio
                           meters", 5 spoken card names                  public domain
alsa-utils                 8 channel names ("front left", ...)           GPL-2+
=========================  ============================================  ==============

A survey of other packages (PyPI sdists with CMU ARCTIC or Whisper sample clips, Debian's
sphinxtrain with a TIMIT sentence, Asterisk's prompts) found clips that are under LDC or
share-alike terms, have no stated transcript, or are not in a package this project
installs; docs/experiments.md#real-speech lists them.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from asrprune.data.manifest import Utterance, write_manifest
from asrprune.data.text import normalize_transcript
from asrprune.data.voices import SAMPLE_RATE, check_programs
from asrprune.errors import AsrpruneError
from asrprune.io import atomic_path

SPLIT = "test-real"
POCKETSPHINX_DATA = Path("/usr/share/pocketsphinx/test/data")
ALSA_SOUNDS = Path("/usr/share/sounds/alsa")
PACKAGES = {POCKETSPHINX_DATA: "pocketsphinx-testdata", ALSA_SOUNDS: "alsa-utils"}
_TRANSCRIPTION_LINE = re.compile(r"^<s>(.*)</s>\s*\(([^()]+)\)\s*$")


@dataclass(frozen=True)
class Clip:
    """One recording: where it is, what is said, and who says it."""

    id: str
    path: Path
    text: str  # normalised transcript
    speaker: str
    raw: bool = False  # headerless 16-bit little-endian mono at 16 kHz


def read_transcription(path: Path) -> dict[str, str]:
    """CMU Sphinx's ``<s> words </s> (file id)`` lines: file id -> normalised words."""
    out = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        m = _TRANSCRIPTION_LINE.match(line.strip())
        if m is None:
            raise AsrpruneError(f"{path}:{lineno}: expected '<s> words </s> (id)'")
        out[m[2].strip()] = normalize_transcript(m[1])
    return out


def catalogue(pocketsphinx: Path = POCKETSPHINX_DATA, alsa: Path = ALSA_SOUNDS) -> list[Clip]:
    """Every clip, with transcripts read from the packages' own files where they state them
    (the goforward grammar states its one sentence; ALSA's file names are the words)."""
    for folder in (pocketsphinx, alsa):
        if not folder.is_dir():
            package = PACKAGES.get(folder, "?")
            raise AsrpruneError(f"{folder} not found; install the Debian package {package!r}")
    clips = []
    librivox = read_transcription(pocketsphinx / "librivox" / "transcription")
    for name, text in sorted(librivox.items()):
        path = pocketsphinx / "librivox" / f"{name}.wav"
        clips.append(Clip(f"librivox-{name.rsplit('-', 1)[-1]}", path, text, "librivox-austen01"))
    grammar = (pocketsphinx / "goforward.gram").read_text(encoding="utf-8")
    m = re.search(r"public\s*<\w+>\s*=\s*([^;]+);", grammar)
    if m is None:
        raise AsrpruneError(f"{pocketsphinx / 'goforward.gram'}: no public rule")
    clips.append(
        Clip(
            "cmu-goforward",
            pocketsphinx / "goforward.raw",
            normalize_transcript(m[1]),
            "cmu-goforward",
            raw=True,
        )
    )
    cards = read_transcription(pocketsphinx / "cards" / "cards.transcription")
    for name, text in sorted(cards.items()):
        clips.append(
            Clip(f"cmu-cards-{name}", pocketsphinx / "cards" / f"{name}.wav", text, "cmu-cards")
        )
    for path in sorted(alsa.glob("*_*.wav")):  # Noise.wav is not speech
        words = normalize_transcript(path.stem.replace("_", " "))
        clips.append(Clip(f"alsa-{path.stem.lower().replace('_', '-')}", path, words, "alsa"))
    missing = [str(c.path) for c in clips if not c.path.is_file()]
    if missing:
        raise AsrpruneError(f"real speech clips missing: {missing[:3]}; reinstall the packages")
    return clips


def to_flac(clip: Clip, out: Path) -> float:
    """Write ``clip`` as 16 kHz mono FLAC (sox resamples and downmixes); its seconds."""
    check_programs(["sox"])
    source = (
        ["-t", "raw", "-r", "16000", "-e", "signed", "-b", "16", "-c", "1", "-L"]
        if clip.raw
        else []
    )
    with atomic_path(out) as tmp:
        cmd = [
            "sox",
            "-q",
            *source,
            str(clip.path),
            "-r",
            str(SAMPLE_RATE),
            "-c",
            "1",
            "-b",
            "16",
            "-t",
            "flac",
            str(tmp),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise AsrpruneError(f"sox could not convert {clip.path}: {done.stderr.strip()[:300]}")
    info = sf.info(str(out))
    return info.frames / info.samplerate


def build_real_split(out_dir: Path, clips: list[Clip] | None = None) -> int:
    """``out_dir/test-real.jsonl`` and its FLACs under ``out_dir/audio/test-real``; the
    number of utterances. Existing FLACs are kept, as the synthesised splits' are."""
    clips = catalogue() if clips is None else clips
    utterances = []
    for clip in clips:
        audio = Path(out_dir) / "audio" / SPLIT / clip.speaker / f"{clip.id}.flac"
        seconds = sf.info(str(audio)).duration if audio.is_file() else to_flac(clip, audio)
        utterances.append(Utterance(clip.id, str(audio), seconds, clip.text, clip.speaker))
    return write_manifest(Path(out_dir) / f"{SPLIT}.jsonl", utterances)
