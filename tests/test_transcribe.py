"""Transcription of audio files at any rate, WAV or FLAC, stereo or mono."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from asrprune.cli import main
from asrprune.errors import AsrpruneError
from asrprune.lm import LmSettings
from asrprune.transcribe import transcribe, transcribe_each
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
    with pytest.raises(AsrpruneError, match="needs the text it is counted on"):
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


def test_nan_or_infinite_audio_is_refused_naming_the_file(model_path, tmp_path):
    audio = tone_words(TRAIN_TEXTS[0])
    audio[500] = np.nan
    sf.write(tmp_path / "nan.wav", audio, 16000, subtype="FLOAT")  # float WAV keeps the NaN
    with pytest.raises(AsrpruneError, match=r"nan\.wav holds NaN or infinite samples"):
        transcribe(model_path, [tmp_path / "nan.wav"])


def test_each_file_comes_out_as_soon_as_it_is_decoded(model_path, tmp_path):
    first = write_tone_words(tmp_path / "a.flac", TRAIN_TEXTS[4], seed=123)
    later = tmp_path / "later.flac"
    results = transcribe_each(model_path, [first, later])
    assert next(results).text == TRAIN_TEXTS[4]  # before the second file even exists
    write_tone_words(later, TRAIN_TEXTS[4], seed=123)
    assert next(results).text == TRAIN_TEXTS[4]


def test_cli_goes_on_past_bad_files_and_counts_them(model_path, tmp_path, capsys):
    good = write_tone_words(tmp_path / "good.flac", TRAIN_TEXTS[4], seed=123)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    paths = [good, bad, tmp_path / "missing.wav", tmp_path, good]
    assert main(["transcribe", "--model", str(model_path), *map(str, paths)]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"{good}\t{TRAIN_TEXTS[4]}"] * 2  # the good ones, in order
    assert err.splitlines() == [
        f"asrprune transcribe: error: cannot read audio {bad}: Error opening '{bad}': "
        "Format not recognised.",
        f"asrprune transcribe: error: audio file not found: {tmp_path / 'missing.wav'}",
        f"asrprune transcribe: error: {tmp_path} is a directory, not an audio file",
        "asrprune transcribe: error: 3 of 5 files failed",
    ]


def test_cli_names_a_model_path_that_is_no_model_file(tmp_path, capsys):
    audio = str(write_tone_words(tmp_path / "a.flac", TRAIN_TEXTS[0]))
    (tmp_path / "notes.txt").write_text("not a model")
    for model, message in (
        (tmp_path / "missing.pt", "model file not found"),
        (tmp_path, "is a directory, not a model file"),
        (tmp_path / "notes.txt", "is not an asrprune model file (expected a model file"),
    ):
        assert main(["transcribe", "--model", str(model), audio]) == 2
        out, err = capsys.readouterr()
        assert not out and err.startswith("asrprune transcribe: error: ") and message in err
        assert str(model) in err
