"""Conformer-Transducer whose every prunable unit is addressable; pruned = smaller, same class."""

from asrprune.model.conformer import (
    ConformerBlock,
    ConformerEncoder,
    Conv2dSubsampling,
    ConvModule,
    EncoderOutput,
    FeedForward,
    RelPositionMultiHeadAttention,
)
from asrprune.model.decoding import beam_search, greedy_search, search
from asrprune.model.io import SavedModel, load_model, save_model
from asrprune.model.latency import LatencyModel
from asrprune.model.structure import BlockStructure, EncoderStructure, ModelConfig
from asrprune.model.transducer import (
    Joiner,
    ParamCounts,
    Predictor,
    Transducer,
    TransducerOutput,
)

__all__ = [
    "BlockStructure",
    "ConformerBlock",
    "ConformerEncoder",
    "Conv2dSubsampling",
    "ConvModule",
    "EncoderOutput",
    "EncoderStructure",
    "FeedForward",
    "Joiner",
    "LatencyModel",
    "ModelConfig",
    "ParamCounts",
    "Predictor",
    "RelPositionMultiHeadAttention",
    "SavedModel",
    "Transducer",
    "TransducerOutput",
    "beam_search",
    "greedy_search",
    "load_model",
    "save_model",
    "search",
]
