"""The token n-gram LM of the full decoding: its settings, what it is counted on, and the
decoding record (beam and LM) an export carries."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from asrprune.data.manifest import read_manifest
from asrprune.data.tokenizer import Tokenizer
from asrprune.errors import AsrpruneError
from asrprune.model.decoding import Fusion
from asrprune.model.ngram import TokenNgram


@dataclass(frozen=True)
class LmSettings:
    """A token n-gram for shallow fusion (``order`` 0: none), counted on training text."""

    order: int = 0
    weight: float = 0.2
    token_bonus: float = 0.9
    discount: float = 0.7

    def __post_init__(self):
        if self.order < 0:
            raise AsrpruneError(f"lm order must be 0 (no LM) or more, got {self.order}")
        if self.weight < 0:
            raise AsrpruneError(f"lm weight must be >= 0, got {self.weight}")


NO_LM = LmSettings()


@dataclass(frozen=True)
class Decoding:
    """The full decoding evaluation uses: beam width, LM settings and the token sequences
    the n-gram is counted on (none without an LM). An export carries it, so that
    transcription decodes as evaluation did unless told otherwise."""

    beam: int
    lm: LmSettings = NO_LM
    lm_sequences: tuple[tuple[int, ...], ...] = ()

    def fusion(self, vocab_size: int) -> Fusion | None:
        return ngram_fusion(self.lm_sequences, vocab_size, self.lm, self.beam)


def lm_text_or_transcripts(lm_text: str | os.PathLike | None, data: str | os.PathLike) -> Path:
    """``lm_text`` if given, else the training transcripts of the run's ``data`` folder:
    what the command-line tools count the n-gram on by default."""
    return Path(lm_text) if lm_text else Path(data) / "manifests/train.jsonl"


def read_lm_text(path: str | os.PathLike) -> list[str]:
    """The sentences an n-gram is counted on: a text file's lines (the workflow's
    ``data/lm_text.txt``), or the transcripts of a manifest (``.jsonl``)."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return [u.text for u in read_manifest(path)]
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise AsrpruneError(f"LM text {path}: cannot read it ({e})") from None
    texts = [line.strip() for line in lines if line.strip()]
    if not texts:
        raise AsrpruneError(f"LM text {path}: no sentence to count the n-gram on")
    return texts


def lm_sequences(path: str | os.PathLike, tokenizer: Tokenizer) -> list[list[int]]:
    """:func:`read_lm_text` of ``path`` in the model's own tokens: what the n-gram is
    counted on, and what an export keeps to rebuild it."""
    return [tokenizer.encode(text) for text in read_lm_text(path)]


def ngram_fusion(
    sequences: Iterable[Sequence[int]], vocab_size: int, settings: LmSettings, beam: int
) -> Fusion | None:
    """Shallow fusion of a token n-gram counted on ``sequences``, for a search of width
    ``beam``; None when ``settings.order`` is 0."""
    if settings.order == 0:
        return None
    if beam <= 1:
        raise AsrpruneError(f"a language model needs beam search (beam >= 2), got beam {beam}")
    lm = TokenNgram(sequences, vocab_size, settings.order, settings.discount)
    return Fusion(lm, settings.weight, settings.token_bonus)


def transcript_lm(
    lm_text: str | os.PathLike | None, tokenizer: Tokenizer, settings: LmSettings, beam: int
) -> Fusion | None:
    """:func:`ngram_fusion` counted on ``lm_text`` (:func:`read_lm_text`) in the model's own
    tokens; None when ``settings.order`` is 0."""
    if settings.order == 0:
        return None
    if beam <= 1:  # before reading the text
        raise AsrpruneError(f"a language model needs beam search (beam >= 2), got beam {beam}")
    if lm_text is None:
        raise AsrpruneError(f"a {settings.order}-gram LM needs the text it is counted on")
    return ngram_fusion(lm_sequences(lm_text, tokenizer), tokenizer.vocab_size, settings, beam)
