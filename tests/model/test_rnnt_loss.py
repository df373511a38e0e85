"""The plain-PyTorch RNN-T loss against brute-force path enumeration and torchaudio's kernel."""

import itertools
import math

import pytest
import torch

from asrprune.model.rnnt_loss import rnnt_nll, torchaudio_nll, transducer_nll


def brute_force_nll(logits: torch.Tensor, targets: list[int], blank: int) -> float:
    """-log of the summed probability of every alignment: T blanks and U labels in any order
    that ends with a blank on the last frame."""
    log_probs = logits.double().log_softmax(-1)
    T, U = log_probs.shape[0], len(targets)
    total = []
    for label_slots in itertools.combinations(range(T - 1 + U), U):
        t = u = 0
        score = 0.0
        for i in range(T - 1 + U):
            if i in label_slots:
                score += float(log_probs[t, u, targets[u]])
                u += 1
            else:
                score += float(log_probs[t, u, blank])
                t += 1
        total.append(score + float(log_probs[T - 1, U, blank]))
    return -math.log(sum(math.exp(s) for s in total))


def test_equals_the_sum_over_every_alignment():
    torch.manual_seed(0)
    logits = torch.randn(1, 4, 4, 5) * 2
    targets = torch.tensor([[3, 1, 3]])
    got = rnnt_nll(logits, targets, torch.tensor([4]), torch.tensor([3]), blank=0)
    assert got.item() == pytest.approx(brute_force_nll(logits[0], [3, 1, 3], 0), rel=1e-5)


def test_padding_past_each_length_is_ignored():
    torch.manual_seed(1)
    logits = torch.randn(2, 6, 4, 7)
    targets = torch.tensor([[2, 5, 1], [4, 6, 6]])
    lens, tlens = torch.tensor([6, 3]), torch.tensor([3, 1])
    batch = rnnt_nll(logits, targets, lens, tlens, blank=0)
    alone = rnnt_nll(logits[1:, :3, :2], targets[1:, :1], lens[1:], tlens[1:], blank=0)
    assert batch[1].item() == pytest.approx(alone.item(), rel=1e-6)
    assert batch[1].item() == pytest.approx(brute_force_nll(logits[1, :3, :2], [4], 0), rel=1e-5)


def test_matches_torchaudio_in_loss_and_gradient():
    """Lengths from one frame and no tokens to the full lattice, blank not at id 0."""
    torch.manual_seed(2)
    B, T, U, V = 5, 17, 6, 11
    logits = (torch.randn(B, T, U + 1, V) * 3).requires_grad_(True)
    targets = torch.randint(0, V - 1, (B, U))
    lens, tlens = torch.tensor([17, 10, 5, 1, 17]), torch.tensor([6, 3, 0, 6, 1])
    ours = rnnt_nll(logits, targets, lens, tlens, blank=V - 1)
    (grad,) = torch.autograd.grad(ours.sum(), logits)
    ref = torchaudio_nll(logits, targets, lens, tlens, blank=V - 1)
    (ref_grad,) = torch.autograd.grad(ref.sum(), logits)
    assert torch.allclose(ours, ref, rtol=1e-5)
    assert torch.allclose(grad, ref_grad, atol=1e-5)
    assert torch.isfinite(grad).all()


def test_bf16_logits_are_scored_in_fp32():
    torch.manual_seed(3)
    logits = torch.randn(2, 5, 3, 6)
    targets, lens, tlens = (
        torch.tensor([[1, 2], [3, 4]]),
        torch.tensor([5, 4]),
        torch.tensor([2, 1]),
    )
    low = rnnt_nll(logits.bfloat16(), targets, lens, tlens, blank=0)
    assert low.dtype == torch.float32
    assert torch.allclose(low, rnnt_nll(logits.bfloat16().float(), targets, lens, tlens, 0))


def test_targets_must_match_the_lattice():
    with pytest.raises(ValueError, match="targets"):
        rnnt_nll(
            torch.randn(1, 3, 3, 4), torch.tensor([[1]]), torch.tensor([3]), torch.tensor([1]), 0
        )


def test_the_model_uses_rnnt_nll_on_the_cpu():
    torch.manual_seed(4)
    logits = torch.randn(2, 5, 3, 6)
    args = (torch.tensor([[1, 2], [3, 4]]), torch.tensor([5, 4]), torch.tensor([2, 1]), 0)
    assert torch.equal(transducer_nll(logits, *args), rnnt_nll(logits, *args))
