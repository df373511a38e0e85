"""test-real: transcripts read from the packages, clips converted to 16 kHz FLAC."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asrprune.data import corpus as C
from asrprune.data import real_speech as RS
from asrprune.data.manifest import read_manifest
from asrprune.errors import AsrpruneError

needs_sox = pytest.mark.skipif(shutil.which("sox") is None, reason="needs sox")


def _tone(path, rate, seconds=0.5, channels=1):
    t = np.arange(int(rate * seconds)) / rate
    audio = 0.3 * np.sin(2 * np.pi * 220 * t)
    sf.write(str(path), np.stack([audio] * channels, 1) if channels > 1 else audio, rate)


def _packages(root):
    """Fake pocketsphinx-testdata and alsa-utils folders with the real layout."""
    ps, alsa = root / "pocketsphinx", root / "alsa"
    (ps / "librivox").mkdir(parents=True)
    (ps / "cards").mkdir()
    alsa.mkdir()
    (ps / "librivox" / "transcription").write_text(
        "<s> he was not an ill disposed young man </s> (book_01-0880)\n"
    )
    _tone(ps / "librivox" / "book_01-0880.wav", 16000)
    (ps / "goforward.gram").write_text(
        "grammar goforward;\npublic <move> = go forward ten meters;\n"
    )
    (np.full(8000, 1000, dtype="<i2")).tofile(ps / "goforward.raw")
    (ps / "cards" / "cards.transcription").write_text("<s> ten of clubs  </s> (001)\n")
    _tone(ps / "cards" / "001.wav", 16000)
    _tone(alsa / "Front_Left.wav", 48000, channels=2)
    _tone(alsa / "Noise.wav", 48000)
    return ps, alsa


def test_transcriptions_are_parsed_and_normalised(tmp_path):
    path = tmp_path / "t"
    path.write_text("<s> had he married a more amiable woman </s> (x-0920)\n\n")
    assert RS.read_transcription(path) == {"x-0920": "HAD HE MARRIED A MORE AMIABLE WOMAN"}
    path.write_text("had he married\n")
    with pytest.raises(AsrpruneError, match=r"t:1: expected"):
        RS.read_transcription(path)


def test_catalogue_states_each_transcript_and_skips_noise(tmp_path):
    ps, alsa = _packages(tmp_path)
    clips = {c.id: c for c in RS.catalogue(ps, alsa)}
    assert {i: c.text for i, c in clips.items()} == {
        "librivox-0880": "HE WAS NOT AN ILL DISPOSED YOUNG MAN",
        "cmu-goforward": "GO FORWARD TEN METERS",
        "cmu-cards-001": "TEN OF CLUBS",
        "alsa-front-left": "FRONT LEFT",
    }
    assert clips["cmu-goforward"].raw and not clips["alsa-front-left"].raw
    with pytest.raises(AsrpruneError, match="pocketsphinx-testdata|not found"):
        RS.catalogue(tmp_path / "nothing", alsa)


@needs_sox
def test_split_is_16k_mono_flac_and_kept_on_rerun(tmp_path):
    ps, alsa = _packages(tmp_path)
    out = tmp_path / "corpus"
    assert RS.build_real_split(out, RS.catalogue(ps, alsa)) == 4
    utts = {u.id: u for u in read_manifest(out / "test-real.jsonl")}
    for u in utts.values():
        info = sf.info(u.audio)
        assert (info.samplerate, info.channels, info.format) == (16000, 1, "FLAC")
        assert u.duration == pytest.approx(0.5, abs=0.01)
    flac = Path(utts["alsa-front-left"].audio)
    mtime = flac.stat().st_mtime_ns
    assert RS.build_real_split(out, RS.catalogue(ps, alsa)) == 4
    assert flac.stat().st_mtime_ns == mtime


def test_settings_add_test_real_without_a_count():
    s = C.EmbeddedCorpusSettings(real_speech=True)
    assert s.splits[-1] == "test-real" and "test-real" not in s.synthesised_splits
    with pytest.raises(AsrpruneError, match="setting real_speech="):
        C.EmbeddedCorpusSettings(real_speech="yes")


@pytest.mark.skipif(
    not (RS.POCKETSPHINX_DATA.is_dir() and RS.ALSA_SOUNDS.is_dir()),
    reason="needs the Debian packages pocketsphinx-testdata and alsa-utils",
)
def test_the_installed_packages_give_nineteen_clips():
    clips = RS.catalogue()
    assert len(clips) == 19
    assert {c.speaker for c in clips} == {"librivox-austen01", "cmu-goforward", "cmu-cards", "alsa"}
    assert all(c.text and c.path.is_file() for c in clips)
