"""A slimmed dense model computes the pruned deterministic net with fewer parameters (bcrepro.deploy.slim)."""
import json

import numpy as np
import pytest
import torch
from torch import nn

from bcrepro import models
from bcrepro.compress.layer_view import layer_weight
from bcrepro.compress.masks import LayerMask, deterministic_net, propagate_masks, removed_unit_constants
from bcrepro.deploy.slim import AddConstantMap, SelectInputs, load_slim, save_slim, slim_net, slim_spec
from bcrepro.layers import Conv2dGroupHS, Conv2dGroupNJ, LinearGroupHS, LinearGroupNJ

FACTORIES = {
    "gnj": models.LayerFactory(linear=lambda i, o, index: LinearGroupNJ(i, o),
                               conv=lambda i, o, k, padding, index: Conv2dGroupNJ(i, o, k, padding=padding)),
    "ghs": models.LayerFactory(linear=lambda i, o, index: LinearGroupHS(i, o),
                               conv=lambda i, o, k, padding, index: Conv2dGroupHS(i, o, k, padding=padding)),
}


@torch.no_grad()
def perturb(net, seed):
    g = torch.Generator().manual_seed(seed)
    for layer in net.group_layers():
        n = layer.n_groups
        if isinstance(layer, (LinearGroupNJ, Conv2dGroupNJ)):
            layer.z_mu.copy_(0.5 + torch.rand(n, generator=g))
        else:
            layer.alpha_mu.copy_(0.3 * torch.randn(n, generator=g))
        layer.bias_mu.copy_(0.1 * torch.randn(layer.bias_mu.shape, generator=g))


def bool_vector(n, kept):
    v = torch.zeros(n, dtype=torch.bool)
    v[list(kept)] = True
    return v


def hand_masks(arch):
    """Consistent masks written out by hand (what propagate_masks would give for some own keeps)."""
    if arch == "lenet300":
        pixels = bool_vector(784, [p for p in range(784) if (p // 28) % 3 and p % 5])  # scattered pixels
        hidden1 = bool_vector(300, range(0, 300, 4))
        hidden2 = bool_vector(100, [1, 2, 3, 50, 99])
        return [LayerMask(pixels, hidden1), LayerMask(hidden1, hidden2),
                LayerMask(hidden2, torch.ones(10, dtype=torch.bool))]
    filters1 = bool_vector(20, [0, 3, 7, 19])
    filters2 = bool_vector(50, [2, 5, 11, 30, 49])
    fc1_in = torch.zeros(800, dtype=torch.bool)
    for c in (2, 11, 49):
        fc1_in[c * 16:(c + 1) * 16] = True  # whole channel blocks
    fc1_in[5 * 16 + 7] = fc1_in[30 * 16 + 1] = fc1_in[30 * 16 + 15] = True  # and a few single inputs
    hidden = bool_vector(500, range(3, 500, 37))
    return [LayerMask(torch.ones(1, dtype=torch.bool), filters1), LayerMask(filters1, filters2),
            LayerMask(fc1_in, hidden), LayerMask(hidden, torch.ones(10, dtype=torch.bool))]


def random_masks(net, seed):
    """Masks from random per-layer thresholds on the (perturbed) statistics."""
    rng = np.random.default_rng(seed)
    thresholds = [float(np.quantile(layer.group_statistic().detach().numpy(), rng.uniform(0.2, 0.8)))
                  for layer in net.prunable_layers()]
    return propagate_masks(net, thresholds)


def kept_parameter_count(net, masks):
    """sum_l kept_out * kept_in * k^2 weights + kept_out biases, from the masks."""
    total = 0
    for layer, mask in zip(net.prunable_layers(), masks):
        kernel = int(np.prod(layer.kernel_size)) if hasattr(layer, "kernel_size") else 1
        total += int(mask.out_mask.sum()) * (int(mask.in_mask.sum()) * kernel + 1)
    return total


def build(arch, family, seed):
    torch.manual_seed(seed)
    net = models.build(arch, FACTORIES[family])
    perturb(net, seed)
    return net.eval()


@pytest.mark.parametrize("family", ["gnj", "ghs"])
@pytest.mark.parametrize("arch", ["lenet300", "lenet5"])
@pytest.mark.parametrize("kind", ["hand", "random"])
def test_slim_equals_pruned_deterministic_net(arch, family, kind):
    net = build(arch, family, seed=sum(map(ord, arch + family + kind)))
    masks = hand_masks(arch) if kind == "hand" else random_masks(net, seed=5)
    slim = slim_net(net, masks)
    x = torch.randn(8, *net.input_shape)
    with torch.no_grad():
        expected = deterministic_net(net, masks)(x)
        torch.testing.assert_close(slim(x), expected, rtol=0, atol=1e-5)
    assert all(type(m) in (nn.Linear, nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.Flatten, SelectInputs) for m in slim)
    parameters = sum(p.numel() for p in slim.parameters())
    assert parameters == kept_parameter_count(net, masks)


def test_slim_of_the_deterministic_copy_equals_slim_of_the_bayesian_net():
    net = build("lenet5", "gnj", seed=1)
    masks = hand_masks("lenet5")
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(slim_net(deterministic_net(net, masks), masks)(x), slim_net(net, masks)(x),
                                   rtol=0, atol=1e-6)


def test_select_inputs_only_where_kept_inputs_are_not_whole_blocks():
    net = build("lenet5", "gnj", seed=2)
    masks = hand_masks("lenet5")
    slim = slim_net(net, masks)
    selects = [m for m in slim if isinstance(m, SelectInputs)]
    assert len(selects) == 1
    # kept filters 2, 5, 11, 30, 49 -> 80 flattened inputs; fc1 reads blocks 2, 11, 49 whole and 3 single inputs
    expected = list(range(0, 16)) + [16 + 7] + list(range(32, 48)) + [48 + 1, 48 + 15] + list(range(64, 80))
    assert selects[0].indices.tolist() == expected

    whole = propagate_masks(net, None)
    assert not any(isinstance(m, SelectInputs) for m in slim_net(net, whole))


def test_slim_shapes_follow_the_kept_units():
    net = build("lenet5", "ghs", seed=3)
    slim = slim_net(net, hand_masks("lenet5"))
    convs = [m for m in slim if isinstance(m, nn.Conv2d)]
    linears = [m for m in slim if isinstance(m, nn.Linear)]
    assert [tuple(c.weight.shape) for c in convs] == [(4, 1, 5, 5), (5, 4, 5, 5)]
    assert [tuple(fc.weight.shape) for fc in linears] == [(14, 51), (10, 14)]


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    net = build("lenet300", "ghs", seed=4)
    slim = slim_net(net, hand_masks("lenet300"))
    save_slim(slim, tmp_path / "slim.pt")
    loaded = load_slim(tmp_path / "slim.pt")
    json.dumps(slim_spec(slim))
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), slim(x))
    assert loaded(x.flatten(1)).shape == (5, 10)  # same input tensors as the original, flat ones too


def test_load_slim_rejects_other_files(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a slim net"):
        load_slim(tmp_path / "other.pt")


# ---- batch norm: removed channels pass on a constant ----------------------------------------------------------------
def bn_net(second_conv_padding=None):
    """conv-BN-ReLU-pool [-conv-BN-ReLU] - FC-BN-ReLU - FC with positive BN shifts (non-zero constants)."""
    features = [Conv2dGroupNJ(1, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2)]  # 10x10 -> 4x4
    side = 4
    if second_conv_padding is not None:
        features += [Conv2dGroupNJ(6, 5, 3, padding=second_conv_padding), nn.BatchNorm2d(5), nn.ReLU()]
        side = 4 + 2 * second_conv_padding - 2
    channels = 6 if second_conv_padding is None else 5
    classifier = [LinearGroupNJ(channels * side * side, 12), nn.BatchNorm1d(12), nn.ReLU(), LinearGroupNJ(12, 5)]
    net = models.Net("custom", nn.Sequential(*features), nn.Sequential(*classifier), (1, 10, 10), 5)
    with torch.no_grad():
        for bn in (m for m in net.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))):
            n = bn.num_features
            bn.running_mean.copy_(0.2 * torch.randn(n))
            bn.running_var.copy_(0.5 + torch.rand(n))
            bn.weight.copy_(1 + 0.3 * torch.randn(n))
            bn.bias.copy_(0.5 + 0.2 * torch.randn(n))
    perturb(net, 7)
    return net.eval()


def bn_masks(net, pruned):
    """Masks from GNJ keeps: z_mu = 0 for the pruned groups of each layer."""
    with torch.no_grad():
        for layer, gone in zip(net.prunable_layers(), pruned):
            layer.z_logvar.fill_(-9.0)
            layer.z_mu[list(gone)] = 0.0
    return propagate_masks(net, [0.0] * len(pruned))


@pytest.mark.parametrize("padding", [None, 0, 1, 2])
def test_slim_folds_batch_norm_constants_into_the_next_bias(padding):
    """Unpadded: into the next bias; padded: a constant map after the slim conv (the border sees less of it)."""
    torch.manual_seed(8)
    net = bn_net(padding)
    pruned = [[1, 4], [2, 5, 7], [3, 7]] if padding is None else [[1, 4], [0, 3], [2, 5, 7], [3, 7]]
    masks = bn_masks(net, pruned)
    constants = removed_unit_constants(net, masks)
    assert all(c.abs().sum() > 0 for c in constants[:-1])  # every boundary has a constant to fold
    x = torch.randn(6, 1, 10, 10)
    slim = slim_net(net, masks)
    with torch.no_grad():
        expected = net(x)  # the Bayesian net with every pruned scale at zero
        torch.testing.assert_close(deterministic_net(net, masks)(x), expected, rtol=0, atol=1e-5)
        torch.testing.assert_close(slim(x), expected, rtol=0, atol=1e-5)
    bns = [m for m in slim if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    assert [bn.num_features for bn in bns] == [int(m.out_mask.sum()) for m in masks[:-1]]


def test_constant_through_a_padded_conv_is_a_map_that_is_smaller_at_the_border(tmp_path):
    torch.manual_seed(9)
    net = bn_net(second_conv_padding=1)
    masks = bn_masks(net, [[1, 4], [], [], []])
    slim = slim_net(net, masks)
    (add_map,) = [m for m in slim if isinstance(m, AddConstantMap)]
    constant_map = add_map.constant_map  # [5, 4, 4]
    # by hand: the removed channels' constants times the kernel taps that land inside the 4x4 input
    constants = removed_unit_constants(net, masks)[0]
    weight = layer_weight(net.prunable_layers()[1])
    inside = torch.zeros(4 + 2, 4 + 2)
    inside[1:-1, 1:-1] = 1.0  # the zero-padded input: 1 where a real pixel sits
    for i, j in [(0, 0), (1, 1), (0, 2), (3, 3)]:
        window = inside[i:i + 3, j:j + 3]  # kernel taps that see real pixels for output (i, j)
        expected = torch.einsum("ocij,c,ij->o", weight, constants, window)
        torch.testing.assert_close(constant_map[:, i, j], expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(constant_map[:, 0, 0], constant_map[:, 1, 1])
    save_slim(slim, tmp_path / "slim.pt")
    x = torch.randn(3, 1, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(load_slim(tmp_path / "slim.pt")(x), slim(x), rtol=0, atol=0)
