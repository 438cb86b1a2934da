"""Sparse VD layers (Molchanov et al. 2017) against the claims of docs/baselines.md §5: the KL fit, the local
reparameterisation, the pruned test-time network and the log alpha clip.

Reference values are computed here, independently of the module: the KL from the published formula in plain
``math``, the pre-activation moments by sampling whole weight matrices, the eval output with a hand-built mask.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bcrepro.layers import Conv2dSVDO, LinearSVDO

DTYPE = torch.float64
K1, K2, K3 = 0.63576, 1.87320, 1.48695  # Molchanov et al. (2017) Eq. 14
N_SAMPLES = 20_000  # Monte Carlo draws of each pre-activation
N_SE = 6.0  # tolerance in standard errors: a wrong std (e.g. a missing sqrt) is tens of standard errors off


def published_kl(log_alpha: float) -> float:
    """KL of one weight: -(k1 sigmoid(k2 + k3 la) - 0.5 log(1 + exp(-la)) - k1), written out."""
    sigmoid = 1.0 / (1.0 + math.exp(-(K2 + K3 * log_alpha)))
    return -(K1 * sigmoid - 0.5 * math.log1p(math.exp(-log_alpha)) - K1)


def set_log_alpha(layer, theta: torch.Tensor, log_alpha: torch.Tensor) -> None:
    """Give the layer weight means ``theta`` and variances with unclipped log alpha = ``log_alpha``."""
    with torch.no_grad():
        layer.theta.copy_(theta)
        layer.log_sigma2.copy_(log_alpha + torch.log(theta.square() + 1e-8))


def away_from_zero(shape, generator) -> torch.Tensor:
    """Weight means with |theta| in [0.2, 1], so that log sigma^2 = -10 keeps them far below the threshold."""
    magnitude = 0.2 + 0.8 * torch.rand(shape, generator=generator, dtype=DTYPE)
    sign = torch.randint(0, 2, shape, generator=generator).to(DTYPE) * 2 - 1
    return sign * magnitude


# ---- the KL approximation ------------------------------------------------------------------------------------------
def test_svdo_kl_vanishes_at_large_alpha():
    layer = LinearSVDO(6, 4).to(DTYPE)
    theta = away_from_zero((4, 6), torch.Generator().manual_seed(0))
    set_log_alpha(layer, theta, torch.full_like(theta, 10.0))
    # log alpha = 10 is clipped to the reference code's bound 8 before the KL sees it.
    assert torch.allclose(layer.log_alpha(), torch.full_like(theta, 8.0))
    kl = layer.kl_divergence().item()
    assert kl == pytest.approx(layer.n_weights * published_kl(8.0), rel=1e-9)
    assert abs(kl) / layer.n_weights < 0.01
    assert published_kl(10.0) < 0.01  # the formula itself, unclipped


def test_svdo_kl_decreases_monotonically_in_log_alpha():
    layer = LinearSVDO(3, 2).to(DTYPE)
    theta = torch.ones(2, 3, dtype=DTYPE)
    grid = torch.linspace(-7.5, 7.5, 31, dtype=DTYPE)
    kls = []
    for log_alpha in grid:
        set_log_alpha(layer, theta, torch.full_like(theta, log_alpha.item()))
        kls.append(layer.kl_divergence().item())
    assert all(later < earlier for earlier, later in zip(kls, kls[1:])), kls
    expected = [layer.n_weights * published_kl(la) for la in grid.tolist()]
    assert kls == pytest.approx(expected, rel=1e-6)


def test_svdo_kl_matches_hand_evaluated_values():
    # log alpha = 0: k1 - k1 / (1 + exp(-1.8732)) + 0.5 ln 2 = 0.63576 - 0.63576 / 1.1536313 + 0.3465736 = 0.4312390
    # log alpha = -2: k1 - k1 / (1 + exp(1.1007)) + 0.5 ln(1 + e^2) = 0.63576 - 0.1586942 + 1.0634640 = 1.5405327
    layer = LinearSVDO(2, 1).to(DTYPE)
    theta = torch.tensor([[0.5, -0.3]], dtype=DTYPE)
    set_log_alpha(layer, theta, torch.tensor([[0.0, -2.0]], dtype=DTYPE))
    assert layer.kl_divergence().item() == pytest.approx(0.4312390 + 1.5405327, abs=1e-6)


# ---- local reparameterisation ---------------------------------------------------------------------------------------
def assert_same_moments(lrt: torch.Tensor, sampled: torch.Tensor) -> None:
    """Two [samples, ...] Monte Carlo sets of pre-activations have the same mean and variance per entry."""
    n = lrt.shape[0]
    mean_a, mean_b = lrt.mean(0), sampled.mean(0)
    var_a, var_b = lrt.var(0), sampled.var(0)
    mean_se = ((var_a + var_b) / n).sqrt()
    var_se = ((2.0 / (n - 1)) * (var_a.square() + var_b.square())).sqrt()  # Gaussian variance estimates
    assert ((mean_a - mean_b).abs() < N_SE * mean_se).all(), (mean_a - mean_b).abs().max()
    assert ((var_a - var_b).abs() < N_SE * var_se).all(), ((var_a - var_b).abs() / var_se).max()


def random_posterior(layer, generator) -> None:
    """Variances large enough (log sigma^2 in [-3, -1]) that the noise term is a large part of the output."""
    with torch.no_grad():
        layer.theta.copy_(torch.randn(layer.theta.shape, generator=generator, dtype=DTYPE))
        layer.log_sigma2.copy_(-3.0 + 2.0 * torch.rand(layer.theta.shape, generator=generator, dtype=DTYPE))
        layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator, dtype=DTYPE))


def test_svdo_linear_lrt_matches_sampled_weights():
    generator = torch.Generator().manual_seed(1)
    layer = LinearSVDO(5, 3).to(DTYPE).train()
    random_posterior(layer, generator)
    x = torch.randn(4, 5, generator=generator, dtype=DTYPE)  # [batch, in]
    torch.manual_seed(2)
    with torch.no_grad():
        lrt = layer(x.repeat(N_SAMPLES, 1)).view(N_SAMPLES, 4, 3)  # [samples, batch, out]
        noise = torch.randn(N_SAMPLES, 3, 5, generator=generator, dtype=DTYPE)
        weights = layer.theta + layer.log_sigma2.exp().sqrt() * noise  # [samples, out, in]
        sampled = torch.einsum("bi,soi->sbo", x, weights) + layer.bias
    assert_same_moments(lrt, sampled)


def test_svdo_conv_lrt_matches_sampled_weights():
    generator = torch.Generator().manual_seed(3)
    layer = Conv2dSVDO(2, 3, kernel_size=3, stride=2, padding=2, dilation=2).to(DTYPE).train()
    random_posterior(layer, generator)
    x = torch.randn(1, 2, 7, 7, generator=generator, dtype=DTYPE)
    n = N_SAMPLES // 4
    torch.manual_seed(4)
    with torch.no_grad():
        lrt = layer(x.expand(n, -1, -1, -1))  # [samples, out, 4, 4]
        noise = torch.randn(n, *layer.theta.shape, generator=generator, dtype=DTYPE)
        weights = layer.theta + layer.log_sigma2.exp().sqrt() * noise  # [samples, out, in, kh, kw]
        # One weight draw per sample: stack the samples along channels and convolve group-wise.
        stacked = F.conv2d(x.repeat(1, n, 1, 1), weights.reshape(n * 3, 2, 3, 3), layer.bias.repeat(n),
                           stride=2, padding=2, dilation=2, groups=n)
        sampled = stacked.view(n, 3, *stacked.shape[-2:])
    assert lrt.shape == sampled.shape == (n, 3, 4, 4)
    assert_same_moments(lrt, sampled)


@pytest.mark.parametrize("train_clip", [False, True])
def test_svdo_training_forward_is_the_lrt_formula(train_clip):
    """Same noise, exact formula: mean from theta (masked if train_clip), variance from all sigma^2, bias in mean."""
    generator = torch.Generator().manual_seed(5)
    layer = LinearSVDO(6, 4, train_clip=train_clip).to(DTYPE).train()
    theta = away_from_zero((4, 6), generator)
    log_alpha = torch.full_like(theta, -2.0)
    log_alpha[:, :2] = 5.0  # pruned, yet still noisy in training
    set_log_alpha(layer, theta, log_alpha)
    with torch.no_grad():
        layer.bias.copy_(torch.randn(4, generator=generator, dtype=DTYPE))
    x = torch.randn(8, 6, generator=generator, dtype=DTYPE)
    torch.manual_seed(6)
    out = layer(x)
    torch.manual_seed(6)
    eps = torch.randn(8, 4, dtype=DTYPE)
    with torch.no_grad():
        kept = torch.ones_like(theta)
        if train_clip:
            kept[:, :2] = 0.0
        variance = F.linear(x.square(), layer.log_sigma2.exp())
        expected = F.linear(x, theta * kept, layer.bias) + (variance + 1e-8).sqrt() * eps
    assert torch.allclose(out, expected, rtol=1e-12, atol=1e-12)


# ---- the test-time network ------------------------------------------------------------------------------------------
def test_svdo_linear_eval_drops_weights_above_threshold():
    generator = torch.Generator().manual_seed(7)
    layer = LinearSVDO(6, 4).to(DTYPE)
    theta = away_from_zero((4, 6), generator)
    pruned = torch.rand(4, 6, generator=generator) < 0.4
    with torch.no_grad():
        layer.theta.copy_(theta)
        layer.log_sigma2.fill_(-10.0)
        layer.log_sigma2[pruned] = 20.0  # log alpha far above 3 (clipped to 8)
        layer.bias.copy_(torch.randn(4, generator=generator, dtype=DTYPE))
    assert pruned.any() and (~pruned).any()
    assert torch.equal(layer.weight_mask(), ~pruned)
    x = torch.randn(5, 6, generator=generator, dtype=DTYPE)
    layer.eval()
    with torch.no_grad():
        out = layer(x)
        assert torch.equal(out, layer(x))  # no noise at test time
        expected = F.linear(x, theta.masked_fill(pruned, 0.0), layer.bias)
    assert torch.allclose(out, expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(layer.posterior_mean(), theta)  # the mean itself is unpruned
    assert layer.weight_mu is layer.theta


def test_svdo_conv_eval_drops_weights_above_threshold():
    generator = torch.Generator().manual_seed(8)
    layer = Conv2dSVDO(3, 4, kernel_size=(3, 2), stride=(1, 2), padding=1).to(DTYPE)
    theta = away_from_zero((4, 3, 3, 2), generator)
    pruned = torch.rand(4, 3, 3, 2, generator=generator) < 0.4
    with torch.no_grad():
        layer.theta.copy_(theta)
        layer.log_sigma2.fill_(-10.0)
        layer.log_sigma2[pruned] = 20.0
        layer.bias.copy_(torch.randn(4, generator=generator, dtype=DTYPE))
    x = torch.randn(2, 3, 6, 6, generator=generator, dtype=DTYPE)
    layer.eval()
    with torch.no_grad():
        out = layer(x)
        expected = F.conv2d(x, theta.masked_fill(pruned, 0.0), layer.bias, stride=(1, 2), padding=1)
    assert torch.allclose(out, expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(layer.marginal_variance(), layer.log_sigma2.exp())


# ---- clipping, initialisation, gradients ----------------------------------------------------------------------------
def test_svdo_log_alpha_is_clipped_to_reference_bounds():
    layer = LinearSVDO(4, 1).to(DTYPE)
    with torch.no_grad():
        layer.theta.copy_(torch.tensor([[1.0, 1.0, 0.0, 0.5]], dtype=DTYPE))
        layer.log_sigma2.copy_(torch.tensor([[50.0, -50.0, -10.0, -1.0]], dtype=DTYPE))
    log_alpha = layer.log_alpha()
    # theta = 0 gives log alpha = -10 - log(1e-8) = 8.4, clipped like any other.
    inside = -1.0 - math.log(0.25 + 1e-8)
    assert log_alpha[0].tolist() == pytest.approx([8.0, -8.0, 8.0, inside], rel=1e-12)
    assert torch.isfinite(layer.kl_divergence())


def test_svdo_initialisation_matches_reference():
    torch.manual_seed(9)
    linear, conv = LinearSVDO(400, 300), Conv2dSVDO(20, 50, 5)
    assert linear.theta.std().item() == pytest.approx(0.01, rel=0.02)
    glorot_bound = math.sqrt(6.0 / ((20 + 50) * 25))
    assert conv.theta.abs().max().item() <= glorot_bound
    assert conv.theta.abs().max().item() > 0.99 * glorot_bound
    for layer in (linear, conv):
        assert torch.all(layer.log_sigma2 == -10.0) and torch.all(layer.bias == 0.0)
    assert linear.n_weights == 400 * 300 and conv.n_weights == 50 * 20 * 25


@pytest.mark.parametrize("make, x_shape", [(lambda: LinearSVDO(5, 3), (4, 5)),
                                          (lambda: Conv2dSVDO(2, 3, 3, padding=1), (2, 2, 5, 5))])
def test_svdo_gradients_reach_theta_and_log_sigma2(make, x_shape):
    generator = torch.Generator().manual_seed(10)
    layer = make().to(DTYPE).train()
    with torch.no_grad():
        # log alpha inside (-8, 8) for every weight: the clip passes no gradient to a clipped one.
        layer.theta.copy_(away_from_zero(layer.theta.shape, generator))
        layer.log_sigma2.uniform_(-4.0, -1.0, generator=generator)
    assert (layer.log_alpha().abs() < 8.0).all()
    loss = layer(torch.randn(x_shape, generator=generator, dtype=DTYPE)).square().sum() + layer.kl_divergence()
    loss.backward()
    for name in ("theta", "log_sigma2", "bias"):
        grad = getattr(layer, name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    # The KL alone drives log sigma^2 up (it decreases as alpha grows).
    layer.zero_grad()
    layer.kl_divergence().backward()
    assert (layer.log_sigma2.grad < 0).all()


@pytest.mark.parametrize("sampled_variance, expected", [("sigma2", "sigma"), ("alpha", "none")])
def test_a_pruned_weight_adds_noise_only_under_the_sigma2_parameterisation(sampled_variance, expected):
    """One input, one output, one pruned weight (theta = 1e-6, sigma^2 = 1, log alpha clipped at 8): the pre-activation
    variance is x^2 sigma^2 = 4 when sampling with sigma^2, and x^2 e^8 theta^2 (+1e-8) ~ 1e-8 with the authors'
    exp(log alpha) theta^2 -- measured here by Monte Carlo over many forwards."""
    layer = LinearSVDO(1, 1, sampled_variance=sampled_variance)
    with torch.no_grad():
        layer.theta.fill_(1e-6)
        layer.log_sigma2.fill_(0.0)
    assert not layer.weight_mask().any()  # log alpha = 8 > 3: pruned
    layer.train()
    torch.manual_seed(0)
    x = torch.full((20000, 1), 2.0)
    with torch.no_grad():
        variance = layer(x).var().item()
    if expected == "sigma":
        assert variance == pytest.approx(4.0, rel=0.05)
    else:
        assert variance < 1e-6
        closed_form = 4.0 * math.exp(8.0) * 1e-12 + 1e-8
        assert variance == pytest.approx(closed_form, rel=0.1)


def test_the_two_parameterisations_sample_alike_where_log_alpha_is_inside_its_clip():
    torch.manual_seed(1)
    a, b = LinearSVDO(30, 5, sampled_variance="sigma2"), LinearSVDO(30, 5, sampled_variance="alpha")
    b.load_state_dict(a.state_dict())
    with torch.no_grad():  # theta^2 far above the 1e-8 inside log alpha, so alpha theta^2 = sigma^2 to float precision
        a.theta.uniform_(0.1, 1.0)
        b.theta.copy_(a.theta)
        a.log_sigma2.copy_(torch.log(a.theta.square()) - 2.0)  # log alpha = -2
        b.log_sigma2.copy_(a.log_sigma2)
    torch.testing.assert_close(a.sampled_weight_variance(), b.sampled_weight_variance(), rtol=1e-5, atol=0)
