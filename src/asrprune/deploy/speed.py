"""Speed where models are deployed: backends, int8, thread counts, and the whole decode.

:mod:`asrprune.speed` times the paper's protocol (PyTorch, one thread, the encoder). This
times the teacher and a few pruned models under every *setting*: backend and precision
(PyTorch fp32, ONNX Runtime fp32 and int8 from ``asrprune export`` folders) times thread
counts. Within a setting the models take turns round by round, the teacher first, as in
:func:`asrprune.speed.measure_rtf`, on the same fixed test-clean utterances at batch 1.

Columns of ``speed_deploy.csv`` (one row per model and setting, settings in turn):

- ``rtf_encoder``: median over the rounds of the encoder's RTF (features in, encoder
  output out; ONNX Runtime's encoder graph holds the CMVN and the joiner's encoder
  projection too, which PyTorch runs outside the timing: a few per cent of one block).
- ``rtf_greedy``: encoder plus greedy search; ``rtf_full``: encoder plus the evaluation's
  full decoding (beam search with the LM as configured), empty without one. Both searches
  run on the same encoder pass, whose time each includes.
- ``encoder_ratio`` / ``full_ratio``: the encoder's / the full decoding's RTF over the
  teacher's in the same setting: what pruning buys there.
- ``vs_torch``: the same model's PyTorch fp32 encoder RTF at the same thread count over
  this row's: what the backend buys.
- ``flops_ratio``: the encoder's FLOPs over the teacher's, summed over the timed
  utterances; ``speedup_over_flops``: ``flops_ratio / encoder_ratio``, the measured
  speed-up over the one FLOPs predict (1: time falls with FLOPs), as in ``speed.csv``.

Ratios, as in ``speed.csv``, compare each model's fastest round (its least disturbed);
the RTF columns are medians.
"""

from __future__ import annotations

import csv
import os
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from asrprune.data.features import Cmvn
from asrprune.errors import AsrpruneError
from asrprune.io import atomic_open
from asrprune.model.decoding import Fusion
from asrprune.speed import (
    SpeedModel,
    load_speed_models,
    load_utterances,
    measure_rtf,
    pin_one_thread,
    timed_encoder_flops,
)

BACKENDS = (("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8"))
COLUMNS = (
    "model",
    "backend",
    "precision",
    "threads",
    "rtf_encoder",
    "rtf_greedy",
    "rtf_full",
    "encoder_ratio",
    "full_ratio",
    "vs_torch",
    "flops_ratio",
    "speedup_over_flops",
)


@dataclass(frozen=True)
class DeploySpeedSettings:
    """Config ``deploy``'s timing keys: thread counts (0: every core of the job),
    utterances, warm-up and timed rounds per setting."""

    threads: tuple[int, ...] = (1, 0)
    utterances: int = 10
    warmup_rounds: int = 1
    rounds: int = 5

    def __post_init__(self):
        if not self.threads or any(t < 0 for t in self.threads):
            raise AsrpruneError(f"deploy.threads: 1 or more counts >= 0, got {self.threads}")
        for key, least in (("utterances", 1), ("warmup_rounds", 0), ("rounds", 1)):
            if getattr(self, key) < least:
                raise AsrpruneError(f"deploy.{key} must be >= {least}, got {getattr(self, key)}")


def thread_counts(settings: DeploySpeedSettings, cores: int) -> list[int]:
    """The distinct thread counts timed, 0 read as ``cores``, in the order given."""
    counts = [cores if t == 0 else t for t in settings.threads]
    return list(dict.fromkeys(counts))


def _onnx_models(
    names: Sequence[str],
    exports: Mapping[str, Mapping[str, str | os.PathLike]],
    precision: str,
    threads: int,
) -> list[SpeedModel]:
    from asrprune.deploy.runtime import OnnxTransducer

    models = []
    for name in names:
        if precision not in exports.get(name, {}):
            raise AsrpruneError(f"no {precision} export of model {name!r} to time")
        onnx = OnnxTransducer(exports[name][precision], threads)
        models.append(SpeedModel(name, onnx, Cmvn.identity(onnx.config.input_dim)))
    return models


def measure_deploy_speed(
    model_paths: Sequence[str | os.PathLike],
    exports: Mapping[str, Mapping[str, str | os.PathLike]],
    data_dir: str | os.PathLike,
    out_csv: str | os.PathLike,
    settings: DeploySpeedSettings,
    cores: int,
    beam: int = 0,
    fusion: Fusion | None = None,
) -> list[dict]:
    """Time every model of ``model_paths`` (the teacher first; named by file stem) under
    every setting; write and return the rows (columns ``COLUMNS``).

    ``exports``: model name -> {"fp32": folder, "int8": folder} of ``asrprune export``.
    ``beam`` and ``fusion``: the full decoding (none for ``beam`` 0 or 1).
    """
    torch_models = load_speed_models(model_paths)
    names = [m.name for m in torch_models]
    utts = load_utterances(data_dir, settings.utterances)
    flops = {m.name: timed_encoder_flops(m.model, utts) for m in torch_models}
    rows: list[dict] = []
    for threads in thread_counts(settings, cores):
        pin_one_thread()
        torch_rtf: dict[str, float] = {}
        for backend, precision in BACKENDS:
            # with ONNX Runtime, PyTorch only keeps the search's books, on one thread: at
            # more its idle pool would compete with ONNX Runtime's for the cores
            torch.set_num_threads(threads if backend == "torch" else 1)
            models = (
                torch_models
                if backend == "torch"
                else _onnx_models(names, exports, precision, threads)
            )
            searches = [(0, None), *([(beam, fusion)] if beam > 1 else [])]
            print(f"{backend} {precision}, {threads} thread(s)", file=sys.stderr)
            rtf = measure_rtf(models, utts, settings.warmup_rounds, settings.rounds, searches)
            median = {n: [statistics.median(series) for series in rtf[n]] for n in names}
            least = {n: [min(series) for series in rtf[n]] for n in names}
            if backend == "torch":
                torch_rtf = {n: least[n][0] for n in names}
            teacher = least[names[0]]
            for name in names:
                encoder, greedy, *full = median[name]
                fastest = least[name]
                row = {
                    "model": name,
                    "backend": backend,
                    "precision": precision,
                    "threads": threads,
                    "rtf_encoder": encoder,
                    "rtf_greedy": greedy,
                    "rtf_full": full[0] if full else None,
                    "encoder_ratio": fastest[0] / teacher[0],
                    "full_ratio": fastest[2] / teacher[2] if full else None,
                    "vs_torch": torch_rtf[name] / fastest[0],
                    "flops_ratio": flops[name] / flops[names[0]],
                }
                row["speedup_over_flops"] = row["flops_ratio"] / row["encoder_ratio"]
                rows.append(row)
    write_rows(out_csv, rows)
    return rows


def write_rows(path: str | os.PathLike, rows: Sequence[dict]) -> None:
    """The rows as CSV with ``COLUMNS``, atomically; floats to 6 significant digits, None
    as an empty field."""
    with atomic_open(path) as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    k: "" if v is None else f"{v:.6g}" if isinstance(v, float) else v
                    for k, v in row.items()
                }
            )


def exports_by_model(folders: Sequence[str | os.PathLike]) -> dict[str, dict[str, Path]]:
    """Export folders laid out ``.../<model>/<precision>`` as {model: {precision: folder}}."""
    out: dict[str, dict[str, Path]] = {}
    for folder in map(Path, folders):
        out.setdefault(folder.parent.name, {})[folder.name] = folder
    return out
