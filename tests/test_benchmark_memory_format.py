"""``benchmarks/memory_format.py`` times each network in the layout it names, computing the same function in both."""
import importlib
import sys
from pathlib import Path

import pytest
import torch

from bcrepro import models
from bcrepro.pooling import fast_inference

_BENCHMARKS = str(Path(__file__).resolve().parents[1] / "benchmarks")


@pytest.fixture(scope="module")
def memory_format():
    sys.path.insert(0, _BENCHMARKS)  # the benchmarks import each other as scripts do
    try:
        yield importlib.import_module("memory_format")
    finally:
        sys.path.remove(_BENCHMARKS)


@pytest.mark.parametrize("build", [models.lenet5, lambda: None], ids=["lenet5", "slim"])
def test_both_layouts_give_the_nchw_output_and_nhwc_weights_are_channels_last(memory_format, build):
    torch.manual_seed(0)
    net = (build() or memory_format.slim_lenet5([3, 7, 9])).eval()
    x = torch.randn(6, 1, 28, 28)
    with torch.no_grad():
        expected = net(x)
        nchw = memory_format.in_layout(fast_inference(net), torch.contiguous_format)(x)
        # conv2: with one input channel (conv1) the two layouts are the same strides
        conv = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][1]
        assert conv.weight.is_contiguous()
        nhwc = memory_format.in_layout(fast_inference(net), torch.channels_last)(x)
        assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    torch.testing.assert_close(nchw, expected, rtol=0, atol=0)
    torch.testing.assert_close(nhwc, expected, rtol=1e-5, atol=1e-5)
