"""The learned Gaussian-mixture prior of Soft Weight-Sharing (Ullrich, Meeds, Welling, ICLR 2017), docs/baselines.md §4.

``p(w) = prod_i sum_j pi_j N(w_i | mu_j, 1/lambda_j)`` over the tensors ``weights()`` returns (SWS: the weights of every
prunable layer, and their biases where ``prior_on_biases`` says so, as the tutorial), with J components: a
zero component (``mu_0 = 0`` and ``pi_0`` fixed) and J-1 learned ones (means, log-precisions and mixing logits that
share ``1 - pi_0``). Optional Gamma hyper-priors on the precisions keep components from collapsing (negative
log-prior ``(1 - a) log lambda + b lambda``). The module is attached to the network it regularises, and
``kl_divergence()`` returns ``tau * (-log p(w) + hyper-prior)``, the term the training loop adds as ``KL / N``: with the
mean cross-entropy that is the paper's ``sum CE + tau * L^C`` divided by N (the tutorial's ``tau / N`` convention).

Its parameters train at their own learning rates (``learning_rates()``, read by ``bcrepro.train.make_optimizer``).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

_LOG_2PI = math.log(2 * math.pi)
MAX_LOG_PRECISION = math.log(1e6)  # sigma^2 >= 1e-6 (docs/baselines.md §6)
CHUNK = 1 << 14  # weights per block of the [n, J] responsibilities on CPU, so the working set stays in cache


def block_size(w: torch.Tensor) -> int:
    """Weights per block of the [n, J] responsibilities: cache-sized blocks on CPU; one block elsewhere, where every
    block is a handful of kernel launches (hundreds per LeNet step) and the device has memory to spare."""
    return CHUNK if w.device.type == "cpu" else max(1, w.numel())


class _MixtureNegLogLikelihood(torch.autograd.Function):
    """``-sum_i log sum_j pi_j N(w_i | mu_j, 1/lambda_j)`` with its gradients in closed form.

    With responsibilities ``r_ij`` (the softmax over j of the log terms) and ``d_ij = w_i - mu_j``:

    - d/dw_i = sum_j r_ij lambda_j d_ij
    - d/dmu_j = -lambda_j sum_i r_ij d_ij
    - d/dlog lambda_j = -1/2 sum_i r_ij + lambda_j / 2 sum_i r_ij d_ij^2
    - d/dlog pi_j = -sum_i r_ij

    The forward pass computes them block by block and keeps only ``[n]`` + ``[J]`` numbers for backward instead of
    autograd's several ``[n, J]`` intermediates: the prior is by far the costliest part of an SWS step (O(n J)).
    """

    @staticmethod
    def forward(ctx, w, means, log_lam, log_pis):
        lam = log_lam.exp()
        const = log_pis + 0.5 * (log_lam - _LOG_2PI)  # [J]
        w_shape = w.shape
        w = w.reshape(-1)
        grad_w = torch.empty_like(w)
        sums = w.new_zeros(3, means.numel())  # sum_i r_ij, sum_i r_ij d_ij, sum_i r_ij d_ij^2
        total = w.new_zeros(())
        block = block_size(w)
        for start in range(0, w.numel(), block):
            d = w[start:start + block, None] - means  # [c, J]
            d_sq = d * d
            r = d_sq * (-0.5 * lam) + const  # log terms, turned into responsibilities in place (one exp)
            top = r.amax(dim=1, keepdim=True)
            r.sub_(top).exp_()
            norm = r.sum(dim=1, keepdim=True)
            r.div_(norm)
            total -= (top + norm.log()).sum()  # logsumexp of the block's log terms
            sums[0] += r.sum(0)
            sums[2] += d_sq.mul_(r).sum(0)
            rd = d.mul_(r)
            sums[1] += rd.sum(0)
            grad_w[start:start + block] = rd @ lam
        ctx.save_for_backward(grad_w, sums, lam)
        ctx.weight_shape = w_shape
        return total

    @staticmethod
    def backward(ctx, grad_output):
        grad_w, sums, lam = ctx.saved_tensors
        grad_means = -lam * sums[1]
        grad_log_lam = -0.5 * sums[0] + 0.5 * lam * sums[2]
        grad_log_pis = -sums[0]
        return ((grad_output * grad_w).reshape(ctx.weight_shape), grad_output * grad_means,
                grad_output * grad_log_lam, grad_output * grad_log_pis)


class GaussianMixturePrior(nn.Module):
    def __init__(self, weights: Callable[[], list[torch.Tensor]], n_components: int = 17, pi_zero: float = 0.999,
                 tau: float = 5e-3, init_std: float = 0.25, zero_gamma: tuple[float, float] | None = (5000.0, 2.0),
                 gamma: tuple[float, float] | None = (250.0, 0.1), learning_rates: dict | None = None):
        super().__init__()
        self.weights = weights  # a function, so the network's layers are not registered twice
        self.pi_zero, self.tau = pi_zero, tau
        self.zero_gamma, self.gamma = zero_gamma, gamma
        self.means = nn.Parameter(torch.linspace(-0.6, 0.6, n_components - 1))  # the tutorial's, until initialise()
        self.log_precisions = nn.Parameter(torch.full((n_components,), -2 * math.log(init_std)))
        self.mixing_logits = nn.Parameter(torch.zeros(n_components - 1))
        self.rates = dict(learning_rates or {})

    @torch.no_grad()
    def initialise(self, weights: list[torch.Tensor], span: tuple[float, float] | None = None) -> None:
        """The J-1 learned means evenly over ``span`` (low, high), whatever the weights (the tutorial's
        ``linspace(-0.6, 0.6)``), or without it over the range of the (pretrained) ``weights``, as the paper; equal
        mixing proportions."""
        if span is None:
            flat = torch.cat([w.detach().flatten() for w in weights])
            span = (float(flat.min()), float(flat.max()))
        self.means.copy_(torch.linspace(float(span[0]), float(span[1]), self.means.numel()))
        self.mixing_logits.zero_()

    def mixture(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(means, log-precisions, log mixing proportions) of all J components, the zero component first. # [J] each"""
        means = torch.cat([self.means.new_zeros(1), self.means])
        log_pis = torch.cat([self.means.new_full((1,), math.log(self.pi_zero)),
                             math.log1p(-self.pi_zero) + torch.log_softmax(self.mixing_logits, 0)])
        return means, self.log_precisions.clamp(max=MAX_LOG_PRECISION), log_pis

    def neg_log_prior(self, w: torch.Tensor) -> torch.Tensor:
        """-sum_i log sum_j pi_j N(w_i | mu_j, 1/lambda_j), by logsumexp; gradients in closed form."""
        means, log_lam, log_pis = self.mixture()
        return _MixtureNegLogLikelihood.apply(w, means, log_lam, log_pis)

    def neg_log_hyperprior(self) -> torch.Tensor:
        """sum_j (1 - a_j) log lambda_j + b_j lambda_j (Gamma priors on the precisions, up to constants)."""
        log_lam = self.log_precisions.clamp(max=MAX_LOG_PRECISION)
        total = log_lam.new_zeros(())
        for prior, part in ((self.zero_gamma, log_lam[:1]), (self.gamma, log_lam[1:])):
            if prior is not None:
                a, b = prior
                total = total + ((1 - a) * part + b * part.exp()).sum()
        return total

    def kl_divergence(self) -> torch.Tensor:
        """The prior's term of the objective, ``tau * (-log p(w) - log p(lambda))`` (added as ``KL / N``)."""
        return self.tau * (sum(self.neg_log_prior(w) for w in self.weights()) + self.neg_log_hyperprior())

    def learning_rates(self) -> list[tuple[list[nn.Parameter], float]]:
        """Parameter groups with their own Adam learning rates ("a very sensitive parameter", the paper says)."""
        return [([getattr(self, name)], lr) for name, lr in self.rates.items()]

    def extra_repr(self) -> str:
        return f"components={self.log_precisions.numel()}, pi_zero={self.pi_zero}, tau={self.tau}"
