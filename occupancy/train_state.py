"""What a train remembers between flushes (`TrainState`), the fold's (occupancy.fold) input and
output: its count, per device what was applied (for de-duplication, as seq ranges), the resets and
terminus events applied, its open history bucket, and the trips balanced at a terminus.

Pure data with its de-duplication rules (`DeviceMemory.accept`); occupancy.state_codec writes it as
versioned bytes, occupancy.documents as Firestore documents.
"""

import bisect
import dataclasses
from typing import Dict, List, Optional, Tuple

from occupancy.wire import NO_SEQ

# The resets and terminus events a train remembers having applied (the newest); one older than all
# of them counts as seen. About a day of a train's trips, a few hundred bytes.
MAX_CONTROLS = 32


REGISTRATION_UNKNOWN = -1


@dataclasses.dataclass
class DeviceMemory:
    """What the train remembers of one device for de-duplication."""

    seq: int = NO_SEQ
    # Sorted, disjoint, inclusive [lo, hi] ranges of applied seqs within the window.
    applied: List[List[int]] = dataclasses.field(default_factory=list)
    last_seen_us: int = 0
    # When the device was registered or moved to this train (wire.Event.registered_us): a
    # later one starts this memory over. REGISTRATION_UNKNOWN: seeded from a document that did
    # not say; the device's next count says it, and the memory is kept.
    registered_us: int = 0
    # People this door counted in and out since the train's last reset: per-door
    # (and so per-carriage) estimates. Class-level defaults, so that a state
    # pickled before these fields existed reads 0.
    trip_boarded: int = 0
    trip_alighted: int = 0

    def accept(self, seq: int, window: int) -> bool:
        """Records seq and returns True if it was not applied before."""
        if seq > self.seq:
            self.seq = seq
        elif seq <= self.seq - window or _in_ranges(self.applied, seq):
            return False
        _add_to_ranges(self.applied, seq)
        floor = self.seq - window + 1
        while self.applied and self.applied[0][1] < floor:
            self.applied.pop(0)
        if self.applied and self.applied[0][0] < floor:
            self.applied[0][0] = floor
        return True


def _in_ranges(ranges: List[List[int]], seq: int) -> bool:
    i = bisect.bisect_right(ranges, [seq, float("inf")]) - 1
    return i >= 0 and ranges[i][0] <= seq <= ranges[i][1]


def _add_to_ranges(ranges: List[List[int]], seq: int) -> None:
    i = bisect.bisect_right(ranges, [seq, float("inf")])
    if i > 0 and ranges[i - 1][1] >= seq - 1:  # extends (or is inside) the range before
        ranges[i - 1][1] = max(ranges[i - 1][1], seq)
        i -= 1
    else:
        ranges.insert(i, [seq, seq])
    if i + 1 < len(ranges) and ranges[i + 1][0] <= ranges[i][1] + 1:  # now touches the next one
        ranges[i][1] = max(ranges[i][1], ranges.pop(i + 1)[1])


@dataclasses.dataclass
class Bucket:
    """Aggregates of one history document: a train's events in one flush interval."""

    start_us: int
    timestamp_us: int = 0
    value: int = 0
    delta: int = 0
    events: int = 0
    boarded: int = 0
    alighted: int = 0
    late: int = 0
    correction: int = 0


@dataclasses.dataclass
class TrainState:
    value: int = 0
    last_applied_us: Optional[int] = None
    capacity: Optional[int] = None
    devices: Dict[str, DeviceMemory] = dataclasses.field(default_factory=dict)
    # Legacy events' ids -> event time, kept within the reorder window.
    recent_ids: Dict[str, int] = dataclasses.field(default_factory=dict)
    # The resets and terminus events applied, (event time, kind), oldest first, at most
    # MAX_CONTROLS; any at or before `control_floor_us` counts as applied (it is older than
    # what the train remembers). Class-level defaults, so that a state pickled before these
    # fields existed reads them.
    controls: Tuple[Tuple[int, str], ...] = ()
    control_floor_us: int = 0
    # The latest history bucket, kept so that late events can be added to it.
    bucket: Optional[Bucket] = None
    # The last daily reset boundary applied, so that it is applied once.
    reset_through_us: int = 0
    # Event time of the last flush that wrote the realtime document.
    last_written_us: int = 0
    # Event time of the last reset or terminus: where the current trip began (0: unknown).
    trip_start_us: int = 0


def controls_unknown(state: TrainState) -> None:
    """For a state read from what kept no applied resets and termini (a version-1 state or
    checkpoint, whose job kept them within the reorder window only): all up to the train's last
    trip start count as applied."""
    state.controls, state.control_floor_us = (), state.trip_start_us


@dataclasses.dataclass
class Trip:
    """A train's trip balanced at a zero-load point (terminus): what the doors counted since
    the last reset or terminus, and the residual the train still showed (set to 0)."""

    start_us: int
    end_us: int
    ons: int
    offs: int
    residual: int
    doors: Dict[str, Tuple[int, int]]  # device_id -> (boarded, alighted) in the trip
