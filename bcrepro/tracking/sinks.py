"""Where a ``CellRun`` sends what a job logs, one sink per tracking mode: ``DirectSink`` writes to the store,
``DeferredSink`` appends events to the run dir's ``tracking.jsonl``, ``OffSink`` drops everything.

Every sink takes ``(run_dir, uri, experiment)`` and has the same methods, called by ``CellRun`` with values it has
already checked and cleaned: ``open(rule, run_name, tags)``, ``log_params`` (flat string values), ``set_tags``
(string keys and values), ``log_metrics`` (finite or infinite floats, an int step), ``log_dataset``, ``log_artifact``
(a path that exists) and ``close(status)``; and the attributes ``uri``, ``run_id`` (the MLflow run, once known) and
``active`` (``False``: ``CellRun`` skips its checks too, so that a job with tracking off logs nothing and fails on
nothing).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

from .deferred import append_event
from .store import (active_experiment_id, default_uri, existing_client, normalize_uri, read_state, resumable_run,
                    write_state)
from .writer import MlflowWriter, now_ms

log = logging.getLogger(__name__)


class Sink(Protocol):
    active: bool
    uri: str | None
    run_id: str | None

    def open(self, rule: str, run_name: str, tags: dict[str, str]) -> None: ...

    def log_params(self, params: dict[str, str]) -> None: ...

    def set_tags(self, tags: dict[str, str]) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def log_dataset(self, name: str, digest: str, source: str, context: str) -> None: ...

    def log_artifact(self, path: Path, artifact_path: str | None) -> None: ...

    def close(self, status: str) -> None: ...


class DirectSink:
    """Logs live to the store at ``uri`` (``results/mlflow.db`` when ``None``), which must already exist."""
    active = True

    def __init__(self, run_dir: Path, uri: str | None, experiment: str):
        self.run_dir = run_dir
        self.uri = normalize_uri(uri if uri is not None else default_uri())
        self.experiment = experiment
        self.run_id: str | None = None
        self._writer: MlflowWriter | None = None

    def open(self, rule: str, run_name: str, tags: dict[str, str]) -> None:
        """Continue the run named in ``tracking.json``, or create one and name it there."""
        client = existing_client(self.uri)
        experiment_id = active_experiment_id(client, self.uri, self.experiment)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        state = read_state(self.run_dir)
        run_id = resumable_run(client, state, self.uri, self.experiment, experiment_id)
        if run_id is None:
            run_id = client.create_run(experiment_id, run_name=run_name).info.run_id
            imported = 0
        else:
            client.update_run(run_id, status="RUNNING")
            imported = state.get("imported_lines", 0)
        write_state(self.run_dir, run_id=run_id, uri=self.uri, experiment=self.experiment, mode="direct",
                    imported_lines=imported)
        self.run_id = run_id
        self._writer = MlflowWriter(client, run_id)
        self._writer.set_tags(tags)

    def log_params(self, params: dict[str, str]) -> None:
        self._writer.log_params(params)

    def set_tags(self, tags: dict[str, str]) -> None:
        self._writer.set_tags(tags)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        now = now_ms()
        self._writer.log_metrics([(key, value, now, step) for key, value in metrics.items()])

    def log_dataset(self, name: str, digest: str, source: str, context: str) -> None:
        self._writer.log_dataset(name, digest, source, context)

    def log_artifact(self, path: Path, artifact_path: str | None) -> None:
        self._writer.log_artifact(path, artifact_path)

    def close(self, status: str) -> None:
        if self._writer is None:
            return
        try:
            self._writer.client.set_terminated(self.run_id, status=status)
        except Exception:
            # a job that did its work fails when its run cannot be ended; a job already failing keeps its own error
            if status == "FINISHED":
                raise
            log.exception("could not mark run %s %s", self.run_id, status)


class DeferredSink:
    """Appends events to ``<run_dir>/tracking.jsonl`` for ``import_deferred``; never imports MLflow. The MLflow run
    is created at import time, so ``run_id`` stays ``None``."""
    active = True

    def __init__(self, run_dir: Path, uri: str | None, experiment: str):
        self.run_dir = run_dir
        self.uri = uri
        self.experiment = experiment
        self.run_id: str | None = None

    def open(self, rule: str, run_name: str, tags: dict[str, str]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        append_event(self.run_dir, "start", rule=rule, run_name=run_name, tags=tags)

    def log_params(self, params: dict[str, str]) -> None:
        append_event(self.run_dir, "params", params=params)

    def set_tags(self, tags: dict[str, str]) -> None:
        append_event(self.run_dir, "tags", tags=tags)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        append_event(self.run_dir, "metrics", step=step, metrics=metrics)

    def log_dataset(self, name: str, digest: str, source: str, context: str) -> None:
        append_event(self.run_dir, "dataset", name=name, digest=digest, source=source, context=context)

    def log_artifact(self, path: Path, artifact_path: str | None) -> None:
        """The files are copied at import time, so they must still be there then."""
        append_event(self.run_dir, "artifact", path=_portable_path(path, self.run_dir), artifact_path=artifact_path)

    def close(self, status: str) -> None:
        append_event(self.run_dir, "end", status=status)


def _portable_path(path: Path, run_dir: Path) -> str:
    """Relative to the run dir when inside it (the results tree may move before the import), else absolute."""
    path = path.resolve()
    try:
        return path.relative_to(run_dir.resolve()).as_posix()
    except ValueError:
        return str(path)


class OffSink:
    """Logs nothing."""
    active = False

    def __init__(self, run_dir: Path, uri: str | None, experiment: str):
        self.uri = uri
        self.run_id: str | None = None

    def open(self, rule: str, run_name: str, tags: dict[str, str]) -> None:
        pass

    def log_params(self, params: dict[str, str]) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass

    def log_dataset(self, name: str, digest: str, source: str, context: str) -> None:
        pass

    def log_artifact(self, path: Path, artifact_path: str | None) -> None:
        pass

    def close(self, status: str) -> None:
        pass


SINKS: dict[str, type[Sink]] = {"direct": DirectSink, "deferred": DeferredSink, "off": OffSink}
MODES = tuple(SINKS)
