"""How much of a finished workflow run was the jobs' own work, and how much of that was training.

    python experiments/workflow_overhead/workflow_overhead.py WORKDIR

Reads Snakemake's wall time ("Elapsed time" in the newest ``WORKDIR/.snakemake/log/*.snakemake.log``), every job's
own seconds (``WORKDIR/results/benchmarks/**/*.tsv``, the ``s`` column), the training-loop seconds of every cell
(``train_seconds`` in ``results/runs/*/*/seed*/run.json``) and prints them side by side, with the seconds per rule.
"""
from __future__ import annotations

import argparse
import csv
import json
import re
from collections import defaultdict
from pathlib import Path


def snakemake_wall_seconds(workdir: Path) -> float:
    logs = sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log"))
    if not logs:
        raise SystemExit(f"no Snakemake log under {workdir}/.snakemake/log: run the workflow there first")
    match = re.search(r"Elapsed time: (\d+):(\d+):([\d.]+)", logs[-1].read_text())
    if match is None:
        raise SystemExit(f"{logs[-1]} has no 'Elapsed time' line: the run did not finish")
    hours, minutes, seconds = match.groups()
    return 3600 * int(hours) + 60 * int(minutes) + float(seconds)


def job_seconds_by_rule(workdir: Path) -> dict[str, list[float]]:
    by_rule = defaultdict(list)
    root = workdir / "results" / "benchmarks"
    for path in root.rglob("*.tsv"):
        rows = list(csv.DictReader(path.open(), delimiter="\t"))
        rule = path.relative_to(root).parts[0].removesuffix(".tsv")
        by_rule[rule].append(float(rows[-1]["s"]))
    return by_rule


def main(workdir: Path) -> None:
    wall = snakemake_wall_seconds(workdir)
    by_rule = job_seconds_by_rule(workdir)
    jobs = sum(sum(v) for v in by_rule.values())
    training = sum(json.loads(p.read_text()).get("train_seconds") or 0.0
                   for p in (workdir / "results" / "runs").glob("*/*/seed*/run.json"))
    print(f"wall (Snakemake)            {wall:9.1f} s")
    print(f"jobs' own seconds, {sum(map(len, by_rule.values())):3d} jobs {jobs:9.1f} s  "
          f"(outside the jobs: {wall - jobs:+.1f} s = {100 * (wall - jobs) / wall:+.1f} % of wall)")
    print(f"training-loop seconds       {training:9.1f} s  ({100 * training / wall:.1f} % of wall)")
    for rule, seconds in sorted(by_rule.items(), key=lambda kv: -sum(kv[1])):
        print(f"  {rule:14s} {len(seconds):3d} jobs {sum(seconds):9.1f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workdir", type=Path, help="the folder the workflow ran in (its .snakemake/ and results/)")
    main(parser.parse_args().workdir)
