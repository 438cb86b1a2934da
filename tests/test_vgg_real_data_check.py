"""experiments/vgg_real_data_check/vgg_real_data_check.py: one-channel images made CIFAR-shaped (padding, channels,
subset, labels), and the script's dense stage run end to end on synthetic data."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from bcrepro import data

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "vgg_real_data_check" / "vgg_real_data_check.py"


@pytest.fixture(scope="module")
def check():
    spec = importlib.util.spec_from_file_location("vgg_real_data_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def numbered_splits(n_train=20, n_val=4, n_test=6, side=28) -> data.DataSplits:
    """Image i of every split is filled with i + 1 (never 0) and labelled i % 10: a row's label can be read off it."""
    def split(n):
        x = torch.arange(1, n + 1, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, side, side).clone()
        return x, torch.arange(n) % 10
    return data.DataSplits(*split(n_train), *split(n_val), *split(n_test), input_shape=(1, side, side),
                           num_classes=10, name="numbered", preprocessing="none")


def test_images_are_zero_padded_to_32_and_repeated_over_three_channels(check):
    splits = check.cifar_shaped(numbered_splits())
    assert splits.input_shape == (3, 32, 32)
    for x, n in ((splits.train_x, 20), (splits.val_x, 4), (splits.test_x, 6)):
        assert x.shape == (n, 3, 32, 32)
        border = torch.ones(32, 32, dtype=torch.bool)
        border[2:30, 2:30] = False
        assert (x[:, :, border] == 0).all()
        centre = x[:, :, 2:30, 2:30]
        expected = torch.arange(1, n + 1, dtype=torch.float32).view(n, 1, 1, 1)
        assert (centre == expected).all()
        assert x.is_contiguous()


def test_odd_margins_are_split_and_a_training_subset_keeps_labels_with_their_images(check):
    splits = check.cifar_shaped(numbered_splits(side=29), train_size=7, seed=3)
    assert splits.train_x.shape == (7, 3, 32, 32)
    assert (splits.train_x[:, :, :1] == 0).all() and (splits.train_x[:, :, 30:] == 0).all()
    assert (splits.train_x[:, :, 1:30, 1:30] > 0).all()
    numbers = splits.train_x[:, 0, 16, 16].long() - 1
    assert len(set(numbers.tolist())) == 7
    assert torch.equal(splits.train_y, numbers % 10)
    assert splits.sizes == {"train": 7, "val": 4, "test": 6}


@pytest.mark.parametrize("shape", [(3, 28, 28), (1, 33, 28)])
def test_images_that_are_not_one_channel_or_fit_no_32_square_are_refused(check, shape):
    splits = numbered_splits()
    splits.input_shape = shape
    with pytest.raises(ValueError, match="one-channel images of at most 32 x 32"):
        check.cifar_shaped(splits)


def test_a_training_subset_larger_than_the_split_is_refused(check):
    with pytest.raises(ValueError, match=r"train_size must be in 1\.\.20"):
        check.cifar_shaped(numbered_splits(), train_size=21)


@pytest.mark.slow
def test_the_dense_stage_trains_vgg16_on_the_cifar_shaped_images_and_writes_the_summary(check, tmp_path, capsys):
    summary = check.main(["--data-root", str(tmp_path), "--dataset", "synthetic", "--out", str(tmp_path / "out"),
                          "--train-size", "32", "--validation-size", "16", "--dense-epochs", "1", "--methods"])
    assert summary["dataset"] == "synthetic as 3x32x32"
    assert summary["sizes"]["train"] == 32 and summary["sizes"]["val"] == 16
    (record,) = summary["dense"]["history"]
    assert torch.isfinite(torch.tensor(record["loss"]))
    assert (tmp_path / "out" / "dense" / "model.pt").is_file()
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["sizes"] == summary["sizes"]
    assert "dense: 1 epochs" in capsys.readouterr().out
    again = check.main(["--data-root", str(tmp_path), "--dataset", "synthetic", "--out", str(tmp_path / "again"),
                        "--train-size", "32", "--validation-size", "16", "--methods",
                        "--dense-model", str(tmp_path / "out" / "dense" / "model.pt")])
    assert "dense" not in again and not (tmp_path / "again" / "dense").exists()
    assert f"dense: from {tmp_path / 'out' / 'dense' / 'model.pt'}, test error" in capsys.readouterr().out


def test_the_summary_line_names_the_slim_speed_ups_and_an_infinite_rate(check):
    history = [{"loss": float("nan"), "train_error_pct": 9.0, "test_error_pct": 8.0},
               {"loss": 0.5, "train_error_pct": 7.0, "test_error_pct": 6.5}]
    compressed = {"error_pruned_pct": 6.75, "architecture": [3, 0], "compression_pruning": None,
                  "slim_max_abs_difference": None,
                  "speedups": [{"variant": "slim", "batch": 64, "speedup": 3.0},
                               {"variant": "masked", "batch": 64, "speedup": 1.0},
                               {"variant": "slim", "batch": 1, "speedup": 1.5}]}
    line = check.summary_line("bc-gnj", history, compressed)
    assert line.startswith("bc-gnj: 2 epochs, loss 0.5 (all finite: False), train error 7.00 %, test error 6.50 %")
    assert "architecture 3-0, compression infx (pruning)" in line
    assert line.endswith("slim speed-up 1.50x at batch 1, 3.00x at batch 64")
