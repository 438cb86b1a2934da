"""The job pool of the scripts (bcrepro.cells.pool): a worker whose script is killed stops by itself instead of
training on beside the jobs that follow."""
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO

SCRIPT = '''
import os, sys, time
from pathlib import Path
from bcrepro.cells.pool import one_thread_pool

def job(path):
    Path(path).write_text(str(os.getpid()))
    time.sleep(600)  # a long training, as far as the pool knows

if __name__ == "__main__":
    with one_thread_pool(1) as pool:
        pool.submit(job, sys.argv[1]).result()
'''


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process: a zombie (ended, not yet reaped by whoever adopted it) is not."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] != "Z"


def wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def test_a_worker_stops_when_its_script_is_killed(tmp_path):
    (tmp_path / "script.py").write_text(SCRIPT)
    pid_file = tmp_path / "worker.pid"
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    script = subprocess.Popen([sys.executable, str(tmp_path / "script.py"), str(pid_file)], cwd=tmp_path, env=env)
    try:
        assert wait_for(lambda: pid_file.exists() and pid_file.read_text(), 120), "the worker never started its job"
        worker = int(pid_file.read_text())
        assert worker != script.pid and running(worker)
        time.sleep(2)  # several of the watcher's polls: a worker whose script is alive keeps its job
        assert running(worker), "the worker stopped while its script was still there"
        script.kill()  # SIGKILL: the script cannot pass anything on to its workers
        script.wait()
        assert wait_for(lambda: not running(worker), 30), "the worker trained on after its script was killed"
    finally:
        script.kill()
        if pid_file.exists() and pid_file.read_text() and running(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), 9)
