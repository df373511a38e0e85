"""Fbank, feature store and CMVN on tiny synthetic audio."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from asrprune.data.features import (
    Cmvn,
    FeatureStore,
    compute_cmvn,
    compute_fbank,
    extract_features,
    load_audio,
    num_frames,
)
from asrprune.data.manifest import Utterance, write_manifest
from asrprune.errors import AsrpruneError


def synth(n: int, seed: int) -> np.ndarray:
    """A chirp-ish tone plus noise, so every mel band carries some energy: (n,) float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    f0 = rng.uniform(100, 2000)
    x = 0.3 * np.sin(2 * np.pi * f0 * t * (1 + t)) + 0.05 * rng.standard_normal(n)
    return x.astype(np.float32)


def make_corpus(tmp_path, n=12, rate=16000):
    utts = []
    for i in range(n):
        samples = int(rate * (0.4 + 0.1 * i))
        path = tmp_path / f"u{i:02d}.flac"
        sf.write(path, synth(samples, i), rate)
        utts.append(Utterance(f"u{i:02d}", str(path), samples / rate, "HELLO WORLD", "spk"))
    write_manifest(tmp_path / "train.jsonl", utts)
    return tmp_path / "train.jsonl", utts


def test_fbank_shape_and_determinism():
    for samples in (400, 16000, 12345):
        wav = torch.from_numpy(synth(samples, 0))
        feats = compute_fbank(wav, 16000)
        assert feats.shape == (1 + (samples - 400) // 160, 80) == (num_frames(samples), 80)
        assert feats.dtype == torch.float32
        assert torch.equal(feats, compute_fbank(wav.clone(), 16000))
        assert torch.isfinite(feats).all()


def test_fbank_rejects_other_rates_and_short_audio():
    with pytest.raises(AsrpruneError, match="8000"):
        compute_fbank(torch.zeros(8000), 8000)
    with pytest.raises(AsrpruneError, match="too short"):
        compute_fbank(torch.zeros(399), 16000)


def test_load_audio_mono_rate_and_errors(tmp_path):
    stereo = np.stack([synth(8000, 1), synth(8000, 2)], axis=1)
    sf.write(tmp_path / "st.wav", stereo, 16000)
    wav = load_audio(tmp_path / "st.wav")
    assert wav.shape == (8000,)
    assert torch.allclose(wav, torch.from_numpy(stereo.mean(axis=1)), atol=1e-4)

    sf.write(tmp_path / "r8.wav", synth(8000, 3), 8000)
    with pytest.raises(AsrpruneError, match=r"r8\.wav.*8000"):
        load_audio(tmp_path / "r8.wav")
    assert load_audio(tmp_path / "r8.wav", resample=True).shape == (16000,)

    (tmp_path / "bad.flac").write_bytes(b"not audio")
    with pytest.raises(AsrpruneError, match=r"bad\.flac"):
        load_audio(tmp_path / "bad.flac")
    with pytest.raises(AsrpruneError, match=r"audio file not found: .*missing\.wav"):
        load_audio(tmp_path / "missing.wav")
    with pytest.raises(AsrpruneError, match=f"{tmp_path} is a directory, not an audio file"):
        load_audio(tmp_path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_load_audio_refuses_non_finite_samples(tmp_path, bad):
    audio = synth(8000, 1)
    audio[100] = bad
    sf.write(tmp_path / "x.wav", audio, 16000, subtype="FLOAT")  # float WAV keeps NaN and inf
    with pytest.raises(AsrpruneError, match=r"audio .*x\.wav holds NaN or infinite samples"):
        load_audio(tmp_path / "x.wav", resample=True)


def test_store_round_trip_and_threads(tmp_path):
    manifest, utts = make_corpus(tmp_path)
    meta = extract_features(manifest, tmp_path / "s1", threads=1)
    extract_features(manifest, tmp_path / "s2", threads=2)
    assert (tmp_path / "s1/feats.npy").read_bytes() == (tmp_path / "s2/feats.npy").read_bytes()
    assert meta["feature_dim"] == 80 and meta["frame_shift_ms"] == 10
    assert not list((tmp_path / "s1").glob(".*tmp"))

    store = FeatureStore(tmp_path / "s1")
    assert len(store) == len(utts) and store.feats.dtype == np.float16
    for u in utts:
        direct = compute_fbank(load_audio(u.audio), 16000)
        stored = store[u.id]
        assert stored.dtype == torch.float32 and stored.shape == direct.shape
        torch.testing.assert_close(stored, direct, rtol=1e-3, atol=2e-2)
    with pytest.raises(AsrpruneError, match="nope"):
        store["nope"]

    # a pickled store (spawned DataLoader workers) does not carry the frames along
    import pickle

    clone = pickle.loads(pickle.dumps(store))
    assert clone._feats is None and torch.equal(clone[utts[0].id], store[utts[0].id])


def test_bad_audio_fails_or_is_skipped(tmp_path):
    manifest, _ = make_corpus(tmp_path, n=3)
    (tmp_path / "u01.flac").write_bytes(b"garbage")
    with pytest.raises(AsrpruneError, match=r"u01.*u01\.flac"):
        extract_features(manifest, tmp_path / "s", threads=2)
    assert not (tmp_path / "s" / "index.json").exists()
    assert not list((tmp_path / "s").iterdir())  # no partial frame file either

    meta = extract_features(manifest, tmp_path / "s", threads=2, skip_bad=True)
    assert list(meta["skipped"]) == ["u01"]
    store = FeatureStore(tmp_path / "s")
    assert store.ids() == ["u00", "u02"]
    with pytest.raises(AsrpruneError, match="skipped"):
        store["u01"]


def test_incomplete_store_is_refused(tmp_path):
    with pytest.raises(AsrpruneError, match=r"index\.json"):
        FeatureStore(tmp_path)


def test_cmvn_normalises_and_round_trips(tmp_path):
    manifest, utts = make_corpus(tmp_path)
    extract_features(manifest, tmp_path / "s", threads=2)
    store = FeatureStore(tmp_path / "s")
    cmvn = compute_cmvn(store, chunk_frames=100)  # several chunks
    assert cmvn.frames == store.meta["num_frames"]

    normed = torch.cat([cmvn.apply(store[u.id]) for u in utts]).double()  # (N, 80)
    assert normed.mean(0).abs().max() < 1e-3
    assert (normed.std(0, unbiased=False) - 1).abs().max() < 1e-3

    cmvn.save(tmp_path / "cmvn.json")
    loaded = Cmvn.load(tmp_path / "cmvn.json")
    assert torch.equal(loaded.mean, cmvn.mean) and torch.equal(loaded.std, cmvn.std)
    assert json.loads((tmp_path / "cmvn.json").read_text())["frames"] == cmvn.frames

    # the module form travels in a weights_only checkpoint
    torch.save(cmvn.state_dict(), tmp_path / "c.pt")
    other = Cmvn.identity()
    other.load_state_dict(torch.load(tmp_path / "c.pt", weights_only=True))
    x = store[utts[0].id]
    assert torch.equal(other(x), cmvn.apply(x))


def test_per_utterance_cmvn_removes_each_utterance_mean(tmp_path):
    manifest, utts = make_corpus(tmp_path)
    extract_features(manifest, tmp_path / "s", threads=2)
    store = FeatureStore(tmp_path / "s")
    cmvn = compute_cmvn(store, per_utterance=True)
    assert cmvn.per_utterance and cmvn.frames == store.meta["num_frames"]

    normed = [cmvn.apply(store[u.id]).double() for u in utts]  # each (T, 80)
    # the stored mean is that of mean-removed frames, so every utterance centres on zero
    assert max(x.mean(0).abs().max() for x in normed) < 1e-3
    pooled = torch.cat(normed)
    assert (pooled.std(0, unbiased=False) - 1).abs().max() < 1e-3
    # a fixed colouring of one utterance (a gain per mel bin) leaves its features unchanged
    x = store[utts[0].id]
    tilt = torch.linspace(-2.0, 2.0, x.shape[1])
    torch.testing.assert_close(cmvn.apply(x + tilt), cmvn.apply(x), atol=1e-4, rtol=0)
    torch.testing.assert_close(cmvn.apply(x[None])[0], cmvn.apply(x))

    cmvn.save(tmp_path / "cmvn.json")
    loaded = Cmvn.load(tmp_path / "cmvn.json")
    assert loaded.per_utterance and torch.equal(loaded.std, cmvn.std)
    # a global record (written before the option existed) stays global
    assert not Cmvn.from_dict({"mean": [0.0] * 80, "std": [1.0] * 80}).per_utterance


def test_per_utterance_cmvn_refuses_a_padded_batch():
    cmvn = Cmvn(torch.zeros(3), torch.ones(3), per_utterance=True)
    with pytest.raises(AsrpruneError, match="one utterance"):
        cmvn.apply(torch.ones(2, 5, 3))


def test_cmvn_floors_constant_dims():
    cmvn = Cmvn(torch.zeros(3), torch.tensor([0.0, 1e-9, 2.0]))
    assert torch.isfinite(cmvn.apply(torch.ones(4, 3))).all()
    assert cmvn.std.min() >= Cmvn.STD_FLOOR
