"""Figures: the data behind Fig. 2a and 2b, the Pareto front, and non-empty PNG and PDF files."""

from __future__ import annotations

import pandas as pd
import pytest

from asrprune.cli import main
from asrprune.errors import AsrpruneError
from asrprune.model import EncoderStructure
from asrprune.results.figures import (
    fastest_backend,
    hidden_dims,
    module_retention,
    pareto_front,
    read_history,
    write_figures,
)
from asrprune.results.layout import figure_names
from tests.model.tiny import tiny_config
from tests.results.runs import structure_at, write_run

METHODS = ["l0-params", "l0-flops", "l0-nokd", "omp"]
SPARSITIES = [0.3, 0.5]


def test_the_teacher_retains_every_module():
    c = tiny_config()
    ratios = module_retention(EncoderStructure.full(c), c)
    assert list(ratios["module"][:4]) == ["FFN1", "MHA", "Conv", "FFN2"]
    assert (ratios["ratio"] == 1.0).all()
    assert sorted(ratios["block"].unique()) == [1, 2]


def test_module_retention_follows_the_structure():
    c = tiny_config()
    ratios = module_retention(structure_at(0.5), c).set_index(["block", "module"])["ratio"]
    assert ratios[(1, "MHA")] == 0.0  # no heads
    assert ratios[(2, "Conv")] == 0.0  # no convolution module
    assert 0 < ratios[(1, "FFN2")] < 1  # all channels, but at half the hidden width
    assert ratios[(2, "FFN1")] < 1  # all channels at width 30 of 32


def test_hidden_dims_per_target_and_block():
    dims = hidden_dims({0.5: structure_at(0.5), 0.3: structure_at(0.3)})
    assert list(dims["target"]) == ["30%", "30%", "50%", "50%"]
    assert list(dims["hidden"]) == [30, 30, 15, 30]


def test_pareto_front_keeps_models_nothing_beats_on_both():
    points = pd.DataFrame({"rtf": [1.0, 0.5, 0.6, 0.4, 0.5], "wer": [5.0, 7.0, 6.0, 9.0, 8.0]})
    front = pareto_front(points, "rtf", "wer")
    assert list(zip(front["rtf"], front["wer"], strict=True)) == [
        (0.4, 9.0),
        (0.5, 7.0),
        (0.6, 6.0),
        (1.0, 5.0),
    ]


def test_history_without_expected_kept_is_named(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"history": {"train": [{"step": 1, "target_kept": 0.9}]}}')
    with pytest.raises(AsrpruneError, match="p.json: history.train rows have no 'expected_kept'"):
        read_history(path)
    path.write_text("{}")
    with pytest.raises(AsrpruneError, match="'history.train' is missing"):
        read_history(path)


def _nonempty(path, magic):
    assert path.stat().st_size > 1000, path
    assert path.read_bytes().startswith(magic), path


def test_every_figure_is_written_as_png_and_pdf(tmp_path):
    run = write_run(tmp_path, METHODS, SPARSITIES)
    out = run / "figures"
    written = write_figures(
        metrics_dir=run / "metrics",
        summaries=sorted((run / "pruning").iterdir()),
        speed_path=run / "speed.csv",
        teacher_model=run / "models/teacher.pt",
        methods=METHODS,
        sparsities=SPARSITIES,
        out_dir=out,
    )
    names = figure_names(METHODS)
    assert len(names) == 6
    expected = [out / f"{n}.{ext}" for n in names for ext in ("png", "pdf")]
    assert sorted(written) == sorted(expected)
    assert sorted(out.iterdir()) == sorted(expected)  # no temporary left behind
    for stem in names:
        _nonempty(out / f"{stem}.png", b"\x89PNG")
        _nonempty(out / f"{stem}.pdf", b"%PDF")


def test_cli_writes_figures_of_a_baselines_only_run(tmp_path):
    run = write_run(tmp_path, ["omp", "svd"], [0.5])
    args = ["--metrics-dir", str(run / "metrics"), "--speed", str(run / "speed.csv")]
    args += ["--summaries", "--teacher", str(run / "models/teacher.pt")]
    args += ["--methods", "omp", "svd", "--sparsities", "0.5", "--out-dir", str(run / "fig")]
    assert main(["figures", *args]) == 0
    assert sorted(p.name for p in (run / "fig").iterdir()) == ["wer_rtf.pdf", "wer_rtf.png"]


def test_a_missing_summary_is_named(tmp_path):
    run = write_run(tmp_path, ["l0-params"], [0.5])
    with pytest.raises(AsrpruneError, match=r"no pruning summary l0-params-s0\.5\.json"):
        write_figures(
            metrics_dir=run / "metrics",
            summaries=[],
            speed_path=run / "speed.csv",
            teacher_model=run / "models/teacher.pt",
            methods=["l0-params"],
            sparsities=[0.5],
            out_dir=run / "figures",
        )


def _deploy_files(root):
    """tables/deploy.csv and speed_deploy.csv of two deployed models: at one thread the
    teacher is fastest on ORT fp32 and the pruned model on ORT int8."""
    deploy = pd.DataFrame(
        {
            "model": ["teacher", "l0-params-s0.5"],
            **{f"wer_test_clean_{b}": [10.0, 12.0] for b in ("torch", "fp32")},
            "wer_test_clean_int8": [10.5, 12.7],
            **{f"wer_test_other_{b}": [20.0, 22.0] for b in ("torch", "fp32")},
            "wer_test_other_int8": [20.5, 22.9],
        }
    )
    rows = []
    for model, rtfs in (("teacher", (0.1, 0.08, 0.09)), ("l0-params-s0.5", (0.07, 0.05, 0.03))):
        for (backend, precision), rtf in zip(
            [("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")], rtfs, strict=True
        ):
            rows.append((model, backend, precision, 1, rtf))
            rows.append((model, backend, precision, 2, rtf / 3))  # not the panel's setting
    speed = pd.DataFrame(rows, columns=["model", "backend", "precision", "threads", "rtf_encoder"])
    deploy.to_csv(root / "deploy.csv", index=False)
    speed.assign(rtf_full=None).to_csv(root / "speed_deploy.csv", index=False)
    return deploy, speed


def test_the_fastest_backend_at_one_thread_brings_its_own_wer(tmp_path):
    deploy, speed = _deploy_files(tmp_path)
    fastest = fastest_backend(deploy, speed).set_index("model")
    assert fastest.loc["teacher", "backend"] == "ORT fp32"
    assert fastest.loc["teacher", "rtf"] == pytest.approx(0.08)
    assert fastest.loc["l0-params-s0.5", "backend"] == "ORT int8"
    assert fastest.loc["l0-params-s0.5", "wer_test_other"] == pytest.approx(22.9)
    assert fastest.loc["l0-params-s0.5", ["method", "sparsity"]].tolist() == ["l0-params", 0.5]
    with pytest.raises(AsrpruneError, match="no rows at 4 thread"):
        fastest_backend(deploy, speed, threads=4)


def test_wer_rtf_gets_the_fastest_backends_row_with_the_deploy_tables(tmp_path):
    run = write_run(tmp_path / "run", ["l0-params", "omp"], [0.5])
    _deploy_files(tmp_path)
    args = dict(
        metrics_dir=run / "metrics",
        summaries=sorted((run / "pruning").iterdir()),
        speed_path=run / "speed.csv",
        teacher_model=run / "models/teacher.pt",
        methods=["l0-params", "omp"],
        sparsities=[0.5],
    )
    plain = write_figures(**args, out_dir=tmp_path / "plain")
    both = write_figures(
        **args,
        out_dir=tmp_path / "deploy",
        deploy_table=tmp_path / "deploy.csv",
        speed_deploy=tmp_path / "speed_deploy.csv",
    )
    size = {
        p.parent.name: p.stat().st_size
        for p in plain + both
        if p.stem == "wer_rtf" and p.suffix == ".png"
    }
    assert size["deploy"] > size["plain"]  # a second row of panels
    with pytest.raises(AsrpruneError, match="together"):
        write_figures(**args, out_dir=tmp_path / "x", deploy_table=tmp_path / "deploy.csv")
