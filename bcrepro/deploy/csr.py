"""A pruned network with its weights in ``torch.sparse`` CSR form: the fair speed test of unstructured pruning.

Unstructured methods (DC, DNS, SWS, Sparse VD) zero single weights; a dense kernel multiplies those zeros all the
same, and slimming removes only rows and columns that are entirely zero. ``csr_net`` stores every ``nn.Linear`` and
``nn.Conv2d`` weight as a CSR matrix and multiplies with ``torch.addmm`` (MKL on CPU, cuSPARSE on CUDA); a conv
becomes that product over its unfolded input (im2col). Outputs equal the dense module's up to float rounding. Used by
``bcrepro speedup`` as the ``csr`` variant of ``speed.json``.
"""
from __future__ import annotations

import copy
import warnings

import torch
import torch.nn.functional as F
from torch import nn


def _to_csr(weight: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta": known, and not the user's concern here
        warnings.simplefilter("ignore", UserWarning)
        return weight.detach().reshape(weight.shape[0], -1).to_sparse_csr()


class _CSRLayer(nn.Module):
    """A layer whose weight is a CSR matrix ``[out, fan-in]`` and whose bias a dense vector (plain tensors, moved by
    ``.to()``; nothing here trains)."""

    def __init__(self, layer: nn.Module, n_out: int):
        super().__init__()
        self.n_out = n_out
        self.weight = _to_csr(layer.weight)
        self.bias = (layer.bias.detach() if layer.bias is not None
                     else torch.zeros(n_out, device=layer.weight.device)).clone()

    @property
    def nnz(self) -> int:
        return self.weight.values().numel()

    def sparse_multiply_adds(self, output: torch.Tensor) -> int:
        """Multiply-adds for ``output``: one per stored weight, example and output position."""
        return self.nnz * (output.numel() // self.n_out) if self.n_out else 0

    def _apply(self, fn, recurse=True):
        self.weight, self.bias = fn(self.weight), fn(self.bias)
        return self


class CSRLinear(_CSRLayer):
    """``nn.Linear`` with a CSR weight: y = (W x^T + b)^T."""

    def __init__(self, linear: nn.Linear):
        super().__init__(linear, linear.out_features)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias[:, None], self.weight, x.t().contiguous()).t()

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, nnz={self.nnz}"


class CSRConv2d(_CSRLayer):
    """``nn.Conv2d`` (groups=1) with a CSR weight ``[out, in * kh * kw]`` applied to the unfolded input."""

    def __init__(self, conv: nn.Conv2d):
        if conv.groups != 1 or conv.padding_mode != "zeros":
            raise ValueError(f"CSRConv2d handles groups=1 with zero padding, got groups={conv.groups}, "
                             f"padding_mode={conv.padding_mode!r}")
        super().__init__(conv, conv.out_channels)
        self.out_channels = conv.out_channels
        self.kernel_size, self.stride = conv.kernel_size, conv.stride
        self.padding, self.dilation = conv.padding, conv.dilation

    def _output_size(self, size: int, axis: int) -> int:
        span = self.dilation[axis] * (self.kernel_size[axis] - 1) + 1
        return (size + 2 * self.padding[axis] - span) // self.stride[axis] + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        height, width = self._output_size(x.shape[2], 0), self._output_size(x.shape[3], 1)
        columns = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)  # [B, C*kh*kw, L]
        columns = columns.transpose(0, 1).reshape(columns.shape[1], -1)  # [C*kh*kw, B*L]
        out = torch.addmm(self.bias[:, None], self.weight, columns)  # [out, B*L]
        return out.view(self.out_channels, batch, height, width).transpose(0, 1)

    def extra_repr(self) -> str:
        return (f"{self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"nnz={self.nnz}")


def csr_net(module: nn.Module) -> nn.Module:
    """A copy of ``module`` (a pruned, deterministic network) with every ``nn.Linear``/``nn.Conv2d`` in CSR form."""
    copied = copy.deepcopy(module).eval()

    def convert(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                setattr(parent, name, CSRLinear(child))
            elif isinstance(child, nn.Conv2d):
                setattr(parent, name, CSRConv2d(child))
            else:
                convert(child)

    convert(copied)
    return copied.requires_grad_(False)
