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


def test_a_killed_attempts_run_is_replaced_not_duplicated(tmp_path):
    """A job killed inside its run leaves it RUNNING (a failed one, FAILED); the next
    attempt deletes it, and leaves finished runs and other jobs' runs alone."""
    import mlflow

    ids_file = tmp_path / "ids.json"
    ids = init_tracking(tmp_path / "mlflow.db", "asrprune-test", "test", ids_file)
    client = mlflow.MlflowClient(ids["tracking_uri"])
    parent = {"mlflow.parentRunId": ids["parent_run_id"]}
    killed = client.create_run(ids["experiment_id"], run_name="evaluate-x", tags=parent)
    failed = client.create_run(ids["experiment_id"], run_name="evaluate-x", tags=parent)
    client.set_terminated(failed.info.run_id, "FAILED")
    with child_run(ids_file, "teacher", {"stage": "teacher"}):
        pass
    with child_run(ids_file, "evaluate-y", {"stage": "evaluate"}):
        pass
    other = client.create_run(ids["experiment_id"], run_name="evaluate-y", tags=parent)
    with child_run(ids_file, "evaluate-x", {"stage": "evaluate"}) as ml:
        new = ml.active_run().info.run_id
    runs = mlflow.search_runs(
        [ids["experiment_id"]], filter_string=f"tags.mlflow.parentRunId = '{ids['parent_run_id']}'"
    )
    names = sorted(zip(runs["tags.mlflow.runName"], runs["status"], strict=True))
    assert names == [
        ("evaluate-x", "FINISHED"),
        ("evaluate-y", "FINISHED"),
        ("evaluate-y", "RUNNING"),  # another job's runs are not this job's to delete
        ("teacher", "FINISHED"),
    ]
    assert new in set(runs["run_id"]) and other.info.run_id in set(runs["run_id"])
    for run in (killed, failed):
        assert client.get_run(run.info.run_id).info.lifecycle_stage == "deleted"


def test_tracking_uri_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'server.db'}")
    ids = init_tracking(tmp_path / "unused.db", "e", "r", tmp_path / "ids.json")
    assert ids["tracking_uri"].endswith("server.db")
    assert not (tmp_path / "unused.db").exists()


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a.b": 1, "a.c.d": 2, "e": 3}
