"""A real MLflow SQLite store: one experiment, one parent run, children nested under it."""

import pytest

from asrprune.io import read_json
from asrprune.tracking import child_run, flatten, init_tracking


@pytest.fixture(autouse=True)
def _no_server(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def test_init_then_children_in_separate_calls(tmp_path):
    import mlflow

    ids_file = tmp_path / "ids.json"
    ids = init_tracking(tmp_path / "mlflow.db", "asrprune-test", "test", ids_file)
    assert read_json(ids_file) == ids
    assert ids["tracking_uri"] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    with child_run(ids_file, "data", {"stage": "data"}) as ml:
        ml.log_metric("train.utterances", 12)
    with child_run(ids_file, "teacher", {"stage": "teacher"}):
        pass
    runs = mlflow.search_runs(
        [ids["experiment_id"]], filter_string=f"tags.mlflow.parentRunId = '{ids['parent_run_id']}'"
    )
    assert sorted(runs["tags.stage"]) == ["data", "teacher"]
    assert runs.set_index("tags.stage").loc["data", "metrics.train.utterances"] == 12
    # a second init reuses the experiment instead of failing on its name
    again = init_tracking(tmp_path / "mlflow.db", "asrprune-test", "test", ids_file)
    assert again["experiment_id"] == ids["experiment_id"]


def test_tracking_uri_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'server.db'}")
    ids = init_tracking(tmp_path / "unused.db", "e", "r", tmp_path / "ids.json")
    assert ids["tracking_uri"].endswith("server.db")
    assert not (tmp_path / "unused.db").exists()


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a.b": 1, "a.c.d": 2, "e": 3}
