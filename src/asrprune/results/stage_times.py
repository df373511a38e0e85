"""Time per stage of a run, from the benchmark files Snakemake wrote for its jobs.

Each job's benchmark is ``benchmarks/<stage>/<job>.tsv``; its last line is the latest run
of the job, and its ``s`` column the job's wall seconds. Summed seconds are job time, not
wall time: jobs of one stage may have run side by side. The run's wall-clock span is
estimated from the files alone: the last file's modification time minus the earliest
start, a file's start being its modification time less its job's seconds. A run stopped
and resumed spans its pause too.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from asrprune.errors import AsrpruneError
from asrprune.results.markdown import markdown_table


@dataclass(frozen=True)
class Job:
    """One job's benchmark: its stage (folder), name (file stem), wall seconds, and the
    modification time of its file (epoch seconds; Snakemake writes it as the job ends)."""

    stage: str
    name: str
    seconds: float
    written: float


@dataclass(frozen=True)
class Stage:
    """A stage's jobs in file-name order."""

    name: str
    jobs: tuple[Job, ...]

    @property
    def seconds(self) -> float:
        return sum(j.seconds for j in self.jobs)

    @property
    def longest(self) -> Job:
        return max(self.jobs, key=lambda j: j.seconds)


def read_jobs(
    benchmarks: str | os.PathLike, exclude: Iterable[str | os.PathLike] = ()
) -> list[Job]:
    """Every job with a benchmark under ``benchmarks`` (``<stage>/<job>.tsv``), sorted by
    path; files in ``exclude`` and empty files are left out."""
    bench = Path(benchmarks)
    if not bench.is_dir():
        raise AsrpruneError(f"benchmarks folder not found: {bench}")
    skip = {Path(p).resolve() for p in exclude}
    jobs = []
    for path in sorted(bench.glob("*/*.tsv")):
        if path.resolve() in skip:
            continue
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if not rows:
            continue
        if "s" not in rows[-1]:
            raise AsrpruneError(f"{path}: column 's' (wall seconds) is missing")
        try:
            seconds = float(rows[-1]["s"])
        except (TypeError, ValueError):
            raise AsrpruneError(f"{path}: 's' is not a number: {rows[-1]['s']!r}") from None
        jobs.append(Job(path.parent.name, path.stem, seconds, path.stat().st_mtime))
    return jobs


def stages(jobs: Sequence[Job]) -> list[Stage]:
    """The jobs grouped by stage, stages in name order."""
    grouped: dict[str, list[Job]] = {}
    for job in jobs:
        grouped.setdefault(job.stage, []).append(job)
    return [Stage(name, tuple(grouped[name])) for name in sorted(grouped)]


def wall_span(jobs: Sequence[Job]) -> float:
    """Seconds from the earliest job start to the last job end, as the files tell it:
    max(mtime) - min(mtime - seconds)."""
    if not jobs:
        raise AsrpruneError("no job benchmarks to take a wall-clock span from")
    return max(j.written for j in jobs) - min(j.written - j.seconds for j in jobs)


def stages_markdown(jobs: Sequence[Job]) -> str:
    """Per stage: jobs, summed job minutes and the longest job, as a Markdown table."""
    header = ("stage", "jobs", "summed minutes", "longest job (min)")
    rows = [
        (
            stage.name,
            str(len(stage.jobs)),
            f"{stage.seconds / 60:.1f}",
            f"{stage.longest.name} ({stage.longest.seconds / 60:.1f})",
        )
        for stage in stages(jobs)
    ]
    return markdown_table(header, rows, align=("---", "---:", "---:", "---"))
