"""Conformer encoder, bottom-up: positions, attention, feed-forward, convolution, block, encoder.

Every prunable unit is addressable: an attention head is a slice of separate q, k, v and
output projections (with its own rows of ``linear_pos`` and its own ``pos_bias_u/v``), an
FFN channel is a row/column pair, the convolution module is one submodule, and a block
reads and writes only its ``hidden`` subset of the residual stream. Every module owns its
pre-LayerNorm, so removing a module removes its norm too. Module sizes come from an
``EncoderStructure``; a module of size 0 is absent (``None``), never zero-sized.

Gates: for structured pruning each prunable unit type owns a hard-concrete gate, created
by ``add_gate`` and absent otherwise (a model without gates runs exactly as before):
attention heads, FFN channels, the whole convolution module, and hidden dimensions of the
residual stream (globally in the encoder, per block in each block). A hidden mask ``m``
(d,) makes a module read its input through a LayerNorm whose statistics cover only the kept
dimensions and write only kept dimensions, so a binary mask gives exactly what the
compacted model (``load_pruned``) computes. Sizes and FLOPs are counted by one set of
formulas that take integers (exact counts of a structure) or tensors (expected sizes from
the gates, for a differentiable budget).

Padding: a batch carries a ``valid`` mask (B, T), True on real frames. Keys at padded
frames get no attention weight and padded frames are zeroed before the depthwise
convolution, so real frames come out the same as for the utterance alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from asrprune.errors import AsrpruneError
from asrprune.model.hardconcrete import HardConcrete, RoundingGroup
from asrprune.model.latency import LatencyModel
from asrprune.model.structure import SUBSAMPLING, BlockStructure, EncoderStructure, ModelConfig

Size = int | float | torch.Tensor  # a unit count: exact (int) or expected (tensor)


def _present(n: Size) -> Size:
    """1 if a module of size ``n`` exists, else 0; for expected sizes min(n, 1)."""
    return n.clamp(max=1.0) if isinstance(n, torch.Tensor) else min(n, 1)


def _layer_norm_params(d: Size) -> Size:
    return 2 * d


def _norm(norm: nn.LayerNorm, x: torch.Tensor, m: torch.Tensor | None) -> torch.Tensor:
    """LayerNorm over the dimensions a hidden mask ``m`` (d,) keeps, output masked by ``m``.

    Statistics are weighted by ``m``, so for a 0/1 mask they are those of the kept
    dimensions alone, as in the compacted model; pruned dimensions come out 0.
    """
    if m is None:
        return norm(x)
    w = m / m.sum().clamp(min=1e-6)  # (d,)
    mean = (x * w).sum(-1, keepdim=True)  # (B, T, 1)
    var = ((x - mean).pow(2) * w).sum(-1, keepdim=True)  # (B, T, 1)
    y = (x - mean) * torch.rsqrt(var + norm.eps)
    return (y * norm.weight + norm.bias) * m


def _unless_all_pruned(y: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
    """``y``, or 0 when the mask ``z`` drops every unit: the module is then absent from the
    compact model, output bias included. A multiply, not a branch: no device sync."""
    return y if z is None else y * (z.sum() > 0).to(y.dtype)


def _kept(gate: HardConcrete | None, n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (k,) and values (k,) of the units a gate's final mask keeps (all, if no gate)."""
    if gate is None:
        return torch.arange(n, device=device), torch.ones(n, device=device)
    mask = gate.final_mask()
    idx = torch.nonzero(mask).flatten()
    return idx, mask[idx]


# Weight magnitudes of units: (sum of |w| (n,), number of weights (n,)) per unit.
Magnitude = tuple[torch.Tensor, torch.Tensor]


def _owned(t: torch.Tensor, dim: int, group: int = 1) -> Magnitude:
    """Magnitude of the slices of ``t`` along ``dim``, ``group`` consecutive slices a unit."""
    a = t.detach().abs().movedim(dim, 0).reshape(t.size(dim), -1)  # (slices, rest)
    sums = a.sum(1).view(-1, group).sum(1)  # (units,)
    return sums, torch.full_like(sums, float(a.size(1) * group))


def _add(*parts: Magnitude) -> Magnitude:
    """Magnitudes of the same units summed over the tensors they own."""
    return sum(p[0] for p in parts), sum(p[1] for p in parts)


def _gate_units(gate: HardConcrete | None, n: int) -> Size:
    """Expected units kept under ``gate``; ``n`` without one."""
    return n if gate is None else gate.l0_norm()


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
    ``pos_bias_u`` / ``pos_bias_v`` (heads, head_dim). The head gate scales each head's
    output before the output projection.

    Args:
        d: input/output width. heads: number of heads (> 0). head_dim: width per head.
        pos_dim: width of the sinusoidal position embeddings. dropout: on attention
            weights and the output.
    forward: x (B, T, d), pos_emb (2T-1, pos_dim), valid (B, T) bool, m (d,) hidden mask
        or None -> (B, T, d).
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
        self.gate: HardConcrete | None = None

    def add_gate(self, width_multiple: int = 1) -> None:
        """Head gates; kept heads' total width (heads x head_dim) a multiple of
        ``width_multiple``."""
        self.gate = HardConcrete(
            self.heads, multiple=width_multiple // math.gcd(width_multiple, self.head_dim)
        )

    def expected_heads(self) -> Size:
        return _gate_units(self.gate, self.heads)

    def unit_magnitudes(self) -> Magnitude:
        """Per head: its q, k, v and position rows, output columns and position biases."""
        dk = self.head_dim
        return _add(
            *(_owned(getattr(self, n).weight, 0, dk) for n in ("q", "k", "v", "linear_pos")),
            *(_owned(getattr(self, n).bias, 0, dk) for n in ("q", "k", "v")),
            _owned(self.out.weight, 1, dk),
            _owned(self.pos_bias_u, 0),
            _owned(self.pos_bias_v, 0),
        )

    def output_magnitudes(self) -> Magnitude:
        """Per head: the output columns through which it writes (what PARP zeroes)."""
        return _owned(self.out.weight, 1, self.head_dim)

    def hidden_magnitudes(self) -> Magnitude:
        """Per hidden dim: its norm entries, q, k, v input columns, output row and bias."""
        return _add(
            _owned(self.norm.weight, 0),
            _owned(self.norm.bias, 0),
            *(_owned(getattr(self, n).weight, 1) for n in ("q", "k", "v")),
            _owned(self.out.weight, 0),
            _owned(self.out.bias, 0),
        )

    @staticmethod
    def count_params(d: Size, heads: Size, head_dim: int, pos_dim: int) -> Size:
        inner = heads * head_dim
        qkv = 3 * (d * inner + inner)
        per_module = _layer_norm_params(d) + d  # norm and output bias
        return _present(heads) * per_module + qkv + inner * d + pos_dim * inner + 2 * inner

    @staticmethod
    def count_flops(d: Size, heads: Size, head_dim: int, pos_dim: int, T: int) -> Size:
        """Matmul FLOPs (2 per multiply-add) for one utterance of T frames."""
        inner = heads * head_dim
        projections = 2 * T * d * inner * 4  # q, k, v and output
        positions = 2 * (2 * T - 1) * pos_dim * inner + 2 * T * (2 * T - 1) * inner
        attention = 2 * 2 * T * T * inner  # scores and weighted values
        return projections + positions + attention

    def forward(
        self,
        x: torch.Tensor,
        pos_emb: torch.Tensor,
        valid: torch.Tensor,
        m: torch.Tensor | None = None,
    ) -> torch.Tensor:
        B, T, _ = x.shape
        H, dk = self.heads, self.head_dim
        x = _norm(self.norm, x, m)
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
        z = None if self.gate is None else self.gate().to(y.dtype)  # (H,)
        if z is not None:
            y = y * z[:, None, None]  # (B, H, T, dk)
        y = y.transpose(1, 2).reshape(B, T, H * dk)  # (B, T, H*dk)
        return self.out_dropout(_unless_all_pruned(self.out(y), z))

    @torch.no_grad()
    def load_pruned(self, src: RelPositionMultiHeadAttention, hidden: torch.Tensor) -> None:
        """Copy ``src``'s kept heads on the ``hidden`` dims, head mask values folded in."""
        heads, values = _kept(src.gate, src.heads, hidden.device)
        dk = src.head_dim
        rows = (heads[:, None] * dk + torch.arange(dk, device=hidden.device)).flatten()  # (k*dk,)
        scale = values.repeat_interleave(dk)  # (k*dk,)
        self.norm.weight.copy_(src.norm.weight[hidden])
        self.norm.bias.copy_(src.norm.bias[hidden])
        for name in ("q", "k", "v"):
            getattr(self, name).weight.copy_(getattr(src, name).weight[rows][:, hidden])
            getattr(self, name).bias.copy_(getattr(src, name).bias[rows])
        self.out.weight.copy_(src.out.weight[hidden][:, rows] * scale)
        self.out.bias.copy_(src.out.bias[hidden])
        self.linear_pos.weight.copy_(src.linear_pos.weight[rows])
        self.pos_bias_u.copy_(src.pos_bias_u[heads])
        self.pos_bias_v.copy_(src.pos_bias_v[heads])


class FeedForward(nn.Module):
    """Pre-norm feed-forward module: LayerNorm, Linear d->f, Swish, dropout, Linear f->d, dropout.

    The half-step residual (x + 0.5 * ffn(x)) is applied by the block. The channel gate
    scales the f intermediate channels; the module gate (one unit, coarse pruning) scales
    the whole module's output.
    forward: x (B, T, d), m (d,) hidden mask or None -> (B, T, d).
    """

    def __init__(self, d: int, ffn: int, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.up = nn.Linear(d, ffn)
        self.down = nn.Linear(ffn, d)
        self.dropout = nn.Dropout(dropout)
        self.gate: HardConcrete | None = None
        self.module_gate: HardConcrete | None = None

    def add_gate(self, width_multiple: int = 1) -> None:
        self.gate = HardConcrete(self.up.out_features, multiple=width_multiple)

    def add_module_gate(self) -> None:
        self.module_gate = HardConcrete(1)

    def expected_channels(self) -> Size:
        channels = _gate_units(self.gate, self.up.out_features)
        return channels * _gate_units(self.module_gate, 1)

    def kept_channels(self, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | float]:
        """Indices (k,) and mask values (k,) of the channels the final masks keep, and the
        module mask's value (none kept when it is 0)."""
        idx, values = _kept(self.gate, self.up.out_features, device)
        if self.module_gate is None:
            return idx, values, 1.0
        scale = self.module_gate.final_mask()[0]
        return (idx, values, scale) if scale > 0 else (idx[:0], values[:0], scale)

    def unit_magnitudes(self) -> Magnitude:
        """Per channel: its input row and bias, its output column."""
        return _add(_owned(self.up.weight, 0), _owned(self.up.bias, 0), _owned(self.down.weight, 1))

    def output_magnitudes(self) -> Magnitude:
        """Per channel: its output column (what PARP zeroes)."""
        return _owned(self.down.weight, 1)

    def hidden_magnitudes(self) -> Magnitude:
        """Per hidden dim: its norm entries, input column, output row and bias."""
        return _add(
            _owned(self.norm.weight, 0),
            _owned(self.norm.bias, 0),
            _owned(self.up.weight, 1),
            _owned(self.down.weight, 0),
            _owned(self.down.bias, 0),
        )

    @staticmethod
    def count_params(d: Size, ffn: Size) -> Size:
        return _present(ffn) * (_layer_norm_params(d) + d) + ffn * (2 * d + 1)

    @staticmethod
    def count_flops(d: Size, ffn: Size, T: int) -> Size:
        return 2 * T * d * ffn * 2

    def forward(self, x: torch.Tensor, m: torch.Tensor | None = None) -> torch.Tensor:
        h = F.silu(self.up(_norm(self.norm, x, m)))  # (B, T, f)
        z = None if self.gate is None else self.gate().to(h.dtype)  # (f,)
        if z is not None:
            h = h * z
        y = _unless_all_pruned(self.down(self.dropout(h)), z)  # (B, T, d)
        if self.module_gate is not None:
            y = y * self.module_gate().to(y.dtype)
        return self.dropout(y)

    @torch.no_grad()
    def load_pruned(self, src: FeedForward, hidden: torch.Tensor) -> None:
        """Copy ``src``'s kept channels on the ``hidden`` dims, mask values folded in."""
        idx, values, scale = src.kept_channels(hidden.device)
        self.norm.weight.copy_(src.norm.weight[hidden])
        self.norm.bias.copy_(src.norm.bias[hidden])
        self.up.weight.copy_(src.up.weight[idx][:, hidden])
        self.up.bias.copy_(src.up.bias[idx])
        self.down.weight.copy_(src.down.weight[hidden][:, idx] * values * scale)
        self.down.bias.copy_(src.down.bias[hidden] * scale)


def _depthwise(conv: nn.Conv1d, h: torch.Tensor) -> torch.Tensor:
    """``conv`` (depthwise, "same" padding) over time on h (B, T, c) -> (B, T, c).

    Run as a conv2d on the (B, c, 1, T) view of h: that view is already channels-last, so
    oneDNN convolves it in place, where Conv1d on the (B, c, T) transpose first reorders
    it. On one CPU thread this made the convolution about 3x faster (batch 1, 144
    channels, kernel 15) and its training step 2-3x faster; same weights, same result.
    Under CPU bf16 autocast it runs in fp32: oneDNN's bf16 depthwise path took minutes
    for some batch shapes on an AVX512-BF16 CPU, and the convolution is cheap in fp32.
    """
    if h.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return _depthwise(conv, h.float())
    y = F.conv2d(
        h.transpose(1, 2).unsqueeze(2),
        conv.weight.unsqueeze(2),
        conv.bias,
        padding=(0, conv.padding[0]),
        groups=conv.groups,
    )
    return y.squeeze(2).transpose(1, 2)


class ConvModule(nn.Module):
    """Pre-norm Conformer convolution module.

    LayerNorm, pointwise d->2c, GLU, depthwise conv (kernel k) over c channels, LayerNorm
    over channels, Swish, pointwise c->d, dropout. The c inner channels are not hidden
    dimensions (the first pointwise convolution mixes them), so pruning the block's hidden
    width d leaves c at the teacher's width. The pointwise convolutions are Linear layers
    on (B, T, d) (the same parameters as kernel-1 Conv1d), so only the depthwise convolution
    needs channels first. A per-frame LayerNorm stands where the paper has BatchNorm: it
    has no batch statistics, so padding cannot leak into real frames in training, train and
    eval behave alike, and a pruned model needs no statistics re-estimated. The gate (one
    unit) scales the whole module's output.
    forward: x (B, T, d), valid (B, T) bool, m (d,) hidden mask or None -> (B, T, d).
    """

    def __init__(self, d: int, channels: int, kernel: int, dropout: float = 0.0):
        super().__init__()
        c = channels
        self.norm = nn.LayerNorm(d)
        self.pointwise1 = nn.Linear(d, 2 * c)
        self.depthwise = nn.Conv1d(c, c, kernel, padding=kernel // 2, groups=c)
        self.conv_norm = nn.LayerNorm(c)
        self.pointwise2 = nn.Linear(c, d)
        self.dropout = nn.Dropout(dropout)
        self.gate: HardConcrete | None = None

    def add_gate(self) -> None:
        self.gate = HardConcrete(1)

    def expected_presence(self) -> Size:
        return _gate_units(self.gate, 1)

    def unit_magnitudes(self) -> Magnitude:
        """The module is one unit: every weight of it."""
        weights = [p for n, p in self.named_parameters() if not n.startswith("gate.")]
        total = sum(p.detach().abs().sum() for p in weights).reshape(1)
        return total, torch.full_like(total, float(sum(p.numel() for p in weights)))

    def output_magnitudes(self) -> Magnitude:
        """The module is one unit: its output projection, weight and bias (what PARP
        zeroes)."""
        out = self.pointwise2
        return _add(*(_owned(p.reshape(1, -1), 0) for p in (out.weight, out.bias)))

    def hidden_magnitudes(self) -> Magnitude:
        """Per hidden dim: its norm entries, pointwise input column, output row and bias."""
        return _add(
            _owned(self.norm.weight, 0),
            _owned(self.norm.bias, 0),
            _owned(self.pointwise1.weight, 1),
            _owned(self.pointwise2.weight, 0),
            _owned(self.pointwise2.bias, 0),
        )

    @staticmethod
    def count_params(d: Size, channels: int, kernel: int) -> Size:
        c = channels
        pw1 = d * 2 * c + 2 * c
        dw = c * kernel + c
        pw2 = c * d + d
        return _layer_norm_params(d) + pw1 + dw + _layer_norm_params(c) + pw2

    @staticmethod
    def count_flops(d: Size, channels: int, kernel: int, T: int) -> Size:
        c = channels
        return 2 * T * d * 2 * c + 2 * T * c * kernel + 2 * T * c * d

    def forward(
        self, x: torch.Tensor, valid: torch.Tensor, m: torch.Tensor | None = None
    ) -> torch.Tensor:
        h = F.glu(self.pointwise1(_norm(self.norm, x, m)), dim=-1)  # (B, T, c)
        # zero padded frames so the depthwise kernel sees what the utterance alone would
        h = h.masked_fill(~valid[..., None], 0.0)
        h = _depthwise(self.depthwise, h)  # (B, T, c)
        h = self.pointwise2(F.silu(self.conv_norm(h)))  # (B, T, d)
        if self.gate is not None:
            h = h * self.gate().to(h.dtype)
        return self.dropout(h)

    @torch.no_grad()
    def load_pruned(self, src: ConvModule, hidden: torch.Tensor) -> None:
        """Copy ``src`` on the ``hidden`` dims, the module's mask value folded in."""
        scale = 1.0 if src.gate is None else src.gate.final_mask()[0]
        self.norm.weight.copy_(src.norm.weight[hidden])
        self.norm.bias.copy_(src.norm.bias[hidden])
        self.pointwise1.weight.copy_(src.pointwise1.weight[:, hidden])
        self.pointwise1.bias.copy_(src.pointwise1.bias)
        self.depthwise.load_state_dict(src.depthwise.state_dict())
        self.conv_norm.load_state_dict(src.conv_norm.state_dict())
        self.pointwise2.weight.copy_(src.pointwise2.weight[hidden] * scale)
        self.pointwise2.bias.copy_(src.pointwise2.bias[hidden] * scale)


# -----------------------------------------------------------------------------
# block


class ConformerBlock(nn.Module):
    """x + 0.5 FFN1, + MHSA, + Conv, + 0.5 FFN2, then LayerNorm, on the block's hidden subset.

    With ``structure.hidden`` set the block gathers those dimensions of the residual stream,
    runs every module and the final norm at that width and scatters the result back; the
    other dimensions pass through untouched. With ``hidden=None`` there is no gather.
    With a hidden mask (the encoder's global one, times this block's own gate) the block
    runs at full width, reads through masked LayerNorms, writes only where the mask is
    non-zero and, where it is zero, passes the residual stream through: the masked twin of
    the gather and scatter.

    Args:
        structure: the block's sizes. d_model: residual stream width. config: for head
            width, kernel, dropout, position embedding and convolution widths.
    forward: x (B, T, d_model), pos_emb (2T-1, config.d_model), valid (B, T) bool,
        hidden_mask (d_model,) or None -> (B, T, d_model).
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
        self.conv = ConvModule(d, config.d_model, config.conv_kernel, p) if s.conv else None
        self.ffn2 = FeedForward(d, s.ffn2, p) if s.ffn2 else None
        self.norm = nn.LayerNorm(d) if d else None  # width 0: the block is the identity
        self.hidden_gate: HardConcrete | None = None

    def add_hidden_gate(self, width_multiple: int = 1) -> None:
        self.hidden_gate = HardConcrete(self.width, binary=True, multiple=width_multiple)

    @staticmethod
    def module_size_params(
        config: ModelConfig, width: Size, heads: Size, ffn1: Size, ffn2: Size, conv: Size
    ) -> dict[str, Size]:
        """Parameters of each module of a block of these sizes: ffn1, mhsa, conv, ffn2 and
        the block's final ``norm``. ``size_params`` is their sum, so a per-module view (the
        paper's Fig. 2a) can never disagree with the budget."""
        d, c = width, config
        present = _present(d)  # a block of width 0 has no modules
        mhsa = RelPositionMultiHeadAttention.count_params(d, heads, c.head_dim, c.d_model)
        return {
            "ffn1": present * FeedForward.count_params(d, ffn1),
            "mhsa": present * mhsa,
            "conv": present * conv * ConvModule.count_params(d, c.d_model, c.conv_kernel),
            "ffn2": present * FeedForward.count_params(d, ffn2),
            "norm": present * _layer_norm_params(d),
        }

    @staticmethod
    def size_params(
        config: ModelConfig, width: Size, heads: Size, ffn1: Size, ffn2: Size, conv: Size
    ) -> Size:
        """Parameters of a block of these (exact or expected) sizes."""
        parts = ConformerBlock.module_size_params(config, width, heads, ffn1, ffn2, conv)
        return sum(parts.values())

    @staticmethod
    def size_flops(
        config: ModelConfig, T: int, width: Size, heads: Size, ffn1: Size, ffn2: Size, conv: Size
    ) -> Size:
        """Matmul FLOPs of a block of these sizes for one utterance of T frames."""
        d = width
        total = (
            FeedForward.count_flops(d, ffn1, T)
            + RelPositionMultiHeadAttention.count_flops(
                d, heads, config.head_dim, config.d_model, T
            )
            + conv * ConvModule.count_flops(d, config.d_model, config.conv_kernel, T)
            + FeedForward.count_flops(d, ffn2, T)
        )
        return _present(d) * total

    @staticmethod
    def structure_sizes(structure: BlockStructure, d_model: int) -> tuple[int, ...]:
        s = structure
        return (s.width(d_model), s.heads, s.ffn1, s.ffn2, int(s.conv))

    @staticmethod
    def count_params(structure: BlockStructure, d_model: int, config: ModelConfig) -> int:
        sizes = ConformerBlock.structure_sizes(structure, d_model)
        return ConformerBlock.size_params(config, *sizes)

    @staticmethod
    def count_module_params(
        structure: BlockStructure, d_model: int, config: ModelConfig
    ) -> dict[str, int]:
        """Parameters per module (ffn1, mhsa, conv, ffn2, norm); they sum to ``count_params``."""
        sizes = ConformerBlock.structure_sizes(structure, d_model)
        return ConformerBlock.module_size_params(config, *sizes)

    def expected_sizes(self, global_probs: torch.Tensor | None) -> tuple[Size, ...]:
        """(width, heads, ffn1, ffn2, conv) expected under the gates (a gated full block)."""
        probs = None if self.hidden_gate is None else self.hidden_gate.probs()
        if global_probs is not None:
            probs = global_probs if probs is None else probs * global_probs
        width = self.width if probs is None else probs.sum()
        return (
            width,
            0 if self.mhsa is None else self.mhsa.expected_heads(),
            0 if self.ffn1 is None else self.ffn1.expected_channels(),
            0 if self.ffn2 is None else self.ffn2.expected_channels(),
            0 if self.conv is None else self.conv.expected_presence(),
        )

    def forward(
        self,
        x: torch.Tensor,
        pos_emb: torch.Tensor,
        valid: torch.Tensor,
        hidden_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.norm is None:
            return x
        m = hidden_mask
        if self.hidden_gate is not None:
            local = self.hidden_gate().to(x.dtype)
            m = local if m is None else m * local  # (d,)
        if m is not None and self.hidden is not None:
            raise AsrpruneError("hidden masks need a block that reads the whole residual stream")
        h = x if self.hidden is None else self._gather(x)  # (B, T, d_i)
        if self.ffn1 is not None:
            h = h + 0.5 * self._write(self.ffn1(h, m), m)
        if self.mhsa is not None:
            h = h + self._write(self.mhsa(h, pos_emb, valid, m), m)
        if self.conv is not None:
            h = h + self._write(self.conv(h, valid, m), m)
        if self.ffn2 is not None:
            h = h + 0.5 * self._write(self.ffn2(h, m), m)
        if m is not None:
            return _norm(self.norm, h, m) + (1 - m) * x  # kept dims renewed, others pass
        h = self.norm(h)  # (B, T, d_i)
        if self.hidden is None:
            return h
        return self._scatter(x, h)  # (B, T, d_model)

    # The hidden subset's gather and scatter: index ops on the last axis in PyTorch. In an
    # ONNX export, index ops on the middle axis of the transposed stream, which move whole
    # rows of frames: ONNX Runtime runs those 6.9x (gather) and 2.9x (scatter) faster than
    # its Gather and ScatterElements on the last axis, and 2.9x and 2.5x faster than
    # products with the one-hot matrix; PyTorch's last-axis index ops are about as fast
    # (scripts/bench_gather_scatter.py, 110 of 144 dimensions, 167 frames). The indices
    # come from the structure, so the trace holds them as constants.

    def _gather(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            index = torch.tensor(self.structure.hidden, device=x.device)
            return x.transpose(1, 2)[:, index].transpose(1, 2)
        return x.index_select(-1, self.hidden)

    def _scatter(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            # output dimension j is x's j, or h's k where j is the k-th kept dimension
            source = np.arange(x.size(-1))
            source[list(self.structure.hidden)] = x.size(-1) + np.arange(h.size(-1))
            source = torch.from_numpy(source).to(x.device)
            return torch.cat((x, h), dim=-1).transpose(1, 2)[:, source].transpose(1, 2)
        return x.index_copy(-1, self.hidden, h)  # out of place for autograd

    def modules_present(self) -> list[nn.Module]:
        return [m for m in (self.ffn1, self.mhsa, self.conv, self.ffn2) if m is not None]

    def hidden_magnitudes(self) -> Magnitude:
        """Per hidden dim of this block: what every module and the final norm keep of it."""
        return _add(
            *(m.hidden_magnitudes() for m in self.modules_present()),
            _owned(self.norm.weight, 0),
            _owned(self.norm.bias, 0),
        )

    @staticmethod
    def _write(y: torch.Tensor, m: torch.Tensor | None) -> torch.Tensor:
        return y if m is None else y * m

    @torch.no_grad()
    def load_pruned(self, src: ConformerBlock, hidden: torch.Tensor) -> None:
        """Copy ``src`` (a gated full block) restricted to ``hidden`` (its kept dims)."""
        for name in ("ffn1", "mhsa", "conv", "ffn2"):
            mine = getattr(self, name)
            if mine is not None:
                mine.load_pruned(getattr(src, name), hidden)
        if self.norm is not None:
            self.norm.weight.copy_(src.norm.weight[hidden])
            self.norm.bias.copy_(src.norm.bias[hidden])


# -----------------------------------------------------------------------------
# subsampling and encoder


class Conv2dSubsampling(nn.Module):
    """x4, x6 or x8 time subsampling: a 3x3 conv2d with stride 2, then a 3x3 with stride 2
    (x4, ESPnet's Conv2dSubsampling), a 5x5 with stride 3 (x6, its Conv2dSubsampling6) or
    a 7x7 with stride 4 (x8), each with ReLU, then Linear to ``d_out``.

    Output length ``((T - 1) // 2 - k) // s + 1`` for the second kernel k and stride s; an
    output frame depends only on input frames inside its utterance, so padding does not
    leak in. forward: feats (B, T, input_dim), lengths (B,) -> (B, T', d_out), lengths (B,).
    """

    def __init__(self, input_dim: int, channels: int, d_out: int, factor: int = 4):
        super().__init__()
        self.factor = factor
        kernel, stride = SUBSAMPLING[factor]
        self.conv1 = nn.Conv2d(1, channels, 3, stride=2)
        self.conv2 = nn.Conv2d(channels, channels, kernel, stride=stride)
        self.freq_out = self.output_length(input_dim, factor)
        self.proj = nn.Linear(channels * self.freq_out, d_out)

    @staticmethod
    def min_length(factor: int = 4) -> int:
        """Fewest input frames (or features) that give one output frame."""
        return 2 * SUBSAMPLING[factor][0] + 1

    @staticmethod
    def output_length(length, factor: int = 4):
        """Exact output length of the two convolutions (int or tensor)."""
        kernel, stride = SUBSAMPLING[factor]
        return ((length - 1) // 2 - kernel) // stride + 1

    @staticmethod
    def count_params(input_dim: int, channels: int, d_out: Size, factor: int = 4) -> Size:
        freq = Conv2dSubsampling.output_length(input_dim, factor)
        kernel = SUBSAMPLING[factor][0]
        conv1 = 9 * channels + channels
        conv2 = kernel * kernel * channels * channels + channels
        return conv1 + conv2 + channels * freq * d_out + d_out

    @staticmethod
    def count_flops(
        input_dim: int, channels: int, d_out: Size, frames: int, factor: int = 4
    ) -> Size:
        """Matmul and convolution FLOPs for one utterance of ``frames`` input frames."""
        kernel = SUBSAMPLING[factor][0]
        t1, f1 = (frames - 1) // 2, (input_dim - 1) // 2
        t2 = Conv2dSubsampling.output_length(frames, factor)
        f2 = Conv2dSubsampling.output_length(input_dim, factor)
        return (
            2 * channels * t1 * f1 * 9
            + 2 * channels * t2 * f2 * kernel * kernel * channels
            + (2 * t2 * channels * f2 * d_out)
        )

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor):
        x = F.relu(self.conv1(feats[:, None]))  # (B, C, T1, F1)
        if not torch.is_grad_enabled():
            # Inference only: channels-last input made the second convolution's oneDNN
            # path 2.4x faster at batch 1 on one CPU thread, but a bf16 training step
            # slower.
            x = x.contiguous(memory_format=torch.channels_last)
        x = F.relu(self.conv2(x))  # (B, C, T', F')
        B, C, T, Fq = x.shape
        x = self.proj(x.transpose(1, 2).reshape(B, T, C * Fq))  # (B, T', d_out)
        return x, self.output_length(lengths, self.factor)


class EncoderOutput(NamedTuple):
    output: torch.Tensor  # (B, T', d_model)
    lengths: torch.Tensor  # (B,) long
    hidden: list[torch.Tensor] | None  # every block's output (B, T', d_model), if asked


class ConformerEncoder(nn.Module):
    """Conv2d subsampling scaled by sqrt(d_model), dropout, then Conformer blocks.

    The scale (ESPnet's ``xscale``) and the shrunken initial branch outputs (see
    ``_scale_residual_branches``) both keep the input's time structure in the residual
    stream at initialisation. With neither, attention's near-uniform average over time
    outweighs the small subsampling output: measured on the embedded corpus, 95% of the
    first block's output variance was constant over time. The scale is a constant of the
    unpruned width, so pruning keeps it.

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
            config.input_dim, config.subsampling_channels, structure.d_model, config.subsampling
        )
        self.xscale = math.sqrt(config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            ConformerBlock(b, structure.d_model, config) for b in structure.blocks
        )
        self._scale_residual_branches(1.0 / math.sqrt(2 * config.num_blocks))

        self.hidden_gate: HardConcrete | None = None

    @torch.no_grad()
    def _scale_residual_branches(self, factor: float) -> None:
        """Shrink the initial output projections of every residual branch (as GPT-2 and
        nanoGPT do), so a deep encoder starts close to the identity on its input. With
        PyTorch's default init the branches' outputs swamp the input, attention's average
        over time dominates, and the CTC and RNN-T losses stay at their blank-only plateau
        for far longer (8 blocks: no escape in 1,500 steps on the embedded corpus)."""
        for block in self.blocks:
            for module in (block.ffn1, block.ffn2):
                if module is not None:
                    module.down.weight.mul_(factor)
            if block.mhsa is not None:
                block.mhsa.out.weight.mul_(factor)
            if block.conv is not None:
                block.conv.pointwise2.weight.mul_(factor)

    # -- sizes ------------------------------------------------------------------

    @staticmethod
    def count_params(config: ModelConfig, structure: EncoderStructure | None = None) -> int:
        """Parameters of an encoder of this structure, without building it."""
        structure = EncoderStructure.full(config) if structure is None else structure
        sub = Conv2dSubsampling.count_params(
            config.input_dim, config.subsampling_channels, structure.d_model, config.subsampling
        )
        return sub + sum(
            ConformerBlock.count_params(b, structure.d_model, config) for b in structure.blocks
        )

    @staticmethod
    def count_flops(
        config: ModelConfig, structure: EncoderStructure | None, frames: int
    ) -> dict[str, int]:
        """Matmul FLOPs for one utterance of ``frames`` input frames: the blocks
        (``prunable``) and the whole encoder (``encoder``), as ``torch.utils.flop_counter``
        counts them."""
        structure = EncoderStructure.full(config) if structure is None else structure
        T = Conv2dSubsampling.output_length(frames, config.subsampling)
        blocks = sum(
            ConformerBlock.size_flops(
                config, T, *ConformerBlock.structure_sizes(b, structure.d_model)
            )
            for b in structure.blocks
        )
        sub = Conv2dSubsampling.count_flops(
            config.input_dim,
            config.subsampling_channels,
            structure.d_model,
            frames,
            config.subsampling,
        )
        return {"prunable": blocks, "encoder": sub + blocks}

    @staticmethod
    def size_report(config: ModelConfig, structure: EncoderStructure, frames: int) -> dict:
        """Parameters and FLOPs (for ``frames`` input frames) of a structure, and the
        fractions it removes from the full one: ``sparsity`` over the blocks' parameters,
        ``flops_sparsity`` over the blocks' FLOPs."""
        full = EncoderStructure.full(config)

        def prunable(s: EncoderStructure) -> int:
            return sum(ConformerBlock.count_params(b, s.d_model, config) for b in s.blocks)

        flops, full_flops = (
            ConformerEncoder.count_flops(config, s, frames) for s in (structure, full)
        )
        return {
            "encoder_params": ConformerEncoder.count_params(config, structure),
            "prunable_params": prunable(structure),
            "sparsity": 1.0 - prunable(structure) / prunable(full),
            "encoder_flops": flops["encoder"],
            "prunable_flops": flops["prunable"],
            "flops_sparsity": 1.0 - flops["prunable"] / full_flops["prunable"],
            "flops_frames": frames,
        }

    # -- gates ------------------------------------------------------------------

    def add_gates(
        self,
        *,
        heads: bool,
        ffn: bool,
        conv: bool,
        hidden_global: bool,
        hidden_local: bool,
        ffn_module: bool = False,
        width_multiple: int = 1,
        hidden_multiple: int | None = None,
    ) -> None:
        """Give every unit of the chosen kinds a hard-concrete gate (a full encoder only).
        ``ffn`` gates FFN channels, ``ffn_module`` whole FFN modules. The gates of a kind
        round their final unit counts together (:class:`RoundingGroup`); every kept
        width (heads x head_dim, FFN channels, hidden dimensions) a multiple of
        ``width_multiple``, the hidden dimensions of ``hidden_multiple`` where given."""
        if self.structure != EncoderStructure.full(self.config):
            raise AsrpruneError("gates can only be added to an unpruned encoder")
        m = width_multiple
        h = width_multiple if hidden_multiple is None else hidden_multiple
        if hidden_global:
            self.hidden_gate = HardConcrete(self.structure.d_model, binary=True, multiple=h)
        for block in self.blocks:
            if heads:
                block.mhsa.add_gate(m)
            for module in (block.ffn1, block.ffn2):
                if ffn:
                    module.add_gate(m)
                if ffn_module:
                    module.add_module_gate()
            if conv:
                block.conv.add_gate()
            if hidden_local:
                block.add_hidden_gate(h)
                block.hidden_gate.restrict_to(self.hidden_gate)  # None: no global gate
        # each kind's final counts are rounded jointly over the blocks (RoundingGroup)
        kinds = [
            [b.mhsa.gate for b in self.blocks],
            [f.gate for b in self.blocks for f in (b.ffn1, b.ffn2)],
            [f.module_gate for b in self.blocks for f in (b.ffn1, b.ffn2)],
            [b.conv.gate for b in self.blocks],
            [b.hidden_gate for b in self.blocks],
        ]
        for gates in kinds:
            if gates and gates[0] is not None:
                RoundingGroup(gates)

    def gates(self) -> list[HardConcrete]:
        return [m for m in self.modules() if isinstance(m, HardConcrete)]

    @torch.no_grad()
    def gate_magnitudes(self, output_side: bool = False) -> list[tuple[HardConcrete, torch.Tensor]]:
        """Every gate (a full encoder's) with its units' scores for magnitude pruning: mean
        |w| over the weights each unit owns. A global hidden dimension owns its row of the
        subsampling projection and its weights in every block. ``output_side``: a head,
        FFN channel or convolution module is scored by the weights through which it writes
        alone (``output_magnitudes``), hidden dimensions as before."""
        blocks = [b.hidden_magnitudes() for b in self.blocks]
        scored = []
        if self.hidden_gate is not None:
            proj = self.subsampling.proj
            scored.append(
                (self.hidden_gate, _add(_owned(proj.weight, 0), _owned(proj.bias, 0), *blocks))
            )
        for block, hidden in zip(self.blocks, blocks, strict=True):
            if block.hidden_gate is not None:
                scored.append((block.hidden_gate, hidden))
            for module in block.modules_present():
                if module.gate is not None:
                    unit = module.output_magnitudes if output_side else module.unit_magnitudes
                    scored.append((module.gate, unit()))
        return [(gate, sums / counts) for gate, (sums, counts) in scored]

    def _global_probs(self) -> torch.Tensor | None:
        return None if self.hidden_gate is None else self.hidden_gate.probs()

    def expected_params(self) -> dict[str, Size]:
        """Expected parameters under the gates: blocks (``prunable``) and whole encoder."""
        probs = self._global_probs()
        d = self.structure.d_model if probs is None else probs.sum()
        blocks = sum(
            ConformerBlock.size_params(self.config, *b.expected_sizes(probs)) for b in self.blocks
        )
        c = self.config
        sub = Conv2dSubsampling.count_params(c.input_dim, c.subsampling_channels, d, c.subsampling)
        return {"prunable": blocks, "encoder": sub + blocks}

    def expected_flops(self, frames: int) -> dict[str, Size]:
        """Expected FLOPs under the gates for one utterance of ``frames`` input frames."""
        probs = self._global_probs()
        d = self.structure.d_model if probs is None else probs.sum()
        T = Conv2dSubsampling.output_length(frames, self.config.subsampling)
        blocks = sum(
            ConformerBlock.size_flops(self.config, T, *b.expected_sizes(probs)) for b in self.blocks
        )
        c = self.config
        sub = Conv2dSubsampling.count_flops(
            c.input_dim, c.subsampling_channels, d, frames, c.subsampling
        )
        return {"prunable": blocks, "encoder": sub + blocks}

    def expected_latency(self, latency: LatencyModel) -> torch.Tensor:
        """Expected seconds under the gates by the latency model (a table's utterances):
        the gates' expected sizes put into the model, as for parameters and FLOPs."""
        probs = self._global_probs()
        d = self.structure.d_model if probs is None else probs.sum()
        return latency.encoder(d, [b.expected_sizes(probs) for b in self.blocks])

    @staticmethod
    def count_latency(
        structure: EncoderStructure, latency: LatencyModel, low_rank: Sequence[dict] = ()
    ) -> float:
        """Seconds the latency model predicts for an encoder of this structure with these
        factored layers (:func:`asrprune.model.lowrank.low_rank_layers`)."""
        d = structure.d_model
        blocks = [ConformerBlock.structure_sizes(b, d) for b in structure.blocks]
        return float(latency.encoder(d, blocks, low_rank))

    @torch.no_grad()
    def final_structure(self) -> EncoderStructure:
        """The structure the gates' final masks leave: what compaction builds."""
        device = self.subsampling.proj.weight.device
        kept = _kept(self.hidden_gate, self.structure.d_model, device)[0]  # global, (d',)
        blocks = []
        for block in self.blocks:
            local = _kept(block.hidden_gate, block.width, device)[0]
            inside = torch.isin(kept, local)  # positions of the residual stream it keeps
            width = int(inside.sum())
            if width == 0:
                blocks.append(BlockStructure(0, 0, 0, False, ()))
                continue
            hidden = None if width == len(kept) else tuple(torch.nonzero(inside).flatten().tolist())
            s = block.structure  # the full sizes: gates are only added to a full encoder
            blocks.append(
                BlockStructure(
                    heads=len(_kept(block.mhsa.gate, s.heads, device)[0]),
                    ffn1=len(block.ffn1.kept_channels(device)[0]),
                    ffn2=len(block.ffn2.kept_channels(device)[0]),
                    conv=len(_kept(block.conv.gate, 1, device)[0]) > 0,
                    hidden=hidden,
                )
            )
        return EncoderStructure(d_model=len(kept), blocks=tuple(blocks))

    @torch.no_grad()
    def load_pruned(self, src: ConformerEncoder) -> torch.Tensor:
        """Fill this (compact) encoder from ``src`` (its gated full twin); return the kept
        global hidden dims of ``src`` (d',), which the joiner and CTC head read."""
        device = src.subsampling.proj.weight.device
        kept = _kept(src.hidden_gate, src.structure.d_model, device)[0]
        self.subsampling.conv1.load_state_dict(src.subsampling.conv1.state_dict())
        self.subsampling.conv2.load_state_dict(src.subsampling.conv2.state_dict())
        self.subsampling.proj.weight.copy_(src.subsampling.proj.weight[kept])
        self.subsampling.proj.bias.copy_(src.subsampling.proj.bias[kept])
        for mine, theirs in zip(self.blocks, src.blocks, strict=True):
            if mine.norm is None:
                continue
            local = _kept(theirs.hidden_gate, theirs.width, device)[0]
            mine.load_pruned(theirs, kept[torch.isin(kept, local)])
        return kept

    # -- forward ----------------------------------------------------------------

    def check_lengths(self, feat_lens: torch.Tensor) -> None:
        """Refuse an utterance too short to leave one frame after subsampling."""
        shortest, factor = int(feat_lens.min()), self.config.subsampling
        need = Conv2dSubsampling.min_length(factor)
        if shortest < need:
            raise AsrpruneError(
                f"an utterance of {shortest} frames is too short for the x{factor} subsampling "
                f"(at least {need} frames, {need * 10} ms, are needed)"
            )

    def forward(
        self, feats: torch.Tensor, feat_lens: torch.Tensor, return_hidden: bool = False
    ) -> EncoderOutput:
        if not torch.compiler.is_exporting():  # a graph for ONNX checks its input elsewhere
            self.check_lengths(feat_lens)
        x, lengths = self.subsampling(feats, feat_lens)  # (B, T', d), (B,)
        x = self.dropout(x * self.xscale)
        m = None
        if self.hidden_gate is not None:
            m = self.hidden_gate().to(x.dtype)  # (d,)
            x = x * m
        T = x.size(1)
        valid = torch.arange(T, device=x.device)[None, :] < lengths[:, None]  # (B, T')
        pos_emb = relative_positions(T, self.config.d_model, x.device)  # (2T'-1, d_pos)
        hidden = [] if return_hidden else None
        for block in self.blocks:
            x = block(x, pos_emb, valid, m)
            if hidden is not None:
                hidden.append(x)
        return EncoderOutput(x, lengths, hidden)
