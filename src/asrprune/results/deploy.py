"""The deployment tables: exports against their PyTorch models, and speed per backend.

``deploy``: per model (the teacher and the pruned models config ``deploy`` picks), greedy
WER on test-clean and test-other with PyTorch (``metrics/<model>.json``, rule evaluate),
ONNX Runtime fp32 and int8 (``metrics/exports/<model>.<precision>.json``, rule
evaluate_export); the share of utterances of both test sets whose greedy transcript equals
PyTorch's; the encoder's fp32 size and the exported graphs' size on disk.

``speed_deploy``: ``speed_deploy.csv`` (rule speed_deploy) laid out per model and thread
count, one column per backend, for the encoder and for the full decode.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from asrprune.errors import AsrpruneError
from asrprune.io import json_field, json_number, read_json, read_jsonl
from asrprune.results.markdown import markdown_table
from asrprune.results.tables import write_table

PRECISIONS = ("fp32", "int8")
SPLITS = {"test-clean": "test_clean", "test-other": "test_other"}  # split: column stem
SETTINGS = (
    ("torch", "fp32", "PyTorch"),
    ("onnxruntime", "fp32", "ORT fp32"),
    ("onnxruntime", "int8", "ORT int8"),
)


def export_metrics(metrics_dir: str | os.PathLike, model: str, precision: str) -> Path:
    """Where rule evaluate_export writes an export's metrics (its hyps beside, ``.hyps``)."""
    return Path(metrics_dir) / "exports" / f"{model}.{precision}.json"


def same_transcripts(a_dir: str | os.PathLike, b_dir: str | os.PathLike, splits) -> float:
    """Percent of the utterances of ``splits`` whose hypotheses in two hyps folders are
    identical; the folders must hold the same utterances in the same order."""
    same = total = 0
    for split in splits:
        a, b = (read_jsonl(Path(d) / f"{split}.jsonl") for d in (a_dir, b_dir))
        if [r["id"] for r in a] != [r["id"] for r in b]:
            raise AsrpruneError(f"{a_dir} and {b_dir}: {split} holds other utterances")
        same += sum(x["hyp"] == y["hyp"] for x, y in zip(a, b, strict=True))
        total += len(a)
    if total == 0:
        raise AsrpruneError(f"{a_dir}: no utterance to compare")
    return 100.0 * same / total


def _read_metrics(path: Path) -> dict:
    if not path.is_file():
        raise AsrpruneError(f"metrics file not found: {path}")
    return read_json(path)


def build_deploy_table(metrics_dir: str | os.PathLike, models: Sequence[str]) -> pd.DataFrame:
    """One row per model: greedy WER per backend and split, agreement, sizes."""
    metrics_dir = Path(metrics_dir)
    rows = []
    for model in models:
        path = metrics_dir / f"{model}.json"
        base = _read_metrics(path)
        row = {"model": model, "size_mb": float(json_number(base, path, "size_mb"))}
        for split, stem in SPLITS.items():
            row[f"wer_{stem}_torch"] = float(json_number(base, path, "wer", split))
        for precision in PRECISIONS:
            epath = export_metrics(metrics_dir, model, precision)
            data = _read_metrics(epath)
            for split, stem in SPLITS.items():
                row[f"wer_{stem}_{precision}"] = float(json_number(data, epath, "wer", split))
            row[f"same_{precision}_pct"] = same_transcripts(
                metrics_dir / f"{model}.hyps", epath.with_suffix(".hyps"), SPLITS
            )
            row[f"onnx_mb_{precision}"] = float(json_number(data, epath, "export", "onnx_mb"))
            if json_field(data, epath, "export", "precision") != precision:
                raise AsrpruneError(f"{epath}: not the {precision} export")
        rows.append(row)
    return pd.DataFrame(rows)


def deploy_markdown(table: pd.DataFrame) -> str:
    header = (
        "Model",
        "test-clean WER: PyTorch / ORT fp32 / int8",
        "test-other WER: PyTorch / ORT fp32 / int8",
        "Same transcript as PyTorch: fp32 / int8",
        "Size MB: encoder fp32 / ONNX fp32 / int8",
    )
    rows = []
    for r in table.itertuples(index=False):
        d = r._asdict()
        wer = [
            " / ".join(f"{d['wer_' + stem + '_' + b]:.2f}" for b in ("torch", *PRECISIONS))
            for stem in SPLITS.values()
        ]
        same = f"{d['same_fp32_pct']:.1f}% / {d['same_int8_pct']:.1f}%"
        size = f"{d['size_mb']:.2f} / {d['onnx_mb_fp32']:.2f} / {d['onnx_mb_int8']:.2f}"
        rows.append((r.model, *wer, same, size))
    return markdown_table(header, rows)


def read_deploy_speed(path: str | os.PathLike) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise AsrpruneError(f"speed file not found: {path}")
    speed = pd.read_csv(path)
    for column in ("model", "backend", "precision", "threads", "rtf_encoder", "rtf_full"):
        if column not in speed.columns:
            raise AsrpruneError(f"{path}: column {column!r} is missing")
    return speed


def speed_markdown(speed: pd.DataFrame) -> str:
    """Per model and thread count: encoder RTF per backend, the full decode's, then the
    encoder's measured speed-up over the one its FLOPs predict."""
    names = [label for _, _, label in SETTINGS]
    columns = [("rtf_encoder", "encoder", ".4g")]
    if speed["rtf_full"].notna().any():
        columns.append(("rtf_full", "full decode", ".4g"))
    if "speedup_over_flops" in speed.columns:
        columns.append(("speedup_over_flops", "speed-up over FLOPs", ".2f"))
    header = ["Model", "Threads", *(f"{title}: {n}" for _, title, _ in columns for n in names)]
    rows = []
    for (model, threads), group in speed.groupby(["model", "threads"], sort=False):
        cells = [model, str(threads)]
        by = {(r.backend, r.precision): r for r in group.itertuples(index=False)}
        for column, _, fmt in columns:
            for backend, precision, _ in SETTINGS:
                r = by.get((backend, precision))
                cells.append("" if r is None else format(getattr(r, column), fmt))
        rows.append(cells)
    return markdown_table(header, rows)


def write_deploy_tables(
    metrics_dir: str | os.PathLike,
    speed_path: str | os.PathLike,
    models: Sequence[str],
    out_dir: str | os.PathLike,
) -> list[Path]:
    """``deploy.csv/.md`` and ``speed_deploy.csv/.md`` under ``out_dir``."""
    table = build_deploy_table(metrics_dir, models)
    speed = read_deploy_speed(speed_path)
    return [
        *write_table(table, out_dir, "deploy", deploy_markdown(table)),
        *write_table(speed, out_dir, "speed_deploy", speed_markdown(speed)),
    ]
