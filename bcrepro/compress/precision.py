"""Bit precision of the kept weights, read from the posterior variances (paper §5, docs/method.md).

``s_l`` significand bits per layer from the marginal variances of the kept weights, one exponent ``e`` for the whole
net, ``b_l = 1 + e + s_l``; the weights are rounded to a grid of step ``2^-s_l`` (``reduce_precision``). Weight-shared
layers (Deep Compression's codebooks) store codebook indices instead (``codebook_precision``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from . import accounting
from .layer_view import layer_variance, layer_weight
from .masks import LayerMask, kept_weight_mask

MAX_SIGNIFICAND_BITS = 23  # float32's significand; the authors' t runs over 1..23


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
