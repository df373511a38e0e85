"""Time per stage and the run's wall-clock span, from benchmark files with set times."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from asrprune.errors import AsrpruneError
from asrprune.results.stage_times import read_jobs, stages, stages_markdown, wall_span
from tests.builders import REPO

HEADER = "s\th:m:s\tmax_rss\n"


def write_benchmark(bench, stage, job, seconds, written, earlier=()):
    """``<bench>/<stage>/<job>.tsv``: earlier runs' seconds, then ``seconds``, with its
    modification time set to ``written``."""
    path = bench / stage / f"{job}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(f"{s}\t0:00:00\t1.0\n" for s in (*earlier, seconds))
    path.write_text(HEADER + lines)
    os.utime(path, (written, written))
    return path


@pytest.fixture
def bench(tmp_path):
    bench = tmp_path / "benchmarks"
    write_benchmark(bench, "teacher", "train_teacher", 600.0, 10_000.0)
    write_benchmark(bench, "evaluate", "teacher", 30.0, 10_100.0)
    write_benchmark(bench, "evaluate", "omp-s0.5", 90.0, 10_400.0, earlier=[999.0])
    write_benchmark(bench, "data", "cmvn", 6.0, 9_500.0)
    (bench / "data" / "empty.tsv").write_text("")  # a job still running: not counted
    return bench


def test_jobs_are_grouped_per_stage_with_the_latest_run_of_each(bench):
    jobs = read_jobs(bench)
    grouped = {s.name: s for s in stages(jobs)}
    assert list(grouped) == ["data", "evaluate", "teacher"]
    assert [j.name for j in grouped["evaluate"].jobs] == ["omp-s0.5", "teacher"]
    assert grouped["evaluate"].seconds == 120.0  # 90 (latest line) + 30, not 999
    assert grouped["evaluate"].longest.name == "omp-s0.5"
    assert stages_markdown(jobs).splitlines()[2:] == [
        "| data | 1 | 0.1 | cmvn (0.1) |",
        "| evaluate | 2 | 2.0 | omp-s0.5 (1.5) |",
        "| teacher | 1 | 10.0 | train_teacher (10.0) |",
    ]


def test_wall_span_runs_from_the_earliest_start_to_the_last_end(bench):
    # earliest start: the teacher, 10,000 - 600; last end: omp-s0.5 at 10,400
    assert wall_span(read_jobs(bench)) == 10_400.0 - 9_400.0


def test_excluded_files_are_not_counted(bench):
    own = write_benchmark(bench, "results", "results_doc", 1.0, 20_000.0)
    jobs = read_jobs(bench, exclude=[own])
    assert "results" not in {j.stage for j in jobs}
    assert wall_span(jobs) == 1000.0


def test_missing_folder_and_bad_seconds_are_named(tmp_path, bench):
    with pytest.raises(AsrpruneError, match="benchmarks folder not found: .*nope"):
        read_jobs(tmp_path / "nope")
    (bench / "data" / "bad.tsv").write_text(HEADER + "soon\t0\t0\n")
    with pytest.raises(AsrpruneError, match=r"bad.tsv: 's' is not a number: 'soon'"):
        read_jobs(bench)
    with pytest.raises(AsrpruneError, match="no job benchmarks"):
        wall_span([])


def test_script_prints_the_packages_table_and_span(bench):
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts/stage_times.py"), str(bench.parent)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    table = stages_markdown(read_jobs(bench))
    assert result.stdout == table + "\nwall-clock span of the benchmark files: 16.7 min\n"
