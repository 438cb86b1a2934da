"""One prepared check for a machine with a GPU: training speed of BC-GHS VGG-16 and the speed-ups of the
paper's learned LeNet-5 and VGG architectures, slimmed, against the original networks.

    PYTHONPATH=. python scripts/gpu_check.py [--device cuda] [--steps 300] [--out gpu_check.json]

(``scripts/gpu_check.sh`` runs exactly that.) It needs only torch (2.11 or later) and numpy, imports neither MLflow
nor Snakemake, downloads nothing and reads no data set: training runs on synthetic CIFAR-shaped data held on the
device, so its figures are speeds, not errors. Sized to finish in well under 6 minutes on one data-centre GPU.

1. Training: a dense VGG-16 and a BC-GHS VGG-16 (the registry's VGG settings: augmentation on the device, batch 128)
   train ``--steps`` steps each through the library's training loop; printed: seconds per epoch of 50,000 images
   (CIFAR-10's size, extrapolated from the measured steps), images per second, and BC over dense.
2. Speed-ups: the architectures of the paper's Table 2 (LeNet-5 BC-GHS 5-10-76-16, VGG BC-GHS
   51-62-125-128-228-129-38-13-9-6-5-6-6-6-20; kept groups drawn at random, seed 0) are cut out of a freshly built
   net and slimmed; ``bcrepro.deploy.speed.measure`` times original, masked and slim at batch 1, 64, 1024 and 8192 (eval
   mode, no gradients, warm-up, CUDA synchronised). Printed: median milliseconds, the slim speed-up per batch and
   the ratio of multiply-adds (the theoretical speed-up). ``--memory-format channels_last`` times them NHWC;
   ``--compile torchscript`` times them as frozen TorchScript graphs.

Everything measured is also written to ``--out`` as JSON.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

from bcrepro import data, models
from bcrepro.compress.layer_view import is_conv
from bcrepro.compress.masks import LayerMask, architecture, expansion_factor, propagate_masks
from bcrepro.deploy import speed
from bcrepro.methods import get_method
from bcrepro.train import TrainConfig, train

CIFAR_TRAIN = 50_000
# Table 2 of the paper (paper Table 1): groups kept per prunable layer by BC-GHS.
PAPER_ARCHITECTURES = {
    "lenet5": [5, 10, 76, 16],
    "vgg16": [51, 62, 125, 128, 228, 129, 38, 13, 9, 6, 5, 6, 6, 6, 20],
}


def training_speed(method: str, steps: int, batch: int, device: torch.device, out: Path) -> dict:
    """Train two epochs of ``steps`` steps of ``method`` VGG-16 on synthetic CIFAR-shaped data through the library's
    loop; the time of a step is the median gap between consecutive optimiser steps of the second epoch (the device
    synchronised at each), so neither start-up nor the end-of-epoch test pass is counted."""
    registered = get_method(method)
    params = registered.params_for("vgg16")
    splits = data.load_dataset("synthetic", device=device, synthetic_shape=(3, 32, 32), synthetic_train=steps * batch,
                               synthetic_test=256)
    torch.manual_seed(0)
    net = models.build("vgg16", registered.layer_factory("vgg16", params)).to(device)
    config = TrainConfig.from_params(dict(params, epochs=2, batch_size=batch, kl_warmup_epochs=1), seed=0)
    stamps: list[float] = []

    def after_step(global_step: int) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        stamps.append(time.perf_counter())

    shutil.rmtree(out / method, ignore_errors=True)  # a rerun in the same workdir must train again, not resume
    history = train(net, splits, config, out / method, device, after_step=after_step)
    second_epoch = stamps[steps:]
    per_step = statistics.median(b - a for a, b in zip(second_epoch, second_epoch[1:]))
    return {"method": method, "steps_timed": len(second_epoch) - 1, "batch": batch, "seconds_per_step": per_step,
            "images_per_second": batch / per_step, "seconds_per_cifar_epoch": per_step * math.ceil(CIFAR_TRAIN / batch),
            "final_loss": history[-1]["loss"]}


@torch.no_grad()
def paper_masks(net: models.Net, kept: list[int], seed: int = 0) -> list[LayerMask]:
    """Masks keeping ``kept[i]`` random groups of prunable layer i (GNJ layers: a pruned group gets z_mu = 0)."""
    generator = torch.Generator().manual_seed(seed)
    layers = net.prunable_layers()
    for i, (layer, count) in enumerate(zip(layers, kept)):
        layer.z_logvar.fill_(-9.0)
        layer.z_mu.fill_(1.0)
        if i > 0 and is_conv(layers[i - 1]) and not is_conv(layer):
            # the first FC layer's inputs: choose among the positions of the channels the last conv keeps
            factor = expansion_factor(layers[i - 1], layer)
            alive = (layers[i - 1].z_mu != 0).repeat_interleave(factor).nonzero().flatten()
            keep = alive[torch.randperm(alive.numel(), generator=generator)[:count]]
        else:
            keep = torch.randperm(layer.n_groups, generator=generator)[:count]
        pruned = torch.ones(layer.n_groups, dtype=torch.bool)
        pruned[keep] = False
        layer.z_mu[pruned] = 0.0
    return propagate_masks(net, [0.0] * len(layers))


def speedups_of_paper_architecture(arch: str, device: torch.device, batch_sizes: list[int], repeats: int,
                                   threads: int, memory_format: str = "contiguous", compiler: str = "none") -> dict:
    registered = get_method("bc-gnj")
    torch.manual_seed(0)
    net = models.build(arch, registered.layer_factory(arch, registered.params_for(arch))).eval()
    masks = paper_masks(net, PAPER_ARCHITECTURES[arch])
    modules = speed.variants(net, masks, stock_pooling=speed.stock_pooling_for(device, compiler))
    records = speed.measure(modules, net.input_shape, batch_sizes, device, repeats=repeats, warmup=10,
                            threads=threads, memory_format=memory_format, compiler=compiler)
    return {"arch": arch, "architecture": architecture(net, masks), "records": records,
            "speedups": speed.speedups(records)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (a smoke run of the script)")
    parser.add_argument("--steps", type=int, default=150,
                        help="training steps per epoch; two epochs are run, the second is timed (at least 3)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64, 1024, 8192])
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for the speed measurement on cpu")
    parser.add_argument("--memory-format", choices=sorted(speed.MEMORY_FORMATS), default="contiguous",
                        help="layout of the timed networks' inputs and conv weights (bcrepro speedup --memory-format)")
    parser.add_argument("--compile", choices=speed.COMPILERS, default="none",
                        help="how the timed networks run: eager, or frozen TorchScript (bcrepro speedup --compile)")
    parser.add_argument("--archs", nargs="+", default=["lenet5", "vgg16"], choices=sorted(PAPER_ARCHITECTURES))
    parser.add_argument("--out", default="gpu_check.json")
    parser.add_argument("--workdir", default="gpu_check_runs", help="checkpoints of the short training runs")
    args = parser.parse_args(argv)
    if args.steps < 3:
        parser.error("--steps must be at least 3 (steps of the second epoch are timed against each other)")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check: --device cuda but torch sees no CUDA device; use --device cpu for a smoke run")
    started = time.perf_counter()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"torch {torch.__version__} on {name}", flush=True)
    report = {"torch": torch.__version__, "device": name, "training": [], "speed": []}

    for method in ("dense", "bc-ghs"):
        record = training_speed(method, args.steps, args.batch, device, Path(args.workdir))
        report["training"].append(record)
        print(f"VGG-16 {method:7s}: {1e3 * record['seconds_per_step']:.1f} ms/step, "
              f"{record['images_per_second']:.0f} images/s, {record['seconds_per_cifar_epoch']:.1f} s per CIFAR-10 "
              f"epoch (batch {args.batch}; loss {record['final_loss']:.3f})", flush=True)
    dense, ghs = report["training"]
    print(f"BC-GHS over dense, per step: {ghs['seconds_per_step'] / dense['seconds_per_step']:.2f}x", flush=True)

    for arch in args.archs:
        result = speedups_of_paper_architecture(arch, device, args.batch_sizes, args.repeats, args.threads,
                                                args.memory_format, args.compile)
        report["speed"].append(result)
        print(f"{arch} slimmed to the paper's BC-GHS architecture {'-'.join(map(str, result['architecture']))}:")
        medians = {(r["variant"], r["batch"]): r["median_ms"] for r in result["records"]}
        for gain in result["speedups"]:
            if gain["variant"] == "slim":
                batch = gain["batch"]
                print(f"  batch {batch:5d}: original {medians[('original', batch)]:9.3f} ms, masked "
                      f"{medians[('masked', batch)]:9.3f} ms, slim {medians[('slim', batch)]:9.3f} ms -> "
                      f"{gain['speedup']:.2f}x (multiply-adds {gain['flops_ratio']:.1f}x fewer)", flush=True)
    report["seconds"] = time.perf_counter() - started
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"done in {report['seconds']:.0f} s; figures in {args.out}", flush=True)


if __name__ == "__main__":
    main()
