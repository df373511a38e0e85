"""environment.yml mirrors pyproject.toml: the same dependencies, pinned the same way."""

import tomllib

import yaml

from tests.builders import REPO


def test_conda_env_mirrors_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert set(pip) == wanted
    assert "python=3.11" in env["dependencies"]
