"""Running occupancy of one train: the pure fold the stateful DoFn drives.

No Beam here. `apply_events` takes a train's state and the events released by
one flush (in any order) and applies them in event-time order with the
semantics of docs/design.md, "Running occupancy":

1. value = max(0, value + delta); what the clamp adds back is a correction.
2. Event-time order, ties by device then seq; an event older than the last
   applied one is applied anyway, marked late, in the train's latest bucket.
3. Each event counted once: per device the highest applied seq and the applied
   seqs within `dedup_window` below it (as ranges, so memory stays small);
   legacy events by event id within the reorder window; resets and terminus
   events by the train's memory of the last MAX_CONTROLS it applied (occupancy.train_state; kept in
   the realtime checkpoint too, so a redelivery or a replay after a restart
   finds it).
5. Reset events and the daily reset boundary set the value to 0 (the amount
   removed is a negative correction). A reset or terminus older than a count
   the train already applied is refused (`LATE_CONTROL`): applied, it would
   erase counts made after it.

Sign convention, kept in every bucket: value = previous value + delta + correction.
"""

import dataclasses
import datetime
from typing import Dict, List, Optional, Tuple

from occupancy.train_state import MAX_CONTROLS, REGISTRATION_UNKNOWN, Bucket, DeviceMemory, TrainState, Trip
from occupancy.wire import (
    BEFORE_ASSIGNMENT,
    COUNT,
    LATE_CONTROL,
    NO_SEQ,
    SEQ_JUMP,
    TERMINUS,
    ZEROING,
    Event,
    format_time,
    from_micros,
    to_micros,
)

# A seq more than this many de-duplication windows above a device's highest is refused (a
# dead letter `seq_jump`), unless the device was registered again: accepted, it would make every
# later honest seq of the device look old, muting the door (docs/design.md, "Running occupancy").
SEQ_JUMP_WINDOWS = 10

# A heartbeat-only flush refreshes `devices_seen` at most this often (event time):
# heartbeats keep devices' last_seen current without a write per heartbeat.
HEARTBEAT_WRITE_INTERVAL_US = 60_000_000


@dataclasses.dataclass(frozen=True)
class DailyReset:
    """A wall-clock time of day, in a time zone, at which occupancy returns to 0."""

    hour: int
    minute: int
    tz: datetime.tzinfo

    @classmethod
    def parse(cls, hh_mm: str, tz: datetime.tzinfo) -> "DailyReset":
        try:
            hour, minute = (int(part) for part in hh_mm.split(":"))
        except ValueError:
            raise ValueError(f"daily reset must be HH:MM, got {hh_mm!r}") from None
        if not (0 <= hour < 24 and 0 <= minute < 60):
            raise ValueError(f"daily reset must be HH:MM, got {hh_mm!r}")
        return cls(hour, minute, tz)

    def boundary_at_or_before(self, t_us: int) -> int:
        # zoneinfo derives the offset from the wall time, so replace() and
        # day arithmetic stay right across daylight-saving changes.
        local = from_micros(t_us).astimezone(self.tz)
        boundary = local.replace(hour=self.hour, minute=self.minute, second=0, microsecond=0)
        if boundary > local:
            boundary -= datetime.timedelta(days=1)
        return to_micros(boundary)


@dataclasses.dataclass(frozen=True)
class FoldConfig:
    flush_interval_us: int = 1_000_000
    reorder_delay_us: int = 2_000_000
    dedup_window: int = 1000
    daily_reset: Optional[DailyReset] = None

    def bucket_start(self, t_us: int) -> int:
        return t_us - t_us % self.flush_interval_us


@dataclasses.dataclass
class FlushResult:
    buckets: List[Bucket] = dataclasses.field(default_factory=list)
    applied: int = 0
    duplicates: int = 0
    late: int = 0
    corrections: int = 0
    heartbeats: int = 0
    write_realtime: bool = False
    trips: List[Trip] = dataclasses.field(default_factory=list)
    # Events refused here: (event, reason, detail). A seq jump (see `SEQ_JUMP_WINDOWS`), a late
    # reset or terminus (LATE_CONTROL).
    refused: List[Tuple[Event, str, str]] = dataclasses.field(default_factory=list)
    # Each count of people applied, in the order applied, with the train's value after it
    # (the stop visits' input: occupancy.stop_visits).
    counts: List[Tuple[Event, int]] = dataclasses.field(default_factory=list)


def sort_key(event: Event):
    return (event.event_time_us, event.device_id, event.seq, event.event_id)


# `_screen`'s answer for an event applied before.
_DUPLICATE = ("duplicate", "")


def _screen(state: TrainState, event: Event, window: int):
    """None to apply `event` (its memory updated: its seq, or the reset remembered), _DUPLICATE
    if it was applied before, else (reason, detail) why it is refused."""
    if event.kind in ZEROING:
        return _screen_control(state, event)
    earlier = _earlier_registration(state, event)
    if earlier:
        return BEFORE_ASSIGNMENT, earlier
    jump = _seq_jump(state, event, window)
    if jump:
        return SEQ_JUMP, jump
    return None if _is_new(state, event, window) else _DUPLICATE


def _screen_control(state: TrainState, event: Event):
    """`_screen` for a reset or terminus: a duplicate if the train applied it already (or it is
    older than all it remembers), refused if a later event was applied, else remembered."""
    t = event.event_time_us
    if t <= state.control_floor_us or (t, event.kind) in state.controls:
        return _DUPLICATE
    if state.last_applied_us is not None and t < state.last_applied_us:
        return LATE_CONTROL, (
            f"{event.kind} of {format_time(t)} is older than the train's last applied event of "
            f"{format_time(state.last_applied_us)}: applying it would erase the counts made after it; "
            "send a new one if the train is to be zeroed"
        )
    kept = sorted(state.controls + ((t, event.kind),))
    if len(kept) > MAX_CONTROLS:
        state.control_floor_us = max(state.control_floor_us, kept[-MAX_CONTROLS - 1][0])
        kept = kept[-MAX_CONTROLS:]
    state.controls = tuple(kept)
    return None


def _is_new(state: TrainState, event: Event, window: int) -> bool:
    memory = state.devices.get(event.device_id) if event.device_id else None
    if event.seq == NO_SEQ:
        if event.event_id in state.recent_ids:
            return False
        state.recent_ids[event.event_id] = event.event_time_us
        if event.device_id:
            if memory is None:
                memory = state.devices[event.device_id] = DeviceMemory(registered_us=event.registered_us)
            memory.last_seen_us = max(memory.last_seen_us, event.event_time_us)
        return True
    if memory is not None and memory.registered_us == REGISTRATION_UNKNOWN:
        memory.registered_us = event.registered_us  # seeded without it: what it applied stands
    if memory is None or event.registered_us > memory.registered_us:
        # First sight, or the device was registered again or moved here again: its seq starts over.
        memory = state.devices[event.device_id] = DeviceMemory(registered_us=event.registered_us)
    if not memory.accept(event.seq, window):
        return False
    memory.last_seen_us = max(memory.last_seen_us, event.event_time_us)
    return True


def _earlier_registration(state: TrainState, event: Event) -> str:
    """Why `event` is refused as counted under its device's earlier registration, or "". The
    lookup refuses such counts by their time (`before_assignment`); a worker whose view of the
    registry is a refresh behind lets one through, and its seq belongs to the wiped counter: in
    the new memory it would mute the honest seqs."""
    memory = state.devices.get(event.device_id) if event.device_id else None
    if memory is None or event.registered_us >= memory.registered_us:
        return ""
    return (
        f"{event.device_id} was registered again or moved here at {format_time(memory.registered_us)}; this "
        f"count was made under its registration or move of {format_time(event.registered_us)}"
    )


def _seq_jump(state: TrainState, event: Event, window: int) -> str:
    """Why `event` is refused as a seq jump, or "" (a first sight or a device registered again
    starts its seq over; only counts from a device the train knows can jump)."""
    if event.seq == NO_SEQ or not event.device_id:
        return ""
    memory = state.devices.get(event.device_id)
    if memory is None or memory.seq == NO_SEQ or event.registered_us > memory.registered_us:
        return ""
    if event.seq > memory.seq + SEQ_JUMP_WINDOWS * window:
        return (
            f"seq {event.seq} of {event.device_id} is more than {SEQ_JUMP_WINDOWS} x {window} above its "
            f"highest applied seq {memory.seq}; register the device again if it was reset"
        )
    return ""


def apply_events(state: TrainState, events: List[Event], config: FoldConfig, flush_time_us: int) -> FlushResult:
    """Applies the released events to `state` (mutated) and says what to write."""
    result = FlushResult()
    touched: Dict[int, Bucket] = {}
    devices_changed = False

    def bucket_for(t_us: int, late: bool) -> Bucket:
        if late and state.bucket is not None:
            bucket = state.bucket
        else:
            start = config.bucket_start(t_us if not late else state.last_applied_us)
            # The open bucket begins after `start` only if the bucket width changed (a job updated
            # with another --flush_interval_s): the event goes on in it, so that no history
            # document an earlier width wrote is written again with less.
            if state.bucket is not None and state.bucket.start_us >= start:
                bucket = state.bucket
            else:
                bucket = touched.get(start) or Bucket(start_us=start)
        touched[bucket.start_us] = bucket
        if state.bucket is None or bucket.start_us >= state.bucket.start_us:
            state.bucket = bucket
        return bucket

    for event in sorted(events, key=sort_key):
        t = event.event_time_us
        verdict = _screen(state, event, config.dedup_window)
        if verdict is _DUPLICATE:
            result.duplicates += 1
            continue
        if verdict is not None:
            result.refused.append((event, *verdict))
            continue
        devices_changed = True
        if event.capacity is not None:
            state.capacity = event.capacity
        late = state.last_applied_us is not None and t < state.last_applied_us
        _apply_daily_reset(state, t, late, config, bucket_for, result)
        if event.kind == COUNT and event.delta == 0:
            result.heartbeats += 1
            continue
        result.applied += 1
        bucket = bucket_for(t, late)
        if event.kind in ZEROING:
            if event.kind == TERMINUS:
                result.trips.append(_balance(state, t))
            correction = -state.value
            state.value = 0
            _start_trip(state, t)
        else:
            raw = state.value + event.delta
            correction = max(0, -raw)
            state.value = raw + correction
            bucket.delta += event.delta
            bucket.boarded += max(0, event.delta)
            bucket.alighted += max(0, -event.delta)
            door = state.devices.get(event.device_id) if event.device_id else None
            if door is not None:
                door.trip_boarded += max(0, event.delta)
                door.trip_alighted += max(0, -event.delta)
            result.counts.append((event, state.value))
        bucket.events += 1
        bucket.correction += correction
        result.corrections += correction != 0
        if late:
            bucket.late += 1
            result.late += 1
        bucket.value = state.value
        bucket.timestamp_us = max(bucket.timestamp_us, t)
        state.last_applied_us = t if state.last_applied_us is None else max(state.last_applied_us, t)

    if state.last_applied_us is not None:
        horizon = state.last_applied_us - config.reorder_delay_us - config.flush_interval_us
        state.recent_ids = {k: v for k, v in state.recent_ids.items() if v >= horizon}
    result.buckets = sorted(touched.values(), key=lambda b: b.start_us)
    result.write_realtime = bool(result.buckets) or (
        devices_changed and flush_time_us - state.last_written_us >= HEARTBEAT_WRITE_INTERVAL_US
    )
    if result.write_realtime:
        state.last_written_us = flush_time_us
    return result


def _apply_daily_reset(state, t, late, config, bucket_for, result) -> None:
    if config.daily_reset is None or late or state.last_applied_us is None:
        return
    boundary = config.daily_reset.boundary_at_or_before(t)
    if boundary <= max(state.last_applied_us, state.reset_through_us):
        return
    state.reset_through_us = boundary
    bucket = bucket_for(boundary, False)
    if state.value:
        bucket.correction -= state.value
        result.corrections += 1
    state.value = 0
    _start_trip(state, boundary)
    bucket.value = 0
    bucket.timestamp_us = max(bucket.timestamp_us, boundary)
    state.last_applied_us = boundary


def _balance(state: TrainState, t_us: int) -> Trip:
    doors = {
        d: (m.trip_boarded, m.trip_alighted)
        for d, m in sorted(state.devices.items())
        if m.trip_boarded or m.trip_alighted
    }
    return Trip(
        start_us=state.trip_start_us,
        end_us=t_us,
        ons=sum(b for b, _ in doors.values()),
        offs=sum(a for _, a in doors.values()),
        residual=state.value,
        doors=doors,
    )


def _start_trip(state: TrainState, t_us: int) -> None:
    """Occupancy is 0 again (a reset or terminus): the doors' counts start over."""
    state.trip_start_us = t_us
    for memory in state.devices.values():
        memory.trip_boarded = memory.trip_alighted = 0
