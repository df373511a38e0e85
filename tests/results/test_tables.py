"""Tables 1 and 2 from a fake run's result files: layout, row order, percentages, errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from asrprune.cli import main
from asrprune.errors import AsrpruneError
from asrprune.results.layout import (
    L0_METHODS,
    figure_names,
    full_decoding,
    significance_tables,
    structure_sparsity,
    table_methods,
    table_stems,
)
from asrprune.results.tables import COLUMNS, build_table, to_markdown, write_tables
from tests.results.runs import write_run

REQUIRED = [
    "sparsity",
    "method",
    "wer_test_clean",
    "wer_test_other",
    "rtf",
    "rtf_change_pct",
    "size_mb",
    "size_change_pct",
]


def test_l0_methods_are_the_pruning_methods_that_learn_gates():
    from asrprune.pruning.l0 import METHODS

    assert set(L0_METHODS) == set(METHODS)


def test_table_methods_split_ours_and_baselines_from_the_ablations():
    methods = ["omp", "l0-nokd", "l0-params", "svd", "l0-coarse"]
    assert table_methods(methods) == {
        "table1": ["omp", "l0-params", "svd"],
        "table2": ["l0-params", "l0-nokd", "l0-coarse"],
    }
    assert table_methods(["l0-params", "omp"]) == {"table1": ["l0-params", "omp"]}


def test_significance_tests_ours_against_rivals_in_each_table():
    methods = ["l0-flops", "omp", "l0-nokd", "l0-params", "svd"]
    assert significance_tables(methods) == {"table1": ["omp", "svd"], "table2": ["l0-nokd"]}
    assert table_stems(methods) == [
        "table1",
        "table1_significance",
        "table2",
        "table2_significance",
    ]
    # nothing to test without l0-params, or without a rival of it
    assert significance_tables(["l0-flops", "omp", "l0-nokd"]) == {}
    assert table_stems(["l0-flops", "omp", "l0-nokd"]) == ["table1", "table2"]
    assert table_stems(["l0-params", "l0-flops"]) == ["table1"]


def test_unknown_method_is_refused_by_name():
    with pytest.raises(AsrpruneError, match="unknown 'l0-magic'"):
        table_methods(["l0-params", "l0-magic"])


def test_figures_follow_the_methods_and_fig2a_prefers_half():
    assert figure_names(["omp"]) == ["wer_rtf"]
    assert figure_names(["l0-flops", "l0-nokd"]) == [
        "fig2a_modules_l0-flops",
        "fig2b_hidden_l0-flops",
        "wer_rtf",
        "kept_vs_target",
    ]
    assert structure_sparsity([0.2, 0.5, 0.7]) == 0.5
    assert structure_sparsity([0.3, 0.2]) == 0.3


def test_table1_rows_are_teacher_then_sparsity_by_method(tmp_path):
    run = write_run(tmp_path, ["l0-params", "omp"], [0.5, 0.3])
    table = build_table(run / "metrics", run / "speed.csv", ["l0-params", "omp"], [0.5, 0.3])
    assert list(table.columns[: len(REQUIRED)]) == REQUIRED == list(COLUMNS)
    assert list(zip(table["sparsity"], table["method"], strict=True)) == [
        (0.0, "teacher"),
        (0.3, "l0-params"),
        (0.3, "omp"),
        (0.5, "l0-params"),
        (0.5, "omp"),
    ]
    assert list(table["model"]) == [
        "teacher",
        "l0-params-s0.3",
        "omp-s0.3",
        "l0-params-s0.5",
        "omp-s0.5",
    ]
    teacher = table.iloc[0]
    assert teacher["rtf_change_pct"] == 0.0 and teacher["size_change_pct"] == 0.0


def test_changes_are_percent_of_the_teacher(tmp_path):
    run = write_run(tmp_path, ["l0-params"], [0.5], rtf={"teacher": 1.0, "l0-params-s0.5": 0.75})
    row = build_table(run / "metrics", run / "speed.csv", ["l0-params"], [0.5]).iloc[1]
    assert row["rtf"] == 0.75
    assert row["rtf_change_pct"] == pytest.approx(-25.0)
    assert row["size_mb"] == pytest.approx(5.0)  # 10 MB teacher, half removed
    assert row["size_change_pct"] == pytest.approx(-50.0)
    assert row["wer_test_clean"] == 11.0 and row["wer_test_other"] == 21.0
    assert row["achieved_sparsity"] == 0.5


def test_full_decoding_columns_are_filled_where_it_ran(tmp_path):
    run = write_run(tmp_path, ["l0-params"], [0.3, 0.5])
    table = build_table(run / "metrics", run / "speed.csv", ["l0-params"], [0.3, 0.5])
    full = table.set_index("model")[["wer_full_test_clean", "wer_full_test_other"]]
    assert list(full.loc["teacher"]) == [9.0, 19.0]
    assert full.loc["l0-params-s0.3"].isna().all()
    assert list(full.loc["l0-params-s0.5"]) == [11.0, 21.0]  # greedy 12 / 22, one better
    lines = to_markdown(table).splitlines()
    assert "| 30% | l0-params | 11.00 | 21.00 |  |  |" in lines[3]
    assert "| 50% | l0-params | 12.00 | 22.00 | 11.00 | 21.00 |" in lines[4]


def test_a_pruned_model_gets_the_full_decoding_at_the_configured_sparsities():
    assert full_decoding("teacher", [0.5]) and full_decoding("teacher", [])
    assert full_decoding("omp-s0.5", [0.5]) and not full_decoding("omp-s0.3", [0.5])
    assert full_decoding("l0-params-s0.3", None)  # null: every model
    with pytest.raises(AsrpruneError, match="neither"):
        full_decoding("student", [0.5])


def test_written_tables_round_trip_and_table2_needs_ablations(tmp_path):
    run = write_run(tmp_path / "a", ["l0-params", "omp"], [0.5])
    out = tmp_path / "a/tables"
    written = write_tables(run / "metrics", run / "speed.csv", ["l0-params", "omp"], [0.5], out)
    assert [p.name for p in written] == [
        "table1.csv",
        "table1.md",
        "table1_significance.csv",
        "table1_significance.md",
    ]
    csv = pd.read_csv(out / "table1.csv")
    assert list(csv["method"]) == ["teacher", "l0-params", "omp"]
    tested = pd.read_csv(out / "table1_significance.csv")
    assert list(tested["split"]) == ["test-clean", "test-other"]
    assert set(tested["a"]) == {"l0-params-s0.5"} and set(tested["b"]) == {"omp-s0.5"}
    # l0-params is model 1 (1 utterance of 40 wrong), omp model 2 (2 wrong): 9 words each
    assert tested["delta"].tolist() == pytest.approx([100 * (1 - 2) / 360] * 2)
    assert (
        (out / "table1_significance.md")
        .read_text()
        .startswith("| Sparsity | l0-params against omp |\n| --- | --- |\n| 50% | -0.28 [")
    )

    methods = ["l0-params", "l0-nohidden", "l0-nokd", "svd"]
    run = write_run(tmp_path / "b", methods, [0.5])
    written = write_tables(run / "metrics", run / "speed.csv", methods, [0.5], run / "tables")
    assert [p.name for p in written] == [
        "table1.csv",
        "table1.md",
        "table1_significance.csv",
        "table1_significance.md",
        "table2.csv",
        "table2.md",
        "table2_significance.csv",
        "table2_significance.md",
    ]
    table2 = pd.read_csv(run / "tables/table2.csv")
    assert list(table2["method"]) == ["teacher", "l0-params", "l0-nohidden", "l0-nokd"]
    assert list(table2.columns[: len(REQUIRED)]) == REQUIRED


def test_significance_also_tests_the_full_decoding_where_models_have_it(tmp_path):
    methods = ["l0-params", "omp"]
    run = write_run(tmp_path, methods, [0.3, 0.5])
    out = tmp_path / "tables"
    write_tables(
        run / "metrics", run / "speed.csv", methods, [0.3, 0.5], out, full_sparsities=[0.5]
    )
    tested = pd.read_csv(out / "table1_significance.csv")
    assert list(zip(tested["decoding"], tested["sparsity"], tested["split"], strict=True)) == [
        ("greedy", 0.3, "test-clean"),
        ("greedy", 0.3, "test-other"),
        ("greedy", 0.5, "test-clean"),
        ("greedy", 0.5, "test-other"),
        ("full", 0.5, "test-clean"),
        ("full", 0.5, "test-other"),
    ]
    # models 3 and 4 (l0-params-s0.5, omp-s0.5): 3 and 4 wrong greedy, 1 and 2 in full
    full = tested[tested["decoding"] == "full"]
    assert full["delta"].tolist() == pytest.approx([100 * (1 - 2) / 360] * 2)
    lines = (out / "table1_significance.md").read_text().splitlines()
    assert lines[2].startswith("| 30% |") and lines[3].startswith("| 50% |")
    assert lines[4].startswith("| 50%, full decoding | -0.28 [")


def test_markdown_prints_each_sparsity_once_with_changes(tmp_path):
    run = write_run(
        tmp_path, ["l0-params", "omp"], [0.5], rtf={"teacher": 0.2, "l0-params-s0.5": 0.15}
    )
    md = to_markdown(build_table(run / "metrics", run / "speed.csv", ["l0-params", "omp"], [0.5]))
    lines = md.splitlines()
    assert lines[0].startswith(
        "| Sparsity | Method | test-clean WER % | test-other WER % | test-clean, full"
        " | test-other, full | RTF |"
    )
    assert lines[2] == "| 0% | teacher | 10.00 | 20.00 | 9.00 | 19.00 | 0.2 | 10 | 0.0% |"
    assert lines[3] == (
        "| 50% | l0-params | 11.00 | 21.00 | 10.00 | 20.00 | 0.15 (-25.0%) | 5 (-50.0%) | 50.0% |"
    )
    assert lines[4].startswith("|  | omp | 12.00 |")


def test_missing_metrics_file_is_named(tmp_path):
    run = write_run(tmp_path, ["l0-params", "omp"], [0.5])
    (run / "metrics/omp-s0.5.json").unlink()
    with pytest.raises(AsrpruneError, match=r"metrics file not found: .*omp-s0\.5\.json"):
        build_table(run / "metrics", run / "speed.csv", ["l0-params", "omp"], [0.5])


def test_missing_field_and_speed_row_are_named(tmp_path):
    run = write_run(tmp_path, ["omp"], [0.5])
    path = run / "metrics/omp-s0.5.json"
    data = json.loads(path.read_text())
    del data["wer"]["test-other"]
    path.write_text(json.dumps(data))
    with pytest.raises(AsrpruneError, match=r"omp-s0\.5\.json: field 'wer\.test-other' is missing"):
        build_table(run / "metrics", run / "speed.csv", ["omp"], [0.5])

    run = write_run(tmp_path / "b", ["omp"], [0.5])
    speed = pd.read_csv(run / "speed.csv")
    speed[speed["model"] != "omp-s0.5"].to_csv(run / "speed.csv", index=False)
    with pytest.raises(AsrpruneError, match=r"speed\.csv: no row for model 'omp-s0\.5'"):
        build_table(run / "metrics", run / "speed.csv", ["omp"], [0.5])


def test_cli_writes_the_tables_and_reports_errors(tmp_path, capsys):
    run = write_run(tmp_path, ["l0-params", "l0-coarse"], [0.5])
    common = ["--metrics-dir", str(run / "metrics"), "--speed", str(run / "speed.csv")]
    args = [*common, "--methods", "l0-params", "l0-coarse", "--sparsities", "0.5"]
    assert main(["tables", *args, "--out-dir", str(run / "tables")]) == 0
    assert {p.name for p in (run / "tables").iterdir()} == {
        "table1.csv",
        "table1.md",
        "table2.csv",
        "table2.md",
        "table2_significance.csv",
        "table2_significance.md",
    }
    args = [*common, "--methods", "omp", "--sparsities", "0.5"]
    assert main(["tables", *args, "--out-dir", str(run / "tables")]) == 2
    assert "metrics file not found" in capsys.readouterr().err
