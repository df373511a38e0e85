"""Table 1 (methods x target sparsities) and Table 2 (ablations) in the paper's layout.

Every number comes from the run's result files: WER, size and achieved sparsities from
``metrics/<model>.json`` (rule evaluate), RTF from ``speed.csv`` (rule speed, its
``rtf_median``). Rows: the teacher first (sparsity 0, method ``teacher``, changes 0), then
each target sparsity in ascending order with its methods in the order given (the
config's). Percent changes are against the teacher: 100 * (value / teacher - 1). The CSV
keeps full precision; the Markdown rounds as the paper prints. Beside each table, whether
its WER differences are findings: ``l0-params`` against each rival, by paired bootstrap.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from asrprune.errors import AsrpruneError
from asrprune.io import atomic_open, json_number, read_json
from asrprune.results.domain_shift import build_shift_table, shift_markdown
from asrprune.results.layout import (
    DOMAIN_SHIFT,
    ONE_SEED,
    TEACHER,
    Replicates,
    significance_tables,
    table_methods,
)
from asrprune.results.markdown import markdown_table
from asrprune.results.significance import comparisons_markdown, decoding_comparisons

COLUMNS = (
    "sparsity",
    "method",
    "wer_test_clean",
    "wer_test_other",
    "rtf",
    "rtf_change_pct",
    "size_mb",
    "size_change_pct",
)
# After the required columns: WER with the full decoding (beam and LM; empty for models
# decoded greedily only), what was achieved (short smoke jobs miss their targets) and the
# model each row was read from.
EXTRA_COLUMNS = (
    "wer_full_test_clean",
    "wer_full_test_other",
    "achieved_sparsity",
    "achieved_flops_sparsity",
    "model",
    # replicates (config prune.seeds): how many, and the spread of their WER
    "seeds",
    "wer_test_clean_sd",
    "wer_test_other_sd",
)
SPEED_COLUMNS = ("model", "rtf_median")


# -----------------------------------------------------------------------------
# reading result files


def read_metrics(path: str | os.PathLike) -> dict[str, float]:
    """What the tables take from one metrics JSON (rule evaluate), checked."""
    path = Path(path)
    if not path.is_file():
        raise AsrpruneError(f"metrics file not found: {path}")
    data = read_json(path)
    fields = {
        "wer_test_clean": ("wer", "test-clean"),
        "wer_test_other": ("wer", "test-other"),
        "size_mb": ("size_mb",),
        "achieved_sparsity": ("sparsity",),
        "achieved_flops_sparsity": ("flops_sparsity",),
    }
    values = {name: float(json_number(data, path, *keys)) for name, keys in fields.items()}
    full = "full" in data
    for name, split in (
        ("wer_full_test_clean", "test-clean"),
        ("wer_full_test_other", "test-other"),
    ):
        values[name] = (
            float(json_number(data, path, "full", "wer", split)) if full else float("nan")
        )
    return values


def read_speed(path: str | os.PathLike) -> pd.DataFrame:
    """speed.csv (rule speed), indexed by model name."""
    path = Path(path)
    if not path.is_file():
        raise AsrpruneError(f"speed file not found: {path}")
    speed = pd.read_csv(path)
    missing = [c for c in SPEED_COLUMNS if c not in speed.columns]
    if missing:
        raise AsrpruneError(f"{path}: column {missing[0]!r} is missing")
    return speed.set_index("model")


def _rtf(speed: pd.DataFrame, model: str, where: str) -> float:
    if model not in speed.index:
        raise AsrpruneError(f"{where}: no row for model {model!r}")
    value = speed.loc[model, "rtf_median"]
    if isinstance(value, pd.Series):
        raise AsrpruneError(f"{where}: {len(value)} rows for model {model!r}, expected one")
    if pd.isna(value) or value <= 0:
        raise AsrpruneError(f"{where}: rtf_median of {model!r} is {float(value)}, expected > 0")
    return float(value)


# -----------------------------------------------------------------------------
# building


def _replicate_row(metrics_dir: Path, speed: pd.DataFrame, names: list[str], where: str) -> dict:
    """One table row from a job's replicates: the mean of every value over them, their
    number and the spread (sample standard deviation; NaN for one) of the WER columns."""
    per = pd.DataFrame(
        [{**read_metrics(metrics_dir / f"{n}.json"), "rtf": _rtf(speed, n, where)} for n in names]
    )
    row = per.mean().to_dict()
    for column in ("wer_test_clean", "wer_test_other"):
        row[f"{column}_sd"] = float(per[column].std(ddof=1)) if len(names) > 1 else float("nan")
    return {**row, "model": names[0], "seeds": len(names)}


def build_table(
    metrics_dir: str | os.PathLike,
    speed_path: str | os.PathLike,
    methods: Sequence[str],
    sparsities: Sequence[float],
    replicates: Replicates = ONE_SEED,
) -> pd.DataFrame:
    """The teacher, then every (sparsity, method) job, with changes against the teacher.

    A job with replicates (config prune.seeds) gives the mean over them of every column,
    ``seeds`` and the WER spread; ``model`` names its seed-0 model. Columns: ``COLUMNS``
    (exactly as named) then ``EXTRA_COLUMNS``. The teacher's row has sparsity 0.0, method
    ``teacher`` and changes 0.0.
    """
    speed = read_speed(speed_path)
    jobs = [(0.0, TEACHER, [TEACHER])] + [
        (s, m, replicates.names(m, s)) for s in sorted(sparsities) for m in methods
    ]
    rows = [
        {
            "sparsity": sparsity,
            "method": method,
            **_replicate_row(Path(metrics_dir), speed, names, str(speed_path)),
        }
        for sparsity, method, names in jobs
    ]
    table = pd.DataFrame(rows)
    teacher = table.iloc[0]
    table["rtf_change_pct"] = 100.0 * (table["rtf"] / teacher["rtf"] - 1.0)
    table["size_change_pct"] = 100.0 * (table["size_mb"] / teacher["size_mb"] - 1.0)
    return table[list(COLUMNS + EXTRA_COLUMNS)]


# -----------------------------------------------------------------------------
# writing


def _with_change(value: float, change: float, teacher: bool) -> str:
    return f"{value:.4g}" if teacher else f"{value:.4g} ({change:+.1f}%)"


def _wer(value: float) -> str:
    return "" if pd.isna(value) else f"{value:.2f}"


def _mean_wer(value: float, spread: float) -> str:
    """A WER, with `` ± spread`` when it is a mean over replicates."""
    return f"{value:.2f}" if pd.isna(spread) else f"{value:.2f} ± {spread:.2f}"


def to_markdown(table: pd.DataFrame) -> str:
    """The paper's layout: a sparsity printed once per group, RTF and size with their change.

    WER columns: greedy search (every model), then the full decoding where it was run; a
    job with replicates shows their mean ± standard deviation."""
    header = (
        "Sparsity",
        "Method",
        "test-clean WER %",
        "test-other WER %",
        "test-clean, full",
        "test-other, full",
        "RTF",
        "Size (MB)",
        "Achieved sparsity",
    )
    rows = []
    previous = None
    for row in table.itertuples(index=False):
        teacher = row.method == TEACHER
        cells = (
            "" if row.sparsity == previous else f"{row.sparsity:.0%}",
            row.method,
            _mean_wer(row.wer_test_clean, row.wer_test_clean_sd),
            _mean_wer(row.wer_test_other, row.wer_test_other_sd),
            _wer(row.wer_full_test_clean),
            _wer(row.wer_full_test_other),
            _with_change(row.rtf, row.rtf_change_pct, teacher),
            _with_change(row.size_mb, row.size_change_pct, teacher),
            f"{row.achieved_sparsity:.1%}",
        )
        rows.append(cells)
        previous = row.sparsity
    return markdown_table(header, rows, left=2)


def write_table(
    table: pd.DataFrame, out_dir: str | os.PathLike, name: str, markdown: str | None = None
) -> list[Path]:
    """``<name>.csv`` and ``<name>.md`` (``markdown``, else the paper's layout) under
    ``out_dir``, each written atomically."""
    csv, md = (Path(out_dir) / f"{name}.{ext}" for ext in ("csv", "md"))
    with atomic_open(csv) as f:
        table.to_csv(f, index=False)
    with atomic_open(md) as f:
        f.write(to_markdown(table) if markdown is None else markdown)
    return [csv, md]


def write_tables(
    metrics_dir: str | os.PathLike,
    speed_path: str | os.PathLike,
    methods: Sequence[str],
    sparsities: Sequence[float],
    out_dir: str | os.PathLike,
    replicates: Replicates = ONE_SEED,
    domain_shift: bool = False,
    full_sparsities: Sequence[float] = (),
) -> list[Path]:
    """Build and write Table 1 and, when ``methods`` has ablations, Table 2; after each,
    ``<table>_significance``: ``l0-params`` against its rivals there, by paired bootstrap
    of the saved hypotheses, pooled over replicates, for greedy search and, at
    ``full_sparsities``, the full decoding too; with ``domain_shift``, every job's
    in- against out-of-domain loss (:mod:`domain_shift`; ``layout.table_stems`` names
    the files)."""
    tested = significance_tables(methods)
    written = []
    for name, shown in table_methods(methods).items():
        table = build_table(metrics_dir, speed_path, shown, sparsities, replicates)
        written += write_table(table, out_dir, name)
        if name in tested:
            comparisons = decoding_comparisons(
                metrics_dir, tested[name], sparsities, full_sparsities, replicates
            )
            markdown = comparisons_markdown(comparisons)
            written += write_table(comparisons, out_dir, f"{name}_significance", markdown)
    if domain_shift:
        shift = build_shift_table(metrics_dir, methods, sparsities, replicates)
        written += write_table(shift, out_dir, DOMAIN_SHIFT, shift_markdown(shift))
    return written
