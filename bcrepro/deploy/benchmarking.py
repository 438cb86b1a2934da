"""What the timing scripts share (``benchmarks/``, ``scripts/gpu_check.py``): steps timed round-robin, networks cut to
a given architecture (speed does not depend on the weights' values), and the architectures they time, read from the
MNIST record or the paper.

    net, masks = cut_network("lenet5", recorded_architecture("results/mnist", "lenet5", "bc-ghs"))
    modules = speed.variants(net, masks)                   # original, masked, slim: time them with speed.measure
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from .. import models
from ..compress.layer_view import is_conv
from ..compress.masks import LayerMask, expansion_factor, propagate_masks
from ..errors import UsageError
from ..methods import get_method
from ..runs import METRICS_FILE


def interleaved_medians(steps: dict, repeats: int, warmup: int = 5) -> list[float]:
    """Median seconds of each step (a function of no argument), the steps run round-robin so that machine noise hits
    all alike, after ``warmup`` calls of each."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            tic = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - tic)
    return [statistics.median(t) for t in times.values()]


@torch.no_grad()
def interleaved_ms(steps: dict, repeats: int) -> dict[str, float]:
    """Median milliseconds of each step, timed round-robin (``interleaved_medians``) without autograd."""
    return {name: 1e3 * seconds for name, seconds in zip(steps, interleaved_medians(steps, repeats))}


def slim_lenet5(widths=(5, 10, 16)) -> nn.Sequential:
    """A plain LeNet-5 with ``widths`` = (conv1 filters, conv2 filters, fc1 outputs); fc1 reads all 16 * conv2
    inputs. The default is the paper's BC-GHS result (Table 2: 5-10-76-16, which keeps 76 of those 160 inputs)."""
    conv1, conv2, fc1 = widths
    return nn.Sequential(nn.Conv2d(1, conv1, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(conv1, conv2, 5), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(conv2 * 16, fc1), nn.ReLU(), nn.Linear(fc1, 10))


@torch.no_grad()
def random_cut(net: models.Net, kept: list[int], seed: int = 0) -> list[LayerMask]:
    """Masks keeping ``kept[i]`` random groups of prunable layer i (inputs of a linear layer, filters of a conv) of a
    BC-GNJ ``net``, whose pruned groups get z_mu = 0."""
    generator = torch.Generator().manual_seed(seed)
    layers = net.prunable_layers()
    for i, (layer, count) in enumerate(zip(layers, kept)):
        layer.z_logvar.fill_(-9.0)
        layer.z_mu.fill_(1.0)
        if i > 0 and is_conv(layers[i - 1]) and not is_conv(layer):
            # the first FC layer's inputs: choose among the positions of the channels the last conv keeps
            factor = expansion_factor(layers[i - 1], layer)
            alive = (layers[i - 1].z_mu != 0).repeat_interleave(factor).nonzero().flatten()
            keep = alive[torch.randperm(alive.numel(), generator=generator)[:count]]
        else:
            keep = torch.randperm(layer.n_groups, generator=generator)[:count]
        pruned = torch.ones(layer.n_groups, dtype=torch.bool)
        pruned[keep] = False
        layer.z_mu[pruned] = 0.0
    return propagate_masks(net, [0.0] * len(layers))


def cut_network(arch: str, kept: list[int], seed: int = 0) -> tuple[models.Net, list[LayerMask]]:
    """A freshly built BC-GNJ ``arch`` (eval mode, weights drawn with ``seed``) and the masks of ``random_cut``."""
    registered = get_method("bc-gnj")
    torch.manual_seed(seed)
    net = models.build(arch, registered.layer_factory(arch, registered.params_for(arch))).eval()
    if len(kept) != len(net.prunable_layers()):
        raise UsageError(f"{arch} has {len(net.prunable_layers())} prunable layers, got {len(kept)} counts of groups "
                         f"to keep ({'-'.join(map(str, kept))}); give one per layer")
    return net, random_cut(net, kept, seed)


def recorded_architecture(record, arch: str, method: str, seed: int = 0) -> list[int]:
    """Units kept per prunable layer (Table 2's convention) by the record's cell: ``architecture`` in
    ``<record>/runs/<arch>/<method>/seed<seed>/metrics.json``."""
    path = Path(record) / "runs" / arch / method / f"seed{seed}" / METRICS_FILE
    if not path.exists():
        raise UsageError(f"no {path}: the record has no {arch}/{method} cell at seed {seed}; give the architecture "
                         "to time explicitly")
    return json.loads(path.read_text())["architecture"]
