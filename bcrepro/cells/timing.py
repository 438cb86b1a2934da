"""``speedup_cell``: time the original, masked and slimmed networks of a compressed cell."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from ..atomic import write_json
from ..compress.masks import propagate_masks
from ..deploy import cpu_memory, speed
from ..errors import UsageError
from ..methods import get_method
from ..runs import METRICS_FILE, SPEED_FILE, load_trained
from .device import resolve_device
from .options import Tracking, open_cell_run

log = logging.getLogger("bcrepro")

DEFAULT_BATCH_SIZES = (1, 64, 1024, 8192)


def speedup_cell(run_dir, *, device: str = "cpu", batch_sizes=DEFAULT_BATCH_SIZES, repeats: int = 100,
                 warmup: int = 10, threads: int = 1, stock_pooling: bool = False,
                 memory_format: str = "contiguous", compiler: str = "none", system_allocator: bool = False,
                 tracking: Tracking = Tracking()) -> list[dict]:
    """Time every variant of the compressed run in ``run_dir`` (``bcrepro.deploy.speed``) and write
    ``speed.json``; returns its records. The options are ``bcrepro speedup``'s (``--help`` says what each does)."""
    out = Path(run_dir)
    metrics_path = out / METRICS_FILE
    if not metrics_path.exists():
        raise UsageError(f"{out} has no {METRICS_FILE}; run `bcrepro compress --run {out}` first")
    torch_device = resolve_device(device)
    run, splits, net = load_trained(out, torch.device("cpu"))
    thresholds = json.loads(metrics_path.read_text())["thresholds"].get("thresholds")
    masks = propagate_masks(net, thresholds if net.group_layers() else None)
    single_weights = not get_method(run["method"]).group_sparse and run["method"] != "dense"
    stock_pooling = stock_pooling or speed.stock_pooling_for(torch_device, compiler)
    if torch_device.type == "cpu" and not system_allocator and not cpu_memory.keep_freed_memory():
        log.warning("could not keep freed memory in the process (the C library is not glibc, or mallopt refused): "
                    "timing with the system allocator as it is (allocator: system)")
    modules = speed.variants(net, masks, single_weights, stock_pooling=stock_pooling)
    records = speed.measure(modules, splits.input_shape, list(batch_sizes), torch_device, repeats=repeats,
                            warmup=warmup, threads=threads, memory_format=memory_format, compiler=compiler)
    write_json(records, out / SPEED_FILE)
    gains = speed.speedups(records)
    with open_cell_run(tracking, run, out, "speedup") as tracker:
        tracker.log_metrics({f"speedup.{g['variant']}.{g['device']}.batch{g['batch']}": g["speedup"] for g in gains
                             if g["variant"] != "original"})
        tracker.log_metrics({f"flops_ratio.{g['variant']}": g["flops_ratio"] for g in gains
                             if g["variant"] != "original" and g["flops_ratio"] is not None})
        tracker.log_artifact(out / SPEED_FILE)
    for g in gains:
        if g["variant"] == "slim":
            fewer = "n/a" if g["flops_ratio"] is None else f"{g['flops_ratio']:.1f}x"
            log.info("slim vs original on %s at batch %d: %.2fx (%s fewer multiply-adds)", g["device"], g["batch"],
                     g["speedup"], fewer)
    return records
