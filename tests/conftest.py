"""Shared test setup: one intra-op thread for the whole suite (on a 2-core machine a second OpenMP thread waiting on a
busy core makes small kernels tens of times slower, and the tests' tensors are small), the repository's root, and
the two ways a test runs the ``bcrepro`` command: in-process (most tests) or as a process (the few that test the
process boundary: the entry point, exit statuses, environment)."""
import io
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
