"""Firestore document shapes (docs/design.md, "Firestore documents"), to and from TrainState.

Pure functions: the sink writes what these return, and a new job seeds a
train's state from what they wrote. Field names of the original prototype
(`current_value`, `last_updated`, `timestamp`, `train`, `value`) are kept.
"""

import datetime
import hashlib
import logging
from typing import Dict, List, NamedTuple, Optional, Tuple

from occupancy import state_codec
from occupancy.train_state import REGISTRATION_UNKNOWN, Bucket, DeviceMemory, TrainState, Trip, controls_unknown
from occupancy.wire import from_micros, to_micros

_LOGGER = logging.getLogger(__name__)

# Firestore's limit on a document's storage size (bytes).
MAX_DOCUMENT_BYTES = 1_048_576
# At most this many applied-seq ranges per device in a realtime document: what
# bounds a train's realtime document whatever the gaps in its devices' seqs
# (with occupancy.registry_entries.MAX_DEVICES_PER_TRAIN; docs/sizing.md).
MAX_RANGES_PER_DEVICE = 32

# Fields of a realtime document that only a train with a capacity has: a guarded
# write, which updates the fields it is given, deletes them when they are absent.
REALTIME_OPTIONAL = ("capacity", "occupancy_ratio")
# The realtime document's field for the job alone (occupancy.state_codec.encode_dedup).
CHECKPOINT = "checkpoint"

# Logical collections; the pipeline options map them to real collection names.
REALTIME = "realtime"
HISTORY = "history"
DEAD_LETTERS = "dead_letters"
TRIPS = "trips"


class DocumentWrite(NamedTuple):
    """One document to set (replace) in a logical collection."""

    collection: str
    doc_id: str
    data: dict


def history_doc_id(train_id: str, bucket_start_us: int) -> str:
    """Deterministic and non-sequential: retries replace, and writes spread over key ranges."""
    return hashlib.sha256(f"{train_id}|{bucket_start_us}".encode("utf-8")).hexdigest()[:32]


def history_write(train_id: str, bucket: Bucket) -> DocumentWrite:
    return DocumentWrite(
        HISTORY,
        history_doc_id(train_id, bucket.start_us),
        {
            "timestamp": from_micros(bucket.timestamp_us),
            "train": train_id,
            "value": bucket.value,
            "delta": bucket.delta,
            "events": bucket.events,
            "boarded": bucket.boarded,
            "alighted": bucket.alighted,
            "late": bucket.late,
            "correction": bucket.correction,
            "bucket_start": from_micros(bucket.start_us),
        },
    )


def trip_write(train_id: str, trip: Trip) -> DocumentWrite:
    """trips/{id}: one train's trip balanced at a terminus (zero-load point).

    `residual` is what the train still showed at the terminus (set to 0 there);
    per door, what it counted in the trip and its net (boarded - alighted): the
    evidence for a door that counts out of line.
    """
    return DocumentWrite(
        TRIPS,
        history_doc_id(train_id, trip.end_us),
        {
            "train": train_id,
            "started_at": from_micros(trip.start_us) if trip.start_us else None,
            "ended_at": from_micros(trip.end_us),
            "ons": trip.ons,
            "offs": trip.offs,
            "residual": trip.residual,
            "doors": {device: {"boarded": b, "alighted": a, "net": b - a} for device, (b, a) in trip.doors.items()},
        },
    )


def realtime_write(train_id: str, state: TrainState) -> DocumentWrite:
    """realtime/{train_id}: what readers show, and the job's `checkpoint`.

    `devices_seen` holds what the API, dashboard and feed read per device; how the
    job de-duplicates them across a restart (registration times, applied seq
    ranges) is one bytes field, `checkpoint` (occupancy.state_codec), which
    readers never return.
    """
    data = {
        "current_value": state.value,
        "last_updated": from_micros(state.last_applied_us) if state.last_applied_us is not None else None,
        "devices_seen": {
            device_id: {
                "seq": memory.seq,
                "last_seen": from_micros(memory.last_seen_us),
                # Since the last reset: per-door counts for per-carriage estimates (occupancy.fleet).
                "trip_boarded": memory.trip_boarded,
                "trip_alighted": memory.trip_alighted,
            }
            for device_id, memory in sorted(state.devices.items())
        },
        CHECKPOINT: state_codec.encode_dedup(
            {
                device_id: (memory.registered_us, capped_ranges(memory.applied, MAX_RANGES_PER_DEVICE))
                for device_id, memory in state.devices.items()
            },
            state.controls,
            state.control_floor_us,
        ),
        "reset_through_us": state.reset_through_us,
        "trip_start_us": state.trip_start_us,
    }
    if state.capacity:
        data["capacity"] = state.capacity
        data["occupancy_ratio"] = round(state.value / state.capacity, 4)
    return DocumentWrite(REALTIME, train_id, data)


def applied_ranges(realtime: dict) -> Dict[str, List[List[int]]]:
    """device_id -> its applied seq ranges, from a realtime document of either format."""
    return {device_id: memory.applied for device_id, memory in _dedup_memory(realtime, 0)[0].items()}


def capped_ranges(ranges, cap: int):
    """`ranges` (sorted, disjoint [lo, hi]) with the narrowest gaps filled until at most `cap` remain.

    A filled gap reads as applied when a new job seeds from the document: a seq
    from it published again after a restart is then taken for a duplicate. The
    safe side (a count missed, never one counted twice), and only for devices
    whose seqs have more than `cap` gaps within the de-duplication window.
    """
    if len(ranges) <= cap:
        return ranges
    # Filling a gap leaves the others as wide as they were: fill the narrowest at once (ties: the
    # lowest first), in O(n log n) rather than one at a time.
    gaps = sorted(range(len(ranges) - 1), key=lambda k: (ranges[k + 1][0] - ranges[k][1], k))
    filled = set(gaps[: len(ranges) - cap])
    out = [list(ranges[0])]
    for k in range(1, len(ranges)):
        if k - 1 in filled:
            out[-1][1] = ranges[k][1]
        else:
            out.append(list(ranges[k]))
    return out


def storage_size(path: str, data: dict) -> int:
    """A document's size as Firestore counts it against its 1 MiB limit (bytes).

    `path`: the document's path, e.g. "realtime/t1". Firestore's "Storage size
    calculations": the document name (each path
    segment's UTF-8 length + 1, + 16), each field name (length + 1) and value,
    + 32. Strings are their UTF-8 length + 1; numbers, timestamps 8; booleans and
    null 1; arrays and maps the sum of their elements (and keys).
    """
    name = sum(len(part.encode("utf-8")) + 1 for part in path.split("/")) + 16
    return name + _value_size(data) + 32


def _value_size(value) -> int:
    if isinstance(value, dict):
        return sum(len(str(k).encode("utf-8")) + 1 + _value_size(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return sum(_value_size(v) for v in value)
    if isinstance(value, str):
        return len(value.encode("utf-8")) + 1
    if isinstance(value, bytes):
        return len(value)
    if value is None or isinstance(value, bool):
        return 1
    return 8  # int, float, datetime


def _micros(value) -> int:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return to_micros(value)
    return int(value or 0)


def bucket_start_of(realtime: dict, flush_interval_us: int) -> Optional[int]:
    """The start of the bucket the realtime document's last event fell in."""
    if not realtime.get("last_updated"):
        return None
    t = _micros(realtime["last_updated"])
    return t - t % flush_interval_us


def state_from_documents(realtime: Optional[dict], history: Optional[dict], dedup_window: int) -> TrainState:
    """Seeds a train's state from its realtime document and its latest history document.

    Args:
        realtime: the train's realtime document; None or empty: a new TrainState.
        history: its latest history document (the open bucket); None: no bucket.
        dedup_window: how many seqs up to a device's last are taken as applied when neither a readable
            `checkpoint` nor its `devices_seen` entry says which were.
    """
    state = TrainState()
    if not realtime:
        return state
    state.value = int(realtime.get("current_value") or 0)
    if realtime.get("last_updated"):
        state.last_applied_us = _micros(realtime["last_updated"])
        state.last_written_us = state.last_applied_us
    state.capacity = realtime.get("capacity")
    state.reset_through_us = int(realtime.get("reset_through_us") or 0)
    state.trip_start_us = int(realtime.get("trip_start_us") or 0)
    state.devices, controls = _dedup_memory(realtime, dedup_window)
    if controls.control_floor_us is None:  # written before they were kept, or by a newer job
        controls_unknown(state)
    else:
        state.controls, state.control_floor_us = controls.controls, controls.control_floor_us
    if history:
        state.bucket = Bucket(
            start_us=_micros(history.get("bucket_start")),
            timestamp_us=_micros(history.get("timestamp")),
            **{
                k: int(history.get(k) or 0)
                for k in ("value", "delta", "events", "boarded", "alighted", "late", "correction")
            },
        )
    return state


def _dedup_memory(realtime: dict, dedup_window: int) -> Tuple[Dict[str, DeviceMemory], state_codec.Checkpoint]:
    """Each device's memory from `devices_seen` and the `checkpoint` (documents written before
    the checkpoint, by jobs up to 5807173, kept `applied` and `registered_us` in
    `devices_seen`), and the checkpoint as read (its controls)."""
    read = state_codec.Checkpoint({})
    if realtime.get(CHECKPOINT):
        try:
            read = state_codec.decode_dedup(realtime[CHECKPOINT])
        except state_codec.Unreadable as e:  # a newer job's document, or broken: the safe side below
            _LOGGER.warning(
                "realtime checkpoint not read (%s): each device's last %d seqs taken as applied", e, dedup_window
            )
    checkpoint = read.devices
    out = {}
    for device_id, seen in (realtime.get("devices_seen") or {}).items():
        seq = int(seen.get("seq", -1))
        if device_id in checkpoint:
            registered_us, applied = checkpoint[device_id]
        elif "applied" in seen:
            registered_us = int(seen.get("registered_us") or REGISTRATION_UNKNOWN)
            applied = [[int(r["lo"]), int(r["hi"])] for r in seen["applied"] or []]
        else:
            # Nothing says which seqs were applied: everything up to seq counts as applied (a
            # re-sent count missed, never one counted twice), under the registration the
            # device's next count names.
            registered_us = int(seen.get("registered_us") or REGISTRATION_UNKNOWN)
            applied = [[max(0, seq - dedup_window + 1), seq]] if seq >= 0 and dedup_window > 0 else []
        out[device_id] = DeviceMemory(
            seq=seq,
            applied=applied,
            last_seen_us=_micros(seen.get("last_seen")),
            registered_us=registered_us,
            trip_boarded=int(seen.get("trip_boarded") or 0),
            trip_alighted=int(seen.get("trip_alighted") or 0),
        )
    return out, read
