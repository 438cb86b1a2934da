"""The reproduction record: the small files of every cell of a workflow's runs, copied into a folder that can be
committed, and its table and figures regenerated from those files alone (no training, no model files).

    python -m bcrepro record --runs results/runs --out results/mnist   # copy the cells, then write table and figures
    python -m bcrepro record --out results/mnist                       # regenerate them from the copied cells

Per cell ``{out}/runs/{arch}/{method}/seed{n}/`` keeps ``RECORD_FILES``: the settings, training curves (one epoch per
line, six significant digits), metrics and speed-ups, and ``compressed.bin``, from which
``bcrepro.deploy.artefact.load_network`` rebuilds the network (not for the dense references, whose file is their 32-bit
weights, which say nothing a reader needs); seed 0 also keeps ``posterior.npz`` for the per-run figures, with the
weights of pruned rows and columns set to zero (the weight maps zero them anyway), so that it compresses
(docs/decisions.md, "The committed record"). A cell that started from a dense reference of its own keeps that
reference's ``REFERENCE_FILES`` in ``reference/``. ``{out}`` gets the tables and ``{out}/figures/`` the figures, as
``bcrepro table`` and ``bcrepro figures`` write them from the same runs.
Model files never enter the record. Regenerating a record from the same cells rewrites every file with the same bytes,
and removes the figures of cells no longer in it.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np

from ..atomic import write_text
from ..compress.pipeline import write_npz
from ..errors import UsageError
from ..runs import (ARTEFACT_FILE, HISTORY_FILE, METRICS_FILE, POSTERIOR_FILE, REFERENCE_DIR, RUN_FILE, SPEED_FILE,
                    compressed_cells)
from . import figures, table
from .per_run_figures import masked_weight_map

RECORD_FILES = (RUN_FILE, HISTORY_FILE, METRICS_FILE, SPEED_FILE, ARTEFACT_FILE)
FIRST_SEED_FILES = (POSTERIOR_FILE,)
REFERENCE_FILES = (RUN_FILE, HISTORY_FILE)  # of a cell's own dense reference: its settings and training curves
RUNS_DIR = "runs"
FIGURES_DIR = "figures"
HISTORY_DIGITS = 6  # significant digits of a recorded training curve: far below what a figure or a reader resolves


def copy_cells(runs: Path, out: Path) -> list[Path]:
    """Copy ``RECORD_FILES`` of every compressed cell under ``runs`` into ``out/runs/``, and ``REFERENCE_FILES`` of
    its own dense reference where it has one (a cell's older copies are replaced); return the files written."""
    runs, written = Path(runs), []
    if runs.resolve() == (Path(out) / RUNS_DIR).resolve():
        raise UsageError(f"{runs} is the record's own cells: copying them onto themselves would delete them; "
                         f"to regenerate the tables and figures, leave out --runs")
    cells = compressed_cells(runs)
    if not cells:
        raise UsageError(f"no {METRICS_FILE} found under {runs} (expected {{arch}}/{{method}}/seed{{n}}/)")
    for cell in cells:
        target = Path(out) / RUNS_DIR / cell.relative_to(runs)
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        names = RECORD_FILES + (FIRST_SEED_FILES if cell.name == "seed0" else ())
        if cell.parent.name == "dense":
            names = tuple(name for name in names if name != ARTEFACT_FILE)
        files = [(cell / name, target / name) for name in names]
        reference = cell / REFERENCE_DIR
        if (reference / RUN_FILE).exists():
            (target / REFERENCE_DIR).mkdir()
            files += [(reference / name, target / REFERENCE_DIR / name) for name in REFERENCE_FILES]
        for source, copied in files:
            if source.exists():
                copy = {POSTERIOR_FILE: copy_posterior, HISTORY_FILE: copy_history}.get(source.name, shutil.copy2)
                copy(source, copied)
                written.append(copied)
    return written


def copy_history(source: Path, target: Path) -> None:
    """``history.json`` with one epoch per line instead of one number per line, and every float to
    ``HISTORY_DIGITS`` significant digits: the curves a reader plots or ``diff``s epoch by epoch, in about half the
    bytes of full double precision, which is what lets every seed's curves stay in the record. Rounding is
    idempotent, so compacting a recorded history again gives the same bytes."""
    epochs = [_rounded(epoch) for epoch in json.loads(source.read_text())]
    lines = [json.dumps(epoch, sort_keys=True, separators=(", ", ": ")) for epoch in epochs]
    write_text(target, "[\n" + ",\n".join(lines) + "\n]\n" if lines else "[]\n")


def _rounded(value):
    """``value`` with each finite float in it to ``HISTORY_DIGITS`` significant digits (ints, strings, non-finite
    floats as they are)."""
    if isinstance(value, float):
        return float(f"{value:.{HISTORY_DIGITS}g}") if math.isfinite(value) else value
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    return value


def copy_posterior(source: Path, target: Path) -> None:
    """``posterior.npz`` with each ``weight_{i}`` zeroed outside ``outer(out_mask_{i}, in_mask_{i})``: what the
    figures draw of it, and all that a compressed file needs to hold of the pruned weights. Written by ``write_npz``:
    copying the same posterior again gives the same bytes."""
    with np.load(source) as posterior:
        arrays = {key: posterior[key] for key in posterior.files}
    for key in [key for key in arrays if key.startswith("weight_") and arrays[key].ndim == 2]:  # linear layers
        i, weight = key.removeprefix("weight_"), arrays[key]
        picture = masked_weight_map(weight, arrays[f"in_mask_{i}"], arrays[f"out_mask_{i}"])  # [in, out]
        arrays[key] = picture.T.astype(weight.dtype)  # weight * 0 or 1: exact in the weight's own precision
    write_npz(target, arrays)


def regenerate(out: Path) -> list[Path]:
    """The tables in ``out`` and the figures in ``out/figures`` from the cells in ``out/runs``."""
    out = Path(out)
    runs = table.load_runs(out / RUNS_DIR)
    if runs.empty:
        raise UsageError(f"no {METRICS_FILE} found under {out / RUNS_DIR}: copy cells first with --runs")
    written = table.write_tables(runs, out)
    written += figures.all_figures(runs, out / RUNS_DIR, out / FIGURES_DIR)
    remove_stale_figures(out / FIGURES_DIR, written)
    return written


def remove_stale_figures(folder: Path, written: list[Path]) -> list[Path]:
    """Delete the files under ``folder`` that this regeneration did not write (the figures of a cell since taken out
    of the record, a seed dropped or moved to an ablation), and the folders left empty; return the files removed. The
    record's figures are then what its cells give, as its tables are."""
    kept = {Path(path).resolve() for path in written}
    stale = sorted(path for path in Path(folder).rglob("*") if path.is_file() and path.resolve() not in kept)
    for path in stale:
        path.unlink()
    for directory in sorted((path for path in Path(folder).rglob("*") if path.is_dir()), reverse=True):
        if not any(directory.iterdir()):
            directory.rmdir()
    return stale
