"""The hyper-parameter search as a user runs it: a space is checked against the method's hyper-parameters before any
trial; a tiny study on synthetic data scores each trial by the kept weights of its compressed network and that
network's validation error; a rerun runs only the missing trials, two workers share one study, a killed trial is tried
again; the best trial is the feasible one with the fewest kept weights; and the workflow plans a study's workers and
report."""
from __future__ import annotations

import csv
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bcrepro.cells import train_cell
from bcrepro.deploy.artefact import load_network
from bcrepro.errors import UsageError
from bcrepro.report.study_figure import OFF_SCALE, placed_trials
from bcrepro.runs import final_error_pct, load_dataset_for_run
from bcrepro.search import Budget, best_row, parse_space
from bcrepro.search.objective import constraint
from bcrepro.search.study import load_study, trial_state
from bcrepro.train import error_rate
from conftest import REPO, bcrepro, run_bcrepro
from test_workflow import job_counts, snakemake, write_config

# Synthetic weights are small (|w| < 0.05): narrow components and no hyper-priors, or every weight falls to the zero
# component (as tests/test_sws.py); a batch of 256 makes an epoch seven steps.
SWS_PARAMS = {"validation_size": 300, "batch_size": 256, "init_std": 0.01, "zero_gamma": None, "gamma": None,
              "lr_means": 1e-3}
SPACE = {"tau": {"low": 1e-4, "high": 1e-2, "log": True},
         "pi_zero": {"low": 0.9, "high": 0.9999, "log": True, "complement": True}}
BUDGET_PCT = 50.0


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    """A dense LeNet-300-100 of two epochs on synthetic data (300 images held out): the trials start from it."""
    out = tmp_path_factory.mktemp("dense") / "dense"
    train_cell(out, arch="lenet300", method="dense", dataset="synthetic", epochs=2, params={"validation_size": 300})
    return out / "model.pt"


def search_args(folder: Path, dense: Path, trials: int, *extra, study: str = "tiny", space=None) -> list:
    """``bcrepro search`` of an SWS study on LeNet-300-100: one epoch per trial, heartbeats every second."""
    return ["search", "--study", study, "--storage", f"sqlite:///{folder / 'study.db'}", "--arch", "lenet300",
            "--method", "sws", "--dataset", "synthetic", "--epochs", 1, "--init", dense,
            "--params-json", json.dumps(SWS_PARAMS), "--space-json", json.dumps(space or SPACE),
            "--max-validation-error-pct", BUDGET_PCT, "--trials", trials, "--heartbeat", 1, "--device", "cpu",
            "--out", folder / "trials", *extra]


def table(folder: Path, study: str = "tiny") -> list[dict]:
    run_bcrepro("search-report", "--study", study, "--storage", f"sqlite:///{folder / 'study.db'}", "--out", folder)
    with open(folder / "study.csv", newline="") as handle:
        return list(csv.DictReader(handle))


# ---- the space ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("space, fixed, message", [
    ({"taux": {"low": 0.1, "high": 1.0}}, {}, "'taux' is not a hyper-parameter of sws on lenet5; known: "),
    ({"tau": {"low": 0.1, "high": 0.01}}, {}, "'tau': low (0.1) must be below high (0.01)"),
    ({"tau": {"low": 0.0, "high": 0.1, "log": True}}, {}, "'tau': a log range needs low > 0, got low = 0.0"),
    ({"tau": {"low": "1e-3", "high": 0.1}}, {}, "'tau': low must be a number, got '1e-3' (a string"),
    ({"tau": {"low": 1e-3, "high": 0.1, "type": "str"}}, {}, "'tau': type must be one of float, int"),
    ({"tau": 0.05}, {}, "'tau': expected a range"),
    ({"tau": {"low": 1e-3}}, {}, "'tau': a range needs low and high, high missing"),
    ({"tau": {"low": 1e-3, "high": 0.1, "lg": True}}, {}, "'tau': unknown key(s) ['lg']"),
    ({"batch_size": {"low": 64.5, "high": 512}}, {}, "'batch_size': low of an int range must be an integer"),
    ({"pi_zero": {"low": 0.9, "high": 1.0}}, {}, "'pi_zero': high 1.0 is not a value sws takes"),
    ({"pi_zero": {"low": 0.9, "high": 1.0, "log": True, "complement": True}}, {}, "needs high < 1"),
    ({"lr_schedule": {"choices": ["constant", "warp"]}}, {}, "'lr_schedule': choice 'warp' is not a value"),
    ({"zero_gamma": {"choices": [[5000.0, 2.0]]}}, {}, "a per-layer list cannot be a choice"),
    ({"batch_size": {"low": 64, "high": 512}}, {"batch_size": 256}, "'batch_size': it is also fixed to 256"),
    ({}, {}, "the search space is empty"),
    ([1, 2], {}, "a search space must be a mapping"),
])
def test_a_bad_space_is_one_usage_error_naming_the_entry_and_the_problem(space, fixed, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        parse_space(space, "sws", "lenet5", fixed)


def test_the_command_refuses_a_bad_space_in_one_line_before_any_trial(tmp_path, dense):
    done = bcrepro(*search_args(tmp_path, dense, 2, space={"tau": {"low": 0.1, "high": 0.01}}))
    assert done.returncode == 1
    assert "bcrepro search: error: search space entry 'tau': low (0.1) must be below high (0.01)" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "study.db").exists()


class FirstValues:
    """An Optuna trial's suggest methods, answering the low end of every range (and the first choice)."""

    def __init__(self):
        self.asked = {}

    def suggest_float(self, name, low, high, log=False):
        self.asked[name] = (low, high, log)
        return low

    def suggest_int(self, name, low, high, log=False):
        self.asked[name] = (low, high, log)
        return low

    def suggest_categorical(self, name, choices):
        self.asked[name] = tuple(choices)
        return choices[0]


def test_a_complement_range_samples_one_minus_the_value_and_types_follow_the_defaults():
    space = parse_space({**SPACE, "n_components": {"low": 9, "high": 33}, "lr_schedule": {"choices": ["cosine"]}},
                        "sws", "lenet5")
    trial = FirstValues()
    values = space.suggest(trial)
    assert trial.asked["1-pi_zero"] == (pytest.approx(1e-4), pytest.approx(0.1), True)  # 1 - pi_0 log-uniform
    assert values["pi_zero"] == pytest.approx(0.9999)  # the low end of 1 - pi_0 is the high end of pi_0
    assert trial.asked["tau"] == (1e-4, 1e-2, True) and values["tau"] == 1e-4
    assert values["n_components"] == 9 and isinstance(values["n_components"], int)  # the default is an int
    assert values["lr_schedule"] == "cosine"


# ---- feasibility and the best trial ------------------------------------------------------------------------------------
def row(number, state="COMPLETE", kept=None, error=None, feasible=None):
    return {"number": number, "state": state, "kept_weights": kept, "validation_error_pct": error,
            "feasible": feasible}


def test_the_best_trial_is_the_feasible_one_with_the_fewest_kept_weights():
    limit = Budget(max_validation_error_pct=1.2, max_error_increase=0.5).limit(reference_error_pct=0.6)
    assert limit == pytest.approx(1.1)  # the tighter bound: 0.6 + 0.5 below the absolute 1.2
    assert constraint(1.05, limit) <= 0 < constraint(1.15, limit)
    rows = [row(0, kept=900, error=1.15, feasible=False),    # fewest weights, but above the budget
            row(1, kept=2000, error=0.90, feasible=True),
            row(2, kept=1500, error=1.05, feasible=True),
            row(3, kept=1500, error=0.95, feasible=True),    # as few as 2, at a lower error
            row(4, state="FAIL"),                            # failed on its own: no measurement
            row(5, state="INTERRUPTED"),
            row(6, state="RUNNING")]
    assert best_row(rows)["number"] == 3
    assert best_row([r for r in rows if r["number"] in (0, 4, 5)]) is None


def test_the_study_figure_draws_finished_trials_and_pins_a_collapse_to_the_top_edge():
    rows = [dict(row(0, kept=900, error=2.3, feasible=True), limit_pct=2.4),
            dict(row(1, kept=50_000, error=44.9, feasible=False), limit_pct=2.4),  # a collapsed network
            dict(row(2, kept=700, error=2.6, feasible=False), limit_pct=2.4),
            dict(row(3, state="FAIL"), limit_pct=None),
            dict(row(4, state="RUNNING"), limit_pct=2.4)]
    points, top = placed_trials(rows)
    assert top == pytest.approx(OFF_SCALE * 2.4)
    assert [p["number"] for p in points] == [0, 1, 2]  # only trials with a measurement
    collapsed = points[1]
    assert collapsed["off_scale"] and collapsed["y"] == top and collapsed["error"] == 44.9
    assert [p["y"] for p in (points[0], points[2])] == [2.3, 2.6] and not points[2]["off_scale"]


def test_a_budget_needs_a_bound_and_a_reference_for_an_increase():
    with pytest.raises(UsageError, match="needs a validation-error budget"):
        Budget()
    with pytest.raises(UsageError, match="stated against a dense reference"):
        Budget(max_error_increase=0.1).limit(None)
    with pytest.raises(UsageError, match="max_validation_error_pct must be a number >= 0"):
        Budget(max_validation_error_pct=-1.0)


# ---- a real study ------------------------------------------------------------------------------------------------------
def test_a_study_scores_its_trials_and_a_rerun_runs_only_the_missing_ones(tmp_path, dense):
    stamp = tmp_path / "worker.json"
    run_bcrepro(*search_args(tmp_path, dense, 2, "--stamp", stamp, "--mlflow-mode", "deferred"))
    assert json.loads(stamp.read_text())["trials_run"] == [0, 1]
    rows = table(tmp_path)
    assert [(r["number"], r["state"]) for r in rows] == [("0", "COMPLETE"), ("1", "COMPLETE")]
    for r in rows:
        run_dir = Path(r["run_dir"])
        assert 0.9 <= float(r["pi_zero"]) <= 0.9999 and 1e-4 <= float(r["tau"]) <= 1e-2
        run = json.loads((run_dir / "run.json").read_text())
        assert run["params"]["tau"] == float(r["tau"]) and run["params"]["batch_size"] == 256
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert int(r["kept_weights"]) == metrics["nonzero_weights"] < metrics["total_weights"]
        # the network measured is the one compress evaluated: on the test split it has compress's final error...
        splits = load_dataset_for_run(run, torch.device("cpu"))
        net = load_network(run_dir / "compressed.bin", "lenet300")
        assert error_rate(net, splits.test_x, splits.test_y) == pytest.approx(final_error_pct(metrics))
        # ...and its recorded error is on the validation split
        assert float(r["validation_error_pct"]) == pytest.approx(error_rate(net, splits.val_x, splits.val_y))
        assert (r["feasible"] == "True") == (float(r["validation_error_pct"]) <= BUDGET_PCT)
        events = [json.loads(line) for line in (run_dir / "tracking.jsonl").read_text().splitlines()]
        tags = {k: v for e in events if e["event"] in ("start", "tags") for k, v in e["tags"].items()}
        assert tags["study"] == "tiny" and tags["trial"] == r["number"] and tags["method"] == "sws"
    best = json.loads((tmp_path / "best.json").read_text())
    feasible = [r for r in rows if float(r["validation_error_pct"]) <= BUDGET_PCT]
    assert feasible, "the tiny study should find a network within a 50 % budget"
    expected = min(feasible, key=lambda r: (int(r["kept_weights"]), float(r["validation_error_pct"])))
    assert best["best"]["number"] == int(expected["number"])
    assert set(best["best"]["params"]) == {"tau", "pi_zero"} and best["definition"]["method"] == "sws"
    assert (tmp_path / "study.md").read_text().count("| COMPLETE |") == 2
    assert (tmp_path / "study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    run_bcrepro(*search_args(tmp_path, dense, 2, "--stamp", stamp, "--mlflow-mode", "deferred"))
    assert json.loads(stamp.read_text())["trials_run"] == []  # the study is complete: nothing to do
    run_bcrepro(*search_args(tmp_path, dense, 3, "--stamp", stamp, "--mlflow-mode", "deferred"))
    assert json.loads(stamp.read_text())["trials_run"] == [2]  # one more, to the new total
    assert [r["state"] for r in table(tmp_path)] == ["COMPLETE"] * 3

    other = bcrepro(*search_args(tmp_path, dense, 3, space={"tau": SPACE["tau"]}))
    assert other.returncode == 1 and "study 'tiny'" in other.stderr and "space" in other.stderr


def test_a_trial_that_fails_on_its_own_is_recorded_and_counted(tmp_path):
    """DC's quantisation step far beyond one epoch's steps is refused by `train`: each trial fails, the study goes
    on to its total, and the table says why."""
    args = ["search", "--study", "late", "--storage", f"sqlite:///{tmp_path / 'study.db'}", "--arch", "lenet300",
            "--method", "dc", "--dataset", "synthetic", "--epochs", 1, "--params-json", '{"validation_size": 300}',
            "--space-json", json.dumps({"quantize_iteration": {"choices": [10 ** 9]}}),
            "--max-validation-error-pct", 50, "--trials", 2, "--device", "cpu", "--out", tmp_path / "trials"]
    run_bcrepro(*args)
    rows = table(tmp_path, "late")
    assert [r["state"] for r in rows] == ["FAIL", "FAIL"]
    assert all("quantize_iteration" in r["error"] for r in rows)
    assert json.loads((tmp_path / "best.json").read_text())["best"] is None


# ---- workers side by side, and a killed worker ---------------------------------------------------------------------------
def worker(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bcrepro", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_two_workers_on_one_storage_run_distinct_trials(tmp_path, dense):
    workers = [worker(*search_args(tmp_path, dense, 3, "--stamp", tmp_path / f"worker{k}.json")) for k in (0, 1)]
    for process in workers:
        output = process.communicate(timeout=300)[0]
        assert process.returncode == 0, output
    ran = [json.loads((tmp_path / f"worker{k}.json").read_text())["trials_run"] for k in (0, 1)]
    assert ran[0] and ran[1], f"both workers should have run trials: {ran}"
    assert not set(ran[0]) & set(ran[1]) and sorted(ran[0] + ran[1]) == [0, 1, 2]
    rows = table(tmp_path)
    assert [r["state"] for r in rows] == ["COMPLETE"] * 3
    assert len({r["run_dir"] for r in rows}) == 3


def test_a_killed_trial_is_tried_again_in_its_run_directory_when_the_study_resumes(tmp_path, dense):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    process = worker(*search_args(tmp_path, dense, 2))
    deadline = time.monotonic() + 120
    while not (tmp_path / "trials" / "trial0000" / "run.json").exists():  # kill it while its first trial trains
        assert process.poll() is None, f"the worker ended before it could be killed: {process.communicate()[0]}"
        assert time.monotonic() < deadline, "the worker's first trial did not start"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    trials = load_study("tiny", storage).get_trials()
    assert [t.state.name for t in trials] == ["RUNNING"]  # as a killed worker leaves it

    stamp = tmp_path / "resumed.json"
    run_bcrepro(*search_args(tmp_path, dense, 2, "--stamp", stamp))
    trials = {t.number: t for t in load_study("tiny", storage).get_trials()}
    assert [trial_state(trials[n]) for n in sorted(trials)] == ["INTERRUPTED", "COMPLETE", "COMPLETE"]
    retry = next(t for t in trials.values() if t.user_attrs.get("retry_of") == 0)
    assert retry.params == trials[0].params  # the same configuration...
    assert retry.user_attrs["run_dir"] == trials[0].user_attrs["run_dir"]  # ...in the same run directory
    assert sorted(json.loads(stamp.read_text())["trials_run"]) == [1, 2]


# ---- the workflow ------------------------------------------------------------------------------------------------------
SEARCH_CONFIG = """
archs: [lenet300]
datasets: {lenet300: synthetic}
searches:
  tiny:
    method: sws
    arch: lenet300
    trials: 3
    jobs: 2
    epochs: 1
    params: {batch_size: 256}
    space:
      tau: {low: 1.0e-4, high: 1.0e-2, log: true}
    budget: {max_validation_error_pct: 50}
"""


def test_the_workflow_plans_a_studys_workers_after_the_dense_reference_and_then_its_report(tmp_path):
    config = write_config(tmp_path / "search.yaml", SEARCH_CONFIG)
    result = snakemake(tmp_path, "searches", "-n", "-p", "--cores", "2", "--configfile", str(config))
    assert result.returncode == 0, result.stderr
    assert job_counts(result.stdout) == {"stage_data": 1, "init_mlflow": 1, "pretrain": 1, "search_worker": 2,
                                         "search_report": 1, "searches": 1}
    workers = [line for line in result.stdout.splitlines() if "python -m bcrepro search " in line]
    assert len(workers) == 2 and all("--init results/runs/lenet300/dense/seed0/model.pt" in w for w in workers)
    assert all("--trials 3 " in w and "--epochs 1" in w and "--max-validation-error-pct 50" in w for w in workers)


def test_a_bad_search_block_stops_the_workflow_naming_the_study(tmp_path):
    config = write_config(tmp_path / "bad.yaml", SEARCH_CONFIG.replace("tau: {low", "taux: {low"))
    result = snakemake(tmp_path, "searches", "-n", "--cores", "2", "--configfile", str(config))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "searches.tiny" in output and "'taux' is not a hyper-parameter of sws" in output
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("study_config, dense_rule", [("search_sws.yaml", "pretrain"),
                                                        ("search_sws_lenet300.yaml", "pretrain_own"),
                                                        ("search_sws_lenet300_narrow.yaml", "pretrain_own")])
def test_the_sws_study_configs_are_valid_plans(tmp_path, study_config, dense_rule):
    """Each study trains its dense start (the LeNet-300-100 one its own, on the tutorial's pixels) and two workers."""
    result = snakemake(tmp_path, "searches", "-n", "--cores", "2", "--configfile", str(REPO / "config" / study_config))
    assert result.returncode == 0, result.stderr
    jobs = job_counts(result.stdout)
    assert jobs["search_worker"] == 2 and jobs[dense_rule] == 1
