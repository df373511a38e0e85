"""Magnitude pruning (OMP): unit scores, the target met exactly, the strongest units kept."""

from __future__ import annotations

import copy

import pytest
import torch

from asrprune.model import Transducer
from asrprune.model.hardconcrete import HardConcrete
from asrprune.pruning.l0 import GateKinds, gated_student
from asrprune.pruning.magnitude import (
    MagnitudeRanking,
    ParpLoss,
    prune_by_magnitude,
    release_pruned_units,
)
from asrprune.train import TransducerLoss
from tests.builders_model import tiny_settings
from tests.model.tiny import tiny_batch, tiny_model


def gated(seed: int = 0) -> Transducer:
    return gated_student(tiny_model(seed), GateKinds())


def test_a_channel_scores_the_mean_magnitude_of_the_weights_it_owns():
    model = gated()
    ffn = model.encoder.blocks[1].ffn2
    scores = dict((id(g), s) for g, s in model.encoder.gate_magnitudes())[id(ffn.gate)]
    c = 5
    owned = torch.cat((ffn.up.weight[c], ffn.up.bias[c : c + 1], ffn.down.weight[:, c]))
    assert scores[c] == pytest.approx(float(owned.detach().abs().mean()), rel=1e-6)


def test_scaling_one_head_up_ranks_it_strongest():
    model = gated()
    mhsa = model.encoder.blocks[0].mhsa
    with torch.no_grad():
        for name in ("q", "k", "v"):
            getattr(mhsa, name).weight[mhsa.head_dim :] *= 10  # head 1's rows
    scores = dict((id(g), s) for g, s in model.encoder.gate_magnitudes())[id(mhsa.gate)]
    assert int(scores.argmax()) == 1


@pytest.mark.parametrize("sparsity", [0.2, 0.5])
def test_omp_meets_the_target_with_the_fewest_units(sparsity):
    model = gated()
    choice = prune_by_magnitude(model, sparsity)
    assert choice.sparsity >= sparsity
    compact = Transducer.compacted(model.eval())
    assert compact.param_counts().prunable == choice.prunable_params
    # one unit fewer removed would miss the target
    ranking = MagnitudeRanking(model)
    assert ranking.pin(choice.removed - 1) > (1 - sparsity) * choice.full_params


def _kinds(scored):
    """Scored gates grouped by kind (the gates rounded together; a gate alone)."""
    kinds = {}
    for gate, score in scored:
        kinds.setdefault(id(gate.peers or gate), []).append((gate, score))
    return list(kinds.values())


@pytest.mark.parametrize("ranking", ["global", "per_kind"])
def test_omp_keeps_the_highest_magnitude_units(ranking):
    model = gated(seed=3)
    scored = [(g, s.clone()) for g, s in model.encoder.gate_magnitudes()]
    prune_by_magnitude(model, 0.4, ranking=ranking)

    # ranked globally, over all units; per kind, at least within each kind
    def among(g):  # a block's hidden gate chooses among the dims the global gate keeps
        return torch.ones(g.n, dtype=torch.bool) if g.within is None else g.within.final_mask() > 0

    for group in [scored] if ranking == "global" else _kinds(scored):
        kept = torch.cat([s[(g.final_mask() > 0) & among(g)] for g, s in group])
        removed = torch.cat([s[(g.final_mask() == 0) & among(g)] for g, s in group])
        if len(removed) and len(kept):
            assert float(removed.max()) <= float(kept.min())
    assert any(bool((g.final_mask() == 0).any()) for g, _ in scored)


def _removed_by_kind(model: Transducer) -> dict[str, float]:
    """The fraction of each kind's units the final masks remove."""
    enc = model.encoder
    kinds = {
        "heads": [b.mhsa.gate for b in enc.blocks],
        "ffn": [f.gate for b in enc.blocks for f in (b.ffn1, b.ffn2)],
        "conv": [b.conv.gate for b in enc.blocks],
        "hidden": [enc.hidden_gate, *(b.hidden_gate for b in enc.blocks)],
    }
    return {
        kind: float((torch.cat([g.final_mask() for g in gates]) == 0).float().mean())
        for kind, gates in kinds.items()
    }


def _heads_scaled_down(factor: float) -> Transducer:
    """A gated model with every weight of its attention heads (not the norms) scaled."""
    model = gated()
    with torch.no_grad():
        for block in model.encoder.blocks:
            mhsa = block.mhsa
            for p in (mhsa.q, mhsa.k, mhsa.v, mhsa.out, mhsa.linear_pos):
                for t in p.parameters():
                    t.mul_(factor)
            mhsa.pos_bias_u.mul_(factor)
            mhsa.pos_bias_v.mul_(factor)
    return model


@pytest.mark.parametrize("sparsity", [0.2, 0.4])
def test_per_kind_ranking_prunes_a_kind_scaled_down_as_if_it_were_not(sparsity):
    base = gated()
    prune_by_magnitude(base, sparsity, ranking="per_kind")
    scaled = _heads_scaled_down(0.1)
    prune_by_magnitude(scaled, sparsity, ranking="per_kind")
    before, after = _removed_by_kind(base), _removed_by_kind(scaled)
    assert after["heads"] == before["heads"]
    assert all(abs(after[k] - before[k]) <= 0.05 for k in before)
    # ranked globally, the scaled kind goes first: every head before any other unit
    globally = _heads_scaled_down(0.1)
    prune_by_magnitude(globally, sparsity, ranking="global")
    removed = _removed_by_kind(globally)
    assert removed["heads"] >= 0.75 > after["heads"]
    assert removed["heads"] == 1.0 or removed == {**dict.fromkeys(removed, 0.0), "heads": 0.75}


def test_per_kind_ranking_divides_each_score_by_its_kinds_mean(monkeypatch):
    model = gated()
    scored = model.encoder.gate_magnitudes()
    # FFN channels 128x stronger than they are (a power of 2: exact): per kind, the
    # ranking stays as it was
    ffn_gates = {id(f.gate) for b in model.encoder.blocks for f in (b.ffn1, b.ffn2)}
    boosted = [(g, s * 128 if id(g) in ffn_gates else s) for g, s in scored]
    per_kind, globally = MagnitudeRanking(model).rank, MagnitudeRanking(model, "global").rank
    monkeypatch.setattr(model.encoder, "gate_magnitudes", lambda **_: boosted)
    assert torch.equal(MagnitudeRanking(model).rank, per_kind)
    assert not torch.equal(MagnitudeRanking(model, "global").rank, globally)


def test_pinned_gates_are_exact_masks_in_training_and_eval():
    gate = HardConcrete(6)
    keep = torch.tensor([True, False, True, True, False, False])
    gate.pin(keep)
    assert not gate.log_alpha.requires_grad
    for mode in (True, False):
        gate.train(mode)
        for _ in range(20):
            assert torch.equal(gate(), keep.float())


def test_pruned_model_keeps_its_function_through_compaction():
    model = gated()
    prune_by_magnitude(model, 0.3)
    model.eval()
    compact = Transducer.compacted(model)
    feats, lens, tokens, token_lens = tiny_batch()
    with torch.no_grad():
        a = model(feats, lens, tokens, token_lens)
        b = compact(feats, lens, tokens, token_lens)
    assert torch.allclose(a.rnnt_loss, b.rnnt_loss, rtol=1e-4)


def test_released_units_compute_what_the_masked_model_computes():
    masked = gated()
    prune_by_magnitude(masked, 0.4)
    released = copy.deepcopy(masked)
    release_pruned_units(released)
    feats, lens, tokens, token_lens = tiny_batch()
    with torch.no_grad():
        a = masked.eval()(feats, lens, tokens, token_lens).rnnt_loss
        b = released.eval()(feats, lens, tokens, token_lens).rnnt_loss
    assert torch.allclose(a, b, rtol=1e-5)
    ffn = released.encoder.blocks[0].ffn1
    assert bool((ffn.gate.final_mask() == 1).all())  # opened: the zeros do the pruning


def _dead_channel(model):
    """(block, ffn, channel) of a channel the last magnitude prune removed."""
    for block in model.encoder.blocks:
        for ffn in (block.ffn1, block.ffn2):
            dead = torch.nonzero(ffn.down.weight.abs().sum(0) == 0).flatten()
            if len(dead):
                return ffn, int(dead[0])
    raise AssertionError("no pruned FFN channel")


def test_in_parp_a_pruned_unit_gets_gradients_and_can_come_back():
    model = gated()
    parp = ParpLoss(TransducerLoss(tiny_settings()), 0.4, every=1)
    parp.start(model)
    ffn, c = _dead_channel(model)
    # zeroed but still updated: its output column gets a gradient
    feats, lens, tokens, token_lens = tiny_batch()
    model.train()(feats, lens, tokens, token_lens).rnnt_loss.backward()
    assert float(ffn.down.weight.grad[:, c].abs().sum()) > 0
    # had it regrown strongly, the next re-prune keeps it
    with torch.no_grad():
        ffn.up.weight[c] = 1.0
        ffn.down.weight[:, c] = 1.0
    parp.reprune(model)
    assert float(ffn.down.weight[:, c].detach().abs().sum()) > 0


def test_a_unit_scores_its_output_side_alone_when_asked():
    model = gated()
    block = model.encoder.blocks[0]
    scores = dict((id(g), s) for g, s in model.encoder.gate_magnitudes(output_side=True))
    ffn, c = block.ffn1, 5
    assert scores[id(ffn.gate)][c] == pytest.approx(
        float(ffn.down.weight[:, c].detach().abs().mean()), rel=1e-6
    )
    dk = block.mhsa.head_dim
    head = block.mhsa.out.weight[:, dk : 2 * dk].detach().abs().mean()
    assert scores[id(block.mhsa.gate)][1] == pytest.approx(float(head), rel=1e-6)
    out = block.conv.pointwise2
    conv = torch.cat((out.weight.flatten(), out.bias)).detach().abs().mean()
    assert scores[id(block.conv.gate)][0] == pytest.approx(float(conv), rel=1e-6)


def test_in_parp_a_unit_that_writes_nothing_stays_pruned_however_large_its_input():
    model = gated()
    parp = ParpLoss(TransducerLoss(tiny_settings()), 0.4, every=1)
    parp.start(model)
    ffn, c = _dead_channel(model)
    with torch.no_grad():  # its input side grows far above every other unit's weights
        ffn.up.weight[c] = 10.0
        ffn.up.bias[c] = 10.0
    # scored by all its weights it would rank strongest of its gate ...
    whole = dict((id(g), s) for g, s in model.encoder.gate_magnitudes())[id(ffn.gate)]
    assert int(whole.argmax()) == c
    # ... by the weights through which it writes, it ranks weakest, and stays pruned
    out = dict((id(g), s) for g, s in model.encoder.gate_magnitudes(output_side=True))
    assert float(out[id(ffn.gate)][c]) == 0.0
    parp.prune(model)
    assert float(ffn.gate.final_mask()[c]) == 0.0


def test_omp_keeps_a_global_hidden_dimension_whatever_the_scores(monkeypatch):
    model = gated()
    scored = model.encoder.gate_magnitudes()
    # every global hidden dimension scores below every other unit
    fake = [
        (g, torch.full_like(s, 1e-9) if g is model.encoder.hidden_gate else s) for g, s in scored
    ]
    monkeypatch.setattr(model.encoder, "gate_magnitudes", lambda **_: fake)
    choice = prune_by_magnitude(model, 0.99)  # more than every global dimension is worth
    assert model.encoder.final_structure().d_model == 1
    assert choice.sparsity >= 0.99
