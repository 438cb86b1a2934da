"""How a cell's job logs to MLflow: the options every job takes, and the MLflow run of its cell."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import tracking
from ..errors import UsageError

DEFAULT_EXPERIMENT = "bcrepro"


@dataclass(frozen=True)
class Tracking:
    """``uri``: the store (``sqlite:///results/mlflow.db`` or ``http://host:port``); ``mode``: direct, deferred or
    off, by default direct when a URI is given and off otherwise; ``rule``: the workflow rule running the job (an
    MLflow tag; the job's own name when unset)."""
    uri: str | None = None
    experiment: str = DEFAULT_EXPERIMENT
    mode: str | None = None
    rule: str | None = None

    def resolved_mode(self) -> str:
        mode = self.mode or ("direct" if self.uri else "off")
        if mode == "direct" and not self.uri:
            raise UsageError("--mlflow-mode direct needs --mlflow-uri (e.g. sqlite:///results/mlflow.db)")
        return mode


def open_cell_run(options: Tracking, run: dict, out: Path, job: str) -> tracking.CellRun:
    """The MLflow run of this (arch, method, seed), opened or continued by the job ``job``."""
    cell = {key: run[key] for key in tracking.CELL_KEYS}
    return tracking.CellRun(out, uri=options.uri, experiment=options.experiment, mode=options.resolved_mode(),
                            rule=options.rule or job, cell=cell)
