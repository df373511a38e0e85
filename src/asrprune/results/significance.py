"""Is one model's WER really lower than another's? A paired bootstrap over utterances.

Two models decoded the same utterances (``metrics/<model>.hyps/<split>.jsonl``). Drawing
the test set's utterances again with replacement, many times, and scoring both models on
each draw shows how much of their WER difference could come from which sentences the
test set happens to hold (the paired bootstrap of Bisani and Ney, ICASSP 2004). On 500
utterances of about 12 words a WER near 25% moves by about half a point from that alone,
so differences of that size between methods are not findings.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from asrprune.errors import AsrpruneError
from asrprune.evaluate import word_errors
from asrprune.io import read_jsonl
from asrprune.results.layout import REFERENCE, model_name

# What the tables' significance files test: the splits of Table 1's WER columns.
TEST_SPLITS = ("test-clean", "test-other")


@dataclass(frozen=True)
class Comparison:
    """WER (%) of models a and b on one split, and the bootstrap spread of a - b."""

    split: str
    a: str
    b: str
    utterances: int
    wer_a: float
    wer_b: float
    delta: float  # wer_a - wer_b: negative when a is better
    ci_low: float  # 95% interval of the delta over resamples
    ci_high: float
    a_better: float  # fraction of resamples where a's WER is below b's


def utterance_errors(rows: list[dict]) -> dict[str, tuple[str, int, int]]:
    """Utterance id to (reference, word errors, reference words) from hypotheses rows,
    scored as the evaluation scores a corpus."""
    out = {}
    for row in rows:
        w = word_errors([row["ref"]], [row["hyp"]])
        out[row["id"]] = (row["ref"], w.substitutions + w.deletions + w.insertions, w.ref_words)
    return out


def paired_bootstrap(
    rows_a: list[dict],
    rows_b: list[dict],
    *,
    split: str = "",
    names: tuple[str, str] = ("a", "b"),
    resamples: int = 2000,
    seed: int = 0,
) -> Comparison:
    """Compare two models' hypotheses of the same utterances (rows: id, ref, hyp)."""
    a, b = utterance_errors(rows_a), utterance_errors(rows_b)
    if a.keys() != b.keys():
        only = sorted(a.keys() ^ b.keys())
        raise AsrpruneError(
            f"{split or 'split'}: {names[0]} and {names[1]} decoded different utterances "
            f"({len(only)} in one only, e.g. {only[0]!r})"
        )
    ids = sorted(a)
    if not ids:
        raise AsrpruneError(f"{split or 'split'}: no utterance to compare")
    for i in ids:
        if a[i][0] != b[i][0]:
            raise AsrpruneError(f"{split or 'split'}: utterance {i!r} has two references")
    err_a = np.array([a[i][1] for i in ids], dtype=np.int64)
    err_b = np.array([b[i][1] for i in ids], dtype=np.int64)
    words = np.array([a[i][2] for i in ids], dtype=np.int64)
    draws = np.random.default_rng(seed).integers(0, len(ids), size=(resamples, len(ids)))
    n = words[draws].sum(axis=1)
    diff = 100.0 * (err_a[draws].sum(axis=1) - err_b[draws].sum(axis=1)) / n
    wer_a = 100.0 * err_a.sum() / words.sum()
    wer_b = 100.0 * err_b.sum() / words.sum()
    low, high = np.percentile(diff, [2.5, 97.5])
    return Comparison(
        split=split,
        a=names[0],
        b=names[1],
        utterances=len(ids),
        wer_a=float(wer_a),
        wer_b=float(wer_b),
        delta=float(wer_a - wer_b),
        ci_low=float(low),
        ci_high=float(high),
        a_better=float((diff < 0).mean()),
    )


def read_hyps(metrics_dir: str | os.PathLike, model: str, split: str) -> list[dict]:
    """The ``{"id", "ref", "hyp"}`` rows rule evaluate saved for ``model`` on ``split``."""
    path = Path(metrics_dir) / f"{model}.hyps" / f"{split}.jsonl"
    if not path.is_file():
        raise AsrpruneError(f"{path}: no hypotheses (run rule evaluate for {model})")
    return read_jsonl(path)


def compare_models(
    metrics_dir: str | os.PathLike, a: str, b: str, splits: list[str], **options
) -> list[Comparison]:
    """Compare models ``a`` and ``b`` of a run on each split, from their saved hypotheses."""
    out = []
    for split in splits:
        rows = [read_hyps(metrics_dir, name, split) for name in (a, b)]
        out.append(paired_bootstrap(*rows, split=split, names=(a, b), **options))
    return out


def reference_comparisons(
    metrics_dir: str | os.PathLike,
    others: Sequence[str],
    sparsities: Sequence[float],
    splits: Sequence[str] = TEST_SPLITS,
    **options,
) -> pd.DataFrame:
    """``l0-params`` against each of ``others`` at each sparsity, on each split.

    One row per (sparsity, method, split), ascending sparsity then the given order, with
    the ``Comparison`` fields (``a`` is ours). Every pair draws the same resamples
    (``seed``), as ``asrprune compare`` does, so its numbers are the command's.
    """
    rows = [
        {"sparsity": s, "method": other, **asdict(c)}
        for s in sorted(sparsities)
        for other in others
        for c in compare_models(
            metrics_dir, model_name(REFERENCE, s), model_name(other, s), list(splits), **options
        )
    ]
    return pd.DataFrame(rows)


def _cell(c) -> str:
    """``+0.41 [-0.22, +1.00]``: bold when ours is better beyond chance, italic worse."""
    delta = f"{c.delta:+.2f}"
    if c.ci_high < 0:
        delta = f"**{delta}**"
    elif c.ci_low > 0:
        delta = f"*{delta}*"
    return f"{delta} [{c.ci_low:+.2f}, {c.ci_high:+.2f}]"


def comparisons_markdown(table: pd.DataFrame) -> str:
    """One row per sparsity, one column per method, the splits' cells joined by " / "."""
    methods = list(dict.fromkeys(table["method"]))
    splits = list(dict.fromkeys(table["split"]))
    header = ["Sparsity", *(f"{REFERENCE} against {m}" for m in methods)]
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(["---"] * len(header)) + " |",
    ]
    for sparsity, group in table.groupby("sparsity", sort=True):
        cells = [f"{sparsity:.0%}"]
        for method in methods:
            rows = group[group["method"] == method].set_index("split")
            cells.append(" / ".join(_cell(rows.loc[s]) for s in splits))
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        f"\nWER difference in points ({REFERENCE} minus the other; {' / '.join(splits)}) "
        "and its 95% paired-bootstrap interval. Bold: ours better, the interval excludes 0; "
        "italic: ours worse, likewise.\n"
    )
    return "\n".join(lines) + "\n" + note
