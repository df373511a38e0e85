"""Decoding a dataset with a model: length-sorted batches through the encoder and search.

It joins the data package (datasets, batches) and the model package (search), so it lives
above both; the model package does not import the data pipeline.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from asrprune.data.batching import Batch, UtteranceDataset, collate, length_batches
from asrprune.model import Transducer
from asrprune.model.decoding import Fusion, search

# One way to search encoder outputs: (beam, fusion); beam 0 is greedy search.
Way = tuple[int, Fusion | None]
GREEDY: tuple[Way, ...] = ((0, None),)


@torch.no_grad()
def decode_batch(
    model: Transducer, batch: Batch, ways: Sequence[Way] = GREEDY
) -> list[tuple[list[list[int]], float]]:
    """One encoder pass on a collated batch (already on the model's device), then each
    way's search: per way, token ids per utterance and the seconds of the encoder plus
    that search (the time to decode the batch that way alone)."""
    start = time.perf_counter()
    enc, enc_lens, _ = model.encoder(batch.feats, batch.feat_lens)
    encoded = time.perf_counter() - start
    out = []
    for beam, fusion in ways:
        start = time.perf_counter()
        ids = search(model, enc, enc_lens, beam, fusion)
        out.append((ids, encoded + time.perf_counter() - start))
    return out


def decode_dataset_ways(
    model: Transducer,
    dataset: UtteranceDataset,
    ways: Sequence[Way],
    *,
    batch_frames: int,
    device: torch.device | str = "cpu",
    indices: Sequence[int] | None = None,
) -> list[tuple[list[dict], float]]:
    """Decode utterances of ``dataset`` (all, or ``indices``) in eval mode every way of
    ``ways``, the encoder run once per batch for all of them.

    Returns per way one ``{"id", "ref", "hyp"}`` per utterance, in dataset order, and the
    seconds decoding that way alone would take (the encoder's counted in each).
    """
    indices = list(range(len(dataset))) if indices is None else list(indices)
    lengths = [dataset.lengths[i] for i in indices]
    was_training = model.training
    model.eval()
    rows: list[dict[int, dict]] = [{} for _ in ways]
    seconds = [0.0 for _ in ways]
    try:
        for positions in length_batches(lengths, batch_frames):
            items = [dataset[indices[p]] for p in positions]
            batch = collate(items).to(device)
            for w, (decoded, took) in enumerate(decode_batch(model, batch, ways)):
                seconds[w] += took
                for p, ids in zip(positions, decoded, strict=True):
                    utt = dataset.utts[indices[p]]
                    text = dataset.tokenizer.decode(ids)
                    rows[w][p] = {"id": utt.id, "ref": utt.text, "hyp": text}
    finally:
        model.train(was_training)
    return [([r[p] for p in range(len(indices))], s) for r, s in zip(rows, seconds, strict=True)]


def decode_dataset(
    model: Transducer,
    dataset: UtteranceDataset,
    *,
    batch_frames: int,
    beam: int = 0,
    device: torch.device | str = "cpu",
    indices: Sequence[int] | None = None,
    fusion: Fusion | None = None,
) -> list[dict]:
    """:func:`decode_dataset_ways` one way: the rows alone."""
    ways = [(beam, fusion)]
    return decode_dataset_ways(
        model, dataset, ways, batch_frames=batch_frames, device=device, indices=indices
    )[0][0]
