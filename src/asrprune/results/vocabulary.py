"""Which of a model's word errors lie outside the training text's words?

A transducer with BPE tokens spells every word, so two kinds of error point at two
different cures. Reference words never seen in the training text can only be spelt from
their sound; no word list learnt from that text knows them. Substitutions by a
hypothesis word the training text never has (DESIPLES for DISCIPLES) are non-words that a
lexicon or a word language model would rule out. Both are counted from the saved
hypotheses (``metrics/<model>.hyps/<split>.jsonl``) and the training manifest.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import jiwer

from asrprune.data.manifest import read_manifest
from asrprune.errors import AsrpruneError
from asrprune.results.significance import read_hyps


@dataclass(frozen=True)
class VocabularyErrors:
    """Word errors of one split, split by whether the words occur in the training text."""

    split: str
    ref_words: int
    unseen_ref_words: int  # reference words absent from the training text
    errors: int  # substitutions + deletions + insertions
    errors_on_unseen: int  # substitutions and deletions of unseen reference words
    substitutions: int
    nonword_substitutions: int  # substitutions whose hypothesis word is absent

    def points(self, count: int) -> float:
        """``count`` errors as points of WER."""
        return 100.0 * count / self.ref_words


def training_words(manifest: str | os.PathLike) -> set[str]:
    """Every word of the transcripts of a manifest (the training split's)."""
    return {w for u in read_manifest(manifest) for w in u.text.split()}


def vocabulary_errors(
    refs: Sequence[str], hyps: Sequence[str], known: Iterable[str], split: str = ""
) -> VocabularyErrors:
    """Align each pair (as jiwer does for WER) and count errors by the words' novelty."""
    if len(refs) != len(hyps) or not refs:
        raise AsrpruneError(f"{split or 'split'}: {len(refs)} references, {len(hyps)} hypotheses")
    known = set(known)
    out = jiwer.process_words(list(refs), list(hyps))
    on_unseen = nonword = 0
    for ref, hyp, chunks in zip(out.references, out.hypotheses, out.alignments, strict=True):
        for c in chunks:
            if c.type in ("substitute", "delete"):
                on_unseen += sum(w not in known for w in ref[c.ref_start_idx : c.ref_end_idx])
            if c.type == "substitute":
                nonword += sum(w not in known for w in hyp[c.hyp_start_idx : c.hyp_end_idx])
    return VocabularyErrors(
        split=split,
        ref_words=sum(len(r) for r in out.references),
        unseen_ref_words=sum(w not in known for r in out.references for w in r),
        errors=out.substitutions + out.deletions + out.insertions,
        errors_on_unseen=on_unseen,
        substitutions=out.substitutions,
        nonword_substitutions=nonword,
    )


def model_vocabulary_errors(
    metrics_dir: str | os.PathLike, model: str, train_manifest: str | os.PathLike, splits
) -> list[VocabularyErrors]:
    """:func:`vocabulary_errors` of a run's model on each split, from its hypotheses."""
    known = training_words(train_manifest)
    out = []
    for split in splits:
        rows = read_hyps(metrics_dir, model, split)
        refs, hyps = [r["ref"] for r in rows], [r["hyp"] for r in rows]
        out.append(vocabulary_errors(refs, hyps, known, split))
    return out
