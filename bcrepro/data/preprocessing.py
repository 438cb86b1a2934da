"""How each image data set's pixels are scaled: fitted on the training images, then applied to every split.

The MNIST-like data sets (MNIST, Fashion-MNIST, the synthetic stand-in) offer three scalings, chosen per run by the
training setting ``preprocess`` (``PIXEL_SCALINGS``); CIFAR-10 has one, per-channel standardisation:

- ``symmetric`` (the default, every method's in the table): ``2 (x / 255 - 0.5)``, pixels in [-1, 1], as the BC
  authors' example.py;
- ``unit``: ``x / 255``, pixels in [0, 1], as the SWS authors' tutorial;
- ``centred``: ``x / 256`` minus the mean training image, as the Sparse VD authors' Theano code; the mean is fitted on
  the run's own training images (after the validation hold-out), never on validation or test images.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..errors import UsageError

PIXEL_SCALINGS = ("symmetric", "unit", "centred")
DEFAULT_PREPROCESS = "symmetric"  # what every run trained with before ``preprocess`` existed


def scale_pixels(train_x: torch.Tensor, preprocess: str = DEFAULT_PREPROCESS):
    """MNIST and Fashion-MNIST: uint8 pixels x in [0, 255] -> float32 by ``preprocess`` (``PIXEL_SCALINGS``), fitted
    on ``train_x`` [N, 1, H, W]. Returns (the function for every split, its description)."""
    if preprocess == DEFAULT_PREPROCESS:  # the formula every recorded run used, kept as written: same bytes
        return (lambda x: 2 * (x.float() / 255 - 0.5)), "2 * (x / 255 - 0.5): pixels in [-1, 1]"
    return _scaling(train_x, preprocess, lambda x: x.float())


def scale_synthetic(train_x: torch.Tensor, preprocess: str = DEFAULT_PREPROCESS):
    """The synthetic data set, generated as float32 already in the ``symmetric`` scaling: ``symmetric`` is the
    identity; the others first map x back to pixel values ``255 (x + 1) / 2`` in [0, 255] and then scale them as
    ``scale_pixels`` does MNIST's."""
    if preprocess == DEFAULT_PREPROCESS:
        return (lambda x: x), "as generated: pixels in [-1, 1]"
    return _scaling(train_x, preprocess, lambda x: (x.float() + 1) * 127.5)


def _scaling(train_x: torch.Tensor, preprocess: str, to_pixels: Callable[[torch.Tensor], torch.Tensor]):
    """``unit`` or ``centred`` of the pixel values ``to_pixels(x)`` in [0, 255] (float32)."""
    if preprocess == "unit":
        return (lambda x: to_pixels(x) / 255), "x / 255: pixels in [0, 1]"
    if preprocess == "centred":
        mean = mean_image(to_pixels(train_x)) / 256  # [1, H, W]
        description = (f"x / 256 minus the mean image of the {len(train_x)} training images (whose pixels average "
                       f"{mean.mean().item():.4f})")
        return (lambda x: to_pixels(x) / 256 - mean), description
    raise UsageError(unknown_preprocess(preprocess))


def mean_image(pixels: torch.Tensor) -> torch.Tensor:
    """The mean over the first axis of ``pixels`` [N, C, H, W], summed in float64, as float32 [C, H, W]."""
    return pixels.sum(dim=0, dtype=torch.float64).div(len(pixels)).float()


def standardise_per_channel(train_x: torch.Tensor, preprocess: str = DEFAULT_PREPROCESS):
    """CIFAR-10: (x / 255 - mean_c) / std_c with the statistics of every training pixel, exact from histograms.
    ``preprocess`` must stay at its default: CIFAR-10 has no other scaling."""
    if preprocess != DEFAULT_PREPROCESS:
        raise UsageError(unsupported_preprocess("cifar10", preprocess))
    mean, std = _channel_stats(train_x)
    mean, std = mean.to(train_x.device)[:, None, None], std.to(train_x.device)[:, None, None]
    description = (f"per-channel standardisation with the training set's pixel statistics: (x / 255 - mean) / std, "
                   f"mean {_fmt(mean.flatten())}, std {_fmt(std.flatten())}")
    return (lambda x: (x.float() / 255 - mean) / std), description


def _channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and population std of x / 255 per channel of uint8 x [N, C, H, W], in float64 from 256-bin histograms."""
    values = torch.arange(256, dtype=torch.float64, device=x.device) / 255
    means, stds = [], []
    for channel in range(x.shape[1]):
        counts = torch.bincount(x[:, channel].reshape(-1), minlength=256).double()
        mean = (counts * values).sum() / counts.sum()
        means.append(mean)
        stds.append(((counts * (values - mean) ** 2).sum() / counts.sum()).sqrt())
    return torch.stack(means).float().cpu(), torch.stack(stds).float().cpu()


def _fmt(t: torch.Tensor) -> str:
    return "(" + ", ".join(f"{v:.4f}" for v in t.tolist()) + ")"


def unknown_preprocess(preprocess) -> str:
    """The message for a ``preprocess`` outside ``PIXEL_SCALINGS``."""
    return f"preprocess must be one of {', '.join(map(repr, PIXEL_SCALINGS))}, got {preprocess!r}"


def unsupported_preprocess(dataset: str, preprocess: str) -> str:
    """The message for a ``preprocess`` of ``PIXEL_SCALINGS`` that ``dataset`` does not offer (CIFAR-10's)."""
    return (f"preprocess {preprocess!r} is for the MNIST-like data sets (mnist, fashion_mnist, synthetic); "
            f"{dataset} is standardised per channel and has no other scaling: leave preprocess at its default "
            f"{DEFAULT_PREPROCESS!r} for {dataset}")
