"""Voices of the embedded corpus: Debian's TTS engines, and pseudo-speakers built on them.

A base voice is one engine voice (an espeak-ng accent with a voice variant, a flite voice,
a festival voice). A pseudo-speaker is a base voice with a fixed speed, pitch and tempo
change applied by sox, so a handful of engines yields hundreds of distinct speakers.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asrprune.errors import AsrpruneError

SAMPLE_RATE = 16000
ENGINES = ("espeak", "flite", "festival")
# Program -> Debian package that provides it.
PROGRAM_PACKAGES = {
    "espeak-ng": "espeak-ng",
    "flite": "flite",
    "festival": "festival",
    "sox": "sox",
}
ENGINE_PROGRAMS = {"espeak": "espeak-ng", "flite": "flite", "festival": "festival"}
# flite's 8 kHz "kal" and limited-domain "awb_time" are left out.
FLITE_VOICES = ("awb", "kal16", "rms", "slt")
FESTIVAL_VOICE_PACKAGES = {
    "cmu_us_slt_arctic_hts": "festvox-us-slt-hts",
    "kal_diphone": "festvox-kallpc16k",
    "ked_diphone": "festvox-kdlpc16k",
}
# Whispered voices carry no pitch at all, and "fast" is marked unstable by espeak-ng.
ESPEAK_SKIPPED_VARIANTS = frozenset({"whisper", "whisperf", "fast"})


@dataclass(frozen=True, order=True)
class BaseVoice:
    """One voice of one engine; ``name`` is what the engine is given."""

    engine: str  # "espeak", "flite" or "festival"
    name: str  # "en-gb-scotland+m3", "rms", "kal_diphone"

    @property
    def id(self) -> str:
        return f"{self.engine}/{self.name}"

    @property
    def accent(self) -> str:
        """The espeak-ng accent (``en-gb-scotland``), or the voice name for other engines."""
        return self.name.split("+")[0]

    @property
    def variant(self) -> str:
        """The espeak-ng voice variant (``m3``), or "" for other engines."""
        return self.name.split("+")[1] if "+" in self.name else ""


@dataclass(frozen=True, order=True)
class Speaker:
    """A pseudo-speaker: a base voice with a fixed sox perturbation."""

    voice: BaseVoice
    speed: float  # sox speed: pitch and tempo together, like a different vocal tract
    pitch: int  # sox pitch shift in cents
    tempo: float  # sox tempo: speaking rate only

    @property
    def id(self) -> str:
        """Stable and self-describing: ``espeak_en-gb-scotland.m3_s105p-120t095``."""
        name = self.voice.name.replace("+", ".")
        return (
            f"{self.voice.engine}_{name}_s{round(self.speed * 100):03d}"
            f"p{self.pitch:+d}t{round(self.tempo * 100):03d}"
        )


def check_programs(programs: Iterable[str], packages: Mapping[str, str] = PROGRAM_PACKAGES) -> None:
    """Raise one error naming every missing program and the Debian package providing it."""
    missing = [p for p in dict.fromkeys(programs) if shutil.which(p) is None]
    if missing:
        listed = ", ".join(f"{p} (Debian package {packages.get(p, p)})" for p in missing)
        install = " ".join(dict.fromkeys(packages.get(p, p) for p in missing))
        raise AsrpruneError(
            f"the embedded corpus needs programs that are not on PATH: {listed}; "
            f"install them with: apt-get install {install}"
        )


def check_engines(voices: Iterable[BaseVoice] | None = None) -> None:
    """Check that the engines (and, for festival, the voices) in ``voices`` are installed.

    Without ``voices`` every engine is checked. Festival voices are probed by starting
    festival once, since each lives in its own Debian package.
    """
    voices = list(voices) if voices is not None else None
    engines = sorted({v.engine for v in voices}) if voices is not None else list(ENGINES)
    check_programs([ENGINE_PROGRAMS[e] for e in engines] + ["sox"])
    festival = [v.name for v in voices or [] if v.engine == "festival"]
    if festival:
        out = subprocess.run(
            ["festival", "--pipe"],
            input='(format stderr "%l\\n" (voice.list))\n',
            capture_output=True,
            text=True,
            check=False,
        ).stderr
        have = set(re.findall(r"[\w-]+", out))
        lacking = sorted({n for n in festival if n not in have})
        if lacking:
            listed = ", ".join(
                f"{n} (Debian package {FESTIVAL_VOICE_PACKAGES.get(n, '?')})" for n in lacking
            )
            raise AsrpruneError(f"festival voices not installed: {listed}")


def _espeak_list(arg: str) -> list[tuple[str, str]]:
    out = subprocess.run(
        ["espeak-ng", f"--voices={arg}"], capture_output=True, text=True, check=True
    ).stdout
    rows = []
    for line in out.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 5:
            rows.append((fields[1], fields[4]))  # language, file
    return rows


@functools.cache
def espeak_accents() -> tuple[str, ...]:
    """English accents of espeak-ng's own voices (mbrola voices need data Debian lacks)."""
    check_programs(["espeak-ng"])
    found = {lang for lang, file in _espeak_list("en") if file.startswith("gmw/")}
    return tuple(sorted(a for a in found if a == "en" or a.startswith("en-")))


@functools.cache
def espeak_variants() -> tuple[str, ...]:
    """espeak-ng voice variants (``m3``, ``klatt2``, ...), minus unusable ones."""
    check_programs(["espeak-ng"])
    found = {file.split("/", 1)[1] for _, file in _espeak_list("variant") if file.startswith("!v/")}
    return tuple(sorted(found - ESPEAK_SKIPPED_VARIANTS))


def voice_catalogue() -> list[BaseVoice]:
    """Every base voice, sorted: espeak accents x variants, flite and festival voices."""
    voices = [BaseVoice("espeak", f"{a}+{v}") for a in espeak_accents() for v in espeak_variants()]
    voices += [BaseVoice("flite", v) for v in FLITE_VOICES]
    voices += [BaseVoice("festival", v) for v in FESTIVAL_VOICE_PACKAGES]
    return sorted(voices)


class FestivalSession:
    """One long-lived festival process: starting festival costs ~0.3 s, a sentence ~10 ms.

    Commands go to its stdin; completion is signalled by a marker printed on stderr, which
    festival does not buffer (its stdout is block-buffered in a pipe).
    """

    _MARKER = "@@asrprune-done@@"

    def __init__(self) -> None:
        check_programs(["festival"])
        self._proc = subprocess.Popen(
            ["festival", "--pipe"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._voice: str | None = None

    def _eval(self, command: str) -> list[str]:
        """Evaluate one Scheme command; return what festival wrote to stderr meanwhile."""
        assert self._proc.stdin is not None and self._proc.stderr is not None
        try:
            self._proc.stdin.write(f'{command}\n(format stderr "{self._MARKER}\\n")\n')
            self._proc.stdin.flush()
        except BrokenPipeError:
            raise AsrpruneError("festival exited unexpectedly") from None
        lines = []
        while True:
            line = self._proc.stderr.readline()
            if not line:
                raise AsrpruneError(f"festival exited unexpectedly: {''.join(lines)[-300:]}")
            if self._MARKER in line:
                return lines
            lines.append(line)

    def synthesize(self, voice: str, text: str, wav: Path) -> None:
        if voice != self._voice:
            errors = self._eval(f"(voice_{voice})")
            if any("ERROR" in e for e in errors):
                package = FESTIVAL_VOICE_PACKAGES.get(voice, "?")
                raise AsrpruneError(
                    f"festival voice {voice!r} is not installed (Debian package {package})"
                )
            self._voice = voice
        quoted = text.replace("\\", "\\\\").replace('"', '\\"')
        errors = self._eval(
            f'(utt.save.wave (utt.synth (Utterance Text "{quoted}")) "{wav}" \'riff)'
        )
        if not wav.is_file():
            raise AsrpruneError(f"festival {voice} wrote no audio for {text!r}: {''.join(errors)}")

    def alive(self) -> bool:
        return self._proc.poll() is None

    def close(self) -> None:
        if self.alive():
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


_festival: FestivalSession | None = None


def _festival_session() -> FestivalSession:
    global _festival
    if _festival is None or not _festival.alive():
        _festival = FestivalSession()
    return _festival


def close_engines() -> None:
    """Stop this process's festival session, if one was started."""
    global _festival
    if _festival is not None:
        _festival.close()
        _festival = None


def _run(cmd: list[str], stdin: str | None = None) -> bytes:
    try:
        out = subprocess.run(cmd, input=stdin.encode() if stdin else None, capture_output=True)
    except FileNotFoundError:
        check_programs([cmd[0]])
        raise
    if out.returncode != 0:
        err = out.stderr.decode(errors="replace").strip()[:300]
        raise AsrpruneError(f"{' '.join(cmd[:4])} ... failed (exit {out.returncode}): {err}")
    return out.stdout


def engine_wav(voice: BaseVoice, text: str, wav: Path) -> None:
    """Write ``text`` spoken by ``voice`` to ``wav`` at the engine's own sample rate."""
    if voice.engine == "espeak":
        # Amplitude 60 of 200: at the default 100 some variants clip.
        _run(["espeak-ng", "-a", "60", "-v", voice.name, "-w", str(wav)], stdin=text)
    elif voice.engine == "flite":
        _run(["flite", "-voice", voice.name, "-t", text, "-o", str(wav)])
    elif voice.engine == "festival":
        _festival_session().synthesize(voice.name, text, wav)
    else:
        raise AsrpruneError(f"unknown TTS engine {voice.engine!r}; expected one of {ENGINES}")


def sox_effects(speaker: Speaker) -> list[str]:
    """The sox effect chain of a pseudo-speaker, ending at 16 kHz.

    Resampling comes first: speed, pitch and tempo then process 16 kHz rather than the
    engine's 22.05 kHz, about a third less of sox's time (docs/experiments.md#synthesis-cost).
    ``speed`` changes the rate, so the chain resamples again at the end.
    """
    effects = ["rate", "-h", str(SAMPLE_RATE)]
    if speaker.speed != 1.0:
        effects += ["speed", f"{speaker.speed:g}"]
    if speaker.pitch != 0:
        effects += ["pitch", str(speaker.pitch)]
    if speaker.tempo != 1.0:
        effects += ["tempo", "-s", f"{speaker.tempo:g}"]
    return [*effects, "rate", "-h", str(SAMPLE_RATE)]


def synthesize(text: str, speaker: Speaker, workdir: Path) -> np.ndarray:
    """``text`` spoken by ``speaker``: float32 mono samples at 16 kHz.

    ``workdir`` holds the engine's intermediate WAV; sox applies the speaker's
    perturbation, resamples and hands back raw float samples without dithering.
    """
    wav = Path(workdir) / "engine.wav"
    wav.unlink(missing_ok=True)
    engine_wav(speaker.voice, text, wav)
    out = ["-t", "f32", "-c", "1", "-r", str(SAMPLE_RATE), "-"]
    raw = _run(["sox", "-D", "-q", str(wav), *out, *sox_effects(speaker)])
    audio = np.frombuffer(raw, dtype=np.float32).copy()
    if audio.size == 0 or not np.isfinite(audio).all():
        raise AsrpruneError(f"{speaker.id}: the engine produced no usable audio for {text!r}")
    return audio
