"""scripts/gpu_check.py, the GPU machine's one check, run on CPU at toy sizes as that machine would run it: from the
checkout, with MLflow, Snakemake, pandas, seaborn and PyYAML impossible to import."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO

ABSENT_ON_THE_GPU_MACHINE = ("mlflow", "snakemake", "pandas", "seaborn", "yaml")


def gpu_check(tmp_path: Path, *args, timeout: int) -> subprocess.CompletedProcess:
    blocked = tmp_path / "blocked"
    for name in ABSENT_ON_THE_GPU_MACHINE:
        (blocked / name).mkdir(parents=True, exist_ok=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('the GPU check imported {name}')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocked), str(REPO)]))
    return subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_check.py"), *map(str, args)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=timeout)


def records_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_every_step_trains_compresses_resumes_and_times_the_cells_and_the_papers_architecture(tmp_path):
    out = tmp_path / "check"
    done = gpu_check(tmp_path, "--device", "cpu", "--archs", "lenet300", "--methods", "bc-gnj", "dc", "--epochs", 2,
                     "--validation", 200, "--data-root", tmp_path / "none", "--jobs", 2, "--time-steps", 3,
                     "--speed-batch-sizes", 1, 4, "--speed-repeats", 2, "--paper-batch-sizes", 1, 4,
                     "--paper-repeats", 2, "--out", out, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    records = records_of(out)
    assert {"start", "library", "cell", "cpu_compress", "cpu_speedup", "resume", "step_time", "projection",
            "paper_speed", "end"} <= {r["kind"] for r in records}
    assert {r["cell"] for r in records if r["kind"] == "cell"} == {"lenet300/dense", "lenet300/bc-gnj", "lenet300/dc"}
    assert all(r["ok"] for r in records if "ok" in r), [r for r in records if not r.get("ok", True)]
    assert (out / "runs" / "lenet300" / "bc-gnj" / "train.log").read_text().count("epoch") >= 2
    (resume,) = [r for r in records if r["kind"] == "resume"]
    assert resume["codes"] == [3, 0, 0]  # stopped after epoch 1, finished epoch 2, then nothing left to do
    timed = [r for r in records if r["kind"] == "step_time"]
    assert "lenet300/bc-ghs" in {r["cell"] for r in timed}
    assert all(r["seconds_per_step"] > 0 and r["images_per_second"] > 0 for r in timed)
    (projection,) = [r for r in records if r["kind"] == "projection"]
    assert projection["bc_ghs_over_dense"]["lenet300"] > 0
    (paper,) = [r for r in records if r["kind"] == "paper_speed"]
    assert paper["architecture"] == [311, 86, 14]  # Table 2, LeNet-300-100 BC-GHS
    slim = {g["batch"]: g for g in paper["speedups"] if g["variant"] == "slim"}
    assert sorted(slim) == [1, 4] and all(g["speedup"] > 0 for g in slim.values())
    assert slim[1]["flops_ratio"] == (784 * 300 + 300 * 100 + 100 * 10) / (311 * 86 + 86 * 14 + 14 * 10)


@pytest.mark.slow
def test_the_paper_step_times_lenet5_nhwc_as_torchscript(tmp_path):
    out = tmp_path / "check"
    done = gpu_check(tmp_path, "--device", "cpu", "--archs", "lenet5", "--skip", "library", "cells", "times",
                     "--paper-batch-sizes", 1, 3, "--paper-repeats", 2, "--memory-format", "channels_last",
                     "--compile", "torchscript", "--out", out, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "5-10-76-16: slim over original" in done.stdout
    (lenet5,) = [r for r in records_of(out) if r["kind"] == "paper_speed"]
    assert lenet5["architecture"] == [5, 10, 76, 16]
    assert {r["memory_format"] for r in lenet5["records"]} == {"channels_last"}
    assert {r["compiled"] for r in lenet5["records"]} == {"torchscript"}
    slim = {g["batch"]: g for g in lenet5["speedups"] if g["variant"] == "slim"}
    assert sorted(slim) == [1, 3] and all(g["speedup"] > 0 for g in slim.values())
    # 5-10-76-16 of 20-50-800-500: conv1 5x24x24x25, conv2 10x8x8x(5x25), fc1 76x16, fc2 16x10 multiply-adds
    slim_macs = 5 * 24 * 24 * 25 + 10 * 8 * 8 * 5 * 25 + 76 * 16 + 16 * 10
    assert slim[1]["flops_ratio"] == 2_293_000 / slim_macs


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU; the check runs for real there")
def test_the_check_says_when_there_is_no_gpu(tmp_path):
    done = gpu_check(tmp_path, "--device", "cuda", "--out", tmp_path / "check", timeout=300)
    assert done.returncode != 0 and "no CUDA device" in done.stderr
    assert not (tmp_path / "check").exists()
