"""scripts/block_importance.py: greedy WER with each encoder block bypassed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from asrprune.data.batching import UtteranceDataset
from asrprune.model_file import open_model_file
from tests.builders_model import overfit_model
from tests.model.tiny import tiny_model

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location(
    "block_importance", ROOT / "scripts/block_importance.py"
)
block_importance = importlib.util.module_from_spec(spec)
spec.loader.exec_module(block_importance)


def test_a_bypassed_block_is_the_identity_and_comes_back_intact():
    model = tiny_model().eval()
    x = torch.randn(2, 40, 80)
    lengths = torch.tensor([40, 31])
    before = model.encoder(x, lengths)[0]
    block = model.encoder.blocks[1]
    with block_importance.bypassed(block):
        skipped = model.encoder(x, lengths)[0]
        h = torch.randn(2, 3, model.encoder.blocks[0].norm.normalized_shape[0])
        assert block(h, None, torch.ones(2, 3, dtype=torch.bool)) is h
    after = model.encoder(x, lengths)[0]
    assert not torch.allclose(before, skipped)
    torch.testing.assert_close(after, before)


def test_every_block_gets_a_row_against_the_intact_models_wer():
    teacher, corpus = overfit_model()
    loaded = open_model_file(teacher, map_location="cpu")
    dev = UtteranceDataset(corpus.dev_manifest, corpus.dev_store, loaded.tokenizer, loaded.cmvn)
    rows = block_importance.block_importance(loaded.model, dev, batch_frames=4000)
    assert [r[0] for r in rows] == ["none", 1, 2]
    base = rows[0][1]
    assert base == block_importance.greedy_wer(loaded.model, dev, 4000)  # restored
    for _, wer, increase in rows[1:]:
        assert increase == wer - base
    assert max(r[2] for r in rows[1:]) > 0  # a trained model needs its blocks


def test_the_table_has_a_row_per_block():
    rows = [("none", 17.5, 0.0), (1, 50.0, 32.5), (2, 17.25, -0.25)]
    assert block_importance.importance_markdown(rows, "dev").splitlines() == [
        "| block bypassed | dev WER % | increase (points) |",
        "| --- | ---: | ---: |",
        "| none | 17.50 | +0.00 |",
        "| 1 | 50.00 | +32.50 |",
        "| 2 | 17.25 | -0.25 |",
    ]
