"""The smoke workflow, run for real with Snakemake, in a fresh working directory."""

import csv
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml

from asrprune.config import load_config
from asrprune.data.corpus import EmbeddedCorpusSettings, split_voices
from asrprune.data.manifest import SPLITS, data_splits, read_manifest
from asrprune.io import read_json
from tests.builders import REPO

pytestmark = pytest.mark.workflow


def _snakemake_command(workdir, *args, path=None):
    """The command line and environment that run Snakemake on the repo's Snakefile in
    ``workdir``; ``path`` replaces $PATH."""
    path = path or os.environ.get("PATH", "")
    env = {**os.environ, "PATH": f"{REPO / '.venv' / 'bin'}:{path}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        *args,
    ]
    return cmd, env


def _snakemake(workdir, *args, check=True, path=None):
    """Run Snakemake on the repo's Snakefile in ``workdir``; ``path`` replaces $PATH."""
    cmd, env = _snakemake_command(workdir, *args, path=path)
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check:
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("smoke")
    _snakemake(workdir, "--configfile", str(REPO / "config/smoke.yaml"), "--cores", "2")
    return workdir / "results" / "smoke"


SMOKE_PRUNED_SPLITS = load_config(REPO / "config/config.yaml", REPO / "config/smoke.yaml")[
    "evaluate"
]["pruned_splits"]
SMOKE_SPLITS = data_splits(
    load_config(REPO / "config/config.yaml", REPO / "config/smoke.yaml")["data"]
)


def test_smoke_workflow_builds_the_data_stage(smoke_run):
    report = read_json(smoke_run / "data/report.json")
    assert report["source"] == "embedded"
    assert list(report["splits"]) == list(SMOKE_SPLITS) == [*SPLITS, "test-newtext", "test-real"]
    for split in SMOKE_SPLITS:
        kept = read_manifest(smoke_run / f"data/manifests/{split}.jsonl")
        assert report["splits"][split]["utterances"] == len(kept) > 0
        index = read_json(smoke_run / f"data/features/{split}/index.json")
        assert set(index["utterances"]) == {u.id for u in kept}
    assert (smoke_run / "data/bpe.model").stat().st_size > 0
    assert set(read_json(smoke_run / "data/cmvn.json")) >= {"mean", "std"}


def test_held_out_text_domain_and_real_speech_never_reach_training(smoke_run):
    """Training text comes from the training domains only; test-newtext is the held-out
    domain, read by training voices; test-real is real speech; the data report says so."""
    splits = read_json(smoke_run / "data/report.json")["splits"]
    assert set(splits["train"]["domains"]) == {"scripture", "jargon"}
    assert set(splits["test-newtext"]["domains"]) == {"devil"}
    assert splits["test-real"]["engines"] == {"human": splits["test-real"]["utterances"]}
    manifests = {s: read_manifest(smoke_run / f"data/manifests/{s}.jsonl") for s in SMOKE_SPLITS}
    train_text = {u.text for u in manifests["train"]}
    assert not train_text & {u.text for u in manifests["test-newtext"]}
    # training voices: no base voice (speaker id minus its perturbation) of test-other's
    # held-out ones reads test-newtext
    base = {k: {u.speaker.rsplit("_", 1)[0] for u in v} for k, v in manifests.items()}
    assert base["test-newtext"] and not base["test-newtext"] & base["test-other"]
    assert "text domains (synthesised)" in (smoke_run / "RESULTS.md").read_text()


def test_every_job_has_a_log_and_a_benchmark(smoke_run):
    logs = {p.stem for p in (smoke_run / "logs").rglob("*.log")}
    benchmarks = {p.stem for p in (smoke_run / "benchmarks").rglob("*.tsv")}
    assert logs == benchmarks
    assert {"mlflow_init", "corpus_embedded", "data_report", "train_bpe", "cmvn"} <= logs


def _only_child_run(smoke_run, stage):
    """The one MLflow run of ``stage``, after checking it sits under the parent run."""
    import mlflow

    ids = read_json(smoke_run / "mlflow/ids.json")
    mlflow.set_tracking_uri(f"sqlite:///{smoke_run / 'mlflow.db'}")
    runs = mlflow.search_runs([ids["experiment_id"]], filter_string=f"tags.stage = '{stage}'")
    assert len(runs) == 1
    assert runs["tags.mlflow.parentRunId"][0] == ids["parent_run_id"]
    return runs.iloc[0]


def test_data_report_is_logged_under_the_parent_run(smoke_run):
    assert _only_child_run(smoke_run, "data")["metrics.train.utterances"] > 0


def test_second_run_has_nothing_to_do(smoke_run):
    result = _snakemake(
        smoke_run.parents[1],
        "--configfile",
        str(REPO / "config/smoke.yaml"),
        "--cores",
        "2",
        "--dry-run",
    )
    assert "Nothing to be done" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.embedded.utterences=3", "unknown key 'utterences'"),
        ("data.source=timit", "data.source: 'timit' is not one of"),
        ("data.source=librispeech", "evaluate.lm_text: pool is the embedded corpus's text"),
    ],
)
def test_bad_config_stops_before_any_job(tmp_path, override, message):
    key, value = override.split("=")
    nested = value
    for part in reversed(key.split(".")):
        nested = {part: nested}
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"run": "bad", **nested}))
    result = _snakemake(
        tmp_path, "--configfile", str(config), "--cores", "1", "--dry-run", check=False
    )
    assert result.returncode != 0
    assert message in result.stderr + result.stdout
    assert not (tmp_path / "results").exists()


def test_missing_librispeech_folder_stops_before_any_job(tmp_path):
    config = tmp_path / "ls.yaml"
    config.write_text(
        f"run: ls\ndata:\n  source: librispeech\n  librispeech:\n    root: {tmp_path / 'nope'}\n"
        "evaluate:\n  lm_text: transcripts\n"  # the default's pool is the embedded corpus's
    )
    result = _snakemake(tmp_path, "--configfile", str(config), "--cores", "1", check=False)
    assert result.returncode != 0
    assert f"folder not found: {tmp_path / 'nope'}" in result.stderr + result.stdout
    assert not (tmp_path / "results").exists()


def test_missing_tts_engine_stops_before_any_job(tmp_path):
    """With espeak-ng missing from PATH, the error names the program and its Debian package."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            link = bin_dir / name
            if name != "espeak-ng" and not link.exists():
                link.symlink_to(os.path.join(folder, name))
    result = _snakemake(
        tmp_path / "work",
        *("--configfile", str(REPO / "config/smoke.yaml"), "--cores", "1", "--dry-run"),
        check=False,
        path=str(bin_dir),
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "espeak-ng (Debian package espeak-ng)" in output, output
    assert not (tmp_path / "work" / "results").exists()


def test_teacher_is_trained_evaluated_and_usable(smoke_run):
    metrics = read_json(smoke_run / "metrics/teacher.json")
    # every evaluation split of the run: the held-out text domain and real speech too
    assert list(metrics["wer"]) == list(SMOKE_SPLITS[1:])
    assert all(w >= 0 for w in metrics["wer"].values())  # a 30-step teacher may insert
    assert 0 < metrics["prunable_params"] < metrics["encoder_params"]
    assert metrics["size_mb"] == pytest.approx(metrics["encoder_params"] * 4 / 1e6)
    # smoke.yaml decodes with a token 3-gram counted on the corpus's text pool, the
    # other decoding settings as merged from config.yaml
    evaluate = load_config(REPO / "config/config.yaml", REPO / "config/smoke.yaml")["evaluate"]
    # greedy search for every model, the full decoding beside it (smoke.yaml's sparsity is
    # in evaluate.full_sparsities, and the teacher always has it)
    assert metrics["decoding"]["method"] == "greedy"
    assert set(metrics["full"]["wer"]) == set(metrics["wer"])
    lm = metrics["full"]["decoding"]["lm"]
    assert lm["order"] == 3 and metrics["full"]["decoding"]["beam"] == evaluate["beam"]
    assert (lm["weight"], lm["token_bonus"]) == (
        evaluate["lm"]["weight"],
        evaluate["lm"]["token_bonus"],
    )
    assert lm["text"].endswith("smoke/data/lm_text.txt")
    # the pool holds more than the transcripts (text never synthesised), and no
    # evaluation transcript (rule lm_text refuses to write one)
    pool = set((smoke_run / "data/lm_text.txt").read_text().splitlines())
    train = {u.text for u in read_manifest(smoke_run / "data/manifests/train.jsonl")}
    assert len(pool) > len(train)
    for split in ("dev", "test-clean", "test-other", "test-newtext"):
        assert not pool & {
            u.text for u in read_manifest(smoke_run / f"data/manifests/{split}.jsonl")
        }
    hyps = (smoke_run / "metrics/teacher.hyps/test-clean.jsonl").read_text().splitlines()
    assert len(hyps) == len(read_manifest(smoke_run / "data/manifests/test-clean.jsonl"))
    # the model file works outside the workflow too, decoded as the evaluation decodes it
    audio = read_manifest(smoke_run / "data/manifests/test-other.jsonl")[0].audio
    result = subprocess.run(
        [
            str(REPO / ".venv/bin/asrprune"),
            "transcribe",
            *("--model", str(smoke_run / "models/teacher.pt"), "--beam", "4"),
            *("--lm", '{"order": 3}', "--lm-text", str(smoke_run / "data/lm_text.txt")),
            str(smoke_run.parents[1] / audio),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    path, _, _ = result.stdout.rstrip("\n").partition("\t")
    assert path == str(smoke_run.parents[1] / audio)


def test_teacher_run_is_logged_under_the_parent_run(smoke_run):
    import mlflow

    run = _only_child_run(smoke_run, "teacher")
    history = mlflow.MlflowClient().get_metric_history(run["run_id"], "train.loss")
    assert len(history) >= 2


SMOKE_METHODS = yaml.safe_load((REPO / "config/smoke.yaml").read_text())["prune"]["methods"]
TRAINED_WHILE_PRUNING = [
    "l0-coarse",
    "l0-flops",
    "l0-latency",
    "l0-nohidden",
    "l0-nokd",
    "l0-params",
    "parp",
]


def test_smoke_config_runs_every_method():
    from asrprune.pruning.job import PRUNE_METHODS

    assert sorted(SMOKE_METHODS) == sorted(PRUNE_METHODS)


@pytest.mark.parametrize("method", ["l0-params", "l0-flops", "l0-latency"])
def test_pruning_jobs_write_compact_models_that_are_evaluated(smoke_run, method):
    name = f"{method}-s0.5"
    teacher = read_json(smoke_run / "metrics/teacher.json")
    metrics = read_json(smoke_run / f"metrics/{name}.json")
    assert set(metrics["wer"]) == set(SMOKE_PRUNED_SPLITS)
    assert teacher["sparsity"] == 0.0 and teacher["flops_sparsity"] == 0.0
    # a 12-step smoke job does not reach its target in expectation; its final masks are
    # held to it (in the budget's metric) and cut out
    assert metrics["prunable_params"] <= teacher["prunable_params"]
    assert metrics["sparsity"] == pytest.approx(
        1 - metrics["prunable_params"] / teacher["prunable_params"]
    )
    summary = read_json(smoke_run / f"pruning/{name}.json")
    assert summary["budget"] == method.removeprefix("l0-")
    assert summary["structure"] == metrics["structure"]
    kept = {
        "params": 1 - summary["sparsity"],
        "flops": 1 - summary["flops_sparsity"],
        "latency": summary.get("latency_kept"),
    }[summary["budget"]]
    assert kept == pytest.approx(summary["hold"]["kept"])
    # the tiny model's time is mostly fixed costs, which a latency table measured on a
    # busy machine can put above half of it: then no structure fits, and the job says so
    if summary["budget"] != "latency":
        assert summary["hold"]["fits"]
    assert kept <= 0.5 + 1e-9 or not summary["hold"]["fits"]
    rows = summary["history"]["train"]
    assert rows[-1]["target_kept"] == pytest.approx(0.5)
    assert {"expected_kept", "lambda1", "lambda2", "distill_loss"} <= set(rows[-1])


@pytest.mark.parametrize("method", ["omp", "parp", "svd", "l0-nohidden", "l0-coarse", "l0-nokd"])
def test_baselines_and_ablations_are_evaluated_like_ours(smoke_run, method):
    metrics = read_json(smoke_run / f"metrics/{method}-s0.5.json")
    summary = read_json(smoke_run / f"pruning/{method}-s0.5.json")
    assert set(metrics["wer"]) == set(SMOKE_PRUNED_SPLITS)
    assert metrics["sparsity"] == pytest.approx(summary["sparsity"])
    # magnitude and SVD meet the target by construction, overshooting by less than their
    # largest unit (a convolution module is 10% of the tiny model's prunable parameters)
    if method in ("omp", "parp", "svd"):
        assert 0.5 <= summary["sparsity"] < 0.6


def test_pruning_and_fine_tuning_are_logged_under_the_parent_run(smoke_run):
    import mlflow

    ids = read_json(smoke_run / "mlflow/ids.json")
    mlflow.set_tracking_uri(f"sqlite:///{smoke_run / 'mlflow.db'}")
    for stage in ("prune", "finetune"):
        runs = mlflow.search_runs([ids["experiment_id"]], filter_string=f"tags.stage = '{stage}'")
        expected = TRAINED_WHILE_PRUNING if stage == "prune" else sorted(SMOKE_METHODS)
        assert sorted(runs["tags.method"]) == expected
        assert set(runs["tags.mlflow.parentRunId"]) == {ids["parent_run_id"]}


def test_speed_table_has_a_row_per_model(smoke_run):
    with open(smoke_run / "speed.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == ["teacher", *(f"{m}-s0.5" for m in SMOKE_METHODS)]
    assert all(float(r["rtf_median"]) > 0 and float(r["decode_rtf_median"]) > 0 for r in rows)


def test_smoke_run_writes_the_tables_and_figures(smoke_run):
    import pandas as pd

    from asrprune.results.layout import (
        figure_names,
        model_name,
        significance_tables,
        table_methods,
        table_stems,
    )
    from asrprune.results.tables import COLUMNS

    sparsities = yaml.safe_load((REPO / "config/smoke.yaml").read_text())["prune"]["sparsities"]
    tables = table_methods(SMOKE_METHODS)
    assert set(tables) == {"table1", "table2"}
    for name, methods in tables.items():
        table = pd.read_csv(smoke_run / f"tables/{name}.csv")
        assert list(table.columns[: len(COLUMNS)]) == list(COLUMNS)
        assert list(table["method"]) == ["teacher", *methods * len(sparsities)]
        assert table.loc[0, "rtf_change_pct"] == 0.0 and table.loc[0, "size_change_pct"] == 0.0
        assert (smoke_run / f"tables/{name}.md").read_text().startswith("| Sparsity | Method |")
    assert sorted(p.stem for p in (smoke_run / "tables").glob("*.csv")) == sorted(
        [
            *table_stems(SMOKE_METHODS, domain_shift=True),
            *("deploy", "speed_deploy", "latency", "latency_matched"),
        ]
    )
    matched = pd.read_csv(smoke_run / "tables/latency_matched.csv")  # l0-flops against l0-latency
    assert set(matched["rival"]) == {model_name("l0-flops", s) for s in sparsities}
    assert "### At matched time" in (smoke_run / "tables/latency.md").read_text()
    shift = pd.read_csv(smoke_run / "tables/domain_shift.csv")
    assert len(shift) == len(SMOKE_METHODS) * len(sparsities)
    for row in shift.itertuples():  # the bootstrap scores hypotheses as evaluate did
        wer = read_json(smoke_run / f"metrics/{model_name(row.method, row.sparsity)}.json")["wer"]
        assert row.pruned_out == pytest.approx(wer["test-newtext"], abs=1e-9)
    assert "Pruning in and out of domain" in (smoke_run / "RESULTS.md").read_text()
    for name, rivals in significance_tables(SMOKE_METHODS).items():
        tested = pd.read_csv(smoke_run / f"tables/{name}_significance.csv")
        # greedy and (evaluate.full_sparsities: 50%) full decoding, test-clean and test-other
        assert len(tested) == len(rivals) * len(sparsities) * 2 * 2
        assert set(tested["decoding"]) == {"greedy", "full"}
        for row in tested.itertuples():
            # the bootstrap scores the saved hypotheses as the evaluation scored the split
            metrics = read_json(smoke_run / f"metrics/{row.b}.json")
            wer = metrics["wer"] if row.decoding == "greedy" else metrics["full"]["wer"]
            assert row.wer_b == pytest.approx(wer[row.split], abs=1e-9)
    for stem in figure_names(SMOKE_METHODS):
        for ext in ("png", "pdf"):
            assert (smoke_run / f"figures/{stem}.{ext}").stat().st_size > 1000


def test_latency_table_is_measured_pruned_to_and_checked(smoke_run):
    """The latency table of the smoke profile, the l0-latency job's modelled time kept,
    and the check of every model's modelled time against the speed rule's."""
    import pandas as pd

    table = read_json(smoke_run / "latency/cpu-torch-t1.json")
    assert table["profile"] == {"device": "cpu", "backend": "torch", "threads": 1}
    assert table["encoder"]["measured"] > 0
    summary = read_json(smoke_run / "pruning/l0-latency-s0.5.json")
    # a few smoke steps leave blocks that gather most of the stream: they can cost more
    # than the teacher's full-width blocks, so the fraction is not capped at 1
    assert summary["budget"] == "latency" and 0 < summary["latency_kept"] < 2
    check = pd.read_csv(smoke_run / "tables/latency.csv")
    assert list(check["model"]) == ["teacher", *(f"{m}-s0.5" for m in SMOKE_METHODS)]
    row = check.set_index("model").loc["l0-latency-s0.5"]
    assert row["target_kept"] == pytest.approx(0.5)
    assert row["modelled_kept"] == pytest.approx(summary["latency_kept"])
    # SVD keeps the teacher's structure: only its factored layers move its prediction
    factored = read_json(smoke_run / "metrics/svd-s0.5.json")["low_rank"]
    assert factored and all(layer["rank"] >= 1 for layer in factored)
    assert check.set_index("model").loc["svd-s0.5", "modelled_kept"] != pytest.approx(1.0)
    assert "## Latency model" in (smoke_run / "RESULTS.md").read_text()


def test_deployed_models_are_exported_checked_evaluated_and_timed(smoke_run):
    import pandas as pd

    deployed = ["teacher", "l0-params-s0.5", "svd-s0.5"]  # config/smoke.yaml deploy
    for model in deployed:
        for precision in ("fp32", "int8"):
            manifest = read_json(smoke_run / f"exports/{model}/{precision}/export.json")
            assert manifest["precision"] == precision
            metrics = read_json(smoke_run / f"metrics/exports/{model}.{precision}.json")
            assert metrics["export"]["onnx_mb"] > 0
            assert (
                metrics["encoder_params"]
                == read_json(smoke_run / f"metrics/{model}.json")["encoder_params"]
            )
        check = read_json(smoke_run / f"exports/{model}/fp32/export.json")["check"]
        assert check["encoder_max_abs_diff"] < 1e-3
    table = pd.read_csv(smoke_run / "tables/deploy.csv")
    assert list(table["model"]) == deployed
    # fp32 on ONNX Runtime decodes as PyTorch does, utterance by utterance
    assert (table["same_fp32_pct"] >= 90).all()
    speed = pd.read_csv(smoke_run / "speed_deploy.csv")
    assert len(speed) == len(deployed) * 3  # PyTorch, ORT fp32, ORT int8 on one thread
    assert list(speed["model"][:3]) == deployed and (speed["rtf_encoder"] > 0).all()
    assert speed["rtf_full"].notna().all()  # the smoke config decodes with beam and LM


def test_results_doc_is_written_from_the_runs_files(smoke_run):
    from asrprune.results.layout import figure_names
    from tests.results.trace import file_numbers, stage_numbers, untraced

    text = (smoke_run / "RESULTS.md").read_text()
    inputs = [smoke_run / "data/report.json", smoke_run / "metrics/teacher.json"]
    inputs += [smoke_run / "speed.csv", *(smoke_run / "tables").glob("*.md")]
    own = smoke_run / "benchmarks/results/results_doc.tsv"
    sources = file_numbers(inputs) | stage_numbers(smoke_run / "benchmarks", exclude=[own])
    assert untraced(text, sources) == []
    sections = ["Data", "Teacher", "Tables", "Speed", "Latency model", "Deployment", "Figures"]
    sections.append("Stage times")
    sections.append("Code")
    assert re.findall(r"^## (.+)$", text, flags=re.M) == sections
    assert (smoke_run / "tables/table1.md").read_text() in text
    links = re.findall(r"\]\((figures/[^)]+)\)", text)
    assert sorted(links) == sorted(f"figures/{f}.png" for f in figure_names(SMOKE_METHODS))
    assert "Code version: commit `" in text  # the workflow runs from a git checkout


def test_report_is_built_with_the_tables_and_figures(smoke_run):
    report = smoke_run / "report.html"
    _snakemake(
        smoke_run.parents[1],
        "--configfile",
        str(REPO / "config/smoke.yaml"),
        "--report",
        str(report),
    )
    html = report.read_text()
    assert len(html) > 10_000
    assert "table1.csv" in html and "wer_rtf.png" in html


def test_lm_fusion_script_and_vocabulary_errors_read_a_run(smoke_run):
    teacher = str(smoke_run / "models/teacher.pt")
    result = subprocess.run(
        [
            *(sys.executable, str(REPO / "scripts/lm_fusion.py"), "--model", teacher),
            *("--data", str(smoke_run / "data"), "--splits", "dev", "test-clean"),
            *("--order", "3", "--fusion", "0:0", "0.3:1", "--threads", "1"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if line.startswith("|")]
    assert [r[0].strip() for r in rows[2:]] == ["dev", "test-clean"]
    for row in rows[2:]:
        no_lm, weight_zero, _ = (float(x) for x in row[1:])
        assert weight_zero == no_lm  # fusion at weight 0 and no bonus changes nothing

    result = subprocess.run(
        [
            *(sys.executable, "-m", "asrprune", "vocabulary-errors", "--model", "teacher"),
            *("--metrics-dir", str(smoke_run / "metrics")),
            *("--train-manifest", str(smoke_run / "data/manifests/train.jsonl")),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    splits = [line.split("|")[1].strip() for line in result.stdout.splitlines()[2:]]
    assert splits == ["dev", "test-clean", "test-other"]


def test_corpus_breakdown_decodes_every_condition(smoke_run, tmp_path):
    out = tmp_path / "breakdown.json"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts/corpus_breakdown.py"),
            "--model",
            str(smoke_run / "models/teacher.pt"),
            "--corpus",
            str(smoke_run / "corpus"),
            "--utterances",
            "3",
            "--threads",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    breakdown = read_json(out)
    conditions = ["train-clean", "train-noisy", "test-clean", "test-clean+noise"]
    conditions += ["new-variants-clean", "new-variants", "test-other-clean", "test-other"]
    assert list(breakdown["utterances"]) == conditions
    assert all(n == 3 for n in breakdown["utterances"].values())
    assert list(breakdown["wer"]) == conditions and min(breakdown["wer"].values()) >= 0
    assert set(breakdown["by_voice"]) == set(conditions[2:])
    # the new variants are espeak-ng voices of training accents
    settings = EmbeddedCorpusSettings.from_dict(read_json(smoke_run / "corpus/settings.json"))
    train_voices, _ = split_voices(settings)
    train_accents = {f"espeak/{v.accent}" for v in train_voices if v.engine == "espeak"}
    new_voices = set(breakdown["by_voice"]["new-variants"])
    assert new_voices and new_voices <= train_accents
    assert "| test-other-clean | 3 |" in result.stdout


# -----------------------------------------------------------------------------
# chaos: SIGKILL at random moments, resume, and the same results as without kills

# the asrprune commands of each stage's jobs
STAGE_COMMANDS = {
    "data": {
        *("corpus-embedded", "check-split", "extract-features", "train-bpe", "cmvn"),
        "data-report",
    },
    "teacher": {"train-teacher"},
    "prune": {"prune"},
    "evaluate": {"evaluate"},
}
# a kill lands this many seconds at most after a job of its stage is seen starting (the
# smoke jobs' lengths on 2 cores, so that kills fall inside training loops too)
# Seconds after the stage is seen within which the kill comes: short enough that it lands
# inside the stage on a fast machine too (the smoke teacher trains for about 30 s).
KILL_WITHIN = {"data": 2.0, "teacher": 15.0, "prune": 8.0, "evaluate": 3.0}
KILLS = ["data", "teacher", "teacher", "prune", "prune", "evaluate"]
ORDER = {stage: n for n, stage in enumerate(("data", "teacher", "prune", "evaluate"))}


def _running_jobs(snakemake):
    """``(stage, process)`` of each asrprune job Snakemake runs now."""
    import psutil

    jobs = []
    try:
        children = snakemake.children(recursive=True)
    except psutil.NoSuchProcess:
        return jobs
    for child in children:
        try:
            args = child.cmdline()
        except psutil.Error:
            continue
        for i, arg in enumerate(args[:-1]):
            if arg.endswith("/asrprune"):
                jobs += [(s, child) for s, cmds in STAGE_COMMANDS.items() if args[i + 1] in cmds]
    return jobs


def _kill_during(workdir, stage, mode, rng, log):
    """Start Snakemake; once a job of ``stage`` runs, wait a random moment and SIGKILL
    either that job (``mode`` "job": Snakemake sees it fail) or Snakemake's whole process
    group with every job (``mode`` "all": a crash). What was killed, or None if the
    workflow finished first."""
    import psutil

    cmd, env = _snakemake_command(
        workdir,
        *("--configfile", str(REPO / "config/smoke.yaml"), "--cores", "2"),
        # --nolock: a SIGKILLed Snakemake leaves its lock behind
        *("--rerun-incomplete", "--nolock"),
    )
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=out, start_new_session=True)
    snakemake = psutil.Process(proc.pid)
    killed = None
    deadline = None
    while proc.poll() is None:
        jobs = _running_jobs(snakemake)
        # the stage, or a later one when a fast machine went past it (so a kill lands
        # whenever work remains, however fast the stages run)
        if deadline is None and any(ORDER[s] >= ORDER[stage] for s, _ in jobs):
            deadline = time.monotonic() + rng.uniform(0.5, KILL_WITHIN[stage])
        if deadline is not None and time.monotonic() >= deadline:
            targets = [p for s, p in jobs if s == stage] or [p for _, p in jobs]
            try:
                names = [" ".join(p.cmdline()[2:4]) for _, p in jobs]
                target = " ".join(targets[0].cmdline()[2:4]) if targets else None
            except psutil.NoSuchProcess:
                target = None
            if target is None:  # between two jobs: wait for the next
                time.sleep(0.2)
                continue
            if mode == "job":
                killed = f"job {target}"
                targets[0].kill()
            else:
                os.killpg(proc.pid, signal.SIGKILL)
                killed = f"all, running {sorted(names)}"
            break
        time.sleep(0.2)
    proc.wait()
    return killed


TIMINGS = ("rtf", "rtf_change_pct")  # table 1 and 2's timed columns
DEPLOY_TIMINGS = (
    "rtf_encoder",
    "rtf_greedy",
    "rtf_full",
    "encoder_ratio",
    "full_ratio",
    "speedup_over_flops",
)


# what a run measures, so two runs differ in it: l0-latency prunes to a latency table timed
# on the machine, and the latency check compares timings (and pairs jobs by them)
MEASURED = {"method": "l0-latency", "tables": ("latency.csv", "latency_matched.csv")}


def _tables(run, ignore=(*TIMINGS, *DEPLOY_TIMINGS, "vs_torch")):
    """Every results table, without the columns that time decoding and without what the
    run measured (``MEASURED``)."""
    import pandas as pd

    tables = {}
    for p in sorted((run / "tables").glob("*.csv")):
        if p.name in MEASURED["tables"]:
            continue
        table = pd.read_csv(p).drop(columns=list(ignore), errors="ignore")
        if "method" in table.columns:
            table = table[table["method"] != MEASURED["method"]].reset_index(drop=True)
        tables[p.name] = table
    return tables


def _child_runs(run):
    """Run name to status of every live MLflow run under the workflow's parent run."""
    import mlflow

    ids = read_json(run / "mlflow/ids.json")
    mlflow.set_tracking_uri(f"sqlite:///{run / 'mlflow.db'}")
    runs = mlflow.search_runs(
        [ids["experiment_id"]], filter_string=f"tags.mlflow.parentRunId = '{ids['parent_run_id']}'"
    )
    return list(zip(runs["tags.mlflow.runName"], runs["status"], strict=True))


def test_kills_at_random_moments_then_resume_give_the_same_results(smoke_run, tmp_path):
    """SIGKILL during each stage, --rerun-incomplete after each: the tables equal those
    of the uninterrupted run (timings aside), no file is partial, and MLflow holds each
    job's run once."""
    import pandas as pd
    import torch

    from asrprune.io import read_jsonl

    rng = random.Random(1205)
    # as many job kills (Snakemake sees the job fail) as crashes, in a seeded order
    modes = rng.sample(["job", "all"] * (len(KILLS) // 2), len(KILLS))
    workdir = tmp_path / "chaos"
    kills = []
    for n, (stage, mode) in enumerate(zip(KILLS, modes, strict=True)):
        killed = _kill_during(workdir, stage, mode, rng, tmp_path / f"attempt{n}.log")
        kills.append((stage, killed))
    print("\n".join(f"kill during {stage}: {killed}" for stage, killed in kills))
    assert sum(killed is not None for _, killed in kills) >= 5, kills
    _snakemake(
        workdir,
        *("--configfile", str(REPO / "config/smoke.yaml"), "--cores", "2"),
        *("--rerun-incomplete", "--nolock"),
    )
    run = workdir / "results" / "smoke"

    expected, got = _tables(smoke_run), _tables(run)
    assert list(got) == list(expected)
    for name, table in expected.items():
        pd.testing.assert_frame_equal(got[name], table, obj=name)

    for path in run.rglob("*.json"):
        read_json(path)  # raises on a partial file
    for path in run.rglob("*.jsonl"):
        read_jsonl(path)
    for path in run.rglob("*.pt"):
        torch.load(path, map_location="cpu", weights_only=True)

    runs = _child_runs(run)
    assert sorted(runs) == sorted(_child_runs(smoke_run))
    assert len({name for name, _ in runs}) == len(runs)
    assert {status for _, status in runs} == {"FINISHED"}
