"""One cell (arch, method, seed) of the comparison, run the one way: ``train_cell``, ``compress_cell``,
``speedup_cell``, and ``extend_cell`` (a finished run carried on to more epochs). The CLI, the workflow (through the
CLI), the scripts, the GPU check and the tests call these.

    from bcrepro.cells import compress_cell, train_cell
    train_cell("runs/gnj", arch="lenet300", method="bc-gnj", dataset="mnist", seed=0)
    metrics = compress_cell("runs/gnj")

Each owns its checks (a run that resumes must be the same training), its output files (``bcrepro.runs`` names them)
and its MLflow logging (``Tracking``; off unless a URI or mode is given).
"""
from .compression import compress_cell
from .device import job_device, resolve_device
from .extension import extend_cell
from .identity import COMPRESSION_ONLY_PARAMS, training_identity
from .options import Tracking, open_cell_run
from .timing import speedup_cell
from .training import check_schedule, epoch_metrics, train_cell

__all__ = ["COMPRESSION_ONLY_PARAMS", "Tracking", "check_schedule", "compress_cell", "epoch_metrics", "extend_cell",
           "job_device", "open_cell_run", "resolve_device", "speedup_cell", "train_cell", "training_identity"]
