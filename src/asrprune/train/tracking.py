"""MLflow for a training run: a child run of the workflow's run, resumed with the job."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from asrprune.tracking import TrackedRun, child_run, flatten, resumable


@contextlib.contextmanager
def tracked_run(
    ids_file, name: str, tags, run_id: str | None, params: dict
) -> Iterator[TrackedRun | None]:
    """The job's run (resumed if ``run_id`` still exists in this workflow run), or None.

    ``run_id`` may name a spooled run (``spool:<path>``, see asrprune.tracking): a
    resumed job appends to its spool while it has not been replayed.
    """
    if not ids_file:
        yield None
        return
    if run_id is not None and not resumable(ids_file, run_id):
        run_id = None  # not this workflow run's (or gone): start a fresh child run
    with child_run(ids_file, name, dict(tags or {}), run_id=run_id) as run:
        if run_id is None:
            run.log_params(flatten(params))
        yield run
