"""A model file opened for use: the transducer with the tokenizer and CMVN it was trained with.

Evaluation, pruning and transcription need the three together, and features must be
normalised with the file's own statistics, never a split's. (The speed job times encoders
only and reads the model and CMVN alone.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from asrprune.data.features import Cmvn
from asrprune.data.tokenizer import Tokenizer
from asrprune.lm import Decoding
from asrprune.model import Transducer, load_model


@dataclass
class ModelFile:
    """What a model file holds, rebuilt: model (eval mode), tokenizer, CMVN, metadata."""

    model: Transducer  # or an OnnxTransducer, which decodes alike (asrprune.deploy.runtime)
    tokenizer: Tokenizer
    cmvn: Cmvn  # on the CPU, where the data pipeline normalises features
    extra: dict
    decoding: Decoding | None = None  # how it decodes by default, if it says (exports)


def open_model_file(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> ModelFile:
    """Load ``path`` (errors name it); the model goes to ``map_location``.

    A folder ``asrprune export`` wrote opens as an :class:`OnnxTransducer` on ONNX
    Runtime's CPU provider, with torch's intra-op thread count; its CMVN is inside the
    encoder graph, so features go in raw (``cmvn`` is the identity).
    """
    if Path(path).is_dir():
        from asrprune.deploy.export import read_decoding
        from asrprune.deploy.runtime import OnnxTransducer

        onnx = OnnxTransducer(path, threads=torch.get_num_threads())
        dim = onnx.manifest["features"]["feature_dim"]
        decoding = read_decoding(path, onnx.manifest)
        return ModelFile(onnx, onnx.tokenizer, Cmvn.identity(dim), onnx.manifest, decoding)
    saved = load_model(path, map_location=map_location)
    return ModelFile(
        saved.model,
        Tokenizer.from_bytes(saved.tokenizer_bytes, f"{path} (embedded tokenizer)"),
        Cmvn.from_dict(saved.cmvn, f"{path} (cmvn)"),
        saved.extra,
    )
