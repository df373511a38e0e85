"""A real MLflow SQLite store: one experiment, one parent run, children nested under it;
a dead server (a free port) and SQLite contention from real processes."""

import os
import subprocess
import sys
import time

import pytest

from asrprune.cli import main
from asrprune.errors import AsrpruneError
from asrprune.io import read_json, write_json
from asrprune.tracking import (
    _retry_locked,
    child_run,
    flatten,
    init_tracking,
    log_artifact,
    sync_spool,
)
from tests.builders import dead_server_ids, dead_tracking_uri


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
    mlflow.set_tracking_uri(ids["tracking_uri"])
    runs = mlflow.search_runs(
        [ids["experiment_id"]], filter_string=f"tags.mlflow.parentRunId = '{ids['parent_run_id']}'"
    )
    assert sorted(runs["tags.stage"]) == ["data", "teacher"]
    assert runs.set_index("tags.stage").loc["data", "metrics.train.utterances"] == 12
    # a second init reuses the experiment instead of failing on its name
    again = init_tracking(tmp_path / "mlflow.db", "asrprune-test", "test", ids_file)
    assert again["experiment_id"] == ids["experiment_id"]


def test_a_killed_attempts_run_is_replaced_not_duplicated(tmp_path):
    """A job killed inside its run leaves it RUNNING (a failed one, FAILED; one killed just
    after its run ended, FINISHED); the next attempt deletes them all, and leaves other
    jobs' runs alone."""
    import mlflow

    ids_file = tmp_path / "ids.json"
    ids = init_tracking(tmp_path / "mlflow.db", "asrprune-test", "test", ids_file)
    mlflow.set_tracking_uri(ids["tracking_uri"])  # jobs leave the global URI alone
    client = mlflow.MlflowClient(ids["tracking_uri"])
    parent = {"mlflow.parentRunId": ids["parent_run_id"]}
    killed = client.create_run(ids["experiment_id"], run_name="evaluate-x", tags=parent)
    failed = client.create_run(ids["experiment_id"], run_name="evaluate-x", tags=parent)
    client.set_terminated(failed.info.run_id, "FAILED")
    # killed after its run ended, before the process exited: Snakemake reruns the job
    ended = client.create_run(ids["experiment_id"], run_name="evaluate-x", tags=parent)
    client.set_terminated(ended.info.run_id, "FINISHED")
    with child_run(ids_file, "teacher", {"stage": "teacher"}):
        pass
    with child_run(ids_file, "evaluate-y", {"stage": "evaluate"}):
        pass
    other = client.create_run(ids["experiment_id"], run_name="evaluate-y", tags=parent)
    with child_run(ids_file, "evaluate-x", {"stage": "evaluate"}) as run:
        new = run.live_id
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
    for run in (killed, failed, ended):
        assert client.get_run(run.info.run_id).info.lifecycle_stage == "deleted"


def test_tracking_uri_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'server.db'}")
    ids = init_tracking(tmp_path / "unused.db", "e", "r", tmp_path / "ids.json")
    assert ids["tracking_uri"].endswith("server.db")
    assert not (tmp_path / "unused.db").exists()


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a.b": 1, "a.c.d": 2, "e": 3}


# -----------------------------------------------------------------------------
# tracking never costs results: a dead server, SQLite contention


def runs_of(uri: str, experiment: str):
    import mlflow

    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id]) if exp else []


def test_dead_server_init_spools_and_sync_replays(tmp_path, capfd):
    ids_file = tmp_path / "mlflow" / "ids.json"
    uri = dead_tracking_uri()
    started = time.monotonic()
    cmd = [sys.executable, "-m", "asrprune", "mlflow-init", "--store", str(tmp_path / "x.db")]
    cmd += ["--experiment", "exp", "--run", "smoke", "--out", str(ids_file)]
    init = subprocess.run(
        cmd, env={**os.environ, "MLFLOW_TRACKING_URI": uri}, capture_output=True, text=True
    )
    assert init.returncode == 0, init.stderr
    assert time.monotonic() - started < 30  # MLflow's own retries take minutes
    assert f"MLflow tracking at {uri} failed" in init.stderr
    ids = read_json(ids_file)
    assert ids["offline"] and ids["parent_run_id"] is None

    with child_run(ids_file, "data", {"stage": "data"}) as run:
        run.log_params({"source": "embedded", "n": 3})
        run.log_metrics({"train.utterances": 12}, step=0)
        run.log_artifact(ids_file)
    assert run.run_id.startswith("spool:")
    assert f"MLflow tracking at {uri} is offline" in capfd.readouterr().err
    assert len(list((tmp_path / "mlflow" / "spool").glob("data-*.jsonl"))) == 1

    store = f"sqlite:///{tmp_path / 'later.db'}"
    assert main(["mlflow-sync", "--ids", str(ids_file), "--uri", store]) == 0
    runs = {r.info.run_name: r for r in runs_of(store, "exp")}
    assert set(runs) == {"smoke", "data"}  # the parent, created by the sync, and the job
    data = runs["data"].data
    assert data.tags["mlflow.parentRunId"] == runs["smoke"].info.run_id
    assert data.params == {"source": "embedded", "n": "3"}
    assert data.metrics == {"train.utterances": 12.0}
    assert runs["data"].info.status == "FINISHED"
    # a second sync finds nothing left to replay
    assert main(["mlflow-sync", "--ids", str(ids_file), "--uri", store]) == 0
    assert len(runs_of(store, "exp")) == 2
    assert not list((tmp_path / "mlflow" / "spool").glob("*.jsonl"))


def test_a_server_that_dies_after_init_costs_seconds_and_keeps_the_run(tmp_path, capfd):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ids_file = tmp_path / "ids.json"
    ids = init_tracking(tmp_path / "mlflow.db", "exp", "smoke", ids_file)
    write_json(ids_file, {**ids, "tracking_uri": dead_tracking_uri()})  # the server goes away
    started = time.monotonic()
    with child_run(ids_file, "teacher", {"stage": "teacher"}) as run:
        for step, loss in enumerate([3.0, 2.0, 1.0], 1):
            run.log_metrics({"loss": loss}, step=step)
    assert time.monotonic() - started < 30
    assert "failed (creating the run" in capfd.readouterr().err
    assert run.run_id.startswith("spool:")

    sync_spool(ids_file, store)
    (teacher,) = [r for r in runs_of(store, "exp") if r.data.tags.get("stage") == "teacher"]
    assert teacher.data.tags["mlflow.parentRunId"] == ids["parent_run_id"]
    history = mlflow_client(store).get_metric_history(teacher.info.run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(1, 3.0), (2, 2.0), (3, 1.0)]


def test_a_run_cut_off_half_way_is_replayed_whole_and_replaces_its_part(tmp_path, capfd):
    ids = init_tracking(tmp_path / "mlflow.db", "exp", "smoke", tmp_path / "ids.json")
    store = ids["tracking_uri"]
    with child_run(tmp_path / "ids.json", "teacher", {"stage": "teacher"}) as run:
        run.log_params({"lr": 0.1})
        run.log_metrics({"loss": 3.0}, step=1)
        part = run.run_id
        run.uri = dead_tracking_uri()  # the store goes away in the middle of the job
        run.log_metrics({"loss": 2.0}, step=2)
    assert "failed (metrics" in capfd.readouterr().err
    # the pruning job attaches its summary to the finished run: into the same spool
    log_artifact(tmp_path / "ids.json", run.run_id, tmp_path / "ids.json")

    sync_spool(tmp_path / "ids.json")
    (whole,) = [r for r in runs_of(store, "exp") if r.data.tags.get("stage") == "teacher"]
    assert whole.info.run_id != part  # the part is deleted, the whole run replayed
    assert mlflow_client(store).get_run(part).info.lifecycle_stage == "deleted"
    assert whole.data.params == {"lr": "0.1"} and whole.info.status == "FINISHED"
    history = mlflow_client(store).get_metric_history(whole.info.run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(1, 3.0), (2, 2.0)]
    assert [a.path for a in mlflow_client(store).list_artifacts(whole.info.run_id)] == ["ids.json"]


def test_an_artifact_for_a_live_run_is_spooled_and_attached_later(tmp_path):
    ids = init_tracking(tmp_path / "mlflow.db", "exp", "smoke", tmp_path / "ids.json")
    with child_run(tmp_path / "ids.json", "prune", {"stage": "prune"}) as run:
        pass
    write_json(tmp_path / "ids.json", {**ids, "tracking_uri": dead_tracking_uri()})
    log_artifact(tmp_path / "ids.json", run.run_id, tmp_path / "mlflow.db")
    replayed, _ = sync_spool(tmp_path / "ids.json", ids["tracking_uri"])
    assert len(replayed) == 1
    assert len(runs_of(ids["tracking_uri"], "exp")) == 2  # the parent and the job, no other
    artifacts = mlflow_client(ids["tracking_uri"]).list_artifacts(run.run_id)
    assert [a.path for a in artifacts] == ["mlflow.db"]


def test_require_makes_a_dead_server_an_error_naming_it(tmp_path):
    uri = dead_tracking_uri()
    ids_file = tmp_path / "ids.json"
    with pytest.raises(AsrpruneError, match=f"MLflow tracking at {uri} failed.*require"):
        init_tracking_at(uri, tmp_path, ids_file, require=True)
    ids_file = dead_server_ids(tmp_path, require=True)
    uri = read_json(ids_file)["tracking_uri"]
    failed = pytest.raises(AsrpruneError, match=f"MLflow tracking at {uri} failed")
    with failed, child_run(ids_file, "evaluate-x", {}):
        pass
    assert not (tmp_path / "mlflow" / "spool").exists()


def init_tracking_at(uri, tmp_path, ids_file, require=False):
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        return init_tracking(tmp_path / "x.db", "e", "r", ids_file, require=require)
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI")
        if old is not None:
            os.environ["MLFLOW_TRACKING_URI"] = old


def mlflow_client(uri):
    import mlflow

    return mlflow.MlflowClient(uri)


_JOB = """
import sys
from asrprune.tracking import child_run
with child_run(sys.argv[1], "job-" + sys.argv[2], {"stage": "job"}) as run:
    run.log_params({f"p{k}": k for k in range(20)})
    for step in range(5):
        run.log_metrics({"a": step, "b": 2 * step}, step=step)
    print(run.run_id)
"""


def _job(ids_file, i: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.Popen(
        [sys.executable, "-c", _JOB, str(ids_file), str(i)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_eight_processes_log_into_one_sqlite_store_at_once(tmp_path):
    ids = init_tracking(tmp_path / "mlflow.db", "exp", "smoke", tmp_path / "ids.json")
    jobs = [_job(tmp_path / "ids.json", i) for i in range(8)]
    for job in jobs:
        out, err = job.communicate(timeout=300)
        assert job.returncode == 0, err
        assert "warning" not in err and not out.startswith("spool:"), err
    runs = [r for r in runs_of(ids["tracking_uri"], "exp") if r.data.tags.get("stage") == "job"]
    assert sorted(r.info.run_name for r in runs) == [f"job-{i}" for i in range(8)]
    for run in runs:
        assert run.data.tags["mlflow.parentRunId"] == ids["parent_run_id"]
        assert len(run.data.params) == 20 and run.data.metrics == {"a": 4.0, "b": 8.0}
        assert run.info.status == "FINISHED"


def test_a_job_waits_out_a_write_lock_held_by_another_process(tmp_path):
    db = tmp_path / "mlflow.db"
    ids = init_tracking(db, "exp", "smoke", tmp_path / "ids.json")
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(db), "6"], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"
    started = time.monotonic()
    job = _job(tmp_path / "ids.json", 0)
    out, err = job.communicate(timeout=300)
    assert holder.wait() == 0
    assert job.returncode == 0, err
    assert "warning" not in err, err
    assert time.monotonic() - started > 5  # it did wait for the lock
    (run,) = [r for r in runs_of(ids["tracking_uri"], "exp") if r.data.tags.get("stage") == "job"]
    assert run.info.run_id == out.strip() and run.data.metrics == {"a": 4.0, "b": 8.0}


_HOLD_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""


def test_retry_locked_outlasts_a_lock_longer_than_the_busy_timeout(tmp_path):
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "ok"

    assert _retry_locked(flaky, wait=10) == "ok" and len(calls) == 3
    with pytest.raises(RuntimeError, match="no such table"):
        _retry_locked(lambda: (_ for _ in ()).throw(RuntimeError("no such table")), wait=10)
