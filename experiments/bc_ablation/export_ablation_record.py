"""Copy what a reader needs of a ``bc_ablation.py`` output folder into a small record that can be committed, and draw
its figures: per trained net ``run.json``, ``history.json`` and ``training.png``; per rule ``metrics.json`` and
``compressed.bin``; ``frontier.png`` where a rule computed the frontier; the rows ``ablation.jsonl`` and, from all of
them, the table ``ablation.md`` (``bc_ablation.py`` writes its own ``ablation.md`` with the rows of its last
invocation only). No model files. Each trained net also gets ``kl_layers.png`` (each layer's KL and its clamp's floor)
where its history has them.

A record grows across machines: the rows already in ``<out>/ablation.jsonl`` stay, and a row of the same net, rule and
epoch is replaced by the new one, so a session that trained only one new variant does not drop the others.

With ``--compare-with CELLS`` (a record's ``runs/<arch>`` folder, e.g. ``results/mnist/runs/lenet5``), each method
gets two figures beside the variants, drawn from every net in the record (not only this export's):
``<method>_kl_by_layer.png`` (every variant's per-layer KL over training) and ``<method>_group_statistics.png`` (every
variant's group statistics and chosen thresholds after the first rule, with the record's seed-0 cell of the same
method as the default's).

    python experiments/bc_ablation/export_ablation_record.py --ablation runs/ablation --out results/ablation
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from bcrepro.report.ablation_table import markdown_table
from bcrepro.report import figures

RUN_FILES = ("run.json", "history.json")
RULE_FILES = ("metrics.json", "compressed.bin", "posterior.npz")
ROW_KEY = ("arch", "method", "variant", "rule", "epochs")


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def merge_rows(kept: list[dict], new: list[dict]) -> list[dict]:
    """``kept`` then ``new``, one row per (arch, method, variant, rule, epochs): a later row replaces an earlier one
    in the earlier one's place."""
    merged: dict[tuple, dict] = {}
    for row in kept + new:
        merged[tuple(row.get(k) for k in ROW_KEY)] = row
    return list(merged.values())


def trained_nets(root: Path):
    """Folders holding a trained net's run.json and history.json, with its compressions under rules/."""
    for rules in sorted(root.rglob("rules")):
        if rules.is_dir() and (rules.parent / "history.json").exists():
            yield rules.parent


def export(ablation: Path, out: Path) -> list[Path]:
    written = []
    for net in trained_nets(ablation):
        target = out / net.relative_to(ablation)
        target.mkdir(parents=True, exist_ok=True)
        for name in RUN_FILES:
            shutil.copy2(net / name, target / name)
            written.append(target / name)
        written += figures.training_curves(net, target / "training.png")
        written += figures.kl_layers(net, target / "kl_layers.png")
        for rule in sorted(p for p in (net / "rules").iterdir() if (p / "metrics.json").exists()):
            rule_target = target / "rules" / rule.name
            rule_target.mkdir(parents=True, exist_ok=True)
            for name in RULE_FILES:
                if (rule / name).exists():
                    shutil.copy2(rule / name, rule_target / name)
                    written.append(rule_target / name)
            written += figures.frontier(rule_target, rule_target / "frontier.png")
    if (ablation / "ablation.jsonl").exists():
        out.mkdir(parents=True, exist_ok=True)
        rows = merge_rows(read_rows(out / "ablation.jsonl"), read_rows(ablation / "ablation.jsonl"))
        (out / "ablation.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        (out / "ablation.md").write_text(markdown_table(rows))
        written += [out / "ablation.jsonl", out / "ablation.md"]
    return written


def compare(out: Path, cells: Path) -> list[Path]:
    """Per method, the per-layer KL over training and the group statistics of every net in the record ``out`` beside
    the record's default (``cells/<method>/seed0``)."""
    written = []
    nets = list(trained_nets(out))
    for method in sorted({net.relative_to(out).parts[1] for net in nets}):
        mine = [net for net in nets if net.relative_to(out).parts[1] == method]
        label = {net: "/".join(net.relative_to(out).parts[2:]) for net in mine}
        histories = {label[net]: json.loads((net / "history.json").read_text()) for net in mine}
        arch = mine[0].relative_to(out).parts[0]
        written += figures.kl_by_layer(histories, out / f"{method}_kl_by_layer.png",
                                       f"{arch} / {method}: KL per layer (dashed: the clamp's floor)")
        posteriors = {"default (record, seed 0)": cells / method / "seed0"}
        for net in mine:
            rules = sorted(p for p in (net / "rules").iterdir() if (p / "metrics.json").exists())
            if rules:
                posteriors[label[net]] = rules[0]
        written += figures.group_statistics_compared(posteriors, out / f"{method}_group_statistics.png",
                                                     f"{arch} / {method}: group statistics and thresholds")
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ablation", default="runs/ablation", help="the --out folder of bc_ablation.py")
    parser.add_argument("--out", default="results/ablation")
    parser.add_argument("--compare-with", metavar="CELLS",
                        help="a record's runs/<arch> folder: draw each method's variants beside its seed-0 cell")
    args = parser.parse_args(argv)
    written = export(Path(args.ablation), Path(args.out))
    if args.compare_with:
        written += compare(Path(args.out), Path(args.compare_with))
    if not written:
        print(f"nothing to export under {args.ablation}")
        return 1
    size = sum(p.stat().st_size for p in written)
    print(f"wrote {len(written)} files, {size / 1024:.0f} KB, under {args.out}")
    print(json.dumps([str(p) for p in written if p.suffix == ".png"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
