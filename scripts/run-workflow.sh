#!/usr/bin/env bash
# The main job: set up, then run the default workflow (config/config.yaml) end to end on
# every core of this machine. Extra arguments go to snakemake (e.g. --configfile ...).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
snakemake --cores all "$@"
