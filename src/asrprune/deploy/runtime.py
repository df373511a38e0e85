"""An exported folder run by ONNX Runtime, behind the interface decoding uses.

:class:`OnnxTransducer` has what :func:`asrprune.model.decoding.search` and
:func:`asrprune.decode.decode_batch` call on a :class:`~asrprune.model.Transducer`
(``encoder``, ``predictor.init_state`` / ``step``, ``joiner.enc_proj`` / ``pred_proj`` /
``joint``), so greedy search, beam search and LM fusion are the same code for both
backends. Tensors cross as CPU torch tensors. The graphs project inside, so the
projections here are the identity, and the encoder takes raw fbank: CMVN is inside too.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from asrprune.data.tokenizer import Tokenizer
from asrprune.deploy.export import GRAPHS, MANIFEST, TOKENIZER, read_manifest
from asrprune.errors import AsrpruneError
from asrprune.model.io import build_model
from asrprune.model.structure import EncoderStructure, ModelConfig
from asrprune.model.transducer import ParamCounts, State, Transducer


def ort_session(path: Path, threads: int, spinning: bool = False):
    """A CPU session with ``threads`` intra-op threads whose idle workers sleep at once
    unless ``spinning`` (ONNX Runtime's default: they busy-wait for the next operator).
    Every process here holds many sessions (three graphs per model, one per part of a
    block in the latency table), and their spinning pools take the cores from each other:
    two threads ran 2x slower than one (``scripts/bench_ort_threads.py``)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # warnings about unused initialisers are noise here
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own exception types, one per failure kind
        raise AsrpruneError(f"ONNX Runtime cannot load {path}: {e}") from None


def _np(t: torch.Tensor, dtype) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=dtype)


class _Encoder:
    def __init__(self, session, shape: Transducer):
        self.session, self.shape = session, shape  # shape: the model on the meta device

    def __call__(self, feats: torch.Tensor, feat_lens: torch.Tensor, return_hidden=False):
        if return_hidden:
            raise AsrpruneError("an exported encoder gives no per-block outputs")
        self.shape.encoder.check_lengths(feat_lens)  # the PyTorch encoder's own check
        out, lens = self.session.run(
            None, {"x": _np(feats, np.float32), "x_lens": _np(feat_lens, np.int64)}
        )
        return torch.from_numpy(out), torch.from_numpy(lens), None


class _Predictor:
    def __init__(self, session, shape: Transducer):
        self.session, self.shape = session, shape.predictor  # on the meta device
        self.kind = self.shape.kind

    def init_state(self, batch: int, device=None) -> State:
        return self.shape.init_state(batch, "cpu")  # the PyTorch predictor's own start

    def step(self, token: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        token = token.cpu()
        if self.kind == "stateless":
            history = torch.cat((state[0], token[:, None]), dim=1)  # (N, context)
            (out,) = self.session.run(None, {"y": _np(history, np.int64)})
            return torch.from_numpy(out), (history[:, 1:],)
        out, h, c = self.session.run(
            None,
            {
                "y": _np(token, np.int64),
                "h": _np(state[0], np.float32),
                "c": _np(state[1], np.float32),
            },
        )
        return torch.from_numpy(out), (torch.from_numpy(h), torch.from_numpy(c))


class _Joiner:
    def __init__(self, session):
        self.session = session

    @staticmethod
    def enc_proj(x: torch.Tensor) -> torch.Tensor:
        return x  # projected inside encoder.onnx

    @staticmethod
    def pred_proj(x: torch.Tensor) -> torch.Tensor:
        return x  # projected inside decoder.onnx

    def joint(self, enc_p: torch.Tensor, pred_p: torch.Tensor) -> torch.Tensor:
        """(N, J) or (1, J) each, broadcast to (N, J) -> logits (N, V)."""
        n = max(enc_p.size(0), pred_p.size(0))
        (logit,) = self.session.run(
            None,
            {
                "encoder_out": _np(enc_p.expand(n, -1), np.float32),
                "decoder_out": _np(pred_p.expand(n, -1), np.float32),
            },
        )
        return torch.from_numpy(logit)


class OnnxTransducer:
    """An exported folder (``asrprune export``) on ONNX Runtime's CPU provider with
    ``threads`` intra-op threads for the encoder and ``search_threads`` for the decoder and
    joiner, which run per search step on a few vectors; ``spinning`` as :func:`ort_session`.
    The defaults are what ``scripts/bench_ort_threads.py`` measured fastest on 2 cores.
    ``tokenizer`` and ``manifest`` (export.json) come along."""

    training = False

    def __init__(
        self,
        folder: str | os.PathLike,
        threads: int = 1,
        *,
        search_threads: int = 1,
        spinning: bool = False,
    ):
        folder = Path(folder)
        self.manifest = read_manifest(folder)
        self.folder = folder
        sessions = {
            name: ort_session(
                folder / f"{name}.onnx",
                threads if name == "encoder" else search_threads,
                spinning,
            )
            for name in GRAPHS
        }
        self.tokenizer = Tokenizer.load(folder / TOKENIZER)
        with torch.device("meta"):  # shapes only: sizes and FLOPs as the model file's
            self.shape = build_model(self.manifest["architecture"], str(folder / MANIFEST))
        self.encoder = _Encoder(sessions["encoder"], self.shape)
        self.predictor = _Predictor(sessions["decoder"], self.shape)
        self.joiner = _Joiner(sessions["joiner"])

    @property
    def config(self) -> ModelConfig:
        return self.shape.config

    @property
    def structure(self) -> EncoderStructure:
        return self.shape.structure

    def param_counts(self) -> ParamCounts:
        return self.shape.param_counts()

    def size_report(self, frames: int) -> dict:
        return self.shape.size_report(frames)

    def onnx_bytes(self) -> int:
        """Bytes of the three graphs on disk (weights in the precision exported)."""
        return sum((self.folder / f"{name}.onnx").stat().st_size for name in GRAPHS)

    def eval(self) -> OnnxTransducer:
        return self

    def train(self, mode: bool = True) -> OnnxTransducer:
        return self
