"""Scenario 5: every message delivered 3 times, in shuffled order within the reorder delay.

Messages are made in groups whose event times span less than the reorder delay
(1 s); each group is published three times over, shuffled. Expected: counts exact,
every duplicate dropped by its (device, seq).
"""

import random

from faults.harness import Scenario
from occupancy import wire

NAME = "duplicate_storm"


def run(context, short: bool) -> dict:
    groups = 10 if short else 40
    scenario = Scenario(context, NAME, seed=5)
    shuffle = random.Random(5)
    try:
        # Primed: a group read after its flush (a loaded machine) is applied late, in arrival
        # order, and must not meet the clamp at 0 that event-time order would not.
        pipeline = scenario.start_primed()
        for _ in range(groups):
            base = wire.now_us()
            group = [scenario.devices.make(t_us=base + i * 20_000) for i in range(12)]  # 12 within 0.24 s
            deliveries = group * 3
            shuffle.shuffle(deliveries)
            futures = [scenario.devices.publish(m, wait=False) for m in deliveries]
            for future in futures:
                future.result(timeout=60)
        recovery = scenario.wait_exact(pipeline, timeout_s=120)
        return scenario.result(
            recovery, deliveries_per_message=3, notes="each message 3 times, shuffled within 0.24 s of event time"
        )
    finally:
        scenario.close()
