"""Group normal-Jeffreys layers ("group variational dropout"), paper §4.1.

Prior ``p(z) ∝ |z|^-1``, ``w_ij | z_g ~ N(0, z_g^2)``; posterior ``q(z_g) = N(z_mu, exp(z_logvar))`` (the additive
reparameterisation: the variance of z is a parameter of its own) and ``q(w~_ij) = N(weight_mu, exp(weight_logvar))``.
Parameter names are the authors' (``z_mu``, ``z_logvar``, ``weight_mu``, ``weight_logvar``, ``bias_mu``, ``bias_logvar``)
so their state dicts load as they are.

Usage as in the authors' tutorial::

    from bcrepro import layers as BayesianLayers
    fc1 = BayesianLayers.LinearGroupNJ(28 * 28, 300, clip_var=0.04)
    loss = F.cross_entropy(out, y) + sum(l.kl_divergence() for l in kl_layers) / N
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Conv2dGeometry, GroupScaleLayer, LinearGeometry

# Molchanov et al. (2017) Eq. 14 fit of the KL of the log-uniform prior; paper Eq. 9.
K1, K2, K3 = 0.63576, 1.87320, 1.48695
_LOG_ALPHA_EPS = 1e-8


def group_log_alpha(z_mu: torch.Tensor, z_logvar: torch.Tensor) -> torch.Tensor:
    """log alpha_g = log sigma_z^2 - log mu_z^2, the group's dropout rate (paper Eq. 6); large means prune."""
    return z_logvar - torch.log(z_mu.pow(2) + _LOG_ALPHA_EPS)


class _JeffreysKL(torch.autograd.Function):
    """Eq. 9 summed, with its gradient in closed form: d/dlog a = -(k1 k3 s (1 - s) + sigmoid(-log a) / 2),
    s = sigmoid(k2 + k3 log a). Sparse VD evaluates it on every weight, so the dozen autograd nodes of the plain
    expression were a whole-matrix pass each."""

    @staticmethod
    def forward(ctx, log_alpha):
        s = torch.sigmoid(K2 + K3 * log_alpha)
        ctx.save_for_backward(log_alpha, s)
        # -(k1 s - softplus(-log a) / 2 - k1) = k1 (1 - s) + softplus(-log a) / 2
        return K1 * (log_alpha.numel() - s.sum()) + 0.5 * F.softplus(-log_alpha).sum()

    @staticmethod
    def backward(ctx, grad):
        log_alpha, s = ctx.saved_tensors
        slope = torch.sigmoid(-log_alpha).mul_(0.5).addcmul_(s, 1.0 - s, value=K1 * K3)
        return slope.mul_(-grad)


def jeffreys_kl_approx(log_alpha: torch.Tensor) -> torch.Tensor:
    """KL(q(z) || p(z)) ~= -sum(k1 sigmoid(k2 + k3 log a) - 0.5 softplus(-log a) - k1) (paper Eq. 9).

    Exact only up to a constant (the prior is improper); it decreases monotonically to 0 as alpha -> infinity.
    """
    return _JeffreysKL.apply(log_alpha)


class GroupNJ(GroupScaleLayer):
    """The normal-Jeffreys family of q(z); combined with a geometry below."""

    statistic_label = "log α"

    def _init_scales(self, n_groups: int) -> None:
        self.z_mu = nn.Parameter(torch.empty(n_groups).normal_(1.0, 1e-2))
        self.z_logvar = nn.Parameter(torch.empty(n_groups).normal_(-9.0, 1e-2))

    @property
    def n_groups(self) -> int:
        return self.z_mu.numel()

    def sample_z(self, batch: int) -> torch.Tensor:
        noise = torch.randn(batch, self.n_groups, device=self.z_mu.device, dtype=self.z_mu.dtype)
        return torch.addcmul(self.z_mu, (0.5 * self.z_logvar).exp(), noise)  # [batch, groups]

    def z_mean(self) -> torch.Tensor:
        return self.z_mu

    def z_variance(self) -> torch.Tensor:
        return self.z_logvar.exp()

    def log_alpha(self) -> torch.Tensor:
        return group_log_alpha(self.z_mu, self.z_logvar)

    # The authors' name for the same statistic.
    get_log_dropout_rates = log_alpha

    def group_statistic(self) -> torch.Tensor:
        return self.log_alpha()

    def z_kl(self) -> torch.Tensor:
        return jeffreys_kl_approx(self.log_alpha())


class LinearGroupNJ(LinearGeometry, GroupNJ):
    """Fully connected GNJ layer; groups are the ``in_features`` input units."""

    def __init__(self, in_features: int, out_features: int, cuda: bool = False, init_weight=None, init_bias=None,
                 clip_var: float | None = None, clip_mode: str = "parameter"):
        # ``cuda`` is accepted for the authors' signature; move the model with ``.to(device)`` instead.
        super().__init__(clip_var=clip_var, clip_mode=clip_mode)
        self._setup_geometry(in_features, out_features)
        self._init_weights((out_features, in_features), out_features, in_features, init_weight, init_bias,
                           uniform=False)
        self._init_scales(in_features)


class Conv2dGroupNJ(Conv2dGeometry, GroupNJ):
    """2-D convolutional GNJ layer; groups are the ``out_channels`` filters."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, cuda: bool = False, init_weight=None, init_bias=None,
                 clip_var: float | None = None, clip_mode: str = "parameter"):
        if groups != 1:
            raise ValueError(f"Conv2dGroupNJ supports groups=1 only, got groups={groups}")
        super().__init__(clip_var=clip_var, clip_mode=clip_mode)
        self._setup_geometry(in_channels, out_channels, kernel_size, stride, padding, dilation)
        kh, kw = self.kernel_size
        self._init_weights((out_channels, in_channels, kh, kw), out_channels, in_channels * kh * kw, init_weight,
                           init_bias, uniform=True)
        self._init_scales(out_channels)
