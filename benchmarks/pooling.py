"""torch's ``max_pool2d`` (after a ReLU) against the strided rewrite of ``bcrepro.pooling``, side by side.

Two parts, each interleaved round-robin in one run so machine noise hits both alike:

1. ReLU + 2 x 2 max pooling alone, on the activations LeNet-5 and VGG-16 pool at batch 1024 (LeNet-5's slimmed widths
   from the paper's BC-GHS result beside the full ones);
2. whole eval-mode forward passes of LeNet-5 and of a slimmed LeNet-5, stock against rewritten, and the
   slimmed-over-original speed-up each way. ``--widths C1 C2 F1`` gives the slimmed network's conv1 filters, conv2
   filters and fc1 outputs; the default 5 10 16 is the paper's BC-GHS result (5-10-76-16; fc1 here reads all
   16 * C2 inputs, where the paper keeps 76 of 160: 1 % more multiply-adds than the paper's network).

Like ``bcrepro speedup``, it keeps freed memory in the process (``bcrepro.deploy.cpu_memory``) unless
``--system-allocator``. Prints medians in milliseconds and ratios (stock / rewritten > 1: the rewrite is faster).
Usage: ``python benchmarks/pooling.py [--threads N] [--repeats R] [--batch B] [--widths C1 C2 F1]
[--system-allocator]``.
"""
import argparse

import torch
import torch.nn.functional as F
from torch import nn

from bcrepro import models
from bcrepro.deploy import cpu_memory
from bcrepro.pooling import StridedMaxPool2x2, fast_inference
from layer_overhead import interleaved_medians  # benchmarks/ is on the path when run as a script


@torch.no_grad()
def interleaved(steps: dict, repeats: int) -> dict[str, float]:
    """Median milliseconds of each step, timed round-robin (``layer_overhead.interleaved_medians``) without autograd."""
    return {name: 1e3 * seconds for name, seconds in zip(steps, interleaved_medians(steps, repeats))}


def slim_lenet5(widths=(5, 10, 16)) -> nn.Sequential:
    conv1, conv2, fc1 = widths
    return nn.Sequential(nn.Conv2d(1, conv1, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(conv1, conv2, 5), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(conv2 * 16, fc1), nn.ReLU(), nn.Linear(fc1, 10))


def lenet5_timing_parser(description: str, repeats: int, widths: list[int]) -> argparse.ArgumentParser:
    """The options of the scripts that time LeNet-5 against ``slim_lenet5``: threads, repeats, batch and ``--widths``
    (the slimmed network's conv1 filters, conv2 filters and fc1 outputs)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--widths", type=int, nargs=3, default=widths, metavar=("C1", "C2", "F1"),
                        help="the slimmed LeNet-5's conv1 filters, conv2 filters and fc1 outputs")
    return parser


def main() -> None:
    parser = lenet5_timing_parser(__doc__.splitlines()[0], repeats=30, widths=[5, 10, 16])
    parser.add_argument("--system-allocator", action="store_true", help="leave glibc's malloc as it is")
    args = parser.parse_args()
    if not args.system_allocator:
        cpu_memory.keep_freed_memory()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    b = args.batch
    print(f"threads {args.threads}, batch {b}, {args.repeats} interleaved repeats, allocator {cpu_memory.allocator()}; "
          f"medians in ms")

    print("\nReLU + 2x2 max pooling alone")
    print(f"{'activation':<28}{'stock':>10}{'strided':>10}{'ratio':>8}")
    fused = StridedMaxPool2x2(relu=True)
    for label, shape in [("LeNet-5 conv1, 20 ch", (b, 20, 24, 24)), ("LeNet-5 conv2, 50 ch", (b, 50, 8, 8)),
                         ("slim conv1, 5 ch", (b, 5, 24, 24)), ("slim conv2, 10 ch", (b, 10, 8, 8)),
                         ("VGG block 1, 64 ch", (max(b // 8, 1), 64, 32, 32))]:
        x = torch.randn(shape)
        ms = interleaved({"stock": lambda: F.max_pool2d(F.relu(x), 2), "strided": lambda: fused(x)}, args.repeats)
        print(f"{label:<28}{ms['stock']:>10.2f}{ms['strided']:>10.2f}{ms['stock'] / ms['strided']:>7.2f}x")

    print("\nwhole forward passes")
    original, slim = models.lenet5().eval(), slim_lenet5(args.widths).eval()
    fast_original, fast_slim = fast_inference(original), fast_inference(slim)
    x = torch.randn(b, 1, 28, 28)
    ms = interleaved({"original stock": lambda: original(x), "original strided": lambda: fast_original(x),
                      "slim stock": lambda: slim(x), "slim strided": lambda: fast_slim(x)}, args.repeats)
    for name, value in ms.items():
        print(f"{name:<28}{value:>10.2f}")
    print(f"rewrite speeds up the original {ms['original stock'] / ms['original strided']:.2f}x and the slimmed "
          f"network {ms['slim stock'] / ms['slim strided']:.2f}x")
    widths = "-".join(map(str, args.widths))
    print(f"slimmed {widths} over original: {ms['original stock'] / ms['slim stock']:.2f}x stock, "
          f"{ms['original strided'] / ms['slim strided']:.2f}x with the rewrite on both")


if __name__ == "__main__":
    main()
