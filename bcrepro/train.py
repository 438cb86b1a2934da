"""The one training loop, for every method.

Objective (per mini-batch): ``mean cross-entropy + beta_t * KL / N`` with ``N`` the training-set size (or
``kl_images`` where a run sets it: the Sparse VD authors divide by all 60,000 MNIST training images) and ``beta_t``
rising linearly from 0 to 1 over ``kl_warmup_epochs`` (KL warm-up, Sønderby et al. 2016; beta = 1 at once when 0),
after ``kl_warmup_start_epochs`` epochs at beta = 0 (Sparse VD's schedule: 0 for 5 epochs, then up to 1 at epoch 20).
A method may also act after every optimiser step (``after_step``: re-zero pruned weights, update masks).
A dense network has KL = 0. Adam; after every step each Bayesian layer clips its variances (``clip_variances``).

Every epoch ends with a checkpoint (model, optimiser, RNG states, history) written atomically to
``<out>/checkpoint.pt``; calling ``train`` again with the same ``out`` resumes after the last finished epoch and ends
with the same result as an uninterrupted run (on CPU, where every kernel is deterministic). A NaN or infinite loss
stops the run with ``TrainingDiverged`` and leaves the last good checkpoint as it was.

Command: ``bcrepro train --arch lenet300 --method bc-gnj --dataset mnist --seed 0 --out runs/lenet300-bc-gnj-0``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Collection

import torch
import torch.nn.functional as F

from .atomic import write_atomically, write_json
from .data import DataSplits, augment_cifar, minibatches
from . import pooling
from .models import Net
from .runs import CHECKPOINT, HISTORY_FILE, MODEL_FILE, RUN_FILE

log = logging.getLogger("bcrepro.train")

DIVERGENCE_CHECK_EVERY = 50  # steps between reads of the loss on a GPU (each read waits for the device)
LR_SCHEDULES = ("constant", "cosine", "constant_then_linear", "linear", "inv")
OPTIMIZERS = ("adam", "sgd")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class TimeLimitReached(RuntimeError):
    """The wall-clock limit passed; the checkpoint holds the finished epochs and a rerun resumes from it."""


KL_IMAGES_ALL = "all"


def kl_divisor(kl_images: int | str | None, n_train: int, n_validation: int) -> int:
    """The N of the objective's KL / N: the training split's size (None), all the images the split was drawn from,
    validation hold-out included ("all": the Sparse VD authors' N, who held nothing out), or a given count."""
    if kl_images is None:
        return n_train
    if kl_images == KL_IMAGES_ALL:
        return n_train + n_validation
    return kl_images


@dataclass
class TrainConfig:
    epochs: int
    batch_size: int
    lr: float
    lr_schedule: str = "constant"
    kl_warmup_epochs: float = 0.0
    kl_warmup_start_epochs: float = 0.0
    weight_decay: float = 0.0
    optimizer: str = "adam"  # "sgd": with momentum, as the Caffe solvers of DC and DNS
    momentum: float = 0.9  # SGD only
    lr_gamma: float = 1e-4  # "inv" only: Caffe's lr * (1 + gamma * iteration) ** -power
    lr_power: float = 0.75  # "inv" only
    augment: bool = False
    kl_images: int | str | None = None  # the N of KL / N; None: the training split's size; "all": it plus the hold-out
    seed: int = 0

    def __post_init__(self):
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError(f"epochs and batch_size must be >= 1 and lr > 0, got {self.epochs}, "
                             f"{self.batch_size}, {self.lr}")
        if self.kl_images not in (None, KL_IMAGES_ALL) and (
                isinstance(self.kl_images, bool) or not isinstance(self.kl_images, int) or self.kl_images < 1):
            raise ValueError(f"kl_images must be None (the training split's size), {KL_IMAGES_ALL!r} (it plus the "
                             f"validation hold-out) or an integer >= 1, got {self.kl_images!r}")

    @classmethod
    def saved(cls, config: dict) -> dict:
        """A checkpoint's config with every setting it lacks at its default: a setting added since it was written
        defaults to the behaviour the code had before, so the run resumes under it."""
        defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
        return {**defaults, **config}

    @classmethod
    def from_params(cls, params: dict, seed: int) -> "TrainConfig":
        """The training part of a method's hyper-parameters (other keys belong to layers or compression)."""
        names = {f.name for f in dataclasses.fields(cls)} - {"seed"}
        return cls(seed=seed, **{k: v for k, v in params.items() if k in names})


def lr_factor(schedule: str, progress: float, step: int = 0, gamma: float = 1e-4, power: float = 0.75) -> float:
    """Multiplier of the base learning rate at ``progress`` = fraction of training done, in [0, 1] (``step``: the
    iteration, for Caffe's ``inv`` policy, (1 + gamma * step) ** -power)."""
    if schedule == "constant":
        return 1.0
    if schedule == "inv":
        return (1.0 + gamma * step) ** -power
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "linear":
        return 1.0 - progress
    # constant_then_linear: Sparse VD's lr_linear, constant for the first half then linearly to 0.
    return min(1.0, 2.0 * (1.0 - progress))


def kl_weight(warmup_epochs: float, epoch_progress: float, start_epochs: float = 0.0) -> float:
    """beta_t of the KL warm-up: 0 until ``start_epochs``, then linear from 0 to 1 over ``warmup_epochs`` (in epochs,
    fractional); 1 right after the start when ``warmup_epochs`` is 0."""
    if epoch_progress < start_epochs:
        return 0.0
    if warmup_epochs <= 0:
        return 1.0
    return min(1.0, (epoch_progress - start_epochs) / warmup_epochs)


@torch.no_grad()
def error_rate(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2048) -> float:
    """Test error in percent of ``net`` in eval mode (posterior-mean weights for Bayesian layers).

    The count stays on the device until the end, like the training loop's sums (one read, not one per batch). The
    forward passes on CPU go through the exact pooling rewrite of ``bcrepro.pooling`` (``compress`` evaluates a few
    hundred pruned networks; docs/benchmarks.md); elsewhere it is left as built (``pooling.pays_off``).
    """
    was_training = net.training
    net.eval()
    fast = pooling.fast_inference(net) if pooling.pays_off(x.device) else net
    wrong = torch.zeros((), dtype=torch.int64, device=x.device)
    for xb, yb in minibatches(x, y, batch_size, shuffle=False):
        wrong += (fast(xb).argmax(1) != yb).sum()
    net.train(was_training)
    return 100.0 * wrong.item() / max(1, len(y))


def make_optimizer(net: Net, config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """Adam with the fused kernel (one pass per parameter instead of several; docs/benchmarks.md) where the device has
    one, or SGD with momentum (not fused: its fused kernel fails when a parameter first gets a gradient mid-run, as
    DC's centroids do)."""
    fused = device.type in ("cpu", "cuda")
    groups = parameter_groups(net, config.lr)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay, fused=fused)


def parameter_groups(net: Net, lr: float) -> list[dict]:
    """One group at ``lr``, plus the groups of modules that ask for their own rates (``learning_rates()``: SWS's
    mixture prior). Each group keeps its ``base_lr``; the schedule scales them all alike."""
    own = [(params, rate) for m in net.modules() if hasattr(m, "learning_rates") for params, rate in m.learning_rates()]
    special = {id(p) for params, _ in own for p in params}
    groups = [{"params": [p for p in net.parameters() if id(p) not in special], "lr": lr, "base_lr": lr}]
    return groups + [{"params": params, "lr": rate, "base_lr": rate} for params, rate in own]


def _rng_state(generator: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "shuffle": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, generator: torch.Generator) -> None:
    """Restore the RNG states of a checkpoint read by ``read_checkpoint`` (CPU byte tensors, whatever the device).

    The CUDA states are restored for the devices this process sees: a run resumed on fewer GPUs restores the first
    ones, a run resumed on CPU (or moved from CPU to a GPU) keeps the CUDA generators as they are. The shuffling
    generator lives on the device of the training data: a run resumed on another device type cannot continue the
    same batch order, and says so."""
    torch.set_rng_state(state["torch"])
    try:
        generator.set_state(state["shuffle"])
    except RuntimeError as err:
        raise ValueError(f"the checkpoint's batch-shuffling state does not fit this run's {generator.device} "
                         f"generator ({err}); a run cannot move between CPU and CUDA mid-way: resume it on the "
                         f"device type it started on, or delete the checkpoint to start again") from None
    if "cuda" in state and torch.cuda.is_available():
        for index, cuda_state in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)


def read_checkpoint(path: Path) -> dict:
    """A checkpoint with every tensor on the CPU.

    ``load_state_dict`` copies the model's and the optimiser's tensors onto the device of the parameters they belong
    to; the RNG states must stay CPU byte tensors (``torch.set_rng_state``, ``Generator.set_state`` and
    ``torch.cuda.set_rng_state`` accept nothing else), so nothing is mapped to the training device here."""
    return torch.load(path, map_location="cpu", weights_only=False)


def _save_atomically(obj, path: Path) -> None:
    write_atomically(path, lambda out: torch.save(obj, out))


def _groups_summary(net: Net, monitor: Callable[[torch.Tensor], int] | None) -> list[list[int]]:
    """[kept, total] per group layer, by ``monitor`` (statistic -> groups kept); empty for a dense net."""
    if monitor is None:
        return []
    with torch.no_grad():
        return [[int(monitor(layer.group_statistic())), layer.n_groups] for layer in net.group_layers()]


def _weights_summary(net: Net) -> list[list[int]]:
    """[kept, total] weights per layer that prunes single weights (``weight_mask()``); empty otherwise."""
    with torch.no_grad():
        masks = [m.weight_mask() for m in net.prunable_layers() if hasattr(m, "weight_mask")]
        return [[int(mask.sum()), mask.numel()] for mask in masks]


def _kl_summary(net: Net) -> list[list[float]]:
    """[KL, clamp floor] (nats) per group layer; the floor is the part of the layer's KL that its variance clamp
    forbids removing: each weight held at ``clip_var`` = c keeps ½(c − 1 − log c) over its best variance (σ² = 1)."""
    rows = []
    with torch.no_grad():
        for layer in net.group_layers():
            floor = 0.0
            if layer.clip_var is not None and layer.clip_mode == "parameter" and layer.clip_var < 1.0:
                bound = math.log(layer.clip_var)
                held = int((layer.weight_logvar >= bound - 1e-6).sum())
                floor = held * 0.5 * (layer.clip_var - 1.0 - bound)
            rows.append([float(layer.kl_divergence()), floor])
    return rows


def save_snapshot(out: Path, history: list[dict], model_state: dict) -> Path:
    """A finished-run copy of the network after ``len(history)`` epochs in ``<out>/epoch<N>/`` (``run.json``,
    ``history.json``, ``model.pt``), which ``compress`` reads like any run: screens at a constant learning rate
    compare variants at equal epochs from one longer run."""
    folder = out / f"epoch{len(history)}"
    folder.mkdir(parents=True, exist_ok=True)
    if (out / RUN_FILE).exists():
        write_json(json.loads((out / RUN_FILE).read_text()), folder / RUN_FILE)
    write_json(history, folder / HISTORY_FILE)
    _save_atomically(model_state, folder / MODEL_FILE)
    return folder


def train(net: Net, data: DataSplits, config: TrainConfig, out: Path, device: torch.device,
          on_epoch_end: Callable[[dict], None] | None = None,
          groups_kept: Callable[[torch.Tensor], int] | None = None,
          time_limit_s: float | None = None,
          after_step: Callable[[int], None] | None = None,
          snapshot_epochs: Collection[int] = ()) -> list[dict]:
    """Train ``net`` on ``data`` per ``config``; checkpoints in ``out``. Returns the per-epoch history.

    ``on_epoch_end(record)`` is called after each epoch (the CLI logs to MLflow through it); ``groups_kept`` maps a
    layer's group statistic to the number of groups a pruning rule would keep, for the progress line. With
    ``time_limit_s``, training stops with ``TimeLimitReached`` after the first epoch that ends past the limit (a
    cluster job's time limit): the checkpoint is written, and the same call resumes later. ``after_step(global_step)``
    runs after every optimiser step (a method's own work: re-zeroing pruned weights, updating masks); whatever state
    it keeps must live in the network's buffers to be checkpointed. After each epoch in ``snapshot_epochs`` the
    network is also kept in ``<out>/epoch<N>/`` (``save_snapshot``).
    """
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    net.to(device)
    optimizer = make_optimizer(net, config, device)
    generator = torch.Generator(device=data.train_x.device)
    generator.manual_seed(config.seed)
    torch.manual_seed(config.seed)
    history: list[dict] = []
    start_epoch = 0

    checkpoint_path = out / CHECKPOINT
    if checkpoint_path.exists():
        state = read_checkpoint(checkpoint_path)
        if TrainConfig.saved(state["config"]) != dataclasses.asdict(config):
            raise ValueError(f"{checkpoint_path} was written with a different training config "
                             f"({state['config']}) than this run ({dataclasses.asdict(config)}); "
                             f"use another --out or delete the checkpoint")
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        _set_rng_state(state["rng"], generator)
        history = state["history"]
        start_epoch = state["epoch"] + 1
        log.info("resuming from %s after epoch %d/%d", checkpoint_path, start_epoch, config.epochs)

    n_train = len(data.train_y)
    kl_images = kl_divisor(config.kl_images, n_train, len(data.val_y))  # N of KL / N
    group_layers = net.group_layers()
    check_every = 1 if device.type == "cpu" else DIVERGENCE_CHECK_EVERY
    steps_per_epoch = math.ceil(n_train / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    for epoch in range(start_epoch, config.epochs):
        tic = time.perf_counter()
        net.train()
        # Running sums stay on the device: reading them every step would stall a GPU on each step.
        sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, cross-entropy, wrong, non-finite steps
        beta = lr = 0.0
        for step, (xb, yb) in enumerate(minibatches(data.train_x, data.train_y, config.batch_size,
                                                    shuffle=True, generator=generator)):
            global_step = epoch * steps_per_epoch + step
            factor = lr_factor(config.lr_schedule, global_step / total_steps, global_step, config.lr_gamma,
                               config.lr_power)
            lr = config.lr * factor
            for group in optimizer.param_groups:
                group["lr"] = group.get("base_lr", config.lr) * factor
            beta = kl_weight(config.kl_warmup_epochs, epoch + step / steps_per_epoch, config.kl_warmup_start_epochs)
            if config.augment:
                xb = augment_cifar(xb, generator=generator)
            logits = net(xb)
            ce = F.cross_entropy(logits, yb)
            kl = net.kl_divergence()
            loss = ce + beta * kl / kl_images
            finite = torch.isfinite(loss)
            # Free on CPU; on a GPU it is read every DIVERGENCE_CHECK_EVERY steps and once more at the epoch's end.
            if (step % check_every == 0 or step == steps_per_epoch - 1) and not finite:
                raise TrainingDiverged(
                    f"loss is {loss.item()} at epoch {epoch + 1} step {step + 1} (cross-entropy {ce.item()}, "
                    f"KL {kl.item()}, beta {beta:.3f}, lr {lr:.2e}); the last good checkpoint is {checkpoint_path}. "
                    f"Try a lower lr, a longer kl_warmup_epochs or a clip_var on the diverging layers.")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for layer in group_layers:
                layer.clip_variances()
            if after_step is not None:
                after_step(global_step)
            with torch.no_grad():
                batch = len(yb)
                sums += torch.stack([loss.detach().double() * batch, ce.detach().double() * batch,
                                     (logits.argmax(1) != yb).sum().double(), (~finite).double()])
        loss_sum, ce_sum, wrong, non_finite = sums.tolist()
        if non_finite:
            raise TrainingDiverged(f"loss was NaN or infinite in {int(non_finite)} step(s) of epoch {epoch + 1}; "
                                   f"the last good checkpoint is {checkpoint_path}. Try a lower lr, a longer "
                                   f"kl_warmup_epochs or a clip_var on the diverging layers.")

        record = {
            "epoch": epoch + 1,
            "loss": loss_sum / n_train,
            "cross_entropy": ce_sum / n_train,
            "kl": kl.item(),
            "kl_weight": beta,
            "lr": lr,
            "train_error_pct": 100.0 * wrong / n_train,
            "test_error_pct": error_rate(net, data.test_x, data.test_y),
            "groups_kept": _groups_summary(net, groups_kept),
            "weights_kept": _weights_summary(net),
            "kl_layers": _kl_summary(net),
            "seconds": time.perf_counter() - tic,
        }
        history.append(record)
        _save_atomically({"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                          "rng": _rng_state(generator), "history": history, "epoch": epoch,
                          "config": dataclasses.asdict(config)}, checkpoint_path)
        if epoch + 1 in snapshot_epochs:
            save_snapshot(out, history, net.state_dict())
        log.info(progress_line(record, config.epochs))
        if on_epoch_end is not None:
            on_epoch_end(record)
        elapsed = time.perf_counter() - started
        if time_limit_s is not None and elapsed > time_limit_s and epoch + 1 < config.epochs:
            raise TimeLimitReached(f"time limit of {time_limit_s:.0f} s reached after epoch {epoch + 1}/"
                                   f"{config.epochs} ({elapsed:.0f} s); {checkpoint_path} holds it: rerun the same "
                                   f"command to resume")
    return history


def progress_line(record: dict, epochs: int) -> str:
    groups = " ".join(f"{kept}/{total}" for kept, total in record["groups_kept"])
    weights = " ".join(f"{kept}/{total}" for kept, total in record.get("weights_kept", []))
    return (f"epoch {record['epoch']:>4d}/{epochs} loss {record['loss']:.4f} kl {record['kl']:.4g} "
            f"beta {record['kl_weight']:.2f} lr {record['lr']:.2e} train_err {record['train_error_pct']:.2f}% "
            f"test_err {record['test_error_pct']:.2f}%" + (f" groups {groups}" if groups else "")
            + (f" weights {weights}" if weights else "") + f" {record['seconds']:.1f}s")

