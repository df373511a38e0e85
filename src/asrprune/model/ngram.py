"""A token n-gram language model for shallow fusion in beam search.

Most of the teacher's word errors are words spelt as they sound: a stateless predictor
sees two tokens, so nothing in the transducer knows that DESIPLES is not a word. An n-gram
over the same BPE tokens, counted on the training transcripts, knows which token runs
make words and phrases. Probabilities are interpolated absolute discounting (Ney, Essen
and Kneser 1994): each order gives up ``discount`` of every count to the next lower
order, down to unigrams that are mixed with a uniform floor so no token is impossible.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from asrprune.data.tokenizer import BLANK_ID
from asrprune.errors import AsrpruneError

_BOS = -1  # history padding before the first token
_UNIFORM_SHARE = 0.01  # of the unigram distribution, spread evenly over every token


class TokenNgram:
    """P(token | previous order-1 tokens) over a transducer's vocabulary (blank excluded)."""

    def __init__(
        self, sequences: Iterable[Sequence[int]], vocab_size: int, order: int, discount=0.7
    ):
        if order < 1:
            raise AsrpruneError(f"n-gram order must be >= 1, got {order}")
        if not 0.0 < discount < 1.0:
            raise AsrpruneError(f"n-gram discount must be in (0, 1), got {discount}")
        self.vocab_size, self.order, self.discount = vocab_size, order, discount
        # counts[k][history of k tokens][token]
        self.counts = [defaultdict(lambda: defaultdict(int)) for _ in range(order)]
        for seq in sequences:
            ids = [_BOS] * (order - 1) + list(seq)
            for i in range(order - 1, len(ids)):
                if not 0 < ids[i] < vocab_size:
                    raise AsrpruneError(
                        f"token {ids[i]} outside the vocabulary 1..{vocab_size - 1}"
                    )
                for k in range(order):
                    self.counts[k][tuple(ids[i - k : i])][ids[i]] += 1
        self._probs: dict[tuple[int, ...], np.ndarray] = {}

    def _unigram(self) -> np.ndarray:
        p = np.zeros(self.vocab_size)
        for token, n in self.counts[0][()].items():
            p[token] = n
        if p.sum() == 0:
            raise AsrpruneError("n-gram: no training tokens")
        floor = np.full(self.vocab_size, 1.0 / (self.vocab_size - 1))
        p = (1 - _UNIFORM_SHARE) * p / p.sum() + _UNIFORM_SHARE * floor
        p[BLANK_ID] = 0.0
        return p / p.sum()

    def probs(self, history: tuple[int, ...]) -> np.ndarray:
        """(V,) distribution after ``history`` (at most order-1 tokens, BOS-padded)."""
        if history in self._probs:
            return self._probs[history]
        if not history:
            p = self._unigram()
        else:
            p = self.probs(history[1:])
            seen = self.counts[len(history)].get(history)
            if seen:
                total = sum(seen.values())
                p = p * (self.discount * len(seen) / total)
                for token, n in seen.items():
                    p[token] += (n - self.discount) / total
        self._probs[history] = p
        return p

    def history(self, tokens: Sequence[int]) -> tuple[int, ...]:
        """The last order-1 of ``tokens``, BOS-padded: all that the next token depends on."""
        k = self.order - 1
        last = tuple(tokens[len(tokens) - k :]) if k else ()
        return (_BOS,) * (k - len(last)) + last

    def log_probs(self, tokens: Sequence[int]) -> torch.Tensor:
        """(V,) float log-probabilities of the next token after ``tokens``; blank -inf."""
        with np.errstate(divide="ignore"):
            return torch.from_numpy(np.log(self.probs(self.history(tokens)))).float()
