"""Tiny model and input builders shared by the model tests."""

from __future__ import annotations

import numpy as np
import torch

from asrprune.latency_table import linear_shapes, low_rank_grid
from asrprune.model import BlockStructure, EncoderStructure, ModelConfig, Transducer
from asrprune.model.latency import grid

VOCAB = 20


# The tiny architecture every test shares (tests that train a BPE take vocab_size from it).
TINY = dict(
    d_model=32,
    num_heads=2,
    num_blocks=2,
    ffn_dim=64,
    conv_kernel=5,
    subsampling_channels=8,
    dropout=0.0,
)


def tiny_config(**overrides) -> ModelConfig:
    values = dict(
        TINY,
        predictor_dim=24,
        joiner_dim=24,
        vocab_size=VOCAB,
    )
    return ModelConfig(**{**values, **overrides})


def pruned_structure() -> EncoderStructure:
    """Globally pruned to width 28; block 0 has no attention and a local hidden subset,
    block 1 has no convolution and narrower FFNs.
    """
    return EncoderStructure(
        d_model=28,
        blocks=(
            BlockStructure(heads=0, ffn1=40, ffn2=64, conv=True, hidden=(0, 2, 3, 7, 8, 20, 27)),
            BlockStructure(heads=1, ffn1=17, ffn2=0, conv=False, hidden=None),
        ),
    )


def tiny_model(seed: int = 0, structure: EncoderStructure | None = None, **overrides):
    torch.manual_seed(seed)
    return Transducer(tiny_config(**overrides), structure)


def tiny_batch(lengths=(100, 83, 41), num_tokens=(7, 5, 3), dim=80, seed=0):
    """Zero-padded random features and blank-padded random tokens, as ``collate`` makes them."""
    g = torch.Generator().manual_seed(seed)
    B, T, U = len(lengths), max(lengths), max(num_tokens)
    feats = torch.zeros(B, T, dim)
    tokens = torch.zeros(B, U, dtype=torch.long)
    for b, (n, u) in enumerate(zip(lengths, num_tokens, strict=True)):
        feats[b, :n] = torch.randn(n, dim, generator=g)
        tokens[b, :u] = torch.randint(1, VOCAB, (u,), generator=g)
    return feats, torch.tensor(lengths), tokens, torch.tensor(num_tokens)


def synthetic_table(config=None, noise: float = 0.0, seed: int = 0) -> dict:
    """A table shaped like the command's, its seconds a made-up cost of each part (FLOPs
    plus a constant per call), optionally with noise that breaks monotonicity."""
    c = config or tiny_config()
    rng = np.random.default_rng(seed)
    widths = grid(c.d_model, 4, least=8)
    ffn_units = [0, 1, *grid(c.ffn_dim, 4)]

    def cost(flops: float) -> float:
        return 1e-5 + flops * 1e-9 + noise * rng.uniform(-1, 1) * 1e-5

    def surface(units, flops) -> dict:
        rows = [[cost(flops(d, u)) if u else 0.0 for u in units] for d in widths]
        return {"units": list(units), "seconds": rows}

    return {
        "profile": {"device": "cpu", "backend": "torch", "threads": 1},
        "config": c.to_dict(),
        "width": widths,
        "ffn": surface(ffn_units, lambda d, f: 4 * d * f * 100),
        "mhsa": surface(range(c.num_heads + 1), lambda d, h: 8 * d * h * c.head_dim * 100),
        "conv": surface([0, 1], lambda d, u: 6 * d * c.d_model * 100),
        "rest": {"seconds": [cost(10 * d) for d in widths]},
        "gather": {"seconds": [cost(30 * d) for d in widths]},
        "front": {"seconds": [cost(1000 * d) for d in widths]},
        "encoder": {"overhead": 2e-5},
        "lowrank": [
            {
                "in": i,
                "out": o,
                "rows": rows,
                "dense": cost(i * o * 100),
                "ranks": low_rank_grid(i, o, 3),
                "seconds": [cost((i + o) * r * 100) for r in low_rank_grid(i, o, 3)],
            }
            for i, o, rows, _ in linear_shapes(c)
        ],
    }
