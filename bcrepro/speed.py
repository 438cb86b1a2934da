"""Inference time of a compressed network against the original (paper §5 "fast prediction"; DESIGN.md speed.json).

Variants, all in eval mode without gradients and with the same input:

- ``original``: the uncompressed network with the test-time weights (all groups kept);
- ``masked``: the same shapes with the pruned weights set to zero (what pruning without export gives: no speed-up);
- ``slim``: the slimmed export (``bcrepro.slim``), physically smaller layers.

Variants are timed round-robin within each repeat, so machine noise hits them alike; each record holds the median and
the inter-quartile range in milliseconds. On CPU the intra-op thread count is fixed for the measurement (and restored
after); on CUDA every forward pass is bracketed by synchronisation.

Command: ``bcrepro speedup --run results/runs/lenet5/bc-ghs/seed0 --batch-sizes 1 64 1024``.
"""
from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from typing import Mapping, Sequence

import torch
from torch import nn

VARIANTS = ("original", "masked", "slim", "csr")


@contextmanager
def cpu_threads(threads: int | None):
    """Fix torch's intra-op thread count inside the block (None leaves it)."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _quartiles(samples: Sequence[float]) -> tuple[float, float, float]:
    if len(samples) < 2:
        return samples[0], samples[0], samples[0]
    q1, q2, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return q1, q2, q3


@torch.no_grad()
def time_forward(modules: Mapping[str, nn.Module], x: torch.Tensor, repeats: int, warmup: int) -> dict[str, list[float]]:
    """Seconds of ``repeats`` forward passes of each module on ``x``, interleaved round-robin, after ``warmup`` passes."""
    cuda = x.device.type == "cuda"
    for module in modules.values():
        module.eval()
        for _ in range(warmup):
            module(x)
    if cuda:
        torch.cuda.synchronize(x.device)
    times: dict[str, list[float]] = {name: [] for name in modules}
    for _ in range(repeats):
        for name, module in modules.items():
            tic = time.perf_counter()
            module(x)
            if cuda:
                torch.cuda.synchronize(x.device)
            times[name].append(time.perf_counter() - tic)
    return times


def measure(modules: Mapping[str, nn.Module], input_shape: Sequence[int], batch_sizes: Sequence[int],
            device: torch.device, repeats: int = 100, warmup: int = 10, threads: int | None = 1,
            seed: int = 0) -> list[dict]:
    """speed.json records ``{variant, device, batch, median_ms, iqr_ms, repeats, threads}`` for each module and batch.

    ``modules`` maps a variant name (one of ``VARIANTS``) to a network taking inputs of ``input_shape`` (no batch axis).
    """
    unknown = sorted(set(modules) - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown speed variant(s) {unknown}; expected names from {VARIANTS}")
    if repeats < 1 or warmup < 0 or any(b < 1 for b in batch_sizes):
        raise ValueError(f"repeats must be >= 1, warmup >= 0 and batch sizes >= 1, got {repeats}, {warmup}, "
                         f"{list(batch_sizes)}")
    placed = {name: module.to(device) for name, module in modules.items()}
    generator = torch.Generator().manual_seed(seed)
    records = []
    with cpu_threads(threads if device.type == "cpu" else None):
        for batch in batch_sizes:
            x = torch.randn(batch, *input_shape, generator=generator).to(device)
            for name, samples in time_forward(placed, x, repeats, warmup).items():
                q1, median, q3 = _quartiles(samples)
                records.append({"variant": name, "device": device.type, "batch": int(batch),
                                "median_ms": 1e3 * median, "iqr_ms": 1e3 * (q3 - q1), "repeats": repeats,
                                "threads": threads if device.type == "cpu" else None})
    return records


def speedups(records: Sequence[Mapping], over: str = "original") -> list[dict]:
    """Speed-up of every variant over ``over`` at the same device and batch: median time ratio (>1 = faster)."""
    base = {(r["device"], r["batch"]): r["median_ms"] for r in records if r["variant"] == over}
    return [{"variant": r["variant"], "device": r["device"], "batch": r["batch"],
             "speedup": base[(r["device"], r["batch"])] / r["median_ms"]}
            for r in records if (r["device"], r["batch"]) in base and r["median_ms"] > 0]
