"""Compression of a trained group-sparse network: prune -> reduce precision -> account (paper §5, docs/method.md).

The steps, in the order ``compress`` runs them:

1. **Thresholds** per layer on the group statistic (GNJ: log alpha; GHS: -E[log z^2]; a group is kept iff its statistic
   is below the threshold), by one of three rules: ``fixed`` (values from the config), ``auto`` (the default: greedy,
   on a validation split held out of the training set) and ``valley`` (Otsu's split of the statistic's histogram, with
   a separation guard).
2. **Masks** (``propagate_masks``): a pruned group removes a column (its input unit) or a row (its filter); a unit that
   the next layer no longer reads is removed as well (docs/method.md), expanding a conv channel to its H*W inputs
   of the first linear layer.
3. **Deterministic copy** (``deterministic_net``): a plain network with the masked posterior means (or their rounded
   values) as weights; its test error is ``error_pruned_pct`` (``error_quantized_pct`` with rounded weights).
4. **Bit precision** (docs/method.md): ``s_l`` significand bits from the marginal variances of the kept
   weights, one exponent ``e`` for the whole net, ``b_l = 1 + e + s_l``; weights rounded to a grid of step ``2^-s_l``.
5. **Accounting** (``bcrepro.accounting``): ``compression_pruning``, ``compression_precision``, ``compression_max``.

Pruned conv channel followed by batch norm: the channel's conv output is exactly 0 (weights and bias masked; the
layers scale the bias by z), but batch norm turns that 0 into a constant ``relu(beta - gamma mu / sqrt(var + eps))``
that the next layer still reads, as it does in the Bayesian net when ``z_c = 0``. ``deterministic_net`` keeps that
exact: the next layer's input columns of such a channel keep their (unmasked) weights, which only ever multiply the
constant; they are a bias in disguise and are not counted as kept weights (``bcrepro.slim`` folds them into the bias).
So ``deterministic_net(net, masks)`` computes exactly the Bayesian posterior-mean net with every pruned group's scale
set to zero. Without batch norm the constant is 0 and nothing is carried.
"""
from __future__ import annotations

import copy
import logging
import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from . import accounting
from ..atomic import write_atomically
from ..layers import GroupScaleLayer
from ..models import PRUNABLE_TYPES

log = logging.getLogger(__name__)

Evaluate = Callable[[nn.Module], float]  # a network -> its error in percent on some split
MAX_SIGNIFICAND_BITS = 23  # float32's significand; the authors' t runs over 1..23
DEFAULT_MAX_ERROR_INCREASE = 0.1  # percentage points of validation error the ``auto`` rule may spend
DEFAULT_MAX_CANDIDATES = 32
VALLEY_MAX_DEPTH = 0.5  # ``valley``: density at the split at most half the lower of the two peaks


# ---- layer geometry --------------------------------------------------------------------------------------------------
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


def _keeps_all(threshold) -> bool:
    return threshold is None or threshold == math.inf


@torch.no_grad()
def group_keep(layer: GroupScaleLayer, threshold: float | None) -> torch.Tensor:
    """Groups kept: statistic < threshold (docs/method.md); None or inf keeps all.  # bool [groups]"""
    statistic = layer.group_statistic().detach().cpu().double()  # float64, as the candidate midpoints
    if _keeps_all(threshold):
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


def _check_thresholds(layers, thresholds):
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
    thresholds = _check_thresholds(layers, thresholds)
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


# ---- the deterministic (plain) copy ---------------------------------------------------------------------------------
def _prunable_positions(chain) -> list[int]:
    return [i for i, m in enumerate(chain) if isinstance(m, PRUNABLE_TYPES)]


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
    return [before[p][1:] for p in _prunable_positions(net.module_chain())]


@torch.no_grad()
def removed_unit_constants(net, masks: Sequence[LayerMask]) -> list[torch.Tensor]:
    """What each removed output of a prunable layer hands to the next prunable layer.  # per layer: [out]

    A removed unit's pre-activation is exactly 0; the modules up to the next prunable layer (batch norm, ReLU, pooling,
    flatten) map that 0 to a constant, ``relu(beta - gamma mu / sqrt(var + eps))`` after batch norm, 0 without it.
    Kept units and the last layer get 0.
    """
    chain = net.module_chain()
    positions = _prunable_positions(chain)
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


# ---- bit precision (docs/method.md) ---------------------------------------------------------------------
def significand_bits(variances: torch.Tensor | np.ndarray) -> int:
    """s_l = ceil(mean_i t_i), t_i = #{t in 1..23 : 2 Var(w_i) < 2^-t} (the authors' ``float_precisions``), capped 23.

    The unit round-off of t significand bits with nearest rounding is 2^-t; t_i counts the bit positions whose
    round-off is still below the posterior noise. Zero variance gives 23; no kept weights give 0 (nothing is stored).
    """
    doubled = 2.0 * torch.as_tensor(variances, dtype=torch.float64).flatten()
    if doubled.numel() == 0:
        return 0
    total = sum(int((doubled < 2.0 ** -t).sum()) for t in range(1, MAX_SIGNIFICAND_BITS + 1))
    return min(MAX_SIGNIFICAND_BITS, -(-total // doubled.numel()))  # integer ceil of the mean


def exponent_bits(max_abs_weight: float) -> int:
    """e = ceil(log2(log2(m) + 1) + 1) with m the largest kept |weight| (the authors' ``exponent_bit``), guarded.

    The authors' formula gives 0 for m = 0.6, -inf at 0.5 and NaN below; here log2(m) is replaced by
    max(log2(m), 0), which changes nothing for m >= 1 (m = 2 -> 2, 4 -> 3, 10 -> 4, 1e39 -> 9) and gives 1 for m <= 1.
    """
    if math.isnan(max_abs_weight) or max_abs_weight < 0:
        raise ValueError(f"exponent_bits needs the largest absolute weight (>= 0), got {max_abs_weight}")
    log_m = math.log2(max_abs_weight) if max_abs_weight > 1 else 0.0
    return math.ceil(math.log2(log_m + 1.0) + 1.0)


def layer_bits(exponent: int, significand: int) -> int:
    """b_l = 1 (sign) + e + s_l: the per-layer bit precision of the paper's Table 1 (docs/method.md)."""
    return 1 + exponent + significand


def round_to_fixed_point(weight: torch.Tensor, significand: int) -> torch.Tensor:
    """floor(w / 2^-s + 0.5) * 2^-s: nearest rounding to the grid of step 2^-s (the authors' ``special_round``)."""
    step = 2.0 ** -significand
    return torch.floor(weight / step + 0.5) * step


@dataclass
class Precision:
    """The outcome of precision reduction; entries are None for layers without variances (kept at 32 bits)."""

    significands: list[int | None]
    exponent: int
    bits: list[int]  # b_l, 32 for layers without variances; the index bits of a codebook
    rounded_weights: list[torch.Tensor]  # full-shape, unmasked
    codebook_entries: list[int] | None = None  # per layer, 32-bit values stored besides the indices (DC)


def codebook_precision(net) -> Precision | None:
    """Precision of weight-shared layers (DC): b_l = the codebook index bits, the weights as they are (already shared);
    None unless every prunable layer has a codebook."""
    layers = net.prunable_layers()
    entries = [layer.codebook_entries() if hasattr(layer, "codebook_entries") else None for layer in layers]
    if any(e is None for e in entries):
        return None
    bits = [max(1, math.ceil(math.log2(e))) for e in entries]  # shared layers have e >= 1 entries
    return Precision([None] * len(layers), 0, bits, [layer_weight(layer) for layer in layers], entries)


@torch.no_grad()
def reduce_precision(net, masks: Sequence[LayerMask]) -> Precision | None:
    """Bits and rounded weights from the marginal variances of the kept weights; None when no layer has variances.

    Weight-shared networks (codebooks) get ``codebook_precision`` instead."""
    shared = codebook_precision(net)
    if shared is not None:
        return shared
    layers = net.prunable_layers()
    variances = [layer_variance(layer) for layer in layers]
    if all(v is None for v in variances):
        return None
    weights = [layer_weight(layer) for layer in layers]
    kept = [kept_weight_mask(layer, m) for layer, m in zip(layers, masks)]
    largest = max((float(w[k].abs().max()) for w, k, v in zip(weights, kept, variances) if v is not None and k.any()),
                  default=0.0)
    exponent = exponent_bits(largest)
    significands = [None if v is None else significand_bits(v[k]) for v, k in zip(variances, kept)]
    bits = [accounting.FLOAT_BITS if s is None else layer_bits(exponent, s) for s in significands]
    rounded = [w if s is None else round_to_fixed_point(w, s) for w, s in zip(weights, significands)]
    return Precision(significands, exponent, bits, rounded)


# ---- thresholds ------------------------------------------------------------------------------------------------------
def _json_threshold(threshold) -> float | None:
    return None if _keeps_all(threshold) else float(threshold)


def group_statistics(net) -> list[np.ndarray | None]:
    """Each prunable layer's group statistic as a float64 array (None for plain layers)."""
    return [layer.group_statistic().detach().cpu().double().numpy() if isinstance(layer, GroupScaleLayer) else None
            for layer in net.prunable_layers()]


def threshold_midpoints(statistic: np.ndarray) -> np.ndarray:
    """Midpoints between consecutive distinct sorted values: threshold ``m_i`` keeps exactly the i+1 smallest groups."""
    values = np.unique(statistic)
    return (values[:-1] + values[1:]) / 2.0


def thin_indices(n: int, at_most: int) -> np.ndarray:
    """At most ``at_most`` evenly spread (quantile) positions out of ``range(n)``, both ends included."""
    if n <= at_most:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, at_most)).astype(int))


def otsu_split(values: np.ndarray) -> tuple[float, np.ndarray, np.ndarray] | None:
    """Otsu (1979) on 1-D data: the split of the sorted values maximising the between-class variance
    w0 w1 (m0 - m1)^2; returns (midpoint threshold, lower class, upper class), or None when all values are equal."""
    values = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if values.size < 2 or values[0] == values[-1]:
        return None
    sizes = np.arange(1, values.size)
    sums = np.cumsum(values)[:-1]
    lower_mean = sums / sizes
    upper_mean = (values.sum() - sums) / (values.size - sizes)
    between = sizes * (values.size - sizes) * (lower_mean - upper_mean) ** 2
    between[values[1:] == values[:-1]] = -1.0  # never split between equal values
    cut = int(np.argmax(between)) + 1
    return (values[cut - 1] + values[cut]) / 2.0, values[:cut], values[cut:]


def valley_depth(values: np.ndarray, threshold: float, bandwidth: float, grid_size: int = 256) -> float:
    """Gaussian-kernel density at ``threshold`` over the lower of the highest densities on either side of it."""
    values = np.asarray(values, dtype=np.float64).ravel()

    def density(points):
        return np.exp(-0.5 * ((points[:, None] - values[None, :]) / bandwidth) ** 2).sum(axis=1)

    grid = np.linspace(values.min(), values.max(), grid_size)
    at_split = density(np.array([threshold]))[0]
    lower_peak = density(grid[grid <= threshold]).max(initial=at_split)
    upper_peak = density(grid[grid >= threshold]).max(initial=at_split)
    return at_split / min(lower_peak, upper_peak)


def valley_threshold(statistic: np.ndarray, max_depth: float = VALLEY_MAX_DEPTH) -> float:
    """Otsu's threshold if the two classes are separated by a valley, else inf (keep every group).

    Guard: a Gaussian kernel density with bandwidth = the pooled within-class standard deviation of Otsu's two classes
    must dip at the threshold to at most ``max_depth`` (0.5) times the lower of the two peaks on either side. A
    unimodal sample has no such dip (Otsu's split then sits on a slope or at the mode), so every group is kept.
    Simulated: no unimodal normal or uniform sample of >= 20 values, or samples from a tight N(-9, 0.01) like a fresh
    initialisation, passes; two clusters 8 within-class sd apart pass from 20 values on. Heavy tails (log-normal, t3)
    can have a few far outliers split off.
    """
    split = otsu_split(statistic)
    if split is None:
        return math.inf
    threshold, lower, upper = split
    pooled_sd = math.sqrt((lower.var() * lower.size + upper.var() * upper.size) / (lower.size + upper.size))
    if pooled_sd == 0.0:  # two point masses
        return float(threshold)
    depth = valley_depth(np.concatenate([lower, upper]), threshold, pooled_sd)
    return float(threshold) if depth <= max_depth else math.inf


def monitor_groups_kept(statistic: torch.Tensor) -> int:
    """Groups the ``valley`` rule would keep now: the training loop's progress line shows this while pruning happens."""
    values = statistic.detach().float().cpu().numpy()
    return int((values < valley_threshold(values)).sum())


def _groups_kept(net, thresholds) -> tuple[list[int | None], list[int | None]]:
    kept, total = [], []
    for layer, t in zip(net.prunable_layers(), thresholds):
        if isinstance(layer, GroupScaleLayer):
            keep = group_keep(layer, t)
            kept.append(int(keep.sum()))
            total.append(int(keep.numel()))
        else:
            kept.append(None)
            total.append(None)
    return kept, total


def threshold_record(net, rule: str, thresholds, **extra) -> dict:
    """The JSON-able record of a threshold choice: rule, thresholds (null = keep all), groups kept/total per layer."""
    kept, total = _groups_kept(net, thresholds)
    return {"rule": rule, "thresholds": [_json_threshold(t) for t in thresholds], "groups_kept": kept,
            "groups_total": total, **extra}


def pruned_error(net, thresholds, evaluate: Evaluate) -> float:
    """Error of the pruned posterior-mean net for these thresholds."""
    return float(evaluate(deterministic_net(net, propagate_masks(net, thresholds))))


def select_fixed(net, config: dict, evaluate: Evaluate | None = None):
    """``fixed``: ``config["values"]``, one per prunable layer (null keeps every group)."""
    values = config.get("values")
    if values is None:
        raise ValueError("threshold rule 'fixed' needs 'values': one threshold per prunable layer, e.g. "
                         "{'rule': 'fixed', 'values': [-2.8, -3.0, -5.0]} for LeNet-300-100 (the authors' choice)")
    thresholds = [None if _keeps_all(v) else float(v) for v in _check_thresholds(net.prunable_layers(), values)]
    return thresholds, threshold_record(net, "fixed", thresholds)


def select_valley(net, config: dict, evaluate: Evaluate | None = None):
    """``valley``: per layer, Otsu's threshold on the statistic, or keep all where no valley separates the classes."""
    max_depth = float(config.get("max_depth", VALLEY_MAX_DEPTH))
    thresholds = [None if s is None else valley_threshold(s, max_depth) for s in group_statistics(net)]
    thresholds = [None if _keeps_all(t) else t for t in thresholds]
    return thresholds, threshold_record(net, "valley", thresholds, max_depth=max_depth)


def _search_layer(n_midpoints: int, passes, max_candidates: int) -> int:
    """Index into the midpoints (``n_midpoints`` = keep all) of the threshold pruning the most groups that ``passes``.

    Scans the thinned candidates from the most pruning one, then bisects between the last failing and the first
    passing candidate over the unthinned midpoints (assuming error grows with pruning between two candidates).
    Keeping all always passes.
    """
    failing, passing = -1, n_midpoints
    for index in thin_indices(n_midpoints, max_candidates):
        if passes(index):
            passing = index
            break
        failing = index
    while passing - failing > 1:
        middle = (passing + failing) // 2
        if passes(middle):
            passing = middle
        else:
            failing = middle
    return passing


def _greedy_layer_threshold(net, thresholds, i, statistic, evaluate, bound, current_error, max_candidates):
    """``auto`` for layer ``i``: (threshold or None, validation error with it, JSON-able list of what was tried)."""
    midpoints = threshold_midpoints(statistic)
    keep_all = len(midpoints)
    errors = {keep_all: current_error}  # keeping all: the error of the choices so far, which passed

    def passes(index):
        if index not in errors:
            candidate = thresholds[:i] + [float(midpoints[index])] + thresholds[i + 1:]
            errors[index] = pruned_error(net, candidate, evaluate)
        return index == keep_all or errors[index] <= bound

    chosen = _search_layer(keep_all, passes, max_candidates)
    threshold = None if chosen == keep_all else float(midpoints[chosen])
    tried = [{"threshold": None if k == keep_all else float(midpoints[k]),
              "groups_kept": int(len(statistic) if k == keep_all else (statistic < midpoints[k]).sum()),
              "error_pct": float(e)} for k, e in sorted(errors.items())]
    return threshold, errors[chosen], tried


def select_auto(net, config: dict, evaluate: Evaluate | None):
    """``auto``: greedy per layer (largest weight count first) on a validation split held out of the training set.

    Baseline = validation error of the unpruned posterior-mean net. For each group layer, given the thresholds already
    chosen, take the threshold that prunes the most groups with validation error <= baseline + ``max_error_increase``
    (percentage points, default 0.1). Candidates: midpoints between consecutive sorted statistic values, thinned to
    ``max_candidates`` (32) quantile positions, plus +inf; the chosen one is refined by bisection between its failing
    neighbour and it. ``evaluate`` is called once per tried threshold.
    """
    if evaluate is None:
        raise ValueError("threshold rule 'auto' needs an evaluate callable (validation error in percent of a split "
                         "held out of the training set); use rule 'fixed' or 'valley' without one")
    max_increase = float(config.get("max_error_increase", DEFAULT_MAX_ERROR_INCREASE))
    max_candidates = int(config.get("max_candidates", DEFAULT_MAX_CANDIDATES))
    layers = net.prunable_layers()
    statistics = group_statistics(net)
    thresholds: list[float | None] = [None] * len(layers)
    baseline = pruned_error(net, thresholds, evaluate)
    bound = baseline + max_increase
    group_layers = [i for i, s in enumerate(statistics) if s is not None]
    order = sorted(group_layers, key=lambda i: -layer_weight(layers[i]).numel())
    trials, current_error = [], baseline
    for step, i in enumerate(order, 1):
        started = time.perf_counter()
        thresholds[i], current_error, tried = _greedy_layer_threshold(net, thresholds, i, statistics[i], evaluate,
                                                                      bound, current_error, max_candidates)
        trials.append({"layer": i, "tried": tried})
        kept = int(group_keep(layers[i], thresholds[i]).sum())
        log.info("auto threshold %d/%d: layer %d keeps %d of %d groups, validation error %.2f %% (bound %.2f %%); "
                 "%d networks evaluated in %.1f s", step, len(order), i, kept, len(statistics[i]), current_error,
                 bound, len(tried) - 1, time.perf_counter() - started)
    record = threshold_record(net, "auto", thresholds, max_error_increase=max_increase, max_candidates=max_candidates,
                              validation_error_baseline=baseline, validation_error=current_error, trials=trials)
    return thresholds, record


def weights_per_group(net) -> list[float | None]:
    """Per group layer, the weights (its own and those of neighbours left unconnected) that pruning one group removes,
    averaged over its groups: measured by pruning each group alone from the unpruned net, so conv channels expanding
    into a linear layer's inputs and input units whose source row dies are counted as the masks count them."""
    layers = net.prunable_layers()
    full = sum(int(kept_weight_mask(layer, mask).sum()) for layer, mask in zip(layers, full_masks(net)))
    removed: list[float | None] = []
    for i, statistic in enumerate(group_statistics(net)):
        if statistic is None:
            removed.append(None)
            continue
        values = np.unique(statistic)
        if len(values) < 2:  # every group equal: no threshold separates one of them
            removed.append(0.0)
            continue
        thresholds: list[float | None] = [None] * len(layers)
        thresholds[i] = float((values[-2] + values[-1]) / 2)  # drop the groups with the largest statistic
        masks = propagate_masks(net, thresholds)
        kept = sum(int(kept_weight_mask(layer, mask).sum()) for layer, mask in zip(layers, masks))
        removed.append((full - kept) / int((statistic >= thresholds[i]).sum()))
    return removed


def select_sparsest(net, config: dict, evaluate: Evaluate | None):
    """``sparsest``: coordinate descent over the layers' thresholds, the layers whose groups carry the most weights
    first, under one validation-error budget; it looks for the sparsest net the posterior allows, not for a cut.

    Bound = max(unpruned validation error, ``reference_error_pct``) + ``max_error_increase`` (points, default 0.1):
    the paper states its budget against the dense reference (0.9 % -> 1.0 %), so with the dense net's validation
    error as ``reference_error_pct`` the budget is the same; a posterior already worse than the reference still gets
    ``max_error_increase`` over its own error. Order: layers by the weights one pruned group removes
    (``weights_per_group``; in LeNet-5 a conv2 channel takes its filter and its 16 fc1 inputs of every fc1 row, an fc2
    input takes a whole fc1 row), so the budget goes first where it buys the most. Each layer in turn gets the most
    pruning threshold that keeps the validation error within the bound given the other layers' current thresholds
    (the ``auto`` search: thinned candidates, then bisection); passes repeat (at most ``passes``, default 3) until no
    threshold moves, since pruning one layer can make room in another. A pass never keeps more groups than before.
    """
    if evaluate is None:
        raise ValueError("threshold rule 'sparsest' needs an evaluate callable (validation error in percent of a "
                         "split held out of the training set); use rule 'fixed' or 'valley' without one")
    max_increase = float(config.get("max_error_increase", DEFAULT_MAX_ERROR_INCREASE))
    max_candidates = int(config.get("max_candidates", DEFAULT_MAX_CANDIDATES))
    passes = int(config.get("passes", 3))
    reference = config.get("reference_error_pct")
    if passes < 1:
        raise ValueError(f"threshold rule 'sparsest': passes must be at least 1, got {passes}")
    layers = net.prunable_layers()
    statistics = group_statistics(net)
    thresholds: list[float | None] = [None] * len(layers)
    baseline = pruned_error(net, thresholds, evaluate)
    bound = max(baseline, -math.inf if reference is None else float(reference)) + max_increase
    leverage = weights_per_group(net)
    order = sorted((i for i, s in enumerate(statistics) if s is not None), key=lambda i: -leverage[i])
    trials, current_error, moved = [], baseline, True
    for pass_number in range(1, passes + 1):
        if not moved:
            break
        moved = False
        for i in order:
            before = thresholds[i]
            candidate, error, tried = _greedy_layer_threshold(net, thresholds, i, statistics[i], evaluate, bound,
                                                              current_error, max_candidates)
            kept_before = int(group_keep(layers[i], before).sum())
            if int(group_keep(layers[i], candidate).sum()) < kept_before:
                thresholds[i], current_error, moved = candidate, error, True
            trials.append({"pass": pass_number, "layer": i, "tried": tried})
            log.info("sparsest threshold, pass %d: layer %d keeps %d of %d groups, validation error %.2f %% "
                     "(bound %.2f %%)", pass_number, i, int(group_keep(layers[i], thresholds[i]).sum()),
                     len(statistics[i]), current_error, bound)
    record = threshold_record(net, "sparsest", thresholds, max_error_increase=max_increase,
                              max_candidates=max_candidates, passes=passes, reference_error_pct=reference,
                              validation_error_baseline=baseline, validation_error_bound=bound,
                              validation_error=current_error, order=order,
                              weights_per_group=[None if w is None else float(w) for w in leverage], trials=trials)
    return thresholds, record


THRESHOLD_RULES = {"fixed": select_fixed, "valley": select_valley, "auto": select_auto, "sparsest": select_sparsest}


def select_thresholds(net, config: dict | None = None, evaluate: Evaluate | None = None):
    """Thresholds (aligned with ``net.prunable_layers()``, None = keep all) and their JSON-able record.

    ``config``: ``{"rule": "auto" | "fixed" | "valley", ...}`` (default ``auto``); ``evaluate``: validation error.
    """
    config = dict(config or {})
    rule = config.get("rule", "auto")
    try:
        select = THRESHOLD_RULES[rule]
    except KeyError:
        raise ValueError(f"unknown threshold rule {rule!r}; expected one of {sorted(THRESHOLD_RULES)}") from None
    return select(net, config, evaluate)


def threshold_curve(net, thresholds, evaluate: Evaluate, n_points: int = 15) -> list[dict]:
    """Per group layer: validation error and groups kept at a grid of thresholds, the other layers at their chosen
    values. The grid is ``n_points - 1`` quantile-spread midpoints of the statistic, +inf (null) and the chosen value.
    """
    thresholds = _check_thresholds(net.prunable_layers(), thresholds)
    curves = []
    for i, statistic in enumerate(group_statistics(net)):
        if statistic is None:
            continue
        midpoints = threshold_midpoints(statistic)
        grid = {float(midpoints[k]) for k in thin_indices(len(midpoints), max(1, n_points - 1))}
        if not _keeps_all(thresholds[i]):
            grid.add(float(thresholds[i]))
        points = sorted(grid) + [math.inf]
        started = time.perf_counter()
        errors = [pruned_error(net, thresholds[:i] + [t] + thresholds[i + 1:], evaluate) for t in points]
        log.info("threshold curve: layer %d, validation error at %d thresholds in %.1f s", i, len(points),
                 time.perf_counter() - started)
        curves.append({"layer": i, "chosen": _json_threshold(thresholds[i]),
                       "thresholds": [_json_threshold(t) for t in points],
                       "groups_kept": [int((statistic < t).sum()) for t in points], "error_pct": errors})
    return curves


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


# ---- the error-compression frontier ----------------------------------------------------------------------------------
DEFAULT_FRONTIER_BUDGETS = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)  # points of validation error over the unpruned net


@torch.no_grad()
def error_compression_frontier(net, evaluate_validation: Evaluate, evaluate_test: Evaluate,
                               budgets: Sequence[float] = DEFAULT_FRONTIER_BUDGETS,
                               config: dict | None = None) -> list[dict]:
    """The ``sparsest`` rule at each validation budget in ``budgets``: per point the validation and test error of the
    pruned net and its compression after pruning, so one run shows the whole trade-off, not one threshold choice.
    The test error is measured for the reader only; every choice is made on the validation split."""
    layers = net.prunable_layers()
    points = []
    with eval_mode(net):
        for budget in budgets:
            thresholds, record = select_sparsest(net, {**(config or {}), "max_error_increase": float(budget)},
                                                 evaluate_validation)
            masks = propagate_masks(net, thresholds)
            counts = [layer_counts(layer, m) for layer, m in zip(layers, masks)]
            points.append({"max_error_increase": float(budget), "validation_error_pct": record["validation_error"],
                           "test_error_pct": float(evaluate_test(deterministic_net(net, masks))),
                           "compression_pruning": _finite_or_none(accounting.compression_pruning(counts)),
                           "kept_weights": [c.nonzero for c in counts], "architecture": architecture(net, masks)})
            log.info("frontier: budget +%.2f points keeps %s (%s), validation %.2f %%, test %.2f %%", budget,
                     "-".join(map(str, points[-1]["architecture"])),
                     "inf" if points[-1]["compression_pruning"] is None else
                     f"{points[-1]['compression_pruning']:.1f}x", points[-1]["validation_error_pct"],
                     points[-1]["test_error_pct"])
    return points


def compression_at_error(frontier: Sequence[dict], error_pct: float, key: str = "test_error_pct") -> float | None:
    """The highest compression after pruning among frontier points whose ``key`` error is at most ``error_pct``
    (None when no point is that accurate)."""
    rates = [p["compression_pruning"] for p in frontier
             if p[key] is not None and p[key] <= error_pct + 1e-9 and p["compression_pruning"] is not None]
    return max(rates) if rates else None


# ---- the whole step -----------------------------------------------------------------------------------------------
@dataclass
class CompressionResult:
    """``metrics``: the JSON-able keys of metrics.json owned by compression; the rest is for saving artefacts.

    ``encoded``: per prunable layer, the pruned (rounded) tensor and slimmed block that ``compression_max`` counts
    (``bcrepro.bitstream`` writes them to a file)."""

    metrics: dict
    thresholds: list[float | None]
    masks: list[LayerMask]
    pruned_net: nn.Module
    quantized_net: nn.Module | None
    precision: Precision | None
    encoded: list[accounting.EncodedLayer]


def _finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


@torch.no_grad()
def compress(net, thresholds_config: dict | None, evaluate_validation: Evaluate | None, evaluate_test: Evaluate, *,
             curve_points: int = 15, index_bits: Sequence[int] | None = None,
             frontier_budgets: Sequence[float] | None = None) -> CompressionResult:
    """Prune, reduce precision and account; errors from ``evaluate_test`` (a network -> test error in percent).

    ``evaluate_validation`` (validation split held out of training) drives the ``auto`` rule and the threshold curve.
    ``index_bits``: relative-index widths per prunable layer for ``compression_max`` (default 5 linear, 8 conv).
    ``frontier_budgets``: validation budgets of the error-compression frontier (``error_compression_frontier``;
    None or empty: none), computed for networks with group layers when a validation split is given.
    """
    layers = net.prunable_layers()
    with eval_mode(net):
        thresholds, record = select_thresholds(net, thresholds_config, evaluate_validation)
        masks = propagate_masks(net, thresholds)
        error = float(evaluate_test(deterministic_net(net, full_masks(net))))
        pruned = deterministic_net(net, masks)
        error_pruned = float(evaluate_test(pruned))
        precision = reduce_precision(net, masks)
        quantized = None if precision is None else deterministic_net(net, masks, precision.rounded_weights)
        error_quantized = None if quantized is None else float(evaluate_test(quantized))
        has_groups = any(isinstance(layer, GroupScaleLayer) for layer in layers)
        curve = (threshold_curve(net, thresholds, evaluate_validation, curve_points)
                 if evaluate_validation is not None and has_groups and curve_points > 1 else None)
        frontier = (error_compression_frontier(net, evaluate_validation, evaluate_test, frontier_budgets,
                                               {k: v for k, v in (thresholds_config or {}).items()
                                                if k in ("reference_error_pct", "passes", "max_candidates")})
                    if evaluate_validation is not None and has_groups and frontier_budgets else None)

    counts = [layer_counts(layer, m) for layer, m in zip(layers, masks)]
    stored_weights = [layer_weight(layer) for layer in layers] if precision is None else precision.rounded_weights
    index_bits = [None] * len(layers) if index_bits is None else list(index_bits)
    encoded = [encoded_layer(layer, m, w, b) for layer, m, w, b in zip(layers, masks, stored_weights, index_bits)]
    value_bits = [accounting.FLOAT_BITS] * len(layers) if precision is None else precision.bits
    metrics = {
        "error_pct": error,
        "error_pruned_pct": error_pruned,
        "error_quantized_pct": error_quantized,
        "total_weights": sum(c.total for c in counts),
        "nonzero_weights": sum(c.nonzero for c in counts),
        "layer_weights": [c.total for c in counts],
        "kept_weights": [c.nonzero for c in counts],
        "compression_pruning": _finite_or_none(accounting.compression_pruning(counts)),
        "compression_precision": (None if precision is None else _finite_or_none(
            accounting.compression_precision(counts, precision.bits, precision.codebook_entries))),
        "compression_max": _finite_or_none(accounting.compression_max(encoded)),
        "bits": None if precision is None else list(precision.bits),
        "significand_bits": None if precision is None else list(precision.significands),
        "exponent_bits": None if precision is None else precision.exponent,
        "storage_formats": {
            "pruning": [accounting.layer_storage(c, accounting.FLOAT_BITS)[1] for c in counts],
            "precision": [accounting.layer_storage(c, b)[1] for c, b in zip(counts, value_bits)],
            "max": [accounting.layer_max_storage(e)[1] for e in encoded],
        },
        "architecture": architecture(net, masks),
        # Layers left with no weight: the output no longer depends on the input, and the rates are infinite (null).
        "empty_layers": [i for i, c in enumerate(counts) if c.nonzero == 0],
        "thresholds": record,
        "threshold_curve": curve,
        "frontier": frontier,
    }
    return CompressionResult(metrics, thresholds, masks, pruned, quantized, precision, encoded)


@torch.no_grad()
def save_compressed(path: str | os.PathLike, net, masks: Sequence[LayerMask],
                    weights: Sequence[torch.Tensor] | None = None, bits: Sequence[int] | None = None) -> int:
    """Write ``compressed.npz`` and return its size in bytes.

    Per prunable layer ``i``: ``layer{i}_weight`` (the masked, rounded posterior means in slimmed form: kept rows and
    columns only, float32), ``layer{i}_bias`` (biases of the kept outputs), ``layer{i}_in_index`` and
    ``layer{i}_out_index`` (kept input units/channels and output units/filters of the original layer) and
    ``layer{i}_bits`` (b_l, 32 where none). The constants that removed batch-normed channels pass on are not stored
    (``bcrepro.slim`` folds them into the next bias).
    """
    layers = net.prunable_layers()
    weights = [layer_weight(layer) for layer in layers] if weights is None else list(weights)
    bits = [accounting.FLOAT_BITS] * len(layers) if bits is None else list(bits)
    arrays = {}
    for i, (layer, mask, weight, b) in enumerate(zip(layers, masks, weights, bits)):
        arrays[f"layer{i}_weight"] = slim_block(weight, mask).float().cpu().numpy()
        arrays[f"layer{i}_bias"] = layer_bias(layer)[mask.out_mask.to(weight.device)].float().cpu().numpy()
        arrays[f"layer{i}_in_index"] = mask.in_mask.nonzero().flatten().numpy()
        arrays[f"layer{i}_out_index"] = mask.out_mask.nonzero().flatten().numpy()
        arrays[f"layer{i}_bits"] = np.array(b, dtype=np.int64)
    return write_atomically(path, lambda out: np.savez_compressed(out, **arrays)).stat().st_size


@torch.no_grad()
def save_posterior(path: str | os.PathLike, net, thresholds: Sequence[float | None], masks: Sequence[LayerMask],
                   n_weight_layers: int = 2) -> None:
    """Write ``posterior.npz``: what the figures need of a group-sparse posterior, without rebuilding the network.

    Per prunable layer ``i``: ``statistic_{i}`` (the group statistic, float64; only for group layers),
    ``threshold_{i}`` (NaN = keep all), ``in_mask_{i}``/``out_mask_{i}`` (after propagation), and for the first
    ``n_weight_layers`` layers ``weight_{i}``, the test-time (posterior-mean) weights; plus ``statistic_label``.
    """
    arrays, labels = {}, set()
    for i, (layer, statistic, threshold, mask) in enumerate(zip(net.prunable_layers(), group_statistics(net),
                                                                  thresholds, masks)):
        if statistic is not None:
            arrays[f"statistic_{i}"] = statistic
            labels.add(layer.statistic_label)
        arrays[f"threshold_{i}"] = np.array(np.nan if _keeps_all(threshold) else float(threshold))
        arrays[f"in_mask_{i}"] = mask.in_mask.cpu().numpy()
        arrays[f"out_mask_{i}"] = mask.out_mask.cpu().numpy()
        if i < n_weight_layers:
            arrays[f"weight_{i}"] = layer_weight(layer).float().cpu().numpy()
    arrays["statistic_label"] = np.array(" / ".join(sorted(labels)))
    write_atomically(path, lambda out: np.savez_compressed(out, **arrays))
