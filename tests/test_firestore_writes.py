"""adapters.firestore_writes builds, for every document shape the job writes, the very `Write`
the client library's batch builds (compared field for field with the library's own), and
leaves any other shape to the library."""

import datetime

import pytest
from google.cloud import firestore
from google.cloud.firestore_v1._helpers import DatetimeWithNanoseconds

from adapters import firestore_writes
from adapters.store import make_client
from occupancy import documents, train_state, wire
from occupancy.fencing import EPOCH_FIELD

UTC = datetime.timezone.utc
AT = datetime.datetime(2026, 12, 3, 8, 0, 0, 123456, tzinfo=UTC)
UPDATED = DatetimeWithNanoseconds(2026, 12, 3, 8, 0, 1, nanosecond=123456789, tzinfo=UTC)


@pytest.fixture(scope="module")
def client():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:9")  # writes are built, never sent
        yield make_client("demo-occupancy")


def _state():
    state = train_state.TrainState(value=17, capacity=300, last_applied_us=wire.to_micros(AT))
    for d in range(3):
        state.devices[f"t1-d{d}"] = train_state.DeviceMemory(
            seq=40 + d, applied=[[1, 40 + d]], last_seen_us=wire.to_micros(AT), trip_boarded=d, trip_alighted=1
        )
    return state


def _library(client, ref, data, how, update_time=None):
    batch = client.batch()
    if how == firestore_writes.SET:
        batch.set(ref, data)
    elif how == firestore_writes.CREATE:
        batch.create(ref, data)
    else:
        option = client.write_option(last_update_time=update_time) if update_time else None
        batch.update(ref, data, option=option)
    (pb,) = batch._write_pbs
    return type(pb).pb(pb)


def _shapes():
    realtime = documents.realtime_write("t1", _state()).data
    sink = {**realtime, EPOCH_FIELD: 1_796_000_000_000_000, "updated_at": firestore.SERVER_TIMESTAMP}
    empty_train = documents.realtime_write("t2", train_state.TrainState(value=0)).data
    history = documents.history_write("t1", train_state.Bucket(start_us=wire.to_micros(AT), boarded=3, alighted=1)).data
    odd = {
        "none": None,
        "flag": True,
        "ratio": 0.25,
        "big": -(2**63),
        "text": "é€",
        "raw": b"\x00\xff",
        "when": UPDATED,
        "naive": datetime.datetime(2026, 1, 1, 0, 0, 0, 1),
        "list": [1, "a", [], {}, None],
        "nested": {"a-b.c": {"x y": 1}, "empty": {}},
    }
    return [
        ("realtime", realtime, firestore_writes.SET, None),
        ("realtime as the sink sets it", sink, firestore_writes.SET, None),
        ("realtime as the sink creates it", sink, firestore_writes.CREATE, None),
        (
            "realtime as the sink updates it",
            {**sink, **{f: firestore.DELETE_FIELD for f in documents.REALTIME_OPTIONAL}},
            firestore_writes.UPDATE,
            UPDATED,
        ),
        ("a train never counted", empty_train, firestore_writes.SET, None),
        ("history", history, firestore_writes.SET, None),
        ("every value", odd, firestore_writes.SET, None),
        ("every value, updated", odd, firestore_writes.UPDATE, None),
    ]


@pytest.mark.parametrize("name,data,how,update_time", _shapes(), ids=[s[0] for s in _shapes()])
def test_the_write_is_the_one_the_library_builds(client, name, data, how, update_time):
    ref = client.collection("realtime").document("t1")
    ours = firestore_writes.write_pb(ref._document_path, data, how, update_time)
    assert ours == _library(client, ref, data, how, update_time), name


@pytest.mark.parametrize(
    "data",
    [
        {"a.b": 1},  # a dotted name is a path in an update
        {"where": firestore.GeoPoint(1.0, 2.0)},
        {"devices": {"d1": {"at": firestore.SERVER_TIMESTAMP}}},  # a nested transform
        {"tags": {1, 2}},
        {"nested": {"": 1}},  # the library refuses it: so must this
        {},
    ],
    ids=["dotted", "geopoint", "nested transform", "set", "empty name", "empty"],
)
def test_any_other_shape_is_left_to_the_library(client, data):
    ref = client.collection("realtime").document("t1")
    with pytest.raises(firestore_writes.Unsupported):
        firestore_writes.write_pb(ref._document_path, data, firestore_writes.SET)
    try:
        expected = [_library(client, ref, data, firestore_writes.SET)]
    except ValueError as e:  # what the library refuses is refused the same way
        with pytest.raises(ValueError, match=str(e)):
            firestore_writes.add_to_batch(client.batch(), ref, data, firestore_writes.SET)
        return
    batch = client.batch()
    firestore_writes.add_to_batch(batch, ref, data, firestore_writes.SET)
    assert [type(pb).pb(pb) for pb in batch._write_pbs] == expected
