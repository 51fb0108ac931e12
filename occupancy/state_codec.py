"""A train's state as compact, versioned bytes: no pickle, no Beam (docs/design.md, "State encodings").

Two encodings, each starting with its version byte:

* `encode_state` / `decode_state`: the whole `TrainState`, the train's part of
  the stateful DoFn's `train_cell` (occupancy.train_cell, transforms.coders.TrainCellCoder). Fields are written
  explicitly, in a fixed order, so the bytes do not depend on class or module
  names (a rename or a `--update` reads them) and a new field is a new version
  whose decoder still reads the old ones.
* `encode_visits` / `decode_visits`: a train's stop-visit state (occupancy.stop_visits), for
  the `visits` cell of transforms.stop_visits; the run it is on by its key (trip_id, start
  date), looked up again in the schedule when read.
* `encode_dedup` / `decode_dedup`: what a new job needs to de-duplicate a
  train's events across a restart (each device's registration time and
  applied seq ranges; the resets and terminus events the train applied), one
  bytes field of the realtime document (`checkpoint`). One value for the
  Firestore client to marshal instead of a map per range; readers (API,
  dashboard, feed) never need it.

Versions: the train state 2 adds the applied resets and terminus events
(`controls`, `control_floor_us`); read from version 1, whose job kept them
only within the reorder window, everything up to the train's last trip start
counts as applied. The train state 3 leaves out a flush clock (two integers)
that versions 1 and 2 carried and nothing read. The checkpoint 2 adds the same
resets and termini as the train state 2.

Integers are LEB128 varints, signed ones zigzag-encoded; strings are a
length and UTF-8; seq ranges are each range's distance from the previous one
and its width, so consecutive seqs cost a few bytes whatever their size.
"""

import functools
from typing import Dict, List, NamedTuple, Optional, Tuple

from occupancy.stop_visits import DoorCount, VisitState
from occupancy.train_state import Bucket, DeviceMemory, TrainState, controls_unknown
from occupancy.wire import RESET, TERMINUS

STATE_VERSION = 3
DEDUP_VERSION = 2
VISITS_VERSION = 1
# A reset or terminus as one byte.
_CONTROL_KINDS = (RESET, TERMINUS)
_BUCKET_FIELDS = ("start_us", "timestamp_us", "value", "delta", "events", "boarded", "alighted", "late", "correction")


class Unreadable(ValueError):
    """Bytes that are not an encoding this job reads: cut short, with bytes left over, or
    otherwise broken (each decoder raises this, whatever broke them)."""


class UnknownVersion(Unreadable):
    """Bytes written by a newer version of the job than this one reads."""


def _decoder(what: str):
    """Makes a decoder raise `Unreadable` naming `what` for bytes it cannot read."""

    def wrap(decode):
        @functools.wraps(decode)
        def decoding(data: bytes):
            try:
                return decode(data)
            except Unreadable:
                raise
            except (IndexError, ValueError, TypeError) as e:  # UnicodeDecodeError is a ValueError; not bytes: TypeError
                raise Unreadable(f"{what} does not decode: {e}") from e

        return decoding

    return wrap


class _Writer:
    def __init__(self, version: int):
        self.out = bytearray([version])

    def uint(self, n: int) -> None:
        if n < 0:
            raise ValueError(f"unsigned varint of {n}")
        while n > 0x7F:
            self.out.append((n & 0x7F) | 0x80)
            n >>= 7
        self.out.append(n)

    def int(self, n: int) -> None:
        self.uint(n * 2 if n >= 0 else -n * 2 - 1)

    def optional(self, n) -> None:
        self.uint(n is not None)
        if n is not None:
            self.int(n)

    def str(self, s: str) -> None:
        raw = s.encode("utf-8")
        self.uint(len(raw))
        self.out += raw

    def ranges(self, ranges: List[List[int]]) -> None:
        self.uint(len(ranges))
        previous = 0
        for lo, hi in ranges:
            self.int(lo - previous)
            self.uint(hi - lo)
            previous = hi

    def controls(self, floor_us: int, controls) -> None:
        self.int(floor_us)
        self.uint(len(controls))
        previous = 0
        for t_us, kind in controls:
            self.uint(_CONTROL_KINDS.index(kind))
            self.int(t_us - previous)
            previous = t_us


class _Reader:
    def __init__(self, data: bytes, what: str, known: int):
        if not data:
            raise ValueError(f"empty {what}")
        self.data, self.at = memoryview(data), 1
        self.version = data[0]
        if self.version > known or self.version == 0:
            raise UnknownVersion(f"{what} in version {self.version}; this job reads versions 1 to {known}")

    def uint(self) -> int:
        n = shift = 0
        while True:
            byte = self.data[self.at]
            self.at += 1
            n |= (byte & 0x7F) << shift
            if byte < 0x80:
                return n
            shift += 7

    def int(self) -> int:
        n = self.uint()
        return n >> 1 if not n & 1 else -(n >> 1) - 1

    def optional(self):
        return self.int() if self.uint() else None

    def str(self) -> str:
        n = self.uint()
        self.at += n
        return bytes(self.data[self.at - n : self.at]).decode("utf-8")

    def ranges(self) -> List[List[int]]:
        out, previous = [], 0
        for _ in range(self.uint()):
            lo = previous + self.int()
            previous = lo + self.uint()
            out.append([lo, previous])
        return out

    def controls(self) -> Tuple[int, Tuple[Tuple[int, str], ...]]:
        floor, out, previous = self.int(), [], 0
        for _ in range(self.uint()):
            kind = _CONTROL_KINDS[self.uint()]
            previous += self.int()
            out.append((previous, kind))
        return floor, tuple(out)

    def done(self, what: str) -> None:
        if self.at != len(self.data):
            raise ValueError(f"{what}: {len(self.data) - self.at} bytes left over")


def encode_state(state: TrainState) -> bytes:
    w = _Writer(STATE_VERSION)
    w.int(state.value)
    w.optional(state.last_applied_us)
    w.optional(state.capacity)
    for n in (state.reset_through_us, state.last_written_us, state.trip_start_us):
        w.int(n)
    w.uint(len(state.devices))
    for device_id, m in sorted(state.devices.items()):
        w.str(device_id)
        for n in (m.seq, m.registered_us, m.last_seen_us, m.trip_boarded, m.trip_alighted):
            w.int(n)
        w.ranges(m.applied)
    w.uint(len(state.recent_ids))
    for event_id, t_us in sorted(state.recent_ids.items()):
        w.str(event_id)
        w.int(t_us)
    w.uint(state.bucket is not None)
    if state.bucket is not None:
        for name in _BUCKET_FIELDS:
            w.int(getattr(state.bucket, name))
    w.controls(state.control_floor_us, state.controls)
    return bytes(w.out)


@_decoder("train state")
def decode_state(data: bytes) -> TrainState:
    r = _Reader(data, "train state", STATE_VERSION)
    state = TrainState(value=r.int(), last_applied_us=r.optional(), capacity=r.optional())
    state.reset_through_us, state.last_written_us, state.trip_start_us = r.int(), r.int(), r.int()
    if r.version <= 2:
        r.int(), r.int()  # a flush clock the jobs before version 3 kept here, read by nothing
    for _ in range(r.uint()):
        device_id = r.str()
        seq, registered_us, last_seen_us, boarded, alighted = (r.int() for _ in range(5))
        state.devices[device_id] = DeviceMemory(
            seq=seq,
            applied=r.ranges(),
            last_seen_us=last_seen_us,
            registered_us=registered_us,
            trip_boarded=boarded,
            trip_alighted=alighted,
        )
    state.recent_ids = {r.str(): r.int() for _ in range(r.uint())}
    if r.uint():
        state.bucket = Bucket(**{name: r.int() for name in _BUCKET_FIELDS})
    if r.version >= 2:
        state.control_floor_us, state.controls = r.controls()
    else:
        controls_unknown(state)
    r.done("train state")
    return state


class Checkpoint(NamedTuple):
    """What the realtime document's `checkpoint` holds."""

    # device_id -> (registered_us, applied seq ranges)
    devices: Dict[str, Tuple[int, List[List[int]]]]
    # The resets and terminus events applied, as TrainState keeps them; a version-1 checkpoint
    # has none and no floor (None): the reader takes the train's last trip start.
    controls: Tuple[Tuple[int, str], ...] = ()
    control_floor_us: Optional[int] = None


def encode_dedup(
    devices: Dict[str, Tuple[int, List[List[int]]]], controls: Tuple[Tuple[int, str], ...] = (), control_floor_us=0
) -> bytes:
    """The realtime document's `checkpoint`: device_id -> (registered_us, applied seq ranges), and
    the train's applied resets and terminus events."""
    w = _Writer(DEDUP_VERSION)
    w.uint(len(devices))
    for device_id, (registered_us, ranges) in sorted(devices.items()):
        w.str(device_id)
        w.int(registered_us)
        w.ranges(ranges)
    w.controls(control_floor_us, controls)
    return bytes(w.out)


@_decoder("realtime checkpoint")
def decode_dedup(data: bytes) -> Checkpoint:
    r = _Reader(data, "realtime checkpoint", DEDUP_VERSION)
    devices = {}
    for _ in range(r.uint()):
        device_id = r.str()
        devices[device_id] = (r.int(), r.ranges())
    checkpoint = Checkpoint(devices)
    if r.version >= 2:
        floor, controls = r.controls()
        checkpoint = Checkpoint(devices, controls, floor)
    r.done("realtime checkpoint")
    return checkpoint


def encode_visits(state: VisitState) -> bytes:
    w = _Writer(VISITS_VERSION)
    for part in state.key:
        w.str(part)
    for n in (state.visits, state.next_stop):
        w.uint(n)
    w.int(state.delay_us)
    w.optional(state.load)
    w.uint(len(state.counts))
    for c in state.counts:
        w.str(c.device_id)
        for n in (c.seq, c.event_time_us, c.delta, c.load_after):
            w.int(n)
    return bytes(w.out)


@_decoder("stop-visit state")
def decode_visits(data: bytes) -> VisitState:
    """The state with its run's key, not the run (the caller looks it up in its schedule)."""
    r = _Reader(data, "stop-visit state", VISITS_VERSION)
    state = VisitState(key=(r.str(), r.str()))
    state.visits, state.next_stop, state.delay_us, state.load = r.uint(), r.uint(), r.int(), r.optional()
    state.counts = [DoorCount(r.str(), r.int(), r.int(), r.int(), r.int()) for _ in range(r.uint())]
    r.done("stop-visit state")
    return state
