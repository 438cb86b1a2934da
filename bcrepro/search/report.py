"""A study's table, its figure and its best configuration: ``study.csv`` and ``study.md`` (one row per trial),
``study.png`` (``bcrepro.report.study_figure``: kept weights against validation error) and ``best.json``.

    write_report("sws_lenet5", "sqlite:///results/search/sws_lenet5/study.db", "results/search/sws_lenet5")

Columns: ``number``, ``state`` (COMPLETE, FAIL: failed on its own, INTERRUPTED: its worker stopped, tried again by
the trial in ``retry_of``, RUNNING, WAITING), one column per searched hyper-parameter (its value as trained),
``validation_error_pct`` (the compressed network's, on the validation split), ``limit_pct`` (the budget),
``kept_weights``, ``total_weights``, ``feasible``, ``retry_of``, ``error``, ``run_dir`` and ``mlflow_run_id``. The
best trial is the feasible COMPLETE one with the fewest kept weights (then the lower validation error, then the
earlier trial); ``best.json`` holds it with the study's definition, or ``"best": null`` when no trial is feasible.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from ..atomic import write_json, write_text
from .study import DEFINITION, ERROR, PARAMS, RESULT, RETRY_OF, RUN_DIR, load_study, storage_url, trial_state

STUDY_CSV, STUDY_MD, STUDY_PNG, BEST_JSON = "study.csv", "study.md", "study.png", "best.json"
MEASURED = ("validation_error_pct", "limit_pct", "kept_weights", "total_weights", "feasible")


def trial_rows(study) -> list[dict]:
    """One row per trial of ``study`` (an ``optuna.Study``), by number; the keys of the module docstring."""
    names = list(study.user_attrs.get(DEFINITION, {}).get("space", {}))
    rows = []
    for trial in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        attrs = trial.user_attrs
        params, result = attrs.get(PARAMS, {}), attrs.get(RESULT, {})
        row = {"number": trial.number, "state": trial_state(trial)}
        row.update({name: params.get(name) for name in names})
        row.update({key: result.get(key) for key in MEASURED})
        row.update({"retry_of": attrs.get(RETRY_OF), "error": attrs.get(ERROR), "run_dir": attrs.get(RUN_DIR),
                    "mlflow_run_id": result.get("mlflow_run_id")})
        rows.append(row)
    return rows


def best_row(rows: list[dict]) -> dict | None:
    """The feasible COMPLETE row with the fewest kept weights, then the lowest validation error, then the lowest
    number; None when there is none."""
    feasible = [row for row in rows if row["state"] == "COMPLETE" and row["feasible"]]
    if not feasible:
        return None
    return min(feasible, key=lambda row: (row["kept_weights"], row["validation_error_pct"], row["number"]))


def _markdown_cell(value, column: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}" if column.endswith("_pct") else f"{value:.6g}"  # pi_zero = 0.99995 is not 1
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_markdown_cell(row[column], column) for column in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict], columns: list[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if row[key] is None else row[key] for key in columns})
    return out.getvalue()


def best_record(name: str, url: str, definition: dict, rows: list[dict]) -> dict:
    """What ``best.json`` holds: the study, its definition, its trials by state, and the best trial or None."""
    states = {}
    for row in rows:
        states[row["state"]] = states.get(row["state"], 0) + 1
    best = best_row(rows)
    record = {"study": name, "storage": storage_url(url), "definition": definition, "trials": states,
              "feasible_trials": sum(1 for row in rows if row["state"] == "COMPLETE" and row["feasible"]),
              "best": None}
    if best is not None:
        searched = {key: best[key] for key in definition.get("space", {})}
        record["best"] = {"number": best["number"], "params": searched,
                          "validation_error_pct": best["validation_error_pct"], "limit_pct": best["limit_pct"],
                          "kept_weights": best["kept_weights"], "total_weights": best["total_weights"],
                          "compression": best["total_weights"] / best["kept_weights"] if best["kept_weights"] else None,
                          "run_dir": best["run_dir"], "mlflow_run_id": best["mlflow_run_id"]}
    return record


def budget_text(budget: dict) -> str:
    """``validation error <= 1.2 %``, ``validation error <= the dense reference's + 0.1 points``, or both."""
    bounds = []
    if budget.get("max_validation_error_pct") is not None:
        bounds.append(f"{budget['max_validation_error_pct']} %")
    if budget.get("max_error_increase") is not None:
        bounds.append(f"the dense reference's + {budget['max_error_increase']} points")
    return "validation error <= " + " and <= ".join(bounds)


def write_report(name: str, url: str, out) -> list[Path]:
    """Write ``study.csv``, ``study.md``, ``study.png`` and ``best.json`` of the study ``name`` at ``url`` into
    ``out``."""
    from ..report.study_figure import plot_study  # matplotlib only where the figure is drawn

    study = load_study(name, url)
    definition = study.user_attrs.get(DEFINITION, {})
    rows = trial_rows(study)
    columns = list(rows[0]) if rows else ["number", "state", *definition.get("space", {}), *MEASURED]
    record = best_record(name, url, definition, rows)
    out = Path(out)
    best = record["best"]
    summary = (f"Study `{name}`: {definition.get('method')} on {definition.get('arch')} "
               f"({definition.get('dataset')}, seed {definition.get('seed')}, "
               f"{definition.get('epochs') or 'default'} epochs), {budget_text(definition.get('budget', {}))}. "
               + ("No trial is within the budget." if best is None else
                  f"Best: trial {best['number']}, {best['kept_weights']} of {best['total_weights']} weights kept at "
                  f"{best['validation_error_pct']:.2f} % validation error."))
    paths = [write_text(out / STUDY_CSV, csv_text(rows, columns)),
             write_text(out / STUDY_MD, summary + "\n\n" + markdown_table(rows, [c for c in columns
                                                                                  if c != "mlflow_run_id"])),
             plot_study(rows, out / STUDY_PNG, title=name, best=None if best is None else best["number"]),
             write_json(record, out / BEST_JSON)]
    return paths
