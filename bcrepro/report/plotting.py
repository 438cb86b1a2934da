"""What every figure shares: the Agg backend, one colour per method, log axes with plain labels, and writing a PNG.

The per-run figures (``bcrepro.report.per_run_figures``) and the aggregate ones (``bcrepro.report.aggregate_figures``)
draw with these, so that a method has the same colour, and a file the same format, in every figure.
"""
from __future__ import annotations

import io
import math
import os
import zlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on the workers

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402
from PIL import Image  # noqa: E402

from ..atomic import write_atomically  # noqa: E402
from .table import METHOD_ORDER  # noqa: E402

DPI = 120
PALETTE_COLOURS = 256  # see save_figure

# One colour per method of ``METHOD_ORDER``, in every figure; legends list the methods in that order.
METHOD_COLOURS = dict(zip(METHOD_ORDER, ("#4d4d4d", "#1f77b4", "#17becf", "#9467bd", "#2ca02c", "#d62728", "#ff7f0e"),
                          strict=True))
_SPARE_COLOURS = ["#8c564b", "#e377c2", "#bcbd22", "#7f7f7f", "#aec7e8", "#98df8a"]


def method_colour(method: str) -> str:
    """The method's fixed colour; a method outside ``METHOD_COLOURS`` gets a spare one, the same in every figure."""
    if method in METHOD_COLOURS:
        return METHOD_COLOURS[method]
    return _SPARE_COLOURS[zlib.crc32(method.encode()) % len(_SPARE_COLOURS)]


def save_figure(fig: plt.Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically, close it, and return the path.

    The PNG holds an adaptive palette of ``PALETTE_COLOURS`` colours (median cut, no dithering) instead of 32-bit RGBA:
    fewer bytes for plots with a white background and a few colour maps, which keeps the committed record
    (``bcrepro.report.record``) small, with no visible change (the colour maps themselves have 256 entries).
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


def as_float(value) -> float:
    """A number from JSON or a paper entry as float; None or non-numeric as NaN."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def log_axis(ax: plt.Axes, which: str, values=None, min_ratio: float = 3.0) -> None:
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
