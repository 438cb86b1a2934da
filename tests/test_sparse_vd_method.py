"""The sparse-vd method end to end on synthetic data: it prunes single weights while the error stays low, and its
compression counts them one by one with bits from the posterior variance."""
import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_sparse_vd_prunes_weights_while_the_error_stays_low(tmp_path):
    run = tmp_path / "svd"
    params = {"validation_size": 300, "epochs": 12, "lr": 0.01, "kl_warmup_start_epochs": 1, "kl_warmup_epochs": 4}
    done = subprocess.run([sys.executable, "-m", "bcrepro", "train", "--arch", "lenet300", "--method", "sparse-vd",
                           "--dataset", "synthetic", "--params-json", json.dumps(params), "--out", str(run)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert " weights " in done.stderr  # the progress line follows the weights kept per layer
    done = subprocess.run([sys.executable, "-m", "bcrepro", "compress", "--run", str(run)], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    history = json.loads((run / "history.json").read_text())
    assert metrics["error_pct"] < 20.0  # KL / N is strong with 1,700 training images: few weights survive
    assert metrics["nonzero_weights"] < 0.5 * metrics["total_weights"]
    # log alpha <= 3 keeps these; compression also drops weights into units that feed nothing any more
    assert 0.9 * sum(k for k, _ in history[-1]["weights_kept"]) <= metrics["nonzero_weights"] \
        <= sum(k for k, _ in history[-1]["weights_kept"])
    assert metrics["compression_pruning"] > 1.5
    assert metrics["bits"] is not None and metrics["compression_precision"] > metrics["compression_pruning"]
    assert metrics["error_quantized_pct"] < 25.0
