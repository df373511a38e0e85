"""Conformer encoder: shapes, lengths, padding invariance, pruned structures, exact counts."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from asrprune.errors import AsrpruneError
from asrprune.model import (
    BlockStructure,
    ConformerBlock,
    ConformerEncoder,
    Conv2dSubsampling,
    EncoderStructure,
)
from asrprune.model.conformer import _depthwise, _rel_shift, relative_positions
from tests.model.tiny import pruned_structure, tiny_batch, tiny_config


def encoder(structure=None, seed=0):
    torch.manual_seed(seed)
    return ConformerEncoder(tiny_config(), structure).eval()


# -----------------------------------------------------------------------------
# shapes and lengths


@pytest.mark.parametrize("length", range(7, 40))
def test_subsampled_length_is_exact(length):
    sub = Conv2dSubsampling(80, 4, 16)
    out, lens = sub(torch.randn(1, length, 80), torch.tensor([length]))
    assert out.shape == (1, int(lens[0]), 16)
    assert int(lens[0]) == ((length - 1) // 2 - 1) // 2 >= 1


@pytest.mark.parametrize("length", range(11, 50))
def test_x6_subsampled_length_is_exact(length):
    sub = Conv2dSubsampling(80, 4, 16, factor=6)
    out, lens = sub(torch.randn(1, length, 80), torch.tensor([length]))
    assert out.shape == (1, int(lens[0]), 16)
    assert int(lens[0]) == ((length - 1) // 2 - 2) // 3 >= 1  # ESPnet's Conv2dSubsampling6
    assert Conv2dSubsampling.min_length(6) == 11


@pytest.mark.parametrize("length", range(15, 60))
def test_x8_subsampled_length_is_exact(length):
    sub = Conv2dSubsampling(80, 4, 16, factor=8)
    out, lens = sub(torch.randn(1, length, 80), torch.tensor([length]))
    assert out.shape == (1, int(lens[0]), 16)
    assert int(lens[0]) == ((length - 1) // 2 - 3) // 4 >= 1  # 80 ms frames
    assert Conv2dSubsampling.min_length(8) == 15
    assert sub.freq_out == 9


@pytest.mark.parametrize("factor", [4, 6, 8])
def test_subsampling_gives_the_same_output_with_and_without_autograd(factor):
    """Inference takes a channels-last path; it must compute the same function."""
    torch.manual_seed(0)
    sub = Conv2dSubsampling(80, 8, 16, factor)
    feats, lens = torch.randn(2, 40, 80), torch.tensor([40, 31])
    with torch.inference_mode():
        fast, fast_lens = sub(feats, lens)
    ref, ref_lens = sub(feats, lens)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(fast_lens, ref_lens)


@pytest.mark.parametrize(("factor", "shortest"), [(6, 11), (8, 15)])
def test_encoder_refuses_too_short_input_and_counts_its_parameters(factor, shortest):
    c = dataclasses.replace(tiny_config(), subsampling=factor)
    enc = ConformerEncoder(c)
    assert sum(p.numel() for p in enc.parameters()) == ConformerEncoder.count_params(c)
    with pytest.raises(AsrpruneError, match=f"x{factor} subsampling"):
        enc(torch.randn(1, shortest - 1, 80), torch.tensor([shortest - 1]))
    assert enc(torch.randn(1, shortest, 80), torch.tensor([shortest])).output.shape[1] == 1


def test_unknown_subsampling_factor_is_refused():
    with pytest.raises(AsrpruneError, match="model.subsampling"):
        dataclasses.replace(tiny_config(), subsampling=5)


def test_encoder_shapes_and_hidden_states():
    feats, lens, _, _ = tiny_batch()
    out, out_lens, hidden = encoder()(feats, lens, return_hidden=True)
    assert out.shape == (3, 24, 32)
    assert out_lens.tolist() == [24, 20, 9]
    assert len(hidden) == 2 and all(h.shape == (3, 24, 32) for h in hidden)
    assert torch.equal(hidden[-1], out)
    assert encoder()(feats, lens).hidden is None


def test_too_short_utterance_is_a_clear_error():
    with pytest.raises(AsrpruneError, match="6 frames is too short"):
        encoder()(torch.randn(1, 6, 80), torch.tensor([6]))


def test_rel_shift_matches_definition():
    T = 5
    x = torch.randn(2, 3, T, 2 * T - 1)
    y = _rel_shift(x)
    for i in range(T):
        for j in range(T):
            # column c holds relative position T-1-c; (i, j) needs relative position i-j
            assert torch.equal(y[:, :, i, j], x[:, :, i, T - 1 - (i - j)])


@pytest.mark.parametrize("kernel", [1, 3, 15])
def test_depthwise_runs_the_conv1d_it_holds(kernel):
    """The conv2d path gives the module's own Conv1d output and gradients."""
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(6, 6, kernel, padding=kernel // 2, groups=6)
    x = torch.randn(3, 11, 6, requires_grad=True)
    ours = _depthwise(conv, x)
    ref = conv(x.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-5)
    g = torch.randn_like(ref)
    grads = torch.autograd.grad(ours, (x, conv.weight, conv.bias), g)
    ref_grads = torch.autograd.grad(ref, (x, conv.weight, conv.bias), g)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_depthwise_runs_in_fp32_under_cpu_bf16_autocast():
    """oneDNN's bf16 depthwise path stalled training on some shapes: it must not be taken."""
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(6, 6, 15, padding=7, groups=6)
    x = torch.randn(3, 11, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = _depthwise(conv, x.bfloat16())
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, _depthwise(conv, x.bfloat16().float()))


def test_relative_positions_are_sinusoids_of_the_offset():
    pe = relative_positions(4, 6)  # rows: offsets 3, 2, 1, 0, -1, -2, -3
    assert pe.shape == (7, 6)
    assert torch.allclose(pe[3], torch.tensor([0.0, 1.0] * 3))  # offset 0: sin 0, cos 0
    assert torch.allclose(pe[2, 0], torch.sin(torch.tensor(1.0)))


# -----------------------------------------------------------------------------
# padding: real frames of a padded batch equal each utterance alone


@pytest.mark.parametrize("structure", [None, pruned_structure()], ids=["full", "pruned"])
def test_padded_batch_equals_each_utterance_alone(structure):
    enc = encoder(structure)
    feats, lens, _, _ = tiny_batch(lengths=(100, 83, 41, 9), num_tokens=(7, 5, 3, 1))
    with torch.no_grad():
        out, out_lens, hidden = enc(feats, lens, return_hidden=True)
        for b in range(len(lens)):
            n = int(lens[b])
            alone, alone_lens, alone_hidden = enc(feats[b : b + 1, :n], lens[b : b + 1], True)
            t = int(alone_lens[0])
            assert t == int(out_lens[b])
            assert (out[b, :t] - alone[0]).abs().max() <= 1e-5
            for h, a in zip(hidden, alone_hidden, strict=True):
                assert (h[b, :t] - a[0]).abs().max() <= 1e-5


# -----------------------------------------------------------------------------
# pruned structures


def test_pruned_structure_modules():
    enc = encoder(pruned_structure())
    b0, b1 = enc.blocks
    assert b0.mhsa is None and b0.conv is not None and b0.width == 7
    assert b0.ffn1.up.out_features == 40 and b0.ffn2.up.out_features == 64
    assert b1.hidden is None and b1.conv is None and b1.ffn2 is None and b1.width == 28
    assert b1.mhsa.q.weight.shape == (16, 28) and b1.mhsa.pos_bias_u.shape == (1, 16)
    assert b1.mhsa.linear_pos.weight.shape == (16, 32)  # position width stays config.d_model
    assert enc.subsampling.proj.out_features == 28
    feats, lens, _, _ = tiny_batch()
    out, _, _ = enc(feats, lens)
    assert out.shape == (3, 24, 28)


def test_block_leaves_dimensions_outside_its_hidden_subset_alone():
    c = tiny_config()
    s = BlockStructure(heads=1, ffn1=8, ffn2=8, conv=True, hidden=(1, 4, 5, 30))
    block = ConformerBlock(s, 32, c).eval()
    x = torch.randn(2, 10, 32)
    valid = torch.ones(2, 10, dtype=torch.bool)
    y = block(x, relative_positions(10, 32), valid)
    others = [d for d in range(32) if d not in s.hidden]
    assert torch.equal(y[..., others], x[..., others])
    assert not torch.allclose(y[..., list(s.hidden)], x[..., list(s.hidden)])
    # the subset alone, through an unpruned block of that width, gives the same result
    full = ConformerBlock(BlockStructure(1, 8, 8, True, None), 4, c).eval()
    full.load_state_dict(block.state_dict())
    assert torch.allclose(y[..., list(s.hidden)], full(x[..., list(s.hidden)], *_pv(10)))


def _pv(T):
    return relative_positions(T, 32), torch.ones(2, T, dtype=torch.bool)


def test_block_reading_no_dimension_is_the_identity():
    block = ConformerBlock(BlockStructure(0, 0, 0, False, ()), 32, tiny_config())
    assert sum(p.numel() for p in block.parameters()) == 0
    x = torch.randn(2, 10, 32)
    assert torch.equal(block(x, *_pv(10)), x)


def test_gradients_reach_every_parameter():
    enc = encoder(pruned_structure()).train()
    feats, lens, _, _ = tiny_batch()
    out, _, _ = enc(feats, lens)
    out.square().mean().backward()
    missing = [n for n, p in enc.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


# -----------------------------------------------------------------------------
# exact parameter counts, from formulas written out independently of the model code


def ln(d):
    return 2 * d  # weight + bias


def ffn(d, f):
    return 0 if f == 0 else ln(d) + d * f + f + f * d + d


def mhsa(d, h, dk, d_pos):
    if h == 0:
        return 0
    qkv = 3 * (d * h * dk + h * dk)
    out = h * dk * d + d
    linear_pos = d_pos * h * dk  # no bias
    pos_bias_uv = 2 * h * dk
    return ln(d) + qkv + out + linear_pos + pos_bias_uv


def conv(d, k, c=32):
    # c inner channels stay at the teacher's d_model when the block's width d is pruned
    pointwise1 = d * 2 * c + 2 * c
    depthwise = c * k + c
    pointwise2 = c * d + d
    return ln(d) + pointwise1 + depthwise + ln(c) + pointwise2


def subsampling(f_in, c, d):
    f_out = ((f_in - 1) // 2 - 1) // 2
    return (9 * c + c) + (9 * c * c + c) + (c * f_out * d + d)


def test_parameter_count_of_a_pruned_encoder_is_exact():
    c = tiny_config()
    s = pruned_structure()
    d_pos, dk, k = 32, 16, 5
    block0 = ffn(7, 40) + mhsa(7, 0, dk, d_pos) + conv(7, k) + ffn(7, 64) + ln(7)
    block1 = ffn(28, 17) + mhsa(28, 1, dk, d_pos) + ffn(28, 0) + ln(28)
    expected = subsampling(80, 8, 28) + block0 + block1
    enc = encoder(s)
    assert sum(p.numel() for p in enc.parameters()) == expected
    assert ConformerEncoder.count_params(c, s) == expected
    blocks = sum(p.numel() for p in enc.blocks.parameters())
    assert blocks == block0 + block1


def test_parameter_count_of_the_full_encoder_is_exact():
    c = tiny_config()
    block = ffn(32, 64) + mhsa(32, 2, 16, 32) + conv(32, 5) + ffn(32, 64) + ln(32)
    expected = subsampling(80, 8, 32) + 2 * block
    assert sum(p.numel() for p in encoder().parameters()) == expected
    assert ConformerEncoder.count_params(c, EncoderStructure.full(c)) == expected


@pytest.mark.parametrize("structure", [None, pruned_structure()], ids=["full", "pruned"])
def test_parameters_per_module_are_each_modules_own_and_sum_to_the_block(structure):
    c = tiny_config()
    s = EncoderStructure.full(c) if structure is None else structure
    enc = encoder(structure)
    for block, b in zip(enc.blocks, s.blocks, strict=True):
        parts = ConformerBlock.count_module_params(b, s.d_model, c)
        assert sum(parts.values()) == ConformerBlock.count_params(b, s.d_model, c)
        for name in ("ffn1", "mhsa", "conv", "ffn2"):
            module = getattr(block, name)
            assert parts[name] == (
                0 if module is None else sum(p.numel() for p in module.parameters())
            )
        assert parts["norm"] == block.norm.weight.numel() + block.norm.bias.numel()
