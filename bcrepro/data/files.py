"""The image data sets' files: finding, decompressing, copying and downloading them, and reading them into raw splits.

Files are in torchvision's layout under ``data_root``; torchvision only downloads them and reads CIFAR-10's pickles
(its ``.data``/``.targets``, never its per-item transforms), and is imported only when that is needed.

- MNIST and Fashion-MNIST: ``<data_root>/MNIST/raw/`` and ``<data_root>/FashionMNIST/raw/``. Gzipped IDX files placed
  there (``train-images-idx3-ubyte.gz`` ...) are decompressed in place, so placing the four ``.gz`` files is enough
  even with ``download=False``. Fashion-MNIST is copied from the Debian package ``dataset-fashion-mnist``
  (``DEBIAN_FASHION_MNIST``) when it is missing under ``data_root`` and that package is installed.
- CIFAR-10: ``<data_root>/cifar-10-batches-py/``, or ``cifar-10-python.tar.gz`` in ``data_root``, extracted in place.
"""
from __future__ import annotations

import gzip
import logging
import os
import shutil
import struct
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..atomic import write_atomically
from .fetch import brief, ensure_files, md5, unreadable
from .preprocessing import scale_pixels, standardise_per_channel
from .splits import RawSplits

log = logging.getLogger(__name__)

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # apt-get install dataset-fashion-mnist
DEBIAN_FASHION_MNIST_HINT = " or run `apt-get install dataset-fashion-mnist` (copied from there automatically)"

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


def load_mnist(data_root, download, **_) -> RawSplits:
    return _load_idx("mnist", "MNIST", data_root, download)


def load_fashion_mnist(data_root, download, **_) -> RawSplits:
    raw = Path(data_root) / "FashionMNIST" / "raw"
    if _missing_idx(raw) and DEBIAN_FASHION_MNIST.is_dir():
        _copy_debian_fashion_mnist(raw)
    return _load_idx("fashion_mnist", "FashionMNIST", data_root, download, hint=DEBIAN_FASHION_MNIST_HINT)


def load_cifar10(data_root, download, **_) -> RawSplits:
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
    ensure_files("cifar10", folder, expected, lambda: not _cifar_complete(folder), download, fetch,
                 [folder, archive], verified)
    try:
        train, test = CIFAR10(str(root), train=True), CIFAR10(str(root), train=False)
    except Exception as error:  # torchvision raises RuntimeError on bad checksums, pickle errors on broken files
        raise unreadable("cifar10", folder, expected, error) from error

    def to_tensors(dataset):  # .data is uint8 [N, H, W, C]
        return torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(dataset.targets)

    return RawSplits(*to_tensors(train), *to_tensors(test), fit=standardise_per_channel)


def read_idx(path: Path) -> torch.Tensor:
    """An unsigned-byte IDX file (the MNIST format): bytes 0, 0, 0x08, ndim; ndim big-endian uint32 sizes; the data.

    Read here rather than through torchvision so that loading MNIST does not import torchvision.
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


def _load_idx(name: str, folder: str, data_root, download: bool, hint: str = "") -> RawSplits:
    root = Path(data_root)
    raw = root / folder / "raw"
    _decompress_idx(raw)
    expected = f"{', '.join(IDX_FILES)} (each may be gzipped: {IDX_FILES[0]}.gz, ...)"
    if _missing_idx(raw):
        from torchvision import datasets

        cls = getattr(datasets, folder)  # MNIST or FashionMNIST: own mirrors and checksums

        def fetch():
            cls(str(root), train=True, download=True)

        verified = {raw / filename: checksum for filename, checksum in cls.resources}
        ensure_files(name, raw, expected, lambda: bool(_missing_idx(raw)), download, fetch, [root / folder],
                     verified, hint)
    try:
        train_x, train_y, test_x, test_y = (read_idx(raw / filename) for filename in IDX_FILES)
    except (OSError, ValueError) as error:  # truncated or foreign files
        raise unreadable(name, raw, expected, error) from error
    if train_x.dim() != 3 or len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise unreadable(name, raw, expected, ValueError(
            f"images {tuple(train_x.shape)}/{tuple(test_x.shape)} do not match labels {len(train_y)}/{len(test_y)}"))
    return RawSplits(train_x[:, None], train_y.long(), test_x[:, None], test_y.long(), fit=scale_pixels)


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
                            brief(error))


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
    return all((folder / f).is_file() and md5(folder / f) == checksum for f, checksum in checks)


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
        log.warning("could not extract %s (%s); it will be re-downloaded or reported", archive, brief(error))
