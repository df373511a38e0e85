"""Pruned RNN-T loss (Kuang et al., Interspeech 2022): the joiner evaluated only in a band
of a few tokens per frame.

The full loss runs the joiner (a tanh and a vocabulary-wide projection) at every (frame,
token) node of the lattice and normalises over the vocabulary there: on the teacher's
batches that is about a fifth of a training step (docs/experiments.md#grid-budget). Here:

1. A *simple* joiner, logits am(t) + lm(u) (one linear map of the encoder output and one
   of the predictor output to the vocabulary), gives every node's blank and label
   log-probabilities cheaply: its normaliser over the vocabulary is a matrix product of
   exponentials. Its lattice loss trains too (it is a transducer of its own).
2. The simple lattice's node occupancies (the gradient of its loss with respect to the
   node scores) pick, per frame t, the ``S`` consecutive tokens [s_t, s_t + S) that hold
   most of the alignment, subject to a path existing: s_0 = 0, the last frame's band
   holds the last token, and 0 <= s_{t+1} - s_t <= S - 1.
3. The real joiner runs only inside the bands, (B, T, S) nodes; the lattice loss runs on
   them with every node outside a band at log(0).

With ``S`` at least the longest transcript plus one every node is inside and the pruned
loss is the full one (``tests/model/test_pruned_rnnt.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from asrprune.model.rnnt_loss import _LOG_ZERO, lattice_nll


class SimpleJoiner(nn.Module):
    """The additive joiner of the pruned loss: encoder (B, T, d) and predictor (B, U + 1, P)
    outputs each to vocabulary logits. Trained beside the model, not part of it."""

    def __init__(self, enc_dim: int, pred_dim: int, vocab_size: int):
        super().__init__()
        self.am = nn.Linear(enc_dim, vocab_size)
        self.lm = nn.Linear(pred_dim, vocab_size)

    def forward(self, enc: torch.Tensor, pred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.am(enc).float(), self.lm(pred).float()


def additive_scores(
    am: torch.Tensor, lm: torch.Tensor, targets: torch.Tensor, blank: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blank (B, T, U + 1) and label (B, T, U) log-probabilities of the additive joiner
    log_softmax(am[t] + lm[u]), without building the (B, T, U + 1, V) logits: the
    normaliser is log(exp(am - max) @ exp(lm - max)^T) + the maxima."""
    am, lm = am.float(), lm.float()
    am_max = am.max(dim=-1, keepdim=True).values  # (B, T, 1)
    lm_max = lm.max(dim=-1, keepdim=True).values  # (B, U + 1, 1)
    with torch.autocast(am.device.type, enabled=False):  # a sum of exponentials: fp32
        norm = torch.matmul((am - am_max).exp(), (lm - lm_max).exp().transpose(1, 2))
    norm = norm.clamp_min(1e-30).log() + am_max + lm_max.transpose(1, 2)  # (B, T, U + 1)
    blank_lp = am[..., blank, None] + lm[..., blank][:, None, :] - norm
    U = targets.size(1)
    index = targets.long()  # (B, U)
    am_label = am.gather(2, index[:, None, :].expand(-1, am.size(1), -1))  # (B, T, U)
    lm_label = lm[:, :U].gather(2, index[..., None]).squeeze(2)  # (B, U)
    label_lp = am_label + lm_label[:, None, :] - norm[:, :, :U]
    return blank_lp, label_lp


def band_size(S: int, logit_lens: torch.Tensor, target_lens: torch.Tensor) -> int:
    """The band width actually used: at least ``S``, at most the longest transcript + 1,
    and wide enough that every utterance's last token can be reached with steps of at
    most width - 1 tokens per frame."""
    U = int(target_lens.max())
    size = min(max(S, 1), U + 1)
    while size < U + 1 and bool(((target_lens + 1 - size) > (logit_lens - 1) * (size - 1)).any()):
        size += 1
    return size


@torch.no_grad()
def band_starts(
    blank_occ: torch.Tensor,
    label_occ: torch.Tensor,
    logit_lens: torch.Tensor,
    target_lens: torch.Tensor,
    size: int,
) -> torch.Tensor:
    """(B, T) first token s_t of each frame's band of ``size`` tokens: where the nodes'
    occupancy (blank plus label, (B, T, U + 1) and (B, T, U)) sums highest, then moved
    as little as it takes for a path to exist (see the module docstring)."""
    B, T, U1 = blank_occ.shape
    occ = blank_occ.clone()
    occ[:, :, : U1 - 1] += label_occ
    zero = torch.zeros(B, T, 1, dtype=occ.dtype, device=occ.device)
    cum = torch.cat([zero, occ.cumsum(dim=2)], dim=2)  # (B, T, U + 2)
    window = cum[:, :, size:] - cum[:, :, : U1 + 1 - size]  # (B, T, U + 2 - size)
    starts = window.argmax(dim=2)  # (B, T)
    # each utterance's band ends at its own last token at the latest
    last = (target_lens.long() + 1 - size).clamp_min(0)  # (B,)
    starts = torch.minimum(starts, last[:, None])
    starts[:, 0] = 0
    for t in range(1, T):  # non-decreasing, by at most size - 1 a frame
        prev = starts[:, t - 1]
        starts[:, t] = torch.minimum(torch.maximum(starts[:, t], prev), prev + size - 1)
    rows = torch.arange(B, device=starts.device)
    end = logit_lens.long() - 1
    starts[rows, end] = last
    for t in range(T - 2, -1, -1):  # back from the end: reach the last token in time
        raised = torch.maximum(starts[:, t], starts[:, t + 1] - (size - 1))
        starts[:, t] = torch.where(t < end, raised, starts[:, t])
    return starts


def pruned_joiner_scores(
    joiner: nn.Module,
    enc: torch.Tensor,
    pred: torch.Tensor,
    targets: torch.Tensor,
    starts: torch.Tensor,
    size: int,
    blank: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The joiner's blank (B, T, U + 1) and label (B, T, U) log-probabilities inside each
    frame's band, log(0) outside: the joiner runs on (B, T, size) nodes only."""
    B, T, _ = enc.shape
    U = targets.size(1)
    nodes = starts[..., None] + torch.arange(size, device=starts.device)  # (B, T, size)
    pred_p = joiner.pred_proj(pred)  # (B, U + 1, J)
    J = pred_p.size(-1)
    band = pred_p.gather(1, nodes.reshape(B, T * size, 1).expand(-1, -1, J))
    logits = joiner.joint(joiner.enc_proj(enc)[:, :, None], band.reshape(B, T, size, J))
    log_probs = logits.float().log_softmax(dim=-1)  # (B, T, size, V)
    padded = torch.cat([targets.long(), targets.new_zeros(B, 1).long()], dim=1)  # (B, U + 1)
    tokens = padded.gather(1, nodes.reshape(B, T * size)).reshape(B, T, size, 1)
    full = torch.full((B, T, U + 1), _LOG_ZERO, dtype=log_probs.dtype, device=enc.device)
    blank_lp = full.scatter(2, nodes, log_probs[..., blank])
    label_lp = full.scatter(2, nodes, log_probs.gather(3, tokens).squeeze(3))[:, :, :U]
    return blank_lp, label_lp


def pruned_rnnt_nll(
    joiner: nn.Module,
    simple: SimpleJoiner,
    enc: torch.Tensor,
    pred: torch.Tensor,
    targets: torch.Tensor,
    logit_lens: torch.Tensor,
    target_lens: torch.Tensor,
    S: int,
    blank: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(simple loss, pruned loss), each (B,): the additive joiner's lattice loss, and the
    real joiner's on the bands its alignment picks. ``enc`` (B, T, d) as long as the
    longest utterance, ``pred`` (B, U + 1, P) over ``targets`` (B, U)."""
    am, lm = simple(enc, pred)
    blank_s, label_s = additive_scores(am, lm, targets, blank)
    simple_nll = lattice_nll(blank_s, label_s, logit_lens, target_lens)
    # occupancies: minus the loss's gradient with respect to each node's score
    occ_blank, occ_label = torch.autograd.grad(
        simple_nll.sum(), (blank_s, label_s), retain_graph=True
    )
    size = band_size(S, logit_lens, target_lens)
    starts = band_starts(-occ_blank, -occ_label, logit_lens, target_lens, size)
    blank_p, label_p = pruned_joiner_scores(joiner, enc, pred, targets, starts, size, blank)
    return simple_nll, lattice_nll(blank_p, label_p, logit_lens, target_lens)
