"""Deployment speed: every backend, precision and thread count per model; ratios; errors.

Nothing here asserts on a timing: the machine is shared and noisy.
"""

from __future__ import annotations

import csv

import pytest

from asrprune.data.features import extract_features
from asrprune.data.manifest import write_manifest
from asrprune.deploy.export import export_model
from asrprune.deploy.speed import (
    BACKENDS,
    COLUMNS,
    DeploySpeedSettings,
    exports_by_model,
    measure_deploy_speed,
    thread_counts,
)
from asrprune.errors import AsrpruneError
from tests.builders import make_utterance
from tests.builders_model import random_model_file


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """A data/ folder of three tones; a teacher and a pruned model with their exports."""
    root = tmp_path_factory.mktemp("deploy")
    utts = [make_utterance(root / "audio", f"u{i}", seconds=s) for i, s in enumerate((0.8, 1.5))]
    write_manifest(root / "data/manifests/test-clean.jsonl", utts)
    extract_features(root / "data/manifests/test-clean.jsonl", root / "data/features/test-clean")
    paths = [
        random_model_file(root / f"{n}.pt", v)
        for n, v in (("teacher", "stateless"), ("small", "pruned"))
    ]
    folders = []
    for path in paths:
        for precision in ("fp32", "int8"):
            folder = root / "exports" / path.stem / precision
            export_model(path, folder, int8=precision == "int8")
            folders.append(folder)
    return root, paths, exports_by_model(folders)


def test_every_setting_times_every_model_teacher_first(deployed):
    root, paths, exports = deployed
    # one round: its RTF is the median the rows show and the minimum the ratios take
    settings = DeploySpeedSettings(threads=(1, 0), utterances=2, warmup_rounds=0, rounds=1)
    rows = measure_deploy_speed(paths, exports, root / "data", root / "d.csv", settings, 2, beam=3)
    settings_seen = [(r["backend"], r["precision"], r["threads"]) for r in rows[::2]]
    assert settings_seen == [(b, p, t) for t in (1, 2) for b, p in BACKENDS]
    assert [r["model"] for r in rows] == ["teacher", "small"] * 6
    for r in rows:
        # greedy includes the encoder of the same calls; the full decode is timed apart
        assert r["rtf_greedy"] >= r["rtf_encoder"] > 0 and r["rtf_full"] > 0
    for teacher, small in zip(rows[::2], rows[1::2], strict=True):
        assert teacher["encoder_ratio"] == 1 and teacher["full_ratio"] == 1
        assert small["encoder_ratio"] == pytest.approx(
            small["rtf_encoder"] / teacher["rtf_encoder"]
        )
        # the pruned model's FLOPs, the same in every setting, against its time there
        assert teacher["flops_ratio"] == 1 and 0 < small["flops_ratio"] < 1
        assert small["flops_ratio"] == rows[1]["flops_ratio"]
        assert small["speedup_over_flops"] == pytest.approx(
            small["flops_ratio"] / small["encoder_ratio"]
        )
    torch_rows = {(r["model"], r["threads"]): r for r in rows if r["backend"] == "torch"}
    for r in rows:
        base = torch_rows[(r["model"], r["threads"])]
        assert r["vs_torch"] == pytest.approx(base["rtf_encoder"] / r["rtf_encoder"])
    with open(root / "d.csv") as f:
        table = list(csv.DictReader(f))
    assert tuple(table[0]) == COLUMNS and len(table) == 12


def test_greedy_only_leaves_the_full_columns_empty(deployed):
    root, paths, exports = deployed
    settings = DeploySpeedSettings(threads=(1,), utterances=1, warmup_rounds=0, rounds=1)
    rows = measure_deploy_speed(paths, exports, root / "data", root / "g.csv", settings, 2)
    assert all(r["rtf_full"] is None and r["full_ratio"] is None for r in rows)
    with open(root / "g.csv") as f:
        assert {row["rtf_full"] for row in csv.DictReader(f)} == {""}


def test_thread_counts_read_zero_as_every_core_and_drop_repeats():
    assert thread_counts(DeploySpeedSettings(threads=(1, 0)), 4) == [1, 4]
    assert thread_counts(DeploySpeedSettings(threads=(1, 0)), 1) == [1]


def test_a_missing_export_and_bad_settings_are_named(deployed):
    root, paths, exports = deployed
    settings = DeploySpeedSettings(threads=(1,), utterances=1, warmup_rounds=0, rounds=1)
    missing = {"teacher": exports["teacher"], "small": {"fp32": exports["small"]["fp32"]}}
    with pytest.raises(AsrpruneError, match="no int8 export of model 'small'"):
        measure_deploy_speed(paths, missing, root / "data", root / "m.csv", settings, 2)
    with pytest.raises(AsrpruneError, match="deploy.rounds"):
        DeploySpeedSettings(rounds=0)
    with pytest.raises(AsrpruneError, match="deploy.threads"):
        DeploySpeedSettings(threads=())
