"""RNN-T loss in plain PyTorch: log-softmax over the vocabulary, then the forward recursion
over the diagonals of the (frame, token) lattice.

Why not ``torchaudio.functional.rnnt_loss``: on the CPU its kernel runs on one thread and
took about 30% of a teacher step on the 2-core machine (docs/experiments.md#rnn-t-loss).
Here the work that scales with the vocabulary (log-softmax and its gradient) is ordinary
vectorised tensor code, and the recursion touches only the blank and label scores:
T + U small steps, each over the whole batch, with autograd for the gradient. On CUDA,
``transducer_nll`` keeps torchaudio's fused kernel: it is parallel there and needs no
copy of the log-probabilities, and the GPU timings of docs/cluster.md were taken with it.
"""

from __future__ import annotations

import torch
import torchaudio

# Stands in for log(0): finite, so logaddexp and its gradient never see inf - inf, and far
# below any real path score (a sum of T + U log-probabilities), so it never wins a logaddexp.
_LOG_ZERO = -1e30


def _skew(scores: torch.Tensor, offset: int) -> torch.Tensor:
    """(B, T, W) -> (B, T + W, W) with out[b, n, u] = scores[b, n - u - offset, u], and
    _LOG_ZERO where that frame index lies outside [0, T)."""
    B, T, W = scores.shape
    n = torch.arange(T + W, device=scores.device)[:, None]
    t = n - torch.arange(W, device=scores.device)[None, :] - offset  # (T + W, W)
    valid = (t >= 0) & (t < T)
    index = t.clamp(0, T - 1).expand(B, -1, -1)
    return scores.gather(1, index).masked_fill(~valid, _LOG_ZERO)


def rnnt_nll(
    logits: torch.Tensor,
    targets: torch.Tensor,
    logit_lens: torch.Tensor,
    target_lens: torch.Tensor,
    blank: int,
) -> torch.Tensor:
    """-log P(targets | inputs) of each utterance under the transducer lattice.

    Args:
        logits: (B, T, U + 1, V) joiner outputs, any float dtype (computed in fp32).
        targets: (B, U) token ids, padded anywhere past target_lens.
        logit_lens: (B,) frames of each utterance, at most T.
        target_lens: (B,) tokens of each utterance, at most U.
        blank: the blank id.
    Returns: (B,) fp32, differentiable with respect to logits.
    """
    B, T, U1, _ = logits.shape
    U = U1 - 1
    if targets.shape != (B, U):
        raise ValueError(
            f"targets {tuple(targets.shape)} do not match logits {tuple(logits.shape)}"
        )
    log_probs = logits.float().log_softmax(dim=-1)
    blank_lp = log_probs[..., blank]  # (B, T, U + 1): stay on token u, advance a frame
    label_lp = (  # (B, T, U): emit token u + 1 at node (t, u)
        log_probs[:, :, :U].gather(3, targets.long()[:, None, :, None].expand(B, T, U, 1))
    ).squeeze(3)
    return lattice_nll(blank_lp, label_lp, logit_lens, target_lens)


def lattice_nll(
    blank_lp: torch.Tensor,
    label_lp: torch.Tensor,
    logit_lens: torch.Tensor,
    target_lens: torch.Tensor,
) -> torch.Tensor:
    """-log of the summed probability of every path through the lattice whose node (t, u)
    leaves by a blank with log-probability ``blank_lp`` (B, T, U + 1) and by token u + 1
    with ``label_lp`` (B, T, U); (B,), differentiable with respect to both."""
    B, T, U1 = blank_lp.shape
    U = U1 - 1
    # alpha over diagonals n = t + u: node (t, u) is reached from (t - 1, u) by a blank
    # and from (t, u - 1) by token u
    blank_in = _skew(blank_lp, 1)  # [n, u] = blank_lp[n - u - 1, u]: into (n - u, u)
    label_in = _skew(label_lp, 1)  # [n, u - 1] = label_lp[n - u, u - 1]: into (n - u, u)
    head = torch.full((B, 1), _LOG_ZERO, dtype=blank_lp.dtype, device=blank_lp.device)
    alpha = torch.cat([torch.zeros_like(head), head.expand(B, U)], dim=1)  # diagonal 0
    alphas = [alpha]
    for n in range(1, T + U):
        from_below = alpha + blank_in[:, n]
        from_left = torch.cat([head, alpha[:, :U] + label_in[:, n, :U]], dim=1)
        alpha = torch.logaddexp(from_below, from_left)
        alphas.append(alpha)
    alphas = torch.stack(alphas, dim=1)  # (B, T + U, U + 1)
    last_t, last_u = logit_lens.long() - 1, target_lens.long()
    rows = torch.arange(B, device=blank_lp.device)
    final = alphas[rows, last_t + last_u, last_u] + blank_lp[rows, last_t, last_u]
    return -final


def torchaudio_nll(
    logits: torch.Tensor,
    targets: torch.Tensor,
    logit_lens: torch.Tensor,
    target_lens: torch.Tensor,
    blank: int,
) -> torch.Tensor:
    """``rnnt_nll`` by torchaudio's kernel (arguments and result alike)."""
    return torchaudio.functional.rnnt_loss(
        logits.float(),
        targets.int(),
        logit_lens.int(),
        target_lens.int(),
        blank=blank,
        reduction="none",
    )


def transducer_nll(
    logits: torch.Tensor,
    targets: torch.Tensor,
    logit_lens: torch.Tensor,
    target_lens: torch.Tensor,
    blank: int,
) -> torch.Tensor:
    """The loss the model trains with: torchaudio's fused kernel on CUDA, ``rnnt_nll``
    elsewhere (the CPU kernel runs on one thread)."""
    nll = torchaudio_nll if logits.is_cuda else rnnt_nll
    return nll(logits, targets, logit_lens, target_lens, blank)
