"""What the full decoding's n-gram is counted on: ``data/lm_text.txt``, one sentence a line.

Two sources (config ``evaluate.lm_text``):

- ``transcripts``: the training split's transcripts, nothing else (the paper's kind of
  setup, where the LM knows only what the recogniser was trained on);
- ``pool`` (embedded corpus only): every sentence of the training books and domains,
  synthesised or not and of any length, as LibriSpeech's LM corpus is text beyond its
  training transcripts. It is :func:`asrprune.data.sentences.assign_splits`'s training
  share of all sentences: held-out books, commentary on them and the held-out domain
  never reach it, and a sentence shared with an evaluation book is not an evaluation
  sentence.

Either way the file is checked against every evaluation transcript of the run: one found
in it is an error naming the split, so no LM ever saw a test sentence.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from asrprune.data.manifest import read_manifest
from asrprune.data.sentences import assign_splits, extract_domain
from asrprune.errors import AsrpruneError
from asrprune.io import atomic_open


def pool_texts(
    domains: Iterable[str], newtext_domain: str | None, cache_dir: str | Path | None
) -> list[str]:
    """The training share of every sentence of ``domains`` (and of ``newtext_domain``, so
    that its sentences are claimed by test-newtext), any length, each text once."""
    domains = list(domains)
    wanted = domains + ([newtext_domain] if newtext_domain is not None else [])
    sentences = [s for d in wanted for s in extract_domain(d, cache_dir)]
    return [s.text for s in assign_splits(sentences, newtext_domain=newtext_domain)["train"]]


def write_lm_text(
    texts: Iterable[str], out: str | os.PathLike, evaluation: Mapping[str, str | os.PathLike]
) -> dict:
    """Write ``texts`` to ``out`` (atomically) unless one is an evaluation transcript of
    the manifests ``evaluation`` (split -> manifest); returns counts."""
    texts = [t.strip() for t in texts if t.strip()]
    if not texts:
        raise AsrpruneError(f"LM text {out}: no sentence to write")
    kept = set(texts)
    for split, manifest in evaluation.items():
        for u in read_manifest(manifest):
            if u.text in kept:
                raise AsrpruneError(
                    f"LM text {out}: holds the {split} transcript {u.text!r} ({manifest}, "
                    f"utterance {u.id}); an LM must not see evaluation text"
                )
    with atomic_open(out) as f:
        f.writelines(t + "\n" for t in texts)
    return {
        "sentences": len(texts),
        "distinct": len(kept),
        "words": sum(len(t.split()) for t in texts),
    }
