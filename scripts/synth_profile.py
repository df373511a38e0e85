"""Where the embedded corpus's synthesis time goes: CPU seconds per utterance by stage.

    .venv/bin/python scripts/synth_profile.py --utterances 200

Plans the first training utterances of the default corpus (``data.embedded`` defaults,
the Bibles' sentences from ``--cache``, the corpus rule's cache of them) and renders each
as ``asrprune corpus-embedded`` does, one process, timing CPU (this process and its
children; festival's long-lived session read from /proc) for: the TTS engine (per
engine), sox (speed, pitch, tempo, resampling), noise and reverberation, and the FLAC
write. Prints JSON. CPU time, not wall time, so a busy machine measures alike.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from asrprune.data import corpus as C
from asrprune.data import voices as V
from asrprune.data.sentences import load_split_sentences


def own_cpu() -> float:
    """CPU seconds of this process and its finished children."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def festival_cpu() -> float:
    """CPU seconds of the festival session so far (0 before it starts)."""
    session = V._festival
    if session is None or not session.alive():
        return 0.0
    fields = Path(f"/proc/{session._proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--utterances", type=int, default=200)
    p.add_argument("--cache", type=Path, default=Path("results/embedded/corpus/cache"))
    a = p.parse_args()
    counts = {"train": a.utterances, "dev": 0, "test-clean": 0, "test-other": 0}
    settings = C.EmbeddedCorpusSettings.from_dict({"utterances": counts})
    out = Path(tempfile.mkdtemp(prefix="synth-profile-"))
    sentences = load_split_sentences(settings.min_words, settings.max_words, a.cache)
    plan = C.plan_corpus(settings, out, sentences)
    stages = dict.fromkeys(("engine", "sox", "degrade", "flac"), 0.0)
    engines: dict[str, list[float]] = {}
    seconds = 0.0
    for job in plan:
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "engine.wav"
            c0, f0 = own_cpu(), festival_cpu()
            V.engine_wav(job.speaker.voice, job.sentence.spoken, wav)
            c1, f1 = own_cpu(), festival_cpu()
            engine = engines.setdefault(job.speaker.voice.engine, [0, 0.0])
            engine[0] += 1
            engine[1] += (c1 - c0) + (f1 - f0)
            stages["engine"] += (c1 - c0) + (f1 - f0)
            sox = ["sox", "-D", "-q", str(wav), "-t", "f32", "-c", "1", "-r", "16000", "-"]
            raw = V._run([*sox, *V.sox_effects(job.speaker)])
            c2 = own_cpu()
            stages["sox"] += c2 - c1
        audio = np.frombuffer(raw, dtype=np.float32).copy()
        seconds += audio.size / V.SAMPLE_RATE
        audio = C.degrade_as_planned(audio * (job.peak / max(np.abs(audio).max(), 1e-6)), job)
        c3 = own_cpu()
        stages["degrade"] += c3 - c2
        sf.write(str(out / "x.flac"), audio, V.SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        stages["flac"] += own_cpu() - c3
    V.close_engines()
    n = len(plan)
    report = {
        "utterances": n,
        "audio_seconds": round(seconds, 1),
        "cpu_ms_per_utterance": {k: round(1000 * v / n, 1) for k, v in stages.items()},
        "engine_ms_per_utterance": {
            k: {"utterances": c, "ms": round(1000 * s / c, 1)} for k, (c, s) in engines.items()
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
