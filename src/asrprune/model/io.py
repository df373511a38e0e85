"""Model files: one ``torch.save`` dict of tensors and plain Python values.

Everything needed to use a model travels in the file: config, encoder structure and
low-rank layers (to rebuild the pruned model's classes), weights, the tokenizer's bytes,
the CMVN statistics and JSON-safe metadata. No pickled classes, so
``torch.load(weights_only=True)`` reads it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch

from asrprune.errors import AsrpruneError
from asrprune.io import atomic_path, require_file
from asrprune.model.lowrank import factorize, low_rank_ranks
from asrprune.model.structure import EncoderStructure, ModelConfig
from asrprune.model.transducer import Transducer

FORMAT = "asrprune-model"
VERSION = 1
# what error messages say a model file is, where a user mistakes another file for one
_EXPECTED = "expected a model file the workflow writes under results/<run>/models/"


@dataclass(frozen=True)
class SavedModel:
    """What :func:`load_model` reads from a model file."""

    model: Transducer  # weights loaded strictly, in eval mode, on ``map_location``
    tokenizer_bytes: bytes  # the SentencePiece model (``Tokenizer.from_bytes``)
    # {"mean": (D,), "std": (D,), "frames": int, "per_utterance": bool}; tensors on the CPU,
    # where the data pipeline normalises features before a batch moves to the model's device
    cmvn: dict
    extra: dict  # JSON-safe metadata written by save_model (step, WER, provenance)


def _cmvn_tensors(cmvn_state) -> dict:
    """CMVN as {"mean": (D,), "std": (D,), "frames": int, "per_utterance": bool} from a Cmvn,
    its state_dict or to_dict."""
    if isinstance(cmvn_state, torch.nn.Module):
        cmvn_state = cmvn_state.to_dict()  # a Cmvn: its own record, mode and frames included
    try:
        mean = torch.as_tensor(cmvn_state["mean"], dtype=torch.float32).detach().cpu().clone()
        std = torch.as_tensor(cmvn_state["std"], dtype=torch.float32).detach().cpu().clone()
    except (KeyError, TypeError, ValueError) as e:
        raise AsrpruneError(f"cmvn state needs 'mean' and 'std' vectors ({e})") from None
    if mean.dim() != 1 or mean.shape != std.shape:
        raise AsrpruneError(f"cmvn mean {tuple(mean.shape)} and std {tuple(std.shape)} differ")
    return {
        "mean": mean,
        "std": std,
        "frames": int(cmvn_state.get("frames", 0)),
        "per_utterance": bool(cmvn_state.get("per_utterance", False)),
    }


def save_model(
    path: str | os.PathLike,
    model: Transducer,
    tokenizer_bytes: bytes,
    cmvn_state: dict,
    extra: dict | None = None,
) -> None:
    """Write ``model`` with its tokenizer, CMVN and metadata to ``path``, atomically.

    cmvn_state: {"mean", "std"[, "frames"]} as tensors or lists (``Cmvn.state_dict()`` or
    ``Cmvn.to_dict()``). extra: JSON-safe metadata (e.g. step, WER, provenance).
    """
    extra = {} if extra is None else extra
    try:
        extra = json.loads(json.dumps(extra))  # a copy, and proof it is JSON-safe
    except (TypeError, ValueError) as e:
        raise AsrpruneError(f"model file {path}: extra metadata is not JSON-safe ({e})") from None
    payload = {
        "format": FORMAT,
        "version": VERSION,
        **architecture(model),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "tokenizer": torch.tensor(list(tokenizer_bytes), dtype=torch.uint8),
        "cmvn": _cmvn_tensors(cmvn_state),
        "extra": extra,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def architecture(model: Transducer) -> dict:
    """What rebuilds ``model``'s classes without its weights: config, encoder structure
    and low-rank layers, JSON-safe (a model file's and an export's record)."""
    return {
        "config": model.config.to_dict(),
        "structure": model.structure.to_dict(),
        "low_rank": low_rank_ranks(model),
    }


def build_model(record: dict, where: str) -> Transducer:
    """An untrained model of the architecture ``record`` (:func:`architecture`'s keys)
    describes, on the default device (``torch.device("meta")`` for its shapes alone);
    errors name ``where``."""
    config = ModelConfig.from_dict(record["config"], f"{where}: config")
    structure = EncoderStructure.from_dict(record["structure"], f"{where}: structure")
    model = Transducer(config, structure)
    try:
        factorize(model, record.get("low_rank", {}), from_weights=False)
    except (AttributeError, TypeError) as e:
        raise AsrpruneError(f"{where}: its low-rank layers do not fit the model: {e}") from None
    return model


def load_model(path: str | os.PathLike, map_location="cpu") -> SavedModel:
    """Rebuild a model saved by :func:`save_model`, weights loaded strictly, in eval mode.

    The model goes to ``map_location``; the CMVN tensors stay on the CPU (see
    :class:`SavedModel`).
    """
    require_file(path, "model file", _EXPECTED)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated or foreign files raise many types
        raise AsrpruneError(
            f"{path} is not an asrprune model file ({_EXPECTED}); torch.load failed: "
            f"{type(e).__name__}: {e}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise AsrpruneError(f"{path} is not an asrprune model file ({_EXPECTED})")
    if payload.get("version") != VERSION:
        raise AsrpruneError(
            f"{path}: model file version {payload.get('version')!r}, expected {VERSION}"
        )
    model = build_model(payload, str(path))
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as e:
        raise AsrpruneError(f"{path}: weights do not fit its config and structure: {e}") from None
    model.to(map_location if isinstance(map_location, (str, torch.device)) else "cpu").eval()
    tokenizer = payload["tokenizer"].cpu().numpy().tobytes()
    return SavedModel(model, tokenizer, payload["cmvn"], payload["extra"])
