"""The message format: every accepted form and every rejection reason of docs/design.md."""

import datetime
import json
import zoneinfo

import pytest

from occupancy import dead_letters, wire

NOW = wire.parse_time("2026-11-24T07:31:05.000Z")
LIMITS = dict(now_us=NOW, max_abs_delta=100, max_future_skew_s=300)


def parse(payload, message_id="m-1", **overrides):
    data = json.dumps(payload).encode() if isinstance(payload, dict) else payload
    return wire.parse_message(data, message_id, **{**LIMITS, **overrides})


def reason_of(payload, **overrides):
    with pytest.raises(wire.Rejected) as info:
        parse(payload, **overrides)
    return info.value.reason


def test_json_event_is_parsed_with_its_event_id_and_time():
    event = parse({"device_id": "ic1832-car3-door2", "delta": 3, "event_time": "2026-11-24T07:31:02.123Z", "seq": 1842})
    assert event.event_id == "ic1832-car3-door2:1842"
    assert event.device_id == "ic1832-car3-door2"
    assert (event.delta, event.seq, event.kind) == (3, 1842, wire.COUNT)
    assert event.event_time_us == NOW - 2_877_000


def test_offsets_are_converted_to_utc():
    event = parse({"device_id": "d1", "delta": -1, "event_time": "2026-11-24T08:31:02+01:00", "seq": 1})
    assert wire.format_time(event.event_time_us) == "2026-11-24T07:31:02.000Z"


def test_encode_event_round_trips_through_parse():
    payload, attributes = wire.encode_event("d-1", -4, NOW - 1000, 7)
    event = wire.parse_message(payload, "x", **LIMITS)
    assert (event.device_id, event.delta, event.seq, event.event_time_us) == ("d-1", -4, 7, NOW - 1000)
    assert attributes == {"event_id": "d-1:7", "event_time": wire.format_time(NOW - 1000)}


def test_reset_message_names_its_train_and_has_a_stable_id():
    event = parse({"type": "reset", "train_id": "ic1832", "event_time": "2026-11-24T07:00:00Z"})
    assert event.kind == wire.RESET and event.train_id == "ic1832" and event.device_id == ""
    assert event.event_id == "reset:ic1832:2026-11-24T07:00:00.000Z"
    payload, attributes = wire.encode_reset("ic1832", event.event_time_us)
    assert wire.parse_message(payload, None, **LIMITS).event_id == attributes["event_id"] == event.event_id


def test_legacy_csv_is_read_in_the_legacy_timezone_and_keyed_by_message_id():
    data = b"2,2026-11-24 08:31:02.500000,ic1832-car3-door2"
    later = {**LIMITS, "now_us": NOW + 7_200_000_000}
    utc = wire.parse_message(data, "12345", **later)
    assert utc.delta == 2 and utc.device_id == "ic1832-car3-door2" and utc.seq == wire.NO_SEQ
    assert utc.event_id == "legacy:12345"
    assert wire.format_time(utc.event_time_us) == "2026-11-24T08:31:02.500Z"
    vienna = wire.parse_message(data, "12345", **later, legacy_tz=zoneinfo.ZoneInfo("Europe/Vienna"))
    assert wire.format_time(vienna.event_time_us) == "2026-11-24T07:31:02.500Z"


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfe not utf-8",
        b"hello world",
        b"{not json",
        b"1,2",
        b"1,2,3,4",
    ],
)
def test_malformed(data):
    assert reason_of(data) == wire.MALFORMED


@pytest.mark.parametrize(
    "payload",
    [
        {"delta": 1, "event_time": "2026-11-24T07:31:02Z", "seq": 1},  # no device
        {"device_id": "ic1832/../trains/x", "delta": 1, "event_time": "2026-11-24T07:31:02Z", "seq": 1},
        {"device_id": "a/b", "delta": 1, "event_time": "2026-11-24T07:31:02Z", "seq": 1},
        {"device_id": "-leading-dash", "delta": 1, "event_time": "2026-11-24T07:31:02Z", "seq": 1},
        {"device_id": "x" * 129, "delta": 1, "event_time": "2026-11-24T07:31:02Z", "seq": 1},
        {"device_id": 42, "delta": 1, "event_time": "2026-11-24T07:31:02Z", "seq": 1},
        {"device_id": "d1", "delta": "3", "event_time": "2026-11-24T07:31:02Z", "seq": 1},
        {"device_id": "d1", "delta": 1.5, "event_time": "2026-11-24T07:31:02Z", "seq": 1},
        {"device_id": "d1", "delta": True, "event_time": "2026-11-24T07:31:02Z", "seq": 1},
        {"device_id": "d1", "delta": 1, "event_time": "2026-11-24T07:31:02Z"},  # no seq
        {"device_id": "d1", "delta": 1, "event_time": "2026-11-24T07:31:02Z", "seq": -1},
        {"device_id": "d1", "delta": 1, "event_time": "yesterday", "seq": 1},
        {"device_id": "d1", "delta": 1, "event_time": "2026-11-24T07:31:02", "seq": 1},  # no offset
        {"device_id": "d1", "delta": 1, "event_time": "2026-11-24", "seq": 1},
        {"device_id": "d1", "delta": 1, "event_time": 1764000000, "seq": 1},
        {"device_id": "d1", "delta": 101, "event_time": "2026-11-24T07:31:02Z", "seq": 1},  # |delta| too big
        {"device_id": "d1", "delta": -101, "event_time": "2026-11-24T07:31:02Z", "seq": 1},
        {"type": "reset", "event_time": "2026-11-24T07:31:02Z"},  # reset, no train
        {"type": "reset", "train_id": "a/b", "event_time": "2026-11-24T07:31:02Z"},
        {"type": "teleport", "device_id": "d1", "delta": 1, "event_time": "2026-11-24T07:31:02Z", "seq": 1},
    ],
)
def test_invalid_field(payload):
    assert reason_of(payload) == wire.INVALID_FIELD


@pytest.mark.parametrize(
    "data",
    [
        b"x,2026-11-24 07:31:02.000000,d1",  # delta not an integer
        b"1,2026-11-24T07:31:02,d1",  # wrong time layout
        b"1,2026-13-45 07:31:02.000000,d1",  # impossible date
        b"1,2026-11-24 07:31:02.000000,a/b",  # device id with a slash
        b"500,2026-11-24 07:31:02.000000,d1",  # |delta| too big
    ],
)
def test_invalid_legacy_fields(data):
    assert reason_of(data) == wire.INVALID_FIELD


def test_json_that_is_not_an_object_is_an_invalid_field():
    assert reason_of(b"[1, 2, 3]") == wire.INVALID_FIELD


def test_delta_limit_is_an_option():
    payload = {"device_id": "d1", "delta": 40, "event_time": "2026-11-24T07:31:02Z", "seq": 1}
    assert parse(payload).delta == 40
    assert reason_of(payload, max_abs_delta=30) == wire.INVALID_FIELD


def test_future_timestamp_beyond_the_allowed_skew():
    ahead = wire.format_time(NOW + 301_000_000)
    assert reason_of({"device_id": "d1", "delta": 1, "event_time": ahead, "seq": 1}) == wire.FUTURE_TIMESTAMP
    within = wire.format_time(NOW + 299_000_000)
    assert parse({"device_id": "d1", "delta": 1, "event_time": within, "seq": 1}).delta == 1
    assert (
        reason_of(b"1," + wire.from_micros(NOW + 10**9).strftime("%Y-%m-%d %H:%M:%S.%f").encode() + b",d1")
        == wire.FUTURE_TIMESTAMP
    )


def test_dead_letter_keeps_payload_attributes_and_reason():
    record = dead_letters.record(wire.MALFORMED, "bad", b"\xff\x00", {"event_id": "x"}, "m-9", NOW, "ParseEvents")
    assert record["payload"] == "/wA="
    assert record["attributes"] == {"event_id": "x"}
    assert (record["reason"], record["detail"], record["message_id"]) == (wire.MALFORMED, "bad", "m-9")
    assert record["rejected_at"] == "2026-11-24T07:31:05.000Z"
    other = dict(record, payload="AAA=")
    assert dead_letters.record_id(record) == dead_letters.record_id(dict(record))
    assert dead_letters.record_id(record) != dead_letters.record_id(other)


def test_micros_round_trip():
    dt = datetime.datetime(2026, 3, 29, 1, 2, 3, 456789, tzinfo=datetime.timezone.utc)
    assert wire.from_micros(wire.to_micros(dt)) == dt


@pytest.mark.parametrize(
    "value,ok",
    [
        ("car3-door2", True),
        ("a", True),
        ("A.b:c_d-9", True),
        ("x" * 128, True),
        ("abc\n", False),
        ("\nabc", False),
        ("a/b", False),
        ("..", False),
        ("__x__", False),
        ("", False),
        ("x" * 129, False),
        ("café", False),
        ("a b", False),
        (None, False),
        (7, False),
    ],
)
def test_valid_id_matches_the_whole_string(value, ok):
    # Regression: `re.match` with `$` accepted a trailing newline ("abc\n").
    assert wire.valid_id(value) is ok
