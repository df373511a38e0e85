"""The deployment tables, from hand-written result files: agreement, WER, sizes, speed."""

from __future__ import annotations

import json

import pytest

from asrprune.deploy.speed import write_rows
from asrprune.errors import AsrpruneError
from asrprune.results.deploy import (
    build_deploy_table,
    deploy_markdown,
    read_deploy_speed,
    same_transcripts,
    speed_markdown,
    write_deploy_tables,
)

REFS = {"test-clean": ["A B", "C D"], "test-other": ["E F", "G H"]}


def _write(metrics, name, wer, hyps, export=None, size_mb=1.5):
    """metrics/<name>.json and its hyps folder; ``export`` = (precision, onnx_mb)."""
    data = {"wer": wer, "size_mb": size_mb}
    if export:
        data["export"] = {"precision": export[0], "onnx_mb": export[1]}
    path = metrics / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    folder = metrics / f"{name}.hyps"
    folder.mkdir()
    for split, refs in REFS.items():
        lines = [
            json.dumps({"id": f"{split}-{i}", "ref": r, "hyp": h})
            for i, (r, h) in enumerate(zip(refs, hyps[split], strict=True))
        ]
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")


@pytest.fixture
def metrics(tmp_path):
    m = tmp_path / "metrics"
    same = {"test-clean": ["A B", "C X"], "test-other": ["E F", "G H"]}
    _write(m, "teacher", {"test-clean": 25.0, "test-other": 0.0}, same)
    _write(m, "exports/teacher.fp32", {"test-clean": 25.0, "test-other": 0.0}, same, ("fp32", 2.0))
    # int8: one transcript of four differs from PyTorch's
    int8 = {"test-clean": ["A B", "C X"], "test-other": ["E F", "G"]}
    _write(m, "exports/teacher.int8", {"test-clean": 25.0, "test-other": 25.0}, int8, ("int8", 0.6))
    return m


def test_the_table_compares_every_export_with_its_pytorch_model(metrics):
    table = build_deploy_table(metrics, ["teacher"])
    row = table.iloc[0]
    assert row["same_fp32_pct"] == 100.0 and row["same_int8_pct"] == 75.0
    assert row["wer_test_other_torch"] == 0.0 and row["wer_test_other_int8"] == 25.0
    assert (row["size_mb"], row["onnx_mb_fp32"], row["onnx_mb_int8"]) == (1.5, 2.0, 0.6)
    md = deploy_markdown(table)
    assert "| teacher | 25.00 / 25.00 / 25.00 | 0.00 / 0.00 / 25.00 | 100.0% / 75.0% |" in md


def test_missing_exports_and_other_utterances_are_named(metrics, tmp_path):
    with pytest.raises(AsrpruneError, match=r"not found: .*metrics/small\.json"):
        build_deploy_table(metrics, ["teacher", "small"])
    _write(
        metrics, "small", {"test-clean": 1.0, "test-other": 2.0}, {s: r for s, r in REFS.items()}
    )
    with pytest.raises(AsrpruneError, match=r"not found: .*exports/small\.fp32\.json"):
        build_deploy_table(metrics, ["teacher", "small"])
    other = tmp_path / "other"
    _write(other, "x", {}, {"test-clean": ["A B"] * 2, "test-other": ["E F"] * 2})
    (other / "x.hyps/test-clean.jsonl").write_text(json.dumps({"id": "zz", "hyp": ""}) + "\n")
    with pytest.raises(AsrpruneError, match="test-clean holds other utterances"):
        same_transcripts(metrics / "teacher.hyps", other / "x.hyps", ["test-clean"])


def test_speed_is_laid_out_per_model_and_threads(metrics, tmp_path):
    rows = []
    for threads in (1, 2):
        for backend, precision, rtf in (
            ("torch", "fp32", 0.1),
            ("onnxruntime", "fp32", 0.05),
            ("onnxruntime", "int8", 0.04),
        ):
            for model in ("teacher", "small"):
                rows.append(
                    {
                        "model": model,
                        "backend": backend,
                        "precision": precision,
                        "threads": threads,
                        "rtf_encoder": rtf / threads,
                        "rtf_greedy": rtf,
                        "rtf_full": 3 * rtf,
                        "encoder_ratio": 1.0,
                        "full_ratio": 1.0,
                        "vs_torch": 1.0,
                        "flops_ratio": 1.0 if model == "teacher" else 0.5,
                        "speedup_over_flops": 1.0 if model == "teacher" else 0.5,
                    }
                )
    write_rows(tmp_path / "s.csv", rows)
    md = speed_markdown(read_deploy_speed(tmp_path / "s.csv"))
    assert "| teacher | 1 | 0.1 | 0.05 | 0.04 | 0.3 | 0.15 | 0.12 | 1.00 | 1.00 | 1.00 |" in md
    assert "| small | 2 | 0.05 | 0.025 | 0.02 | 0.3 | 0.15 | 0.12 | 0.50 | 0.50 | 0.50 |" in md
    assert "speed-up over FLOPs: ORT fp32" in md
    paths = write_deploy_tables(metrics, tmp_path / "s.csv", ["teacher"], tmp_path / "tables")
    assert [p.name for p in paths] == [
        "deploy.csv",
        "deploy.md",
        "speed_deploy.csv",
        "speed_deploy.md",
    ]


def test_the_deployed_models_are_the_teacher_and_each_method_at_the_chosen_sparsities():
    from asrprune.results.layout import deploy_models

    methods = ["l0-params", "omp"]
    assert deploy_models(methods, [0.2, 0.5], [0.5]) == ["teacher", "l0-params-s0.5", "omp-s0.5"]
    assert deploy_models(methods, [0.2, 0.5], []) == ["teacher"]
    with pytest.raises(AsrpruneError, match=r"deploy.sparsities: 0.4 is not among .*0.2, 0.5"):
        deploy_models(methods, [0.2, 0.5], [0.4])
    assert deploy_models(methods, [0.5], [0.5], ["omp"]) == ["teacher", "omp-s0.5"]
    with pytest.raises(AsrpruneError, match="deploy.methods: 'svd' is not among"):
        deploy_models(methods, [0.5], [0.5], ["svd"])
