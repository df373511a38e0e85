"""Each kind of bad input is excluded with its id, path and reason; good input passes."""

import numpy as np
import pytest
import soundfile as sf

from asrprune.data import checks
from asrprune.data.checks import CheckSettings, check_utterances, prepare_split
from asrprune.data.manifest import Utterance, read_manifest, write_manifest
from asrprune.errors import AsrpruneError
from asrprune.io import read_json
from tests.builders import make_utterance

SETTINGS = CheckSettings()


def _bad_corpus(tmp_path):
    good = make_utterance(tmp_path, "good", seconds=1.0)
    corrupt = tmp_path / "corrupt.flac"
    corrupt.write_bytes(b"fLaC" + bytes(range(256)) * 4)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, dtype=np.float32), 16000)
    return [
        good,
        Utterance("corrupt", str(corrupt), 1.0, "HELLO", "s"),
        Utterance("missing", str(tmp_path / "missing.flac"), 1.0, "HELLO", "s"),
        Utterance("empty", str(empty), 0.0, "HELLO", "s"),
        Utterance("silent", str(silent), 1.0, "HELLO", "s"),
        make_utterance(tmp_path, "rate8k", rate=8000),
        make_utterance(tmp_path, "long", seconds=21.0),
        make_utterance(tmp_path, "notext", text="   "),
        make_utterance(tmp_path, "digits", text="CHAPTER 3"),
        make_utterance(tmp_path, "lower", text="hello world"),
        make_utterance(tmp_path, "symbols", text="#### $$"),
    ]


EXPECTED = {
    "corrupt": checks.UNREADABLE,
    "missing": checks.UNREADABLE,
    "empty": checks.EMPTY_AUDIO,
    "silent": checks.SILENT,
    "rate8k": checks.WRONG_RATE,
    "long": checks.TOO_LONG,
    "notext": checks.EMPTY_TEXT,
    "digits": checks.NON_TEXT,
    "lower": checks.NON_TEXT,
    "symbols": checks.NON_TEXT,
}


def test_each_bad_case_is_excluded_with_its_reason(tmp_path):
    kept, excluded = check_utterances(_bad_corpus(tmp_path), SETTINGS, threads=2)
    assert [u.id for u in kept] == ["good"]
    assert {x.id: x.reason for x in excluded} == EXPECTED
    for x in excluded:
        assert x.audio and x.detail


def test_measured_duration_replaces_the_manifests(tmp_path):
    utt = make_utterance(tmp_path, "u", seconds=1.5)
    wrong = Utterance(utt.id, utt.audio, 99.0, utt.text, utt.speaker)
    kept, _ = check_utterances([wrong], SETTINGS)
    assert kept[0].duration == 1.5


def test_prepare_split_writes_kept_and_counted_exclusions(tmp_path, capsys):
    raw = tmp_path / "raw.jsonl"
    write_manifest(raw, _bad_corpus(tmp_path))
    kept, n_excluded = prepare_split(
        str(raw), str(tmp_path / "clean.jsonl"), str(tmp_path / "excl.json"), SETTINGS, 2
    )
    assert (kept, n_excluded) == (1, len(EXPECTED))
    assert [u.id for u in read_manifest(tmp_path / "clean.jsonl")] == ["good"]
    excl = read_json(tmp_path / "excl.json")
    assert sum(excl["counts"].values()) == len(EXPECTED)
    assert excl["counts"][checks.UNREADABLE] == 2
    assert {row["id"] for row in excl["utterances"]} == set(EXPECTED)
    # every exclusion is reported on stderr with its id and path
    err = capsys.readouterr().err
    assert "excluded corrupt (" in err and "corrupt.flac" in err


def test_a_split_left_empty_stops_naming_it_and_the_reasons(tmp_path):
    # else BPE training, features or decoding fail later, far from the cause
    bad = [u for u in _bad_corpus(tmp_path) if u.id != "good"]
    raw = tmp_path / "dev.jsonl"
    write_manifest(raw, bad)
    out = (str(tmp_path / "clean.jsonl"), str(tmp_path / "excl.json"))
    with pytest.raises(AsrpruneError) as err:
        prepare_split(str(raw), *out, SETTINGS, 1)
    message = str(err.value)
    assert f"split 'dev' ({raw}): the data checks exclude all {len(bad)} utterances" in message
    assert "(unreadable_audio 2, wrong_sample_rate 1, empty_audio 1, too_long 1" in message
    assert "non_text_transcript 3)" in message
    write_manifest(raw, [u for u in bad if u.id in ("missing", "notext")])
    with pytest.raises(AsrpruneError, match=r"\(unreadable_audio 1, empty_transcript 1\)"):
        prepare_split(str(raw), *out, SETTINGS, 1)  # only the reasons that occur
    write_manifest(raw, [])
    with pytest.raises(AsrpruneError, match=r"split 'dev' \(.*\) has no utterances"):
        prepare_split(str(raw), *out, SETTINGS, 1)
