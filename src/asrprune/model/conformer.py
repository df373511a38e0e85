"""Conformer encoder, bottom-up: positions, attention, feed-forward, convolution, block, encoder.

Every prunable unit is addressable: an attention head is a slice of separate q, k, v and
output projections (with its own rows of ``linear_pos`` and its own ``pos_bias_u/v``), an
FFN channel is a row/column pair, the convolution module is one submodule, and a block
reads and writes only its ``hidden`` subset of the residual stream. Every module owns its
pre-LayerNorm, so removing a module removes its norm too. Module sizes come from an
``EncoderStructure``; a module of size 0 is absent (``None``), never zero-sized.

Padding: a batch carries a ``valid`` mask (B, T), True on real frames. Keys at padded
frames get no attention weight and padded frames are zeroed before the depthwise
convolution, so real frames come out the same as for the utterance alone.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from asrprune.errors import AsrpruneError
from asrprune.model.structure import BlockStructure, EncoderStructure, ModelConfig


def _layer_norm_params(d: int) -> int:
    return 2 * d


# -----------------------------------------------------------------------------
# relative positions


def relative_positions(length: int, dim: int, device=None, dtype=None) -> torch.Tensor:
    """Sinusoidal embeddings of relative positions ``length-1 .. -(length-1)``: (2T-1, dim).

    Transformer-XL / ESPnet "rel_pos" order: row c is relative position (T - 1 - c).
    Recomputed per batch (cheap) so any length works, and in fp32 for precision.
    """
    pos = torch.arange(length - 1, -length, -1, device=device, dtype=torch.float32)  # (2T-1,)
    half = (dim + 1) // 2
    inv_freq = torch.exp(
        torch.arange(half, device=device, dtype=torch.float32) * (-2.0 * math.log(10000.0) / dim)
    )  # (half,)
    angles = pos[:, None] * inv_freq[None, :]  # (2T-1, half)
    emb = torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(1)[:, :dim]  # (2T-1, dim)
    return emb if dtype is None else emb.to(dtype)


def _rel_shift(x: torch.Tensor) -> torch.Tensor:
    """(B, H, T, 2T-1) scores against relative positions -> (B, H, T, T) against keys.

    Column c of ``x`` is relative position T-1-c; the output at (i, j) is the score for
    relative position i - j, i.e. column T-1-i+j. One zero column on the left and a
    re-view of the same memory shift row i left by T-1-i without a gather.
    """
    B, H, T, P = x.shape
    x = F.pad(x, (1, 0))  # (B, H, T, 2T)
    x = x.view(B, H, P + 1, T)  # (B, H, 2T, T)
    x = x[:, :, 1:].reshape(B, H, T, P)  # (B, H, T, 2T-1)
    return x[..., :T]  # (B, H, T, T)


# -----------------------------------------------------------------------------
# modules


class RelPositionMultiHeadAttention(nn.Module):
    """Pre-norm multi-head self-attention with relative positions (Transformer-XL).

    Separate q, k, v projections (heads*head_dim, d) and output (d, heads*head_dim), so head
    j is rows/columns [j*head_dim, (j+1)*head_dim) of each, of ``linear_pos`` and row j of
    ``pos_bias_u`` / ``pos_bias_v`` (heads, head_dim).

    Args:
        d: input/output width. heads: number of heads (> 0). head_dim: width per head.
        pos_dim: width of the sinusoidal position embeddings. dropout: on attention
            weights and the output.
    forward: x (B, T, d), pos_emb (2T-1, pos_dim), valid (B, T) bool -> (B, T, d).
    """

    def __init__(self, d: int, heads: int, head_dim: int, pos_dim: int, dropout: float = 0.0):
        super().__init__()
        self.heads, self.head_dim, self.dropout = heads, head_dim, dropout
        inner = heads * head_dim
        self.norm = nn.LayerNorm(d)
        self.q = nn.Linear(d, inner)
        self.k = nn.Linear(d, inner)
        self.v = nn.Linear(d, inner)
        self.out = nn.Linear(inner, d)
        self.linear_pos = nn.Linear(pos_dim, inner, bias=False)
        self.pos_bias_u = nn.Parameter(torch.empty(heads, head_dim))
        self.pos_bias_v = nn.Parameter(torch.empty(heads, head_dim))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)
        self.out_dropout = nn.Dropout(dropout)

    @staticmethod
    def count_params(d: int, heads: int, head_dim: int, pos_dim: int) -> int:
        inner = heads * head_dim
        if inner == 0:
            return 0
        qkv = 3 * (d * inner + inner)
        return _layer_norm_params(d) + qkv + inner * d + d + pos_dim * inner + 2 * inner

    def forward(self, x: torch.Tensor, pos_emb: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        H, dk = self.heads, self.head_dim
        x = self.norm(x)
        q = self.q(x).view(B, T, H, dk).transpose(1, 2)  # (B, H, T, dk)
        k = self.k(x).view(B, T, H, dk).transpose(1, 2)  # (B, H, T, dk)
        v = self.v(x).view(B, T, H, dk).transpose(1, 2)  # (B, H, T, dk)
        p = self.linear_pos(pos_emb.to(x.dtype)).view(-1, H, dk).transpose(0, 1)  # (H, 2T-1, dk)
        # position term: query (+ its content-free position bias v) against relative positions
        q_v = q + self.pos_bias_v[:, None, :].to(q.dtype)  # (B, H, T, dk)
        bd = _rel_shift(q_v @ p.transpose(-2, -1))  # (B, H, T, T)
        # SDPA adds a float mask to the scaled scores, so the position term rides in it
        bias = (bd.to(q.dtype) / math.sqrt(dk)).masked_fill(~valid[:, None, None, :], float("-inf"))
        q_u = q + self.pos_bias_u[:, None, :].to(q.dtype)  # (B, H, T, dk), autocast-safe
        y = F.scaled_dot_product_attention(
            q_u, k, v, attn_mask=bias, dropout_p=self.dropout if self.training else 0.0
        )  # (B, H, T, dk)
        y = y.transpose(1, 2).reshape(B, T, H * dk)  # (B, T, H*dk)
        return self.out_dropout(self.out(y))


class FeedForward(nn.Module):
    """Pre-norm feed-forward module: LayerNorm, Linear d->f, Swish, dropout, Linear f->d, dropout.

    The half-step residual (x + 0.5 * ffn(x)) is applied by the block.
    forward: x (B, T, d) -> (B, T, d).
    """

    def __init__(self, d: int, ffn: int, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.up = nn.Linear(d, ffn)
        self.down = nn.Linear(ffn, d)
        self.dropout = nn.Dropout(dropout)

    @staticmethod
    def count_params(d: int, ffn: int) -> int:
        if ffn == 0:
            return 0
        return _layer_norm_params(d) + d * ffn + ffn + ffn * d + d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(F.silu(self.up(self.norm(x))))  # (B, T, f)
        return self.dropout(self.down(h))


class ConvModule(nn.Module):
    """Pre-norm Conformer convolution module.

    LayerNorm, pointwise d->2d, GLU, depthwise conv (kernel k), LayerNorm over channels,
    Swish, pointwise d->d, dropout. The pointwise convolutions are Linear layers on
    (B, T, d) (the same parameters as kernel-1 Conv1d), so only the depthwise convolution
    needs channels first. A per-frame LayerNorm stands where the paper has BatchNorm: it
    has no batch statistics, so padding cannot leak into real frames in training, train and
    eval behave alike, and a pruned model needs no statistics re-estimated.
    forward: x (B, T, d), valid (B, T) bool -> (B, T, d).
    """

    def __init__(self, d: int, kernel: int, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.pointwise1 = nn.Linear(d, 2 * d)
        self.depthwise = nn.Conv1d(d, d, kernel, padding=kernel // 2, groups=d)
        self.conv_norm = nn.LayerNorm(d)
        self.pointwise2 = nn.Linear(d, d)
        self.dropout = nn.Dropout(dropout)

    @staticmethod
    def count_params(d: int, kernel: int) -> int:
        pw1 = d * 2 * d + 2 * d
        dw = d * kernel + d
        pw2 = d * d + d
        return _layer_norm_params(d) + pw1 + dw + _layer_norm_params(d) + pw2

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        h = F.glu(self.pointwise1(self.norm(x)), dim=-1)  # (B, T, d)
        # zero padded frames so the depthwise kernel sees what the utterance alone would
        h = h.masked_fill(~valid[..., None], 0.0)
        h = self.depthwise(h.transpose(1, 2)).transpose(1, 2)  # (B, T, d)
        h = self.pointwise2(F.silu(self.conv_norm(h)))  # (B, T, d)
        return self.dropout(h)


# -----------------------------------------------------------------------------
# block


class ConformerBlock(nn.Module):
    """x + 0.5 FFN1, + MHSA, + Conv, + 0.5 FFN2, then LayerNorm, on the block's hidden subset.

    With ``structure.hidden`` set the block gathers those dimensions of the residual stream,
    runs every module and the final norm at that width and scatters the result back; the
    other dimensions pass through untouched. With ``hidden=None`` there is no gather.

    Args:
        structure: the block's sizes. d_model: residual stream width. config: for head
            width, kernel, dropout and position embedding width.
    forward: x (B, T, d_model), pos_emb (2T-1, config.d_model), valid (B, T) bool
        -> (B, T, d_model).
    """

    def __init__(self, structure: BlockStructure, d_model: int, config: ModelConfig):
        super().__init__()
        s = self.structure = structure
        d = self.width = structure.width(d_model)
        p = config.dropout
        if s.hidden is None:
            self.hidden = None
        else:
            # a buffer so it follows .to(device); not persistent: the structure rebuilds it
            self.register_buffer("hidden", torch.tensor(s.hidden, dtype=torch.long), False)
        self.ffn1 = FeedForward(d, s.ffn1, p) if s.ffn1 else None
        self.mhsa = (
            RelPositionMultiHeadAttention(d, s.heads, config.head_dim, config.d_model, p)
            if s.heads
            else None
        )
        self.conv = ConvModule(d, config.conv_kernel, p) if s.conv else None
        self.ffn2 = FeedForward(d, s.ffn2, p) if s.ffn2 else None
        self.norm = nn.LayerNorm(d) if d else None  # width 0: the block is the identity

    @staticmethod
    def count_params(structure: BlockStructure, d_model: int, config: ModelConfig) -> int:
        s, d = structure, structure.width(d_model)
        if d == 0:
            return 0
        return (
            FeedForward.count_params(d, s.ffn1)
            + RelPositionMultiHeadAttention.count_params(
                d, s.heads, config.head_dim, config.d_model
            )
            + (ConvModule.count_params(d, config.conv_kernel) if s.conv else 0)
            + FeedForward.count_params(d, s.ffn2)
            + _layer_norm_params(d)
        )

    def forward(self, x: torch.Tensor, pos_emb: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        if self.norm is None:
            return x
        h = x if self.hidden is None else x.index_select(-1, self.hidden)  # (B, T, d_i)
        if self.ffn1 is not None:
            h = h + 0.5 * self.ffn1(h)
        if self.mhsa is not None:
            h = h + self.mhsa(h, pos_emb, valid)
        if self.conv is not None:
            h = h + self.conv(h, valid)
        if self.ffn2 is not None:
            h = h + 0.5 * self.ffn2(h)
        h = self.norm(h)  # (B, T, d_i)
        if self.hidden is None:
            return h
        return x.index_copy(-1, self.hidden, h)  # (B, T, d_model), out of place for autograd


# -----------------------------------------------------------------------------
# subsampling and encoder


class Conv2dSubsampling(nn.Module):
    """x4 time subsampling: two 3x3 conv2d with stride 2 and ReLU, then Linear to ``d_out``.

    Output length ``((T - 1) // 2 - 1) // 2``; an output frame depends only on input frames
    inside its utterance, so padding does not leak in.
    forward: feats (B, T, input_dim), lengths (B,) -> (B, T', d_out), lengths (B,).
    """

    def __init__(self, input_dim: int, channels: int, d_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, stride=2)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=2)
        self.freq_out = self.output_length(input_dim)
        self.proj = nn.Linear(channels * self.freq_out, d_out)

    @staticmethod
    def output_length(length):
        """Exact output length of the two stride-2, kernel-3 convolutions (int or tensor)."""
        return ((length - 1) // 2 - 1) // 2

    @staticmethod
    def count_params(input_dim: int, channels: int, d_out: int) -> int:
        freq = Conv2dSubsampling.output_length(input_dim)
        conv1 = 9 * channels + channels
        conv2 = 9 * channels * channels + channels
        return conv1 + conv2 + channels * freq * d_out + d_out

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor):
        x = F.relu(self.conv1(feats[:, None]))  # (B, C, T1, F1)
        x = F.relu(self.conv2(x))  # (B, C, T', F')
        B, C, T, Fq = x.shape
        x = self.proj(x.transpose(1, 2).reshape(B, T, C * Fq))  # (B, T', d_out)
        return x, self.output_length(lengths)


class EncoderOutput(NamedTuple):
    output: torch.Tensor  # (B, T', d_model)
    lengths: torch.Tensor  # (B,) long
    hidden: list[torch.Tensor] | None  # every block's output (B, T', d_model), if asked


class ConformerEncoder(nn.Module):
    """Conv2d subsampling, dropout, then Conformer blocks sized by ``structure``.

    Args:
        config: hyperparameters. structure: pruned sizes (default: the full structure).
    forward: feats (B, T, input_dim), feat_lens (B,), return_hidden -> EncoderOutput with
        output (B, T', structure.d_model), lengths (B,) and, if asked, the output of every
        block (a list of num_blocks tensors (B, T', d_model)). Frames at or past an
        utterance's length hold unspecified values.
    """

    def __init__(self, config: ModelConfig, structure: EncoderStructure | None = None):
        super().__init__()
        structure = EncoderStructure.full(config) if structure is None else structure
        self.config, self.structure = config, structure
        self.subsampling = Conv2dSubsampling(
            config.input_dim, config.subsampling_channels, structure.d_model
        )
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            ConformerBlock(b, structure.d_model, config) for b in structure.blocks
        )

    @staticmethod
    def count_params(config: ModelConfig, structure: EncoderStructure | None = None) -> int:
        """Parameters of an encoder of this structure, without building it."""
        structure = EncoderStructure.full(config) if structure is None else structure
        sub = Conv2dSubsampling.count_params(
            config.input_dim, config.subsampling_channels, structure.d_model
        )
        return sub + sum(
            ConformerBlock.count_params(b, structure.d_model, config) for b in structure.blocks
        )

    def forward(
        self, feats: torch.Tensor, feat_lens: torch.Tensor, return_hidden: bool = False
    ) -> EncoderOutput:
        shortest = int(feat_lens.min())
        if shortest < 7:
            raise AsrpruneError(
                f"an utterance of {shortest} frames is too short for the x4 subsampling "
                "(at least 7 frames, 70 ms, are needed)"
            )
        x, lengths = self.subsampling(feats, feat_lens)  # (B, T', d), (B,)
        x = self.dropout(x)
        T = x.size(1)
        valid = torch.arange(T, device=x.device)[None, :] < lengths[:, None]  # (B, T')
        pos_emb = relative_positions(T, self.config.d_model, x.device)  # (2T'-1, d_pos)
        hidden = [] if return_hidden else None
        for block in self.blocks:
            x = block(x, pos_emb, valid)
            if hidden is not None:
                hidden.append(x)
        return EncoderOutput(x, lengths, hidden)
