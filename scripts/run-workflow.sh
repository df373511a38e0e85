#!/usr/bin/env bash
# The main job: set up, then run the default workflow (config/config.yaml) end to end on
# every core of this machine, then build its report, results/<run>/report.html. Extra
# arguments go to snakemake, both times (e.g. --configfile ...).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
# the run name the same arguments give (config/config.yaml, --configfile, --config run=);
# first, so that a missing, empty or malformed config file stops here, named with its line
# (Snakemake's own message names neither)
run=$(asrprune run-name -- "$@")
snakemake --cores all "$@"
snakemake "$@" --report "results/$run/report.html"
