"""Reusing shared activations across the pruned networks the threshold search evaluates (bcrepro.compress.evaluation).

Every error is checked against ``train.error_rate`` computed from scratch on the same network: the reuse must never
change a value, only skip work.
"""
import copy

import pytest
import torch
from torch import nn

from bcrepro import models, pooling
from bcrepro.compress.evaluation import PrefixReusingErrorRate, same_module, shared_prefix
from bcrepro.compress.thresholds import select_thresholds, threshold_curve
from bcrepro.layers import Conv2dGroupHS, Conv2dGroupNJ, LinearGroupHS, LinearGroupNJ
from bcrepro.methods import get_method
from bcrepro.train import error_rate



def bc_net(arch, method):
    """``arch`` built with the method registry's layers and settings, as ``bcrepro train`` builds it."""
    registered = get_method(method)
    return models.build(arch, registered.layer_factory(arch, registered.params_for(arch)))


@torch.no_grad()
def spread_posterior(net, seed):
    """Group statistics spread out (so the threshold search has candidates) and weights that separate random labels."""
    g = torch.Generator().manual_seed(seed)
    for layer in net.group_layers():
        n = layer.n_groups
        if isinstance(layer, (LinearGroupHS, Conv2dGroupHS)):
            layer.alpha_mu.copy_(0.8 * torch.randn(n, generator=g))
            layer.alpha_logvar.copy_(-6 + 4 * torch.rand(n, generator=g))
        else:
            layer.z_mu.copy_(0.2 + torch.rand(n, generator=g))
            layer.z_logvar.copy_(-8 + 8 * torch.rand(n, generator=g))
        layer.weight_mu.mul_(3.0)
        layer.bias_mu.copy_(0.1 * torch.randn(layer.bias_mu.shape, generator=g))


def small_bn_net():
    """conv -> BN -> ReLU -> pool -> conv -> BN -> ReLU -> pool -> FC -> BN -> ReLU -> FC (VGG's pattern, small)."""
    features = nn.Sequential(Conv2dGroupNJ(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                             Conv2dGroupNJ(8, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU(),
                             nn.MaxPool2d(2, 2, ceil_mode=True))
    classifier = nn.Sequential(LinearGroupNJ(12 * 2 * 2, 16), nn.BatchNorm1d(16), nn.ReLU(), LinearGroupNJ(16, 10))
    net = models.Net("custom", features, classifier, (3, 8, 8), 10)
    with torch.no_grad():
        for bn in (features[1], features[5], classifier[1]):
            bn.running_mean.copy_(0.2 * torch.randn(bn.num_features))
            bn.running_var.copy_(0.5 + torch.rand(bn.num_features))
            bn.bias.copy_(0.3 * torch.randn(bn.num_features))
    return net.eval()


NETS = {
    # linear groups: pruning a layer's inputs changes the layer before
    "lenet300-ghs": lambda: bc_net("lenet300", "bc-ghs"),
    "lenet5-gnj": lambda: bc_net("lenet5", "bc-gnj"),
    "bn-net-gnj": small_bn_net,
}


def evaluated_chain(net):
    """The modules the evaluator runs on CPU: the chain after the pooling rewrite (a ReLU and its pool become one)."""
    return pooling.fast_inference(net).module_chain()


def data_for(net, n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *net.input_shape, generator=g), torch.randint(0, 10, (n,), generator=g)


class BothWays:
    """Calls the reusing evaluator and ``error_rate`` from scratch on every network; records both answers."""

    def __init__(self, x, y, **kwargs):
        self.reusing = PrefixReusingErrorRate(x, y, **kwargs)
        self.x, self.y, self.batch_size = x, y, kwargs.get("batch_size", 2048)
        self.pairs = []

    def __call__(self, net):
        reused = self.reusing(net)
        fresh = error_rate(net, self.x, self.y, batch_size=self.batch_size)
        self.pairs.append((reused, fresh))
        return fresh


@pytest.mark.parametrize("name", sorted(NETS))
def test_auto_search_and_curve_get_the_error_rate_of_every_network_while_skipping_shared_layers(name):
    torch.manual_seed(0)
    net = NETS[name]().eval()
    spread_posterior(net, seed=1)
    x, y = data_for(net, 300, seed=2)
    both = BothWays(x, y, batch_size=128)  # three batches, the last one partial
    thresholds, record = select_thresholds(net, {"rule": "auto", "max_candidates": 6, "max_error_increase": 3.0},
                                             both)
    threshold_curve(net, thresholds, both, n_points=4)
    assert len(both.pairs) > 12
    assert all(reused == fresh for reused, fresh in both.pairs), both.pairs
    assert len({fresh for _, fresh in both.pairs}) > 3  # the networks really differ in error
    assert any(t is not None for t in thresholds)  # something was pruned, so the networks differed in their layers
    assert both.reusing.modules_skipped > 0


def test_the_paired_search_gets_each_networks_mistakes_image_by_image_while_skipping_shared_layers():
    torch.manual_seed(0)
    net = NETS["lenet5-gnj"]().eval()
    spread_posterior(net, seed=1)
    x, y = data_for(net, 300, seed=2)
    reusing = PrefixReusingErrorRate(x, y, batch_size=128)
    checked = []

    class Checked:
        def __call__(self, candidate):
            raise AssertionError("the paired acceptance scores every network by its mistakes")

        def mistakes(self, candidate):
            wrong = reusing.mistakes(candidate)
            fast = pooling.fast_inference(candidate.eval())
            with torch.no_grad():  # from scratch, in the evaluator's batches
                fresh = torch.cat([fast(x[i:i + 128]).argmax(1) != y[i:i + 128] for i in range(0, len(y), 128)])
            assert wrong.dtype == torch.bool and torch.equal(wrong, fresh)
            assert 100.0 * int(wrong.sum()) / len(y) == error_rate(candidate, x, y, batch_size=128)
            checked.append(int(wrong.sum()))
            return wrong

    thresholds, record = select_thresholds(net, {"rule": "auto", "max_candidates": 6, "max_error_increase": 3.0,
                                                 "acceptance": "paired"}, Checked())
    assert len(checked) > 12 and len(set(checked)) > 3  # the networks really differ in their mistakes
    assert any(t is not None for t in thresholds) and reusing.modules_skipped > 0
    assert record["validation_images"] == 300 and record["allowed_extra_errors"] == pytest.approx(9.0)


def last_layer_changed(net, scale):
    other = copy.deepcopy(net)
    with torch.no_grad():
        other.classifier[-1].weight.mul_(scale)
    return other


def test_networks_differing_in_their_last_layer_start_after_the_shared_modules():
    torch.manual_seed(0)
    net = models.lenet5().eval()
    x, y = data_for(net, 200, seed=3)
    evaluate = PrefixReusingErrorRate(x, y, batch_size=64)
    last_position = len(evaluated_chain(net)) - 1
    b, c, d = last_layer_changed(net, -1.0), last_layer_changed(net, 0.5), last_layer_changed(net, 2.0)
    first_changed = copy.deepcopy(d)
    with torch.no_grad():
        first_changed.features[0].bias.add_(0.5)
    starts = []
    for candidate in (net, b, c, d, first_changed, d):
        assert evaluate(candidate) == error_rate(candidate, x, y, batch_size=64)
        starts.append(evaluate.last_start)
    # net: nothing kept yet; b: differs from net at the last layer, computed whole and keeps its input there;
    # c, d: start there; first_changed: differs in the first conv, runs whole and keeps nothing new (it differs from
    # d at the input already); d again: b's kept input is still valid for it
    assert starts == [0, 0, last_position, last_position, 0, last_position]


def test_changed_batch_norm_statistics_are_a_difference():
    torch.manual_seed(0)
    net = small_bn_net()
    x, y = data_for(net, 100, seed=4)
    evaluate = PrefixReusingErrorRate(x, y)
    shifted = [copy.deepcopy(net) for _ in range(3)]
    for i, other in enumerate(shifted):
        with torch.no_grad():
            other.features[5].running_mean.add_(0.5 * (i + 1))  # the second BN's statistics only
    for candidate in (net, *shifted):
        assert evaluate(candidate) == error_rate(candidate, x, y)
    second_bn = [i for i, m in enumerate(evaluated_chain(net)) if isinstance(m, nn.BatchNorm2d)][1]
    assert evaluate.last_start == second_bn  # the conv before it is shared


def test_nothing_is_kept_beyond_the_memory_bound_and_in_place_modules_run_whole():
    torch.manual_seed(0)
    net = models.lenet5().eval()
    x, y = data_for(net, 100, seed=5)
    tight = PrefixReusingErrorRate(x, y, max_cache_bytes=1)
    for candidate in (net, last_layer_changed(net, -1.0), last_layer_changed(net, 0.5)):
        assert tight(candidate) == error_rate(candidate, x, y)
        assert tight.last_start == 0
    in_place = copy.deepcopy(net)
    in_place.classifier[1] = nn.ReLU(inplace=True)
    evaluate = PrefixReusingErrorRate(x, y)
    for candidate in (in_place, last_layer_changed(in_place, -1.0), last_layer_changed(in_place, 0.5)):
        assert evaluate(candidate) == error_rate(candidate, x, y)
        assert evaluate.last_start == 0


def test_same_module_compares_settings_parameters_and_buffers():
    conv = nn.Conv2d(2, 3, 3)
    assert same_module(conv, copy.deepcopy(conv))
    other = copy.deepcopy(conv)
    with torch.no_grad():
        other.weight[0, 0, 0, 0] += 1e-7
    assert not same_module(conv, other)
    assert not same_module(nn.MaxPool2d(2), nn.MaxPool2d(2, ceil_mode=True))
    assert same_module(nn.ReLU(), nn.ReLU()) and not same_module(nn.ReLU(), nn.Identity())
    bn = nn.BatchNorm1d(4).eval()
    moved = copy.deepcopy(bn)
    moved.running_var.fill_(2.0)
    assert not same_module(bn, moved)
    assert shared_prefix([nn.ReLU(), conv, bn], [nn.ReLU(), conv, moved]) == 2
    assert shared_prefix([nn.ReLU(), conv], [nn.ReLU(), conv, moved]) == 2


def test_a_module_without_a_chain_is_evaluated_whole():
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Flatten(), nn.Linear(12, 10)).eval()
    x, y = torch.randn(50, 3, 2, 2), torch.randint(0, 10, (50,))
    evaluate = PrefixReusingErrorRate(x, y)
    assert evaluate(plain) == error_rate(plain, x, y) and evaluate.last_start == 0
    with pytest.raises(ValueError, match="differ in length"):
        PrefixReusingErrorRate(x, y[:10])
