"""GPU slots: jobs that share a machine's GPUs spread over them, at most ``jobs_per_device`` on each."""
import subprocess
import sys
import textwrap

import pytest

from bcrepro import gpu_slots

GPUS = ["GPU-aaaa", "GPU-bbbb"]


@pytest.fixture(autouse=True)
def release():
    yield
    gpu_slots.release_all()


def hold_slot(lock_dir, device_id, slot):
    """Another process holding one slot, as a running job does (flock is per open file, so a child process)."""
    code = textwrap.dedent(f"""
        import fcntl, sys, time
        handle = open({str(lock_dir / f'{device_id}.slot{slot}.lock')!r}, 'a+')
        fcntl.flock(handle, fcntl.LOCK_EX)
        print('held', flush=True)
        sys.stdin.read()
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_jobs_take_the_least_busy_gpu(tmp_path):
    child = hold_slot(tmp_path, GPUS[0], 0)
    try:
        assert gpu_slots.claim(tmp_path, GPUS, jobs_per_device=2) == 1  # GPU 0 has one job, GPU 1 none
        assert gpu_slots.claim(tmp_path, GPUS, jobs_per_device=2) in (0, 1)  # both now have one free slot
    finally:
        child.stdin.close()
        child.wait()


def test_each_gpu_takes_at_most_its_slots_then_jobs_wait(tmp_path):
    children = [hold_slot(tmp_path, device_id, 0) for device_id in GPUS]
    waits = []

    def sleep(seconds):
        waits.append(seconds)
        children[1].stdin.close()  # the job on GPU 1 ends
        children[1].wait()

    try:
        assert gpu_slots.claim(tmp_path, GPUS, jobs_per_device=1, poll_s=0.5, sleep=sleep) == 1
        assert waits == [0.5]
    finally:
        children[0].stdin.close()
        children[0].wait()


def test_a_slot_is_freed_when_its_job_exits(tmp_path):
    child = hold_slot(tmp_path, GPUS[0], 0)
    assert gpu_slots.free_slots(tmp_path, GPUS[0], 1) == []
    child.stdin.close()
    child.wait()
    assert gpu_slots.free_slots(tmp_path, GPUS[0], 1) == [0]


def test_one_process_claims_distinct_slots(tmp_path):
    claimed = [gpu_slots.claim(tmp_path, GPUS, jobs_per_device=2) for _ in range(4)]
    assert sorted(claimed) == [0, 0, 1, 1]
    assert all(gpu_slots.free_slots(tmp_path, device_id, 2) == [] for device_id in GPUS)
