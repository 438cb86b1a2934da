"""LeNet-5 and a slimmed LeNet-5 in PyTorch's default NCHW layout against channels-last (NHWC), side by side.

``bcrepro speedup --memory-format`` times every variant in one layout. This script shows why the choice matters:
it times the original and the slimmed network in both layouts, all four interleaved round-robin in one run (so machine
noise hits them alike), and prints the slimmed-over-original speed-up within each layout and between each network's
faster layout. Both networks get the exact pooling rewrite of ``bcrepro.pooling``, and freed memory stays in the
process (``bcrepro.deploy.cpu_memory``), as in ``bcrepro speedup``. ``--widths C1 C2 F1`` gives the slimmed network's
conv1 filters, conv2 filters and fc1 outputs; by default those of the MNIST record's BC-GHS LeNet-5
(``results/mnist/runs/lenet5/bc-ghs/seed0/metrics.json``, ``architecture``; fc1 here reads all 16 * C2 inputs, where
the record's network keeps fewer). The weights are random: speed does not depend on their values.

Usage: ``python benchmarks/memory_format.py [--threads N] [--repeats R] [--batch B] [--widths C1 C2 F1]``.
"""
import argparse
from pathlib import Path

import torch
from torch import nn

from bcrepro import models
from bcrepro.deploy.benchmarking import interleaved_ms, recorded_architecture, slim_lenet5
from bcrepro.deploy import cpu_memory
from bcrepro.errors import UsageError
from bcrepro.pooling import fast_inference

RECORD = Path(__file__).resolve().parents[1] / "results" / "mnist"
LAYOUTS = {"NCHW": torch.contiguous_format, "NHWC": torch.channels_last}


def in_layout(module: nn.Module, layout: torch.memory_format):
    """A forward pass of ``module`` with its 4-D weights, and each input, in ``layout``."""
    module = module.to(memory_format=layout)
    return lambda x: module(x.contiguous(memory_format=layout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--widths", type=int, nargs=3, metavar=("C1", "C2", "F1"),
                        help="the slimmed LeNet-5's conv1 filters, conv2 filters and fc1 outputs (default: the MNIST "
                             "record's BC-GHS LeNet-5)")
    args = parser.parse_args()
    if args.widths is None:
        try:
            kept = recorded_architecture(RECORD, "lenet5", "bc-ghs")  # conv1, conv2 filters; fc1, fc2 inputs
        except UsageError as err:
            parser.error(str(err))
        args.widths = [kept[0], kept[1], kept[3]]
    cpu_memory.keep_freed_memory()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 1, 28, 28)
    steps = {}
    for network, build in (("original", models.lenet5), ("slim", lambda: slim_lenet5(args.widths))):
        for layout_name, layout in LAYOUTS.items():
            forward = in_layout(fast_inference(build().eval()), layout)  # a fresh network per layout
            steps[f"{network} {layout_name}"] = lambda forward=forward: forward(x)
    print(f"threads {args.threads}, batch {args.batch}, {args.repeats} interleaved repeats, allocator "
          f"{cpu_memory.allocator()}, slimmed widths {'-'.join(map(str, args.widths))}; medians in ms")
    ms = interleaved_ms(steps, args.repeats)
    for name, value in ms.items():
        print(f"{name:<16}{value:>10.2f}")
    for network in ("original", "slim"):
        print(f"{network}: NHWC is {ms[f'{network} NCHW'] / ms[f'{network} NHWC']:.2f}x as fast as NCHW")
    for layout_name in LAYOUTS:
        ratio = ms[f"original {layout_name}"] / ms[f"slim {layout_name}"]
        print(f"slimmed over original, both {layout_name}: {ratio:.2f}x")
    best = {network: min(ms[f"{network} {layout}"] for layout in LAYOUTS) for network in ("original", "slim")}
    print(f"slimmed over original, each in its faster layout: {best['original'] / best['slim']:.2f}x")


if __name__ == "__main__":
    main()
