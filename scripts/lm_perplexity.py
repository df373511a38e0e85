"""How well does each LM text predict the evaluation sentences? Token perplexity per split.

The embedded corpus is planned from its config alone (which sentence each utterance
reads; nothing is synthesised), a BPE is trained on the planned training transcripts as
rule train_bpe does, and the full decoding's n-gram (config ``evaluate.lm``: order,
discount) is counted on each source of ``asrprune.data.lm_text``: the training
transcripts and the text pool. It prints, per evaluation split, the perplexity per token
of the split's planned transcripts, as a Markdown table.

    .venv/bin/python scripts/lm_perplexity.py config/config.yaml config/candidate.yaml

The sentence cache (``--cache``) is the corpus's own format: pointing it at a run's
``corpus/cache`` skips reading the Bibles and commentaries again.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

from asrprune.config import load_config
from asrprune.data.corpus import EmbeddedCorpusSettings, plan_corpus
from asrprune.data.lm_text import pool_texts
from asrprune.data.sentences import load_split_sentences
from asrprune.data.tokenizer import train_bpe
from asrprune.model.ngram import TokenNgram


def perplexity(lm: TokenNgram, sequences: list[list[int]]) -> float:
    """exp of the mean negative log-probability per token of ``sequences``."""
    total = count = 0
    for seq in sequences:
        for i, token in enumerate(seq):
            total -= math.log(lm.probs(lm.history(seq[:i]))[token])
            count += 1
    return math.exp(total / count)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("configs", nargs="+", help="config files, merged in order")
    p.add_argument("--cache", type=Path, help="sentence cache folder (default: a temporary one)")
    a = p.parse_args()
    config = load_config(*a.configs)
    settings = EmbeddedCorpusSettings.from_dict(config["data"]["embedded"])
    lm = config["evaluate"]["lm"]
    domains = settings.training_domains
    with tempfile.TemporaryDirectory() as tmp:
        cache = a.cache or Path(tmp) / "cache"
        sentences = load_split_sentences(
            settings.min_words, settings.max_words, cache, domains, settings.newtext_domain
        )
        planned: dict[str, list[str]] = {}
        for job in plan_corpus(settings, Path(tmp), sentences):
            planned.setdefault(job.split, []).append(job.sentence.text)
        tokenizer = train_bpe(
            planned["train"], config["data"]["tokenizer"]["vocab_size"], Path(tmp) / "bpe.model"
        )
        texts = {
            "transcripts": planned["train"],
            "pool": pool_texts(domains, settings.newtext_domain, cache),
        }
    splits = [s for s in planned if s != "train"]
    print(f"| LM text | sentences | words | {' | '.join(splits)} |")
    print(f"| --- | ---: | ---: |{' ---: |' * len(splits)}")
    for name, lines in texts.items():
        counted = TokenNgram(
            (tokenizer.encode(t) for t in lines), tokenizer.vocab_size, lm["order"], lm["discount"]
        )
        ppl = [perplexity(counted, [tokenizer.encode(t) for t in planned[s]]) for s in splits]
        words = sum(len(t.split()) for t in lines)
        print(
            f"| {name} | {len(lines)} | {words} | {' | '.join(f'{x:.2f}' for x in ppl)} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
