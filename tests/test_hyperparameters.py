"""Every method declares the form of each hyper-parameter beside its default: a value of the wrong type, range or
per-layer length is one error naming the key, the form expected and the value given, from ``params_for``, from
``bcrepro train`` (status 1, nothing written) and from the workflow's dry run (before any job). And each method
scales its own schedule with the training budget (``Method.scale_budget``)."""
import dataclasses
import json

import pytest

from bcrepro import train
from bcrepro.errors import UsageError
from bcrepro.methods import METHODS, get_method
from bcrepro.methods.hyperparameters import prunable_layer_count
from bcrepro.methods.schedules import TRAINING
from conftest import bcrepro, bcrepro_process
from test_workflow import snakemake, write_config


def error_of(method: str, arch: str, overrides: dict) -> str:
    with pytest.raises(UsageError) as raised:
        get_method(method).params_for(arch, overrides)
    return str(raised.value)


# ---- the defaults stay as they were ----------------------------------------------------------------------------------
def test_default_hyperparameters_are_those_of_the_paper_configuration():
    """Two cells written out in full (LeNet-5 clamps conv1, DC LeNet-300-100 retrains on x / 255)."""
    assert get_method("bc-ghs").params_for("lenet5") == {
        "augment": False, "batch_size": 128, "clip_mode": "parameter", "clip_var": [0.04, None, None, None],
        "epochs": 200, "kl_images": None, "kl_warmup_epochs": 20, "lr": 0.001, "lr_schedule": "constant",
        "preprocess": "symmetric", "sa_kl": "exact", "statistic": "magnitude", "tau0": 1e-05,
        "thresholds": {"max_error_increase": 0.1, "rule": "sparsest"}, "validation_size": "1/12",
        "weight_decay": 0.0}
    assert get_method("dc").params_for("lenet300") == {
        "augment": False, "batch_size": 64, "epochs": 30, "kept_fraction": [0.08, 0.09, 0.26], "kl_images": None,
        "kl_warmup_epochs": 0, "lr": 0.01, "lr_gamma": 0.0001, "lr_power": 0.75, "lr_schedule": "inv", "momentum": 0.9,
        "optimizer": "sgd", "preprocess": "unit", "prune_iterations": [0, 4300, 8600], "quantize_iteration": 17200,
        "validation_size": "1/12", "weight_bits": [6, 6, 6], "weight_decay": 0.0005}


@pytest.mark.parametrize("name, arch", [(name, arch) for name, method in sorted(METHODS.items())
                                        for arch in sorted(method.hyperparameters)])
def test_every_default_fits_the_form_its_method_declares(name, arch):
    method = get_method(name)
    assert set(method.hyperparameters[arch]) <= set(method.forms)
    assert method.params_for(arch) == method.hyperparameters[arch]


def test_a_caller_changing_its_params_leaves_the_defaults_alone():
    params = get_method("bc-gnj").params_for("lenet300")
    params["clip_var"][0] = 1.0
    assert get_method("bc-gnj").params_for("lenet300")["clip_var"] == [0.04, None, None]


def test_the_training_forms_accept_exactly_what_the_training_loop_reads():
    assert TRAINING["lr_schedule"].choices == train.LR_SCHEDULES
    assert TRAINING["optimizer"].choices == train.OPTIMIZERS
    assert {f.name for f in dataclasses.fields(train.TrainConfig)} - {"seed"} <= set(TRAINING)


def test_per_layer_lengths_are_the_architectures_prunable_layers():
    assert [prunable_layer_count(arch) for arch in ("lenet300", "lenet5", "vgg16")] == [3, 4, 15]


# ---- bad values ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method, arch, overrides, message", [
    # type
    ("bc-ghs", "lenet5", {"epochs": "ten"},
     "hyper-parameter 'epochs' of bc-ghs on lenet5 must be an integer >= 1, got 'ten' (a string)"),
    ("bc-ghs", "lenet5", {"lr": "0.001"},
     "hyper-parameter 'lr' of bc-ghs on lenet5 must be a number > 0, got '0.001' (a string, not a number"),
    ("bc-gnj", "lenet300", {"lr": "1e-4"}, "YAML reads 1e-4 as text, write 1.0e-4"),
    ("dense", "lenet300", {"epochs": 2.5}, "hyper-parameter 'epochs' of dense on lenet300 must be an integer >= 1, "
                                          "got 2.5"),
    ("dense", "lenet300", {"augment": "yes"}, "'augment' of dense on lenet300 must be true or false, got 'yes'"),
    ("sparse-vd", "lenet5", {"train_clip": 1}, "'train_clip' of sparse-vd on lenet5 must be true or false, got 1"),
    ("dense", "lenet5", {"lr_schedule": "cosin"},
     "'lr_schedule' of dense on lenet5 must be one of 'constant', 'cosine', 'constant_then_linear', 'linear', 'inv', "
     "got 'cosin'"),
    # range
    ("bc-gnj", "lenet300", {"epochs": 0}, "'epochs' of bc-gnj on lenet300 must be an integer >= 1, got 0"),
    ("bc-gnj", "lenet300", {"epochs": True}, "must be an integer >= 1, got True (a boolean)"),
    ("dc", "lenet5", {"kept_fraction": [0.66, 0.12, 1.5, 0.19]},
     "'kept_fraction[2]' of dc on lenet5 must be a number in (0, 1], got 1.5"),
    ("dc", "lenet300", {"weight_bits": [6, 6, 17]}, "'weight_bits[2]' of dc on lenet300 must be an integer in [1, 16]"),
    ("sws", "lenet300", {"pi_zero": 1.0}, "'pi_zero' of sws on lenet300 must be a number in (0, 1), got 1.0"),
    ("dense", "lenet300", {"validation_size": "2/1"},
     "'validation_size' of dense on lenet300 must be an integer >= 0, or a number in (0, 1), or a fraction such as "
     "'1/12', got '2/1'"),
    ("bc-gnj", "lenet300", {"kl_warmup_epochs": float("nan")}, "'kl_warmup_epochs' of bc-gnj on lenet300 must be a "
                                                               "number >= 0, got nan"),
    # per-layer length: the architecture's prunable layers
    ("bc-gnj", "lenet5", {"clip_var": [0.04]},
     "hyper-parameter 'clip_var' of bc-gnj on lenet5 must be a list of 4 values (one per prunable layer), each null "
     "(no clipping) or a number > 0; or one such value for every layer, got [0.04] (a list of 1)"),
    ("bc-ghs", "vgg16", {"statistic": ["noise"] * 13},
     "'statistic' of bc-ghs on vgg16 must be a list of 15 values (one per prunable layer)"),
    ("dns", "lenet5", {"iter_stop": [14000, 14000, 10000]},
     "'iter_stop' of dns on lenet5 must be a list of 4 values (one per prunable layer), each an integer >= 0"),
    ("dc", "lenet300", {"kept_fraction": 0.1}, "'kept_fraction' of dc on lenet300 must be a list of 3 values"),
    ("sws", "lenet5", {"gamma": [250.0]},
     "'gamma' of sws on lenet5 must be null (no hyper-prior) or a list of 2 values"),
    # nested: the threshold rule and its options
    ("bc-gnj", "lenet300", {"thresholds": "auto"},
     "'thresholds' of bc-gnj on lenet300 must be null (the auto rule) or a mapping of a threshold rule and its "
     "options (keys: rule, "),
    ("bc-gnj", "lenet300", {"thresholds": {"rule": "magic"}},
     "'thresholds.rule' of bc-gnj on lenet300 must be one of 'fixed', 'valley', 'auto', 'sparsest', got 'magic'"),
    ("bc-ghs", "lenet300", {"thresholds": {"rule": "auto", "max_eror_increase": 0.5}},
     "got {'rule': 'auto', 'max_eror_increase': 0.5} (a mapping)"),
    ("bc-gnj", "lenet300", {"thresholds": {"rule": "fixed", "values": [-2.8, -3.0]}},
     "'thresholds.values' of bc-gnj on lenet300 must be a list of 3 values (one per prunable layer)"),
    ("bc-ghs", "lenet300", {"thresholds": {"rule": "sparsest", "passes": 0}},
     "'thresholds.passes' of bc-ghs on lenet300 must be an integer >= 1, got 0"),
])
def test_a_bad_value_is_one_error_naming_the_key_the_form_and_the_value(method, arch, overrides, message):
    assert message in error_of(method, arch, overrides)


def test_every_bad_value_is_named_in_the_one_error():
    error = error_of("bc-gnj", "lenet300", {"epochs": "ten", "lr": -1})
    assert "'epochs'" in error and "'lr'" in error and "\n" not in error


def test_an_unknown_key_or_architecture_is_still_an_error():
    assert "unknown hyper-parameter(s) ['learning_rate'] for method 'bc-gnj' on 'lenet300'" in error_of(
        "bc-gnj", "lenet300", {"learning_rate": 0.1})
    assert "method 'dns' has no settings for architecture 'vgg16'" in error_of("dns", "vgg16", {})


def test_a_training_setting_the_defaults_leave_out_can_still_be_given():
    # the dense LeNets train with Adam; the Caffe solver's settings are declared for every method and accepted
    caffe = {"optimizer": "sgd", "momentum": 0.9, "lr_schedule": "inv", "lr_gamma": 1e-4, "lr_power": 0.75}
    params = get_method("dense").params_for("lenet300", caffe)
    assert {key: params[key] for key in caffe} == caffe
    assert "'momentum' of dense on lenet300 must be a number" in error_of("dense", "lenet300", {"momentum": "high"})


def test_dropout_on_a_network_without_dropout_layers_is_refused_by_name(tmp_path):
    done = bcrepro("train", "--arch", "lenet300", "--method", "dense", "--dataset", "synthetic", "--epochs", 1,
                   "--params-json", '{"dropout": true}', "--out", tmp_path / "run")
    assert done.returncode == 1 and "lenet300 has no dropout layers" in done.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("method, arch, overrides", [
    ("bc-gnj", "lenet300", {"clip_var": None}),                 # no clipping anywhere
    ("bc-gnj", "lenet5", {"clip_var": [None, None, None, None]}),
    ("bc-gnj", "lenet300", {"clip_var": 0.04}),                 # one bound for every layer
    ("bc-ghs", "lenet5", {"statistic": ["magnitude", "noise", "noise", "magnitude"]}),
    ("bc-gnj", "lenet300", {"thresholds": None}),               # the auto rule
    ("bc-gnj", "lenet300", {"thresholds": {"rule": "fixed", "values": [-2.8, -3.0, None]}}),
    ("sws", "lenet300", {"zero_gamma": None, "gamma": None}),   # no hyper-priors
    ("dense", "lenet300", {"validation_size": 400, "lr": 1, "kl_warmup_epochs": 0.6}),
    ("dc", "lenet300", {"prune_iterations": [0, 10], "quantize_iteration": 30}),  # any number of pruning rounds
])
def test_values_that_mean_off_or_a_default_stay_allowed(method, arch, overrides):
    params = get_method(method).params_for(arch, overrides)
    assert all(params[key] == value for key, value in overrides.items())


# ---- through the CLI and the workflow --------------------------------------------------------------------------------
@pytest.mark.parametrize("params, message", [
    ('{"epochs": "ten"}', "hyper-parameter 'epochs' of bc-ghs on lenet5 must be an integer >= 1, got 'ten'"),
    ('{"lr": "0.001"}', "hyper-parameter 'lr' of bc-ghs on lenet5 must be a number > 0, got '0.001'"),
    ('{"epochs": -3}', "hyper-parameter 'epochs' of bc-ghs on lenet5 must be an integer >= 1, got -3"),
    ('{"clip_var": [0.04]}', "hyper-parameter 'clip_var' of bc-ghs on lenet5 must be a list of 4 values"),
    ('{"thresholds": {"rule": "magic"}}', "hyper-parameter 'thresholds.rule' of bc-ghs on lenet5 must be one of"),
    ('{"learning_rate": 0.1}', "unknown hyper-parameter(s) ['learning_rate'] for method 'bc-ghs' on 'lenet5'"),
])
def test_bcrepro_train_refuses_a_bad_value_in_one_line_and_writes_nothing(tmp_path, params, message):
    out = tmp_path / "run"
    done = bcrepro("train", "--arch", "lenet5", "--method", "bc-ghs", "--dataset", "synthetic",
                   "--params-json", params, "--out", out)
    assert done.returncode == 1
    expected = error_of("bc-ghs", "lenet5", json.loads(params))
    assert done.stderr.strip().splitlines() == [f"bcrepro train: error: {expected}"]
    assert message in expected
    assert not out.exists()


def test_a_bad_value_in_a_params_file_exits_with_status_1_before_any_file(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("lr: 1e-4\n")  # YAML 1.1 reads this as a string
    out = tmp_path / "run"
    done = bcrepro_process("train", "--arch", "lenet300", "--method", "dense", "--dataset", "synthetic",
                           "--params", params, "--out", out)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert ("hyper-parameter 'lr' of dense on lenet300 must be a number > 0, got '1e-4' (a string, not a number: "
            "write it without quotes; YAML reads 1e-4 as text, write 1.0e-4)") in done.stderr
    assert not out.exists()


@pytest.mark.parametrize("text, method, arch, overrides", [
    ("hyperparameters:\n  bc-ghs:\n    lenet5: {epochs: ten}\n", "bc-ghs", "lenet5", {"epochs": "ten"}),
    ("hyperparameters:\n  dns:\n    lenet300: {iter_stop: [20000, 20000]}\n", "dns", "lenet300",
     {"iter_stop": [20000, 20000]}),
    ("hyperparameters:\n  bc-gnj:\n    vgg16: {thresholds: {rule: magic}}\n", "bc-gnj", "vgg16",
     {"thresholds": {"rule": "magic"}}),
])
def test_a_bad_value_in_the_config_fails_the_dry_run_with_the_librarys_message(tmp_path, text, method, arch,
                                                                                overrides):
    config = write_config(tmp_path / "bad.yaml", text)
    result = snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(config))
    assert result.returncode != 0
    expected = f"config key 'hyperparameters.{method}.{arch}': {error_of(method, arch, overrides)}"
    assert expected in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


# ---- budget scaling --------------------------------------------------------------------------------------------------
def test_dc_scales_its_pruning_rounds_and_quantisation_with_the_budget():
    dc = get_method("dc")
    scaled = dc.scale_budget(dc.params_for("lenet300"), 0.1)
    assert (scaled["epochs"], scaled["kl_warmup_epochs"]) == (3, 0.0)
    assert scaled["prune_iterations"] == [0, 430, 860] and scaled["quantize_iteration"] == 1720


def test_dns_scales_its_end_of_surgery_and_keeps_at_least_one_step():
    dns = get_method("dns")
    params = dns.params_for("lenet5")
    scaled = dns.scale_budget(params, 0.1)
    assert scaled["epochs"] == 2 and scaled["iter_stop"] == [1400, 1400, 1000, 1000]  # 19 x 0.1 = 1.9 -> 2
    tiny = dns.scale_budget(params, 1e-5)
    assert tiny["epochs"] == 1 and tiny["iter_stop"] == [1, 1, 1, 1]


def test_bc_and_sparse_vd_scale_their_epochs_and_kl_warm_up():
    bc = get_method("bc-gnj").scale_budget(get_method("bc-gnj").params_for("lenet300"), 0.03)
    assert bc["epochs"] == 6 and bc["kl_warmup_epochs"] == pytest.approx(0.6)
    vd = get_method("sparse-vd").scale_budget(get_method("sparse-vd").params_for("lenet5"), 0.1)
    assert (vd["epochs"], vd["kl_warmup_start_epochs"], vd["kl_warmup_epochs"]) == (20, 0.5, 1.5)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_a_budget_scale_of_one_changes_nothing(name):
    method = get_method(name)
    arch = sorted(method.hyperparameters)[0]
    params = method.params_for(arch)
    assert method.scale_budget(params, 1.0) == params


@pytest.mark.parametrize("scale", [0, -1, float("nan")])
def test_a_budget_scale_must_be_positive(scale):
    with pytest.raises(UsageError, match="the budget scale must be > 0"):
        get_method("dense").scale_budget(get_method("dense").params_for("lenet300"), scale)
