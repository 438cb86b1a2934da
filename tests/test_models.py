"""One definition per architecture serves every method, with the papers' weight counts."""
import pytest
import torch

from bcrepro import models
from bcrepro.methods import get_method

# Weights only (no biases, no batch norm): docs/baselines.md §0 and docs/decisions.md.
PAPER_WEIGHTS = {"lenet300": 266_200, "lenet5": 430_500, "vgg16": 14_977_728}
GROUPS = {"lenet300": [784, 300, 100], "lenet5": [20, 50, 800, 500]}


@pytest.mark.parametrize("arch", ["lenet300", "lenet5"])
@pytest.mark.parametrize("method", ["dense", "bc-gnj", "bc-ghs"])
def test_every_method_builds_the_same_architecture(arch, method):
    m = get_method(method)
    net = models.build(arch, m.layer_factory(arch, m.params_for(arch)))
    assert models.weight_count(net) == PAPER_WEIGHTS[arch]
    assert net(torch.randn(3, *net.input_shape)).shape == (3, 10)
    if method != "dense":
        assert [layer.n_groups for layer in net.group_layers()] == GROUPS[arch]


def test_vgg16_is_cifar_torch_with_14977728_weights():
    net = models.build("vgg16")
    assert models.weight_count(net) == PAPER_WEIGHTS["vgg16"]
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.features) == 13
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with_dropout = models.build("vgg16", dropout=True)
    # 0.3 after the first conv, 0.4 after every other conv but the last of its block (8), and two in the head.
    assert sum(isinstance(m, torch.nn.Dropout) for m in with_dropout.modules()) == 8 + 2


def test_vgg16_bayesian_layers_have_the_papers_15_groups():
    factory = get_method("bc-gnj").layer_factory("vgg16", {"clip_var": None})
    net = models.build("vgg16", factory)
    assert models.weight_count(net) == PAPER_WEIGHTS["vgg16"]
    # "2x64-2x128-3x256-8x512": 13 conv filter groups and the two FC layers' input groups.
    assert [layer.n_groups for layer in net.group_layers()] == [64, 64, 128, 128, 256, 256, 256] + [512] * 8


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown architecture 'resnet'"):
        models.build("resnet")
