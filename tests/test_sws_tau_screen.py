"""experiments/sws_tau_screen/sws_tau_screen.py on synthetic data at a toy budget: one row per tau and measured
epoch, snapped copies measured without touching the training, and a second call that finds the runs finished."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO

SCRIPT = REPO / "experiments" / "sws_tau_screen" / "sws_tau_screen.py"


@pytest.mark.slow
def test_screen_measures_each_tau_every_few_epochs_and_resumes(tmp_path):
    dense = tmp_path / "dense"
    subprocess.run([sys.executable, "-m", "bcrepro", "-q", "train", "--arch", "lenet300", "--method", "dense",
                    "--dataset", "synthetic", "--epochs", "1", "--out", str(dense), "--mlflow-mode", "off"],
                   check=True, cwd=REPO, timeout=300)
    out = tmp_path / "screen"
    argv = [sys.executable, str(SCRIPT), "--dataset", "synthetic", "--taus", "0.01",
            "0.3", "--epochs", "3", "--every", "2", "--init", str(dense / "model.pt"), "--jobs", "2", "--out",
            str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [json.loads(line) for line in (out / "screen.jsonl").read_text().splitlines()]
    assert sorted((r["tau"], r["epoch"]) for r in rows) == [(0.01, 2), (0.01, 3), (0.3, 2), (0.3, 3)]
    for row in rows:
        assert 0.0 <= row["kept_pct"] <= 100.0 and 0 <= row["nonzero_means"] <= 16
        assert (row["kept_pct"] == 0.0) == (row["nonzero_means"] == 0)
    assert "| 0.3 | 3 |" in (out / "screen.md").read_text()
    assert all((out / "tau0.3" / f"epoch{epoch}" / "model.pt").exists() for epoch in (2, 3))  # what was measured
    again = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert again.returncode == 0, again.stdout + again.stderr
    assert len((out / "screen.jsonl").read_text().splitlines()) == 4  # finished runs are not trained again


def test_screen_refuses_a_missing_dense_reference(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--taus", "0.1", "--init",
                           str(tmp_path / "nope.pt"), "--out", str(tmp_path / "screen")],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode != 0 and "does not exist" in done.stderr
    assert not (tmp_path / "screen").exists()
