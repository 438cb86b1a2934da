"""``compress_cell``: prune, reduce precision and account a trained cell, and write what it compressed to."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..atomic import write_atomically, write_json
from ..compress import bitstream, pipeline
from ..compress.evaluation import PrefixReusingErrorRate
from ..compress.thresholds import DEFAULT_FRONTIER_BUDGETS, small_split_warning
from ..data import DEFAULT_PREPROCESS
from ..deploy import slim
from ..errors import UsageError
from ..methods import get_method
from ..runs import (ARTEFACT_FILE, COLLAPSE_MARGIN_PCT, COMPRESSED_FILE, METRICS_FILE, MLFLOW_MODEL_DIR,
                    POSTERIOR_FILE, SLIM_FILE, compression_error_jump, load_trained, trained_network)
from ..train import error_rate
from .device import job_device
from .options import Tracking, open_cell_run

log = logging.getLogger("bcrepro")

# What `compress_cell` writes beside metrics.json, each logged to MLflow under "compressed"
OUTPUT_FILES = (COMPRESSED_FILE, ARTEFACT_FILE, SLIM_FILE, POSTERIOR_FILE)


def reference_validation_error(reference: Path, run: dict, splits, device: torch.device) -> float:
    """The dense reference's error (percent) on this run's validation split: the threshold budget is stated
    against it. The reference must have been trained on the same data with the same hold-out; it sees those images
    with its own pixel scaling (``preprocess``), which may differ from this run's."""
    ref_run, ref_splits, ref_net = load_trained(reference, device)
    if ref_run["dataset"] != run["dataset"] or len(ref_splits.val_y) != len(splits.val_y) or not torch.equal(
            ref_splits.val_y, splits.val_y):
        raise UsageError(f"--reference-run {reference} was trained on {ref_run['dataset']} with "
                         f"{len(ref_splits.val_y)} validation images, this run on {run['dataset']} with "
                         f"{len(splits.val_y)}: the reference's validation error would be measured on other images")
    error = error_rate(ref_net, ref_splits.val_x, ref_splits.val_y)
    log.info("reference %s (%s): %.2f %% validation error", reference, ref_run["method"], error)
    return error


def _write_artefact(path: Path, result, deployable) -> int:
    """The bit-packed file in Deep Compression's format (``bcrepro.compress.bitstream``); returns its size."""
    artefact = bitstream.encode_layers(result.encoded, [(m.out_mask.cpu().numpy(), m.in_mask.cpu().numpy())
                                                        for m in result.masks],
                                       biases=[layer.bias.detach().cpu().numpy()
                                               for layer in deployable.prunable_layers()])
    write_atomically(path, lambda handle: handle.write(artefact))
    return len(artefact)


def _write_slim(path: Path, deployable, masks):
    """The physically smaller network, or None (with a warning) where a module cannot be slimmed."""
    try:
        slimmed = slim.slim_net(deployable, masks)
    except ValueError as err:  # a module slim_net cannot slim (it names it); the other outputs stand
        log.warning("no slimmed export for this run: %s", err)
        return None
    slim.save_slim(slimmed, path)
    return slimmed


def _rate(value) -> str:
    return "inf" if value is None else f"{value:.1f}x"


def _log_summary(out: Path, metrics: dict, reduces_precision: bool) -> None:
    if metrics["collapsed"]:
        log.warning("COLLAPSED: compression took the test error from %.2f%% to %.2f%% (+%.2f points, more than the "
                    "%.1f allowed): the rates below describe a broken network (collapsed: true in %s)",
                    metrics["error_trained_pct"], metrics["error_trained_pct"] + metrics["error_jump_pct"],
                    metrics["error_jump_pct"],
                    COLLAPSE_MARGIN_PCT, METRICS_FILE)
    if metrics["empty_layers"]:
        log.warning("layers %s keep no weight: the network's output no longer depends on its input, every rate is "
                    "infinite (null in %s) and the error is chance level", metrics["empty_layers"], METRICS_FILE)
    quantized = metrics["error_quantized_pct"]
    log.info("wrote %s: error %.2f%% -> pruned %.2f%% -> quantized %s; architecture %s; bits %s; compression %s after "
             "pruning, %s after precision reduction, %s maximum (computed), %s on disk (%s, %d bytes)",
             out / METRICS_FILE, metrics["error_pct"], metrics["error_pruned_pct"],
             "n/a" if quantized is None else f"{quantized:.2f}%", "-".join(map(str, metrics["architecture"])),
             metrics["bits"], _rate(metrics["compression_pruning"]),
             _rate(metrics["compression_precision"]) if reduces_precision else "n/a",
             _rate(metrics["compression_max"]), _rate(metrics["compression_on_disk"]), ARTEFACT_FILE,
             metrics["artefact_bytes"])


def compress_cell(run_dir, *, thresholds: dict | None = None, reference_run: str | None = None,
                  device: str = "auto", gpu_slots: str | None = None, jobs_per_gpu: int = 1,
                  tracking: Tracking = Tracking()) -> dict:
    """Compress the trained run in ``run_dir`` with ``thresholds`` (the run's own rule when None; with
    ``reference_run``, the budget is stated against that dense run's validation error). Writes ``metrics.json``,
    ``compressed.npz``, ``compressed.bin``, ``slim.pt`` and, for group-sparse methods, ``posterior.npz``; returns
    the metrics."""
    out = Path(run_dir)
    torch_device = job_device(device, gpu_slots, jobs_per_gpu)
    run, splits, net = load_trained(out, torch_device)
    log.info("compressing %s on %s (%s)", out, splits.name, splits.preprocessing)
    # load_trained has run the method's finalize (SWS's merge and snap), so the pipeline's error_pct is the snapped
    # network's: the collapse flag measures the jump from the network as trained
    error_trained = (error_rate(trained_network(out, run, splits, torch_device, finalize=False), splits.test_x,
                                splits.test_y) if get_method(run["method"]).finalize is not None else None)
    if thresholds is None:
        thresholds = run["params"].get("thresholds")
    if reference_run is not None:
        thresholds = {**(thresholds or {}), "reference_error_pct": reference_validation_error(
            Path(reference_run), run, splits, torch_device)}
    # the threshold search and curve evaluate hundreds of networks differing in one layer: reuse what they share
    validation = PrefixReusingErrorRate(splits.val_x, splits.val_y) if len(splits.val_y) else None
    warning = small_split_warning(thresholds, len(splits.val_y)) if net.group_layers() else None
    if warning:
        log.warning("%s: %s", out, warning)
    result = pipeline.compress(net, thresholds, validation,
                               lambda module: error_rate(module, splits.test_x, splits.test_y),
                               frontier_budgets=(thresholds or {}).get("frontier", DEFAULT_FRONTIER_BUDGETS))
    precision = result.precision
    deployable = result.quantized_net if result.quantized_net is not None else result.pruned_net
    compressed_bytes = pipeline.save_compressed(
        out / COMPRESSED_FILE, deployable, result.masks,
        None if precision is None else precision.rounded_weights, None if precision is None else precision.bits)
    artefact_bytes = _write_artefact(out / ARTEFACT_FILE, result, deployable)
    slimmed = _write_slim(out / SLIM_FILE, deployable, result.masks)
    if net.group_layers():
        pipeline.save_posterior(out / POSTERIOR_FILE, net, result.thresholds, result.masks)
    with open_cell_run(tracking, run, out, "compress") as tracker:
        metrics = {
            "arch": run["arch"], "method": run["method"], "seed": run["seed"], "dataset": run["dataset"],
            "preprocess": run["params"].get("preprocess", DEFAULT_PREPROCESS),  # the table notes one not the default
            **result.metrics,
            "compressed_bytes": compressed_bytes,
            "artefact_bytes": artefact_bytes,
            "compression_on_disk": 4 * result.metrics["total_weights"] / artefact_bytes,  # float32 original
            "mlflow_run_id": tracker.run_id or run.get("mlflow_run_id"),
            "train_seconds": run.get("train_seconds"),
        }
        metrics["error_trained_pct"] = metrics["error_pct"] if error_trained is None else error_trained
        metrics["error_jump_pct"] = compression_error_jump(metrics)
        metrics["collapsed"] = metrics["error_jump_pct"] > COLLAPSE_MARGIN_PCT
        write_json(metrics, out / METRICS_FILE)
        tracker.log_metrics({key: value for key, value in metrics.items() if isinstance(value, (int, float))
                             and not isinstance(value, bool) and key != "seed"})
        tracker.log_params({"thresholds.rule": metrics["thresholds"].get("rule"),
                            "architecture": "-".join(map(str, metrics["architecture"])),
                            "bits": "-".join(map(str, metrics["bits"] or [])) or "none"})
        tracker.log_artifact(out / METRICS_FILE)
        for name in OUTPUT_FILES:
            if (out / name).exists():
                tracker.log_artifact(out / name, "compressed")
        if slimmed is not None:  # loadable with mlflow.pytorch.load_model("runs:/<id>/slim_model")
            tracker.log_pytorch_model(slimmed.cpu().eval(), out / MLFLOW_MODEL_DIR, MLFLOW_MODEL_DIR)
    _log_summary(out, metrics, precision is not None)
    return metrics
