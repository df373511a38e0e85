"""Log-mel features, the on-disk feature store, and global mean/variance normalisation.

Features are computed once per split and kept in a store: one float16 ``feats.npy`` of all
frames back to back, plus ``index.json`` mapping each utterance id to its frame range.
Training then reads frames through a memory map instead of decoding audio every epoch.
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio
from torch import nn
from tqdm import tqdm

from asrprune.data.manifest import Utterance, read_manifest
from asrprune.errors import AsrpruneError
from asrprune.io import atomic_path, read_json, require_file, write_json

SAMPLE_RATE = 16000
NUM_MEL_BINS = 80
FRAME_LENGTH_MS = 25.0
FRAME_SHIFT_MS = 10.0
STORE_VERSION = 1
FEATS_FILE = "feats.npy"
INDEX_FILE = "index.json"


# -----------------------------------------------------------------------------
# audio and fbank


def load_audio(
    path: str | os.PathLike, target_rate: int = SAMPLE_RATE, resample: bool = False
) -> torch.Tensor:
    """Read ``path`` as mono float32 in [-1, 1] at ``target_rate``: (samples,).

    A file at another rate is an error unless ``resample`` is set, so that a corpus at the
    wrong rate is noticed rather than silently converted. NaN or infinite samples are an
    error too: they would turn every feature and every hypothesis into garbage silently.
    """
    require_file(path, "audio file")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (samples, channels)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AsrpruneError(f"cannot read audio {path}: {e}") from None
    if data.shape[0] == 0:
        raise AsrpruneError(f"audio file {path} is empty")
    if not np.isfinite(data).all():
        raise AsrpruneError(f"audio {path} holds NaN or infinite samples")
    wav = torch.from_numpy(data).mean(dim=1)  # (samples,)
    if rate != target_rate:
        if not resample:
            raise AsrpruneError(
                f"audio {path} has sample rate {rate} Hz, expected {target_rate} Hz "
                "(resample the corpus or enable resampling)"
            )
        wav = torchaudio.functional.resample(wav, rate, target_rate)
    return wav


def num_frames(num_samples: int, sample_rate: int = SAMPLE_RATE) -> int:
    """Frames fbank yields for ``num_samples`` (Kaldi's snip_edges: whole windows only)."""
    window = int(sample_rate * FRAME_LENGTH_MS / 1000)
    shift = int(sample_rate * FRAME_SHIFT_MS / 1000)
    return 0 if num_samples < window else 1 + (num_samples - window) // shift


def compute_fbank(waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """80-dim log-mel fbank, 25 ms windows every 10 ms, deterministic (no dither): (T, 80).

    Samples are scaled to the 16-bit integer range first, as Kaldi, ESPnet and WeNet do, so
    the log floor sits where those recipes put it and features are comparable to theirs.
    """
    if sample_rate != SAMPLE_RATE:
        raise AsrpruneError(f"fbank expects {SAMPLE_RATE} Hz audio, got {sample_rate} Hz")
    if waveform.dim() != 1:
        raise AsrpruneError(
            f"fbank expects a mono waveform (samples,), got {tuple(waveform.shape)}"
        )
    if num_frames(waveform.numel(), sample_rate) == 0:
        raise AsrpruneError(
            f"audio too short for one {FRAME_LENGTH_MS:g} ms frame: {waveform.numel()} samples"
        )
    wav = waveform.float().unsqueeze(0) * 32768.0  # (1, samples)
    return torchaudio.compliance.kaldi.fbank(
        wav,
        num_mel_bins=NUM_MEL_BINS,
        frame_length=FRAME_LENGTH_MS,
        frame_shift=FRAME_SHIFT_MS,
        dither=0.0,
        energy_floor=0.0,
        sample_frequency=float(sample_rate),
    )  # (T, 80)


def utterance_fbank(utt: Utterance, resample: bool = False) -> np.ndarray:
    """Fbank of one manifest entry as float16, errors naming the utterance: (T, 80)."""
    try:
        wav = load_audio(utt.audio, SAMPLE_RATE, resample=resample)
        feats = compute_fbank(wav, SAMPLE_RATE)
    except AsrpruneError as e:
        raise AsrpruneError(f"utterance {utt.id!r}: {e}") from None
    if not torch.isfinite(feats).all():
        raise AsrpruneError(f"utterance {utt.id!r} ({utt.audio}): features are not finite")
    return feats.numpy().astype(np.float16)


# -----------------------------------------------------------------------------
# feature store


def _npy_header(shape: tuple[int, int], dtype: np.dtype, size: int = 128) -> bytes:
    """A fixed-size .npy v1.0 header, so data can be streamed first and the shape filled in."""
    d = f"{{'descr': '{dtype.str}', 'fortran_order': False, 'shape': {shape}, }}"
    pad = size - 10 - len(d) - 1
    assert pad >= 0, "shape too long for the reserved header"
    header = d + " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode("latin1")


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` intra-op threads; our worker threads already use every core."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _ordered_map(pool: ThreadPoolExecutor, fn, items: list, ahead: int) -> Iterator:
    """``pool.map`` in order, but with at most ``ahead`` results pending, so memory stays flat."""
    pending: collections.deque = collections.deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:  # on an error, do not finish work nobody will read
        for future in pending:
            future.cancel()


def extract_features(
    manifest_path: str | os.PathLike,
    store_dir: str | os.PathLike,
    threads: int = 1,
    resample: bool = False,
    skip_bad: bool = False,
) -> dict:
    """Compute fbank for every utterance of a manifest into a feature store; return its index.

    Frames are streamed to disk in manifest order, so memory stays flat for any corpus
    size (LibriSpeech 960 h is about 55 GB of float16 frames). ``feats.npy`` and then
    ``index.json`` are each renamed into place only when complete; the index is written
    last, so its presence marks a finished store. With ``skip_bad`` an utterance whose audio
    cannot be used is recorded under ``"skipped"`` with the reason instead of failing.
    """
    utts = read_manifest(manifest_path)
    if not utts:
        raise AsrpruneError(f"manifest {manifest_path} has no utterances")
    store_dir = Path(store_dir)
    (store_dir / INDEX_FILE).unlink(missing_ok=True)  # mark an old store incomplete first
    threads = max(1, threads)
    index: dict[str, list[int]] = {}
    skipped: dict[str, str] = {}
    offset = 0
    dtype = np.dtype(np.float16)

    def work(utt: Utterance) -> np.ndarray | str:
        try:
            return utterance_fbank(utt, resample)
        except AsrpruneError as e:
            if not skip_bad:
                raise
            return str(e)

    interactive = sys.stderr.isatty()
    progress = tqdm(
        total=len(utts),
        desc=f"fbank {Path(manifest_path).name}",
        unit="utt",
        file=sys.stderr,
        mininterval=0.5 if interactive else 30.0,
    )
    with (
        atomic_path(store_dir / FEATS_FILE) as tmp,
        open(tmp, "wb") as f,
        _torch_threads(1),
        ThreadPoolExecutor(max_workers=threads) as pool,
        progress,
    ):
        f.write(_npy_header((0, NUM_MEL_BINS), dtype))  # placeholder until the size is known
        for utt, result in zip(
            utts, _ordered_map(pool, work, utts, ahead=4 * threads), strict=True
        ):
            if isinstance(result, str):
                skipped[utt.id] = result
                print(f"skipping {result}", file=sys.stderr)
            else:
                f.write(result.tobytes())
                index[utt.id] = [offset, result.shape[0]]
                offset += result.shape[0]
            progress.update()
        if not index:
            raise AsrpruneError(f"no usable utterance in {manifest_path}")
        f.seek(0)
        f.write(_npy_header((offset, NUM_MEL_BINS), dtype))
        f.flush()
        os.fsync(f.fileno())
    meta = {
        "version": STORE_VERSION,
        "manifest": str(manifest_path),
        "feature_dim": NUM_MEL_BINS,
        "frame_shift_ms": FRAME_SHIFT_MS,
        "frame_length_ms": FRAME_LENGTH_MS,
        "sample_rate": SAMPLE_RATE,
        "dtype": dtype.name,
        "num_frames": offset,
        "num_utterances": len(index),
        "skipped": skipped,
        "utterances": index,
    }
    write_json(store_dir / INDEX_FILE, meta)
    return meta


class FeatureStore:
    """Read-only view of a feature store; ``store[id]`` is a float32 tensor (T, 80).

    The frame file is memory-mapped lazily and dropped when pickled, so DataLoader workers
    (fork or spawn) each open their own map instead of copying the frames.
    """

    def __init__(self, store_dir: str | os.PathLike):
        self.dir = Path(store_dir)
        index_path = self.dir / INDEX_FILE
        if not index_path.is_file():
            raise AsrpruneError(f"feature store {self.dir} is incomplete: {INDEX_FILE} missing")
        meta = read_json(index_path)
        if meta.get("version") != STORE_VERSION:
            raise AsrpruneError(
                f"{index_path}: store version {meta.get('version')!r}, expected {STORE_VERSION}"
            )
        self.meta = {k: v for k, v in meta.items() if k != "utterances"}
        self.index: dict[str, tuple[int, int]] = {
            k: (int(v[0]), int(v[1])) for k, v in meta["utterances"].items()
        }
        self.feature_dim = int(meta["feature_dim"])
        self.skipped: dict[str, str] = dict(meta.get("skipped", {}))
        self._feats: np.ndarray | None = None

    @property
    def feats(self) -> np.ndarray:
        """All frames, memory-mapped: (total_frames, 80) float16."""
        if self._feats is None:
            path = self.dir / FEATS_FILE
            try:
                self._feats = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as e:
                raise AsrpruneError(f"cannot open feature file {path}: {e}") from None
            expected = (self.meta["num_frames"], self.feature_dim)
            if self._feats.shape != expected:
                raise AsrpruneError(
                    f"{path}: shape {self._feats.shape} does not match its index {expected}"
                )
        return self._feats

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_feats": None}

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, utt_id: object) -> bool:
        return utt_id in self.index

    def ids(self) -> list[str]:
        return list(self.index)

    def num_frames(self, utt_id: str) -> int:
        return self._lookup(utt_id)[1]

    def _lookup(self, utt_id: str) -> tuple[int, int]:
        try:
            return self.index[utt_id]
        except KeyError:
            why = (
                f" (skipped at extraction: {self.skipped[utt_id]})"
                if utt_id in self.skipped
                else ""
            )
            raise AsrpruneError(
                f"utterance {utt_id!r} not in feature store {self.dir}{why}"
            ) from None

    def __getitem__(self, utt_id: str) -> torch.Tensor:
        start, n = self._lookup(utt_id)
        frames = np.array(self.feats[start : start + n], dtype=np.float32)  # (T, 80) copy
        return torch.from_numpy(frames)


# -----------------------------------------------------------------------------
# global mean and variance normalisation


class Cmvn(nn.Module):
    """Per-dimension mean/std normalisation; buffers travel in a model's state_dict.

    Global (``per_utterance=False``): the training frames' mean and std. Per utterance:
    each utterance's own mean is removed first, which cancels a fixed spectral colouring
    (a voice's or a room's tilt, the level of steady noise), and ``mean``/``std`` are
    then those of the training frames with their utterance means removed.

    ``std`` is floored at ``STD_FLOOR`` so a constant dimension (digital silence) cannot
    blow features up to inf.
    """

    STD_FLOOR = 1e-3

    def __init__(
        self, mean: torch.Tensor, std: torch.Tensor, frames: int = 0, per_utterance: bool = False
    ):
        super().__init__()
        if mean.shape != std.shape or mean.dim() != 1:
            raise AsrpruneError(
                f"cmvn mean and std must be equal 1-d shapes, got {mean.shape} and {std.shape}"
            )
        self.register_buffer("mean", mean.float().clone())  # (D,)
        self.register_buffer("std", std.float().clamp_min(self.STD_FLOOR))  # (D,)
        self.frames = int(frames)
        self.per_utterance = bool(per_utterance)

    @property
    def dim(self) -> int:
        return self.mean.numel()

    def apply(self, feats: torch.Tensor) -> torch.Tensor:
        """Normalise one utterance's features, (T, D) or (1, T, D), never a padded batch
        (its padding would enter the utterance mean)."""
        if self.per_utterance:
            if feats.dim() == 3 and feats.shape[0] != 1:
                raise AsrpruneError(
                    f"per-utterance cmvn needs one utterance, got a batch of {feats.shape[0]}"
                )
            feats = feats - feats.mean(dim=-2, keepdim=True)
        return (feats - self.mean) / self.std

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.apply(feats)

    def to_dict(self) -> dict:
        return {
            "frames": self.frames,
            "per_utterance": self.per_utterance,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict, source: str = "cmvn") -> Cmvn:
        """From :meth:`to_dict`'s record or a model file's cmvn entry (tensors or lists);
        records written before per-utterance normalisation existed are global."""
        try:
            return cls(
                torch.as_tensor(d["mean"], dtype=torch.float64),
                torch.as_tensor(d["std"], dtype=torch.float64),
                int(d.get("frames", 0)),
                bool(d.get("per_utterance", False)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise AsrpruneError(f"{source}: not a valid cmvn record ({e})") from None

    def save(self, path: str | os.PathLike) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Cmvn:
        if not Path(path).is_file():
            raise AsrpruneError(f"cmvn file not found: {path}")
        return cls.from_dict(read_json(path), str(path))

    @classmethod
    def identity(cls, dim: int = NUM_MEL_BINS) -> Cmvn:
        """A no-op normaliser, e.g. as a placeholder before statistics are loaded."""
        return cls(torch.zeros(dim), torch.ones(dim))


def compute_cmvn(
    store: FeatureStore, chunk_frames: int = 1 << 18, per_utterance: bool = False
) -> Cmvn:
    """Mean and std per dimension over every frame of ``store``, accumulated in float64;
    with ``per_utterance``, of the frames less their own utterance's mean."""
    feats = store.feats  # (N, D) float16, memory-mapped
    n, d = feats.shape
    if n == 0:
        raise AsrpruneError(f"feature store {store.dir} has no frames")
    total = np.zeros(d, dtype=np.float64)
    total_sq = np.zeros(d, dtype=np.float64)

    def chunks():  # (c, D) float64
        if per_utterance:
            for start, t in store.index.values():
                utt = np.asarray(feats[start : start + t], dtype=np.float64)
                yield utt - utt.mean(axis=0)
        else:
            for start in range(0, n, chunk_frames):
                yield np.asarray(feats[start : start + chunk_frames], dtype=np.float64)

    for chunk in chunks():
        total += chunk.sum(axis=0)
        total_sq += np.square(chunk).sum(axis=0)
    mean = total / n
    var = np.maximum(total_sq / n - mean**2, 0.0)
    return Cmvn(torch.from_numpy(mean), torch.from_numpy(np.sqrt(var)), n, per_utterance)


def store_bytes_per_hour(store: FeatureStore) -> float:
    """Size of the frame file per hour of audio (frames at the store's frame shift)."""
    hours = store.meta["num_frames"] * store.meta["frame_shift_ms"] / 1000 / 3600
    return (store.dir / FEATS_FILE).stat().st_size / max(hours, math.ulp(1.0))
