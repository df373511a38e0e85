"""Gated models against their compacted twins: same outputs, exact sizes and FLOPs."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from asrprune.model import ConformerEncoder, EncoderStructure, LatencyModel, Transducer
from asrprune.model.flops import flop_counter
from asrprune.model.hardconcrete import KEPT_FLOOR, TEMPERATURE
from asrprune.model.structure import BlockStructure, ModelConfig
from asrprune.pruning.l0 import GateKinds, gated_student
from tests.model.tiny import (
    pruned_structure,
    synthetic_table,
    tiny_batch,
    tiny_config,
    tiny_model,
)

ALL = GateKinds()
COARSE = GateKinds(ffn=False, hidden_global=False, hidden_local=False, ffn_module=True)


def set_gates(model: Transducer, seed: int, keep: float = 0.6, confident: bool = False) -> None:
    """Random log-alphas: about ``keep`` of every gate's units kept; ``confident`` pushes
    them to +-20 so that P(keep) is 0 or 1 and expected sizes are exact."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for gate in model.encoder.gates():
            u = torch.rand(gate.n, generator=g)
            la = torch.where(u < keep, 3.0 + u, -3.0 - u)
            if gate.n == 1:  # a convolution module: keep some, drop some
                la = torch.tensor([3.0 if torch.rand(1, generator=g) < 0.5 else -3.0])
            gate.log_alpha.copy_(la.sign() * 20 if confident else la)


@pytest.mark.parametrize("seed", range(4))
def test_compact_model_computes_what_the_masked_model_computes(seed):
    student = gated_student(tiny_model(seed), ALL)
    set_gates(student, seed)
    student.eval()
    compact = Transducer.compacted(student).eval()
    assert compact.structure != EncoderStructure.full(compact.config)
    assert not compact.encoder.gates()
    feats, lens, tokens, token_lens = tiny_batch(seed=seed)
    with torch.no_grad():
        a = student(feats, lens, tokens, token_lens)
        b = compact(feats, lens, tokens, token_lens)
        kept = torch.nonzero(student.encoder.hidden_gate.final_mask()).flatten()
        for t in range(lens.size(0)):
            n = int(a.encoder_lens[t])
            diff = (a.encoder_out[t, :n, kept] - b.encoder_out[t, :n]).abs().max()
            assert diff <= 1e-4
        assert torch.allclose(a.rnnt_loss, b.rnnt_loss, atol=1e-4)
        assert torch.allclose(a.ctc_loss, b.ctc_loss, atol=1e-4)


def test_a_module_the_rounding_keeps_near_zero_compacts_to_the_masked_model():
    student = gated_student(tiny_model(0), ALL)
    set_gates(student, 0)
    # both convolution modules 0.3 expected: the group keeps one, whose noise-free value
    # is below 0, so the final mask floors it
    p = 0.3
    la = math.log(p / (1 - p)) + TEMPERATURE * math.log(0.1 / 1.1)
    with torch.no_grad():
        for block in student.encoder.blocks:
            block.conv.gate.log_alpha.fill_(la)
    student.eval()
    masks = [float(b.conv.gate.final_mask()[0]) for b in student.encoder.blocks]
    assert masks == pytest.approx([KEPT_FLOOR, 0.0])
    compact = Transducer.compacted(student).eval()
    assert [b.conv for b in compact.structure.blocks] == [True, False]
    feats, lens, tokens, token_lens = tiny_batch()
    with torch.no_grad():
        a = student(feats, lens, tokens, token_lens)
        b = compact(feats, lens, tokens, token_lens)
    assert torch.allclose(a.rnnt_loss, b.rnnt_loss, atol=1e-4)


def test_pruned_dims_of_the_masked_model_stay_zero():
    student = gated_student(tiny_model(0), ALL)
    set_gates(student, 1)
    student.eval()
    feats, lens, _, _ = tiny_batch()
    with torch.no_grad():
        out = student.encoder(feats, lens, return_hidden=True)
    dropped = student.encoder.hidden_gate.final_mask() == 0
    assert dropped.any()
    for h in out.hidden:
        assert torch.all(h[..., dropped] == 0)


@pytest.mark.parametrize("kinds", [ALL, COARSE], ids=["all", "coarse"])
@pytest.mark.parametrize("seed", range(3))
def test_expected_size_is_exact_for_binary_masks(seed, kinds):
    student = gated_student(tiny_model(seed), kinds)
    set_gates(student, seed, confident=True)
    compact = Transducer.compacted(student.eval())
    frames = 1000
    expected = student.encoder.expected_params()
    assert float(expected["prunable"].detach()) == pytest.approx(
        compact.param_counts().prunable, abs=0.01
    )
    assert float(expected["encoder"].detach()) == pytest.approx(
        compact.param_counts().encoder, abs=0.01
    )
    exact = ConformerEncoder.count_flops(compact.config, compact.structure, frames)
    flops = student.encoder.expected_flops(frames)
    assert float(flops["prunable"].detach()) == pytest.approx(exact["prunable"], rel=1e-6)
    latency = LatencyModel(synthetic_table())
    predicted = ConformerEncoder.count_latency(compact.structure, latency)
    expected_latency = float(student.encoder.expected_latency(latency).detach())
    assert expected_latency == pytest.approx(predicted, rel=1e-6)


@pytest.mark.parametrize("factor", [4, 6, 8])
@pytest.mark.parametrize("structure", [None, pruned_structure()], ids=["full", "pruned"])
def test_analytic_flops_equal_the_flop_counter(structure, factor):
    config = dataclasses.replace(tiny_config(), subsampling=factor)
    encoder = ConformerEncoder(config, structure).eval()
    frames = 237
    with flop_counter() as counter, torch.no_grad():
        encoder(torch.randn(1, frames, config.input_dim), torch.tensor([frames]))
    expected = ConformerEncoder.count_flops(config, structure, frames)["encoder"]
    assert counter.get_total_flops() == expected


def test_a_block_with_no_hidden_dimension_left_is_the_identity():
    student = gated_student(tiny_model(0), ALL)
    set_gates(student, 0)
    with torch.no_grad():
        student.encoder.blocks[1].hidden_gate.log_alpha.fill_(-20.0)
    compact = Transducer.compacted(student.eval())
    assert compact.structure.blocks[1] == BlockStructure(0, 0, 0, False, ())
    feats, lens, tokens, token_lens = tiny_batch()
    with torch.no_grad():
        a = student(feats, lens, tokens, token_lens)
        b = compact.eval()(feats, lens, tokens, token_lens)
    assert torch.allclose(a.rnnt_loss, b.rnnt_loss, atol=1e-4)


@pytest.mark.parametrize("seed", range(3))
def test_whole_ffn_modules_compact_to_what_the_masked_model_computes(seed):
    student = gated_student(tiny_model(seed), COARSE)
    set_gates(student, seed)
    with torch.no_grad():  # one FFN module dropped, one kept with a mask value below 1
        student.encoder.blocks[0].ffn1.module_gate.log_alpha.fill_(-20.0)
        student.encoder.blocks[1].ffn2.module_gate.log_alpha.fill_(0.2)
    student.eval()
    assert 0 < float(student.encoder.blocks[1].ffn2.module_gate.final_mask()[0]) < 1
    compact = Transducer.compacted(student).eval()
    assert compact.structure.blocks[0].ffn1 == 0 and compact.encoder.blocks[0].ffn1 is None
    assert compact.structure.blocks[1].ffn2 == student.config.ffn_dim
    feats, lens, tokens, token_lens = tiny_batch(seed=seed)
    with torch.no_grad():
        a = student(feats, lens, tokens, token_lens)
        b = compact(feats, lens, tokens, token_lens)
    assert torch.allclose(a.encoder_out, b.encoder_out, atol=1e-4)
    assert torch.allclose(a.rnnt_loss, b.rnnt_loss, atol=1e-4)


def test_gates_only_on_the_kinds_asked_for():
    student = gated_student(
        tiny_model(0), GateKinds(ffn=False, hidden_global=False, hidden_local=False)
    )
    blocks = student.encoder.blocks
    assert student.encoder.hidden_gate is None
    assert all(b.mhsa.gate is not None and b.conv.gate is not None for b in blocks)
    assert all(
        b.ffn1.gate is None and b.ffn2.gate is None and b.hidden_gate is None for b in blocks
    )


@pytest.mark.parametrize(("multiple", "hidden"), [(8, None), (16, None), (1, 8)])
@pytest.mark.parametrize("seed", range(2))
def test_width_multiple_keeps_every_width_a_multiple_and_the_size_on_target(seed, multiple, hidden):
    """At the default run's size (12 blocks of width 144): every kept width of the final
    structure is a multiple (or the full width; hidden dimensions of ``hidden`` where
    given), and the compact size is within 1 point (of the teacher's blocks) of what
    plain rounding keeps."""
    config = ModelConfig(d_model=144, num_blocks=12, num_heads=4, ffn_dim=576, conv_kernel=15)

    def final(width_multiple: int, hidden_multiple: int | None = None) -> EncoderStructure:
        torch.manual_seed(seed)
        student = gated_student(Transducer(config), ALL, width_multiple, hidden_multiple)
        set_gates(student, seed, keep=0.55)
        return student.encoder.final_structure()

    structure = final(multiple, hidden)

    def ok(kept: int, full: int, q: int = multiple) -> bool:
        return kept % q == 0 or kept == full

    q = multiple if hidden is None else hidden
    assert ok(structure.d_model, config.d_model, q)
    for b in structure.blocks:
        assert ok(b.width(structure.d_model), structure.d_model, q)
        assert ok(b.heads * config.head_dim, config.num_heads * config.head_dim)
        assert ok(b.ffn1, config.ffn_dim) and ok(b.ffn2, config.ffn_dim)
    if hidden is not None:  # the heads and channels are not rounded with the hidden dims
        assert any(b.ffn1 % hidden for b in structure.blocks)
    full = ConformerEncoder.count_params(config, None)
    plain = ConformerEncoder.count_params(config, final(1))
    assert abs(ConformerEncoder.count_params(config, structure) - plain) / full < 0.01
