"""The synthetic data set: a deterministic, learnable stand-in for MNIST or CIFAR-10, generated in memory for tests
and quick runs."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .batching import shift_and_flip
from .preprocessing import DEFAULT_PREPROCESS, scale_synthetic
from .splits import NUM_CLASSES, RawSplits

SYNTHETIC_TRAIN = 2000  # default example counts of the synthetic data set
SYNTHETIC_TEST = 500
SYNTHETIC_SHIFT = 3  # synthetic examples are their class prototype shifted by up to this many pixels
SYNTHETIC_NOISE = 0.6  # per-pixel noise std (times sqrt(C)) against prototypes scaled to max |x| = 1
SYNTHETIC_CHANNEL_VARIATION = 0.3  # how much a prototype's channels differ from their shared pattern


def make_synthetic(shape: tuple[int, int, int] = (1, 28, 28), n_train: int = SYNTHETIC_TRAIN,
                   n_test: int = SYNTHETIC_TEST, seed: int = 0, num_classes: int = NUM_CLASSES):
    """A deterministic, learnable stand-in for MNIST or CIFAR-10: (train_x, train_y, test_x, test_y) on the CPU.

    Each class has a smooth random prototype: Gaussian noise on a grid 4x coarser, one pattern shared by the channels
    plus ``SYNTHETIC_CHANNEL_VARIATION`` times a pattern per channel, upsampled bilinearly and scaled to max |x| = 1.
    An example is its class prototype times an amplitude in [0.7, 1.3], shifted by up to ``SYNTHETIC_SHIFT`` pixels
    per axis (zero fill), plus Gaussian noise of std ``SYNTHETIC_NOISE * sqrt(C)`` (so both shapes are about equally
    hard), clamped to [-1, 1]. Classes are balanced and shuffled. The same seed gives identical tensors (drawn on
    the CPU).
    """
    channels, height, width = shape
    g = torch.Generator().manual_seed(seed)
    grid = (max(height // 4, 2), max(width // 4, 2))
    coarse = (torch.randn(num_classes, 1, *grid, generator=g)
              + SYNTHETIC_CHANNEL_VARIATION * torch.randn(num_classes, channels, *grid, generator=g))
    prototypes = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    prototypes = prototypes / prototypes.abs().amax(dim=(1, 2, 3), keepdim=True)  # [K, C, H, W]

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randperm(n, generator=g) % num_classes
        amplitude = 0.7 + 0.6 * torch.rand(n, 1, 1, 1, generator=g)
        offsets = torch.randint(0, 2 * SYNTHETIC_SHIFT + 1, (2, n), generator=g)
        x = shift_and_flip(prototypes[y] * amplitude, offsets[0], offsets[1], torch.zeros(n, dtype=torch.bool),
                           SYNTHETIC_SHIFT)
        x = x + SYNTHETIC_NOISE * channels ** 0.5 * torch.randn(x.shape, generator=g)
        return x.clamp_(-1.0, 1.0), y

    train_x, train_y = draw(n_train)
    test_x, test_y = draw(n_test)
    return train_x, train_y, test_x, test_y


def load_synthetic(seed=0, synthetic_shape=(1, 28, 28), synthetic_train=SYNTHETIC_TRAIN,
                   synthetic_test=SYNTHETIC_TEST, **_) -> RawSplits:
    """The synthetic data set's splits, generated in [-1, 1]: the default ``preprocess`` is the identity, the others
    scale them as MNIST's pixels (``preprocessing.scale_synthetic``)."""
    shape = tuple(int(s) for s in synthetic_shape)
    if len(shape) != 3:
        raise ValueError(f"synthetic_shape must be (C, H, W), got {synthetic_shape!r}")
    data = make_synthetic(shape, synthetic_train, synthetic_test, seed)

    description = (f"synthetic: {NUM_CLASSES} smooth class prototypes of shape {shape}, amplitude 0.7-1.3, shifts "
                   f"up to {SYNTHETIC_SHIFT} px, noise std {SYNTHETIC_NOISE} * sqrt(C), clamped to [-1, 1]; "
                   f"seed {seed}")

    def fit(train_x: torch.Tensor, preprocess: str):
        scale, scaling = scale_synthetic(train_x, preprocess)
        return scale, description if preprocess == DEFAULT_PREPROCESS else f"{description}; then {scaling}"

    return RawSplits(*data, fit=fit)
