"""``train_cell``: train one cell into its run directory, resuming its checkpoint, logging to MLflow."""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Collection

import torch

from .. import data
from ..atomic import write_json
from ..compress.thresholds import monitor_groups_kept
from ..errors import UsageError
from ..methods import get_method
from ..runs import (CHECKPOINT, EXTENDED_FROM, HISTORY_FILE, METRICS_FILE, MODEL_FILE, RUN_FILE, build_net,
                    init_from_dense, load_dataset_for_run)
from ..train import TrainConfig, train
from .device import job_device
from .identity import check_init_matches, check_same_training, params_with_defaults
from .options import Tracking, open_cell_run

log = logging.getLogger("bcrepro")


def epoch_metrics(record: dict) -> dict:
    """The per-epoch values MLflow plots while a run trains (each layer's KL and clamp floor, groups or weights kept
    as a fraction, per layer and overall)."""
    metrics = {key: record[key] for key in ("loss", "cross_entropy", "kl", "kl_weight", "lr", "train_error_pct",
                                            "test_error_pct", "seconds")}
    for i, (kl, floor) in enumerate(record.get("kl_layers") or []):
        metrics[f"kl.layer{i}"] = kl
        metrics[f"kl_floor.layer{i}"] = floor
    for unit in ("groups", "weights"):
        pairs = record.get(f"{unit}_kept") or []  # [kept, total] per layer
        for i, (kept, total) in enumerate(pairs):
            metrics[f"{unit}_kept_fraction.layer{i}"] = kept / total
        if pairs:
            metrics[f"{unit}_kept_fraction"] = sum(k for k, _ in pairs) / sum(t for _, t in pairs)
    return metrics


# The iteration-counted schedules (DC's pruning and quantisation, DNS's end of surgery) are set for MNIST's training
# split; on other data they keep their place in each epoch (schedule_for_data).
SCHEDULE_TRAIN_IMAGES = 55_000


def schedule_for_data(method, arch: str, params: dict, n_train: int, overrides: dict) -> tuple[dict, float]:
    """``params`` with the method's iteration-counted schedule scaled from MNIST's 55,000 training images to
    ``n_train`` (steps per epoch over MNIST's at the same batch), and the factor; 1 and ``params`` unchanged where the
    method has no such schedule, the data is MNIST's size, or ``overrides`` (the user's) changed the schedule from the
    method's default: a schedule of one's own is taken as it is."""
    if method.scale_schedule is None:
        return params, 1.0
    defaults = method.hyperparameters.get(arch, {})
    if any(key in overrides and overrides[key] != defaults.get(key) for key in method.scale_schedule(params, 1.0)):
        return params, 1.0
    batch = params["batch_size"]
    factor = math.ceil(n_train / batch) / math.ceil(SCHEDULE_TRAIN_IMAGES / batch)
    if factor == 1.0:
        return params, 1.0
    scaled = {**params, **method.scale_schedule(params, factor)}
    log.info("%s: the iteration-counted schedule is set for %d training images and this run has %d: scaled by %.4g "
             "to %s", method.name, SCHEDULE_TRAIN_IMAGES, n_train, factor,
             ", ".join(f"{name} = {step}" for name, step in method.scheduled_steps(scaled).items()))
    return scaled, factor


def check_schedule(method, params: dict, n_train: int) -> None:
    """Refuse a run whose iteration-counted schedule (DC's pruning and quantisation, DNS's end of surgery) would not
    happen within its optimiser steps: it would train, report and never say that its method did not run."""
    if method.scheduled_steps is None:
        return
    steps_per_epoch = math.ceil(n_train / params["batch_size"])
    total = params["epochs"] * steps_per_epoch
    late = {name: step for name, step in method.scheduled_steps(params).items() if step >= total}
    if late:
        scale = total / max(late.values()) * 0.9
        raise UsageError(
            f"{method.name}: this run has {total} optimiser steps ({params['epochs']} epochs of {steps_per_epoch} "
            f"at batch {params['batch_size']} on {n_train} training images), but its schedule acts at "
            + ", ".join(f"{name} = {step}" for name, step in late.items())
            + f" (scaled to this data from MNIST's {SCHEDULE_TRAIN_IMAGES:,} images). Give more epochs, or scale the "
            "schedule, e.g. "
            f"--params-json with every iteration count times {scale:.3g}")


def _already_trained(out: Path, previous: dict, params: dict) -> bool:
    """A finished run declared again: only compression settings may differ, and they replace the stored ones."""
    if not ((out / METRICS_FILE).exists() or (out / MODEL_FILE).exists()):
        return False
    if params_with_defaults(previous) != params:  # keys the older run.json lacks at their default change nothing
        write_json(dict(previous, params=params), out / RUN_FILE)
        log.info("%s is already trained; its compression settings are updated in %s (run `compress` again to apply "
                 "them)", out, RUN_FILE)
    else:
        log.info("%s is already trained; nothing to do (delete %s to retrain)", out, MODEL_FILE)
    return True


def train_cell(out, *, arch: str, method: str, dataset: str, seed: int = 0, data_root: str = "data",
               download: bool = True, params: dict | None = None, init: str | Path | None = None,
               epochs: int | None = None, epoch_scale: float = 1.0, max_minutes: float | None = None,
               snapshot_epochs: Collection[int] = (), device: str = "auto", gpu_slots: str | None = None,
               jobs_per_gpu: int = 1, tracking: Tracking = Tracking(), extended_from: dict | None = None) -> dict:
    """Train ``method`` on ``arch`` into ``out`` (``run.json``, checkpoints, then ``model.pt`` and
    ``history.json``); ``params`` override the method's defaults. Returns the run's ``run.json``.

    A checkpoint in ``out`` is resumed if its training settings are the same (else ``UsageError``); a finished run is
    left alone. ``max_minutes`` stops cleanly after an epoch with ``TimeLimitReached`` (rerun to resume);
    ``snapshot_epochs`` keeps the network after those epochs in ``out/epoch<N>/``. ``extended_from`` (set by
    ``extend_cell``) names the finished run whose checkpoint ``out`` continues, in ``run.json``.
    """
    if not epoch_scale > 0:
        raise UsageError(f"--epoch-scale must be > 0, got {epoch_scale}")
    spec = get_method(method)
    resolved = spec.scale_budget(spec.params_for(arch, dict(params or {})), epoch_scale)
    if epochs is not None:
        resolved["epochs"] = epochs
    torch_device = job_device(device, gpu_slots, jobs_per_gpu)
    out, init = Path(out), None if init is None else str(init)
    run = {"arch": arch, "method": method, "dataset": dataset, "seed": seed, "data_root": data_root,
           "download": download, "device": str(torch_device), "init": init, "params": resolved}
    if extended_from is not None:
        run[EXTENDED_FROM] = extended_from
    if (out / RUN_FILE).exists():
        previous = json.loads((out / RUN_FILE).read_text())
        check_same_training(previous, run, out)
        if _already_trained(out, previous, resolved):
            return json.loads((out / RUN_FILE).read_text())
    if init:
        check_init_matches(Path(init), run)

    splits = load_dataset_for_run(run, torch_device)
    run["preprocessing"] = splits.preprocessing  # in words, with the fitted statistics (the mean image's, CIFAR's)
    scheduled, run["schedule_scale"] = schedule_for_data(spec, arch, resolved, len(splits.train_y), params or {})
    check_schedule(spec, scheduled, len(splits.train_y))
    torch.manual_seed(seed)
    net = build_net(arch, method, resolved, splits)
    if init:
        init_from_dense(net, Path(init))
    elif spec.starts_from(arch):
        log.warning("%s starts from a dense reference in the paper's table; training from scratch (no --init)",
                    method)
    if spec.prepare is not None and not (out / CHECKPOINT).exists():
        spec.prepare(net, scheduled)
    config = TrainConfig.from_params(resolved, seed=seed)  # every setting checked before the first file
    out.mkdir(parents=True, exist_ok=True)
    write_json(run, out / RUN_FILE)
    log.info("training %s/%s on %s (%d train, %d validation, %d test; %s) on %s: %s", arch, method, splits.name,
             len(splits.train_y), len(splits.val_y), len(splits.test_y), splits.preprocessing, torch_device, config)
    tic = time.perf_counter()
    with open_cell_run(tracking, run, out, "train") as tracker:
        tracker.log_params({**{k: v for k, v in run.items() if k != "params"}, **resolved})
        tracker.log_dataset(splits.name, data.splits_digest(splits),
                            "synthetic" if dataset == "synthetic" else str(Path(data_root).resolve()))
        history = train(net, splits, config, out, torch_device, groups_kept=monitor_groups_kept,
                        time_limit_s=None if max_minutes is None else 60.0 * max_minutes,
                        snapshot_epochs=set(snapshot_epochs),
                        after_step=None if spec.after_step is None else spec.after_step(net, scheduled),
                        on_epoch_end=lambda record: tracker.log_metrics(epoch_metrics(record), step=record["epoch"]))
        train_seconds = sum(record["seconds"] for record in history)
        torch.save(net.state_dict(), out / MODEL_FILE)
        write_json(history, out / HISTORY_FILE)
        run = {**run, "train_seconds": train_seconds, "wall_seconds": time.perf_counter() - tic,
               "mlflow_run_id": tracker.run_id}
        write_json(run, out / RUN_FILE)
        tracker.log_metrics({"train_seconds": train_seconds})
        tracker.log_artifact(out / MODEL_FILE, "state_dicts")
        tracker.log_artifact(out / HISTORY_FILE)
    log.info("saved %s (%.1f s of training)", out / MODEL_FILE, train_seconds)
    return run
