"""Speed: the encoder's real-time factor of the teacher and every pruned model, measured together.

One process loads every model, pins torch to one thread and decodes a fixed set of
test-clean utterances one at a time (batch 1). Models take turns round by round
(teacher, A, B, ..., teacher, A, B, ...) after warm-up rounds, so a burst of load from
elsewhere on the machine slows every model of that round alike rather than one model.

Definitions (``speed.csv``, one row per model, the teacher first):

- ``rtf_median``, ``rtf_min``, ``rtf_max``: real-time factor of the encoder over the rounds.
  A round's RTF is the encoder's compute seconds summed over the utterance set (feature
  frames in, encoder output out; ``time.perf_counter``) divided by the set's audio
  seconds (manifest durations). CMVN is applied outside the timed region.
- ``rtf_ratio``: ``rtf_min`` over the teacher's. Ratios compare each model's least
  disturbed round: on a shared machine load from elsewhere only ever adds time, and the
  ratio of minima repeats between runs about three times closer than that of medians
  (docs/experiments.md#latency-target).
- ``flops_ratio``: the encoder's analytic FLOPs summed over the timed utterances, over the
  teacher's: the speed-up FLOPs predict for the very inputs timed (attention's T^2 term
  makes the ratio depend on length; a 10 s reference overstated ours by 0.01-0.02).
- ``speedup_over_flops``: measured speed-up over the speed-up FLOPs predict,
  ``(teacher rtf_min / rtf_min) / (teacher FLOPs / FLOPs)`` = flops_ratio / rtf_ratio.
- ``decode_rtf_median``: as ``rtf_median`` for the encoder plus greedy search (the
  evaluation's decoding), timed in the same calls.
- ``peak_mem_mb``: inference memory, decimal MB: the bytes of the model's parameters and
  buffers, plus the peak bytes of tensors allocated and live at once during one encoder
  forward and greedy search of the longest selected utterance (PyTorch's CPU allocator
  events from ``torch.profiler`` with ``profile_memory``). Scratch memory that oneDNN or
  BLAS allocate outside PyTorch's allocator is not counted.
- ``encoder_params``, ``size_mb`` (encoder fp32, params * 4 / 1e6) and ``flops_10s`` (the
  encoder's FLOPs for 1000 frames): ``Transducer.size_report``, as in evaluation.
"""

from __future__ import annotations

import contextlib
import csv
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from asrprune.data.features import Cmvn, FeatureStore
from asrprune.data.manifest import Utterance, read_manifest
from asrprune.errors import AsrpruneError
from asrprune.evaluate import BYTES_PER_PARAM, FLOPS_FRAMES, MB
from asrprune.io import atomic_open
from asrprune.model import Transducer, load_model
from asrprune.model.decoding import Fusion, search

SPLIT = "test-clean"  # the utterances are drawn from this split
COLUMNS = (
    "model",
    "rtf_median",
    "rtf_min",
    "rtf_max",
    "rtf_ratio",
    "flops_ratio",
    "speedup_over_flops",
    "decode_rtf_median",
    "peak_mem_mb",
    "encoder_params",
    "size_mb",
    "flops_10s",
)


@dataclass(frozen=True)
class SpeedSettings:
    """The ``speed`` config section: utterances timed, warm-up rounds, timed rounds."""

    utterances: int = 20
    warmup_rounds: int = 2
    rounds: int = 10

    def __post_init__(self):
        for key, least in (("utterances", 1), ("warmup_rounds", 0), ("rounds", 1)):
            if getattr(self, key) < least:
                raise AsrpruneError(f"speed.{key} must be >= {least}, got {getattr(self, key)}")


@dataclass
class SpeedModel:
    """A loaded model file; ``name`` is the file's stem."""

    name: str
    model: Transducer  # or an OnnxTransducer (asrprune.deploy), with the identity cmvn
    cmvn: Cmvn


@dataclass
class SpeedUtterance:
    id: str
    seconds: float  # audio duration, from the manifest
    feats: torch.Tensor  # (1, T, 80) raw features, not normalised


# -----------------------------------------------------------------------------
# what is timed, and in which order


def pin_one_thread() -> None:
    """One intra-op thread (and one inter-op thread when torch still allows setting it)."""
    torch.set_num_threads(1)
    # The inter-op pool is fixed once a process has run parallel work (a test session);
    # eager inference uses no inter-op parallelism, so the intra-op setting is what matters.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)


def select_utterances(utts: Sequence[Utterance], n: int) -> list[Utterance]:
    """``n`` utterances spread over the lengths: sorted by (duration, id), the middle one
    of each of ``n`` equal slices; all of them, sorted, when there are no more than ``n``.
    """
    ordered = sorted(utts, key=lambda u: (u.duration, u.id))
    if len(ordered) <= n:
        return ordered
    return [ordered[(2 * i + 1) * len(ordered) // (2 * n)] for i in range(n)]


def schedule(names: Sequence[str], warmup_rounds: int, rounds: int) -> list[tuple[int, str]]:
    """(round, model name) in the order they run: every model once per round, in the given
    order. Warm-up rounds come first and are numbered from ``-warmup_rounds`` to -1."""
    return [(r, name) for r in range(-warmup_rounds, rounds) for name in names]


# -----------------------------------------------------------------------------
# loading


def load_utterances(data_dir: str | os.PathLike, n: int) -> list[SpeedUtterance]:
    """The fixed utterance set from the data folder's test-clean manifest and features."""
    data_dir = Path(data_dir)
    store = FeatureStore(data_dir / "features" / SPLIT)
    utts = [u for u in read_manifest(data_dir / "manifests" / f"{SPLIT}.jsonl") if u.id in store]
    if not utts:
        raise AsrpruneError(f"no utterance of {data_dir}/manifests/{SPLIT}.jsonl in {store.dir}")
    return [SpeedUtterance(u.id, u.duration, store[u.id][None]) for u in select_utterances(utts, n)]


def load_speed_models(paths: Sequence[str | os.PathLike]) -> list[SpeedModel]:
    """Every model file, named by its stem; two files with one stem are refused."""
    models: list[SpeedModel] = []
    for path in paths:
        name = Path(path).stem
        if any(m.name == name for m in models):
            raise AsrpruneError(f"{path}: a second model named {name!r}")
        saved = load_model(path)  # names the file if missing or unreadable
        cmvn = Cmvn.from_dict(saved.cmvn, f"{path} (cmvn)")
        models.append(SpeedModel(name, saved.model.eval(), cmvn))
    return models


# -----------------------------------------------------------------------------
# measuring


Search = tuple[int, Fusion | None]  # (beam, fusion): greedy for beam 0 or 1, as search()
GREEDY: tuple[Search, ...] = ((0, None),)


@torch.inference_mode()
def time_decode(
    model: Transducer, feats: torch.Tensor, searches: Sequence[Search] = GREEDY
) -> tuple[float, ...]:
    """Seconds of the encoder on feats (1, T, 80), then of the encoder plus each search of
    ``searches`` on its output: one encoder pass serves them all."""
    lens = torch.tensor([feats.size(1)])
    start = time.perf_counter()
    enc, enc_lens, _ = model.encoder(feats, lens)  # (1, T', d)
    encoder = time.perf_counter() - start
    totals = []
    for beam, fusion in searches:
        start = time.perf_counter()
        search(model, enc, enc_lens, beam, fusion)
        totals.append(encoder + time.perf_counter() - start)
    return (encoder, *totals)


def measure_rtf(
    models: Sequence[SpeedModel],
    utts: Sequence[SpeedUtterance],
    warmup_rounds: int,
    rounds: int,
    searches: Sequence[Search] = GREEDY,
) -> dict[str, list[list[float]]]:
    """Per model, per timed round, the RTF of the encoder and of encoder + each search
    (``time_decode``'s): ``[encoder, search 1, ...]``, each a list over the rounds."""
    audio = sum(u.seconds for u in utts)
    by_name = {m.name: m for m in models}
    with torch.inference_mode():  # each model's normalised inputs, once, outside the timing
        inputs = {m.name: [m.cmvn.apply(u.feats) for u in utts] for m in models}  # (1, T, 80)
    rtf = {m.name: [[] for _ in range(1 + len(searches))] for m in models}
    for r, name in schedule(list(by_name), warmup_rounds, rounds):
        seconds = [0.0] * (1 + len(searches))
        for feats in inputs[name]:
            times = time_decode(by_name[name].model, feats, searches)
            seconds = [a + b for a, b in zip(seconds, times, strict=True)]
        if r >= 0:
            for series, s in zip(rtf[name], seconds, strict=True):
                series.append(s / audio)
        if name == models[0].name:
            print(f"round {r}: {name} RTF {seconds[0] / audio:.4f}", file=sys.stderr)
    return rtf


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of the model's parameters and buffers, each storage counted once."""
    storages = {}
    for t in (*model.parameters(), *model.buffers()):
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
    return sum(storages.values())


def peak_activation_bytes(model: Transducer, feats: torch.Tensor) -> int:
    """Peak bytes allocated by PyTorch's CPU allocator and live at once during one encoder
    forward and greedy search of feats (1, T, 80), from the profiler's memory events."""
    from torch.profiler import ProfilerActivity, profile

    # kineto logs "gpuGetDeviceCount failed" as an ERROR on CPU-only machines: not ours
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        time_decode(model, feats)
    try:
        events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
        steps = sorted((e.start_ns(), e.nbytes()) for e in events if e.device_type().name == "CPU")
    except AttributeError as e:
        raise AsrpruneError(f"this torch's profiler has no memory events to read ({e})") from None
    live = peak = 0
    for _, nbytes in steps:  # allocations positive, frees negative
        live += nbytes
        peak = max(peak, live)
    return peak


def timed_encoder_flops(model: Transducer, utts: Sequence[SpeedUtterance]) -> int:
    """The encoder's analytic FLOPs summed over the timed utterances: what its time is
    compared with."""
    return sum(model.size_report(u.feats.size(1))["encoder_flops"] for u in utts)


# -----------------------------------------------------------------------------
# the table


def speed_rows(
    names: Sequence[str],
    rtf: dict[str, tuple[list[float], list[float]]],
    peak_bytes: dict[str, int],
    reports: dict[str, dict],
    timed_flops: dict[str, int],
) -> list[dict]:
    """One row per model in ``names`` order (the teacher first), with the columns of
    ``COLUMNS``. ``reports`` are ``Transducer.size_report(FLOPS_FRAMES)`` per model,
    ``timed_flops`` each model's encoder FLOPs summed over the timed utterances."""
    teacher = names[0]
    t_rtf = min(rtf[teacher][0])
    t_flops = timed_flops[teacher]
    rows = []
    for name in names:
        enc, dec = rtf[name]
        median = statistics.median(enc)
        rtf_ratio = min(enc) / t_rtf
        flops_ratio = timed_flops[name] / t_flops
        params = reports[name]["encoder_params"]
        row = {
            "model": name,
            "rtf_median": median,
            "rtf_min": min(enc),
            "rtf_max": max(enc),
            "rtf_ratio": rtf_ratio,
            "flops_ratio": flops_ratio,
            "speedup_over_flops": flops_ratio / rtf_ratio,
            "decode_rtf_median": statistics.median(dec),
            "peak_mem_mb": peak_bytes[name] / MB,
            "encoder_params": params,
            "size_mb": params * BYTES_PER_PARAM / MB,
            "flops_10s": reports[name]["encoder_flops"],
        }
        rows.append(row)
    return rows


def write_speed_csv(path: str | os.PathLike, rows: Sequence[dict]) -> None:
    """The rows as CSV with ``COLUMNS`` in order, atomically; floats to 6 significant digits."""
    with atomic_open(path) as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})


def measure_speed(
    teacher: str | os.PathLike,
    models: Sequence[str | os.PathLike],
    data_dir: str | os.PathLike,
    out_csv: str | os.PathLike,
    settings: SpeedSettings | None = None,
) -> list[dict]:
    """Time the teacher and ``models`` together on one thread; write and return the rows.

    Args:
        teacher: the teacher's model file; its row comes first and is the reference.
        models: the other model files, in the order of their rows; named by file stem.
        data_dir: the run's data/ folder (test-clean's manifest and feature store).
        out_csv: the table, columns ``COLUMNS`` (see the module docstring).
        settings: utterances, warm-up rounds and timed rounds.
    """
    settings = SpeedSettings() if settings is None else settings
    pin_one_thread()
    loaded = load_speed_models([teacher, *models])
    utts = load_utterances(data_dir, settings.utterances)
    audio = sum(u.seconds for u in utts)
    print(
        f"{len(loaded)} models, {len(utts)} utterances ({audio:.1f} s of audio), "
        f"{settings.warmup_rounds} warm-up and {settings.rounds} timed rounds",
        file=sys.stderr,
    )
    rtf = measure_rtf(loaded, utts, settings.warmup_rounds, settings.rounds)
    longest = max(utts, key=lambda u: u.feats.size(1))
    peak, reports, timed_flops = {}, {}, {}
    for m in loaded:
        with torch.inference_mode():
            feats = m.cmvn.apply(longest.feats)  # (1, T, 80)
        peak[m.name] = weight_bytes(m.model) + peak_activation_bytes(m.model, feats)
        reports[m.name] = m.model.size_report(FLOPS_FRAMES)
        timed_flops[m.name] = timed_encoder_flops(m.model, utts)
    rows = speed_rows([m.name for m in loaded], rtf, peak, reports, timed_flops)
    write_speed_csv(out_csv, rows)
    return rows
