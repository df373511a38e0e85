"""Lexicon: the prefix tree of words' tokens that beam search may spell, and its masks."""

from __future__ import annotations

import math

import pytest

from asrprune.data.tokenizer import BLANK_ID, train_bpe
from asrprune.errors import AsrpruneError
from asrprune.model.lexicon import Lexicon

# tokens 1-4 start a word, 5-9 continue one; words: [1], [1 5], [1 5 6], [2 7]
STARTS = [False, True, True, True, True, False, False, False, False, False]
WORDS = [[1], [1, 5], [1, 5, 6], [2, 7]]


def allowed(lex: Lexicon, tokens) -> list[int]:
    mask = lex.mask(tokens)
    return [v for v in range(len(mask)) if mask[v] == 0.0 and v != BLANK_ID]


def test_masks_allow_exactly_the_ways_to_go_on_spelling_words():
    lex = Lexicon(WORDS, STARTS)
    assert lex.mask([])[BLANK_ID] == 0.0 and lex.mask([1, 5])[BLANK_ID] == 0.0
    assert allowed(lex, []) == [1, 2]  # first tokens of words
    assert allowed(lex, [1]) == [1, 2, 5]  # a word already, or on to [1 5]
    assert allowed(lex, [1, 5, 6]) == [1, 2]  # a whole word with no longer one
    assert allowed(lex, [2]) == [7]  # [2] is no word: only on to [2 7]
    assert allowed(lex, [1, 5, 6, 2]) == [7]  # only the last partial word counts
    assert lex.mask([3])[3] == -math.inf  # off the tree: nothing but blank
    assert allowed(lex, [3]) == []
    assert lex.partial_word([1, 5, 2, 7]) == (2, 7) and lex.partial_word([]) == ()
    assert lex.complete([1, 5, 2, 7]) and lex.complete([]) and not lex.complete([1, 2])


def test_words_must_start_with_a_word_start_token_and_hold_no_other():
    with pytest.raises(AsrpruneError, match="does not begin"):
        Lexicon([[5, 6]], STARTS)
    with pytest.raises(AsrpruneError, match="inside"):
        Lexicon([[1, 2]], STARTS)
    with pytest.raises(AsrpruneError, match="no words"):
        Lexicon([], STARTS)


def test_words_of_texts_are_spelt_as_sentencepiece_spells_sentences(tmp_path):
    texts = ["the cat sat on the mat", "a dog sat on a log", "cats and dogs"] * 20
    tokenizer = train_bpe(texts, 40, tmp_path / "bpe.model")
    lex = Lexicon.from_texts(texts[:3], tokenizer)
    assert len(lex.words) == 11  # the cat sat on mat a dog log cats and dogs
    for text in texts[:3]:
        tokens = tokenizer.encode(text)
        # every sentence of the text is a path through the tree, token by token
        for i, token in enumerate(tokens):
            assert lex.mask(tokens[:i])[token] == 0.0
        assert lex.complete(tokens)
    # a word never seen is no path, though its pieces are known
    unseen = tokenizer.encode("cog")
    steps = all(lex.mask(unseen[:i])[t] == 0.0 for i, t in enumerate(unseen))
    assert not (steps and lex.complete(unseen))
