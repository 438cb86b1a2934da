"""The committed reproduction record (results/mnist/): its tables regenerate byte for byte from its per-cell files,
and every cell's compressed.bin rebuilds a network with the test error its metrics.json states."""
import json
import math
import shutil

import pytest
import torch

from bcrepro import data
from bcrepro.deploy.artefact import load_network
from bcrepro.report import record, table
from bcrepro.runs import REFERENCE_DIR, compressed_cells, final_error_pct, load_dataset_for_run
from bcrepro.train import error_rate
from conftest import REPO

RECORD = REPO / "results" / "mnist"
TABLES = ("table.csv", "table.md", "table.tex", "architectures.csv", "architectures.md")


def test_the_record_is_committed_with_its_tables_and_readme():
    assert compressed_cells(RECORD / record.RUNS_DIR), "results/mnist/runs holds no cell"
    for name in TABLES + ("README.md",):
        assert (RECORD / name).is_file(), f"results/mnist/{name} is missing"
    total = sum(path.stat().st_size for path in RECORD.rglob("*") if path.is_file())
    assert total < 8 * 2**20, f"the record is {total / 2**20:.1f} MB; keep it a few MB (no model files)"
    assert not list(RECORD.rglob("*.pt")), "model files do not belong in the record"
    for cell in compressed_cells(RECORD / record.RUNS_DIR):  # every compressed cell can be rebuilt from its file
        assert (cell / "compressed.bin").exists() or cell.parent.name == "dense", f"{cell} has no compressed.bin"


def test_copying_the_cells_and_regenerating_gives_the_committed_tables_byte_for_byte(tmp_path):
    record.copy_cells(RECORD / record.RUNS_DIR, tmp_path)
    runs = table.load_runs(tmp_path / record.RUNS_DIR)
    table.write_tables(runs, tmp_path)
    for name in TABLES:
        assert (tmp_path / name).read_bytes() == (RECORD / name).read_bytes(), f"{name} differs when regenerated"


def mnist_test_split(run: dict):
    """The run's own MNIST splits (``load_dataset_for_run``): a scaling fitted on the training split, such as
    ``centred``'s mean image, is the one the run trained with only with the run's own hold-out."""
    try:
        return load_dataset_for_run(dict(run, data_root=str(REPO / "data"), download=False), torch.device("cpu"))
    except data.DataNotFoundError as err:
        pytest.skip(f"MNIST is not staged in data/MNIST/raw (README 'Data'; .ci/run stages it from npm): {err}")


@pytest.mark.parametrize("cell", [cell for cell in compressed_cells(RECORD / record.RUNS_DIR)
                                  if (cell / "compressed.bin").exists()], ids=lambda path: "/".join(path.parts[-3:]))
def test_each_compressed_file_rebuilds_the_network_with_the_stated_test_error(cell):
    metrics = json.loads((cell / "metrics.json").read_text())
    stated = final_error_pct(metrics)
    splits = mnist_test_split(json.loads((cell / "run.json").read_text()))  # the pixels it was trained on
    net = load_network(cell / "compressed.bin", metrics["arch"])
    assert error_rate(net, splits.test_x, splits.test_y) == pytest.approx(stated, abs=1e-9)


def test_the_record_keeps_the_kept_weights_of_a_posterior_and_zeroes_the_rest(tmp_path):
    import numpy as np

    from bcrepro.report.figures import masked_weight_map

    rng = np.random.default_rng(0)
    weight = rng.normal(size=(4, 6)).astype(np.float32)  # [out, in]
    in_mask, out_mask = np.array([1, 0, 1, 1, 0, 1], bool), np.array([0, 1, 1, 0], bool)
    np.savez_compressed(tmp_path / "posterior.npz", weight_0=weight, in_mask_0=in_mask, out_mask_0=out_mask,
                        statistic_0=rng.normal(size=6), threshold_0=np.array(0.5), statistic_label=np.array("x"))
    record.copy_posterior(tmp_path / "posterior.npz", tmp_path / "copy.npz")
    copied = np.load(tmp_path / "copy.npz")
    for i in range(4):
        for j in range(6):
            expected = weight[i, j] if out_mask[i] and in_mask[j] else 0.0
            assert copied["weight_0"][i, j] == expected
    assert np.array_equal(masked_weight_map(copied["weight_0"], in_mask, out_mask),
                          masked_weight_map(weight, in_mask, out_mask))
    assert np.array_equal(copied["statistic_0"], np.load(tmp_path / "posterior.npz")["statistic_0"])
    assert str(copied["statistic_label"]) == "x"


def test_copying_a_posterior_gives_the_same_bytes_whatever_the_time_or_the_memory_order(tmp_path):
    import time

    import numpy as np

    rng = np.random.default_rng(0)
    weight = rng.normal(size=(4, 6)).astype(np.float32)  # [out, in]
    arrays = dict(in_mask_0=np.array([1, 0, 1, 1, 0, 1], bool), out_mask_0=np.array([0, 1, 1, 0], bool),
                  statistic_0=rng.normal(size=6), threshold_0=np.array(0.5), statistic_label=np.array("x"))
    np.savez_compressed(tmp_path / "c.npz", weight_0=weight, **arrays)
    np.savez_compressed(tmp_path / "f.npz", weight_0=np.asfortranarray(weight), **arrays)
    record.copy_posterior(tmp_path / "c.npz", tmp_path / "first.npz")
    time.sleep(2.1)  # zip entries store the time to 2 s
    record.copy_posterior(tmp_path / "f.npz", tmp_path / "second.npz")
    record.copy_posterior(tmp_path / "first.npz", tmp_path / "third.npz")
    first = (tmp_path / "first.npz").read_bytes()
    assert (tmp_path / "second.npz").read_bytes() == first and (tmp_path / "third.npz").read_bytes() == first


def test_the_final_error_is_the_rounded_one_where_the_method_rounds_else_the_pruned_one():
    assert final_error_pct({"error_pct": 0.7, "error_pruned_pct": 0.9, "error_quantized_pct": 1.1}) == 1.1
    assert final_error_pct({"error_pct": 0.7, "error_pruned_pct": 0.9, "error_quantized_pct": None}) == 0.9


def test_the_record_keeps_a_history_with_one_epoch_per_line_to_six_significant_digits(tmp_path):
    epochs = [{"epoch": 1, "test_error_pct": 1.53, "kl": 416067.28125, "groups_kept": [[784, 784], [300, 300]],
               "lr": 0.1 + 0.2, "weights_kept": [], "method": "bc-gnj"},
              {"epoch": 2, "test_error_pct": 1.0 / 3.0, "kl": float("1e-300"), "groups_kept": [[12, 784], [9, 300]],
               "lr": 0.000995009090909091, "weights_kept": [[448, 500]], "kl_layers": [[2196.217529296875, 0.0]],
               "loss": float("nan")}]
    # written by hand: each float to six significant digits, everything else as it was
    rounded = [{"epoch": 1, "test_error_pct": 1.53, "kl": 416067.0, "groups_kept": [[784, 784], [300, 300]],
                "lr": 0.3, "weights_kept": [], "method": "bc-gnj"},
               {"epoch": 2, "test_error_pct": 0.333333, "kl": 1e-300, "groups_kept": [[12, 784], [9, 300]],
                "lr": 0.000995009, "weights_kept": [[448, 500]], "kl_layers": [[2196.22, 0.0]]}]  # loss: NaN
    source = tmp_path / "history.json"
    source.write_text(json.dumps(epochs, indent=2))
    record.copy_history(source, tmp_path / "copy.json")
    text = (tmp_path / "copy.json").read_text()
    assert len(json.loads(text)) == len(epochs)  # the whole file is still one JSON list
    lines = text.splitlines()
    assert lines[0] == "[" and lines[-1] == "]" and len(lines) == 2 + len(epochs)
    per_line = [json.loads(line.rstrip(",")) for line in lines[1:-1]]  # one epoch per line, in order
    assert math.isnan(per_line[1].pop("loss"))
    assert per_line == rounded
    assert len(text) < len(source.read_text())
    record.copy_history(tmp_path / "copy.json", tmp_path / "again.json")  # rounding the rounded changes nothing
    assert (tmp_path / "again.json").read_text() == text
    source.write_text("[]")
    record.copy_history(source, tmp_path / "empty.json")
    assert json.loads((tmp_path / "empty.json").read_text()) == []


def test_copying_the_record_onto_itself_is_refused_and_deletes_nothing(tmp_path):
    from bcrepro.errors import UsageError

    record.copy_cells(RECORD / record.RUNS_DIR, tmp_path)
    before = sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*"))
    with pytest.raises(UsageError, match="onto themselves"):
        record.copy_cells(tmp_path / record.RUNS_DIR, tmp_path)
    assert sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*")) == before


def test_the_record_keeps_the_settings_and_curves_of_a_cells_own_reference_and_no_model(tmp_path):
    # the workflow's `references` train DC's reference into the DC run folder's reference/: the record keeps what it was
    # trained under and how, and the table still reads the cells only
    runs = tmp_path / "runs"
    cell = runs / "lenet300" / "dc" / "seed0"
    shutil.copytree(RECORD / record.RUNS_DIR / "lenet300" / "dc" / "seed0", cell)
    shutil.copytree(RECORD / record.RUNS_DIR / "lenet300" / "dense" / "seed0", cell / REFERENCE_DIR,
                    dirs_exist_ok=True)  # a run folder's every file, the record's own reference/ or not
    (cell / REFERENCE_DIR / "model.pt").write_bytes(b"weights")
    out = tmp_path / "record"
    written = record.copy_cells(runs, out)
    copied = out / record.RUNS_DIR / "lenet300" / "dc" / "seed0" / REFERENCE_DIR
    assert sorted(path.name for path in copied.iterdir()) == ["history.json", "run.json"]
    assert {copied / "history.json", copied / "run.json"} <= set(written)
    assert json.loads((copied / "run.json").read_text()) == json.loads((cell / REFERENCE_DIR / "run.json").read_text())
    cells = table.load_runs(out / record.RUNS_DIR)
    assert list(zip(cells["arch"], cells["method"], cells["seed"])) == [("lenet300", "dc", 0)]


def test_regenerating_removes_the_figures_of_a_cell_taken_out_and_keeps_the_rest(tmp_path):
    for seed in (0, 1):
        shutil.copytree(RECORD / record.RUNS_DIR / "lenet300" / "dense" / f"seed{seed}",
                        tmp_path / record.RUNS_DIR / "lenet300" / "dense" / f"seed{seed}")
    (tmp_path / "README.md").write_text("the record's own words")
    record.regenerate(tmp_path)
    figures_of_seed1 = tmp_path / record.FIGURES_DIR / "runs" / "lenet300" / "dense" / "seed1"
    assert list(figures_of_seed1.iterdir()), "the per-run figures of seed 1 were not written"
    before = {path for path in (tmp_path / record.FIGURES_DIR).rglob("*") if path.is_file()}

    shutil.rmtree(tmp_path / record.RUNS_DIR / "lenet300" / "dense" / "seed1")
    written = record.regenerate(tmp_path)
    after = {path for path in (tmp_path / record.FIGURES_DIR).rglob("*") if path.is_file()}
    assert not figures_of_seed1.exists()
    assert after == {path for path in written if record.FIGURES_DIR in path.relative_to(tmp_path).parts}
    assert after < before and not any("seed1" in path.parts for path in after)
    assert (tmp_path / "README.md").read_text() == "the record's own words"
