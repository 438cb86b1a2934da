"""A loaded data set's splits: the containers, the validation hold-out, and a digest that identifies them.

The validation set is held out of the training set by a seeded permutation, never taken from the test set; both parts
keep the original order of the training set. Keep its seed fixed (the default 0) across training seeds so that every
run sees the same split.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

import torch

NUM_CLASSES = 10  # of every data set here: MNIST, Fashion-MNIST, CIFAR-10 and the synthetic stand-in
VALIDATION_FRACTION = 1 / 12  # of the training images: MNIST's 60,000 give the usual 5,000
VALIDATION_FLOOR = 1000  # images: below this one image is worth more than the 0.1-point threshold budget


@dataclass
class DataSplits:
    """One data set as tensors on one device: x float32 [N, C, H, W], y int64 [N].

    ``val_x``/``val_y`` are empty ([0, C, H, W] and [0]) when no validation set was held out.
    """

    train_x: torch.Tensor = field(repr=False)
    train_y: torch.Tensor = field(repr=False)
    val_x: torch.Tensor = field(repr=False)
    val_y: torch.Tensor = field(repr=False)
    test_x: torch.Tensor = field(repr=False)
    test_y: torch.Tensor = field(repr=False)
    input_shape: tuple[int, int, int]
    num_classes: int
    name: str
    preprocessing: str

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train_y), "val": len(self.val_y), "test": len(self.test_y)}

    @property
    def device(self) -> torch.device:
        return self.train_x.device


@dataclass
class RawSplits:
    """What a data set's loader returns: its splits as read (on the CPU) and how to preprocess them."""

    train_x: torch.Tensor  # [N, C, H, W] (uint8 for image data, float32 for synthetic)
    train_y: torch.Tensor  # [N] int64
    test_x: torch.Tensor
    test_y: torch.Tensor
    # (train_x, the run's ``preprocess``) -> (the function for every split, its description)
    fit: Callable[[torch.Tensor, str], tuple[Callable[[torch.Tensor], torch.Tensor], str]]


def resolve_validation_size(size: int | float, n_train: int) -> int:
    """Validation images to hold out of ``n_train``: ``size`` itself when it is a whole number of images, else
    ``size`` is a fraction in (0, 1) of the training images (a float or a string such as ``"1/12"``), raised to
    ``VALIDATION_FLOOR`` images (but never to more than a quarter of the training set) so that small data sets keep a
    split on which a threshold budget of a tenth of a point is more than noise."""
    if isinstance(size, str):  # "1/12", as the configs write the default
        numerator, _, denominator = size.partition("/")
        try:
            size = float(numerator) / float(denominator or 1)
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"validation_size must be a number of images or a fraction such as '1/12', "
                             f"got {size!r}") from None
        if size >= 1:
            raise ValueError(f"validation_size as a fraction must be below 1, got {size!r}")
    if isinstance(size, bool) or not isinstance(size, (int, float)):
        raise ValueError(f"validation_size must be a number of images or a fraction in (0, 1), got {size!r}")
    if isinstance(size, int) or float(size).is_integer():
        return int(size)
    if not 0.0 < size < 1.0:
        raise ValueError(f"validation_size must be a number of images or a fraction in (0, 1), got {size!r}")
    return max(round(size * n_train), min(VALIDATION_FLOOR, n_train // 4))


def validation_split(n: int, validation_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, validation indices) of ``n`` training examples, each sorted; disjoint, covering 0..n-1."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[validation_size:].sort().values, order[:validation_size].sort().values


def splits_digest(splits: DataSplits) -> str:
    """A short content digest of a loaded data set and its split: the labels of each split and the image shape,
    so two runs on the same data and hold-out share it and any other split differs."""
    digest = hashlib.sha256(repr((splits.name, tuple(splits.input_shape))).encode())
    for labels in (splits.train_y, splits.val_y, splits.test_y):
        digest.update(labels.detach().to("cpu", torch.int64).numpy().tobytes())
    return digest.hexdigest()[:16]
