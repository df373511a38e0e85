"""LibriSpeech manifests from a folder laid out like the real corpus (tiny, generated)."""

import io
import tarfile

import pytest

from asrprune.data.librispeech import check_root, download_subset, split_utterances
from asrprune.errors import AsrpruneError
from tests.builders import write_tone


def _fake_subset(root, subset, speakers=("19", "26"), per_chapter=2):
    for spk in speakers:
        chapter = root / subset / spk / "198"
        lines = []
        for n in range(per_chapter):
            uid = f"{spk}-198-{n:04d}"
            write_tone(chapter / f"{uid}.flac", seconds=0.5 + n / 4)
            lines.append(f"{uid} THIS IS UTTERANCE NUMBER {['ONE', 'TWO', 'THREE'][n]}")
        (chapter / f"{spk}-198.trans.txt").write_text("\n".join(lines) + "\n")


def test_manifests_from_folder(tmp_path):
    _fake_subset(tmp_path, "dev-clean")
    _fake_subset(tmp_path, "dev-other", speakers=("7",))
    utts = split_utterances(tmp_path, ["dev-clean", "dev-other"])
    assert [u.id for u in utts] == [
        "19-198-0000",
        "19-198-0001",
        "26-198-0000",
        "26-198-0001",
        "7-198-0000",
        "7-198-0001",
    ]
    assert utts[1].duration == pytest.approx(0.75)
    assert utts[0].text == "THIS IS UTTERANCE NUMBER ONE"
    assert utts[0].speaker == "19"
    assert utts[0].audio.endswith("dev-clean/19/198/19-198-0000.flac")


def test_missing_root_or_subset_is_a_clear_error(tmp_path):
    with pytest.raises(AsrpruneError, match="root is not set"):
        check_root(None, ["test-clean"])
    with pytest.raises(AsrpruneError, match="folder not found: .*nowhere"):
        check_root(tmp_path / "nowhere", ["test-clean"])
    (tmp_path / "test-clean").mkdir()
    with pytest.raises(AsrpruneError, match="lacks the subset folder.*test-other"):
        check_root(tmp_path, ["test-clean", "test-other"])


def test_download_unpacks_an_archive(tmp_path):
    """The download path on a local archive (file:// URL): no network in tests."""
    src = tmp_path / "src"
    _fake_subset(src / "LibriSpeech", "test-clean", speakers=("1",), per_chapter=1)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with tarfile.open(mirror / "test-clean.tar.gz", "w:gz") as tar:
        tar.add(src / "LibriSpeech", arcname="LibriSpeech")
    dest = tmp_path / "LibriSpeech"
    out = download_subset(mirror.as_uri(), "test-clean", dest)
    assert out == dest / "test-clean"
    assert [u.id for u in split_utterances(dest, ["test-clean"])] == ["1-198-0000"]
    assert sorted(p.name for p in dest.iterdir()) == ["test-clean"]  # no leftovers


def test_download_errors_name_the_url(tmp_path):
    with pytest.raises(AsrpruneError, match="unknown LibriSpeech subset"):
        download_subset(tmp_path.as_uri(), "train-clean-999", tmp_path)
    with pytest.raises(AsrpruneError, match="download of .*test-clean.tar.gz failed"):
        download_subset(tmp_path.as_uri(), "test-clean", tmp_path / "d")
    bad = tmp_path / "m"
    bad.mkdir()
    with tarfile.open(bad / "dev-clean.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("other/readme.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(AsrpruneError, match="no LibriSpeech/dev-clean/ folder"):
        download_subset(bad.as_uri(), "dev-clean", tmp_path / "d")
