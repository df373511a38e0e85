"""Low-rank linear layers: the SVD baseline's model.

A Linear layer W (out, in) of rank r becomes two: A (r, in) then B (out, r) with the bias,
from the truncated SVD W ~ U_r S_r V_r^T, split as B = U_r S_r^1/2 and A = S_r^1/2 V_r^T.
A model file lists its factored layers and their ranks (``ranks``), so ``load_model``
rebuilds them before loading the weights.
"""

from __future__ import annotations

import torch
from torch import nn


class LowRankLinear(nn.Module):
    """y = second(first(x)): a rank-``rank`` stand-in for ``nn.Linear(in, out, bias)``."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.first = nn.Linear(in_features, rank, bias=False)
        self.second = nn.Linear(rank, out_features, bias=bias)

    @classmethod
    @torch.no_grad()
    def from_linear(cls, linear: nn.Linear, rank: int) -> LowRankLinear:
        """The best rank-``rank`` approximation of ``linear`` (Eckart-Young)."""
        out = cls(linear.in_features, linear.out_features, rank, linear.bias is not None)
        out.to(linear.weight.device)
        U, S, Vh = torch.linalg.svd(linear.weight.float(), full_matrices=False)
        root = S[:rank].sqrt()
        out.first.weight.copy_(root[:, None] * Vh[:rank])
        out.second.weight.copy_(U[:, :rank] * root)
        if linear.bias is not None:
            out.second.bias.copy_(linear.bias)
        return out

    @staticmethod
    def saved_params(in_features: int, out_features: int, rank: int) -> int:
        """Weights a rank-``rank`` factorisation saves over the full matrix (may be < 0)."""
        return in_features * out_features - rank * (in_features + out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def factorize(model: nn.Module, ranks: dict[str, int], from_weights: bool = True) -> None:
    """Replace each Linear named in ``ranks`` by a LowRankLinear of that rank, in place:
    from its weights' SVD, or empty (``from_weights=False``) for a state dict to fill."""
    for name, rank in ranks.items():
        linear = model.get_submodule(name)
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"{name} is a {type(linear).__name__}, not a Linear layer")
        if from_weights:
            low = LowRankLinear.from_linear(linear, rank)
        else:
            low = LowRankLinear(
                linear.in_features, linear.out_features, rank, linear.bias is not None
            )
        _set(model, name, low)


def low_rank_ranks(model: nn.Module) -> dict[str, int]:
    """Every factored layer of ``model`` and its rank (what a model file records)."""
    return {n: m.rank for n, m in model.named_modules() if isinstance(m, LowRankLinear)}


def layer_rows(name: str) -> str:
    """The rows a block's Linear layer ``name`` runs on: "positions", the position
    projection's 2T-1 relative positions, or "frames", the T encoder frames."""
    return "positions" if name.endswith("linear_pos") else "frames"


def low_rank_layers(model: nn.Module) -> list[dict]:
    """Every factored layer of ``model``: ``name``, ``in``, ``out``, ``rank`` and the
    ``rows`` it runs on (:func:`layer_rows`), what a latency table's low-rank entries are
    looked up by."""
    return [
        {
            "name": name,
            "in": m.in_features,
            "out": m.out_features,
            "rank": m.rank,
            "rows": layer_rows(name),
        }
        for name, m in model.named_modules()
        if isinstance(m, LowRankLinear)
    ]


def low_rank_savings(blocks: nn.Module, frames: int) -> tuple[int, int]:
    """(parameters, FLOPs) the factored layers under ``blocks`` save, FLOPs for ``frames``
    encoder frames: the position projection runs on 2 frames - 1 relative positions."""
    params = flops = 0
    for name, m in blocks.named_modules():
        if isinstance(m, LowRankLinear):
            saved = LowRankLinear.saved_params(m.in_features, m.out_features, m.rank)
            rows = 2 * frames - 1 if layer_rows(name) == "positions" else frames
            params, flops = params + saved, flops + 2 * rows * saved
    return params, flops
