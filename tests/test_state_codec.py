"""The train's state as versioned bytes (occupancy.state_codec): the `train` state cell
(transforms.coders.TrainStateCoder) and the realtime document's `checkpoint`.

Stored bytes are read back: the pickle jobs up to 5807173 kept in the `train` cell, the
version-1 encoding, and a realtime document as those jobs wrote it (tests/data).
"""

import datetime
import json
import pathlib
import random

import pytest

from local.stack import PROJECT
from occupancy import documents, state_codec, wire
from occupancy.fold import Bucket, DeviceMemory, TrainState
from pipeline.build import fold_config
from pipeline.options import OccupancyOptions
from transforms.coders import TrainStateCoder
from transforms.occupancy import RealtimeSeed

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
        queue_clock=(1_800_000_126_000_000, 1_800_000_124_000_000),
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
        queue_clock=(rng.randrange(0, 2**62), rng.randrange(0, 2**62)),
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


def test_every_field_of_a_train_state_survives_the_encoding():
    rng = random.Random(7)
    for _ in range(200):
        state = random_state(rng)
        assert state_codec.decode_state(state_codec.encode_state(state)) == state


def test_the_pickled_state_of_earlier_jobs_is_read_and_written_back_versioned():
    coder = TrainStateCoder()
    pickled = (DATA / "train_state_pickled_by_5807173.bin").read_bytes()
    assert coder.decode(pickled) == stored_state()
    again = coder.encode(coder.decode(pickled))
    assert again[0] == state_codec.STATE_VERSION and coder.decode(again) == stored_state()
    assert len(again) < len(pickled) / 3  # 173 B against 653 B pickled


def test_version_1_bytes_stay_readable():
    stored = (DATA / "train_state_v1.bin").read_bytes()
    expected = stored_state()
    # Its job kept applied resets within the reorder window only: all before the trip's start is seen.
    expected.control_floor_us = expected.trip_start_us
    assert state_codec.decode_state(stored) == expected


def test_version_2_bytes_stay_readable_and_are_what_the_encoder_writes():
    stored = (DATA / "train_state_v2.bin").read_bytes()
    assert stored[0] == 2 and state_codec.decode_state(stored) == stored_state_v2()
    # A change to version 2's layout would strand every train's state: it must be a new version.
    assert state_codec.encode_state(stored_state_v2()) == stored


def test_bytes_of_a_newer_version_or_cut_short_are_refused_with_a_reason():
    encoded = state_codec.encode_state(stored_state())
    with pytest.raises(state_codec.UnknownVersion, match="version 3; this job reads versions 1 to 2"):
        state_codec.decode_state(bytes([3]) + encoded[1:])
    with pytest.raises((ValueError, IndexError)):
        state_codec.decode_state(encoded[:-3])
    with pytest.raises(ValueError, match="bytes left over"):
        state_codec.decode_state(encoded + b"\x00")


def _stored_realtime() -> dict:
    def timestamps(obj):
        if isinstance(obj, dict):
            if set(obj) == {"__timestamp__"}:
                return datetime.datetime.fromisoformat(obj["__timestamp__"])
            return {k: timestamps(v) for k, v in obj.items()}
        return obj

    return timestamps(json.loads((DATA / "realtime_written_by_5807173.json").read_text()))


def _dedup_view(state: TrainState) -> dict:
    return {
        d: (m.seq, m.applied, m.registered_us, m.last_seen_us, m.trip_boarded, m.trip_alighted)
        for d, m in state.devices.items()
    }


def test_a_job_seeds_from_a_realtime_document_in_the_format_before_the_checkpoint(firestore_client):
    """Stored in the emulator as jobs up to 5807173 wrote it (ranges as maps in devices_seen)."""
    firestore_client.collection("realtime").document("t1").set(_stored_realtime())
    options = OccupancyOptions([f"--firestore_project={PROJECT}"])
    seed = RealtimeSeed(PROJECT, "(default)", "realtime", "history")
    seed.setup()
    seeded = seed.load("t1", fold_config(options))
    assert _dedup_view(seeded) == _dedup_view(stored_state())
    assert (seeded.value, seeded.capacity, seeded.reset_through_us) == (42, 300, 1_799_990_000_000_000)


def test_the_realtime_document_keeps_readers_fields_and_the_checkpoint_apart():
    state = stored_state()
    data = documents.realtime_write("t1", state).data
    assert data["devices_seen"]["t1-car1-door1"] == {
        "seq": 120,
        "last_seen": wire.from_micros(1_800_000_123_000_000),
        "trip_boarded": 50,
        "trip_alighted": 8,
    }
    assert isinstance(data[documents.CHECKPOINT], bytes)
    seeded = documents.state_from_documents(data, None, 1000)
    assert _dedup_view(seeded) == _dedup_view(state)
    # One value to marshal: the old format's maps per range and per device are gone.
    old = _stored_realtime()
    assert documents.storage_size("realtime/t1", data) < documents.storage_size("realtime/t1", old)


def test_a_checkpoint_of_a_newer_job_falls_back_to_the_safe_side(caplog):
    data = documents.realtime_write("t1", stored_state()).data
    data[documents.CHECKPOINT] = bytes([9]) + data[documents.CHECKPOINT][1:]
    seeded = documents.state_from_documents(data, None, 1000)
    # Each device's last 1,000 seqs taken as applied: a re-sent count missed, never one counted twice.
    assert seeded.devices["t1-car1-door1"].applied == [[0, 120]]
    assert "realtime checkpoint not read" in caplog.text
