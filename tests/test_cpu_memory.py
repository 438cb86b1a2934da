"""bcrepro.deploy.cpu_memory: checked with the kernel's own count of page faults, in fresh processes (the setting is
process-wide, so it must not leak into the test process)."""
import json
import subprocess
import sys

import torch

from bcrepro.deploy import cpu_memory, speed

BLOCK_PAGES = 16 * 2 ** 20 * 4 // 4096  # a 64 MiB float tensor: above glibc's largest mmap threshold (32 MiB)

FAULTS_PER_PASS = """
import json, resource, sys, torch
from bcrepro.deploy import cpu_memory
applied = cpu_memory.keep_freed_memory() if sys.argv[1] == "keep" else False
faults = []
for _ in range(20):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.ones(16 * 2 ** 20)  # touches every page
    del block
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "allocator": cpu_memory.allocator(), "faults": faults}))
"""


def faults_per_pass(mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", FAULTS_PER_PASS, mode], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_system_allocator_faults_in_every_page_of_a_large_block_on_every_pass():
    result = faults_per_pass("system")
    assert result == {"applied": False, "allocator": "system", "faults": result["faults"]}
    assert all(f >= BLOCK_PAGES for f in result["faults"][-10:])  # a fresh mmap each time


def test_keeping_freed_memory_stops_the_faults_once_the_heap_holds_the_block():
    result = faults_per_pass("keep")
    assert result["applied"] is True and result["allocator"] == "keep-freed"
    # glibc grows the heap for the first few passes, then serves the block from memory it already touched.
    assert sum(result["faults"][-10:]) < BLOCK_PAGES // 10


def test_no_glibc_leaves_the_allocator_alone(monkeypatch):
    monkeypatch.setattr(cpu_memory.platform, "libc_ver", lambda: ("", ""))
    assert cpu_memory.keep_freed_memory() is False
    assert cpu_memory.allocator() == "system"


def test_speed_records_name_the_allocator_on_cpu_only(monkeypatch):
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    records = speed.measure({"original": net}, (4,), [2], torch.device("cpu"), repeats=2, warmup=0)
    assert [r["allocator"] for r in records] == ["system"]
    monkeypatch.setattr(cpu_memory, "_applied", True)
    records = speed.measure({"original": net}, (4,), [2], torch.device("cpu"), repeats=2, warmup=0)
    assert [r["allocator"] for r in records] == ["keep-freed"]
