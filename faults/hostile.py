"""Scenario 6: hostile input through the real emulator into the running pipeline.

N payloads from faults/payloads.py (hypothesis: random bytes, JSON of wrong shapes
and types, nesting bombs, huge numbers, NaN, 1 MB strings, unicode and path-like
ids, legacy CSV variants, malformed attributes including `event_time`, forged and
malformed signature envelopes naming the scenario's real devices) are published among
good traffic. None of them is signed by a registered key, so every one must end as a
dead letter with a reason: dead letters = hostile messages, the
pipeline never crashes, and the good traffic around them (and after them) counts
exactly.
"""

import time

from faults import payloads
from faults.harness import Scenario
from occupancy import wire

NAME = "hostile_input"


def missing_dead_letters(scenario, drawn, examples: int = 5) -> list:
    """Up to `examples` drawn payloads (repr, cut) with no dead letter of the same payload and attributes."""
    import base64
    import collections
    import json

    key = lambda payload, attributes: (
        base64.b64encode(payload).decode("ascii"),
        json.dumps(attributes, sort_keys=True),
    )
    found = collections.Counter(
        key(base64.b64decode(d.get("payload") or ""), d.get("attributes") or {})
        for d in (doc.to_dict() or {} for doc in scenario.client.collection("dead_letters").stream())
    )
    missing = []
    for payload, attributes in drawn:
        k = key(payload, attributes)
        if found[k]:
            found[k] -= 1
        else:
            missing.append(f"{payload[:120]!r} {attributes!r}"[:300])
    return missing[:examples] + ([f"... {len(missing)} in all"] if len(missing) > examples else [])


def run(context, short: bool) -> dict:
    n = 1000 if short else 10_000
    drawn = payloads.draw(n, seed=6)
    scenario = Scenario(context, NAME, seed=6)
    try:
        pipeline = scenario.start_pipeline()
        scenario.warm_up(pipeline)
        futures = []
        for i, (payload, attributes) in enumerate(drawn):
            futures.append(scenario.devices.publish_raw(payload, attributes, wait=False))
            if i % 50 == 0:
                scenario.devices.publish(scenario.devices.make())
        for future in futures:
            future.result(timeout=120)
        scenario.devices.send(30, interval_s=0.02)  # good traffic after the storm still counts
        published_at = time.monotonic()
        recovery = scenario.wait_exact(pipeline, timeout_s=300)
        # Every hostile message is a dead letter with a reason, none is silently dropped.
        deadline = time.monotonic() + 120
        while sum(scenario.dead_letters().values()) < len(drawn) and time.monotonic() < deadline:
            time.sleep(0.5)
        dead = scenario.dead_letters()
        reasons_ok = set(dead) <= set(wire.REASONS)
        all_accounted = sum(dead.values()) == len(drawn)
        missing = [] if all_accounted else missing_dead_letters(scenario, drawn)
        return scenario.result(
            None if recovery is None else time.monotonic() - published_at,
            hostile=len(drawn),
            crashed=pipeline.poll() is not None,
            passed=reasons_ok and all_accounted and pipeline.poll() is None,
            notes=f"{len(drawn)} hostile payloads, all to be dead letters ({sum(dead.values())} were)",
            **({"missing": missing} if missing else {}),
        )
    finally:
        scenario.close()
