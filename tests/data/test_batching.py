"""Dataset, frame-budget sampler, collation and SpecAugment."""

from __future__ import annotations

import random

import numpy as np
import pytest
import soundfile as sf
import torch

from asrprune.data.batching import (
    DurationBucketSampler,
    SpecAugment,
    UtteranceDataset,
    VocalTractWarp,
    collate,
    length_batches,
    make_loader,
    vtlp_matrix,
    vtlp_source_hz,
)
from asrprune.data.features import FeatureStore, compute_cmvn, extract_features
from asrprune.data.manifest import Utterance, write_manifest
from asrprune.data.tokenizer import train_bpe
from asrprune.errors import AsrpruneError

WORDS = [
    "THE",
    "LORD",
    "SAID",
    "UNTO",
    "MOSES",
    "GO",
    "DOWN",
    "AND",
    "SPEAK",
    "TO",
    "THE",
    "PEOPLE",
    "OF",
    "ISRAEL",
]


def random_lengths(n: int, seed: int, lo: int = 20, hi: int = 400) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(lo, hi) for _ in range(n)]


def epoch(sampler: DurationBucketSampler) -> list[list[int]]:
    return list(sampler)


# -----------------------------------------------------------------------------
# sampler


def test_length_batches_keep_the_budget_and_cover_everything():
    lengths = [50, 10, 300, 20, 20, 90]
    batches = length_batches(lengths, 100)
    assert sorted(i for b in batches for i in b) == list(range(6))
    assert all(len(b) * max(lengths[i] for i in b) <= 100 or len(b) == 1 for b in batches)
    assert batches[-1] == [2]  # over the budget: alone, not refused


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("budget", [400, 1000, 3000])
def test_budget_and_coverage(seed, budget):
    lengths = random_lengths(150, seed)
    sampler = DurationBucketSampler(lengths, budget, seed=seed)
    orders = []
    for _ in range(3):
        batches = epoch(sampler)
        assert len(batches) == len(sampler)
        for b in batches:
            assert b and len(b) * max(lengths[i] for i in b) <= budget
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        orders.append(batches)
    assert sampler.epoch == 3
    assert orders[0] != orders[1] != orders[2]
    # same seed and epoch -> same order, in a fresh sampler
    again = DurationBucketSampler(lengths, budget, seed=seed)
    again.set_epoch(1)
    assert epoch(again) == orders[1]


def test_max_utterances_caps_batch_size():
    sampler = DurationBucketSampler([10] * 50, 10_000, max_utterances=8)
    assert max(len(b) for b in epoch(sampler)) == 8


def test_sorted_first_epoch_is_ascending():
    lengths = random_lengths(120, 7)
    sampler = DurationBucketSampler(lengths, 1200, seed=3, sorted_first_epoch=True)
    first = [lengths[i] for b in epoch(sampler) for i in b]
    assert first == sorted(first)
    second = [lengths[i] for b in epoch(sampler) for i in b]
    assert second != sorted(second)


def test_no_shuffle_is_ascending_every_epoch():
    lengths = random_lengths(60, 1)
    sampler = DurationBucketSampler(lengths, 800, shuffle=False)
    assert epoch(sampler) == epoch(sampler)


def test_over_budget_utterance_gets_a_batch_of_its_own():
    # valid data longer than a small job's budget (pruning's 12 s against the corpus's
    # 20 s) must not stop the job; every other batch keeps the budget
    lengths = [100, 900, 300, 1000, 200]
    sampler = DurationBucketSampler(lengths, 800, ids=["a", "long-one", "b", "long-two", "c"])
    assert sampler.oversized == ["long-one", "long-two"]
    batches = epoch(sampler)
    assert sorted(i for b in batches for i in b) == list(range(5))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 800
    assert [1] in batches and [3] in batches


def test_resume_yields_exactly_the_remaining_batches():
    lengths = random_lengths(200, 5)
    a = DurationBucketSampler(lengths, 900, seed=11)
    epoch(a)  # epoch 0 done
    it = iter(a)
    head = [next(it) for _ in range(4)]
    state = a.state_dict()
    assert state["epoch"] == 1 and state["position"] == 4
    rest = list(it)
    following = epoch(a)  # epoch 2

    b = DurationBucketSampler(lengths, 900, seed=11)
    b.load_state_dict(state)
    b.set_epoch(1)  # a trainer's per-epoch call keeps the resume point
    assert epoch(b) == rest
    assert head + rest == DurationBucketSampler(lengths, 900, seed=11).epoch_batches(1)
    b.set_epoch(2)
    assert epoch(b) == following

    # a checkpoint taken right after an epoch's last batch resumes with the next epoch
    c = DurationBucketSampler(lengths, 900, seed=11)
    c.load_state_dict({"epoch": 1, "position": len(c)})
    assert epoch(c) == []
    assert epoch(c) == following

    with pytest.raises(AsrpruneError, match="num_batches"):
        DurationBucketSampler(lengths, 500, seed=11).load_state_dict(state)


@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_ranks_share_each_global_batch(world_size):
    lengths = random_lengths(100, world_size)
    shards = [
        DurationBucketSampler(lengths, 700, seed=2, rank=r, world_size=world_size)
        for r in range(world_size)
    ]
    for e in range(2):
        whole = shards[0].global_batches(e)
        per_rank = [s.epoch_batches(e) for s in shards]
        assert {len(p) for p in per_rank} == {len(whole)} == {len(shards[0])}
        for step, batch in enumerate(whole):
            shares = [p[step] for p in per_rank]
            assert sorted(i for s in shares for i in s) == sorted(batch)  # each once
            assert all(shares) and max(map(len, shares)) - min(map(len, shares)) <= 1
        assert sorted(i for b in whole for i in b) == list(range(100))  # the whole epoch
        if e == 0:
            first = whole
    assert whole != first  # reshuffled per epoch, alike on every rank


def test_global_batches_hold_a_share_for_every_rank():
    # three long utterances: alone each would fill a batch; every rank still gets one
    lengths = [50] * 10 + [390, 395, 399]
    sampler = DurationBucketSampler(lengths, 400, rank=1, world_size=3, seed=0)
    assert all(len(b) >= 3 for b in sampler.batches)
    assert sum(map(len, sampler.batches)) == 13
    single = DurationBucketSampler(lengths, 400, seed=0)
    assert [len(b) for b in single.batches][-3:] == [1, 1, 1]
    with pytest.raises(AsrpruneError, match="cannot give each of 4 processes"):
        DurationBucketSampler([50, 60, 70], 400, world_size=4)


def test_a_resumed_shard_continues_at_the_same_global_batch():
    lengths = random_lengths(60, 3)
    a = DurationBucketSampler(lengths, 500, seed=4, rank=1, world_size=2)
    it = iter(a)
    for _ in range(3):
        next(it)
    b = DurationBucketSampler(lengths, 500, seed=4, rank=1, world_size=2)
    b.load_state_dict(a.state_dict())
    assert list(b) == a.epoch_batches(0)[3:]
    other = DurationBucketSampler(lengths, 500, seed=4, rank=0, world_size=3)
    with pytest.raises(AsrpruneError, match="GPUs changed"):
        other.load_state_dict(a.state_dict())


# -----------------------------------------------------------------------------
# collate and SpecAugment


def items(lengths, token_lengths):
    return [
        (f"u{i}", torch.randn(t, 80) + 3.0, torch.arange(1, u + 1))
        for i, (t, u) in enumerate(zip(lengths, token_lengths, strict=True))
    ]


def test_collate_pads_with_zeros():
    batch = collate(items([5, 9, 3], [2, 1, 4]))
    assert batch.ids == ["u0", "u1", "u2"] and len(batch) == 3
    assert batch.feats.shape == (3, 9, 80) and batch.tokens.shape == (3, 4)
    assert batch.feat_lens.tolist() == [5, 9, 3] and batch.token_lens.tolist() == [2, 1, 4]
    assert batch.feats[0, 5:].eq(0).all() and batch.feats[2, 3:].eq(0).all()
    assert batch.feats[0, :5].ne(0).all()
    assert batch.tokens.tolist() == [[1, 2, 0, 0], [1, 0, 0, 0], [1, 2, 3, 4]]
    assert batch.to("cpu").feats is not None


def test_padding_appends_zero_frames_and_keeps_the_rest():
    batch = collate(items([5, 9, 3], [2, 1, 4]))
    padded = batch.padded(32)
    assert padded.feats.shape == (3, 32, 80) and padded.feats[:, 9:].eq(0).all()
    assert torch.equal(padded.feats[:, :9], batch.feats)
    assert padded.feat_lens.tolist() == [5, 9, 3] and torch.equal(padded.tokens, batch.tokens)
    assert padded.padded(32) is padded and batch.padded(9) is batch
    assert batch.to("cpu").feats.shape[1] == 9  # only a GPU batch is padded


def test_specaugment_masks_only_real_frames():
    lens = torch.tensor([200, 57, 120, 8])
    feats = torch.randn(4, 200, 80) + 5.0  # no real frame is 0
    for b, n in enumerate(lens):
        feats[b, n:] = -7.0  # sentinel in the padding
    aug = SpecAugment(freq_masks=2, freq_width=27, time_masks=10, time_width_ratio=0.05)
    g = torch.Generator().manual_seed(0)
    out = aug(feats, lens, generator=g)
    valid = torch.arange(200)[None, :] < lens[:, None]
    assert torch.equal(out[~valid], feats[~valid])  # padding untouched
    changed = out != feats
    assert changed.any()
    assert out[changed].eq(0).all()  # masked to the CMVN mean
    # time masks: at most 10 bands of at most 5% of that utterance's length each
    masked_frames = (out[0] == 0).all(dim=1).sum()
    assert masked_frames <= 10 * 10
    # seeded: same generator state, same masks
    assert torch.equal(out, aug(feats, lens, generator=torch.Generator().manual_seed(0)))
    aug.eval()
    assert aug(feats, lens) is feats


def test_vtlp_warp_keeps_the_band_and_is_continuous():
    hz = torch.linspace(0, 8000, 801)
    for a in (0.9, 1.0, 1.12):
        src = vtlp_source_hz(hz, torch.tensor([a]))[0]
        assert src[0] == 0 and src[-1] == pytest.approx(8000)
        assert torch.all(src[1:] > src[:-1])  # monotone, so no jump at the bend
        assert src[100] == pytest.approx(1000 / a)  # below the bend: f / alpha


def test_vtlp_matrix_interpolates_and_moves_formants_the_right_way():
    warp = vtlp_matrix(torch.tensor([1.0, 0.9, 1.1]), 80)
    assert torch.allclose(warp[0], torch.eye(80), atol=1e-4)
    assert torch.allclose(warp.sum(-1), torch.ones(3, 80), atol=1e-5)
    frame = torch.zeros(80)
    frame[30] = 1.0  # a peak near 1.3 kHz, below the bend
    peaks = [int(torch.argmax(w @ frame)) for w in warp]
    assert peaks[1] < 30 < peaks[2]  # a shorter tract (alpha > 1) raises formants


def test_vocal_tract_warp_on_a_batch():
    lens = torch.tensor([50, 20])
    feats = torch.randn(2, 50, 80)
    feats[1, 20:] = 0.0  # padding
    vtlp = VocalTractWarp(0.1)
    out = vtlp(feats, lens, generator=torch.Generator().manual_seed(0))
    assert out.shape == feats.shape and not torch.allclose(out, feats)
    assert torch.equal(out[1, 20:], feats[1, 20:])
    again = vtlp(feats, lens, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    vtlp.eval()
    assert vtlp(feats, lens) is feats
    assert VocalTractWarp(0.0).train()(feats, lens) is feats
    with pytest.raises(AsrpruneError, match="VTLP range"):
        VocalTractWarp(0.6)


# -----------------------------------------------------------------------------
# end to end: manifest -> store -> dataset -> loader


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    utts = []
    for i in range(24):
        n = int(16000 * rng.uniform(0.3, 1.5))
        x = 0.2 * np.sin(2 * np.pi * 300 * np.arange(n) / 16000) + 0.05 * rng.standard_normal(n)
        sf.write(root / f"{i}.wav", x.astype(np.float32), 16000)
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(2, 8))))
        utts.append(Utterance(f"utt{i:02d}", str(root / f"{i}.wav"), n / 16000, text, "s"))
    write_manifest(root / "train.jsonl", utts)
    extract_features(root / "train.jsonl", root / "feats", threads=2)
    train_bpe([u.text for u in utts], 40, root / "bpe.model")
    return root, utts


def test_loader_end_to_end(corpus):
    root, utts = corpus
    store = FeatureStore(root / "feats")
    cmvn = compute_cmvn(store)
    ds = UtteranceDataset(root / "train.jsonl", store, root / "bpe.model", cmvn)
    assert len(ds) == len(utts) and ds.lengths == [store.num_frames(u.id) for u in utts]
    uid, feats, tokens = ds[3]
    assert uid == utts[3].id and feats.shape == (store.num_frames(uid), 80)
    assert ds.tokenizer.decode(tokens.tolist()) == utts[3].text

    loader = make_loader(ds, max_frames=400, seed=1, sorted_first_epoch=True)
    seen = []
    for batch in loader:
        assert batch.feats.shape[0] * batch.feats.shape[1] <= 400
        assert batch.feat_lens.max() == batch.feats.shape[1]
        seen += batch.ids
    assert sorted(seen) == sorted(u.id for u in utts)
    assert loader.batch_sampler.epoch == 1


def test_loader_resume_mid_epoch(corpus):
    root, _ = corpus
    ds = UtteranceDataset(root / "train.jsonl", root / "feats", root / "bpe.model")
    first = make_loader(ds, max_frames=300, seed=4)
    first.batch_sampler.set_epoch(2)
    it = iter(first)
    done = [next(it).ids for _ in range(3)]
    state = first.batch_sampler.state_dict()
    rest = [b.ids for b in it]

    second = make_loader(ds, max_frames=300, seed=4)
    second.batch_sampler.load_state_dict(state)
    assert [b.ids for b in second] == rest
    assert len(done) + len(rest) == len(second)


def test_dataset_refuses_empty_transcripts_and_missing_ids(corpus):
    root, utts = corpus
    empty = [*utts[:3], Utterance("utt03", utts[3].audio, 1.0, "", "s")]
    with pytest.raises(AsrpruneError, match="utt03"):
        UtteranceDataset(empty, root / "feats", root / "bpe.model")
    stranger = [Utterance("ghost", utts[0].audio, 1.0, "THE LORD", "s")]
    with pytest.raises(AsrpruneError, match="ghost"):
        UtteranceDataset(stranger, root / "feats", root / "bpe.model")
