"""Any payload is an Event or a dead letter with a reason: never an exception, never silence.

Generated with hypothesis (faults/payloads.py, the same generator the fault suite publishes
into the running pipeline): random bytes, JSON of every shape, broken fields, nesting bombs,
huge numbers, 1 MB strings, path-like and unicode ids, legacy CSV variants.
"""

import json

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.utils.timestamp import Timestamp
from hypothesis import HealthCheck, given, settings

from faults import payloads
from occupancy import dead_letters, wire
from transforms.coders import EventCoder
from transforms.parse import DEAD_LETTER, ParseEvents

EVENT_CODER = EventCoder()


def check(payload: bytes):
    """The property, for one payload: returns the reason (or "ok")."""
    try:
        event = payloads.parse(payload)
    except wire.Rejected as e:
        assert e.reason in wire.REASONS and e.reason != wire.WRITE_FAILED
        assert len(str(e)) < 600, str(e)[:200]  # a readable message, even for a 1 MB field
        record = dead_letters.record(e.reason, e.detail, payload, {"a": "b"}, "m-1", payloads.NOW_US, "ParseEvents")
        json.dumps(record)
        return e.reason
    assert len(payload) <= wire.MAX_MESSAGE_BYTES
    if event.kind in wire.ZEROING:
        assert wire.valid_id(event.train_id)
    else:
        assert wire.valid_id(event.device_id) and abs(event.delta) <= 100
        assert 0 <= event.seq <= wire.MAX_SEQ or event.seq == wire.NO_SEQ
    assert wire.parse_time(wire.MIN_EVENT_TIME) <= event.event_time_us <= payloads.NOW_US + 300_000_000
    # Whatever is accepted, every later step can hold: its state coder (a seq of 2**63 once
    # failed here, in the fold, for every train) and a Beam timestamp.
    enriched = event._replace(train_id="t1", capacity=10**6, registered_us=payloads.NOW_US)
    assert EVENT_CODER.decode(EVENT_CODER.encode(enriched)) == enriched
    Timestamp(micros=event.event_time_us)
    return "ok"


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(payloads.payloads)
def test_any_payload_is_an_event_or_a_dead_letter_with_a_reason(payload):
    check(payload)


def test_the_worst_cases_explicitly():
    assert check(b"[" * 5000 + b"]" * 5000) == wire.MALFORMED  # RecursionError before the fix
    assert check(b"[" * 100_000 + b"]" * 100_000) == wire.OVERSIZED  # refused unread
    assert check(b"x" * 7_800_000) == wire.OVERSIZED
    # A seq past what a 64-bit varint holds (it failed the fold's coder for the whole fleet),
    # and past what a JSON reader keeps exactly.
    for seq in (2**63, 2**64, 2**53):
        assert check(wire.encode_event("d1", 1, payloads.NOW_US - 10, seq)[0]) == wire.INVALID_FIELD
    assert check(wire.encode_event("d1", 1, payloads.NOW_US - 10, wire.MAX_SEQ)[0]) == "ok"
    assert check(b'{"device_id":"d1","delta":' + b"9" * 5000 + b"}") == wire.MALFORMED
    assert (
        check(b'{"device_id":"d1","delta":1,"event_time":"0001-01-01T00:00:00Z","seq":1}') == wire.INVALID_FIELD
    )  # outside Beam's timestamp range before the fix
    assert check(b"1,0001-01-01 00:00:00,d1") == wire.INVALID_FIELD
    assert check(b'{"device_id":"' + b"a" * 1_000_000 + b'","delta":1}') == wire.OVERSIZED
    assert check(b'{"device_id":"' + b"a" * 10_000 + b'","delta":1}') == wire.INVALID_FIELD
    assert check(b'{"device_id":"d1","delta":NaN,"event_time":"2026-11-24T07:29:00Z","seq":1}') == wire.INVALID_FIELD
    assert check(wire.encode_event("d1", 2, payloads.NOW_US - 10, 4)[0]) == "ok"


def test_the_parse_step_turns_hostile_payloads_into_dead_letters():
    from apache_beam.io.gcp.pubsub import PubsubMessage

    def Message(data, attributes):  # noqa: N802
        return PubsubMessage(data, attributes, message_id=f"m{len(data)}")

    hostile = [
        Message(b"[" * 5_000 + b"]" * 5_000, {"event_time": "not a time"}),
        Message(b"\xff\xfe", {}),
        Message(b'{"device_id":"a/b","delta":1,"event_time":"2026-11-24T07:00:00Z","seq":1}', {}),
        Message(wire.encode_event("d1", 3, wire.now_us(), 1)[0], {"event_time": "0001-01-01"}),
    ]
    with TestPipeline(runner="BundleBasedDirectRunner") as p:
        out = p | beam.Create(hostile) | ParseEvents()
        assert_that(
            out[DEAD_LETTER] | beam.Map(lambda d: d["reason"]),
            equal_to([wire.MALFORMED, wire.MALFORMED, wire.INVALID_FIELD]),
            label="Dead",
        )
        assert_that(out["events"] | beam.Map(lambda e: (e.device_id, e.delta)), equal_to([("d1", 3)]), label="Events")
