"""The pixel scaling of a run (``preprocess``) and the N of its KL / N (``kl_images``): each scaling equals its formula
computed by hand on the raw images, the mean image is the training split's alone, compression and every evaluation of
a run see the pixels it was trained on, the objective divides the KL by ``kl_images``, bad values are one clear error,
and runs written before the settings existed resume as they were."""
import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bcrepro import data, models
from bcrepro.cells import compress_cell, train_cell
from bcrepro.cells.compression import reference_validation_error
from bcrepro.cells.identity import check_same_training, training_identity
from bcrepro.errors import UsageError
from bcrepro.methods import METHODS, get_method
from bcrepro.report import table as tables
from bcrepro.runs import CHECKPOINT, RUN_FILE, load_dataset_for_run
from bcrepro.train import TrainConfig, train
from conftest import bcrepro, write_cell
from test_data import write_idx

N_TRAIN, N_TEST, HELD_OUT = 40, 10, 8


@pytest.fixture
def raw_mnist(tmp_path):
    """A tiny MNIST of random uint8 images in torchvision's layout; the held-out images are all 255 so that a mean
    taken over them too would be far from the training split's."""
    rng = np.random.default_rng(0)
    train_x = rng.integers(0, 256, size=(N_TRAIN, 28, 28), dtype=np.uint8)
    _, held_out = data.validation_split(N_TRAIN, HELD_OUT, seed=0)
    train_x[held_out.numpy()] = 255
    test_x = rng.integers(0, 256, size=(N_TEST, 28, 28), dtype=np.uint8)
    for split, images in (("train", train_x), ("t10k", test_x)):
        write_idx(tmp_path / "MNIST" / "raw" / f"{split}-images-idx3-ubyte", images, compress=False)
        write_idx(tmp_path / "MNIST" / "raw" / f"{split}-labels-idx1-ubyte", np.arange(len(images)) % 10,
                  compress=False)
    return tmp_path, train_x, test_x


def load(root, preprocess=None, validation_size=HELD_OUT):
    options = {} if preprocess is None else {"preprocess": preprocess}
    return data.load_dataset("mnist", data_root=root, download=False, validation_size=validation_size, **options)


# ---- each scaling is its formula -------------------------------------------------------------------------------------
def test_centred_is_x_over_256_minus_the_mean_image_of_the_training_split_only(raw_mnist):
    root, train_x, test_x = raw_mnist
    kept, held_out = (index.numpy() for index in data.validation_split(N_TRAIN, HELD_OUT, seed=0))
    mean = (train_x[kept].astype(np.float64) / 256).mean(axis=0)  # [28, 28], the training split's only
    splits = load(root, "centred")
    for name, images in (("train_x", train_x[kept]), ("val_x", train_x[held_out]), ("test_x", test_x)):
        expected = images.astype(np.float64) / 256 - mean
        assert np.allclose(getattr(splits, name)[:, 0].numpy(), expected, rtol=0, atol=1e-6), name
    assert splits.train_x.dtype == torch.float32
    assert abs(splits.train_x.mean().item()) < 1e-6  # centred on the training split
    everything = (train_x.astype(np.float64) / 256).mean(axis=0)  # what a mean over the hold-out too would give
    assert np.abs(mean - everything).max() > 0.05
    assert "x / 256 minus the mean image of the 32 training images" in splits.preprocessing


def test_unit_and_symmetric_are_exact(raw_mnist):
    root, train_x, test_x = raw_mnist
    kept = data.validation_split(N_TRAIN, HELD_OUT, seed=0)[0].numpy()
    unit, symmetric, default = load(root, "unit"), load(root, "symmetric"), load(root)
    pixels = train_x[kept].astype(np.float32)
    assert np.array_equal(unit.train_x[:, 0].numpy(), pixels / np.float32(255))
    assert np.array_equal(unit.test_x[:, 0].numpy(), test_x.astype(np.float32) / np.float32(255))
    assert np.array_equal(symmetric.train_x[:, 0].numpy(),
                          np.float32(2) * (pixels / np.float32(255) - np.float32(0.5)))
    for name in ("train_x", "val_x", "test_x"):  # the default is the symmetric scaling, to the byte
        assert torch.equal(getattr(default, name), getattr(symmetric, name))
    assert default.preprocessing == symmetric.preprocessing
    assert default.preprocessing.startswith("2 * (x / 255 - 0.5): pixels in [-1, 1]")
    assert unit.preprocessing.startswith("x / 255: pixels in [0, 1]")


def test_synthetic_reads_its_values_as_pixels_and_keeps_its_default_as_generated():
    raw_train, _, raw_test, _ = data.make_synthetic(n_train=200, n_test=20, seed=0)
    kept = data.validation_split(200, 50, seed=0)[0]
    options = dict(validation_size=50, synthetic_train=200, synthetic_test=20)
    default = data.load_dataset("synthetic", **options)
    assert torch.equal(default.train_x, raw_train[kept]) and torch.equal(default.test_x, raw_test)
    unit = data.load_dataset("synthetic", preprocess="unit", **options)
    assert torch.allclose(unit.test_x, (raw_test + 1) / 2, rtol=0, atol=1e-6)
    centred = data.load_dataset("synthetic", preprocess="centred", **options)
    pixels = (raw_train[kept].double() + 1) * 127.5  # [150, 1, 28, 28] in [0, 255]
    mean = (pixels / 256).mean(dim=0)
    assert torch.allclose(centred.test_x.double(), (raw_test.double() + 1) * 127.5 / 256 - mean, rtol=0, atol=1e-6)
    assert "; seed 0; then x / 256 minus the mean image of the 150 training images" in centred.preprocessing


# ---- bad values ------------------------------------------------------------------------------------------------------
def test_cifar10_refuses_another_scaling_before_reading_any_file(tmp_path):
    with pytest.raises(UsageError, match="preprocess 'centred' is for the MNIST-like data sets .*cifar10 is "
                                         "standardised per channel .*leave preprocess at its default 'symmetric'"):
        data.load_dataset("cifar10", data_root=tmp_path, download=False, preprocess="centred")
    with pytest.raises(data.DataNotFoundError):  # the default gets as far as looking for the files
        data.load_dataset("cifar10", data_root=tmp_path, download=False)


def test_bcrepro_train_refuses_a_cifar10_scaling_and_writes_nothing(tmp_path):
    out = tmp_path / "vgg"
    done = bcrepro("train", "--arch", "vgg16", "--method", "dense", "--dataset", "cifar10", "--data-root", tmp_path,
                   "--no-download", "--params-json", json.dumps({"preprocess": "unit"}), "--out", out)
    assert done.returncode == 1
    assert "preprocess 'unit' is for the MNIST-like data sets" in done.stderr
    assert not out.exists()


def test_an_unknown_scaling_is_refused_with_the_choices(raw_mnist):
    with pytest.raises(UsageError, match="preprocess must be one of 'symmetric', 'unit', 'centred', got 'centered'"):
        load(raw_mnist[0], "centered")


@pytest.mark.parametrize("overrides, message", [
    ({"preprocess": "centered"},
     "hyper-parameter 'preprocess' of sparse-vd on lenet300 must be one of 'symmetric', 'unit', 'centred', "
     "got 'centered' (a string)"),
    ({"kl_images": 0}, "hyper-parameter 'kl_images' of sparse-vd on lenet300 must be null (the training split's "
                       "size) or an integer >= 1, or one of 'all', got 0"),
    ({"kl_images": 6e4}, "'kl_images' of sparse-vd on lenet300 must be null (the training split's size) or an "
                         "integer >= 1, or one of 'all', got 60000.0"),
    ({"kl_images": "every"}, "'kl_images' of sparse-vd on lenet300 must be null"),
    ({"kl_images": "60000"}, "'kl_images' of sparse-vd on lenet300 must be null"),
])
def test_bad_values_are_one_error_naming_the_key(overrides, message):
    with pytest.raises(UsageError) as raised:
        get_method("sparse-vd").params_for("lenet300", overrides)
    assert message in str(raised.value)


@pytest.mark.parametrize("kl_images", [0, "every", 2.5])
def test_the_training_config_refuses_a_kl_images_below_one_or_unknown(kl_images):
    with pytest.raises(ValueError, match="kl_images must be None .*, 'all' .* or an integer >= 1, got"):
        TrainConfig(epochs=1, batch_size=8, lr=1e-3, kl_images=kl_images)


# ---- every method takes both settings; all but Sparse VD at the behaviour they had before -------------------------
@pytest.mark.parametrize("name", sorted(set(METHODS) - {"sparse-vd"}))
def test_every_other_method_defaults_to_the_symmetric_scaling_and_the_training_split_size(name):
    method = get_method(name)
    for arch in set(method.hyperparameters) - ({"lenet300"} if name == "dc" else set()):
        params = method.params_for(arch)
        assert params["preprocess"] == "symmetric" and params["kl_images"] is None
        assert method.params_for(arch, {"preprocess": "unit", "kl_images": 60000})["preprocess"] == "unit"


def test_dc_lenet300_defaults_to_caffes_unit_pixels():
    assert get_method("dc").params_for("lenet300")["preprocess"] == "unit"
    assert get_method("dc").params_for("lenet5")["preprocess"] == "symmetric"


def test_sparse_vd_defaults_to_its_authors_pixels_n_and_sampled_variance():
    method = get_method("sparse-vd")
    for arch in ("lenet300", "lenet5"):
        params = method.params_for(arch)
        assert (params["preprocess"], params["kl_images"], params["sampled_variance"]) == ("centred", "all", "alpha")


# ---- the KL divisor --------------------------------------------------------------------------------------------------
def one_full_batch_step(tmp_path, n_train: int, n_validation: int, kl_images):
    """One training step over the whole training split (batch = its size, beta = 1) of Sparse VD's LeNet-300-100 on
    synthetic data: the step's record, and the cross-entropy and KL of the same forward (same seed, same shuffle)
    recomputed on a copy of the initial network."""
    splits = data.load_dataset("synthetic", validation_size=n_validation, synthetic_train=n_train + n_validation,
                               synthetic_test=16)
    assert splits.sizes["train"] == n_train and splits.sizes["val"] == n_validation
    method = get_method("sparse-vd")
    torch.manual_seed(0)
    net = models.build("lenet300", method.layer_factory("lenet300", method.params_for("lenet300")))
    twin = copy.deepcopy(net)
    config = TrainConfig(epochs=1, batch_size=n_train, lr=1e-3, kl_warmup_epochs=0, kl_images=kl_images, seed=0)
    record = train(net, splits, config, tmp_path / "run", torch.device("cpu"))[0]
    torch.manual_seed(0)  # train() seeds the forward's noise and the shuffle with the run's seed
    order = torch.randperm(n_train, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cross_entropy = F.cross_entropy(twin(splits.train_x[order]), splits.train_y[order]).item()
        kl = twin.kl_divergence().item()
    return record, cross_entropy, kl


def test_one_step_loss_is_cross_entropy_plus_kl_over_kl_images(tmp_path):
    """The recorded loss is the cross-entropy plus the KL over 60,000, not over the 256 training images."""
    record, cross_entropy, kl = one_full_batch_step(tmp_path, 256, 0, 60_000)
    assert record["kl_weight"] == 1.0 and record["kl"] == pytest.approx(kl, rel=1e-6)
    assert record["cross_entropy"] == pytest.approx(cross_entropy, rel=1e-5)
    assert record["loss"] == pytest.approx(cross_entropy + kl / 60_000, rel=1e-5)
    assert abs(record["loss"] - (cross_entropy + kl / 256)) > 1.0  # what the default divisor would give


@pytest.mark.parametrize("n_validation", [0, 64])
def test_kl_images_all_divides_by_the_training_split_plus_the_hold_out(tmp_path, n_validation):
    """"all" divides the KL by the 192 training images plus the images held out, whatever the data's size, so a
    subset of MNIST gets its own N and full MNIST the authors' 60,000."""
    record, cross_entropy, kl = one_full_batch_step(tmp_path, 192, n_validation, "all")
    assert record["loss"] == pytest.approx(cross_entropy + kl / (192 + n_validation), rel=1e-5)


def test_a_checkpoint_written_before_kl_images_resumes_and_one_with_another_value_does_not(tmp_path):
    splits = data.load_dataset("synthetic", validation_size=0, synthetic_train=64, synthetic_test=16)
    method = get_method("sparse-vd")

    def net():
        torch.manual_seed(0)
        return models.build("lenet300", method.layer_factory("lenet300", method.params_for("lenet300")))

    config = TrainConfig(epochs=2, batch_size=32, lr=1e-3, seed=0)
    full = train(net(), splits, config, tmp_path / "full", torch.device("cpu"))
    train(net(), splits, TrainConfig(epochs=1, batch_size=32, lr=1e-3, seed=0), tmp_path / "old", torch.device("cpu"))
    state = torch.load(tmp_path / "old" / CHECKPOINT, weights_only=False)
    del state["config"]["kl_images"]  # as a checkpoint written before the setting existed
    state["config"]["epochs"] = 2
    torch.save(state, tmp_path / "old" / CHECKPOINT)
    resumed = train(net(), splits, config, tmp_path / "old", torch.device("cpu"))
    assert [r["loss"] for r in resumed] == [r["loss"] for r in full]
    with pytest.raises(ValueError, match="different training config"):
        train(net(), splits, TrainConfig(epochs=3, batch_size=32, lr=1e-3, seed=0, kl_images=60_000),
              tmp_path / "old", torch.device("cpu"))


# ---- a run's compression and evaluations see its pixels --------------------------------------------------------------
@pytest.fixture(scope="module")
def centred_run(tmp_path_factory):
    """Sparse VD on LeNet-300-100, one epoch on synthetic data scaled ``centred``, then compressed."""
    out = tmp_path_factory.mktemp("centred") / "svd"
    train_cell(out, arch="lenet300", method="sparse-vd", dataset="synthetic", epochs=1,
               params={"validation_size": 300, "preprocess": "centred", "lr": 0.01})
    return out, compress_cell(out)


def by_hand(preprocess: str) -> dict:
    """The synthetic splits of a LeNet run (2,000 training images, 300 held out, seed 0) scaled by hand."""
    train_x, train_y, test_x, test_y = data.make_synthetic((1, 28, 28), 2000, 500, seed=0)
    kept, held_out = data.validation_split(2000, 300, seed=0)
    if preprocess == "symmetric":
        scale = lambda x: x  # generated in [-1, 1]
    else:
        mean = ((train_x[kept].double() + 1) * 127.5 / 256).mean(dim=0)
        scale = lambda x: ((x.double() + 1) * 127.5 / 256 - mean).float()
    return {"val": (scale(train_x[held_out]), train_y[held_out]), "test": (scale(test_x), test_y)}


def error_pct(net, x, y) -> float:
    with torch.no_grad():
        return 100.0 * (net.eval()(x).argmax(1) != y).double().mean().item()


def trained(out):
    run = json.loads((out / RUN_FILE).read_text())
    method = get_method(run["method"])
    net = models.build(run["arch"], method.layer_factory(run["arch"], run["params"]))
    net.load_state_dict(torch.load(out / "model.pt", weights_only=True))
    return run, net


def test_compression_evaluates_the_run_on_the_pixels_it_was_trained_on(centred_run):
    out, metrics = centred_run
    run, net = trained(out)
    assert run["params"]["preprocess"] == "centred" and metrics["preprocess"] == "centred"
    assert "; then x / 256 minus the mean image of the 1700 training images" in run["preprocessing"]
    centred, symmetric = by_hand("centred"), by_hand("symmetric")
    assert metrics["error_pct"] == pytest.approx(error_pct(net, *centred["test"]), abs=1e-9)
    assert metrics["error_pct"] != pytest.approx(error_pct(net, *symmetric["test"]), abs=1e-9)
    splits = load_dataset_for_run(run, torch.device("cpu"))  # what speedup, figures and gpu_check load
    assert torch.allclose(splits.val_x, centred["val"][0], rtol=0, atol=1e-6)


def test_a_reference_run_is_evaluated_on_its_own_pixels(centred_run, tmp_path):
    out, _ = centred_run
    reference = tmp_path / "dense"
    train_cell(reference, arch="lenet300", method="dense", dataset="synthetic", epochs=1,
               params={"validation_size": 300})
    run = json.loads((out / RUN_FILE).read_text())
    error = reference_validation_error(reference, run, load_dataset_for_run(run, torch.device("cpu")),
                                       torch.device("cpu"))
    _, dense = trained(reference)
    assert error == pytest.approx(error_pct(dense, *by_hand("symmetric")["val"]), abs=1e-9)
    assert error != pytest.approx(error_pct(dense, *by_hand("centred")["val"]), abs=1e-9)


# ---- older runs ------------------------------------------------------------------------------------------------------
def test_a_run_json_without_the_settings_is_the_default_run(tmp_path):
    out = tmp_path / "dense"
    train_cell(out, arch="lenet300", method="dense", dataset="synthetic", epochs=1, params={"validation_size": 300})
    run = json.loads((out / RUN_FILE).read_text())
    assert run["params"]["preprocess"] == "symmetric" and run["params"]["kl_images"] is None
    assert run["preprocessing"].startswith("synthetic: 10 smooth class prototypes")
    older = dict(run, params={k: v for k, v in run["params"].items() if k not in ("preprocess", "kl_images")})
    (out / RUN_FILE).write_text(json.dumps(older))
    assert training_identity(older) == training_identity(run)
    check_same_training(older, run, out)
    with pytest.raises(UsageError, match=r"params.preprocess \('symmetric' there, 'unit' here\)"):
        check_same_training(older, dict(run, params=dict(run["params"], preprocess="unit")), out)
    # declared again with today's defaults: already trained, and its run.json is left as it was
    before = (out / RUN_FILE).read_bytes()
    train_cell(out, arch="lenet300", method="dense", dataset="synthetic", epochs=1, params={"validation_size": 300})
    assert (out / RUN_FILE).read_bytes() == before
    assert load_dataset_for_run(older, torch.device("cpu")).preprocessing == \
        data.load_dataset("synthetic", validation_size=300).preprocessing


# ---- the table -------------------------------------------------------------------------------------------------------
def test_the_table_names_a_scaling_other_than_the_default(tmp_path):
    write_cell(tmp_path, "lenet300", "sparse-vd", 0, preprocess="centred")
    write_cell(tmp_path, "lenet300", "bc-gnj", 0)  # written before metrics.json had the key: the default
    write_cell(tmp_path, "lenet300", "dense", 0, preprocess="symmetric")
    table = tables.comparison_table(tables.load_runs(tmp_path))
    assert dict(zip(table["method"], table["dataset"])) == {
        "dense": "mnist", "sparse-vd": "mnist (centred)", "bc-gnj": "mnist"}
    assert "`centred` x / 256 minus the mean training image" in tables.comparison_markdown(table)
    assert "centred x / 256 minus the mean training image" in tables.comparison_latex(table)
    default = table[table["method"] != "sparse-vd"]
    assert "mean training image" not in tables.comparison_markdown(default)
    assert "mean training image" not in tables.comparison_latex(default)
