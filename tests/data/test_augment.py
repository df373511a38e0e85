"""Noise at a given SNR, synthetic reverberation, and peak limiting."""

import numpy as np
import pytest

from asrprune.data import augment as A
from asrprune.errors import AsrpruneError

RATE = 16000


def _speechlike(seconds=2.0, seed=0):
    """A voiced-like test signal: harmonics switched on and off at a syllable rate."""
    t = np.arange(int(seconds * RATE)) / RATE
    voiced = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 8))
    gate = np.sin(2 * np.pi * 4 * t) > 0
    noise = 0.01 * np.random.default_rng(seed).standard_normal(t.size)
    return (0.3 * voiced * gate + noise).astype(np.float32)


def _db(a, b):
    return 10 * np.log10(
        np.sum(np.square(a, dtype=np.float64)) / np.sum(np.square(b, dtype=np.float64))
    )


@pytest.mark.parametrize("kind", A.NOISE_KINDS)
@pytest.mark.parametrize("snr", [0.0, 10.0, 17.5])
def test_snr_is_measured_back_within_half_a_db(kind, snr):
    clean = _speechlike()
    noise = A.make_noise(kind, clean.size, np.random.default_rng(1))
    mixed = A.mix_at_snr(clean, noise, snr)
    assert mixed.dtype == np.float32
    assert _db(clean, mixed - clean) == pytest.approx(snr, abs=0.5)


@pytest.mark.parametrize("kind", A.NOISE_KINDS)
def test_noise_is_seeded_and_unit_rms(kind):
    a = A.make_noise(kind, 8000, np.random.default_rng(3))
    b = A.make_noise(kind, 8000, np.random.default_rng(3))
    c = A.make_noise(kind, 8000, np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.sqrt(np.mean(a.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3)


def test_pink_noise_has_more_energy_low_than_high():
    spectrum = np.abs(np.fft.rfft(A.pink_noise(RATE * 4, np.random.default_rng(0)))) ** 2
    freqs = np.fft.rfftfreq(RATE * 4, 1 / RATE)
    low = spectrum[(freqs > 100) & (freqs < 200)].mean()
    high = spectrum[(freqs > 3200) & (freqs < 6400)].mean()
    assert 10 * np.log10(low / high) == pytest.approx(10 * np.log10(32), abs=2.0)


def test_unknown_noise_kind_is_refused():
    with pytest.raises(AsrpruneError, match="traffic"):
        A.make_noise("traffic", 100, np.random.default_rng(0))


@pytest.mark.parametrize("rt60", [0.2, 0.5])
def test_reverb_keeps_length_level_and_finite_values(rt60):
    clean = _speechlike()
    wet = A.reverberate(clean, rt60, np.random.default_rng(0))
    assert wet.shape == clean.shape and wet.dtype == np.float32
    assert np.isfinite(wet).all()
    assert _db(wet, clean) == pytest.approx(0.0, abs=0.01)
    assert not np.allclose(wet, clean, atol=1e-3)


def test_room_impulse_response_decays_at_its_rt60():
    rt60 = 0.4
    rir = A.room_impulse_response(rt60, np.random.default_rng(0), RATE).astype(np.float64)
    tail = rir[1:]
    early = np.sum(tail[int(0.01 * RATE) : int(0.05 * RATE)] ** 2)
    late = np.sum(tail[int(0.21 * RATE) : int(0.25 * RATE)] ** 2)
    # Energy falls 60 dB per RT60: 30 dB over 0.2 s (within a noisy window, +-6 dB).
    assert 10 * np.log10(early / late) == pytest.approx(60 * 0.2 / rt60, abs=6)
    with pytest.raises(AsrpruneError, match="rt60_s"):
        A.room_impulse_response(0.0, np.random.default_rng(0))


def test_degrade_never_clips_and_is_deterministic():
    loud = _speechlike() * 3
    a = A.degrade(loud, np.random.default_rng(5), snr_db=5.0, rt60_s=0.3, noise_kind="babble")
    b = A.degrade(loud, np.random.default_rng(5), snr_db=5.0, rt60_s=0.3, noise_kind="babble")
    np.testing.assert_array_equal(a, b)
    assert np.abs(a).max() <= 0.99 + 1e-6 and a.shape == loud.shape
    clean = A.degrade(_speechlike(), np.random.default_rng(5), snr_db=None, rt60_s=None)
    np.testing.assert_array_equal(clean, _speechlike())
