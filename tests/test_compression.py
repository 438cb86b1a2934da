"""Masks, the deterministic copy, thresholds, bit precision and the compress step (bcrepro.compress)."""
import json
import logging
import math

import numpy as np
import pytest
import torch
from torch import nn

from bcrepro import models
from bcrepro.compress.masks import (architecture, deterministic_net, full_masks, propagate_masks,
                                    removed_unit_constants, weight_mask_like)
from bcrepro.compress.pipeline import compress, save_compressed, save_posterior
from bcrepro.compress.precision import exponent_bits, layer_bits, round_to_fixed_point, significand_bits
from bcrepro.compress.thresholds import select_thresholds, threshold_curve, valley_threshold
from bcrepro.layers import Conv2dGroupHS, Conv2dGroupNJ, LinearGroupHS, LinearGroupNJ

GNJ = models.LayerFactory(linear=lambda i, o, index: LinearGroupNJ(i, o),
                          conv=lambda i, o, k, padding, index: Conv2dGroupNJ(i, o, k, padding=padding))
GHS = models.LayerFactory(linear=lambda i, o, index: LinearGroupHS(i, o),
                          conv=lambda i, o, k, padding, index: Conv2dGroupHS(i, o, k, padding=padding))
FACTORIES = {"gnj": GNJ, "ghs": GHS}


@torch.no_grad()
def perturb(net, seed=0):
    """Move the posterior away from its initialisation so E[z] != 1 and the variances differ per weight."""
    g = torch.Generator().manual_seed(seed)
    for layer in net.group_layers():
        n = layer.n_groups
        if isinstance(layer, (LinearGroupNJ, Conv2dGroupNJ)):
            layer.z_mu.copy_(0.5 + torch.rand(n, generator=g))
            layer.z_logvar.copy_(-6 + 4 * torch.rand(n, generator=g))
        else:
            layer.alpha_mu.copy_(0.3 * torch.randn(n, generator=g))
            layer.alpha_logvar.copy_(-6 + 4 * torch.rand(n, generator=g))
        layer.weight_logvar.copy_(-12 + 8 * torch.rand(layer.weight_logvar.shape, generator=g))
        layer.bias_mu.copy_(0.1 * torch.randn(layer.bias_mu.shape, generator=g))


@torch.no_grad()
def set_gnj_keep(layer, keep):
    """GNJ statistics: log alpha ~ -9 for kept groups, ~ +9.4 for pruned ones (z_mu = 0); threshold 0 separates."""
    keep = torch.as_tensor(keep, dtype=torch.bool)
    layer.z_mu.copy_(torch.where(keep, torch.ones(len(keep)), torch.zeros(len(keep))))
    layer.z_logvar.fill_(-9.0)


def keep_all_but(n, pruned):
    keep = torch.ones(n, dtype=torch.bool)
    keep[list(pruned)] = False
    return keep


# ---- masks --------------------------------------------------------------------------------------------------------
def test_pruned_input_group_of_next_layer_removes_output_unit():
    net = models.build("lenet300", GNJ)
    fc1, fc2, fc3 = net.prunable_layers()
    keep1, keep2, keep3 = keep_all_but(784, [3]), keep_all_but(300, [7, 20]), keep_all_but(100, [0, 5])
    for layer, keep in zip((fc1, fc2, fc3), (keep1, keep2, keep3)):
        set_gnj_keep(layer, keep)
    masks = propagate_masks(net, [0.0, 0.0, 0.0])
    assert torch.equal(masks[0].in_mask, keep1)
    assert torch.equal(masks[0].out_mask, keep2)  # fc2's pruned inputs 7, 20 remove fc1's output units 7, 20
    assert torch.equal(masks[1].in_mask, keep2)
    assert torch.equal(masks[1].out_mask, keep3)
    assert torch.equal(masks[2].in_mask, keep3)
    assert masks[2].out_mask.all()
    w = masks[0].weight_mask()
    assert not w[7].any() and not w[:, 3].any() and w[8, 4]
    assert architecture(net, masks) == [783, 298, 98]


def test_pruned_conv_filter_removes_its_16_fc_columns():
    net = models.build("lenet5", GNJ)
    conv1, conv2, fc1, fc2 = net.prunable_layers()
    set_gnj_keep(conv1, keep_all_but(20, [2]))
    set_gnj_keep(conv2, keep_all_but(50, [4]))
    masks = propagate_masks(net, [0.0, 0.0, None, None])
    assert torch.equal(masks[0].out_mask, keep_all_but(20, [2]))
    assert torch.equal(masks[1].in_mask, keep_all_but(20, [2]))  # conv -> conv: the input-channel slice goes
    assert not masks[1].weight_mask(4)[:, 2].any()
    assert torch.equal(masks[1].out_mask, keep_all_but(50, [4]))
    assert torch.equal(masks[2].in_mask, keep_all_but(800, range(64, 80)))  # filter 4 -> columns 64..79
    assert masks[2].out_mask.all() and masks[3].in_mask.all()
    assert architecture(net, masks) == [19, 49, 784, 500]


def test_conv_filter_whose_16_fc_inputs_are_all_pruned_is_removed():
    net = models.build("lenet5", GNJ)
    conv1, conv2, fc1, fc2 = net.prunable_layers()
    fc1_keep = keep_all_but(800, list(range(16 * 9, 16 * 10)) + [16 * 5 + 3])  # all of filter 9, one input of 5
    set_gnj_keep(fc1, fc1_keep)
    set_gnj_keep(fc2, keep_all_but(500, [11]))
    masks = propagate_masks(net, [None, None, 0.0, 0.0])
    assert torch.equal(masks[1].out_mask, keep_all_but(50, [9]))  # filter 5 still feeds 15 inputs: kept
    assert torch.equal(masks[2].in_mask, fc1_keep)
    assert torch.equal(masks[2].out_mask, keep_all_but(500, [11]))
    assert architecture(net, masks) == [20, 49, 783, 499]


def test_last_conv_group_layer_keeps_only_its_own_filters():
    conv = Conv2dGroupNJ(1, 4, 3)
    net = models.Net("custom", nn.Sequential(conv), nn.Sequential(), (1, 5, 5), 4 * 9)
    set_gnj_keep(conv, [True, False, True, True])
    (mask,) = propagate_masks(net, [0.0])
    assert mask.in_mask.all()
    assert mask.out_mask.tolist() == [True, False, True, True]


def test_thresholds_must_align_with_prunable_layers():
    net = models.build("lenet300", GNJ)
    with pytest.raises(ValueError, match="one threshold per prunable layer"):
        propagate_masks(net, [0.0, 0.0])


# ---- the deterministic copy -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["gnj", "ghs"])
@pytest.mark.parametrize("arch", ["lenet300", "lenet5"])
def test_deterministic_net_equals_bayesian_eval_when_nothing_is_pruned(arch, family):
    torch.manual_seed(0)
    net = models.build(arch, FACTORIES[family])
    perturb(net)
    net.eval()
    copy_net = deterministic_net(net, full_masks(net))
    assert isinstance(copy_net, models.Net) and copy_net.arch == arch
    assert all(type(m) in (nn.Linear, nn.Conv2d) for m in copy_net.prunable_layers())
    x = torch.randn(8, *net.input_shape)
    with torch.no_grad():
        torch.testing.assert_close(copy_net(x), net(x), rtol=0, atol=1e-6)


def test_deterministic_net_weights_are_masked_posterior_means():
    torch.manual_seed(1)
    net = models.build("lenet5", GHS)
    perturb(net)
    conv1, conv2, fc1, fc2 = net.prunable_layers()
    masks = propagate_masks(net, [float(np.quantile(l.group_statistic().detach(), 0.6))
                                    for l in net.prunable_layers()])
    copy_net = deterministic_net(net, masks)
    plain_fc1 = copy_net.prunable_layers()[2]
    mean = fc1.posterior_mean().detach()
    for o in (0, 17, 333):
        for i in (0, 5, 400, 799):
            expected = mean[o, i] if (masks[2].out_mask[o] and masks[2].in_mask[i]) else 0.0
            assert plain_fc1.weight[o, i].item() == pytest.approx(float(expected))
    plain_conv2 = copy_net.prunable_layers()[1]
    bias = conv2.posterior_bias().detach()
    torch.testing.assert_close(plain_conv2.bias, bias * masks[1].out_mask)
    pruned_filter = int((~masks[1].out_mask).nonzero()[0])
    assert not plain_conv2.weight[pruned_filter].any()


def bn_net():
    """conv -> BN -> ReLU -> pool -> FC -> BN -> ReLU -> FC: every removed unit passes a batch-norm constant on."""
    features = nn.Sequential(Conv2dGroupNJ(1, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2))
    classifier = nn.Sequential(LinearGroupNJ(6 * 16, 12), nn.BatchNorm1d(12), nn.ReLU(), LinearGroupNJ(12, 5))
    net = models.Net("custom", features, classifier, (1, 10, 10), 5)
    with torch.no_grad():
        for bn in (features[1], classifier[1]):
            n = bn.num_features
            bn.running_mean.copy_(0.2 * torch.randn(n))
            bn.running_var.copy_(0.5 + torch.rand(n))
            bn.weight.copy_(1 + 0.3 * torch.randn(n))
            bn.bias.copy_(0.5 + 0.2 * torch.randn(n))  # positive shifts: the constants survive the ReLU
    return net.eval()


def test_deterministic_net_equals_bayesian_net_with_pruned_scales_at_zero():
    torch.manual_seed(2)
    net = bn_net()
    perturb(net)
    conv, fc1, fc2 = net.prunable_layers()
    set_gnj_keep(conv, keep_all_but(6, [1, 4]))
    set_gnj_keep(fc1, keep_all_but(96, [32, 33, 34, 35, 50]))
    set_gnj_keep(fc2, keep_all_but(12, [3, 7]))
    masks = propagate_masks(net, [0.0, 0.0, 0.0])
    constants = removed_unit_constants(net, masks)
    assert (constants[0][[1, 4]] > 0).all() and (constants[1][[3, 7]] > 0).all()
    x = torch.randn(16, 1, 10, 10)
    with torch.no_grad():
        expected = net(x)  # z_mu = 0 for every pruned group: the pruned network's function
        torch.testing.assert_close(deterministic_net(net, masks)(x), expected, rtol=0, atol=1e-5)


# ---- bit precision --------------------------------------------------------------------------------------------------
def t_count(variance):
    """#{t in 1..23 : 2 Var < 2^-t}, written out for the test."""
    return sum(1 for t in range(1, 24) if 2 * variance < 2.0 ** -t)


@pytest.mark.parametrize("variance, expected", [(1e-2, 5), (1e-3, 8), (1e-4, 12), (1e-5, 15), (1e-6, 18), (0.0, 23)])
def test_significand_bits_reproduce_the_worked_examples(variance, expected):
    assert t_count(variance) == expected
    assert significand_bits(torch.full((7,), variance)) == expected


def test_significand_bits_take_the_ceiling_of_the_mean():
    variances = torch.tensor([1e-2, 1e-2, 1e-6])  # t = 5, 5, 18 -> mean 9.33 -> 10
    assert significand_bits(variances) == math.ceil((2 * t_count(1e-2) + t_count(1e-6)) / 3) == 10
    assert significand_bits(torch.tensor([1e-2, 1e-3])) == 7  # t = 5, 8 -> 6.5 -> 7
    assert significand_bits(torch.zeros(0)) == 0


@pytest.mark.parametrize("m, expected", [(2, 2), (4, 3), (10, 4), (1e39, 9)])
def test_exponent_bits_reproduce_the_authors(m, expected):
    assert exponent_bits(m) == expected == math.ceil(math.log2(math.log2(m) + 1) + 1)


@pytest.mark.parametrize("m", [0.0, 0.3, 0.5, 0.6, 1.0])
def test_exponent_bits_are_guarded_below_one(m):
    assert exponent_bits(m) == 1


def test_layer_bits_and_fixed_point_rounding():
    assert layer_bits(4, 9) == 14
    w = torch.tensor([0.30, -0.30, 0.1249, 0.1251, -0.0625, 1.0])
    rounded = round_to_fixed_point(w, 3)  # grid of step 1/8; halves round up
    torch.testing.assert_close(rounded, torch.tensor([0.25, -0.25, 0.125, 0.125, 0.0, 1.0]))


# ---- thresholds -----------------------------------------------------------------------------------------------------
def test_valley_threshold_lands_in_the_gap_of_a_bimodal_sample():
    rng = np.random.default_rng(0)
    signal, noise = rng.normal(-8, 0.7, 40), rng.normal(2, 1.0, 260)
    t = valley_threshold(np.concatenate([signal, noise]))
    assert signal.max() < t < noise.min()


@pytest.mark.parametrize("sample", ["normal", "uniform", "fresh_init"])
def test_valley_keeps_everything_on_a_unimodal_sample(sample):
    rng = np.random.default_rng(1)
    values = {"normal": rng.normal(0, 1, 300), "uniform": rng.uniform(-3, 3, 300),
              "fresh_init": rng.normal(-9, 0.01, 784)}[sample]
    assert valley_threshold(values) == math.inf


def signal_noise_lenet300(seed=0):
    """LeNet-300-100 (GNJ) whose groups are either signal (low log alpha) or noise (high)."""
    torch.manual_seed(seed)
    net = models.build("lenet300", GNJ)
    perturb(net, seed)
    g = torch.Generator().manual_seed(seed)
    signals = []
    with torch.no_grad():
        for layer, n_signal in zip(net.prunable_layers(), (100, 60, 20)):
            signal = torch.zeros(layer.n_groups, dtype=torch.bool)
            signal[torch.randperm(layer.n_groups, generator=g)[:n_signal]] = True
            stat = torch.where(signal, -8 + 0.5 * torch.randn(layer.n_groups, generator=g),
                               3 + torch.randn(layer.n_groups, generator=g))
            layer.z_mu.fill_(1.0)
            layer.z_logvar.copy_(stat)  # log alpha = z_logvar - log(1 + 1e-8)
            signals.append(signal)
    return net.eval(), signals


class FakeValidation:
    """Error grows by 2 points for every signal group whose column the pruned net zeroed; noise costs nothing."""

    def __init__(self, signals):
        self.signals, self.calls = signals, 0

    def __call__(self, det_net):
        self.calls += 1
        lost = 0
        for layer, signal in zip(det_net.prunable_layers(), self.signals):
            dead = ~layer.weight.detach().flatten(2 if layer.weight.dim() > 2 else 1).any(dim=0)
            lost += int((dead & signal).sum())
        return 1.0 + 2.0 * lost


def test_auto_prunes_all_noise_groups_and_no_signal_group():
    net, signals = signal_noise_lenet300()
    evaluate = FakeValidation(signals)
    thresholds, record = select_thresholds(net, {"rule": "auto"}, evaluate)
    masks = propagate_masks(net, thresholds)
    for mask, signal in zip(masks, signals):
        assert torch.equal(mask.in_mask, signal)
    assert record["rule"] == "auto" and record["groups_kept"] == [100, 60, 20]
    assert record["groups_total"] == [784, 300, 100]
    assert record["validation_error_baseline"] == 1.0 and record["validation_error"] == 1.0
    assert [t["layer"] for t in record["trials"]] == [0, 1, 2]  # largest weight count first
    assert evaluate.calls < 45  # thinned candidates + bisection, not one call per group
    json.dumps(record, allow_nan=False)


def test_auto_and_the_threshold_curve_log_one_progress_line_per_layer(caplog):
    net, signals = signal_noise_lenet300()
    evaluate = FakeValidation(signals)
    with caplog.at_level(logging.INFO, logger="bcrepro.compress.thresholds"):
        thresholds, _ = select_thresholds(net, {"rule": "auto"}, evaluate)
        threshold_curve(net, thresholds, evaluate, n_points=4)
    lines = [record.getMessage() for record in caplog.records]
    assert [line.split(" networks")[0].split(" (bound")[0] for line in lines[:3]] == [
        "auto threshold 1/3: layer 0 keeps 100 of 784 groups, validation error 1.00 %",
        "auto threshold 2/3: layer 1 keeps 60 of 300 groups, validation error 1.00 %",
        "auto threshold 3/3: layer 2 keeps 20 of 100 groups, validation error 1.00 %"]
    assert [line.split(" in ")[0] for line in lines[3:]] == [
        f"threshold curve: layer {i}, validation error at 5 thresholds" for i in range(3)]


def test_auto_spends_the_allowed_error_increase():
    net, signals = signal_noise_lenet300(seed=1)
    evaluate = FakeValidation(signals)
    thresholds, record = select_thresholds(net, {"rule": "auto", "max_error_increase": 2.5}, evaluate)
    # one signal group may go (2 points <= 2.5), and it goes in the first layer searched
    assert record["groups_kept"] == [99, 60, 20]
    assert record["validation_error"] == 3.0


def test_valley_rule_on_a_signal_noise_net():
    net, signals = signal_noise_lenet300()
    thresholds, record = select_thresholds(net, {"rule": "valley"})
    for mask, signal in zip(propagate_masks(net, thresholds), signals):
        assert torch.equal(mask.in_mask, signal)
    assert record["rule"] == "valley"


def test_fixed_rule_and_unknown_rule():
    net, _ = signal_noise_lenet300()
    thresholds, record = select_thresholds(net, {"rule": "fixed", "values": [-2.8, -3.0, None]})
    assert thresholds == [-2.8, -3.0, None]
    assert record["thresholds"] == [-2.8, -3.0, None] and record["groups_kept"][2] == 100
    with pytest.raises(ValueError, match="unknown threshold rule"):
        select_thresholds(net, {"rule": "otsu"})
    with pytest.raises(ValueError, match="needs an evaluate callable"):
        select_thresholds(net, None)


def test_threshold_curve_shows_error_against_groups_kept():
    net, signals = signal_noise_lenet300()
    thresholds = [0.0, 0.0, 0.0]
    curve = threshold_curve(net, thresholds, FakeValidation(signals), n_points=6)
    json.dumps(curve, allow_nan=False)
    assert [c["layer"] for c in curve] == [0, 1, 2]
    for c, signal in zip(curve, signals):
        assert c["chosen"] == 0.0 and 0.0 in c["thresholds"] and c["thresholds"][-1] is None
        assert c["groups_kept"] == sorted(c["groups_kept"]) and c["groups_kept"][-1] == len(signal)
        at_chosen = c["error_pct"][c["thresholds"].index(0.0)]
        assert at_chosen == 1.0 and c["error_pct"][0] > 1.0  # the most pruning point loses signal groups


# ---- compress -----------------------------------------------------------------------------------------------------
class Disagreement:
    """Percent of a fixed batch on which a net's argmax differs from the reference labels."""

    def __init__(self, x, labels):
        self.x, self.labels = x, labels

    def __call__(self, net):
        with torch.no_grad():
            return 100.0 * float((net(self.x).argmax(1) != self.labels).float().mean())


def lenet5_for_compress():
    torch.manual_seed(3)
    net = models.build("lenet5", GNJ)
    perturb(net, 3)
    conv1, conv2, fc1, fc2 = net.prunable_layers()
    set_gnj_keep(conv1, keep_all_but(20, range(15)))  # 5 filters
    set_gnj_keep(conv2, keep_all_but(50, range(10, 50)))  # 10 filters
    fc1_keep = torch.zeros(800, dtype=torch.bool)
    fc1_keep[torch.arange(0, 160, 2)] = True  # 80 inputs, 76 of them from kept filters 0..9 ... see below
    fc1_keep[[0, 2, 4, 6]] = False  # -> 76 inputs, all within filters 0..9
    set_gnj_keep(fc1, fc1_keep)
    set_gnj_keep(fc2, keep_all_but(500, range(16, 500)))  # 16 inputs
    with torch.no_grad():
        for layer in net.prunable_layers():
            layer.weight_logvar.fill_(math.log(1e-4))  # known variances for the bit check
    return net.eval()


def test_compress_lenet5_reports_the_table_quantities(tmp_path):
    net = lenet5_for_compress()
    x = torch.randn(32, 1, 28, 28)
    with torch.no_grad():
        labels = net(x).argmax(1)
    evaluate = Disagreement(x, labels)
    result = compress(net, {"rule": "fixed", "values": [0.0] * 4}, evaluate, evaluate, curve_points=4)
    m = result.metrics
    json.dumps(m, allow_nan=False)
    assert m["architecture"] == [5, 10, 76, 16]
    kept = [5 * 1 * 25, 10 * 5 * 25, 76 * 16, 16 * 10]
    assert m["kept_weights"] == kept and m["nonzero_weights"] == sum(kept) == 2751
    assert m["total_weights"] == 430_500
    assert m["compression_pruning"] == pytest.approx(430_500 / 2751)
    assert m["error_pct"] == 0.0

    # bits from the kept weights' variances, computed here from the layers directly
    largest = max(float(w.weight.abs().max()) for w in deterministic_net(net, result.masks).prunable_layers())
    e = math.ceil(math.log2(max(math.log2(largest), 0) + 1) + 1)
    expected_bits = []
    for layer, mask in zip(net.prunable_layers(), result.masks):
        var = layer.marginal_variance().detach()[weight_mask_like(mask, layer.weight_mu)]
        ts = [t_count(float(v)) for v in var]
        expected_bits.append(1 + e + math.ceil(sum(ts) / len(ts)))
    assert m["bits"] == expected_bits
    assert m["exponent_bits"] == e
    assert m["compression_precision"] == pytest.approx(32 * 430_500 / sum(k * b for k, b in zip(kept, m["bits"])))
    assert m["error_quantized_pct"] is not None and m["compression_max"] > m["compression_pruning"]
    assert m["storage_formats"]["pruning"] == ["dense"] * 4
    assert m["thresholds"]["rule"] == "fixed" and m["thresholds"]["groups_kept"] == [5, 10, 76, 16]
    assert [c["layer"] for c in m["threshold_curve"]] == [0, 1, 2, 3]

    # the quantized net holds rounded, masked weights on the 2^-s grid
    s = m["significand_bits"][2]
    w = result.quantized_net.prunable_layers()[2].weight
    torch.testing.assert_close(w * 2 ** s, torch.round(w * 2 ** s), rtol=0, atol=1e-4)
    assert not w[:, ~result.masks[2].in_mask].any()

    size = save_compressed(tmp_path / "compressed.npz", net, result.masks, result.precision.rounded_weights,
                             m["bits"])
    assert size == (tmp_path / "compressed.npz").stat().st_size > 0
    saved = np.load(tmp_path / "compressed.npz")
    assert saved["layer1_weight"].shape == (10, 5, 5, 5)
    assert saved["layer2_weight"].shape == (16, 76) and saved["layer3_weight"].shape == (10, 16)
    np.testing.assert_array_equal(saved["layer2_in_index"], result.masks[2].in_mask.nonzero().flatten().numpy())
    assert int(saved["layer2_bits"]) == m["bits"][2]
    slim_fc1 = w[result.masks[2].out_mask][:, result.masks[2].in_mask]
    np.testing.assert_array_equal(saved["layer2_weight"], slim_fc1.numpy())


def test_save_posterior_writes_the_same_bytes_for_the_same_posterior(tmp_path):
    import time

    from bcrepro.compress.layer_view import layer_weight

    net = models.build("lenet300", GNJ)
    perturb(net)
    for layer in net.group_layers():
        set_gnj_keep(layer, keep_all_but(layer.n_groups, [1, 2]))
    thresholds = [0.0, None, 0.0]
    masks = propagate_masks(net, thresholds)
    save_posterior(tmp_path / "first.npz", net, thresholds, masks)
    time.sleep(2.1)  # zip entries store the time to 2 s
    save_posterior(tmp_path / "second.npz", net, thresholds, masks)
    assert (tmp_path / "first.npz").read_bytes() == (tmp_path / "second.npz").read_bytes()
    posterior = np.load(tmp_path / "first.npz")
    assert math.isnan(posterior["threshold_1"]) and float(posterior["threshold_0"]) == 0.0
    np.testing.assert_array_equal(posterior["in_mask_0"], masks[0].in_mask.numpy())
    np.testing.assert_array_equal(posterior["weight_1"], layer_weight(net.prunable_layers()[1]).numpy())
    assert sorted(posterior.files) == sorted(
        [f"{name}_{i}" for i in range(3) for name in ("statistic", "threshold", "in_mask", "out_mask")]
        + ["weight_0", "weight_1", "statistic_label"])


def test_compress_dense_net_has_no_precision_reduction():
    torch.manual_seed(4)
    net = models.build("lenet300").eval()
    x = torch.randn(16, 1, 28, 28)
    with torch.no_grad():
        evaluate = Disagreement(x, net(x).argmax(1))
    m = compress(net, {"rule": "auto"}, evaluate, evaluate).metrics
    json.dumps(m, allow_nan=False)
    assert m["compression_pruning"] == 1.0
    assert m["bits"] is None and m["compression_precision"] is None and m["error_quantized_pct"] is None
    assert m["architecture"] == [784, 300, 100] and m["threshold_curve"] is None
    assert m["compression_max"] == pytest.approx(1.0)  # float weights: nothing to share


def test_a_network_pruned_to_nothing_reports_empty_layers_and_no_finite_rate():
    # SWS's failure mode: every weight snapped to the zero component. Shared (codebook) layers with no weight kept.
    from bcrepro.methods import get_method
    dc = get_method("dc")
    torch.manual_seed(5)
    net = models.build("lenet300", dc.layer_factory("lenet300", dc.params_for("lenet300", {}))).eval()
    for layer in net.prunable_layers():
        layer.share_weights()  # 64-entry codebooks over all weights
        layer.mask.zero_()
    x = torch.randn(16, 1, 28, 28)
    with torch.no_grad():
        evaluate = Disagreement(x, net(x).argmax(1))
    m = compress(net, None, evaluate, evaluate).metrics
    json.dumps(m, allow_nan=False)
    assert m["empty_layers"] == [0, 1, 2] and m["nonzero_weights"] == 0
    assert m["bits"] == [6, 6, 6]
    # nothing stored, not even the codebooks nothing indexes: every rate is infinite, i.e. null in JSON
    assert m["compression_pruning"] is None and m["compression_precision"] is None and m["compression_max"] is None
