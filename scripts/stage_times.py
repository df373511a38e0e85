"""Time per stage of a run, from the benchmark files Snakemake wrote for its jobs.

    python scripts/stage_times.py results/embedded

Prints, per stage (the folders under benchmarks/), the number of jobs, their summed wall
minutes and the longest job, as a Markdown table, then the run's wall-clock span as the
files tell it (asrprune.results.stage_times explains both; RESULTS.md has the same).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asrprune.errors import AsrpruneError
from asrprune.results.stage_times import read_jobs, stages_markdown, wall_span


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="results/<run>")
    args = parser.parse_args()
    try:
        jobs = read_jobs(args.run_dir / "benchmarks")
        span = wall_span(jobs)
    except AsrpruneError as e:
        sys.exit(f"stage_times.py: error: {e}")
    print(stages_markdown(jobs), end="")
    print(f"\nwall-clock span of the benchmark files: {span / 60:.1f} min")


if __name__ == "__main__":
    main()
