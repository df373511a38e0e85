"""Transcription of audio files at any rate, WAV or FLAC, stereo or mono."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from asrprune.errors import AsrpruneError
from asrprune.evaluate import LmSettings
from asrprune.transcribe import transcribe
from tests.builders_model import TRAIN_TEXTS, overfit_model, tone_words, write_tone_words


@pytest.fixture(scope="module")
def model_path():
    return overfit_model()[0]


def test_wav_at_22k_stereo_and_flac_give_one_line_per_file(model_path, tmp_path):
    # a training utterance, resampled to 22.05 kHz, in two channels of different gains
    audio = torch.from_numpy(tone_words(TRAIN_TEXTS[1], 16000, seed=1))
    audio = torchaudio.functional.resample(audio, 16000, 22050).numpy()
    wav = tmp_path / "a.wav"
    sf.write(wav, np.stack([1.2 * audio, 0.8 * audio], axis=1), 22050)
    assert sf.info(wav).samplerate == 22050 and sf.info(wav).channels == 2
    # a training transcript with new noise, as FLAC
    flac = write_tone_words(tmp_path / "b.flac", TRAIN_TEXTS[4], seed=123)

    out = transcribe(model_path, [wav, flac])
    assert [p for p, _ in out] == [str(wav), str(flac)]
    assert [t for _, t in out] == [TRAIN_TEXTS[1], TRAIN_TEXTS[4]]

    beam = transcribe(model_path, [str(flac)], beam=3)
    assert len(beam) == 1 and beam[0][0] == str(flac) and isinstance(beam[0][1], str)


def test_a_language_model_decodes_as_in_evaluation(tmp_path):
    model_path, corpus = overfit_model()
    flac = write_tone_words(tmp_path / "b.flac", TRAIN_TEXTS[4], seed=123)
    lm = LmSettings(order=3, weight=0.2, token_bonus=0.9)
    out = transcribe(model_path, [flac], beam=3, lm=lm, lm_text=corpus.train_manifest)
    assert out == [(str(flac), TRAIN_TEXTS[4])]
    with pytest.raises(AsrpruneError, match="needs beam search"):
        transcribe(model_path, [flac], beam=0, lm=lm, lm_text=corpus.train_manifest)
    with pytest.raises(AsrpruneError, match="needs the manifest"):
        transcribe(model_path, [flac], beam=3, lm=lm)


def test_unreadable_or_too_short_audio_names_the_file(model_path, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    with pytest.raises(AsrpruneError, match="bad.wav"):
        transcribe(model_path, [bad])
    short = tmp_path / "short.flac"
    sf.write(short, np.zeros(800, dtype=np.float32), 16000)  # 50 ms: under 7 frames
    with pytest.raises(AsrpruneError, match=r"short\.flac.*too short"):
        transcribe(model_path, [short])
