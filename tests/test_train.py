"""The training loop: schedules, resume after a kill, the NaN guard."""
import math

import pytest
import torch

from bcrepro import data, models
from bcrepro.methods import get_method
from bcrepro.train import TrainConfig, TrainingDiverged, kl_weight, lr_factor, make_optimizer, train


def test_kl_warmup_rises_linearly_to_one():
    assert kl_weight(10, 0.0) == 0.0
    assert kl_weight(10, 2.5) == pytest.approx(0.25)
    assert kl_weight(10, 10.0) == 1.0
    assert kl_weight(10, 50.0) == 1.0
    assert kl_weight(0, 0.0) == 1.0


def test_kl_warmup_can_start_late_like_sparse_vd():
    # Sparse VD's rw_linear: 0 for the first 5 epochs, then (epoch - 5) / 15, 1 from epoch 20.
    assert kl_weight(15, 4.9, start_epochs=5) == 0.0
    assert kl_weight(15, 5.0, start_epochs=5) == 0.0
    assert kl_weight(15, 12.5, start_epochs=5) == pytest.approx(0.5)
    assert kl_weight(15, 20.0, start_epochs=5) == 1.0
    assert kl_weight(0, 6.0, start_epochs=5) == 1.0


def test_lr_schedules_match_their_definitions():
    assert lr_factor("constant", 0.7) == 1.0
    assert lr_factor("cosine", 0.5) == pytest.approx(0.5)
    assert lr_factor("cosine", 1.0) == pytest.approx(0.0, abs=1e-12)
    # Sparse VD's lr_linear: constant for the first half, then linearly to zero.
    assert lr_factor("constant_then_linear", 0.25) == 1.0
    assert lr_factor("constant_then_linear", 0.75) == pytest.approx(0.5)
    assert lr_factor("linear", 0.75) == pytest.approx(0.25)
    # Caffe's inv policy (the LeNet solvers of DC and DNS): lr * (1 + gamma * iter) ** -power.
    assert lr_factor("inv", 0.3, step=10000, gamma=1e-4, power=0.75) == pytest.approx(2 ** -0.75)
    assert lr_factor("inv", 0.0, step=0) == 1.0


def test_unknown_schedule_is_a_clear_error():
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(epochs=1, batch_size=8, lr=1e-3, lr_schedule="warm-restarts")


def _setup(method="bc-gnj", seed=0):
    splits = data.load_dataset("synthetic", validation_size=0, synthetic_train=256, synthetic_test=64)
    m = get_method(method)
    torch.manual_seed(seed)
    net = models.build("lenet300", m.layer_factory("lenet300", m.params_for("lenet300")))
    config = TrainConfig(epochs=3, batch_size=64, lr=1e-3, kl_warmup_epochs=1.5, seed=seed)
    return net, splits, config


class _Killed(Exception):
    pass


def _kill_after(epoch):
    def callback(record):
        if record["epoch"] == epoch:
            raise _Killed()
    return callback


@pytest.mark.parametrize("method", ["bc-gnj", "bc-ghs"])
def test_resumed_run_ends_like_an_uninterrupted_one(tmp_path, method):
    net, splits, config = _setup(method)
    full = train(net, splits, config, tmp_path / "full", torch.device("cpu"))

    net2, _, _ = _setup(method)
    with pytest.raises(_Killed):
        train(net2, splits, config, tmp_path / "killed", torch.device("cpu"), on_epoch_end=_kill_after(2))
    net3, _, _ = _setup(method)  # a fresh process would rebuild the model from scratch
    resumed = train(net3, splits, config, tmp_path / "killed", torch.device("cpu"))

    drop_time = lambda history: [{k: v for k, v in r.items() if k != "seconds"} for r in history]
    assert drop_time(resumed) == drop_time(full)
    for (name, a), b in zip(net.state_dict().items(), net3.state_dict().values()):
        assert torch.equal(a, b), name


def test_checkpoint_of_a_different_config_is_refused(tmp_path):
    net, splits, config = _setup()
    train(net, splits, TrainConfig(epochs=1, batch_size=64, lr=1e-3), tmp_path, torch.device("cpu"))
    with pytest.raises(ValueError, match="different training config"):
        train(net, splits, config, tmp_path, torch.device("cpu"))


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(tmp_path):
    net, splits, config = _setup()
    config.epochs = 1
    train(net, splits, config, tmp_path, torch.device("cpu"))
    saved = (tmp_path / "checkpoint.pt").read_bytes()
    with torch.no_grad():
        net.classifier[0].weight_mu[0, 0] = math.nan
    config2 = TrainConfig(epochs=1, batch_size=64, lr=1e-3, kl_warmup_epochs=1.5, seed=1)
    with pytest.raises(TrainingDiverged, match="loss is nan at epoch 1 step 1"):
        train(net, splits, config2, tmp_path / "other", torch.device("cpu"))
    assert (tmp_path / "checkpoint.pt").read_bytes() == saved
    assert not (tmp_path / "other" / "checkpoint.pt").exists()


def test_training_is_deterministic_on_cpu(tmp_path):
    runs = []
    for name in ("a", "b"):
        net, splits, config = _setup()
        config.epochs = 1
        runs.append(train(net, splits, config, tmp_path / name, torch.device("cpu"))[-1]["loss"])
    assert runs[0] == runs[1]


def test_time_limit_stops_after_a_checkpoint_and_a_rerun_finishes(tmp_path):
    from bcrepro.train import TimeLimitReached
    net, splits, config = _setup()
    with pytest.raises(TimeLimitReached, match="after epoch 1/3"):
        train(net, splits, config, tmp_path, torch.device("cpu"), time_limit_s=0.0)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["epoch"] == 0
    history = train(net, splits, config, tmp_path, torch.device("cpu"))
    assert [r["epoch"] for r in history] == [1, 2, 3]


def test_after_step_runs_once_after_every_optimiser_step(tmp_path):
    net, splits, config = _setup("dense")
    seen = []
    first = net.prunable_layers()[0]

    def after_step(global_step):
        seen.append((global_step, first.weight.grad is not None))  # after backward and the update

    train(net, splits, config, tmp_path, torch.device("cpu"), after_step=after_step)
    assert [step for step, _ in seen] == list(range(3 * 4))  # 256 examples / 64 per batch, 3 epochs
    assert all(has_grad for _, has_grad in seen)


def test_sgd_with_momentum_and_weight_decay_is_available(tmp_path):
    net, splits, _ = _setup("dense")
    config = TrainConfig(epochs=1, batch_size=64, lr=0.01, optimizer="sgd", momentum=0.9, weight_decay=5e-4,
                         lr_schedule="inv")
    optimizer = make_optimizer(net, config, torch.device("cpu"))
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["momentum"] == 0.9 and optimizer.defaults["weight_decay"] == 5e-4
    before = net.prunable_layers()[0].weight.detach().clone()
    history = train(net, splits, config, tmp_path, torch.device("cpu"))
    assert history[-1]["lr"] == pytest.approx(0.01 * (1 + 1e-4 * 3) ** -0.75)  # the last of 4 steps
    assert not torch.equal(before, net.prunable_layers()[0].weight)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        TrainConfig(epochs=1, batch_size=8, lr=1e-3, optimizer="rmsprop")


def test_a_finished_checkpoint_resumes_on_another_device_without_touching_its_rng_states(tmp_path):
    """The resume path maps nothing to the training device: a GPU run rerun after its last epoch (preempted between
    the checkpoint and model.pt, or a rerun with no steps left) restores CPU RNG states. The 'meta' device stands in
    for CUDA here: mapping the checkpoint to it, as ``map_location=device`` did, hands ``torch.set_rng_state`` a
    tensor that is not a CPU ByteTensor and fails the same way."""
    net, splits, config = _setup()
    full = train(net, splits, config, tmp_path, torch.device("cpu"))
    other, _, _ = _setup(seed=1)
    resumed = train(other, splits, config, tmp_path, torch.device("meta"))  # no epoch left to run
    assert resumed == full
    assert all(p.device.type == "meta" for p in other.parameters())


def test_checkpoint_rng_states_are_cpu_byte_tensors(tmp_path):
    from bcrepro.runs import CHECKPOINT
    from bcrepro.train import read_checkpoint
    net, splits, config = _setup()
    config.epochs = 1
    train(net, splits, config, tmp_path, torch.device("cpu"))
    rng = read_checkpoint(tmp_path / CHECKPOINT)["rng"]
    for state in (rng["torch"], rng["shuffle"]):
        assert state.device.type == "cpu" and state.dtype == torch.uint8


def test_a_shuffling_state_of_another_device_type_is_one_clear_error(tmp_path):
    """A CUDA generator's state (16 bytes: seed and offset) cannot seed the CPU one, and the other way round."""
    from bcrepro.train import _set_rng_state
    cuda_like = {"torch": torch.get_rng_state(), "shuffle": torch.zeros(16, dtype=torch.uint8)}
    with pytest.raises(ValueError, match="cannot move between CPU and CUDA mid-way"):
        _set_rng_state(cuda_like, torch.Generator())


def test_history_splits_the_kl_by_layer_and_counts_the_clamps_floor_by_hand(tmp_path):
    """Each group layer's KL is its own ``kl_divergence()``; the floor is ½(c − 1 − log c) per weight held at the
    clamp c, the KL that weight keeps over its best variance (σ² = 1 under the N(0, 1) prior)."""
    net, splits, config = _setup()
    config.epochs = 1
    first = net.group_layers()[0]
    first.clip_var, first.clip_mode, c = 0.04, "parameter", 0.04
    with torch.no_grad():  # weights far above the clamp: the clamp holds them at its bound, some to the end
        first.weight_logvar[0, :7] = 3.0
    history = train(net, splits, config, tmp_path, torch.device("cpu"))
    rows = history[-1]["kl_layers"]
    assert len(rows) == len(net.group_layers())
    for (kl, floor), layer in zip(rows, net.group_layers()):
        assert kl == pytest.approx(float(layer.kl_divergence().detach()), rel=1e-6)
    held = int((first.weight_logvar >= math.log(c) - 1e-6).sum())
    assert held >= 1
    assert rows[0][1] == pytest.approx(held * 0.5 * (c - 1 - math.log(c)))
    assert 0.5 * (c - 1 - math.log(c)) == pytest.approx(1.1294, abs=1e-4)  # the 1.13 nats per clamped weight
    assert all(floor == 0.0 for _, floor in rows[1:])  # unclamped layers keep no floor


def test_snapshot_epochs_keep_the_network_as_it_was_after_those_epochs(tmp_path):
    from bcrepro.runs import CHECKPOINT
    net, splits, config = _setup()
    seen = {}
    train(net, splits, config, tmp_path, torch.device("cpu"), snapshot_epochs={1, 2},
          on_epoch_end=lambda record: seen.setdefault(record["epoch"], {
              k: v.clone() for k, v in net.state_dict().items()}))
    assert sorted(p.name for p in tmp_path.glob("epoch*")) == ["epoch1", "epoch2"]
    for epoch in (1, 2):
        kept = torch.load(tmp_path / f"epoch{epoch}" / "model.pt", weights_only=True)
        assert all(torch.equal(kept[k], v) for k, v in seen[epoch].items())
        import json
        assert len(json.loads((tmp_path / f"epoch{epoch}" / "history.json").read_text())) == epoch
    assert torch.load(tmp_path / CHECKPOINT, weights_only=False)["epoch"] == 2  # the run itself goes on to epoch 3
