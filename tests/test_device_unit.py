"""A door device installed as deploy/occupancy-publisher.service documents it gets its counts
counted: the unit's own ExecStart, run with the environment file its comments document, against
the emulators and the running pipeline.

Installed so before, a device sent every count unsigned (the unit passed no key), the pipeline
dead-lettered each one and the publisher deleted them on Pub/Sub's ack: all lost, silently.
"""

import os
import re
import shlex
import subprocess
import sys

from tests.support import KEYS, REPO_ROOT, Heartbeats, register, wait_for_values, warm_up

UNIT = REPO_ROOT / "deploy" / "occupancy-publisher.service"


def _documented_environment() -> dict:
    """The KEY=value lines the unit's comments give for /etc/occupancy-publisher/env."""
    lines = UNIT.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# /etc/occupancy-publisher/env"))
    out = {}
    for line in lines[start + 1 :]:
        match = re.match(r"^#   ([A-Z_]+)=(\S*)", line)
        if not match:
            break
        out[match.group(1)] = match.group(2)
    return out


def _exec_start() -> str:
    """The shell script of ExecStart (`/bin/sh -c '...'`), as systemd hands it to sh ($$ -> $)."""
    text = UNIT.read_text().replace("\\\n", " ")
    command = next(line for line in text.splitlines() if line.startswith("ExecStart="))[len("ExecStart=") :]
    argv = shlex.split(command)
    assert argv[:2] == ["/bin/sh", "-c"], argv
    return argv[2].replace("$$", "$")


def test_the_units_environment_names_the_devices_private_key():
    documented = _documented_environment()
    assert {"DEVICE_ID", "PROJECT", "TOPIC", "CREDENTIALS", "PRIVATE_KEY", "COUNTER_COMMAND"} <= set(documented)
    assert '--private_key "$PRIVATE_KEY"' in _exec_start()


def test_a_device_installed_from_the_unit_gets_its_counts_counted(local_stack, tmp_path):
    client, fleet, start = local_stack
    register(client, {"t1": ["door-1", "hb-1"]})
    pipeline = start()
    warm_up(client, fleet, pipeline, ["hb-1"])
    key = KEYS.write_private_key("door-1", str(tmp_path / "door.pem"))
    counter = tmp_path / "door-counter"  # what the unit's COUNTER_COMMAND names: a program
    counter.write_text("#!/bin/sh\nprintf '+2\\n+3\\n4,1\\n'\n")
    counter.chmod(0o755)
    environment = {
        **_documented_environment(),
        "DEVICE_ID": "door-1",
        "PROJECT": fleet.topic.split("/")[1],
        "TOPIC": fleet.topic.split("/")[-1],
        "CREDENTIALS": "",
        "PRIVATE_KEY": key,
        "COUNTER_COMMAND": str(counter),
        "PUBLISHER_ARGS": "",
    }
    script = _exec_start().replace("/opt/occupancy/venv/bin/python", shlex.quote(sys.executable))
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    done = subprocess.run(
        ["/bin/sh", "-c", script],
        cwd=REPO_ROOT,
        env={**os.environ, **environment, "STATE_DIRECTORY": str(state)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    beats = Heartbeats(fleet, ["hb-1"])  # the local runner's watermark moves while messages come
    beats.start()
    try:
        wait_for_values(client, {"t1": 2 + 3 + (4 - 1)}, pipeline)
    finally:
        beats.stop()
