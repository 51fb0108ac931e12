"""One message must never stop the job, nor rewrite a count (docs/design.md, "No element stops
the job"): each step's boundary with what a hostile device, or a holder of topic access, sends.

The bounds at the edge (wire), what the lookup refuses before any registry read, an exception a
step does not know (a dead letter `internal_error`, never a failed bundle), and dead letters
that fit their sinks. The whole path on the running pipeline and bridge: the `poison` fault
scenario (faults/poison.py, run by tests/test_faults.py).
"""

import base64
import json

import apache_beam as beam
import pytest
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters import registry
from local.stack import PROJECT
from occupancy import dead_letters, documents, fold, identity, train_cell, train_state, wire
from sim.keyring import CONTROL_ID, Keyring
from transforms import dead_letters as dead_letter_sink
from transforms.enrich import LookupTrain, RereadBudget
from transforms.occupancy import DEAD_LETTER, FoldOccupancy
from transforms.parse import ParseEvents

S = 1_000_000
KEYS = Keyring()


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _envelope(header: dict, payload: bytes) -> bytes:
    return b".".join([_b64(json.dumps(header).encode()), _b64(payload), _b64(b"s" * 64)])


def _parse(data: bytes):
    return wire.parse_message(data, "m1", now_us=wire.now_us(), max_abs_delta=100, max_future_skew_s=300)


def test_a_kid_naming_a_reserved_or_pathlike_principal_is_refused_at_parsing():
    """`__evil__/k1` reached the registry read, which Firestore refuses (400, reserved id): the
    bundle failed, for every train in it."""
    reset = wire.encode_reset("t1", wire.now_us() - S)[0]
    for kid in ("__evil__/k1", "../k1", "a b/k1", "d1/__k__", "d1/" + "k" * 200):
        with pytest.raises(wire.Rejected) as refused:
            _parse(_envelope({"alg": "EdDSA", "kid": kid}, reset))
        assert refused.value.reason == wire.MALFORMED and "kid must be" in refused.value.detail


def test_a_bridge_payload_of_any_shape_gives_bounded_attributes_and_never_raises():
    """The bridge read `"[" * 5000` in a JWS payload with json.loads, which raised RecursionError
    in paho's thread: nothing more was forwarded while /healthz said ok."""
    from occupancy import mqtt

    t = wire.now_us()
    bomb = _envelope({"alg": "EdDSA", "kid": "d1/k1"}, b"[" * 5000)
    long_time = _envelope(
        {"alg": "EdDSA", "kid": "d1/k1"},
        json.dumps({"device_id": "d1", "delta": 1, "seq": 3, "event_time": "2" * 5000}).encode(),
    )
    big_seq = KEYS.sign("d1", wire.encode_event("d1", 1, t, 2**63)[0])
    for payload in (bomb, long_time, big_seq, b"\xff" * 300_000, b""):
        attributes = mqtt.event_attributes("d1", payload)
        assert attributes["device_id"] == "d1"
        assert all(len(v.encode()) <= 1024 for v in attributes.values()), attributes
    assert mqtt.event_attributes("d1", long_time) == {"device_id": "d1", "event_id": "d1:3"}
    assert "event_id" not in mqtt.event_attributes("d1", big_seq)


def test_a_dead_letter_of_any_message_fits_a_pubsub_message_and_a_firestore_document():
    """A 7.8 MB message made a dead-letter record over Pub/Sub's 10 MB: the publish of dead
    letters raised, and the job stopped."""
    huge = b"\x00" * 7_800_000
    record = dead_letters.record(
        wire.OVERSIZED,
        "big",
        huge,
        {"k" * 300: "v" * 5000, **{f"a{i}": "x" for i in range(99)}},
        "m1",
        0,
        "ParseEvents",
    )
    message = dead_letter_sink._to_pubsub(record)
    assert len(message.data) < 64 * 1024
    assert record["payload_truncated"] and record["payload_bytes"] == len(huge)
    assert len(record["attributes"]) == dead_letters.ATTRIBUTES
    assert all(len(v) <= dead_letters.ATTRIBUTE_CHARS for v in record["attributes"].values())


def test_a_step_turns_an_exception_it_does_not_know_into_a_dead_letter(monkeypatch):
    """An unknown exception for one message is that message's dead letter; the others pass."""
    real = wire.parse_message

    def parse(data, *args, **kwargs):
        if data.startswith(b"boom"):
            raise ZeroDivisionError("a bug met on one message")
        return real(data, *args, **kwargs)

    monkeypatch.setattr(wire, "parse_message", parse)
    t = wire.now_us() - S
    good = wire.encode_event("d1", 2, t, 9)[0]
    with TestPipeline(runner="BundleBasedDirectRunner") as p:
        parsed = (
            p
            | beam.Create(
                [PubsubMessage(b"boom", {"a": "b"}, message_id="m1"), PubsubMessage(good, {}, message_id="m2")]
            )
            | ParseEvents()
        )
        assert_that(parsed.events | beam.Map(lambda e: e.event_id), equal_to(["d1:9"]), label="Events")
        dead = parsed.dead_letter | beam.Map(lambda d: (d["reason"], d["step"], d["detail"], d["message_id"]))
        assert_that(
            dead,
            equal_to([(wire.INTERNAL_ERROR, "ParseEvents", "ZeroDivisionError: 'a bug met on one message'", "m1")]),
            label="Dead",
        )


def test_a_flush_that_raises_dead_letters_its_events_and_other_trains_go_on(monkeypatch):
    """An exception in one train's flush (its timer) must not fail the work item of every train."""
    real = fold.apply_events

    def apply(state, events, config, flush_time_us):
        if any(e.train_id == "bad" for e in events):
            raise OverflowError("a value no coder takes")
        return real(state, events, config, flush_time_us)

    monkeypatch.setattr(fold, "apply_events", apply)
    good_goes_on_and_bad_is_dead_lettered(FoldOccupancy(fold.FoldConfig()))


def good_goes_on_and_bad_is_dead_lettered(fold_occupancy, also=lambda detail: True):
    """Runs one count of train "good" and one of train "bad" through `fold_occupancy`: good is
    written, bad's count a dead letter internal_error whose detail `also` accepts."""
    t0 = wire.parse_time("2026-11-24T07:00:00Z")
    events = [
        wire.Event("d1:1", t0, device_id="d1", delta=3, seq=1, train_id="good"),
        wire.Event("d9:1", t0, device_id="d9", delta=5, seq=1, train_id="bad"),
    ]
    stream = TestStream()
    stream.advance_watermark_to(Timestamp(micros=t0))
    stream.add_elements([TimestampedValue((e.train_id, e), Timestamp(micros=e.event_time_us)) for e in events])
    stream.advance_watermark_to(Timestamp(micros=t0 + 10 * S))
    stream.advance_watermark_to_infinity()
    options = PipelineOptions(runner="BundleBasedDirectRunner")
    options.view_as(StandardOptions).streaming = True
    with TestPipeline(options=options) as p:
        out = p | stream | beam.ParDo(fold_occupancy).with_outputs(DEAD_LETTER, main="writes")
        realtime = (
            out.writes
            | beam.Filter(lambda w: w.collection == "realtime")
            | beam.Map(lambda w: (w.doc_id, w.data["current_value"]))
        )
        assert_that(realtime, equal_to([("good", 3)]), label="Good")
        dead = out[DEAD_LETTER] | beam.Map(
            lambda d: (d["reason"], d["step"], json.loads(base64.b64decode(d["payload"]))["seq"], also(d["detail"]))
        )
        assert_that(dead, equal_to([(wire.INTERNAL_ERROR, "RunningOccupancy", 1, True)]), label="Dead")


class DocumentSeed:
    """A RealtimeSeed reading each train's realtime document from a dict, as Firestore gives it."""

    def __init__(self, documents_by_train):
        self.documents_by_train = documents_by_train

    def setup(self):
        pass

    def load(self, train_id, config):
        return documents.state_from_documents(self.documents_by_train.get(train_id), None, config.dedup_window)


def test_a_realtime_document_that_cannot_be_read_dead_letters_its_trains_events_and_others_go_on():
    """A hand-edited realtime document (a count that is not a number): the seed's ValueError
    escaped the flush and failed the work item of every train in it."""
    seed = DocumentSeed({"bad": {"current_value": "x", "last_updated": None}})
    good_goes_on_and_bad_is_dead_lettered(FoldOccupancy(fold.FoldConfig(), seed), lambda d: "realtime/bad" in d)


def test_a_train_state_that_does_not_decode_is_seeded_from_firestore_again():
    """Bytes of the train that do not decode (not only a newer version's) are taken from
    realtime, as after a restart, rather than fail the train's timer."""
    fn = FoldOccupancy(fold.FoldConfig(), DocumentSeed({"t1": {"current_value": 10}}))
    fn.setup()
    t0 = wire.parse_time("2026-11-24T07:00:00Z")
    cell = train_cell.TrainCell(train_bytes=b"\x03\x05")
    ready = [wire.Event("d1:1", t0, device_id="d1", delta=3, seq=1, train_id="t1")]
    outputs = fn._flush("t1", cell, ready, t0 + 3 * S, None)
    [realtime] = [o for o in outputs if getattr(o, "collection", None) == "realtime"]
    assert realtime.data["current_value"] == 13 and cell.train.value == 13


def test_the_reread_budget_bounds_reads_of_invented_devices():
    now = [0.0]
    budget = RereadBudget(clock=lambda: now[0])
    taken = sum(budget.take() for _ in range(1000))
    assert taken == RereadBudget.REREAD_BURST
    now[0] += 1.0
    assert sum(budget.take() for _ in range(1000)) == RereadBudget.REREADS_PER_S


@pytest.fixture
def lookup(firestore_client):
    """LookupTrain (--device_auth=require) on the emulator: train t1 with door d1, and the
    control principal for every train, each with a key of KEYS."""
    registry.set_train(firestore_client, "trains", "t1", capacity=100)
    registry.register_device(firestore_client, "devices", "d1", "t1")
    KEYS.register(firestore_client, "devices", ["d1"], control_trains=["*"])

    def make(device_auth="require"):
        fn = LookupTrain(PROJECT, "(default)", "devices", "trains", refresh_s=60.0, device_auth=device_auth)
        fn.setup()
        return fn

    return make


def _outcome(fn, event):
    [out] = list(fn.process(event))
    return out[0] if isinstance(out, tuple) else out.value["reason"]


def test_what_the_lookup_refuses_it_refuses_before_any_registry_read(lookup):
    """A forger's invented device ids cost a Firestore read each before the signature was
    looked at."""
    fn = lookup()
    t = wire.now_us() - S
    for i in range(20):
        payload = wire.encode_event(f"invented-{i}", 1, t, 1)[0]
        unsigned = wire.Event(f"invented-{i}:1", t, device_id=f"invented-{i}", delta=1, seq=1, raw=payload)
        assert _outcome(fn, unsigned) == wire.UNSIGNED
        someone_else = unsigned._replace(raw=KEYS.sign("d1", payload))
        assert _outcome(fn, someone_else) == wire.BAD_SIGNATURE
    assert fn._view.rechecked == {}  # not one device read again


def test_a_reset_is_always_signed_whatever_device_auth_says(lookup):
    """`--device_auth=log`, the documented migration mode, let anyone zero any train."""
    t = wire.now_us() - S
    payload = wire.encode_reset("t1", t)[0]
    reset = wire.Event(f"reset:t1:{t}", t, kind=wire.RESET, train_id="t1", raw=payload)
    for mode in ("log", "off"):
        fn = lookup(mode)
        assert _outcome(fn, reset) == wire.UNSIGNED
        assert _outcome(fn, reset._replace(raw=KEYS.sign("d1", payload))) == wire.BAD_SIGNATURE
        assert _outcome(fn, reset._replace(raw=KEYS.sign(CONTROL_ID, payload))) == "t1"
    # Counts stay as the mode says: accepted unsigned under `log`, refused under `require`.
    t = wire.now_us()  # after d1's registration
    count = wire.Event("d1:1", t, device_id="d1", delta=1, seq=1, raw=wire.encode_event("d1", 1, t, 1)[0])
    assert _outcome(lookup("log"), count) == "t1" and _outcome(lookup(), count) == wire.UNSIGNED


def test_a_count_made_before_its_device_was_moved_or_registered_again_is_refused(lookup, firestore_client):
    """Replayed after a move (or a second registration), a device's old signed counts counted
    again on its new train: 0 -> 10, and -> 20 after another registration. A first
    registration refuses nothing (a backfill of counts made before it still counts)."""
    import time

    fn = lookup()
    old_t = wire.now_us() - 3600 * S  # before d1's first registration: still its train's
    old = wire.encode_event("d1", 10, old_t, 1)[0]
    event = wire.Event("d1:1", old_t, device_id="d1", delta=10, seq=1, raw=KEYS.sign("d1", old))
    assert _outcome(fn, event) == "t1"
    time.sleep(0.01)
    registry.assign_device(firestore_client, "devices", "d1", "t2")
    moved = lookup()
    assert _outcome(moved, event) == wire.BEFORE_ASSIGNMENT
    registry.register_device(firestore_client, "devices", "d1", "t2", again=True)
    assert _outcome(lookup(), event) == wire.BEFORE_ASSIGNMENT
    fresh_t = wire.now_us()
    fresh = wire.encode_event("d1", 1, fresh_t, 1)[0]
    assert _outcome(lookup(), event._replace(event_time_us=fresh_t, raw=KEYS.sign("d1", fresh))) == "t2"
    assert registry.read_device(firestore_client, "devices", "d1").assigned_us > old_t


def test_a_device_moved_back_to_a_train_it_was_on_counts_there_again(lookup, firestore_client):
    """Away on another train, a door's seq went on past the jump bound: moved back, its old
    train refused every count of it as a seq jump, for good (until registered again)."""
    import time

    config = fold.FoldConfig()

    def sent(seq, t_us):
        raw = KEYS.sign("d1", wire.encode_event("d1", 1, t_us, seq)[0])
        return wire.Event(f"d1:{seq}", t_us, device_id="d1", delta=1, seq=seq, raw=raw)

    def through(fn, seq, t_us):
        [out] = list(fn.process(sent(seq, t_us)))
        return out

    state = train_state.TrainState()
    t = wire.now_us() - S
    train, first = through(lookup(), 5, t)
    assert train == "t1" and fold.apply_events(state, [first], config, t + S).applied == 1
    registry.set_train(firestore_client, "trains", "t2", capacity=100)
    registry.assign_device(firestore_client, "devices", "d1", "t2")
    registry.assign_device(firestore_client, "devices", "d1", "t1")
    time.sleep(0.01)
    far = 5 + fold.SEQ_JUMP_WINDOWS * config.dedup_window + 1  # its seqs sent on t2 since
    t = wire.now_us()
    train, back = through(lookup(), far, t)
    assert train == "t1"
    result = fold.apply_events(state, [back], config, t + S)
    assert (result.refused, result.applied, state.value) == ([], 1, 2)
    # What it sent for t1 before it left is refused at the lookup: it counted once.
    assert _outcome(lookup(), sent(5, first.event_time_us)) == wire.BEFORE_ASSIGNMENT


def test_an_envelope_kid_check_is_shared_by_parse_and_lookup():
    """The principal of a kid is an id of the wire format's shape wherever a kid is split."""
    assert identity.split_key_id("d1/k1") == ("d1", "k1")
    for kid in ("__x__/k1", "d1/k1/k2", "/k1", "d1/", "d1\n/k1"):
        with pytest.raises(identity.IdentityError):
            identity.split_key_id(kid)


def test_a_document_the_client_cannot_encode_is_a_dead_letter_not_a_failed_batch(firestore_client):
    """A value of no Firestore type (or past 64 bits) raised out of the commit, for the whole batch,
    at every retry of the bundle."""
    from adapters.store import RetryPolicy, commit_documents

    writes = [
        ("c", "good", {"v": 1}),
        ("c", "big", {"v": 2**64}),
        ("c", "odd", {"v": object()}),
        ("c", "also", {"v": 2}),
    ]
    failed = commit_documents(firestore_client, writes, RetryPolicy(deadline_s=5))
    assert sorted(w[1] for w, _ in failed) == ["big", "odd"]
    assert sorted(d.id for d in firestore_client.collection("c").stream()) == ["also", "good"]


_EXTREME_INTS = st.sampled_from([2**63, 2**63 - 1, 2**64, -(2**63) - 1, -1, 0, 2**53, 10**30])
_VALUES = st.recursive(
    st.none() | st.booleans() | _EXTREME_INTS | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@st.composite
def _envelopes(draw):
    """Envelopes with any header and any JSON (or not) payload: what the bridge and the lookup
    read before anything is verified."""
    header = draw(st.dictionaries(st.sampled_from(["alg", "kid", "typ", "x"]), _VALUES, max_size=3))
    if draw(st.booleans()):
        header = {"alg": "EdDSA", "kid": draw(st.sampled_from(["d1/k1", "__x__/k1", "d1/k1/k2", "d1", ""]))}
    body = draw(
        st.one_of(
            st.binary(max_size=200),
            st.builds(lambda v: json.dumps(v).encode(), _VALUES),
            st.builds(
                lambda seq, t: json.dumps({"device_id": "d1", "delta": 1, "seq": seq, "event_time": t}).encode(),
                _EXTREME_INTS | st.integers(),
                st.text(max_size=60) | st.sampled_from(["2026-11-24T07:00:00Z", "9" * 2000]),
            ),
            st.sampled_from([b"[" * 5000, b"{" * 20]),
        )
    )
    return _envelope(header, body)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_envelopes())
def test_any_envelope_gives_the_bridge_bounded_attributes_and_the_lookup_a_verdict(raw):
    from occupancy import authenticate, mqtt

    attributes = mqtt.event_attributes("d1", raw)
    assert attributes["device_id"] == "d1" and set(attributes) <= {"device_id", "event_id", "event_time"}
    assert all(len(v.encode()) <= 1024 for v in attributes.values())
    if "event_id" in attributes:
        assert 0 <= int(attributes["event_id"].split(":")[1]) <= wire.MAX_SEQ
    event = wire.Event("d1:1", 0, device_id="d1", delta=1, seq=1, raw=raw)
    verdict = authenticate.Authenticator.precheck(event)
    assert verdict is None or verdict[0] in (wire.UNSIGNED, wire.BAD_SIGNATURE)
    reset = wire.Event("reset:t1:x", 0, kind=wire.RESET, train_id="t1", raw=raw)
    assert authenticate.Authenticator().check(reset, None, 0, lambda principal: None) is not None


@settings(max_examples=200, deadline=None)
@given(
    st.binary(max_size=40_000),
    st.dictionaries(st.text(max_size=400), st.text(max_size=3000), max_size=60),
    st.text(max_size=3000) | st.none(),
)
def test_any_dead_letter_record_is_bounded_and_serializable(payload, attributes, message_id):
    record = dead_letters.record(wire.MALFORMED, "x" * 5000, payload, attributes, message_id, 0, "ParseEvents")
    assert len(json.dumps(record)) < 200_000
    assert len(dead_letter_sink._to_pubsub(record).data) < 200_000
