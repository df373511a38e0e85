"""The latency table's check: modelled against measured encoder time, per model of a run.

For every model of the run (the teacher first), ``latency.csv`` gives the fraction of the
teacher's encoder time it keeps three ways:

- ``target_kept``: what an ``l0-latency`` job was asked for, 1 - its target sparsity
  (empty for the other methods);
- ``modelled_kept``: the latency model's prediction for the model's structure over the
  teacher's (asrprune.model.latency; the table the run's l0-latency jobs pruned to);
- ``measured_kept``: ``speed.csv``'s ``rtf_ratio``, the encoder's median RTF over the
  teacher's, timed side by side on one thread (rule speed);

then ``model_error_pct`` = 100 (modelled / measured - 1), the latency model's error, and
``target_error_pct`` = 100 (measured / target - 1), how far a job's measured time landed
from its target. SVD's low-rank layers are not in the latency model (it times full-width
modules): its error shows what that costs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from asrprune.errors import AsrpruneError
from asrprune.io import json_field, read_json
from asrprune.model import ConformerEncoder, EncoderStructure, LatencyModel
from asrprune.pruning.settings import LATENCY_METHODS
from asrprune.results.layout import TEACHER, parse_model_name
from asrprune.results.tables import read_speed, write_table

COLUMNS = (
    "model",
    "target_kept",
    "modelled_kept",
    "measured_kept",
    "model_error_pct",
    "target_error_pct",
)


def _structure(metrics_dir: Path, model: str) -> EncoderStructure:
    path = metrics_dir / f"{model}.json"
    if not path.is_file():
        raise AsrpruneError(f"metrics file not found: {path}")
    where = f"{path} (structure)"
    return EncoderStructure.from_dict(json_field(read_json(path), path, "structure"), where)


def build_latency_table(
    table_path: str | os.PathLike,
    speed_path: str | os.PathLike,
    metrics_dir: str | os.PathLike,
    models: Sequence[str],
) -> pd.DataFrame:
    """One row per model (``models``: the pruned ones; the teacher comes first)."""
    latency = LatencyModel.load(table_path)
    speed = read_speed(speed_path)
    metrics_dir = Path(metrics_dir)
    teacher = ConformerEncoder.count_latency(_structure(metrics_dir, TEACHER), latency)
    rows = []
    for model in [TEACHER, *models]:
        if model not in speed.index or "rtf_ratio" not in speed.columns:
            raise AsrpruneError(f"{speed_path}: no rtf_ratio for model {model!r}")
        measured = float(speed.loc[model, "rtf_ratio"])
        modelled = ConformerEncoder.count_latency(_structure(metrics_dir, model), latency) / teacher
        target = float("nan")
        if model != TEACHER:
            method, sparsity, _ = parse_model_name(model)
            if method in LATENCY_METHODS:
                target = 1.0 - sparsity
        rows.append(
            {
                "model": model,
                "target_kept": target,
                "modelled_kept": modelled,
                "measured_kept": measured,
                "model_error_pct": 100.0 * (modelled / measured - 1.0),
                "target_error_pct": 100.0 * (measured / target - 1.0),
            }
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def latency_markdown(table: pd.DataFrame) -> str:
    header = (
        "Model",
        "Time kept: target",
        "modelled",
        "measured",
        "Model error %",
        "Measured vs target %",
    )
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]

    def cell(value: float, fmt: str) -> str:
        return "" if pd.isna(value) else format(value, fmt)

    for r in table.itertuples(index=False):
        cells = (
            r.model,
            cell(r.target_kept, ".3f"),
            cell(r.modelled_kept, ".3f"),
            cell(r.measured_kept, ".3f"),
            cell(r.model_error_pct, "+.1f"),
            cell(r.target_error_pct, "+.1f"),
        )
        lines.append("| " + " | ".join(cells) + " |")
    errors = table["model_error_pct"].abs()
    within = table["target_error_pct"].dropna().abs()
    summary = (
        f"\nLatency model error over {len(table)} models: median {errors.median():.1f}%, "
        f"largest {errors.max():.1f}% ({table.loc[errors.idxmax(), 'model']})."
    )
    if len(within):
        summary += (
            f" Latency-target jobs within 5% of their target: {(within <= 5).sum()} of "
            f"{len(within)}."
        )
    return "\n".join(lines) + "\n" + summary + "\n"


def write_latency_table(
    table_path: str | os.PathLike,
    speed_path: str | os.PathLike,
    metrics_dir: str | os.PathLike,
    models: Sequence[str],
    out_dir: str | os.PathLike,
) -> list[Path]:
    """``latency.csv`` and ``latency.md`` under ``out_dir``."""
    table = build_latency_table(table_path, speed_path, metrics_dir, models)
    return write_table(table, out_dir, "latency", latency_markdown(table))
