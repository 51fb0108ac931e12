"""Stopping child processes: the whole group, and a child that does not lead one."""

import subprocess
import time

from local.processes import group_members, stop_group


def test_stop_group_stops_the_leader_and_what_it_started():
    leader = subprocess.Popen(["bash", "-c", "sleep 60 & sleep 60 & wait"], start_new_session=True)
    deadline = time.monotonic() + 5
    while len(group_members(leader.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(group_members(leader.pid)) == 3
    stop_group(leader, timeout_s=5)
    assert leader.returncode is not None and group_members(leader.pid) == []


def test_stop_group_signals_a_child_that_leads_no_group_without_waiting():
    child = subprocess.Popen(["sleep", "60"])
    started = time.monotonic()
    stop_group(child, timeout_s=20)
    assert child.returncode == -15 and time.monotonic() - started < 5
