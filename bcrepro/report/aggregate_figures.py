"""Aggregate figures: the results across runs beside the paper's, from a table with one row per (arch, method, seed)
(``bcrepro.report.table.load_runs``) and from the runs folder:

- ``error_vs_compression_{arch}.png``: test error against compression rate after pruning and after precision reduction,
  measured seeds, their mean and spread, and the paper's Table 1 point for the same method.
- ``architecture_{arch}.png``: units kept per layer, beside the original widths and the paper's Table 2.
- ``speedup.png`` (from every run's ``speed.json``): the slimmed model's measured speed-up over the original against
  batch size, per architecture and method, beside the theoretical one (the ratio of multiply-adds).

Every function returns the paths it wrote. The paper's numbers come from ``bcrepro.report.paper`` unless given.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..deploy.speed import speedups
from ..runs import SPEED_FILE
from . import paper as paper_tables
from .plotting import as_float, log_axis, method_colour, plt, save_figure  # plotting sets the Agg backend
from .table import in_method_order, read_json

# Panels of the error-vs-compression figure: x column, then the error columns to use, first available per row.
_COMPRESSION_STAGES = (
    ("after pruning", "compression_pruning", ("error_pruned_pct", "error_pct")),
    ("after precision reduction", "compression_precision", ("error_quantized_pct", "error_pruned_pct", "error_pct")),
)


# ---- small helpers ---------------------------------------------------------------------------------------------------
def _numeric(frame: pd.DataFrame, column: str) -> np.ndarray:
    """The column as float64 with NaN for missing, null or non-numeric entries (all NaN if the column is absent)."""
    if column not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _first_available(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """Per row, the first of ``columns`` that holds a finite number."""
    values = np.full(len(frame), np.nan)
    for column in columns:
        missing = ~np.isfinite(values)
        values[missing] = _numeric(frame, column)[missing]
    return values


def _spread(values: np.ndarray) -> float:
    """Standard deviation over seeds (ddof=1); 0 for a single seed."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _log_safe_error(mean: float, std: float) -> list[list[float]]:
    """Asymmetric [lower, upper] error bar that stays above zero on a log axis."""
    return [[min(std, 0.95 * mean)], [std]]


# ---- the figures -----------------------------------------------------------------------------------------------------
def error_vs_compression(runs: pd.DataFrame, out_dir: str | os.PathLike, paper=None) -> list[Path]:
    """``error_vs_compression_{arch}.png`` per architecture: test error (%) against compression rate (log axis).

    Left panel after pruning (x ``compression_pruning``, y ``error_pruned_pct`` where present, else ``error_pct``),
    right panel after precision reduction (x ``compression_precision``, y ``error_quantized_pct``, falling back the
    same way). Per method: each seed a small dot, the mean over seeds a large marker with +-1 std bars on both axes,
    and the paper's Table 1 entry (``paper[(arch, method)]``; default ``bcrepro.report.paper.PAPER_RESULTS``) a hollow
    star.
    """
    if paper is None:
        paper = paper_tables.PAPER_RESULTS
    out_dir = Path(out_dir)
    written = []
    for arch in sorted(runs["arch"].unique()):
        of_arch = runs[runs["arch"] == arch]
        methods = in_method_order(of_arch["method"])
        fig, axes = plt.subplots(1, len(_COMPRESSION_STAGES), figsize=(12, 4.5), sharey=True,
                                 layout="constrained")
        for ax, (stage, x_column, y_columns) in zip(axes, _COMPRESSION_STAGES):
            drawn_x = []
            for method in methods:
                of_method = of_arch[of_arch["method"] == method]
                x, y = _numeric(of_method, x_column), _first_available(of_method, y_columns)
                ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
                colour = method_colour(method)
                if ok.any():
                    x, y = x[ok], y[ok]
                    ax.scatter(x, y, s=14, color=colour, alpha=0.5, linewidths=0, zorder=2)
                    mx, my = float(x.mean()), float(y.mean())
                    ax.errorbar(mx, my, xerr=_log_safe_error(mx, _spread(x)), yerr=_spread(y), fmt="o", ms=8,
                                color=colour, mec="black", mew=0.6, capsize=3, zorder=3)
                    drawn_x += list(x)
                entry = paper.get((arch, method))
                if entry is not None:
                    px, py = as_float(getattr(entry, x_column, None)), as_float(getattr(entry, "error_pct", None))
                    if math.isfinite(px) and math.isfinite(py) and px > 0:
                        ax.scatter([px], [py], marker="*", s=200, facecolors="none", edgecolors=colour,
                                   linewidths=1.5, zorder=4)
                        drawn_x.append(px)
            log_axis(ax, "x", drawn_x)
            ax.set_title(stage)
            ax.set_xlabel("compression rate (original / compressed size, ×, log scale)")
            ax.grid(True, which="both", alpha=0.3)
            if not drawn_x:
                ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="grey")
        axes[0].set_ylabel("test error (%)")
        handles = [Patch(color=method_colour(m), label=m) for m in methods] + [
            Line2D([], [], ls="", marker="o", ms=4, color="grey", alpha=0.6, label="one seed"),
            Line2D([], [], ls="", marker="o", ms=8, color="grey", mec="black", label="mean ± std over seeds"),
            Line2D([], [], ls="", marker="*", ms=12, mfc="none", color="grey", label="paper (Table 1)"),
        ]
        fig.legend(handles=handles, loc="outside right center", frameon=False)
        fig.suptitle(f"{arch}: test error vs compression rate")
        written.append(save_figure(fig, out_dir / f"error_vs_compression_{arch}.png"))
    return written


def speedup_measurements(runs_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per (arch, method, seed, device, batch) with a slim variant in ``{arch}/{method}/seed*/speed.json``:
    ``speedup`` (original median / slim median), ``flops_ratio`` (original / slim multiply-adds; NaN without
    counts), ``memory_format``, the layout the file was timed in, and ``compiled``, how its networks ran (``none``:
    eager; ``torchscript``), each ``contiguous`` and ``none`` for files from before records named them."""
    rows = []
    for path in sorted(Path(runs_dir).glob(f"*/*/seed*/{SPEED_FILE}")):
        arch, method, seed = path.parent.relative_to(runs_dir).parts
        try:
            records = read_json(path)
            gains = speedups(records)
            layout = "+".join(sorted({r.get("memory_format", "contiguous") for r in records}))
            compiled = "+".join(sorted({r.get("compiled", "none") for r in records}))
        except (ValueError, KeyError, TypeError):
            continue  # a torn or foreign file: the table reports it; the figure shows what it can
        for gain in gains:
            if gain["variant"] == "slim":
                ratio = gain["flops_ratio"]
                rows.append({"arch": arch, "method": method, "seed": seed, "device": gain["device"],
                             "batch": gain["batch"], "speedup": gain["speedup"],
                             "flops_ratio": math.nan if ratio is None else ratio, "memory_format": layout,
                             "compiled": compiled})
    return pd.DataFrame(rows, columns=["arch", "method", "seed", "device", "batch", "speedup", "flops_ratio",
                                       "memory_format", "compiled"])


def speedup_vs_batch(runs_dir: str | os.PathLike, out_dir: str | os.PathLike) -> list[Path]:
    """``speedup.png``: per architecture (columns) and device (rows), the slimmed model's measured speed-up over the
    original against batch size (log-log; mean over seeds, each seed a dot) per method, and the theoretical speed-up,
    the ratio of multiply-adds, as a dashed line of the same colour. Each panel's title names the memory layouts its
    runs were timed in (``bcrepro speedup --memory-format``) and any compiler (``--compile``), which change the
    measured speed-up."""
    frame = speedup_measurements(runs_dir)
    if frame.empty:
        return []
    archs, devices = sorted(frame["arch"].unique()), sorted(frame["device"].unique())
    fig, axes = plt.subplots(len(devices), len(archs), figsize=(4.6 * len(archs), 3.6 * len(devices)),
                             squeeze=False, layout="constrained")
    for row, device in enumerate(devices):
        for col, arch in enumerate(archs):
            ax = axes[row][col]
            cell = frame[(frame["arch"] == arch) & (frame["device"] == device)]
            for method in in_method_order(cell["method"]):
                of_method = cell[cell["method"] == method]
                colour = method_colour(method)
                ax.scatter(of_method["batch"], of_method["speedup"], s=12, color=colour, alpha=0.5, linewidths=0)
                mean = of_method.groupby("batch")["speedup"].mean()
                ax.plot(mean.index, mean.values, marker="o", color=colour, label=f"{method} measured")
                theory = of_method["flops_ratio"].dropna()
                if len(theory):
                    ax.axhline(float(theory.mean()), color=colour, ls="--", lw=1.2,
                               label=f"{method} multiply-adds {float(theory.mean()):.1f}x")
            ax.axhline(1.0, color="grey", lw=0.8)
            ax.set_xscale("log", base=2)
            batches = sorted(cell["batch"].unique())
            ax.set_xticks(batches, [str(b) for b in batches])
            ax.set_yscale("log")
            ax.set_xlabel("batch size")
            ax.set_ylabel("speed-up of the slimmed model (×)")
            compilers = sorted(set(cell["compiled"].unique()) - {"none"})
            ax.set_title(f"{arch} on {device}, {' and '.join(sorted(cell['memory_format'].unique()))}"
                         + (f", {' and '.join(compilers)}" if compilers else ""))
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7, frameon=False)
    fig.suptitle("measured speed-up (solid) vs theoretical: ratio of multiply-adds (dashed)")
    return [save_figure(fig, Path(out_dir) / "speedup.png")]


def parse_architecture(value) -> list[int] | None:
    """Units per layer from a list of ints or an ``"a-b-c"`` string; None for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        return [int(part) for part in value.split("-")] if value.strip() else None
    return [int(v) for v in value]


def _seed_matrix(architectures: Sequence[list[int]], n_layers: int) -> np.ndarray:
    """Seeds x layers, NaN-padded where a run lists fewer layers.  # [seeds, n_layers]"""
    matrix = np.full((len(architectures), n_layers), np.nan)
    for row, units in enumerate(architectures):
        matrix[row, :len(units)] = units[:n_layers]
    return matrix


def learned_architecture(runs: pd.DataFrame, out_dir: str | os.PathLike, paper_architectures=None,
                         original=None) -> list[Path]:
    """``architecture_{arch}.png`` per architecture: units kept per layer (Table 2 style: kept inputs of a linear
    layer, kept filters of a conv layer), bars per method (mean over seeds, +-1 std), the original width as a dashed
    outline and the paper's Table 2 entry as a hollow star (defaults from ``bcrepro.report.paper``:
    ``PAPER_ARCHITECTURES``, ``ORIGINAL_ARCHITECTURE``). Log unit axis: widths span 784 down to ~10.
    """
    if paper_architectures is None:
        paper_architectures = paper_tables.PAPER_ARCHITECTURES
    if original is None:
        original = paper_tables.ORIGINAL_ARCHITECTURE
    out_dir = Path(out_dir)
    written = []
    parsed = runs.assign(units=[parse_architecture(v) for v in runs["architecture"]])
    parsed = parsed[[u is not None for u in parsed["units"]]]
    for arch in sorted(parsed["arch"].unique()):
        of_arch = parsed[parsed["arch"] == arch]
        methods = in_method_order(of_arch["method"])
        widths = original.get(arch)
        n_layers = max([len(u) for u in of_arch["units"]] + ([len(widths)] if widths else []))
        layers = np.arange(n_layers)
        bar_width = 0.8 / len(methods)
        fig, ax = plt.subplots(figsize=(max(6.0, 1.5 + 0.45 * n_layers * max(2, len(methods))), 4.5),
                               layout="constrained")
        if widths:
            ax.bar(layers[:len(widths)], widths, width=0.92, fill=False, edgecolor="black", linestyle="--",
                   linewidth=1.0, zorder=1)
        for k, method in enumerate(methods):
            colour = method_colour(method)
            matrix = _seed_matrix(list(of_arch[of_arch["method"] == method]["units"]), n_layers)
            x = layers - 0.4 + bar_width * (k + 0.5)
            present = np.isfinite(matrix)
            counts = present.sum(axis=0)
            mean = np.where(counts > 0, np.nansum(matrix, axis=0) / np.maximum(counts, 1), np.nan)
            std = np.array([_spread(matrix[present[:, j], j]) for j in range(n_layers)])
            lower = np.minimum(std, 0.95 * np.nan_to_num(mean))
            ax.bar(x, np.nan_to_num(mean), width=bar_width, color=colour, alpha=0.85,
                   yerr=[lower, std], capsize=2, error_kw={"elinewidth": 0.8}, zorder=2)
            published = paper_architectures.get((arch, method))
            if published:
                m = min(len(published), n_layers)
                ax.scatter(x[:m], published[:m], marker="*", s=130, color=colour, edgecolors="black",
                           linewidths=0.8, zorder=4)
        log_axis(ax, "y")
        ax.set_ylim(bottom=0.8)
        ax.set_xticks(layers)
        ax.set_xticklabels([f"{i}\n({widths[i]})" if widths and i < len(widths) else str(i) for i in layers])
        ax.set_xlabel("layer (original width)")
        ax.set_ylabel("units kept (count, log scale)")
        ax.set_title(f"{arch}: learned architecture (mean ± std over seeds)")
        ax.grid(True, axis="y", which="both", alpha=0.3)
        handles = [Patch(color=method_colour(m), label=m) for m in methods] + [
            Patch(fill=False, edgecolor="black", linestyle="--", label="original width"),
            Line2D([], [], ls="", marker="*", ms=12, color="grey", mec="black", label="paper (Table 2)"),
        ]
        fig.legend(handles=handles, loc="outside right center", frameon=False)
        written.append(save_figure(fig, out_dir / f"architecture_{arch}.png"))
    return written
