"""A run directory: the names of the files one (arch, method, seed) cell keeps there, and loading a trained run.

``bcrepro train`` writes ``run.json`` (the settings), ``checkpoint.pt`` while it trains, then ``model.pt`` and
``history.json``; ``bcrepro compress`` adds ``metrics.json``, ``compressed.npz``, ``compressed.bin``, ``slim.pt`` and
``posterior.npz`` (and the ``slim_model`` folder with MLflow on); ``bcrepro speedup`` adds ``speed.json``
(docs/workflow.md). The CLI, the table and the figures take the names from here; the MLflow bookkeeping beside them
(``tracking.json``, ``tracking.jsonl``) is ``bcrepro.tracking``'s own.

``load_trained`` rebuilds a finished run's network from ``run.json`` and ``model.pt`` on the data set it was trained
on; ``build_net`` and ``init_from_dense`` are the steps it shares with ``bcrepro train``.
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path

import torch

from . import data, models
from .errors import UsageError
from .methods import get_method

RUN_FILE = "run.json"
CHECKPOINT = "checkpoint.pt"  # what ``train.train`` saves after each epoch and resumes from
MODEL_FILE = "model.pt"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"
COMPRESSED_FILE = "compressed.npz"
ARTEFACT_FILE = "compressed.bin"  # Deep Compression's format, bit-packed (bcrepro.compress.bitstream)
SLIM_FILE = "slim.pt"
POSTERIOR_FILE = "posterior.npz"
MLFLOW_MODEL_DIR = "slim_model"  # the slimmed network as an MLflow PyTorch model (logged only with MLflow on)
SPEED_FILE = "speed.json"
# A cell that starts from a dense reference of its own (the workflow's `references`) has it trained in this sub-folder
# of its run folder, a run directory of method dense like the shared reference's.
REFERENCE_DIR = "reference"
# run.json's record of the finished run an extension continues (``bcrepro extend``): its folder and its epochs.
EXTENDED_FROM = "extended_from"

# The validation hold-out (and synthetic data) do not depend on the training seed: every run sees the same split.
DATA_SEED = 0


def compressed_cells(runs_dir) -> list[Path]:
    """Every ``{arch}/{method}/seed{n}`` folder under ``runs_dir`` that holds a compressed cell (its metrics.json),
    sorted; the table, the figures and the record all read the runs in this order."""
    return sorted(path.parent for path in Path(runs_dir).glob(f"*/*/seed*/{METRICS_FILE}"))


def final_error_pct(metrics: dict) -> float | None:
    """The test error after the method's last step, from a metrics.json: rounded where the method reduces precision
    (``error_quantized_pct``), else pruned (``error_pruned_pct``). The paper reports this one."""
    quantized = metrics["error_quantized_pct"]
    return quantized if quantized is not None else metrics["error_pruned_pct"]


# A compressed network whose test error exceeds its trained network's by more than this many points is flagged (its
# log, metrics.json's ``collapsed``, the table): compression broke it, whatever its rates say.
COLLAPSE_MARGIN_PCT = 1.0


def compression_error_jump(metrics: dict) -> float:
    """Points of test error the compression added: the final error (``final_error_pct``) minus the trained net's,
    ``error_trained_pct``, measured before the method's own post-processing (SWS's merge and snap, after which
    ``error_pct`` is measured); a metrics.json written before that key existed falls back to ``error_pct``."""
    trained = metrics.get("error_trained_pct")
    return final_error_pct(metrics) - (metrics["error_pct"] if trained is None else trained)


def build_net(arch: str, method_name: str, params: dict, splits: data.DataSplits) -> models.Net:
    """The network of ``arch`` with ``method_name``'s layers for ``params`` (untrained), checked against the data
    set's input shape."""
    method = get_method(method_name)
    options = {"dropout": True} if params.get("dropout") else {}  # the dense VGG recipe's dropout (models.vgg16)
    if options and "dropout" not in inspect.signature(models.ARCHITECTURES[arch]).parameters:
        raise UsageError(f"hyper-parameter 'dropout' of {method_name} on {arch}: {arch} has no dropout layers "
                         "(only the dense VGG recipe has); leave it out or set it false")
    net = models.build(arch, method.layer_factory(arch, params), num_classes=splits.num_classes, **options)
    if method.attach is not None:
        method.attach(net, params)
    if tuple(net.input_shape) != tuple(splits.input_shape):
        raise UsageError(f"architecture {arch} expects inputs of shape {net.input_shape} but dataset "
                         f"{splits.name} has {splits.input_shape}")
    return net


def load_dataset_for_run(run: dict, device: torch.device) -> data.DataSplits:
    """The data set of a run's settings (``run.json``), with the validation hold-out every run shares and the run's
    pixel scaling (``preprocess``; a run.json written before the setting existed has the default). Training,
    compression, the speed-up timing and every evaluation of the run load its data here, so all see the same pixels."""
    return data.load_dataset(run["dataset"], data_root=run["data_root"], download=run["download"], device=device,
                             validation_size=run["params"]["validation_size"], seed=DATA_SEED,
                             synthetic_shape=data.synthetic_shape_for_arch(run["arch"]),
                             preprocess=run["params"].get("preprocess", data.DEFAULT_PREPROCESS))


def init_from_dense(net: models.Net, path: Path) -> None:
    """Start from a trained dense reference: its weights and biases become the means of every layer."""
    if not path.exists():
        raise UsageError(f"--init {path} does not exist (expected a dense run's {MODEL_FILE})")
    state = torch.load(path, map_location="cpu", weights_only=True)
    dense = None
    # The dense VGG recipe has dropout modules, which shift the positions (and names) of the layers after them.
    for dropout in (False, True):
        candidate = models.build(net.arch, num_classes=net.num_classes, **({"dropout": True} if dropout else {}))
        try:
            candidate.load_state_dict(state)
        except (RuntimeError, TypeError) as err:
            error = err
            continue
        dense = candidate
        break
    if dense is None:
        raise UsageError(f"--init {path} is not a dense {net.arch} state dict: {error}")
    with torch.no_grad():
        for target, source in zip(net.prunable_layers(), dense.prunable_layers()):
            (target.weight_mu if hasattr(target, "weight_mu") else target.weight).copy_(source.weight)
            (target.bias_mu if hasattr(target, "bias_mu") else target.bias).copy_(source.bias)
        # batch norm, in order (names differ where only one of the two networks has dropout)
        norms = [[m for m in n.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)] for n in (net, dense)]
        for target, source in zip(*norms):
            target.load_state_dict(source.state_dict())


def load_trained(out: Path, device: torch.device) -> tuple[dict, data.DataSplits, models.Net]:
    """A finished run directory's settings, data and trained network (eval mode, on ``device``; after its method's
    ``finalize``, as ``trained_network``)."""
    run_path, model_path = out / RUN_FILE, out / MODEL_FILE
    if not run_path.exists() or not model_path.exists():
        raise UsageError(f"{out} is not a finished training run (needs {RUN_FILE} and {MODEL_FILE}); "
                         f"run `bcrepro train ... --out {out}` first")
    run = json.loads(run_path.read_text())
    splits = load_dataset_for_run(run, device)
    return run, splits, trained_network(out, run, splits, device)


def trained_network(out: Path, run: dict, splits: data.DataSplits, device: torch.device,
                    finalize: bool = True) -> models.Net:
    """The network of a run directory (eval mode, on ``device``) after its method's ``finalize`` (SWS's merge and
    snap), or as trained with ``finalize=False``."""
    net = build_net(run["arch"], run["method"], run["params"], splits)
    net.load_state_dict(torch.load(out / MODEL_FILE, map_location="cpu", weights_only=True))
    method = get_method(run["method"])
    if finalize and method.finalize is not None:
        method.finalize(net, run["params"])
    return net.to(device).eval()
