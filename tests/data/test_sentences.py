"""Bible sentences: parsing, normalisation, length filter, and split disjointness."""

import shutil

import pytest

from asrprune.data import sentences as S
from asrprune.errors import AsrpruneError


def _sentence(text, book="Genesis", chapter=1, source="web"):
    return S.Sentence(text, text.lower(), book, chapter, source)


def test_split_sentences_cuts_at_sentence_and_clause_ends():
    text = "God said, “Let there be light;” and there was light. Is it good? Yes: it is!"
    assert S.split_sentences(text) == [
        "God said, “Let there be light;”",
        "and there was light.",
        "Is it good?",
        "Yes:",
        "it is!",
    ]


@pytest.mark.parametrize(
    ("raw", "spoken"),
    [
        ("God said, “Let there be light,”", "God said, Let there be light"),
        ("the LORD’s house", "the Lord's house"),
        ("‘Please let down your pitcher,’", "Please let down your pitcher"),
        ("burnt-offering (a gift)", "burnt-offering a gift"),
        ("Élan and naïve", "Elan and naive"),
        ("in the 12th year", None),
        ("fifty % of it", None),
        ("", None),
    ],
)
def test_to_spoken(raw, spoken):
    assert S.to_spoken(raw) == spoken


def test_sentences_run_across_verses_within_a_chapter_only():
    verses = [
        ("Genesis", 1, "In the beginning God created"),
        ("Genesis", 1, "the heavens and the earth. It was good; in 3 days"),
        ("Genesis", 2, "the next chapter starts here."),
    ]
    got = S.sentences_from_verses(verses, "web")
    assert [(s.text, s.chapter) for s in got] == [
        ("IN THE BEGINNING GOD CREATED THE HEAVENS AND THE EARTH", 1),
        ("IT WAS GOOD", 1),
        ("THE NEXT CHAPTER STARTS HERE", 2),
    ]
    assert got[0].spoken == "In the beginning God created the heavens and the earth."


def test_parse_web_drops_titles_and_glossary_and_unglues_words():
    raw = (
        '<title type="psalm">A Psalm by David.</title> <l/>Psalms 3:1: '
        '<w savlm="x">God</w><w savlm="y">created</w> light, ‘<w>hi</w>’.\n'
        "Esther (Greek) 1:1: [In the second year.]\n"
        'Revelation of John 22:21: Amen. <div type="glossary"/> Abba means father.\n'
        "(engWEB2015eb)\n"
    )
    got = [(b, c, " ".join(t.split())) for b, c, t in S.parse_web(raw)]
    assert got == [
        ("Psalms", 3, "God created light, ‘ hi ’."),
        ("Esther", 1, "[In the second year.]"),
        ("Revelation of John", 22, "Amen."),
    ]


def test_parse_kjv_maps_abbreviations_to_book_names():
    raw = "Ge1:1 In the beginning God created.\n1Sm3:4 That the LORD called Samuel:\n"
    assert list(S.parse_kjv(raw)) == [
        ("Genesis", 1, "In the beginning God created."),
        ("I Samuel", 3, "That the LORD called Samuel:"),
    ]
    with pytest.raises(AsrpruneError, match="Xyz"):
        list(S.parse_kjv("Xyz1:1 Unknown book."))


def test_filter_sentences_by_word_count():
    items = [_sentence("ONE TWO"), _sentence("ONE TWO THREE"), _sentence("A B C D E F")]
    assert [s.text for s in S.filter_sentences(items, 3, 5)] == ["ONE TWO THREE"]
    with pytest.raises(AsrpruneError, match="min_words=5"):
        S.filter_sentences(items, 5, 3)


def test_assign_splits_keeps_a_shared_transcript_in_training_only():
    items = [
        _sentence("AND IT WAS SO", book="Jude", source="kjv"),  # test-other book, first
        _sentence("AND IT WAS SO", book="Genesis"),  # the same transcript in training
        _sentence("GRACE TO YOU", book="Jude"),
        _sentence("GRACE TO YOU", book="Jude", source="kjv"),  # twice in one split
        _sentence("HE WENT", book="Mark"),
    ]
    got = {k: [s.text for s in v] for k, v in S.assign_splits(items).items()}
    assert got == {
        "train": ["AND IT WAS SO"],
        "dev": ["HE WENT"],
        "test-clean": [],
        "test-other": ["GRACE TO YOU"],
    }


@pytest.fixture(scope="session")
def bible_cache(tmp_path_factory):
    """One cache per test session, shared with test_corpus (same base temp folder)."""
    if shutil.which("diatheke") is None or shutil.which("bible") is None:
        pytest.skip("diatheke or bible (Debian sword-text-web, bible-kjv) not installed")
    return tmp_path_factory.getbasetemp() / "bible-sentences"


def test_real_bible_splits_are_disjoint_by_book_and_text(bible_cache):
    splits = S.load_split_sentences(4, 20, bible_cache)
    assert set(splits) == set(S.SPLITS)
    books = {k: {s.book for s in v} for k, v in splits.items()}
    texts = {k: {s.text for s in v} for k, v in splits.items()}
    for i, a in enumerate(S.SPLITS):
        assert len(texts[a]) == len(splits[a]), f"duplicate transcript inside {a}"
        assert len(splits[a]) > 2000, (a, len(splits[a]))
        for b in S.SPLITS[i + 1 :]:
            assert not books[a] & books[b], (a, b)
            assert not texts[a] & texts[b], (a, b, sorted(texts[a] & texts[b])[:3])
    everything = [s for v in splits.values() for s in v]
    assert {s.source for s in everything} == {"web", "kjv"}
    assert all(4 <= len(s.text.split()) <= 20 for s in everything)
    assert all(s.text == S.normalize_transcript(s.spoken) for s in everything)
    # The cache gives back the same sentences, in the same order.
    assert S.load_split_sentences(4, 20, bible_cache) == splits


def test_extraction_names_missing_programs_and_packages(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AsrpruneError, match=r"bible \(Debian package bible-kjv\)"):
        S.extract_sentences(tmp_path / "cache")
