"""Decoding a dataset with a model: length-sorted batches through the encoder and search.

It joins the data package (datasets, batches) and the model package (search), so it lives
above both; the model package does not import the data pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from asrprune.data.batching import Batch, UtteranceDataset, collate, length_batches
from asrprune.model import Transducer
from asrprune.model.decoding import Fusion, search


@torch.no_grad()
def decode_batch(
    model: Transducer, batch: Batch, beam: int = 0, fusion: Fusion | None = None
) -> list[list[int]]:
    """Encoder and search on one collated batch (already on the model's device)."""
    enc, enc_lens, _ = model.encoder(batch.feats, batch.feat_lens)
    return search(model, enc, enc_lens, beam, fusion)


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
    """Decode utterances of ``dataset`` (all, or ``indices``) in eval mode.

    Returns one ``{"id", "ref", "hyp"}`` per utterance, in dataset order.
    """
    indices = list(range(len(dataset))) if indices is None else list(indices)
    lengths = [dataset.lengths[i] for i in indices]
    was_training = model.training
    model.eval()
    rows: dict[int, dict] = {}
    try:
        for positions in length_batches(lengths, batch_frames):
            items = [dataset[indices[p]] for p in positions]
            batch = collate(items).to(device)
            for p, ids in zip(positions, decode_batch(model, batch, beam, fusion), strict=True):
                utt = dataset.utts[indices[p]]
                rows[p] = {"id": utt.id, "ref": utt.text, "hyp": dataset.tokenizer.decode(ids)}
    finally:
        model.train(was_training)
    return [rows[p] for p in range(len(indices))]
