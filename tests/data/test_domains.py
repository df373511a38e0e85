"""Text domains beyond the Bibles: dictd reading, markup cleaning, split rules, sampling,
and the hold-outs (a held-out domain never reaches training)."""

import gzip
import itertools
import shutil
from collections import Counter

import numpy as np
import pytest

from asrprune.data import corpus as C
from asrprune.data import domains as D
from asrprune.data import sentences as S
from asrprune.data import voices as V
from asrprune.errors import AsrpruneError

needs_dictd = pytest.mark.skipif(
    not all((D.DICTD_DIR / f"{n}.index").is_file() for n in ("jargon", "devil")),
    reason="needs the Debian packages dict-jargon and dict-devil",
)


def _dictd_number(n):
    digits = ""
    while True:
        n, r = divmod(n, 64)
        digits = D._B64[r] + digits
        if n == 0:
            return digits


def _write_dictd(directory, name, entries):
    """A dictd database of (headword, text) entries; the first headword of an entry may
    be followed by aliases that share its text."""
    data, index = b"", []
    for heads, text in entries:
        offset, body = len(data), text.encode()
        data += body
        for head in heads:
            index.append(f"{head}\t{_dictd_number(offset)}\t{_dictd_number(len(body))}")
    with gzip.open(directory / f"{name}.dict.dz", "wb") as f:
        f.write(data)
    (directory / f"{name}.index").write_text("\n".join(sorted(index)) + "\n")


def test_dictd_numbers_decode():
    assert D.dictd_number("A") == 0 and D.dictd_number("b") == 27
    assert D.dictd_number("BA") == 64
    assert all(D.dictd_number(_dictd_number(n)) == n for n in (0, 63, 64, 4095, 123456))
    with pytest.raises(AsrpruneError, match="bad number"):
        D.dictd_number("A!")


def test_read_dictd_reads_each_entry_once_in_file_order_without_its_own_metadata(tmp_path):
    _write_dictd(
        tmp_path,
        "toy",
        [
            (["00-database-info"], "licence text\n"),
            (["zebra", "zebras"], "zebra\n  A striped horse.\n"),
            (["aardvark"], "aardvark\n  An animal that digs.\n"),
        ],
    )
    got = list(D.read_dictd("toy", tmp_path))
    assert [head for head, _ in got] == ["zebra", "aardvark"]
    assert got[1][1] == "aardvark\n  An animal that digs.\n"
    with pytest.raises(AsrpruneError, match="dict-nothing"):
        list(D.read_dictd("nothing", tmp_path))


@pytest.mark.parametrize(
    ("source", "head", "body", "cleaned"),
    [
        (
            "jargon",
            "ad-hockery",
            "ad-hockery\n /ad·hok'@r·ee/, n.\n\n    [Purdue]\n\n    1. Gratuitous"
            " assumptions, see {choke}.\n\n    2. Special code.\n",
            "Gratuitous assumptions, see choke. Special code.",
        ),
        (
            "foldoc",
            "actor",
            "actor\n\n   1. <programming> In {object-oriented} programming, an {object}.\n"
            '   {(http://osl.cs.uiuc.edu/)}.\n   ["Laws", C. Hewitt, IFIP 77].\n'
            "   (1994-11-08)\n",
            "In object-oriented programming, an object. . .",
        ),
        (
            "devil",
            "ABNORMAL",
            "ABNORMAL, adj.  Not conforming to standard.  To be independent is to be\nabnormal.\n",
            "Not conforming to standard. To be independent is to be abnormal.",
        ),
        (
            "gcide",
            "Alcohol",
            'Alcohol \\Al"co*hol\\ ([a^]l"k[-o]*h[o^]l), n. [Cf. F. alcool,\n'
            "   Ar. al-kohl, powder. Cf. {Alquifou}.]\n   1. An impalpable powder. [Obs.]\n"
            "      [1913 Webster]\n\n   2. The pure spirit of wine. (Chem.) --Boyle.\n"
            '      [1913 Webster]\n\n   Syn.: spirit.\n   3. Hence \\Al`co*hol"ic\\, drunk.\n',
            "An impalpable powder. The pure spirit of wine. Hence , drunk.",
        ),
    ],
)
def test_clean_entry_drops_markup_and_keeps_running_text(source, head, body, cleaned):
    assert " ".join(D.clean_entry(source, head, body).split()) == cleaned


@pytest.mark.parametrize(
    ("sentence", "refused"),
    [
        ("The CPU was slow.", True),
        ("Cut it short, e.g. here.", True),
        ("A JavaScript program.", True),
        ("Ask Dr. Smith.", True),
        ("A quick fox, then a lazy dog.", False),
        ("I said it twice.", False),
    ],
)
def test_abbreviations_and_acronyms_are_refused(sentence, refused):
    assert D.refuse_unpredictable(sentence) is refused


def test_dictionary_sentences_are_one_domain_keyed_by_entry(tmp_path):
    _write_dictd(
        tmp_path,
        "jargon",
        [
            (["hack"], "hack\n /hak/\n\n    A quick job that works. The CPU did it.\n"),
            (["kludge"], "kludge\n /klooj/\n\n    A clumsy fix, often clever; it holds.\n"),
        ],
    )
    got = S.dictionary_sentences("jargon", tmp_path)
    assert [(s.text, s.chapter, s.domain) for s in got] == [
        ("A QUICK JOB THAT WORKS", 1, "jargon"),
        ("A CLUMSY FIX OFTEN CLEVER", 2, "jargon"),
        ("IT HOLDS", 2, "jargon"),
    ]


def _sentence(text, source, book="Genesis"):
    return S.Sentence(text, text.lower(), book, 1, source)


def test_split_rules_hold_the_newtext_domain_and_commentary_on_test_books_out():
    assert S.sentence_split(_sentence("A", "devil"), newtext_domain="devil") == "test-newtext"
    assert S.sentence_split(_sentence("A", "jargon"), newtext_domain="devil") == "train"
    assert S.sentence_split(_sentence("A", "kjv", "Ruth")) == "test-clean"
    assert S.sentence_split(_sentence("A", "mhcc", "Ruth")) is None
    assert S.sentence_split(_sentence("A", "mhcc", "Genesis")) == "train"


def test_a_transcript_shared_with_training_leaves_test_newtext():
    items = [
        _sentence("SHARED WORDS HERE", "devil"),
        _sentence("ONLY THE DEVIL SAID", "devil"),
        _sentence("SHARED WORDS HERE", "jargon"),
        _sentence("ONLY IN GENESIS", "web"),
    ]
    got = S.assign_splits(items, newtext_domain="devil")
    assert list(got) == ["train", "dev", "test-clean", "test-other", "test-newtext"]
    assert [s.text for s in got["test-newtext"]] == ["ONLY THE DEVIL SAID"]
    assert [(s.text, s.source) for s in got["train"]] == [
        ("SHARED WORDS HERE", "jargon"),
        ("ONLY IN GENESIS", "web"),
    ]
    assert list(S.assign_splits(items[2:])) == ["train", "dev", "test-clean", "test-other"]


@pytest.mark.parametrize(
    ("domains", "newtext", "message"),
    [
        (["jargon"], None, "must include scripture"),
        (["scripture", "poems"], None, "unknown domain"),
        (["scripture", "devil"], "devil", "also a training domain"),
        (["scripture"], "poems", "newtext_domain='poems': unknown"),
    ],
)
def test_bad_domain_choices_name_the_setting(domains, newtext, message):
    with pytest.raises(AsrpruneError, match=message):
        S.check_domain_choice(domains, newtext)
    settings = {"text_domains": dict.fromkeys(domains, 1.0), "newtext_domain": newtext}
    utterances = {"train": 1, "dev": 1, "test-clean": 1, "test-other": 1}
    with pytest.raises(AsrpruneError, match="embedded corpus setting"):
        C.EmbeddedCorpusSettings(**settings, utterances=utterances)


def test_newtext_needs_its_utterance_count():
    counts = {"train": 1, "dev": 1, "test-clean": 1, "test-other": 1}
    with pytest.raises(AsrpruneError, match="test-newtext"):
        C.EmbeddedCorpusSettings(newtext_domain="devil", utterances=counts)
    s = C.EmbeddedCorpusSettings(newtext_domain="devil", utterances={**counts, "test-newtext": 2})
    assert s.splits[-1] == "test-newtext"
    assert C.EmbeddedCorpusSettings().splits == ("train", "dev", "test-clean", "test-other")


def _pool(n_scripture, n_jargon):
    return [_sentence(f"S {i}", "web") for i in range(n_scripture)] + [
        _sentence(f"J {i}", "jargon") for i in range(n_jargon)
    ]


def test_training_sentences_follow_the_domain_shares_and_stay_prefix_stable():
    settings = C.EmbeddedCorpusSettings(text_domains={"scripture": 0.75, "jargon": 0.25})
    pool = _pool(5000, 40)
    pick = C._sentence_picker("train", pool, settings)
    drawn = [pick(i) for i in range(4000)]
    share = Counter(s.domain for s in drawn)["jargon"] / len(drawn)
    assert 0.22 < share < 0.28  # binomial sd 0.007
    jargon = [s.text for s in drawn if s.domain == "jargon"]
    # the small domain is read through once before any sentence repeats
    assert len(set(jargon[:40])) == 40
    again = C._sentence_picker("train", pool, settings)
    assert [again(i) for i in range(500)] == drawn[:500]


def test_one_domain_walks_the_sentences_as_before():
    settings = C.EmbeddedCorpusSettings()
    pool = _pool(30, 0)
    pick = C._sentence_picker("train", pool, settings)
    order = C._Cycler(30, settings.seed, C._SENTENCE, 0)
    assert [pick(i) for i in range(60)] == [pool[order[i]] for i in range(60)]


def test_a_training_domain_without_sentences_is_an_error():
    settings = C.EmbeddedCorpusSettings(text_domains={"scripture": 1, "jargon": 1, "foldoc": 1})
    with pytest.raises(AsrpruneError, match="foldoc"):
        C._sentence_picker("train", _pool(5, 5), settings)


@needs_dictd
def test_real_dictionaries_give_thousands_of_clean_sentences():
    for source, least in (("devil", 1500), ("jargon", 4000)):
        got = S.filter_sentences(S.dictionary_sentences(source), 4, 20)
        assert len(got) > least
        assert all(s.domain == source and S._SPOKEN_OK.match(s.spoken) for s in got)
        assert not any(D.refuse_unpredictable(s.spoken) for s in got)


@pytest.mark.skipif(
    not (D.DICTD_DIR / "gcide.index").is_file(), reason="needs the Debian package dict-gcide"
)
def test_webster_entries_give_clean_sentences():
    # the first 3,000 of its 200,000 entries: reading all takes a minute
    entries = itertools.islice(D.read_dictd("gcide"), 3000)
    got = [
        s
        for n, (head, body) in enumerate(entries, 1)
        for s in S.sentences_of(D.clean_entry("gcide", head, body), "webster", n, "gcide", True)
    ]
    got = S.filter_sentences(got, 4, 20)
    assert len(got) > 1000
    assert all(s.domain == "webster" and S._SPOKEN_OK.match(s.spoken) for s in got)
    assert not any(D.refuse_unpredictable(s.spoken) for s in got)


@pytest.mark.skipif(
    any(shutil.which(p) is None for p in V.ENGINE_PROGRAMS.values()),
    reason="the voice catalogue needs espeak-ng, flite and festival",
)
def test_plan_keeps_the_held_out_domain_and_voices_out_of_training(tmp_path):
    pool = {
        "train": _pool(200, 100),
        "dev": [_sentence(f"D {i}", "web", "Joshua") for i in range(20)],
        "test-clean": [_sentence(f"C {i}", "web", "Ruth") for i in range(20)],
        "test-other": [_sentence(f"O {i}", "web", "Judges") for i in range(20)],
        "test-newtext": [_sentence(f"N {i}", "devil") for i in range(20)],
    }
    settings = C.EmbeddedCorpusSettings(
        text_domains={"scripture": 0.5, "jargon": 0.5},
        newtext_domain="devil",
        utterances={"train": 60, "dev": 5, "test-clean": 5, "test-other": 5, "test-newtext": 8},
        train_speakers=10,
        test_other_speakers=4,
    )
    plan = C.plan_corpus(settings, tmp_path, pool)
    by_split = {s: [p for p in plan if p.split == s] for s in settings.splits}
    assert len(by_split["test-newtext"]) == 8
    assert {p.sentence.domain for p in by_split["test-newtext"]} == {"devil"}
    assert {p.sentence.domain for p in by_split["train"]} == {"scripture", "jargon"}
    # training voices, clean audio
    train_speakers = {p.speaker for p in by_split["train"]} | {p.speaker for p in by_split["dev"]}
    pools = C.speaker_pool(C.split_voices(settings)[0], 10, settings, 0)
    assert {p.speaker for p in by_split["test-newtext"]} <= set(pools)
    assert not any(p.noise_kind for p in by_split["test-newtext"])
    assert train_speakers <= set(pools)
    assert np.all([p.id.endswith(f"{p.index:06d}") for p in plan])
