"""Sparse variational dropout (Molchanov, Ashukha & Vetrov, ICML 2017): the per-weight baseline of docs/baselines.md §5.

Every weight has its own Gaussian posterior ``q(w_ij) = N(theta_ij, sigma_ij^2)`` under the log-uniform prior
``p(|w|) ∝ 1/|w|``. The parameters are the authors' additive reparameterisation ``w = theta + sigma * eps``: ``theta``
and ``log_sigma2`` are trained, and the dropout rate ``log alpha = log sigma^2 - log theta^2`` is derived from them
(docs/baselines.md §5.1). A weight is pruned when ``log alpha > 3`` (alpha > e^3 ≈ 20, dropout rate > 0.95).

Conventions, as in the authors' ``nets/layers.py``:

- training forward: local reparameterisation, ``b = x theta^T + bias + sqrt(x^2 sigma^2 + 1e-8) eps``; the bias is
  deterministic and stays out of the variance (a bias in the variance made a conv port diverge, deepbayes#7);
- eval forward: no noise, the weights ``theta * 1[log alpha <= 3]``;
- the sampled weight variance: ``sigma^2`` (``sampled_variance="sigma2"``), or the authors' ``exp(clip(log alpha,
  -8, 8)) theta^2`` (``"alpha"``), the same value while log alpha lies within the clip and far less past it: a weight
  whose theta has gone to 0 (pruned) then injects no noise, where ``sigma^2`` keeps its full variance in every forward;
- initialisation: ``log_sigma2 = -10``, ``bias = 0``, ``theta ~ N(0, 0.01^2)`` for linear layers and Glorot-uniform for
  conv layers (their experiments pass ``W=init.Normal()`` to the conv layer, but that keyword never reaches the parent
  constructor, so Glorot-uniform is what ran).

Usage::

    fc1 = LinearSVDO(28 * 28, 300)
    loss = n_train * F.cross_entropy(out, y) + kl_weight * sum(l.kl_divergence() for l in svdo_layers)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# The KL fit is Molchanov et al. (2017) Eq. 14 for group and per-weight dropout alike; it lives in group_nj.py.
from .base import set_conv_geometry
from .group_nj import jeffreys_kl_approx

# Prune a weight when log alpha exceeds this (the SVDO paper's value; alpha > e^3 ≈ 20).
PRUNE_THRESHOLD = 3.0
# The authors' code clips log alpha to [-8, 8] (docs/baselines.md §5.2); the deepbayes PyTorch port uses [-10, 10]. Both
# bounds lie far from the threshold, so the pruning mask is the same either way. The clip keeps exp(-log alpha) in
# the KL from overflowing; as in the reference, a weight outside the bounds gets no gradient through log alpha.
LOG_ALPHA_MIN, LOG_ALPHA_MAX = -8.0, 8.0
# Initial log sigma^2 of every weight (the authors' LeNet runs; their VGG run starts from -15).
LOG_SIGMA2_INIT = -10.0
# Inside log(theta^2 + eps) so that theta = 0 gives a large, finite log alpha.
_THETA2_EPS = 1e-8
# Added to the pre-activation variance before the sqrt, as the authors' code does.
_VARIANCE_EPS = 1e-8
# What the training forward samples each weight's variance from (see the module docstring).
SAMPLED_VARIANCES = ("sigma2", "alpha")


def svdo_log_alpha(theta: torch.Tensor, log_sigma2: torch.Tensor) -> torch.Tensor:
    """log alpha_ij = clip(log sigma_ij^2 - log(theta_ij^2 + 1e-8), -8, 8), from sigma^2 = alpha theta^2."""
    return torch.clamp(log_sigma2 - torch.log(theta.square() + _THETA2_EPS), LOG_ALPHA_MIN, LOG_ALPHA_MAX)


class SVDOLayer(nn.Module):
    """Base of ``LinearSVDO`` and ``Conv2dSVDO``: the per-weight maths; a subclass supplies ``_affine`` (the geometry).

    ``train_clip=True`` is the authors' LeNet setting: the *mean* path of the training forward uses the pruned
    weights ``theta * weight_mask()`` while the variance path keeps every ``sigma^2``.
    """

    statistic_label = "log α"

    def __init__(self, weight_shape: tuple[int, ...], n_out: int, train_clip: bool = False,
                 sampled_variance: str = "sigma2"):
        super().__init__()
        if sampled_variance not in SAMPLED_VARIANCES:
            raise ValueError(f"sampled_variance must be one of {SAMPLED_VARIANCES}, got {sampled_variance!r}")
        self.sampled_variance = sampled_variance
        self.theta = nn.Parameter(torch.empty(weight_shape))
        self.log_sigma2 = nn.Parameter(torch.full(weight_shape, LOG_SIGMA2_INIT))
        self.bias = nn.Parameter(torch.zeros(n_out))
        self.prune_threshold = PRUNE_THRESHOLD
        self.train_clip = train_clip

    def _affine(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """x -> x * weight^T + bias (linear) or conv2d(x, weight) + bias."""
        raise NotImplementedError

    # ---- per-weight statistics ------------------------------------------------------------------------------------
    @property
    def weight_mu(self) -> torch.Tensor:
        """``theta`` under the name the group layers use for their weight means (read-only)."""
        return self.theta

    @property
    def n_weights(self) -> int:
        return self.theta.numel()

    def log_alpha(self) -> torch.Tensor:
        """Per-weight log dropout rate; a weight is pruned when it exceeds ``prune_threshold``.  # weight shape"""
        return svdo_log_alpha(self.theta, self.log_sigma2)

    def weight_mask(self) -> torch.Tensor:
        """Kept weights, ``log alpha <= prune_threshold`` (bool).  # weight shape"""
        return self.log_alpha() <= self.prune_threshold

    def posterior_mean(self) -> torch.Tensor:
        """E_q[w_ij] = theta_ij, unpruned.  # weight shape"""
        return self.theta

    def marginal_variance(self) -> torch.Tensor:
        """Var_q[w_ij] = sigma_ij^2 = exp(log_sigma2); it sets the bit precision.  # weight shape"""
        return self.log_sigma2.exp()

    def kl_divergence(self) -> torch.Tensor:
        """KL(q || p) ~= -sum_ij (k1 sigmoid(k2 + k3 log a_ij) - 0.5 log1p(1/a_ij) - k1) (SVDO Eq. 14), 0 at a = inf.

        The bias is deterministic and has no prior, as in the authors' code.
        """
        return jeffreys_kl_approx(self.log_alpha())

    def sampled_weight_variance(self) -> torch.Tensor:
        """The variance the training forward samples each weight with: ``sigma^2``, or ``exp(log alpha) theta^2``
        with log alpha clipped to [-8, 8] (the authors' layer), which vanishes with theta.  # weight shape"""
        if self.sampled_variance == "alpha":
            return self.log_alpha().exp() * self.theta.square()
        return self.log_sigma2.exp()

    # ---- forward --------------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self._affine(x, self.theta * self.weight_mask(), self.bias)
        theta = self.theta * self.weight_mask() if self.train_clip else self.theta
        mean = self._affine(x, theta, self.bias)
        variance = self._affine(x * x, self.sampled_weight_variance(), None)
        return torch.addcmul(mean, (variance + _VARIANCE_EPS).sqrt(), torch.randn_like(mean))


class LinearSVDO(SVDOLayer):
    """Fully connected sparse-VD layer: ``theta`` and ``log_sigma2`` are ``[out_features, in_features]``."""

    def __init__(self, in_features: int, out_features: int, *, train_clip: bool = False,
                 sampled_variance: str = "sigma2"):
        super().__init__((out_features, in_features), out_features, train_clip, sampled_variance)
        self.in_features = in_features
        self.out_features = out_features
        with torch.no_grad():
            self.theta.normal_(0.0, 0.01)  # Lasagne's init.Normal() default, the authors' Wfc

    def _affine(self, x, weight, bias):
        return F.linear(x, weight, bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, train_clip={self.train_clip}"


class Conv2dSVDO(SVDOLayer):
    """2-D convolutional sparse-VD layer: ``theta`` and ``log_sigma2`` are ``[out, in, kh, kw]``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1, *,
                 train_clip: bool = False, sampled_variance: str = "sigma2"):
        kernel = torch.nn.modules.utils._pair(kernel_size)
        super().__init__((out_channels, in_channels, *kernel), out_channels, train_clip, sampled_variance)
        set_conv_geometry(self, in_channels, out_channels, kernel_size, stride, padding, dilation)
        with torch.no_grad():
            nn.init.xavier_uniform_(self.theta)  # Lasagne's GlorotUniform: the same fans (channels * receptive field)

    def _affine(self, x, weight, bias):
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, train_clip={self.train_clip}")
