"""The paper's architectures, each defined once and built from a layer factory.

A factory decides what a "linear" and a "conv" layer are (plain ``nn.Linear``/``nn.Conv2d`` for the dense reference,
``LinearGroupNJ``/``Conv2dGroupNJ`` for BC-GNJ, ...); the architecture only says where they go. ``index`` counts the
prunable layers in forward order, so a method can give one layer its own options (the authors clip the variance of
LeNet-300-100's first layer only).

Every model is a ``Net``: ``features`` (convolutional part, possibly empty), a flatten, then ``classifier``. Compression
and slimming walk ``net.prunable_layers()`` in that order.

Decisions written down here:
- LeNet-5-Caffe has a ReLU after each conv (conv -> ReLU -> max-pool). Caffe's prototxt has none, but Sparse VD's code
  and the PyTorch ports whose numbers the table compares against (L0, SBP, SWS ports) put one there; every method here
  uses the same definition, so the comparison stays fair either way.
- VGG-16 is Zagoruyko's cifar.torch network: 13 conv3x3 (padding 1) each followed by batch norm (eps 1e-3) and ReLU,
  2x2 max-pools, then Linear(512, 512) - BN - ReLU - Linear(512, 10): 14,977,728 weights. Dropout (0.3 after the
  first conv, 0.4 after every other conv but a block's last, 0.5 before each linear layer) belongs to the dense
  recipe only (``dropout=True``); Bayesian variants are built without it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .layers import GroupScaleLayer
from .layers.sparse_vd import SVDOLayer

LinearMaker = Callable[..., nn.Module]  # (in_features, out_features, index) -> module
ConvMaker = Callable[..., nn.Module]  # (in_channels, out_channels, kernel_size, padding, index) -> module


@dataclass
class LayerFactory:
    """What a linear and a conv layer are for one method."""

    linear: LinearMaker
    conv: ConvMaker


def _plain_linear(in_features, out_features, index):
    return nn.Linear(in_features, out_features)


def _plain_conv(in_channels, out_channels, kernel_size, padding, index):
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding)


PLAIN = LayerFactory(linear=_plain_linear, conv=_plain_conv)

PRUNABLE_TYPES = (nn.Linear, nn.Conv2d, GroupScaleLayer, SVDOLayer)


class Net(nn.Module):
    """features -> flatten -> classifier; ``input_shape`` is (C, H, W) of one example."""

    def __init__(self, arch: str, features: nn.Sequential, classifier: nn.Sequential, input_shape, num_classes: int):
        super().__init__()
        self.arch = arch
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.features = features
        self.classifier = classifier

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))

    def module_chain(self) -> list[nn.Module]:
        """Every module in forward order as one flat list, the flatten included (what compression and slimming walk)."""
        return [*self.features, nn.Flatten(), *self.classifier]

    def prunable_layers(self) -> list[nn.Module]:
        """Linear and conv layers (dense or Bayesian) in forward order."""
        return [m for m in self.modules() if isinstance(m, PRUNABLE_TYPES)]

    def group_layers(self) -> list[GroupScaleLayer]:
        return [m for m in self.modules() if isinstance(m, GroupScaleLayer)]

    def kl_divergence(self) -> torch.Tensor:
        """Sum of the KL terms of every Bayesian layer (0 for a dense net)."""
        terms = [m.kl_divergence() for m in self.modules() if m is not self and hasattr(m, "kl_divergence")]
        return torch.stack(terms).sum() if terms else torch.zeros(())


def lenet300(factory: LayerFactory = PLAIN, in_features: int = 784, num_classes: int = 10) -> Net:
    """LeNet-300-100: 784-300-100-10, ReLU; 266,200 weights."""
    classifier = nn.Sequential(
        factory.linear(in_features, 300, index=0), nn.ReLU(),
        factory.linear(300, 100, index=1), nn.ReLU(),
        factory.linear(100, num_classes, index=2),
    )
    return Net("lenet300", nn.Sequential(), classifier, (1, 28, 28), num_classes)


def lenet5(factory: LayerFactory = PLAIN, in_channels: int = 1, num_classes: int = 10) -> Net:
    """LeNet-5-Caffe: conv 20@5x5 - pool - conv 50@5x5 - pool - FC 800-500 - FC 500-10; 430,500 weights."""
    features = nn.Sequential(
        factory.conv(in_channels, 20, 5, padding=0, index=0), nn.ReLU(), nn.MaxPool2d(2),
        factory.conv(20, 50, 5, padding=0, index=1), nn.ReLU(), nn.MaxPool2d(2),
    )
    classifier = nn.Sequential(
        factory.linear(50 * 4 * 4, 500, index=2), nn.ReLU(),
        factory.linear(500, num_classes, index=3),
    )
    return Net("lenet5", features, classifier, (in_channels, 28, 28), num_classes)


VGG16_PLAN = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
_BN_EPS = 1e-3


def vgg16(factory: LayerFactory = PLAIN, in_channels: int = 3, num_classes: int = 10, dropout: bool = False) -> Net:
    """cifar.torch VGG-16 with batch norm for 32x32 inputs; 14,977,728 weights (13 conv + 512-512-10 head)."""
    layers: list[nn.Module] = []
    channels, index = in_channels, 0
    for position, item in enumerate(VGG16_PLAN):
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            continue
        layers += [factory.conv(channels, item, 3, padding=1, index=index), nn.BatchNorm2d(item, eps=_BN_EPS),
                   nn.ReLU()]
        block_continues = position + 1 < len(VGG16_PLAN) and VGG16_PLAN[position + 1] != "M"
        if dropout and block_continues:
            layers.append(nn.Dropout(0.3 if index == 0 else 0.4))
        channels, index = item, index + 1
    head: list[nn.Module] = [nn.Dropout(0.5)] if dropout else []
    head += [factory.linear(512, 512, index=index), nn.BatchNorm1d(512, eps=_BN_EPS), nn.ReLU()]
    head += [nn.Dropout(0.5)] if dropout else []
    head += [factory.linear(512, num_classes, index=index + 1)]
    return Net("vgg16", nn.Sequential(*layers), nn.Sequential(*head), (in_channels, 32, 32), num_classes)


ARCHITECTURES = {"lenet300": lenet300, "lenet5": lenet5, "vgg16": vgg16}


def build(arch: str, factory: LayerFactory = PLAIN, **kwargs) -> Net:
    """The architecture named ``arch`` (``lenet300``, ``lenet5``, ``vgg16``) built from ``factory``."""
    try:
        make = ARCHITECTURES[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {sorted(ARCHITECTURES)}") from None
    return make(factory, **kwargs)


def weight_count(net: Net) -> int:
    """Number of weights (no biases, no batch-norm parameters) in the prunable layers."""
    total = 0
    for layer in net.prunable_layers():
        weight = layer.weight_mu if isinstance(layer, GroupScaleLayer) else layer.weight
        total += weight.numel()
    return total
