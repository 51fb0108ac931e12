"""Scenario 3b: a second job started on the same subscription while the first still runs.

Pub/Sub splits the messages between the two jobs; each keeps its own count of
every train. Without a guard both would write `realtime/{train}` and the
document would flip between two partial views. With the writer fence
(occupancy.fencing) the newer job's first write of a train takes it over: the
older job's writes of that train (history included) are dropped from then on.
The older job is then stopped, as an operator would (locally a kill: it loses
what it had pulled), and the devices re-publish what they cannot see applied
in realtime; the newer job counts each of those once.

Expected: 0 lost, 0 double counted, every realtime document last written by
the newer job, and the older job's log says it was fenced off.
"""

import time

from faults.harness import Scenario, tail
from local import stack
from occupancy.fencing import EPOCH_FIELD

NAME = "two_writers"
FENCED_LOG = "is written by a newer job"


def _epochs(scenario) -> dict:
    return {d.id: (d.to_dict() or {}).get(EPOCH_FIELD) for d in scenario.client.collection("realtime").stream()}


def run(context, short: bool) -> dict:
    scenario = Scenario(context, NAME, seed=9)
    republished = 0
    try:
        old = scenario.start_primed()
        old_epoch = max(e for e in _epochs(scenario).values() if e)
        new = scenario.start_pipeline()  # the old job keeps running: two jobs, one subscription
        stack.wait_for(
            lambda: new.poll() is not None or any((e or 0) > old_epoch for e in _epochs(scenario).values()),
            120,
            what=f"{NAME}: the second job's first writes",
        )
        if new.poll() is not None:
            raise RuntimeError(f"{NAME}: the second job died:\n{tail(new)}")
        scenario.devices.send(40 if short else 150, interval_s=0.05)  # both jobs take messages
        new_epoch = max(e for e in _epochs(scenario).values() if e)
        stack.wait_for(
            lambda: all(e == new_epoch for e in _epochs(scenario).values()),
            60,
            what=f"{NAME}: every train taken over by the second job",
        )
        with open(old.log_path, errors="replace") as f:
            fenced = FENCED_LOG in f.read()
        scenario.kill(old)  # the operator cancels the older job
        republished += scenario.devices.republish_unapplied(scenario.client)
        scenario.devices.send(20, interval_s=0.05)
        stopped = time.monotonic()
        recovery, again = scenario.wait_exact_republishing(new, stopped)
        republished += again
        newest_everywhere = set(_epochs(scenario).values()) == {new_epoch}
        return scenario.result(
            recovery,
            republished=republished,
            old_job_fenced=fenced,
            passed=fenced and newest_everywhere,
            notes=f"two jobs on one subscription; the older was fenced off "
            f"({fenced}) and stopped; devices re-published {republished} "
            "messages they could not see applied",
        )
    finally:
        scenario.close()
