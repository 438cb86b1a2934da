"""``CellRun``, the MLflow run of one cell as one job sees it, and the tags every job sets on it. ``CellRun`` checks
and cleans what a job logs, then hands it to the sink of its tracking mode (``sinks``; the modes are described in
``bcrepro.tracking``)."""
from __future__ import annotations

import functools
import math
import os
import subprocess
from pathlib import Path

from .sinks import MODES, SINKS
from .writer import PARAM_VALUE_MAX, cut

CELL_KEYS = ("arch", "method", "seed", "dataset")


# ----------------------------------------------------------------------------------------------------------- tags

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


# --------------------------------------------------------------------------------------------------------- values

def flatten_params(params: dict, prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}, "c": [1, 2], "d": None}`` -> ``{"a.b": "1", "c": "[1, 2]", "d": "None"}``, each value cut to
    MLflow's param length limit."""
    flat = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_params(value, prefix=f"{name}."))
        else:
            flat[name] = cut(str(value), PARAM_VALUE_MAX, name)
    return flat


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


# -------------------------------------------------------------------------------------------------------- CellRun

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
        self.experiment = experiment
        self.rule = rule
        self.cell = dict(cell)
        self._sink = SINKS[mode](self.run_dir, uri, experiment)
        self.uri = self._sink.uri  # direct mode: absolute, and results/mlflow.db when none was given
        self._open = False

    @property
    def run_id(self) -> str | None:
        """The MLflow run's id; ``None`` before the run is open, and in deferred mode (its import creates the run)."""
        return self._sink.run_id

    # -- lifecycle

    def __enter__(self) -> CellRun:
        if self._sink.active:
            self._sink.open(self.rule, run_name(self.cell), cell_tags(self.cell, self.rule))
        self._open = True
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._open = False
        self._sink.close(_end_status(exc_type))
        return False

    # -- logging

    def log_params(self, params: dict) -> None:
        """Nested dicts flatten to ``a.b`` keys; other values become strings. Re-logging a value is harmless; a
        different value for a logged key becomes the tag ``param_changed.<key>`` (with a warning)."""
        if self._logging():
            self._sink.log_params(flatten_params(params))

    def set_tags(self, tags: dict) -> None:
        if self._logging():
            self._sink.set_tags({str(key): str(value) for key, value in tags.items()})

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        """Values that are not numbers (``None``, NaN, strings) are dropped. ``step`` defaults to 0, as in MLflow."""
        if not self._logging():
            return
        cleaned = _clean_metrics(metrics)
        if cleaned:
            self._sink.log_metrics(cleaned, 0 if step is None else int(step))

    def log_dataset(self, name: str, digest: str, source: str, context: str = "training") -> None:
        """The data set of this run (``name``, a content ``digest``, where it lives) as an MLflow dataset input."""
        if self._logging():
            self._sink.log_dataset(name, digest, source, context)

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
        self._sink.log_artifact(path, artifact_path)

    def _logging(self) -> bool:
        """Whether to log: not with tracking off; an error outside the ``with`` block."""
        if not self._sink.active:
            return False
        if not self._open:
            raise RuntimeError(f"CellRun for {self.run_dir} is not open: log inside `with CellRun(...) as run:`")
        return True


def _end_status(exc_type) -> str:
    if exc_type is None:
        return "FINISHED"
    return "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED"
