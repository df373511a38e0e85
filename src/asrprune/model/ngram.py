"""A token n-gram language model for shallow fusion in beam search.

Most of the teacher's word errors are words spelt as they sound: a stateless predictor
sees two tokens, so nothing in the transducer knows that DESIPLES is not a word. An n-gram
over the same BPE tokens, counted on the run's LM text (``asrprune.data.lm_text``), knows
which token runs make words and phrases. Probabilities are interpolated absolute
discounting (Ney, Essen and Kneser 1994): each order gives up ``discount`` of every count
to the next lower order, down to unigrams that are mixed with a uniform floor so no token
is impossible.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

from asrprune.data.tokenizer import BLANK_ID
from asrprune.errors import AsrpruneError

_BOS = -1  # history padding before the first token
_UNIFORM_SHARE = 0.01  # of the unigram distribution, spread evenly over every token


class TokenNgram:
    """P(token | previous order-1 tokens) over a transducer's vocabulary (blank excluded).

    Counts live in sorted numpy arrays, one pair per order: every history of k tokens
    that precedes some token gets a dense id (built order by order: a history is one
    token before a history of k-1), and ``(history id, token)`` keys are counted with
    ``np.unique``. Counting millions of tokens (the corpus's whole text pool) takes
    seconds rather than the minutes of nested dictionaries, and a lookup is a few binary
    searches.
    """

    def __init__(
        self, sequences: Iterable[Sequence[int]], vocab_size: int, order: int, discount=0.7
    ):
        if order < 1:
            raise AsrpruneError(f"n-gram order must be >= 1, got {order}")
        if not 0.0 < discount < 1.0:
            raise AsrpruneError(f"n-gram discount must be in (0, 1), got {discount}")
        self.vocab_size, self.order, self.discount = vocab_size, order, discount
        V, pad = vocab_size, order - 1
        seqs = [np.asarray(seq, dtype=np.int64).reshape(-1) for seq in sequences]
        lengths = np.array([len(seq) for seq in seqs], dtype=np.int64)
        tokens = np.concatenate(seqs) if seqs else np.zeros(0, dtype=np.int64)
        bad = np.flatnonzero((tokens <= 0) | (tokens >= V))
        if bad.size:
            raise AsrpruneError(f"token {tokens[bad[0]]} outside the vocabulary 1..{V - 1}")
        # every sequence after ``pad`` symbols V (the start; no token has that id)
        first = np.cumsum(lengths + pad) - lengths  # where each sequence's tokens begin
        at = np.repeat(first - np.cumsum(lengths) + lengths, lengths) + np.arange(tokens.size)
        stream = np.full(int(lengths.sum()) + pad * len(seqs), V, dtype=np.int64)
        stream[at] = tokens
        # per order k >= 1: the sorted codes of its histories (one symbol * the count of
        # (k-1)-histories + the (k-1)-history's id), a history's id being its index here
        self._history_codes: list[tuple[np.ndarray, int]] = [(np.zeros(1, np.int64), 1)]
        # per order k: sorted keys history id * V + token, and their counts
        self._ngrams: list[tuple[np.ndarray, np.ndarray]] = []
        history = np.zeros(tokens.size, dtype=np.int64)  # every token's history id
        histories = 1  # one history of no tokens
        for k in range(order):
            if k:
                codes, history = np.unique(
                    stream[at - k] * histories + history, return_inverse=True
                )
                self._history_codes.append((codes, histories))
                histories = codes.size
            self._ngrams.append(np.unique(history * V + tokens, return_counts=True))
        self._probs: dict[tuple[int, ...], np.ndarray] = {}

    def _unigram(self) -> np.ndarray:
        keys, counts = self._ngrams[0]
        p = np.zeros(self.vocab_size)
        p[keys] = counts
        if p.sum() == 0:
            raise AsrpruneError("n-gram: no training tokens")
        floor = np.full(self.vocab_size, 1.0 / (self.vocab_size - 1))
        p = (1 - _UNIFORM_SHARE) * p / p.sum() + _UNIFORM_SHARE * floor
        p[BLANK_ID] = 0.0
        return p / p.sum()

    def _history_id(self, history: tuple[int, ...]) -> int | None:
        """The id of ``history`` among its order's, or None if no token ever followed it."""
        hid = 0
        for j in range(1, len(history) + 1):
            symbol = history[-j]
            codes, before = self._history_codes[j]
            code = (self.vocab_size if symbol == _BOS else symbol) * before + hid
            hid = int(np.searchsorted(codes, code))
            if hid == codes.size or codes[hid] != code:
                return None
        return hid

    def _seen(self, history: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """The tokens seen after ``history`` and their counts (empty if none)."""
        hid = self._history_id(history)
        keys, counts = self._ngrams[len(history)]
        if hid is None:
            return keys[:0], counts[:0]
        lo, hi = np.searchsorted(keys, (hid * self.vocab_size, (hid + 1) * self.vocab_size))
        return keys[lo:hi] - hid * self.vocab_size, counts[lo:hi]

    def probs(self, history: tuple[int, ...]) -> np.ndarray:
        """(V,) distribution after ``history`` (at most order-1 tokens, BOS-padded)."""
        if history in self._probs:
            return self._probs[history]
        if not history:
            p = self._unigram()
        else:
            p = self.probs(history[1:])
            tokens, counts = self._seen(history)
            if tokens.size:
                total = counts.sum()
                p = p * (self.discount * tokens.size / total)
                p[tokens] += (counts - self.discount) / total
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
