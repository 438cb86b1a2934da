"""VGG-16 with Bayesian group layers: the registry's settings build it, it trains on CIFAR-shaped data without NaN,
GHS prunes its batch-normed convs by the noise ratio, and the slimmed VGG computes the pruned one."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bcrepro import data, models
from bcrepro.compress.masks import deterministic_net, propagate_masks
from bcrepro.deploy.slim import AddConstantMap, slim_net
from bcrepro.layers import Conv2dGroupHS, Conv2dGroupNJ, LinearGroupHS
from bcrepro.methods import get_method
from bcrepro.train import TrainConfig, train


def build(method: str) -> models.Net:
    registered = get_method(method)
    return models.build("vgg16", registered.layer_factory("vgg16", registered.params_for("vgg16")))


@pytest.mark.parametrize("method", ["bc-gnj", "bc-ghs"])
def test_vgg_bc_trains_a_few_steps_on_cifar_shaped_data_without_nan(method, tmp_path):
    torch.manual_seed(0)
    splits = data.load_dataset("synthetic", synthetic_shape=(3, 32, 32), synthetic_train=48, synthetic_test=16)
    net = build(method)
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    params = get_method(method).params_for("vgg16")
    config = TrainConfig.from_params(dict(params, epochs=1, batch_size=16, kl_warmup_epochs=0), seed=0)
    history = train(net, splits, config, tmp_path, torch.device("cpu"))
    record = history[-1]
    assert math.isfinite(record["loss"]) and math.isfinite(record["kl"])
    changed = [name for name, p in net.named_parameters() if not torch.equal(p, before[name])]
    assert any(name.endswith("weight_mu") for name in changed) and any("_mu" in n and "weight" not in n
                                                                        for n in changed)
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_vgg_ghs_prunes_batch_normed_convs_by_the_noise_ratio_and_its_head_by_magnitude():
    net = build("bc-ghs")
    layers = net.prunable_layers()
    assert all(isinstance(layer, Conv2dGroupHS) and layer.statistic == "noise" for layer in layers[:13])
    assert all(isinstance(layer, LinearGroupHS) and layer.statistic == "magnitude" for layer in layers[13:])
    conv = layers[0]
    with torch.no_grad():
        _, var = conv.log_z_moments()
        torch.testing.assert_close(conv.group_statistic(), torch.log(torch.expm1(var)))
        # scaling every z of the channel (what batch norm undoes) leaves the noise statistic where it was
        before = conv.group_statistic().clone()
        conv.alpha_mu.add_(3.0)
        torch.testing.assert_close(conv.group_statistic(), before)
        head = layers[13]
        mean, _ = head.log_z_moments()
        torch.testing.assert_close(head.group_statistic(), -2.0 * mean)


def test_ghs_statistic_must_be_one_of_the_documented_choices():
    with pytest.raises(ValueError, match="statistic must be one of"):
        Conv2dGroupHS(3, 4, 3, statistic="variance")


@torch.no_grad()
def test_slimmed_vgg_equals_the_pruned_vgg_on_random_input():
    torch.manual_seed(3)
    net = build("bc-gnj").eval()
    generator = torch.Generator().manual_seed(4)
    for module in net.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):  # a trained net's statistics, with positive shifts
            n = module.num_features
            module.running_mean.copy_(0.2 * torch.randn(n, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
            module.weight.copy_(1 + 0.2 * torch.randn(n, generator=generator))
            module.bias.copy_(0.3 + 0.2 * torch.randn(n, generator=generator))
    for layer in net.prunable_layers():  # a quarter of every layer's groups pruned (z_mu = 0: log alpha huge)
        n = layer.n_groups
        layer.z_logvar.fill_(-9.0)
        layer.z_mu.copy_(0.5 + torch.rand(n, generator=generator))
        layer.z_mu[torch.randperm(n, generator=generator)[: n // 4]] = 0.0
    masks = propagate_masks(net, [0.0] * len(net.prunable_layers()))
    assert all(0 < int(m.out_mask.sum()) < m.out_mask.numel() for m in masks[:-1])
    slim = slim_net(net, masks)
    x = torch.randn(3, 3, 32, 32, generator=generator)
    expected = deterministic_net(net, masks)(x)
    torch.testing.assert_close(net(x), expected, rtol=0, atol=1e-4)  # z_mu = 0 is the pruned net
    torch.testing.assert_close(slim(x), expected, rtol=1e-4, atol=1e-4)
    assert sum(isinstance(m, AddConstantMap) for m in slim) == 12  # every padded conv after a pruned BN channel
    convs = [m for m in slim if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [int(m.out_mask.sum()) for m in masks[:13]]
    assert isinstance(net.prunable_layers()[0], Conv2dGroupNJ)
    slim_weights = sum(m.weight.numel() for m in slim if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert slim_weights == sum(int(m.out_mask.sum()) * int(m.in_mask.sum()) * (9 if i < 13 else 1)
                               for i, m in enumerate(masks))
