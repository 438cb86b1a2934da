"""Deep Compression: pruning to the published fractions with weights held at exactly zero, k-means codebooks whose
centroids are the only values left, DC's centroid gradient, accounting with codebooks, and a synthetic run."""
import json

import pytest
import torch
import torch.nn.functional as F

from conftest import bcrepro, run_bcrepro

from bcrepro import data, models
from bcrepro.compress import accounting
from bcrepro.layers.masked import MaskedLinear
from bcrepro.methods import dc, get_method
from bcrepro.train import TrainConfig, train
from bcrepro.weight_sharing import Codebook, centroid_gradients


def test_prune_to_fraction_keeps_the_largest_magnitudes():
    weight = torch.tensor([[0.1, -0.9, 0.3], [-0.5, 0.05, 0.7]])
    mask = torch.ones_like(weight, dtype=torch.bool)
    dc.prune_to_fraction(weight, mask, 0.5)
    assert mask.tolist() == [[False, True, False], [True, False, True]]
    dc.prune_to_fraction(weight, mask, 1 / 6)  # a later round only removes more
    assert mask.tolist() == [[False, True, False], [False, False, False]]


def _dc_net(arch="lenet300", **overrides):
    method = get_method("dc")
    hp = method.params_for(arch, overrides)
    torch.manual_seed(0)
    return models.build(arch, method.layer_factory(arch, hp)), hp


def test_pruned_weights_stay_exactly_zero_through_retraining_with_momentum_and_weight_decay(tmp_path):
    net, hp = _dc_net(prune_iterations=[0, 4, 8], quantize_iteration=10_000, kept_fraction=[0.1, 0.2, 0.5])
    splits = data.load_dataset("synthetic", validation_size=0, synthetic_train=512, synthetic_test=64)
    config = TrainConfig(epochs=3, batch_size=64, lr=0.05, optimizer="sgd", momentum=0.9, weight_decay=5e-3)
    train(net, splits, config, tmp_path, torch.device("cpu"), after_step=dc.after_step(net, hp))
    for layer, fraction in zip(net.prunable_layers(), hp["kept_fraction"]):
        assert torch.count_nonzero(layer.weight[~layer.mask]) == 0
        assert float(layer.mask.float().mean()) == pytest.approx(fraction, abs=0.01)


def test_shared_weights_are_centroids_of_at_most_2_to_the_bits_entries(tmp_path):
    net, hp = _dc_net(prune_iterations=[0], quantize_iteration=3)
    splits = data.load_dataset("synthetic", validation_size=0, synthetic_train=512, synthetic_test=64)
    config = TrainConfig(epochs=2, batch_size=64, lr=0.01, optimizer="sgd")
    train(net, splits, config, tmp_path, torch.device("cpu"), after_step=dc.after_step(net, hp))
    for layer, bits in zip(net.prunable_layers(), hp["weight_bits"]):
        weight = layer.inference_weight()
        k = int(layer.n_centroids)
        assert 1 < k <= 2 ** bits
        kept_values = set(weight[layer.mask].tolist())
        assert kept_values <= set(layer.centroids[:k].tolist())  # fine-tuned centroids are the only values
        assert torch.count_nonzero(weight[~layer.mask]) == 0


def test_centroid_gradient_is_the_sum_of_its_weights_gradients():
    layer = MaskedLinear(12, 5, codebook_size=4)
    layer.mask[:, :2] = False
    layer.share_weights()
    x = torch.randn(7, 12)
    F.linear(x, layer.inference_weight(), layer.bias).pow(2).sum().backward()
    # the same loss through a free copy of the shared weights gives dL/dW; DC's rule sums it per cluster
    free = layer.inference_weight().detach().requires_grad_()
    F.linear(x, free, layer.bias.detach()).pow(2).sum().backward()
    codebook = Codebook(layer.centroids.detach()[:4], torch.where(layer.mask, layer.assignments, -1))
    assert torch.allclose(layer.centroids.grad, centroid_gradients(free.grad * layer.mask, codebook), atol=1e-5)


def test_codebook_precision_counts_index_bits_and_32_bit_codebooks():
    counts = [accounting.LayerCounts(total=1000, nonzero=100, slim=1000, rows=10)]
    dense_values = 1000 * 6                                     # dense slimmed layout at 6-bit indices
    csr = 100 * (6 + 32) + 11 * 32                              # CSR: value index + column index, row pointers
    expected = 32 * 1000 / (min(dense_values, csr) + 64 * 32)  # plus 64 codebook entries at 32 bits
    assert accounting.compression_precision(counts, [6], [64]) == pytest.approx(expected)


@pytest.mark.slow
def test_dc_from_a_dense_reference_prunes_and_shares_while_the_error_stays_low(tmp_path, dense_lenet300):
    run = tmp_path / "dc"
    run_bcrepro("train", "--arch", "lenet300", "--method", "dc", "--dataset", "synthetic", "--epochs", 8,
                "--init", dense_lenet300, "--out", run,
                "--params-json", json.dumps({"validation_size": 300, "lr": 0.01, "prune_iterations": [0, 25, 50],
                                             "quantize_iteration": 100,
                                             "preprocess": "symmetric"}))  # the shared reference's pixels
    run_bcrepro("compress", "--run", run)
    metrics = json.loads((run / "metrics.json").read_text())
    kept = [k / t for k, t in zip(metrics["kept_weights"], metrics["layer_weights"])]
    assert kept == pytest.approx([0.08, 0.09, 0.26], abs=0.01)
    assert metrics["bits"] == [6, 6, 6]
    assert metrics["compression_precision"] > metrics["compression_pruning"] > 3.0
    assert metrics["error_pct"] < 15.0 and metrics["error_quantized_pct"] == metrics["error_pct"]


def test_a_dense_reference_fitted_to_other_pixel_scaling_is_refused_before_anything_is_written(tmp_path):
    from bcrepro.cells import train_cell
    dense = tmp_path / "dense"
    # the shared pixels; DC's LeNet-300-100 retrains on x / 255 by default
    train_cell(dense, arch="lenet300", method="dense", dataset="synthetic", epochs=1, params={"validation_size": 300})
    run = tmp_path / "dc"
    done = bcrepro("train", "--arch", "lenet300", "--method", "dc", "--dataset", "synthetic", "--epochs", 1,
                   "--init", dense / "model.pt", "--out", run)
    assert done.returncode == 1
    assert "preprocess 'symmetric' there, 'unit' here" in done.stderr and not run.exists()
    # the same scaling is accepted (and a bare state dict, without run.json beside it, is taken as given)
    accepted = bcrepro("train", "--arch", "lenet300", "--method", "dc", "--dataset", "synthetic", "--epochs", 1,
                       "--init", dense / "model.pt", "--out", run, "--params-json",
                       json.dumps({"preprocess": "symmetric", "validation_size": 300, "prune_iterations": [0, 1, 2],
                                   "quantize_iteration": 3}))
    assert accepted.returncode == 0, accepted.stderr
