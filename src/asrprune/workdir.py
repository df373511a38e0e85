"""Work folders of resumable jobs: a job resumes its own checkpoints, never another's.

A job killed and run again resumes from its work folder. A job run again with other
inputs (changed settings, a new teacher, new data) must start over instead: Snakemake
reruns a job when its params change, and resuming the earlier job's finished
checkpoints would hand back the earlier result under the new name. So a work folder
records what made it (its identity: the job's settings and the digests of its input
files), and a job with another identity starts in an empty folder. The other job's
folder is moved aside to ``<name>.replaced`` (one generation), not deleted: a config
edited by mistake must not cost the hours of training behind a checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from asrprune.data.features import INDEX_FILE
from asrprune.distributed import barrier, env_world, is_main_process
from asrprune.io import read_json, write_json

IDENTITY = "job.json"
REPLACED_SUFFIX = ".replaced"


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digests(files: Mapping[str, str | os.PathLike]) -> dict[str, str]:
    """Role to digest of its file (roles, not paths: a moved run folder still resumes)."""
    return {role: file_digest(path) for role, path in files.items()}


def split_files(splits: Mapping[str, tuple[str | os.PathLike, str | os.PathLike]]) -> dict:
    """The files that identify each split's data (name to (manifest, feature store)): its
    manifest and its feature store's index."""
    files = {}
    for name, (manifest, features) in splits.items():
        files[f"{name}_manifest"] = Path(manifest)
        files[f"{name}_features"] = Path(features) / INDEX_FILE
    return files


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys, so a message can name the setting that changed."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out = {}
    for key, value in tree.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _read_identity(path: Path) -> dict | None:
    """The recorded identity, or None when there is none or it cannot be read."""
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


def set_aside(folder: Path, why: str) -> Path:
    """Move ``folder`` to ``<folder>.replaced`` (replacing an older one) and say ``why``
    on stderr; the caller starts over in an empty ``folder``."""
    aside = folder.with_name(folder.name + REPLACED_SUFFIX)
    if aside.exists():
        shutil.rmtree(aside)
    folder.rename(aside)
    print(f"{folder}: {why}; starting over, the old folder moved to {aside}", file=sys.stderr)
    return aside


def claim_work_dir(work_dir: str | os.PathLike, identity: Mapping[str, Any]) -> bool:
    """Make ``work_dir`` this job's before it trains there; True if it resumes state.

    Kept as it is when it was made by a job of the same ``identity`` (JSON-able). When it
    holds anything else it is moved to ``<work_dir>.replaced`` (replacing an older one)
    with a line on stderr naming what changed, and this job starts in an empty folder.
    """
    work_dir = Path(work_dir)
    identity = json.loads(json.dumps(identity, sort_keys=True))  # tuples as lists, as read
    path = work_dir / IDENTITY
    old = _read_identity(path)
    same = old == identity
    if is_main_process():
        if not same and work_dir.is_dir() and any(work_dir.iterdir()):
            if old is None:
                why = f"no readable {IDENTITY}"
            else:
                before, now = _flat(old), _flat(identity)
                keys = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
                why = "changed: " + ", ".join(keys)
            set_aside(work_dir, f"made by another job ({why})")
        if not same:
            write_json(path, identity)
    if env_world().distributed:
        barrier()  # no rank reads checkpoints before rank 0 has cleared them
    return same
