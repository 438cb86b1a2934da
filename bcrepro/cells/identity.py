"""When two runs are the same training: what a run directory may resume or be declared again under."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import UsageError
from ..methods import METHODS
from ..runs import RUN_FILE

# Settings that only `compress` reads: a run may resume, or be declared again, under other values, which then replace
# the stored ones (training never reads them, so the trained network is the same).
COMPRESSION_ONLY_PARAMS = ("thresholds",)


def params_with_defaults(run: dict) -> dict:
    """A ``run.json``'s params, with every key it lacks (a hyper-parameter added since it was written, such as
    ``preprocess`` or ``kl_images``) at the value the code had before the key existed (``Method.absent_means``), which
    is what the run trained under, even where today's default has moved on."""
    method = METHODS.get(run.get("method"))
    defaults = method.absent_means(run.get("arch")) if method is not None else {}
    return {**defaults, **(run.get("params") or {})}


def training_identity(run: dict) -> dict:
    """What makes two runs' training the same: ``run.json``'s identity, its params (``params_with_defaults``) without
    compression-only ones."""
    identity = {k: run.get(k) for k in ("arch", "method", "dataset", "seed", "init")}
    params = params_with_defaults(run)
    identity["params"] = {k: v for k, v in params.items() if k not in COMPRESSION_ONLY_PARAMS}
    return identity


def check_same_training(previous: dict, run: dict, out: Path) -> None:
    """Refuse to resume (or declare again) the run in ``out`` under other training settings, naming each one."""
    old, new = training_identity(previous), training_identity(run)
    if old == new:
        return
    differ = [k for k in old if k != "params" and old[k] != new[k]]
    old_params, new_params = old["params"], new["params"]
    differ += [f"params.{k} ({old_params.get(k)!r} there, {new_params.get(k)!r} here)"
               for k in sorted(set(old_params) | set(new_params)) if old_params.get(k) != new_params.get(k)]
    raise UsageError(f"{out} holds a run of {previous['arch']}/{previous['method']}, seed {previous['seed']} with "
                     f"other settings: {', '.join(differ)}; use another --out or delete it")


def check_init_matches(init: Path, run: dict) -> None:
    """Refuse to start from a dense reference that saw other inputs: its weights were fitted to its own data set and
    pixel scaling (``preprocess``), and under another they compute something else without any error. A reference
    without a ``run.json`` beside it (a bare state dict) is taken as given."""
    reference_file = init.parent / RUN_FILE
    if not reference_file.exists():
        return
    reference = json.loads(reference_file.read_text())
    theirs, ours = params_with_defaults(reference), params_with_defaults(run)
    differ = [f"{key} {there!r} there, {here!r} here" for key, there, here in (
        ("dataset", reference.get("dataset"), run.get("dataset")),
        ("preprocess", theirs.get("preprocess"), ours.get("preprocess"))) if there != here]
    if differ:
        raise UsageError(f"--init {init} was trained on other inputs ({'; '.join(differ)}): train a dense reference "
                         f"with the same dataset and preprocess and start from it")
