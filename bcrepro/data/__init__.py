"""Datasets by name, held whole as tensors on the training device; batching and CIFAR augmentation there too.

    splits = load_dataset("mnist", data_root="data", device="cuda", validation_size=5000)
    for xb, yb in minibatches(splits.train_x, splits.train_y, 100, generator=g):
        ...

LeNet-sized epochs are bound by compute once the data sit on the device, so there is no ``DataLoader``.

Data sets (``DATASETS``) and their preprocessing:

- ``mnist``, ``fashion_mnist``: ``x = 2 * (x / 255 - 0.5)``, pixels in [-1, 1], as the authors' ``example.py``
  (``ToTensor()`` then ``2 * (x - 0.5)``); shape [N, 1, 28, 28]. A run's ``preprocess`` may choose ``unit``
  (``x / 255``) or ``centred`` (``x / 256`` minus the mean training image, fitted on the training split only)
  instead (``load_dataset(..., preprocess=...)``, ``preprocessing``).
- ``cifar10``: per-channel standardisation ``(x / 255 - mean_c) / std_c`` with the mean and standard deviation of every
  pixel of the examples used for training (the 50,000 training images, less any validation hold-out), computed
  exactly from 256-bin histograms when loading and written into ``DataSplits.preprocessing`` (for the full training
  set they are about mean 0.4914, 0.4822, 0.4465 and std 0.2470, 0.2435, 0.2616); shape [N, 3, 32, 32].
  ``augment_cifar`` (random crop with zero padding 4, random horizontal flip) is applied per batch by the training
  loop; it pads after standardisation, so the padding is the mean colour.
- ``synthetic``: generated in memory for tests and quick runs, see ``make_synthetic``; already in [-1, 1], which the
  other values of ``preprocess`` read as pixels ``255 (x + 1) / 2``.

``seed`` drives both the validation hold-out and the synthetic generator; keep it fixed (the default 0) across
training seeds so every run sees the same data. Missing data always ends in one ``DataNotFoundError`` that says which
files to put where.

Modules: ``datasets`` (the registry, the architecture -> data set map, ``load_dataset``), ``files`` (where each image
data set's files live and how they are read), ``fetch`` (downloads with rollback), ``preprocessing``, ``synthetic``,
``splits`` (the containers and the validation hold-out) and ``batching``.
"""
from .batching import augment_cifar, minibatches
from .datasets import (ARCH_DATASETS, DATASETS, DatasetSpec, dataset_for_arch, load_dataset,
                       synthetic_shape_for_arch)
from .fetch import DOWNLOAD_TIMEOUT_S, DataNotFoundError
from .files import CIFAR10_ARCHIVE, CIFAR10_FILES, CIFAR10_FOLDER, DEBIAN_FASHION_MNIST, IDX_FILES, read_idx
from .preprocessing import DEFAULT_PREPROCESS, PIXEL_SCALINGS
from .splits import (NUM_CLASSES, VALIDATION_FLOOR, VALIDATION_FRACTION, DataSplits, resolve_validation_size,
                     splits_digest, validation_split)
from .synthetic import (SYNTHETIC_CHANNEL_VARIATION, SYNTHETIC_NOISE, SYNTHETIC_SHIFT, SYNTHETIC_TEST, SYNTHETIC_TRAIN,
                        make_synthetic)

__all__ = [
    "ARCH_DATASETS", "CIFAR10_ARCHIVE", "CIFAR10_FILES", "CIFAR10_FOLDER", "DATASETS", "DEBIAN_FASHION_MNIST",
    "DEFAULT_PREPROCESS", "DOWNLOAD_TIMEOUT_S", "DataNotFoundError", "DataSplits", "DatasetSpec", "IDX_FILES",
    "NUM_CLASSES", "PIXEL_SCALINGS",
    "SYNTHETIC_CHANNEL_VARIATION", "SYNTHETIC_NOISE", "SYNTHETIC_SHIFT", "SYNTHETIC_TEST", "SYNTHETIC_TRAIN",
    "VALIDATION_FLOOR", "VALIDATION_FRACTION", "augment_cifar", "dataset_for_arch", "load_dataset", "make_synthetic",
    "minibatches", "read_idx", "resolve_validation_size", "splits_digest", "synthetic_shape_for_arch",
    "validation_split",
]
