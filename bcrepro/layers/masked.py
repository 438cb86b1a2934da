"""Dense layers with a fixed 0/1 weight mask, for the magnitude-pruning baselines (Deep Compression, Dynamic Network
Surgery) and anything else that prunes single weights.

``MaskedLinear``/``MaskedConv2d`` are ``nn.Linear``/``nn.Conv2d`` with a boolean buffer ``mask`` of the weight's
shape; the forward pass uses ``weight * mask``. Two gradient conventions (baselines.md §2.1, §3.1):

- ``straight_through=False`` (DC): the gradient of ``weight`` is masked too, so a pruned weight gets no update; the
  method also zeroes pruned weights after each optimiser step (momentum and weight decay would move them otherwise);
- ``straight_through=True`` (DNS): the gradient of the masked weight reaches *every* weight, pruned ones included, so
  a pruned weight can grow back and be spliced in again.

A 0-d buffer ``threshold`` (NaN until a method sets it) keeps a method's per-layer pruning threshold with the weights,
so a resumed run continues with the value computed once at its start (DNS's t from the pretrained weights).

``weight_mask()`` is the protocol ``bcrepro.compression`` reads: any prunable layer that has it stores only the
weights it marks (counted one by one, CSR where that is cheaper), and a unit none of whose weights survive is removed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _Masked:
    """What both masked layers share: the mask buffer and the effective weight."""

    straight_through: bool

    def _init_mask(self, straight_through: bool) -> None:
        self.straight_through = straight_through
        self.register_buffer("mask", torch.ones_like(self.weight, dtype=torch.bool))
        self.register_buffer("threshold", torch.tensor(float("nan")))

    def weight_mask(self) -> torch.Tensor:
        """Weights kept.  # bool, weight shape"""
        return self.mask

    def masked_weight(self) -> torch.Tensor:
        masked = self.weight * self.mask
        if self.straight_through:  # value of the masked weight, gradient of the full one
            return self.weight + (masked - self.weight).detach()
        return masked

    def extra_repr(self) -> str:
        kept = int(self.mask.sum())
        return f"{super().extra_repr()}, kept={kept}/{self.mask.numel()}, straight_through={self.straight_through}"


class MaskedLinear(_Masked, nn.Linear):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, straight_through: bool = False):
        super().__init__(in_features, out_features, bias=bias)
        self._init_mask(straight_through)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.masked_weight(), self.bias)


class MaskedConv2d(_Masked, nn.Conv2d):
    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 bias: bool = True, straight_through: bool = False):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                         bias=bias)
        self._init_mask(straight_through)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.masked_weight(), self.bias)
