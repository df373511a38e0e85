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
from asrprune.evaluate import FULL_HYPS, word_errors
from asrprune.io import read_jsonl
from asrprune.results.layout import ONE_SEED, REFERENCE, Replicates, among
from asrprune.results.markdown import markdown_table

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
    seeds: int = 1  # replicates pooled on a's side (config prune.seeds)
    seeds_b: int = 1  # on b's (fewer where prune.seed_methods leaves b out)


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
    return pooled_bootstrap(
        [rows_a], [rows_b], split=split, names=names, resamples=resamples, seed=seed
    )


def replicate_errors(runs: list[list[dict]], label: str, split: str):
    """Per utterance (sorted ids): reference, word errors averaged over the replicates'
    runs, reference words; every run must hold the same utterances and references."""
    scored = [utterance_errors(rows) for rows in runs]
    first = scored[0]
    for other in scored[1:]:
        if other.keys() != first.keys() or any(other[i][0] != first[i][0] for i in first):
            raise AsrpruneError(
                f"{split or 'split'}: the replicates of {label} differ in utterances"
            )
    ids = sorted(first)
    errors = np.array([[run[i][1] for i in ids] for run in scored], dtype=np.float64).mean(0)
    return ids, {i: first[i][0] for i in ids}, errors, np.array([first[i][2] for i in ids])


def pooled_bootstrap(
    runs_a: list[list[dict]],
    runs_b: list[list[dict]],
    *,
    split: str = "",
    names: tuple[str, str] = ("a", "b"),
    resamples: int = 2000,
    seed: int = 0,
) -> Comparison:
    """Compare two jobs, each decoded by one model per replicate (config prune.seeds), on
    the same utterances: per utterance, each job's word errors are averaged over its
    replicates, then the utterances are resampled. The WERs are the means over the
    replicates, and the interval holds what the choice of sentences adds to their
    difference. One run a side is the plain paired bootstrap."""
    ids_a, refs_a, err_a, words = replicate_errors(runs_a, names[0], split)
    ids_b, refs_b, err_b, _ = replicate_errors(runs_b, names[1], split)
    if ids_a != ids_b:
        only = sorted(set(ids_a) ^ set(ids_b))
        raise AsrpruneError(
            f"{split or 'split'}: {names[0]} and {names[1]} decoded different utterances "
            f"({len(only)} in one only, e.g. {only[0]!r})"
        )
    if not ids_a:
        raise AsrpruneError(f"{split or 'split'}: no utterance to compare")
    for i in ids_a:
        if refs_a[i] != refs_b[i]:
            raise AsrpruneError(f"{split or 'split'}: utterance {i!r} has two references")
    draws = np.random.default_rng(seed).integers(0, len(ids_a), size=(resamples, len(ids_a)))
    n = words[draws].sum(axis=1)
    diff = 100.0 * (err_a[draws].sum(axis=1) - err_b[draws].sum(axis=1)) / n
    wer_a = 100.0 * err_a.sum() / words.sum()
    wer_b = 100.0 * err_b.sum() / words.sum()
    low, high = np.percentile(diff, [2.5, 97.5])
    return Comparison(
        split=split,
        a=names[0],
        b=names[1],
        utterances=len(ids_a),
        wer_a=float(wer_a),
        wer_b=float(wer_b),
        delta=float(wer_a - wer_b),
        ci_low=float(low),
        ci_high=float(high),
        a_better=float((diff < 0).mean()),
        seeds=len(runs_a),
        seeds_b=len(runs_b),
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
    return compare_jobs(metrics_dir, [a], [b], splits, **options)


def compare_jobs(
    metrics_dir: str | os.PathLike,
    a: Sequence[str],
    b: Sequence[str],
    splits: Sequence[str],
    **options,
) -> list[Comparison]:
    """Compare two jobs, given as their replicates' models (seed 0's first, which names
    the job in the result), on each split: :func:`pooled_bootstrap`."""
    out = []
    for split in splits:
        runs = [[read_hyps(metrics_dir, name, split) for name in job] for job in (a, b)]
        out.append(pooled_bootstrap(*runs, split=split, names=(a[0], b[0]), **options))
    return out


def reference_comparisons(
    metrics_dir: str | os.PathLike,
    others: Sequence[str],
    sparsities: Sequence[float],
    splits: Sequence[str] = TEST_SPLITS,
    replicates: Replicates = ONE_SEED,
    **options,
) -> pd.DataFrame:
    """``l0-params`` against each of ``others`` at each sparsity, on each split, pooling
    each job's replicates.

    One row per (sparsity, method, split), ascending sparsity then the given order, with
    the ``Comparison`` fields (``a`` is ours). Every pair draws the same resamples
    (``seed``), as ``asrprune compare`` does, so its numbers are the command's.
    """
    rows = [
        {"sparsity": s, "method": other, **asdict(c)}
        for s in sorted(sparsities)
        for other in others
        for c in compare_jobs(
            metrics_dir,
            replicates.names(REFERENCE, s),
            replicates.names(other, s),
            splits,
            **options,
        )
    ]
    return pd.DataFrame(rows)


def decoding_comparisons(
    metrics_dir: str | os.PathLike,
    others: Sequence[str],
    sparsities: Sequence[float],
    full_sparsities: Sequence[float] = (),
    replicates: Replicates = ONE_SEED,
    **options,
) -> pd.DataFrame:
    """:func:`reference_comparisons` with greedy search at every sparsity, then with the
    full decoding (beam and LM; the hypotheses under ``<model>.hyps/full/``) at those of
    ``full_sparsities`` that are in ``sparsities``; a ``decoding`` column says which."""
    greedy = reference_comparisons(
        metrics_dir, others, sparsities, TEST_SPLITS, replicates, **options
    )
    frames = [greedy.assign(decoding="greedy")]
    full_at = [s for s in sorted(sparsities) if among(s, full_sparsities)]
    if full_at:
        splits = [f"{FULL_HYPS}/{split}" for split in TEST_SPLITS]
        full = reference_comparisons(metrics_dir, others, full_at, splits, replicates, **options)
        frames.append(full.assign(decoding="full", split=full["split"].str.split("/").str[-1]))
    return pd.concat(frames, ignore_index=True)


def interval_cell(c) -> str:
    """``+0.41 [-0.22, +1.00]`` from ``c``'s delta and interval: bold when the first model
    is better beyond chance, italic when worse."""
    delta = f"{c.delta:+.2f}"
    if c.ci_high < 0:
        delta = f"**{delta}**"
    elif c.ci_low > 0:
        delta = f"*{delta}*"
    return f"{delta} [{c.ci_low:+.2f}, {c.ci_high:+.2f}]"


def comparisons_markdown(table: pd.DataFrame) -> str:
    """One row per sparsity and decoding (greedy first), one column per method, the
    splits' cells joined by " / "."""
    if "decoding" not in table:
        table = table.assign(decoding="greedy")
    methods = list(dict.fromkeys(table["method"]))
    splits = list(dict.fromkeys(table["split"]))
    header = ["Sparsity", *(f"{REFERENCE} against {m}" for m in methods)]
    body = []
    for decoding in ("greedy", "full"):
        for sparsity, group in table[table["decoding"] == decoding].groupby("sparsity"):
            cells = [f"{sparsity:.0%}" + (", full decoding" if decoding == "full" else "")]
            for method in methods:
                rows = group[group["method"] == method].set_index("split")
                cells.append(" / ".join(interval_cell(rows.loc[s]) for s in splits))
            body.append(cells)
    pooled = ""
    if "seeds" in table and table["seeds"].max() > 1:
        ours = int(table["seeds"].max())
        theirs = sorted({int(n) for n in table.get("seeds_b", table["seeds"])})
        pooled = (
            f" (each side the mean over its {ours} replicates)"
            if theirs == [ours]
            else f" (ours the mean over its {ours} replicates, the other over its "
            f"{' or '.join(map(str, theirs))})"
        )
    note = (
        f"\nWER difference in points ({REFERENCE} minus the other; {' / '.join(splits)}) "
        f"and its 95% paired-bootstrap interval{pooled}, by greedy search, and by the full "
        "decoding (beam search with the LM) where the row says so. Bold: ours better, the "
        "interval excludes 0; italic: ours worse, likewise.\n"
    )
    return markdown_table(header, body, align=("---",) * len(header)) + note
