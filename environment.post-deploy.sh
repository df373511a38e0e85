#!/usr/bin/env bash
# Run by `snakemake --use-conda` inside the new env, from Snakemake's working directory
# (the repository root): install the asrprune package itself, without touching the deps.
set -euo pipefail
python -m pip install --no-deps -e .
