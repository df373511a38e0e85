"""How much would a token n-gram language model help a model's beam search?

Most of the teacher's word errors are words spelt as they sound, and many hypothesis words
are non-words (``asrprune vocabulary-errors``). This script counts a token n-gram
(``asrprune.model.ngram``) on the run's training transcripts (or ``--lm-text``), with
the model's own tokenizer, and decodes each split with modified beam search, first alone
and then with shallow fusion at each ``WEIGHT:BONUS`` setting (LM weight, bonus per
emitted token). It prints a Markdown table of WER. Choose the setting on dev; read
test-clean and test-other only for the chosen one.

    .venv/bin/python scripts/lm_fusion.py --model results/embedded/models/teacher.pt \\
        --data results/embedded/data --order 6 --fusion 0.2:0.9 0.3:1.2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from asrprune.cli import positive_int
from asrprune.data.batching import UtteranceDataset
from asrprune.data.manifest import read_manifest
from asrprune.decode import decode_dataset
from asrprune.evaluate import word_errors
from asrprune.lm import LmSettings, lm_text_or_transcripts, transcript_lm
from asrprune.model.decoding import Fusion
from asrprune.model.lexicon import Lexicon
from asrprune.model_file import open_model_file


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model file")
    p.add_argument("--data", required=True, help="the run's data/ folder")
    p.add_argument("--splits", nargs="+", default=["dev", "test-clean", "test-other"])
    p.add_argument(
        "--lm-text",
        help="what the n-gram is counted on: a text file (the run's data/lm_text.txt) or a"
        " manifest (default: DATA/manifests/train.jsonl)",
    )
    p.add_argument("--order", type=int, default=6, help="n-gram order, in tokens")
    p.add_argument("--discount", type=float, default=0.7, help="absolute discount")
    p.add_argument("--fusion", nargs="+", default=["0.2:0.9"], help="WEIGHT:BONUS settings")
    p.add_argument(
        "--lexicon", action="store_true", help="also restrict every setting to training words"
    )
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--batch-frames", type=int, default=20000)
    p.add_argument("--threads", type=positive_int, default=2)
    a = p.parse_args()
    if a.order < 1:
        p.error(f"--order must be 1 or more, got {a.order}")
    torch.set_num_threads(a.threads)

    f = open_model_file(a.model)
    model, tokenizer, cmvn = f.model, f.tokenizer, f.cmvn
    data = Path(a.data)
    start = time.perf_counter()
    lm_text = lm_text_or_transcripts(a.lm_text, data)
    lm = transcript_lm(lm_text, tokenizer, LmSettings(a.order, discount=a.discount), a.beam).lm
    print(f"{a.order}-gram counted on {lm_text} in {time.perf_counter() - start:.1f} s")
    lexicon = None
    if a.lexicon:
        texts = (u.text for u in read_manifest(data / "manifests/train.jsonl"))
        lexicon = Lexicon.from_texts(texts, tokenizer)
        print(f"lexicon of {len(lexicon.words)} words")
    settings = [None] + [Fusion(lm, *map(float, s.split(":")), lexicon) for s in a.fusion]
    names = ["no LM"] + [f"weight {f.weight:g}, bonus {f.token_bonus:g}" for f in settings[1:]]
    print(f"| split | {' | '.join(names)} |")
    print(f"| --- |{' ---: |' * len(names)}")
    for split in a.splits:
        dataset = UtteranceDataset(
            data / f"manifests/{split}.jsonl", data / f"features/{split}", tokenizer, cmvn
        )
        wers = []
        for fusion in settings:
            rows = decode_dataset(
                model, dataset, batch_frames=a.batch_frames, beam=a.beam, fusion=fusion
            )
            wers.append(word_errors([r["ref"] for r in rows], [r["hyp"] for r in rows]).wer)
        print(f"| {split} | {' | '.join(f'{w:.2f}' for w in wers)} |", flush=True)


if __name__ == "__main__":
    main()
