"""The automatic threshold search and the threshold curve of ``bcrepro compress``, with every pruned network evaluated
from scratch (``train.error_rate``) against ``evaluation.PrefixReusingErrorRate``, side by side in one run.

For each architecture: a BC-GHS network with spread-out group statistics (random weights: the time of a forward pass
does not depend on their values), random validation images labelled with the unpruned network's own predictions (so the
error measures how far pruning moves the network, from a baseline of 0 %), then the ``auto`` rule and the curve, once
with each evaluator (LeNet-5 twice each, alternating). The script checks that both choose the same thresholds after
the same validation errors, and prints the seconds, the networks evaluated and the ratio (> 1: reuse is faster).

Usage: ``python benchmarks/threshold_search.py [--threads N] [--archs lenet5 vgg16] [--validation N ...]
[--max-candidates K] [--curve-points P]``.
"""
import argparse
import time

import torch

from bcrepro import models
from bcrepro.compress.evaluation import PrefixReusingErrorRate
from bcrepro.compress.masks import architecture, propagate_masks
from bcrepro.compress.thresholds import DEFAULT_MAX_CANDIDATES, select_thresholds, threshold_curve
from bcrepro.layers import Conv2dGroupHS, LinearGroupHS
from bcrepro.train import error_rate

GHS = models.LayerFactory(linear=lambda i, o, index: LinearGroupHS(i, o),
                          conv=lambda i, o, k, padding, index: Conv2dGroupHS(i, o, k, padding=padding))
DEFAULT_VALIDATION = {"lenet300": 5000, "lenet5": 5000, "vgg16": 250}


@torch.no_grad()
def spread_network(arch: str, seed: int = 0):
    torch.manual_seed(seed)
    net = models.build(arch, GHS).eval()
    for layer in net.group_layers():
        layer.alpha_mu.copy_(0.8 * torch.randn(layer.n_groups))
        layer.alpha_logvar.copy_(-6 + 4 * torch.rand(layer.n_groups))
    return net


@torch.no_grad()
def self_labelled_images(net, n: int, seed: int = 1):
    x = torch.randn(n, *net.input_shape, generator=torch.Generator().manual_seed(seed))
    return x, torch.cat([net(xb).argmax(1) for xb in x.split(500)])


def search(net, evaluate, config: dict, curve_points: int):
    thresholds, record = select_thresholds(net, config, evaluate)
    curve = threshold_curve(net, thresholds, evaluate, n_points=curve_points) if curve_points else []
    return thresholds, record["trials"], curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--archs", nargs="+", default=["lenet5", "vgg16"], choices=sorted(DEFAULT_VALIDATION))
    parser.add_argument("--validation", type=int, nargs="+", help="validation images per architecture "
                        f"(default {DEFAULT_VALIDATION})")
    parser.add_argument("--max-candidates", type=int, default=DEFAULT_MAX_CANDIDATES)
    parser.add_argument("--curve-points", type=int, default=15, help="0 skips the curve")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes = args.validation or [DEFAULT_VALIDATION[arch] for arch in args.archs]
    if len(sizes) != len(args.archs):
        parser.error(f"--validation needs one size per architecture ({len(args.archs)}), got {len(sizes)}")
    config = {"rule": "auto", "max_candidates": args.max_candidates}
    print(f"threads {args.threads}, max_candidates {args.max_candidates}, curve points {args.curve_points}")
    for arch, n in zip(args.archs, sizes):
        net = spread_network(arch)
        x, y = self_labelled_images(net, n)
        seconds = {"from scratch": [], "reusing": []}
        results = {}
        rounds = ["from scratch", "reusing"] if arch == "vgg16" else ["from scratch", "reusing", "reusing",
                                                                      "from scratch"]
        for name in rounds:
            evaluate = PrefixReusingErrorRate(x, y) if name == "reusing" else (lambda module: error_rate(module, x, y))
            tic = time.perf_counter()
            results[name] = search(net, evaluate, config, args.curve_points)
            seconds[name].append(time.perf_counter() - tic)
            if name == "reusing":
                evaluations = evaluate.evaluations  # both evaluators see the same networks
        if results["from scratch"] != results["reusing"]:
            raise SystemExit(f"{arch}: the two evaluators chose differently: {results}")
        kept = architecture(net, propagate_masks(net, results["reusing"][0]))
        best = {name: min(values) for name, values in seconds.items()}
        print(f"{arch}: {n} validation images, {evaluations} networks evaluated, same thresholds and "
              f"errors both ways (architecture {'-'.join(map(str, kept))})")
        for name, values in seconds.items():
            print(f"  {name:<13} {' '.join(f'{s:8.1f}' for s in values)} s")
        print(f"  reusing is {best['from scratch'] / best['reusing']:.2f}x as fast (best of each)")


if __name__ == "__main__":
    main()
