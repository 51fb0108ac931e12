"""A `make bench` step that runs past its time limit stops the servers it started."""

import os
import subprocess
import time

import pytest

from bench.run import run_child


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_step_that_times_out_leaves_no_server_running(tmp_path):
    pid_file = tmp_path / "server.pid"
    with pytest.raises(subprocess.TimeoutExpired):
        run_child("tests.step_with_a_server", [f"--pid_file={pid_file}"], {}, str(tmp_path / "out.json"), timeout_s=8)
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = _alive(pid)
    if alive:
        os.kill(pid, 9)
    assert not alive, "the step's server outlived the step"
