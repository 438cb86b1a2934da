"""Batching and CIFAR augmentation on the training device: index-selects and one gather, no ``DataLoader``."""
from __future__ import annotations

from typing import Iterator, Optional

import torch
import torch.nn.functional as F


def minibatches(x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = True,
                generator: Optional[torch.Generator] = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of (x_batch, y_batch); every example exactly once, the last partial batch kept.

    Without shuffling the batches are views (slices); with shuffling, index-selects along a permutation drawn from
    ``generator`` (on the generator's device, then moved to ``x``'s).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
    n = len(x)
    if not shuffle:
        for start in range(0, n, batch_size):
            yield x[start:start + batch_size], y[start:start + batch_size]
        return
    order = torch.randperm(n, generator=generator, device=_draw_device(generator, x)).to(x.device)
    for start in range(0, n, batch_size):
        index = order[start:start + batch_size]
        yield x.index_select(0, index), y.index_select(0, index)


def augment_cifar(x: torch.Tensor, generator: Optional[torch.Generator] = None, padding: int = 4,
                  flip_p: float = 0.5) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip of a whole batch [N, C, H, W], on its device.

    Each example is shifted by an offset in [-padding, padding] per axis (the uncovered border is 0) and mirrored
    left-right with probability ``flip_p``; one gather does both, with no loop over images. Labels are untouched:
    example i of the output comes from example i of the input.
    """
    n = len(x)
    draw = _draw_device(generator, x)
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=draw).to(x.device)
    flip = (torch.rand(n, generator=generator, device=draw) < flip_p).to(x.device)
    return shift_and_flip(x, offsets[0], offsets[1], flip, padding)


def shift_and_flip(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor,
                   padding: int) -> torch.Tensor:
    """Crop [H, W] windows at (top, left) [N] out of ``x`` zero-padded by ``padding``, mirrored where ``flip`` [N]."""
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))  # [N, C, H + 2p, W + 2p]
    rows = top[:, None] + torch.arange(h, device=x.device)  # [N, H]
    columns = torch.arange(w, device=x.device).expand(n, w)  # [N, W]
    columns = left[:, None] + torch.where(flip[:, None], w - 1 - columns, columns)
    return padded[torch.arange(n, device=x.device)[:, None, None, None],
                  torch.arange(c, device=x.device)[None, :, None, None],
                  rows[:, None, :, None],
                  columns[:, None, None, :]]


def _draw_device(generator: Optional[torch.Generator], x: torch.Tensor) -> torch.device:
    return generator.device if generator is not None else x.device
