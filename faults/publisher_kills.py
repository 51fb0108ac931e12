"""Scenario 4: the door devices' publisher SIGKILLed 10 times (4 in the short form) at random
points under load, restarted each time on its durable outbox.

Real publishers (`python -m device.publisher`, one per door, each with its SQLite outbox)
read counts from their sensor on stdin and publish them into the running pipeline. A
count the publisher had stored keeps its seq and is sent after the restart; a line still
in the pipe when the process died was never accepted, so the sensor sends it again (the
scenario reads the outbox's last seq to know). Expected: realtime = the sum of the
accepted counts, every door's seqs continuous from 1 (no gap, none reused), 0 lost,
0 double counted.
"""

import os
import random
import subprocess
import sys
import time

from adapters import registry
from device.outbox import Outbox
from faults.devices import Message
from faults.harness import Scenario
from local.stack import PROJECT
from occupancy import documents

NAME = "publisher_kills"


class Door:
    """One door: its sensor's counts, its publisher process, its outbox."""

    def __init__(self, scenario, device: str, train: str, work_dir: str, transport_args=None):
        """`transport_args`: the publisher's flags for where it sends (default: the scenario's
        Pub/Sub topic on the emulator)."""
        self.scenario, self.device, self.train = scenario, device, train
        self.transport_args = transport_args or [
            "--topic",
            scenario.topic_name,
            "--project",
            PROJECT,
            "--emulator",
            os.environ["PUBSUB_EMULATOR_HOST"],
        ]
        self.outbox = os.path.join(work_dir, f"{device}.sqlite")
        self.log = os.path.join(work_dir, f"{device}.log")
        self.key = scenario.devices.keys.write_private_key(device, os.path.join(work_dir, f"{device}.pem"))
        self.counts = []  # what the sensor counted, in order
        self.process = None

    def start(self):
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "device.publisher",
                    "--device_id",
                    self.device,
                    *self.transport_args,
                    "--outbox",
                    self.outbox,
                    "--max_backoff_s",
                    "1",
                    "--status_interval_s",
                    "5",
                    "--private_key",
                    self.key,
                ],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
            )

    def accepted(self) -> int:
        return Outbox.peek(self.outbox)[1]

    def feed_pending(self):
        """Sends the sensor's counts the publisher has not accepted yet (all of them after a kill)."""
        for delta in self.counts[self.accepted() :]:
            self.process.stdin.write(f"{delta:+d}\n".encode())
        self.process.stdin.flush()

    def count(self, delta: int):
        self.counts.append(delta)
        self.process.stdin.write(f"{delta:+d}\n".encode())
        self.process.stdin.flush()

    def kill(self):
        self.process.kill()
        self.process.wait(timeout=10)
        self.process.stdin.close()

    def finish(self):
        self.process.stdin.close()
        return self.process.wait(timeout=60)


def count_as_truth(scenario, doors) -> None:
    """The truth the pipeline must reach: what each door's sensor counted (all of it accepted
    in the end: the sensor re-sent what a killed publisher had not taken)."""
    for door in doors:
        for seq, delta in enumerate(door.counts, 1):
            scenario.devices.truth[door.train] += delta
            scenario.devices.sent.append(Message(door.device, door.train, seq, delta, 0, b"", {}))
    scenario.devices.published += sum(len(d.counts) for d in doors)


def seqs_continuous(scenario, doors) -> bool:
    """Whether every door's applied seqs in realtime are exactly 1..its count: no gap, none reused."""
    realtime = {d.id: d.to_dict() or {} for d in scenario.client.collection("realtime").stream()}
    return all(documents.applied_ranges(realtime[d.train]).get(d.device) == [[1, len(d.counts)]] for d in doors)


def kill_running(doors) -> None:
    for door in doors:
        if door.process is not None and door.process.poll() is None:
            door.kill()


def run(context, short: bool) -> dict:
    kills = 4 if short else 10
    scenario = Scenario(context, NAME, trains=2, doors=2, seed=4)
    rng = random.Random(4)
    doors = []
    for train in scenario.devices.trains:  # doors of their own: the harness's devices keep theirs
        for i in range(2):
            device = f"{train}-pub{i}"
            registry.register_device(scenario.client, "devices", device, train)
            scenario.devices.keys.register(scenario.client, "devices", [device])
            doors.append(Door(scenario, device, train, context.work_dir))
    truth_floor = 50
    try:
        pipeline = scenario.start_pipeline()
        scenario.warm_up(pipeline)
        for door in doors:
            door.start()
            door.count(100)  # a margin, as in pipeline_kills: no arrival order can reach the clamp at 0
        totals = {train: scenario.devices.truth[train] + 200 for train in scenario.devices.trains}
        done_kills = 0
        steps = 400 if not short else 160
        kill_at = set(rng.sample(range(10, steps), kills))  # random points, exactly `kills` of them
        for step in range(steps):
            door = rng.choice(doors)
            delta = (
                rng.choice([1, 2, 3])
                if rng.random() < 0.5 or totals[door.train] < truth_floor + 3
                else -rng.choice([1, 2, 3])
            )
            door.count(delta)
            totals[door.train] += delta
            if step in kill_at:
                victim = rng.choice(doors)
                victim.kill()
                done_kills += 1
                victim.start()
                victim.feed_pending()
            time.sleep(0.01)
        codes = [door.finish() for door in doors]  # each drains its outbox and exits 0
        count_as_truth(scenario, doors)
        recovery = scenario.wait_exact(pipeline, timeout_s=120)
        continuous = seqs_continuous(scenario, doors)
        return scenario.result(
            recovery,
            kills=done_kills,
            seqs_continuous=continuous,
            passed=continuous and codes == [0] * len(doors),
            notes=f"{done_kills} publisher SIGKILLs across {len(doors)} doors; seqs continuous: {continuous}",
        )
    finally:
        kill_running(doors)
        scenario.close()
