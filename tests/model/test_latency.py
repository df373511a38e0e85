"""The latency model: monotone, differentiable, exact for binary masks; the table command.

Nothing here asserts on a timing: tables are either written by hand or checked for shape.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from asrprune.data.features import Cmvn, extract_features
from asrprune.data.manifest import write_manifest
from asrprune.errors import AsrpruneError
from asrprune.latency_table import (
    TableSettings,
    linear_shapes,
    low_rank_grid,
    measure_latency_table,
    table_grid,
)
from asrprune.model import ConformerEncoder, ModelConfig, save_model
from asrprune.model.latency import LatencyModel, grid, monotone
from asrprune.pruning.settings import LatencyProfile, latency_table_path
from tests.builders import make_utterance
from tests.model.tiny import pruned_structure, synthetic_table, tiny_config, tiny_model


@pytest.fixture
def latency():
    return LatencyModel(synthetic_table())


def test_monotone_makes_every_axis_non_decreasing():
    a = np.array([[1.0, 0.5, 2.0], [0.2, 3.0, 1.0]])
    m = monotone(a)
    assert (np.diff(m, axis=0) >= 0).all() and (np.diff(m, axis=1) >= 0).all()
    assert (m >= a).all() and m[0, 0] == 1.0


def test_a_flat_stretch_keeps_a_slope_so_the_budget_has_a_gradient():
    noisy = np.array([[0.0, 5.0, 4.0, 5.0, 9.0], [0.0, 6.0, 6.0, 6.0, 12.0]])
    fitted = monotone(noisy, ([16, 32], [0, 8, 16, 24, 32]))
    assert (np.diff(fitted, axis=1) > 0).all() and (np.diff(fitted, axis=0) >= 0).all()
    # the least rise is 5% of the mean slope along that axis: (9 + 12) / 2 / 32 per unit
    assert fitted[0, 2] - fitted[0, 1] == pytest.approx(0.05 * 10.5 / 32 * 8)
    assert (fitted >= monotone(noisy)).all()
    assert (fitted[:, 0] == 0).all()  # no units, no module: no time


def test_noisy_table_gives_a_model_monotone_in_every_width():
    model = LatencyModel(synthetic_table(noise=5.0, seed=3))
    c = tiny_config()
    sizes = {"width": c.d_model, "heads": c.num_heads, "ffn1": c.ffn_dim, "ffn2": c.ffn_dim}
    for name, full in sizes.items():
        values = [
            float(model.block(**{**sizes, "conv": 1, name: v})) for v in np.linspace(0, full, 41)
        ]
        assert all(b >= a - 1e-15 for a, b in itertools.pairwise(values)), name
    assert float(model.block(c.d_model, 2, 64, 64, 0)) <= float(
        model.block(c.d_model, 2, 64, 64, 1)
    )


def test_latency_is_differentiable_in_every_size(latency):
    sizes = [torch.tensor(v, requires_grad=True) for v in (20.5, 1.5, 37.0, 50.2, 0.7)]
    latency.block(*sizes).backward()
    grads = [float(s.grad) for s in sizes]
    assert all(g > 0 for g in grads), grads


def test_a_block_of_width_zero_or_no_modules_costs_its_rest_only(latency):
    assert float(latency.block(0, 0, 0, 0, 0)) == 0.0
    assert float(latency.block(16, 0, 0, 0, 0)) == pytest.approx(float(latency.curve("rest", 16)))


def test_a_block_narrower_than_its_stream_pays_the_gather(latency):
    c = tiny_config()
    rest, gather = (float(latency.curve(n, 16)) for n in ("rest", "gather"))
    sizes = (16, 2, 40, 40, 1)
    own = float(latency.block(*sizes))
    assert float(latency.block(*sizes, stream=16)) == pytest.approx(own)  # no gather
    assert float(latency.block(*sizes, stream=c.d_model)) == pytest.approx(own - rest + gather)
    # from one dimension below the stream in full, and differentiable in the width
    width = torch.tensor(15.5, requires_grad=True)
    half = latency.block(width, 2, 40, 40, 1, stream=16)
    half.backward()
    assert width.grad is not None and torch.isfinite(width.grad)
    extra = float(latency.curve("gather", 15.5) - latency.curve("rest", 15.5))
    assert float(half.detach()) == pytest.approx(
        float(latency.block(15.5, 2, 40, 40, 1)) + extra / 2
    )


def test_a_module_with_a_few_channels_costs_its_fixed_part(latency):
    """FFN channels are timed at 1 too: a module's time does not fall linearly to 0."""
    c = tiny_config()
    one, first = 1, grid(c.ffn_dim, 4)[0]
    at_one = float(latency.surface("ffn", c.d_model, one))
    at_first = float(latency.surface("ffn", c.d_model, first))
    linear_from_zero = at_first * one / first
    assert at_one > 1.5 * linear_from_zero
    assert float(latency.surface("ffn", c.d_model, 0.5)) == pytest.approx(at_one / 2)


def test_the_encoder_fit_goes_through_teacher_and_reference():
    from asrprune.latency_table import fit_encoder

    # whole = 1.2 parts + 0.01 through both points
    fit = fit_encoder([1.2 * 0.2 + 0.01, 1.2 * 0.1 + 0.01], [0.2, 0.1])
    assert fit == pytest.approx({"overhead": 0.01, "scale": 1.2})
    # a negative intercept is not a time: none, and the teacher stays exact
    fit = fit_encoder([0.25, 0.1], [0.2, 0.1])
    assert fit["overhead"] == 0 and fit["scale"] * 0.2 == pytest.approx(0.25)
    # an intercept above half the teacher's time is capped there
    fit = fit_encoder([0.25, 0.24], [0.2, 0.1])
    assert fit["overhead"] == pytest.approx(0.125) and fit["scale"] * 0.2 + 0.125 == 0.25


def test_the_teachers_prediction_includes_the_overhead(latency):
    c = tiny_config()
    full = tiny_model(0).encoder.structure
    parts = float(latency.curve("front", c.d_model)) + sum(
        float(latency.block(c.d_model, c.num_heads, c.ffn_dim, c.ffn_dim, 1)) for _ in full.blocks
    )
    assert ConformerEncoder.count_latency(full, latency) == pytest.approx(parts + 2e-5)


def test_a_factored_layer_adds_its_low_rank_time_over_the_dense_one(latency):
    c = tiny_config()
    full = tiny_model(0).encoder.structure
    dense = ConformerEncoder.count_latency(full, latency)
    entry = next(e for e in synthetic_table()["lowrank"] if e["rows"] == "frames")
    shape = {"in": entry["in"], "out": entry["out"], "rows": "frames"}
    r0, r1 = entry["ranks"][1:3]
    at = {r: {**shape, "rank": r} for r in (r0, r1, (r0 + r1) / 2)}
    for r in (r0, r1):
        saved = entry["seconds"][entry["ranks"].index(r)] - entry["dense"]
        predicted = ConformerEncoder.count_latency(full, latency, [at[r]])
        assert predicted == pytest.approx(dense + saved)
    # linear between grid ranks, and layers add up
    assert latency.low_rank(at[(r0 + r1) / 2]) == pytest.approx(
        (latency.low_rank(at[r0]) + latency.low_rank(at[r1])) / 2
    )
    two = ConformerEncoder.count_latency(full, latency, [at[r0], at[r1]])
    assert two == pytest.approx(dense + latency.low_rank(at[r0]) + latency.low_rank(at[r1]))
    assert latency.low_rank(at[r0]) < 0  # a low rank saves time in this table
    with pytest.raises(AsrpruneError, match=f"no low-rank timing of a 7 x {c.d_model} layer"):
        latency.low_rank({"in": 7, "out": c.d_model, "rows": "frames", "rank": 2})


def test_bad_tables_name_what_is_wrong():
    table = synthetic_table()
    table["ffn"]["seconds"] = table["ffn"]["seconds"][:-1]
    with pytest.raises(AsrpruneError, match="ffn.seconds"):
        LatencyModel(table, "t.json")
    with pytest.raises(AsrpruneError, match="t.json: not a latency table"):
        LatencyModel({"profile": {}}, "t.json")
    with pytest.raises(AsrpruneError, match="width"):
        LatencyModel({**synthetic_table(), "width": [8, 8, 16]})
    with pytest.raises(AsrpruneError, match="t.json: no gather timings.*rebuild it"):
        LatencyModel({k: v for k, v in synthetic_table().items() if k != "gather"}, "t.json")
    with pytest.raises(AsrpruneError, match="timed another architecture.*d_model"):
        LatencyModel(synthetic_table()).check_config(tiny_config(d_model=48))


def test_profile_and_settings_refuse_bad_values():
    with pytest.raises(AsrpruneError, match="profile.backend"):
        LatencyProfile(backend="tensorrt")
    with pytest.raises(AsrpruneError, match="onnxruntime backend is timed on the cpu"):
        LatencyProfile(device="cuda", backend="onnxruntime")
    with pytest.raises(AsrpruneError, match="profile.threads"):
        LatencyProfile(threads=0)
    with pytest.raises(AsrpruneError, match="prune.latency.rounds"):
        TableSettings(rounds=0)
    with pytest.raises(AsrpruneError, match="hidden_multiple"):
        TableSettings(hidden_multiple=0)


def test_table_grid_times_widths_the_final_masks_can_keep():
    config = ModelConfig(d_model=144, num_blocks=12, num_heads=4, ffn_dim=576, conv_kernel=15)
    widths, units = table_grid(config, TableSettings(width_multiple=1, hidden_multiple=8))
    assert widths == [32, 56, 88, 112, 144] and all(w % 8 == 0 for w in widths)
    assert units == [0, 1, 115, 230, 346, 461, 576]  # channels at the width multiple, 1
    widths, units = table_grid(config, TableSettings(width_multiple=16))
    assert all(w % 16 == 0 for w in widths) and all(u % 16 == 0 for u in units[:-1])
    assert LatencyProfile().name == "cpu-torch-t1"
    profile = {"device": "cpu", "backend": "onnxruntime", "threads": 4}
    assert latency_table_path("results/x", profile) == "results/x/latency/cpu-onnxruntime-t4.json"


def test_grid_is_distinct_increasing_and_ends_at_full():
    assert grid(144, 5, least=8) == [29, 58, 86, 115, 144]
    assert grid(4, 6) == [1, 2, 3, 4]
    assert grid(144, 5, least=8, multiple=16) == [32, 64, 80, 112, 144]
    assert grid(576, 5, multiple=16) == [112, 224, 352, 464, 576]


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_table_command_on_a_tiny_model(tmp_path, backend):
    """The table has every part's seconds at every grid point, positive, and a model
    built from it predicts the teacher's measured encoder time exactly (the overhead)."""
    utts = [
        make_utterance(tmp_path / "audio", f"u{i}", seconds=s) for i, s in enumerate((0.6, 1.2))
    ]
    write_manifest(tmp_path / "data/manifests/test-clean.jsonl", utts)
    extract_features(
        tmp_path / "data/manifests/test-clean.jsonl", tmp_path / "data/features/test-clean"
    )
    save_model(tmp_path / "teacher.pt", tiny_model(0), b"", Cmvn.identity().to_dict())
    settings = TableSettings(utterances=2, warmup_rounds=1, rounds=1, width_points=3, unit_points=3)
    table = measure_latency_table(
        tmp_path / "teacher.pt",
        tmp_path / "data",
        tmp_path / "t.json",
        LatencyProfile(backend=backend),
        settings,
    )
    assert table["profile"]["backend"] == backend
    c = tiny_config()
    assert table["width"] == grid(c.d_model, 3, least=8)
    assert table["ffn"]["units"] == [0, 1, *grid(c.ffn_dim, 2)]
    assert table["mhsa"]["units"] == list(range(c.num_heads + 1))
    for name in ("ffn", "mhsa", "conv"):
        rows = np.array(table[name]["seconds"])
        assert rows.shape == (3, len(table[name]["units"]))
        assert (rows[:, 0] == 0).all() and (rows[:, 1:] > 0).all()
    for name in ("rest", "gather", "front"):
        assert all(s > 0 for s in table[name]["seconds"])
    shapes = linear_shapes(c)
    assert {(e["in"], e["out"], e["rows"]) for e in table["lowrank"]} == {s[:3] for s in shapes}
    assert ("positions" in {e["rows"] for e in table["lowrank"]}) and len(shapes) >= 4
    for e in table["lowrank"]:
        assert e["ranks"][0] == 1 and e["ranks"] == low_rank_grid(e["in"], e["out"], 2)
        assert e["dense"] > 0 and all(s > 0 for s in e["seconds"])
    model = LatencyModel.load(tmp_path / "t.json")
    predicted = ConformerEncoder.count_latency(tiny_model(0).encoder.structure, model)
    assert predicted == pytest.approx(table["encoder"]["measured"])
    encoder = table["encoder"]
    assert 0 <= encoder["overhead"] <= encoder["measured"] / 2 and encoder["scale"] > 0
    assert encoder["reference"]["measured"] > 0 and encoder["reference"]["parts"] > 0
    assert ConformerEncoder.count_latency(pruned_structure(), model) > 0
    save_model(
        tmp_path / "small.pt", tiny_model(1, pruned_structure()), b"", Cmvn.identity().to_dict()
    )
    with pytest.raises(AsrpruneError, match="unpruned teacher"):
        measure_latency_table(tmp_path / "small.pt", tmp_path / "data", tmp_path / "u.json")
