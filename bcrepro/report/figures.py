"""Figures: the aggregated results beside the paper's, and per-run diagnostics (the authors' tutorial plots included).

Aggregate figures (one per architecture, from a table with one row per (arch, method, seed)):

- ``error_vs_compression_{arch}.png``: test error against compression rate after pruning and after precision reduction,
  measured seeds, their mean and spread, and the paper's Table 1 point for the same method.
- ``architecture_{arch}.png``: units kept per layer, beside the original widths and the paper's Table 2.
- ``speedup.png`` (from every run's ``speed.json``): the slimmed model's measured speed-up over the original against
  batch size, per architecture and method, beside the theoretical one (the ratio of multiply-adds).

Per-run figures (``run_figures``, from a run directory ``results/runs/{arch}/{method}/seed{seed}/``):

- ``group_statistics.png``: histogram of each layer's group statistic (log alpha, -E[log z^2]) and its threshold.
- ``threshold_curve.png``: validation error against the threshold, one layer varied at a time.
- ``frontier.png``: validation and test error against compression after pruning as the validation budget of the
  ``sparsest`` threshold rule grows, with the run's chosen point and the paper's Table 1 point on the same axes.
- ``training.png``: error, groups kept and KL weight per epoch.
- ``weights.png``: the authors' ``visualise_weights`` (docs/method.md), linear first layers only.
- ``pixel_importance.png``: the authors' ``visualize_pixel_importance``, 784-input linear first layers only.

Every function returns the paths it wrote ([] when the figure does not apply to the run). Files are written atomically
(a temporary name in the same folder, then ``os.replace``). The paper's numbers come from ``bcrepro.report.paper``
unless given.
"""
from __future__ import annotations

import io
import json
import math
import os
import zlib
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display on the workers

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402
from PIL import Image  # noqa: E402

from ..atomic import write_atomically  # noqa: E402
from ..runs import HISTORY_FILE, METRICS_FILE, POSTERIOR_FILE, SPEED_FILE, compressed_cells  # noqa: E402

DPI = 120
PALETTE_COLOURS = 256  # see _save

# One colour per method in every figure; the order is the legend order.
METHOD_COLOURS = {
    "dense": "#4d4d4d",
    "dc": "#1f77b4",
    "dns": "#17becf",
    "sws": "#9467bd",
    "sparse-vd": "#2ca02c",
    "bc-gnj": "#d62728",
    "bc-ghs": "#ff7f0e",
}
_SPARE_COLOURS = ["#8c564b", "#e377c2", "#bcbd22", "#7f7f7f", "#aec7e8", "#98df8a"]

PIXEL_SIDE = 28  # MNIST images are 28x28; the first linear layer of LeNet-300-100 reads them flattened row-major

# Panels of the error-vs-compression figure: x column, then the error columns to use, first available per row.
_COMPRESSION_STAGES = (
    ("after pruning", "compression_pruning", ("error_pruned_pct", "error_pct")),
    ("after precision reduction", "compression_precision", ("error_quantized_pct", "error_pruned_pct", "error_pct")),
)

RUN_FIGURES = ("group_statistics.png", "threshold_curve.png", "training.png", "weights.png", "pixel_importance.png",
               "frontier.png")


# ---- small helpers ---------------------------------------------------------------------------------------------------
def method_colour(method: str) -> str:
    """The method's fixed colour; a method outside ``METHOD_COLOURS`` gets a spare one, the same in every figure."""
    if method in METHOD_COLOURS:
        return METHOD_COLOURS[method]
    return _SPARE_COLOURS[zlib.crc32(method.encode()) % len(_SPARE_COLOURS)]


def _method_order(methods: Iterable[str]) -> list[str]:
    known = list(METHOD_COLOURS)
    return sorted(set(methods), key=lambda m: (known.index(m) if m in known else len(known), m))


def _save(fig: plt.Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically, close it, and return the path.

    The PNG holds an adaptive palette of ``PALETTE_COLOURS`` colours (median cut, no dithering) instead of 32-bit RGBA:
    about a third of the bytes for plots with a white background and a few colour maps, which keeps the committed
    record (``bcrepro.report.record``) small, with no visible change (the colour maps themselves have 256 entries).
    """
    try:
        buffer = io.BytesIO()
        fig.savefig(buffer, dpi=DPI, format="png")
        buffer.seek(0)
        with Image.open(buffer) as image:
            palette = image.convert("RGB").quantize(colors=PALETTE_COLOURS, method=Image.Quantize.MEDIANCUT,
                                                    dither=Image.Dither.NONE)
        return write_atomically(path, lambda out: palette.save(out, format="png", optimize=True))
    finally:
        plt.close(fig)


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


def _as_float(value) -> float:
    """A number from JSON or a paper entry as float; None or non-numeric as NaN."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _spread(values: np.ndarray) -> float:
    """Standard deviation over seeds (ddof=1); 0 for a single seed."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _log_safe_error(mean: float, std: float) -> list[list[float]]:
    """Asymmetric [lower, upper] error bar that stays above zero on a log axis."""
    return [[min(std, 0.95 * mean)], [std]]


def _read_json(path: Path):
    with open(path) as f:
        return json.load(f)


def _load_posterior(run_dir: str | os.PathLike) -> dict | None:
    path = Path(run_dir) / POSTERIOR_FILE
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def _layer_indices(posterior: Mapping, prefix: str) -> list[int]:
    """The ``i`` of every ``{prefix}{i}`` key, sorted."""
    return sorted(int(k[len(prefix):]) for k in posterior if k.startswith(prefix) and k[len(prefix):].isdigit())


def _threshold(posterior: Mapping, i: int) -> float:
    """Layer ``i``'s threshold; NaN (keep all) where none is stored."""
    return float(posterior[f"threshold_{i}"]) if f"threshold_{i}" in posterior else math.nan


def _statistic_label(posterior: Mapping | None) -> str:
    if posterior is None or "statistic_label" not in posterior:
        return "group statistic"
    return str(posterior["statistic_label"])


def _run_title(run_dir: Path) -> str:
    """``arch / method / seed N`` from metrics.json, or the run directory's path where that is missing."""
    metrics_path = run_dir / METRICS_FILE
    if metrics_path.exists():
        metrics = _read_json(metrics_path)
        if all(k in metrics for k in ("arch", "method", "seed")):
            return f"{metrics['arch']} / {metrics['method']} / seed {metrics['seed']}"
    return "/".join(run_dir.parts[-3:])


def _log_axis(ax: plt.Axes, which: str, values=None, min_ratio: float = 3.0) -> None:
    """Log scale on ``ax``'s ``which`` ("x" or "y") axis with plain labels at 1, 2, 5 x 10^k. Given ``values``, the
    limits are padded to span at least ``min_ratio`` so that a narrow range still carries a labelled tick."""
    axis, set_scale, set_limits = ((ax.xaxis, ax.set_xscale, ax.set_xlim) if which == "x"
                                   else (ax.yaxis, ax.set_yscale, ax.set_ylim))
    set_scale("log")
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())
    if values is None:
        return
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values) & (values > 0)]
    if values.size:
        centre = math.sqrt(values.min() * values.max())
        half_span = math.sqrt(max(min_ratio, 1.5 ** 2 * values.max() / values.min()))
        set_limits(centre / half_span, centre * half_span)


def _panel_grid(n: int, max_columns: int = 4, size=(4.2, 3.2)):
    columns = min(max_columns, n)
    rows = math.ceil(n / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(size[0] * columns, size[1] * rows), squeeze=False,
                             layout="constrained")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


# ---- pure maps (tested directly) -------------------------------------------------------------------------------------
def groups_kept(statistic: np.ndarray, threshold: float) -> int:
    """Groups kept by a threshold: a group is kept iff its statistic is below it; NaN keeps every group."""
    statistic = np.asarray(statistic)
    if threshold is None or math.isnan(threshold):
        return int(statistic.size)
    return int((statistic < threshold).sum())


def pixel_importance_map(statistic_0: np.ndarray) -> np.ndarray:
    """The authors' pixel importance ``1 - clip(exp(log alpha), 0, 1)`` of each input pixel (docs/method.md).

    ``statistic_0``: the first linear layer's per-input statistic, 784 values in row-major pixel order.
    Returns the importance as an image.  # [28, 28]
    """
    statistic = np.asarray(statistic_0, dtype=np.float64).reshape(-1)
    if statistic.size != PIXEL_SIDE * PIXEL_SIDE:
        raise ValueError(f"pixel importance needs one statistic per pixel of a {PIXEL_SIDE}x{PIXEL_SIDE} image "
                         f"({PIXEL_SIDE * PIXEL_SIDE} values); got {statistic.size}: is layer 0 a 784-input linear "
                         f"layer?")
    with np.errstate(over="ignore"):  # exp of a large statistic is inf, which the clip maps to 1
        importance = 1.0 - np.clip(np.exp(statistic), 0.0, 1.0)
    return importance.reshape(PIXEL_SIDE, PIXEL_SIDE)


def masked_weight_map(weight: np.ndarray, in_mask: np.ndarray, out_mask: np.ndarray) -> np.ndarray:
    """The authors' weight picture (docs/method.md): ``weight^T`` with pruned inputs (rows) and pruned outputs
    (columns) set to zero.

    ``weight``: a linear layer's posterior-mean weights  # [out, in]
    Returns  # [in, out]
    """
    weight = np.asarray(weight, dtype=np.float64)
    in_mask = np.asarray(in_mask, dtype=bool).reshape(-1)
    out_mask = np.asarray(out_mask, dtype=bool).reshape(-1)
    if weight.ndim != 2:
        raise ValueError(f"masked_weight_map expects a linear layer's [out, in] weight; got shape {weight.shape}")
    if weight.shape != (out_mask.size, in_mask.size):
        raise ValueError(f"weight shape {weight.shape} does not match the masks: {out_mask.size} outputs x "
                         f"{in_mask.size} inputs expected")
    return weight.T * np.outer(in_mask, out_mask)


# ---- aggregate figures -----------------------------------------------------------------------------------------------
def error_vs_compression(runs: pd.DataFrame, out_dir: str | os.PathLike, paper=None) -> list[Path]:
    """``error_vs_compression_{arch}.png`` per architecture: test error (%) against compression rate (log axis).

    Left panel after pruning (x ``compression_pruning``, y ``error_pruned_pct`` where present, else ``error_pct``),
    right panel after precision reduction (x ``compression_precision``, y ``error_quantized_pct``, falling back the
    same way). Per method: each seed a small dot, the mean over seeds a large marker with +-1 std bars on both axes,
    and the paper's Table 1 entry (``paper[(arch, method)]``; default ``bcrepro.report.paper.PAPER_RESULTS``) a hollow
    star.
    """
    if paper is None:
        from .paper import PAPER_RESULTS as paper
    out_dir = Path(out_dir)
    written = []
    for arch in sorted(runs["arch"].unique()):
        of_arch = runs[runs["arch"] == arch]
        methods = _method_order(of_arch["method"])
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
                    px, py = _as_float(getattr(entry, x_column, None)), _as_float(getattr(entry, "error_pct", None))
                    if math.isfinite(px) and math.isfinite(py) and px > 0:
                        ax.scatter([px], [py], marker="*", s=200, facecolors="none", edgecolors=colour,
                                   linewidths=1.5, zorder=4)
                        drawn_x.append(px)
            _log_axis(ax, "x", drawn_x)
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
        written.append(_save(fig, out_dir / f"error_vs_compression_{arch}.png"))
    return written


def speedup_measurements(runs_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per (arch, method, seed, device, batch) with a slim variant in ``{arch}/{method}/seed*/speed.json``:
    ``speedup`` (original median / slim median), ``flops_ratio`` (original / slim multiply-adds; NaN without
    counts), ``memory_format``, the layout the file was timed in, and ``compiled``, how its networks ran (``none``:
    eager; ``torchscript``), each ``contiguous`` and ``none`` for files from before records named them."""
    from ..deploy.speed import speedups
    rows = []
    for path in sorted(Path(runs_dir).glob(f"*/*/seed*/{SPEED_FILE}")):
        arch, method, seed = path.parent.relative_to(runs_dir).parts
        try:
            records = _read_json(path)
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
            for method in _method_order(cell["method"]):
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
    return [_save(fig, Path(out_dir) / "speedup.png")]


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
    if paper_architectures is None or original is None:
        from . import paper as paper_module
        paper_architectures = paper_module.PAPER_ARCHITECTURES if paper_architectures is None else paper_architectures
        original = paper_module.ORIGINAL_ARCHITECTURE if original is None else original
    out_dir = Path(out_dir)
    written = []
    parsed = runs.assign(units=[parse_architecture(v) for v in runs["architecture"]])
    parsed = parsed[[u is not None for u in parsed["units"]]]
    for arch in sorted(parsed["arch"].unique()):
        of_arch = parsed[parsed["arch"] == arch]
        methods = _method_order(of_arch["method"])
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
        _log_axis(ax, "y")
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
        written.append(_save(fig, out_dir / f"architecture_{arch}.png"))
    return written


# ---- per-run figures -------------------------------------------------------------------------------------------------
def group_statistic_histograms(run_dir: str | os.PathLike, out_path: str | os.PathLike) -> list[Path]:
    """One panel per group layer: histogram of its group statistic (kept groups coloured, pruned grey), the threshold
    as a vertical line, kept/total groups in the title. [] without posterior.npz or group statistics."""
    run_dir = Path(run_dir)
    posterior = _load_posterior(run_dir)
    if posterior is None:
        return []
    indices = _layer_indices(posterior, "statistic_")
    if not indices:
        return []
    label = _statistic_label(posterior)
    fig, axes = _panel_grid(len(indices))
    for ax, i in zip(axes, indices):
        statistic = np.asarray(posterior[f"statistic_{i}"], dtype=np.float64).reshape(-1)
        threshold = _threshold(posterior, i)
        finite = statistic[np.isfinite(statistic)]
        bins = np.histogram_bin_edges(finite, bins=int(np.clip(2 * np.sqrt(finite.size), 10, 60))) \
            if finite.size else 10
        kept = finite < threshold if not math.isnan(threshold) else np.ones(finite.size, dtype=bool)
        ax.hist([finite[kept], finite[~kept]], bins=bins, stacked=True, color=["#2b8cbe", "#bdbdbd"],
                label=["kept", "pruned"])
        if math.isnan(threshold):
            status = "threshold: keep all"
        else:
            ax.axvline(threshold, color="black", linestyle="--", linewidth=1.2, label=f"threshold {threshold:.3g}")
            status = f"threshold {threshold:.3g}"
        ax.set_title(f"layer {i}: kept {groups_kept(statistic, threshold)}/{statistic.size} groups\n{status}",
                     fontsize=10)
        ax.set_xlabel(f"{label} (kept iff below threshold)")
        ax.set_ylabel("groups (count)")
        ax.legend(fontsize=8, loc="upper right")
    fig.suptitle(f"{_run_title(run_dir)}: group statistics")
    return [_save(fig, out_path)]


def threshold_curves(run_dir: str | os.PathLike, out_path: str | os.PathLike) -> list[Path]:
    """One panel per group layer (metrics.json ``threshold_curve``): validation error against that layer's threshold,
    the others at their chosen values; groups kept on a twin axis; the chosen threshold marked, the keep-all error as a
    dotted line. [] when the curve is null or metrics.json is missing."""
    run_dir = Path(run_dir)
    metrics_path = run_dir / METRICS_FILE
    curves = _read_json(metrics_path).get("threshold_curve") if metrics_path.exists() else None
    if not curves:
        return []
    label = _statistic_label(_load_posterior(run_dir))
    fig, axes = _panel_grid(len(curves), size=(4.6, 3.4))
    for ax, curve in zip(axes, curves):
        points = list(zip(curve["thresholds"], curve["error_pct"], curve["groups_kept"]))
        finite = sorted((float(t), _as_float(e), _as_float(g)) for t, e, g in points if t is not None)
        keep_all = [(_as_float(e), _as_float(g)) for t, e, g in points if t is None]
        twin = ax.twinx()
        if finite:
            t, e, g = map(np.array, zip(*finite))
            ax.plot(t, e, "o-", color="C0", ms=4, label="validation error")
            twin.plot(t, g, "s--", color="C1", ms=3, alpha=0.8, label="groups kept")
        title = f"layer {curve['layer']}: chosen "
        chosen = curve.get("chosen")
        if chosen is None:
            title += "keep all"
        else:
            ax.axvline(chosen, color="C3", linewidth=1.2)
            at_chosen = [e for t, e, _ in finite if t == float(chosen)]
            if at_chosen:
                ax.plot([chosen], at_chosen[:1], "D", color="C3", ms=7, zorder=5)
            title += f"{chosen:.3g}"
        if keep_all:
            ax.axhline(keep_all[0][0], color="grey", linestyle=":")
            title += f"\nerror with no pruning here: {keep_all[0][0]:.2f}%"
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(f"threshold on {label}")
        ax.set_ylabel("validation error (%)", color="C0")
        twin.set_ylabel("groups kept (count)", color="C1")
    fig.legend(handles=[
        Line2D([], [], color="C0", marker="o", ms=4, label="validation error (left axis)"),
        Line2D([], [], color="C1", marker="s", ms=3, ls="--", label="groups kept (right axis)"),
        Line2D([], [], color="C3", marker="D", ms=6, label="chosen threshold"),
        Line2D([], [], color="grey", ls=":", label="this layer unpruned"),
    ], loc="outside lower center", ncol=4, frameon=False)
    fig.suptitle(f"{_run_title(run_dir)}: validation error vs pruning threshold\n(one layer varied, the others at "
                 f"their chosen thresholds)")
    return [_save(fig, out_path)]


def frontier(run_dir: str | os.PathLike, out_path: str | os.PathLike) -> list[Path]:
    """metrics.json ``frontier``: validation and test error of the pruned net against its compression after pruning
    (log axis) at each validation budget, the run's chosen thresholds as a diamond and the paper's point as a star.
    [] when the run has no frontier."""
    from .paper import paper_row

    run_dir = Path(run_dir)
    metrics_path = run_dir / METRICS_FILE
    metrics = _read_json(metrics_path) if metrics_path.exists() else {}
    points = [p for p in metrics.get("frontier") or [] if p.get("compression_pruning") is not None]
    if not points:
        return []
    points.sort(key=lambda p: p["compression_pruning"])
    rate = np.array([p["compression_pruning"] for p in points], dtype=float)
    fig, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    ax.plot(rate, [p["validation_error_pct"] for p in points], "o-", color="C0", ms=4, label="validation error")
    ax.plot(rate, [p["test_error_pct"] for p in points], "s-", color="C1", ms=4, label="test error")
    for p in points:
        ax.annotate(f"+{p['max_error_increase']:g}", (p["compression_pruning"], p["validation_error_pct"]),
                    textcoords="offset points", xytext=(3, 4), fontsize=7, color="C0")
    chosen_rate, chosen_error = metrics.get("compression_pruning"), metrics.get("error_pruned_pct")
    xs = list(rate)
    if chosen_rate is not None and chosen_error is not None:
        ax.plot([chosen_rate], [chosen_error], "D", color="C3", ms=8, zorder=5,
                label=f"chosen ({metrics.get('thresholds', {}).get('rule', '?')}): test error")
        xs.append(chosen_rate)
    paper = paper_row(str(metrics.get("arch")), str(metrics.get("method")))
    if paper is not None and paper.compression_pruning is not None:
        ax.plot([paper.compression_pruning], [paper.error_pct], "*", color="k", ms=13, zorder=6,
                label="paper (Table 1, test error)")
        xs.append(paper.compression_pruning)
    ax.set_xscale("log")
    _log_axis(ax, "x", xs)
    ax.set_xlabel("compression after pruning (x, log scale)")
    ax.set_ylabel("error of the pruned net (%)")
    ax.legend(fontsize=8, frameon=False)
    ax.set_title(f"{_run_title(run_dir)}: error vs compression\n(thresholds chosen on validation data at growing "
                 f"budgets, labelled in points)", fontsize=10)
    return [_save(fig, out_path)]


def training_curves(run_dir: str | os.PathLike, out_path: str | os.PathLike) -> list[Path]:
    """history.json as two panels: train and test error per epoch; the fraction of groups kept per layer (or, for a
    dense net, the training loss), with the KL weight on a twin axis. [] without history.json or epochs."""
    run_dir = Path(run_dir)
    history_path = run_dir / HISTORY_FILE
    history = _read_json(history_path) if history_path.exists() else []
    if not history:
        return []
    epochs = np.array([r["epoch"] for r in history], dtype=np.float64)

    def series(key):
        return np.array([_as_float(r.get(key)) for r in history])

    fig, (ax_error, ax_groups) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for key, name in (("train_error_pct", "train"), ("test_error_pct", "test")):
        ax_error.plot(epochs, series(key), "o-", ms=3, label=name)
    errors = np.concatenate([series("train_error_pct"), series("test_error_pct")])
    if np.isfinite(errors).any() and np.nanmin(errors) > 0:
        _log_axis(ax_error, "y", errors)
    ax_error.set_xlabel("epoch")
    ax_error.set_ylabel("error (%)")
    ax_error.set_title("train and test error")
    ax_error.grid(True, which="both", alpha=0.3)
    ax_error.legend(loc="upper right")

    n_groups = len(history[0].get("groups_kept") or [])
    if n_groups:
        for i in range(n_groups):
            fraction = [r["groups_kept"][i][0] / r["groups_kept"][i][1] if r["groups_kept"][i][1] else math.nan
                        for r in history]
            ax_groups.plot(epochs, fraction, "-", label=f"layer {i}")
        ax_groups.set_ylim(0, 1.05)
        ax_groups.set_ylabel("groups kept (fraction)")
        ax_groups.set_title("groups kept per layer and KL weight")
    else:
        ax_groups.plot(epochs, series("cross_entropy"), "-", label="cross-entropy")
        ax_groups.set_ylabel("training loss (nats per example)")
        ax_groups.set_title("training loss and KL weight")
    ax_groups.set_xlabel("epoch")
    for ax in (ax_error, ax_groups):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    legend_axes = ax_groups
    handles, labels = ax_groups.get_legend_handles_labels()
    beta = series("kl_weight")
    if np.isfinite(beta).any():
        twin = ax_groups.twinx()
        twin.plot(epochs, beta, "k--", linewidth=1.2, label="KL weight β")
        twin.set_ylabel("KL weight β (dimensionless)")
        twin_handles, twin_labels = twin.get_legend_handles_labels()
        handles, labels = handles + twin_handles, labels + twin_labels
        legend_axes = twin  # drawn last, so no line crosses the legend box
    legend_axes.legend(handles, labels, fontsize=8, loc="center right")
    fig.suptitle(f"{_run_title(run_dir)}: training")
    return [_save(fig, out_path)]


def first_layer_weights(run_dir: str | os.PathLike, out_path: str | os.PathLike) -> list[Path]:
    """The authors' ``visualise_weights`` (docs/method.md): ``weight_i^T`` of layers 0 and 1 with pruned inputs
    (rows) and outputs (columns) zeroed, 'seismic' colours clipped at +-0.5 max|w|. Linear first layers only: [] for a
    conv net or without posterior.npz."""
    run_dir = Path(run_dir)
    posterior = _load_posterior(run_dir)
    if posterior is None or "weight_0" not in posterior or posterior["weight_0"].ndim != 2:
        return []
    layers = [i for i in (0, 1) if f"weight_{i}" in posterior and posterior[f"weight_{i}"].ndim == 2]
    fig, axes = plt.subplots(1, len(layers), figsize=(5.5 * len(layers), 5), squeeze=False,
                             layout="constrained")
    for ax, i in zip(axes.flat, layers):
        in_mask, out_mask = posterior[f"in_mask_{i}"], posterior[f"out_mask_{i}"]
        picture = masked_weight_map(posterior[f"weight_{i}"], in_mask, out_mask)  # [in, out]
        limit = 0.5 * float(np.abs(picture).max()) or 1.0
        image = ax.imshow(picture, cmap="seismic", vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest")
        fig.colorbar(image, ax=ax, label="posterior-mean weight")
        ax.set_title(f"layer {i}: {int(np.sum(in_mask))}/{in_mask.size} inputs × "
                     f"{int(np.sum(out_mask))}/{out_mask.size} outputs kept", fontsize=10)
        ax.set_xlabel("output unit (index)")
        ax.set_ylabel("input unit (index)")
    fig.suptitle(f"{_run_title(run_dir)}: kept weights (pruned rows/columns white)")
    return [_save(fig, out_path)]


def pixel_importance(run_dir: str | os.PathLike, out_path: str | os.PathLike) -> list[Path]:
    """The authors' ``visualize_pixel_importance`` (docs/method.md): ``pixel_importance_map(statistic_0)`` as a
    28x28 image beside the kept-input mask ``in_mask_0``. Only for a 784-input linear first layer with a statistic;
    [] otherwise."""
    run_dir = Path(run_dir)
    posterior = _load_posterior(run_dir)
    n_pixels = PIXEL_SIDE * PIXEL_SIDE
    if posterior is None or "statistic_0" not in posterior or posterior["statistic_0"].size != n_pixels:
        return []
    if "weight_0" in posterior and posterior["weight_0"].shape[1:] != (n_pixels,):
        return []
    label = _statistic_label(posterior)
    fig, (ax_importance, ax_mask) = plt.subplots(1, 2, figsize=(9, 4.2), layout="constrained")
    image = ax_importance.imshow(pixel_importance_map(posterior["statistic_0"]), vmin=0.0, vmax=1.0,
                                 cmap=sns.diverging_palette(240, 10, as_cmap=True), interpolation="nearest")
    fig.colorbar(image, ax=ax_importance, label=f"1 − clip(exp({label}), 0, 1)")
    ax_importance.set_title("pixel importance")
    in_mask = np.asarray(posterior["in_mask_0"], dtype=bool).reshape(PIXEL_SIDE, PIXEL_SIDE)
    ax_mask.imshow(in_mask, cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
    ax_mask.set_title(f"kept input pixels: {int(in_mask.sum())}/{n_pixels}")
    for ax in (ax_importance, ax_mask):
        ax.set_xlabel("pixel column")
        ax.set_ylabel("pixel row")
    fig.suptitle(f"{_run_title(run_dir)}: first-layer input pixels")
    return [_save(fig, out_path)]


def run_figures(run_dir: str | os.PathLike, out_dir: str | os.PathLike) -> list[Path]:
    """The per-run figures that apply to ``run_dir``, written into ``out_dir`` under the names in ``RUN_FIGURES``."""
    out_dir = Path(out_dir)
    makers = (group_statistic_histograms, threshold_curves, training_curves, first_layer_weights, pixel_importance,
              frontier)
    written = []
    for make, name in zip(makers, RUN_FIGURES):
        written += make(run_dir, out_dir / name)
    return written


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
