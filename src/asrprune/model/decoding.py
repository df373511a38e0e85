"""Transducer decoding on encoder outputs: batched greedy search and modified beam search.

Both take ``(encoder_out (B, T, d), encoder_lens (B,))`` from ``model.encoder`` and return
token ids per utterance (blank removed); turn them into text with the tokenizer.
:func:`search` picks one of them by beam width, as evaluation and transcription ask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from asrprune.data.tokenizer import BLANK_ID
from asrprune.errors import AsrpruneError
from asrprune.model.lexicon import Lexicon
from asrprune.model.ngram import TokenNgram
from asrprune.model.transducer import State, Transducer, where_state

MAX_SYMBOLS_PER_FRAME = 3  # greedy search: tokens one encoder frame may emit at most


@torch.no_grad()
def greedy_search(
    model: Transducer,
    encoder_out: torch.Tensor,
    encoder_lens: torch.Tensor,
    max_symbols_per_frame: int = 3,
) -> list[list[int]]:
    """Batched greedy search: per frame emit the best token until blank or the symbol cap.

    Every utterance of the batch advances frame by frame together; one past its length it
    emits nothing more, and a predictor state changes only where a token was emitted, so
    each result equals decoding that utterance alone.
    """
    if max_symbols_per_frame < 1:
        raise AsrpruneError(f"max_symbols_per_frame must be >= 1, got {max_symbols_per_frame}")
    B, T, _ = encoder_out.shape
    device = encoder_out.device
    enc_p = model.joiner.enc_proj(encoder_out)  # (B, T, J)
    state = model.predictor.init_state(B, device)
    pred, state = model.predictor.step(torch.full((B,), BLANK_ID, device=device), state)
    pred_p = model.joiner.pred_proj(pred)  # (B, J)
    hyps: list[list[int]] = [[] for _ in range(B)]
    for t in range(min(T, int(encoder_lens.max()))):
        active = encoder_lens > t  # (B,)
        for _ in range(max_symbols_per_frame):
            best = model.joiner.joint(enc_p[:, t], pred_p).argmax(dim=-1)  # (B,)
            emit = active & (best != BLANK_ID)  # (B,)
            if not bool(emit.any()):
                break
            tokens = best.tolist()  # one device sync per step, not one per utterance
            for b in emit.nonzero()[:, 0].tolist():
                hyps[b].append(tokens[b])
            new_pred, new_state = model.predictor.step(best, state)
            new_pred_p = model.joiner.pred_proj(new_pred)  # (B, J)
            pred_p = torch.where(emit[:, None], new_pred_p, pred_p)
            state = where_state(emit, new_state, state)
            active = emit
    return hyps


def _log_add(a: float, b: float) -> float:
    hi, lo = max(a, b), min(a, b)
    return hi + math.log1p(math.exp(lo - hi))


@dataclass(frozen=True)
class Fusion:
    """Shallow fusion: each emitted token's score gains ``weight`` x its n-gram log-probability
    plus ``token_bonus``, which offsets the LM's cost per token (else it favours deletions).
    With a ``lexicon``, tokens that would spell no word of it are not emitted at all, and
    the best hypothesis that ends on a whole word wins."""

    lm: TokenNgram | None
    weight: float = 0.0
    token_bonus: float = 0.0
    lexicon: Lexicon | None = None

    def __post_init__(self):
        if self.lm is None and self.lexicon is None:
            raise AsrpruneError("fusion needs a language model, a lexicon or both")

    def scores(self, tokens: tuple[int, ...]) -> torch.Tensor:
        """(V,) what emitting each token after ``tokens`` adds to a hypothesis's score."""
        if self.lm is None:
            out = torch.full((self.lexicon.vocab_size,), self.token_bonus)
        else:
            out = self.lm.log_probs(tokens) * self.weight + self.token_bonus
        out[BLANK_ID] = 0.0
        if self.lexicon is not None:
            out = out + self.lexicon.mask(tokens)
        return out


@dataclass
class _Hyp:
    tokens: tuple[int, ...]
    log_prob: float
    pred_p: torch.Tensor  # (J,) projected predictor output after ``tokens``
    state: State  # batch of one
    # token -> (pred_p, state) after ``tokens`` and that token, once computed: the same
    # extension is proposed frame after frame while this hypothesis stays in the beam
    children: dict[int, tuple[torch.Tensor, State]] = field(default_factory=dict)


@torch.no_grad()
def beam_search(
    model: Transducer,
    encoder_out: torch.Tensor,
    encoder_lens: torch.Tensor,
    beam: int = 4,
    fusion: Fusion | None = None,
) -> list[list[int]]:
    """Modified beam search (one symbol per frame at most) of a batch of utterances.

    Per frame every hypothesis is extended by blank or by one token; the ``beam`` best
    extensions are kept, and extensions that give the same token sequence are merged by
    adding their probabilities. Returns the most probable hypothesis per utterance. With
    ``fusion`` the scores of emitted tokens also count an n-gram language model.

    The utterances advance frame by frame together: per frame, one joiner call scores the
    hypotheses of every utterance still running and one predictor call advances those that
    grew a token (each hypothesis keeps what its extensions computed, so an extension
    proposed again on a later frame costs no predictor step), while the choice of each
    utterance's beam is its own, so the result is each utterance's as if decoded alone (up
    to float rounding in batched matrix products).
    """
    if beam < 1:
        raise AsrpruneError(f"beam must be >= 1, got {beam}")
    B = encoder_out.size(0)
    device = encoder_out.device
    lens = [int(n) for n in encoder_lens]
    enc_p = model.joiner.enc_proj(encoder_out)  # (B, T, J)
    state = model.predictor.init_state(1, device)
    pred, state = model.predictor.step(torch.full((1,), BLANK_ID, device=device), state)
    start = _Hyp((), 0.0, model.joiner.pred_proj(pred)[0], state)
    beams: list[list[_Hyp]] = [[start] for _ in range(B)]
    fused: dict[tuple[int, ...], torch.Tensor] = {}  # tokens -> fusion scores, per call

    def fusion_scores(tokens: tuple[int, ...]) -> torch.Tensor:
        if tokens not in fused:
            fused[tokens] = fusion.scores(tokens).to(device)
        return fused[tokens]

    for t in range(max(lens, default=0)):
        running = [b for b in range(B) if lens[b] > t]
        hyps = [h for b in running for h in beams[b]]
        owner = torch.tensor([b for b in running for _ in beams[b]], device=device)  # (N,)
        pred_p = torch.stack([h.pred_p for h in hyps])  # (N, J)
        log_probs = model.joiner.joint(enc_p[owner, t], pred_p).float().log_softmax(-1)  # (N, V)
        if fusion is not None:
            log_probs = log_probs + torch.stack([fusion_scores(h.tokens) for h in hyps])
        prior = torch.tensor([h.log_prob for h in hyps], device=device)  # (N,)
        scores = prior[:, None] + log_probs  # (N, V)
        V = scores.size(1)
        merged_by: list[dict[tuple[int, ...], tuple[float, int, int]]] = []
        first = 0  # the running utterance's first row of ``hyps``
        for b in running:
            n = len(beams[b])
            flat = scores[first : first + n].flatten()
            top = flat.topk(min(beam, flat.numel()))
            merged: dict[tuple[int, ...], tuple[float, int, int]] = {}  # tokens -> (lp, row, tok)
            for score, index in zip(top.values.tolist(), top.indices.tolist(), strict=True):
                if score == -math.inf:  # a lexicon left fewer than ``beam`` extensions
                    break
                row, v = divmod(index, V)
                row += first
                key = hyps[row].tokens if v == BLANK_ID else (*hyps[row].tokens, v)
                if key in merged:
                    lp, src, tok = merged[key]  # same tokens, so the same predictor state
                    if v == BLANK_ID:  # the hypothesis itself, whose state is known
                        src, tok = row, v
                    merged[key] = (_log_add(lp, score), src, tok)
                else:
                    merged[key] = (score, row, v)
            merged_by.append(merged)
            first += n
        # advance the predictor, in one batch, for every new extension by a token
        grown = [
            (row, v)
            for merged in merged_by
            for _, row, v in merged.values()
            if v != BLANK_ID and v not in hyps[row].children
        ]
        if grown:
            tok = torch.tensor([v for _, v in grown], device=device)  # (G,)
            parents = [hyps[row].state for row, _ in grown]
            states = tuple(torch.cat(parts) for parts in zip(*parents, strict=True))
            new_pred, new_state = model.predictor.step(tok, states)
            new_pred_p = model.joiner.pred_proj(new_pred)  # (G, J)
            for g, (row, v) in enumerate(grown):
                hyps[row].children[v] = (new_pred_p[g], tuple(s[g : g + 1] for s in new_state))
        for b, merged in zip(running, merged_by, strict=True):
            next_hyps = []
            for key, (lp, row, v) in merged.items():
                parent = hyps[row]
                if v == BLANK_ID:
                    next_hyps.append(_Hyp(key, lp, parent.pred_p, parent.state, parent.children))
                else:
                    next_hyps.append(_Hyp(key, lp, *parent.children[v]))
            beams[b] = next_hyps
    results = []
    for hyps in beams:
        if fusion is not None and fusion.lexicon is not None:
            # a hypothesis cut off mid-word spells a non-word; prefer those that end on a word
            hyps = [h for h in hyps if fusion.lexicon.complete(h.tokens)] or hyps
        results.append(list(max(hyps, key=lambda h: h.log_prob).tokens))
    return results


# -----------------------------------------------------------------------------
# either search, by beam width


def search(
    model: Transducer,
    encoder_out: torch.Tensor,
    encoder_lens: torch.Tensor,
    beam: int = 0,
    fusion: Fusion | None = None,
) -> list[list[int]]:
    """Token ids per utterance: greedy search for ``beam`` 0 or 1, else modified beam search
    (with ``fusion``, shallow fusion of an n-gram LM; beam search only)."""
    if beam < 0:
        raise AsrpruneError(f"beam must be 0 (greedy) or positive, got {beam}")
    if beam <= 1:
        if fusion is not None:
            raise AsrpruneError("language-model fusion needs beam search (beam >= 2)")
        return greedy_search(model, encoder_out, encoder_lens, MAX_SYMBOLS_PER_FRAME)
    return beam_search(model, encoder_out, encoder_lens, beam, fusion)
