"""The BC ablation's table (``experiments/bc_ablation``): one markdown row per trained net and threshold rule, written
by the ablation itself and again, from every row it ever appended, by the export of its committed record."""
from __future__ import annotations

HEADER = ("| arch | method | variant | rule | epochs | error % (unpruned) | error % (pruned, rounded) | "
          "architecture | CR pruning | CR with bits |\n|---|---|---|---|---|---|---|---|---|---|\n")


def _rate(value) -> str:
    return "–" if value is None else f"{value:.1f}x"


def markdown_table(rows: list[dict]) -> str:
    """The markdown table of ``rows`` (the ablation's ``ablation.jsonl`` records); ``arch`` is "–" where a row does
    not name it (rows written before the ablation named the network)."""
    return HEADER + "".join(
        f"| {r.get('arch', '–')} | {r['method']} | {r['variant']} | {r['rule']} | {r['epochs']} | "
        f"{r['error_unpruned_pct']:.2f} | "
        f"{r['error_rounded_pct']:.2f} | {r['architecture']} | {_rate(r['compression_pruning'])} | "
        f"{_rate(r['compression_precision'])} |\n" for r in rows)
