"""Noise and reverberation for synthetic speech, generated from a seeded RNG.

Clean TTS audio is too easy: test-other adds noise and a room, and part of the training
data gets the same treatment so the model can learn to cope. Everything is drawn from a
``numpy.random.Generator`` passed in, so a corpus is reproducible for its seed.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, fftconvolve, sosfilt

from asrprune.errors import AsrpruneError

NOISE_KINDS = ("white", "pink", "babble")
# -60 dB of amplitude is exp(-ln(1000)); an RT60 decay is exp(-_DECAY * t / rt60).
_DECAY = np.log(1000.0)


def _unit_rms(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return (x / rms if rms > 0 else x).astype(np.float32)


def white_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return _unit_rms(rng.standard_normal(n))


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise: white noise shaped in the frequency domain (power falls 3 dB/octave)."""
    spectrum = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    freqs = np.arange(n // 2 + 1, dtype=np.float64)
    freqs[0] = 1.0
    spectrum /= np.sqrt(freqs)
    spectrum[0] = 0.0
    return _unit_rms(np.fft.irfft(spectrum, n))


def babble_noise(
    n: int, rng: np.random.Generator, sample_rate: int = 16000, talkers: int = 6
) -> np.ndarray:
    """Speech-like crowd noise without speech: band-limited pink noise per "talker",
    each switched on and off at a syllable rate (3-6 Hz), summed."""
    band = butter(4, [300, 3400], btype="bandpass", fs=sample_rate, output="sos")
    t = np.arange(n) / sample_rate
    total = np.zeros(n)
    for _ in range(talkers):
        rate = rng.uniform(3.0, 6.0)
        phase = rng.uniform(0, 2 * np.pi)
        # Raised, sharpened sine: bursts of energy with short gaps, like syllables.
        envelope = np.clip(np.sin(2 * np.pi * rate * t + phase), 0, None) ** 2
        total += sosfilt(band, pink_noise(n, rng)) * envelope * rng.uniform(0.5, 1.0)
    return _unit_rms(total)


def make_noise(kind: str, n: int, rng: np.random.Generator, sample_rate: int = 16000) -> np.ndarray:
    """``n`` samples of unit-RMS noise of ``kind`` (one of :data:`NOISE_KINDS`)."""
    if kind == "white":
        return white_noise(n, rng)
    if kind == "pink":
        return pink_noise(n, rng)
    if kind == "babble":
        return babble_noise(n, rng, sample_rate)
    raise AsrpruneError(f"unknown noise kind {kind!r}; expected one of {NOISE_KINDS}")


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``signal`` plus ``noise`` scaled so that signal power / noise power is ``snr_db``."""
    if noise.shape != signal.shape:
        raise AsrpruneError(f"noise shape {noise.shape} != signal shape {signal.shape}")
    p_signal = float(np.mean(np.square(signal, dtype=np.float64)))
    p_noise = float(np.mean(np.square(noise, dtype=np.float64)))
    if p_signal == 0 or p_noise == 0:
        return signal.astype(np.float32)
    scale = np.sqrt(p_signal / (p_noise * 10 ** (snr_db / 10)))
    return (signal + scale * noise).astype(np.float32)


def room_impulse_response(
    rt60_s: float,
    rng: np.random.Generator,
    sample_rate: int = 16000,
    drr_db: float = 3.0,
) -> np.ndarray:
    """A synthetic room: a direct-path impulse, then an exponentially decaying noise tail.

    The tail decays by 60 dB in ``rt60_s`` seconds and starts after a few milliseconds of
    pre-delay; ``drr_db`` sets the direct-to-reverberant energy ratio (a speaker a metre
    or two from the microphone). A gentle low-pass makes high frequencies die faster.
    """
    if not rt60_s > 0:
        raise AsrpruneError(f"rt60_s must be positive, got {rt60_s}")
    n = max(int(rt60_s * sample_rate), 16)
    predelay = int(rng.uniform(0.002, 0.008) * sample_rate)
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-_DECAY * t / rt60_s)
    tail = sosfilt(butter(2, 5000, fs=sample_rate, output="sos"), tail)
    tail *= np.sqrt(10 ** (-drr_db / 10) / np.sum(tail**2))
    rir = np.zeros(predelay + n)
    rir[0] = 1.0
    rir[predelay:] += tail
    return rir.astype(np.float32)


def reverberate(
    signal: np.ndarray,
    rt60_s: float,
    rng: np.random.Generator,
    sample_rate: int = 16000,
    drr_db: float = 3.0,
) -> np.ndarray:
    """``signal`` in a synthetic room: same length (the tail is cut), same RMS."""
    rir = room_impulse_response(rt60_s, rng, sample_rate, drr_db)
    wet = fftconvolve(signal.astype(np.float64), rir)[: signal.size]
    rms_in = np.sqrt(np.mean(np.square(signal, dtype=np.float64)))
    rms_out = np.sqrt(np.mean(wet**2))
    if rms_out > 0:
        wet *= rms_in / rms_out
    return wet.astype(np.float32)


def limit_peak(signal: np.ndarray, peak: float = 0.99) -> np.ndarray:
    """Scale down (never up) so that no sample exceeds ``peak``: no clipping in FLAC."""
    top = float(np.max(np.abs(signal))) if signal.size else 0.0
    if top > peak:
        signal = signal * (peak / top)
    return signal.astype(np.float32)


def degrade(
    signal: np.ndarray,
    rng: np.random.Generator,
    snr_db: float | None,
    rt60_s: float | None,
    noise_kind: str = "pink",
    sample_rate: int = 16000,
) -> np.ndarray:
    """Reverberation (if ``rt60_s``), then additive noise (if ``snr_db``), peak-limited."""
    out = signal.astype(np.float32)
    if rt60_s is not None:
        out = reverberate(out, rt60_s, rng, sample_rate)
    if snr_db is not None:
        out = mix_at_snr(out, make_noise(noise_kind, out.size, rng, sample_rate), snr_db)
    return limit_peak(out)
