"""Training steps of LeNet-5 (dense and BC-GHS) in NCHW against channels-last (NHWC), side by side.

A BC LeNet-5 epoch is the unit of cost of every LeNet-5 ablation and full-budget run. This script times the same
training step (forward, KL, backward, Adam step, variance clipping) of freshly built networks in both layouts,
interleaved round-robin so that machine noise hits them alike, and checks that both layouts compute the same numbers:
the same seed, the same batches and the same noise draws give the same loss after every step (the printed maximum
relative difference) and the same parameters at the end.

Usage: ``python benchmarks/training_layout.py [--threads N] [--steps S] [--batch B]``.
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from bcrepro import models
from bcrepro.methods import get_method

LAYOUTS = {"NCHW": torch.contiguous_format, "NHWC": torch.channels_last}


def make_step(method_name: str, layout: torch.memory_format, batch: int, seed: int = 0):
    """A closure running one training step of a fresh LeNet-5 in ``layout``; returns the loss."""
    torch.manual_seed(seed)
    method = get_method(method_name)
    params = method.params_for("lenet5")
    net = models.build("lenet5", method.layer_factory("lenet5", params)).to(memory_format=layout)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    data = torch.Generator().manual_seed(seed)
    x_all = torch.rand(batch * 8, 1, 28, 28, generator=data)
    y_all = torch.randint(0, 10, (batch * 8,), generator=data)
    noise = torch.Generator().manual_seed(seed + 1)
    state = {"i": 0}

    def step() -> float:
        i = state["i"] % 8
        state["i"] += 1
        xb = x_all[i * batch:(i + 1) * batch].contiguous(memory_format=layout)
        yb = y_all[i * batch:(i + 1) * batch]
        torch.set_rng_state(noise.get_state())  # both layouts draw the same noise
        loss = F.cross_entropy(net(xb), yb) + net.kl_divergence() / 55000
        noise.set_state(torch.get_rng_state())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for layer in net.group_layers():
            layer.clip_variances()
        return float(loss.detach())

    return net, step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads {args.threads}, batch {args.batch}, {args.steps} interleaved steps; median ms per step")
    for method_name in ("dense", "bc-ghs"):
        runs = {name: make_step(method_name, layout, args.batch) for name, layout in LAYOUTS.items()}
        times = {name: [] for name in runs}
        losses = {name: [] for name in runs}
        for _ in range(args.steps):
            for name, (_, step) in runs.items():
                tic = time.perf_counter()
                losses[name].append(step())
                times[name].append(time.perf_counter() - tic)
        ms = {name: 1e3 * statistics.median(values[2:]) for name, values in times.items()}
        loss_diff = max(abs(a - b) / abs(a) for a, b in zip(losses["NCHW"], losses["NHWC"]))
        param_diff = max(float((p - q).abs().max() / (p.abs().max() + 1e-12))
                         for p, q in zip(runs["NCHW"][0].parameters(), runs["NHWC"][0].parameters()))
        print(f"{method_name:<8} NCHW {ms['NCHW']:8.1f}  NHWC {ms['NHWC']:8.1f}  NHWC is "
              f"{ms['NCHW'] / ms['NHWC']:.2f}x as fast; max relative difference: loss {loss_diff:.1e}, "
              f"parameters {param_diff:.1e}")


if __name__ == "__main__":
    main()
