"""How each image data set's pixels are scaled: fitted on the training images, then applied to every split."""
from __future__ import annotations

import torch


def to_unit_range(train_x: torch.Tensor):
    """MNIST and Fashion-MNIST: uint8 -> float32 in [-1, 1], as the authors' example.py."""
    return (lambda x: 2 * (x.float() / 255 - 0.5)), "2 * (x / 255 - 0.5): pixels in [-1, 1]"


def standardise_per_channel(train_x: torch.Tensor):
    """CIFAR-10: (x / 255 - mean_c) / std_c with the statistics of every training pixel, exact from histograms."""
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
