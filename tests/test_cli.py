"""The command line: arguments refused with a clear message before any work."""

from __future__ import annotations

import argparse

import pytest

from asrprune.cli import COMMANDS, _build_parser, main
from tests.builders import REPO


def _commands_with(flag: str) -> list[str]:
    parser = _build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [
        name for name, p in sub.choices.items() if any(flag in a.option_strings for a in p._actions)
    ]


@pytest.mark.parametrize("threads", ["0", "-2", "two"])
def test_every_command_refuses_threads_below_one(threads, capsys):
    names = _commands_with("--threads")
    assert {"transcribe", "evaluate", "prune", "check-split"} <= set(names) <= set(COMMANDS)
    for name in names:
        with pytest.raises(SystemExit) as exit_:
            main([name, "--threads", threads])
        assert exit_.value.code == 2
        assert f"asrprune {name}: error: argument --threads: " in capsys.readouterr().err


def test_scripts_refuse_threads_below_one_too():
    for script in sorted((REPO / "scripts").glob("*.py")):
        for line in script.read_text().splitlines():
            if 'add_argument("--threads"' in line:
                assert "type=positive_int" in line, f"{script.name}: {line.strip()}"
