"""The MLflow store: its URIs, clients on it, creating it (``init_store``) and reading its runs (``find_runs``); and
the run dir's ``tracking.json``, which names the run of the store that belongs to that run dir."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import write_json

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

STATE_FILE = "tracking.json"
DEFAULT_STORE = Path("results") / "mlflow.db"
# MLflow 3 opens an experiment without this tag in its GenAI view; ours are model-training runs.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


# ----------------------------------------------------------------------------------------------------------- URIs

def sqlite_uri(path) -> str:
    """``sqlite:////abs/path.db``: absolute, so that the URI means the same file whatever the job's cwd."""
    return "sqlite:///" + Path(path).expanduser().resolve().as_posix()


def default_uri() -> str:
    """The workstation store, ``results/mlflow.db`` under the current directory (the workflow's root)."""
    return sqlite_uri(DEFAULT_STORE)


def sqlite_path(uri: str) -> Path | None:
    """The file behind a ``sqlite:///`` URI (``None`` for other stores and in-memory SQLite)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def normalize_uri(uri: str) -> str:
    """Relative SQLite URIs (``sqlite:///results/mlflow.db``) made absolute; other URIs as given."""
    path = sqlite_path(uri)
    if path is None or path.is_absolute():
        return uri
    query = uri.split("?", 1)[1] if "?" in uri else None
    return sqlite_uri(path) + (f"?{query}" if query else "")


# --------------------------------------------------------------------------------------------- clients, creation

def client_for(uri: str) -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def existing_client(uri: str) -> MlflowClient:
    """A client on a store that must already exist: opening a missing SQLite file would create it, and several jobs
    doing that at once crash in MLflow's migrations."""
    path = sqlite_path(uri)
    if path is not None and not path.exists():
        raise FileNotFoundError(f"MLflow store {path} does not exist: create it once, before the jobs start, with "
                                f"bcrepro.tracking.init_store (the workflow's init_mlflow rule), or set the "
                                f"tracking mode to 'deferred' or 'off'")
    return client_for(uri)


def active_experiment_id(client: MlflowClient, uri: str, experiment: str) -> str:
    found = client.get_experiment_by_name(experiment)
    if found is None or found.lifecycle_stage != "active":
        state = "is deleted" if found is not None else "does not exist"
        raise LookupError(f"MLflow experiment {experiment!r} {state} in the store {uri}: create it with "
                          f"bcrepro.tracking.init_store (the workflow's init_mlflow rule) before the jobs start")
    return found.experiment_id


def init_store(uri: str, experiment: str, artifact_location) -> str:
    """Create the store (tables, migrations) and the experiment, with its artifacts under ``artifact_location`` (a
    folder path, stored as a ``file://`` URI so that artifacts do not land in a cwd-relative ``mlruns/``). Call it
    from one process before any job logs. Idempotent: a second call returns the same experiment id (a deleted
    experiment of that name is restored); an existing experiment keeps its artifact location."""
    uri = normalize_uri(uri)
    path = sqlite_path(uri)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    location = Path(artifact_location).expanduser().resolve()
    client = client_for(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        location.mkdir(parents=True, exist_ok=True)
        experiment_id = client.create_experiment(experiment, artifact_location=location.as_uri(),
                                                 tags=EXPERIMENT_TAGS)
        return experiment_id
    if found.lifecycle_stage != "active":
        client.restore_experiment(found.experiment_id)
    for key, value in EXPERIMENT_TAGS.items():  # stores made before the tag existed get it too
        if found.tags.get(key) != value:
            client.set_experiment_tag(found.experiment_id, key, value)
    if found.artifact_location != location.as_uri():
        log.warning("MLflow experiment %r already stores its artifacts at %s, not at %s; keeping %s", experiment,
                    found.artifact_location, location.as_uri(), found.artifact_location)
    return found.experiment_id


# ------------------------------------------------------------------------------------------------- run-dir state

def read_state(run_dir) -> dict | None:
    path = Path(run_dir) / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        log.warning("ignoring unreadable %s (%s): the cell gets a new MLflow run", path, err)
        return None
    return state if isinstance(state, dict) else None


def write_state(run_dir, **state) -> None:
    """Write ``tracking.json`` atomically (a job killed mid-write must not leave half a file)."""
    write_json(state, Path(run_dir) / STATE_FILE)


def _state_matches(state: dict | None, uri: str, experiment: str) -> bool:
    return bool(state and state.get("run_id") and state.get("uri") == uri and state.get("experiment") == experiment)


def resumable_run(client: MlflowClient, state: dict | None, uri: str, experiment: str, experiment_id: str):
    """The run id remembered in ``tracking.json`` when it belongs to this store and experiment and still exists."""
    if not _state_matches(state, uri, experiment):
        return None
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(state["run_id"])
    except MlflowException:
        log.warning("run %s named in tracking.json is not in %s any more; the cell gets a new run", state["run_id"],
                    uri)
        return None
    if run.info.lifecycle_stage != "active" or run.info.experiment_id != experiment_id:
        log.warning("run %s named in tracking.json is deleted or moved; the cell gets a new run", state["run_id"])
        return None
    return run.info.run_id


# ------------------------------------------------------------------------------------------------------- reading

def find_runs(uri: str, experiment: str) -> pd.DataFrame:
    """All active runs of ``experiment``, one row each, with the columns of ``mlflow.search_runs`` (``run_id``,
    ``status``, ``start_time``, ..., ``metrics.<k>`` (last value), ``params.<k>`` (strings), ``tags.<k>``), but
    read through an explicit client on ``uri``."""
    import pandas as pd

    uri = normalize_uri(uri)
    client = existing_client(uri)
    experiment_id = active_experiment_id(client, uri, experiment)
    rows, token = [], None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        for run in page:
            row = {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id, "status": run.info.status,
                   "artifact_uri": run.info.artifact_uri,
                   "start_time": pd.to_datetime(run.info.start_time, unit="ms", utc=True),
                   "end_time": pd.to_datetime(run.info.end_time, unit="ms", utc=True)}
            row.update({f"metrics.{key}": value for key, value in run.data.metrics.items()})
            row.update({f"params.{key}": value for key, value in run.data.params.items()})
            row.update({f"tags.{key}": value for key, value in run.data.tags.items()})
            rows.append(row)
        token = page.token
        if not token:
            break
    columns = ["run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time"]
    extra = sorted({key for row in rows for key in row} - set(columns))
    return pd.DataFrame(rows, columns=columns + extra)
