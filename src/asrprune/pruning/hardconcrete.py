"""Hard-concrete gates (Louizos et al., 2018): differentiable masks with an expected L0 norm.

A gate over ``n`` units holds one learnable log-alpha per unit. In training it samples a
stretched, clamped concrete variable per unit; in eval it gives the final mask. The module
that owns a gate multiplies its units by the gate's output and counts its own size from
``probs()`` (the probability that each unit is non-zero), so the budget stays
differentiable and is exact for binary masks.
"""

from __future__ import annotations

import math

import torch
from torch import nn

LEFT, RIGHT = -0.1, 1.1  # the stretch interval (l, r)
TEMPERATURE = 2.0 / 3.0
INIT_KEEP = 0.9  # initial P(keep): the student starts near the teacher, gates not saturated
# |log-alpha| of a pinned gate: every sample is then exactly 0 or 1 in float32
PINNED_LOGIT = 30.0


class HardConcrete(nn.Module):
    """A gate over ``n`` units.

    Args:
        n: number of units. binary: the final mask is 0/1 (for units whose mask cannot be
            folded into a weight, such as hidden dimensions that LayerNorms read); otherwise
            kept units keep their deterministic value in (0, 1], which compaction folds
            into the weights.
    forward: () -> mask (n,): a sample in training, :meth:`final_mask` in eval.
    """

    def __init__(self, n: int, binary: bool = False):
        super().__init__()
        self.n, self.binary = n, binary
        self.log_alpha = nn.Parameter(torch.empty(n))
        with torch.no_grad():
            self.log_alpha.normal_(math.log(INIT_KEEP / (1 - INIT_KEEP)), 0.01)

    def extra_repr(self) -> str:
        return f"n={self.n}, binary={self.binary}"

    def probs(self) -> torch.Tensor:
        """P(unit is non-zero) per unit: (n,); its sum is the expected L0 norm."""
        return torch.sigmoid(self.log_alpha - TEMPERATURE * math.log(-LEFT / RIGHT))

    def l0_norm(self) -> torch.Tensor:
        """Expected number of units kept (a differentiable scalar)."""
        return self.probs().sum()

    def sample(self) -> torch.Tensor:
        u = torch.rand_like(self.log_alpha).clamp(1e-6, 1 - 1e-6)
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + self.log_alpha) / TEMPERATURE)
        return (s * (RIGHT - LEFT) + LEFT).clamp(0.0, 1.0)  # (n,)

    def final_mask(self) -> torch.Tensor:
        """The deterministic mask: keep round(expected L0 norm) units, highest log-alpha first.

        Kept units take the gate's noise-free value (1 if ``binary``), the others 0. This is
        the one rule by which masks become final: in eval, at compaction, in the saved masks.
        """
        k = int(torch.round(self.l0_norm().detach()).item())
        mask = torch.zeros_like(self.log_alpha)
        if k > 0:
            kept = torch.topk(self.log_alpha.detach(), k).indices
            if self.binary:
                mask[kept] = 1.0
            else:
                value = torch.sigmoid(self.log_alpha.detach()) * (RIGHT - LEFT) + LEFT
                # a kept unit never gets 0: it was kept because its expectation says so
                mask[kept] = value[kept].clamp(min=1e-3, max=1.0)
        return mask

    @torch.no_grad()
    def pin(self, keep: torch.Tensor) -> None:
        """Fix the mask to ``keep`` (n,) bool, in training and eval alike, and stop the
        log-alphas learning: how masks chosen by another rule (magnitude) are applied."""
        self.log_alpha.copy_(
            torch.where(keep.to(self.log_alpha.device), PINNED_LOGIT, -PINNED_LOGIT)
        )
        self.log_alpha.requires_grad_(False)

    def forward(self) -> torch.Tensor:
        return self.sample() if self.training else self.final_mask()
