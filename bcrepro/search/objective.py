"""One trial of a study: train and compress one configuration into its own run directory, and score it.

The score is the compressed network's kept weights (``nonzero_weights`` of its ``metrics.json``), to be minimised,
under a constraint: the compressed network's error on the run's validation split (held out of the training images;
the test set is never looked at) must be within the study's ``Budget``. ``compress`` reports test errors only, so the
validation error is measured here, on the network ``compress`` wrote (``slim.pt``, else ``compressed.bin``), which
computes what ``compress`` evaluated.

    settings = TrialSettings(method="sws", arch="lenet5", dataset="mnist", seed=0, epochs=30,
                             params={"batch_size": 256}, budget=Budget(max_validation_error_pct=1.2),
                             init="results/runs/lenet5/dense/seed0/model.pt")
    result = run_trial(Path("results/search/sws/trials/trial0003"), settings, {"tau": 0.01}, tags={...})
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..cells import Tracking, compress_cell, open_cell_run, resolve_device, train_cell
from ..cells.compression import reference_validation_error
from ..deploy import artefact, slim
from ..errors import UsageError
from ..methods import get_method
from ..runs import ARTEFACT_FILE, MODEL_FILE, SLIM_FILE, load_dataset_for_run
from ..train import error_rate

log = logging.getLogger("bcrepro")


@dataclass(frozen=True)
class Budget:
    """The validation error (percent) a trial's compressed network may have: at most ``max_validation_error_pct``,
    and at most the dense reference's validation error plus ``max_error_increase`` points; either or both."""
    max_validation_error_pct: float | None = None
    max_error_increase: float | None = None

    def __post_init__(self):
        if self.max_validation_error_pct is None and self.max_error_increase is None:
            raise UsageError("a search needs a validation-error budget: --max-validation-error-pct P (absolute) "
                             "and/or --max-error-increase D (points over the dense reference's validation error)")
        for name, value in asdict(self).items():
            if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                          and math.isfinite(value) and value >= 0):
                raise UsageError(f"budget {name} must be a number >= 0, got {value!r}")

    def limit(self, reference_error_pct: float | None = None) -> float:
        """The largest validation error (percent) that is feasible: the tighter of the two bounds given."""
        bounds = [] if self.max_validation_error_pct is None else [float(self.max_validation_error_pct)]
        if self.max_error_increase is not None:
            if reference_error_pct is None:
                raise UsageError("budget max_error_increase is stated against a dense reference: give "
                                 "--reference-run (or --init from a dense run)")
            bounds.append(float(reference_error_pct) + float(self.max_error_increase))
        return min(bounds)


def constraint(validation_error_pct: float, limit_pct: float) -> float:
    """Optuna's constraint value of a trial: feasible when <= 0 (the points by which it misses the budget)."""
    return validation_error_pct - limit_pct


@dataclass(frozen=True)
class TrialSettings:
    """What every trial of a study shares: the cell it trains (``method`` on ``arch``, ``dataset``, ``seed``), its
    fixed overrides (``params``, ``epochs``; None keeps the method's), the budget, where data and the dense network
    are (``init``: a dense run's model.pt; ``reference``: the dense run dir whose validation error the budget and a
    ``sparsest`` threshold rule are stated against, by default the folder of ``init``), the device and MLflow."""
    method: str
    arch: str
    dataset: str
    budget: Budget
    seed: int = 0
    epochs: int | None = None
    params: dict = field(default_factory=dict)
    data_root: str = "data"
    download: bool = True
    init: str | None = None
    reference: str | None = None
    device: str = "auto"
    tracking: Tracking = Tracking()

    def fixed(self) -> dict:
        """The overrides every trial trains with, the epochs among them."""
        return {**self.params, **({} if self.epochs is None else {"epochs": self.epochs})}

    def reference_run(self) -> str | None:
        return self.reference if self.reference is not None else (
            None if self.init is None else str(Path(self.init).parent))

    def identity(self) -> dict:
        """What makes two studies the same search (stored with the study; paths and the device may change)."""
        return {"method": self.method, "arch": self.arch, "dataset": self.dataset, "seed": self.seed,
                "epochs": self.epochs, "params": self.params, "budget": asdict(self.budget)}

    def check(self) -> None:
        """Refuse what would fail every trial alike, before the first one."""
        method = get_method(self.method)
        params = method.params_for(self.arch, self.fixed())
        if params["validation_size"] in (0, 0.0):
            raise UsageError("a search scores trials on the validation split, and validation_size is 0: hold out "
                             "images (the default is \"1/12\")")
        if self.init is not None and not Path(self.init).exists():
            raise UsageError(f"--init {self.init} does not exist (expected a dense run's {MODEL_FILE})")
        if self.init is None and method.starts_from(self.arch):
            log.warning("%s starts from a dense network on %s, and no --init was given: every trial trains from "
                        "scratch", self.method, self.arch)
        reference = self.reference_run()
        if reference is not None and not (Path(reference) / MODEL_FILE).exists():
            raise UsageError(f"the dense reference {reference} has no {MODEL_FILE} (give --reference-run, a finished "
                             f"dense run)")
        if self.budget.max_error_increase is not None and reference is None:
            self.budget.limit(None)  # the error naming what is missing


def compressed_network(run_dir: Path, arch: str) -> torch.nn.Module:
    """The network ``compress`` evaluated last (pruned, and rounded where the method reduces precision): a LeNet
    rebuilt from ``compressed.bin`` (the whole architecture, so a network pruned to nothing still answers, at chance),
    another architecture's ``slim.pt``."""
    try:
        return artefact.load_network(run_dir / ARTEFACT_FILE, arch)
    except ValueError:  # not a LeNet: its batch norm is only in the slimmed export
        if not (run_dir / SLIM_FILE).exists():
            raise UsageError(f"{run_dir} has no {SLIM_FILE} to measure the compressed {arch} on the validation "
                             f"split (compress could not slim it; see its log)") from None
        return slim.load_slim(run_dir / SLIM_FILE)


def run_trial(run_dir: Path, settings: TrialSettings, overrides: dict, tags: dict) -> dict:
    """Train ``overrides`` (on top of the study's fixed settings) into ``run_dir`` (resuming a checkpoint there),
    compress, and measure; ``tags`` go on the cell's MLflow run (the study and trial number). Returns the trial's
    ``kept_weights``, ``total_weights``, ``validation_error_pct``, ``reference_error_pct`` (None without a
    reference), ``limit_pct``, ``constraint`` (<= 0: feasible), ``feasible``, ``train_seconds`` and
    ``mlflow_run_id``."""
    cell = {"arch": settings.arch, "method": settings.method, "seed": settings.seed, "dataset": settings.dataset}
    with open_cell_run(settings.tracking, cell, run_dir, "search") as tracker:
        tracker.set_tags(tags)
    run = train_cell(run_dir, arch=settings.arch, method=settings.method, dataset=settings.dataset,
                     seed=settings.seed, data_root=settings.data_root, download=settings.download,
                     params={**settings.params, **overrides}, init=settings.init, epochs=settings.epochs,
                     device=settings.device, tracking=settings.tracking)
    thresholds = run["params"].get("thresholds")
    sparsest = isinstance(thresholds, dict) and thresholds.get("rule") == "sparsest"
    metrics = compress_cell(run_dir, reference_run=settings.reference_run() if sparsest else None,
                            device=settings.device, tracking=settings.tracking)
    device = resolve_device(settings.device)
    splits = load_dataset_for_run(run, device)
    validation_error = error_rate(compressed_network(run_dir, run["arch"]).to(device), splits.val_x, splits.val_y)
    reference_error = None
    if settings.budget.max_error_increase is not None:
        reference_error = reference_validation_error(Path(settings.reference_run()), run, splits, device)
    limit = settings.budget.limit(reference_error)
    result = {"kept_weights": metrics["nonzero_weights"], "total_weights": metrics["total_weights"],
              "validation_error_pct": validation_error, "reference_error_pct": reference_error, "limit_pct": limit,
              "constraint": constraint(validation_error, limit),
              "feasible": constraint(validation_error, limit) <= 0, "train_seconds": run.get("train_seconds"),
              "mlflow_run_id": metrics.get("mlflow_run_id")}
    with open_cell_run(settings.tracking, cell, run_dir, "search") as tracker:
        tracker.log_metrics({f"search.{key}": float(value) for key, value in result.items()  # feasible: 1 or 0
                             if isinstance(value, (int, float))})
    log.info("%s: %d of %d weights kept, validation error %.2f %% (budget %.2f %%): %s", run_dir,
             result["kept_weights"], result["total_weights"], validation_error, limit,
             "feasible" if result["feasible"] else "infeasible")
    return result
