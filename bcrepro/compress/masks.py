"""Which units and filters of a pruned network survive, and the plain network that computes it (docs/method.md).

``propagate_masks``: a pruned group removes a column (its input unit) or a row (its filter); a unit that the next layer
no longer reads is removed as well (docs/method.md), expanding a conv channel to its H*W inputs of the first linear
layer. ``deterministic_net``: a plain network with the masked posterior means (or their rounded values) as weights; its
test error is ``error_pruned_pct`` (``error_quantized_pct`` with rounded weights). ``kept_weight_mask``,
``layer_counts`` and ``encoded_layer`` hand ``accounting`` what it counts.

Pruned conv channel followed by batch norm: the channel's conv output is exactly 0 (weights and bias masked; the
layers scale the bias by z), but batch norm turns that 0 into a constant ``relu(beta - gamma mu / sqrt(var + eps))``
that the next layer still reads, as it does in the Bayesian net when ``z_c = 0``. ``deterministic_net`` keeps that
exact: the next layer's input columns of such a channel keep their (unmasked) weights, which only ever multiply the
constant; they are a bias in disguise and are not counted as kept weights (``bcrepro.deploy.slim`` folds them into the
bias). So ``deterministic_net(net, masks)`` computes exactly the Bayesian posterior-mean net with every pruned group's
scale set to zero. Without batch norm the constant is 0 and nothing is carried.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..layers import GroupScaleLayer
from . import accounting
from .layer_view import (chain_output_shapes, eval_mode, is_conv, layer_bias, layer_kind, layer_weight, n_inputs,
                         n_outputs, own_weight_mask, plain_layer_like, prunable_positions)


# ---- masks -----------------------------------------------------------------------------------------------------------
@dataclass
class LayerMask:
    """Which inputs (units; channels for conv) and outputs (units; filters) of one prunable layer survive."""

    in_mask: torch.Tensor  # bool [in]
    out_mask: torch.Tensor  # bool [out]

    def weight_mask(self, ndim: int = 2) -> torch.Tensor:
        """out_mask (x) in_mask, with singleton kernel dims for a conv weight.  # [out, in] or [out, in, 1, 1]"""
        mask = self.out_mask[:, None] & self.in_mask[None, :]
        return mask.view(*mask.shape, *([1] * (ndim - 2)))

    def kept_weights(self, kernel_area: int = 1) -> int:
        return int(self.out_mask.sum()) * int(self.in_mask.sum()) * kernel_area


def weight_mask_like(mask: LayerMask, weight: torch.Tensor) -> torch.Tensor:
    """The boolean weight mask broadcast to the full weight shape.  # weight shape"""
    return mask.weight_mask(weight.dim()).to(weight.device).expand_as(weight)


def keeps_all(threshold) -> bool:
    """Whether a layer's threshold keeps every group. The one convention: None in memory and in JSON; +inf where a
    search needs a number that sorts last; NaN in posterior.npz, whose arrays cannot hold None (``stored_threshold``).
    All three read as "keep every group" here."""
    return threshold is None or threshold == math.inf or (isinstance(threshold, float) and math.isnan(threshold))


def stored_threshold(threshold) -> float:
    """A threshold as posterior.npz holds it: a float, NaN for "keep every group"."""
    return math.nan if keeps_all(threshold) else float(threshold)


@torch.no_grad()
def group_keep(layer: GroupScaleLayer, threshold: float | None) -> torch.Tensor:
    """Groups kept: statistic < threshold (docs/method.md); None or inf keeps all.  # bool [groups]"""
    statistic = layer.group_statistic().detach().cpu().double()  # float64, as the candidate midpoints
    if keeps_all(threshold):
        return torch.ones_like(statistic, dtype=torch.bool)
    return statistic < threshold


def own_keeps(layer: nn.Module, threshold: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(input keep, output keep) from the layer's own groups alone; a plain layer keeps everything.

    A layer with its own weight mask keeps the inputs and outputs that some kept weight touches (Han et al. 2015 also
    remove units left without connections).
    """
    keep_in = torch.ones(n_inputs(layer), dtype=torch.bool)
    keep_out = torch.ones(n_outputs(layer), dtype=torch.bool)
    weights_kept = own_weight_mask(layer)
    if weights_kept is not None:
        keep_in, keep_out = _connected_units(weights_kept, LayerMask(keep_in, keep_out))
    if isinstance(layer, GroupScaleLayer):
        if layer.group_axis == "in":
            keep_in = group_keep(layer, threshold)
        else:
            keep_out = group_keep(layer, threshold)
    return keep_in, keep_out


def expansion_factor(layer: nn.Module, next_layer: nn.Module) -> int:
    """How many inputs of ``next_layer`` one output of ``layer`` feeds: H*W from a conv into a linear layer, else 1."""
    outputs, inputs = n_outputs(layer), n_inputs(next_layer)
    factor = inputs // outputs if is_conv(layer) and not is_conv(next_layer) else 1
    if outputs * factor != inputs:
        raise ValueError(f"layer with {outputs} outputs cannot feed {inputs} inputs of the next prunable layer; "
                         f"masks need a chain of prunable layers (conv -> conv -> linear -> linear)")
    return factor


def check_thresholds(layers, thresholds):
    if thresholds is None:
        return [None] * len(layers)
    thresholds = list(thresholds)
    if len(thresholds) != len(layers):
        raise ValueError(f"need one threshold per prunable layer ({len(layers)}), got {len(thresholds)}; "
                         f"use None (or inf) for layers that keep every group")
    return thresholds


def propagate_masks(net, thresholds: Sequence[float | None] | None) -> list[LayerMask]:
    """Per-layer masks from per-layer thresholds (aligned with ``net.prunable_layers()``), docs/method.md.

    At each boundary between prunable layers l and l+1: positions alive = expand(l's own output keep, by the conv->FC
    factor k) AND (l+1's own input keep). Output c of l survives iff any of its k positions is alive; l+1's in_mask is
    the alive positions. The first layer's in_mask is its own input keep, the last layer's out_mask its own output keep
    (all True unless it is a conv group layer). A layer that prunes single weights then drops the inputs (outputs) whose
    kept weights all sat in removed outputs (inputs), and the boundaries are redone until nothing changes.
    """
    layers = net.prunable_layers()
    thresholds = check_thresholds(layers, thresholds)
    keeps = [own_keeps(layer, t) for layer, t in zip(layers, thresholds)]
    while True:
        masks = _boundary_masks(layers, keeps)
        refined = [_keeps_within(layer, keep, mask) for layer, keep, mask in zip(layers, keeps, masks)]
        if all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(keeps, refined)):
            return masks
        keeps = refined


def _boundary_masks(layers, keeps) -> list[LayerMask]:
    in_masks = [keep_in.clone() for keep_in, _ in keeps]
    out_masks = [keep_out.clone() for _, keep_out in keeps]
    for l in range(len(layers) - 1):
        k = expansion_factor(layers[l], layers[l + 1])
        alive = keeps[l][1].repeat_interleave(k) & keeps[l + 1][0]  # [in of l+1]
        out_masks[l] = alive.view(-1, k).any(dim=1)
        in_masks[l + 1] = alive
    return [LayerMask(in_mask, out_mask) for in_mask, out_mask in zip(in_masks, out_masks)]


def _keeps_within(layer: nn.Module, keep, mask: LayerMask):
    """A single-weight-pruned layer's (input, output) keep, given which of its outputs and inputs survive."""
    weights_kept = own_weight_mask(layer)
    if weights_kept is None:
        return keep
    keep_in, keep_out = _connected_units(weights_kept, mask)
    return keep[0] & keep_in, keep[1] & keep_out


def _connected_units(weights_kept: torch.Tensor, alive: LayerMask) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, outputs) that some kept weight connects between alive inputs and alive outputs.  # bool [in], [out]"""
    per_pair = weights_kept.reshape(weights_kept.shape[0], weights_kept.shape[1], -1).any(dim=2).cpu()
    per_pair = per_pair & alive.out_mask[:, None] & alive.in_mask[None, :]
    return per_pair.any(dim=0), per_pair.any(dim=1)


def full_masks(net) -> list[LayerMask]:
    """Masks that keep everything."""
    return propagate_masks(net, None)


def architecture(net, masks: Sequence[LayerMask]) -> list[int]:
    """Units kept per layer, Table-2 style: kept inputs of a linear layer, kept filters of a conv layer."""
    return [int((m.out_mask if is_conv(layer) else m.in_mask).sum()) for layer, m in zip(net.prunable_layers(), masks)]


def slim_block(weight: torch.Tensor, mask: LayerMask) -> torch.Tensor:
    """The kept rows and columns of a weight: ``weight[out_kept][:, in_kept]``.  # [kept_out, kept_in(, kh, kw)]"""
    out_index = mask.out_mask.nonzero().flatten().to(weight.device)
    in_index = mask.in_mask.nonzero().flatten().to(weight.device)
    return weight.index_select(0, out_index).index_select(1, in_index)


# ---- the deterministic (plain) copy ----------------------------------------------------------------------------------
@torch.no_grad()
def removed_unit_constants(net, masks: Sequence[LayerMask]) -> list[torch.Tensor]:
    """What each removed output of a prunable layer hands to the next prunable layer.  # per layer: [out]

    A removed unit's pre-activation is exactly 0; the modules up to the next prunable layer (batch norm, ReLU, pooling,
    flatten) map that 0 to a constant, ``relu(beta - gamma mu / sqrt(var + eps))`` after batch norm, 0 without it.
    Kept units and the last layer get 0.
    """
    chain = net.module_chain()
    positions = prunable_positions(chain)
    device = layer_weight(chain[positions[0]]).device
    output_shapes = chain_output_shapes(net)
    with eval_mode(net):
        constants = []
        for l, (here, there) in enumerate(zip(positions, positions[1:])):
            y = torch.zeros(output_shapes[here], device=device)
            for module in chain[here + 1:there]:
                y = module(y)
            per_unit = y[0].reshape(n_outputs(chain[here]), -1)  # [out, positions per unit]
            if not torch.equal(per_unit, per_unit[:, :1].expand_as(per_unit)):
                raise ValueError(f"the modules after prunable layer {l} do not map a zero output to a constant per "
                                 f"unit; only batch norm, ReLU, pooling, dropout and flatten are supported there")
            removed = ~masks[l].out_mask.to(device)
            constants.append(torch.where(removed, per_unit[:, 0], torch.zeros_like(per_unit[:, 0])))
    last = chain[positions[-1]]
    constants.append(torch.zeros(n_outputs(last), device=device))
    return constants


def carried_inputs(layer: nn.Module, next_layer: nn.Module, constants: torch.Tensor) -> torch.Tensor:
    """Inputs of ``next_layer`` reading a non-zero constant from a removed output of ``layer``.  # bool [in of next]"""
    return (constants != 0).cpu().repeat_interleave(expansion_factor(layer, next_layer))


@torch.no_grad()
def deterministic_net(net, masks: Sequence[LayerMask], weights: Sequence[torch.Tensor] | None = None):
    """A plain ``Net`` (``nn.Linear``/``nn.Conv2d``) computing the pruned posterior-mean network.

    Weights are ``posterior_mean() * weight_mask`` (or ``weights * weight_mask`` for given, e.g. rounded, full-shape
    weights), biases ``posterior_bias() * out_mask``; every other module (batch norm statistics included) is copied
    as it is. Inputs reading the constant of a removed unit keep their weights (module docstring). With all-True
    masks it reproduces the Bayesian net's eval output. The copy is a deep copy of ``net`` with plain layers in place of
    the prunable ones, so it has exactly the same modules (dropout, widths, classes) as the original.
    """
    layers = net.prunable_layers()
    if len(masks) != len(layers):
        raise ValueError(f"need one mask per prunable layer ({len(layers)}), got {len(masks)}")
    weights = [layer_weight(layer) for layer in layers] if weights is None else list(weights)
    plain_layers = []
    for layer, mask, weight in zip(layers, masks, weights):
        plain = plain_layer_like(layer, weight)
        plain.weight.copy_(weight * weight_mask_like(mask, weight))
        plain.bias.copy_(layer_bias(layer) * mask.out_mask.to(plain.bias.device))
        plain_layers.append(plain)
    # deepcopy puts each plain layer where its original sat, without copying the Bayesian parameters first
    copy_net = copy.deepcopy(net, memo={id(layer): plain for layer, plain in zip(layers, plain_layers)}).eval()
    constants = removed_unit_constants(copy_net, masks)
    for l in range(len(layers) - 1):
        carried = carried_inputs(layers[l], layers[l + 1], constants[l])
        if carried.any():
            weight = weights[l + 1]
            carried_mask = LayerMask(carried, masks[l + 1].out_mask)
            keep = weight_mask_like(masks[l + 1], weight) | weight_mask_like(carried_mask, weight)
            plain_layers[l + 1].weight.copy_(weight * keep)
    return copy_net.requires_grad_(False)


# ---- accounting inputs -----------------------------------------------------------------------------------------------
def kept_weight_mask(layer: nn.Module, mask: LayerMask) -> torch.Tensor:
    """Weights that are stored: the kept block of ``mask``, and of it only those the layer's own mask keeps."""
    weight = layer_weight(layer)
    kept = weight_mask_like(mask, weight)
    own = own_weight_mask(layer)
    return kept if own is None else kept & own.to(kept.device)


def layer_counts(layer: nn.Module, mask: LayerMask) -> accounting.LayerCounts:
    """Storage-relevant counts of a pruned layer: the dense kept block, and the weights stored within it."""
    stored = kept_weight_mask(layer, mask)
    kernel_area = int(np.prod(stored.shape[2:])) if stored.dim() > 2 else 1
    return accounting.LayerCounts(total=stored.numel(), nonzero=int(stored.sum()),
                                  slim=mask.kept_weights(kernel_area), rows=stored.shape[0])


def encoded_layer(layer: nn.Module, mask: LayerMask, weight: torch.Tensor, index_bits: int | None = None):
    """The pruned (rounded) tensor, its slimmed block and index width for ``accounting.compression_max``."""
    masked = (weight * weight_mask_like(mask, weight)).float().cpu()
    index_bits = accounting.DEFAULT_INDEX_BITS[layer_kind(layer)] if index_bits is None else index_bits
    return accounting.EncodedLayer(values=masked.numpy(), slim_values=slim_block(masked, mask).numpy(),
                                   index_bits=index_bits)
