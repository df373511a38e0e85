"""Transducer: predictor variants, losses, accounting, over-fitting, greedy and beam search."""

from __future__ import annotations

import math

import pytest
import torch

from asrprune.data.batching import Batch
from asrprune.errors import AsrpruneError
from asrprune.model import ConformerEncoder, Transducer, beam_search, greedy_search
from asrprune.model.decoding import Fusion, search
from asrprune.model.lexicon import Lexicon
from asrprune.model.ngram import TokenNgram
from tests.model.tiny import VOCAB, pruned_structure, tiny_batch, tiny_config, tiny_model


@pytest.mark.parametrize(
    "overrides",
    [
        {"predictor": "stateless", "predictor_context": 2},
        {"predictor": "stateless", "predictor_context": 1},
        {"predictor": "lstm", "predictor_layers": 2},
    ],
    ids=["stateless", "stateless-bigram", "lstm"],
)
def test_predictor_steps_equal_its_forward(overrides):
    pred = tiny_model(**overrides).predictor.eval()
    _, _, tokens, _ = tiny_batch()
    full = pred(tokens)  # (B, U+1, P)
    assert full.shape == (3, 8, 24)
    state = pred.init_state(3)
    out, state = pred.step(torch.zeros(3, dtype=torch.long), state)  # start: blank
    steps = [out]
    for u in range(tokens.size(1)):
        out, state = pred.step(tokens[:, u], state)
        steps.append(out)
    assert torch.allclose(torch.stack(steps, dim=1), full, atol=1e-6)


def test_lstm_steps_from_the_input_gate_table_equal_its_forward():
    pred = tiny_model(predictor="lstm", predictor_layers=2).predictor.eval()
    _, _, tokens, _ = tiny_batch()
    table = pred.input_gate_table()
    assert table.shape == (VOCAB, 4 * pred.dim)
    state = pred.init_state(3)
    steps = []
    for token in torch.cat((torch.zeros(3, 1, dtype=torch.long), tokens), dim=1).T:
        out, state = pred.step(token, state, table[token])
        steps.append(out)
    assert torch.allclose(torch.stack(steps, dim=1), pred(tokens), atol=1e-6)


@pytest.mark.parametrize("predictor", ["stateless", "lstm"])
def test_forward_gives_finite_losses_and_gradients(predictor):
    model = tiny_model(predictor=predictor, structure=pruned_structure()).train()
    out = model(*tiny_batch(), return_hidden=True)
    assert out.rnnt_loss.ndim == 0 and torch.isfinite(out.rnnt_loss)
    assert out.ctc_loss.ndim == 0 and torch.isfinite(out.ctc_loss)
    assert out.encoder_out.shape == (3, 24, 28) and out.encoder_lens.tolist() == [24, 20, 9]
    assert len(out.hidden) == 2
    (out.rnnt_loss + 0.3 * out.ctc_loss).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_losses_are_per_utterance_means():
    model = tiny_model().eval()
    feats, lens, tokens, token_lens = tiny_batch()
    batch = model(feats, lens, tokens, token_lens)
    singles = [
        model(feats[b : b + 1], lens[b : b + 1], tokens[b : b + 1], token_lens[b : b + 1])
        for b in range(3)
    ]
    rnnt = torch.stack([s.rnnt_loss for s in singles]).mean()
    ctc = torch.stack([s.ctc_loss for s in singles]).mean()
    assert torch.allclose(batch.rnnt_loss, rnnt, rtol=1e-5)
    assert torch.allclose(batch.ctc_loss, ctc, rtol=1e-5)


def test_intermediate_ctc_is_the_ctc_head_on_that_block():
    model = tiny_model().eval()
    feats, lens, tokens, token_lens = tiny_batch()
    out = model(feats, lens, tokens, token_lens, inter_ctc_block=1)
    assert out.hidden is None  # computed for the loss, not returned unless asked
    hidden = model.encoder(feats, lens, return_hidden=True).hidden[0]
    log_probs = torch.log_softmax(model.ctc_head(hidden), -1).transpose(0, 1)
    expected = (
        torch.nn.functional.ctc_loss(
            log_probs, tokens, out.encoder_lens, token_lens, reduction="sum", zero_infinity=True
        )
        / 3
    )
    assert torch.allclose(out.inter_ctc_loss, expected, rtol=1e-5)
    assert model(feats, lens, tokens, token_lens).inter_ctc_loss is None
    with pytest.raises(AsrpruneError, match="inter_ctc_block 3 is outside"):
        model(feats, lens, tokens, token_lens, inter_ctc_block=3)


def test_without_ctc_head():
    model = tiny_model(ctc_head=False)
    assert model.ctc_head is None
    assert model(*tiny_batch()).ctc_loss is None


def test_param_counts():
    model = tiny_model(structure=pruned_structure())
    counts = model.param_counts()
    assert counts.encoder == ConformerEncoder.count_params(model.config, model.structure)
    assert counts.prunable == sum(p.numel() for p in model.encoder.blocks.parameters())
    assert counts.prunable < counts.encoder < counts.total
    assert counts.total == sum(p.numel() for p in model.parameters())


# -----------------------------------------------------------------------------
# over-fitting two utterances, then decoding them


TARGETS = [[3, 7, 12, 5, 9, 14], [11, 2, 8, 4]]  # no token pair twice: the stateless
# predictor sees two tokens, so a repeated pair would make the next token ambiguous


def overfit(predictor: str, steps: int = 300) -> tuple[Transducer, tuple, list[float]]:
    torch.manual_seed(0)
    model = Transducer(tiny_config(predictor=predictor))
    feats, lens, tokens, token_lens = tiny_batch(lengths=(60, 50), num_tokens=(6, 4), seed=1)
    for b, target in enumerate(TARGETS):
        tokens[b, : len(target)] = torch.tensor(target)
    batch = (feats, lens, tokens, token_lens)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        out = model(*batch)
        loss = out.rnnt_loss + 0.3 * out.ctc_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(out.rnnt_loss.item())
    return model.eval(), batch, losses


@pytest.fixture(scope="module", params=["stateless", "lstm"])
def overfitted(request):
    return overfit(request.param)


def test_rnnt_loss_falls(overfitted):
    _, _, losses = overfitted
    assert losses[-1] < 0.01 * losses[0]
    assert losses[-1] < 0.1


def test_greedy_and_beam_search_recover_the_targets(overfitted):
    model, (feats, lens, _, _), _ = overfitted
    with torch.no_grad():
        enc, enc_lens, _ = model.encoder(feats, lens)
    assert greedy_search(model, enc, enc_lens) == TARGETS
    assert beam_search(model, enc, enc_lens, beam=4) == TARGETS


def test_lm_fusion_is_neutral_at_weight_zero_and_steers_when_strong(overfitted):
    model, (feats, lens, _, _), _ = overfitted
    with torch.no_grad():
        enc, enc_lens, _ = model.encoder(feats, lens)
    lm = TokenNgram([[4, 3, 2]] * 5, vocab_size=VOCAB, order=3)
    neutral = Fusion(lm, weight=0.0)
    assert beam_search(model, enc, enc_lens, beam=4, fusion=neutral) == TARGETS
    # the model is sure of its targets; a strong LM with a bonus to emit overrides it and
    # starts every utterance with its own first tokens
    strong = Fusion(lm, weight=50.0, token_bonus=50.0)
    for hyp in beam_search(model, enc, enc_lens, beam=4, fusion=strong):
        assert hyp[:3] == [4, 3, 2]
    with pytest.raises(AsrpruneError, match="beam search"):
        search(model, enc, enc_lens, beam=1, fusion=neutral)


def test_a_lexicon_keeps_known_words_and_spells_nothing_else(overfitted):
    model, (feats, lens, _, _), _ = overfitted
    with torch.no_grad():
        enc, enc_lens, _ = model.encoder(feats, lens)
    starts = [v in (3, 5, 11, 4) for v in range(VOCAB)]  # TARGETS as words: 3 7 12 | 5 9 14 ...
    words = [[3, 7, 12], [5, 9, 14], [11, 2, 8], [4]]
    assert (
        beam_search(model, enc, enc_lens, 4, Fusion(None, lexicon=Lexicon(words, starts)))
        == TARGETS
    )
    # without the word 5 9 14 the first utterance must be spelt from the other words
    lexicon = Lexicon([[3, 7, 12], [5, 9], [11, 2, 8], [4]], starts)
    first, second = beam_search(model, enc, enc_lens, 4, Fusion(None, lexicon=lexicon))
    assert first != TARGETS[0] and second == TARGETS[1]
    assert lexicon.complete(first) and all(
        lexicon.mask(first[:i])[t] == 0 for i, t in enumerate(first)
    )
    with pytest.raises(AsrpruneError, match="a language model, a lexicon or both"):
        Fusion(None)


@pytest.mark.parametrize("predictor", ["stateless", "lstm"])
def test_batch_decoding_equals_each_utterance_alone(predictor):
    # an untrained model emits many symbols, which exercises the per-frame symbol cap
    model = tiny_model(seed=3, predictor=predictor, structure=pruned_structure()).eval()
    feats, lens, _, _ = tiny_batch(lengths=(100, 83, 41, 9), num_tokens=(1, 1, 1, 1))
    with torch.no_grad():
        enc, enc_lens, _ = model.encoder(feats, lens)
        greedy = greedy_search(model, enc, enc_lens, max_symbols_per_frame=3)
        beam = beam_search(model, enc, enc_lens, beam=3)
        g = torch.Generator().manual_seed(5)
        sequences = [torch.randint(1, VOCAB, (12,), generator=g).tolist() for _ in range(30)]
        fusion = Fusion(TokenNgram(sequences, VOCAB, order=3), weight=1.0, token_bonus=0.5)
        fused = beam_search(model, enc, enc_lens, beam=4, fusion=fusion)
        assert any(len(h) > 0 for h in greedy) and fused != beam
        for b in range(len(lens)):
            e, el, _ = model.encoder(feats[b : b + 1, : lens[b]], lens[b : b + 1])
            assert greedy_search(model, e, el, max_symbols_per_frame=3) == [greedy[b]]
            assert beam_search(model, e, el, beam=3) == [beam[b]]
            assert beam_search(model, e, el, beam=4, fusion=fusion) == [fused[b]]
        assert all(len(h) <= 3 * int(n) for h, n in zip(greedy, enc_lens, strict=True))


def _reference_beam_search(model, enc, beam):
    """Modified beam search as written in the papers, for one utterance (T, d): every
    hypothesis's predictor output from the predictor's forward over all its tokens; the
    ``beam`` best (hypothesis, blank or token) pairs, merged by token sequence. Returns the
    best tokens and the number of token extensions kept (predictor steps without reuse)."""
    beams, kept = {(): 0.0}, 0
    for t in range(enc.size(0)):
        pairs = []
        for tokens, lp in beams.items():
            pred = model.predictor(torch.tensor([tokens], dtype=torch.long))[0, -1]
            log_probs = model.joiner(enc[t], pred).log_softmax(-1)
            for v, score in enumerate((lp + log_probs).tolist()):
                pairs.append((score, tokens if v == 0 else (*tokens, v), v))
        pairs.sort(key=lambda p: -p[0])
        merged = {}
        for score, key, v in pairs[:beam]:
            if key in merged:  # the same tokens by blank and by a token: one hypothesis
                lp, grew = merged[key]
                merged[key] = (math.log(math.exp(lp) + math.exp(score)), grew and v != 0)
            else:
                merged[key] = (score, v != 0)
        kept += sum(grew for _, grew in merged.values())
        beams = {key: lp for key, (lp, _) in merged.items()}
    return list(max(beams, key=beams.get)), kept


@pytest.mark.parametrize("predictor", ["stateless", "lstm"])
def test_beam_search_equals_the_reference_and_reuses_predictor_steps(predictor):
    # untrained: many symbols, so hypotheses grow, merge and propose the same tokens again
    model = tiny_model(seed=3, predictor=predictor, structure=pruned_structure()).eval()
    feats, lens, _, _ = tiny_batch(lengths=(100, 83), num_tokens=(1, 1))
    steps = []
    step = model.predictor.step
    model.predictor.step = lambda token, state: (steps.append(token.numel()), step(token, state))[1]
    with torch.no_grad():
        enc, enc_lens, _ = model.encoder(feats, lens)
        hyps = beam_search(model, enc, enc_lens, beam=4)
        reference = [_reference_beam_search(model, enc[b, : enc_lens[b]], 4) for b in range(2)]
    assert hyps == [tokens for tokens, _ in reference]
    assert sum(len(h) for h in hyps) > 10
    # one step for the start, then only extensions not computed before
    assert sum(steps) - 1 < sum(kept for _, kept in reference)


def test_beam_of_one_scores_at_least_as_well_as_greedy_with_one_symbol(overfitted):
    model, (feats, lens, _, _), _ = overfitted
    with torch.no_grad():
        enc, enc_lens, _ = model.encoder(feats, lens)
    # with one symbol per frame and beam 1, modified beam search is greedy search
    assert beam_search(model, enc, enc_lens, beam=1) == greedy_search(model, enc, enc_lens, 1)


# -----------------------------------------------------------------------------
# mixed precision and devices


def test_bf16_autocast_trains_and_decodes():
    model = tiny_model(structure=pruned_structure())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(*tiny_batch())
    assert out.rnnt_loss.dtype == torch.float32 and torch.isfinite(out.rnnt_loss)
    (out.rnnt_loss + out.ctc_loss).backward()
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        enc, enc_lens, _ = model.encoder(*tiny_batch()[:2])
        assert (
            len(greedy_search(model, enc, enc_lens)) == len(beam_search(model, enc, enc_lens)) == 3
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("predictor", ["stateless", "lstm"])
def test_cuda_matches_cpu(predictor):
    model = tiny_model(predictor=predictor, structure=pruned_structure()).eval()
    batch = tiny_batch()
    with torch.no_grad():
        cpu = model(*batch)
        hyps = greedy_search(model, cpu.encoder_out, cpu.encoder_lens)
        model.cuda()
        gpu = model(*(t.cuda() for t in batch))
        # cuDNN may convolve in TF32, hence the loose tolerance
        assert torch.allclose(cpu.encoder_out, gpu.encoder_out.cpu(), atol=1e-3)
        assert torch.allclose(cpu.rnnt_loss, gpu.rnnt_loss.cpu(), rtol=1e-3)
        enc, enc_lens = cpu.encoder_out.cuda(), cpu.encoder_lens.cuda()
        assert greedy_search(model, enc, enc_lens) == hyps
        assert beam_search(model, enc, enc_lens) == beam_search(
            model.cpu(), cpu.encoder_out, cpu.encoder_lens
        )


@pytest.mark.parametrize("predictor", ["stateless", "lstm"])
def test_frames_padded_for_a_gpu_change_no_loss_or_output(predictor):
    """A GPU batch is padded to a multiple of 32 frames (Batch.to); in eval mode the
    losses and the encoder outputs on real frames must not see the padding."""
    model = tiny_model(predictor=predictor, structure=pruned_structure()).eval()
    feats, feat_lens, tokens, token_lens = tiny_batch()
    batch = Batch(["a", "b", "c"], feats, feat_lens, tokens, token_lens)
    padded = batch.padded(32)
    assert padded.feats.shape[1] == 128
    with torch.no_grad():
        a = model(batch.feats, feat_lens, tokens, token_lens)
        b = model(padded.feats, feat_lens, tokens, token_lens)
    for loss in ("rnnt_loss", "ctc_loss"):
        torch.testing.assert_close(getattr(b, loss), getattr(a, loss), rtol=1e-5, atol=1e-5)
    assert torch.equal(a.encoder_lens, b.encoder_lens)
    for i, n in enumerate(a.encoder_lens.tolist()):
        torch.testing.assert_close(b.encoder_out[i, :n], a.encoder_out[i, :n], rtol=1e-5, atol=1e-5)
