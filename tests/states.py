"""Train states the state encoding tests share: what tests/data's stored bytes hold, and random
ones."""

import pathlib
import random

from occupancy import wire
from occupancy.train_state import Bucket, DeviceMemory, TrainState

DATA = pathlib.Path(__file__).resolve().parent / "data"


def stored_state() -> TrainState:
    """What tests/data's stored states hold, written out by hand."""
    return TrainState(
        value=42,
        last_applied_us=1_800_000_123_000_000,
        capacity=300,
        devices={
            "t1-car1-door1": DeviceMemory(
                seq=120,
                applied=[[100, 117], [119, 120]],
                last_seen_us=1_800_000_123_000_000,
                registered_us=1_790_000_000_000_000,
                trip_boarded=50,
                trip_alighted=8,
            ),
            "t1-car2-door1": DeviceMemory(
                seq=7,
                applied=[[1, 7]],
                last_seen_us=1_800_000_100_000_000,
                registered_us=1_790_000_000_000_001,
                trip_boarded=3,
                trip_alighted=3,
            ),
        },
        recent_ids={"legacy-1": 1_800_000_122_000_000},
        bucket=Bucket(
            start_us=1_800_000_123_000_000,
            timestamp_us=1_800_000_123_500_000,
            value=42,
            delta=2,
            events=3,
            boarded=3,
            alighted=1,
            late=1,
            correction=0,
        ),
        reset_through_us=1_799_990_000_000_000,
        last_written_us=1_800_000_124_000_000,
        trip_start_us=1_799_990_000_000_000,
    )


def stored_state_v2() -> TrainState:
    """What tests/data/train_state_v2.bin holds: version 2 adds the applied resets and termini."""
    state = stored_state()
    state.controls = ((1_799_990_000_000_000, wire.TERMINUS), (1_800_000_050_000_000, wire.RESET))
    state.control_floor_us = 1_799_000_000_000_000
    return state


def random_state(rng: random.Random) -> TrainState:
    state = TrainState(
        value=rng.randrange(0, 500),
        capacity=rng.choice([None, 0, 120, 10**6]),
        last_applied_us=rng.choice([None, 0, rng.randrange(1, 2**62)]),
        reset_through_us=rng.randrange(0, 2**62),
        last_written_us=rng.randrange(0, 2**62),
        trip_start_us=rng.randrange(0, 2**62),
    )
    for d in range(rng.randrange(0, 12)):
        memory = DeviceMemory(
            registered_us=rng.randrange(0, 2**62),
            last_seen_us=rng.randrange(0, 2**62),
            trip_boarded=rng.randrange(0, 10**5),
            trip_alighted=rng.randrange(0, 10**5),
        )
        for seq in rng.sample(range(1, 5000), rng.randrange(0, 300)):
            memory.accept(seq, 1000)
        state.devices[f"dé-{d}-{'x' * rng.randrange(0, 200)}"] = memory  # non-ASCII, long names
    state.devices["never-counted"] = DeviceMemory()  # seq -1 (NO_SEQ)
    state.recent_ids = {f"id{i}": rng.randrange(-5, 2**62) for i in range(rng.randrange(0, 5))}
    state.controls = tuple(
        sorted((rng.randrange(0, 2**62), rng.choice(wire.ZEROING)) for _ in range(rng.randrange(0, 33)))
    )
    state.control_floor_us = rng.randrange(0, 2**62)
    if rng.random() < 0.7:
        state.bucket = Bucket(
            start_us=rng.randrange(0, 2**62),
            value=rng.randrange(0, 500),
            delta=rng.randrange(-300, 300),
            correction=-rng.randrange(0, 50),
            late=2,
        )
    return state
