"""Copy what a reader needs of a ``bc_ablation.py`` output folder into a small record that can be committed, and draw
its figures: per trained net ``run.json``, ``history.json`` and ``training.png``; per rule ``metrics.json`` and
``compressed.bin``; ``frontier.png`` where a rule computed the frontier; the rows ``ablation.jsonl`` and, from all of
them, the table ``ablation.md`` (``bc_ablation.py`` writes its own ``ablation.md`` with the rows of its last
invocation only). No model files.

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
RULE_FILES = ("metrics.json", "compressed.bin")


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
        shutil.copy2(ablation / "ablation.jsonl", out / "ablation.jsonl")
        rows = [json.loads(line) for line in (ablation / "ablation.jsonl").read_text().splitlines() if line.strip()]
        (out / "ablation.md").write_text(markdown_table(rows))
        written += [out / "ablation.jsonl", out / "ablation.md"]
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ablation", default="runs/ablation", help="the --out folder of bc_ablation.py")
    parser.add_argument("--out", default="results/ablation")
    args = parser.parse_args(argv)
    written = export(Path(args.ablation), Path(args.out))
    if not written:
        print(f"nothing to export under {args.ablation}")
        return 1
    size = sum(p.stat().st_size for p in written)
    print(f"wrote {len(written)} files, {size / 1024:.0f} KB, under {args.out}")
    print(json.dumps([str(p) for p in written if p.suffix == ".png"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
