"""A closed vocabulary for beam search: hypotheses may only spell words of a word list.

A quarter of the teacher's substitutions are non-words, words spelt as they sound
(``asrprune vocabulary-errors``). Decoders built on a lexicon (Kaldi's and k2's HLG, for
example) cannot make them: every path spells words. Here the lexicon is a prefix tree
over each word's BPE tokens. SentencePiece never joins pieces across a space, so a word's
tokens are the same alone as in any sentence, and a piece that starts with the word
boundary mark starts a word. After a hypothesis's tokens, a token is allowed if it
extends the current partial word towards some word, or if it starts a word once the
current one is complete. The price is that words outside the list cannot be recognised.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import torch

from asrprune.data.tokenizer import BLANK_ID, Tokenizer
from asrprune.errors import AsrpruneError

WORD_BOUNDARY = "\u2581"  # SentencePiece's mark at the start of a word's first piece


class Lexicon:
    """The token sequences of ``words``; ``starts_word[v]`` tells whether token v begins one."""

    def __init__(self, words: Iterable[Sequence[int]], starts_word: Sequence[bool]):
        self.vocab_size = len(starts_word)
        self.starts_word = tuple(bool(s) for s in starts_word)
        self.words: set[tuple[int, ...]] = set()
        self.children: dict[tuple[int, ...], set[int]] = defaultdict(set)
        for word in words:
            word = tuple(word)
            if not word or not self.starts_word[word[0]]:
                raise AsrpruneError(f"lexicon: word {word} does not begin with a word-start token")
            if any(self.starts_word[t] for t in word[1:]):
                raise AsrpruneError(f"lexicon: word {word} has a word-start token inside it")
            self.words.add(word)
            for i, token in enumerate(word):
                self.children[word[:i]].add(token)
        if not self.words:
            raise AsrpruneError("lexicon: no words")
        self._masks: dict[tuple[int, ...], torch.Tensor] = {}

    @classmethod
    def from_texts(cls, texts: Iterable[str], tokenizer: Tokenizer) -> Lexicon:
        """The distinct words of ``texts``, each tokenised alone."""
        words = {w for text in texts for w in text.split()}
        starts = [
            tokenizer.id_to_piece(v).startswith(WORD_BOUNDARY) for v in range(tokenizer.vocab_size)
        ]
        starts[BLANK_ID] = False
        return cls((tokenizer.encode(w) for w in sorted(words)), starts)

    def partial_word(self, tokens: Sequence[int]) -> tuple[int, ...]:
        """The tokens since the last word start: the word being spelt (() before any)."""
        i = len(tokens)
        while i > 0:
            i -= 1
            if self.starts_word[tokens[i]]:
                return tuple(tokens[i:])
        return ()

    def complete(self, tokens: Sequence[int]) -> bool:
        """Whether ``tokens`` end with a whole word (or are empty)."""
        partial = self.partial_word(tokens)
        return not partial or partial in self.words

    def mask(self, tokens: Sequence[int]) -> torch.Tensor:
        """(V,) 0 for the tokens allowed after ``tokens`` (and blank), -inf for the rest."""
        partial = self.partial_word(tokens)
        if partial not in self._masks:
            allowed = set(self.children.get(partial, ()))
            if partial in self.words:
                allowed |= self.children[()]
            mask = torch.full((self.vocab_size,), float("-inf"))
            mask[BLANK_ID] = 0.0
            if allowed:
                mask[sorted(allowed)] = 0.0
            self._masks[partial] = mask
        return self._masks[partial]
