"""Shared builders for tests: tiny audio files and manifests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from asrprune.data.manifest import Utterance

REPO = Path(__file__).resolve().parents[1]


def write_tone(
    path: Path, seconds: float = 1.0, rate: int = 16000, amplitude: float = 0.3, seed: int = 0
) -> Path:
    """A short voiced-like signal (tone plus a little noise) written as FLAC or WAV."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    audio = amplitude * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio.astype(np.float32), rate)
    return path


def make_utterance(
    tmp: Path,
    uid: str,
    text: str = "HELLO WORLD",
    seconds: float = 1.0,
    rate: int = 16000,
    speaker: str = "spk1",
) -> Utterance:
    path = write_tone(tmp / f"{uid}.flac", seconds=seconds, rate=rate)
    return Utterance(id=uid, audio=str(path), duration=seconds, text=text, speaker=speaker)


def dead_tracking_uri() -> str:
    """An HTTP tracking URI on a free local port that nothing listens on."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def dead_server_ids(folder: Path, require: bool = False) -> Path:
    """An ids file as ``mlflow-init`` wrote it against a server that has since died."""
    from asrprune.io import write_json

    ids = {
        "tracking_uri": dead_tracking_uri(),
        "experiment_id": "1",
        "experiment": "asrprune-test",
        "run": "test",
        "parent_run_id": "0" * 32,
        "require": require,
    }
    path = folder / "mlflow" / "ids.json"
    write_json(path, ids)
    return path
