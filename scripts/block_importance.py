"""How much each encoder block of a model matters: greedy WER with that block bypassed.

A Conformer block is residual, so skipping it (its input passed on unchanged) is the
largest cut a structured pruner can make there. Blocks whose removal costs least are the
ones a size-constrained pruner can take most from: this explains where the L0 masks cut
(README finding (c)) from the teacher alone, without a pruning run.

    .venv/bin/python scripts/block_importance.py --model results/embedded/models/teacher.pt \\
        --data results/embedded/data --split dev

Prints a Markdown table: block, WER with it bypassed, and the increase over the intact
model. Decodes with batched greedy search, as the tables' main WER columns do.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import torch

from asrprune.cli import positive_int
from asrprune.data.batching import UtteranceDataset
from asrprune.decode import GREEDY, decode_dataset_ways
from asrprune.errors import AsrpruneError
from asrprune.evaluate import word_errors
from asrprune.model_file import open_model_file
from asrprune.results.markdown import markdown_table


@contextlib.contextmanager
def bypassed(block: torch.nn.Module):
    """A context in which ``block`` passes its input through unchanged (no final norm
    means an empty block, which ``ConformerBlock.forward`` returns as the identity)."""
    norm, block.norm = block.norm, None
    try:
        yield
    finally:
        block.norm = norm


def greedy_wer(model, dataset: UtteranceDataset, batch_frames: int) -> float:
    [(rows, _)] = decode_dataset_ways(model, dataset, GREEDY, batch_frames=batch_frames)
    return word_errors([r["ref"] for r in rows], [r["hyp"] for r in rows]).wer


def block_importance(model, dataset: UtteranceDataset, batch_frames: int) -> list[tuple]:
    """(block, WER bypassed, increase) per encoder block, block 1 first."""
    base = greedy_wer(model, dataset, batch_frames)
    rows = [("none", base, 0.0)]
    for i, block in enumerate(model.encoder.blocks, start=1):
        if block.norm is None:  # already removed by pruning
            continue
        with bypassed(block):
            wer = greedy_wer(model, dataset, batch_frames)
        rows.append((i, wer, wer - base))
        print(f"block {i}: {wer:.2f}", file=sys.stderr)
    return rows


def importance_markdown(rows: list[tuple], split: str) -> str:
    header = ("block bypassed", f"{split} WER %", "increase (points)")
    return markdown_table(header, [(str(b), f"{w:.2f}", f"{d:+.2f}") for b, w, d in rows])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a model file of the workflow")
    p.add_argument("--data", required=True, help="the run's data/ folder")
    p.add_argument("--split", default="dev")
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--batch-frames", type=positive_int, default=20000)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    data = Path(a.data)
    try:
        loaded = open_model_file(a.model, map_location="cpu")
        dataset = UtteranceDataset(
            data / f"manifests/{a.split}.jsonl",
            data / f"features/{a.split}",
            loaded.tokenizer,
            loaded.cmvn,
        )
        rows = block_importance(loaded.model, dataset, a.batch_frames)
    except AsrpruneError as e:
        sys.exit(f"error: {e}")
    print(importance_markdown(rows, a.split), end="")


if __name__ == "__main__":
    main()
