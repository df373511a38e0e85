"""Hard-concrete gates: expected L0 norm, samples, the one rule for final masks, and the
joint rounding of a group of gates."""

from __future__ import annotations

import math

import pytest
import torch

from asrprune.model.hardconcrete import (
    INIT_KEEP,
    KEPT_FLOOR,
    LEFT,
    RIGHT,
    TEMPERATURE,
    HardConcrete,
    RoundingGroup,
)


def test_new_gate_keeps_almost_everything():
    g = HardConcrete(50)
    assert 0.95 * 50 < float(g.l0_norm().detach()) <= 50
    final = g.eval()()
    assert int((final > 0).sum()) == round(float(g.l0_norm().detach())) >= 48
    # kept units at the noise-free value of the initial keep probability, stretched
    kept = final[final > 0]
    assert torch.allclose(kept, torch.full_like(kept, INIT_KEEP * 1.2 - 0.1), atol=0.01)


def test_expected_l0_norm_matches_the_sample_frequency():
    torch.manual_seed(0)
    g = HardConcrete(4)
    with torch.no_grad():
        g.log_alpha.copy_(torch.tensor([-3.0, -0.5, 0.5, 3.0]))
    samples = torch.stack([g.train()() for _ in range(20000)])  # (N, 4)
    assert samples.min() >= 0 and samples.max() <= 1
    nonzero = (samples > 0).float().mean(0)
    assert torch.allclose(nonzero, g.probs().detach(), atol=0.015)
    assert (samples == 1).any() and (samples == 0).any()  # the stretch makes exact 0 and 1


def test_final_mask_keeps_the_rounded_expectation_by_score():
    g = HardConcrete(6)
    with torch.no_grad():
        g.log_alpha.copy_(torch.tensor([5.0, -6.0, 0.3, -6.0, 4.0, -0.2]))
    k = round(float(g.l0_norm().detach()))
    mask = g.final_mask()
    assert int((mask > 0).sum()) == k
    kept = set(torch.nonzero(mask).flatten().tolist())
    assert kept == set(torch.topk(g.log_alpha.detach(), k).indices.tolist())
    assert mask[0] == 1.0 and 0 < mask[2] < 1  # a confident unit is 1, an unsure one folds
    g.binary = True
    assert set(g.final_mask().unique().tolist()) <= {0.0, 1.0}


def test_l0_norm_is_differentiable():
    g = HardConcrete(3)
    g.l0_norm().backward()
    assert g.log_alpha.grad is not None and (g.log_alpha.grad > 0).all()
    assert not math.isnan(float(g.log_alpha.grad.sum()))


def _gate_expecting(n: int, expected: float) -> HardConcrete:
    """A gate over ``n`` units whose expected L0 norm is ``expected`` (equal units)."""
    g = HardConcrete(n)
    p = expected / n
    with torch.no_grad():
        g.log_alpha.fill_(math.log(p / (1 - p)) + TEMPERATURE * math.log(-LEFT / RIGHT))
    return g


def test_a_rounding_group_keeps_the_rounded_total():
    # the 20% FLOPs miss: three head gates rounded down one by one, 0.91 heads lost
    gates = [_gate_expecting(4, e) for e in (2.23, 1.32, 1.36, 2.0)]
    alone = [g.kept_units() for g in gates]
    assert alone == [2, 1, 1, 2]
    RoundingGroup(gates)
    expected = [float(g.l0_norm().detach()) for g in gates]
    assert sum(expected) == pytest.approx(6.91, abs=1e-4)
    kept = [int((g.eval()() > 0).sum()) for g in gates]
    assert sum(kept) == round(sum(expected)) == 7
    assert all(math.floor(e) <= k <= math.ceil(e) for e, k in zip(expected, kept, strict=True))
    assert kept == [2, 1, 2, 2]  # the largest remainder (1.36) takes the extra head
    with torch.no_grad():  # 2.23 -> 2.45: the group still keeps 7, now 2.45 has the lead
        gates[0].log_alpha.copy_(_gate_expecting(4, 2.45).log_alpha)
    assert [g.kept_units() for g in gates] == [3, 1, 1, 2]
    assert [int((g.final_mask() > 0).sum()) for g in gates] == [3, 1, 1, 2]


def test_a_unit_the_rounding_keeps_against_its_value_is_kept_usable():
    # two convolution modules, each 0.3 expected: the group keeps round(0.6) = 1, whose
    # noise-free value (sigmoid(log-alpha) * 1.2 - 0.1) is below 0
    gates = [_gate_expecting(1, 0.3) for _ in range(2)]
    assert torch.sigmoid(gates[0].log_alpha) * 1.2 - 0.1 < 0
    RoundingGroup(gates)
    masks = [float(g.final_mask()[0]) for g in gates]
    assert masks == pytest.approx([KEPT_FLOOR, 0.0])  # the tie goes to the earlier gate
    # a unit above the floor keeps its own value
    g = _gate_expecting(4, 2.4)  # P(non-zero) 0.6
    value = float(torch.sigmoid(g.log_alpha[0].detach()) * 1.2 - 0.1)
    assert KEPT_FLOOR < value < 1
    assert sorted(g.final_mask().tolist()) == pytest.approx([0.0, 0.0, value, value])
    # the floor is the value of a unit as likely kept as dropped
    assert float(_gate_expecting(2, 1.0).eval()().max()) == pytest.approx(KEPT_FLOOR)
    assert 0.1 < KEPT_FLOOR < 0.11
