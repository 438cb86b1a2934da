"""A hyper-parameter study at a glance (``study.png``): each finished trial's kept weights against its compressed
network's validation error, the budget as a line, the best trial ringed.

    plot_study(rows, "results/search/sws_lenet300/study.png", title="sws_lenet300")

``rows`` are ``bcrepro.search.report.trial_rows``. A trial that collapsed (tens of points over the budget) would
flatten every other point, so the error axis stops at ``OFF_SCALE`` times the budget: a trial past it is drawn at the
top edge as an upward triangle, and its error is listed under the title.
"""
from __future__ import annotations

import os
from pathlib import Path

from .plotting import log_axis, plt, save_figure  # plotting sets the Agg backend

OFF_SCALE = 1.6  # the error axis ends at 1.6 x the budget: room above it for a near miss, none for a collapse
FEASIBLE, INFEASIBLE = "#2ca02c", "#7f7f7f"


def placed_trials(rows: list[dict]) -> tuple[list[dict], float]:
    """The COMPLETE trials with a result, each as ``number``, ``kept``, ``error`` (as measured), ``y`` (where it is
    drawn), ``off_scale`` and ``feasible``; and the top of the error axis (``OFF_SCALE`` x the largest budget)."""
    done = [row for row in rows if row["state"] == "COMPLETE" and row["kept_weights"] is not None
            and row["validation_error_pct"] is not None]
    limits = [row["limit_pct"] for row in done if row["limit_pct"] is not None]
    errors = [row["validation_error_pct"] for row in done]
    top = OFF_SCALE * max(limits) if limits else (max(errors) if errors else 1.0)
    return [{"number": row["number"], "kept": row["kept_weights"], "error": row["validation_error_pct"],
             "y": min(row["validation_error_pct"], top), "off_scale": row["validation_error_pct"] > top,
             "feasible": bool(row["feasible"])} for row in done], top


def plot_study(rows: list[dict], out_path: str | os.PathLike, title: str = "", best: int | None = None) -> Path:
    """Write the figure of the module docstring for ``rows`` to ``out_path``; ``best`` is the best trial's number."""
    points, top = placed_trials(rows)
    off_scale = [point for point in points if point["off_scale"]]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for point in points:
        colour = FEASIBLE if point["feasible"] else INFEASIBLE
        ax.scatter(point["kept"], point["y"], marker="^" if point["off_scale"] else "o", s=36, color=colour,
                   zorder=3)
        ax.annotate(str(point["number"]), (point["kept"], point["y"]), textcoords="offset points",
                    xytext=(4, -10 if point["off_scale"] else 4), fontsize=7)
        if point["number"] == best:
            ax.scatter(point["kept"], point["y"], s=160, facecolors="none", edgecolors="black", zorder=4,
                       label=f"best: trial {best}")
    for limit in sorted({row["limit_pct"] for row in rows if row["limit_pct"] is not None}):
        ax.axhline(limit, color="#d62728", linestyle="--", linewidth=1, label=f"budget {limit:.2f} %")
    if points:
        log_axis(ax, "x", [point["kept"] for point in points])
        bottom = min(point["y"] for point in points)
        ax.set_ylim(bottom - 0.05 * (top - bottom) - 0.05, top + 0.02 * (top - bottom))
    ax.scatter([], [], color=FEASIBLE, label="within the budget")
    ax.scatter([], [], color=INFEASIBLE, label="over the budget")
    if off_scale:
        ax.scatter([], [], marker="^", color=INFEASIBLE, label="off the scale (error above)")
    ax.set_xlabel("weights kept (compressed network)")
    ax.set_ylabel("validation error % (compressed network)")
    heading = f"study {title}: {len(points)} finished trials" if title else f"{len(points)} finished trials"
    if off_scale:
        heading += "\noff the scale: " + ", ".join(f"trial {point['number']} at {point['error']:.2f} %"
                                                    for point in sorted(off_scale, key=lambda p: p["number"]))
    ax.set_title(heading, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return save_figure(fig, out_path)
