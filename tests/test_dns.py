"""Dynamic Network Surgery: thresholds, hysteresis, splicing through straight-through masks, and a synthetic run."""
import json

import pytest
import torch
from conftest import run_bcrepro

from bcrepro import models
from bcrepro.layers.masked import MaskedLinear
from bcrepro.methods import dns, get_method


def test_threshold_is_mean_plus_c_std_of_the_kept_magnitudes():
    weight = torch.tensor([[1.0, -2.0, 3.0], [0.0, -4.0, 9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)  # 9 is pruned, 0 does not count
    magnitudes = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    expected = magnitudes.mean() + 0.5 * magnitudes.std(unbiased=False)
    assert dns.surgery_threshold(weight, mask, 0.5) == pytest.approx(float(expected))
    assert dns.surgery_threshold(weight, mask, -10.0) == 0.0  # never negative


def test_hysteresis_prunes_below_0_9_t_and_splices_above_1_1_t():
    weight = torch.tensor([0.85, 0.95, 1.05, 1.15, 0.85, 0.95, 1.05, 1.15])
    mask = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0], dtype=torch.bool)
    dns.update_mask(weight, mask, threshold=1.0)
    assert mask.tolist() == [False, True, True, True, False, False, False, True]


def test_a_pruned_weight_pushed_above_1_1_t_by_its_gradient_is_spliced_back():
    layer = MaskedLinear(2, 1, bias=False, straight_through=True)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, 2.0]]))
    layer.mask[0, 0] = False  # pruned, yet its gradient still updates it
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    x = torch.tensor([[1.0, 0.0]])
    for _ in range(10):
        optimizer.zero_grad()
        (-layer(x).sum() - 3.0 * (layer.weight * torch.tensor([[1.0, 0.0]])).sum()).backward()
        optimizer.step()
    assert layer.weight[0, 0] > 1.1  # grew although masked in the forward pass
    dns.update_mask(layer.weight, layer.mask, threshold=1.0)
    assert bool(layer.mask[0, 0])


def _dns_net(iter_stop):
    method = get_method("dns")
    hp = method.params_for("lenet300", {"iter_stop": iter_stop, "surgery_gamma": 0.0})  # probability 1
    torch.manual_seed(0)
    net = models.build("lenet300", method.layer_factory("lenet300", hp))
    dns.prepare(net, hp)
    return net, hp


def test_masks_change_before_iter_stop_and_never_after():
    net, hp = _dns_net([5, 5, 5])
    surgery = dns.after_step(net, hp)
    surgery(0)
    after_first = [layer.mask.clone() for layer in net.prunable_layers()]
    assert all(not m.all() for m in after_first)  # t > 0.9 t of many weights: pruned at once
    with torch.no_grad():
        for layer in net.prunable_layers():
            layer.weight.fill_(10.0 * float(layer.threshold))  # every weight would now be spliced back...
    surgery(5)
    surgery(50)
    assert all(torch.equal(m, layer.mask) for m, layer in zip(after_first, net.prunable_layers()))  # ...but not now
    surgery(4)
    assert all(layer.mask.all() for layer in net.prunable_layers())


def test_thresholds_are_kept_with_the_weights_for_a_resumed_run():
    net, hp = _dns_net([5, 5, 5])
    state = net.state_dict()
    fresh, _ = _dns_net([5, 5, 5])
    fresh.prunable_layers()[0].threshold.fill_(float("nan"))
    fresh.load_state_dict(state)
    assert float(fresh.prunable_layers()[0].threshold) == float(net.prunable_layers()[0].threshold) > 0


@pytest.mark.slow
def test_dns_from_a_dense_reference_prunes_while_the_error_stays_low(tmp_path, dense_lenet300):
    surgery = tmp_path / "dns"
    run_bcrepro("train", "--arch", "lenet300", "--method", "dns", "--dataset", "synthetic", "--epochs", 8,
                "--init", dense_lenet300, "--out", surgery,
                "--params-json", json.dumps({"validation_size": 300, "iter_stop": [150, 150, 150],
                                             "c_rate": [1.0, 1.0, 0.5]}))
    run_bcrepro("compress", "--run", surgery)
    metrics = json.loads((surgery / "metrics.json").read_text())
    reference = json.loads((dense_lenet300.parent / "run.json").read_text())
    assert metrics["nonzero_weights"] < 0.3 * metrics["total_weights"]
    assert metrics["compression_pruning"] > 2.0
    assert metrics["error_pct"] < 15.0
    assert metrics["error_quantized_pct"] is None and metrics["bits"] is None  # DNS has no precision reduction
    assert reference["method"] == "dense"
    # single weights pruned: the speed-up measurement adds the torch.sparse CSR variant, counting stored weights only
    run_bcrepro("speedup", "--run", surgery, "--batch-sizes", 2, "--repeats", 2, "--warmup", 1)
    records = {r["variant"]: r for r in json.loads((surgery / "speed.json").read_text())}
    assert sorted(records) == ["csr", "masked", "original", "slim"]
    assert records["csr"]["macs_per_example"] == metrics["nonzero_weights"]  # one multiply-add per kept weight
    assert records["original"]["macs_per_example"] == metrics["total_weights"]


def test_surgery_reads_the_thresholds_once_not_every_step():
    """On a GPU each read of a threshold buffer makes the host wait for the device. A 'meta' buffer stands in for a
    device one here: it cannot be read at all, so any per-step read fails."""
    net, hp = _dns_net([5, 5, 5])
    surgery = dns.after_step(net, hp)
    surgery(0)  # reads the thresholds (after a resume, the loaded ones)
    first = [layer.mask.clone() for layer in net.prunable_layers()]
    for layer in net.prunable_layers():
        layer.threshold = torch.full((), float("nan"), device="meta")
    for iteration in range(1, 4):
        surgery(iteration)
    assert all(torch.equal(m, layer.mask) for m, layer in zip(first, net.prunable_layers()))  # same t, same weights
