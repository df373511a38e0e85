"""MLflow for a training run: a child run of the workflow's run, resumed with the job."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from asrprune.io import read_json


@contextlib.contextmanager
def tracked_run(ids_file, name: str, tags, run_id: str | None, params: dict) -> Iterator[Any]:
    """The MLflow module inside a child run (resumed if ``run_id`` still exists), or None."""
    if not ids_file:
        yield None
        return
    import mlflow
    from mlflow.exceptions import MlflowException

    from asrprune.tracking import child_run, flatten

    if run_id is not None:
        ids = read_json(ids_file)
        mlflow.set_tracking_uri(ids["tracking_uri"])
        try:
            parent = mlflow.get_run(run_id).data.tags.get("mlflow.parentRunId")
        except MlflowException:
            parent = None  # the store was replaced
        if parent != ids["parent_run_id"]:
            run_id = None  # not this workflow run's: start a fresh child run
    if run_id is not None:
        with mlflow.start_run(run_id=run_id):
            yield mlflow
        return
    with child_run(ids_file, name, dict(tags or {})) as ml:
        ml.log_params({k: str(v) for k, v in flatten(params).items()})
        yield ml
