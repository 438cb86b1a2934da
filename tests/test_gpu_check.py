"""scripts/gpu_check.sh, the GPU machine's one prepared command, run on CPU at toy sizes as that machine would run it:
from the checkout via PYTHONPATH, with MLflow, Snakemake, pandas and seaborn impossible to import."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
ABSENT_ON_THE_GPU_MACHINE = ("mlflow", "snakemake", "pandas", "seaborn", "yaml")


@pytest.mark.slow
def test_gpu_check_runs_from_the_checkout_without_mlflow_and_reports_speeds(tmp_path):
    blocked = tmp_path / "blocked"
    for name in ABSENT_ON_THE_GPU_MACHINE:
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('gpu_check imported {name}')\n")
    env = dict(os.environ, PYTHONPATH=str(blocked), PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    out = tmp_path / "report.json"
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_check.sh"), "--device", "cpu", "--steps", "3", "--batch", "2",
         "--batch-sizes", "1", "3", "--repeats", "2", "--archs", "lenet5", "--memory-format", "channels_last",
         "--compile", "torchscript", "--out", str(out),
         "--workdir", str(tmp_path / "runs")],
        env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "images/s" in result.stdout and "BC-GHS over dense" in result.stdout
    assert "architecture 5-10-76-16" in result.stdout
    report = json.loads(out.read_text())
    assert [r["method"] for r in report["training"]] == ["dense", "bc-ghs"]
    assert all(r["seconds_per_step"] > 0 and r["steps_timed"] == 2 for r in report["training"])
    (lenet5,) = report["speed"]
    assert lenet5["architecture"] == [5, 10, 76, 16]
    assert {r["memory_format"] for r in lenet5["records"]} == {"channels_last"}
    assert {r["compiled"] for r in lenet5["records"]} == {"torchscript"}
    slim = {g["batch"]: g for g in lenet5["speedups"] if g["variant"] == "slim"}
    assert sorted(slim) == [1, 3] and all(g["speedup"] > 0 for g in slim.values())
    # 5-10-76-16 of 20-50-800-500: conv1 5x24x24x25, conv2 10x8x8x(5x25), fc1 76x16, fc2 16x10 multiply-adds
    slim_macs = 5 * 24 * 24 * 25 + 10 * 8 * 8 * 5 * 25 + 76 * 16 + 16 * 10
    assert slim[1]["flops_ratio"] == 2_293_000 / slim_macs


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU; the check runs for real there")
def test_gpu_check_says_when_there_is_no_gpu(tmp_path):
    result = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), "--out", str(tmp_path / "r.json")],
                            capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}"))
    assert result.returncode != 0 and "no CUDA device" in result.stderr
