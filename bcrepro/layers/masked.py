"""Dense layers with a fixed 0/1 weight mask, for the magnitude-pruning baselines (Deep Compression, Dynamic Network
Surgery) and anything else that prunes single weights.

``MaskedLinear``/``MaskedConv2d`` are ``nn.Linear``/``nn.Conv2d`` with a boolean buffer ``mask`` of the weight's
shape; the forward pass uses ``weight * mask``. Two gradient conventions (docs/baselines.md §2.1, §3.1):

- ``straight_through=False`` (DC): the gradient of ``weight`` is masked too, so a pruned weight gets no update; the
  method also zeroes pruned weights after each optimiser step (momentum and weight decay would move them otherwise);
- ``straight_through=True`` (DNS): the gradient of the masked weight reaches *every* weight, pruned ones included, so
  a pruned weight can grow back and be spliced in again.

A 0-d buffer ``threshold`` (NaN until a method sets it) keeps a method's per-layer pruning threshold with the weights,
so a resumed run continues with the value computed once at its start (DNS's t from the pretrained weights).

With ``codebook_size=k`` (Deep Compression's trained quantisation) a layer can switch to weight sharing:
``share_weights()`` clusters its kept weights into at most k centroids (1-D k-means, linear init), after which the
forward pass uses ``centroids[assignments]`` and only the centroids are trained. The gradient of centroid c is then
autograd's scatter-add of the weight gradients over the weights assigned to c, DC's fine-tuning rule (§2.1, step 5).

``weight_mask()`` is the protocol ``bcrepro.compress`` reads: any prunable layer that has it stores only the
weights it marks (counted one by one, CSR where that is cheaper), and a unit none of whose weights survive is removed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..weight_sharing import share_weights


class _Masked:
    """What both masked layers share: the mask buffer and the effective weight."""

    straight_through: bool

    def _init_mask(self, straight_through: bool, codebook_size: int | None) -> None:
        self.straight_through = straight_through
        self.register_buffer("mask", torch.ones_like(self.weight, dtype=torch.bool))
        self.register_buffer("threshold", torch.tensor(float("nan")))
        self.codebook_size = codebook_size
        if codebook_size is not None:
            self.centroids = nn.Parameter(torch.zeros(codebook_size))  # trained only once shared
            self.register_buffer("assignments", torch.full_like(self.weight, -1, dtype=torch.int64))
            self.register_buffer("n_centroids", torch.tensor(0))  # 0 until share_weights(); then k <= codebook_size
        # The same count as a Python number: the forward pass asks ``shared`` every step, and reading a buffer on a
        # GPU would make the host wait for the device each time. Kept in step by share_weights and state-dict loads.
        self._entries = 0

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if self.codebook_size is not None and prefix + "n_centroids" in state_dict:
            self._entries = int(state_dict[prefix + "n_centroids"])

    @property
    def shared(self) -> bool:
        return self.codebook_size is not None and self._entries > 0

    def weight_mask(self) -> torch.Tensor:
        """Weights kept.  # bool, weight shape"""
        return self.mask

    @torch.no_grad()
    def share_weights(self) -> None:
        """Cluster the kept weights into at most ``codebook_size`` centroids; from now on only those are trained."""
        codebook = share_weights(self.weight.detach(), self.mask, int(self.codebook_size).bit_length() - 1)
        self.set_codebook(codebook.centroids, codebook.assignments)

    @torch.no_grad()
    def set_codebook(self, centroids: torch.Tensor, assignments: torch.Tensor) -> None:
        """Share the weights: ``centroids`` (at most ``codebook_size``) and each weight's index into them (-1 where
        pruned). The only way to set a codebook, so that the entry count the forward pass reads stays in step."""
        n = int(centroids.numel())
        self.centroids.zero_()
        self.centroids[:n] = centroids.to(self.centroids)
        self.assignments.copy_(assignments)
        self.n_centroids.fill_(n)
        self._entries = n

    def codebook_entries(self) -> int | None:
        """Entries of the codebook once shared (each stored at 32 bits); None before."""
        return self._entries if self.shared else None

    def inference_weight(self) -> torch.Tensor:
        """The weights the forward pass uses: masked, shared values once quantised (straight-through for DNS: the
        masked value, the gradient of the full weight).  # weight shape"""
        if self.shared:
            return self.centroids[self.assignments.clamp_min(0)] * self.mask
        masked = self.weight * self.mask
        if self.straight_through:  # value of the masked weight, gradient of the full one
            return self.weight + (masked - self.weight).detach()
        return masked

    def extra_repr(self) -> str:
        kept = int(self.mask.sum())
        return f"{super().extra_repr()}, kept={kept}/{self.mask.numel()}, straight_through={self.straight_through}"


class MaskedLinear(_Masked, nn.Linear):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, straight_through: bool = False,
                 codebook_size: int | None = None):
        super().__init__(in_features, out_features, bias=bias)
        self._init_mask(straight_through, codebook_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.inference_weight(), self.bias)


class MaskedConv2d(_Masked, nn.Conv2d):
    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 bias: bool = True, straight_through: bool = False, codebook_size: int | None = None):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                         bias=bias)
        self._init_mask(straight_through, codebook_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.inference_weight(), self.bias)
