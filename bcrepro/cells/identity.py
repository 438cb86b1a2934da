"""When two runs are the same training: what a run directory may resume or be declared again under."""
from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from ..methods import METHODS

# Settings that only `compress` reads: a run may resume, or be declared again, under other values, which then replace
# the stored ones (training never reads them, so the trained network is the same).
COMPRESSION_ONLY_PARAMS = ("thresholds",)


def training_identity(run: dict) -> dict:
    """What makes two runs' training the same: ``run.json``'s identity, its params without compression-only ones.

    A key the run.json lacks (a hyper-parameter added since it was written) counts as the method's default: a new key
    defaults to the behaviour the code had before it, so an older run resumes under it."""
    identity = {k: run.get(k) for k in ("arch", "method", "dataset", "seed", "init")}
    method = METHODS.get(run.get("method"))
    defaults = method.hyperparameters.get(run.get("arch"), {}) if method is not None else {}
    params = {**defaults, **(run.get("params") or {})}
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
