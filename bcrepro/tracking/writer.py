"""The writes to one MLflow run, within MLflow's limits. The direct sink and the deferred import share
``MlflowWriter``, so both apply the same batching and the same rule for params that change value."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

# MLflow 3.17's limits (mlflow.utils.validation), copied so that deferred jobs apply them without importing mlflow.
PARAM_VALUE_MAX = 6000
TAG_VALUE_MAX = 8000
PARAMS_TAGS_PER_BATCH = 100
METRICS_PER_BATCH = 1000
DATASET_ATTEMPTS = 3  # a data set logged by jobs that start together: see MlflowWriter.log_dataset


def now_ms() -> int:
    """The time now as MLflow stamps metrics and runs: milliseconds since the epoch."""
    return int(time.time() * 1000)


def cut(value: str, limit: int, key: str) -> str:
    """``value`` cut to ``limit`` characters, with a warning naming ``key`` when it was longer."""
    if len(value) <= limit:
        return value
    log.warning("value of %r is %d characters long; MLflow keeps %d, the rest is cut", key, len(value), limit)
    return value[:limit]


class MlflowWriter:
    """Writes to the MLflow run ``run_id``."""

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

        items = [(str(key), cut(str(value), TAG_VALUE_MAX, str(key))) for key, value in tags.items()]
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
