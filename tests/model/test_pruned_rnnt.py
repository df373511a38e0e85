"""Pruned RNN-T: the additive joiner's scores, the bands, and the loss against the full one."""

from __future__ import annotations

import pytest
import torch

from asrprune.model.pruned_rnnt import (
    SimpleJoiner,
    additive_scores,
    band_size,
    band_starts,
    pruned_rnnt_nll,
)
from asrprune.model.rnnt_loss import rnnt_nll
from asrprune.model.transducer import Joiner

BLANK = 0


def test_additive_scores_are_the_log_softmax_of_the_summed_logits():
    torch.manual_seed(0)
    B, T, U, V = 2, 5, 3, 7
    am, lm = torch.randn(B, T, V) * 4, torch.randn(B, U + 1, V) * 4
    targets = torch.randint(1, V, (B, U))
    blank_lp, label_lp = additive_scores(am, lm, targets, BLANK)
    log_probs = (am[:, :, None] + lm[:, None]).log_softmax(-1)  # (B, T, U + 1, V)
    assert torch.allclose(blank_lp, log_probs[..., BLANK], atol=1e-5)
    expected = log_probs[:, :, :U].gather(3, targets[:, None, :, None].expand(B, T, U, 1))
    assert torch.allclose(label_lp, expected.squeeze(3), atol=1e-5)


@pytest.mark.parametrize("seed", range(5))
def test_every_band_keeps_a_path_from_the_first_node_to_the_last(seed):
    g = torch.Generator().manual_seed(seed)
    B, T, U = 4, 12, 9
    logit_lens = torch.tensor([12, 7, 3, 12])
    target_lens = torch.tensor([9, 4, 9, 0])
    size = band_size(3, logit_lens, target_lens)
    assert size >= 3
    blank, label = torch.rand(B, T, U + 1, generator=g), torch.rand(B, T, U, generator=g)
    starts = band_starts(blank, label, logit_lens, target_lens, size)
    for b in range(B):
        n, u = int(logit_lens[b]), int(target_lens[b])
        s = starts[b, :n]
        assert s[0] == 0 and s[-1] <= u < s[-1] + size  # first node and last token
        steps = s[1:] - s[:-1]
        assert (steps >= 0).all() and (steps <= size - 1).all()
        assert (starts[b] + size <= U + 1).all()  # every band inside the lattice
    # 3 frames cannot reach 9 tokens in steps of 2: the band widens until they can
    assert 9 + 1 - size <= 2 * (size - 1)


def test_a_band_as_wide_as_the_lattice_gives_the_full_loss():
    torch.manual_seed(1)
    B, T, U, d, P, V = 3, 8, 4, 6, 5, 9
    joiner, simple = Joiner(d, P, 10, V), SimpleJoiner(d, P, V)
    enc, pred = torch.randn(B, T, d), torch.randn(B, U + 1, P)
    targets = torch.randint(1, V, (B, U))
    lens, tlens = torch.tensor([8, 5, 2]), torch.tensor([4, 2, 1])
    _, pruned = pruned_rnnt_nll(joiner, simple, enc, pred, targets, lens, tlens, U + 1, BLANK)
    full = rnnt_nll(joiner(enc[:, :, None], pred[:, None]), targets, lens, tlens, BLANK)
    assert torch.allclose(pruned, full, rtol=1e-5)


def test_a_narrow_band_keeps_fewer_paths_and_trains_both_joiners():
    torch.manual_seed(2)
    B, T, U, d, P, V = 2, 20, 8, 6, 5, 9
    joiner, simple = Joiner(d, P, 10, V), SimpleJoiner(d, P, V)
    enc = torch.randn(B, T, d, requires_grad=True)
    pred = torch.randn(B, U + 1, P)
    targets = torch.randint(1, V, (B, U))
    lens, tlens = torch.tensor([20, 14]), torch.tensor([8, 5])
    simple_nll, pruned = pruned_rnnt_nll(joiner, simple, enc, pred, targets, lens, tlens, 3, BLANK)
    full = rnnt_nll(joiner(enc[:, :, None], pred[:, None]), targets, lens, tlens, BLANK)
    assert (pruned >= full - 1e-4).all() and (pruned > full + 1e-3).any()
    (simple_nll.sum() + pruned.sum()).backward()
    for module in (joiner, simple):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    assert enc.grad is not None and torch.isfinite(enc.grad).all()
