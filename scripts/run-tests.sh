#!/usr/bin/env bash
# Set up, then run the whole test suite: unit tests, lint (ruff, snakefmt,
# snakemake --lint) and the smoke workflow end to end. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
python -m pytest "$@"
