"""Atomic file output: modes that follow the umask, a sync before the rename, no partials."""

from __future__ import annotations

import os
import stat

import pytest

from asrprune import io
from asrprune.io import atomic_open, atomic_path, read_json, write_json


@pytest.fixture
def umask():
    """Set the process umask for one test; the old one comes back after it."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    write_json(tmp_path / "a.json", {"x": 1})
    with atomic_open(tmp_path / "b.bin", "wb") as f:
        f.write(b"x")
    with atomic_path(tmp_path / "c.txt") as tmp:
        tmp.write_text("x")
    for name in ("a.json", "b.bin", "c.txt"):
        assert _mode(tmp_path / name) == expected, name


def test_the_file_is_synced_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(src)))
        real_replace(src, dst)

    monkeypatch.setattr(io.os, "fsync", fsync)
    monkeypatch.setattr(io.os, "replace", replace)
    with atomic_path(tmp_path / "out.txt") as tmp:
        tmp.write_text("done")
    assert events == [("fsync", str(tmp)), ("replace", str(tmp))]

    events.clear()
    write_json(tmp_path / "out.json", [1])
    assert [e[0] for e in events] == ["fsync", "replace"]
    assert events[0][1] == events[1][1]  # the temporary file, before it is renamed


def test_a_failure_mid_write_leaves_the_old_file_and_no_temporary(tmp_path):
    write_json(tmp_path / "out.json", {"old": True})
    with pytest.raises(RuntimeError, match="killed"), atomic_open(tmp_path / "out.json") as f:
        f.write('{"new": ')
        f.flush()
        raise RuntimeError("killed")
    assert read_json(tmp_path / "out.json") == {"old": True}
    with pytest.raises(RuntimeError, match="killed"), atomic_open(tmp_path / "new.json") as f:
        f.write('{"new": ')
        raise RuntimeError("killed")
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_a_failed_sync_renames_nothing(tmp_path, monkeypatch):
    def fsync(fd):
        raise OSError("I/O error")

    monkeypatch.setattr(io.os, "fsync", fsync)
    with pytest.raises(OSError, match="I/O error"):
        write_json(tmp_path / "out.json", {"x": 1})
    assert list(tmp_path.iterdir()) == []
