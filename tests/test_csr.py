"""bcrepro.deploy.csr: a pruned network with CSR weights computes what the dense one computes, and counts only stored
weights as multiply-adds."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from bcrepro import models
from bcrepro.deploy import speed
from bcrepro.deploy.csr import CSRConv2d, CSRLinear, csr_net


def sparsify_(module: nn.Module, keep: float, seed: int = 0) -> int:
    """Zero all but a random ``keep`` fraction of every weight; returns the number of weights kept."""
    generator = torch.Generator().manual_seed(seed)
    kept = 0
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, (nn.Linear, nn.Conv2d)):
                mask = torch.rand(layer.weight.shape, generator=generator) < keep
                layer.weight.mul_(mask)
                kept += int(mask.sum())
    return kept


@pytest.mark.parametrize("arch", ["lenet300", "lenet5"])
def test_csr_net_equals_the_dense_pruned_net(arch):
    torch.manual_seed(0)
    net = models.build(arch).eval()
    sparsify_(net, keep=0.1)
    sparse = csr_net(net)
    assert not any(isinstance(m, (nn.Linear, nn.Conv2d)) for m in sparse.modules())
    x = torch.randn(5, *net.input_shape)
    with torch.no_grad():
        torch.testing.assert_close(sparse(x), net(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride, padding, dilation", [(1, 0, 1), (1, 1, 1), (2, 1, 1), (1, 2, 2), (2, 0, 1)])
def test_csr_conv_matches_conv2d_for_stride_padding_and_dilation(stride, padding, dilation):
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 4, 3, stride=stride, padding=padding, dilation=dilation)
    sparsify_(conv, keep=0.3)
    x = torch.randn(2, 3, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(CSRConv2d(conv)(x), conv(x), rtol=1e-5, atol=1e-5)


def test_csr_layers_count_one_multiply_add_per_stored_weight_and_position():
    torch.manual_seed(2)
    net = models.build("lenet5").eval()
    sparsify_(net, keep=0.05)
    layers = [m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    positions = [24 * 24, 8 * 8, 1, 1]  # conv1, conv2 output positions; the FC layers once per example
    expected = sum(int((layer.weight != 0).sum()) * n for layer, n in zip(layers, positions))
    assert speed.multiply_adds(csr_net(net), net.input_shape) == expected
    assert speed.multiply_adds(net, net.input_shape) == 2_293_000  # the dense kernels multiply the zeros too


def test_csr_refuses_grouped_convs():
    with pytest.raises(ValueError, match="groups=1"):
        CSRConv2d(nn.Conv2d(4, 4, 3, groups=2))


def test_csr_linear_without_bias_and_moved_with_to():
    linear = nn.Linear(6, 3, bias=False)
    layer = CSRLinear(linear).to(torch.float64)
    x = torch.randn(4, 6, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), linear.double()(x))
