"""Print one line per finished run (metrics.json + history.json) under the given folders, as a Markdown table.

    python scripts/summarize_runs.py runs/fashion [more folders] [--json summary.json]

Finds runs at any depth (a workflow's results/runs/<arch>/<method>/seed<N> as well as a flat folder of runs). Per
run: seconds per training epoch, errors, every compression rate (computed, and measured on disk from compressed.bin
where the run has one) and |W≠0|/|W| per layer in %.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def fmt(value, spec=".2f"):
    return "–" if value is None else format(value, spec)


def summarize(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    history = json.loads((run / "history.json").read_text())
    config = json.loads((run / "run.json").read_text())
    seconds = [r["seconds"] for r in history]
    return {
        "run": "/".join(run.parts[-3:]) if run.name.startswith("seed") else run.name,
        "arch": metrics["arch"], "method": metrics["method"], "dataset": metrics["dataset"],
        "device": config.get("device"), "epochs": len(history),
        "seconds_per_epoch": sum(seconds) / len(seconds),
        **{k: metrics[k] for k in ("error_pct", "error_pruned_pct", "error_quantized_pct", "compression_pruning",
                                   "compression_precision", "compression_max", "architecture", "bits",
                                   "nonzero_weights", "total_weights", "compressed_bytes")},
        "compression_on_disk": metrics.get("compression_on_disk"),
        "kept_pct": [100.0 * kept / total for kept, total in zip(metrics["kept_weights"], metrics["layer_weights"])],
        "thresholds": metrics["thresholds"]["thresholds"],
        "sa_kl": config["params"].get("sa_kl"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    rows = [summarize(m.parent) for folder in args.folders for m in sorted(folder.glob("**/metrics.json"))]
    print("| run | device | epochs | s/epoch | error % | pruned % | quantized % | CR prune | CR precision | CR max "
          "| CR on disk | architecture | bits | kept % per layer | kept/total |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['device']} | {r['epochs']} | {r['seconds_per_epoch']:.2f} | {r['error_pct']:.2f} | "
              f"{r['error_pruned_pct']:.2f} | {fmt(r['error_quantized_pct'])} | "
              f"{fmt(r['compression_pruning'], '.1f')} | "
              f"{fmt(r['compression_precision'], '.1f')} | {fmt(r['compression_max'], '.1f')} | "
              f"{fmt(r['compression_on_disk'], '.1f')} | "
              f"{'-'.join(map(str, r['architecture']))} | {'-'.join(map(str, r['bits'] or [])) or '–'} | "
              f"{' / '.join(f'{k:.2f}' for k in r['kept_pct'])} | {r['nonzero_weights']}/{r['total_weights']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
