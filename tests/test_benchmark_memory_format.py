"""``benchmarks/memory_format.py`` times each network in the layout it names, computing the same function in both."""
import importlib.util
from pathlib import Path

import pytest
import torch

from bcrepro import models
from bcrepro.deploy.benchmarking import slim_lenet5
from bcrepro.pooling import fast_inference

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "memory_format.py"


@pytest.fixture(scope="module")
def memory_format():
    spec = importlib.util.spec_from_file_location("memory_format", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("build", [models.lenet5, lambda: None], ids=["lenet5", "slim"])
def test_both_layouts_give_the_nchw_output_and_nhwc_weights_are_channels_last(memory_format, build):
    torch.manual_seed(0)
    net = (build() or slim_lenet5([3, 7, 9])).eval()
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
