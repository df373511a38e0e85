"""MLflow: one experiment per run of the workflow, one parent run, a child run per job.

First-time creation of a SQLite store races when parallel jobs do it (tables created
twice, or runs logged into the Default experiment), so a single init job creates the
store, the experiment and the parent run, and writes their ids to a file that every
logging job takes as input.

Tracking never costs results. A job logs live while the store answers; once a call
fails (a dead server, a store that stays locked) the job warns on stderr, naming the
tracking URI and what failed, and writes its run (name, parent, tags, params, metrics,
artifact paths) to a spool file, ``<ids folder>/spool/<job>-<time>-<pid>.jsonl``, and
``asrprune mlflow-sync`` replays the spooled runs into a store later. With ``require``
(config ``mlflow.require``, carried by the ids file) a failure is an error instead.

A dead server costs seconds: MLflow's HTTP client retries for minutes by default, so
``HTTP_DEFAULTS`` bound it unless the user set those variables. A SQLite store that is
locked by another writer is waited for (MLflow's busy timeout, then our retries) for up
to ``LOCK_WAIT_SECONDS`` before it counts as failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from asrprune.distributed import is_main_process
from asrprune.errors import AsrpruneError
from asrprune.io import read_json, write_json

ENV_URI = "MLFLOW_TRACKING_URI"
# MLflow's defaults: 7 retries with backoff factor 2 and a 120 s timeout, minutes per call
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
LOCK_WAIT_SECONDS = 120.0
SPOOL_DIR = "spool"
SYNCED = ".synced"
_MAX_PARAMS, _MAX_METRICS = 100, 1000  # MLflow's limits per log_batch


def _mlflow():
    """Import MLflow with bounded HTTP retries (see the module); slow, so only on use."""
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    import mlflow

    return mlflow


def tracking_uri(default_store: str | Path) -> str:
    """``$MLFLOW_TRACKING_URI`` when set (a server on a cluster), else the run's SQLite file."""
    return os.environ.get(ENV_URI) or f"sqlite:///{Path(default_store)}"


def _describe(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}"[:300]


def _retry_locked(fn: Callable[[], Any], wait: float = LOCK_WAIT_SECONDS) -> Any:
    """``fn()``, retried with backoff while SQLite says the database is locked.

    A failed write is rolled back, so retrying it never logs twice.
    """
    deadline, pause = time.monotonic() + wait, 0.5
    while True:
        try:
            return fn()
        except Exception as e:
            if "database is locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


def _failure(uri: str, what: str, e: BaseException, require: bool, spool: Path | None) -> None:
    """Raise (``require``) or warn on stderr that tracking at ``uri`` failed."""
    if require:
        raise AsrpruneError(
            f"MLflow tracking at {uri} failed ({what}: {_describe(e)}); "
            "config mlflow.require is true, so the job fails"
        ) from e
    kept = f"; the run is spooled to {spool}, for `asrprune mlflow-sync`" if spool else ""
    print(
        f"warning: MLflow tracking at {uri} failed ({what}: {_describe(e)}){kept}",
        file=sys.stderr,
        flush=True,
    )


def init_tracking(
    store: str | Path, experiment: str, run_name: str, ids_out: str | Path, require: bool = False
) -> dict:
    """Create the store, the experiment (or reuse it) and a parent run; write their ids.

    If the store does not answer (and not ``require``), the ids file is written without
    experiment and parent ids (``offline`` says why): jobs then spool their runs at once,
    and ``asrprune mlflow-sync`` creates the experiment and the parent run when it replays.
    """
    mlflow = _mlflow()
    uri = tracking_uri(store)
    ids = {
        "tracking_uri": uri,
        "experiment_id": None,
        "experiment": experiment,
        "run": run_name,
        "parent_run_id": None,
        "require": require,
    }
    try:
        client = mlflow.MlflowClient(uri)
        artifacts = _artifact_location(uri)
        ids["experiment_id"] = _retry_locked(lambda: _experiment_id(client, experiment, artifacts))
        ids["parent_run_id"] = _retry_locked(
            lambda: _create_parent(client, ids["experiment_id"], run_name)
        )
    except Exception as e:
        _failure(uri, "creating the experiment and the parent run", e, require, None)
        ids["offline"] = _describe(e)
        print(
            f"warning: jobs of this run spool their MLflow runs under "
            f"{Path(ids_out).parent / SPOOL_DIR}; replay them with "
            f"`asrprune mlflow-sync --ids {ids_out}`",
            file=sys.stderr,
        )
    write_json(ids_out, ids)
    return ids


def _artifact_location(uri: str) -> str | None:
    """Beside a SQLite store, its ``mlflow-artifacts`` folder; a server decides its own."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).parent / "mlflow-artifacts").resolve().as_uri()


def _experiment_id(client, name: str, artifact_location: str | None) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location)


def _create_parent(client, experiment_id: str, run_name: str) -> str:
    tags = {"stage": "workflow", "asrprune.run": run_name}
    parent = client.create_run(experiment_id, run_name=run_name, tags=tags)
    # The parent only groups the jobs' runs; it need not stay "running" in the UI.
    client.set_terminated(parent.info.run_id)
    return parent.info.run_id


# -- a job's run ----------------------------------------------------------------------


class TrackedRun:
    """One job's MLflow run: logged live while the store answers, else spooled.

    Every call is also kept in memory, so that when a live call fails the whole run
    (from its start) goes to the spool file, and later calls are appended to it.
    ``run_id`` is the MLflow run id, or ``spool:<path>`` once spooled.
    """

    def __init__(
        self,
        ids_file: str | os.PathLike,
        name: str,
        tags: Mapping[str, str] | None = None,
        *,
        run_id: str | None = None,
        attach: bool = False,
    ) -> None:
        """Start a child run of the workflow's parent named ``name`` (or, with ``run_id``,
        continue that run; ``attach``: it is finished, only add to it)."""
        self.ids_file = Path(ids_file)
        ids = read_json(ids_file)
        self.uri: str = ids["tracking_uri"]
        self.require = bool(ids.get("require", False))
        self.header = {
            "type": "run",
            "spool_id": uuid.uuid4().hex,
            "tracking_uri": self.uri,
            "experiment_id": ids.get("experiment_id"),
            "experiment": ids.get("experiment"),
            # ids files from before spooling lack the run: results/<run>/mlflow/ids.json
            "run": ids.get("run") or self.ids_file.resolve().parent.parent.name,
            "parent_run_id": ids.get("parent_run_id"),
            "run_name": name,
            "tags": dict(tags or {}),
            "run_id": run_id,  # the live run these records belong to, if any
            "complete": run_id is None,  # the records hold the run from its start
        }
        self.records: list[dict] = []
        self.spool: Path | None = None
        self.live_id: str | None = None
        self._attach = attach
        if run_id is not None and run_id.startswith("spool:"):
            self._reopen(Path(run_id.removeprefix("spool:")))
        elif ids.get("offline"):
            self._go_offline("the ids file says the store did not answer mlflow-init", None)
        elif run_id is not None:
            self.live_id = run_id
            if not attach:
                self._live("resuming the run", lambda c: c.update_run(run_id, "RUNNING"))
        else:
            self._live("creating the run", self._create)

    @property
    def run_id(self) -> str | None:
        return f"spool:{self.spool}" if self.spool else self.live_id

    def _create(self, client) -> None:
        h = self.header
        _delete_earlier_attempts(client, h["experiment_id"], h["parent_run_id"], h["run_name"])
        tags = {**h["tags"], "mlflow.parentRunId": h["parent_run_id"]}
        run = client.create_run(h["experiment_id"], run_name=h["run_name"], tags=tags)
        self.live_id = run.info.run_id
        self.header["run_id"] = self.live_id

    def _reopen(self, spool: Path) -> None:
        synced = spool.with_name(spool.name + SYNCED)
        if not spool.is_file() and synced.is_file():  # replayed since: add to its new run
            with open(synced, encoding="utf-8") as f:
                last = [json.loads(line) for line in f if line.strip()][-1]
            self.live_id, self.uri = last["run_id"], last["tracking_uri"]
            self.header |= {"run_id": self.live_id, "complete": False}
            return
        self.spool = spool
        with open(spool, encoding="utf-8") as f:
            self.header = json.loads(f.readline())

    def _live(self, what: str, call: Callable[[Any], Any]) -> None:
        if self.spool is not None:
            return
        try:
            client = _mlflow().MlflowClient(self.uri)
            _retry_locked(lambda: call(client))
        except Exception as e:
            self._go_offline(what, e)

    def _go_offline(self, what: str, e: BaseException | None) -> None:
        folder = self.ids_file.parent / SPOOL_DIR
        stamp = time.strftime("%Y%m%dT%H%M%S")
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.header["run_name"])
        spool = folder / f"{safe}-{stamp}-{os.getpid()}-{self.header['spool_id'][:6]}.jsonl"
        if e is not None:
            _failure(self.uri, what, e, self.require, spool)
        folder.mkdir(parents=True, exist_ok=True)
        with open(spool, "w", encoding="utf-8") as f:
            for record in (self.header, *self.records):
                f.write(json.dumps(record) + "\n")
        self.spool = spool
        if e is None:
            offline = f"warning: MLflow tracking at {self.uri} is offline ({what})"
            print(f"{offline}; the run is spooled to {spool}", file=sys.stderr)

    def _record(self, record: dict, call: Callable[[Any], Any], what: str) -> None:
        self.records.append(record)
        if self.spool is not None:
            with open(self.spool, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            return
        self._live(what, call)

    def log_params(self, params: Mapping[str, Any]) -> None:
        params = {k: str(v) for k, v in params.items()}
        record = {"type": "params", "params": params}
        self._record(record, lambda c: _log_params(c, self.live_id, params), "params")

    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        metrics = {k: float(v) for k, v in metrics.items()}
        record = {"type": "metrics", "metrics": metrics, "step": step or 0, "time": _now_ms()}
        self._record(record, lambda c: _log_metrics(c, self.live_id, record), "metrics")

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        self.log_metrics({key: value}, step)

    def log_artifact(self, path: str | os.PathLike) -> None:
        path = str(Path(path).resolve())
        self._record(
            {"type": "artifact", "path": path},
            lambda c: c.log_artifact(self.live_id, path),
            f"uploading {path}",
        )

    def end(self, status: str = "FINISHED") -> None:
        if self._attach and self.spool is None:
            return
        self._record(
            {"type": "end", "status": status},
            lambda c: c.set_terminated(self.live_id, status),
            "ending the run",
        )


def _delete_earlier_attempts(client, experiment_id: str, parent_run_id: str, name: str) -> None:
    """Runs of the same name under the same parent are what earlier attempts of this job
    left: unfinished when killed or failed, and even finished when the job was killed
    after its run ended but before it exited (Snakemake then deletes its outputs and runs
    it again). Delete them (MLflow keeps them restorable), so the store holds one run per
    job, the one of the outputs on disk."""
    quoted = name.replace("'", "\\'")
    stale = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.mlflow.parentRunId = '{parent_run_id}' and attributes.run_name = '{quoted}'"
        ),
    )
    for run in stale:
        print(
            f"MLflow: deleting run {run.info.run_id} ({name}, {run.info.status}), left by an "
            "earlier attempt of this job",
            file=sys.stderr,
        )
        client.delete_run(run.info.run_id)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _log_params(client, run_id: str, params: Mapping[str, str]) -> None:
    """One params record, in batches of MLflow's size (a job's, or replayed from a spool)."""
    from mlflow.entities import Param

    items = [Param(k, v) for k, v in params.items()]
    for i in range(0, len(items), _MAX_PARAMS):
        client.log_batch(run_id, params=items[i : i + _MAX_PARAMS])


def _log_metrics(client, run_id: str, record: dict) -> None:
    """One metrics record (metrics, step, time), in batches of MLflow's size."""
    from mlflow.entities import Metric

    items = [Metric(k, v, record["time"], record["step"]) for k, v in record["metrics"].items()]
    for i in range(0, len(items), _MAX_METRICS):
        client.log_batch(run_id, metrics=items[i : i + _MAX_METRICS])


@contextlib.contextmanager
def child_run(
    ids_file: str | os.PathLike, name: str, tags: Mapping[str, str], run_id: str | None = None
) -> Iterator[TrackedRun]:
    """A run nested under the workflow's parent run (or the run ``run_id``, resumed);
    FINISHED when the block ends, FAILED if it raises."""
    run = TrackedRun(ids_file, name, tags, run_id=run_id)
    try:
        yield run
    except BaseException:
        run.end("FAILED")
        raise
    run.end()


def log_artifact(ids_file: str | os.PathLike, run_id: str, path: str | os.PathLike) -> None:
    """Attach a file to an existing run of this workflow (e.g. a job's finished child run);
    in a distributed job, rank 0 alone does."""
    if not is_main_process():
        return
    run = TrackedRun(ids_file, "artifact", run_id=run_id, attach=True)
    run.log_artifact(path)
    run.end()  # a spooled attachment is complete: mlflow-sync replays it


def resumable(ids_file: str | os.PathLike, run_id: str) -> bool:
    """Whether ``run_id`` (live, or spooled and not yet replayed) is still a child of the
    ids file's parent run, so that a resumed job may go on logging into it."""
    ids = read_json(ids_file)
    if run_id.startswith("spool:"):
        spool = Path(run_id.removeprefix("spool:"))
        if not spool.is_file():
            return False
        with open(spool, encoding="utf-8") as f:
            return json.loads(f.readline())["parent_run_id"] == ids["parent_run_id"]
    if ids.get("offline"):
        return False
    try:
        client = _mlflow().MlflowClient(ids["tracking_uri"])
        run = _retry_locked(lambda: client.get_run(run_id))
    except Exception:
        return False  # the store was replaced, or does not answer: a fresh run then
    return run.data.tags.get("mlflow.parentRunId") == ids["parent_run_id"]


# -- replaying spooled runs --------------------------------------------------------


def sync_spool(ids_file: str | os.PathLike, uri: str | None = None, include_open: bool = False):
    """Replay the spooled runs of the ids file's workflow run into ``uri`` (default: the
    ids file's store); return (replayed, skipped) spool paths.

    A replayed spool is renamed ``*.jsonl.synced`` and its new run tagged
    ``asrprune.spool_id``, so a second sync, even after one that died half-way, never
    duplicates a run. A run that had been logged live in part before it was spooled is
    replaced by the complete replay (the part is deleted). Spools of runs that have not
    ended (a job still running, or killed) are skipped unless ``include_open``.
    """
    ids = read_json(ids_file)
    uri = uri or ids["tracking_uri"]
    folder = Path(ids_file).parent / SPOOL_DIR
    client = _mlflow().MlflowClient(uri)
    replayed, skipped = [], []
    for spool in sorted(folder.glob("*.jsonl")):
        with open(spool, encoding="utf-8") as f:
            lines = [json.loads(line) for line in f if line.strip()]
        header, records = lines[0], lines[1:]
        if not include_open and not any(r["type"] == "end" for r in records):
            skipped.append(spool)
            continue
        try:
            new_id = _retry_locked(lambda h=header, r=records: _replay(client, uri, h, r))
        except Exception as e:
            raise AsrpruneError(f"mlflow-sync: replaying {spool} into {uri} failed: {e}") from e
        with open(spool, "a", encoding="utf-8") as f:
            f.write(json.dumps({"type": "synced", "run_id": new_id, "tracking_uri": uri}) + "\n")
        spool.rename(spool.with_name(spool.name + SYNCED))
        replayed.append(spool)
    return replayed, skipped


def _find_run(client, run_id: str | None):
    if not run_id:
        return None
    try:
        run = client.get_run(run_id)
    except Exception as e:
        if getattr(e, "error_code", None) == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return None if run.info.lifecycle_stage == "deleted" else run


def _replay(client, uri: str, header: dict, records: list[dict]) -> str:
    existing = _find_run(client, header["run_id"])
    if existing is not None and not header["complete"]:
        run_id = existing.info.run_id  # the spool continues a run the store has
    else:
        experiment_id = _target_experiment(client, uri, header)
        spool_tag = f"tags.`asrprune.spool_id` = '{header['spool_id']}'"
        for half in client.search_runs([experiment_id], spool_tag):  # from a sync that died
            client.delete_run(half.info.run_id)
        parent = _target_parent(client, experiment_id, header)
        tags = {**header["tags"], "mlflow.parentRunId": parent}
        tags["asrprune.spool_id"] = header["spool_id"]
        run_id = client.create_run(experiment_id, run_name=header["run_name"], tags=tags)
        run_id = run_id.info.run_id
        if existing is not None:  # its live part is in the replay
            client.delete_run(existing.info.run_id)
    for r in records:
        if r["type"] == "params":
            _log_params(client, run_id, r["params"])
        elif r["type"] == "metrics":
            _log_metrics(client, run_id, r)
        elif r["type"] == "artifact":
            if Path(r["path"]).is_file():
                client.log_artifact(run_id, r["path"])
            else:
                print(f"mlflow-sync: {r['path']} is gone; not attached", file=sys.stderr)
        elif r["type"] == "end":
            client.set_terminated(run_id, r["status"])
    return run_id


def _target_experiment(client, uri: str, header: dict) -> str:
    if header["experiment_id"] is not None and header["tracking_uri"] == uri:
        return header["experiment_id"]
    return _experiment_id(client, header["experiment"], _artifact_location(uri))


def _target_parent(client, experiment_id: str, header: dict) -> str:
    """The workflow's parent run in the target store: the one the job knew, else the
    latest parent of the same workflow run, else a new one."""
    if _find_run(client, header["parent_run_id"]) is not None:
        return header["parent_run_id"]
    query = f"tags.stage = 'workflow' and tags.`asrprune.run` = '{header['run']}'"
    found = client.search_runs([experiment_id], query, order_by=["start_time DESC"])
    if found:
        return found[0].info.run_id
    return _create_parent(client, experiment_id, header["run"])


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
