"""The data sets by name, the paper's pairing of architectures with data sets, and ``load_dataset``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import UsageError
from .files import load_cifar10, load_fashion_mnist, load_mnist
from .preprocessing import DEFAULT_PREPROCESS, PIXEL_SCALINGS, unknown_preprocess, unsupported_preprocess
from .splits import NUM_CLASSES, DataSplits, RawSplits, resolve_validation_size, validation_split
from .synthetic import SYNTHETIC_TEST, SYNTHETIC_TRAIN, load_synthetic


@dataclass(frozen=True)
class DatasetSpec:
    """What ``load_dataset`` knows about one name: shape, classes, the function that reads it and the values of
    ``preprocess`` it offers (``preprocessing.PIXEL_SCALINGS``)."""

    name: str
    input_shape: tuple[int, int, int]  # synthetic: the default, overridden by ``synthetic_shape``
    num_classes: int
    load: Callable[..., RawSplits]
    preprocessings: tuple[str, ...] = PIXEL_SCALINGS


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec("mnist", (1, 28, 28), NUM_CLASSES, load_mnist),
    "fashion_mnist": DatasetSpec("fashion_mnist", (1, 28, 28), NUM_CLASSES, load_fashion_mnist),
    "cifar10": DatasetSpec("cifar10", (3, 32, 32), NUM_CLASSES, load_cifar10, (DEFAULT_PREPROCESS,)),
    "synthetic": DatasetSpec("synthetic", (1, 28, 28), NUM_CLASSES, load_synthetic),
}

# The paper's pairing (§5): MNIST for both LeNets, CIFAR-10 for VGG-16. The one copy: the report's paper column and
# the workflow's default data set per architecture read it.
ARCH_DATASETS = {"lenet300": "mnist", "lenet5": "mnist", "vgg16": "cifar10"}


def dataset_for_arch(arch: str) -> str:
    """The data set an architecture is trained on in the paper: LeNets on ``mnist``, VGG-16 on ``cifar10``."""
    try:
        return ARCH_DATASETS[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {sorted(ARCH_DATASETS)}") from None


def synthetic_shape_for_arch(arch: str) -> tuple[int, int, int]:
    """The (C, H, W) of synthetic data that stands in for ``arch``'s data set."""
    return DATASETS[dataset_for_arch(arch)].input_shape


def load_dataset(name: str, data_root="data", download: bool = True, device="cpu", validation_size: int | float = 0,
                 seed: int = 0, synthetic_shape=(1, 28, 28), synthetic_train: int = SYNTHETIC_TRAIN,
                 synthetic_test: int = SYNTHETIC_TEST, preprocess: str = DEFAULT_PREPROCESS) -> DataSplits:
    """Load data set ``name`` (see ``DATASETS``) whole onto ``device``, preprocessed, with an optional validation set.

    ``preprocess`` scales the pixels of the MNIST-like data sets (``preprocessing.PIXEL_SCALINGS``), fitted on the
    training images left after the hold-out; CIFAR-10 takes only the default (a ``UsageError`` otherwise, before any
    file is read). Raises ``DataNotFoundError`` when the files are missing and cannot be downloaded (or ``download``
    is False).
    """
    try:
        spec = DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}") from None
    if preprocess not in PIXEL_SCALINGS:
        raise UsageError(unknown_preprocess(preprocess))
    if preprocess not in spec.preprocessings:
        raise UsageError(unsupported_preprocess(name, preprocess))
    raw = spec.load(data_root=data_root, download=download, seed=seed, synthetic_shape=synthetic_shape,
                    synthetic_train=synthetic_train, synthetic_test=synthetic_test)
    n_train = len(raw.train_y)
    validation_size = resolve_validation_size(validation_size, n_train)
    if not 0 <= validation_size < n_train:
        raise ValueError(f"validation_size must be in [0, {n_train}) for {name!r}, got {validation_size}")

    device = torch.device(device)
    # Move the compact (uint8) form first, then convert on the device.
    train_x, train_y = raw.train_x.to(device), raw.train_y.to(device=device, dtype=torch.int64)
    test_x, test_y = raw.test_x.to(device), raw.test_y.to(device=device, dtype=torch.int64)
    train_index, val_index = validation_split(n_train, validation_size, seed)
    train_index, val_index = train_index.to(device), val_index.to(device)
    val_x, val_y = train_x.index_select(0, val_index), train_y.index_select(0, val_index)
    train_x, train_y = train_x.index_select(0, train_index), train_y.index_select(0, train_index)

    scale, description = raw.fit(train_x, preprocess)  # fitted on the training images only
    train_x, val_x, test_x = scale(train_x), scale(val_x), scale(test_x)
    if validation_size:
        description += f"; {validation_size} validation examples held out of the training set (seed {seed})"
    return DataSplits(train_x, train_y, val_x, val_y, test_x, test_y, tuple(train_x.shape[1:]), spec.num_classes,
                      name, description)
