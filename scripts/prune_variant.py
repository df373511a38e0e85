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

``--sweep KEY=V1,V2,...`` runs one variant per value (``<name>-<value>``, each with
``--set KEY=value`` on top of the others), ``--jobs`` of them at a time, and prints each
one's WER per split as a Markdown table (a learning-rate sweep on dev, say; ``--splits
dev --greedy`` decodes only what the choice reads):

    .venv/bin/python scripts/prune_variant.py omp-lr --method omp --sparsity 0.5 \\
        --sweep prune.finetune.peak_lr=5e-5,1e-4,2e-4,4e-4 --jobs 2 --splits dev --greedy
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from asrprune.cli import positive_int
from asrprune.config import load_config
from asrprune.errors import AsrpruneError
from asrprune.io import json_field, read_json, require_file
from asrprune.pruning.settings import LATENCY_METHODS, latency_table_path, method_settings
from asrprune.results.markdown import markdown_table


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
    node[parts[-1]] = _value(raw)
    return tree


def _value(raw: str):
    """``raw`` read as YAML, where a number like ``5e-5`` (a string to YAML 1.1) is one."""
    value = yaml.safe_load(raw)
    if isinstance(value, str) and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+", value):
        return float(value)
    return value


def variant_config(configfiles: list[str], sets: list[str]) -> dict:
    """The validated config: the files in order, then each override on top."""
    return load_config(*configfiles, overrides=[override(spec) for spec in sets])


def variant_commands(
    name: str,
    method: str,
    sparsity: str,
    run: Path,
    config: dict,
    threads: int,
    splits: list[str] | None = None,
    full: bool = True,
) -> list[list[str]]:
    """``asrprune prune`` and ``asrprune evaluate`` as rule prune and rule evaluate would
    run them for ``method`` at ``sparsity`` from ``run``'s teacher, into
    ``<run>/variants/<name>/``; evaluation decodes ``splits`` (None: evaluate's default),
    greedily only unless ``full``."""
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
    if splits:
        eval_cmd += ["--splits", *splits]
    if not full:
        eval_cmd += ["--no-full"]
    return [prune_cmd, eval_cmd]


def sweep_variants(name: str, sets: list[str], sweep: str | None) -> list[tuple[str, list[str]]]:
    """(variant name, its ``--set`` overrides) per value of ``sweep`` (``KEY=V1,V2``);
    just ``name`` with ``sets`` without one."""
    if sweep is None:
        return [(name, sets)]
    key, sep, raw = sweep.partition("=")
    values = [v for v in raw.split(",") if v]
    if not sep or not key or not values:
        raise AsrpruneError(f"--sweep {sweep!r}: expected KEY.PATH=V1,V2,...")
    return [(f"{name}-{v}", [*sets, f"{key}={v}"]) for v in values]


def sweep_markdown(run: Path, names: list[str]) -> str:
    """Each variant's greedy WER per split it was decoded on, from its metrics file."""
    rows = []
    for name in names:
        path = require_file(run / "variants" / name / f"{name}.json", "variant metrics")
        rows.append((name, json_field(read_json(path), path, "wer")))
    splits = list(rows[0][1])
    header = ("variant", *(f"{s} WER %" for s in splits))
    return markdown_table(header, [(n, *(f"{w[s]:.2f}" for s in splits)) for n, w in rows])


def run_variant(commands: list[list[str]], log: Path) -> None:
    """Run ``commands`` in order, their output to ``log``; a failure raises, naming it."""
    with open(log, "w") as out:
        for command in commands:
            print("+", " ".join(command[:2]), "...", file=out, flush=True)
            if subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode:
                raise AsrpruneError(f"{' '.join(command[:2])} failed: see {log}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("name", help="the variant's name (its folder under <run>/variants/)")
    p.add_argument("--method", required=True)
    p.add_argument("--sparsity", required=True)
    p.add_argument("--run", default="results/embedded", help="a run folder with its teacher")
    p.add_argument("--configfile", nargs="+", default=["config/config.yaml"])
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--threads", type=positive_int, default=1)
    p.add_argument("--sweep", metavar="KEY=V1,V2,...", help="one variant per value")
    p.add_argument("--jobs", type=positive_int, default=1, help="variants run at once")
    p.add_argument("--splits", nargs="+", help="splits evaluated (default: evaluate's)")
    p.add_argument(
        "--greedy", action="store_true", help="greedy search only (cheap, for a dev sweep)"
    )
    a = p.parse_args()
    run = Path(a.run)
    try:
        jobs = []
        for name, sets in sweep_variants(a.name, a.sets, a.sweep):
            config = variant_config(a.configfile, sets)
            commands = variant_commands(
                name, a.method, a.sparsity, run, config, a.threads, a.splits, not a.greedy
            )
            jobs.append((name, commands))
    except AsrpruneError as e:
        sys.exit(f"error: {e}")
    for name, _ in jobs:
        (run / "variants" / name).mkdir(parents=True, exist_ok=True)
    logs = {name: run / "variants" / name / "variant.log" for name, _ in jobs}
    print(f"{len(jobs)} variant(s), logs: {', '.join(map(str, logs.values()))}", file=sys.stderr)
    try:
        with ThreadPoolExecutor(a.jobs) as pool:
            list(pool.map(lambda job: run_variant(job[1], logs[job[0]]), jobs))
        print(sweep_markdown(run, [name for name, _ in jobs]), end="")
    except AsrpruneError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
