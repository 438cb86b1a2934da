"""``bcrepro speedup``'s measurement for a network cut to any architecture, eager and as frozen TorchScript.

A compressed run's speed depends on the architecture it kept, not on its weight values. This script cuts an
architecture out of a freshly built network (random groups kept, ``bcrepro.deploy.benchmarking.cut_network``, as the GPU
check does), then times original, masked and slimmed with ``bcrepro.deploy.speed`` exactly as ``bcrepro speedup``
does, once per ``--compile`` mode (eager with the strided pooling rewrite; TorchScript with torch's pooling), and
prints the slimmed-over-original speed-up per batch size beside the ratio of multiply-adds.

Usage: ``python benchmarks/architecture_speedup.py [--arch lenet5] [--method bc-ghs] [--paper | --kept 7 14 182 42]
[--threads 1] [--batch-sizes 1 64 1024 8192] [--repeats 100] [--compile none torchscript]``. By default the
architecture is that of the MNIST record's cell of ``--arch`` and ``--method``
(``results/mnist/runs/<arch>/<method>/seed0/metrics.json``, ``architecture``); ``--paper`` takes the paper's (Table 2)
instead, ``--kept`` any other.
"""
import argparse
from pathlib import Path

import torch

from bcrepro import models
from bcrepro.deploy.benchmarking import cut_network, recorded_architecture
from bcrepro.compress.masks import architecture
from bcrepro.deploy import cpu_memory, speed
from bcrepro.errors import UsageError
from bcrepro.report.paper import paper_architecture

RECORD = Path(__file__).resolve().parents[1] / "results" / "mnist"


def chosen_architecture(args, parser) -> list[int]:
    if args.kept is not None:
        return args.kept
    if args.paper:
        kept = paper_architecture(args.arch, args.method)
        if kept is None:
            parser.error(f"the paper's Table 2 has no {args.arch}/{args.method} architecture")
        return kept
    return recorded_architecture(RECORD, args.arch, args.method)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="lenet5", choices=sorted(models.ARCHITECTURES))
    parser.add_argument("--method", default="bc-ghs", help="whose record (or --paper) architecture to cut")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--paper", action="store_true", help="the paper's Table 2 architecture instead of the record's")
    which.add_argument("--kept", type=int, nargs="+",
                       help="groups kept per prunable layer (inputs for linear layers, filters for convs)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64, 1024, 8192])
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--compile", nargs="+", choices=speed.COMPILERS, default=list(speed.COMPILERS))
    args = parser.parse_args()
    cpu_memory.keep_freed_memory()
    try:
        net, masks = cut_network(args.arch, chosen_architecture(args, parser))
    except UsageError as err:  # no such record cell, or counts that do not fit the network
        parser.error(str(err))
    device = torch.device("cpu")
    print(f"{args.arch} cut to {'-'.join(map(str, architecture(net, masks)))}; threads {args.threads}, "
          f"{args.repeats} repeats, allocator {cpu_memory.allocator()}")
    for compiler in args.compile:
        stock = speed.stock_pooling_for(device, compiler)  # as `bcrepro speedup --compile` chooses
        modules = speed.variants(net, masks, stock_pooling=stock)
        records = speed.measure(modules, net.input_shape, args.batch_sizes, device, repeats=args.repeats,
                                threads=args.threads, compiler=compiler)
        medians = {(r["variant"], r["batch"]): r["median_ms"] for r in records}
        print(f"compile {compiler} ({'torch' if stock else 'strided'} pooling):")
        for gain in speed.speedups(records):
            if gain["variant"] == "slim":
                batch = gain["batch"]
                print(f"  batch {batch:5d}: original {medians[('original', batch)]:9.3f} ms, slim "
                      f"{medians[('slim', batch)]:8.3f} ms -> {gain['speedup']:.2f}x "
                      f"({gain['flops_ratio']:.1f}x fewer multiply-adds)", flush=True)


if __name__ == "__main__":
    main()
