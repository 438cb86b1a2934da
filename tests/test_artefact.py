"""``compressed.bin`` alone rebuilds the compressed network: the file's weights and biases in the plain architecture
give the test error that ``bcrepro compress`` measured on the network it evaluated (independent of model.pt)."""
import json

import pytest

from bcrepro import cli
from bcrepro.compress import bitstream
from bcrepro.data import load_dataset
from bcrepro.deploy.artefact import load_network
from bcrepro.runs import final_error_pct
from bcrepro.train import error_rate

QUICK = {"validation_size": 300, "kl_warmup_epochs": 1, "lr": 0.01}
THRESHOLDS = {"rule": "auto", "max_candidates": 6, "frontier": []}  # fewer trial networks: seconds, not minutes


@pytest.mark.parametrize("arch, method", [("lenet300", "bc-gnj"), ("lenet5", "bc-ghs"), ("lenet300", "dense")])
def test_the_file_rebuilds_the_network_compress_evaluated(tmp_path, arch, method):
    run = tmp_path / "run"
    params = QUICK if method == "dense" else {**QUICK, "thresholds": THRESHOLDS}
    assert cli.main(["--quiet", "train", "--arch", arch, "--method", method, "--dataset", "synthetic", "--epochs",
                     "2", "--params-json", json.dumps(params), "--out", str(run)]) == 0
    assert cli.main(["--quiet", "compress", "--run", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())

    net = load_network(run / "compressed.bin", arch)
    splits = load_dataset("synthetic", validation_size=300)
    assert error_rate(net, splits.test_x, splits.test_y) == pytest.approx(final_error_pct(metrics))
    weights = [layer.weight for layer in net.prunable_layers()]
    assert sum(int((w != 0).sum()) for w in weights) <= metrics["nonzero_weights"]
    biases = [layer.bias for layer in net.prunable_layers()]
    assert any(bool((b != 0).any()) for b in biases)  # the biases came from the file, not from the initialisation


def test_a_file_without_biases_or_of_another_architecture_is_refused(tmp_path):
    import numpy as np

    from bcrepro.compress.accounting import EncodedLayer

    layers = [EncodedLayer(np.ones((o, i), np.float32), np.ones((o, i), np.float32), 5)
              for o, i in ((300, 784), (100, 300), (10, 100))]
    units = [(np.ones(l.values.shape[0], bool), np.ones(l.values.shape[1], bool)) for l in layers]
    path = tmp_path / "compressed.bin"
    path.write_bytes(bitstream.encode_layers(layers, units))
    with pytest.raises(ValueError, match="no biases"):
        load_network(path, "lenet300")
    with pytest.raises(ValueError, match="slim.pt"):
        load_network(path, "vgg16")
    with pytest.raises(ValueError, match="holds 3 layers, lenet5 has 4|shape"):
        load_network(path, "lenet5")
