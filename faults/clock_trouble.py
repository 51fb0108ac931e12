"""Scenario 7: clock trouble. One door's clock jumps back 1 h, another's forward 10 min, and
counts arrive exactly at the daily reset boundary (the pipeline runs with --daily_reset).

* Back 1 h: its counts are late (event time before what the train already applied):
  they are applied to the train's latest bucket and marked `late`: counted, not lost.
* Forward 10 min (beyond --max_future_skew_s, 300 s): `future_timestamp` dead letters,
  each with the payload to replay once the clock is fixed: accounted, never silent.
  The truth here leaves them out; the check is that every one of them is a dead letter.
* At the daily reset boundary: the train goes to 0 at the boundary; a count stamped
  exactly at it belongs to the new day (applied after the reset).
The DST day of --daily_reset in Europe/Vienna is covered by tests/test_fold.py (pure).
"""

import datetime

from faults.harness import Scenario
from occupancy import wire

NAME = "clock_trouble"


def run(context, short: bool) -> dict:
    now = datetime.datetime.now(datetime.timezone.utc)
    # A daily reset at the next whole minute at least 40 s away (UTC; --daily_reset is HH:MM),
    # so that the traffic of the scenario crosses it.
    boundary = (now + datetime.timedelta(seconds=100)).replace(second=0, microsecond=0)
    scenario = Scenario(context, NAME, trains=2, doors=3, seed=7)
    future = []
    try:
        pipeline = scenario.start_pipeline(f"--daily_reset={boundary:%H:%M}", "--timezone=UTC")
        scenario.warm_up(pipeline)
        devices = scenario.devices
        t0, t1 = sorted(devices.trains)
        back, ahead, normal = devices.trains[t0][0], devices.trains[t0][1], devices.trains[t1][0]
        devices.send(20, interval_s=0.05)
        # Back 1 h: late, counted (positive only: no clamp whatever the order).
        for _ in range(5):
            m = devices.make(back, 2, t_us=wire.now_us())
            m = m._replace(t_us=m.t_us - 3_600_000_000)
            payload, attributes = devices.encode(m.device, m.delta, m.t_us, m.seq)
            devices.sent[-1] = m._replace(payload=payload, attributes=attributes)
            devices.publish(devices.sent[-1])
        # Forward 10 min: dead letters; taken out of the truth (they never count).
        for _ in range(5):
            m = devices.make(ahead, 1)
            devices.sent.pop()
            devices.truth[m.train] -= m.delta
            payload, attributes = devices.encode(m.device, m.delta, m.t_us + 600_000_000, m.seq)
            devices.publish_raw(payload, attributes)
            future.append(m)
        # Around and exactly at the daily reset boundary (minute precision: seconds are :00).
        boundary_us = wire.to_micros(boundary)
        while wire.now_us() < boundary_us - 1_000_000:
            devices.send(2, interval_s=0.2)
        while wire.now_us() < boundary_us:
            pass
        # The daily reset zeroes every train at the boundary: so does the truth, and a count
        # stamped exactly at the boundary belongs to the new day.
        for train in devices.trains:
            devices.truth[train] = 0
        devices.last_t_us = boundary_us - 1000
        devices.publish(devices.make(normal, 3, t_us=boundary_us))
        devices.send(30, interval_s=0.1)
        recovery = scenario.wait_exact(pipeline, timeout_s=120)
        dead = scenario.dead_letters()
        return scenario.result(
            recovery,
            future_dead_letters=dead.get(wire.FUTURE_TIMESTAMP, 0),
            passed=dead.get(wire.FUTURE_TIMESTAMP, 0) == len(future),
            notes="back 1 h: counted late; forward 10 min: future_timestamp dead letters "
            f"({len(future)}); daily reset at {boundary:%H:%M} UTC",
        )
    finally:
        scenario.close()
