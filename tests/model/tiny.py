"""Tiny model and input builders shared by the model tests."""

from __future__ import annotations

import torch

from asrprune.model import BlockStructure, EncoderStructure, ModelConfig, Transducer

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
