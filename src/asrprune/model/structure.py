"""Model configuration and encoder structure: what a model file needs to rebuild its model.

``ModelConfig`` holds the architecture hyperparameters of the teacher (and of every model
pruned from it). ``EncoderStructure`` says what is left of each encoder block after
structured pruning; the full structure of a config is the unpruned teacher. A pruned model
is the same classes built from a smaller structure: no masks, no zero-sized tensors.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from asrprune.config import check_keys
from asrprune.errors import AsrpruneError

PREDICTORS = ("stateless", "lstm")
# Time subsampling factor -> (kernel, stride) of the front end's second conv2d; the first
# is always a 3x3 with stride 2. x4 and x6 are ESPnet's Conv2dSubsampling and
# Conv2dSubsampling6; x8 continues their kernel = 2 x stride - 1 pattern (80 ms frames, as
# FastConformer's) in two convolutions where ESPnet's Conv2dSubsampling8 uses three.
SUBSAMPLING = {4: (3, 2), 6: (5, 3), 8: (7, 4)}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# -----------------------------------------------------------------------------
# architecture hyperparameters


@dataclass(frozen=True)
class ModelConfig:
    """Conformer-Transducer hyperparameters (the unpruned teacher's sizes).

    ``head_dim`` defaults to ``d_model // num_heads`` and ``subsampling_channels`` to
    ``d_model``; both are resolved at construction, so ``to_dict`` always stores numbers and
    a pruned model (whose residual width is ``EncoderStructure.d_model``) keeps them.
    ``d_model`` is also the width of the sinusoidal relative position embeddings, which are
    an input to each attention module rather than part of the residual stream, so hidden
    pruning does not change them. The CTC loss weight belongs to training, not here.
    """

    input_dim: int = 80
    d_model: int = 144
    num_blocks: int = 12
    num_heads: int = 4
    head_dim: int | None = None
    ffn_dim: int = 576
    conv_kernel: int = 15
    dropout: float = 0.1
    subsampling: int = 4  # time subsampling factor of the conv2d front end: 4 or 6
    subsampling_channels: int | None = None
    predictor: str = "stateless"
    predictor_dim: int = 256
    predictor_context: int = 2  # tokens the stateless predictor sees
    predictor_layers: int = 1  # LSTM layers
    joiner_dim: int = 256
    vocab_size: int = 256  # includes the blank (id 0)
    ctc_head: bool = True

    def __post_init__(self):
        if self.head_dim is None and _is_int(self.d_model) and _is_int(self.num_heads):
            object.__setattr__(self, "head_dim", self.d_model // max(self.num_heads, 1))
        if self.subsampling_channels is None:
            object.__setattr__(self, "subsampling_channels", self.d_model)
        positive = (
            "input_dim",
            "d_model",
            "num_blocks",
            "num_heads",
            "head_dim",
            "ffn_dim",
            "conv_kernel",
            "subsampling_channels",
            "predictor_dim",
            "predictor_context",
            "predictor_layers",
            "joiner_dim",
        )
        for name in positive:
            v = getattr(self, name)
            if not _is_int(v) or v < 1:
                raise AsrpruneError(f"model.{name}: expected a positive integer, got {v!r}")
        if self.subsampling not in SUBSAMPLING:
            raise AsrpruneError(
                f"model.subsampling: expected one of {list(SUBSAMPLING)}, got {self.subsampling!r}"
            )
        need = 2 * SUBSAMPLING[self.subsampling][0] + 1  # one output row of both convs
        if self.input_dim < need:
            raise AsrpruneError(
                f"model.input_dim: the x{self.subsampling} subsampling needs at least {need} "
                f"features, got {self.input_dim}"
            )
        if self.conv_kernel % 2 == 0:
            # an odd kernel keeps the depthwise convolution centred ("same" padding)
            raise AsrpruneError(
                f"model.conv_kernel: expected an odd number, got {self.conv_kernel}"
            )
        if not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise AsrpruneError(f"model.dropout: expected a number in [0, 1), got {self.dropout!r}")
        if self.predictor not in PREDICTORS:
            raise AsrpruneError(
                f"model.predictor: expected one of {', '.join(PREDICTORS)}, got {self.predictor!r}"
            )
        if not _is_int(self.vocab_size) or self.vocab_size < 2:
            raise AsrpruneError(
                f"model.vocab_size: expected an integer >= 2 (blank + tokens), "
                f"got {self.vocab_size!r}"
            )
        if not isinstance(self.ctc_head, bool):
            raise AsrpruneError(f"model.ctc_head: expected true or false, got {self.ctc_head!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "model") -> ModelConfig:
        """Build from a mapping; unknown keys are refused, naming ``where``."""
        check_keys(cls, d, where)
        try:
            return cls(**d)
        except AsrpruneError as e:
            raise AsrpruneError(f"{where}: {e}") from None


# -----------------------------------------------------------------------------
# what is left of the encoder after pruning


@dataclass(frozen=True)
class BlockStructure:
    """Sizes of one Conformer block after pruning.

    heads: attention heads kept (0: no attention module); ffn1, ffn2: intermediate widths
    of the two feed-forward modules (0: module absent); conv: convolution module kept;
    hidden: sorted indices into the residual stream that this block's modules read and
    write (``None``: all of them; ``()``: none, the block is the identity and every module
    must then be absent).
    """

    heads: int
    ffn1: int
    ffn2: int
    conv: bool = True
    hidden: tuple[int, ...] | None = None

    def __post_init__(self):
        for name in ("heads", "ffn1", "ffn2"):
            v = getattr(self, name)
            if not _is_int(v) or v < 0:
                raise AsrpruneError(f"block {name}: expected an integer >= 0, got {v!r}")
        if not isinstance(self.conv, bool):
            raise AsrpruneError(f"block conv: expected true or false, got {self.conv!r}")
        if self.hidden is not None:
            hidden = tuple(self.hidden)
            if not all(_is_int(i) and i >= 0 for i in hidden):
                raise AsrpruneError(
                    f"block hidden: expected non-negative integer indices, got {hidden!r}"
                )
            if any(a >= b for a, b in pairwise(hidden)):
                raise AsrpruneError(f"block hidden: indices must be sorted and unique: {hidden}")
            object.__setattr__(self, "hidden", hidden)
            if not hidden and (self.heads or self.ffn1 or self.ffn2 or self.conv):
                raise AsrpruneError(
                    "block hidden: a block that reads no hidden dimension cannot keep modules "
                    f"(heads={self.heads}, ffn1={self.ffn1}, ffn2={self.ffn2}, conv={self.conv})"
                )

    def width(self, d_model: int) -> int:
        """The width this block's modules work at."""
        return d_model if self.hidden is None else len(self.hidden)

    def to_dict(self) -> dict:
        return {
            "heads": self.heads,
            "ffn1": self.ffn1,
            "ffn2": self.ffn2,
            "conv": self.conv,
            "hidden": None if self.hidden is None else list(self.hidden),
        }

    @classmethod
    def from_dict(cls, d: dict, where: str = "block") -> BlockStructure:
        check_keys(cls, d, where)
        d = dict(d)
        if d.get("hidden") is not None:
            if not isinstance(d["hidden"], (list, tuple)):
                raise AsrpruneError(f"{where}.hidden: expected a list or null, got {d['hidden']!r}")
            d["hidden"] = tuple(d["hidden"])
        try:
            return cls(**d)
        except (AsrpruneError, TypeError) as e:
            raise AsrpruneError(f"{where}: {e}") from None


@dataclass(frozen=True)
class EncoderStructure:
    """The encoder after pruning: residual width and one ``BlockStructure`` per block.

    d_model: width of the residual stream after global hidden pruning (the subsampling
    output and the encoder output have this width); blocks' ``hidden`` index into it.
    """

    d_model: int
    blocks: tuple[BlockStructure, ...]

    def __post_init__(self):
        if not _is_int(self.d_model) or self.d_model < 1:
            raise AsrpruneError(
                f"structure d_model: expected a positive integer, got {self.d_model!r}"
            )
        blocks = tuple(self.blocks)
        if not blocks:
            raise AsrpruneError("structure: an encoder needs at least one block")
        for i, b in enumerate(blocks):
            if not isinstance(b, BlockStructure):
                raise AsrpruneError(f"structure block {i}: expected a BlockStructure, got {b!r}")
            if b.hidden and b.hidden[-1] >= self.d_model:
                raise AsrpruneError(
                    f"structure block {i}: hidden index {b.hidden[-1]} is outside the residual "
                    f"stream of width {self.d_model}"
                )
        object.__setattr__(self, "blocks", blocks)

    @classmethod
    def full(cls, config: ModelConfig) -> EncoderStructure:
        """The unpruned structure of ``config``."""
        block = BlockStructure(
            heads=config.num_heads, ffn1=config.ffn_dim, ffn2=config.ffn_dim, conv=True
        )
        return cls(d_model=config.d_model, blocks=(block,) * config.num_blocks)

    def to_dict(self) -> dict:
        return {"d_model": self.d_model, "blocks": [b.to_dict() for b in self.blocks]}

    @classmethod
    def from_dict(cls, d: dict, where: str = "structure") -> EncoderStructure:
        check_keys(cls, d, where)
        if not isinstance(d.get("blocks"), (list, tuple)):
            raise AsrpruneError(f"{where}.blocks: expected a list, got {d.get('blocks')!r}")
        blocks = tuple(
            BlockStructure.from_dict(b, f"{where}.blocks[{i}]") for i, b in enumerate(d["blocks"])
        )
        try:
            return cls(d_model=d.get("d_model"), blocks=blocks)
        except AsrpruneError as e:
            raise AsrpruneError(f"{where}: {e}") from None
