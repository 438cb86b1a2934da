"""Speed-up measurement: records in docs/workflow.md's format, ratios computed from them, thread count restored."""
import logging

import pytest
import torch
from torch import nn

from bcrepro import models
from bcrepro.deploy import csr, speed


def test_measure_times_every_variant_at_every_batch_in_the_speed_json_format():
    modules = {"original": nn.Linear(20, 10), "slim": nn.Linear(20, 3)}
    records = speed.measure(modules, (20,), [1, 8], torch.device("cpu"), repeats=4, warmup=1, threads=1)
    assert [(r["variant"], r["batch"]) for r in records] == [("original", 1), ("slim", 1), ("original", 8),
                                                             ("slim", 8)]
    for record in records:
        assert record["device"] == "cpu" and record["median_ms"] > 0 and record["iqr_ms"] >= 0
        assert record["repeats"] == 4 and record["threads"] == 1
        assert record["macs_per_example"] == (200 if record["variant"] == "original" else 60)


def test_speedups_are_ratios_of_medians_at_the_same_device_and_batch():
    records = [{"variant": "original", "device": "cpu", "batch": 1, "median_ms": 6.0},
               {"variant": "slim", "device": "cpu", "batch": 1, "median_ms": 2.0},
               {"variant": "original", "device": "cpu", "batch": 64, "median_ms": 10.0},
               {"variant": "masked", "device": "cpu", "batch": 64, "median_ms": 12.5}]
    gains = {(g["variant"], g["batch"]): g["speedup"] for g in speed.speedups(records)}
    assert gains == {("original", 1): 1.0, ("slim", 1): 3.0, ("original", 64): 1.0, ("masked", 64): 0.8}


def test_multiply_adds_of_lenet5_by_hand():
    """conv1 20 x 24x24 outputs x 25 taps, conv2 50 x 8x8 x (20 x 25), fc1 800 x 500, fc2 500 x 10."""
    from bcrepro import models
    net = models.build("lenet5")
    expected = 20 * 24 * 24 * 25 + 50 * 8 * 8 * 20 * 25 + 800 * 500 + 500 * 10
    assert speed.multiply_adds(net, net.input_shape) == expected == 2_293_000


def test_a_layer_that_keeps_no_unit_costs_no_multiply_add_and_gives_no_flops_ratio():
    empty = nn.Sequential(nn.Linear(6, 0), nn.Linear(0, 2))  # a fully pruned hidden layer: output = the last bias
    assert speed.multiply_adds(empty, (6,)) == 0
    records = [{"variant": "original", "device": "cpu", "batch": 1, "median_ms": 2.0, "macs_per_example": 30},
               {"variant": "slim", "device": "cpu", "batch": 1, "median_ms": 1.0, "macs_per_example": 0}]
    assert [g["flops_ratio"] for g in speed.speedups(records)] == [1.0, None]


def test_flops_ratio_is_the_ratio_of_multiply_adds_beside_the_measured_speedup():
    records = [{"variant": "original", "device": "cpu", "batch": 1, "median_ms": 6.0, "macs_per_example": 1000},
               {"variant": "slim", "device": "cpu", "batch": 1, "median_ms": 2.0, "macs_per_example": 40},
               {"variant": "masked", "device": "cpu", "batch": 1, "median_ms": 6.0}]
    gains = {g["variant"]: (g["speedup"], g["flops_ratio"]) for g in speed.speedups(records)}
    assert gains == {"original": (1.0, 1.0), "slim": (3.0, 25.0), "masked": (1.0, None)}


def test_quartiles_give_median_and_iqr_by_hand():
    assert speed._quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == (2.0, 3.0, 4.0)


def test_thread_count_is_restored_after_the_measurement():
    before = torch.get_num_threads()
    speed.measure({"original": nn.Linear(4, 2)}, (4,), [2], torch.device("cpu"), repeats=1, warmup=0, threads=2)
    assert torch.get_num_threads() == before


class LayoutProbe(nn.Module):
    """A conv that notes, on every timed call, whether its input and its weight were channels-last (the multiply-add
    count runs one example of zeros through it first, which it leaves out)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.seen: set[tuple[bool, bool]] = set()

    def forward(self, x):
        if len(x) > 1:
                self.seen.add((x.is_contiguous(memory_format=torch.channels_last),
                           self.conv.weight.is_contiguous(memory_format=torch.channels_last)))
        return self.conv(x)


@pytest.mark.parametrize("memory_format, channels_last", [("contiguous", False), ("channels_last", True)])
def test_memory_format_lays_out_inputs_and_conv_weights_of_every_variant(memory_format, channels_last):
    probes = {"original": LayoutProbe(), "slim": LayoutProbe()}
    records = speed.measure(probes, (3, 8, 8), [2, 5], torch.device("cpu"), repeats=2, warmup=1,
                            memory_format=memory_format)
    assert {r["memory_format"] for r in records} == {memory_format}
    for probe in probes.values():  # a 3-channel image is contiguous in neither layout, so this can tell them apart
        assert probe.seen == {(channels_last, channels_last)}


def test_channels_last_does_not_apply_to_flat_inputs_and_the_records_say_so(caplog):
    records = speed.measure({"original": nn.Linear(4, 2)}, (4,), [3], torch.device("cpu"), repeats=1, warmup=0,
                            memory_format="channels_last")
    assert [r["memory_format"] for r in records] == ["contiguous"]
    assert "image inputs only" in caplog.text


@pytest.mark.parametrize("modules, kwargs, message", [
    ({"fast": nn.Linear(4, 2)}, {}, "unknown speed variant"),
    ({"original": nn.Linear(4, 2)}, {"repeats": 0}, "repeats must be >= 1"),
    ({"original": nn.Linear(4, 2)}, {"memory_format": "nhwc"}, "unknown memory format 'nhwc'"),
    ({"original": nn.Linear(4, 2)}, {"compiler": "inductor"}, "unknown compiler 'inductor'"),
])
def test_bad_settings_are_clear_errors(modules, kwargs, message):
    with pytest.raises(ValueError, match=message):
        speed.measure(modules, (4,), [1], torch.device("cpu"), **kwargs)


def lenet5_and_a_slimmed_one():
    torch.manual_seed(0)
    slimmed = nn.Sequential(nn.Conv2d(1, 5, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(5, 10, 5), nn.ReLU(),
                            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(160, 16), nn.ReLU(), nn.Linear(16, 10))
    return {"original": models.lenet5().eval(), "slim": slimmed.eval()}


def test_torchscript_variants_compute_the_eager_outputs_and_the_records_say_how_they_ran():
    modules = lenet5_and_a_slimmed_one()
    compiled, kinds = speed.compiled_variants(modules, "torchscript", (1, 28, 28), torch.device("cpu"))
    assert kinds == {"original": "torchscript", "slim": "torchscript"}
    x = torch.randn(7, 1, 28, 28)  # neither the traced nor the checked batch size
    with torch.no_grad():
        for name, module in modules.items():
            assert isinstance(compiled[name], torch.jit.ScriptModule)
            torch.testing.assert_close(compiled[name](x), module(x), rtol=1e-4, atol=1e-5)
    records = speed.measure(modules, (1, 28, 28), [2], torch.device("cpu"), repeats=2, warmup=1,
                            compiler="torchscript")
    assert {r["compiled"] for r in records} == {"torchscript"}
    assert {r["variant"]: r["macs_per_example"] for r in records} == {  # counted on the eager modules
        "original": 20 * 576 * 25 + 50 * 64 * 500 + 800 * 500 + 500 * 10,
        "slim": 5 * 576 * 25 + 10 * 64 * 125 + 160 * 16 + 16 * 10}
    assert {r["pooling"] for r in records} == {"stock"}
    eager = speed.measure(modules, (1, 28, 28), [2], torch.device("cpu"), repeats=1, warmup=0)
    assert {r["compiled"] for r in eager} == {"none"}


def test_a_variant_that_cannot_be_traced_is_timed_eager_with_a_warning(caplog):
    torch.manual_seed(0)
    net = models.lenet300().eval()
    with torch.no_grad():
        for layer in net.prunable_layers():
            layer.weight.mul_((torch.rand_like(layer.weight) < 0.1).float())
    with caplog.at_level(logging.WARNING, logger="bcrepro.deploy.speed"):
        records = speed.measure({"original": net, "csr": csr.csr_net(net)}, (1, 28, 28), [1], torch.device("cpu"),
                                repeats=1, warmup=0, compiler="torchscript")
    assert {r["variant"]: r["compiled"] for r in records} == {"original": "torchscript", "csr": "none"}
    assert "variant csr cannot be compiled with torchscript" in caplog.text


class ScalesByBatchSize(nn.Module):
    """A forward whose trace bakes the batch size in as a constant: its graph is wrong for other batch sizes."""

    def forward(self, x):
        return x * float(x.shape[0])


class RowsOfTheTracedBatch(nn.Module):
    """A forward whose trace bakes the batch size into a reshape: other batch sizes get another output shape."""

    def forward(self, x):
        return x.reshape(int(x.shape[0]), -1)[:, :2].repeat(1, int(x.shape[0]))


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # the warnings this test is about
def test_a_compiled_graph_that_differs_from_its_module_is_refused():
    with pytest.raises(ValueError, match="torchscript graph of variant original differs from its eager outputs"):
        speed.compiled_variants({"original": ScalesByBatchSize()}, "torchscript", (4,), torch.device("cpu"))
    with pytest.raises(ValueError, match=r"torchscript graph of variant slim gives outputs of shape \[2, 4\], its "
                                         r"module \[3, 6\]"):
        speed.compiled_variants({"slim": RowsOfTheTracedBatch()}, "torchscript", (4,), torch.device("cpu"))


def test_torch_pooling_is_timed_on_cuda_and_under_a_compiler_and_the_rewrite_on_eager_cpu():
    assert not speed.stock_pooling_for(torch.device("cpu"))
    assert speed.stock_pooling_for(torch.device("cpu"), "torchscript")
    assert speed.stock_pooling_for(torch.device("cuda"))
