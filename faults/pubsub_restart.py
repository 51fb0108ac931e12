"""Scenario 2: the Pub/Sub emulator restarted mid-stream, devices publishing through their outbox.

Real Pub/Sub keeps every message it acknowledged until a subscriber takes it;
the emulator keeps nothing: a restart forgets its topics, its subscriptions
and every unread message. So here "0 lost" rests where it rests in the field
when anything between a device and the pipeline fails: on the devices. A
device keeps a count in its outbox until it can see it applied (realtime's
`devices_seen` seq ranges) and sends again what it cannot see applied (docs/operations.md,
"The door device"); the pipeline de-duplicates by seq.

Steps: traffic while the pipeline runs; a burst published and acknowledged by
the emulator just before it stops (some of it not yet pulled: what the restart
loses); counts made while Pub/Sub is down (a publish cannot succeed: the
devices keep them); the emulator started again on the same port, its topic and
subscription created again (as `make deploy-infra` would); the pipeline, whose
subscription had vanished, restarted if it stopped; the devices re-publish
what they cannot see applied. Expected: 0 lost, 0 double counted.
"""

import time

from faults.harness import Scenario
from local import stack
from local.stack import PROJECT

NAME = "pubsub_restart"


def run(context, short: bool) -> dict:
    down_s = 5 if short else 20
    scenario = Scenario(context, NAME, seed=2)
    republished = 0
    try:
        pipeline = scenario.start_primed()
        scenario.devices.send(30, interval_s=0.05)
        for _ in range(20):  # acknowledged by the emulator, perhaps not yet pulled
            scenario.devices.publish(scenario.devices.make())
        context.pubsub.stop()
        stopped = time.monotonic()
        held = 0
        while time.monotonic() - stopped < down_s:  # counts made while Pub/Sub is down
            scenario.devices.make()
            held += 1
            time.sleep(0.1)
        context.pubsub.start()
        stack.ensure_topic(PROJECT, scenario.topic_name, [scenario.subscription])
        survived = pipeline.poll() is None
        if survived:  # its subscription is a new one now; give it a moment to pull from it
            time.sleep(2)
            survived = pipeline.poll() is None
        if not survived:
            pipeline = scenario.start_pipeline()
        scenario.warm_up(pipeline)
        republished += scenario.devices.republish_unapplied(scenario.client)
        scenario.devices.send(20, interval_s=0.05)
        recovery, again = scenario.wait_exact_republishing(pipeline, time.monotonic())
        republished += again
        return scenario.result(
            recovery,
            down_s=down_s,
            held_by_devices=held,
            republished=republished,
            pipeline_survived=survived,
            notes=f"Pub/Sub emulator down {down_s} s and restarted empty; "
            f"devices held {held} counts and re-published {republished} "
            f"they could not see applied; the pipeline "
            f"{'kept running' if survived else 'stopped and was restarted'}",
        )
    finally:
        scenario.close()
