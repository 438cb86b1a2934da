"""Cells run as jobs of a script (the GPU check, the experiments): several at once in worker processes of one
thread each, each job's log lines in its own file, and for each the exit status ``bcrepro`` would have given.

    with one_thread_pool(jobs=2) as pool:
        statuses = list(pool.map(train_job, cells))

    def train_job(cell):                                   # a module-level function: the workers import it
        return logged_status(out / "train.log", train_cell, out, arch=..., method=..., dataset=...)

Workers are spawned, not forked: a process forked after torch has started its OpenMP threads can hang in them. A
worker whose script is gone (killed with ``kill``, ``timeout`` or a scheduler's SIGTERM, which reach the script's
process and not its workers) stops itself within ``ORPHAN_POLL_SECONDS`` instead of training on unseen beside the
jobs that follow; each job resumes from its last epoch's checkpoint when the script runs again.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import torch

from ..data import DataNotFoundError
from ..train import TimeLimitReached, TrainingDiverged

log = logging.getLogger("bcrepro")

# The exit statuses of the `bcrepro` command (bcrepro.cli.main), and the errors that are the user's: one line, no
# traceback
OK, FAILED, TIME_LIMIT = 0, 1, 3
USER_ERRORS = (ValueError, DataNotFoundError, TrainingDiverged)
ORPHAN_POLL_SECONDS = 1.0  # how often a worker checks that the script that started it is still there


def one_thread_pool(jobs: int) -> ProcessPoolExecutor:
    """``jobs`` worker processes, each with one intra-op thread: jobs sharing a few cores would otherwise each start a
    thread per core and wait on each other."""
    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=start_worker, initargs=(os.getpid(),))


def start_worker(script_pid: int) -> None:
    """A pool worker's set-up: one intra-op thread, and a watcher that ends the worker once ``script_pid`` is no
    longer its parent (the script died and the worker was handed to another process)."""
    torch.set_num_threads(1)
    threading.Thread(target=_stop_when_orphaned, args=(script_pid,), daemon=True, name="orphan-watch").start()


def _stop_when_orphaned(script_pid: int) -> None:
    while os.getppid() == script_pid:
        time.sleep(ORPHAN_POLL_SECONDS)
    log.warning("the script that started this worker (pid %d) is gone: stopping", script_pid)
    os.kill(os.getpid(), signal.SIGTERM)


@contextmanager
def job_log(path: Path):
    """The ``bcrepro`` logger's lines (INFO and above, as the command prints them) appended to ``path`` meanwhile."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S"))
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
        handler.close()


def logged_status(path: Path, job, *args, **kwargs) -> tuple[int, str]:
    """Run ``job(*args, **kwargs)`` with its log in ``path``; returns ``bcrepro``'s exit status for it (0 done,
    3 stopped by its time limit, 1 failed) and, unless 0, the line saying why. A user's error is one line in the log,
    anything else its traceback."""
    with job_log(path):
        try:
            job(*args, **kwargs)
        except TimeLimitReached as err:
            log.info("%s", err)
            return TIME_LIMIT, str(err)
        except USER_ERRORS as err:
            log.error("error: %s", err)
            return FAILED, f"{type(err).__name__}: {err}"
        except Exception as err:  # a bug: its traceback goes to the log, the job fails, the others carry on
            log.exception("%s failed", getattr(job, "__name__", job))
            return FAILED, f"{type(err).__name__}: {err}"
    return OK, ""
