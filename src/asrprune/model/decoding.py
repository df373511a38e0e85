"""Transducer decoding on encoder outputs: batched greedy search and modified beam search.

Both take ``(encoder_out (B, T, d), encoder_lens (B,))`` from ``model.encoder`` and return
token ids per utterance (blank removed); turn them into text with the tokenizer.
:func:`search` picks one of them by beam width, as evaluation and transcription ask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
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
    # what scores() gave, by all that it depends on: the LM's history, or without a
    # lexicon nothing else; beam search asks once per new hypothesis, and most repeat
    _memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.lm is None and self.lexicon is None:
            raise AsrpruneError("fusion needs a language model, a lexicon or both")

    def scores(self, tokens: tuple[int, ...]) -> torch.Tensor:
        """(V,) what emitting each token after ``tokens`` adds to a hypothesis's score
        (shared: do not write to it)."""
        key = tokens if self.lexicon is not None or self.lm is None else self.lm.history(tokens)
        out = self._memo.get(key)
        if out is None:
            if self.lm is None:
                out = torch.full((self.lexicon.vocab_size,), self.token_bonus)
            else:
                out = self.lm.log_probs(tokens) * self.weight + self.token_bonus
            out[BLANK_ID] = 0.0
            if self.lexicon is not None:
                out = out + self.lexicon.mask(tokens)
            self._memo[key] = out
        return out


@dataclass(slots=True)
class _Hyp:
    tokens: tuple[int, ...]
    log_prob: float
    pred_p: torch.Tensor  # (J,) projected predictor output after ``tokens``
    state: State  # batch of one
    fused: torch.Tensor | None  # (V,) what fusion adds to each next token; None without
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

    def fused(tokens: tuple[int, ...]) -> torch.Tensor | None:
        return None if fusion is None else fusion.scores(tokens)

    start = _Hyp((), 0.0, model.joiner.pred_proj(pred)[0], state, fused(()))
    beams: list[list[_Hyp]] = [[start] for _ in range(B)]
    owners: dict[tuple[int, ...], torch.Tensor] = {}  # each row's utterance, per beam layout
    for t in range(max(lens, default=0)):
        running = [b for b in range(B) if lens[b] > t]
        hyps = [h for b in running for h in beams[b]]
        if len(running) == 1:  # one utterance left (or decoded alone): broadcast its frame
            enc_t = enc_p[running[0], t : t + 1]  # (1, J)
        else:
            layout = tuple(b for b in running for _ in beams[b])
            if layout not in owners:
                owners[layout] = torch.tensor(layout, device=device)
            enc_t = enc_p[owners[layout], t]  # (N, J)
        pred_p = torch.stack([h.pred_p for h in hyps])  # (N, J)
        scores = model.joiner.joint(enc_t, pred_p).float().log_softmax(-1)  # (N, V)
        if fusion is not None:
            scores += torch.stack([h.fused for h in hyps]).to(device)
        # numpy builds a small array from floats in a fraction of torch.tensor's time
        prior = torch.from_numpy(np.array([h.log_prob for h in hyps], dtype=np.float32))
        scores += prior.to(device)[:, None]
        V = scores.size(1)
        merged_by: list[dict[tuple[int, ...], tuple[float, int, int]]] = []
        first = 0  # the running utterance's first row of ``hyps``
        for b in running:
            n = len(beams[b])
            top = scores[first : first + n].flatten().topk(min(beam, n * V))
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
            tok = torch.from_numpy(np.array([v for _, v in grown])).to(device)  # (G,)
            parents = [hyps[row].state for row, _ in grown]
            states = tuple(torch.cat(parts) for parts in zip(*parents, strict=True))
            new_pred, new_state = model.predictor.step(tok, states)
            new_pred_p = model.joiner.pred_proj(new_pred).unbind(0)  # G x (J,)
            new_states = zip(*(s.split(1) for s in new_state), strict=True)  # G x state
            for (row, v), p, s in zip(grown, new_pred_p, new_states, strict=True):
                hyps[row].children[v] = (p, s)
        for b, merged in zip(running, merged_by, strict=True):
            next_hyps = []
            for key, (lp, row, v) in merged.items():
                parent = hyps[row]
                if v == BLANK_ID:
                    next_hyps.append(
                        _Hyp(key, lp, parent.pred_p, parent.state, parent.fused, parent.children)
                    )
                else:
                    next_hyps.append(_Hyp(key, lp, *parent.children[v], fused(key)))
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
