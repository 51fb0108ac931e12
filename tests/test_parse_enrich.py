"""ParseEvents with TestPipeline, and the registry lookup (EnrichWithTrain) on the real Firestore emulator."""

import base64
import time

import apache_beam as beam
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from adapters import registry
from local.stack import PROJECT
from occupancy import wire
from transforms.enrich import EnrichWithTrain, LookupTrain
from transforms.parse import ParseEvents

UNSIGNED_DETAIL = "the message is not signed (a JWS envelope with the sender's key)"


def now_us():
    return int(time.time() * 1_000_000)


def message(data, message_id="m1", **attributes):
    return PubsubMessage(data, attributes, message_id=message_id)


def test_parse_events_stamps_event_time_and_dead_letters_with_reason_and_payload():
    t = now_us() - 5_000_000
    good, attributes = wire.encode_event("d1", 2, t, 9)
    messages = [
        message(good, "m1", **attributes),
        message(b"\xff\xfe", "m2", event_id="x"),
        message(b'{"device_id": "a/b", "delta": 1, "event_time": "2026-11-24T07:00:00Z", "seq": 1}', "m3"),
        message(wire.encode_event("d1", 1, t + 3_600_000_000, 10)[0], "m4"),
    ]
    with TestPipeline(runner="BundleBasedDirectRunner") as p:
        parsed = p | beam.Create(messages) | ParseEvents(max_abs_delta=100, max_future_skew_s=300)
        events = parsed.events | beam.Map(
            lambda e, ts=beam.DoFn.TimestampParam: (e.event_id, e.delta, ts.micros, e.message_id)
        )
        assert_that(events, equal_to([("d1:9", 2, t - t % 1000, "m1")]), label="Events")
        dead = parsed.dead_letter | beam.Map(
            lambda d: (d["reason"], d["message_id"], base64.b64decode(d["payload"])[:2], d["attributes"])
        )
        assert_that(
            dead,
            equal_to(
                [
                    (wire.MALFORMED, "m2", b"\xff\xfe", {"event_id": "x"}),
                    (wire.INVALID_FIELD, "m3", b'{"', {}),
                    (wire.FUTURE_TIMESTAMP, "m4", b'{"', {}),
                ]
            ),
            label="DeadLetters",
        )


def test_enrich_keys_by_train_and_dead_letters_unknown_and_disabled_devices(firestore_client):
    registry.set_train(firestore_client, "trains", "ic1", capacity=120)
    registry.register_device(firestore_client, "devices", "d1", "ic1")
    registry.register_device(firestore_client, "devices", "d2", "ic1")
    registry.set_enabled(firestore_client, "devices", "d2", False)
    t = now_us()
    raw = wire.encode_event("ghost", 1, t, 1)[0]
    events = [
        wire.Event("d1:1", t, device_id="d1", delta=1, seq=1, raw=b"x"),
        wire.Event(
            "ghost:1",
            t,
            device_id="ghost",
            delta=1,
            seq=1,
            raw=raw,
            attributes=(("event_id", "ghost:1"),),
            message_id="m7",
        ),
        wire.Event("d2:1", t, device_id="d2", delta=1, seq=1),
        wire.Event("reset:ic1:x", t, kind=wire.RESET, train_id="ic1"),
        wire.Event("reset:nope:x", t, kind=wire.RESET, train_id="nope", message_id="m9"),
    ]
    # device_auth off: identity is tests/test_device_identity.py's; here parsing and the lookup.
    # A reset is checked whatever device_auth says: these unsigned ones are refused.
    with TestPipeline(runner="BundleBasedDirectRunner") as p:
        out = p | beam.Create(events) | EnrichWithTrain(PROJECT, device_auth="off")
        keyed = out.keyed | beam.Map(lambda kv: (kv[0], kv[1].event_id, kv[1].capacity, kv[1].raw))
        assert_that(keyed, equal_to([("ic1", "d1:1", 120, b"")]), label="Keyed")
        dead = out.dead_letter | beam.Map(lambda d: (d["reason"], d["detail"], d["payload"], d["message_id"]))
        assert_that(
            dead,
            equal_to(
                [
                    (wire.UNKNOWN_DEVICE, "device ghost is not registered", base64.b64encode(raw).decode(), "m7"),
                    (wire.UNKNOWN_DEVICE, "device d2 is disabled", "", None),
                    (wire.UNSIGNED, UNSIGNED_DETAIL, "", None),
                    (wire.UNSIGNED, UNSIGNED_DETAIL, "", "m9"),
                ]
            ),
            label="Dead",
        )


def test_lookup_rereads_an_unknown_device_once_and_refreshes_assignments(firestore_client):
    registry.register_device(firestore_client, "devices", "d1", "ic1")
    fn = LookupTrain(PROJECT, "(default)", "devices", "trains", refresh_s=1.0, device_auth="off")
    fn.setup()

    def train_of(device, t=None):
        event = wire.Event(f"{device}:1", t or now_us(), device_id=device, delta=1, seq=1)
        out = list(fn.process(event))
        return out[0][0] if isinstance(out[0], tuple) else out[0].value["reason"]

    assert train_of("d1") == "ic1"
    assert train_of("late-registered") == wire.UNKNOWN_DEVICE
    registry.register_device(firestore_client, "devices", "late-registered", "ic2")
    # Re-read at most once per device per refresh interval: still unknown right away...
    assert train_of("late-registered") == wire.UNKNOWN_DEVICE
    before_move = now_us()
    registry.assign_device(firestore_client, "devices", "d1", "ic9")
    assert train_of("d1") == "ic1"  # the cached view until the interval passes
    time.sleep(1.1)
    # ...and after it, the refresh (one query for what changed) brings both.
    assert train_of("d1") == "ic9"
    assert train_of("late-registered") == "ic2"
    # What d1 counted before the move never counts on its new train (a replay, or late).
    assert train_of("d1", before_move) == wire.BEFORE_ASSIGNMENT
