"""Lint is part of the suite: ruff, snakefmt and snakemake --lint must be clean."""

import os
import shutil
import subprocess
import sys

import pytest

from tests.builders import REPO

BIN = REPO / ".venv" / "bin"


def _tool(name):
    path = shutil.which(name, path=f"{BIN}:{os.environ.get('PATH', '')}")
    if path is None:
        pytest.fail(f"{name} is not installed; run scripts/setup.sh")
    return path


def _run(*cmd):
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)}:\n{result.stdout}\n{result.stderr}"


def test_ruff_check():
    _run(_tool("ruff"), "check", ".")


def test_ruff_format():
    _run(_tool("ruff"), "format", "--check", ".")


def test_snakefmt():
    _run(_tool("snakefmt"), "--check", "Snakefile", "workflow/rules")


@pytest.mark.workflow
def test_snakemake_lint():
    env_path = f"{BIN}:{os.environ.get('PATH', '')}"
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint", "--configfile", "config/smoke.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": env_path},
    )
    assert result.returncode == 0, result.stdout + result.stderr
