"""Which GPU a job runs on when several jobs share a machine's GPUs.

Snakemake counts GPUs as a resource (``--resources gpu=N``) but tells no job which one to use, so every CUDA job would
start on ``cuda:0``. A job that may use any of the visible GPUs claims a *slot* instead: each GPU has
``jobs_per_device`` slots, each an exclusive ``flock`` on a file named after the GPU's UUID in a folder the jobs
share, held until the process exits (the kernel drops it when a job dies, so a killed job frees its slot). A job takes
a free slot of the GPU with the most free slots, and waits while every slot is taken.

The UUID, not the index, names a GPU: under SLURM each job sees only its own GPU as ``cuda:0``, and two jobs on one
node must not be taken for users of the same device. Where the file system has no ``flock`` (some parallel file
systems), claiming is skipped with a warning and the job uses the first visible GPU.
"""
from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path
from typing import Callable, IO

log = logging.getLogger("bcrepro.gpu_slots")

_HELD: list[IO] = []  # open lock files of this process: closing one would free its slot


def _try_lock(path: Path) -> IO | None:
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    except OSError:
        handle.close()
        raise
    return handle


def free_slots(lock_dir: Path, device_id: str, jobs_per_device: int) -> list[int]:
    """Slots of ``device_id`` nobody holds now (each probed by taking and releasing its lock)."""
    free = []
    for slot in range(jobs_per_device):
        handle = _try_lock(lock_dir / f"{device_id}.slot{slot}.lock")
        if handle is not None:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
            free.append(slot)
    return free


def claim(lock_dir: Path, device_ids: list[str], jobs_per_device: int, poll_s: float = 5.0,
          sleep: Callable[[float], None] = time.sleep) -> int | None:
    """Index (into ``device_ids``) of the GPU this process now holds a slot of; None where locks are unsupported.

    Waits, polling every ``poll_s`` seconds, while every slot of every GPU is held."""
    if jobs_per_device < 1:
        raise ValueError(f"jobs_per_device must be >= 1, got {jobs_per_device}")
    lock_dir.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        try:
            free = [free_slots(lock_dir, device_id, jobs_per_device) for device_id in device_ids]
            for index in sorted(range(len(device_ids)), key=lambda i: -len(free[i])):
                for slot in free[index]:
                    handle = _try_lock(lock_dir / f"{device_ids[index]}.slot{slot}.lock")
                    if handle is not None:  # another job may have taken it since the probe
                        handle.seek(0)
                        handle.truncate()
                        handle.write(f"pid {os.getpid()}\n")
                        handle.flush()
                        _HELD.append(handle)
                        log.info("claimed GPU %d (%s), slot %d of %d, in %s", index, device_ids[index], slot,
                                 jobs_per_device, lock_dir)
                        return index
        except OSError as err:
            log.warning("cannot lock files in %s (%s): not claiming a GPU slot, using the first visible GPU",
                        lock_dir, err)
            return None
        if not waited:
            log.info("all %d slots of %d GPUs are taken; waiting for one to free", jobs_per_device, len(device_ids))
            waited = True
        sleep(poll_s)


def release_all() -> None:
    """Give back every slot this process holds (tests; a job's slots are freed when it exits)."""
    while _HELD:
        handle = _HELD.pop()
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def cuda_device_ids() -> list[str]:
    """A stable name per visible CUDA device: its UUID where torch reports one, else host and index."""
    import socket

    import torch

    ids = []
    for index in range(torch.cuda.device_count()):
        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        ids.append(f"GPU-{uuid}" if uuid is not None else f"{socket.gethostname()}-cuda{index}")
    return ids
