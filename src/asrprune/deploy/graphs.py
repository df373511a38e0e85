"""The three graphs a transducer is exported as: encoder, decoder (predictor), joiner.

They follow the split icefall and sherpa-onnx use for offline transducers, so that the
joiner's cheap part runs per (frame, token) pair and everything else once:

- encoder: raw fbank ``x`` (N, T, 80) and ``x_lens`` (N,) -> ``encoder_out`` (N, T', J),
  ``encoder_out_lens`` (N,). The model file's CMVN (global or per utterance, the latter
  over each utterance's own frames of a padded batch) and the joiner's encoder projection
  are inside, so a runtime feeds features as Kaldi computes them.
- decoder: stateless predictor: ``y`` (N, context) int64, the last ``context`` tokens
  (negative ids, sherpa-onnx's padding before the start, read as blank) -> ``decoder_out``
  (N, J). LSTM predictor: ``y`` (N,), ``h``/``c`` (N, layers, dim) -> ``decoder_out``,
  ``next_h``, ``next_c``. The joiner's predictor projection is inside.
- joiner: ``encoder_out`` (N, J), ``decoder_out`` (N, J) -> ``logit`` (N, V).
"""

from __future__ import annotations

import torch
from torch import nn

from asrprune.data.features import Cmvn
from asrprune.data.tokenizer import BLANK_ID
from asrprune.model.transducer import Transducer


class EncoderGraph(nn.Module):
    """CMVN, the Conformer encoder and the joiner's encoder projection."""

    def __init__(self, model: Transducer, cmvn: Cmvn):
        super().__init__()
        self.encoder, self.proj = model.encoder, model.joiner.enc_proj
        self.register_buffer("mean", cmvn.mean.clone())  # (D,)
        self.register_buffer("std", cmvn.std.clone())  # (D,)
        self.per_utterance = cmvn.per_utterance

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor):
        if self.per_utterance:
            valid = torch.arange(x.size(1), device=x.device)[None, :] < x_lens[:, None]  # (N, T)
            valid = valid.unsqueeze(-1).to(x.dtype)  # (N, T, 1)
            mean = (x * valid).sum(1, keepdim=True) / x_lens[:, None, None].to(x.dtype)
            x = x - mean  # (N, T, D)
        x = (x - self.mean) / self.std
        out, lens, _ = self.encoder(x, x_lens)
        return self.proj(out), lens  # (N, T', J), (N,)


class StatelessDecoderGraph(nn.Module):
    """The stateless predictor on its last ``context`` tokens, projected."""

    def __init__(self, model: Transducer):
        super().__init__()
        self.predictor, self.proj = model.predictor, model.joiner.pred_proj

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        history = torch.where(y < 0, torch.full_like(y, BLANK_ID), y)  # (N, context)
        return self.proj(self.predictor._stateless(history)[:, -1])  # (N, J)


class LstmDecoderGraph(nn.Module):
    """One LSTM predictor step, projected, with the state after it. The first layer's input
    term of every token is a constant table: the search runs this graph on nearly every
    frame, and the table halves a one-layer step's multiply-adds."""

    def __init__(self, model: Transducer):
        super().__init__()
        self.predictor, self.proj = model.predictor, model.joiner.pred_proj
        with torch.no_grad():
            self.register_buffer("input_gates", self.predictor.input_gate_table())  # (V, 4 dim)

    def forward(self, y: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        out, (h, c) = self.predictor.step(y, (h, c), self.input_gates[y])
        return self.proj(out), h, c  # (N, J), (N, layers, dim) x 2


class JoinerGraph(nn.Module):
    """The joiner on projected inputs."""

    def __init__(self, model: Transducer):
        super().__init__()
        self.joiner = model.joiner

    def forward(self, encoder_out: torch.Tensor, decoder_out: torch.Tensor) -> torch.Tensor:
        return self.joiner.joint(encoder_out, decoder_out)  # (N, V)
