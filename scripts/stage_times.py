"""Time per stage of a run, from the benchmark files Snakemake wrote for its jobs.

    python scripts/stage_times.py results/embedded

Prints, per stage (the folders under benchmarks/), the number of jobs, their summed wall
seconds and the longest job, as a Markdown table. Summed seconds are job time, not wall
time: jobs of one stage may have run side by side.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def stage_times(run_dir: Path) -> dict[str, list[tuple[str, float]]]:
    """Stage -> [(job, wall seconds)], from benchmarks/<stage>/<job>.tsv."""
    stages: dict[str, list[tuple[str, float]]] = {}
    bench = run_dir / "benchmarks"
    if not bench.is_dir():
        raise SystemExit(f"no benchmarks folder in {run_dir}")
    for path in sorted(bench.glob("*/*.tsv")):
        with path.open() as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if rows:  # the last line is the latest run of the job
            stages.setdefault(path.parent.name, []).append((path.stem, float(rows[-1]["s"])))
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="results/<run>")
    args = parser.parse_args()
    print("| stage | jobs | summed minutes | longest job (min) |")
    print("| --- | ---: | ---: | --- |")
    for stage, jobs in stage_times(args.run_dir).items():
        name, longest = max(jobs, key=lambda j: j[1])
        total = sum(s for _, s in jobs)
        print(f"| {stage} | {len(jobs)} | {total / 60:.1f} | {name} ({longest / 60:.1f}) |")


if __name__ == "__main__":
    main()
