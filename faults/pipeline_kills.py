"""Scenario 3: the pipeline SIGKILLed and restarted 5 times (2 in the short form) under
steady traffic.

The local runner acknowledges a message when it pulls it, before the message is
applied and written: a killed local pipeline loses what it had pulled. Devices
close that gap the way docs/faults.md describes: after a restart each re-publishes
what it cannot see applied in realtime's `devices_seen` (the seq ranges). The new
job seeds each train from realtime and the latest history document, and
de-duplicates the re-published seqs. Expected: 0 lost, 0 double counted.

Re-published messages arrive after later ones were applied (late events): a train
is first primed with 200 people so that no arrival order can reach the clamp at 0,
and the ground truth stays what the pipeline must show.
"""

import time

from faults.harness import Scenario

NAME = "pipeline_kills"


def run(context, short: bool) -> dict:
    kills = 2 if short else 5
    scenario = Scenario(context, NAME, seed=3)
    republished = 0
    try:
        pipeline = scenario.start_primed()
        for _ in range(kills):
            scenario.devices.send(30, interval_s=0.05)
            scenario.kill(pipeline)  # with messages pulled, acknowledged and not yet written
            pipeline = scenario.start_pipeline()
            scenario.warm_up(pipeline)
            republished += scenario.devices.republish_unapplied(scenario.client)
        scenario.devices.send(20, interval_s=0.05)
        restarted = time.monotonic()
        recovery, again = scenario.wait_exact_republishing(pipeline, restarted)
        republished += again
        return scenario.result(
            recovery,
            kills=kills,
            republished=republished,
            notes=f"{kills} SIGKILLs; devices re-published {republished} messages they could not see applied",
        )
    finally:
        scenario.close()
