"""The bcrepro command as a user runs it: train -> compress on synthetic data, and its errors. Most commands run
in-process (``conftest.bcrepro``); the ones that check what a separate process prints and returns run as one."""
import json

import numpy as np
import pytest
import torch

from bcrepro import models, runs
from bcrepro.cells import check_schedule
from bcrepro.errors import UsageError
from bcrepro.compress import bitstream
from bcrepro.data import load_dataset
from bcrepro.deploy import slim
from bcrepro.methods import get_method
from bcrepro.train import error_rate
from conftest import bcrepro, bcrepro_process

# Synthetic data has 2,000 training examples: hold out 300 for thresholds, and train hard enough to prune in seconds.
QUICK = "validation_size: 300\nkl_warmup_epochs: 5\nlr: 0.01\n"


@pytest.fixture
def quick_params(tmp_path):
    path = tmp_path / "quick.yaml"
    path.write_text(QUICK)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("method", ["bc-gnj", "bc-ghs"])
def test_bc_trains_to_low_error_and_prunes_groups_on_synthetic_data(tmp_path, quick_params, method):
    run = tmp_path / method
    done = bcrepro("train", "--arch", "lenet300", "--method", method, "--dataset", "synthetic", "--seed", 0,
                   "--epochs", 30, "--params", quick_params, "--out", run)
    assert done.returncode == 0, done.stderr
    assert "epoch   30/30" in done.stderr  # one progress line per epoch
    done = bcrepro("compress", "--run", run)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((run / "metrics.json").read_text())

    assert metrics["error_pct"] < 15.0
    assert metrics["error_pruned_pct"] < 20.0
    kept = metrics["architecture"]  # of 784-300-100 input groups
    assert len(kept) == 3 and kept[1] < 0.7 * 300, kept  # whole hidden units were pruned
    assert metrics["nonzero_weights"] < metrics["total_weights"]
    assert metrics["compression_pruning"] > 1.5
    assert metrics["compression_precision"] > metrics["compression_pruning"]
    assert all(4 <= b <= 25 for b in metrics["bits"])
    for key in ("arch", "method", "seed", "dataset", "error_quantized_pct", "compression_max", "thresholds",
                "mlflow_run_id", "train_seconds", "threshold_curve"):
        assert key in metrics

    # compressed.bin decodes to the pruned, rounded weights that compressed.npz holds as slimmed blocks, and its size
    # is never below the computed maximum-compression storage.
    artefact = run / "compressed.bin"
    assert metrics["artefact_bytes"] == artefact.stat().st_size
    assert metrics["compression_on_disk"] == pytest.approx(4 * metrics["total_weights"] / artefact.stat().st_size)
    assert metrics["compression_pruning"] < metrics["compression_on_disk"] <= metrics["compression_max"]
    decoded = bitstream.decode_layers(artefact.read_bytes())
    saved = np.load(run / "compressed.npz")
    assert [t.shape for t in decoded] == [(300, 784), (100, 300), (10, 100)]
    for i, tensor in enumerate(decoded):
        expected = np.zeros_like(tensor)
        expected[np.ix_(saved[f"layer{i}_out_index"], saved[f"layer{i}_in_index"])] = saved[f"layer{i}_weight"]
        np.testing.assert_array_equal(tensor, expected)

    # The exported slim model is a physically smaller plain network with the quantized model's test error.
    slim_model = slim.load_slim(run / "slim.pt")
    assert sum(p.numel() for n, p in slim_model.named_parameters() if n.endswith("weight")) == \
        metrics["nonzero_weights"]
    splits = load_dataset("synthetic", validation_size=300)
    assert error_rate(slim_model, splits.test_x, splits.test_y) == pytest.approx(metrics["error_quantized_pct"])

    # posterior.npz holds what the figures need: the statistics, thresholds and masks of this run.
    net = models.build("lenet300", get_method(method).layer_factory("lenet300", get_method(method).params_for(
        "lenet300", {"validation_size": 300})))
    net.load_state_dict(torch.load(run / "model.pt", weights_only=True))
    posterior = np.load(run / "posterior.npz")
    chosen = metrics["thresholds"]["thresholds"]
    for i, layer in enumerate(net.group_layers()):
        statistic = layer.group_statistic().detach().double().numpy()
        np.testing.assert_allclose(posterior[f"statistic_{i}"], statistic, rtol=1e-6)
        assert posterior[f"in_mask_{i}"].sum() == kept[i]
        if chosen[i] is not None:  # propagation only removes more: the statistic alone bounds the kept inputs
            assert kept[i] <= (statistic < chosen[i]).sum()
    assert posterior["weight_0"].shape == (300, 784) and posterior["weight_1"].shape == (100, 300)
    assert str(posterior["statistic_label"]) == net.group_layers()[0].statistic_label

    # The slimmed model's speed against the original, in the speed.json format of docs/workflow.md.
    done = bcrepro("speedup", "--run", run, "--batch-sizes", 1, 32, "--repeats", 3, "--warmup", 1)
    assert done.returncode == 0, done.stderr
    records = json.loads((run / "speed.json").read_text())
    assert {(r["variant"], r["batch"]) for r in records} == {(v, b) for v in ("original", "masked", "slim")
                                                             for b in (1, 32)}
    assert all(r["device"] == "cpu" and r["median_ms"] > 0 and r["iqr_ms"] >= 0 for r in records)
    assert {r["allocator"] for r in records} == {"keep-freed"}  # freed memory stays in the process by default
    # the allocator is the process's: a process of its own times with glibc's malloc as it is
    done = bcrepro_process("speedup", "--run", run, "--batch-sizes", 1, "--repeats", 2, "--warmup", 0,
                           "--system-allocator")
    assert done.returncode == 0, done.stderr
    assert {r["allocator"] for r in json.loads((run / "speed.json").read_text())} == {"system"}
    assert {r["memory_format"] for r in json.loads((run / "speed.json").read_text())} == {"contiguous"}
    done = bcrepro("speedup", "--run", run, "--batch-sizes", 1, "--repeats", 1, "--warmup", 0,
                   "--memory-format", "channels_last")  # the images are channels-last; the MLP flattens them
    assert done.returncode == 0, done.stderr
    assert {r["memory_format"] for r in json.loads((run / "speed.json").read_text())} == {"channels_last"}
    done = bcrepro("speedup", "--run", run, "--batch-sizes", 1, "--repeats", 1, "--warmup", 0,
                   "--compile", "torchscript")
    assert done.returncode == 0, done.stderr
    assert {r["compiled"] for r in json.loads((run / "speed.json").read_text())} == {"torchscript"}
    macs = {r["variant"]: r["macs_per_example"] for r in records}
    assert macs["original"] == macs["masked"] == 784 * 300 + 300 * 100 + 100 * 10  # LeNet-300-100's weights
    slim_layers = [kept[i] * (kept[i + 1] if i + 1 < len(kept) else 10) for i in range(len(kept))]
    assert macs["slim"] == sum(slim_layers)  # in x out of each slimmed layer


def test_dense_run_compresses_to_itself(tmp_path, quick_params):
    run = tmp_path / "dense"
    assert bcrepro("train", "--arch", "lenet300", "--method", "dense", "--dataset", "synthetic", "--epochs", 2,
                   "--params", quick_params, "--out", run).returncode == 0
    done = bcrepro("compress", "--run", run)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["compression_pruning"] == 1.0
    assert metrics["compression_precision"] is None and metrics["error_quantized_pct"] is None
    assert metrics["error_pruned_pct"] == metrics["error_pct"]
    assert metrics["error_jump_pct"] == 0.0 and metrics["collapsed"] is False
    # float weights share nothing: on disk the file is the raw float32 weights plus a header
    assert 0.99 < metrics["compression_on_disk"] < 1.0

    # A second identical command has nothing to do.
    again = bcrepro("train", "--arch", "lenet300", "--method", "dense", "--dataset", "synthetic", "--epochs", 2,
                    "--params", quick_params, "--out", run)
    assert again.returncode == 0 and "nothing to do" in again.stderr


def test_missing_data_offline_is_one_clear_error_and_writes_nothing(tmp_path):
    run = tmp_path / "run"
    done = bcrepro_process("train", "--arch", "lenet300", "--method", "bc-gnj", "--dataset", "mnist", "--data-root",
                           tmp_path / "nodata", "--no-download", "--out", run)
    assert done.returncode == 1
    assert "train-images-idx3-ubyte" in done.stderr and str(tmp_path / "nodata") in done.stderr
    assert "Traceback" not in done.stderr
    assert not run.exists()


@pytest.mark.parametrize("args, message", [
    (["--method", "bc-magic"], "unknown method 'bc-magic'"),
    (["--method", "bc-gnj", "--params", "BAD"], "unknown hyper-parameter(s) ['learning_rate']"),
])
def test_bad_input_names_the_problem(tmp_path, args, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: 0.1\n")
    args = [str(bad) if a == "BAD" else a for a in args]
    done = bcrepro_process("train", "--arch", "lenet300", "--dataset", "synthetic", "--out", tmp_path / "run", *args)
    assert done.returncode == 1
    assert message in done.stderr
    assert not (tmp_path / "run").exists()


def test_compress_refuses_an_unfinished_run(tmp_path):
    done = bcrepro("compress", "--run", tmp_path)
    assert done.returncode == 1 and "not a finished training run" in done.stderr


def test_init_from_dense_copies_weights_into_the_posterior_means(tmp_path):
    torch.manual_seed(0)
    dense = models.build("lenet5")
    torch.save(dense.state_dict(), tmp_path / "model.pt")
    method = get_method("bc-ghs")
    net = models.build("lenet5", method.layer_factory("lenet5", method.params_for("lenet5")))
    runs.init_from_dense(net, tmp_path / "model.pt")
    for bayes, plain in zip(net.prunable_layers(), dense.prunable_layers()):
        assert torch.equal(bayes.weight_mu, plain.weight)
        assert torch.equal(bayes.bias_mu, plain.bias)


def test_methods_lists_the_registry():
    done = bcrepro("methods")
    assert done.returncode == 0
    for name in ("dense", "bc-gnj", "bc-ghs"):
        assert name in done.stdout


def test_params_json_and_epoch_scale_set_the_budget(tmp_path):
    run = tmp_path / "scaled"
    done = bcrepro("train", "--arch", "lenet300", "--method", "bc-gnj", "--dataset", "synthetic", "--seed", 0,
                   "--params-json", json.dumps({"validation_size": 300, "epochs": 50, "kl_warmup_epochs": 20}),
                   "--epoch-scale", 0.04, "--out", run)
    assert done.returncode == 0, done.stderr
    params = json.loads((run / "run.json").read_text())["params"]
    assert params["epochs"] == 2 and params["kl_warmup_epochs"] == pytest.approx(0.8)
    assert len(json.loads((run / "history.json").read_text())) == 2


@pytest.mark.parametrize("params, scale, epochs, warmup", [
    ({"epochs": 200, "kl_warmup_epochs": 20}, 0.03, 6, 0.6),
    ({"epochs": 60, "kl_warmup_epochs": 0}, 0.03, 2, 0.0),   # 1.8 rounds to 2
    ({"epochs": 10, "kl_warmup_epochs": 5}, 0.001, 1, 0.005),  # never below one epoch
])
def test_epoch_scale_multiplies_epochs_and_warm_up(params, scale, epochs, warmup):
    scaled = get_method("bc-gnj").scale_budget(params, scale)
    assert scaled["epochs"] == epochs and scaled["kl_warmup_epochs"] == pytest.approx(warmup)


@pytest.mark.parametrize("args, message", [
    (["--params-json", "{not json"], "--params-json is not valid JSON"),
    (["--params-json", "[1, 2]"], "must be a JSON object"),
    (["--epoch-scale", "0"], "--epoch-scale must be > 0"),
])
def test_bad_inline_params_name_the_option(tmp_path, args, message):
    done = bcrepro("train", "--arch", "lenet300", "--method", "dense", "--dataset", "synthetic",
                   "--out", tmp_path / "r", *args)
    assert done.returncode == 1 and message in done.stderr
    assert not (tmp_path / "r").exists()


def test_stage_writes_a_stamp_and_offline_missing_data_is_the_library_error(tmp_path):
    done = bcrepro("stage", "--dataset", "synthetic", "--out", tmp_path / "synthetic.json")
    assert done.returncode == 0, done.stderr
    stamp = json.loads((tmp_path / "synthetic.json").read_text())
    assert stamp["train"] == 2000 and stamp["test"] == 500 and stamp["input_shape"] == [1, 28, 28]
    done = bcrepro("stage", "--dataset", "mnist", "--data-root", tmp_path / "empty", "--no-download",
                   "--out", tmp_path / "mnist.json")
    assert done.returncode == 1 and "dataset 'mnist' not found" in done.stderr
    assert not (tmp_path / "mnist.json").exists()


def test_bc_starts_from_the_dense_reference_on_vgg_only():
    """Paper §5: VGG-16 is compressed from a pretrained network; the LeNets train from scratch."""
    for name in ("bc-gnj", "bc-ghs"):
        method = get_method(name)
        assert method.starts_from("vgg16")
        assert not method.starts_from("lenet5") and not method.starts_from("lenet300")
    assert get_method("dc").starts_from("lenet5")


def test_the_dense_vgg_recipe_trains_with_dropout():
    params = get_method("dense").params_for("vgg16")
    splits = load_dataset("synthetic", validation_size=0, synthetic_train=8, synthetic_test=8,
                          synthetic_shape=(3, 32, 32))
    net = runs.build_net("vgg16", "dense", params, splits)
    assert sum(isinstance(m, torch.nn.Dropout) for m in net.modules()) == 10
    lenet = runs.build_net("lenet5", "dense", get_method("dense").params_for("lenet5"),
                          load_dataset("synthetic", validation_size=0, synthetic_train=8, synthetic_test=8))
    assert not any(isinstance(m, torch.nn.Dropout) for m in lenet.modules())


def test_init_from_a_dense_vgg_with_dropout_copies_weights_and_batch_norm(tmp_path):
    """Dropout modules shift the names of the dense VGG's later layers: weights and batch-norm statistics are matched
    by position, so the BC VGG (no dropout) gets each one from the right layer."""
    torch.manual_seed(0)
    dense = models.build("vgg16", dropout=True)
    with torch.no_grad():
        for norm in (m for m in dense.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            norm.running_mean.uniform_(-1, 1)
            norm.running_var.uniform_(0.5, 2)
            norm.weight.uniform_(0.5, 2)
    torch.save(dense.state_dict(), tmp_path / "model.pt")
    method = get_method("bc-gnj")
    net = models.build("vgg16", method.layer_factory("vgg16", method.params_for("vgg16")))
    runs.init_from_dense(net, tmp_path / "model.pt")
    for bayes, plain in zip(net.prunable_layers(), dense.prunable_layers()):
        assert torch.equal(bayes.weight_mu, plain.weight)
    norms = [[m for m in n.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)] for n in (net, dense)]
    assert len(norms[0]) == len(norms[1]) == 14
    for target, source in zip(*norms):
        assert torch.equal(target.running_mean, source.running_mean)
        assert torch.equal(target.weight, source.weight)


@pytest.mark.slow
def test_compress_states_the_sparsest_budget_against_a_dense_reference(tmp_path, quick_params):
    dense, bc = tmp_path / "dense", tmp_path / "bc"
    for method, run, epochs in (("dense", dense, 3), ("bc-gnj", bc, 3)):
        assert bcrepro("train", "--arch", "lenet300", "--method", method, "--dataset", "synthetic", "--epochs",
                       epochs, "--params", quick_params, "--out", run).returncode == 0
    done = bcrepro("compress", "--run", bc, "--thresholds-json", '{"rule": "sparsest", "max_error_increase": 0.5}',
                   "--reference-run", dense)
    assert done.returncode == 0, done.stderr
    record = json.loads((bc / "metrics.json").read_text())["thresholds"]
    # the reference's error on the same 300 held-out images, measured here independently
    splits = load_dataset("synthetic", validation_size=300)
    net = models.build("lenet300", get_method("dense").layer_factory("lenet300", {}))
    net.load_state_dict(torch.load(dense / "model.pt", weights_only=True))
    reference = error_rate(net.eval(), splits.val_x, splits.val_y)
    assert record["rule"] == "sparsest" and record["reference_error_pct"] == pytest.approx(reference)
    assert record["validation_error_bound"] == pytest.approx(
        max(record["validation_error_baseline"], reference) + 0.5)
    assert record["validation_error"] <= record["validation_error_bound"]


def test_compress_refuses_a_reference_with_another_hold_out_and_bad_thresholds_json(tmp_path, quick_params):
    dense, bc = tmp_path / "dense", tmp_path / "bc"
    assert bcrepro("train", "--arch", "lenet300", "--method", "dense", "--dataset", "synthetic", "--epochs", 1,
                   "--params-json", '{"validation_size": 200}', "--out", dense).returncode == 0
    assert bcrepro("train", "--arch", "lenet300", "--method", "bc-gnj", "--dataset", "synthetic", "--epochs", 1,
                   "--params", quick_params, "--out", bc).returncode == 0
    done = bcrepro("compress", "--run", bc, "--thresholds-json", '{"rule": "sparsest"}', "--reference-run", dense)
    assert done.returncode == 1 and "200 validation images" in done.stderr and "300" in done.stderr
    assert not (bc / "metrics.json").exists()
    done = bcrepro("compress", "--run", bc, "--thresholds-json", "{rule: sparsest")
    assert done.returncode == 1 and "--thresholds-json is not valid JSON" in done.stderr


@pytest.mark.parametrize("method, late", [("dc", "prune_iterations[1] = 135"), ("dns", "iter_stop[0] = 628")])
def test_a_schedule_counted_in_iterations_that_a_run_cannot_reach_is_refused(tmp_path, method, late):
    # 1,700 training images at batch 64 are 27 steps an epoch, against MNIST's 860: the schedule scales by 27/860
    # (DC's round at 4,300 to 135, DNS's end at 20,000 to 628), and 3 epochs are 81 steps, still short of it
    run = tmp_path / method
    done = bcrepro("train", "--arch", "lenet300", "--method", method, "--dataset", "synthetic", "--epochs", 3,
                   "--params-json", '{"validation_size": 300}', "--out", run)
    assert done.returncode == 1
    assert "this run has 81 optimiser steps (3 epochs of 27 at batch 64 on 1700 training images)" in done.stderr
    assert late in done.stderr
    assert not run.exists() or not any(run.iterdir())


def test_check_schedule_accepts_the_last_step_and_refuses_the_one_after():
    dc = get_method("dc")
    params = dict(dc.params_for("lenet300"), epochs=2, batch_size=10, prune_iterations=[0, 5], quantize_iteration=19)
    check_schedule(dc, params, 100)  # 2 epochs of 10 steps: steps 0..19, so step 19 happens
    with pytest.raises(UsageError, match="quantize_iteration = 20"):
        check_schedule(dc, dict(params, quantize_iteration=20), 100)


def test_a_rejected_command_leaves_the_folder_as_it_was_and_the_corrected_one_runs(tmp_path):
    run = tmp_path / "gnj"
    base = ["train", "--arch", "lenet300", "--method", "bc-gnj", "--dataset", "synthetic", "--epochs", 1, "--out", run]
    bad = bcrepro(*base, "--params-json", '{"lr": -1, "validation_size": 300}')
    assert bad.returncode == 1 and "lr" in bad.stderr
    assert not run.exists()
    good = bcrepro(*base, "--params-json", '{"validation_size": 300}')
    assert good.returncode == 0, good.stderr
    other = bcrepro(*base, "--params-json", '{"validation_size": 300, "lr": 0.01}')
    assert other.returncode == 1
    assert "holds a run of lenet300/bc-gnj, seed 0 with other settings: params.lr (0.001 there, 0.01 here)" in \
        other.stderr


def test_a_run_declared_again_with_other_thresholds_keeps_its_training_and_takes_the_new_rule(tmp_path):
    # thresholds are read by `compress` only: a changed rule must neither be refused nor retrain the network
    run = tmp_path / "gnj"
    base = ["train", "--arch", "lenet300", "--method", "bc-gnj", "--dataset", "synthetic", "--epochs", 1, "--out", run]
    assert bcrepro(*base, "--params-json", '{"validation_size": 300}').returncode == 0
    model_bytes = (run / "model.pt").read_bytes()
    fixed = {"rule": "fixed", "values": [-3.0, -3.0, -3.0]}
    again = bcrepro(*base, "--params-json", json.dumps({"validation_size": 300, "thresholds": fixed}))
    assert again.returncode == 0, again.stderr
    assert "compression settings are updated" in again.stderr
    assert json.loads((run / "run.json").read_text())["params"]["thresholds"] == fixed
    assert (run / "model.pt").read_bytes() == model_bytes
    # an interrupted run (its checkpoint kept, no model yet) resumes under the new rule as well
    (run / "model.pt").unlink()
    auto = {"rule": "auto", "max_error_increase": 0.5}
    resumed = bcrepro(*base, "--params-json", json.dumps({"validation_size": 300, "thresholds": auto}))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr
    assert json.loads((run / "run.json").read_text())["params"]["thresholds"] == auto
    # a training setting still makes it another run
    other = bcrepro(*base, "--params-json", json.dumps({"validation_size": 300, "thresholds": auto, "lr": 0.01}))
    assert other.returncode == 1 and "params.lr (0.001 there, 0.01 here)" in other.stderr
    assert "thresholds" not in other.stderr


def test_a_run_written_before_a_hyper_parameter_existed_resumes_under_the_value_it_trained_with(tmp_path):
    """run.json of an older run lacks keys added since (Sparse VD's sampled_variance, preprocess, kl_images). It
    trained as the code then did (sigma2, symmetric pixels, the split's N), which today's defaults are not: declared
    with those values it is the same training; declared with today's defaults it is another run, named key by key."""
    run = tmp_path / "svd"
    before = {"validation_size": 300, "sampled_variance": "sigma2", "preprocess": "symmetric", "kl_images": None}
    base = ["train", "--arch", "lenet300", "--method", "sparse-vd", "--dataset", "synthetic", "--epochs", 1,
            "--params-json", json.dumps(before), "--out", run]
    assert bcrepro(*base).returncode == 0
    stored = json.loads((run / "run.json").read_text())
    for key in ("sampled_variance", "preprocess", "kl_images"):
        del stored["params"][key]
    (run / "run.json").write_text(json.dumps(stored))
    (run / "model.pt").unlink()
    again = bcrepro(*base)
    assert again.returncode == 0, again.stderr
    today = bcrepro(*base[:-4], "--params-json", '{"validation_size": 300}', "--out", run)
    assert today.returncode == 1
    for change in ("params.sampled_variance ('sigma2' there, 'alpha' here)",
                   "params.preprocess ('symmetric' there, 'centred' here)", "params.kl_images (None there, 'all' here)"):
        assert change in today.stderr


def test_an_iteration_counted_schedule_keeps_its_place_in_each_epoch_on_other_data(tmp_path):
    """DC's schedule is set for MNIST's 55,000 images (860 steps an epoch at batch 64): on 1,700 synthetic images (27
    steps) it scales by 27/860 and runs, saying so, instead of refusing a run that would never reach it."""
    run = tmp_path / "dc"
    done = bcrepro("train", "--arch", "lenet300", "--method", "dc", "--dataset", "synthetic", "--epochs", 21,
                   "--params-json", '{"validation_size": 300}', "--out", run)
    assert done.returncode == 0, done.stderr
    factor = 27 / 860
    assert f"scaled by {factor:.4g}" in done.stderr
    assert "prune_iterations[1] = 135" in done.stderr and f"quantize_iteration = {round(17200 * factor)}" in done.stderr
    stored = json.loads((run / "run.json").read_text())
    assert stored["schedule_scale"] == pytest.approx(factor)
    assert stored["params"]["quantize_iteration"] == 17200  # the declared schedule; the factor says how it ran


def test_a_schedule_of_ones_own_is_taken_as_it_is_and_the_default_one_is_scaled():
    from bcrepro.cells.training import schedule_for_data
    dc = get_method("dc")
    params = dc.params_for("lenet300")
    own = dict(params, prune_iterations=[0, 25, 50], quantize_iteration=100)
    assert schedule_for_data(dc, "lenet300", own, 1700, {"prune_iterations": [0, 25, 50]}) == (own, 1.0)
    # the default written out again (the workflow's config does) is still the default: scaled
    scaled, factor = schedule_for_data(dc, "lenet300", params, 1700, {"prune_iterations": [0, 4300, 8600]})
    assert factor == pytest.approx(27 / 860) and scaled["prune_iterations"] == [0, 135, 270]
    assert schedule_for_data(dc, "lenet300", params, 55_000, {}) == (params, 1.0)  # MNIST's own size
