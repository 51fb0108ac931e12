"""Child processes that lead their own process group, and stopping all of them.

The emulators (a gcloud wrapper around a JVM) and the pipeline run in process
groups of their own, so that stopping one stops everything it started; a stop
is complete only when no process of the group is left (the emulator's JVM
outlives its wrapper by about two seconds, with its port already closed).
"""

import contextlib
import logging
import os
import signal
import subprocess
import time
from typing import List

_LOGGER = logging.getLogger(__name__)


def group_members(pgid: int) -> List[int]:
    """Live (not zombie) processes of a process group, read from /proc."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                # "pid (comm) state ppid pgrp ...": comm may contain spaces, so split after ')'.
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry))
    return members


def _wait_empty(pgid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while group_members(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def stop_group(process: subprocess.Popen, sig=signal.SIGTERM, timeout_s: float = 20) -> None:
    """Signals the group led by `process`, waits until none of it is left; SIGKILL after timeout_s."""
    if process is None:
        return
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:  # not a group leader (or gone): signal the process itself
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        pass
    if not os.path.isdir("/proc") or _wait_empty(process.pid, timeout_s):
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        return
    _LOGGER.warning("Process group %s still running after %.0fs: killing it", process.pid, timeout_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    if not _wait_empty(process.pid, 5.0):
        _LOGGER.error("Process group %s survived SIGKILL: %s", process.pid, group_members(process.pid))
