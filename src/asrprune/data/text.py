"""Transcript normalisation in LibriSpeech style: upper case, letters, apostrophes, spaces."""

from __future__ import annotations

import re
import unicodedata

# Typographic apostrophes and backticks read as the plain one.
APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'"})
# Hyphens and slashes separate words ("burnt-offering"); all other punctuation just goes.
_SEPARATORS = re.compile(r"[-\u2010-\u2015/_]+")
_NOT_KEPT = re.compile(r"[^A-Z' ]+")
# An apostrophe survives only inside a word (DON'T), never as a quote mark.
_STRAY_APOSTROPHE = re.compile(r"(?<![A-Z])'|'(?![A-Z])")
_SPACES = re.compile(r"\s+")
_DIGIT = re.compile(r"\d")


def normalize_transcript(text: str) -> str:
    """Return ``text`` upper-cased with punctuation removed; "" if no word is left.

    Accents are folded to their base letter (ÉLAN -> ELAN). Digits are kept out of the
    result; callers that must reject them check :func:`has_digits` first, since a
    number cannot be normalised without knowing how it is read.
    """
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.translate(APOSTROPHES).upper()
    text = _SEPARATORS.sub(" ", text)
    text = _NOT_KEPT.sub(" ", text)
    text = _STRAY_APOSTROPHE.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def has_digits(text: str) -> bool:
    return bool(_DIGIT.search(text))


def word_count(text: str) -> int:
    return len(text.split())
