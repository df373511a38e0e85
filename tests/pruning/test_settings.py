"""What each pruning method reads of config prune: given to its job, and nothing else."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from asrprune.config import load_config
from asrprune.errors import AsrpruneError
from asrprune.pruning.job import PRUNE_METHODS, SECTIONS, run_prune
from asrprune.pruning.settings import READS, check_method_settings, method_settings
from tests.builders import REPO

L0 = ("l0-params", "l0-flops", "l0-nohidden", "l0-coarse", "l0-nokd")


@pytest.fixture(scope="module")
def prune():
    """The default prune section without its per-method overrides: the shared sections as
    every method would read them (the overrides have tests of their own below)."""
    return {**load_config(REPO / "config/config.yaml")["prune"], "overrides": {}}


def test_the_default_overrides_are_each_methods_own_rates():
    prune = load_config(REPO / "config/config.yaml")["prune"]
    assert method_settings("omp", prune)["finetune"]["peak_lr"] == 8e-4
    assert method_settings("parp", prune)["train"]["peak_lr"] == 2e-4
    assert method_settings("l0-params", prune)["train"]["peak_lr"] == prune["train"]["peak_lr"]


def test_every_method_a_job_runs_says_what_it_reads():
    assert tuple(READS) == PRUNE_METHODS
    assert {section for reads in READS.values() for section in reads} <= set(SECTIONS)


def test_the_keys_named_are_keys_of_their_sections(prune):
    for method, reads in READS.items():
        for section, keys in reads.items():
            named = {*(keys.only or ()), *keys.but}
            fields = {f.name for f in dataclasses.fields(SECTIONS[section])}
            assert named <= fields & set(prune[section]), (method, section)


def test_every_setting_is_read_by_some_method(prune):
    for section in SECTIONS:
        for key in prune[section]:
            readers = [m for m, reads in READS.items() if section in reads]
            assert any(READS[m][section].reads(key) for m in readers), f"prune.{section}.{key}"


def test_each_method_is_given_what_it_reads(prune):
    for method in L0:
        got = method_settings(method, prune)
        assert set(got) == {"l0", "train", "finetune"}
        assert got["train"] == prune["train"] and got["finetune"] == prune["finetune"]
    assert method_settings("l0-params", prune)["l0"] == prune["l0"]
    nokd = {k: v for k, v in prune["l0"].items() if k not in ("distill_weight", "distill_map")}
    assert method_settings("l0-nokd", prune)["l0"] == nokd
    assert method_settings("parp", prune) == {
        "l0": {"reference_seconds": prune["l0"]["reference_seconds"]},
        "omp": prune["omp"],
        "parp": prune["parp"],
        "train": prune["train"],
        "finetune": prune["finetune"],
    }
    for method in ("omp", "svd"):  # one shot: prune.train's steps are fine-tuning's
        assert method_settings(method, prune) == {
            "l0": {"reference_seconds": prune["l0"]["reference_seconds"]},
            "train": {"max_steps": prune["train"]["max_steps"]},
            "finetune": prune["finetune"],
        } | ({"omp": prune["omp"]} if method == "omp" else {})


def test_overrides_set_one_methods_settings_and_only_what_it_reads(prune):
    over = {**prune, "overrides": {"omp": {"finetune": {"peak_lr": 3e-4}}}}
    assert method_settings("omp", over)["finetune"] == {**prune["finetune"], "peak_lr": 3e-4}
    assert method_settings("parp", over) == method_settings("parp", prune)
    assert prune["finetune"]["peak_lr"] != 3e-4  # the shared section is left as it was
    with pytest.raises(AsrpruneError, match=r"prune.overrides.omp.train.peak_lr: not read by omp"):
        method_settings("omp", {**prune, "overrides": {"omp": {"train": {"peak_lr": 1e-3}}}})
    with pytest.raises(AsrpruneError, match=r"prune.overrides.svd.parp: not read by svd"):
        method_settings("svd", {**prune, "overrides": {"svd": {"parp": {"reprune_every": 3}}}})


@pytest.mark.parametrize("method", PRUNE_METHODS)
def test_a_job_takes_what_it_is_given_also_as_json(prune, method):
    given = method_settings(method, prune)
    assert check_method_settings(method, given) == given
    assert check_method_settings(method, json.dumps(given)) == given


# A method, a change to what it is given (its settings, config prune), and the error.
REFUSED = [
    ("omp", lambda s, p: {**s, "parp": p["parp"]}, "prune.parp: not read by omp"),
    ("omp", lambda s, p: {**s, "train": p["train"]}, "prune.train.peak_lr: not read by omp"),
    ("svd", lambda s, p: {**s, "train": {}}, "prune.train.max_steps: missing"),
    ("svd", lambda s, p: {**s, "omp": p["omp"]}, "prune.omp: not read by svd"),
    ("parp", lambda s, p: {**s, "l0": p["l0"]}, "prune.l0.gate_lr: not read by parp"),
    ("parp", lambda s, p: {k: v for k, v in s.items() if k != "parp"}, "prune.parp: missing"),
    ("l0-params", lambda s, p: {**s, "parp": p["parp"]}, "prune.parp: not read by l0-params"),
    ("l0-flops", lambda s, p: {**s, "finetune": 1}, "prune.finetune: expected a mapping"),
    (
        "l0-nokd",
        lambda s, p: {**s, "l0": p["l0"]},
        "prune.l0.distill_weight: not read by l0-nokd",
    ),
]


@pytest.mark.parametrize(("method", "change", "message"), REFUSED)
def test_settings_a_method_does_not_read_or_lacks_are_refused(prune, method, change, message):
    with pytest.raises(AsrpruneError, match=re.escape(message)):
        check_method_settings(method, change(method_settings(method, prune), prune))


def test_a_refusal_says_what_the_method_reads(prune):
    with pytest.raises(AsrpruneError) as e:
        check_method_settings("omp", prune)
    assert "prune.l0.reference_seconds, prune.train.max_steps, prune.finetune" in str(e.value)
    with pytest.raises(AsrpruneError, match="unknown pruning method 'l1-params'"):
        method_settings("l1-params", prune)
    with pytest.raises(AsrpruneError, match="not valid JSON"):
        check_method_settings("svd", "{")


def test_a_job_refuses_before_it_reads_anything(prune, tmp_path):
    settings = {**method_settings("omp", prune), "parp": prune["parp"]}
    with pytest.raises(AsrpruneError, match="prune.parp: not read by omp"):
        run_prune(
            teacher_path=tmp_path / "no-teacher.pt",
            splits={},
            method_name="omp",
            sparsity=0.5,
            settings=settings,
            out_model=tmp_path / "m.pt",
            out_summary=tmp_path / "s.json",
            work_dir=tmp_path / "work",
        )
    assert not (tmp_path / "work").exists()


def test_the_command_refuses_with_an_error_naming_the_setting(prune, tmp_path, capsys):
    from asrprune.cli import main

    settings = json.dumps({**method_settings("svd", prune), "parp": prune["parp"]})
    argv = ["prune", "--teacher", str(tmp_path / "t.pt"), "--data", str(tmp_path)]
    argv += ["--method", "svd", "--sparsity", "0.5", "--settings", settings]
    argv += ["--out", str(tmp_path / "m.pt"), "--summary", str(tmp_path / "s.json")]
    assert main([*argv, "--work-dir", str(tmp_path / "work")]) == 2
    assert "prune.parp: not read by svd" in capsys.readouterr().err
