"""A finished run carried on to more epochs: the longer run, without training its first part again.

Under a learning rate that does not look at the run's length (``constant``, Caffe's ``inv``), the first E epochs of an
N-epoch run are the E-epoch run itself: the KL warm-up counts epochs from the start, and the checkpoint holds the
optimiser, the shuffling and the noise generators. So the E-epoch run's last checkpoint, with its length set to N, is
where the N-epoch run stands after epoch E. ``extend_cell`` copies it into a new run directory (the E-epoch run stays
as it is, metrics and all) and trains on from there with ``train_cell``; rerunning resumes like any run. It answers
"was the run still compressing?" for the price of the extra epochs only.

Refused, with the reason: a schedule tied to the run's length (``cosine``, ``linear``, ``constant_then_linear``: the
first E epochs of a longer run would have trained at other rates), a method with its own step schedule (DC, DNS), a
run that has not finished or kept no checkpoint.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Collection
from pathlib import Path

import torch

from ..atomic import write_atomically, write_json
from ..errors import UsageError
from ..methods import get_method
from ..runs import CHECKPOINT, EXTENDED_FROM, MODEL_FILE, RUN_FILE
from ..train import TrainConfig, lr_factor, read_checkpoint
from .identity import params_with_defaults
from .options import Tracking
from .training import train_cell

log = logging.getLogger(__name__)


def extend_cell(run_dir, out, *, epochs: int, data_root: str | None = None, download: bool | None = None,
                max_minutes: float | None = None, snapshot_epochs: Collection[int] = (), device: str = "auto",
                gpu_slots: str | None = None, jobs_per_gpu: int = 1, tracking: Tracking = Tracking()) -> dict:
    """Train the finished run in ``run_dir`` on to ``epochs`` in ``out`` (a new run directory whose ``run.json``
    names the run it continues); returns ``out``'s ``run.json``. ``data_root`` and ``download`` default to the run's."""
    source, out = Path(run_dir), Path(out)
    run = _read_run(source)
    params = dict(params_with_defaults(run), epochs=epochs)
    origin = {"run": str(source), "epochs": run["params"]["epochs"]}
    if (out / RUN_FILE).exists():
        _check_same_extension(out, origin)
    else:
        _prepare(source, out, run, origin, epochs)
    return train_cell(out, arch=run["arch"], method=run["method"], dataset=run["dataset"], seed=run["seed"],
                      data_root=run.get("data_root", "data") if data_root is None else data_root,
                      download=run.get("download", True) if download is None else download, params=params,
                      init=run.get("init"), max_minutes=max_minutes, snapshot_epochs=snapshot_epochs, device=device,
                      gpu_slots=gpu_slots, jobs_per_gpu=jobs_per_gpu, tracking=tracking, extended_from=origin)


def _read_run(source: Path) -> dict:
    try:
        return json.loads((source / RUN_FILE).read_text())
    except FileNotFoundError:
        raise UsageError(f"{source} is not a run directory (no {RUN_FILE})") from None


def check_extensible(run: dict, epochs: int) -> None:
    """Refuse an extension that would not be the longer run: fewer epochs, a method with its own step schedule, a
    learning rate that depends on the run's length."""
    finished = run["params"]["epochs"]
    if epochs <= finished:
        raise UsageError(f"the run has {finished} epochs: extending it needs more (got {epochs})")
    method = get_method(run["method"])
    if method.after_step is not None or method.prepare is not None:
        raise UsageError(f"{run['method']} runs its own schedule over the run's steps, set by the run's length: "
                         f"train a {epochs}-epoch run instead")
    config = TrainConfig.from_params(params_with_defaults(run), seed=run["seed"])
    rates = [(lr_factor(config.lr_schedule, epoch / finished, epoch, config.lr_gamma, config.lr_power),
              lr_factor(config.lr_schedule, epoch / epochs, epoch, config.lr_gamma, config.lr_power))
             for epoch in range(finished)]
    if any(short != long for short, long in rates):
        raise UsageError(f"lr_schedule {config.lr_schedule!r} depends on the run's length: the first {finished} "
                         f"epochs of a {epochs}-epoch run train at other rates; train a {epochs}-epoch run instead")


def _prepare(source: Path, out: Path, run: dict, origin: dict, epochs: int) -> None:
    """``out`` as the N-epoch run stood after the source's last epoch: its checkpoint with the new length, then its
    ``run.json`` (written last: a folder without it was never prepared)."""
    check_extensible(run, epochs)
    if not (source / MODEL_FILE).exists():
        raise UsageError(f"{source} has not finished training (no {MODEL_FILE}): resume it first")
    if not (source / CHECKPOINT).exists():
        raise UsageError(f"{source} kept no {CHECKPOINT}: its optimiser and random generators are needed to go on")
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out} is not empty and holds no extension ({RUN_FILE} missing): use another --out")
    state = read_checkpoint(source / CHECKPOINT)
    if state["epoch"] + 1 != origin["epochs"]:
        raise UsageError(f"{source / CHECKPOINT} is after epoch {state['epoch'] + 1}, not the run's last "
                         f"({origin['epochs']})")
    state["config"] = dict(state["config"], epochs=epochs)
    out.mkdir(parents=True, exist_ok=True)
    write_atomically(out / CHECKPOINT, lambda handle: torch.save(state, handle))
    write_json({key: value for key, value in run.items()
                if key not in ("train_seconds", "wall_seconds", "mlflow_run_id", "provenance")}
               | {"params": dict(run["params"], epochs=epochs), EXTENDED_FROM: origin}, out / RUN_FILE)
    log.info("extending %s (%d epochs) to %d epochs in %s", source, origin["epochs"], epochs, out)


def _check_same_extension(out: Path, origin: dict) -> None:
    previous = json.loads((out / RUN_FILE).read_text()).get(EXTENDED_FROM)
    if previous is None or Path(previous["run"]).resolve() != Path(origin["run"]).resolve():
        raise UsageError(f"{out} holds another run than an extension of {origin['run']}: use another --out")
