"""``bcrepro extend``: a finished run carried on to more epochs is the longer run trained from the start, exactly; an
extension that would not be (a schedule tied to the run's length, a method's own step schedule, an unfinished run)
is refused with the reason."""
import json

import pytest
import torch

from bcrepro.cells import extend_cell, train_cell
from bcrepro.cells.extension import check_extensible
from bcrepro.errors import UsageError
from conftest import bcrepro

QUICK = {"validation_size": 300, "kl_warmup_epochs": 1, "lr": 0.01, "lr_schedule": "constant"}


def _train(out, epochs, **params):
    return train_cell(out, arch="lenet300", method="bc-gnj", dataset="synthetic", seed=3, epochs=epochs,
                      params={**QUICK, **params})


def _history(run_dir):
    return [{k: v for k, v in record.items() if k != "seconds"}
            for record in json.loads((run_dir / "history.json").read_text())]


def test_extended_run_is_the_longer_run_trained_from_the_start(tmp_path):
    _train(tmp_path / "short", 2)
    _train(tmp_path / "long", 3)
    run = extend_cell(tmp_path / "short", tmp_path / "extended", epochs=3)

    assert run["params"]["epochs"] == 3
    assert run["extended_from"] == {"run": str(tmp_path / "short"), "epochs": 2}
    extended = torch.load(tmp_path / "extended" / "model.pt")
    direct = torch.load(tmp_path / "long" / "model.pt")
    assert extended.keys() == direct.keys()
    assert all(torch.equal(extended[k], direct[k]) for k in direct)
    assert _history(tmp_path / "extended") == _history(tmp_path / "long")
    # the short run is left as it was
    assert json.loads((tmp_path / "short" / "run.json").read_text())["params"]["epochs"] == 2
    assert len(_history(tmp_path / "short")) == 2

    again = bcrepro("extend", "--run", tmp_path / "short", "--epochs", 3, "--out", tmp_path / "extended")
    assert again.returncode == 0 and "nothing to do" in again.stderr


def _run(**params):
    return {"arch": "lenet300", "method": params.pop("method", "bc-gnj"), "dataset": "synthetic", "seed": 0,
            "params": {"epochs": 10, **params}}


@pytest.mark.parametrize("schedule", ["constant", "inv"])
def test_schedules_blind_to_the_run_length_extend(schedule):
    check_extensible(_run(lr_schedule=schedule), 20)


@pytest.mark.parametrize("schedule", ["cosine", "linear", "constant_then_linear"])
def test_schedules_tied_to_the_run_length_are_refused(schedule):
    with pytest.raises(UsageError, match=f"lr_schedule '{schedule}' depends on the run's length"):
        check_extensible(_run(lr_schedule=schedule), 20)


def test_method_with_its_own_step_schedule_is_refused():
    with pytest.raises(UsageError, match="dc runs its own schedule"):
        check_extensible(_run(method="dc", lr_schedule="constant"), 20)


def test_fewer_epochs_are_refused():
    with pytest.raises(UsageError, match="the run has 10 epochs: extending it needs more"):
        check_extensible(_run(lr_schedule="constant"), 10)


def test_unfinished_run_and_occupied_folder_are_one_clear_error_each(tmp_path):
    _train(tmp_path / "short", 1)
    (tmp_path / "short" / "model.pt").rename(tmp_path / "model.pt")
    done = bcrepro("extend", "--run", tmp_path / "short", "--epochs", 2, "--out", tmp_path / "ext")
    assert done.returncode == 1 and "has not finished training" in done.stderr
    assert not (tmp_path / "ext").exists()

    (tmp_path / "model.pt").rename(tmp_path / "short" / "model.pt")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    done = bcrepro("extend", "--run", tmp_path / "short", "--epochs", 2, "--out", tmp_path / "busy")
    assert done.returncode == 1 and "is not empty" in done.stderr
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["notes.txt"]

    done = bcrepro("extend", "--run", tmp_path / "nowhere", "--epochs", 2, "--out", tmp_path / "ext")
    assert done.returncode == 1 and "is not a run directory" in done.stderr
