"""What every group-sparse Bayesian layer shares.

A group layer's weights are ``w_ij = z_g * w~_ij`` where ``z_g`` is a scale shared by one group ``g`` (an input unit of a
linear layer, an output filter of a conv layer) and ``w~_ij ~ N(weight_mu, exp(weight_logvar))`` (paper Eq. 6 and its
horseshoe analogue). A family (normal-Jeffreys, horseshoe) only says how ``q(z)`` looks: how to sample it, its first two
moments, its KL and the pruning statistic. The geometry (linear or conv) says how ``z`` meets the activations.

Conventions fixed here, for every family and geometry:

- training forward: local reparameterisation (Kingma et al. 2015) with one ``z`` per example and group;
- eval forward: the posterior-mean network, ``E[w] = E[z] * weight_mu``;
- conv layers scale the whole output of a filter, bias included, by ``z``: ``y_c = z_c (W~_c * x + b~_c)``. A pruned filter
  then outputs exactly zero, so removing it is exact, and the eval pass and the deterministic (masked, rounded) pass
  agree. The authors' code scaled the bias by ``z`` in the stochastic pass but not in the deterministic one (bug 2 in
  docs/decisions.md); here ``posterior_bias()`` is what both use;
- linear layers scale inputs, so their bias is not scaled (as the authors);
- biases get an ``N(0, 1)`` prior as in the authors' code (the paper does not say); they are never pruned on their own.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .lrt import MIN_VARIANCE as _MIN_VARIANCE
from .lrt import conv2d_lrt, linear_lrt, weight_variance_and_kl


class _StandardNormalKL(torch.autograd.Function):
    """Eq. 8 with its gradient in closed form: d/dmu = mu, d/dlogvar = (exp(logvar) - 1) / 2.

    The weight KL touches every weight twice per step; written as a handful of autograd ops it allocates and walks
    whole weight matrices about a dozen times (it was the largest elementwise cost of a BC step on CPU).
    """

    @staticmethod
    def forward(ctx, mu, logvar):
        ctx.save_for_backward(mu, logvar)
        return weight_variance_and_kl(mu, logvar)[1]

    @staticmethod
    def backward(ctx, grad):
        mu, logvar = ctx.saved_tensors
        return grad * mu, (0.5 * grad) * torch.expm1(logvar)


def standard_normal_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) summed over all entries (paper Eq. 8; z cancels out of it)."""
    return _StandardNormalKL.apply(mu, logvar)


class _WeightKLOfLastStep:
    """The weight KL computed by the last training forward, for ``kl_divergence()`` to reuse once.

    The forward needs ``exp(weight_logvar)`` and the KL needs it too; computing both in one fused node
    (``lrt.linear_lrt``/``conv2d_lrt``) saves a pass over every weight and merges their gradients. The entry is used
    only if the weights have not changed since (their version counters), grad mode is on and its graph has not been
    backpropagated yet; otherwise ``kl_divergence()`` computes the KL afresh, which gives the same value. Copies and
    pickles of a layer start empty (a tensor inside a graph cannot be copied).
    """

    def __init__(self):
        self._entry = None

    def put(self, kl: torch.Tensor, *params: torch.Tensor) -> None:
        self._entry = (kl, tuple(p._version for p in params)) if kl.requires_grad else None

    def take(self, *params: torch.Tensor) -> torch.Tensor | None:
        entry, self._entry = self._entry, None
        if entry is None or not torch.is_grad_enabled():
            return None
        kl, versions = entry
        if versions != tuple(p._version for p in params) or getattr(kl.grad_fn, "backward_done", False):
            return None
        return kl

    def __deepcopy__(self, memo):
        return _WeightKLOfLastStep()

    def __getstate__(self):
        return {"_entry": None}


CLIP_MODES = ("parameter", "forward")  # how clip_var bounds the weight variances


class GroupScaleLayer(nn.Module):
    """Base of ``LinearGroup*`` and ``Conv2dGroup*``.

    Subclasses provide the geometry (``_broadcast_groups``, ``_lrt_moments``, ``deterministic_forward``) through
    ``LinearGeometry``/``Conv2dGeometry`` and the family of ``q(z)`` (``sample_z``, ``z_mean``, ``z_variance``,
    ``z_kl``, ``group_statistic``).
    """

    #: "in" when groups are input units (linear), "out" when they are output channels (conv).
    group_axis: str
    #: How figures and reports name ``group_statistic()``.
    statistic_label: str
    #: Training forward through the fused functions of ``lrt.py`` (True) or autograd over ``_lrt_moments`` (False,
    #: the reference: same values and gradients for the same random state, more passes over memory).
    fused_step: bool = True

    def __init__(self, clip_var: float | None = None, clip_mode: str = "parameter"):
        super().__init__()
        if clip_mode not in CLIP_MODES:
            raise ValueError(f"clip_mode must be one of {CLIP_MODES}, got {clip_mode!r}")
        self.clip_var = clip_var
        self.clip_mode = clip_mode
        # The authors' deterministic mode: eval-only forward with ``post_weight_mu`` (set by
        # ``compute_posterior_params`` and possibly overwritten with rounded weights, as their example.py does).
        self.deterministic = False
        self._weight_kl_of_last_step = _WeightKLOfLastStep()

    # ---- the family of q(z): implemented by GroupNJ / GroupHS --------------------------------------------------
    @property
    def n_groups(self) -> int:
        raise NotImplementedError

    def sample_z(self, batch: int) -> torch.Tensor:
        """One draw of z per example and group, differentiable in the variational parameters.  # [batch, groups]"""
        raise NotImplementedError

    def z_mean(self) -> torch.Tensor:
        """E_q[z_g].  # [groups]"""
        raise NotImplementedError

    def z_variance(self) -> torch.Tensor:
        """Var_q[z_g].  # [groups]"""
        raise NotImplementedError

    def z_kl(self) -> torch.Tensor:
        """KL of the scale part of the posterior from its prior (scalar)."""
        raise NotImplementedError

    def group_statistic(self) -> torch.Tensor:
        """Per-group pruning statistic: a group is kept iff its statistic is below the layer's threshold. # [groups]"""
        raise NotImplementedError

    # ---- shared maths -------------------------------------------------------------------------------------------
    def kl_divergence(self) -> torch.Tensor:
        """KL(q || p) of this layer: scales, weights (Eq. 8) and biases (N(0,1) prior, as the authors' code)."""
        weight_kl = self._weight_kl_of_last_step.take(self.weight_mu, self.weight_logvar)
        if weight_kl is None:
            weight_kl = standard_normal_kl(self.weight_mu, self.weight_logvar)
        return self.z_kl() + weight_kl + standard_normal_kl(self.bias_mu, self.bias_logvar)

    def posterior_mean(self) -> torch.Tensor:
        """E_q[w_ij] = E[z_g] * weight_mu (the test-time weights).  # weight shape"""
        return self._broadcast_groups(self.z_mean()) * self.weight_mu

    def marginal_variance(self) -> torch.Tensor:
        """Var_q[w_ij] = Var[z](sigma^2 + mu^2) + E[z]^2 sigma^2 for w = z * w~ with z, w~ independent.

        This is the paper's V(w)_NJ (GNJ) and V(w)_HS (GHS) in one expression; it sets the bit precision.
        """
        z_mean = self._broadcast_groups(self.z_mean())
        z_var = self._broadcast_groups(self.z_variance())
        w_var = self.sampled_weight_logvar().exp()
        return z_var * (w_var + self.weight_mu.pow(2)) + z_mean.pow(2) * w_var

    def sampled_weight_logvar(self) -> torch.Tensor:
        """The weight log-variances the network samples with: clipped at ``clip_var`` (a no-op for ``"parameter"``
        clipping, whose parameters never exceed it after a step). The posterior the forward pass uses, so the bit
        precision is read from it."""
        if self.clip_var is None:
            return self.weight_logvar
        return self.weight_logvar.clamp(max=math.log(self.clip_var))

    def posterior_bias(self) -> torch.Tensor:
        """The bias of the posterior-mean network.  # [out]"""
        if self.group_axis == "out":
            return self.z_mean() * self.bias_mu
        return self.bias_mu

    def compute_posterior_params(self):
        """The authors' name: (E[w], Var[w]), also kept as ``post_weight_mu`` / ``post_weight_var``."""
        self.post_weight_mu, self.post_weight_var = self.posterior_mean(), self.marginal_variance()
        return self.post_weight_mu, self.post_weight_var

    @torch.no_grad()
    def clip_variances(self) -> None:
        """Clamp weight and bias variances to at most ``clip_var`` (the authors clip after every optimiser step).

        With ``clip_mode="forward"`` the parameters are left alone: the training forward clips the variance it
        samples with, and the KL sees the unclipped value (as Louizos and Welling's multiplicative normalising flows
        code does), so a weight whose variance grows past the bound still earns the KL's reward for it."""
        if self.clip_var is not None and self.clip_mode == "parameter":
            bound = math.log(self.clip_var)
            self.weight_logvar.clamp_(max=bound)
            self.bias_logvar.clamp_(max=bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deterministic:
            if self.training:
                raise RuntimeError("deterministic mode is for evaluation: call .eval() first")
            return self.deterministic_forward(x, self.post_weight_mu, self.posterior_bias())
        if not self.training:
            return self.deterministic_forward(x, self.posterior_mean(), self.posterior_bias())
        z = self.sample_z(x.shape[0])
        weight_logvar, bias_logvar = self.weight_logvar, self.bias_logvar
        clip_forward = self.clip_var is not None and self.clip_mode == "forward"
        if clip_forward:  # the sampling sees the clipped variance; kl_divergence() the parameter itself
            bound = math.log(self.clip_var)
            weight_logvar, bias_logvar = weight_logvar.clamp(max=bound), bias_logvar.clamp(max=bound)
        if not self.fused_step:
            mean, variance = self._lrt_moments(x, z, weight_logvar, bias_logvar)
            return torch.addcmul(mean, variance.clamp_min(_MIN_VARIANCE).sqrt(), torch.randn_like(mean))
        out, weight_kl = self._lrt_sample(x, z, bias_logvar.exp(), weight_logvar)
        if not clip_forward:
            self._weight_kl_of_last_step.put(weight_kl, self.weight_mu, self.weight_logvar)
        return out

    # ---- parameters shared by every family ------------------------------------------------------------------------
    def _init_weights(self, weight_shape, n_out, fan_in, init_weight, init_bias, uniform: bool) -> None:
        """Create weight/bias posteriors with the authors' initialisation (means from ``init_*`` when given)."""
        self.weight_mu = nn.Parameter(torch.empty(weight_shape))
        self.weight_logvar = nn.Parameter(torch.empty(weight_shape))
        self.bias_mu = nn.Parameter(torch.empty(n_out))
        self.bias_logvar = nn.Parameter(torch.empty(n_out))
        with torch.no_grad():
            stdv = 1.0 / math.sqrt(fan_in)
            if init_weight is not None:
                self.weight_mu.copy_(torch.as_tensor(init_weight, dtype=torch.float32).reshape(weight_shape))
            elif uniform:
                self.weight_mu.uniform_(-stdv, stdv)
            else:
                self.weight_mu.normal_(0.0, stdv)
            if init_bias is not None:
                self.bias_mu.copy_(torch.as_tensor(init_bias, dtype=torch.float32).reshape(n_out))
            else:
                self.bias_mu.zero_()
            self.weight_logvar.normal_(-9.0, 1e-2)
            self.bias_logvar.normal_(-9.0, 1e-2)


class LinearGeometry:
    """Groups are input units; z scales the inputs: h = (x * z) W~^T + b~."""

    group_axis = "in"

    def _setup_geometry(self, in_features: int, out_features: int) -> None:
        self.in_features = in_features
        self.out_features = out_features

    def _broadcast_groups(self, per_group: torch.Tensor) -> torch.Tensor:
        return per_group.view(1, -1)  # [1, in] against weight [out, in]

    def _lrt_moments(self, x, z, weight_logvar=None, bias_logvar=None):
        weight_logvar = self.weight_logvar if weight_logvar is None else weight_logvar
        bias_logvar = self.bias_logvar if bias_logvar is None else bias_logvar
        xz = x * z  # [batch, in]
        mean = F.linear(xz, self.weight_mu, self.bias_mu)
        variance = F.linear(xz.square(), weight_logvar.exp(), bias_logvar.exp())
        return mean, variance

    def _lrt_sample(self, x, z, bias_var, weight_logvar=None):
        weight_logvar = self.weight_logvar if weight_logvar is None else weight_logvar
        return linear_lrt(x, z, self.weight_mu, weight_logvar, self.bias_mu, bias_var)

    @staticmethod
    def deterministic_forward(x, weight, bias):
        return F.linear(x, weight, bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, clip_var={self.clip_var}"


def set_conv_geometry(module: nn.Module, in_channels, out_channels, kernel_size, stride, padding, dilation) -> None:
    """The attributes of an ``nn.Conv2d`` that compression and slimming read (pairs where torch uses pairs)."""
    as_pair = torch.nn.modules.utils._pair
    module.in_channels = in_channels
    module.out_channels = out_channels
    module.kernel_size = as_pair(kernel_size)
    module.stride = as_pair(stride)
    module.padding = as_pair(padding)
    module.dilation = as_pair(dilation)


class Conv2dGeometry:
    """Groups are output filters; z scales a filter's whole output: y_c = z_c (W~_c * x + b~_c)."""

    group_axis = "out"

    def _setup_geometry(self, in_channels, out_channels, kernel_size, stride, padding, dilation):
        set_conv_geometry(self, in_channels, out_channels, kernel_size, stride, padding, dilation)

    def _broadcast_groups(self, per_group: torch.Tensor) -> torch.Tensor:
        return per_group.view(-1, 1, 1, 1)  # [out, 1, 1, 1] against weight [out, in, kh, kw]

    def _conv(self, x, weight, bias):
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation)

    def _lrt_moments(self, x, z, weight_logvar=None, bias_logvar=None):
        weight_logvar = self.weight_logvar if weight_logvar is None else weight_logvar
        bias_logvar = self.bias_logvar if bias_logvar is None else bias_logvar
        z = z[:, :, None, None]  # [batch, out, 1, 1]
        mean = self._conv(x, self.weight_mu, self.bias_mu) * z
        variance = self._conv(x * x, weight_logvar.exp(), bias_logvar.exp()) * (z * z)
        return mean, variance

    def _lrt_sample(self, x, z, bias_var, weight_logvar=None):
        weight_logvar = self.weight_logvar if weight_logvar is None else weight_logvar
        return conv2d_lrt(x, z, self.weight_mu, weight_logvar, self.bias_mu, bias_var, self.stride, self.padding,
                          self.dilation)

    def deterministic_forward(self, x, weight, bias):
        return self._conv(x, weight, bias)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, clip_var={self.clip_var}")
