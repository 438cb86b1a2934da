"""Figures: the aggregated results beside the paper's (``aggregate_figures``), and per-run diagnostics, the authors'
tutorial plots included (``per_run_figures``; ``RUN_FIGURES`` maps each file name to the function that draws it).

``all_figures`` draws both for a runs folder, as ``bcrepro figures`` and ``bcrepro record`` do; the names below are
importable from here so that callers need not know which module draws what.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..runs import compressed_cells
from .aggregate_figures import (error_vs_compression, learned_architecture, parse_architecture,  # noqa: F401
                                speedup_measurements, speedup_vs_batch)
from .per_run_figures import (PIXEL_SIDE, RUN_FIGURES, first_layer_weights, frontier,  # noqa: F401
                              group_statistic_histograms, group_statistics_compared, groups_kept, kl_by_layer,
                              kl_layers, masked_weight_map, pixel_importance,
                              pixel_importance_map, run_figures, threshold_curves, training_curves)
from .plotting import DPI, METHOD_COLOURS, PALETTE_COLOURS, method_colour, save_figure  # noqa: F401


def all_figures(runs: pd.DataFrame, runs_dir: str | os.PathLike, figures_dir: str | os.PathLike, paper=None,
                paper_architectures=None, original=None) -> list[Path]:
    """The aggregate figures in ``figures_dir``, and ``run_figures`` of every ``runs_dir/{arch}/{method}/seed*/`` that
    has a metrics.json into ``figures_dir/runs/{arch}/{method}/seed*/``."""
    runs_dir, figures_dir = Path(runs_dir), Path(figures_dir)
    written = []
    if len(runs):
        written += error_vs_compression(runs, figures_dir, paper)
        if "architecture" in runs.columns:
            written += learned_architecture(runs, figures_dir, paper_architectures, original)
    written += speedup_vs_batch(runs_dir, figures_dir)
    for run_dir in compressed_cells(runs_dir):
        written += run_figures(run_dir, figures_dir / "runs" / run_dir.relative_to(runs_dir))
    return written
