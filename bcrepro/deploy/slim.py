"""Turn a group-pruned network into a smaller dense ``nn.Module`` with the same outputs (paper §5 speed-up; docs/workflow.md).

``slim_net(net, masks)`` physically removes pruned filters and units: every prunable layer becomes a plain
``nn.Linear``/``nn.Conv2d`` holding only the kept rows and columns of the test-time weights, batch norms are sliced to
the kept channels, ReLU/pooling/dropout are copied. Its outputs equal
``bcrepro.compress.masks.deterministic_net(net, masks)``.

- Where the kept inputs of a linear layer are not whole channel blocks (LeNet-300-100's pruned input pixels, LeNet-5's
  fc1 inputs), a ``SelectInputs(indices)`` module picks them (``index_select`` on dim 1). The slim module takes the
  same input tensors as the original.
- A removed unit still hands the next layer a constant when a batch norm sits between them (see
  ``bcrepro.compress.masks``). The constant is folded into the next layer's bias when that layer is linear or an
  unpadded conv (exact). A padded conv (VGG) sees the constant through its zero padding: full inside, partly at the
  border. What it adds is then a fixed map over the output positions, the conv of the constant image;
  ``AddConstantMap`` adds it after the slim conv (exact; the slim net keeps the original's input size, as its linear
  head already requires).

``save_slim``/``load_slim`` store a state dict with a JSON-able architecture spec, so the model is rebuilt without the
original code paths (only torch and this file).
"""
from __future__ import annotations

import copy
import os
from typing import Sequence

import torch
from torch import nn

from ..compress.layer_view import is_conv, layer_bias, layer_weight, n_inputs, prunable_input_shapes
from ..compress.masks import LayerMask, expansion_factor, removed_unit_constants
from ..models import PRUNABLE_TYPES

SLIM_FORMAT = "bcrepro-slim-v1"


class SelectInputs(nn.Module):
    """Keep the given features along dim 1: ``x.index_select(1, indices)``."""

    def __init__(self, indices):
        super().__init__()
        self.register_buffer("indices", torch.as_tensor(indices, dtype=torch.long).flatten().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(1, self.indices)

    def extra_repr(self) -> str:
        return f"{self.indices.numel()} inputs"


class AddConstantMap(nn.Module):
    """Adds a fixed ``[C, H, W]`` map to its input: what the removed input channels of a padded conv contribute."""

    def __init__(self, constant_map: torch.Tensor):
        super().__init__()
        self.register_buffer("constant_map", constant_map)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.constant_map

    def extra_repr(self) -> str:
        return f"shape={list(self.constant_map.shape)}"


def _positions_in(current: torch.Tensor, wanted: torch.Tensor, where: str) -> torch.Tensor:
    """Where each of ``wanted`` (sorted original indices) sits in ``current`` (sorted original indices)."""
    found = torch.searchsorted(current, wanted)
    if found.numel() and (found.max() >= current.numel() or not torch.equal(current[found], wanted)):
        raise ValueError(f"{where} reads inputs that an earlier layer removed; masks must be consistent, e.g. from "
                         f"bcrepro.compress.masks.propagate_masks")
    return found


def _constant_fold(layer, next_layer, weight: torch.Tensor, constants: torch.Tensor, input_shape) -> torch.Tensor:
    """What the removed outputs of ``layer`` (their ``constants``) add to the pre-activations of ``next_layer``.

    Linear next layer: ``W[:, p] * constant`` summed over the inputs a removed unit feeds, a bias change ``[out]``.
    Unpadded conv: the constant times the kernel's sum over its taps, also a bias change ``[out]``. Padded conv: the
    conv of the constant image of ``input_shape`` (``[C, H, W]``) through the zero padding, a map ``[out, H', W']``.
    """
    per_input = constants.repeat_interleave(expansion_factor(layer, next_layer)).to(weight)  # [in of next]
    if not is_conv(next_layer):
        return weight @ per_input
    if all(p == 0 for p in next_layer.padding):
        return weight.sum(dim=(2, 3)) @ per_input
    image = per_input.view(1, -1, 1, 1).expand(1, per_input.numel(), *input_shape[1:])
    return torch.nn.functional.conv2d(image, weight, None, next_layer.stride, next_layer.padding,
                                      next_layer.dilation)[0]


def _slim_batch_norm(bn: nn.Module, kept: torch.Tensor | None) -> nn.Module:
    """A batch norm over the kept channels only."""
    if kept is None:
        return copy.deepcopy(bn)
    kept = kept.to(bn.running_mean.device if bn.running_mean is not None else "cpu")
    new = type(bn)(kept.numel(), eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                   track_running_stats=bn.track_running_stats)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            source = getattr(bn, name)
            if source is not None:
                getattr(new, name).copy_(source.index_select(0, kept))
        if bn.num_batches_tracked is not None:
            new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new.to(bn.weight.device if bn.weight is not None else "cpu")


SUPPORTED_PLAIN = (nn.ReLU, nn.MaxPool2d, nn.Dropout, nn.Identity, nn.Flatten)


@torch.no_grad()
def slim_net(net, masks: Sequence[LayerMask]) -> nn.Sequential:
    """A dense ``nn.Sequential`` with only the kept units whose outputs equal ``deterministic_net(net, masks)``.

    ``net``: the Bayesian net or its deterministic copy; ``masks``: one ``LayerMask`` per prunable layer.
    """
    chain = net.module_chain()
    layers = net.prunable_layers()
    if len(masks) != len(layers):
        raise ValueError(f"need one mask per prunable layer ({len(layers)}), got {len(masks)}")
    constants = removed_unit_constants(net, masks)
    input_shapes = prunable_input_shapes(net) if any(c.any() for c in constants) else None
    modules: list[nn.Module] = []
    current = None  # original indices of the features along dim 1 of the running activation; None = all of them
    index = 0
    for position, module in enumerate(chain):
        if isinstance(module, PRUNABLE_TYPES):
            layer, mask = module, masks[index]
            weight, bias = layer_weight(layer), layer_bias(layer).clone()
            in_index = mask.in_mask.nonzero().flatten().to(weight.device)
            out_index = mask.out_mask.nonzero().flatten().to(weight.device)
            if current is None:
                current = torch.arange(n_inputs(layer), device=weight.device)
            select = _positions_in(current, in_index, f"prunable layer {index}")
            if not torch.equal(select, torch.arange(current.numel(), device=select.device)):
                modules.append(SelectInputs(select))
            kept_rows = weight.index_select(0, out_index)
            constant_map = None
            if index > 0 and constants[index - 1].any():
                carried = _constant_fold(layers[index - 1], layer, weight, constants[index - 1], input_shapes[index])
                if carried.dim() == 1:
                    bias += carried
                else:
                    constant_map = carried.index_select(0, out_index)
            slim = (nn.Conv2d(in_index.numel(), out_index.numel(), layer.kernel_size, stride=layer.stride,
                              padding=layer.padding, dilation=layer.dilation)
                    if is_conv(layer) else nn.Linear(in_index.numel(), out_index.numel()))
            slim = slim.to(device=weight.device, dtype=weight.dtype)
            slim.weight.copy_(kept_rows.index_select(1, in_index))
            slim.bias.copy_(bias.index_select(0, out_index))
            modules.append(slim)
            if constant_map is not None:
                modules.append(AddConstantMap(constant_map))
            current, index = out_index, index + 1
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            modules.append(_slim_batch_norm(module, current))
        elif isinstance(module, nn.Flatten):
            if current is not None and index < len(layers):
                k = expansion_factor(layers[index - 1], layers[index])
                current = (current[:, None] * k + torch.arange(k, device=current.device)).flatten()
            modules.append(nn.Flatten())
        elif isinstance(module, SUPPORTED_PLAIN):
            modules.append(copy.deepcopy(module))
        else:
            supported = [t.__name__ for t in SUPPORTED_PLAIN]
            raise ValueError(f"slim_net does not know how to slim {type(module).__name__} (module {position} of the "
                             f"net); supported: linear/conv layers, batch norm, {supported}")
    return nn.Sequential(*modules).eval().requires_grad_(False)


# ---- save and load --------------------------------------------------------------------------------------------------
def _pair_list(value) -> list[int]:
    return list(value) if isinstance(value, (tuple, list)) else [value, value]


def module_spec(module: nn.Module) -> dict:
    """A JSON-able description of one module of a slim net (shapes and options, no tensors)."""
    if isinstance(module, nn.Linear):
        return {"type": "Linear", "in_features": module.in_features, "out_features": module.out_features}
    if isinstance(module, nn.Conv2d):
        return {"type": "Conv2d", "in_channels": module.in_channels, "out_channels": module.out_channels,
                "kernel_size": list(module.kernel_size), "stride": list(module.stride),
                "padding": list(module.padding), "dilation": list(module.dilation)}
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return {"type": type(module).__name__, "num_features": module.num_features, "eps": module.eps,
                "momentum": module.momentum, "affine": module.affine,
                "track_running_stats": module.track_running_stats}
    if isinstance(module, nn.MaxPool2d):
        return {"type": "MaxPool2d", "kernel_size": _pair_list(module.kernel_size), "stride": _pair_list(module.stride),
                "padding": _pair_list(module.padding), "dilation": _pair_list(module.dilation),
                "ceil_mode": module.ceil_mode}
    if isinstance(module, SelectInputs):
        return {"type": "SelectInputs", "size": module.indices.numel()}
    if isinstance(module, AddConstantMap):
        return {"type": "AddConstantMap", "shape": list(module.constant_map.shape)}
    if isinstance(module, nn.Dropout):
        return {"type": "Dropout", "p": module.p}
    if isinstance(module, nn.Flatten):
        return {"type": "Flatten", "start_dim": module.start_dim, "end_dim": module.end_dim}
    if isinstance(module, (nn.ReLU, nn.Identity)):
        return {"type": type(module).__name__}
    raise ValueError(f"no spec for module type {type(module).__name__}")


def module_from_spec(spec: dict) -> nn.Module:
    """The module a ``module_spec`` describes, with freshly initialised tensors."""
    options = {k: v for k, v in spec.items() if k != "type"}
    kind = spec["type"]
    if kind == "SelectInputs":
        return SelectInputs(torch.zeros(options["size"], dtype=torch.long))
    if kind == "AddConstantMap":
        return AddConstantMap(torch.zeros(options["shape"]))
    makers = {"Linear": nn.Linear, "Conv2d": nn.Conv2d, "BatchNorm1d": nn.BatchNorm1d, "BatchNorm2d": nn.BatchNorm2d,
              "MaxPool2d": nn.MaxPool2d, "Dropout": nn.Dropout, "Flatten": nn.Flatten, "ReLU": nn.ReLU,
              "Identity": nn.Identity}
    if kind not in makers:
        raise ValueError(f"unknown module type {kind!r} in a slim spec; expected one of {sorted(makers)}")
    return makers[kind](**options)


def slim_spec(module: nn.Sequential) -> list[dict]:
    return [module_spec(m) for m in module]


def save_slim(module: nn.Sequential, path: str | os.PathLike) -> None:
    """Save a slim net as ``{"format", "spec", "state_dict"}`` with ``torch.save``; ``load_slim`` rebuilds it."""
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    torch.save({"format": SLIM_FORMAT, "spec": slim_spec(module), "state_dict": state}, path)


def load_slim(path: str | os.PathLike, map_location="cpu") -> nn.Sequential:
    """Rebuild a slim net saved by ``save_slim`` (eval mode)."""
    saved = torch.load(path, map_location=map_location, weights_only=True)
    if saved.get("format") != SLIM_FORMAT:
        raise ValueError(f"{path} is not a slim net saved by bcrepro.deploy.slim.save_slim (format "
                         f"{saved.get('format')!r}, expected {SLIM_FORMAT!r})")
    module = nn.Sequential(*[module_from_spec(spec) for spec in saved["spec"]])
    module.load_state_dict(saved["state_dict"])
    return module.eval().requires_grad_(False)
