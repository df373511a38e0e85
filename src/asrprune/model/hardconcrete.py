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

from asrprune.apportion import largest_remainder

LEFT, RIGHT = -0.1, 1.1  # the stretch interval (l, r)
TEMPERATURE = 2.0 / 3.0
INIT_KEEP = 0.9  # initial P(keep): the student starts near the teacher, gates not saturated
# |log-alpha| of a pinned gate: every sample is then exactly 0 or 1 in float32
PINNED_LOGIT = 30.0
# The least value a kept unit of a non-binary gate takes: the noise-free value of a unit
# as likely kept as dropped (P(non-zero) = 1/2), about 0.1. Rounding (above all a
# RoundingGroup's) can keep a unit whose noise-free value is near 0; the unit is then
# counted in size and FLOPs yet, its value folded into its output weights, contributes
# almost nothing, and fine-tuning can hardly revive it. A floor rather than 1 for every
# kept unit: a unit kept on its own expectation (P > 1/2) is above it and keeps the scale
# the L0 training tuned, and a unit kept against its expectation enters like the least
# sure of those, not at full strength into a model trained mostly without it.
_HALF_LOGIT = TEMPERATURE * math.log(-LEFT / RIGHT)  # the log-alpha at which P(non-zero) = 1/2
KEPT_FLOOR = (RIGHT - LEFT) / (1 + math.exp(-_HALF_LOGIT)) + LEFT


class HardConcrete(nn.Module):
    """A gate over ``n`` units.

    Args:
        n: number of units. binary: the final mask is 0/1 (for units whose mask cannot be
            folded into a weight, such as hidden dimensions that LayerNorms read); otherwise
            kept units keep their deterministic value, at least ``KEPT_FLOOR``, which
            compaction folds into the weights. multiple: the final mask keeps a multiple
            of this many units (or all ``n``): widths a device's kernels like.
    forward: () -> mask (n,): a sample in training, :meth:`final_mask` in eval.
    """

    def __init__(self, n: int, binary: bool = False, multiple: int = 1):
        super().__init__()
        if multiple < 1:
            raise ValueError(f"multiple: expected an integer >= 1, got {multiple}")
        self.n, self.binary, self.multiple = n, binary, multiple
        self.peers: RoundingGroup | None = None  # gates rounded together with this one
        # lowers every log-alpha by this much when the final count is taken (not the
        # mask values): how a model whose final masks land over its budget is brought
        # back to it (asrprune.pruning.l0.hold_target)
        self.count_shift = 0.0
        # a gate whose units exist only where this other gate keeps them (a block's hidden
        # gate within the encoder's): counted and chosen among those units. Kept out of
        # nn.Module's registry (set by restrict_to), so the other gate is not a submodule.
        self.__dict__["within"] = None
        self.log_alpha = nn.Parameter(torch.empty(n))
        with torch.no_grad():
            self.log_alpha.normal_(math.log(INIT_KEEP / (1 - INIT_KEEP)), 0.01)

    def extra_repr(self) -> str:
        return f"n={self.n}, binary={self.binary}, multiple={self.multiple}"

    def restrict_to(self, other: HardConcrete | None) -> None:
        """Count and choose this gate's units among those ``other`` keeps (None: all)."""
        self.__dict__["within"] = other

    def probs(self, shift: float = 0.0) -> torch.Tensor:
        """P(unit is non-zero) per unit, every log-alpha lowered by ``shift``: (n,); its
        sum is the expected L0 norm."""
        return torch.sigmoid(self.log_alpha - shift - TEMPERATURE * math.log(-LEFT / RIGHT))

    def l0_norm(self, shift: float = 0.0) -> torch.Tensor:
        """Expected number of units kept (a differentiable scalar); within another gate,
        of units both keep. ``shift``: as :meth:`probs`, for both gates."""
        probs = self.probs(shift)
        if self.within is not None:
            probs = probs * self.within.probs(shift)
        return probs.sum()

    def final_l0_norm(self) -> float:
        """The expected count the final mask rounds: with the ``count_shift``."""
        with torch.no_grad():
            return float(self.l0_norm(self.count_shift))

    def sample(self) -> torch.Tensor:
        u = torch.rand_like(self.log_alpha).clamp(1e-6, 1 - 1e-6)
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + self.log_alpha) / TEMPERATURE)
        return (s * (RIGHT - LEFT) + LEFT).clamp(0.0, 1.0)  # (n,)

    def kept_units(self) -> int:
        """How many units the final mask keeps: the expected L0 norm rounded to a
        multiple of ``multiple`` (at most ``n``), or, in a :class:`RoundingGroup`, this
        gate's share of the group's rounded total."""
        if self.peers is not None:
            return self.peers.kept_units(self)
        q = self.multiple
        return min(q * round(self.final_l0_norm() / q), self.n)

    def final_mask(self) -> torch.Tensor:
        """The deterministic mask: keep :meth:`kept_units` units, highest value first.

        Kept units take the gate's noise-free value, floored at ``KEPT_FLOOR`` (1 if
        ``binary``), the others 0. The value rises with log-alpha, so the units of highest
        log-alpha are those of highest value (and among those the clamp makes 1, the most
        confident). This is the one rule by which masks become final: in eval, at
        compaction, in the saved masks.
        """
        k = self.kept_units()
        mask = torch.zeros_like(self.log_alpha)
        scores = self.log_alpha.detach()
        if self.within is not None:  # chosen among the units the other gate keeps
            allowed = self.within.final_mask() > 0
            scores = scores.masked_fill(~allowed, -math.inf)
            k = min(k, int(allowed.sum()))
        if k > 0:
            kept = torch.topk(scores, k).indices
            if self.binary:
                mask[kept] = 1.0
            else:
                value = torch.sigmoid(self.log_alpha.detach()) * (RIGHT - LEFT) + LEFT
                mask[kept] = value[kept].clamp(min=KEPT_FLOOR, max=1.0)
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


class RoundingGroup:
    """Gates of one kind across the model (every head gate, every convolution-module
    gate, ...) whose final unit counts are rounded together: the group keeps
    round(sum of expected L0 norms) units, shared out by largest remainder, so each gate
    keeps the floor or the ceiling of its expectation. With a ``multiple`` q > 1 (the
    same for every gate of the group) the same is done in blocks of q units: each gate
    keeps a multiple of q (at most its n), the group's total within q / 2 of its
    expectation.

    Why: rounding each gate alone lets the errors add up. Units such as a head or a whole
    module are a large share of the budget, and three heads rounded down (2.23, 1.32 and
    1.36 expected) put a 20% FLOPs target 1.2 points over, although the Lagrangian held
    the expected size on target.
    """

    def __init__(self, gates: list[HardConcrete]):
        self.gates = list(gates)
        if len({g.multiple for g in self.gates}) > 1:
            raise ValueError("the gates of a rounding group must share their multiple")
        for gate in self.gates:
            gate.peers = self

    def kept_units(self, gate: HardConcrete) -> int:
        q = self.gates[0].multiple
        blocks = [g.final_l0_norm() / q for g in self.gates]
        counts = largest_remainder(blocks, round(sum(blocks)))
        i = next(i for i, g in enumerate(self.gates) if g is gate)
        return min(q * counts[i], gate.n)
