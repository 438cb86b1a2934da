"""Datasets by name, held whole as tensors on the training device; batching and CIFAR augmentation there too.

    splits = load_dataset("mnist", data_root="data", device="cuda", validation_size=5000)
    for xb, yb in minibatches(splits.train_x, splits.train_y, 100, generator=g):
        ...

LeNet-sized epochs are bound by compute once the data sit on the device, so there is no ``DataLoader``: torchvision is
used only to find, download and read the raw files (its ``.data``/``.targets``, never its per-item transforms).

Data sets (``DATASETS``) and their preprocessing:

- ``mnist``, ``fashion_mnist``: ``x = 2 * (x / 255 - 0.5)``, pixels in [-1, 1], as the authors' ``example.py``
  (``ToTensor()`` then ``2 * (x - 0.5)``); shape [N, 1, 28, 28]. Files in torchvision's layout,
  ``<data_root>/MNIST/raw/`` and ``<data_root>/FashionMNIST/raw/``. Gzipped IDX files placed there
  (``train-images-idx3-ubyte.gz`` ...) are decompressed in place, so placing the four ``.gz`` files is enough even
  with ``download=False``. Fashion-MNIST is copied from the Debian package ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist``) when it is missing under ``data_root`` and that package is installed.
- ``cifar10``: per-channel standardisation ``(x / 255 - mean_c) / std_c`` with the mean and standard deviation of every
  pixel of the examples used for training (the 50,000 training images, less any validation hold-out), computed
  exactly from 256-bin histograms when loading and written into ``DataSplits.preprocessing`` (for the full training
  set they are about mean 0.4914, 0.4822, 0.4465 and std 0.2470, 0.2435, 0.2616); shape [N, 3, 32, 32]. Files in
  ``<data_root>/cifar-10-batches-py/`` (or ``cifar-10-python.tar.gz`` in ``data_root``, extracted in place).
  ``augment_cifar`` (random crop with zero padding 4, random horizontal flip) is applied per batch by the training
  loop; it pads after standardisation, so the padding is the mean colour.
- ``synthetic``: generated in memory for tests and quick runs, see ``make_synthetic``.

Decisions:
- ``seed`` drives both the validation hold-out and the synthetic generator; keep it fixed (the default 0) across
  training seeds so every run sees the same data.
- The validation set is held out of the training set by a seeded permutation, never taken from the test set; both
  parts keep the original order of the training set.
- Missing data always ends in one ``DataNotFoundError`` that says which files to put where. A failed download
  removes what it left half-written (empty folders, truncated files), so the next call fails or succeeds cleanly; only
  archives whose checksum is right are kept. Downloads run under a socket timeout (``DOWNLOAD_TIMEOUT_S``) so that an
  offline machine whose firewall drops packets fails in seconds, not minutes.
"""
from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import socket
import struct
import tarfile
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F

from .atomic import write_atomically

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 30.0  # per socket operation while torchvision downloads; offline machines fail fast
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # apt-get install dataset-fashion-mnist
NUM_CLASSES = 10

IDX_FILES = (  # torchvision reads these uncompressed from <data_root>/<MNIST|FashionMNIST>/raw/
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
                 "batches.meta")

SYNTHETIC_TRAIN = 2000  # default example counts of the synthetic data set
SYNTHETIC_TEST = 500
SYNTHETIC_SHIFT = 3  # synthetic examples are their class prototype shifted by up to this many pixels
SYNTHETIC_NOISE = 0.6  # per-pixel noise std (times sqrt(C)) against prototypes scaled to max |x| = 1
SYNTHETIC_CHANNEL_VARIATION = 0.3  # how much a prototype's channels differ from their shared pattern


class DataNotFoundError(RuntimeError):
    """A data set's files are missing (or unreadable) and could not be downloaded."""


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


@dataclass(frozen=True)
class DatasetSpec:
    """What ``load_dataset`` knows about one name: shape, classes and the function that reads it."""

    name: str
    input_shape: tuple[int, int, int]  # synthetic: the default, overridden by ``synthetic_shape``
    num_classes: int
    load: Callable[..., "_Raw"]


# ----------------------------------------------------------------------------------------------------------------
# Batching and augmentation on the device


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
    return _shift_and_flip(x, offsets[0], offsets[1], flip, padding)


def _shift_and_flip(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor,
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


# ----------------------------------------------------------------------------------------------------------------
# Synthetic data


def make_synthetic(shape: tuple[int, int, int] = (1, 28, 28), n_train: int = SYNTHETIC_TRAIN,
                   n_test: int = SYNTHETIC_TEST, seed: int = 0, num_classes: int = NUM_CLASSES):
    """A deterministic, learnable stand-in for MNIST or CIFAR-10: (train_x, train_y, test_x, test_y) on the CPU.

    Each class has a smooth random prototype: Gaussian noise on a grid 4x coarser, one pattern shared by the channels
    plus ``SYNTHETIC_CHANNEL_VARIATION`` times a pattern per channel, upsampled bilinearly and scaled to max |x| = 1.
    An example is its class prototype times an amplitude in [0.7, 1.3], shifted by up to ``SYNTHETIC_SHIFT`` pixels
    per axis (zero fill), plus Gaussian noise of std ``SYNTHETIC_NOISE * sqrt(C)`` (so both shapes are about equally
    hard), clamped to [-1, 1]. Classes are balanced and shuffled. The same seed gives identical tensors (drawn on
    the CPU). A 784-100-10 MLP trained with Adam (lr 1e-3, batch 100) goes from about 90 % test error at
    initialisation to about 10 % after one epoch and 1-3 % after six, for either shape.
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
        x = _shift_and_flip(prototypes[y] * amplitude, offsets[0], offsets[1], torch.zeros(n, dtype=torch.bool),
                            SYNTHETIC_SHIFT)
        x = x + SYNTHETIC_NOISE * channels ** 0.5 * torch.randn(x.shape, generator=g)
        return x.clamp_(-1.0, 1.0), y

    train_x, train_y = draw(n_train)
    test_x, test_y = draw(n_test)
    return train_x, train_y, test_x, test_y


# ----------------------------------------------------------------------------------------------------------------
# Loaders: each returns the raw splits (uint8 or float, on the CPU) and how to preprocess them


@dataclass
class _Raw:
    train_x: torch.Tensor  # [N, C, H, W] (uint8 for image data, float32 for synthetic)
    train_y: torch.Tensor  # [N] int64
    test_x: torch.Tensor
    test_y: torch.Tensor
    fit: Callable[[torch.Tensor], tuple[Callable[[torch.Tensor], torch.Tensor], str]]  # train_x -> (f, description)


def _load_mnist(data_root, download, **_):
    return _load_idx("mnist", "MNIST", data_root, download)


def _load_fashion_mnist(data_root, download, **_):
    raw = Path(data_root) / "FashionMNIST" / "raw"
    if _missing_idx(raw) and DEBIAN_FASHION_MNIST.is_dir():
        _copy_debian_fashion_mnist(raw)
    return _load_idx("fashion_mnist", "FashionMNIST", data_root, download)


def _load_cifar10(data_root, download, **_):
    from torchvision.datasets import CIFAR10

    root = Path(data_root)
    folder = root / CIFAR10_FOLDER
    expected = f"{', '.join(CIFAR10_FILES)} (or {CIFAR10_ARCHIVE} in {root})"
    archive = root / CIFAR10_ARCHIVE
    if not _cifar_complete(folder) and archive.is_file():
        _extract_tar(archive, root)

    def fetch():
        CIFAR10(str(root), train=True, download=True)

    verified = {archive: CIFAR10.tgz_md5}
    _ensure_files("cifar10", folder, expected, lambda: not _cifar_complete(folder), download, fetch,
                  [folder, archive], verified)
    try:
        train, test = CIFAR10(str(root), train=True), CIFAR10(str(root), train=False)
    except Exception as error:  # torchvision raises RuntimeError on bad checksums, pickle errors on broken files
        raise _unreadable("cifar10", folder, expected, error) from error

    def to_tensors(dataset):  # .data is uint8 [N, H, W, C]
        return torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(dataset.targets)

    return _Raw(*to_tensors(train), *to_tensors(test), fit=_standardise_per_channel)


def _load_synthetic(seed=0, synthetic_shape=(1, 28, 28), synthetic_train=SYNTHETIC_TRAIN,
                    synthetic_test=SYNTHETIC_TEST, **_):
    shape = tuple(int(s) for s in synthetic_shape)
    if len(shape) != 3:
        raise ValueError(f"synthetic_shape must be (C, H, W), got {synthetic_shape!r}")
    data = make_synthetic(shape, synthetic_train, synthetic_test, seed)

    description = (f"synthetic: {NUM_CLASSES} smooth class prototypes of shape {shape}, amplitude 0.7-1.3, shifts "
                   f"up to {SYNTHETIC_SHIFT} px, noise std {SYNTHETIC_NOISE} * sqrt(C), clamped to [-1, 1]; "
                   f"seed {seed}")
    return _Raw(*data, fit=lambda train_x: ((lambda x: x), description))


def _to_unit_range(train_x: torch.Tensor):
    """MNIST and Fashion-MNIST: uint8 -> float32 in [-1, 1], as the authors' example.py."""
    return (lambda x: 2 * (x.float() / 255 - 0.5)), "2 * (x / 255 - 0.5): pixels in [-1, 1]"


def _standardise_per_channel(train_x: torch.Tensor):
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


# ----------------------------------------------------------------------------------------------------------------
# Finding files, downloading, and failing clearly


def read_idx(path: Path) -> torch.Tensor:
    """An unsigned-byte IDX file (the MNIST format): bytes 0, 0, 0x08, ndim; ndim big-endian uint32 sizes; the data.

    Read here rather than through torchvision, whose import alone costs a workflow job about two seconds.
    """
    content = Path(path).read_bytes()
    if len(content) < 4 or content[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path} is not an unsigned-byte IDX file (its first bytes are {content[:4]!r})")
    ndim = content[3]
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", content[4:header])
    values = np.frombuffer(content, dtype=np.uint8, offset=header)
    if values.size != int(np.prod(shape)):
        raise ValueError(f"{path} holds {values.size} values where its header promises {shape}: truncated?")
    return torch.from_numpy(values.reshape(shape).copy())


def _load_idx(name: str, folder: str, data_root, download: bool) -> _Raw:
    root = Path(data_root)
    raw = root / folder / "raw"
    _decompress_idx(raw)
    expected = f"{', '.join(IDX_FILES)} (each may be gzipped: {IDX_FILES[0]}.gz, ...)"
    if _missing_idx(raw):
        from torchvision import datasets

        cls = getattr(datasets, folder)  # MNIST or FashionMNIST: own mirrors and checksums

        def fetch():
            cls(str(root), train=True, download=True)

        verified = {raw / filename: md5 for filename, md5 in cls.resources}
        _ensure_files(name, raw, expected, lambda: bool(_missing_idx(raw)), download, fetch, [root / folder],
                      verified)
    try:
        train_x, train_y, test_x, test_y = (read_idx(raw / filename) for filename in IDX_FILES)
    except (OSError, ValueError) as error:  # truncated or foreign files
        raise _unreadable(name, raw, expected, error) from error
    if train_x.dim() != 3 or len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise _unreadable(name, raw, expected, ValueError(
            f"images {tuple(train_x.shape)}/{tuple(test_x.shape)} do not match labels {len(train_y)}/{len(test_y)}"))
    return _Raw(train_x[:, None], train_y.long(), test_x[:, None], test_y.long(), fit=_to_unit_range)


def _ensure_files(name: str, directory: Path, expected: str, missing: Callable[[], bool], download: bool,
                  fetch: Callable[[], None], scratch: list[Path], verified: dict[Path, str]) -> None:
    """Download through ``fetch`` if files are missing; on failure roll back and raise ``DataNotFoundError``.

    ``scratch`` lists the files and folders a download writes; whatever it adds there (and any parent folder it
    creates) is removed again if the download fails, except archives in ``verified`` (path -> md5) that are intact.
    """
    if not missing():
        return
    if not download:
        raise _not_found(name, directory, expected, "download is disabled (download=False)")
    before = _snapshot(scratch)
    new_parents = [p for p in scratch[0].parents if not p.exists()]  # deepest first
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            fetch()
    except Exception as error:  # RuntimeError (all mirrors failed, bad checksum), URLError/OSError, timeouts
        _roll_back(scratch, before, verified, new_parents)
        if missing():
            raise _not_found(name, directory, expected, f"the download failed: {_brief(error)}") from error
        raise _unreadable(name, directory, expected, error) from error
    if missing():
        raise _not_found(name, directory, expected, "the download finished but the files are still missing")


def _not_found(name: str, directory: Path, expected: str, reason: str) -> DataNotFoundError:
    hint = " or run `apt-get install dataset-fashion-mnist` (copied from there automatically)" \
        if name == "fashion_mnist" else ""
    return DataNotFoundError(
        f"dataset {name!r} not found under {directory}: expected {expected}; {reason}. "
        f"Place the files in {directory}, or set data_root to the folder that holds them{hint}, "
        f"or let download=True fetch them on a machine with network access.")


def _unreadable(name: str, directory: Path, expected: str, error: BaseException) -> DataNotFoundError:
    return DataNotFoundError(
        f"dataset {name!r} under {directory} could not be read ({_brief(error)}): expected {expected}. "
        f"Delete the broken files and place intact ones there, or set data_root elsewhere.")


def _brief(error: BaseException, limit: int = 300) -> str:
    text = " ".join(str(error).split()) or "no message"
    text = f"{type(error).__name__}: {text}"
    return text if len(text) <= limit else text[:limit - 3] + "..."


@contextmanager
def _socket_timeout(seconds: float):
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _snapshot(paths: list[Path]) -> set[Path]:
    """Every existing path at or under ``paths``."""
    found = set()
    for path in paths:
        if path.exists():
            found.add(path)
            found.update(path.rglob("*"))
    return found


def _roll_back(scratch: list[Path], before: set[Path], verified: dict[Path, str], new_parents: list[Path]) -> None:
    """Remove what a failed download added under ``scratch`` (keeping intact archives), then emptied new folders."""
    added = sorted(_snapshot(scratch) - before, key=lambda p: len(p.parts), reverse=True)  # children first
    for path in added + new_parents:
        if path.is_file() and not (path in verified and _md5(path) == verified[path]):
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _missing_idx(raw: Path) -> list[str]:
    return [f for f in IDX_FILES if not (raw / f).is_file()]


def _decompress_idx(raw: Path) -> None:
    """Decompress ``<file>.gz`` next to each missing IDX file; a broken archive is left for download to replace."""
    for filename in _missing_idx(raw):
        archive = raw / f"{filename}.gz"
        if archive.is_file():
            try:
                write_atomically(raw / filename, lambda out: _gunzip_into(archive, out))
            except (OSError, EOFError) as error:
                log.warning("could not decompress %s (%s); it will be re-downloaded or reported", archive,
                            _brief(error))


def _gunzip_into(archive: Path, out) -> None:
    with gzip.open(archive, "rb") as source:
        shutil.copyfileobj(source, out, 1 << 20)


def _copy_debian_fashion_mnist(raw: Path) -> None:
    sources = [DEBIAN_FASHION_MNIST / f"{f}.gz" for f in IDX_FILES]
    if not all(s.is_file() for s in sources):
        return
    log.info("Fashion-MNIST: copying the Debian package's files from %s into %s", DEBIAN_FASHION_MNIST, raw)
    raw.mkdir(parents=True, exist_ok=True)
    for source in sources:
        if not (raw / source.name).is_file() and not (raw / source.name[:-3]).is_file():
            write_atomically(raw / source.name, lambda out, s=source: _copy_into(s, out))


def _copy_into(source: Path, out) -> None:
    with open(source, "rb") as f:
        shutil.copyfileobj(f, out, 1 << 20)


def _cifar_complete(folder: Path) -> bool:
    from torchvision.datasets import CIFAR10

    checks = CIFAR10.train_list + CIFAR10.test_list + [[CIFAR10.meta["filename"], CIFAR10.meta["md5"]]]
    return all((folder / f).is_file() and _md5(folder / f) == md5 for f, md5 in checks)


def _extract_tar(archive: Path, root: Path) -> None:
    """Extract ``cifar-10-python.tar.gz`` into a temporary folder, then move its files into place."""
    try:
        with tempfile.TemporaryDirectory(dir=root, prefix=".cifar-extract.") as temporary:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(temporary, filter="data")
            target = root / CIFAR10_FOLDER
            target.mkdir(exist_ok=True)
            for path in (Path(temporary) / CIFAR10_FOLDER).iterdir():
                os.replace(path, target / path.name)
    except (OSError, EOFError, tarfile.TarError) as error:
        log.warning("could not extract %s (%s); it will be re-downloaded or reported", archive, _brief(error))


# ----------------------------------------------------------------------------------------------------------------
# The registry and the entry point

DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec("mnist", (1, 28, 28), NUM_CLASSES, _load_mnist),
    "fashion_mnist": DatasetSpec("fashion_mnist", (1, 28, 28), NUM_CLASSES, _load_fashion_mnist),
    "cifar10": DatasetSpec("cifar10", (3, 32, 32), NUM_CLASSES, _load_cifar10),
    "synthetic": DatasetSpec("synthetic", (1, 28, 28), NUM_CLASSES, _load_synthetic),
}

ARCH_DATASETS = {"lenet300": "mnist", "lenet5": "mnist", "vgg16": "cifar10"}  # the paper's pairing


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
                 synthetic_test: int = SYNTHETIC_TEST) -> DataSplits:
    """Load data set ``name`` (see ``DATASETS``) whole onto ``device``, preprocessed, with an optional validation set.

    Raises ``DataNotFoundError`` when the files are missing and cannot be downloaded (or ``download`` is False).
    """
    try:
        spec = DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}") from None
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

    preprocess, description = raw.fit(train_x)
    train_x, val_x, test_x = preprocess(train_x), preprocess(val_x), preprocess(test_x)
    if validation_size:
        description += f"; {validation_size} validation examples held out of the training set (seed {seed})"
    return DataSplits(train_x, train_y, val_x, val_y, test_x, test_y, tuple(train_x.shape[1:]), spec.num_classes,
                      name, description)


def splits_digest(splits: "DataSplits") -> str:
    """A short content digest of a loaded data set and its split: the labels of each split and the image shape,
    so two runs on the same data and hold-out share it and any other split differs."""
    import hashlib

    digest = hashlib.sha256(repr((splits.name, tuple(splits.input_shape))).encode())
    for labels in (splits.train_y, splits.val_y, splits.test_y):
        digest.update(labels.detach().to("cpu", torch.int64).numpy().tobytes())
    return digest.hexdigest()[:16]


VALIDATION_FRACTION = 1 / 12  # of the training images: MNIST's 60,000 give the usual 5,000
VALIDATION_FLOOR = 1000  # images: below this one image is worth more than the 0.1-point threshold budget


def resolve_validation_size(size: int | float, n_train: int) -> int:
    """Validation images to hold out of ``n_train``: ``size`` itself when it is a whole number of images, else
    ``size`` is a fraction in (0, 1) of the training images (a float or a string such as ``"1/12"``), raised to ``VALIDATION_FLOOR`` images (but never to more
    than a quarter of the training set) so that small data sets keep a split on which a threshold budget of a tenth of
    a point is more than noise."""
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
