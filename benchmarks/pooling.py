"""torch's ``max_pool2d`` (after a ReLU) against the strided rewrite of ``bcrepro.pooling``, side by side.

Two parts, each interleaved round-robin in one run so machine noise hits both alike:

1. ReLU + 2 x 2 max pooling alone, on the activations LeNet-5 and VGG-16 pool at batch 1024 (the slimmed LeNet-5's
   conv widths beside the full ones);
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

from bcrepro import models
from bcrepro.deploy.benchmarking import interleaved_ms, slim_lenet5
from bcrepro.deploy import cpu_memory
from bcrepro.pooling import StridedMaxPool2x2, fast_inference
from bcrepro.report.paper import paper_architecture

# The paper's BC-GHS LeNet-5 (Table 2, 5-10-76-16) as conv1 filters, conv2 filters and fc1 outputs
PAPER_WIDTHS = [paper_architecture("lenet5", "bc-ghs")[i] for i in (0, 1, 3)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--widths", type=int, nargs=3, default=PAPER_WIDTHS, metavar=("C1", "C2", "F1"),
                        help="the slimmed LeNet-5's conv1 filters, conv2 filters and fc1 outputs (default: the "
                             "paper's, %(default)s)")
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
                         (f"slim conv1, {args.widths[0]} ch", (b, args.widths[0], 24, 24)),
                         (f"slim conv2, {args.widths[1]} ch", (b, args.widths[1], 8, 8)),
                         ("VGG block 1, 64 ch", (max(b // 8, 1), 64, 32, 32))]:
        x = torch.randn(shape)
        ms = interleaved_ms({"stock": lambda: F.max_pool2d(F.relu(x), 2), "strided": lambda: fused(x)}, args.repeats)
        print(f"{label:<28}{ms['stock']:>10.2f}{ms['strided']:>10.2f}{ms['stock'] / ms['strided']:>7.2f}x")

    print("\nwhole forward passes")
    original, slim = models.lenet5().eval(), slim_lenet5(args.widths).eval()
    fast_original, fast_slim = fast_inference(original), fast_inference(slim)
    x = torch.randn(b, 1, 28, 28)
    ms = interleaved_ms({"original stock": lambda: original(x), "original strided": lambda: fast_original(x),
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
