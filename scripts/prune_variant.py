"""One pruning job with config overrides, outside the workflow, from a finished run's teacher.

For side experiments (a distillation weight, a seed) without a new run folder, which
would train its own teacher. Reads the config as the workflow does (the files given, then
the ``--set`` overrides, validated), runs ``asrprune prune`` and ``asrprune evaluate``
with exactly the settings the ``prune`` rule would pass, and writes everything under
``<run>/variants/<name>/``: ``<name>.pt``, ``<name>.json`` (metrics) and
``<name>.hyps/``, so ``asrprune compare --metrics-dir <run>/variants/<name>`` reads it
beside a copy of the other model's hypotheses.

    .venv/bin/python scripts/prune_variant.py kd10 --method l0-params --sparsity 0.5 \\
        --set prune.l0.distill_weight=10
    .venv/bin/python scripts/prune_variant.py seed7 --method svd --sparsity 0.5 \\
        --set prune.train.seed=7 --set prune.finetune.seed=7
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

from asrprune.cli import positive_int
from asrprune.config import load_config
from asrprune.errors import AsrpruneError
from asrprune.pruning.settings import LATENCY_METHODS, latency_table_path, method_settings


def override(spec: str) -> dict:
    """``a.b.c=value`` (value read as YAML) as the nested mapping {a: {b: {c: value}}}."""
    key, sep, raw = spec.partition("=")
    if not sep or not key:
        raise AsrpruneError(f"--set {spec!r}: expected KEY.PATH=VALUE")
    tree: dict = {}
    node = tree
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = yaml.safe_load(raw)
    return tree


def variant_config(configfiles: list[str], sets: list[str]) -> dict:
    """The validated config: the files in order, then each override on top."""
    return load_config(*configfiles, overrides=[override(spec) for spec in sets])


def variant_commands(
    name: str, method: str, sparsity: str, run: Path, config: dict, threads: int
) -> list[list[str]]:
    """``asrprune prune`` and ``asrprune evaluate`` as rule prune and rule evaluate would
    run them for ``method`` at ``sparsity`` from ``run``'s teacher, into
    ``<run>/variants/<name>/``."""
    settings = json.dumps(method_settings(method, config["prune"]), sort_keys=True)
    out = run / "variants" / name
    model = str(out / f"{name}.pt")
    data = ["--data", str(run / "data"), "--threads", str(threads)]
    prune_cmd = ["asrprune", "prune", "--teacher", str(run / "models/teacher.pt"), *data]
    prune_cmd += ["--method", method, "--sparsity", sparsity, "--settings", settings]
    prune_cmd += ["--out", model]
    prune_cmd += ["--summary", str(out / "pruning.json"), "--work-dir", str(out / "work")]
    if method in LATENCY_METHODS:  # the run's latency table, as rule prune passes it
        table = latency_table_path(str(run), config["prune"]["latency"]["profile"])
        prune_cmd += ["--latency-table", table]
    eval_cmd = ["asrprune", "evaluate", "--model", model, *data, "--name", name]
    eval_cmd += ["--out", str(out / f"{name}.json"), "--hyps", str(out / f"{name}.hyps")]
    eval_cmd += ["--beam", str(config["evaluate"]["beam"])]
    return [prune_cmd, eval_cmd]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("name", help="the variant's name (its folder under <run>/variants/)")
    p.add_argument("--method", required=True)
    p.add_argument("--sparsity", required=True)
    p.add_argument("--run", default="results/embedded", help="a run folder with its teacher")
    p.add_argument("--configfile", nargs="+", default=["config/config.yaml"])
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--threads", type=positive_int, default=1)
    a = p.parse_args()
    try:
        config = variant_config(a.configfile, a.sets)
        commands = variant_commands(a.name, a.method, a.sparsity, Path(a.run), config, a.threads)
    except AsrpruneError as e:
        sys.exit(f"error: {e}")
    (Path(a.run) / "variants" / a.name).mkdir(parents=True, exist_ok=True)
    for command in commands:
        print("+", " ".join(command[:2]), "...", file=sys.stderr)
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
