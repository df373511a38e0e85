"""Paired bootstrap of two models' WER over the same utterances."""

from __future__ import annotations

import pytest

from asrprune.cli import main
from asrprune.errors import AsrpruneError
from asrprune.results.significance import (
    compare_models,
    comparisons_markdown,
    paired_bootstrap,
    reference_comparisons,
)
from tests.results.runs import WRONG, write_hyps
from tests.results.runs import hyps_rows as rows


def test_wer_and_difference_are_the_corpus_ones():
    c = paired_bootstrap(rows(10), rows(0), names=("x", "y"))
    assert c.wer_a == pytest.approx(100 * 10 / 360) and c.wer_b == 0.0
    assert c.delta == pytest.approx(c.wer_a) and c.utterances == 40
    assert c.ci_low > 0 and c.a_better == 0.0  # every resample: x worse


def test_identical_models_differ_by_nothing():
    c = paired_bootstrap(rows(7), rows(7))
    assert c.delta == c.ci_low == c.ci_high == 0.0 and c.a_better == 0.0


def test_one_error_either_way_is_not_a_finding():
    one_a, one_b = rows(0), rows(0)
    one_a[0]["hyp"] = WRONG
    one_b[1]["hyp"] = "the quick brown dog jumps over the lazy dog"
    c = paired_bootstrap(one_a, one_b, resamples=4000)
    assert c.delta == 0.0 and c.ci_low < 0 < c.ci_high
    assert 0.2 < c.a_better < 0.5  # ties count as not better


def test_different_utterances_or_references_are_refused():
    with pytest.raises(AsrpruneError, match="decoded different utterances"):
        paired_bootstrap(rows(0, n=5), rows(0, n=6), split="dev")
    other = rows(0, n=5)
    other[2]["ref"] = "a different sentence"
    other[2]["hyp"] = "a different sentence"
    with pytest.raises(AsrpruneError, match="'u002' has two references"):
        paired_bootstrap(rows(0, n=5), other)


def test_compare_reads_a_runs_hypotheses_and_the_cli_prints_a_table(tmp_path, capsys):
    write_hyps(tmp_path, "ours", "test-clean", rows(2))
    write_hyps(tmp_path, "svd", "test-clean", rows(12))
    (c,) = compare_models(tmp_path, "ours", "svd", ["test-clean"])
    assert c.delta < 0 and c.a_better > 0.95
    assert (
        main(["compare", "ours", "svd", "--metrics-dir", str(tmp_path), "--splits", "test-clean"])
        == 0
    )
    out = capsys.readouterr().out
    assert "| test-clean | 0.56 | 3.33 | -2.78 |" in out
    with pytest.raises(AsrpruneError, match=r"ours.hyps/test-other.jsonl: no hypotheses"):
        compare_models(tmp_path, "ours", "svd", ["test-other"])


def test_compare_pools_replicates_and_reads_the_full_decoding(tmp_path, capsys):
    for seed, (ours, svd) in enumerate([(2, 12), (4, 4)]):
        suffix = f"-seed{seed}" if seed else ""
        write_hyps(tmp_path, f"l0-params-s0.5{suffix}", "full/test-clean", rows(ours))
        write_hyps(tmp_path, f"svd-s0.5{suffix}", "full/test-clean", rows(svd))
    args = ["compare", "l0-params-s0.5", "svd-s0.5", "--metrics-dir", str(tmp_path)]
    assert main([*args, "--splits", "full/test-clean", "--seeds", "2"]) == 0
    out = capsys.readouterr().out  # the means over both seeds: (2+4)/2 and (12+4)/2 errors
    assert f"| full/test-clean | {100 * 3 / 360:.2f} | {100 * 8 / 360:.2f} |" in out
    assert main([*args, "--splits", "full/test-clean"]) == 0  # seed 0 alone
    assert f"| {100 * 2 / 360:.2f} | {100 * 12 / 360:.2f} |" in capsys.readouterr().out


def test_reference_comparisons_mark_findings_both_ways(tmp_path):
    for split in ("test-clean", "test-other"):
        write_hyps(tmp_path, "l0-params-s0.5", split, rows(6))
        write_hyps(tmp_path, "omp-s0.5", split, rows(30))  # ours better beyond chance
        write_hyps(tmp_path, "svd-s0.5", split, rows(0))  # ours worse beyond chance
        write_hyps(tmp_path, "parp-s0.5", split, rows(6))  # level
    table = reference_comparisons(tmp_path, ["omp", "svd", "parp"], [0.5])
    assert list(zip(table["method"], table["split"], strict=True)) == [
        (m, s) for m in ("omp", "svd", "parp") for s in ("test-clean", "test-other")
    ]
    assert set(table["a"]) == {"l0-params-s0.5"}
    omp = table[table["method"] == "omp"].iloc[0]
    assert omp["delta"] == pytest.approx(100 * (6 - 30) / 360) and omp["ci_high"] < 0
    # the command's numbers: same resamples, same seed
    (c,) = compare_models(tmp_path, "l0-params-s0.5", "omp-s0.5", ["test-clean"])
    assert (c.ci_low, c.ci_high) == (omp["ci_low"], omp["ci_high"])

    md = comparisons_markdown(table).splitlines()
    assert (
        md[0]
        == "| Sparsity | l0-params against omp | l0-params against svd | l0-params against parp |"
    )
    cells = md[2].split(" | ")
    assert cells[0] == "| 50%"
    assert cells[1].startswith("**-6.67** [") and cells[1].count("**-6.67**") == 2
    assert cells[2].startswith("*+1.67* [")
    assert cells[3] == "+0.00 [+0.00, +0.00] / +0.00 [+0.00, +0.00] |"
