"""MLflow: one experiment per run of the workflow, one parent run, a child run per job.

First-time creation of a SQLite store races when parallel jobs do it (tables created
twice, or runs logged into the Default experiment), so a single init job creates the
store, the experiment and the parent run, and writes their ids to a file that every
logging job takes as input.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from asrprune.distributed import is_main_process
from asrprune.io import read_json, write_json

ENV_URI = "MLFLOW_TRACKING_URI"


def tracking_uri(default_store: str | Path) -> str:
    """``$MLFLOW_TRACKING_URI`` when set (a server on a cluster), else the run's SQLite file."""
    return os.environ.get(ENV_URI) or f"sqlite:///{Path(default_store)}"


def init_tracking(store: str | Path, experiment: str, run_name: str, ids_out: str | Path) -> dict:
    """Create the store, the experiment (or reuse it) and a parent run; write their ids."""
    import mlflow  # slow to import; only jobs that log pay for it

    uri = tracking_uri(store)
    mlflow.set_tracking_uri(uri)
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        artifacts = (Path(store).parent / "mlflow-artifacts").resolve().as_uri()
        experiment_id = mlflow.create_experiment(experiment, artifact_location=artifacts)
    else:
        experiment_id = exp.experiment_id
    client = mlflow.MlflowClient(uri)
    parent = client.create_run(
        experiment_id, run_name=run_name, tags={"stage": "workflow", "asrprune.run": run_name}
    )
    # The parent only groups the jobs' runs; it need not stay "running" in the UI.
    client.set_terminated(parent.info.run_id)
    ids = {
        "tracking_uri": uri,
        "experiment_id": experiment_id,
        "experiment": experiment,
        "parent_run_id": parent.info.run_id,
    }
    write_json(ids_out, ids)
    return ids


@contextlib.contextmanager
def child_run(ids_file: str | Path, name: str, tags: dict[str, str]) -> Iterator[Any]:
    """Start a run nested under the workflow's parent run; yield the ``mlflow`` module.

    ``parent_run_id`` (not ``nested=True``) is what nests runs across processes. Unfinished
    runs of the same name under the same parent are what a killed or failed attempt of
    this job left: they are deleted (MLflow keeps them restorable), so the store holds one
    run per job, the one of the outputs on disk.
    """
    import mlflow

    ids = read_json(ids_file)
    mlflow.set_tracking_uri(ids["tracking_uri"])
    _delete_unfinished(mlflow.MlflowClient(), ids, name)
    with mlflow.start_run(
        experiment_id=ids["experiment_id"],
        run_name=name,
        parent_run_id=ids["parent_run_id"],
        tags=tags,
    ):
        yield mlflow


def _delete_unfinished(client: Any, ids: dict, name: str) -> None:
    quoted = name.replace("'", "\\'")
    stale = client.search_runs(
        [ids["experiment_id"]],
        filter_string=(
            f"tags.mlflow.parentRunId = '{ids['parent_run_id']}'"
            f" and attributes.run_name = '{quoted}' and attributes.status != 'FINISHED'"
        ),
    )
    for run in stale:
        print(
            f"MLflow: deleting run {run.info.run_id} ({name}, {run.info.status}), left by an "
            "earlier attempt of this job",
            file=sys.stderr,
        )
        client.delete_run(run.info.run_id)


def log_artifact(ids_file: str | Path, run_id: str, path: str | Path) -> None:
    """Attach a file to an existing run of this workflow (e.g. a job's finished child run);
    in a distributed job, rank 0 alone does."""
    if not is_main_process():
        return
    import mlflow

    mlflow.set_tracking_uri(read_json(ids_file)["tracking_uri"])
    mlflow.MlflowClient().log_artifact(run_id, str(path))


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dict to dotted keys, for MLflow params and metrics."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out
