"""Sentences for the embedded corpus, read from English texts that Debian ships.

The two public-domain Bibles are the core (the scripture domain): the World English Bible
(SWORD module read with ``diatheke``) and the King James Bible (``bible`` from bible-kjv).
Verses are joined per chapter and cut at sentence and clause punctuation, so utterances
are short, natural stretches of text. Whole books go to one split, and an identical
transcript never lands in two splits, so test text is never trained on. Other domains
(commentaries, dictionaries; :mod:`asrprune.data.domains`) go to training, or, for the
one held out, to ``test-newtext``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from asrprune.data import domains as D
from asrprune.data.manifest import SPLITS
from asrprune.data.text import APOSTROPHES, has_digits, normalize_transcript, word_count
from asrprune.data.voices import check_programs
from asrprune.errors import AsrpruneError
from asrprune.io import atomic_open

WEB_MODULE = "engWEB2015eb"
# Program -> Debian package, for the error that names what to install.
TEXT_PROGRAMS = {"diatheke": "diatheke", "bible": "bible-kjv"}
CACHE_VERSION = 1

# The 66 books common to both Bibles: WEB name (our canonical book name), KJV abbreviation.
BOOKS = (
    ("Genesis", "Ge"), ("Exodus", "Exo"), ("Leviticus", "Lev"), ("Numbers", "Num"),
    ("Deuteronomy", "Deu"), ("Joshua", "Josh"), ("Judges", "Jdgs"), ("Ruth", "Ruth"),
    ("I Samuel", "1Sm"), ("II Samuel", "2Sm"), ("I Kings", "1Ki"), ("II Kings", "2Ki"),
    ("I Chronicles", "1Chr"), ("II Chronicles", "2Chr"), ("Ezra", "Ezra"),
    ("Nehemiah", "Neh"), ("Esther", "Est"), ("Job", "Job"), ("Psalms", "Psa"),
    ("Proverbs", "Prv"), ("Ecclesiastes", "Eccl"), ("Song of Solomon", "SSol"),
    ("Isaiah", "Isa"), ("Jeremiah", "Jer"), ("Lamentations", "Lam"), ("Ezekiel", "Eze"),
    ("Daniel", "Dan"), ("Hosea", "Hos"), ("Joel", "Joel"), ("Amos", "Amos"),
    ("Obadiah", "Obad"), ("Jonah", "Jonah"), ("Micah", "Mic"), ("Nahum", "Nahum"),
    ("Habakkuk", "Hab"), ("Zephaniah", "Zep"), ("Haggai", "Hag"), ("Zechariah", "Zec"),
    ("Malachi", "Mal"), ("Matthew", "Mat"), ("Mark", "Mark"), ("Luke", "Luke"),
    ("John", "John"), ("Acts", "Acts"), ("Romans", "Rom"), ("I Corinthians", "1Cor"),
    ("II Corinthians", "2Cor"), ("Galatians", "Gal"), ("Ephesians", "Eph"),
    ("Philippians", "Phi"), ("Colossians", "Col"), ("I Thessalonians", "1Th"),
    ("II Thessalonians", "2Th"), ("I Timothy", "1Tim"), ("II Timothy", "2Tim"),
    ("Titus", "Titus"), ("Philemon", "Phmn"), ("Hebrews", "Heb"), ("James", "Jas"),
    ("I Peter", "1Pet"), ("II Peter", "2Pet"), ("I John", "1Jn"), ("II John", "2Jn"),
    ("III John", "3Jn"), ("Jude", "Jude"), ("Revelation of John", "Rev"),
)  # fmt: skip
_KJV_TO_BOOK = {abbrev: name for name, abbrev in BOOKS}
# Greek additions travel with the book they extend, so their shared text stays together.
_BOOK_ALIASES = {
    "Esther (Greek)": "Esther",
    "Prayer of Azariah": "Daniel",
    "Susanna": "Daniel",
    "Bel and the Dragon": "Daniel",
}

# Held-out books: narrative and poetry, Old and New Testament, in each evaluation split.
# Every other book (the deuterocanon included) is training text.
HELDOUT_BOOKS = {
    "dev": ("Joshua", "Ecclesiastes", "Mark", "Philippians", "Jonah"),
    "test-clean": ("Ruth", "Lamentations", "Micah", "John", "Galatians", "James"),
    "test-other": ("Judges", "Song of Solomon", "Hosea", "Acts", "I Peter", "Jude"),
}
NEWTEXT_SPLIT = "test-newtext"


@dataclass(frozen=True)
class Sentence:
    """One sentence: what the engine reads and what the transcript says."""

    text: str  # LibriSpeech-style transcript (upper case, no punctuation)
    spoken: str  # the same words with punctuation kept, for natural prosody
    book: str  # canonical book name; the unit that goes to one split
    chapter: int
    source: str  # "web", "kjv", or another source of asrprune.data.domains

    @property
    def domain(self) -> str:
        return D.domain_of(self.source)


_REF_WEB = re.compile(r"(?:^|>)([^<>]*?) (\d+):(\d+): ")
_REF_KJV = re.compile(r"^(\w+?)(\d+):(\d+) (.*)$")
_TITLE = re.compile(r"<title\b[^>]*>.*?</title>", re.S)
_APPENDIX = re.compile(r'<div\b[^>]*type="(?:glossary|introduction)".*', re.S)
_TAG = re.compile(r"<[^>]*>")
# A sentence or clause ends at . ! ? ; : and any closing quotes or brackets after it.
_SENTENCE_END = re.compile(r"[.!?;:][\"'”’)\]]*(?=\s)")
_QUOTES = re.compile(r"[\"“”()\[\]{}]")
_STRAY_APOSTROPHE = re.compile(r"(?<![A-Za-z])'|'(?![A-Za-z])")
_DASHES = re.compile(r"[\u2010-\u2015]+")
_SPOKEN_OK = re.compile(r"^[A-Za-z][A-Za-z ,.;:!?'-]*$")
_ALL_CAPS = re.compile(r"\b[A-Z]{2,}\b")
_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+(?=[,.;:!?])")


def _run(cmd: list[str], package: str) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise AsrpruneError(
            f"program {cmd[0]!r} not found; install the Debian package {package!r}"
        ) from None
    if out.returncode != 0:
        raise AsrpruneError(
            f"{' '.join(cmd)} failed (exit {out.returncode}): {out.stderr.strip()[:300]}"
        )
    return out.stdout


def _sword_lines(module: str, package: str) -> str:
    """The whole of a SWORD module, Genesis to Revelation, as diatheke prints it."""
    modules = _run(["diatheke", "-b", "system", "-k", "modulelist"], "diatheke")
    if not re.search(rf"^{re.escape(module)}\s*:", modules, re.M):
        raise AsrpruneError(
            f"SWORD module {module!r} is not installed; install the Debian package "
            f"{package!r} (diatheke -b system -k modulelist lists what is there)"
        )
    return _run(["diatheke", "-b", module, "-k", "Gen-Rev"], "diatheke")


def parse_web(raw: str) -> Iterator[tuple[str, int, str]]:
    """Yield (book, chapter, verse text) from diatheke's OSIS output, one verse a line.

    Titles are dropped (diatheke repeats the last psalm title before later verses); every
    other tag becomes a space, which also repairs words the module glues together
    (``God</w><w>created``). The glossary appended to the last verse is cut off.
    """
    for line in raw.splitlines():
        ref = _REF_WEB.search(line)
        if ref is None:
            continue
        book = ref.group(1).strip()
        book = _BOOK_ALIASES.get(book, book)
        text = _APPENDIX.sub("", _TITLE.sub(" ", line[ref.end() :]))
        yield book, int(ref.group(2)), _TAG.sub(" ", text)


def parse_kjv(raw: str) -> Iterator[tuple[str, int, str]]:
    """Yield (book, chapter, verse text) from ``bible -f`` output (``Ge1:1 In the ...``)."""
    for line in raw.splitlines():
        m = _REF_KJV.match(line.strip())
        if m is None:
            continue
        if m.group(1) not in _KJV_TO_BOOK:
            raise AsrpruneError(f"bible-kjv: unknown book abbreviation {m.group(1)!r}")
        yield _KJV_TO_BOOK[m.group(1)], int(m.group(2)), m.group(4)


def split_sentences(text: str) -> list[str]:
    """Cut running text after sentence and clause punctuation (. ! ? ; :)."""
    parts, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        parts.append(text[start : m.end()])
        start = m.end()
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def to_spoken(raw: str) -> str | None:
    """Return the text an engine should read, or None if it cannot be transcribed safely.

    Digits, symbols and anything outside plain English letters and punctuation are
    refused, since the engine would read them in ways the transcript cannot predict.
    All-capital words (KJV's LORD) are title-cased so that no engine spells them out.
    """
    if has_digits(raw):
        return None
    text = unicodedata.normalize("NFKD", raw)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = _QUOTES.sub(" ", text.translate(APOSTROPHES))
    text = _STRAY_APOSTROPHE.sub(" ", _DASHES.sub(" ", text))
    text = _SPACE_BEFORE_PUNCT.sub("", _SPACES.sub(" ", text)).strip(" ,;:-")
    if not text or not _SPOKEN_OK.match(text):
        return None
    return _ALL_CAPS.sub(lambda m: m.group(0).capitalize(), text)


def _chapters(verses: Iterable[tuple[str, int, str]]) -> Iterator[tuple[str, int, str]]:
    """Join consecutive verses of a chapter: sentences often run across verse breaks."""
    key, parts = None, []
    for book, chapter, text in verses:
        if (book, chapter) != key:
            if key is not None:
                yield *key, " ".join(parts)
            key, parts = (book, chapter), []
        parts.append(text)
    if key is not None:
        yield *key, " ".join(parts)


def sentences_from_verses(verses: Iterable[tuple[str, int, str]], source: str) -> list[Sentence]:
    """Every usable sentence of the verses, in text order (no length filter, no dedupe)."""
    return [
        s
        for book, chapter, text in _chapters(verses)
        for s in sentences_of(text, book, chapter, source)
    ]


def sentences_of(
    text: str, book: str, chapter: int, source: str, refuse: bool = False
) -> list[Sentence]:
    """The usable sentences of one stretch of running text, in order. ``refuse``: also
    drop sentences with an abbreviation or acronym (:func:`domains.refuse_unpredictable`)."""
    out = []
    for raw in split_sentences(_SPACES.sub(" ", text)):
        if refuse and D.refuse_unpredictable(raw):
            continue
        spoken = to_spoken(raw)
        transcript = normalize_transcript(spoken) if spoken else ""
        if transcript:
            out.append(Sentence(transcript, spoken, book, chapter, source))
    return out


def cache_file(cache_dir: str | Path, domain: str = "scripture") -> Path:
    """Where :func:`extract_domain` keeps a domain's sentences inside ``cache_dir``."""
    stem = "bible" if domain == "scripture" else domain
    return Path(cache_dir) / f"{stem}-sentences-v{CACHE_VERSION}.json"


def _bible_sentences() -> list[Sentence]:
    check_programs(TEXT_PROGRAMS, TEXT_PROGRAMS)
    web = sentences_from_verses(parse_web(_sword_lines(WEB_MODULE, "sword-text-web")), "web")
    kjv = sentences_from_verses(
        parse_kjv(_run(["bible", "-f", "Gen1:1-Rev22:21"], "bible-kjv")), "kjv"
    )
    if len(web) < 10_000 or len(kjv) < 10_000:
        raise AsrpruneError(
            f"Bible text looks incomplete ({len(web)} WEB, {len(kjv)} KJV sentences); "
            "reinstall the Debian packages 'sword-text-web' and 'bible-kjv-text'"
        )
    return web + kjv


def _distinct_verses(verses: Iterable[tuple[str, int, str]]) -> Iterator[tuple[str, int, str]]:
    """Drop a verse whose text repeats the one before: diatheke prints a commentary note
    once for every verse it spans."""
    last = None
    for verse in verses:
        if verse[2] != last:
            yield verse
        last = verse[2]


def commentary_sentences(source: str) -> list[Sentence]:
    """Sentences of one SWORD commentary, keyed by the Bible chapter they comment on."""
    module = D.COMMENTARY_MODULES[source]
    package = f"sword-comm-{source}"
    return sentences_from_verses(_distinct_verses(parse_web(_sword_lines(module, package))), source)


def dictionary_sentences(source: str, directory: Path = D.DICTD_DIR) -> list[Sentence]:
    """Sentences of one dictd database; an entry is the unit (``book`` = the domain,
    ``chapter`` = entry number), and sentences an engine may expand are refused."""
    domain = D.SOURCE_DOMAIN[source]
    return [
        s
        for number, (head, body) in enumerate(D.read_dictd(source, directory), 1)
        for s in sentences_of(
            D.clean_entry(source, head, body), domain, number, source, refuse=True
        )
    ]


def _read_domain(domain: str) -> list[Sentence]:
    if domain == "scripture":
        return _bible_sentences()
    sources = D.DOMAINS[domain].sources
    if domain == "commentary":
        return [s for source in sources for s in commentary_sentences(source)]
    return [s for source in sources for s in dictionary_sentences(source)]


def extract_domain(domain: str, cache_dir: str | Path | None = None) -> list[Sentence]:
    """All sentences of one text domain, cached as JSON in ``cache_dir``.

    Reading through diatheke takes seconds to a minute; the cache makes reruns instant.
    The cache file name carries a version, so a change of the extraction rules rebuilds it.
    """
    if domain not in D.DOMAINS:
        raise AsrpruneError(f"unknown text domain {domain!r}; known: {list(D.DOMAINS)}")
    cache = cache_file(cache_dir, domain) if cache_dir is not None else None
    if cache is not None and cache.is_file():
        try:
            with open(cache, encoding="utf-8") as f:
                return [Sentence(**row) for row in json.load(f)]
        except (json.JSONDecodeError, TypeError) as e:
            raise AsrpruneError(f"{cache}: unreadable sentence cache ({e}); delete it") from e
    sentences = _read_domain(domain)
    if cache is not None:
        with atomic_open(cache) as f:
            json.dump([dataclasses.asdict(s) for s in sentences], f)
    return sentences


def extract_sentences(cache_dir: str | Path | None = None) -> list[Sentence]:
    """All sentences of both Bibles (WEB first): the scripture domain."""
    return extract_domain("scripture", cache_dir)


def filter_sentences(
    sentences: Iterable[Sentence], min_words: int, max_words: int
) -> list[Sentence]:
    """Keep sentences of ``min_words`` to ``max_words`` words (duplicates are left to
    :func:`assign_splits`, which knows which copy to keep)."""
    if not 1 <= min_words <= max_words:
        raise AsrpruneError(
            f"min_words={min_words}, max_words={max_words}: need 1 <= min_words <= max_words"
        )
    return [s for s in sentences if min_words <= word_count(s.text) <= max_words]


def book_split(book: str, heldout: dict[str, tuple[str, ...]] = HELDOUT_BOOKS) -> str:
    for split, books in heldout.items():
        if book in books:
            return split
    return "train"


def sentence_split(
    sentence: Sentence,
    heldout: dict[str, tuple[str, ...]] = HELDOUT_BOOKS,
    newtext_domain: str | None = None,
) -> str | None:
    """The split a sentence belongs to, or None if it must not be used at all.

    Scripture goes by book; the held-out domain to ``test-newtext``; every other domain
    trains, except commentary on a held-out book, which would paraphrase test text.
    """
    domain = sentence.domain
    if domain == newtext_domain:
        return NEWTEXT_SPLIT
    if domain == "scripture":
        return book_split(sentence.book, heldout)
    if domain == "commentary" and book_split(sentence.book, heldout) != "train":
        return None
    return "train"


def assign_splits(
    sentences: Iterable[Sentence],
    heldout: dict[str, tuple[str, ...]] = HELDOUT_BOOKS,
    newtext_domain: str | None = None,
) -> dict[str, list[Sentence]]:
    """Group sentences by split (:func:`sentence_split`); each transcript in one split only.

    A transcript found in several splits (a stock phrase, one verse that two books share,
    a quotation) is kept in the first of train, dev, test-clean, test-other, test-newtext,
    so evaluation text is never seen in training. Order within a split is the input order.
    """
    unknown = set(heldout) - set(SPLITS[1:])
    if unknown:
        raise AsrpruneError(f"held-out books: unknown split(s) {sorted(unknown)}")
    order = [*SPLITS, *([NEWTEXT_SPLIT] if newtext_domain is not None else [])]
    by_split: dict[str, list[Sentence]] = {split: [] for split in order}
    for s in sentences:
        split = sentence_split(s, heldout, newtext_domain)
        if split is not None:
            by_split[split].append(s)
    taken: set[str] = set()
    for split in order:
        kept = []
        for s in by_split[split]:
            if s.text not in taken:
                taken.add(s.text)
                kept.append(s)
        by_split[split] = kept
    return by_split


def check_domain_choice(domains: Iterable[str], newtext_domain: str | None) -> None:
    """Training domains must include scripture (the evaluation books) and exclude the
    held-out domain; errors read ``<setting>=<value>: <why>``."""
    domains = list(domains)
    known = list(D.DOMAINS)
    if not set(domains) <= set(known):
        raise AsrpruneError(f"text_domains={domains}: unknown domain; known: {known}")
    if "scripture" not in domains:
        raise AsrpruneError(
            f"text_domains={domains}: must include scripture, the text of dev, test-clean "
            "and test-other"
        )
    if newtext_domain is not None and newtext_domain not in known:
        raise AsrpruneError(f"newtext_domain={newtext_domain!r}: unknown; known: {known}")
    if newtext_domain in domains:
        raise AsrpruneError(
            f"newtext_domain={newtext_domain!r}: also a training domain; a held-out "
            "domain must not be trained on"
        )


def load_split_sentences(
    min_words: int,
    max_words: int,
    cache_dir: str | Path | None = None,
    domains: Iterable[str] = ("scripture",),
    newtext_domain: str | None = None,
) -> dict[str, list[Sentence]]:
    """Sentences per split, filtered by length, unique within and across splits.

    ``domains`` are read in the order given (scripture first keeps the Bible-only corpus
    unchanged); ``newtext_domain``, if given, becomes ``test-newtext``.
    """
    domains = list(domains)
    check_domain_choice(domains, newtext_domain)
    wanted = domains + ([newtext_domain] if newtext_domain is not None else [])
    sentences = [s for d in wanted for s in extract_domain(d, cache_dir)]
    return assign_splits(
        filter_sentences(sentences, min_words, max_words), newtext_domain=newtext_domain
    )
