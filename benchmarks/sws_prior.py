"""Soft weight-sharing's prior term: the closed-form gradients against autograd through the same formula.

Times one forward + backward of ``GaussianMixturePrior.kl_divergence`` over LeNet-300-100's 266,200 weights with 17
components, and the same term written with plain torch ops (autograd keeps several [n, J] intermediates), interleaved
in one run so machine noise hits both alike. Prints the medians and their ratio; also a dense LeNet-300-100 training
step on a batch of 128 for scale. Usage: ``python benchmarks/sws_prior.py [--threads N] [--repeats R]``.
"""
import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F

from bcrepro import models
from bcrepro.layers.mixture_prior import GaussianMixturePrior


def autograd_neg_log_prior(prior: GaussianMixturePrior, w: torch.Tensor) -> torch.Tensor:
    means, log_lam, log_pis = prior.mixture()
    w = w.reshape(-1, 1)
    log_terms = log_pis + 0.5 * (log_lam - math.log(2 * math.pi)) - 0.5 * log_lam.exp() * (w - means) ** 2
    return -torch.logsumexp(log_terms, dim=1).sum()


def timed(step) -> float:
    tic = time.perf_counter()
    step()
    return time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = models.lenet300()
    weights = [layer.weight for layer in net.prunable_layers()]
    prior = GaussianMixturePrior(lambda: weights)
    prior.initialise(weights)
    x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))

    def closed_form():
        net.zero_grad(), prior.zero_grad()
        sum(prior.neg_log_prior(w) for w in weights).backward()

    def through_autograd():
        net.zero_grad(), prior.zero_grad()
        sum(autograd_neg_log_prior(prior, w) for w in weights).backward()

    def dense_step():
        net.zero_grad()
        F.cross_entropy(net(x), y).backward()

    steps = {"closed-form prior": closed_form, "autograd prior": through_autograd, "dense step (batch 128)": dense_step}
    times = {name: [] for name in steps}
    for _ in range(3):
        for step in steps.values():
            step()
    for _ in range(args.repeats):
        for name, step in steps.items():
            times[name].append(timed(step))
    medians = {name: statistics.median(t) * 1000 for name, t in times.items()}
    for name, ms in medians.items():
        print(f"{name:24s} {ms:8.2f} ms")
    print(f"autograd / closed form: {medians['autograd prior'] / medians['closed-form prior']:.2f}x; "
          f"closed-form prior / dense step: {medians['closed-form prior'] / medians['dense step (batch 128)']:.1f}x")


if __name__ == "__main__":
    main()
