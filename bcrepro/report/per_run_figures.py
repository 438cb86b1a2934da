"""Per-run figures: diagnostics of one run directory ``{runs_dir}/{arch}/{method}/seed{seed}/``, the authors' tutorial
plots included. ``RUN_FIGURES`` maps each file name to the function that draws it:

- ``group_statistics.png``: histogram of each layer's group statistic (log alpha, -E[log z^2]) and its threshold.
- ``threshold_curve.png``: validation error against the threshold, one layer varied at a time.
- ``training.png``: error, groups kept and KL weight per epoch.
- ``weights.png``: the authors' ``visualise_weights`` (docs/method.md), linear first layers only.
- ``pixel_importance.png``: the authors' ``visualize_pixel_importance``, 784-input linear first layers only.
- ``kl_layers.png``: each layer's KL per epoch and the part of it that the variance clamp holds (runs whose history
  has per-layer KL).
- ``frontier.png``: validation and test error against compression after pruning as the validation budget of the
  ``sparsest`` threshold rule grows, with the run's chosen point and the paper's Table 1 point on the same axes.

Every function takes the run directory and the path to write, and returns the paths it wrote ([] when the figure does
not apply to the run). Files are written atomically (``plotting.save_figure``).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from ..compress.masks import keeps_all
from ..runs import HISTORY_FILE, METRICS_FILE, POSTERIOR_FILE
from .paper import paper_row
from .plotting import as_float, log_axis, plt, save_figure  # plotting sets the Agg backend
from .table import read_json

PIXEL_SIDE = 28  # MNIST images are 28x28; the first linear layer of LeNet-300-100 reads them flattened row-major


# ---- small helpers ---------------------------------------------------------------------------------------------------
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
        metrics = read_json(metrics_path)
        if all(k in metrics for k in ("arch", "method", "seed")):
            return f"{metrics['arch']} / {metrics['method']} / seed {metrics['seed']}"
    return "/".join(run_dir.parts[-3:])


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
    """Groups kept by a threshold: a group is kept iff its statistic is below it (``keeps_all`` thresholds keep every
    group)."""
    statistic = np.asarray(statistic)
    if keeps_all(threshold):
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


# ---- the figures -----------------------------------------------------------------------------------------------------
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
        kept = finite < threshold if not keeps_all(threshold) else np.ones(finite.size, dtype=bool)
        ax.hist([finite[kept], finite[~kept]], bins=bins, stacked=True, color=["#2b8cbe", "#bdbdbd"],
                label=["kept", "pruned"])
        if keeps_all(threshold):
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
    return [save_figure(fig, out_path)]


def group_statistics_compared(run_dirs: Mapping[str, str | os.PathLike], out_path: str | os.PathLike,
                              title: str) -> list[Path]:
    """One panel per group layer: the group statistic of each run (``label -> run directory`` with posterior.npz) as
    an outlined histogram on shared bins, its threshold as a dashed line in the same colour, kept/total groups in the
    legend: how two trainings' posteriors and chosen thresholds differ. Runs without posterior.npz are left out;
    [] when none has one."""
    posteriors = {label: _load_posterior(Path(d)) for label, d in run_dirs.items()}
    posteriors = {label: p for label, p in posteriors.items() if p is not None and _layer_indices(p, "statistic_")}
    if not posteriors:
        return []
    indices = sorted(set().union(*(_layer_indices(p, "statistic_") for p in posteriors.values())))
    fig, axes = _panel_grid(len(indices))
    colours = sns.color_palette("tab10", len(posteriors))
    for ax, i in zip(axes, indices):
        values = {label: np.asarray(p[f"statistic_{i}"], dtype=np.float64).reshape(-1)
                  for label, p in posteriors.items() if f"statistic_{i}" in p}
        finite = np.concatenate([v[np.isfinite(v)] for v in values.values()])
        bins = np.histogram_bin_edges(finite, bins=int(np.clip(2 * np.sqrt(finite.size / len(values)), 10, 60)))
        for colour, (label, statistic) in zip(colours, values.items()):
            threshold = _threshold(posteriors[label], i)
            kept = groups_kept(statistic, threshold)
            ax.hist(statistic[np.isfinite(statistic)], bins=bins, histtype="step", color=colour, linewidth=1.4,
                    label=f"{label}: {kept}/{statistic.size} kept")
            if not keeps_all(threshold):
                ax.axvline(threshold, color=colour, linestyle="--", linewidth=1.0)
        ax.set_title(f"layer {i}", fontsize=10)
        ax.set_xlabel(f"{_statistic_label(next(iter(posteriors.values())))} (kept iff below its threshold)")
        ax.set_ylabel("groups (count)")
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(title)
    return [save_figure(fig, out_path)]


def threshold_curves(run_dir: str | os.PathLike, out_path: str | os.PathLike) -> list[Path]:
    """One panel per group layer (metrics.json ``threshold_curve``): validation error against that layer's threshold,
    the others at their chosen values; groups kept on a twin axis; the chosen threshold marked, the keep-all error as a
    dotted line. [] when the curve is null or metrics.json is missing."""
    run_dir = Path(run_dir)
    metrics_path = run_dir / METRICS_FILE
    curves = read_json(metrics_path).get("threshold_curve") if metrics_path.exists() else None
    if not curves:
        return []
    label = _statistic_label(_load_posterior(run_dir))
    fig, axes = _panel_grid(len(curves), size=(4.6, 3.4))
    for ax, curve in zip(axes, curves):
        points = list(zip(curve["thresholds"], curve["error_pct"], curve["groups_kept"]))
        finite = sorted((float(t), as_float(e), as_float(g)) for t, e, g in points if t is not None)
        keep_all = [(as_float(e), as_float(g)) for t, e, g in points if t is None]
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
    return [save_figure(fig, out_path)]


def frontier(run_dir: str | os.PathLike, out_path: str | os.PathLike) -> list[Path]:
    """metrics.json ``frontier``: validation and test error of the pruned net against its compression after pruning
    (log axis) at each validation budget, the run's chosen thresholds as a diamond and the paper's point as a star.
    [] when the run has no frontier."""
    run_dir = Path(run_dir)
    metrics_path = run_dir / METRICS_FILE
    metrics = read_json(metrics_path) if metrics_path.exists() else {}
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
    log_axis(ax, "x", xs)
    ax.set_xlabel("compression after pruning (x, log scale)")
    ax.set_ylabel("error of the pruned net (%)")
    ax.legend(fontsize=8, frameon=False)
    ax.set_title(f"{_run_title(run_dir)}: error vs compression\n(thresholds chosen on validation data at growing "
                 f"budgets, labelled in points)", fontsize=10)
    return [save_figure(fig, out_path)]


def training_curves(run_dir: str | os.PathLike, out_path: str | os.PathLike) -> list[Path]:
    """history.json as two panels: train and test error per epoch; the fraction of groups kept per layer (or, for a
    dense net, the training loss), with the KL weight on a twin axis. [] without history.json or epochs."""
    run_dir = Path(run_dir)
    history_path = run_dir / HISTORY_FILE
    history = read_json(history_path) if history_path.exists() else []
    if not history:
        return []
    epochs = np.array([r["epoch"] for r in history], dtype=np.float64)

    def series(key):
        return np.array([as_float(r.get(key)) for r in history])

    fig, (ax_error, ax_groups) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for key, name in (("train_error_pct", "train"), ("test_error_pct", "test")):
        ax_error.plot(epochs, series(key), "o-", ms=3, label=name)
    errors = np.concatenate([series("train_error_pct"), series("test_error_pct")])
    if np.isfinite(errors).any() and np.nanmin(errors) > 0:
        log_axis(ax_error, "y", errors)
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
    return [save_figure(fig, out_path)]


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
    return [save_figure(fig, out_path)]


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
    return [save_figure(fig, out_path)]


def kl_by_layer(histories: Mapping[str, list[dict]], out_path: str | os.PathLike, title: str,
                layer_names: list[str] | None = None) -> list[Path]:
    """Each group layer's KL (nats) per epoch, one panel per layer and one line per history (``label -> history``),
    with the part its variance clamp forbids removing (the floor, ``train._kl_summary``) dashed in the same colour:
    how much of a layer's KL is the clamp's rather than the posterior's. Histories without per-layer KL are left
    out; [] when none has it."""
    histories = {label: h for label, h in histories.items() if h and h[0].get("kl_layers")}
    if not histories:
        return []
    n_layers = max(len(h[0]["kl_layers"]) for h in histories.values())
    fig, axes = plt.subplots(1, n_layers, figsize=(3.6 * n_layers, 3.8), squeeze=False, layout="constrained")
    colours = sns.color_palette("tab10", len(histories))
    for colour, (label, history) in zip(colours, histories.items()):
        epochs = np.array([r["epoch"] for r in history], dtype=np.float64)
        rows = np.array([r["kl_layers"] for r in history], dtype=np.float64)  # [epoch, layer, (KL, floor)]
        for i, ax in enumerate(axes.flat[:rows.shape[1]]):
            ax.plot(epochs, rows[:, i, 0], "-", color=colour, label=label)
            if rows[:, i, 1].any():
                ax.plot(epochs, rows[:, i, 1], "--", color=colour, linewidth=1.0)
    for i, ax in enumerate(axes.flat):
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(layer_names[i] if layer_names and i < len(layer_names) else f"layer {i}", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.flat[0].set_ylabel("KL (nats); dashed: the clamp's floor")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(title)
    return [save_figure(fig, out_path)]


def kl_layers(run_dir: str | os.PathLike, out_path: str | os.PathLike) -> list[Path]:
    """``kl_by_layer`` of this run's history.json (runs trained before the history held per-layer KL: [])."""
    run_dir = Path(run_dir)
    history_path = run_dir / HISTORY_FILE
    history = read_json(history_path) if history_path.exists() else []
    return kl_by_layer({"KL": history}, out_path, f"{_run_title(run_dir)}: KL per layer")


# File name -> the function that draws it, in the order ``run_figures`` draws them.
RUN_FIGURES: dict[str, Callable[[Path, Path], list[Path]]] = {
    "group_statistics.png": group_statistic_histograms,
    "threshold_curve.png": threshold_curves,
    "training.png": training_curves,
    "weights.png": first_layer_weights,
    "pixel_importance.png": pixel_importance,
    "frontier.png": frontier,
    "kl_layers.png": kl_layers,
}


def run_figures(run_dir: str | os.PathLike, out_dir: str | os.PathLike) -> list[Path]:
    """The per-run figures that apply to ``run_dir``, written into ``out_dir`` under their names in ``RUN_FIGURES``."""
    out_dir = Path(out_dir)
    written = []
    for name, draw in RUN_FIGURES.items():
        written += draw(run_dir, out_dir / name)
    return written
