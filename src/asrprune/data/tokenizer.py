"""SentencePiece BPE tokenizer with id 0 reserved for the transducer blank.

The trained model is small (a few hundred kB at most), so model files embed it as bytes
(``to_tensor`` / ``from_tensor``): a checkpoint then decodes on its own, with
``torch.load(weights_only=True)``, wherever it is copied.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Sequence
from pathlib import Path

import sentencepiece as spm
import torch

from asrprune.errors import AsrpruneError
from asrprune.io import atomic_open

BLANK_ID = 0
BLANK_PIECE = "<blk>"
UNK_ID = 1
_MAX_VOCAB = re.compile(r"value <= (\d+)")
_MIN_VOCAB = re.compile(r"smaller than required_chars\. \d+ vs (\d+)")


def train_bpe(texts: Sequence[str], vocab_size: int, model_path: str | os.PathLike) -> Tokenizer:
    """Train a BPE model on ``texts`` and write it atomically to ``model_path``.

    Deterministic: one thread, every sentence used, no sampling or shuffling, and a
    fixed seed for SentencePiece's global generator. The vocabulary size is exact
    (``hard_vocab_limit`` stays on): a corpus too small for ``vocab_size`` is an error
    giving the largest size it supports, rather than a smaller vocabulary that silently
    disagrees with the configured model; one below the character set gives the smallest.
    Ids: 0 = ``<blk>`` (blank, never produced by ``encode``), 1 = ``<unk>``, no BOS/EOS.
    """
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise AsrpruneError(f"no non-empty transcript to train the tokenizer for {model_path}")
    if vocab_size < 3:
        raise AsrpruneError(f"tokenizer vocab_size must be at least 3, got {vocab_size}")
    spm.set_random_generator_seed(1234)
    buffer = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts),
            model_writer=buffer,
            model_type="bpe",
            vocab_size=vocab_size,
            character_coverage=1.0,
            # transcripts are normalised already; the tokenizer must not alter them
            normalization_rule_name="identity",
            pad_id=BLANK_ID,
            pad_piece=BLANK_PIECE,
            unk_id=UNK_ID,
            bos_id=-1,
            eos_id=-1,
            num_threads=1,
            input_sentence_size=0,
            shuffle_input_sentence=False,
            max_sentence_length=1 << 16,
            minloglevel=2,
        )
    except RuntimeError as e:
        m = _MAX_VOCAB.search(str(e))
        if m:
            raise AsrpruneError(
                f"tokenizer vocab_size {vocab_size} is too large for {len(texts)} transcripts; "
                f"this corpus supports at most {m.group(1)}"
            ) from None
        m = _MIN_VOCAB.search(str(e))
        if m:
            raise AsrpruneError(
                f"tokenizer vocab_size {vocab_size} is too small: the transcripts need at least "
                f"{m.group(1)} (every character plus <blk> and <unk>)"
            ) from None
        raise AsrpruneError(f"SentencePiece training failed for {model_path}: {e}") from None
    with atomic_open(model_path, "wb") as f:
        f.write(buffer.getvalue())
    return Tokenizer.from_bytes(buffer.getvalue())


class Tokenizer:
    """Text <-> token ids. ``vocab_size`` counts the blank; ``blank_id`` is 0."""

    blank_id = BLANK_ID

    def __init__(self, processor: spm.SentencePieceProcessor, source: str = "<bytes>"):
        if processor.id_to_piece(BLANK_ID) != BLANK_PIECE:
            raise AsrpruneError(
                f"tokenizer {source}: id {BLANK_ID} is {processor.id_to_piece(BLANK_ID)!r}, "
                f"expected the blank {BLANK_PIECE!r}; train it with asrprune.data.tokenizer"
            )
        self.sp = processor
        self.source = source

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokenizer:
        if not Path(path).is_file():
            raise AsrpruneError(f"tokenizer model not found: {path}")
        return cls.from_bytes(Path(path).read_bytes(), str(path))

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "<bytes>") -> Tokenizer:
        sp = spm.SentencePieceProcessor()
        try:
            sp.LoadFromSerializedProto(bytes(data))
        except (RuntimeError, OSError) as e:
            raise AsrpruneError(f"tokenizer {source}: not a SentencePiece model ({e})") from None
        return cls(sp, source)

    def to_bytes(self) -> bytes:
        return self.sp.serialized_model_proto()

    @classmethod
    def from_tensor(cls, t: torch.Tensor, source: str = "<tensor>") -> Tokenizer:
        """Inverse of :meth:`to_tensor`."""
        return cls.from_bytes(t.cpu().numpy().tobytes(), source)

    def to_tensor(self) -> torch.Tensor:
        """The model as a uint8 tensor (n_bytes,), storable in a weights_only checkpoint."""
        return torch.frombuffer(bytearray(self.to_bytes()), dtype=torch.uint8)

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text, out_type=int)

    def decode(self, ids: Sequence[int]) -> str:
        """Ids to text; the blank and out-of-range ids are dropped."""
        n = self.vocab_size
        return self.sp.decode([int(i) for i in ids if 0 < int(i) < n])

    def id_to_piece(self, i: int) -> str:
        return self.sp.id_to_piece(int(i))
