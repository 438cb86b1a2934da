"""MLflow tracking for the pipeline: one MLflow run per cell (arch, method, seed), opened by the train job and
continued by the compress, speed-up and figures jobs, each a separate process.

    uri = sqlite_uri("results/mlflow.db")
    init_store(uri, "bcrepro", "results/mlartifacts")          # once, by one process (the init_mlflow rule)
    with CellRun("results/runs/lenet300/bc-gnj/seed0", uri=uri, experiment="bcrepro", mode="direct",
                 rule="train", cell={"arch": "lenet300", "method": "bc-gnj", "seed": 0, "dataset": "mnist"}) as run:
        run.log_params(hparams)
        run.log_metrics({"train/loss": loss, "val/error": err}, step=epoch)
        run.log_artifact("results/runs/lenet300/bc-gnj/seed0/model.pt")

Modes (see ``docs/workflow.md``, "MLflow"):

- ``direct``: every job logs live to the store at ``uri`` (SQLite on a local disk, or an ``http://`` server). The
  store must exist before the jobs start: several processes creating one SQLite file at once crash in MLflow's
  schema migrations, so jobs never create it; ``init_store`` does, once.
- ``deferred``: jobs never touch MLflow (SQLite on NFS/Lustre is unsafe); each appends its events as JSON lines to
  ``<run_dir>/tracking.jsonl``, and one local process calls ``import_deferred`` to replay them into the store.
- ``off``: nothing is logged.

The run dir's ``tracking.json`` remembers which MLflow run belongs to it, so later jobs (and later imports) continue
that run. MLflow's rule that a param never changes value is softened: a job that logs a different value for an
existing param does not fail; the new value is kept as the tag ``param_changed.<key>`` and a warning is logged, while
the param keeps the value of the job that logged it first (the training job, whose model the later jobs read).

MLflow is imported lazily, inside functions, so this module imports without it as long as tracking is off or
deferred.
"""
from __future__ import annotations

import functools
import json
import logging
import math
import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import write_json

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

STATE_FILE = "tracking.json"
EVENTS_FILE = "tracking.jsonl"
MODES = ("direct", "deferred", "off")
CELL_KEYS = ("arch", "method", "seed", "dataset")
DEFAULT_STORE = Path("results") / "mlflow.db"
# MLflow 3.17's limits (mlflow.utils.validation), copied so that deferred jobs apply them without importing mlflow.
PARAM_VALUE_MAX = 6000
TAG_VALUE_MAX = 8000
PARAMS_TAGS_PER_BATCH = 100
METRICS_PER_BATCH = 1000
DATASET_ATTEMPTS = 3  # a data set logged by jobs that start together: see _MlflowWriter.log_dataset


# ---------------------------------------------------------------------------------------------------- store, URIs

def sqlite_uri(path) -> str:
    """``sqlite:////abs/path.db``: absolute, so that the URI means the same file whatever the job's cwd."""
    return "sqlite:///" + Path(path).expanduser().resolve().as_posix()


def default_uri() -> str:
    """The workstation store, ``results/mlflow.db`` under the current directory (the workflow's root)."""
    return sqlite_uri(DEFAULT_STORE)


def _sqlite_path(uri: str) -> Path | None:
    """The file behind a ``sqlite:///`` URI (``None`` for other stores and in-memory SQLite)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def normalize_uri(uri: str) -> str:
    """Relative SQLite URIs (``sqlite:///results/mlflow.db``) made absolute; other URIs as given."""
    path = _sqlite_path(uri)
    if path is None or path.is_absolute():
        return uri
    query = uri.split("?", 1)[1] if "?" in uri else None
    return sqlite_uri(path) + (f"?{query}" if query else "")


def _client(uri: str) -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _existing_client(uri: str) -> MlflowClient:
    """A client on a store that must already exist: opening a missing SQLite file would create it, and several jobs
    doing that at once crash in MLflow's migrations."""
    path = _sqlite_path(uri)
    if path is not None and not path.exists():
        raise FileNotFoundError(f"MLflow store {path} does not exist: create it once, before the jobs start, with "
                                f"bcrepro.report.tracking.init_store (the workflow's init_mlflow rule), or set the "
                                f"tracking mode to 'deferred' or 'off'")
    return _client(uri)


def _experiment_id(client: MlflowClient, uri: str, experiment: str) -> str:
    found = client.get_experiment_by_name(experiment)
    if found is None or found.lifecycle_stage != "active":
        state = "is deleted" if found is not None else "does not exist"
        raise LookupError(f"MLflow experiment {experiment!r} {state} in the store {uri}: create it with "
                          f"bcrepro.report.tracking.init_store (the workflow's init_mlflow rule) before the jobs start")
    return found.experiment_id


# MLflow 3 opens an experiment without this tag in its GenAI view; ours are model-training runs.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


def init_store(uri: str, experiment: str, artifact_location) -> str:
    """Create the store (tables, migrations) and the experiment, with its artifacts under ``artifact_location`` (a
    folder path, stored as a ``file://`` URI so that artifacts do not land in a cwd-relative ``mlruns/``). Call it
    from one process before any job logs. Idempotent: a second call returns the same experiment id (a deleted
    experiment of that name is restored); an existing experiment keeps its artifact location."""
    uri = normalize_uri(uri)
    path = _sqlite_path(uri)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    location = Path(artifact_location).expanduser().resolve()
    client = _client(uri)
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


# ----------------------------------------------------------------------------------------------------- tags, values

@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the git checkout holding this package, or ``"unknown"`` (installed copy, no git, any error)."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else "unknown"


def job_id() -> str:
    """The batch system's id of this job (SLURM, then PBS), or ``"local"``."""
    return os.environ.get("SLURM_JOB_ID") or os.environ.get("PBS_JOBID") or "local"


def cell_tags(cell: dict, rule: str) -> dict:
    """Tags every job sets on its cell's run. ``rule`` and ``job_id`` name the latest job; ``<rule>.job_id`` keeps
    each rule's own job id, so the batch logs of every step of a cell can be found."""
    jid = job_id()
    tags = {key: str(cell[key]) for key in CELL_KEYS}
    tags.update({"rule": rule, "git_commit": git_commit(), "job_id": jid, f"{rule}.job_id": jid})
    return tags


def run_name(cell: dict) -> str:
    return f"{cell['arch']}/{cell['method']}/seed{cell['seed']}"


def flatten_params(params: dict, prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}, "c": [1, 2], "d": None}`` -> ``{"a.b": "1", "c": "[1, 2]", "d": "None"}``, each value cut to
    MLflow's param length limit."""
    flat = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_params(value, prefix=f"{name}."))
        else:
            flat[name] = _cut(str(value), PARAM_VALUE_MAX, name)
    return flat


def _cut(value: str, limit: int, key: str) -> str:
    if len(value) <= limit:
        return value
    log.warning("value of %r is %d characters long; MLflow keeps %d, the rest is cut", key, len(value), limit)
    return value[:limit]


def _metric_value(value) -> float | None:
    """A finite or infinite float, or ``None`` for what is not a number (``None``, NaN, strings, tensors of more than
    one element)."""
    if value is None or isinstance(value, (str, bytes)):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, RuntimeError):
        return None
    return None if math.isnan(number) else number


def _clean_metrics(metrics: dict) -> dict[str, float]:
    cleaned = {str(key): _metric_value(value) for key, value in metrics.items()}
    return {key: value for key, value in cleaned.items() if value is not None}


def _now_ms() -> int:
    return int(time.time() * 1000)


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


def _write_state(run_dir, **state) -> None:
    """Write ``tracking.json`` atomically (a job killed mid-write must not leave half a file)."""
    write_json(state, Path(run_dir) / STATE_FILE)


def _state_matches(state: dict | None, uri: str, experiment: str) -> bool:
    return bool(state and state.get("run_id") and state.get("uri") == uri and state.get("experiment") == experiment)


def _resumable_run(client: MlflowClient, state: dict | None, uri: str, experiment: str, experiment_id: str):
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


# ------------------------------------------------------------------------------------------------ MLflow writes

class _MlflowWriter:
    """Writes to one MLflow run; the direct mode and the deferred import share it, so both apply the same batching
    and the same rule for params that change value."""

    def __init__(self, client: MlflowClient, run_id: str):
        self.client = client
        self.run_id = run_id
        self._params: dict[str, str] | None = None  # the run's params, read once

    def log_params(self, flat: dict[str, str]) -> None:
        from mlflow.entities import Param

        if self._params is None:
            self._params = dict(self.client.get_run(self.run_id).data.params)
        new, changed = {}, {}
        for key, value in flat.items():
            if key not in self._params:
                new[key] = value
            elif self._params[key] != value:
                changed[key] = value
        for chunk in _chunks(list(new.items()), PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, params=[Param(key, value) for key, value in chunk])
        self._params.update(new)
        if changed:
            log.warning("params already logged with other values keep their first value; the new values are the tags "
                        "param_changed.<key>: %s", ", ".join(f"{key}: {self._params[key]!r} -> {value!r}"
                                                             for key, value in changed.items()))
            self.set_tags({f"param_changed.{key}": value for key, value in changed.items()})

    def set_tags(self, tags: dict) -> None:
        from mlflow.entities import RunTag

        items = [(str(key), _cut(str(value), TAG_VALUE_MAX, str(key))) for key, value in tags.items()]
        for chunk in _chunks(items, PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, tags=[RunTag(key, value) for key, value in chunk])

    def log_metrics(self, rows: list[tuple[str, float, int, int]]) -> None:
        """``rows``: (key, value, timestamp in ms, step)."""
        from mlflow.entities import Metric

        for chunk in _chunks(rows, METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=[Metric(*row) for row in chunk])

    def log_dataset(self, name: str, digest: str, source: str, context: str) -> None:
        """One data set the run used, as an MLflow dataset input (the UI's Datasets column)."""
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.exceptions import MlflowException

        dataset = Dataset(name=name, digest=digest, source_type="local", source=json.dumps({"uri": source}))
        inputs = [DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context)])]
        # The store looks the data set up, then inserts it when missing: jobs that start together all miss it, and
        # all but the first insert fail the store's uniqueness rule. The failed write is rolled back, and a second
        # try finds the data set the winner stored and only links it to this run.
        for attempt in range(DATASET_ATTEMPTS):
            try:
                self.client.log_inputs(self.run_id, datasets=inputs)
                return
            except MlflowException as error:
                if attempt + 1 == DATASET_ATTEMPTS or not _already_stored(error):
                    raise
                log.debug("data set %s was stored by another job at the same time; linking it", name)

    def log_artifact(self, path: Path, artifact_path: str | None) -> None:
        if path.is_dir():
            under = f"{artifact_path}/{path.name}" if artifact_path else path.name
            self.client.log_artifacts(self.run_id, str(path), under)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)


def _already_stored(error: Exception) -> bool:
    """Whether a failed write broke an integrity rule of the store, such as its uniqueness rule (SQLite, PostgreSQL
    and MySQL word it apart)."""
    text = str(error).lower()
    return any(word in text for word in ("unique constraint", "uniqueviolation", "duplicate entry", "integrityerror"))


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


# ---------------------------------------------------------------------------------------------------------- CellRun

class CellRun:
    """The MLflow run of one cell, as seen by one job. A context manager: entering opens (or continues) the run,
    leaving ends it FINISHED, FAILED when an exception escaped (KILLED for Ctrl-C); the exception propagates.

    Artifacts: a file goes to ``<artifact_path>/<name>``, a directory's files to ``<artifact_path>/<dir name>/...``.
    In deferred mode the files are copied at import time, so they must still be there then.
    """

    def __init__(self, run_dir, *, uri: str | None, experiment: str, mode: str, rule: str, cell: dict):
        if mode not in MODES:
            raise ValueError(f"tracking mode must be one of {', '.join(MODES)}, got {mode!r}")
        missing = [key for key in CELL_KEYS if key not in cell]
        if missing:
            raise ValueError(f"cell must name {', '.join(CELL_KEYS)}; missing {', '.join(missing)}")
        self.run_dir = Path(run_dir)
        self.mode = mode
        self.uri = normalize_uri(uri if uri is not None else default_uri()) if mode == "direct" else uri
        self.experiment = experiment
        self.rule = rule
        self.cell = dict(cell)
        self.run_id: str | None = None
        self._writer: _MlflowWriter | None = None
        self._open = False

    # -- lifecycle

    def __enter__(self) -> CellRun:
        if self.mode == "direct":
            self._open_direct()
        elif self.mode == "deferred":
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._event("start", rule=self.rule, run_name=run_name(self.cell), tags=cell_tags(self.cell, self.rule))
        self._open = True
        return self

    def _open_direct(self) -> None:
        client = _existing_client(self.uri)
        experiment_id = _experiment_id(client, self.uri, self.experiment)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        state = read_state(self.run_dir)
        run_id = _resumable_run(client, state, self.uri, self.experiment, experiment_id)
        if run_id is None:
            run_id = client.create_run(experiment_id, run_name=run_name(self.cell)).info.run_id
            imported = 0
        else:
            client.update_run(run_id, status="RUNNING")
            imported = state.get("imported_lines", 0)
        _write_state(self.run_dir, run_id=run_id, uri=self.uri, experiment=self.experiment, mode="direct",
                     imported_lines=imported)
        self.run_id = run_id
        self._writer = _MlflowWriter(client, run_id)
        self._writer.set_tags(cell_tags(self.cell, self.rule))

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._open = False
        status = _end_status(exc_type)
        if self.mode == "direct" and self._writer is not None:
            try:
                self._writer.client.set_terminated(self.run_id, status=status)
            except Exception:
                if exc_type is None:
                    raise
                log.exception("could not mark run %s %s", self.run_id, status)
        elif self.mode == "deferred":
            self._event("end", status=status)
        return False

    # -- logging

    def log_params(self, params: dict) -> None:
        """Nested dicts flatten to ``a.b`` keys; other values become strings. Re-logging a value is harmless; a
        different value for a logged key becomes the tag ``param_changed.<key>`` (with a warning)."""
        if not self._logging():
            return
        flat = flatten_params(params)
        if self.mode == "direct":
            self._writer.log_params(flat)
        else:
            self._event("params", params=flat)

    def set_tags(self, tags: dict) -> None:
        if not self._logging():
            return
        if self.mode == "direct":
            self._writer.set_tags(tags)
        else:
            self._event("tags", tags={str(key): str(value) for key, value in tags.items()})

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        """Values that are not numbers (``None``, NaN, strings) are dropped. ``step`` defaults to 0, as in MLflow."""
        if not self._logging():
            return
        cleaned = _clean_metrics(metrics)
        if not cleaned:
            return
        step = 0 if step is None else int(step)
        if self.mode == "direct":
            now = _now_ms()
            self._writer.log_metrics([(key, value, now, step) for key, value in cleaned.items()])
        else:
            self._event("metrics", step=step, metrics=cleaned)

    def log_dataset(self, name: str, digest: str, source: str, context: str = "training") -> None:
        """The data set of this run (``name``, a content ``digest``, where it lives) as an MLflow dataset input."""
        if not self._logging():
            return
        if self.mode == "direct":
            self._writer.log_dataset(name, digest, source, context)
        else:
            self._event("dataset", name=name, digest=digest, source=source, context=context)

    def log_pytorch_model(self, module, folder, artifact_path: str = "model") -> None:
        """``module`` saved as an MLflow PyTorch model in ``folder`` (inside the run directory) and logged as the
        artifact ``artifact_path``: ``mlflow.pytorch.load_model("runs:/<run id>/<artifact_path>")`` loads it."""
        if not self._logging():
            return
        import shutil

        import mlflow.pytorch

        folder = Path(folder)
        shutil.rmtree(folder, ignore_errors=True)
        import torch

        # pickle, not torch.export's pt2: a slimmed network may hold modules export cannot trace; the requirement is
        # stated so that MLflow does not load the model in a subprocess to infer it
        mlflow.pytorch.save_model(module, str(folder), serialization_format="pickle",
                                  pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
        self.log_artifact(folder, None if artifact_path == folder.name else artifact_path)

    def log_artifact(self, path, artifact_path: str | None = None) -> None:
        if not self._logging():
            return
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"artifact {path} does not exist (run dir {self.run_dir})")
        if self.mode == "direct":
            self._writer.log_artifact(path, artifact_path)
        else:
            self._event("artifact", path=_portable_path(path, self.run_dir), artifact_path=artifact_path)

    def _logging(self) -> bool:
        if self.mode == "off":
            return False
        if not self._open:
            raise RuntimeError(f"CellRun for {self.run_dir} is not open: log inside `with CellRun(...) as run:`")
        return True

    def _event(self, kind: str, **fields) -> None:
        _append_event(self.run_dir / EVENTS_FILE, {"event": kind, "time": _now_ms(), **fields})


def _end_status(exc_type) -> str:
    if exc_type is None:
        return "FINISHED"
    return "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED"


def _portable_path(path: Path, run_dir: Path) -> str:
    """Relative to the run dir when inside it (the results tree may move before the import), else absolute."""
    path = path.resolve()
    try:
        return path.relative_to(run_dir.resolve()).as_posix()
    except ValueError:
        return str(path)


# ------------------------------------------------------------------------------------------------- deferred mode

def _append_event(path: Path, event: dict) -> None:
    """One JSON line per event, flushed at once. A job killed mid-line leaves a line without its newline; the next
    event starts on a fresh line, so only that one event is lost."""
    line = json.dumps(event) + "\n"
    with open(path, "a+b") as stream:
        if stream.seek(0, os.SEEK_END) > 0:
            stream.seek(-1, os.SEEK_END)
            if stream.read(1) != b"\n":
                line = "\n" + line
        stream.write(line.encode())
        stream.flush()


def _complete_lines(path: Path) -> list[str]:
    """The newline-terminated lines of ``path`` (a line still being written is left for the next import)."""
    lines = path.read_bytes().decode(errors="replace").split("\n")
    return lines[:-1]


def _parse_event(line: str, path: Path, number: int) -> dict | None:
    try:
        event = json.loads(line)
    except ValueError:
        event = None
    if not isinstance(event, dict) or "event" not in event:
        log.warning("%s line %d is not a tracking event (a job killed while writing?): skipped", path, number)
        return None
    return event


def import_deferred(runs_dir, uri: str, experiment: str, artifact_location) -> list[str]:
    """Replay every ``tracking.jsonl`` under ``runs_dir`` into the store, one MLflow run per run dir, and return the
    run ids. Creates the store and experiment when needed (this is the one process writing to the store).
    Idempotent: ``tracking.json`` counts the lines already imported, and the next import adds only later ones."""
    uri = normalize_uri(uri)
    experiment_id = init_store(uri, experiment, artifact_location)
    client = _client(uri)
    run_ids = []
    for events_file in sorted(Path(runs_dir).glob(f"**/{EVENTS_FILE}")):
        run_ids.append(_import_run_dir(client, uri, experiment, experiment_id, events_file))
    return run_ids


def _import_run_dir(client: MlflowClient, uri: str, experiment: str, experiment_id: str, events_file: Path) -> str:
    run_dir = events_file.parent
    lines = _complete_lines(events_file)
    state = read_state(run_dir)
    run_id = _resumable_run(client, state, uri, experiment, experiment_id)
    done = int(state.get("imported_lines", 0)) if run_id is not None else 0
    if done > len(lines):
        log.warning("%s has %d lines but %d were imported: the file was replaced; importing it again into run %s",
                    events_file, len(lines), done, run_id)
        done = 0
    events = [(number, _parse_event(line, events_file, number))
              for number, line in enumerate(lines[done:], start=done + 1)]
    events = [event for _, event in events if event is not None]
    if run_id is None:
        start = next((event for event in events if event["event"] == "start"), {})
        run_id = client.create_run(experiment_id, start_time=start.get("time"),
                                   run_name=start.get("run_name")).info.run_id
        # Remember the run before replaying, so that an import that dies half-way continues this run next time
        # (re-logged metrics are deduplicated by MLflow, params and tags are the same values).
        _write_state(run_dir, run_id=run_id, uri=uri, experiment=experiment, mode="deferred", imported_lines=0)
    if events:
        _replay(_MlflowWriter(client, run_id), events, run_dir)
    _write_state(run_dir, run_id=run_id, uri=uri, experiment=experiment, mode="deferred", imported_lines=len(lines))
    return run_id


def _replay(writer: _MlflowWriter, events: list[dict], run_dir: Path) -> None:
    """Events in their order; consecutive metric events go to MLflow in one batch. The run ends with the status of
    the last job's end event, or stays RUNNING when the last job started but has not ended (yet)."""
    metrics: list[tuple[str, float, int, int]] = []
    last_start = last_end = None

    def flush():
        writer.log_metrics(metrics)
        metrics.clear()

    for event in events:
        kind = event["event"]
        if kind == "metrics":
            step = int(event.get("step", 0))
            metrics.extend((key, float(value), event["time"], step) for key, value in event["metrics"].items())
            continue
        flush()
        if kind == "start":
            last_start, last_end = event, None
            writer.set_tags(event.get("tags", {}))
        elif kind == "end":
            last_end = event
        elif kind == "params":
            writer.log_params(event["params"])
        elif kind == "tags":
            writer.set_tags(event["tags"])
        elif kind == "dataset":
            writer.log_dataset(event["name"], event["digest"], event["source"], event.get("context", "training"))
        elif kind == "artifact":
            path = run_dir / event["path"]  # an absolute event path stays absolute
            if path.exists():
                writer.log_artifact(path, event.get("artifact_path"))
            else:
                log.warning("artifact %s logged by a deferred job is gone; not imported", path)
        else:
            log.warning("unknown tracking event %r in %s: skipped", kind, run_dir / EVENTS_FILE)
    flush()
    if last_end is not None:
        writer.client.set_terminated(writer.run_id, status=last_end.get("status", "FINISHED"),
                                     end_time=last_end["time"])
    elif last_start is not None:
        writer.client.update_run(writer.run_id, status="RUNNING")


# ------------------------------------------------------------------------------------------------------- reading

def find_runs(uri: str, experiment: str) -> pd.DataFrame:
    """All active runs of ``experiment``, one row each, with the columns of ``mlflow.search_runs`` (``run_id``,
    ``status``, ``start_time``, ..., ``metrics.<k>`` (last value), ``params.<k>`` (strings), ``tags.<k>``), but
    read through an explicit client on ``uri``."""
    import pandas as pd

    uri = normalize_uri(uri)
    client = _existing_client(uri)
    experiment_id = _experiment_id(client, uri, experiment)
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
