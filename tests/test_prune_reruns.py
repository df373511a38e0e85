"""Which pruning jobs Snakemake reruns when one setting changes: those that read it.

Dry runs only, no job runs: every output the smoke config's pruning jobs need is created
empty and recorded by ``snakemake --touch`` as made with that config; a dry run with one
setting changed then lists the jobs Snakemake would rerun (its default rerun triggers,
params among them).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml

from asrprune.config import load_config
from asrprune.results.layout import ABLATIONS, L0_METHODS, model_name, parse_model_name
from tests.builders import REPO

SMOKE = REPO / "config/smoke.yaml"
L0 = set(L0_METHODS)
EVERY = {*L0, "omp", "parp", "svd"}


def _snakemake(workdir, *args) -> str:
    """Snakemake on the repo's Snakefile in ``workdir``; its stdout."""
    env = {**os.environ, "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ.get('PATH', '')}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]
    cmd += ["--directory", str(workdir), "--cores", "1", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A working folder in which the smoke config's pruning jobs and every job before them
    look done (empty outputs that Snakemake has records of); it and those jobs' models."""
    workdir = tmp_path_factory.mktemp("reruns")
    prune = load_config(REPO / "config/config.yaml", SMOKE)["prune"]
    assert set(prune["methods"]) == EVERY
    targets = [
        f"results/smoke/models/{model_name(m, s)}.pt"
        for m in prune["methods"]
        for s in prune["sparsities"]
    ]
    # with the corpus there, loading the workflow does not look for the TTS engines
    corpus = workdir / "results/smoke/corpus/train.jsonl"
    corpus.parent.mkdir(parents=True)
    corpus.touch()
    summary = _snakemake(workdir, "--configfile", str(SMOKE), "--summary", *targets)
    for line in summary.splitlines()[1:]:  # output_file, date, rule, log-file(s), status, plan
        path, _, _, _, status, _ = line.split("\t")
        if status == "missing":
            (workdir / path).parent.mkdir(parents=True, exist_ok=True)
            (workdir / path).touch()
    # every job, so that each records its params (as if run)
    _snakemake(workdir, "--configfile", str(SMOKE), "--touch", "--forceall", *targets)
    return workdir, targets


def _reruns(workdir, targets, key: str = "", value=None) -> set[str]:
    """The methods whose pruning jobs a dry run would run after setting ``prune.<key>``
    (dotted, e.g. ``parp.reprune_every``) to ``value``; no key: nothing changed."""
    change: dict = {}
    if key:
        *sections, name = key.split(".")
        node = change
        for section in sections:
            node = node.setdefault(section, {})
        node[name] = value
    override = workdir / "change.yaml"
    override.write_text(yaml.safe_dump({"prune": change}))
    out = _snakemake(workdir, *targets, "--dry-run", "--configfile", str(SMOKE), str(override))
    jobs = re.split(r"\n(?=(?:local)?rule \w+:)", out)
    return {
        parse_model_name(m.group(1))[0]
        for job in jobs
        if re.match(r"(?:local)?rule prune:", job)
        for m in [re.search(r"^\s*wildcards: model=(\S+)$", job, re.M)]
    }


def test_an_unchanged_config_reruns_nothing(made):
    assert _reruns(*made) == set()


# A setting of config prune, a new value for it, and the methods whose jobs read it.
CHANGES = [
    ("parp.reprune_every", 5, {"parp"}),
    ("omp.ranking", "global", {"omp", "parp"}),  # parp starts from the OMP mask
    ("l0.gate_lr", 0.2, L0),
    ("l0.distill_weight", 2.0, L0 - {"l0-nokd"}),  # it distils nothing
    ("l0.reference_seconds", 5.0, EVERY),  # every summary's FLOPs
    # those that train while pruning, but parp, whose own (prune.overrides) comes first
    ("train.peak_lr", 1e-3, L0),
    ("train.max_steps", 13, EVERY),  # omp and svd fine-tune that much longer
    ("finetune.peak_lr", 1e-3, EVERY - {"omp"}),  # omp has its own
    ("overrides.omp.finetune.peak_lr", 3e-4, {"omp"}),  # one method's own setting
    ("latency.rounds", 2, {"l0-latency"}),  # its latency table, measured again
]


@pytest.mark.parametrize(("key", "value", "reruns"), [pytest.param(*c, id=c[0]) for c in CHANGES])
def test_a_changed_setting_reruns_only_the_jobs_that_read_it(made, key, value, reruns):
    assert _reruns(*made, key, value) == reruns


def test_replicates_are_jobs_of_their_own_with_their_seeds_moved(tmp_path):
    """prune.seeds 2 at 50%: a second job per method of prune.seed_methods there (the
    default leaves the ablations out), its seeds one on, and the tables told; nothing
    else changes."""
    corpus = tmp_path / "results/smoke/corpus/train.jsonl"
    corpus.parent.mkdir(parents=True)
    corpus.touch()
    override = tmp_path / "seeds.yaml"
    override.write_text(yaml.safe_dump({"prune": {"seeds": 2, "seed_sparsities": [0.5]}}))
    out = _snakemake(tmp_path, "--configfile", str(SMOKE), str(override), "--dry-run", "-p")
    jobs = re.split(r"\n(?=(?:local)?rule \w+:)", out)
    pruned = {
        m.group(1): job
        for job in jobs
        if re.match(r"(?:local)?rule prune:", job)
        for m in [re.search(r"^\s*wildcards: model=(\S+)$", job, re.M)]
    }
    replicated = [m for m in EVERY if m not in ABLATIONS]
    assert set(pruned) == {model_name(m, 0.5) for m in EVERY} | {
        model_name(m, 0.5, 1) for m in replicated
    }
    seeds = {name: re.findall(r'\\?"seed\\?": (\d+)', job) for name, job in pruned.items()}
    for method in replicated:
        first, second = seeds[model_name(method, 0.5)], seeds[model_name(method, 0.5, 1)]
        assert first and [int(s) + 1 for s in first] == [int(s) for s in second]
    tables = next(job for job in jobs if re.match(r"(?:local)?rule tables:", job))
    seed_methods = "--seed-methods l0-params l0-flops l0-latency omp parp svd"
    assert f"--seeds 2 --seed-sparsities 0.5 {seed_methods}" in tables
