"""ModelConfig and EncoderStructure: defaults, validation, JSON round trips."""

from __future__ import annotations

import json

import pytest

from asrprune.errors import AsrpruneError
from asrprune.model import BlockStructure, EncoderStructure, ModelConfig
from tests.model.tiny import pruned_structure, tiny_config


def test_config_defaults_are_resolved():
    c = ModelConfig()
    assert (c.d_model, c.num_blocks, c.num_heads, c.head_dim, c.ffn_dim) == (144, 12, 4, 36, 576)
    assert c.subsampling_channels == 144
    assert ModelConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("num_heads", 0),
        ("conv_kernel", 4),
        ("dropout", 1.0),
        ("predictor", "transformer"),
        ("vocab_size", 1),
        ("d_model", 3.5),
    ],
)
def test_config_refuses_bad_values(key, value):
    with pytest.raises(AsrpruneError, match=key):
        tiny_config(**{key: value})


def test_config_refuses_unknown_keys():
    with pytest.raises(AsrpruneError, match="unknown key 'ctc_weight'"):
        ModelConfig.from_dict({"d_model": 32, "ctc_weight": 0.3}, "teacher.model")


def test_full_structure():
    c = tiny_config()
    s = EncoderStructure.full(c)
    assert s.d_model == 32 and len(s.blocks) == 2
    assert s.blocks[0] == BlockStructure(heads=2, ffn1=64, ffn2=64, conv=True, hidden=None)


def test_structure_json_round_trip():
    s = pruned_structure()
    d = json.loads(json.dumps(s.to_dict()))
    assert EncoderStructure.from_dict(d) == s
    assert isinstance(EncoderStructure.from_dict(d).blocks[0].hidden, tuple)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"heads": -1, "ffn1": 1, "ffn2": 1}, "heads"),
        ({"heads": 1, "ffn1": 1, "ffn2": 1, "hidden": (3, 1)}, "sorted"),
        ({"heads": 1, "ffn1": 1, "ffn2": 1, "hidden": (1, 1)}, "unique"),
        ({"heads": 1, "ffn1": 0, "ffn2": 0, "conv": False, "hidden": ()}, "no hidden"),
        ({"heads": 1, "ffn1": 1, "ffn2": 1, "conv": 1}, "conv"),
    ],
)
def test_block_structure_validation(kwargs, match):
    with pytest.raises(AsrpruneError, match=match):
        BlockStructure(**kwargs)


def test_hidden_index_must_fit_the_residual_stream():
    block = BlockStructure(heads=1, ffn1=1, ffn2=1, hidden=(0, 28))
    with pytest.raises(AsrpruneError, match="outside the residual stream of width 28"):
        EncoderStructure(d_model=28, blocks=(block,))


def test_structure_from_dict_names_the_bad_field():
    d = pruned_structure().to_dict()
    d["blocks"][1]["gates"] = 3
    with pytest.raises(AsrpruneError, match=r"structure.blocks\[1\]: unknown key 'gates'"):
        EncoderStructure.from_dict(d)
