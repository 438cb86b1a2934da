"""The pooling rewrite of bcrepro.pooling changes no output value and touches only the pools it reproduces."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bcrepro import models
from bcrepro.compress.masks import full_masks
from bcrepro.deploy import speed
from bcrepro.pooling import StridedMaxPool2x2, fast_inference, is_plain_2x2_pool, pooling_kind


def window_maxima_by_loops(x, ceil_mode=False):
    """2 x 2 stride-2 max pooling written out window by window (ceil mode: a last window over an odd row/column)."""
    n, c, h, w = x.shape
    rows, columns = ((h + 1) // 2, (w + 1) // 2) if ceil_mode else (h // 2, w // 2)
    out = torch.empty(n, c, rows, columns)
    for i in range(rows):
        for j in range(columns):
            out[:, :, i, j] = x[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2].reshape(n, c, -1).max(dim=2).values
    return out


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 2, 7, 9), (3, 1, 5, 4)])
def test_strided_pool_equals_window_maxima_including_odd_sizes(shape, ceil_mode):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    expected = window_maxima_by_loops(x, ceil_mode)
    assert torch.equal(StridedMaxPool2x2(ceil_mode=ceil_mode)(x), expected)
    assert torch.equal(StridedMaxPool2x2(relu=True, ceil_mode=ceil_mode)(x), expected.clamp_min(0))
    assert torch.equal(F.max_pool2d(x, 2, ceil_mode=ceil_mode), expected)  # the pool it replaces agrees too


def test_pool_then_relu_equals_relu_then_pool_and_keeps_nan():
    x = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(1))
    x[0, 0, 0, 0] = float("nan")
    expected = F.max_pool2d(F.relu(x), 2)
    got = StridedMaxPool2x2(relu=True)(x)
    assert torch.isnan(got[0, 0, 0, 0]) and torch.isnan(expected[0, 0, 0, 0])
    assert torch.equal(torch.nan_to_num(got, nan=-1.0), torch.nan_to_num(expected, nan=-1.0))


@pytest.mark.parametrize("pool, plain", [
    (nn.MaxPool2d(2), True), (nn.MaxPool2d(2, 2), True), (nn.MaxPool2d((2, 2), stride=(2, 2)), True),
    (nn.MaxPool2d(3, 2), False), (nn.MaxPool2d(2, 1), False), (nn.MaxPool2d(2, padding=1), False),
    (nn.MaxPool2d(2, ceil_mode=True), True), (nn.MaxPool2d(2, return_indices=True), False),
    (nn.AvgPool2d(2), False)])
def test_only_pools_the_strided_version_reproduces_are_rewritten(pool, plain):
    assert is_plain_2x2_pool(pool) is plain
    rewritten = fast_inference(nn.Sequential(nn.ReLU(), pool))
    assert (type(rewritten[0]) is StridedMaxPool2x2) is plain
    if plain:
        assert rewritten[0].ceil_mode == pool.ceil_mode
    assert len(rewritten) == (1 if plain else 2)


@pytest.mark.parametrize("arch, shape", [("lenet5", (5, 1, 28, 28)), ("vgg16", (2, 3, 32, 32))])
def test_rewritten_networks_give_the_same_outputs_and_leave_the_original_alone(arch, shape):
    torch.manual_seed(0)
    net = models.build(arch).eval()
    x = torch.randn(shape)
    rewritten = fast_inference(net)
    assert not any(isinstance(m, nn.MaxPool2d) for m in rewritten.modules())
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.modules()) == (2 if arch == "lenet5" else 5)
    relus_before = sum(isinstance(m, nn.ReLU) for m in net.modules())
    relus_after = sum(isinstance(m, nn.ReLU) for m in rewritten.modules())
    assert relus_before - relus_after == (2 if arch == "lenet5" else 5)  # each ReLU before a pool is fused into it
    with torch.no_grad():
        assert torch.equal(rewritten(x), net(x))
    assert pooling_kind(net) == "stock" and pooling_kind(rewritten) == "strided"
    assert pooling_kind(models.build("lenet300")) is None
    assert rewritten.features[0] is net.features[0]  # weights are shared, not copied


def test_csr_variant_is_rewritten_too_and_computes_the_same():
    net = models.build("lenet5").eval()
    modules = speed.variants(net, full_masks(net), single_weights=True)
    assert pooling_kind(modules["csr"]) == "strided"
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(modules["csr"](x), modules["original"](x), atol=1e-5)


def test_speed_variants_are_rewritten_unless_stock_pooling_is_asked_for():
    net = models.build("lenet5").eval()
    masks = full_masks(net)
    fast = speed.variants(net, masks)
    stock = speed.variants(net, masks, stock_pooling=True)
    assert set(fast) == set(stock) == {"original", "masked", "slim"}
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        for name in fast:
            assert pooling_kind(fast[name]) == "strided" and pooling_kind(stock[name]) == "stock"
            assert torch.allclose(fast[name](x), stock[name](x), atol=1e-6)
    records = speed.measure({"original": fast["original"]}, (1, 28, 28), [2], torch.device("cpu"), repeats=1,
                            warmup=0)
    assert records[0]["pooling"] == "strided"


def test_error_rate_through_the_rewrite_counts_what_the_stock_network_gets_wrong():
    from bcrepro.train import error_rate
    torch.manual_seed(3)
    net = models.lenet5()
    x, y = torch.randn(300, 1, 28, 28), torch.randint(0, 10, (300,))
    with torch.no_grad():
        wrong_by_hand = int((net.eval()(x).argmax(1) != y).sum())
    net.train()
    assert error_rate(net, x, y, batch_size=128) == pytest.approx(100.0 * wrong_by_hand / 300)
    assert net.training  # the caller's mode is restored


def test_the_rewrite_is_chosen_for_cpu_only():
    from bcrepro.pooling import pays_off
    assert pays_off(torch.device("cpu")) and pays_off("cpu")
    assert not pays_off(torch.device("cuda")) and not pays_off("meta")
