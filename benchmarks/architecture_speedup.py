"""``bcrepro speedup``'s measurement for a network cut to any architecture, eager and as frozen TorchScript.

A compressed run's speed depends on the architecture it kept, not on its weight values. This script cuts the given
architecture out of a freshly built network (random groups kept, as ``scripts/gpu_check.py`` does for the paper's
Table 2 architectures), then times original, masked and slimmed with ``bcrepro.deploy.speed`` exactly as ``bcrepro speedup``
does, once per ``--compile`` mode (eager with the strided pooling rewrite; TorchScript with torch's pooling), and
prints the slimmed-over-original speed-up per batch size beside the ratio of multiply-adds.

Usage: ``python benchmarks/architecture_speedup.py [--arch lenet5] [--kept 10 16 159 55] [--threads 1]
[--batch-sizes 1 64 1024 8192] [--repeats 100] [--compile none torchscript]``. The default is our MNIST BC-GHS
LeNet-5 run's architecture (10-16-159-55); ``--kept 5 10 76 16`` is the paper's.
"""
import argparse
import sys
from pathlib import Path

import torch

from bcrepro import models
from bcrepro.compress.masks import architecture
from bcrepro.deploy import cpu_memory, speed
from bcrepro.methods import get_method

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from gpu_check import paper_masks  # noqa: E402  (scripts/ holds the mask cutter the GPU check uses)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="lenet5", choices=sorted(models.ARCHITECTURES))
    parser.add_argument("--kept", type=int, nargs="+", default=[10, 16, 159, 55],
                        help="groups kept per prunable layer (inputs for linear layers, filters for convs)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64, 1024, 8192])
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--compile", nargs="+", choices=speed.COMPILERS, default=list(speed.COMPILERS))
    args = parser.parse_args()
    cpu_memory.keep_freed_memory()
    registered = get_method("bc-gnj")
    torch.manual_seed(0)
    net = models.build(args.arch, registered.layer_factory(args.arch, registered.params_for(args.arch))).eval()
    if len(args.kept) != len(net.prunable_layers()):
        parser.error(f"--kept needs one count per prunable layer of {args.arch} ({len(net.prunable_layers())})")
    masks = paper_masks(net, args.kept)
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
