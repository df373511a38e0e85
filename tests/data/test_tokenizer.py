"""SentencePiece BPE with the transducer blank at id 0."""

from __future__ import annotations

import io

import pytest
import sentencepiece as spm
import torch

from asrprune.data.tokenizer import Tokenizer, train_bpe
from asrprune.errors import AsrpruneError

SENTENCES = [
    "IN THE BEGINNING GOD CREATED THE HEAVEN AND THE EARTH",
    "AND THE EARTH WAS WITHOUT FORM AND VOID",
    "AND DARKNESS WAS UPON THE FACE OF THE DEEP",
    "AND THE SPIRIT OF GOD MOVED UPON THE FACE OF THE WATERS",
    "AND GOD SAID LET THERE BE LIGHT AND THERE WAS LIGHT",
    "HE DIDN'T KNOW WHY THE QUICK BROWN FOX JUMPED OVER THE LAZY DOG",
    "SHE'S A JOLLY GOOD FELLOW EXCLAIMED ZACHARIAH",
    "SIX VIXENS QUIETLY WAXED THEIR SKIS",
]


def test_round_trip_and_blank(tmp_path):
    tok = train_bpe(SENTENCES, 64, tmp_path / "bpe.model")
    assert tok.vocab_size == 64 and tok.blank_id == 0
    assert tok.id_to_piece(0) == "<blk>"
    loaded = Tokenizer.load(tmp_path / "bpe.model")
    unseen = ["GOD SAW THE LIGHT", "WHY DIDN'T THE DOG JUMP", "A"]
    for text in SENTENCES + unseen:
        ids = loaded.encode(text)
        assert ids and 0 not in ids
        assert all(0 < i < tok.vocab_size for i in ids)
        assert loaded.decode(ids) == text
    # blanks in a hypothesis are ignored
    ids = loaded.encode(SENTENCES[0])
    assert loaded.decode([0, *ids[:2], 0, *ids[2:], 0]) == SENTENCES[0]


def test_training_is_deterministic(tmp_path):
    train_bpe(SENTENCES, 50, tmp_path / "a.model")
    train_bpe(list(SENTENCES), 50, tmp_path / "b.model")
    assert (tmp_path / "a.model").read_bytes() == (tmp_path / "b.model").read_bytes()


def test_vocab_too_large_names_the_limit(tmp_path):
    with pytest.raises(AsrpruneError, match=r"at most \d+"):
        train_bpe(SENTENCES, 5000, tmp_path / "x.model")
    assert not (tmp_path / "x.model").exists()
    with pytest.raises(AsrpruneError, match=r"too small: the transcripts need at least \d+"):
        train_bpe(SENTENCES, 10, tmp_path / "x.model")
    with pytest.raises(AsrpruneError, match="no non-empty"):
        train_bpe(["", "  "], 50, tmp_path / "x.model")


def test_bytes_and_tensor_round_trip(tmp_path):
    tok = train_bpe(SENTENCES, 50, tmp_path / "bpe.model")
    assert Tokenizer.from_bytes(tok.to_bytes()).encode(SENTENCES[3]) == tok.encode(SENTENCES[3])
    torch.save({"tokenizer": tok.to_tensor()}, tmp_path / "m.pt")
    blob = torch.load(tmp_path / "m.pt", weights_only=True)["tokenizer"]
    assert blob.dtype == torch.uint8
    again = Tokenizer.from_tensor(blob)
    assert again.to_bytes() == tok.to_bytes()
    assert again.decode(again.encode(SENTENCES[5])) == SENTENCES[5]


def test_foreign_models_are_refused(tmp_path):
    with pytest.raises(AsrpruneError, match="not a SentencePiece model"):
        Tokenizer.from_bytes(b"garbage")
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES), model_writer=buf, vocab_size=40, minloglevel=2
    )
    with pytest.raises(AsrpruneError, match="blank"):
        Tokenizer.from_bytes(buf.getvalue())
    with pytest.raises(AsrpruneError, match="not found"):
        Tokenizer.load(tmp_path / "missing.model")
