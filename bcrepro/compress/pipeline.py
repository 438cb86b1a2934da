"""Compression of a trained group-sparse network: prune -> reduce precision -> account (paper §5, docs/method.md).

The steps, in the order ``compress`` runs them, each from its module of ``bcrepro.compress``:

1. **Thresholds** (``thresholds``) per layer on the group statistic (GNJ: log alpha; GHS: -E[log z^2]; a group is kept
   iff its statistic is below the threshold), by one of the rules ``fixed`` (values from the config), ``auto`` (the
   default: greedy, on a validation split held out of the training set), ``valley`` (Otsu's split of the statistic's
   histogram, with a separation guard) and ``sparsest`` (the sparsest net within a validation-error budget).
2. **Masks** (``masks.propagate_masks``): a pruned group removes a column (its input unit) or a row (its filter); a
   unit that the next layer no longer reads is removed as well (docs/method.md), expanding a conv channel to its H*W
   inputs of the first linear layer.
3. **Deterministic copy** (``masks.deterministic_net``): a plain network with the masked posterior means (or their
   rounded values) as weights; its test error is ``error_pruned_pct`` (``error_quantized_pct`` with rounded weights).
4. **Bit precision** (``precision``, docs/method.md): ``s_l`` significand bits from the marginal variances of the kept
   weights, one exponent ``e`` for the whole net, ``b_l = 1 + e + s_l``; weights rounded to a grid of step ``2^-s_l``.
5. **Accounting** (``accounting``): ``compression_pruning``, ``compression_precision``, ``compression_max``.

``save_compressed`` and ``save_posterior`` write what a run keeps of the result besides its metrics:
``compressed.npz`` and ``posterior.npz`` (the latter through ``write_npz``, the same bytes for the same values).
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..atomic import write_atomically
from ..layers import GroupScaleLayer
from . import accounting
from .layer_view import eval_mode, layer_bias, layer_weight
from .masks import (LayerMask, architecture, deterministic_net, encoded_layer, full_masks, layer_counts,
                    propagate_masks, slim_block, stored_threshold)
from .precision import Precision, reduce_precision
from .thresholds import (Evaluate, error_compression_frontier, group_statistics, select_thresholds,
                         threshold_curve)


@dataclass
class CompressionResult:
    """``metrics``: the JSON-able keys of metrics.json owned by compression; the rest is for saving artefacts.

    ``encoded``: per prunable layer, the pruned (rounded) tensor and slimmed block that ``compression_max`` counts
    (``bitstream`` writes them to a file)."""

    metrics: dict
    thresholds: list[float | None]
    masks: list[LayerMask]
    pruned_net: nn.Module
    quantized_net: nn.Module | None
    precision: Precision | None
    encoded: list[accounting.EncodedLayer]


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
                                                if k in ("reference_error_pct", "passes", "max_candidates",
                                                         "acceptance", "z")})
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
        "compression_pruning": accounting.finite_or_none(accounting.compression_pruning(counts)),
        "compression_precision": (None if precision is None else accounting.finite_or_none(
            accounting.compression_precision(counts, precision.bits, precision.codebook_entries))),
        "compression_max": accounting.finite_or_none(accounting.compression_max(encoded)),
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
    (``bcrepro.deploy.slim`` folds them into the next bias).
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
        arrays[f"threshold_{i}"] = np.array(stored_threshold(threshold))
        arrays[f"in_mask_{i}"] = mask.in_mask.cpu().numpy()
        arrays[f"out_mask_{i}"] = mask.out_mask.cpu().numpy()
        if i < n_weight_layers:
            arrays[f"weight_{i}"] = layer_weight(layer).float().cpu().numpy()
    arrays["statistic_label"] = np.array(" / ".join(sorted(labels)))
    write_npz(path, arrays)


NPZ_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can hold: no clock in the bytes


def write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` atomically as a compressed ``.npz`` that ``np.load`` reads, with the same bytes for the same
    values: every entry dated ``NPZ_DATE`` and every array stored in C order (``np.savez_compressed`` stores a
    transposed array in Fortran order, so equal values could give different files): a committed copy changes only
    where its values do."""
    def write(out):
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for key, value in arrays.items():
                entry = zipfile.ZipInfo(f"{key}.npy", date_time=NPZ_DATE)
                entry.compress_type = zipfile.ZIP_DEFLATED
                with archive.open(entry, "w", force_zip64=True) as member:  # numpy's own layout (force_zip64)
                    np.lib.format.write_array(member, np.asarray(value, order="C"), allow_pickle=False)
    return write_atomically(path, write)
