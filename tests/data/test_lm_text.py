"""What the n-gram is counted on: the text pool's hold-outs, the check against evaluation
transcripts, and reading either kind of LM text."""

import pytest

from asrprune.data import lm_text as L
from asrprune.data import sentences as S
from asrprune.data.manifest import Utterance, write_manifest
from asrprune.errors import AsrpruneError
from asrprune.lm import read_lm_text

LONG = " ".join(["WORD"] * 30)  # over the corpus's 20 words: the pool keeps it


def _sentence(text, source, book="Genesis"):
    return S.Sentence(text, text.lower(), book, 1, source)


SENTENCES = {
    "scripture": [
        _sentence("IN THE BEGINNING", "web"),
        _sentence(LONG, "kjv", "Exodus"),
        _sentence("AMEN", "kjv"),  # one word: too short to synthesise, fine to count
        _sentence("WHITHER THOU GOEST I WILL GO", "web", "Ruth"),  # test-clean
        _sentence("BE STRONG AND OF A GOOD COURAGE", "web", "Joshua"),  # dev
        _sentence("SHARED BY TWO BOOKS HERE", "web", "Judges"),  # test-other
        _sentence("SHARED BY TWO BOOKS HERE", "kjv", "Genesis"),  # ... and training
    ],
    "commentary": [
        _sentence("RUTH CHOSE WELL", "mhcc", "Ruth"),  # on a test book: never used
        _sentence("ADAM NAMED THEM", "mhcc", "Genesis"),
    ],
    "jargon": [_sentence("A QUICK HACK", "jargon")],
    "devil": [_sentence("A BORE IS A PERSON WHO TALKS", "devil")],
}


@pytest.fixture
def fake_domains(monkeypatch):
    monkeypatch.setattr(L, "extract_domain", lambda domain, cache_dir=None: SENTENCES[domain])
    monkeypatch.setattr(S, "extract_domain", lambda domain, cache_dir=None: SENTENCES[domain])


def test_the_pool_is_every_training_sentence_and_no_evaluation_one(fake_domains):
    pool = L.pool_texts(["scripture", "commentary", "jargon"], "devil", None)
    assert pool == [
        "IN THE BEGINNING",
        LONG,
        "AMEN",
        "SHARED BY TWO BOOKS HERE",
        "ADAM NAMED THEM",
        "A QUICK HACK",
    ]
    # the corpus's own evaluation sentences (4-20 words) are none of it
    splits = S.load_split_sentences(4, 20, None, ["scripture", "commentary", "jargon"], "devil")
    evaluation = {s.text for split, got in splits.items() if split != "train" for s in got}
    assert evaluation == {
        "WHITHER THOU GOEST I WILL GO",
        "BE STRONG AND OF A GOOD COURAGE",
        "A BORE IS A PERSON WHO TALKS",
    }
    assert not evaluation & set(pool)
    # a domain not trained on stays out even when nothing is held out as test-newtext
    assert "A QUICK HACK" not in L.pool_texts(["scripture"], None, None)


def _manifest(path, texts):
    write_manifest(path, [Utterance(f"u{i}", "a.flac", 1.0, t, "s") for i, t in enumerate(texts)])
    return path


def test_an_evaluation_transcript_in_the_lm_text_is_refused_by_split(tmp_path):
    test = _manifest(tmp_path / "test-clean.jsonl", ["A TEST SENTENCE"])
    out = tmp_path / "lm_text.txt"
    with pytest.raises(AsrpruneError, match=r"test-clean transcript 'A TEST SENTENCE'.*u0"):
        L.write_lm_text(["A TRAINING SENTENCE", "A TEST SENTENCE"], out, {"test-clean": test})
    assert not out.exists()  # nothing half written
    counts = L.write_lm_text(
        ["A TRAINING SENTENCE", " ", "A TRAINING SENTENCE"], out, {"test-clean": test}
    )
    assert counts == {"sentences": 2, "distinct": 1, "words": 6}
    assert read_lm_text(out) == ["A TRAINING SENTENCE", "A TRAINING SENTENCE"]


def test_lm_text_reads_lines_or_a_manifests_transcripts(tmp_path):
    assert read_lm_text(_manifest(tmp_path / "train.jsonl", ["ONE", "TWO"])) == ["ONE", "TWO"]
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(AsrpruneError, match="empty.txt: no sentence"):
        read_lm_text(tmp_path / "empty.txt")
    with pytest.raises(AsrpruneError, match="missing.txt: cannot read"):
        read_lm_text(tmp_path / "missing.txt")
