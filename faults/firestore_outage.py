"""Scenario 1: Firestore unreachable for 30 s mid-stream (10 s in the short form).

Devices keep counting through the outage; the pipeline's writes fail with
transient errors and are retried (--write_retry_deadline_s=120), then the
runner retries the bundle. Expected: nothing lost, nothing counted twice, and
realtime exact soon after Firestore is back (recovery = from its return).
"""

import time

from faults.harness import Scenario

NAME = "firestore_outage"


def run(context, short: bool) -> dict:
    outage_s = 10 if short else 30
    scenario = Scenario(context, NAME, seed=1)
    try:
        pipeline = scenario.start_pipeline()
        scenario.warm_up(pipeline)
        scenario.devices.send(40, interval_s=0.05)
        context.proxy.cut()
        cut_at = time.monotonic()
        while time.monotonic() - cut_at < outage_s:
            scenario.devices.send(10, interval_s=0.05)
        context.proxy.restore()
        scenario.devices.send(20, interval_s=0.05)
        recovery = scenario.wait_exact(pipeline, timeout_s=180)
        with open(pipeline.log_path, errors="replace") as f:
            retries = sum("Transient Firestore error" in line for line in f)
        return scenario.result(
            recovery,
            outage_s=outage_s,
            write_retries_logged=retries,
            passed=retries > 0,  # the outage did reach the pipeline's writes
            notes=f"Firestore cut for {outage_s} s; recovery counted from its return",
        )
    finally:
        context.proxy.restore()
        scenario.close()
