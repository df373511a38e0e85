"""Speed: the table's columns and ratios, the round-robin order, the utterance set, errors.

Nothing here asserts on a timing: the machine is shared and noisy.
"""

from __future__ import annotations

import csv
import random

import pytest

from asrprune.cli import _build_parser
from asrprune.config import validate_config
from asrprune.data.features import Cmvn, extract_features
from asrprune.data.manifest import Utterance, write_manifest
from asrprune.errors import AsrpruneError
from asrprune.evaluate import FLOPS_FRAMES
from asrprune.model import save_model
from asrprune.speed import (
    COLUMNS,
    SpeedSettings,
    load_speed_models,
    load_utterances,
    measure_speed,
    peak_activation_bytes,
    schedule,
    select_utterances,
    speed_rows,
)
from tests.builders import make_utterance
from tests.model.tiny import pruned_structure, tiny_model

SECONDS = (0.6, 1.4, 0.9, 2.0, 1.1)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A data/ folder with a test-clean manifest and feature store of five tones."""
    root = tmp_path_factory.mktemp("data")
    utts = [make_utterance(root / "audio", f"u{i}", seconds=s) for i, s in enumerate(SECONDS)]
    write_manifest(root / "manifests/test-clean.jsonl", utts)
    extract_features(root / "manifests/test-clean.jsonl", root / "features/test-clean")
    return root


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """The tiny teacher and a pruned (compact) model, as model files."""
    root = tmp_path_factory.mktemp("models")
    cmvn = Cmvn.identity().to_dict()
    teacher, pruned = tiny_model(0), tiny_model(1, pruned_structure())
    save_model(root / "teacher.pt", teacher, b"", cmvn)
    save_model(root / "small.pt", pruned, b"", cmvn)
    return root / "teacher.pt", root / "small.pt", teacher, pruned


def test_schedule_interleaves_models_round_by_round():
    assert schedule(["teacher", "A", "B"], warmup_rounds=1, rounds=2) == [
        (-1, "teacher"),
        (-1, "A"),
        (-1, "B"),
        (0, "teacher"),
        (0, "A"),
        (0, "B"),
        (1, "teacher"),
        (1, "A"),
        (1, "B"),
    ]
    assert schedule(["teacher"], warmup_rounds=0, rounds=1) == [(0, "teacher")]


def test_utterance_selection_is_deterministic_and_spread_over_lengths():
    utts = [Utterance(f"u{i:02d}", "a.flac", 1.0 + i, "A", "s") for i in range(20)]
    shuffled = random.Random(0).sample(utts, len(utts))
    picked = select_utterances(shuffled, 4)
    assert picked == select_utterances(utts, 4)
    # the middle of each quarter: ranks 2, 7, 12, 17 of 20
    assert [u.id for u in picked] == ["u02", "u07", "u12", "u17"]
    assert select_utterances(shuffled, 50) == utts  # all of them, sorted
    # equal durations are ordered by id, so ties cannot depend on the manifest's order
    ties = [Utterance(i, "a.flac", 2.0, "A", "s") for i in ("c", "a", "b")]
    assert [u.id for u in select_utterances(ties, 3)] == ["a", "b", "c"]


def test_utterances_come_from_test_clean_with_manifest_durations(data_dir):
    utts = load_utterances(data_dir, 3)
    assert [u.id for u in utts] == ["u0", "u4", "u3"]  # 0.6, 1.1 and 2.0 s
    assert [u.seconds for u in utts] == [0.6, 1.1, 2.0]
    assert all(u.feats.dim() == 3 and u.feats.size(0) == 1 for u in utts)  # (1, T, 80)


def test_table_has_the_columns_in_order_and_the_teacher_first(data_dir, model_files, tmp_path):
    teacher_path, small_path, teacher, small = model_files
    out = tmp_path / "speed.csv"
    settings = SpeedSettings(utterances=2, warmup_rounds=1, rounds=2)
    measure_speed(teacher_path, [small_path], data_dir, out, settings)
    with open(out, newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == COLUMNS
        rows = list(reader)
    assert [r["model"] for r in rows] == ["teacher", "small"]
    t, s = rows
    assert float(t["rtf_ratio"]) == float(t["flops_ratio"]) == 1.0
    assert float(t["speedup_over_flops"]) == 1.0
    for row in rows:
        assert 0 < float(row["rtf_min"]) <= float(row["rtf_median"]) <= float(row["rtf_max"])
        assert float(row["decode_rtf_median"]) > 0
    # the FLOPs ratio is over the timed utterances; flops_10s and sizes are for 10 s
    frames = [u.feats.size(1) for u in load_utterances(data_dir, 2)]
    timed = [sum(m.size_report(n)["encoder_flops"] for n in frames) for m in (teacher, small)]
    assert 0 < timed[1] / timed[0] < 1
    assert float(s["flops_ratio"]) == pytest.approx(timed[1] / timed[0], rel=1e-5)
    t_report, s_report = (m.size_report(FLOPS_FRAMES) for m in (teacher, small))
    assert s_report["encoder_flops"] / t_report["encoder_flops"] != pytest.approx(
        timed[1] / timed[0], rel=1e-5
    )  # the two lengths give different ratios, so the test tells them apart
    assert int(s["flops_10s"]) == s_report["encoder_flops"]
    assert int(s["encoder_params"]) == s_report["encoder_params"]
    assert float(s["size_mb"]) == pytest.approx(s_report["encoder_params"] * 4 / 1e6, rel=1e-5)
    # inference memory holds the weights and then some
    weights = sum(p.numel() * 4 for p in teacher.parameters()) / 1e6
    assert float(t["peak_mem_mb"]) > weights


def test_speedup_over_flops_divides_the_measured_by_the_predicted_speedup():
    rtf = {"teacher": ([0.4, 0.2, 0.3], [0.5]), "A": ([0.1, 0.2, 0.18], [0.3])}
    reports = {
        "teacher": {"encoder_flops": 1000, "encoder_params": 10},
        "A": {"encoder_flops": 300, "encoder_params": 4},
    }
    timed = {"teacher": 4000, "A": 1000}  # the timed set's FLOPs, not the 10 s ones
    t, a = speed_rows(["teacher", "A"], rtf, {"teacher": 2e6, "A": 1e6}, reports, timed)
    assert (t["rtf_ratio"], t["flops_ratio"], t["speedup_over_flops"]) == (1.0, 1.0, 1.0)
    assert a["rtf_median"] == 0.18 and (a["rtf_min"], a["rtf_max"]) == (0.1, 0.2)
    # measured speed-up 2: the fastest rounds' ratio (the medians' would be 0.6)
    assert a["rtf_ratio"] == pytest.approx(0.5)
    assert a["flops_ratio"] == 0.25  # predicted speed-up 4
    assert a["speedup_over_flops"] == pytest.approx(0.5)
    assert (a["peak_mem_mb"], a["size_mb"]) == (1.0, 16 / 1e6)


def test_peak_memory_grows_with_the_utterance(data_dir, model_files):
    teacher = model_files[2].eval()
    short, long = load_utterances(data_dir, 5)[0], load_utterances(data_dir, 5)[-1]
    assert (
        0 < peak_activation_bytes(teacher, short.feats) < peak_activation_bytes(teacher, long.feats)
    )


def test_missing_or_unreadable_files_are_named(data_dir, model_files, tmp_path):
    teacher_path = model_files[0]
    with pytest.raises(AsrpruneError, match="nope.pt"):
        measure_speed(teacher_path, [tmp_path / "nope.pt"], data_dir, tmp_path / "s.csv")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(AsrpruneError, match="bad.pt"):
        load_speed_models([teacher_path, bad])
    with pytest.raises(AsrpruneError, match="a second model named 'teacher'"):
        load_speed_models([teacher_path, teacher_path])
    with pytest.raises(AsrpruneError, match="index.json missing"):
        load_utterances(tmp_path, 3)
    assert not (tmp_path / "s.csv").exists()


def test_settings_are_checked_and_the_schema_and_cli_defaults_match():
    with pytest.raises(AsrpruneError, match="speed.rounds must be >= 1, got 0"):
        SpeedSettings(rounds=0)
    assert SpeedSettings(**validate_config({"run": "x"})["speed"]) == SpeedSettings()
    a = _build_parser().parse_args(["speed", "--teacher", "t.pt", "--data", "d", "--out", "o"])
    assert SpeedSettings(a.utterances, a.warmup_rounds, a.rounds) == SpeedSettings()
    assert a.models == []
