"""The event message format shared by the device publisher and the pipeline.

Pure Python, no Beam and no Google client: a door device installs only the
publisher's dependencies and still imports this module. See docs/design.md, "Event
message", for the contract this code keeps.
"""

import base64
import binascii
import datetime
import hashlib
import json
import re
import time
from typing import NamedTuple, Optional, Tuple

# A '/' in an id would address another Firestore path, so ids are restricted.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
# The shape of a JWS compact serialization (occupancy.identity): header.payload.signature.
_ENVELOPE_RE = re.compile(rb"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
_ID_RE = re.compile(ID_PATTERN)
_LEGACY_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,6})?$")
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
# Event times before this are a device clock that was never set (or a hostile value); they
# would also fall outside the range of Beam's timestamps. A dead letter, not an exception.
MIN_EVENT_TIME = "2000-01-01T00:00:00Z"
_MAX_SHOWN = 80

# Bounds at the edge (docs/design.md, "Bounds"): what one message may hold, checked here before any
# lookup, so that nothing after the parse (a coder, a state cell, a Firestore field, a Pub/Sub
# publish) meets a value it cannot take.
# A message's bytes: a signed count is about 300, an RS256-signed one under 1,000.
MAX_MESSAGE_BYTES = 16 * 1024
# A seq up to 2**53 - 1: exact in every JSON reader (JavaScript's numbers included) and far below
# the 2**63 of a 64-bit varint, with room for the seq-jump arithmetic above it.
MAX_SEQ = 2**53 - 1
# Brackets nested in a payload (a count is one flat object).
MAX_JSON_DEPTH = 8
# The length of a time field's text (RFC 3339 with nanoseconds and an offset is 35).
MAX_TIME_TEXT = 40

# Dead-letter reason codes (docs/design.md).
MALFORMED = "malformed"
# Device identity (occupancy.identity): no envelope where one is required; a signature that does
# not verify, or by a principal that may not send this message; a key the registry does not hold
# for the sender; a key past its expiry.
UNSIGNED = "unsigned"
BAD_SIGNATURE = "bad_signature"
UNKNOWN_KEY = "unknown_key"
EXPIRED_KEY = "expired_key"
# A count whose seq is far above its device's highest (occupancy.fold.SEQ_JUMP_WINDOWS).
SEQ_JUMP = "seq_jump"
INVALID_FIELD = "invalid_field"
FUTURE_TIMESTAMP = "future_timestamp"
UNKNOWN_DEVICE = "unknown_device"
WRITE_FAILED = "write_failed"
# A message larger than MAX_MESSAGE_BYTES: refused unread.
OVERSIZED = "oversized"
# A count whose event time is before its device was moved to its train or registered again: a
# replay of what it sent before (occupancy.registry_entries, `assigned_at`).
BEFORE_ASSIGNMENT = "before_assignment"
# A reset or terminus older than a count the train already applied: applied now, it would erase
# counts made after it (occupancy.fold).
LATE_CONTROL = "late_control"
# An exception a step does not know, met on one element: that element's dead letter, never a
# failed bundle (a streaming runner retries one for ever).
INTERNAL_ERROR = "internal_error"
REASONS = (
    MALFORMED,
    INVALID_FIELD,
    FUTURE_TIMESTAMP,
    UNKNOWN_DEVICE,
    WRITE_FAILED,
    UNSIGNED,
    BAD_SIGNATURE,
    UNKNOWN_KEY,
    EXPIRED_KEY,
    SEQ_JUMP,
    OVERSIZED,
    BEFORE_ASSIGNMENT,
    LATE_CONTROL,
    INTERNAL_ERROR,
)

COUNT = "count"
RESET = "reset"
# Zero-load point (a train empty at its terminus): like a reset, and the residual is recorded.
TERMINUS = "terminus"
ZEROING = (RESET, TERMINUS)
NO_SEQ = -1


class Rejected(ValueError):
    """A message that can never be processed: it goes to the dead letters."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Event(NamedTuple):
    """One validated event. Times are integer microseconds since the epoch (UTC).

    `train_id`, `capacity` and `registered_us` are empty until the registry
    lookup fills them (a reset names its train itself). `registered_us` is when
    the device was registered or moved to its train, whichever is later: the
    train's memory of its seqs starts there. `seq` is NO_SEQ for legacy and
    reset events, which are de-duplicated by `event_id` only.
    """

    event_id: str
    event_time_us: int
    kind: str = COUNT
    device_id: str = ""
    delta: int = 0
    seq: int = NO_SEQ
    train_id: str = ""
    capacity: Optional[int] = None
    registered_us: int = 0
    # The original message, kept until the registry lookup so that its dead
    # letter can carry it; emptied before the event enters keyed state.
    raw: bytes = b""
    attributes: tuple = ()
    message_id: str = ""

    def without_message(self) -> "Event":
        return self._replace(raw=b"", attributes=(), message_id="")


def shown(value) -> str:
    """repr() of a value for an error message, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + f"...({len(text)} chars)"


def valid_id(value) -> bool:
    # fullmatch: `$` alone would accept a trailing newline ("abc\n").
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def to_micros(dt: datetime.datetime) -> int:
    delta = dt - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def now_us() -> int:
    """The wall clock in microseconds since the epoch."""
    return int(time.time() * 1_000_000)


def from_micros(us: int) -> datetime.datetime:
    return _EPOCH + datetime.timedelta(microseconds=us)


def format_time(us: int) -> str:
    """RFC 3339 in UTC with millisecond precision, as devices send it."""
    dt = from_micros(us)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_time(value) -> int:
    """Parses an RFC 3339 timestamp with an explicit offset; raises Rejected."""
    if not isinstance(value, str) or len(value) > MAX_TIME_TEXT or "T" not in value.upper():
        raise Rejected(INVALID_FIELD, f"event_time is not an RFC 3339 timestamp: {shown(value)}")
    try:
        dt = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise Rejected(INVALID_FIELD, f"event_time is not an RFC 3339 timestamp: {shown(value)}") from None
    if dt.tzinfo is None:
        raise Rejected(INVALID_FIELD, f"event_time has no UTC offset: {shown(value)}")
    return _checked_time(to_micros(dt), value)


def _checked_time(t_us: int, value) -> int:
    if t_us < _MIN_EVENT_TIME_US:
        raise Rejected(INVALID_FIELD, f"event_time {shown(value)} is before {MIN_EVENT_TIME}")
    return t_us


_MIN_EVENT_TIME_US = to_micros(datetime.datetime.fromisoformat(MIN_EVENT_TIME))


def event_id_for(device_id: str, seq: int) -> str:
    return f"{device_id}:{seq}"


def encode_event(device_id: str, delta: int, event_time_us: int, seq: int):
    """The (payload bytes, attributes) a device publishes for one count."""
    event_time = format_time(event_time_us)
    payload = json.dumps(
        {"device_id": device_id, "delta": delta, "event_time": event_time, "seq": seq}, separators=(",", ":")
    ).encode("utf-8")
    return payload, {"event_id": event_id_for(device_id, seq), "event_time": event_time}


def encode_reset(train_id: str, event_time_us: int, kind: str = RESET):
    """A reset (or, with kind=TERMINUS, a zero-load event) as the operator's systems send it."""
    event_time = format_time(event_time_us)
    payload = json.dumps({"type": kind, "train_id": train_id, "event_time": event_time}, separators=(",", ":")).encode(
        "utf-8"
    )
    return payload, {"event_id": f"{kind}:{train_id}:{event_time}", "event_time": event_time}


def _int_field(obj: dict, name: str) -> int:
    value = obj.get(name)
    # bool is an int subclass; true/false is a mistyped field, not 1/0.
    if not isinstance(value, int) or isinstance(value, bool):
        raise Rejected(INVALID_FIELD, f"{name} must be an integer, got {shown(value)}")
    return value


def json_depth_within(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the brackets of JSON `text` nest at most `limit` deep (strings skipped).

    Counted before json.loads, whose recursion a nesting bomb exhausts. A payload with few
    brackets (every honest one) is answered by two counts, without the scan.
    """
    if text.count("[") + text.count("{") <= limit:
        return True
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def load_json(data):
    """The JSON value of `data` (bytes or str), bounded in nesting; raises Rejected(MALFORMED).

    The one way every part of the system reads a message's JSON (the parser, the envelope's
    header, the bridge's look at a payload): no input makes it raise anything else.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray, memoryview)) else data
    except UnicodeDecodeError:
        raise Rejected(MALFORMED, "payload is not UTF-8 text") from None
    if not isinstance(text, str):
        raise Rejected(MALFORMED, f"not JSON text: {type(data).__name__}")
    if not json_depth_within(text):
        raise Rejected(MALFORMED, f"JSON nested more than {MAX_JSON_DEPTH} deep")
    try:
        return json.loads(text)
    except ValueError as e:  # includes an integer of more than 4,300 digits
        raise Rejected(MALFORMED, f"invalid JSON: {shown(str(e))}") from None
    except RecursionError:  # not reached within the depth bound; kept so that nothing else escapes
        raise Rejected(MALFORMED, "JSON nested too deeply") from None


def _check_delta(delta: int, max_abs_delta: int) -> int:
    if abs(delta) > max_abs_delta:
        raise Rejected(INVALID_FIELD, f"|delta| {abs(delta)} exceeds max_abs_delta {max_abs_delta}")
    return delta


def _parse_json(obj, max_abs_delta: int) -> Event:
    if not isinstance(obj, dict):
        raise Rejected(INVALID_FIELD, f"payload must be a JSON object, got {type(obj).__name__}")
    kind = obj.get("type", COUNT)
    if kind in ZEROING:
        train_id = obj.get("train_id")
        if not valid_id(train_id):
            raise Rejected(INVALID_FIELD, f"train_id must match {ID_PATTERN}, got {shown(train_id)}")
        event_time_us = parse_time(obj.get("event_time"))
        event_id = f"{kind}:{train_id}:{format_time(event_time_us)}"
        return Event(event_id=event_id, event_time_us=event_time_us, kind=kind, train_id=train_id)
    if kind != COUNT:
        raise Rejected(INVALID_FIELD, f"unknown message type {shown(kind)}")
    device_id = obj.get("device_id")
    if not valid_id(device_id):
        raise Rejected(INVALID_FIELD, f"device_id must match {ID_PATTERN}, got {shown(device_id)}")
    delta = _check_delta(_int_field(obj, "delta"), max_abs_delta)
    seq = _int_field(obj, "seq")
    if not 0 <= seq <= MAX_SEQ:
        raise Rejected(INVALID_FIELD, f"seq must be from 0 to {MAX_SEQ}, got {shown(seq)}")
    event_time_us = parse_time(obj.get("event_time"))
    return Event(
        event_id=event_id_for(device_id, seq), event_time_us=event_time_us, device_id=device_id, delta=delta, seq=seq
    )


def _parse_legacy(text: str, message_id: str, max_abs_delta: int, legacy_tz) -> Event:
    fields = text.strip().split(",")
    if len(fields) != 3:
        raise Rejected(MALFORMED, "neither a JSON object nor a legacy CSV 'delta,time,device_id'")
    delta_text, time_text, device_id = (f.strip() for f in fields)
    try:
        delta = int(delta_text)
    except ValueError:
        raise Rejected(INVALID_FIELD, f"legacy delta is not an integer: {shown(delta_text)}") from None
    if not _LEGACY_TIME_RE.match(time_text):
        raise Rejected(INVALID_FIELD, f"legacy time is not 'YYYY-MM-DD HH:MM:SS.ffffff': {shown(time_text)}")
    try:
        naive = datetime.datetime.fromisoformat(time_text)
    except ValueError:
        raise Rejected(INVALID_FIELD, f"legacy time is not a valid date: {shown(time_text)}") from None
    if not valid_id(device_id):
        raise Rejected(INVALID_FIELD, f"device_id must match {ID_PATTERN}, got {shown(device_id)}")
    _check_delta(delta, max_abs_delta)
    # No seq in the legacy format: the Pub/Sub message id is the only dedup key.
    key = message_id or hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
    try:
        event_time_us = to_micros(naive.replace(tzinfo=legacy_tz))
    except OverflowError:  # year 1 or 9999 moved across the date line by the time zone
        raise Rejected(INVALID_FIELD, f"legacy time is out of range: {shown(time_text)}") from None
    return Event(
        event_id=f"legacy:{key}",
        event_time_us=_checked_time(event_time_us, time_text),
        device_id=device_id,
        delta=delta,
    )


def is_envelope(data) -> bool:
    """Whether `data` has the shape of a signed message, a JWS compact serialization
    (occupancy.identity): not whether it is valid."""
    return isinstance(data, (bytes, bytearray)) and _ENVELOPE_RE.match(data) is not None


# The envelope's signature algorithms (occupancy.identity signs and verifies them).
ENVELOPE_ALGORITHMS = ("EdDSA", "ES256", "RS256")


def split_key_id(kid) -> Tuple[str, str]:
    """(principal, key name) of an envelope's `kid`, each an id of this format's shape (a
    principal is a registry document id: `__x__` or `..` would address what it must not);
    raises Rejected(MALFORMED)."""
    if not isinstance(kid, str) or kid.count("/") != 1 or not all(map(valid_id, kid.split("/"))):
        raise Rejected(MALFORMED, f"kid must be '<principal>/<key id>', each matching {ID_PATTERN}, got {shown(kid)}")
    principal, name = kid.split("/")
    return principal, name


def _base64url(segment: bytes) -> bytes:
    return base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))


def open_envelope(data: bytes) -> Tuple[dict, bytes]:
    """(protected header, payload bytes) of a signed message, NOT verified; raises
    Rejected(MALFORMED). The header must name an algorithm of ENVELOPE_ALGORITHMS and a
    well-formed `kid`; the signature is checked by the registry lookup (occupancy.authenticate),
    which knows the sender's keys."""
    if not is_envelope(data):
        raise Rejected(MALFORMED, "not a JWS compact serialization (three base64url segments)")
    head, body, _ = bytes(data).split(b".")
    try:
        header, payload = load_json(_base64url(head)), _base64url(body)
    except (ValueError, binascii.Error) as e:
        raise Rejected(MALFORMED, f"malformed envelope: {shown(str(e))}") from None
    if not isinstance(header, dict):
        raise Rejected(MALFORMED, "malformed envelope: the header is not a JSON object")
    if header.get("alg") not in ENVELOPE_ALGORITHMS:
        raise Rejected(
            MALFORMED,
            f"envelope algorithm must be one of {', '.join(ENVELOPE_ALGORITHMS)}, got {shown(header.get('alg'))}",
        )
    split_key_id(header.get("kid"))
    return header, payload


def parse_message(
    data: bytes,
    message_id: Optional[str],
    *,
    now_us: int,
    max_abs_delta: int,
    max_future_skew_s: float,
    legacy_tz=datetime.timezone.utc,
) -> Event:
    """Validates one Pub/Sub payload into an Event, or raises Rejected.

    A signed message (a JWS envelope, occupancy.identity) is parsed from its payload; its
    signature is checked later, by the registry lookup, which knows the sender's keys."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise Rejected(OVERSIZED, f"{len(data):,} bytes; a message may hold at most {MAX_MESSAGE_BYTES:,}")
    if is_envelope(data):
        _, data = open_envelope(data)
        if not data.lstrip().startswith(b"{"):
            raise Rejected(MALFORMED, "a signed payload must be a JSON object")
    try:
        text = data.decode("utf-8")
    except (UnicodeDecodeError, AttributeError):
        raise Rejected(MALFORMED, "payload is not UTF-8 text") from None
    stripped = text.lstrip()
    if stripped.startswith(("{", "[", '"')) or stripped in ("null", "true", "false"):
        event = _parse_json(load_json(text), max_abs_delta)
    else:
        event = _parse_legacy(text, message_id, max_abs_delta, legacy_tz)
    if event.event_time_us > now_us + int(max_future_skew_s * 1_000_000):
        raise Rejected(
            FUTURE_TIMESTAMP,
            f"event_time {format_time(event.event_time_us)} is more than "
            f"{max_future_skew_s:g}s ahead of {format_time(now_us)}",
        )
    return event
