"""The embedded corpus: settings, plan, and a tiny real build (needs the Debian packages)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asrprune.data import corpus as C
from asrprune.data import voices as V
from asrprune.data.manifest import SPLITS, read_manifest
from asrprune.errors import AsrpruneError
from asrprune.io import read_json

TINY = {
    "seed": 3,
    "utterances": {"train": 12, "dev": 4, "test-clean": 4, "test-other": 4},
    "train_speakers": 6,
    "test_other_speakers": 3,
    "train_noisy_fraction": 0.5,
}
PROGRAMS = [*V.PROGRAM_PACKAGES, "diatheke", "bible"]
needs_debian = pytest.mark.skipif(
    any(shutil.which(p) is None for p in PROGRAMS),
    reason="the embedded corpus needs espeak-ng, flite, festival, sox, diatheke and bible",
)


def test_default_settings_are_valid_and_round_trip():
    default = C.EmbeddedCorpusSettings()
    assert C.EmbeddedCorpusSettings.from_dict(json.loads(json.dumps(default.to_dict()))) == default


def test_from_dict_converts_lists_and_refuses_unknown_keys():
    s = C.EmbeddedCorpusSettings.from_dict({"snr_db": [5, 15], "rt60_s": [0.3, 0.4]})
    assert s.snr_db == (5, 15) and s.rt60_s == (0.3, 0.4)
    with pytest.raises(AsrpruneError, match="'snr'"):
        C.EmbeddedCorpusSettings.from_dict({"snr": [5, 15]})


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"utterances": {"train": 10}}, "utterances"),
        ({"utterances": {**TINY["utterances"], "dev": -1}}, "utterances.dev"),
        ({"min_words": 8, "max_words": 4}, "max_words"),
        ({"snr_db": [20, 10]}, "snr_db"),
        ({"rt60_s": [0.2]}, "rt60_s"),
        ({"train_noisy_fraction": 1.5}, "train_noisy_fraction"),
        ({"engine_weights": {"espeak": 1, "mbrola": 1}}, "engine_weights"),
        ({"heldout_voices": ["espeak/en-us"]}, "heldout_voices"),
        ({"seed": True}, "seed"),
    ],
)
def test_bad_settings_name_the_field(override, field):
    with pytest.raises(AsrpruneError, match=f"setting {field}="):
        C.EmbeddedCorpusSettings.from_dict(override)


def test_apportion_is_exact():
    assert C._apportion(10, {"espeak": 0.6, "flite": 0.2, "festival": 0.2}) == {
        "espeak": 6, "festival": 2, "flite": 2,
    }  # fmt: skip
    assert sum(C._apportion(7, {"a": 1, "b": 1, "c": 1}).values()) == 7


@pytest.fixture(scope="module")
def split_sentences(tmp_path_factory):
    from asrprune.data.sentences import load_split_sentences

    return load_split_sentences(4, 20, tmp_path_factory.getbasetemp() / "bible-sentences")


@needs_debian
def test_plan_is_seeded_prefix_stable_and_holds_voices_out(split_sentences, tmp_path):
    settings = C.EmbeddedCorpusSettings(**{**TINY, "train_speakers": 40})
    plan = C.plan_corpus(settings, tmp_path, split_sentences)
    bigger = C.EmbeddedCorpusSettings(
        **{**TINY, "train_speakers": 40, "utterances": {s: 30 for s in SPLITS}}
    )
    bigger_plan = C.plan_corpus(bigger, tmp_path, split_sentences)
    for split in SPLITS:
        small = [p for p in plan if p.split == split]
        assert small == [p for p in bigger_plan if p.split == split][: len(small)]
    other_seed = C.plan_corpus(
        C.EmbeddedCorpusSettings(**{**TINY, "seed": 4}), tmp_path, split_sentences
    )
    assert [p.id for p in other_seed] != [p.id for p in plan]
    train_voices, other_voices = C.split_voices(settings)
    assert not set(train_voices) & set(other_voices)
    assert {v.engine for v in other_voices} == {"espeak", "flite", "festival"}
    assert all(p.noise_kind and p.snr_db and p.rt60_s for p in plan if p.split == "test-other")
    assert not any(p.noise_kind for p in plan if p.split in ("dev", "test-clean"))
    pool = C.speaker_pool(train_voices, 40, settings, 0)
    assert len({s.id for s in pool}) == 40
    assert [s.voice.engine for s in pool].count("espeak") == 24


@needs_debian
def test_split_holds_out_variants_in_every_accent_or_whole_accents_on_request():
    train, other = C.split_voices(C.EmbeddedCorpusSettings(**TINY))
    espeak = {
        name: [v for v in voices if v.engine == "espeak"]
        for name, voices in (("train", train), ("other", other))
    }
    accents = set(V.espeak_accents())
    assert {v.accent for v in espeak["other"]} == {v.accent for v in espeak["train"]} == accents
    assert not {v.variant for v in espeak["other"]} & {v.variant for v in espeak["train"]}
    n_held = len({v.variant for v in espeak["other"]})
    assert n_held == round(0.2 * len(V.espeak_variants()))

    train, other = C.split_voices(C.EmbeddedCorpusSettings(**TINY, heldout_accents=("en-029",)))
    assert "en-029" not in {v.accent for v in train}
    assert {v.variant for v in other if v.accent == "en-029"} == set(V.espeak_variants())
    assert {v.accent for v in other} >= accents - {"en-029"}
    assert sorted(train + other) == V.voice_catalogue()


def _rows(out_dir):
    return {
        split: [
            (u.id, u.text, u.duration, u.speaker) for u in read_manifest(out_dir / f"{split}.jsonl")
        ]
        for split in SPLITS
    }


@needs_debian
def test_tiny_corpus_builds_deterministically_and_resumes(tmp_path, tmp_path_factory, capsys):
    settings = C.EmbeddedCorpusSettings.from_dict(TINY)
    cache = tmp_path_factory.getbasetemp() / "bible-sentences"
    first = tmp_path / "a"
    summary = C.build_embedded_corpus(settings, first, threads=2, cache_dir=cache)
    assert {s: summary["splits"][s]["utterances"] for s in SPLITS} == TINY["utterances"]
    assert summary["synthesised"] == 24 and summary["reused_files"] == 0

    manifests = {split: read_manifest(first / f"{split}.jsonl") for split in SPLITS}
    for split, utts in manifests.items():
        for u in utts:
            path = Path(u.audio)
            assert path.parent == first / "audio" / split / u.speaker and path.suffix == ".flac"
            info = sf.info(str(path))
            assert (info.samplerate, info.channels) == (16000, 1)
            assert u.duration == pytest.approx(info.frames / 16000)
            assert 0.5 < u.duration < settings.max_seconds
            assert u.id.startswith(u.speaker + "-")
    # Test-other's base voices (speaker id minus its perturbation) are never trained on.
    base = {s: {u.speaker.rsplit("_", 1)[0] for u in manifests[s]} for s in SPLITS}
    assert not base["test-other"] & (base["train"] | base["dev"] | base["test-clean"])
    train_text = {u.text for u in manifests["train"]}
    for split in SPLITS[1:]:
        assert not train_text & {u.text for u in manifests[split]}

    # Re-synthesis plus the planned degradation gives the built audio back (to FLAC's
    # 16-bit step), so the clean speech under test-other's noise can be recovered.
    plan = C.plan_corpus(settings, first, C.load_split_sentences(4, 20, cache))
    job = next(j for j in plan if j.split == "test-other")
    built, _ = sf.read(job.audio, dtype="float32")
    clean = C.synthesise_clean(job)
    assert np.abs(C.degrade_as_planned(clean, job) - built).max() < 2 / 32768
    assert np.abs(clean - built).max() > 0.01

    # Same seed, another folder: the same manifests (text, ids, durations, speakers).
    C.build_embedded_corpus(settings, tmp_path / "b", threads=2, cache_dir=cache)
    assert _rows(tmp_path / "b") == _rows(first)

    # A rerun keeps every file; a deleted one is made again, identically.
    victim = Path(manifests["test-other"][0].audio)
    kept = Path(manifests["train"][0].audio)
    mtime = kept.stat().st_mtime_ns
    victim.unlink()
    again = C.build_embedded_corpus(settings, first, threads=2, cache_dir=cache)
    assert again["synthesised"] == 1 and again["reused_files"] == 23
    assert kept.stat().st_mtime_ns == mtime and victim.is_file()
    assert _rows(first) == _rows(tmp_path / "b")

    # Other settings are never mixed into the same folder: the old corpus is moved aside.
    changed = C.EmbeddedCorpusSettings.from_dict({**TINY, "seed": 4})
    capsys.readouterr()
    C.build_embedded_corpus(changed, first, threads=1, cache_dir=cache)
    assert "other settings (seed)" in capsys.readouterr().err
    assert _rows(tmp_path / "a.replaced") == _rows(tmp_path / "b") != _rows(first)
    assert C.EmbeddedCorpusSettings.from_dict(read_json(first / "settings.json")) == changed


def test_fresh_machine_gets_one_message_naming_every_missing_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    settings = C.EmbeddedCorpusSettings.from_dict(TINY)
    with pytest.raises(AsrpruneError) as err:
        C.build_embedded_corpus(settings, tmp_path / "corpus", threads=1)
    for program, package in [
        ("espeak-ng", "espeak-ng"),
        ("flite", "flite"),
        ("festival", "festival"),
        ("sox", "sox"),
        ("diatheke", "diatheke"),
        ("bible", "bible-kjv"),
    ]:
        assert f"{program} (Debian package {package})" in str(err.value)
