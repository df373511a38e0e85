"""The run name the report path is built from, resolved as Snakemake merges config."""

from __future__ import annotations

import pytest

from asrprune.cli import main
from asrprune.errors import AsrpruneError
from asrprune.results.report import run_name
from tests.builders import REPO


def test_run_name_follows_snakemakes_config_order(tmp_path):
    default = tmp_path / "config.yaml"
    default.write_text("run: embedded\nseed: 1\n")
    a, b, no_run = tmp_path / "a.yaml", tmp_path / "b.yaml", tmp_path / "c.yaml"
    a.write_text("run: first\n")
    b.write_text("run: second\n")
    no_run.write_text("seed: 3\n")
    assert run_name([], default) == "embedded"
    assert run_name(["--cores", "all"], default) == "embedded"
    assert run_name(["--configfile", str(a), "--cores", "2"], default) == "first"
    assert run_name(["--configfile", str(a), str(b)], default) == "second"
    assert run_name(["--configfiles", str(b), "--configfile", str(no_run)], default) == "second"
    assert run_name(["--configfile", str(a), "--config", "seed=2", "run=cli"], default) == "cli"
    assert run_name(["-C", "run=x", "--configfile", str(a)], default) == "x"


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(AsrpruneError, match="config file not found: .*nope.yaml"):
        run_name(["--configfile", str(tmp_path / "nope.yaml")], REPO / "config/config.yaml")


def test_cli_prints_the_run_of_the_repos_configs(capsys):
    default = str(REPO / "config/config.yaml")
    smoke = str(REPO / "config/smoke.yaml")
    assert main(["run-name", "--default-config", default, "--", "--configfile", smoke]) == 0
    assert capsys.readouterr().out == "smoke\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "config file {path} is empty"), ("run: [x\n", "{path}: not valid YAML: line 2")],
)
def test_empty_or_malformed_config_file_stops_the_cli_naming_it(tmp_path, capsys, text, message):
    # run-workflow.sh asks for the run name first: Snakemake's own message names no file
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    default = str(REPO / "config/config.yaml")
    assert main(["run-name", "--default-config", default, "--", "--configfile", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("asrprune run-name: error: ") and message.format(path=path) in err
