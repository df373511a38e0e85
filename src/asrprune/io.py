"""Atomic file output: a job killed mid-write never leaves a half-written result behind.

In a data-parallel job (torchrun) every rank computes the same results, and only rank 0
writes them: on the other ranks a write goes to a temporary file that is then dropped,
so code that saves a result needs no rank checks of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from asrprune.distributed import is_main_process
from asrprune.errors import AsrpruneError


def _create_temp(path: Path) -> Path:
    """Create an empty, unique temporary file beside ``path``, with the umask's mode.

    Not ``mkstemp``, whose 0600 would make results unreadable to collaborators on a shared
    filesystem: ``os.open`` with 0666 gives what a plain ``open`` gives (0644 under umask
    022), without reading the process-wide umask.
    """
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise AsrpruneError(f"cannot create a temporary file beside {path}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success only, sync it to disk and rename
    it onto ``path`` (and only on rank 0 of a distributed job; see the module).

    The sync comes first so that a crash of the machine after the rename cannot leave an
    empty or partial ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _create_temp(path)
    try:
        yield tmp_path
        if is_main_process():
            _fsync(tmp_path)
            os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file for writing that replaces ``path`` when the block succeeds."""
    with atomic_path(path) as tmp, open(tmp, mode, encoding=None if "b" in mode else "utf-8") as f:
        yield f


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_open(path) as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_jsonl(path: str | os.PathLike) -> list[Any]:
    """One JSON value per non-blank line; a bad line is an error naming file and line."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as e:
                    raise AsrpruneError(f"{path}, line {number}: not JSON ({e})") from None
    return rows


def json_field(data: Any, path: str | os.PathLike, *keys: str) -> Any:
    """``data[k1][k2]...`` of the JSON file ``path``; a missing field is an error naming
    the file and the dotted field."""
    value = data
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            raise AsrpruneError(f"{path}: field {'.'.join(keys)!r} is missing")
        value = value[key]
    return value


def json_number(data: Any, path: str | os.PathLike, *keys: str) -> int | float:
    """:func:`json_field`, which must be a number (not a bool)."""
    value = json_field(data, path, *keys)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AsrpruneError(f"{path}: field {'.'.join(keys)!r} is not a number: {value!r}")
    return value


def require_file(path: str | os.PathLike, what: str, expected: str = "") -> Path:
    """``path`` as a Path, if it is a file; else an error naming it as ``what`` (e.g.
    "audio file"): not found, or a directory given where a file was expected. ``expected``
    adds what the file should be, for a directory mistaken for one."""
    path = Path(path)
    if not path.exists():
        raise AsrpruneError(f"{what} not found: {path}")
    if path.is_dir():
        article = "an" if what[:1] in "aeiou" else "a"
        hint = f" ({expected})" if expected else ""
        raise AsrpruneError(f"{path} is a directory, not {article} {what}{hint}")
    return path
