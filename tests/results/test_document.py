"""RESULTS.md from a fake run's result files: every number traceable, sections, errors."""

from __future__ import annotations

import csv
import subprocess

import pytest

from asrprune.cli import main
from asrprune.errors import AsrpruneError
from asrprune.io import read_json, write_json
from asrprune.results.document import build_document, code_version, describe_decoding
from asrprune.results.layout import figure_names
from asrprune.results.tables import write_tables
from tests.results.runs import write_run
from tests.results.test_stage_times import write_benchmark
from tests.results.trace import file_numbers, stage_numbers, untraced

METHODS = ["l0-params", "omp", "l0-nokd"]
SPARSITIES = [0.5]
SPLITS = ("dev", "test-clean", "test-other")
GREEDY = {"method": "greedy", "beam": 1, "lm": None}
FULL = {"method": "beam", "beam": 8, "lm": {"order": 6, "weight": 0.35, "token_bonus": 0.9}}


def _split(utterances, hours, speakers, excluded):
    reasons = {"too_long": excluded} if excluded else {}
    return {
        "utterances": utterances,
        "hours": hours,
        "speakers": speakers,
        "excluded": excluded,
        "excluded_by_reason": reasons,
    }


def fake_run(root, full=True):
    """A run's files as the workflow writes them; returns the document's arguments."""
    write_run(root, METHODS, SPARSITIES)
    write_tables(root / "metrics", root / "speed.csv", METHODS, SPARSITIES, root / "tables")
    splits = {
        "train": _split(1234, 4.321, 37, 3),
        "dev": _split(211, 0.417, 7, 0),
        "test-clean": _split(223, 0.433, 7, 0),
        "test-other": _split(229, 0.447, 9, 1),
    }
    total = {"utterances": 1897, "hours": 5.618, "excluded": 4}
    write_json(root / "data/report.json", {"source": "embedded", "splits": splits, "total": total})
    teacher = read_json(root / "metrics/teacher.json")
    teacher["wer"] = {"dev": 13.4567, "test-clean": 12.3456, "test-other": 38.7654}
    teacher["errors"] = {s: {"ref_words": 4000 + i} for i, s in enumerate(SPLITS)}
    teacher["decoding"] = GREEDY
    if full:
        wer = {"dev": 11.1111, "test-clean": 10.9876, "test-other": 35.4321}
        teacher["full"] = {"decoding": FULL, "wer": wer, "errors": {}, "decode_seconds": {}}
    else:
        teacher.pop("full", None)
    write_json(root / "metrics/teacher.json", teacher)
    bench = root / "benchmarks"
    write_benchmark(bench, "teacher", "train_teacher", 6012.0, 1_000_000.0)
    write_benchmark(bench, "evaluate", "teacher", 73.5, 1_000_200.0)
    write_benchmark(bench, "results", "tables", 4.2, 1_000_300.0)
    own = write_benchmark(bench, "results", "results_doc", 2.0, 2_000_000.0)  # an old run's
    figures = []
    for stem in figure_names(METHODS):
        (root / f"figures/{stem}.png").parent.mkdir(exist_ok=True)
        (root / f"figures/{stem}.png").write_bytes(b"png")
        figures.append(root / f"figures/{stem}.png")
    return {
        "run": "fake",
        "data_report": root / "data/report.json",
        "teacher": root / "metrics/teacher.json",
        "tables": sorted((root / "tables").glob("*.md")),
        "speed": root / "speed.csv",
        "figures": figures,
        "benchmarks": bench,
        "exclude_benchmarks": [own],
        "out": root / "RESULTS.md",
    }


def _inputs(args):
    return [args["data_report"], args["teacher"], *args["tables"], args["speed"]]


def test_every_number_printed_is_one_of_the_result_files(tmp_path):
    args = fake_run(tmp_path)
    text = build_document(**args)
    sources = file_numbers(_inputs(args)) | stage_numbers(
        args["benchmarks"], args["exclude_benchmarks"]
    )
    assert untraced(text, sources) == []
    # and the check finds a number that is not there
    assert untraced(text + "\n| omp | 12.3499 |\n", sources) == ["12.3499 in '| omp | 12.3499 |'"]


def test_document_has_each_section_from_its_file(tmp_path):
    args = fake_run(tmp_path)
    text = build_document(**args)
    assert text.startswith("# Results of run `fake`\n")
    assert "| train | 1234 | 4.321 | 37 | 3 | too_long 3 |" in text
    assert "| total | 1897 | 5.618 | - | 4 | - |" in text
    assert "| test-clean | 4001 | 12.35 | 10.99 |" in text
    assert "greedy search, the decoding of every model in the tables" in text
    assert "`full`: beam search of width 8 with a 6-gram token LM at weight 0.35." in text
    for table in args["tables"]:  # copied as rule tables wrote them
        assert table.read_text() in text
    assert "### Table 1\n" in text and "### Table 2: significance\n" in text
    with open(args["speed"], newline="") as f:
        last = list(csv.DictReader(f))[-1]
    ratio = float(last["rtf_ratio"])
    assert f"| {last['model']} | {float(last['rtf_median']):.4g} | {ratio:.2f} |" in text
    assert "- [wer_rtf](figures/wer_rtf.png)\n" in text
    assert "| teacher | 1 | 100.2 | train_teacher (100.2) |" in text
    assert "| results | 1 | 0.1 | tables (0.1) |" in text  # the document's own job left out
    # from the teacher's start (1,000,000 - 6012) to the tables' end (1,000,300)
    assert "Wall-clock span of the run: 105.2 min. This is not a measured duration" in text


def test_full_decoding_is_optional(tmp_path):
    args = fake_run(tmp_path, full=False)
    text = build_document(**args)
    assert "| split | reference words | WER % (`wer`) |\n" in text
    assert "`full`" not in text
    assert "| dev | 4000 | 13.46 |\n" in text


def test_decodings_are_described_from_their_dicts():
    assert describe_decoding(GREEDY) == "greedy search"
    assert describe_decoding(FULL) == "beam search of width 8 with a 6-gram token LM at weight 0.35"
    assert describe_decoding({"method": "beam", "beam": 4, "lm": None}) == (
        "beam search of width 4 without an LM"
    )


def _git(repo, *args):
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo), *args],
        check=True,
        capture_output=True,
    )


def test_code_version_names_the_commit_and_a_dirty_tree(tmp_path):
    assert code_version(tmp_path) == "unknown (the workflow is not in a git checkout)"
    _git(tmp_path, "init", "-q")
    (tmp_path / "Snakefile").write_text("rule all:\n")
    _git(tmp_path, "add", "Snakefile")
    _git(tmp_path, "commit", "-q", "-m", "one")
    head = subprocess.run(
        ["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert code_version(tmp_path) == f"commit `{head}`, working tree clean"
    (tmp_path / "Snakefile").write_text("rule all:\n    input: []\n")
    assert code_version(tmp_path) == f"commit `{head}`, working tree with uncommitted changes"


def test_command_writes_the_same_document_every_time(tmp_path):
    args = fake_run(tmp_path / "run")
    argv = [
        "results-doc",
        *("--run", "fake", "--data-report", str(args["data_report"])),
        *("--teacher", str(args["teacher"]), "--tables", *map(str, args["tables"])),
        *("--speed", str(args["speed"]), "--figures", *map(str, args["figures"])),
        *("--benchmarks", str(args["benchmarks"])),
        *("--exclude-benchmarks", *map(str, args["exclude_benchmarks"])),
        *("--repo", str(tmp_path), "--out", str(args["out"])),
    ]
    assert main(argv) == 0
    first = args["out"].read_text()
    assert main(argv) == 0
    assert args["out"].read_text() == first
    assert first.endswith("Code version: unknown (the workflow is not in a git checkout).\n")
    assert first == build_document(**{**args, "repo": tmp_path})


def test_missing_or_broken_files_are_named(tmp_path, capsys):
    args = fake_run(tmp_path)
    with pytest.raises(AsrpruneError, match="teacher metrics not found: .*nope.json"):
        build_document(**{**args, "teacher": tmp_path / "nope.json"})
    args["speed"].write_text("model,rtf_median\nteacher,1.0\n")
    with pytest.raises(AsrpruneError, match="speed.csv: column 'rtf_ratio' is missing"):
        build_document(**args)
    report = read_json(args["data_report"])
    del report["splits"]["dev"]["speakers"]
    write_json(args["data_report"], report)
    with pytest.raises(AsrpruneError, match=r"report.json: field 'splits.dev.speakers' is missing"):
        build_document(**args)
