"""The fused training step (``bcrepro/layers/lrt.py``) against autograd over the reference expressions.

Both paths draw z and then the output noise from the same generator in the same order, so with one seed they must give
the same pre-activations, the same KL and the same gradient for every parameter and for the input: the reference is
plain autograd over ``_lrt_moments`` and ``standard_normal_kl``, which other tests check against Monte Carlo.
"""
from __future__ import annotations

import copy
import math

import pytest
import torch

from bcrepro.layers import standard_normal_kl
from test_layers_forward import LAYERS, is_conv, is_horseshoe, make_input, make_layer


def positive_z_layer(name: str):
    """``make_layer`` with GNJ's z kept far from zero: the fused conv path draws its noise before z scales it, which
    equals the reference sample for sample only where z > 0 (the distributions are equal everywhere)."""
    layer = make_layer(name)
    if not is_horseshoe(layer):
        with torch.no_grad():
            layer.z_mu.copy_(torch.linspace(1.0, 1.4, layer.z_mu.numel(), dtype=layer.z_mu.dtype))
            layer.z_logvar.fill_(math.log(1e-3))
    return layer


def step_gradients(layer, x, fused: bool, seed: int = 5):
    """Output, KL and gradients (parameters and input) of ``sum(out * c) + 0.3 KL`` on one draw."""
    layer = copy.deepcopy(layer).train()
    layer.fused_step = fused
    x = x.clone().requires_grad_(True)
    torch.manual_seed(seed)
    out = layer(x)
    kl = layer.kl_divergence()
    weights = torch.linspace(-1.0, 1.0, out.numel(), dtype=out.dtype).reshape(out.shape)
    ((out * weights).sum() + 0.3 * kl).backward()
    grads = {name: p.grad for name, p in layer.named_parameters()}
    return out.detach(), kl.detach(), grads, x.grad


@pytest.mark.parametrize("name", list(LAYERS))
def test_fused_step_equals_autograd_over_the_reference_expressions(name):
    layer = positive_z_layer(name)
    x = make_input(layer, batch=6)
    out_ref, kl_ref, grads_ref, x_grad_ref = step_gradients(layer, x, fused=False)
    out, kl, grads, x_grad = step_gradients(layer, x, fused=True)
    torch.testing.assert_close(out, out_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(kl, kl_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(x_grad, x_grad_ref, rtol=1e-9, atol=1e-12)
    assert grads.keys() == grads_ref.keys()
    for key in grads_ref:
        assert grads[key] is not None, key
        torch.testing.assert_close(grads[key], grads_ref[key], rtol=1e-9, atol=1e-12, msg=key)


@pytest.mark.parametrize("name", list(LAYERS))
def test_fused_step_floors_underflowing_variances_like_the_reference(name):
    """Bias variances that underflow to exactly 0 and all-zero inputs for some examples: those pre-activation
    variances are 0 without the floor (sqrt'(0) = inf, and inf * 0 = NaN in the gradients); both paths must floor them
    and pass the variance path no gradient there. A conv floors its filter
    variance before z scales it, the reference after: sqrt(1e-16) = 1e-8 apart at most, hence the looser atol."""
    layer = positive_z_layer(name)
    with torch.no_grad():
        layer.bias_logvar.fill_(-800.0)  # exp(-800) is 0 even in float64
    x = make_input(layer, batch=6)
    x[:3] = 0.0
    atol = 1e-7 if is_conv(layer) else 1e-12
    out_ref, _, grads_ref, _ = step_gradients(layer, x, fused=False)
    out, _, grads, _ = step_gradients(layer, x, fused=True)
    torch.testing.assert_close(out, out_ref, rtol=1e-10, atol=atol)
    for key in grads_ref:
        assert torch.isfinite(grads[key]).all(), key
        torch.testing.assert_close(grads[key], grads_ref[key], rtol=1e-9, atol=atol, msg=key)
    # what reaches bias_logvar is the KL's 0.3 * (exp(logvar) - 1) / 2 and nothing through the floored variances
    torch.testing.assert_close(grads["bias_logvar"], 0.15 * torch.expm1(layer.bias_logvar.detach()), rtol=0, atol=1e-9)


def fresh_kl(layer) -> torch.Tensor:
    return (layer.z_kl() + standard_normal_kl(layer.weight_mu, layer.weight_logvar)
            + standard_normal_kl(layer.bias_mu, layer.bias_logvar))


@pytest.mark.parametrize("name", ["LinearGroupNJ", "Conv2dGroupHS"])
def test_weight_kl_of_the_forward_is_not_reused_after_the_weights_change(name):
    layer = make_layer(name).train()
    layer(make_input(layer, batch=4))
    with torch.no_grad():  # what an optimiser step does between the forward and a late KL
        layer.weight_mu.mul_(2.0)
        layer.weight_logvar.add_(0.5)
    assert layer.kl_divergence().item() == pytest.approx(fresh_kl(layer).item(), rel=1e-12)


@pytest.mark.parametrize("name", ["LinearGroupNJ", "Conv2dGroupNJ"])
def test_kl_after_a_backward_through_the_forward_alone_is_computed_afresh(name):
    """Backpropagating the output first frees the fused node; a KL asked for later must not point into it."""
    layer = make_layer(name).train()
    layer(make_input(layer, batch=4)).sum().backward()
    kl = layer.kl_divergence()
    kl.backward()  # would raise "backward through the graph a second time" if the freed node were reused
    assert kl.item() == pytest.approx(fresh_kl(layer).item(), rel=1e-12)


def test_kl_used_twice_after_one_forward_gives_the_same_value_and_gradient_twice():
    layer = make_layer("LinearGroupNJ").train()
    layer(make_input(layer, batch=4))
    first, second = layer.kl_divergence(), layer.kl_divergence()
    assert first.item() == pytest.approx(second.item(), rel=1e-12)
    (grad_first,) = torch.autograd.grad(first, layer.weight_logvar)
    (grad_second,) = torch.autograd.grad(second, layer.weight_logvar)
    expected = 0.5 * torch.expm1(layer.weight_logvar.detach())  # d/dlogvar of Eq. 8
    torch.testing.assert_close(grad_first, expected)
    torch.testing.assert_close(grad_second, expected)


def test_a_layer_can_be_copied_right_after_a_training_forward():
    layer = make_layer("Conv2dGroupNJ").train()
    layer(make_input(layer, batch=2))
    clone = copy.deepcopy(layer)
    assert clone.kl_divergence().item() == pytest.approx(fresh_kl(layer).item(), rel=1e-12)


@pytest.mark.parametrize("name", list(LAYERS))
def test_fused_step_keeps_the_input_gradient_off_when_the_input_needs_none(name):
    layer = positive_z_layer(name).train()
    x = make_input(layer, batch=3)
    out = layer(x)
    out.sum().backward()
    assert x.grad is None and all(p.grad is not None for p in layer.parameters())
    assert is_conv(layer) == (out.dim() == 4)
