"""TTS engines: the installation check, the voice catalogue, and synthesis of one voice."""

import os
import shutil

import numpy as np
import pytest

from asrprune.data import voices as V
from asrprune.errors import AsrpruneError

TEXT = "And the evening and the morning were the first day."


def test_check_engines_names_every_missing_program_and_its_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AsrpruneError) as err:
        V.check_engines()
    message = str(err.value)
    for program, package in V.PROGRAM_PACKAGES.items():
        assert f"{program} (Debian package {package})" in message
    assert "apt-get install espeak-ng flite festival sox" in message


def test_check_programs_lists_only_what_is_missing(tmp_path, monkeypatch):
    fake = tmp_path / "sox"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AsrpruneError) as err:
        V.check_engines([V.BaseVoice("flite", "rms")])
    message = str(err.value)
    assert "flite (Debian package flite)" in message
    assert "sox (Debian package" not in message and "espeak" not in message


def test_speaker_id_is_stable_and_path_safe():
    speaker = V.Speaker(V.BaseVoice("espeak", "en-gb-scotland+m3"), 1.05, -120, 0.95)
    assert speaker.id == "espeak_en-gb-scotland.m3_s105p-120t095"
    assert V.Speaker(V.BaseVoice("flite", "rms"), 1.0, 0, 1.0).id == "flite_rms_s100p+0t100"
    assert os.sep not in speaker.id
    assert V.sox_effects(speaker) == [
        "rate", "-h", "16000", "speed", "1.05", "pitch", "-120", "tempo", "-s", "0.95",
        "rate", "-h", "16000",
    ]  # fmt: skip


needs_engines = pytest.mark.skipif(
    any(shutil.which(p) is None for p in V.PROGRAM_PACKAGES),
    reason="TTS engines (espeak-ng, flite, festival, sox) not installed",
)


@needs_engines
def test_catalogue_has_english_accents_variants_and_no_mbrola():
    catalogue = V.voice_catalogue()
    ids = {v.id for v in catalogue}
    assert {"flite/rms", "flite/awb", "festival/kal_diphone", "festival/ked_diphone"} <= ids
    assert "espeak/en-gb-scotland+m3" in ids
    assert not any("mb-" in i or "mbrola" in i for i in ids)
    assert not any(v.variant in V.ESPEAK_SKIPPED_VARIANTS for v in catalogue)
    assert len(V.espeak_accents()) >= 6 and len(V.espeak_variants()) >= 50
    V.check_engines(catalogue)


@needs_engines
@pytest.mark.parametrize(
    "voice",
    [
        V.BaseVoice("espeak", "en-gb-x-rp+f3"),
        V.BaseVoice("flite", "slt"),
        V.BaseVoice("festival", "kal_diphone"),
    ],
    ids=lambda v: v.engine,
)
def test_voice_speaks_16k_mono_of_plausible_duration(voice, tmp_path):
    plain = V.synthesize(TEXT, V.Speaker(voice, 1.0, 0, 1.0), tmp_path)
    slower = V.synthesize(TEXT, V.Speaker(voice, 1.0, 200, 0.8), tmp_path)
    V.close_engines()
    for audio in (plain, slower):
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert np.isfinite(audio).all() and np.abs(audio).max() > 0.05
    # Ten words: two to six seconds at 16 kHz; tempo 0.8 makes it 1/0.8 times longer.
    assert 2.0 < plain.size / V.SAMPLE_RATE < 6.0
    assert slower.size / plain.size == pytest.approx(1 / 0.8, rel=0.05)


@needs_engines
def test_missing_festival_voice_names_its_package(tmp_path):
    with pytest.raises(AsrpruneError, match="no_such_voice"):
        V.synthesize(TEXT, V.Speaker(V.BaseVoice("festival", "no_such_voice"), 1, 0, 1), tmp_path)
    V.close_engines()
