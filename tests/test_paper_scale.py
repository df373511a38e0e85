"""Paper scale: the LibriSpeech config, per-rule cluster resources, the SLURM profile's
submissions (a dry run, no cluster needed) and the GPU check script (tiny, on the CPU)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch
import yaml

from asrprune.config import load_config, load_schema
from asrprune.data.features import Cmvn
from asrprune.model import ModelConfig, Transducer, save_model
from tests.builders import REPO
from tests.model.tiny import pruned_structure, tiny_model

SUBSETS = sorted(
    {"train-clean-100", "train-clean-360", "train-other-500", "dev-clean", "dev-other"}
    | {"test-clean", "test-other"}
)


def paper_config() -> dict:
    return load_config(REPO / "config/config.yaml", REPO / "config/librispeech.yaml")


def test_librispeech_config_is_the_papers_setup():
    c = paper_config()
    assert c["data"]["source"] == "librispeech" and c["data"]["tokenizer"]["vocab_size"] == 5000
    m = c["model"]
    assert (m["d_model"], m["num_blocks"], m["num_heads"], m["ffn_dim"]) == (512, 18, 8, 1024)
    assert (m["conv_kernel"], m["predictor"], m["predictor_layers"]) == (3, "lstm", 2)
    p = c["prune"]
    assert p["l0"]["target_warmup_steps"] == 10000 and p["train"]["max_steps"] == 110000
    assert (p["l0"]["gate_lr"], p["l0"]["lambda_lr"], p["train"]["peak_lr"]) == (1e-2, 1e-2, 3e-4)
    assert (p["l0"]["lambda_ascent"], p["l0"]["lambda2_init"]) == ("adam", 0.0)
    assert p["finetune"]["max_steps"] == 0 and p["l0"]["width_multiple"] == 1
    # every method of the paper: all but l0-latency, which prunes to this machine's time
    assert set(p["methods"]) == set(
        load_schema()["properties"]["prune"]["properties"]["methods"]["items"]["enum"]
    ) - {"l0-latency"}
    assert p["sparsities"] == [0.2, 0.3, 0.4, 0.5]
    # the paper decodes without a language model; config.yaml's 6-gram must not leak in
    assert c["evaluate"]["lm"]["order"] == 0 and c["evaluate"]["beam"] == 4


def test_no_fine_tuning_trains_no_step(tmp_path):
    # prune.finetune.max_steps 0, the paper's schedule: the compact model stays as it is
    from asrprune.train import Trainer
    from tests.model.tiny import tiny_model
    from tests.test_distributed import MemoryData, settings

    model = tiny_model(seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = MemoryData((60, 70, 80), (3, 4, 5))
    result = Trainer(model, data, None, settings(max_steps=0), tmp_path).run(progress=False)
    assert result.step == 0 and result.checkpoint.is_file() and result.dev_wer is None
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_paper_model_blocks_hold_the_papers_size():
    # Table 1 gives the unpruned model as 75.5 "MB": the blocks' parameters in millions
    c = paper_config()
    config = ModelConfig.from_dict({**c["model"], "vocab_size": 5000}, "model")
    with torch.device("meta"):
        counts = Transducer(config).param_counts()
    assert counts.prunable == pytest.approx(75.5e6, rel=0.01)


def _rules_in_workflow() -> dict[str, str]:
    """Each rule's name and its text, from workflow/rules/*.smk."""
    rules = {}
    for path in sorted((REPO / "workflow/rules").glob("*.smk")):
        text = path.read_text()
        found = list(re.finditer(r"^\s*rule (\w+):", text, re.M))
        for i, m in enumerate(found):
            end = found[i + 1].start() if i + 1 < len(found) else len(text)
            rules[m.group(1)] = text[m.start() : end]
    return rules


def test_every_rule_takes_its_resources_from_the_config():
    rules = _rules_in_workflow()
    schema = load_schema()["properties"]["cluster"]["properties"]["rules"]["properties"]
    assert set(schema) == set(rules)
    for name, text in rules.items():
        assert f'**rule_resources("{name}")' in text, name


def _dry_run(workdir, *args) -> str:
    env = {**os.environ, "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ.get('PATH', '')}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]
    cmd += ["--directory", str(workdir), "--dry-run", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout + result.stderr


def _jobs(output: str) -> dict[str, list[dict]]:
    """Per rule, each planned job's resources and shell command, from a dry run's output."""
    jobs: dict[str, list[dict]] = {}
    for block in re.split(r"\n(?=rule \w+:)", output):
        m = re.match(r"rule (\w+):", block)
        if not m:
            continue
        res = re.search(r"^\s*resources: (.*)$", block, re.M)
        shell = re.search(r"^Shell command: (.*)$", block, re.M)
        resources = dict(kv.split("=", 1) for kv in res.group(1).split(", ")) if res else {}
        jobs.setdefault(m.group(1), []).append(
            {"resources": resources, "shell": shell.group(1) if shell else None}
        )
    return jobs


def test_slurm_dry_run_shows_each_jobs_submission(tmp_path):
    for subset in SUBSETS:  # the folders the config names; the dry run reads no audio
        (tmp_path / "download/LibriSpeech" / subset).mkdir(parents=True)
    site = tmp_path / "site.yaml"  # a site's partitions over the paper config
    site.write_text(
        yaml.safe_dump(
            {
                "cluster": {
                    "default": {"slurm_partition": "cpu"},
                    "rules": {"train_teacher": {"slurm_partition": "gpu", "gpu_model": "a100"}},
                }
            }
        )
    )
    output = _dry_run(
        tmp_path,
        "--profile",
        str(REPO / "workflow/profiles/slurm"),
        "--configfile",
        str(REPO / "config/librispeech.yaml"),
        str(site),
    )
    jobs = _jobs(output)
    (teacher,) = jobs["train_teacher"]
    assert (
        teacher["resources"]
        | {
            "gpu": "8",
            "gpu_model": "a100",
            "mem_mb": "256000",
            "runtime": "2880",
            "cpus_per_task": "64",
            "slurm_partition": "gpu",
        }
        == teacher["resources"]
    )
    assert teacher["shell"].startswith(
        "torchrun --standalone --nproc_per_node=8 -m asrprune train-teacher "
    )
    assert len(jobs["prune"]) == 32  # 8 methods x 4 sparsities, each on 8 GPUs
    for job in jobs["prune"]:
        assert job["resources"]["gpu"] == "8"
        assert job["shell"].startswith(
            "torchrun --standalone --nproc_per_node=8 -m asrprune prune "
        )
        assert job["resources"]["slurm_partition"] == "cpu"  # only the teacher's was set
    assert {j["resources"]["gpu"] for j in jobs["evaluate"]} == {"1"}
    (speed,) = jobs["speed"]
    assert speed["resources"]["gpu"] == "0" and speed["resources"]["slurm_extra"] == "--exclusive"
    for rule in ("corpus_librispeech", "check_split", "extract_features", "train_bpe", "cmvn"):
        for job in jobs[rule]:
            assert job["resources"]["gpu"] == "0" and job["shell"].startswith("asrprune "), rule


def test_slurm_profile_gives_snakemake_a_core_count():
    # the speed rule's threads are workflow.cores: without a count a cluster run stops
    # before its first job (a dry run sets one itself, so it cannot show this)
    profile = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    assert profile["executor"] == "slurm" and profile["cores"] >= 1
    assert (REPO / "profiles/slurm/config.yaml").read_text() == (
        REPO / "workflow/profiles/slurm/config.yaml"
    ).read_text()


def test_local_runs_keep_their_commands(tmp_path):
    jobs = _jobs(
        _dry_run(tmp_path, "--cores", "1", "-p", "--configfile", str(REPO / "config/smoke.yaml"))
    )
    for rule in ("train_teacher", "prune"):
        for job in jobs[rule]:
            assert job["resources"]["gpu"] == "0"
            assert job["shell"].startswith(f"asrprune {rule.replace('_', '-')} "), job["shell"]


def test_gpu_check_runs_tiny_on_the_cpu():
    cmd = [sys.executable, str(REPO / "scripts/gpu_check.py"), "--tiny", "--threads", "1"]
    cmd += ["--teacher-steps", "2", "--prune-steps", "2", "--warmup-steps", "1"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    if not torch.cuda.is_available():
        env["CUDA_VISIBLE_DEVICES"] = ""
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout)
    for phase in ("teacher", "prune"):
        assert report[phase]["steps"] == 2 and report[phase]["steps_per_s"] > 0
    assert report["model"]["d_model"] == 32 and report["tiny"]
    s = report["schedule"]
    assert (s["teacher_steps"], s["prune_steps"]) == (150000, 110000)
    assert s["teacher_hours"] > 0 and s["gpu_hours"] > 0
    assert s["gpus_per_job"] == {"train_teacher": 8, "prune": 8}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_check_reports_peak_gpu_memory():
    cmd = [sys.executable, str(REPO / "scripts/gpu_check.py"), "--tiny"]
    cmd += ["--teacher-steps", "2", "--prune-steps", "2", "--warmup-steps", "1"]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout)
    assert report["device"] != "cpu" and report["teacher"]["peak_gpu_memory_gib"] > 0


def test_gpu_speed_times_synthetic_structures_and_model_files_on_the_cpu(tmp_path):
    script = [sys.executable, str(REPO / "scripts/gpu_speed.py"), "--device", "cpu"]
    script += ["--batch", "1", "2", "--seconds", "0.5", "--rounds", "2", "--warmup", "0"]

    def run(*args: str) -> dict:
        result = subprocess.run([*script, *args], capture_output=True, text=True, cwd=REPO)
        assert result.returncode == 0, result.stderr[-4000:]
        return json.loads(result.stdout)

    smoke = [str(REPO / "config/config.yaml"), str(REPO / "config/smoke.yaml")]
    report = run("--config", *smoke, "--keep", "0.9", "0.6", "--multiple", "8")
    models = report["models"]
    assert list(models) == ["full", "keep-0.9", "keep-0.6"]
    assert [m["d_model"] for m in models.values()] == [48, 40, 32]  # 43.2 and 28.8, rounded
    assert 0 == models["full"]["sparsity"] < models["keep-0.9"]["sparsity"]
    assert models["keep-0.9"]["sparsity"] < models["keep-0.6"]["sparsity"]
    timings = {(t["model"], t["batch"]): t for t in report["timings"]}
    assert len(timings) == 6 and timings["full", 2]["time_ratio"] == 1.0
    assert timings["keep-0.6", 1]["flops_ratio"] < timings["keep-0.9", 1]["flops_ratio"] < 1

    paths = []
    for name, structure in (("teacher", None), ("student", pruned_structure())):
        paths.append(tmp_path / f"{name}.pt")
        save_model(paths[-1], tiny_model(structure=structure), b"", Cmvn.identity().to_dict())
    report = run("--models", *map(str, paths))
    assert list(report["models"]) == ["teacher", "student"]
    assert report["models"]["student"]["d_model"] == 28
