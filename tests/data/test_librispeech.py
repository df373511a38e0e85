"""LibriSpeech manifests from a folder laid out like the real corpus (tiny, generated)."""

import hashlib
import io
import re
import tarfile

import pytest

from asrprune.data import librispeech
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


def _archive(mirror, subset, src):
    """``mirror/<subset>.tar.gz`` holding ``src`` as LibriSpeech/; its MD5 (hex)."""
    mirror.mkdir(exist_ok=True)
    path = mirror / f"{subset}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(src, arcname="LibriSpeech")
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def published(monkeypatch):
    """The table of published MD5s, for the test to fill with its own archives'."""
    table = dict(librispeech.ARCHIVE_MD5)
    monkeypatch.setattr(librispeech, "ARCHIVE_MD5", table)
    return table


def test_published_checksums_cover_every_subset():
    assert sorted(librispeech.ARCHIVE_MD5) == sorted(librispeech.SUBSETS)
    assert all(re.fullmatch(r"[0-9a-f]{32}", md5) for md5 in librispeech.ARCHIVE_MD5.values())


def test_download_unpacks_an_archive(tmp_path, published):
    """The download path on a local archive (file:// URL): no network in tests."""
    src = tmp_path / "src"
    _fake_subset(src / "LibriSpeech", "test-clean", speakers=("1",), per_chapter=1)
    mirror = tmp_path / "mirror"
    published["test-clean"] = _archive(mirror, "test-clean", src / "LibriSpeech")
    dest = tmp_path / "LibriSpeech"
    out = download_subset(mirror.as_uri(), "test-clean", dest)
    assert out == dest / "test-clean"
    assert [u.id for u in split_utterances(dest, ["test-clean"])] == ["1-198-0000"]
    assert sorted(p.name for p in dest.iterdir()) == ["test-clean"]  # no leftovers


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_corrupted_archive_is_refused_and_nothing_unpacked(tmp_path, published, damage):
    src = tmp_path / "src"
    _fake_subset(src / "LibriSpeech", "dev-other", speakers=("1",), per_chapter=1)
    mirror = tmp_path / "mirror"
    published["dev-other"] = good = _archive(mirror, "dev-other", src / "LibriSpeech")
    archive = mirror / "dev-other.tar.gz"
    data = bytearray(archive.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        del data[len(data) // 2 :]
    archive.write_bytes(bytes(data))
    bad = hashlib.md5(bytes(data)).hexdigest()
    dest = tmp_path / "LibriSpeech"
    with pytest.raises(AsrpruneError) as err:
        download_subset(mirror.as_uri(), "dev-other", dest)
    message = str(err.value)
    assert "dev-other.tar.gz" in message and "nothing was unpacked" in message
    assert f"is {bad}, expected {good}" in message
    assert list(dest.iterdir()) == []


def test_the_published_table_is_what_is_checked(tmp_path):
    """A real subset name with a home-made archive: its MD5 is not the published one."""
    src = tmp_path / "src"
    _fake_subset(src / "LibriSpeech", "test-clean", speakers=("1",), per_chapter=1)
    _archive(tmp_path / "mirror", "test-clean", src / "LibriSpeech")
    published = librispeech.ARCHIVE_MD5["test-clean"]
    with pytest.raises(AsrpruneError, match=f"expected {published} .published on openslr"):
        download_subset((tmp_path / "mirror").as_uri(), "test-clean", tmp_path / "d")


def test_download_errors_name_the_url(tmp_path, published):
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
    published["dev-clean"] = hashlib.md5((bad / "dev-clean.tar.gz").read_bytes()).hexdigest()
    with pytest.raises(AsrpruneError, match="no LibriSpeech/dev-clean/ folder"):
        download_subset(bad.as_uri(), "dev-clean", tmp_path / "d")
