"""The paper's Fig. 2a and 2b, and two views it lacks, with seaborn, each as PNG and PDF.

- ``fig2a_modules_<method>``: retained-parameter ratio of FFN1, MHA, Conv and FFN2 per
  block at one target (0.5, else the run's largest). Counts come from
  ``ConformerBlock.count_module_params``, the formulas that size the pruning budget.
- ``fig2b_hidden_<method>``: hidden dimensions each block keeps, one line per target.
- ``wer_rtf``: test-clean and test-other WER against RTF for every model, with the Pareto
  front (no other model is both faster and more accurate); with the deploy stage's
  tables, a second row of panels: each deployed model on its fastest backend at one
  thread (PyTorch, ONNX Runtime fp32 or int8), that backend's WER against its RTF.
- ``kept_vs_target``: each L0 job's expected kept fraction against its target over the
  pruning steps.

Figures are drawn on ``matplotlib.figure.Figure`` objects rendered by the Agg canvas, never
through pyplot's global state: nothing opens a window or needs a display on a cluster node.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from asrprune.errors import AsrpruneError
from asrprune.io import atomic_path, read_json
from asrprune.model.conformer import ConformerBlock
from asrprune.model.structure import EncoderStructure, ModelConfig
from asrprune.results.layout import (
    L0_METHODS,
    OURS,
    TEACHER,
    figure_names,
    model_name,
    parse_model_name,
    structure_sparsity,
)
from asrprune.results.tables import build_table

MODULES = {"ffn1": "FFN1", "mhsa": "MHA", "conv": "Conv", "ffn2": "FFN2"}  # paper's order
FORMATS = ("png", "pdf")
DPI = 150
STYLE = "whitegrid"


def _target(sparsity: float) -> str:
    return f"{sparsity:.0%}"


def save_figure(fig: Figure, stem: str | os.PathLike) -> list[Path]:
    """``<stem>.png`` and ``<stem>.pdf``, each written atomically, rendered by Agg."""
    FigureCanvasAgg(fig)
    paths = []
    for fmt in FORMATS:
        path = Path(f"{stem}.{fmt}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=DPI, bbox_inches="tight")
        paths.append(path)
    return paths


# -----------------------------------------------------------------------------
# reading


def teacher_config(model_path: str | os.PathLike) -> ModelConfig:
    """The architecture every structure is measured against, from the teacher's model file."""
    from asrprune.model import load_model

    return load_model(model_path).model.config


def read_structure(path: str | os.PathLike) -> EncoderStructure:
    """The encoder structure a metrics JSON (or pruning summary) records."""
    path = Path(path)
    if not path.is_file():
        raise AsrpruneError(f"result file not found: {path}")
    data = read_json(path)
    if "structure" not in data:
        raise AsrpruneError(f"{path}: field 'structure' is missing")
    return EncoderStructure.from_dict(data["structure"], f"{path}: structure")


def read_history(path: str | os.PathLike) -> pd.DataFrame:
    """step, expected_kept and target_kept of a pruning summary's training history."""
    path = Path(path)
    if not path.is_file():
        raise AsrpruneError(f"pruning summary not found: {path}")
    rows = read_json(path).get("history", {}).get("train")
    if not rows:
        raise AsrpruneError(f"{path}: field 'history.train' is missing or empty")
    history = pd.DataFrame(rows)
    for key in ("step", "expected_kept", "target_kept"):
        if key not in history.columns:
            raise AsrpruneError(f"{path}: history.train rows have no {key!r}")
    return history[["step", "expected_kept", "target_kept"]]


# -----------------------------------------------------------------------------
# Fig. 2a: retained parameters per module and block


def module_retention(structure: EncoderStructure, config: ModelConfig) -> pd.DataFrame:
    """Per block (1-based) and module: parameters kept over the teacher's, in [0, 1]."""
    full = EncoderStructure.full(config)
    rows = []
    for i, (kept, whole) in enumerate(zip(structure.blocks, full.blocks, strict=True), 1):
        ours = ConformerBlock.count_module_params(kept, structure.d_model, config)
        teacher = ConformerBlock.count_module_params(whole, full.d_model, config)
        for key, label in MODULES.items():
            rows.append({"block": i, "module": label, "ratio": ours[key] / teacher[key]})
    return pd.DataFrame(rows)


def plot_module_retention(
    structure: EncoderStructure, config: ModelConfig, stem: str | os.PathLike, title: str
) -> list[Path]:
    """Fig. 2a: grouped bars, one group per block, one bar per module."""
    data = module_retention(structure, config)
    with sns.axes_style(STYLE):
        fig = Figure(figsize=(max(6.0, 0.6 * len(structure.blocks) + 3), 3.5), layout="constrained")
        ax = fig.subplots()
        sns.barplot(data=data, x="block", y="ratio", hue="module", ax=ax)
    ax.set(xlabel="block", ylabel="retained parameters", ylim=(0, 1.05), title=title)
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), title=None)
    return save_figure(fig, stem)


# -----------------------------------------------------------------------------
# Fig. 2b: kept hidden dimensions per block and target


def hidden_dims(structures: Mapping[float, EncoderStructure]) -> pd.DataFrame:
    """Per target sparsity and block (1-based): the hidden dimensions the block works at."""
    return pd.DataFrame(
        {"target": _target(sparsity), "block": i, "hidden": block.width(structure.d_model)}
        for sparsity, structure in sorted(structures.items())
        for i, block in enumerate(structure.blocks, 1)
    )


def plot_hidden_dims(
    structures: Mapping[float, EncoderStructure],
    config: ModelConfig,
    stem: str | os.PathLike,
    title: str,
) -> list[Path]:
    """Fig. 2b: one line per target over the blocks; the teacher's width dashed."""
    data = hidden_dims(structures)
    with sns.axes_style(STYLE):
        fig = Figure(figsize=(6.5, 3.5), layout="constrained")
        ax = fig.subplots()
        sns.lineplot(
            data=data, x="block", y="hidden", hue="target", style="target", markers=True, ax=ax
        )
    ax.axhline(config.d_model, color="grey", linestyle="--", label=f"teacher ({config.d_model})")
    ax.set(xlabel="block", ylabel="kept hidden dimensions", title=title)
    ax.set_ylim(0, config.d_model * 1.05)
    ax.set_xticks(sorted(data["block"].unique()))
    ax.legend(title="target", fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    return save_figure(fig, stem)


# -----------------------------------------------------------------------------
# WER against RTF


def pareto_front(points: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Rows no other row beats on both ``x`` and ``y`` (lower is better), by ``x``."""
    ordered = points.sort_values([x, y])
    return ordered[ordered[y] < ordered[y].cummin().shift(fill_value=math.inf)]


# deploy.csv's WER column suffix of each (backend, precision) of speed_deploy.csv
BACKEND_COLUMNS = {
    ("torch", "fp32"): ("torch", "PyTorch"),
    ("onnxruntime", "fp32"): ("fp32", "ORT fp32"),
    ("onnxruntime", "int8"): ("int8", "ORT int8"),
}


def fastest_backend(deploy: pd.DataFrame, speed: pd.DataFrame, threads: int = 1) -> pd.DataFrame:
    """Per deployed model, its fastest backend's encoder RTF at ``threads`` and that
    backend's WERs: ``deploy`` is ``tables/deploy.csv``, ``speed`` ``speed_deploy.csv``."""
    at = speed[speed["threads"] == threads]
    if at.empty:
        raise AsrpruneError(f"speed_deploy: no rows at {threads} thread(s)")
    wer = deploy.set_index("model")
    rows = []
    for model, group in at.groupby("model", sort=False):
        best = group.loc[group["rtf_encoder"].idxmin()]
        suffix, label = BACKEND_COLUMNS[(best["backend"], best["precision"])]
        method, sparsity = (TEACHER, 0.0) if model == TEACHER else parse_model_name(str(model))[:2]
        rows.append(
            {
                "model": model,
                "method": method,
                "sparsity": sparsity,
                "backend": label,
                "rtf": float(best["rtf_encoder"]),
                "wer_test_clean": float(wer.loc[model, f"wer_test_clean_{suffix}"]),
                "wer_test_other": float(wer.loc[model, f"wer_test_other_{suffix}"]),
            }
        )
    return pd.DataFrame(rows)


def _wer_rtf_panel(ax, data: pd.DataFrame, column: str, title: str, style: str, x: str) -> None:
    front = pareto_front(data, "rtf", column)
    ax.step(front["rtf"], front[column], where="post", color="grey", linestyle=":", zorder=0)
    sns.scatterplot(data=data, x="rtf", y=column, hue="method", style=style, s=70, ax=ax)
    for row in data.itertuples(index=False):
        if row.method != TEACHER:
            xy = (row.rtf, getattr(row, column))
            ax.annotate(row.target, xy, xytext=(3, 3), textcoords="offset points", fontsize=7)
    ax.set(xlabel=x, ylabel=f"{title} WER %", title=title)


def plot_wer_rtf(
    table: pd.DataFrame, stem: str | os.PathLike, fastest: pd.DataFrame | None = None
) -> list[Path]:
    """WER against RTF, one panel per test split; ``table`` as ``tables.build_table`` gives.
    ``fastest`` (:func:`fastest_backend`): a second row, each deployed model on its fastest
    backend at one thread."""
    rows = [(table, "method", "RTF (encoder, PyTorch, 1 thread)")]
    if fastest is not None:
        rows.append((fastest, "backend", "RTF (encoder, fastest backend, 1 thread)"))
    splits = {"wer_test_clean": "test-clean", "wer_test_other": "test-other"}
    with sns.axes_style(STYLE):
        fig = Figure(figsize=(11.0, 4.0 * len(rows)), layout="constrained")
        axes = fig.subplots(len(rows), len(splits), squeeze=False)
    for row_axes, (data, style, x) in zip(axes, rows, strict=True):
        data = data.assign(target=[_target(s) for s in data["sparsity"]])
        for ax, (column, split) in zip(row_axes, splits.items(), strict=True):
            _wer_rtf_panel(ax, data, column, split, style, x)
        row_axes[0].get_legend().remove()
        sns.move_legend(row_axes[-1], "upper left", bbox_to_anchor=(1.02, 1))
    return save_figure(fig, stem)


# -----------------------------------------------------------------------------
# expected kept fraction against target over training


def plot_kept_vs_target(
    histories: Mapping[str, pd.DataFrame], stem: str | os.PathLike
) -> list[Path]:
    """One panel per L0 method; per target, the expected kept fraction (solid) and the
    target schedule (dashed). ``histories``: model name -> ``read_history``, each with
    ``method`` and ``sparsity`` columns added."""
    long = pd.concat(histories.values(), ignore_index=True).melt(
        id_vars=["method", "sparsity", "step"],
        value_vars=["expected_kept", "target_kept"],
        var_name="series",
        value_name="kept",
    )
    long["target"] = [_target(s) for s in long["sparsity"]]
    long["series"] = long["series"].map({"expected_kept": "expected", "target_kept": "target"})
    methods = list(dict.fromkeys(long["method"]))
    cols = min(3, len(methods))
    rows = math.ceil(len(methods) / cols)
    with sns.axes_style(STYLE):
        fig = Figure(figsize=(4.2 * cols + 1.5, 3.2 * rows), layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False, sharey=True).flatten()
    for ax, method in zip(axes, methods, strict=False):
        sns.lineplot(
            data=long[long["method"] == method],
            x="step",
            y="kept",
            hue="target",
            style="series",
            ax=ax,
        )
        ax.set(title=method, xlabel="pruning step", ylabel="kept fraction of the budget")
        ax.get_legend().remove()
    # one legend for all panels: every panel has the same targets and series
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize="small")
    for ax in axes[len(methods) :]:
        ax.set_visible(False)
    return save_figure(fig, stem)


# -----------------------------------------------------------------------------
# a run's figures


def write_figures(
    *,
    metrics_dir: str | os.PathLike,
    summaries: Sequence[str | os.PathLike],
    speed_path: str | os.PathLike,
    teacher_model: str | os.PathLike,
    methods: Sequence[str],
    sparsities: Sequence[float],
    out_dir: str | os.PathLike,
    deploy_table: str | os.PathLike | None = None,
    speed_deploy: str | os.PathLike | None = None,
) -> list[Path]:
    """Every figure ``layout.figure_names(methods)`` names, as PNG and PDF under ``out_dir``.

    ``summaries``: pruning summary files (``<model>.json``), one per L0 job; the others'
    are not read. ``deploy_table`` and ``speed_deploy``: the deploy stage's
    ``tables/deploy.csv`` and ``speed_deploy.csv`` (both or neither), for the fastest
    backend's row of ``wer_rtf``.
    """
    if (deploy_table is None) != (speed_deploy is None):
        raise AsrpruneError("figures: give the deploy table and speed_deploy.csv together")
    names = figure_names(methods)  # checks the methods
    out = Path(out_dir)
    written: list[Path] = []
    structure_methods = [m for m in methods if m in OURS]
    if structure_methods:
        config = teacher_config(teacher_model)
        at = structure_sparsity(sparsities)
    for method in structure_methods:
        structures = {
            s: read_structure(Path(metrics_dir) / f"{model_name(method, s)}.json")
            for s in sparsities
        }
        title = f"{method}, target {_target(at)}"
        written += plot_module_retention(
            structures[at], config, out / f"fig2a_modules_{method}", title
        )
        written += plot_hidden_dims(structures, config, out / f"fig2b_hidden_{method}", method)
    table = build_table(metrics_dir, speed_path, methods, sparsities)
    fastest = None
    if deploy_table is not None:
        from asrprune.results.deploy import read_deploy_speed

        fastest = fastest_backend(pd.read_csv(deploy_table), read_deploy_speed(speed_deploy))
    written += plot_wer_rtf(table, out / "wer_rtf", fastest)
    if "kept_vs_target" in names:
        given = {Path(path).stem: Path(path) for path in summaries}
        histories = {}
        for name, method, sparsity in (
            (model_name(m, s), m, s) for m in methods if m in L0_METHODS for s in sorted(sparsities)
        ):
            if name not in given:
                raise AsrpruneError(f"summaries: no pruning summary {name}.json among them")
            histories[name] = read_history(given[name]).assign(method=method, sparsity=sparsity)
        written += plot_kept_vs_target(histories, out / "kept_vs_target")
    return written
