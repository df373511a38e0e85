"""Work folders: a job resumes its own checkpoints and starts over on another job's."""

from __future__ import annotations

import json

from asrprune.workdir import (
    IDENTITY,
    REPLACED_SUFFIX,
    claim_work_dir,
    file_digest,
    file_digests,
    split_files,
)

IDENTITY_A = {"job": "prune", "train": {"peak_lr": 2e-4, "max_steps": 300}, "sizes": (1, 2)}


def test_a_new_folder_is_claimed_and_resumes_nothing(tmp_path):
    work = tmp_path / "work"
    assert not claim_work_dir(work, IDENTITY_A)
    saved = json.loads((work / IDENTITY).read_text())
    assert saved["train"] == {"max_steps": 300, "peak_lr": 2e-4} and saved["sizes"] == [1, 2]


def test_the_same_job_keeps_its_checkpoints(tmp_path):
    work = tmp_path / "work"
    claim_work_dir(work, IDENTITY_A)
    (work / "ckpt.pt").write_bytes(b"state")
    assert claim_work_dir(work, dict(IDENTITY_A))
    assert (work / "ckpt.pt").read_bytes() == b"state"


def test_another_job_starts_empty_and_keeps_the_old_folder_aside(tmp_path, capsys):
    work = tmp_path / "work"
    claim_work_dir(work, IDENTITY_A)
    (work / "finetune").mkdir()
    (work / "finetune" / "ckpt.pt").write_bytes(b"old result")
    changed = {**IDENTITY_A, "train": {"peak_lr": 5e-4, "max_steps": 300}}
    assert not claim_work_dir(work, changed)
    assert sorted(p.name for p in work.iterdir()) == [IDENTITY]
    err = capsys.readouterr().err
    assert "changed: train.peak_lr" in err and REPLACED_SUFFIX in err
    assert json.loads((work / IDENTITY).read_text())["train"]["peak_lr"] == 5e-4
    aside = tmp_path / f"work{REPLACED_SUFFIX}"
    assert (aside / "finetune" / "ckpt.pt").read_bytes() == b"old result"
    assert json.loads((aside / IDENTITY).read_text())["train"]["peak_lr"] == 2e-4


def test_only_the_latest_replaced_folder_is_kept(tmp_path):
    work = tmp_path / "work"
    for lr in (1e-4, 2e-4, 3e-4):
        claim_work_dir(work, {**IDENTITY_A, "train": {"peak_lr": lr}})
        (work / "ckpt.pt").write_text(str(lr))
    aside = tmp_path / f"work{REPLACED_SUFFIX}"
    assert (aside / "ckpt.pt").read_text() == str(2e-4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work", f"work{REPLACED_SUFFIX}"]


def test_a_folder_without_a_readable_identity_is_set_aside(tmp_path, capsys):
    work = tmp_path / "work"
    work.mkdir()
    (work / "pruned.pt").write_bytes(b"from an older version")
    (work / IDENTITY).write_text("{not json")
    assert not claim_work_dir(work, IDENTITY_A)
    assert not (work / "pruned.pt").exists()
    assert f"no readable {IDENTITY}" in capsys.readouterr().err


def test_input_digests_follow_file_contents(tmp_path):
    manifest, features = tmp_path / "train.jsonl", tmp_path / "features"
    features.mkdir()
    manifest.write_text('{"id": "a"}\n')
    (features / "index.json").write_text("{}")
    files = split_files({"train": (manifest, features)})
    assert set(files) == {"train_manifest", "train_features"}
    before = file_digests(files)
    manifest.write_text('{"id": "b"}\n')
    after = file_digests(files)
    assert before["train_manifest"] != after["train_manifest"]
    index = file_digest(features / "index.json")
    assert before["train_features"] == after["train_features"] == index
