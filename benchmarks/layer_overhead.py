"""Cost of one BC training step relative to the dense network's, measured side by side in one run.

    python benchmarks/layer_overhead.py [--batch 128] [--repeats 30] [--threads 2] [--reference]

One step = forward, backward (cross-entropy + KL / N for the Bayesian nets), Adam (the training loop's own),
variance clipping, on the same batch. Steps of the variants are interleaved round-robin so machine noise hits all of
them alike; the ratio of medians is printed. Goal: <= 2.0x for LeNet-300-100 and <= 2.5x for LeNet-5 on
CPU. For LeNet-300-100 it also prints the floor: the time of the matmuls and normal draws that exact local
reparameterisation with one z per example cannot avoid, over the dense step. ``--reference`` adds the BC steps through
plain autograd over the reference expressions (``fused_step = False``) to the same round-robin, to show what the fused
step saves.

For each architecture it also prints the arithmetic: the multiply-adds of one training step's matmuls and convolutions,
BC over dense (``training_multiply_adds``). A BC step needs every product twice (mean and variance paths), and where z
scales a layer's inputs (the input units of a linear layer) it also needs that layer's input gradient, which the dense
network skips for its first layer. For LeNet-300-100 that is 2.83x the dense step's multiply-adds, above the 2.0x goal;
for LeNet-5 (z on the conv filters' outputs) it is 2.00x.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

from bcrepro import models
from bcrepro.deploy.benchmarking import interleaved_medians
from bcrepro.compress.layer_view import prunable_input_shapes
from bcrepro.deploy import speed
from bcrepro.methods import get_method
from bcrepro.train import TrainConfig, make_optimizer

N_TRAIN = 60000


def make_step(arch: str, method_name: str, batch: int, fused: bool = True):
    method = get_method(method_name)
    hp = method.params_for(arch)
    torch.manual_seed(0)
    net = models.build(arch, method.layer_factory(arch, hp))
    net.train()
    for layer in net.group_layers():
        layer.fused_step = fused
    optimizer = make_optimizer(net, TrainConfig(epochs=1, batch_size=batch, lr=1e-3), torch.device("cpu"))
    x = torch.randn(batch, *net.input_shape)
    y = torch.randint(0, 10, (batch,))
    group_layers = net.group_layers()

    def step():
        loss = F.cross_entropy(net(x), y)
        if group_layers:
            loss = loss + net.kl_divergence() / N_TRAIN
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for layer in group_layers:
            layer.clip_variances()
    return step


def measure(arch: str, batch: int, repeats: int, reference: bool) -> dict[str, float]:
    steps = {name: make_step(arch, name, batch) for name in ("dense", "bc-gnj", "bc-ghs")}
    if reference:
        steps.update({f"{name} reference": make_step(arch, name, batch, fused=False) for name in ("bc-gnj", "bc-ghs")})
    return dict(zip(steps, interleaved_medians(steps, repeats)))


def training_multiply_adds(arch: str) -> dict[str, int]:
    """Multiply-adds per example of one training step's matmuls and convolutions, for the dense net and for a BC net
    with exact local reparameterisation, counted from the dense layers' forward products (``speed.multiply_adds``).

    Dense: forward, weight gradient, and the input gradient of every layer but the first (its input needs none).
    BC: each of those twice (the mean and the variance products), and the first layer's input gradients too when z
    scales its inputs (linear layers, whose groups are input units), because z's gradient is x times the input
    gradient; conv layers' z scales their outputs, so a first conv still needs none."""
    net = models.build(arch, get_method("dense").layer_factory(arch, {}))
    dense = bayesian = 0
    layers = zip(net.prunable_layers(), prunable_input_shapes(net))
    for index, (layer, input_shape) in enumerate(layers):
        products = speed.multiply_adds(layer, input_shape)
        first = index == 0
        dense += products * (2 if first else 3)
        z_on_inputs = isinstance(layer, nn.Linear)
        bayesian += 2 * products * (2 if first and not z_on_inputs else 3)
    return {"dense": dense, "bayesian": bayesian}


def lrt_floor_step(batch: int, shapes=((784, 300), (300, 100), (100, 10)), with_parameters: bool = False):
    """Only the work exact local reparameterisation cannot avoid in a LeNet-300-100 step: per layer two forward matmuls
    (mean and variance), two weight-gradient and two input-gradient matmuls (z needs its gradient, even in the first
    layer), and the normal draws for z and for the output noise; no elementwise work, no KL, no optimiser.

    ``with_parameters`` adds what a BC step cannot avoid on its parameters either: Adam (the loop's fused one) over
    twice the dense weights (means and log-variances) and the scale parameters, ``exp`` of each log-variance matrix
    and the product of its gradient with it, and the variance clip."""
    tensors = [(torch.randn(batch, n_in), torch.randn(n_out, n_in), torch.randn(batch, n_out))
               for n_in, n_out in shapes]
    params = [torch.randn(*shape) for n_in, n_out in shapes for shape in ((n_out, n_in), (n_out, n_in), (n_out,),
                                                                          (n_out,), (n_in,), (n_in,))]
    for p in params:
        p.requires_grad_(True)
        p.grad = torch.randn_like(p)
    optimizer = torch.optim.Adam(params, lr=1e-3, fused=True)
    log_variances = params[1::6]

    def step():
        for x, w, g in tensors:
            torch.randn(batch, x.shape[1])
            torch.randn(batch, w.shape[0])
            for _ in range(2):
                x @ w.t()
                g.t() @ x
                g @ w
        if with_parameters:
            with torch.no_grad():
                for log_variance in log_variances:
                    log_variance.grad.mul_(log_variance.exp())
                optimizer.step()
                for log_variance in log_variances:
                    log_variance.clamp_(max=0.0)
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reference", action="store_true",
                        help="also time the BC steps through autograd over the reference expressions")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"batch {args.batch}, {args.repeats} interleaved repeats, {args.threads} threads, torch {torch.__version__}")
    print(f"{'arch':10s} {'dense ms':>9s} {'GNJ ms':>8s} {'GHS ms':>8s} {'GNJ/dense':>10s} {'GHS/dense':>10s}")
    for arch in ("lenet300", "lenet5"):
        med = measure(arch, args.batch, args.repeats, args.reference)
        print(f"{arch:10s} {1e3 * med['dense']:9.2f} {1e3 * med['bc-gnj']:8.2f} {1e3 * med['bc-ghs']:8.2f} "
              f"{med['bc-gnj'] / med['dense']:10.2f} {med['bc-ghs'] / med['dense']:10.2f}")
        if args.reference:
            gnj, ghs = med["bc-gnj reference"], med["bc-ghs reference"]
            print(f"{'':10s} {'reference':>9s} {1e3 * gnj:8.2f} {1e3 * ghs:8.2f} {gnj / med['dense']:10.2f} "
                  f"{ghs / med['dense']:10.2f}   (autograd over the reference expressions)")
        counts = training_multiply_adds(arch)
        print(f"{'':10s} arithmetic: multiply-adds of the step's matmuls/convs, BC/dense = "
              f"{counts['bayesian']:,} / {counts['dense']:,} per example = {counts['bayesian'] / counts['dense']:.2f}x")
        if arch == "lenet300":
            floor, floor_params, dense = interleaved_medians(
                {"floor": lrt_floor_step(args.batch),
                 "floor + parameters": lrt_floor_step(args.batch, with_parameters=True),
                 "dense": make_step(arch, "dense", args.batch)}, args.repeats)
            print(f"{'':10s} floor of exact local reparameterisation (matmuls + normal draws only): "
                  f"{1e3 * floor:.2f} ms = {floor / dense:.2f}x the dense step")
            print(f"{'':10s} ... + Adam over BC's parameters, exp of the log-variances and its gradient, the clip: "
                  f"{1e3 * floor_params:.2f} ms = {floor_params / dense:.2f}x")


if __name__ == "__main__":
    main()
