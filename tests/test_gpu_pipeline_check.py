"""scripts/gpu_pipeline_check.sh, the GPU machine's check of the whole pipeline, run on CPU at toy sizes as that
machine would run it: from the checkout, with MLflow, Snakemake, pandas and seaborn impossible to import."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ABSENT_ON_THE_GPU_MACHINE = ("mlflow", "snakemake", "pandas", "seaborn")


@pytest.mark.slow
def test_pipeline_check_trains_compresses_resumes_and_times_every_cell(tmp_path):
    blocked = tmp_path / "blocked"
    for name in ABSENT_ON_THE_GPU_MACHINE:
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('the pipeline check imported {name}')\n")
    env = dict(os.environ, PYTHONPATH=str(blocked), PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    out = tmp_path / "check"
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_pipeline_check.sh"), "--device", "cpu", "--archs", "lenet300",
         "--methods", "bc-gnj", "dc", "--epochs", "2", "--validation", "200", "--data-root", str(tmp_path / "none"),
         "--jobs", "2", "--time-steps", "2", "--speed-batch-sizes", "1", "4", "--speed-repeats", "2",
         "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    kinds = {r["kind"] for r in records}
    assert {"start", "library", "cell", "cpu_compress", "cpu_speedup", "resume", "step_time", "projection",
            "end"} <= kinds
    cells = {r["cell"] for r in records if r["kind"] == "cell"}
    assert cells == {"lenet300/dense", "lenet300/bc-gnj", "lenet300/dc"}
    assert all(r["ok"] for r in records if "ok" in r), [r for r in records if not r.get("ok", True)]
    (resume,) = [r for r in records if r["kind"] == "resume"]
    assert resume["codes"] == [3, 0, 0]  # stop after epoch 1, finish epoch 2, then nothing left to do
    timed = {r["cell"] for r in records if r["kind"] == "step_time"}
    assert "lenet300/bc-ghs" in timed and all(r["seconds_per_step"] > 0 for r in records
                                              if r["kind"] == "step_time")
