"""Does pruning cost more on text the model never saw than on text like its training text?

For each pruned job: greedy WER of the teacher and of the pruned model on test-clean
(held-out books of a training domain) and on test-newtext (a text domain never trained
on), both read by training voices, clean. Pruning's relative loss on a split is
``100 * (WER_pruned / WER_teacher - 1)``; the *gap* is the out-of-domain loss minus the
in-domain loss, in points of relative loss. Its 95% interval comes from a bootstrap that
resamples each split's utterances, teacher and pruned model paired on every utterance
(and a job's replicates averaged per utterance first, as :mod:`significance` does), so it
holds what the choice of sentences adds. A gap whose interval lies above 0 says pruning
costs more out of domain.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from asrprune.errors import AsrpruneError
from asrprune.results.layout import ONE_SEED, TEACHER, Replicates
from asrprune.results.markdown import markdown_table
from asrprune.results.significance import read_hyps, replicate_errors

IN_SPLIT, OUT_SPLIT = "test-clean", "test-newtext"
COLUMNS = (
    "sparsity",
    "method",
    "seeds",
    "teacher_in",
    "pruned_in",
    "loss_in_pct",
    "teacher_out",
    "pruned_out",
    "loss_out_pct",
    "gap_pct",
    "gap_ci_low",
    "gap_ci_high",
    "gap_positive",
)


def _job_errors(
    metrics_dir: str | os.PathLike, models: Sequence[str], split: str, teacher: tuple
) -> np.ndarray:
    """Per utterance of ``split``: the job's word errors, averaged over its replicates
    ``models``, checked to be on the teacher's utterances (``teacher``:
    :func:`replicate_errors` of the teacher's hypotheses)."""
    runs = [read_hyps(metrics_dir, m, split) for m in models]
    ids_p, refs_p, err_p, _ = replicate_errors(runs, models[0], split)
    if ids_p != teacher[0] or refs_p != teacher[1]:
        raise AsrpruneError(f"{split}: {models[0]} and the teacher decoded different utterances")
    return err_p


def teacher_errors(metrics_dir: str | os.PathLike) -> dict[str, tuple]:
    """The teacher's :func:`replicate_errors` on both splits, read and scored once."""
    return {
        split: replicate_errors([read_hyps(metrics_dir, TEACHER, split)], TEACHER, split)
        for split in (IN_SPLIT, OUT_SPLIT)
    }


def relative_loss(err_teacher: np.ndarray, err_pruned: np.ndarray, axis: int = -1) -> np.ndarray:
    """100 * (WER_pruned / WER_teacher - 1) over the utterances on ``axis`` (the reference
    words cancel: both decoded the same utterances)."""
    teacher = err_teacher.sum(axis=axis)
    if np.any(teacher <= 0):
        raise AsrpruneError("the teacher made no word error: relative loss is undefined")
    return 100.0 * (err_pruned.sum(axis=axis) / teacher - 1.0)


def shift_row(
    metrics_dir: str | os.PathLike,
    models: Sequence[str],
    resamples: int = 2000,
    seed: int = 0,
    teacher: dict[str, tuple] | None = None,
) -> dict:
    """In- and out-of-domain WER and loss of one job (its replicates ``models``), with the
    bootstrap interval of the gap. ``teacher``: :func:`teacher_errors`, if already read."""
    teacher = teacher_errors(metrics_dir) if teacher is None else teacher
    rng = np.random.default_rng(seed)
    out = {"seeds": len(models)}
    losses = {}
    for side, split in (("in", IN_SPLIT), ("out", OUT_SPLIT)):
        err_t, words = teacher[split][2], teacher[split][3]
        err_p = _job_errors(metrics_dir, models, split, teacher[split])
        out[f"teacher_{side}"] = 100.0 * err_t.sum() / words.sum()
        out[f"pruned_{side}"] = 100.0 * err_p.sum() / words.sum()
        out[f"loss_{side}_pct"] = float(relative_loss(err_t, err_p))
        draws = rng.integers(0, len(err_t), size=(resamples, len(err_t)))
        losses[side] = relative_loss(err_t[draws], err_p[draws], axis=1)
    gaps = losses["out"] - losses["in"]
    low, high = np.percentile(gaps, [2.5, 97.5])
    out["gap_pct"] = out["loss_out_pct"] - out["loss_in_pct"]
    out["gap_ci_low"], out["gap_ci_high"] = float(low), float(high)
    out["gap_positive"] = float((gaps > 0).mean())
    return out


def build_shift_table(
    metrics_dir: str | os.PathLike,
    methods: Sequence[str],
    sparsities: Sequence[float],
    replicates: Replicates = ONE_SEED,
    **options,
) -> pd.DataFrame:
    """One row per (sparsity, method) job, ascending sparsity then the given order."""
    teacher = teacher_errors(metrics_dir)
    rows = [
        {
            "sparsity": s,
            "method": m,
            **shift_row(metrics_dir, replicates.names(m, s), teacher=teacher, **options),
        }
        for s in sorted(sparsities)
        for m in methods
    ]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def shift_markdown(table: pd.DataFrame) -> str:
    """The table as the results document prints it, with how to read it."""
    header = (
        "Sparsity",
        "Method",
        f"{IN_SPLIT} WER (teacher → pruned)",
        "loss in domain",
        f"{OUT_SPLIT} WER (teacher → pruned)",
        "loss out of domain",
        "gap [95% interval]",
    )
    rows, previous = [], None
    for r in table.itertuples(index=False):
        gap = f"{r.gap_pct:+.1f}"
        if r.gap_ci_low > 0:
            gap = f"**{gap}**"
        elif r.gap_ci_high < 0:
            gap = f"*{gap}*"
        rows.append(
            (
                "" if r.sparsity == previous else f"{r.sparsity:.0%}",
                r.method + (f" ({r.seeds} seeds)" if r.seeds > 1 else ""),
                f"{r.teacher_in:.2f} → {r.pruned_in:.2f}",
                f"{r.loss_in_pct:+.1f}%",
                f"{r.teacher_out:.2f} → {r.pruned_out:.2f}",
                f"{r.loss_out_pct:+.1f}%",
                f"{gap} [{r.gap_ci_low:+.1f}, {r.gap_ci_high:+.1f}]",
            )
        )
        previous = r.sparsity
    note = (
        "\nGreedy WER %. Loss: pruning's relative WER increase over the teacher on the split. "
        "Gap: out-of-domain loss minus in-domain loss (points of relative loss), with its "
        "95% bootstrap interval over utterances; bold: pruning costs more out of domain "
        "(interval above 0), italic: less.\n"
    )
    return markdown_table(header, rows, left=2) + note
