"""Group horseshoe layers, paper §4.2 (non-centred parameterisation, Appendix Eqs. 34–37).

Prior: ``s ~ C+(0, tau0)`` per layer, ``z~_g ~ C+(0, 1)`` per group, ``w~_ij ~ N(0, 1)``, ``w_ij = w~_ij z~_g s``.
Each half-Cauchy is split into a Gamma and an inverse Gamma so that every KL is closed form:
``s_a ~ G(1/2, tau0^2)``, ``s_b ~ IG(1/2, 1)``, ``alpha_g ~ G(1/2, 1)``, ``beta_g ~ IG(1/2, 1)`` (scale
parameterisation) and ``z_g = sqrt(s_a s_b alpha_g beta_g)``. The posterior is log-normal on each of the four and
Gaussian on ``w~``. Products of log-normals are log-normal, so::

    log z_g ~ N(mu_g, var_g),   mu_g = (mu_sa + mu_sb + mu_alpha_g + mu_beta_g) / 2,
                                var_g = (var_sa + var_sb + var_alpha_g + var_beta_g) / 4.

Sampling: the layer-wide part ``log s`` is drawn once per example and shared by all groups, the group part ``log z~_g``
per example and group; so draws of different groups are correlated exactly as in the model.

The s_a KL (``sa_kl``): the paper prints ``-KL = log tau0 - tau0^-1 E[s_a] + ...``, which is the Gamma KL for a scale
``tau0`` (global scale sqrt(tau0) ~ 3e-3), not ``tau0^2`` (global scale tau0 = 1e-5); docs/method.md.
``sa_kl="exact"`` (the default) is the KL of the prior the paper states, so the model is the one written down, with
tau0 = 1e-5 meaning what it says; ``sa_kl="printed"`` is the printed formula verbatim, constant included.

Pruning statistic (``group_statistic``, ``statistic="magnitude"``, the default): ``-E_q[log z_g^2] = -2 mu_g``. The
horseshoe prunes by shrinking a group's scale towards s ~ tau0, while a kept group's scale escapes to O(0.1–1); the
statistic is the log-magnitude of that scale, bimodal with a gap of many nats (a group's prior-like posterior sits near
``-2 log tau0``), and a group is kept iff it is below the threshold, as for GNJ's log alpha. ``log_alpha()`` is the
log-normal noise ratio ``log(Var z / E[z]^2) = log(exp(var_g) - 1)``; ``statistic="noise"`` prunes by it instead.
That is the statistic for a conv followed by batch norm (VGG): batch norm rescales each channel, so the magnitude of z
carries no information there (shrinking it costs nothing), while its noise ratio is scale-free and survives the
normalisation.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .base import Conv2dGeometry, GroupScaleLayer, LinearGeometry

TAU0 = 1e-5
SA_KL_CHOICES = ("exact", "printed")
STATISTIC_CHOICES = ("magnitude", "noise")
_HALF_LOG_2E = 0.5 * (1.0 + math.log(2.0))


def lognormal_kl_gamma_half(mu: torch.Tensor, logvar: torch.Tensor, log_scale: float) -> torch.Tensor:
    """KL(LN(mu, exp(logvar)) || Gamma(shape 1/2, scale theta)) summed; ``log_scale`` = log theta.

    -H[q] - E_q log p with E_q[s] = exp(mu + var/2): ``-mu/2 + E[s]/theta + log(theta)/2 - logvar/2 - (1 + log 2)/2``.
    """
    mean_over_scale = torch.exp(mu + 0.5 * logvar.exp() - log_scale)
    return (-0.5 * mu + mean_over_scale + 0.5 * log_scale - 0.5 * logvar - _HALF_LOG_2E).sum()


def lognormal_kl_invgamma_half(mu: torch.Tensor, logvar: torch.Tensor, log_scale: float = 0.0) -> torch.Tensor:
    """KL(LN(mu, exp(logvar)) || InvGamma(shape 1/2, scale b)) summed; ``log_scale`` = log b.

    With E_q[1/s] = exp(var/2 - mu): ``mu/2 + b E[1/s] - log(b)/2 - logvar/2 - (1 + log 2)/2`` (Eqs. 35, 37).
    """
    inverse_mean = torch.exp(0.5 * logvar.exp() - mu + log_scale)
    return (0.5 * mu + inverse_mean - 0.5 * log_scale - 0.5 * logvar - _HALF_LOG_2E).sum()


def printed_sa_kl(mu: torch.Tensor, logvar: torch.Tensor, tau0: float) -> torch.Tensor:
    """The paper's printed s_a term (Eq. 34) negated: ``-log tau0 + E[s_a]/tau0 - (mu + logvar + 1 + log 2)/2``."""
    log_tau0 = math.log(tau0)
    return (-log_tau0 + torch.exp(mu + 0.5 * logvar.exp() - log_tau0) - 0.5 * mu - 0.5 * logvar
            - _HALF_LOG_2E).sum()


class GroupHS(GroupScaleLayer):
    """The horseshoe family of q(z); combined with a geometry below."""

    @property
    def statistic_label(self) -> str:
        return "log α" if self.statistic == "noise" else "−E[log z²]"

    def _init_scales(self, n_groups: int, tau0: float, sa_kl: str, statistic: str = "magnitude") -> None:
        if sa_kl not in SA_KL_CHOICES:
            raise ValueError(f"sa_kl must be one of {SA_KL_CHOICES}, got {sa_kl!r}")
        if statistic not in STATISTIC_CHOICES:
            raise ValueError(f"statistic must be one of {STATISTIC_CHOICES}, got {statistic!r}")
        self.statistic = statistic
        if not tau0 > 0:
            raise ValueError(f"tau0 must be positive, got {tau0}")
        self.tau0 = tau0
        self.sa_kl = sa_kl
        # Start s_a at its prior's optimum (E[s_a] = theta/2) and let beta carry the rest, so E[z] ~= 1 at the start
        # (as the GNJ init z_mu ~ 1) and no KL term starts off huge; beta's inverse-Gamma tail makes that cheap.
        log_theta = math.log(tau0) * (2.0 if sa_kl == "exact" else 1.0)
        sa_start = log_theta - math.log(2.0)
        self.sa_mu = nn.Parameter(torch.full((1,), sa_start))
        self.sa_logvar = nn.Parameter(torch.full((1,), -9.0))
        self.sb_mu = nn.Parameter(torch.zeros(1))
        self.sb_logvar = nn.Parameter(torch.full((1,), -9.0))
        self.alpha_mu = nn.Parameter(torch.empty(n_groups).normal_(0.0, 1e-2))
        self.alpha_logvar = nn.Parameter(torch.empty(n_groups).normal_(-9.0, 1e-2))
        self.beta_mu = nn.Parameter(torch.empty(n_groups).normal_(-sa_start, 1e-2))
        self.beta_logvar = nn.Parameter(torch.empty(n_groups).normal_(-9.0, 1e-2))

    @property
    def n_groups(self) -> int:
        return self.alpha_mu.numel()

    # log s = (log s_a + log s_b) / 2 and log z~_g = (log alpha_g + log beta_g) / 2
    def _log_s_moments(self):
        return 0.5 * (self.sa_mu + self.sb_mu), 0.25 * (self.sa_logvar.exp() + self.sb_logvar.exp())  # [1], [1]

    def _log_ztilde_moments(self):
        return (0.5 * (self.alpha_mu + self.beta_mu),
                0.25 * (self.alpha_logvar.exp() + self.beta_logvar.exp()))  # [groups], [groups]

    def log_z_moments(self):
        """Mean and variance of log z_g under q.  # [groups], [groups]"""
        s_mean, s_var = self._log_s_moments()
        g_mean, g_var = self._log_ztilde_moments()
        return s_mean + g_mean, s_var + g_var

    def sample_z(self, batch: int) -> torch.Tensor:
        s_mean, s_var = self._log_s_moments()
        g_mean, g_var = self._log_ztilde_moments()
        s_noise = torch.randn(batch, 1, device=s_mean.device, dtype=s_mean.dtype)
        g_noise = torch.randn(batch, self.n_groups, device=g_mean.device, dtype=g_mean.dtype)
        # per group, then the layer-wide part (one per example) added in place: two passes over [batch, groups]
        log_z = torch.addcmul(g_mean, g_var.sqrt(), g_noise).add_(torch.addcmul(s_mean, s_var.sqrt(), s_noise))
        return log_z.exp_()  # [batch, groups]

    def z_mean(self) -> torch.Tensor:
        mean, var = self.log_z_moments()
        return torch.exp(mean + 0.5 * var)

    def z_variance(self) -> torch.Tensor:
        mean, var = self.log_z_moments()
        return torch.expm1(var) * torch.exp(2.0 * mean + var)

    def log_alpha(self) -> torch.Tensor:
        _, var = self.log_z_moments()
        return torch.log(torch.expm1(var))

    def group_statistic(self) -> torch.Tensor:
        if self.statistic == "noise":
            return self.log_alpha()
        mean, _ = self.log_z_moments()
        return -2.0 * mean

    def z_kl(self) -> torch.Tensor:
        if self.sa_kl == "exact":
            kl_sa = lognormal_kl_gamma_half(self.sa_mu, self.sa_logvar, 2.0 * math.log(self.tau0))
        else:
            kl_sa = printed_sa_kl(self.sa_mu, self.sa_logvar, self.tau0)
        return (kl_sa
                + lognormal_kl_invgamma_half(self.sb_mu, self.sb_logvar)
                + lognormal_kl_gamma_half(self.alpha_mu, self.alpha_logvar, 0.0)
                + lognormal_kl_invgamma_half(self.beta_mu, self.beta_logvar))


class LinearGroupHS(LinearGeometry, GroupHS):
    """Fully connected group-horseshoe layer; groups are the ``in_features`` input units."""

    def __init__(self, in_features: int, out_features: int, init_weight=None, init_bias=None,
                 clip_var: float | None = None, clip_mode: str = "parameter", tau0: float = TAU0, sa_kl: str = "exact",
                 statistic: str = "magnitude"):
        super().__init__(clip_var=clip_var, clip_mode=clip_mode)
        self._setup_geometry(in_features, out_features)
        self._init_weights((out_features, in_features), out_features, in_features, init_weight, init_bias,
                           uniform=False)
        self._init_scales(in_features, tau0, sa_kl, statistic)


class Conv2dGroupHS(Conv2dGeometry, GroupHS):
    """2-D convolutional group-horseshoe layer; groups are the ``out_channels`` filters."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 init_weight=None, init_bias=None, clip_var: float | None = None, clip_mode: str = "parameter", tau0: float = TAU0,
                 sa_kl: str = "exact", statistic: str = "magnitude"):
        super().__init__(clip_var=clip_var, clip_mode=clip_mode)
        self._setup_geometry(in_channels, out_channels, kernel_size, stride, padding, dilation)
        kh, kw = self.kernel_size
        self._init_weights((out_channels, in_channels, kh, kw), out_channels, in_channels * kh * kw, init_weight,
                           init_bias, uniform=True)
        self._init_scales(out_channels, tau0, sa_kl, statistic)
