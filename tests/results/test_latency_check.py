"""The latency model's check table: modelled against measured time, targets met or not."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from asrprune.errors import AsrpruneError
from asrprune.model import ConformerEncoder, EncoderStructure, LatencyModel
from asrprune.results.document import build_document
from asrprune.results.latency import build_latency_table, write_latency_table
from asrprune.results.layout import model_name
from tests.model.tiny import synthetic_table, tiny_config
from tests.results.runs import structure_at, write_run
from tests.results.test_document import fake_run

METHODS = ["l0-latency", "omp"]
SPARSITIES = [0.3, 0.5]


@pytest.fixture
def run(tmp_path):
    models = [model_name(m, s) for s in SPARSITIES for m in METHODS]
    latency = LatencyModel(synthetic_table())
    full = ConformerEncoder.count_latency(EncoderStructure.full(tiny_config()), latency)
    # measured: the latency-target models land 2% above their prediction, OMP's 10% below
    rtf = {"teacher": 1.0}
    for name in models:
        modelled = ConformerEncoder.count_latency(structure_at(float(name[-3:])), latency) / full
        rtf[name] = modelled * (1.02 if name.startswith("l0-latency") else 0.9)
    write_run(tmp_path, METHODS, SPARSITIES, rtf)
    (tmp_path / "latency.json").write_text(json.dumps(synthetic_table()))
    return tmp_path, models, rtf


def test_every_model_is_modelled_measured_and_checked_against_its_target(run):
    root, models, rtf = run
    table = build_latency_table(root / "latency.json", root / "speed.csv", root / "metrics", models)
    assert list(table["model"]) == ["teacher", *models]
    rows = table.set_index("model")
    assert rows.loc["teacher", "modelled_kept"] == pytest.approx(1.0)
    assert rows.loc["teacher", "model_error_pct"] == pytest.approx(0.0)
    for name in models:
        assert rows.loc[name, "measured_kept"] == pytest.approx(rtf[name])
        error = 100 * (1 / 1.02 - 1) if name.startswith("l0-latency") else 100 * (1 / 0.9 - 1)
        assert rows.loc[name, "model_error_pct"] == pytest.approx(error)
    assert rows.loc["l0-latency-s0.3", "target_kept"] == pytest.approx(0.7)
    assert rows.loc["l0-latency-s0.3", "target_error_pct"] == pytest.approx(
        100 * (rtf["l0-latency-s0.3"] / 0.7 - 1)
    )
    assert pd.isna(rows.loc["omp-s0.5", "target_kept"])
    assert pd.isna(rows.loc["omp-s0.5", "target_error_pct"])


def test_the_markdown_summarises_errors_and_targets_and_goes_into_results(run, tmp_path):
    root, models, _ = run
    md = write_latency_table(
        root / "latency.json", root / "speed.csv", root / "metrics", models, root / "tables"
    )[1]
    text = md.read_text()
    assert "| Model | Time kept: target | modelled | measured |" in text
    assert "Latency model error over 5 models: median" in text
    assert "Latency-target jobs within 5% of their target:" in text
    assert "At matched time" not in text  # no l0-flops job to compare with
    document = build_document(**fake_run(tmp_path / "doc"), latency_table=md)
    assert "\n## Latency model\n" in document and text in document


def test_each_flops_job_meets_the_latency_job_nearest_in_measured_time(tmp_path):
    methods, sparsities = ["l0-latency", "l0-flops"], [0.3, 0.5]
    # time kept: the FLOPs budget's 50% job (0.66) is nearer the latency job at 30% (0.70)
    # than at 50% (0.50); models 1-4 (latency 30%, flops 30%, latency 50%, flops 50%) get
    # 1-4 wrong utterances of 40
    rtf = {"teacher": 1.0, "l0-latency-s0.3": 0.7, "l0-flops-s0.3": 0.8}
    rtf |= {"l0-latency-s0.5": 0.5, "l0-flops-s0.5": 0.66}
    write_run(tmp_path, methods, sparsities, rtf)
    (tmp_path / "latency.json").write_text(json.dumps(synthetic_table()))
    models = [model_name(m, s) for s in sparsities for m in methods]
    md = write_latency_table(
        tmp_path / "latency.json", tmp_path / "speed.csv", tmp_path / "metrics", models,
        tmp_path / "tables",
    )[1]  # fmt: skip
    matched = pd.read_csv(tmp_path / "tables/latency_matched.csv")
    assert list(zip(matched["rival"], matched["model"], matched["split"], strict=True)) == [
        ("l0-flops-s0.3", "l0-latency-s0.3", "test-clean"),
        ("l0-flops-s0.3", "l0-latency-s0.3", "test-other"),
        ("l0-flops-s0.5", "l0-latency-s0.3", "test-clean"),
        ("l0-flops-s0.5", "l0-latency-s0.3", "test-other"),
    ]
    last = matched.iloc[-1]
    assert (last["rival_kept"], last["model_kept"]) == pytest.approx((0.66, 0.7))
    assert last["delta"] == pytest.approx(last["wer_model"] - last["wer_rival"])
    assert last["delta"] < 0  # one wrong utterance against four
    text = md.read_text()
    assert "### At matched time" in text
    assert "| l0-flops-s0.5 (0.660) | l0-latency-s0.3 (0.700) |" in text


def test_a_model_missing_from_speed_is_named(run):
    root, _, _ = run
    with pytest.raises(AsrpruneError, match="no rtf_ratio for model 'svd-s0.5'"):
        build_latency_table(
            root / "latency.json", root / "speed.csv", root / "metrics", ["svd-s0.5"]
        )


def test_another_profile_is_checked_against_the_deploy_speed_rows(run):
    """An ONNX Runtime profile at 2 threads: the deployed models' fp32 encoder ratios at
    2 threads are the measurements; models the deploy stage did not time are left out."""
    root, models, _ = run
    table = synthetic_table()
    table["profile"] = {"device": "cpu", "backend": "onnxruntime", "threads": 2}
    (root / "ort.json").write_text(json.dumps(table))
    rows = [
        ("teacher", "onnxruntime", "fp32", 2, 1.0),
        ("l0-latency-s0.5", "onnxruntime", "fp32", 2, 0.61),
        ("l0-latency-s0.5", "onnxruntime", "fp32", 1, 0.55),
        ("l0-latency-s0.5", "onnxruntime", "int8", 2, 0.4),
        ("l0-latency-s0.5", "torch", "fp32", 2, 0.7),
    ]
    frame = pd.DataFrame(
        rows, columns=["model", "backend", "precision", "threads", "encoder_ratio"]
    ).assign(rtf_encoder=1.0, rtf_full=None)
    frame.to_csv(root / "speed_deploy.csv", index=False)
    checked = build_latency_table(
        root / "ort.json", root / "speed_deploy.csv", root / "metrics", models
    )
    assert list(checked["model"]) == ["teacher", "l0-latency-s0.5"]
    assert checked.set_index("model").loc["l0-latency-s0.5", "measured_kept"] == pytest.approx(0.61)
    table["profile"]["threads"] = 4
    (root / "ort4.json").write_text(json.dumps(table))
    with pytest.raises(AsrpruneError, match="no onnxruntime fp32 rows at 4 thread"):
        build_latency_table(root / "ort4.json", root / "speed_deploy.csv", root / "metrics", models)


def test_factored_layers_in_the_metrics_file_enter_the_prediction(run):
    """The SVD baseline's structure is the teacher's; its metrics' ``low_rank`` list is
    what the latency model predicts its time from."""
    root, models, _ = run
    path = root / "metrics/omp-s0.5.json"
    metrics = json.loads(path.read_text())
    files = (root / "latency.json", root / "speed.csv", root / "metrics")
    before = build_latency_table(*files, models)
    entry = synthetic_table()["lowrank"][0]
    layer = {"name": "x", "in": entry["in"], "out": entry["out"], "rows": entry["rows"]}
    path.write_text(json.dumps({**metrics, "low_rank": [{**layer, "rank": entry["ranks"][1]}]}))
    after = build_latency_table(*files, models)
    latency = LatencyModel(synthetic_table())
    full = ConformerEncoder.count_latency(EncoderStructure.full(tiny_config()), latency)
    saved = (entry["seconds"][1] - entry["dense"]) / full
    rows = zip(before.itertuples(), after.itertuples(), strict=True)
    for b, a in rows:
        moved = saved if a.model == "omp-s0.5" else 0.0
        assert a.modelled_kept == pytest.approx(b.modelled_kept + moved)
