"""Data sets, validation split, on-device batching and CIFAR augmentation (bcrepro.data)."""
import gzip
import logging
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bcrepro import data
from bcrepro.data import (DATASETS, DataNotFoundError, augment_cifar, dataset_for_arch, load_dataset, minibatches,
                          synthetic_shape_for_arch)

SHAPES = [(1, 28, 28), (3, 32, 32)]


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    """An IDX file (uint8): magic 0x00000803-style header, big-endian int32 dims, then the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">i", d) for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        with gzip.open(f"{path}.gz", "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def write_fake_mnist(root: Path, n_train=20, n_test=10, compress=True):
    """A tiny MNIST in torchvision's raw layout; image i is filled with i, pixel (0, 0) is 255 and (0, 1) is 0."""
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = np.stack([np.full((28, 28), i, dtype=np.uint8) for i in range(n)])
        images[:, 0, 0], images[:, 0, 1] = 255, 0
        labels = (np.arange(n) * 7 % 10).astype(np.uint8)
        write_idx(root / "MNIST" / "raw" / f"{split}-images-idx3-ubyte", images, compress)
        write_idx(root / "MNIST" / "raw" / f"{split}-labels-idx1-ubyte", labels, compress)
        arrays[split] = (images, labels)
    return arrays


# ---------------------------------------------------------------------------------------------------------------
# Synthetic data


@pytest.mark.parametrize("shape", SHAPES)
def test_synthetic_is_deterministic_with_the_requested_shape(shape):
    a = load_dataset("synthetic", synthetic_shape=shape, seed=3)
    b = load_dataset("synthetic", synthetic_shape=shape, seed=3)
    c = load_dataset("synthetic", synthetic_shape=shape, seed=4)
    for field in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert not torch.equal(a.train_x, c.train_x)
    assert a.train_x.shape == (2000, *shape) and a.test_x.shape == (500, *shape)
    assert a.train_x.dtype == torch.float32 and a.train_y.dtype == torch.int64
    assert a.val_x.shape == (0, *shape) and a.val_y.shape == (0,) and a.val_y.dtype == torch.int64
    assert a.input_shape == shape and a.num_classes == 10 and a.name == "synthetic"
    assert a.train_x.min() >= -1 and a.train_x.max() <= 1 and a.train_x.std() > 0.3
    assert torch.equal(torch.bincount(a.train_y), torch.full((10,), 200))
    small = load_dataset("synthetic", synthetic_shape=shape, synthetic_train=30, synthetic_test=7)
    assert small.train_x.shape == (30, *shape) and small.test_y.shape == (7,)


@pytest.fixture
def one_thread():
    """Tiny matmuls on 2 shared cores run up to 30x slower with 2 OpenMP threads when the other core is busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("shape", SHAPES)
def test_synthetic_is_learnable_by_a_small_mlp_but_not_at_init(shape, one_thread):
    splits = load_dataset("synthetic", synthetic_shape=shape)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(np.prod(shape)), 64), torch.nn.ReLU(),
                              torch.nn.Linear(64, 10))

    def test_error():
        with torch.no_grad():
            return (net(splits.test_x).argmax(1) != splits.test_y).float().mean().item()

    assert test_error() > 0.6
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(4):
        for xb, yb in minibatches(splits.train_x, splits.train_y, 100, generator=generator):
            optimiser.zero_grad()
            F.cross_entropy(net(xb), yb).backward()
            optimiser.step()
    assert test_error() < 0.1


# ---------------------------------------------------------------------------------------------------------------
# Validation split


def _row_index(reference: torch.Tensor, rows: torch.Tensor) -> list[int]:
    lookup = {r.numpy().tobytes(): i for i, r in enumerate(reference)}
    return [lookup[r.numpy().tobytes()] for r in rows]


def test_validation_is_held_out_of_the_training_set_disjointly():
    full = load_dataset("synthetic", seed=5)
    split = load_dataset("synthetic", seed=5, validation_size=300)
    assert (len(split.train_y), len(split.val_y), len(split.test_y)) == (1700, 300, 500)
    train_rows = _row_index(full.train_x, split.train_x)
    val_rows = _row_index(full.train_x, split.val_x)
    assert set(train_rows).isdisjoint(val_rows)
    assert sorted(train_rows + val_rows) == list(range(2000))
    assert torch.equal(split.val_y, full.train_y[val_rows]) and torch.equal(split.train_y, full.train_y[train_rows])
    assert torch.equal(split.test_x, full.test_x)  # never taken from the test set
    other = load_dataset("synthetic", seed=5, validation_size=300)
    assert torch.equal(other.val_x, split.val_x)  # seeded


@pytest.mark.parametrize("size", [-1, 2000])
def test_validation_size_out_of_range_is_refused(size):
    with pytest.raises(ValueError, match="validation_size"):
        load_dataset("synthetic", validation_size=size)


# ---------------------------------------------------------------------------------------------------------------
# Batching


def test_shuffled_minibatches_cover_every_example_once_per_epoch():
    x = torch.arange(23, dtype=torch.float32)[:, None].repeat(1, 3)  # row i holds i
    y = torch.arange(23)
    generator = torch.Generator().manual_seed(0)
    epochs = []
    for _ in range(2):
        batches = list(minibatches(x, y, 5, shuffle=True, generator=generator))
        assert [len(b[1]) for b in batches] == [5, 5, 5, 5, 3]
        for xb, yb in batches:
            assert torch.equal(xb[:, 0].long(), yb)  # x and y stay aligned
        seen = torch.cat([yb for _, yb in batches])
        assert sorted(seen.tolist()) == list(range(23))
        epochs.append(seen)
    assert not torch.equal(epochs[0], y) and not torch.equal(epochs[0], epochs[1])
    again = torch.cat([yb for _, yb in minibatches(x, y, 5, generator=torch.Generator().manual_seed(0))])
    assert torch.equal(again, epochs[0])


def test_unshuffled_minibatches_are_in_order_views():
    x, y = torch.randn(10, 2), torch.arange(10)
    batches = list(minibatches(x, y, 4, shuffle=False))
    assert [b[1].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert batches[1][0].data_ptr() == x[4].data_ptr()


# ---------------------------------------------------------------------------------------------------------------
# CIFAR augmentation


def _shifted(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """image [C, H, W] moved so that out[r, c] = image[r + dy, c + dx], zeros outside (a crop of the padded image)."""
    _, h, w = image.shape
    out = torch.zeros_like(image)
    out[:, max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)] = \
        image[:, max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)]
    return out


def _find_offset(out: torch.Tensor, image: torch.Tensor, padding: int):
    matches = [(dy, dx) for dy in range(-padding, padding + 1) for dx in range(-padding, padding + 1)
               if torch.equal(out, _shifted(image, dy, dx))]
    assert len(matches) == 1, matches
    return matches[0]


def test_augment_flip_only_mirrors_left_right():
    x = torch.rand(6, 3, 8, 8) + 1
    assert torch.equal(augment_cifar(x, padding=0, flip_p=1.0), x.flip(-1))
    assert torch.equal(augment_cifar(x, padding=0, flip_p=0.0), x)
    mixed = augment_cifar(torch.rand(400, 1, 2, 2) + 1, generator=torch.Generator().manual_seed(1), padding=0)
    assert mixed.shape == (400, 1, 2, 2)


def test_augment_flips_about_half_the_examples():
    x = torch.rand(400, 1, 1, 4) + 1
    out = augment_cifar(x, generator=torch.Generator().manual_seed(0), padding=0)
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert bool((flipped ^ kept).all()) and 150 < flipped.sum() < 250


@pytest.mark.parametrize("flip_p", [0.0, 1.0])
def test_augment_crop_shifts_content_by_at_most_the_padding(flip_p):
    x = torch.rand(40, 3, 8, 8) + 1  # no zeros, so a match identifies the offset
    out = augment_cifar(x, generator=torch.Generator().manual_seed(2), padding=4, flip_p=flip_p)
    assert out.shape == x.shape
    offsets = []
    for i in range(len(x)):
        source = x[i].flip(-1) if flip_p else x[i]  # crop then flip == flip then the mirrored crop
        offsets.append(_find_offset(out[i], source, 4))
    assert len(set(offsets)) > 10  # offsets really vary
    assert {dy for dy, _ in offsets} & {-4, -3} and {dy for dy, _ in offsets} & {3, 4}


def test_augment_keeps_values_and_labels_aligned():
    labels = torch.arange(64) % 10
    x = (labels + 1).float()[:, None, None, None].expand(64, 3, 32, 32).clone()  # image i is filled with label + 1
    x[:, :, 0, 0] = -5.0  # a corner value, to check the range is kept
    out = augment_cifar(x, generator=torch.Generator().manual_seed(3))
    assert out.shape == x.shape
    for i in range(64):
        values = set(out[i].unique().tolist())
        assert values <= {0.0, -5.0, float(labels[i] + 1)}
        assert out[i, :, 16, 16].eq(labels[i] + 1).all()  # the centre survives any crop of padding 4
    assert out.min() >= -5.0 and out.max() <= 10.0


def test_augment_is_reproducible_with_a_generator():
    x = torch.randn(16, 3, 32, 32)
    a = augment_cifar(x, generator=torch.Generator().manual_seed(7))
    b = augment_cifar(x, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and not torch.equal(a, x)


# ---------------------------------------------------------------------------------------------------------------
# Files: IDX reading, offline errors, Fashion-MNIST from Debian


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_from_idx_files_is_scaled_to_minus_one_one(tmp_path, compress):
    arrays = write_fake_mnist(tmp_path, compress=compress)
    splits = load_dataset("mnist", data_root=tmp_path, download=False)
    assert splits.train_x.shape == (20, 1, 28, 28) and splits.test_x.shape == (10, 1, 28, 28)
    assert splits.train_x.dtype == torch.float32 and splits.test_y.dtype == torch.int64
    assert torch.all(splits.train_x[:, 0, 0, 0] == 1.0) and torch.all(splits.train_x[:, 0, 0, 1] == -1.0)
    assert splits.train_x[7, 0, 5, 5].item() == pytest.approx(2 * (7 / 255 - 0.5))
    assert splits.train_y.tolist() == arrays["train"][1].tolist()
    assert splits.test_y.tolist() == arrays["t10k"][1].tolist()
    assert "2 * (x / 255 - 0.5)" in splits.preprocessing


def test_mnist_missing_without_download_names_directory_and_files(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(DataNotFoundError) as caught:
        load_dataset("mnist", data_root=root, download=False)
    message = str(caught.value)
    assert str(root / "MNIST" / "raw") in message and "train-images-idx3-ubyte" in message
    assert "t10k-labels-idx1-ubyte" in message and "download=False" in message
    assert not root.exists()


def test_mnist_offline_download_fails_clearly_and_cleanly(tmp_path):
    try:
        load_dataset("mnist", data_root=tmp_path / "root", download=True)
    except DataNotFoundError as error:
        assert "download failed" in str(error) and "train-images-idx3-ubyte" in str(error)
        assert str(tmp_path / "root" / "MNIST" / "raw") in str(error)
    else:
        pytest.skip("the network is reachable here: MNIST downloaded, so the offline error cannot be tested")
    assert not (tmp_path / "root").exists()  # nothing half-written is left behind
    with pytest.raises(DataNotFoundError, match="download failed"):
        load_dataset("mnist", data_root=tmp_path / "root", download=True)


def test_failed_download_removes_truncated_files(tmp_path, monkeypatch):
    from torchvision.datasets import MNIST

    def half_download(self):
        raw = Path(self.raw_folder)
        raw.mkdir(parents=True)
        (raw / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b truncated")
        (raw / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08")
        raise RuntimeError("connection reset")

    monkeypatch.setattr(MNIST, "download", half_download)
    (tmp_path / "keep.txt").write_text("unrelated")
    with pytest.raises(DataNotFoundError, match="connection reset"):
        load_dataset("mnist", data_root=tmp_path, download=True)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["keep.txt"]


def test_broken_files_raise_data_not_found_not_a_parser_error(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in data.IDX_FILES:
        (raw / f"{name}.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataNotFoundError, match="not found"):
        load_dataset("mnist", data_root=tmp_path, download=False)
    assert not list(raw.glob("*.partial"))
    write_fake_mnist(tmp_path, compress=False)
    (raw / "train-images-idx3-ubyte").write_bytes((raw / "train-images-idx3-ubyte").read_bytes()[:100])
    with pytest.raises(DataNotFoundError, match="could not be read"):
        load_dataset("mnist", data_root=tmp_path, download=False)


def write_fake_cifar10(folder: Path, monkeypatch, per_batch=4):
    """Tiny CIFAR-10 pickles (rows are R, G, B planes of 32x32, row-major); torchvision's checksums patched to them.

    Image i of a batch: red = 10 + i everywhere, green = 50 + 3 * column, blue = 2 * row; labels i % 10.
    """
    import pickle

    from torchvision.datasets import CIFAR10

    folder.mkdir(parents=True)
    green = np.tile(50 + 3 * np.arange(32, dtype=np.uint8), 32)  # planes are row-major
    blue = np.repeat(np.arange(32, dtype=np.uint8) * 2, 32)
    image = lambda i: np.concatenate([np.full(1024, 10 + i, np.uint8), green, blue])
    batch = {"data": np.stack([image(i) for i in range(per_batch)]), "labels": [i % 10 for i in range(per_batch)]}
    for name in data.CIFAR10_FILES[:-1]:
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(k) for k in range(10)]}))
    md5 = {name: data.fetch.md5(folder / name) for name in data.CIFAR10_FILES}
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{k}", md5[f"data_batch_{k}"]] for k in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names", "md5": md5["batches.meta"]})


@pytest.mark.parametrize("as_archive", [False, True])
def test_cifar10_from_pickles_is_channel_first_and_standardised(tmp_path, monkeypatch, as_archive):
    import tarfile

    write_fake_cifar10(tmp_path / "build" / "cifar-10-batches-py", monkeypatch)
    root = tmp_path / "root"
    if as_archive:
        root.mkdir()
        with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
            tar.add(tmp_path / "build" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    else:
        (tmp_path / "build").rename(root)
    splits = load_dataset("cifar10", data_root=root, download=False)
    assert splits.train_x.shape == (20, 3, 32, 32) and splits.test_x.shape == (4, 3, 32, 32)
    assert splits.train_y.tolist() == [0, 1, 2, 3] * 5 and splits.input_shape == (3, 32, 32)
    x = splits.train_x
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(x.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    assert torch.equal(x[:, 0], x[:, 0, :1, :1].expand(-1, 32, 32))  # red: one value per image ...
    assert bool((x[1:4, 0, 0, 0] > x[0:3, 0, 0, 0]).all())  # ... growing with the image index
    assert torch.equal(x[:, 1], x[:1, 1, :1, :].expand(20, 32, 32))  # green: constant down each column ...
    assert bool((x[0, 1, 0, 1:] > x[0, 1, 0, :-1]).all())  # ... increasing to the right
    assert torch.equal(x[:, 2], x[:1, 2, :, :1].expand(20, 32, 32))  # blue: constant along each row ...
    assert bool((x[0, 2, 1:, 0] > x[0, 2, :-1, 0]).all())  # ... increasing down the rows
    assert "per-channel standardisation" in splits.preprocessing


def test_cifar10_missing_names_its_folder_and_batches(tmp_path):
    with pytest.raises(DataNotFoundError) as caught:
        load_dataset("cifar10", data_root=tmp_path, download=False)
    message = str(caught.value)
    assert str(tmp_path / "cifar-10-batches-py") in message and "data_batch_1" in message
    assert "cifar-10-python.tar.gz" in message


def test_fashion_mnist_missing_suggests_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setattr(data.files, "DEBIAN_FASHION_MNIST", tmp_path / "absent")
    with pytest.raises(DataNotFoundError, match="apt-get install dataset-fashion-mnist") as caught:
        load_dataset("fashion_mnist", data_root=tmp_path / "root", download=False)
    assert str(tmp_path / "root" / "FashionMNIST" / "raw") in str(caught.value)


@pytest.mark.skipif(not data.DEBIAN_FASHION_MNIST.is_dir(),
                    reason="Debian package dataset-fashion-mnist not installed (/usr/share/datasets/fashion-mnist)")
def test_fashion_mnist_loads_offline_from_the_debian_package(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="bcrepro.data"):
        splits = load_dataset("fashion_mnist", data_root=tmp_path, download=False)
    assert "Debian" in caplog.text
    assert splits.train_x.shape == (60000, 1, 28, 28) and splits.test_x.shape == (10000, 1, 28, 28)
    assert splits.train_x.min() == -1.0 and splits.train_x.max() == 1.0
    assert torch.equal(torch.bincount(splits.train_y), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(splits.test_y), torch.full((10,), 1000))
    assert (tmp_path / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()


# ---------------------------------------------------------------------------------------------------------------
# CIFAR preprocessing, registry


def test_cifar_standardisation_uses_exact_training_pixel_statistics():
    generator = torch.Generator().manual_seed(0)
    train = torch.randint(0, 256, (50, 3, 8, 8), generator=generator, dtype=torch.uint8)
    train[:, 1] //= 2  # channels with different statistics
    preprocess, description = data.preprocessing.standardise_per_channel(train)
    scaled = preprocess(train)
    assert scaled.dtype == torch.float32
    assert torch.allclose(scaled.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(scaled.double().var(dim=(0, 2, 3), unbiased=False), torch.ones(3, dtype=torch.float64),
                          atol=1e-4)
    expected_mean = (train.double() / 255).mean(dim=(0, 2, 3))
    assert f"{expected_mean[1].item():.4f}" in description


def test_registry_and_architecture_defaults():
    assert set(DATASETS) == {"mnist", "fashion_mnist", "cifar10", "synthetic"}
    assert [dataset_for_arch(a) for a in ("lenet300", "lenet5", "vgg16")] == ["mnist", "mnist", "cifar10"]
    assert synthetic_shape_for_arch("lenet5") == (1, 28, 28) and synthetic_shape_for_arch("vgg16") == (3, 32, 32)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="unknown architecture"):
        dataset_for_arch("resnet")


def test_the_papers_pairing_of_architectures_and_data_sets_is_held_once():
    from bcrepro.report import paper

    assert paper.PAPER_DATASET is data.ARCH_DATASETS


def test_idx_reader_agrees_with_torchvision(tmp_path):
    from torchvision.datasets.mnist import read_image_file, read_label_file

    images = np.random.default_rng(0).integers(0, 256, size=(7, 5, 4), dtype=np.uint8)
    labels = np.arange(7, dtype=np.uint8)
    write_idx(tmp_path / "images", images, compress=False)
    write_idx(tmp_path / "labels", labels, compress=False)
    assert torch.equal(data.read_idx(tmp_path / "images"), read_image_file(str(tmp_path / "images")))
    assert torch.equal(data.read_idx(tmp_path / "labels").long(), read_label_file(str(tmp_path / "labels")))
    with pytest.raises(ValueError, match="truncated"):
        (tmp_path / "short").write_bytes((tmp_path / "images").read_bytes()[:-3])
        data.read_idx(tmp_path / "short")


@pytest.mark.parametrize("size, n_train, expected", [
    ("1/12", 60_000, 5_000),   # MNIST: the usual 5,000
    (1 / 12, 50_000, 4_167),   # CIFAR-10
    ("1/12", 8_000, 1_000),    # a small set: the floor, not 667
    ("1/12", 2_000, 500),      # a tiny one: the floor never takes more than a quarter
    (300, 2_000, 300),         # a whole number is a count of images
    (0, 2_000, 0),
])
def test_validation_size_is_a_fraction_with_a_floor_or_a_count(size, n_train, expected):
    assert data.resolve_validation_size(size, n_train) == expected


@pytest.mark.parametrize("size", ["a/b", "3/2", "1/0", -0.5, True, None])
def test_a_bad_validation_size_names_the_problem(size):
    with pytest.raises(ValueError, match="validation_size"):
        data.resolve_validation_size(size, 1000)


def test_load_dataset_holds_out_the_fraction():
    splits = data.load_dataset("synthetic", validation_size="1/12", synthetic_train=6_000, synthetic_test=10)
    assert len(splits.val_y) == 1_000 and len(splits.train_y) == 5_000  # 6,000 / 12 = 500, raised to the floor
