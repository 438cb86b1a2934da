"""Exact rewrites that make an eval-mode network faster on CPU without changing a single output value.

PyTorch's CPU ``max_pool2d`` on NCHW tensors computes the arg-max indices even without autograd, which makes it slow
next to the same 2 x 2 window done as two elementwise ``torch.maximum`` over strided views (rows, then columns), and
a large share of a small conv net's inference time (figures in ``docs/benchmarks.md``; ``benchmarks/pooling.py``
measures both side by side). Because pooling scales with the channels while a conv scales with input x output
channels, it is a larger share of a slimmed network than of the original one, which hides part of the speed-up that
pruning earned.

``fast_inference(module)`` returns a copy of ``module`` where, inside every ``nn.Sequential``:

- ``nn.MaxPool2d`` with a 2 x 2 window, stride 2, no padding and dilation 1 (floor or ceil mode) becomes
  ``StridedMaxPool2x2``;
- ``nn.ReLU`` directly followed by such a pool becomes one ``StridedMaxPool2x2(relu=True)``, which pools first and
  applies the ReLU to the four-times-smaller result: ``relu(max(a, b, c, d)) = max(relu(a), ..., relu(d))`` because
  ReLU is non-decreasing.

Both are exact (the same maximum of the same numbers, NaN propagating as in ``max_pool2d``). Any other pooling is
left as it is. ``bcrepro speedup`` applies the rewrite to every variant it times, the original included, so measured
speed-ups compare like with like (``--stock-pooling`` times the modules as built).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


class StridedMaxPool2x2(nn.Module):
    """``max_pool2d(x, 2, ceil_mode=ceil_mode)`` as the elementwise maximum of even and odd rows, then of even and odd
    columns; with ``relu`` the pooled result is then clamped at zero (equal to pooling ``relu(x)``)."""

    def __init__(self, relu: bool = False, ceil_mode: bool = False):
        super().__init__()
        self.relu = relu
        self.ceil_mode = ceil_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [..., H, W] -> [..., H // 2, W // 2] (ceil: rounded up)
        odd_height, odd_width = x.shape[-2] % 2, x.shape[-1] % 2
        if self.ceil_mode and (odd_height or odd_width):
            # ceil mode adds a last window over the odd row/column alone: pad with -inf, which no maximum picks
            x = F.pad(x, (0, odd_width, 0, odd_height), value=float("-inf"))
        height, width = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2  # floor mode drops an odd last row/column
        # rows first: both views read whole rows, so this maximum runs on unit-stride memory and halves the data
        # before the column maximum, whose stride-2 views are the slow kind (faster than three maxima of stride-2
        # views; docs/benchmarks.md)
        rows = torch.maximum(x[..., 0:height:2, :width], x[..., 1:height:2, :width])
        pooled = torch.maximum(rows[..., 0::2], rows[..., 1::2])
        return pooled.clamp_min_(0) if self.relu else pooled

    def extra_repr(self) -> str:
        return f"relu={self.relu}, ceil_mode={self.ceil_mode}"


def pays_off(device: torch.device) -> bool:
    """Whether to rewrite for ``device``: on CPU only, where ``max_pool2d`` is the slow kernel; CUDA's is one fast
    kernel already, which two elementwise maxima would not beat."""
    return torch.device(device).type == "cpu"


def _pair(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def is_plain_2x2_pool(module: nn.Module) -> bool:
    """A ``nn.MaxPool2d`` that ``StridedMaxPool2x2`` reproduces exactly."""
    return (isinstance(module, nn.MaxPool2d) and _pair(module.kernel_size) == (2, 2)
            and _pair(module.stride or module.kernel_size) == (2, 2) and _pair(module.padding) == (0, 0)
            and _pair(module.dilation) == (1, 1) and not module.return_indices)


def _fused(layers: list[nn.Module]) -> list[nn.Module]:
    """``layers`` of a sequence with each plain 2 x 2 pool (and a ReLU right before it) replaced."""
    kept: list[nn.Module] = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        follower = layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(layer, nn.ReLU) and follower is not None and is_plain_2x2_pool(follower):
            kept.append(StridedMaxPool2x2(relu=True, ceil_mode=follower.ceil_mode))
            i += 2
            continue
        kept.append(StridedMaxPool2x2(ceil_mode=layer.ceil_mode) if is_plain_2x2_pool(layer) else layer)
        i += 1
    return kept


def fast_inference(module: nn.Module) -> nn.Module:
    """``module`` with the exact pooling rewrites of this module's docstring, for eval mode without gradients.

    ``module`` itself is not changed: every container on the way to a rewritten sequence is a new (shallow) copy,
    while the layers with weights are shared, not copied (so CSR layers, which cannot be deep-copied, work too)."""
    if isinstance(module, nn.Sequential):
        return nn.Sequential(*_fused([fast_inference(child) for child in module.children()]))
    if not module._modules:
        return module
    container = copy.copy(module)
    container._modules = {name: None if child is None else fast_inference(child)
                          for name, child in module._modules.items()}
    return container


def pooling_kind(module: nn.Module) -> str | None:
    """``"strided"`` when ``module`` pools with ``StridedMaxPool2x2``, ``"stock"`` when with torch's pooling modules
    only, None when it does not pool."""
    kinds = {"strided" if isinstance(m, StridedMaxPool2x2) else "stock"
             for m in module.modules() if isinstance(m, (StridedMaxPool2x2, nn.modules.pooling._MaxPoolNd,
                                                         nn.modules.pooling._AvgPoolNd,
                                                         nn.modules.pooling._AdaptiveAvgPoolNd,
                                                         nn.modules.pooling._AdaptiveMaxPoolNd))}
    return "strided" if "strided" in kinds else ("stock" if kinds else None)
