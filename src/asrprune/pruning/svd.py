"""The SVD baseline: every Linear layer of the encoder blocks factored to a lower rank.

Ranks are a uniform fraction: each layer (out, in) keeps about the same fraction ``keep``
of its weights, rank floor(keep * in * out / (in + out)), and ``keep`` is bisected so the
blocks lose at least the target fraction of their parameters. Norms, biases, depthwise
convolutions and position biases are not factored, so ``keep`` ends below 1 - sparsity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from asrprune.errors import AsrpruneError
from asrprune.model import Transducer
from asrprune.model.lowrank import LowRankLinear, factorize


@dataclass(frozen=True)
class SvdChoice:
    keep: float  # the fraction of its weights each factored layer keeps
    ranks: dict[str, int]  # layer name (in the model) -> rank
    prunable_params: int  # what the blocks keep
    full_params: int  # what the full blocks have
    sparsity: float  # achieved fraction of the blocks' parameters removed


def block_linears(model: Transducer) -> dict[str, nn.Linear]:
    """Every Linear layer of the encoder blocks, by its name in ``model``."""
    return {
        f"encoder.blocks.{name}": m
        for name, m in model.encoder.blocks.named_modules()
        if isinstance(m, nn.Linear)
    }


def ranks_for(keep: float, layers: dict[str, nn.Linear]) -> dict[str, int]:
    """Rank of each layer when it keeps ``keep`` of its weights (at least rank 1)."""
    return {
        name: max(
            1, math.floor(keep * m.in_features * m.out_features / (m.in_features + m.out_features))
        )
        for name, m in layers.items()
    }


def svd_ranks(model: Transducer, sparsity: float, iterations: int = 50) -> SvdChoice:
    """The largest uniform ``keep`` whose ranks remove at least ``sparsity`` of the blocks'
    parameters (``model`` unchanged)."""
    if not 0 < sparsity < 1:
        raise AsrpruneError(f"sparsity: expected a number in (0, 1), got {sparsity!r}")
    layers = block_linears(model)
    full = sum(p.numel() for p in model.encoder.blocks.parameters())

    def kept(keep: float) -> int:
        ranks = ranks_for(keep, layers)
        saved = sum(
            LowRankLinear.saved_params(m.in_features, m.out_features, ranks[n])
            for n, m in layers.items()
        )
        return full - saved

    budget = (1.0 - sparsity) * full
    if kept(0.0) > budget:
        raise AsrpruneError(
            f"SVD cannot remove {sparsity:.0%} of the blocks' parameters: rank 1 everywhere "
            f"still keeps {kept(0.0) / full:.1%}"
        )
    lo, hi = 0.0, 1.0  # kept(lo) <= budget < kept(hi)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if kept(mid) <= budget else (lo, mid)
    params = kept(lo)
    return SvdChoice(lo, ranks_for(lo, layers), params, full, 1.0 - params / full)


def prune_svd(model: Transducer, sparsity: float) -> SvdChoice:
    """Factor every Linear layer of ``model``'s encoder blocks in place to meet ``sparsity``."""
    choice = svd_ranks(model, sparsity)
    factorize(model, choice.ranks)
    return choice
