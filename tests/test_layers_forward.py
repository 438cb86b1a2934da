"""The forward passes of the Bayesian layers against the model they claim to sample (paper §4, Eq. 6; Appendix).

The reference is always the generative model itself, sampled here with ``torch.distributions``: draw a whole weight
matrix ``w_ij = z_g * w~_ij`` (GNJ: ``z ~ N(z_mu, exp(z_logvar))``; GHS: ``z_g = sqrt(s_a s_b alpha_g beta_g)`` with
one ``s_a, s_b`` per example shared by all groups), draw the bias, and apply ``F.linear`` / ``F.conv2d``. Linear
layers scale inputs (bias unscaled); conv layers scale a filter's whole output, bias included. Monte Carlo
comparisons use ``N_SE`` standard errors, estimated from the samples.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import distributions as D

from bcrepro.layers import Conv2dGroupHS, Conv2dGroupNJ, LinearGroupHS, LinearGroupNJ

DTYPE = torch.float64
N_SE = 6.0  # P(|Z| > 6) ~ 2e-9 per comparison; a few hundred comparisons per test stay far from flaky
IN, OUT = 5, 4  # linear layers
C_IN, C_OUT, KERNEL, PADDING = 2, 3, 3, 1  # conv layers: C_OUT == kernel width, so a wrong broadcast cannot hide

LAYERS = {
    "LinearGroupNJ": lambda: LinearGroupNJ(IN, OUT),
    "Conv2dGroupNJ": lambda: Conv2dGroupNJ(C_IN, C_OUT, KERNEL, padding=PADDING),
    "LinearGroupHS": lambda: LinearGroupHS(IN, OUT),
    "Conv2dGroupHS": lambda: Conv2dGroupHS(C_IN, C_OUT, KERNEL, padding=PADDING),
}


def is_conv(layer) -> bool:
    return isinstance(layer, (Conv2dGroupNJ, Conv2dGroupHS))


def is_horseshoe(layer) -> bool:
    return isinstance(layer, (LinearGroupHS, Conv2dGroupHS))


def make_layer(name: str, seed: int = 0):
    """A float64 layer whose posterior variances are far above the init's (e^-9), so every noise source shows."""
    torch.manual_seed(seed)
    layer = LAYERS[name]().double()
    with torch.no_grad():
        layer.weight_logvar.copy_(math.log(0.05) + 0.2 * torch.randn_like(layer.weight_logvar))
        layer.bias_logvar.copy_(math.log(0.05) + 0.2 * torch.randn_like(layer.bias_logvar))
        layer.bias_mu.copy_(0.5 * torch.randn_like(layer.bias_mu))
        if is_horseshoe(layer):
            for factor in ("sa", "sb", "alpha", "beta"):
                logvar = getattr(layer, f"{factor}_logvar")
                logvar.copy_(math.log(0.1) + 0.2 * torch.randn_like(logvar))
            layer.alpha_mu.add_(0.4 * torch.randn_like(layer.alpha_mu))  # groups with different E[z]
        else:
            layer.z_mu.copy_(torch.linspace(0.6, 1.4, layer.z_mu.numel(), dtype=DTYPE))
            layer.z_logvar.copy_(math.log(0.1) + 0.2 * torch.randn_like(layer.z_logvar))
    return layer


def make_input(layer, batch: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, C_IN, 5, 5) if is_conv(layer) else (batch, IN)
    return torch.randn(shape, generator=generator, dtype=DTYPE)


# ---- the generative model, sampled independently of the layer ---------------------------------------------------
def lognormal(mu, logvar) -> D.LogNormal:
    return D.LogNormal(mu.detach(), (0.5 * logvar.detach()).exp())


def sample_group_scales(layer, n: int) -> torch.Tensor:
    """n independent draws of the group scales z from q(z).  # [n, groups]"""
    if not is_horseshoe(layer):
        return D.Normal(layer.z_mu.detach(), (0.5 * layer.z_logvar.detach()).exp()).sample((n,))
    s_a = lognormal(layer.sa_mu, layer.sa_logvar).sample((n,))  # [n, 1]: one global scale per draw
    s_b = lognormal(layer.sb_mu, layer.sb_logvar).sample((n,))
    alpha = lognormal(layer.alpha_mu, layer.alpha_logvar).sample((n,))  # [n, groups]
    beta = lognormal(layer.beta_mu, layer.beta_logvar).sample((n,))
    return torch.sqrt(s_a * s_b * alpha * beta)


def sample_weight_tilde(layer, n: int):
    w = D.Normal(layer.weight_mu.detach(), (0.5 * layer.weight_logvar.detach()).exp()).sample((n,))
    b = D.Normal(layer.bias_mu.detach(), (0.5 * layer.bias_logvar.detach()).exp()).sample((n,))
    return w, b  # [n, *weight], [n, out]


def outputs_from_whole_weights(layer, x: torch.Tensor, n: int) -> torch.Tensor:
    """Pre-activations for n independent whole-network draws (z, W~, b~).  # [n, batch, *output]"""
    z = sample_group_scales(layer, n)
    w_tilde, b_tilde = sample_weight_tilde(layer, n)
    if is_conv(layer):
        # every draw is a set of C_OUT filters applied to the same x: stack the draws as output channels
        y = F.conv2d(x, w_tilde.reshape(n * C_OUT, C_IN, KERNEL, KERNEL), b_tilde.reshape(-1), padding=PADDING)
        y = y.view(x.shape[0], n, C_OUT, *y.shape[2:]).transpose(0, 1)  # [n, batch, out, H, W]
        return z[:, None, :, None, None] * y
    weight = z[:, None, :] * w_tilde  # [n, out, in]: z_j scales input column j
    return torch.einsum("bi,noi->nbo", x, weight) + b_tilde[:, None, :]


def expected_z(layer) -> torch.Tensor:
    """E_q[z_g] from the parameters: z_mu (GNJ), or the log-normal mean exp(m + v/2) of log z (GHS).  # [groups]"""
    if not is_horseshoe(layer):
        return layer.z_mu.detach()
    m = 0.5 * (layer.sa_mu + layer.sb_mu + layer.alpha_mu + layer.beta_mu)
    v = 0.25 * (layer.sa_logvar.exp() + layer.sb_logvar.exp() + layer.alpha_logvar.exp() + layer.beta_logvar.exp())
    return torch.exp(m + 0.5 * v).detach()


# ---- Monte Carlo comparisons ---------------------------------------------------------------------------------------
def moments(samples: torch.Tensor):
    """Mean, variance and their squared standard errors over axis 0."""
    n = samples.shape[0]
    mean = samples.mean(0)
    centred = samples - mean
    var = centred.pow(2).sum(0) / (n - 1)
    fourth = centred.pow(4).mean(0)
    return mean, var, var / n, (fourth - var.pow(2)).clamp_min(0.0) / n


def assert_within(value, reference, se, what: str) -> None:
    z_score = ((value - reference).abs() / (se + 1e-300)).max().item()
    assert torch.all((value - reference).abs() <= N_SE * se), f"{what}: worst deviation {z_score:.1f} standard errors"


def assert_same_mean_and_variance(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    """a, b: independent samples [n, ...] of the same quantity; compares per-element means and variances."""
    mean_a, var_a, se2_mean_a, se2_var_a = moments(a)
    mean_b, var_b, se2_mean_b, se2_var_b = moments(b)
    assert_within(mean_a, mean_b, (se2_mean_a + se2_mean_b).sqrt(), f"{what}: mean")
    assert_within(var_a, var_b, (se2_var_a + se2_var_b).sqrt(), f"{what}: variance")


# ---- local reparameterisation -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(LAYERS))
def test_local_reparameterisation_matches_sampling_whole_weights(name):
    """Kingma et al. (2015): sampling pre-activations from their conditional Gaussian given z has the same
    per-unit distribution as sampling z, W~ and b~ and computing the layer."""
    n = 40_000
    layer = make_layer(name)
    x = make_input(layer, batch=3 if not is_conv(layer) else 2)
    torch.manual_seed(2)
    reference = outputs_from_whole_weights(layer, x, n)
    layer.train()
    with torch.no_grad():  # one call, every example repeated n times: each row must get its own z
        stochastic = layer(x.repeat(n, *([1] * (x.dim() - 1)))).view(n, *reference.shape[1:])
    assert_same_mean_and_variance(stochastic, reference, name)
    # the pre-activation mean of the model is the posterior-mean network (E[z] enters linearly)
    mean, _, se2_mean, _ = moments(reference)
    with torch.no_grad():
        assert_within(layer.eval()(x), mean, se2_mean.sqrt(), f"{name}: eval output vs E[pre-activation]")


# ---- marginal posterior of the weights (bit precision, paper §5) ----------------------------------------------------
@pytest.mark.parametrize("name", list(LAYERS))
def test_marginal_mean_and_variance_match_monte_carlo(name):
    """E[w] = E[z] mu and V(w) = Var(z)(sigma^2 + mu^2) + E[z]^2 sigma^2 (paper's V(w)_NJ, V(w)_HS) per weight,
    with z broadcast over the group axis: input columns (linear), output filters (conv)."""
    n = 100_000
    layer = make_layer(name, seed=3)
    torch.manual_seed(4)
    z = sample_group_scales(layer, n)
    w_tilde, _ = sample_weight_tilde(layer, n)
    z_per_weight = z[:, :, None, None, None] if is_conv(layer) else z[:, None, :]  # conv: dim 0 is the filter
    mean, var, se2_mean, se2_var = moments(z_per_weight * w_tilde)
    with torch.no_grad():
        posterior_mean, marginal_variance = layer.posterior_mean(), layer.marginal_variance()
    assert posterior_mean.shape == layer.weight_mu.shape
    assert marginal_variance.shape == layer.weight_mu.shape
    assert_within(posterior_mean, mean, se2_mean.sqrt(), f"{name}: posterior_mean()")
    assert_within(marginal_variance, var, se2_var.sqrt(), f"{name}: marginal_variance()")


# ---- eval pass ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(LAYERS))
def test_eval_pass_is_the_posterior_mean_network(name):
    layer = make_layer(name, seed=5)
    x = make_input(layer, batch=4, seed=6)
    z_mean = expected_z(layer)
    with torch.no_grad():
        if is_conv(layer):  # y_c = E[z_c] (W_c * x + b_c)
            expected = F.conv2d(x, z_mean[:, None, None, None] * layer.weight_mu, z_mean * layer.bias_mu,
                                padding=PADDING)
        else:  # inputs scaled, bias not
            expected = F.linear(x, z_mean[None, :] * layer.weight_mu, layer.bias_mu)
        layer.eval()
        output = layer(x)
        torch.testing.assert_close(output, expected, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(layer(x), output, rtol=0.0, atol=0.0)  # no noise left
        deterministic = layer.deterministic_forward(x, layer.posterior_mean(), layer.posterior_bias())
        torch.testing.assert_close(output, deterministic, rtol=1e-12, atol=1e-12)


# ---- one z per example ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(LAYERS))
def test_identical_examples_get_independent_noise(name):
    layer = make_layer(name, seed=7)
    one = make_input(layer, batch=1, seed=8)
    x = torch.cat([one, one])
    torch.manual_seed(9)
    layer.train()
    with torch.no_grad():
        y = layer(x)
    assert torch.equal(x[0], x[1])
    assert (y[0] - y[1]).abs().max() > 1e-2


def filter_scales_from_outputs(layer, x: torch.Tensor):
    """With W~ = weight_mu, b~ = 0 (variances e^-30) the training output is z_c * (weight_mu * x)_c. Returns the
    least-squares z per (example, filter) and the largest residual relative to the output scale."""
    with torch.no_grad():
        layer.weight_logvar.fill_(-30.0)
        layer.bias_logvar.fill_(-30.0)
        layer.bias_mu.zero_()
        layer.train()
        y = layer(x)  # [batch, out, H, W]
        d = F.conv2d(x, layer.weight_mu, None, padding=PADDING)  # [batch, out, H, W]
    d = d.expand_as(y)
    z_hat = (y * d).sum((2, 3)) / d.pow(2).sum((2, 3))  # [batch, out]
    residual = (y - z_hat[:, :, None, None] * d).abs().max() / d.abs().max()
    return z_hat, residual.item()


@pytest.mark.parametrize("name", ["Conv2dGroupNJ", "Conv2dGroupHS"])
def test_conv_z_is_shared_across_spatial_positions_of_one_example(name):
    layer = make_layer(name, seed=10)
    x = make_input(layer, batch=1, seed=11).repeat(2, 1, 1, 1)
    torch.manual_seed(12)
    z_hat, residual = filter_scales_from_outputs(layer, x)
    assert residual < 1e-4  # output / deterministic output is one constant per (example, filter)
    assert (z_hat[0] - z_hat[1]).abs().min() > 1e-3  # and that constant is drawn afresh per example


@pytest.mark.parametrize("name", ["Conv2dGroupNJ", "Conv2dGroupHS"])
def test_group_scales_covary_only_through_the_global_scale(name):
    """GHS: log z_g = log s + log z~_g with one log s per example, so Cov(log z_c, log z_c') = Var(log s) =
    (sigma_sa^2 + sigma_sb^2) / 4 for c != c'. GNJ: groups are independent, Cov(z_c, z_c') = 0."""
    n = 20_000
    layer = make_layer(name, seed=13)
    x = make_input(layer, batch=1, seed=14).repeat(n, 1, 1, 1)
    torch.manual_seed(15)
    z_hat, residual = filter_scales_from_outputs(layer, x)
    assert residual < 1e-4
    scales = z_hat.log() if is_horseshoe(layer) else z_hat  # [n, out]
    if is_horseshoe(layer):
        expected = (0.25 * (layer.sa_logvar.exp() + layer.sb_logvar.exp())).item()
    else:
        expected = 0.0
    centred = scales - scales.mean(0)
    for a in range(C_OUT):
        for b in range(a + 1, C_OUT):
            product = centred[:, a] * centred[:, b]
            covariance, se = product.mean().item(), product.std().item() / math.sqrt(n)
            assert abs(covariance - expected) <= N_SE * se, (
                f"{name}: Cov(filters {a}, {b}) = {covariance:.4f} +- {se:.1g}, expected {expected:.4f}")


# ---- the authors' usage ---------------------------------------------------------------------------------------------
AUTHORS_SHAPES = {"z_mu": (784,), "z_logvar": (784,), "weight_mu": (300, 784), "weight_logvar": (300, 784),
                  "bias_mu": (300,), "bias_logvar": (300,)}


def test_authors_tutorial_layer_has_their_parameters_and_init():
    from bcrepro import layers as BayesianLayers

    torch.manual_seed(16)
    fc1 = BayesianLayers.LinearGroupNJ(28 * 28, 300, clip_var=0.04)
    assert {name: tuple(p.shape) for name, p in fc1.named_parameters()} == AUTHORS_SHAPES
    # the tutorial's reset_parameters: z_mu ~ N(1, 1e-2), logvars ~ N(-9, 1e-2), weight_mu ~ N(0, 1/sqrt(in))
    for parameter, mean, std in [(fc1.z_mu, 1.0, 1e-2), (fc1.z_logvar, -9.0, 1e-2), (fc1.weight_logvar, -9.0, 1e-2),
                                 (fc1.bias_logvar, -9.0, 1e-2), (fc1.weight_mu, 0.0, 1 / math.sqrt(784))]:
        values = parameter.detach().double()
        assert abs(values.mean().item() - mean) <= N_SE * std / math.sqrt(values.numel())
        assert values.std().item() == pytest.approx(std, rel=N_SE * math.sqrt(0.5 / values.numel()))
    assert torch.count_nonzero(fc1.bias_mu) == 0

    conv1 = BayesianLayers.Conv2dGroupNJ(1, 20, 5)  # the shape the authors' compute_posterior_params crashed on
    assert conv1.weight_mu.shape == (20, 1, 5, 5) and conv1.z_mu.shape == (20,) and conv1.bias_mu.shape == (20,)
    assert conv1.posterior_mean().shape == (20, 1, 5, 5)


def test_init_weight_and_init_bias_are_copied():
    from bcrepro import layers as BayesianLayers

    generator = torch.Generator().manual_seed(17)
    W, b = torch.randn(300, 784, generator=generator), torch.randn(300, generator=generator)
    layer = BayesianLayers.LinearGroupNJ(784, 300, init_weight=W, init_bias=b)
    assert torch.equal(layer.weight_mu.detach(), W)
    assert torch.equal(layer.bias_mu.detach(), b)
    W.add_(1.0)  # a copy, not a view of the caller's tensor
    assert not torch.equal(layer.weight_mu.detach(), W)


def test_clip_variances_clamps_weight_and_bias_but_not_z():
    from bcrepro import layers as BayesianLayers

    torch.manual_seed(18)
    layer = BayesianLayers.LinearGroupNJ(20, 10, clip_var=0.04)
    with torch.no_grad():
        for parameter in (layer.weight_logvar, layer.bias_logvar, layer.z_logvar):
            parameter.copy_(torch.empty_like(parameter).uniform_(-6.0, 1.0))  # some above log 0.04, some below
    before = {name: p.detach().clone() for name, p in layer.named_parameters()}
    layer.clip_variances()
    bound = math.log(0.04)
    for name in ("weight_logvar", "bias_logvar"):
        assert (before[name] > bound).any()
        torch.testing.assert_close(getattr(layer, name).detach(), before[name].clamp(max=bound), rtol=0.0, atol=0.0)
    for name in ("z_logvar", "z_mu", "weight_mu", "bias_mu"):
        assert torch.equal(getattr(layer, name).detach(), before[name])


@pytest.mark.parametrize("name", ["authors' fc1"] + list(LAYERS))
def test_elbo_loss_backpropagates_finite_gradients_into_every_parameter(name):
    torch.manual_seed(19)
    if name == "authors' fc1":
        from bcrepro import layers as BayesianLayers

        layer = BayesianLayers.LinearGroupNJ(28 * 28, 300, clip_var=0.04)
        x = torch.randn(8, 784)
    else:  # default float32 and the paper's init, as in training
        layer = LAYERS[name]()
        x = torch.randn(8, C_IN, 5, 5) if is_conv(layer) else torch.randn(8, IN)
    layer.train()
    out = layer(x)
    logits = out.mean((2, 3)) if out.dim() == 4 else out
    y = torch.randint(0, logits.shape[1], (8,))
    N = 60_000  # training-set size
    loss = F.cross_entropy(logits, y) + layer.kl_divergence() / N
    loss.backward()
    for parameter_name, parameter in layer.named_parameters():
        assert parameter.grad is not None, f"{parameter_name} gets no gradient"
        assert torch.isfinite(parameter.grad).all(), f"{parameter_name} has a non-finite gradient"
        assert parameter.grad.abs().max() > 0, f"{parameter_name} has an all-zero gradient"


def test_authors_deterministic_mode_uses_post_weight_mu():
    """example.py: compute_posterior_params(), overwrite post_weight_mu with rounded weights, deterministic=True."""
    torch.manual_seed(0)
    layer = Conv2dGroupNJ(2, 4, 3).eval()
    x = torch.randn(5, 2, 8, 8)
    mean, variance = layer.compute_posterior_params()
    assert torch.equal(mean, layer.post_weight_mu) and torch.equal(variance, layer.post_weight_var)
    layer.deterministic = True
    assert torch.allclose(layer(x), F.conv2d(x, mean, layer.z_mu * layer.bias_mu), atol=1e-6)
    layer.post_weight_mu = torch.zeros_like(mean)  # e.g. rounded weights
    assert torch.allclose(layer(x), (layer.z_mu * layer.bias_mu).view(1, -1, 1, 1).expand(5, 4, 6, 6), atol=1e-6)
    with pytest.raises(RuntimeError, match="eval"):
        layer.train()(x)


@pytest.mark.parametrize("make", [lambda **k: LinearGroupNJ(6, 4, **k), lambda **k: Conv2dGroupHS(2, 3, 3, **k)])
def test_forward_clipping_samples_with_the_clipped_variance_and_keeps_the_kl_unclipped(make):
    bound = 0.04
    torch.manual_seed(0)
    forward = make(clip_var=bound, clip_mode="forward")
    parameter = make(clip_var=bound)
    parameter.load_state_dict(forward.state_dict())
    with torch.no_grad():  # half the weights' variances above the bound
        forward.weight_logvar.copy_(torch.linspace(-6.0, 0.0, forward.weight_logvar.numel()).view_as(
            forward.weight_logvar))
        parameter.weight_logvar.copy_(forward.weight_logvar.clamp(max=math.log(bound)))
    above = forward.weight_logvar.detach() > math.log(bound)
    assert above.any() and (~above).any()
    x = torch.randn(5, *((6,) if forward.group_axis == "in" else (2, 5, 5)))
    forward.clip_variances()  # a no-op for forward clipping
    assert torch.equal(forward.weight_logvar.detach() > math.log(bound), above)
    torch.manual_seed(1)
    out_forward = forward.train()(x)
    torch.manual_seed(1)
    out_parameter = parameter.train()(x)
    torch.testing.assert_close(out_forward, out_parameter)  # the same draws with the clipped variance
    # the likelihood does not move variances above the bound; the KL does, as for an unclipped weight:
    # d/dlogvar KL(N(mu, e^v) || N(0, 1)) = (e^v - 1) / 2
    out_forward.square().sum().backward()
    assert torch.all(forward.weight_logvar.grad[above] == 0)
    forward.weight_logvar.grad = None
    forward.kl_divergence().backward()
    expected = 0.5 * torch.expm1(forward.weight_logvar.detach())
    torch.testing.assert_close(forward.weight_logvar.grad, expected)


def test_the_marginal_variance_of_a_forward_clipped_layer_uses_the_clipped_variance():
    layer = LinearGroupNJ(6, 4, clip_var=0.04, clip_mode="forward")
    with torch.no_grad():
        layer.weight_logvar.copy_(torch.linspace(-6.0, 0.0, 24).view(4, 6))
    clipped = layer.weight_logvar.detach().clamp(max=math.log(0.04)).exp()
    z_mean, z_var = layer.z_mean().detach(), layer.z_variance().detach()
    mu = layer.weight_mu.detach()
    expected = z_var * (clipped + mu ** 2) + z_mean ** 2 * clipped  # Var[z w~], z and w~ independent
    torch.testing.assert_close(layer.marginal_variance().detach(), expected)


def test_an_unknown_clip_mode_names_the_choices():
    with pytest.raises(ValueError, match="clip_mode must be one of"):
        LinearGroupNJ(3, 2, clip_var=0.04, clip_mode="both")
