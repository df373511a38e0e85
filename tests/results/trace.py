"""Is every number of a document one of its result files'? Numbers of the files, numbers
a document prints, and the stage-time numbers derived from benchmark files, worked out
here independently of asrprune.results.stage_times."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from pathlib import Path

# A number standing alone: not a digit inside a word (l0-params, fig2a, a commit hash) or
# the fraction part of another number; it may end a sentence.
NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?!\w|\.\d)")


def numbers(text: str) -> list[str]:
    return NUMBER.findall(text)


def file_numbers(paths: Iterable[Path]) -> set[float]:
    """Every number written in the files (JSON, CSV, TSV, Markdown alike)."""
    return {float(n) for path in paths for n in numbers(Path(path).read_text())}


def stage_numbers(benchmarks: Path, exclude: Iterable[Path] = ()) -> set[float]:
    """What a stage-time table and span may print: per stage the job count, summed
    minutes and longest minutes, and the span in minutes."""
    skip = {Path(p).resolve() for p in exclude}
    stages: dict[str, list[float]] = {}
    starts, ends = [], []
    for path in benchmarks.glob("*/*.tsv"):
        if path.resolve() in skip:
            continue
        with path.open(newline="") as f:
            seconds = float(list(csv.DictReader(f, delimiter="\t"))[-1]["s"])
        stages.setdefault(path.parent.name, []).append(seconds)
        ends.append(path.stat().st_mtime)
        starts.append(path.stat().st_mtime - seconds)
    derived = {(max(ends) - min(starts)) / 60}
    for jobs in stages.values():
        derived |= {len(jobs), sum(jobs) / 60, max(jobs) / 60}
    return derived


def untraced(document: str, sources: set[float]) -> list[str]:
    """The numbers ``document`` prints that no source value rounds to, at the printed
    precision. Headings (section and table names) and the code version line are not
    results and are skipped."""
    missing = []
    for line in document.splitlines():
        if line.startswith("#") or line.startswith("Code version"):
            continue
        for text in numbers(line):
            decimals = len(text.partition(".")[2]) if "e" not in text.lower() else 12
            value, tolerance = float(text), 0.5 * 10.0**-decimals + 1e-12
            if not any(abs(value - s) <= tolerance for s in sources):
                missing.append(f"{text} in {line!r}")
    return missing
