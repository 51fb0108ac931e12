"""The train's state as versioned bytes (occupancy.state_codec): in the `train_cell` state cell
and the realtime document's `checkpoint`.

Stored bytes are read back: the version-1, 2 and 3 encodings, and a realtime document as
jobs up to 5807173 wrote it (tests/data).
"""

import datetime
import json
import random

import pytest

from local.stack import PROJECT
from occupancy import documents, fold, state_codec, wire
from occupancy.train_state import TrainState
from occupancy.wire import Event
from pipeline.build import fold_config
from pipeline.options import OccupancyOptions
from tests.states import DATA, random_state, stored_state, stored_state_v2
from transforms.occupancy import RealtimeSeed


def test_every_field_of_a_train_state_survives_the_encoding():
    rng = random.Random(7)
    for _ in range(200):
        state = random_state(rng)
        assert state_codec.decode_state(state_codec.encode_state(state)) == state


def test_version_1_bytes_stay_readable():
    stored = (DATA / "train_state_v1.bin").read_bytes()
    expected = stored_state()
    # Its job kept applied resets within the reorder window only: all before the trip's start is seen.
    expected.control_floor_us = expected.trip_start_us
    assert state_codec.decode_state(stored) == expected


def test_version_2_bytes_stay_readable():
    stored = (DATA / "train_state_v2.bin").read_bytes()
    assert stored[0] == 2 and state_codec.decode_state(stored) == stored_state_v2()


def test_version_3_bytes_stay_readable_and_are_what_the_encoder_writes():
    """Version 3 is version 2 without the flush clock (two integers) that nothing read."""
    stored = (DATA / "train_state_v3.bin").read_bytes()
    assert stored[0] == 3 and state_codec.decode_state(stored) == stored_state_v2()
    assert len(stored) < len((DATA / "train_state_v2.bin").read_bytes())
    # A change to version 3's layout would strand every train's state: it must be a new version.
    assert state_codec.encode_state(stored_state_v2()) == stored


def test_bytes_of_a_newer_version_or_cut_short_are_refused_with_a_reason():
    encoded = state_codec.encode_state(stored_state())
    with pytest.raises(state_codec.UnknownVersion, match="version 4; this job reads versions 1 to 3"):
        state_codec.decode_state(bytes([4]) + encoded[1:])
    # Bytes that do not decode are one error, whatever broke them: what a reader catches.
    with pytest.raises(state_codec.Unreadable, match="train state does not decode"):
        state_codec.decode_state(encoded[:-3])  # cut short
    with pytest.raises(state_codec.Unreadable, match="train state does not decode: .* bytes left over"):
        state_codec.decode_state(encoded + b"\x00")
    for broken in (b"\x02\x05", b"\x02\x00\x00\x00\xff", b"\x01\x01\x02\xff\xfe"):
        with pytest.raises(state_codec.Unreadable, match="realtime checkpoint"):
            state_codec.decode_dedup(broken)


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


@pytest.mark.parametrize(
    "checkpoint", [lambda c: bytes([9]) + c[1:], lambda c: c[:5], lambda c: b"\x02\x05", lambda c: "edited as text"]
)
def test_a_checkpoint_of_a_newer_job_or_broken_falls_back_to_the_safe_side(checkpoint, caplog):
    """A newer job's checkpoint, or one that does not decode (an IndexError escaped the seed
    and failed the flush of every train in the work item)."""
    data = documents.realtime_write("t1", stored_state()).data
    data[documents.CHECKPOINT] = checkpoint(data[documents.CHECKPOINT])
    seeded = documents.state_from_documents(data, None, 1000)
    # Each device's last 1,000 seqs taken as applied: a re-sent count missed, never one counted twice.
    assert seeded.devices["t1-car1-door1"].applied == [[0, 120]]
    assert "realtime checkpoint not read" in caplog.text
    # And so the fold takes them: its registration unknown, the first count's is the device's
    # (a count's later stamp once started its memory over, and a re-sent count counted twice).
    t = 1_800_000_200_000_000
    again = Event(
        "e", t, device_id="t1-car1-door1", delta=1, seq=100, train_id="t1", registered_us=1_790_000_000_000_000
    )
    result = fold.apply_events(seeded, [again, again._replace(seq=121)], fold.FoldConfig(dedup_window=1000), t)
    assert (result.duplicates, result.applied) == (1, 1)
    assert seeded.devices["t1-car1-door1"].registered_us == 1_790_000_000_000_000
