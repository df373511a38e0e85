"""Where ``snakemake --report`` writes: ``results/<run>/report.html``, for the run name
the same Snakemake arguments give (scripts/run-workflow.sh builds it after the run)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

import yaml

from asrprune.config import read_config_file
from asrprune.errors import AsrpruneError


def _config_run(path: str | os.PathLike) -> str | None:
    return read_config_file(path).get("run")


def run_name(snakemake_args: Sequence[str], default_config: str | os.PathLike) -> str:
    """The run name Snakemake resolves for these arguments.

    As Snakemake merges config: the Snakefile's default config file, then every
    ``--configfile`` in order, then ``--config run=...``; each later one wins. Other
    arguments are ignored.
    """
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--configfile", "--configfiles", nargs="+", action="extend", default=[])
    parser.add_argument("--config", "-C", nargs="*", action="extend", default=[])
    known, _ = parser.parse_known_args(list(snakemake_args))
    run = _config_run(default_config)
    for path in known.configfile:
        run = _config_run(path) or run
    for item in known.config:
        key, _, value = item.partition("=")
        if key == "run":
            run = str(yaml.safe_load(value))
    if not run:
        raise AsrpruneError(f"no 'run' in {default_config} or the configs given")
    return run
