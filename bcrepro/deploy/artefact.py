"""A network rebuilt from ``compressed.bin`` alone: the plain architecture with the file's pruned, rounded weights and
its biases, which computes what ``bcrepro compress`` evaluated (its ``error_quantized_pct``, or ``error_pruned_pct``
for methods without precision reduction). Nothing of training is needed: neither ``model.pt`` nor the method.

    from bcrepro.deploy.artefact import load_network
    net = load_network("results/mnist/runs/lenet5/bc-ghs/seed0/compressed.bin", "lenet5")

Only networks whose parameters are all in their prunable layers (the LeNets) can be rebuilt: VGG-16's batch norm is
not in the file (use ``slim.pt``).
"""
from __future__ import annotations

import os

import torch

from .. import models
from ..compress import bitstream


def load_network(path: str | os.PathLike, arch: str) -> models.Net:
    """The plain ``arch`` network (eval mode) holding the weights and biases of the compressed file at ``path``."""
    with open(path, "rb") as handle:
        layers = bitstream.decode(handle.read())
    first, last = layers[0][0], layers[-1][0]
    size = {"lenet300": {"in_features": first.shape[1]}, "lenet5": {"in_channels": first.shape[1]}}
    if arch not in size:
        raise ValueError(f"{path}: only the LeNets rebuild from compressed.bin ({arch!r} has parameters outside its "
                         f"prunable layers, such as batch norm); load its slim.pt instead")
    net = models.build(arch, num_classes=last.shape[0], **size[arch])
    prunable = net.prunable_layers()
    if len(prunable) != len(layers):
        raise ValueError(f"{path} holds {len(layers)} layers, {arch} has {len(prunable)}")
    with torch.no_grad():
        for i, (module, (weight, bias)) in enumerate(zip(prunable, layers)):
            if tuple(module.weight.shape) != weight.shape:
                raise ValueError(f"{path}: layer {i} has shape {weight.shape}, {arch} expects "
                                 f"{tuple(module.weight.shape)}")
            if bias is None:
                raise ValueError(f"{path}: layer {i} has no biases (a file written before biases were stored); "
                                 f"rerun `bcrepro compress` on its run")
            module.weight.copy_(torch.from_numpy(weight))
            module.bias.copy_(torch.from_numpy(bias))
    return net.eval()
