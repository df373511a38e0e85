"""SVD baseline: exact at full rank, target met, sizes and FLOPs exact, files round-trip."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from asrprune.model import load_model, save_model
from asrprune.model.flops import flop_counter
from asrprune.model.lowrank import LowRankLinear, low_rank_ranks
from asrprune.pruning.svd import block_linears, prune_svd, ranks_for, svd_ranks
from tests.model.tiny import tiny_batch, tiny_model


def test_full_rank_reproduces_the_layer():
    torch.manual_seed(0)
    linear = nn.Linear(12, 7)
    low = LowRankLinear.from_linear(linear, rank=7)
    x = torch.randn(5, 12)
    assert torch.allclose(low(x), linear(x), atol=1e-5)


def test_truncation_is_the_best_approximation_of_its_rank():
    torch.manual_seed(0)
    linear = nn.Linear(10, 8, bias=False)
    low = LowRankLinear.from_linear(linear, rank=3)
    w = low.second.weight @ low.first.weight
    s = torch.linalg.svdvals(linear.weight.detach())
    # Eckart-Young: the error's spectral norm is the first dropped singular value
    err = torch.linalg.matrix_norm((linear.weight - w).detach(), ord=2)
    assert float(err) == pytest.approx(float(s[3]), rel=1e-4)


@pytest.mark.parametrize("sparsity", [0.2, 0.5])
def test_svd_meets_the_target_and_counts_exactly(sparsity):
    model = tiny_model(0)
    full = sum(p.numel() for p in model.encoder.blocks.parameters())
    choice = prune_svd(model, sparsity)
    actual = sum(p.numel() for p in model.encoder.blocks.parameters())
    assert actual == choice.prunable_params <= (1 - sparsity) * full
    report = model.size_report(237)
    assert report["prunable_params"] == actual
    assert report["sparsity"] == pytest.approx(choice.sparsity)
    # uniform: one keep fraction; slightly more would miss the target
    layers = block_linears(tiny_model(0))
    assert choice.ranks == ranks_for(choice.keep, layers)
    assert svd_ranks(tiny_model(0), sparsity).keep == pytest.approx(choice.keep)


def test_analytic_flops_of_a_factored_encoder_equal_the_flop_counter():
    model = tiny_model(0)
    prune_svd(model, 0.4)
    frames = 237
    with flop_counter() as counter, torch.no_grad():
        model.encoder(torch.randn(1, frames, 80), torch.tensor([frames]))
    assert counter.get_total_flops() == model.size_report(frames)["encoder_flops"]


def test_a_factored_model_file_round_trips(tmp_path):
    model = tiny_model(0).eval()
    prune_svd(model, 0.3)
    save_model(tmp_path / "m.pt", model, b"tok", {"mean": [0.0] * 80, "std": [1.0] * 80})
    loaded = load_model(tmp_path / "m.pt").model
    assert low_rank_ranks(loaded) == low_rank_ranks(model) != {}
    feats, lens, tokens, token_lens = tiny_batch()
    with torch.no_grad():
        a = model(feats, lens, tokens, token_lens).rnnt_loss
        b = loaded(feats, lens, tokens, token_lens).rnnt_loss
    assert torch.equal(a, b)


def test_an_impossible_target_is_refused():
    from asrprune.errors import AsrpruneError

    with pytest.raises(AsrpruneError, match="SVD cannot remove 99%"):
        svd_ranks(copy.deepcopy(tiny_model(0)), 0.99)
