"""Hostile Pub/Sub messages, generated with hypothesis: what a broken, hacked or confused
device, or a forger with publish access, could send. The parser's property test
(tests/test_hostile_input.py) and the fault suite's hostile-input scenario (faults/hostile.py)
draw from the same strategy.

A drawn message is (payload bytes, attributes dict, the event it must count as, or None).
"""

import base64
import inspect
import json
import string

from google.cloud.pubsub_v1 import PublisherClient
from hypothesis import strategies as st

from occupancy import identity, wire

NOW_US = wire.parse_time("2026-11-24T07:30:00Z")
GOOD_TIME = wire.format_time(NOW_US - 5_000_000)

BAD_IDS = [
    "a/b",
    "..",
    ".",
    "__x__",
    "",
    " ",
    "a b",
    "x" * 129,
    "café",
    "a\n",
    "\nabc",
    "../../devices/x",
    "d1/..",
    "%2F",
    "a\x00b",
    "__name__",
    "a" * 1_000_000,
]
BAD_TIMES = [
    "",
    "yesterday",
    "2026-11-24",
    "2026-11-24T07:00:00",
    "0001-01-01T00:00:00Z",
    "1970-01-01T00:00:00Z",
    "9999-12-31T23:59:59+00:00",
    "2026-13-40T99:99:99Z",
    "2026-11-24T07:00:00+25:00",
    "2126-11-24T07:00:00Z",
    "1e308",
    "T" * 5000,
]
BAD_NUMBERS = [
    None,
    True,
    False,
    1.5,
    float("nan"),
    float("inf"),
    -float("inf"),
    "5",
    [],
    {},
    10**30,
    -(10**30),
    2**63,
    -1,
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)


def _dumps(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8")


@st.composite
def mutated_event(draw):
    """A count or reset message with one or more fields broken (or none: then it is valid)."""
    kind = draw(st.sampled_from(["count", "count", "reset", "terminus", "x", None]))
    obj = {"device_id": "d1", "delta": 1, "event_time": GOOD_TIME, "seq": draw(st.integers(0, 10**6))}
    if kind == "reset":
        obj = {"type": "reset", "train_id": "t-unregistered", "event_time": GOOD_TIME}
    elif kind not in ("count", None):
        obj["type"] = kind
    field = draw(st.sampled_from(sorted(obj) + ["(extra)", "(missing)"]))
    choice = draw(st.integers(0, 3))
    if field == "(extra)":
        obj[draw(st.text(max_size=20))] = draw(json_values)
    elif field == "(missing)":
        obj.pop(draw(st.sampled_from(sorted(obj))))
    elif field in ("device_id", "train_id"):
        obj[field] = draw(st.sampled_from(BAD_IDS)) if choice else draw(st.text(max_size=140))
    elif field == "event_time":
        obj[field] = draw(st.sampled_from(BAD_TIMES)) if choice else draw(st.text(max_size=40))
    elif field in ("delta", "seq"):
        obj[field] = draw(st.sampled_from(BAD_NUMBERS)) if choice else draw(st.integers())
    else:
        obj[field] = draw(json_values)
    return _dumps(obj)


@st.composite
def nesting_bomb(draw):
    depth = draw(st.sampled_from([10, 1000, 100_000]))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    return (opener * depth + "1" + closer * depth).encode()


@st.composite
def huge_number(draw):
    digits = draw(st.sampled_from([20, 400, 5000, 100_000]))
    field = draw(st.sampled_from(["delta", "seq"]))
    return (f'{{"device_id":"d1","{field}":' + "9" * digits + f',"event_time":"{GOOD_TIME}","seq":1}}').encode()


@st.composite
def legacy_csv(draw):
    delta = draw(st.sampled_from(["1", "-1", "+3", " 2 ", "1.5", "x", "", "99999999999999999999", "١"]))
    time_text = draw(
        st.sampled_from(
            [
                "2026-11-24 07:29:00.000000",
                "2026-11-24 07:29:00",
                "2026-11-24T07:29:00",
                "0001-01-01 00:00:00",
                "9999-12-31 23:59:59.999999",
                "",
                "garbage",
            ]
        )
    )
    device = draw(st.sampled_from(["d1", "a/b", "", "__x__", "d1,extra"]))
    sep = draw(st.sampled_from([",", ";", ", "]))
    return sep.join([delta, time_text, device]).encode()


# A key no registry holds: what a forger signs with. The devices named are the fault scenarios'
# (faults/harness.py names them t<i>-car<d>-door1), so a forgery that got through would move a
# real train's count, and the scenario's exact counts would show it.
_FORGER = identity.Signer(identity.generate_private_key(), "t0-car1-door1/k1")
_TARGETS = ["t0-car1-door1", "t1-car2-door1", "t2-car3-door1"]


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


@st.composite
def forged_envelope(draw):
    """A signed-looking message that must not count: another key, another device's kid, no
    signature algorithm, a tampered payload, or three random base64url segments."""
    device = draw(st.sampled_from(_TARGETS))
    delta, seq = draw(st.integers(1, 90)), draw(st.integers(1, 10**6))
    payload = wire.encode_event(device, delta, NOW_US - 5_000_000, seq)[0]
    how = draw(st.sampled_from(["foreign_key", "other_kid", "alg_none", "tampered", "segments", "bad_kid"]))
    if how == "foreign_key":
        return identity.Signer(_FORGER._key, f"{device}/k1").sign(payload)
    if how == "other_kid":
        return identity.Signer(_FORGER._key, f"{draw(st.sampled_from(_TARGETS))}/k1").sign(payload)
    if how == "alg_none":
        return b".".join([_b64(json.dumps({"alg": "none", "kid": f"{device}/k1"}).encode()), _b64(payload), b""])
    if how == "tampered":
        head, _, sig = identity.Signer(_FORGER._key, f"{device}/k1").sign(payload).split(b".")
        return b".".join([head, _b64(payload.replace(b'"delta":', b'"delta":9')), sig])
    if how == "bad_kid":
        kid = draw(st.sampled_from(["", "a/b/c", "/k1", device, "x" * 300, None, 5]))
        return b".".join([_b64(json.dumps({"alg": "EdDSA", "kid": kid}).encode()), _b64(payload), _b64(b"s" * 64)])
    return b".".join(_b64(draw(st.binary(min_size=1, max_size=40))) for _ in range(3))


# Pub/Sub's Python client takes attributes as keyword arguments beside its own (data, topic,
# ordering_key, ...), so it cannot publish an attribute of one of those names; Pub/Sub itself
# reserves the "goog" prefix.
_CLIENT_ARGUMENTS = frozenset(inspect.signature(PublisherClient.publish).parameters)

attributes = st.dictionaries(
    st.sampled_from(["event_id", "event_time", "device_id", "x"])
    | st.text(string.ascii_letters, min_size=1, max_size=10).filter(
        lambda k: not k.lower().startswith("goog") and k not in _CLIENT_ARGUMENTS
    ),
    st.sampled_from(["", "not a time", "2026-11-24T07:00:00Z", "0001-01-01T00:00:00Z", "9" * 1000])
    | st.text(max_size=30),
    max_size=4,
)

payloads = st.one_of(
    st.binary(max_size=300),
    st.builds(_dumps, json_values),
    mutated_event(),
    nesting_bomb(),
    huge_number(),
    legacy_csv(),
    forged_envelope(),
    st.just(b"x" * 1_000_000),
    st.just(("{" + '"device_id":"' + "a" * 1_000_000 + '"}').encode()),
)


def parse(payload: bytes, message_id: str = "m-1") -> wire.Event:
    """The parser with the pipeline's defaults, at a fixed now."""
    return wire.parse_message(payload, message_id, now_us=NOW_US, max_abs_delta=100, max_future_skew_s=300.0)


def draw(n: int, seed: int = 0, max_big: int = 5):
    """n (payload, attributes) pairs from the strategies, the same for the same `seed` (and
    hypothesis version); at most `max_big` payloads of 100 KB or more (they are slow to publish,
    and one shows the point)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as seeded

    drawn, big = [], [0]

    @seeded(seed)
    @settings(max_examples=n * 3, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.tuples(payloads, attributes))
    def collect(pair):
        payload, attrs = pair
        if len(drawn) >= n:
            return
        if len(payload) >= 100_000:
            if big[0] >= max_big:
                return
            big[0] += 1
        if not payload and not attrs:
            attrs = {"x": "1"}  # Pub/Sub refuses a message with neither
        drawn.append((payload, attrs))

    collect()
    return drawn
