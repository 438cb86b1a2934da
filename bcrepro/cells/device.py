"""Which device a job runs on: ``auto``, ``cpu`` or ``cuda``, and with several GPUs a slot of the least busy one."""
from __future__ import annotations

from pathlib import Path

import torch

from .. import gpu_slots
from ..errors import UsageError


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but torch sees no CUDA device; use --device auto or cpu")
    if name not in ("cpu", "cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def job_device(name: str, gpu_slots_dir: str | Path | None = None, jobs_per_gpu: int = 1) -> torch.device:
    """The device of a training or compression job: ``name``, and with ``gpu_slots_dir`` on a machine with several
    visible GPUs, the GPU of a slot claimed in that folder (``bcrepro.gpu_slots``), so that jobs running at once
    spread over the GPUs, at most ``jobs_per_gpu`` on each."""
    device = resolve_device(name)
    if device.type != "cuda" or not gpu_slots_dir or torch.cuda.device_count() < 2:
        return device
    index = gpu_slots.claim(Path(gpu_slots_dir), gpu_slots.cuda_device_ids(), jobs_per_gpu)
    if index is None:
        return device
    torch.cuda.set_device(index)
    return torch.device("cuda", index)
