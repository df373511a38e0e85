"""In- against out-of-domain loss of pruning: the numbers, the interval and the table."""

import numpy as np
import pytest

from asrprune.errors import AsrpruneError
from asrprune.results import domain_shift as DS
from tests.results.runs import hyps_rows as rows
from tests.results.runs import write_hyps

N = 200  # utterances of 9 words per split


def _write(metrics, teacher_in, teacher_out, jobs):
    """Teacher and jobs' hypotheses: each value is the number of wrong utterances."""
    write_hyps(metrics, "teacher", DS.IN_SPLIT, rows(teacher_in, N))
    write_hyps(metrics, "teacher", DS.OUT_SPLIT, rows(teacher_out, N))
    for name, (wrong_in, wrong_out) in jobs.items():
        write_hyps(metrics, name, DS.IN_SPLIT, rows(wrong_in, N))
        write_hyps(metrics, name, DS.OUT_SPLIT, rows(wrong_out, N))


def test_losses_are_relative_to_the_teacher_on_each_split(tmp_path):
    _write(tmp_path, 20, 40, {"omp-s0.5": (30, 60)})
    row = DS.shift_row(tmp_path, ["omp-s0.5"])
    assert row["teacher_in"] == pytest.approx(100 * 20 / (9 * N))
    assert row["pruned_out"] == pytest.approx(100 * 60 / (9 * N))
    assert row["loss_in_pct"] == pytest.approx(50.0)
    assert row["loss_out_pct"] == pytest.approx(50.0)
    assert row["gap_pct"] == pytest.approx(0.0)
    assert row["gap_ci_low"] < 0 < row["gap_ci_high"]  # same loss: no finding


def test_a_loss_twice_as_large_out_of_domain_is_a_finding(tmp_path):
    _write(tmp_path, 20, 20, {"omp-s0.5": (24, 60)})
    row = DS.shift_row(tmp_path, ["omp-s0.5"])
    assert row["loss_in_pct"] == pytest.approx(20.0)
    assert row["loss_out_pct"] == pytest.approx(200.0)
    assert row["gap_ci_low"] > 0 and row["gap_positive"] == 1.0


def test_replicates_are_averaged_per_utterance(tmp_path):
    _write(tmp_path, 20, 20, {"svd-s0.5": (20, 20), "svd-s0.5-seed1": (40, 40)})
    row = DS.shift_row(tmp_path, ["svd-s0.5", "svd-s0.5-seed1"])
    assert row["seeds"] == 2
    assert row["loss_in_pct"] == pytest.approx(50.0) == row["loss_out_pct"]


def test_a_perfect_teacher_or_other_utterances_are_refused(tmp_path):
    with pytest.raises(AsrpruneError, match="no word error"):
        DS.relative_loss(np.zeros(3), np.ones(3))
    _write(tmp_path, 20, 20, {"omp-s0.5": (20, 20)})
    write_hyps(tmp_path, "omp-s0.5", DS.OUT_SPLIT, rows(20, N - 1))
    with pytest.raises(AsrpruneError, match="different utterances"):
        DS.shift_row(tmp_path, ["omp-s0.5"])


def test_table_and_markdown(tmp_path):
    _write(tmp_path, 20, 20, {"omp-s0.5": (24, 60), "svd-s0.5": (30, 30)})
    table = DS.build_shift_table(tmp_path, ["omp", "svd"], [0.5])
    assert list(table.columns) == list(DS.COLUMNS)
    assert list(table["method"]) == ["omp", "svd"]
    text = DS.shift_markdown(table)
    omp, svd = text.splitlines()[2:4]
    assert omp.startswith("| 50% | omp |") and "**+180.0**" in omp
    assert svd.startswith("|  | svd |") and "+0.0 [" in svd and "**" not in svd
