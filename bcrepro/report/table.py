"""The aggregated tables: every run's ``metrics.json`` (and ``speed.json``), measured beside the paper's numbers.

The CLI's report verb is ``write_tables(load_runs(runs_dir), out_dir)``. It reads the run directories that
``bcrepro compress`` (and the speed-up timing) write, ``{runs_dir}/{arch}/{method}/seed{seed}/``, and writes:

- ``table.csv`` / ``table.md`` / ``table.tex``: one row per (arch, method), the mean and std over seeds of the error and
  the compression rates, next to ``paper.PAPER_RESULTS`` (Table 1) and the difference measured − paper;
- ``architectures.csv`` / ``architectures.md``: units kept per layer, measured next to Table 2.

Decisions:

- std is pandas' sample std (ddof=1), so it is NaN with one seed; the md/tex tables print it as "–".
- A speed-up is the original model's median forward time over the slimmed model's, at the largest batch that was
  timed for both on that device.
- A paper row exists only where the paper has one; elsewhere (VGG with DC, methods beyond the paper) the paper columns
  are NaN (numbers) or "" (strings). The paper's numbers are for its data set (``paper_dataset``), whatever data set
  the measured runs used (``dataset``).
- Every method's default pixel scaling is the same (``preprocess: symmetric``); a cell trained with another one says
  so in ``dataset`` ("mnist (centred)") and the markdown and LaTeX tables explain it below (``metrics.json``'s
  ``preprocess``; files written before it existed count as the default).
"""
from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from bcrepro.atomic import write_text
from bcrepro.compress.thresholds import compression_at_error
from bcrepro.data import DEFAULT_PREPROCESS
from bcrepro.deploy.speed import speedups
from bcrepro.report.paper import ORIGINAL_ARCHITECTURE, PAPER_DATASET, own_paper_row, paper_architecture, paper_row
from bcrepro.runs import COLLAPSE_MARGIN_PCT, METRICS_FILE, SPEED_FILE, compressed_cells, compression_error_jump

# The paper's order (Table 1): the table's rows and the figures' legends list architectures and methods in it.
ARCH_ORDER = ["lenet300", "lenet5", "vgg16"]
METHOD_ORDER = ["dense", "dc", "dns", "sws", "sparse-vd", "bc-gnj", "bc-ghs"]

# Keys every metrics.json must have (docs/workflow.md, "`metrics.json` keys"); any others are ignored here.
REQUIRED_KEYS = [
    "arch", "method", "seed", "dataset", "error_pct", "error_pruned_pct", "error_quantized_pct", "total_weights",
    "nonzero_weights", "compression_pruning", "compression_precision", "compression_max", "bits", "architecture",
    "train_seconds", "mlflow_run_id",
]
_FLOAT_COLUMNS = [
    "error_pct", "error_pruned_pct", "error_quantized_pct", "compression_pruning", "compression_precision",
    "compression_max", "train_seconds", "speedup_cpu", "speedup_cuda", "compression_at_paper_error", "error_jump_pct",
]
_INT_COLUMNS = ["seed", "total_weights", "nonzero_weights"]
RUN_COLUMNS = REQUIRED_KEYS + ["speedup_cpu", "speedup_cuda", "compression_at_paper_error", "preprocess",
                               "error_jump_pct"]

TABLE_COLUMNS = [
    "arch", "method", "dataset", "n_seeds",
    "error_pct_mean", "error_pct_std", "error_final_pct_mean", "error_final_pct_std", "error_pruned_pct_mean",
    "error_quantized_pct_mean",
    "compression_pruning_mean", "compression_pruning_std", "compression_precision_mean", "compression_precision_std",
    "compression_max_mean", "nonzero_pct_mean", "bits", "speedup_cpu_mean", "speedup_cuda_mean",
    "compression_at_paper_error_mean", "n_collapsed", "paper_dataset", "paper_error_pct", "paper_compression_pruning", "paper_compression_precision",
    "paper_compression_max", "paper_nonzero_pct", "paper_bits", "paper_starred",
    "diff_error_pct", "diff_compression_pruning", "diff_compression_precision",
    "own_paper", "own_error_pct", "own_nonzero_pct", "own_rate", "own_rate_kind",
]
ARCHITECTURE_COLUMNS = ["arch", "method", "n_seeds", "original", "measured", "measured_mean", "paper"]


def _join(values: Iterable[int] | None) -> str:
    """[8, 9, 14] -> "8-9-14"; None -> ""."""
    return "" if values is None else "-".join(str(int(v)) for v in values)


# ---- reading the runs ------------------------------------------------------------------------------------------------
def read_json(path: Path):
    """A run's JSON file; ``ValueError`` naming the file where it is not valid JSON."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); re-run the job that writes it or delete the file") from err


_SPEED_KEYS = ("variant", "device", "batch", "median_ms")


def _speedups(path: Path) -> dict[str, float]:
    """The slimmed model's speed-up (``bcrepro.deploy.speed.speedups``) per device, at the largest batch timed for
    both it and the original; NaN where untimed."""
    records = read_json(path)
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a list of {{variant, device, batch, median_ms, iqr_ms}} records, "
                         f"found {type(records).__name__}")
    for record in records:
        if not (isinstance(record, dict) and all(key in record for key in _SPEED_KEYS)
                and isinstance(record["batch"], (int, float)) and isinstance(record["median_ms"], (int, float))):
            raise ValueError(f"{path}: malformed record {record!r} (needs variant, device, batch, median_ms)")
    slim = {(gain["device"], gain["batch"]): gain["speedup"] for gain in speedups(records)
            if gain["variant"] == "slim"}
    by_device = {}
    for device in ("cpu", "cuda"):
        batches = [batch for dev, batch in slim if dev == device]
        by_device[f"speedup_{device}"] = slim[(device, max(batches))] if batches else math.nan
    return by_device


def _compression_at_paper_error(metrics: dict) -> float:
    """The most compression (after pruning) on the run's error-compression frontier whose test error is at most the
    paper's for this cell (NaN without a frontier, a paper row, or a point that accurate)."""
    paper = paper_row(str(metrics["arch"]), str(metrics["method"]))
    frontier = metrics.get("frontier")
    if paper is None or paper.error_pct is None or not frontier:
        return math.nan
    rate = compression_at_error(frontier, paper.error_pct)
    return math.nan if rate is None else float(rate)


def _read_run(path: Path) -> dict:
    metrics = read_json(path)
    if not isinstance(metrics, dict):
        raise ValueError(f"{path}: expected a JSON object of metrics, found {type(metrics).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in metrics]
    if missing:
        raise ValueError(f"{path} lacks required key(s) {missing}; it was written by an older or unfinished "
                         f"`bcrepro compress`: re-run that job")
    seed_dir, method_dir, arch_dir = path.parent, path.parent.parent, path.parent.parent.parent
    expected = (arch_dir.name, method_dir.name, seed_dir.name)
    found = (str(metrics["arch"]), str(metrics["method"]), f"seed{metrics['seed']}")
    if expected != found:
        raise ValueError(f"{path} says arch/method/seed {found} but sits under {'/'.join(expected)}; "
                         f"move it or re-run its job")
    row = {key: metrics[key] for key in REQUIRED_KEYS}
    row["bits"] = _join(metrics["bits"])
    row["architecture"] = _join(metrics["architecture"])
    row["compression_at_paper_error"] = _compression_at_paper_error(metrics)
    row["preprocess"] = metrics.get("preprocess", DEFAULT_PREPROCESS)
    row["error_jump_pct"] = compression_error_jump(metrics)  # from the network as trained, where the file has it
    speed_path = path.parent / SPEED_FILE
    row.update(_speedups(speed_path) if speed_path.exists() else {"speedup_cpu": math.nan, "speedup_cuda": math.nan})
    return row


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.astype({column: float for column in _FLOAT_COLUMNS})
    return frame.astype({column: "int64" for column in _INT_COLUMNS})


def load_runs(runs_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per ``{runs_dir}/{arch}/{method}/seed{n}/metrics.json``, columns ``RUN_COLUMNS``.

    ``bits`` and ``architecture`` are strings ("8-9-14", "" for none); ``speedup_cpu``/``speedup_cuda`` come from the
    run's ``speed.json`` (NaN without one). A metrics.json that is not valid JSON or lacks a key of ``REQUIRED_KEYS``
    raises ``ValueError`` naming the file.
    """
    rows = [_read_run(cell / METRICS_FILE) for cell in compressed_cells(runs_dir)]
    if not rows:
        return _typed(pd.DataFrame({column: pd.Series(dtype=object) for column in RUN_COLUMNS}))
    frame = _typed(pd.DataFrame(rows, columns=RUN_COLUMNS))
    return frame.sort_values(["arch", "method", "seed"], kind="stable", ignore_index=True)


# ---- aggregation -----------------------------------------------------------------------------------------------------
def _rank(name: str, order: list[str]) -> tuple[int, str]:
    """Paper order first, unknown names after, alphabetically."""
    return (order.index(name), "") if name in order else (len(order), name)


def in_method_order(methods: Iterable[str]) -> list[str]:
    """The distinct ``methods`` in ``METHOD_ORDER``, unknown ones after, alphabetically."""
    return sorted(set(methods), key=lambda method: _rank(method, METHOD_ORDER))


def _order_key(arch: str, method: str) -> tuple:
    return _rank(arch, ARCH_ORDER) + _rank(method, METHOD_ORDER)


def _cells(runs: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    groups = [(arch, method, group.sort_values("seed", kind="stable"))
              for (arch, method), group in runs.groupby(["arch", "method"], sort=False)]
    return sorted(groups, key=lambda cell: _order_key(cell[0], cell[1]))


def _diff(measured: float, paper: float) -> float:
    return measured - paper if not (np.isnan(measured) or np.isnan(paper)) else math.nan


def _paper_number(paper, field: str) -> float:
    value = None if paper is None else getattr(paper, field)
    return math.nan if value is None else float(value)


def _data_label(group: pd.DataFrame) -> str:
    """The data set(s) of a cell's seeds, "mnist", with their pixel scaling where it is not the default:
    "mnist (centred)", "mnist (symmetric+centred)" where the seeds differ."""
    label = "+".join(sorted(set(group["dataset"])))
    scalings = sorted(set(group["preprocess"]))
    return label if scalings == [DEFAULT_PREPROCESS] else f"{label} ({'+'.join(scalings)})"


def _scaling_note(table: pd.DataFrame) -> str:
    """What a scaling in ``data`` means, for the tables that show one; "" where every cell has the default."""
    if not table["dataset"].str.endswith(")").any():
        return ""
    return ("A scaling after the data set, `mnist (centred)`, marks a cell trained and evaluated on pixels scaled "
            "otherwise than the default every method shares, 2 (x / 255 - 0.5) (the setting `preprocess`): `unit` "
            "x / 255 (the SWS tutorial's), `centred` x / 256 minus the mean training image (the Sparse VD authors').")


def comparison_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (arch, method) with ``TABLE_COLUMNS``: the mean (and std) over seeds beside the paper's Table 1.

    ``nonzero_pct_mean`` is the mean over seeds of 100·nonzero/total weights; ``bits`` the most common per-layer bits
    string; ``error_final_pct`` the error after the method's last step (rounded where it reduces precision, else
    pruned), the error the paper reports and the one ``diff_error_pct`` compares; ``diff_*`` measured mean − paper
    (NaN where either is missing). ``paper_starred`` says the paper's
    pruning-only number is a best-case guess.
    """
    rows = []
    for arch, method, group in _cells(runs):
        paper = paper_row(arch, method)
        bits = Counter(group["bits"]).most_common(1)[0][0]
        final_error = group["error_quantized_pct"].astype(float).fillna(group["error_pruned_pct"].astype(float))
        row = {
            "arch": arch, "method": method,
            "dataset": _data_label(group),
            "n_seeds": len(group),
            "error_pct_mean": group["error_pct"].mean(), "error_pct_std": group["error_pct"].std(),
            # after the method's last step (rounded where it reduces precision): what the paper's Table 1 reports
            "error_final_pct_mean": final_error.mean(), "error_final_pct_std": final_error.std(),
            "error_pruned_pct_mean": group["error_pruned_pct"].mean(),
            "error_quantized_pct_mean": group["error_quantized_pct"].mean(),
            "compression_pruning_mean": group["compression_pruning"].mean(),
            "compression_pruning_std": group["compression_pruning"].std(),
            "compression_precision_mean": group["compression_precision"].mean(),
            "compression_precision_std": group["compression_precision"].std(),
            "compression_max_mean": group["compression_max"].mean(),
            "nonzero_pct_mean": (100.0 * group["nonzero_weights"] / group["total_weights"]).mean(),
            "bits": bits,
            "speedup_cpu_mean": group["speedup_cpu"].mean(),
            "speedup_cuda_mean": group["speedup_cuda"].mean(),
            "compression_at_paper_error_mean": group["compression_at_paper_error"].mean(),
            # seeds whose compression added more than COLLAPSE_MARGIN_PCT points of error (metrics files written
            # before the flag existed are judged the same way)
            "n_collapsed": int((group["error_jump_pct"] > COLLAPSE_MARGIN_PCT).sum()),
            "paper_dataset": PAPER_DATASET.get(arch, "") if paper is not None else "",
            "paper_error_pct": _paper_number(paper, "error_pct"),
            "paper_compression_pruning": _paper_number(paper, "compression_pruning"),
            "paper_compression_precision": _paper_number(paper, "compression_precision"),
            "paper_compression_max": _paper_number(paper, "compression_max"),
            "paper_nonzero_pct": _paper_number(paper, "nonzero_pct"),
            "paper_bits": _join(paper.bits) if paper is not None else "",
            "paper_starred": bool(paper is not None and paper.starred),
        }
        row["diff_error_pct"] = _diff(row["error_final_pct_mean"], row["paper_error_pct"])
        for name in ("compression_pruning", "compression_precision"):
            row[f"diff_{name}"] = _diff(row[f"{name}_mean"], row[f"paper_{name}"])
        own = own_paper_row(arch, method)
        row.update({"own_paper": own.source if own else "", "own_error_pct": _paper_number(own, "error_pct"),
                    "own_nonzero_pct": _paper_number(own, "nonzero_pct"), "own_rate": _paper_number(own, "rate"),
                    "own_rate_kind": own.rate_kind if own else ""})
        rows.append(row)
    if not rows:
        return pd.DataFrame({column: pd.Series(dtype=object) for column in TABLE_COLUMNS})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def _mean_architecture(architectures: list[str]) -> str:
    """Per-layer mean over seeds, rounded half up; "" when seeds disagree on the number of layers or have none."""
    layers = [[int(units) for units in a.split("-")] for a in architectures if a]
    if not layers or len(layers) != len(architectures) or len({len(a) for a in layers}) != 1:
        return ""
    return _join(math.floor(mean + 0.5) for mean in np.mean(layers, axis=0))


def architecture_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (arch, method) with ``ARCHITECTURE_COLUMNS``: units kept per layer, measured beside Table 2.

    ``measured`` is the architecture of every seed joined by "; " (one string when they agree), ``measured_mean`` the
    per-layer mean over seeds, ``paper`` Table 2's architecture ("" where the paper has none).
    """
    rows = []
    for arch, method, group in _cells(runs):
        architectures = list(group["architecture"])
        distinct = list(dict.fromkeys(architectures))
        rows.append({
            "arch": arch, "method": method, "n_seeds": len(group),
            "original": _join(ORIGINAL_ARCHITECTURE.get(arch)),
            "measured": distinct[0] if len(distinct) == 1 else "; ".join(architectures),
            "measured_mean": _mean_architecture(architectures),
            "paper": _join(paper_architecture(arch, method)),
        })
    if not rows:
        return pd.DataFrame({column: pd.Series(dtype=object) for column in ARCHITECTURE_COLUMNS})
    return pd.DataFrame(rows, columns=ARCHITECTURE_COLUMNS)


# ---- formatting: markdown and LaTeX, by hand ----------------------------------------------------------------------
class _Style:
    """What differs between a markdown and a LaTeX cell: the dash for "missing", "±", the star, escaping."""

    def __init__(self, dash: str, pm: str, star: str, escape: Callable[[str], str]):
        self.dash, self.pm, self.star, self.escape = dash, pm, star, escape

    def number(self, value, digits: int) -> str:
        return self.dash if value is None or pd.isna(value) else f"{value:.{digits}f}"

    def mean_std(self, mean, std, digits: int) -> str:
        if pd.isna(mean):
            return self.dash
        return f"{self.number(mean, digits)}{self.pm}{self.number(std, digits)}"

    def paper(self, value, digits: int | None = None, starred: bool = False) -> str:
        """The paper's numbers as printed there (rates ``:g``: 9, 36; percentages with ``digits``: 1.0), a star on
        best-case guesses."""
        if value is None or pd.isna(value):
            return self.dash
        return (f"{value:g}" if digits is None else f"{value:.{digits}f}") + (self.star if starred else "")

    def text(self, value) -> str:
        return self.dash if value is None or (not isinstance(value, str) and pd.isna(value)) or value == "" \
            else self.escape(str(value))


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex_escape(text: str) -> str:
    return "".join(_TEX_SPECIAL.get(char, char) for char in text)


MD = _Style(dash="–", pm=" ± ", star="*", escape=_md_escape)
TEX = _Style(dash="--", pm=r" $\pm$ ", star=r"$^*$", escape=_tex_escape)

# Headers of the human-readable comparison table, in the order of ``_comparison_cells``.
_COMPARISON_HEADERS = ["arch", "method", "data", "seeds", "error % compressed (mean ± std)", "paper error %",
                       "|W≠0|/|W| %", "paper", "CR pruning", "paper", "CR pruning at paper error", "CR precision", "paper", "CR max", "paper",
                       "bits", "paper bits", "own paper: error %, |W≠0|/|W| %, CR"]


def _comparison_cells(row, style: _Style) -> list[str]:
    return [
        style.text(row["arch"]), style.text(row["method"]), style.text(row["dataset"]), str(int(row["n_seeds"])),
        style.mean_std(row["error_final_pct_mean"], row["error_final_pct_std"], 2)
        + (style.escape(f" (! {int(row['n_collapsed'])} collapsed)") if row["n_collapsed"] else ""),
        style.paper(row["paper_error_pct"], 1),
        style.number(row["nonzero_pct_mean"], 1), style.paper(row["paper_nonzero_pct"], 1),
        style.mean_std(row["compression_pruning_mean"], row["compression_pruning_std"], 1),
        style.paper(row["paper_compression_pruning"], starred=bool(row["paper_starred"])),
        style.number(row["compression_at_paper_error_mean"], 1),
        style.mean_std(row["compression_precision_mean"], row["compression_precision_std"], 1),
        style.paper(row["paper_compression_precision"]),
        style.number(row["compression_max_mean"], 1), style.paper(row["paper_compression_max"]),
        style.text(row["bits"]), style.text(row["paper_bits"]), _own_paper_cell(row, style),
    ]


def _own_paper_cell(row, style: _Style) -> str:
    """A baseline's own published result, e.g. "1.58, 8.0, 40 (storage; Han et al. 2016, Table 1)"; "–" for none."""
    if not row["own_paper"]:
        return style.dash
    return style.escape(f"{row['own_error_pct']:g}, {row['own_nonzero_pct']:g}, {row['own_rate']:g} "
                        f"({row['own_rate_kind']}; {row['own_paper']})")


_NOTE = ("Paper numbers are the paper's (Table 1 of Louizos et al. 2017) and were measured on the paper's data set "
         "(MNIST for the LeNets, CIFAR-10 for VGG); `data` names the data set of the measured runs. "
         "* = the paper's pruning-only figure is the authors' best-case guess. "
         "The last column is each baseline's own paper, on MNIST, with its own kind of rate: `parameters` = "
         "|W|/|W≠0| (compare with CR pruning's sparsity), `storage` = Deep Compression's encoding "
         "(compare with CR max). "
         "CR pruning at paper error = the most compression on the run's error-compression frontier (thresholds "
         "chosen on validation data at budgets of +0 to +2 points) whose test error is at most the paper's. "
         f"! N collapsed = N seeds whose compression added more than {COLLAPSE_MARGIN_PCT:g} point of test error. "
         "CR = compression rate (×); ± = std over seeds (– with one seed); – = not available.")


def _markdown(headers: list[str], rows: list[list[str]], note: str = "") -> str:
    lines = ["| " + " | ".join(_md_escape(h) for h in headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines) + "\n" + (f"\n{note}\n" if note else "")


def comparison_markdown(table: pd.DataFrame) -> str:
    """``comparison_table``'s result as a markdown table with a note on the paper's numbers (and on the pixel
    scaling where a cell did not use the default)."""
    note = " ".join(filter(None, (_NOTE, _scaling_note(table))))
    return _markdown(_COMPARISON_HEADERS, [_comparison_cells(row, MD) for _, row in table.iterrows()], note)


def comparison_latex(table: pd.DataFrame) -> str:
    """``comparison_table``'s result as a booktabs ``tabular``; a rule between architectures."""
    headers = [_tex_escape(h) for h in _COMPARISON_HEADERS]
    headers[4] = r"error \% (mean $\pm$ std)"
    headers[6] = r"$|W_{\neq 0}|/|W|$ \%"
    headers[-1] = r"own paper: error \%, $|W_{\neq 0}|/|W|$ \%, CR"
    lines = [r"% measured vs paper (Louizos et al. 2017, Table 1); paper numbers are for MNIST / CIFAR-10;",
             r"% $^*$ = the authors' best-case guess; -- = not available",
             *([f"% {_scaling_note(table).replace('`', '')}"] if _scaling_note(table) else []),
             r"\begin{tabular}{lllr" + "r" * (len(headers) - 7) + "lll}", r"\toprule",
             " & ".join(headers) + r" \\", r"\midrule"]
    previous_arch = None
    for _, row in table.iterrows():
        if previous_arch is not None and row["arch"] != previous_arch:
            lines.append(r"\midrule")
        previous_arch = row["arch"]
        lines.append(" & ".join(_comparison_cells(row, TEX)) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def architecture_markdown(table: pd.DataFrame) -> str:
    """``architecture_table``'s result as a markdown table."""
    headers = ["arch", "method", "seeds", "original", "measured", "measured (mean)", "paper (Table 2)"]
    rows = [[MD.text(row["arch"]), MD.text(row["method"]), str(int(row["n_seeds"])), MD.text(row["original"]),
             MD.text(row["measured"]), MD.text(row["measured_mean"]), MD.text(row["paper"])]
            for _, row in table.iterrows()]
    note = "Units kept per layer after pruning (Table 2's convention: the input groups of each prunable layer)."
    return _markdown(headers, rows, note)


# ---- writing ---------------------------------------------------------------------------------------------------------


def write_tables(runs: pd.DataFrame, out_dir: str | os.PathLike) -> list[Path]:
    """Write table.csv/.md/.tex and architectures.csv/.md into ``out_dir`` (created if missing); return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table, architectures = comparison_table(runs), architecture_table(runs)
    return [
        write_text(out / "table.csv", table.to_csv(index=False)),
        write_text(out / "table.md", comparison_markdown(table)),
        write_text(out / "table.tex", comparison_latex(table)),
        write_text(out / "architectures.csv", architectures.to_csv(index=False)),
        write_text(out / "architectures.md", architecture_markdown(architectures)),
    ]
