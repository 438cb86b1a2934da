"""Shared test setup: one intra-op thread for the whole suite (on a 2-core machine a second OpenMP thread waiting on a
busy core makes small kernels tens of times slower, and the tests' tensors are small), the repository's root, and
the two ways a test runs the ``bcrepro`` command: in-process (most tests) or as a process (the few that test the
process boundary: the entry point, exit statuses, environment)."""
import io
import json
import logging
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from bcrepro.cells import train_cell

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]



@dataclass
class Done:
    """What a ``bcrepro`` command left: its exit status and what it printed (``subprocess.CompletedProcess``'s
    names)."""
    returncode: int
    stdout: str
    stderr: str


def bcrepro(*args) -> Done:
    """``bcrepro ARGS`` in this process, as ``cli.main`` runs it: its exit status, standard output, and standard
    error with the log lines (INFO and above) that a user sees there."""
    from bcrepro import cli

    out, err = io.StringIO(), io.StringIO()
    logger = logging.getLogger("bcrepro")
    handler, level = logging.StreamHandler(err), logger.level
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = cli.main([str(a) for a in args])
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return Done(code, out.getvalue(), err.getvalue())


def bcrepro_process(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m bcrepro ARGS`` as a separate process, as a user or the workflow runs it."""
    return subprocess.run([sys.executable, "-m", "bcrepro", *map(str, args)], capture_output=True, text=True,
                          env=env)


def run_bcrepro(*args) -> Done:
    """``bcrepro ARGS`` in this process; fails the test with what it printed if it fails."""
    done = bcrepro(*args)
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture
def dense_lenet300(tmp_path):
    """A dense LeNet-300-100 trained 6 epochs on synthetic data (300 images held out): the baselines' reference."""
    out = tmp_path / "dense"
    train_cell(out, arch="lenet300", method="dense", dataset="synthetic", epochs=6,
               params={"validation_size": 300})
    return out / "model.pt"


LENET300_WEIGHTS = 784 * 300 + 300 * 100 + 100 * 10  # 266,200
LENET5_WEIGHTS = 20 * 25 + 50 * 20 * 25 + 800 * 500 + 500 * 10  # 430,500


def fake_metrics(arch: str, method: str, seed: int = 0, **overrides) -> dict:
    """A metrics.json as ``compress_cell`` writes it (the keys the table and figures read), numbers chosen by the
    caller through ``overrides``."""
    metrics = {
        "arch": arch, "method": method, "seed": seed, "dataset": "mnist",
        "error_pct": 1.0, "error_pruned_pct": 1.1, "error_quantized_pct": 1.2,
        "total_weights": LENET300_WEIGHTS, "nonzero_weights": LENET300_WEIGHTS // 10,
        "compression_pruning": 10.0, "compression_precision": 40.0, "compression_max": 60.0,
        "bits": [8, 9, 14], "architecture": [278, 98, 13], "train_seconds": 12.5, "mlflow_run_id": None,
        "threshold_curve": None, "thresholds": {"rule": "auto", "thresholds": None},
    }
    metrics.update(overrides)
    return metrics


def write_cell(root: Path, arch: str, method: str, seed: int = 0, *, speed=None, history=None, **overrides) -> Path:
    """A cell's run directory ``root/arch/method/seed<seed>`` with its metrics.json (``fake_metrics``) and, when
    given, its speed.json and history.json."""
    run_dir = Path(root) / arch / method / f"seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps(fake_metrics(arch, method, seed, **overrides)))
    for name, content in (("speed.json", speed), ("history.json", history)):
        if content is not None:
            (run_dir / name).write_text(json.dumps(content))
    return run_dir
