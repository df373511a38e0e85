"""Text domains of the embedded corpus beyond the two Bibles.

A corpus read from one book style teaches a recogniser one style; researchers use the
embedded run as a stand-in for LibriSpeech, whose test text is not its training text. So
the corpus can mix in more kinds of English that Debian ships with a licence that allows
it, and hold one whole domain out of training for the ``test-newtext`` split:

============  ========================================  =====================  ============
domain        text                                      Debian packages        licence
============  ========================================  =====================  ============
scripture     World English Bible, King James Bible     sword-text-web,        public domain
                                                        bible-kjv-text
commentary    Matthew Henry's Concise Commentary,       sword-comm-mhcc,       public domain
              Spurgeon's Treasury of David, Scofield    sword-comm-tdavid,
              Reference Notes                           sword-comm-scofield
jargon        The Jargon File (hacker English)          dict-jargon            public domain
foldoc        Free On-line Dictionary of Computing      dict-foldoc            GFDL 1.2
devil         Ambrose Bierce, The Devil's Dictionary    dict-devil             public domain
webster       Webster's 1913 dictionary in GCIDE:       dict-gcide             GPL-2+ (the
              definitions and the quotations in them                           1913 text is
                                                                               public domain)
============  ========================================  =====================  ============

The corpus is synthesised on the user's machine and not redistributed; FOLDOC's GFDL and
GCIDE's GPL ask anyone who shares the transcripts to share them under the same licence.

Commentary is keyed by the Bible chapter it comments on; commentary on a held-out book is
dropped, so no evaluation book is paraphrased in training. Dictionary text is cleaned of
markup (cross-references, pronunciations, citations, URLs) before the shared sentence
rules of :mod:`asrprune.data.sentences` apply. Abbreviations and acronyms are refused
rather than guessed: an engine may spell out "CPU" or say "for example" for "e.g.", and
the transcript cannot know which.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from asrprune.errors import AsrpruneError

DICTD_DIR = Path("/usr/share/dictd")


@dataclass(frozen=True)
class Domain:
    """One kind of English text: where it comes from and how it is read."""

    name: str
    sources: tuple[str, ...]  # Sentence.source values of this domain
    packages: tuple[str, ...]  # Debian packages that provide it
    licence: str


DOMAINS = {
    d.name: d
    for d in (
        Domain("scripture", ("web", "kjv"), ("sword-text-web", "bible-kjv-text"), "public domain"),
        Domain(
            "commentary",
            ("mhcc", "tdavid", "scofield"),
            ("sword-comm-mhcc", "sword-comm-tdavid", "sword-comm-scofield"),
            "public domain",
        ),
        Domain("jargon", ("jargon",), ("dict-jargon",), "public domain"),
        Domain("foldoc", ("foldoc",), ("dict-foldoc",), "GFDL 1.2"),
        Domain("devil", ("devil",), ("dict-devil",), "public domain"),
        Domain("webster", ("gcide",), ("dict-gcide",), "GPL-2+"),
    )
}
SOURCE_DOMAIN = {source: d.name for d in DOMAINS.values() for source in d.sources}
# SWORD commentary modules (diatheke module name) per source.
COMMENTARY_MODULES = {"mhcc": "MHCC", "tdavid": "TDavid", "scofield": "Scofield"}


def domain_of(source: str) -> str:
    try:
        return SOURCE_DOMAIN[source]
    except KeyError:
        raise AsrpruneError(
            f"unknown text source {source!r}; known: {sorted(SOURCE_DOMAIN)}"
        ) from None


# dictd's index stores offsets and lengths in its own base-64 digits.
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VALUE = {c: i for i, c in enumerate(_B64)}


def dictd_number(digits: str) -> int:
    """Decode a dictd index number (``"BdqM"``)."""
    n = 0
    for c in digits:
        if c not in _B64_VALUE:
            raise AsrpruneError(f"dictd index: bad number {digits!r}")
        n = n * 64 + _B64_VALUE[c]
    return n


def read_dictd(name: str, directory: Path = DICTD_DIR) -> Iterator[tuple[str, str]]:
    """Yield (headword, entry text) of a dictd database in file order, each entry once.

    Entries that several headwords point at are read once; the database's own
    ``00-database-*`` entries (licence, URL) are skipped.
    """
    index, data = directory / f"{name}.index", directory / f"{name}.dict.dz"
    if not index.is_file() or not data.is_file():
        package = f"dict-{name}"
        raise AsrpruneError(f"dictd database {name!r} not found in {directory}; install {package}")
    with gzip.open(data, "rb") as f:
        raw = f.read()
    entries: dict[int, tuple[str, int]] = {}
    for lineno, line in enumerate(index.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split("\t")
        if len(fields) < 3:
            raise AsrpruneError(f"{index}:{lineno}: expected headword, offset, length")
        head = fields[0]
        if head.startswith("00database") or head.startswith("00-database"):
            continue
        entries.setdefault(dictd_number(fields[1]), (head, dictd_number(fields[2])))
    for offset in sorted(entries):
        head, length = entries[offset]
        yield head, raw[offset : offset + length].decode("utf-8", errors="replace")


_LINKS = re.compile(r"\{([^{}]*)\}")  # {cross-reference} -> its words
_ANGLE = re.compile(r"<[^<>]*>")  # FOLDOC's <subject> and e-mail addresses
_BRACKETS = re.compile(r"\[[^\[\]]*\]")  # etymology notes and citations
_PRONUNCIATION = re.compile(r"/[^/\s][^/]*/,?")  # Jargon's /ad·hok'@r·ee/
_URL = re.compile(r"\(?\b(?:https?|ftp)://[^\s)}\]]*\)?")
_SENSE_NUMBER = re.compile(r"(?m)^\s*\d+\.\s+")
_DATE_STAMP = re.compile(r"\(\d{4}-\d\d-\d\d\)")
# Jargon's part-of-speech line after the pronunciation: "n.", "adj.,vt.", "interj."
_POS_LINE = re.compile(r"(?m)^\s*(?:[a-z]+\.(?:\s*,?\s*(?:and\s+)?[a-z]+\.)*)\s*$")
# Devil's headword: "ABNORMAL, adj.  " or "ABRACADABRA."
_DEVIL_HEAD = re.compile(r"^\s*[A-Z][A-Z' -]*(?:,\s*[a-z. ]+?)?\.\s+")
# GCIDE's markup: the pronunciation \Al"co*hol\, its phonetic spelling ([a^]l"k[-o]h[o^]l),
# a quotation's author "--Shak." and subject labels "(Chem.)"; the headword and part of
# speech before the first definition ("Alcohol , n.", "Abase , v. t.").
_GCIDE_PRONUNCIATION = re.compile(r"\\[^\\\n]*\\")
_GCIDE_PHONETIC = re.compile(r"\([^()]*[\[\]\"*`^][^()]*\)")
_GCIDE_AUTHOR = re.compile(r"--\s*[A-Z][A-Za-z.' &]*?(?:\.|$)", re.M)
_GCIDE_LABEL = re.compile(r"\((?:[A-Z][A-Za-z]*\.?\s*)+\)")
_GCIDE_HEAD = re.compile(r"^[^\n]*?,\s*(?:[a-z]+\.\s*(?:&|,)?\s*)+")
_GCIDE_ASIDE = re.compile(r"(?m)^\s*(?:Syn\.|Note:).*$")
# Tokens an engine may expand in ways the transcript cannot predict.
_ABBREVIATION = re.compile(r"\b(?:[A-Za-z]\.){2,}|\b(?:etc|vs|cf|viz|ca|Dr|Mr|Mrs|St)\.")
_ACRONYM = re.compile(r"\b[A-Z]{2,}s?\b|\b[A-Za-z]*[A-Z][a-z]*[A-Z]\w*")


def clean_entry(source: str, head: str, body: str) -> str:
    """Running text of one dictionary entry, markup removed, headword line dropped."""
    lines = body.splitlines()
    if source in ("jargon", "foldoc") and lines and lines[0].strip() == head.strip():
        lines = lines[1:]
    text = "\n".join(lines)
    if source == "devil":
        text = _DEVIL_HEAD.sub("", text, count=1)
    if source == "gcide":  # before brackets go: its phonetic spellings hold some
        text = _GCIDE_PHONETIC.sub(" ", _GCIDE_PRONUNCIATION.sub(" ", text))
    text = _URL.sub(" ", text)
    text = _LINKS.sub(r"\1", text)
    text = _BRACKETS.sub(" ", _ANGLE.sub(" ", text))
    text = _DATE_STAMP.sub(" ", text)
    if source == "jargon":
        text = _POS_LINE.sub(" ", _PRONUNCIATION.sub(" ", text))
    if source == "gcide":
        text = _GCIDE_LABEL.sub(" ", _GCIDE_AUTHOR.sub(" ", _GCIDE_ASIDE.sub(" ", text)))
        text = _GCIDE_HEAD.sub(" ", text, count=1)
    return _SENSE_NUMBER.sub(" ", text)


def refuse_unpredictable(sentence: str) -> bool:
    """True if ``sentence`` holds an abbreviation or acronym an engine may expand."""
    return bool(_ABBREVIATION.search(sentence) or _ACRONYM.search(sentence))
