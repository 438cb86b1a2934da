"""The training-step arithmetic that ``benchmarks/layer_overhead.py`` prints next to its measured ratios, against
multiply-adds counted by hand from the layer shapes."""
import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "layer_overhead.py"


@pytest.fixture(scope="module")
def layer_overhead():
    spec = importlib.util.spec_from_file_location("layer_overhead", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lenet300_step_arithmetic_by_hand(layer_overhead):
    products = [784 * 300, 300 * 100, 100 * 10]
    # dense: forward + weight gradient everywhere, input gradient except for the first layer
    dense = 2 * products[0] + 3 * products[1] + 3 * products[2]
    # BC: mean and variance of each product; z on the input units needs the first layer's input gradient too
    bayesian = 2 * 3 * sum(products)
    counts = layer_overhead.training_multiply_adds("lenet300")
    assert counts == {"dense": dense, "bayesian": bayesian}
    assert counts["bayesian"] / counts["dense"] == pytest.approx(2.835, abs=1e-3)


def test_lenet5_step_arithmetic_by_hand(layer_overhead):
    conv1 = 20 * 24 * 24 * (1 * 5 * 5)     # 20 filters over 24x24 outputs, 25 taps each
    conv2 = 50 * 8 * 8 * (20 * 5 * 5)      # after 2x2 pooling: 12x12 -> 8x8
    fc1, fc2 = 800 * 500, 500 * 10
    dense = 2 * conv1 + 3 * (conv2 + fc1 + fc2)
    # z scales conv1's outputs, so its input gradient is still not needed
    bayesian = 2 * (2 * conv1 + 3 * (conv2 + fc1 + fc2))
    assert layer_overhead.training_multiply_adds("lenet5") == {"dense": dense, "bayesian": bayesian}
