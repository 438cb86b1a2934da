"""What compression reads of a prunable layer, whatever its kind: Bayesian group layer, Sparse VD, masked or plain.

Masks, precision and slimming read layers only through these functions, so each kind of layer is handled in one place:
the test-time weights (``layer_weight``: E_q[w] of a Bayesian layer, a plain layer's ``weight``, times the layer's own
weight mask where it has one), biases and variances, its geometry (inputs, outputs, linear or conv), a plain layer of
the same geometry, and the shapes a network's module chain produces.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from ..layers import GroupScaleLayer
from ..models import PRUNABLE_TYPES


def is_conv(layer: nn.Module) -> bool:
    return hasattr(layer, "in_channels")


def n_inputs(layer: nn.Module) -> int:
    """Input units (linear) or input channels (conv)."""
    return layer.in_channels if is_conv(layer) else layer.in_features


def n_outputs(layer: nn.Module) -> int:
    """Output units (linear) or filters (conv)."""
    return layer.out_channels if is_conv(layer) else layer.out_features


def own_weight_mask(layer: nn.Module) -> torch.Tensor | None:
    """The weights a layer prunes by itself (masked and Sparse VD layers: ``weight_mask()``); None for the others."""
    return layer.weight_mask().detach() if hasattr(layer, "weight_mask") else None


@torch.no_grad()
def layer_weight(layer: nn.Module) -> torch.Tensor:
    """The test-time weights: E_q[w] for a Bayesian layer, ``weight`` for a plain one, times the layer's own weight
    mask where it has one (pruned single weights are exactly 0).  # weight shape"""
    if hasattr(layer, "inference_weight"):  # masked (and possibly weight-shared) layers
        return layer.inference_weight().detach()
    weight = layer.posterior_mean() if hasattr(layer, "posterior_mean") else layer.weight
    mask = own_weight_mask(layer)
    return (weight if mask is None else weight * mask).detach()


@torch.no_grad()
def layer_bias(layer: nn.Module) -> torch.Tensor:
    """The test-time bias (zeros for a plain layer without one).  # [out]"""
    if isinstance(layer, GroupScaleLayer):
        return layer.posterior_bias().detach()
    if layer.bias is None:
        return torch.zeros(n_outputs(layer), device=layer.weight.device, dtype=layer.weight.dtype)
    return layer.bias.detach()


@torch.no_grad()
def layer_variance(layer: nn.Module) -> torch.Tensor | None:
    """Var_q[w] of a Bayesian layer; None for a plain layer (unknown: no precision reduction)."""
    return layer.marginal_variance().detach() if hasattr(layer, "marginal_variance") else None


def layer_kind(layer: nn.Module) -> str:
    return "conv" if is_conv(layer) else "linear"


@contextmanager
def eval_mode(module: nn.Module):
    """Put ``module`` in eval mode and restore every submodule's training flag afterwards."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, flag in flags:
            m.training = flag


def plain_layer_like(layer: nn.Module, like: torch.Tensor | None = None) -> nn.Module:
    """An uninitialised ``nn.Linear``/``nn.Conv2d`` with the geometry of ``layer``, on ``like``'s device and dtype."""
    like = layer_weight(layer) if like is None else like
    options = {"device": like.device, "dtype": like.dtype}
    if is_conv(layer):
        return nn.utils.skip_init(nn.Conv2d, layer.in_channels, layer.out_channels, layer.kernel_size,
                                  stride=layer.stride, padding=layer.padding, dilation=layer.dilation, **options)
    return nn.utils.skip_init(nn.Linear, layer.in_features, layer.out_features, **options)


def prunable_positions(chain) -> list[int]:
    """Where the prunable layers sit in a module chain (``net.module_chain()``)."""
    return [i for i, m in enumerate(chain) if isinstance(m, PRUNABLE_TYPES)]


@torch.no_grad()
def chain_output_shapes(net) -> list[torch.Size]:
    """The shape (batch of one) after each module of ``net.module_chain()``, from one forward of zeros in eval mode."""
    device = layer_weight(net.prunable_layers()[0]).device
    shapes = []
    with eval_mode(net):
        x = torch.zeros(1, *net.input_shape, device=device)
        for module in net.module_chain():
            x = module(x)
            shapes.append(x.shape)
    return shapes


def prunable_input_shapes(net) -> list[torch.Size]:
    """The input shape (no batch axis) of every prunable layer."""
    before = [torch.Size((1, *net.input_shape))] + chain_output_shapes(net)[:-1]
    return [before[p][1:] for p in prunable_positions(net.module_chain())]
