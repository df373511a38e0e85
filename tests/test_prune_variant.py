"""scripts/prune_variant.py: config overrides for one pruning job outside the workflow."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from asrprune.errors import AsrpruneError

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("prune_variant", ROOT / "scripts/prune_variant.py")
prune_variant = importlib.util.module_from_spec(spec)
spec.loader.exec_module(prune_variant)


def test_an_override_is_a_nested_mapping_with_a_yaml_value():
    assert prune_variant.override("prune.l0.distill_weight=10") == {
        "prune": {"l0": {"distill_weight": 10}}
    }
    assert prune_variant.override("prune.l0.distill_map=teacher")["prune"]["l0"] == {
        "distill_map": "teacher"
    }
    with pytest.raises(AsrpruneError, match="expected KEY.PATH=VALUE"):
        prune_variant.override("prune.l0.distill_weight")
    # YAML 1.1 reads 5e-5 as a string; a learning rate is a number
    assert prune_variant.override("prune.finetune.peak_lr=5e-5")["prune"]["finetune"] == {
        "peak_lr": 5e-5
    }
    assert prune_variant.override("a.b=nan")["a"] == {"b": "nan"}


def test_overrides_land_on_the_validated_config():
    base = str(ROOT / "config/config.yaml")
    config = prune_variant.variant_config(
        [base], ["prune.l0.distill_weight=10", "prune.train.seed=7"]
    )
    assert config["prune"]["l0"]["distill_weight"] == 10
    assert config["prune"]["train"]["seed"] == 7
    assert config["prune"]["finetune"]["seed"] != 7  # only what was set
    with pytest.raises(AsrpruneError, match="distill_wieght"):
        prune_variant.variant_config([base], ["prune.l0.distill_wieght=10"])


def test_a_latency_method_gets_the_runs_latency_table_as_rule_prune_passes_it():
    config = prune_variant.variant_config([str(ROOT / "config/config.yaml")], [])
    run = Path("results/x")
    prune, evaluate = prune_variant.variant_commands("v", "l0-latency", "0.5", run, config, 1)
    at = prune.index("--latency-table")
    assert prune[at + 1] == "results/x/latency/cpu-torch-t1.json"
    assert prune[prune.index("--teacher") + 1] == "results/x/models/teacher.pt"
    assert evaluate[evaluate.index("--model") + 1] == "results/x/variants/v/v.pt"
    assert "--splits" not in evaluate and "--no-full" not in evaluate
    prune, evaluate = prune_variant.variant_commands(
        "v", "l0-params", "0.5", run, config, 1, ["dev"], full=False
    )
    assert "--latency-table" not in prune
    assert evaluate[evaluate.index("--splits") + 1 :][:2] == ["dev", "--no-full"]


def test_a_sweep_is_one_variant_per_value_on_top_of_the_other_overrides():
    variants = prune_variant.sweep_variants(
        "omp-lr", ["prune.train.seed=7"], "prune.finetune.peak_lr=5e-5,1e-4"
    )
    assert variants == [
        ("omp-lr-5e-5", ["prune.train.seed=7", "prune.finetune.peak_lr=5e-5"]),
        ("omp-lr-1e-4", ["prune.train.seed=7", "prune.finetune.peak_lr=1e-4"]),
    ]
    assert prune_variant.sweep_variants("v", [], None) == [("v", [])]
    with pytest.raises(AsrpruneError, match="expected KEY.PATH=V1,V2"):
        prune_variant.sweep_variants("v", [], "prune.finetune.peak_lr=")
    config = prune_variant.variant_config([str(ROOT / "config/config.yaml")], variants[0][1])
    assert config["prune"]["finetune"]["peak_lr"] == 5e-5


def test_the_sweep_table_reads_each_variants_metrics(tmp_path):
    for name, wer in (("a", 20.0), ("b", 30.5)):
        folder = tmp_path / "variants" / name
        folder.mkdir(parents=True)
        (folder / f"{name}.json").write_text(json.dumps({"wer": {"dev": wer, "test-clean": 1}}))
    assert prune_variant.sweep_markdown(tmp_path, ["a", "b"]).splitlines() == [
        "| variant | dev WER % | test-clean WER % |",
        "| --- | ---: | ---: |",
        "| a | 20.00 | 1.00 |",
        "| b | 30.50 | 1.00 |",
    ]
    with pytest.raises(AsrpruneError, match="c.json"):
        prune_variant.sweep_markdown(tmp_path, ["a", "c"])
