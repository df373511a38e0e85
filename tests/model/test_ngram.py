import math

import numpy as np
import pytest
import torch

from asrprune.data.tokenizer import BLANK_ID
from asrprune.errors import AsrpruneError
from asrprune.model.ngram import TokenNgram

SEQS = [[5, 6, 7], [5, 6, 7], [5, 6, 8], [9, 6, 7]]


def test_every_history_gives_a_distribution_over_tokens_without_blank():
    lm = TokenNgram(SEQS, vocab_size=12, order=3)
    for history in ([], [5], [5, 6], [9, 6], [1, 2], [11, 11, 11, 11]):
        lp = lm.log_probs(history)
        assert lp.shape == (12,) and lp[BLANK_ID] == -math.inf
        assert lp.exp().sum().item() == pytest.approx(1.0, abs=1e-6)
        assert torch.isfinite(lp[1:]).all()  # no token impossible


def test_seen_continuations_win_and_longer_histories_are_cut_to_the_order():
    lm = TokenNgram(SEQS, vocab_size=12, order=3)
    after = lm.log_probs([5, 6])
    assert after[7] > after[8] > after[9]  # seen twice, once, never
    assert lm.log_probs([1]).argmax() == 6  # unseen history: the unigram, 6 the commonest
    assert torch.equal(lm.log_probs([3, 4, 5, 6]), after)  # only the last order-1 count
    assert lm.log_probs([]).argmax() == 5  # sentences start with 5 three times of four
    # an unseen history of full length is exactly its lower order's distribution
    assert torch.equal(lm.log_probs([11, 6]), lm.log_probs([6]))
    assert lm.log_probs([9, 6])[7] > lm.log_probs([5, 6])[7]  # 9 6 is always followed by 7


def test_bad_settings_and_tokens_are_refused():
    with pytest.raises(AsrpruneError, match="order"):
        TokenNgram(SEQS, 12, order=0)
    with pytest.raises(AsrpruneError, match="discount"):
        TokenNgram(SEQS, 12, order=2, discount=1.0)
    with pytest.raises(AsrpruneError, match="token 12 outside"):
        TokenNgram([[5, 12]], 12, order=2)
    with pytest.raises(AsrpruneError, match="token 0 outside"):  # the blank is no token
        TokenNgram([[0, 5]], 12, order=2)


def _reference_probs(seqs, V, order, discount, history):
    """Interpolated absolute discounting from nested dictionaries of counts, as written
    in the paper: the array-backed counts must give exactly this."""
    counts = [{} for _ in range(order)]
    for seq in seqs:
        ids = [-1] * (order - 1) + list(seq)
        for i in range(order - 1, len(ids)):
            for k in range(order):
                seen = counts[k].setdefault(tuple(ids[i - k : i]), {})
                seen[ids[i]] = seen.get(ids[i], 0) + 1

    def probs(h):
        if not h:
            p = np.zeros(V)
            for token, n in counts[0][()].items():
                p[token] = n
            p = 0.99 * p / p.sum() + 0.01 * np.full(V, 1.0 / (V - 1))
            p[BLANK_ID] = 0.0
            return p / p.sum()
        p = probs(h[1:])
        seen = counts[len(h)].get(h)
        if seen:
            total = sum(seen.values())
            p = p * (discount * len(seen) / total)
            for token, n in seen.items():
                p[token] += (n - discount) / total
        return p

    return probs(tuple(history))


@pytest.mark.parametrize(("vocab", "order"), [(7, 1), (7, 3), (30, 5), (300, 4)])
def test_counts_give_exactly_the_reference_distributions(vocab, order):
    rng = np.random.default_rng(order)
    # few distinct tokens early on, so that histories repeat and orders interpolate
    seqs = [rng.integers(1, min(vocab, 6), rng.integers(0, 12)).tolist() for _ in range(40)]
    seqs.append([vocab - 1, 1, vocab - 1])
    lm = TokenNgram(seqs, vocab, order, discount=0.6)
    histories = [seq[:i] for seq in seqs[:10] + seqs[-1:] for i in range(len(seq) + 1)]
    histories += [[vocab - 1] * order, [2, 2, 2, 2, 2, 2]]  # seen and unseen starts
    for tokens in histories:
        history = lm.history(tokens)
        assert np.array_equal(lm.probs(history), _reference_probs(seqs, vocab, order, 0.6, history))
