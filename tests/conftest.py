"""One intra-op thread for the whole suite: on a 2-core machine a second OpenMP thread waiting on a busy core makes
small kernels tens of times slower, and the tests' tensors are small."""
import json
import subprocess
import sys

import pytest
import torch

torch.set_num_threads(1)


def run_bcrepro(*args):
    """The ``bcrepro`` command in a subprocess, as a user runs it; fails the test with its stderr if it fails."""
    done = subprocess.run([sys.executable, "-m", "bcrepro", *map(str, args)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture
def dense_lenet300(tmp_path):
    """A dense LeNet-300-100 trained 6 epochs on synthetic data (300 images held out): the baselines' reference."""
    out = tmp_path / "dense"
    run_bcrepro("train", "--arch", "lenet300", "--method", "dense", "--dataset", "synthetic", "--epochs", 6,
                "--params-json", json.dumps({"validation_size": 300}), "--out", out)
    return out / "model.pt"
