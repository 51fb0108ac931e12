"""A train's cell: its state, the events waiting to be applied, and when to apply them.

Pure functions over one value. FoldOccupancy (transforms/occupancy.py) keeps a
`TrainCell` per train in one Beam state cell, sets the train's one event-time
timer where `flush_at` says, and calls `add` for each event and `take_due` when
the timer fires (docs/design.md, "Running occupancy").

When a train is flushed (`flush_at`), for an event released at
`event time + reorder delay`:

* a change (a count of people, a reset, a terminus) after a quiet spell (no
  flush within `flush_interval` before it is released) is flushed at its
  release: the load as the doors open;
* while changes keep coming, at most one flush per `flush_interval`, and one as
  soon as the newest change is released with nothing newer behind it: the
  load as the train leaves;
* never two flushes within `MIN_FLUSH_GAP_US` (Firestore sustains one write a
  second to a document);
* heartbeats alone wait up to `idle_interval` after the last flush (they change
  no count), or until `MAX_IDLE_WAITING` of them wait (a train of many doors);
* a flush asked for without an event (`wake`, the stop visits') at its time.

The cell holds the events released within `span` of where its window began;
events beyond it (a backlog handed over before the watermark moves) wait in a
bag of their own (`later`), which the caller reads only when `later_due` says,
so a backlog is not rewritten with the cell at every bundle.
"""

import dataclasses
from typing import List, Optional, Tuple

from occupancy import state_codec
from occupancy.fold import HEARTBEAT_WRITE_INTERVAL_US, FoldConfig, TrainState
from occupancy.wire import COUNT, Event

# Firestore sustains one write a second to a document: a train's realtime document is flushed
# at most that often.
MIN_FLUSH_GAP_US = 1_000_000
# Heartbeats alone wait for the idle interval unless this many wait: the cell stays small.
MAX_IDLE_WAITING = 32
# `later_first_us` of a cell a job before this layout wrote (version 1) with events in `later`:
# its bag is read, and rewritten, at the next flush (`take_due`).
V1_LATER = 1
# How far beyond its earliest waiting event the cell holds events, at least.
MIN_SPAN_US = 60_000_000


@dataclasses.dataclass(frozen=True)
class FlushPolicy:
    """When a train's events are applied (module docstring)."""

    reorder_delay_us: int
    flush_interval_us: int
    idle_interval_us: int = HEARTBEAT_WRITE_INTERVAL_US

    @classmethod
    def of(cls, config: FoldConfig) -> "FlushPolicy":
        return cls(config.reorder_delay_us, config.flush_interval_us)

    @property
    def span_us(self) -> int:
        return max(MIN_SPAN_US, 4 * self.reach_us)

    @property
    def reach_us(self) -> int:
        """How far beyond a flush an event arriving in time may be released."""
        return self.flush_interval_us + self.reorder_delay_us

    @property
    def min_gap_us(self) -> int:
        return min(self.flush_interval_us, MIN_FLUSH_GAP_US)

    def release_of(self, event: Event) -> int:
        """When `event` may be applied: the watermark has passed it by the reorder delay."""
        return event.event_time_us + self.reorder_delay_us

    def v1_release_of(self, event: Event) -> int:
        """When a job writing version 1 of the cell released `event`: the end of its bucket
        (`flush_interval`, epoch-aligned) plus the reorder delay. Its `later` bag holds what it
        copied out as what it released by its horizon."""
        t = event.event_time_us
        return t - t % self.flush_interval_us + self.flush_interval_us + self.reorder_delay_us


def is_change(event: Event) -> bool:
    """Whether applying `event` may change the train's count (anything but a heartbeat)."""
    return event.kind != COUNT or event.delta != 0


@dataclasses.dataclass(eq=False)
class TrainCell:
    """One train's cell. `train` is decoded from `train_bytes` only when asked for: an event
    needs the queue, never the train's counts."""

    last_flush_us: int = 0
    armed_us: int = 0  # where the flush timer is set; 0: not set
    wake_us: int = 0  # a flush asked for without an event; 0: none
    horizon_us: int = 0  # events released up to here wait in `waiting`, later ones in `later`
    later: int = 0  # events in the `later` bag, those already copied to `waiting` included
    later_first_us: int = 0  # the earliest release in `later` not yet copied; 0: none
    waiting: List[Event] = dataclasses.field(default_factory=list)
    train_bytes: Optional[bytes] = None
    _train: Optional[TrainState] = None

    @property
    def train(self) -> Optional[TrainState]:
        """The train's state (None: never seeded)."""
        if self._train is None and self.train_bytes is not None:
            self._train = state_codec.decode_state(self.train_bytes)
        return self._train

    @train.setter
    def train(self, state: Optional[TrainState]) -> None:
        self._train, self.train_bytes = state, None

    def train_snapshot(self) -> Optional[bytes]:
        """The train's state as bytes before a change in place: as read (no encoding) while it
        was not set since."""
        return self.train_bytes if self.train_bytes is not None else self.encoded_train()

    def encoded_train(self) -> Optional[bytes]:
        """The train's state as bytes: as read, if it was never decoded."""
        return state_codec.encode_state(self._train) if self._train is not None else self.train_bytes

    def fields(self) -> Tuple:
        """Every field in the coder's order (transforms.coders.TrainCellCoder)."""
        return (
            self.last_flush_us,
            self.armed_us,
            self.wake_us,
            self.horizon_us,
            self.later,
            self.later_first_us,
            self.waiting,
            self.encoded_train(),
        )

    def copy(self) -> "TrainCell":
        """A value of its own (a state cache hands out the object it keeps); the train's bytes
        are shared, not decoded."""
        return TrainCell(*self.fields()[:6], list(self.waiting), self.encoded_train())

    def __eq__(self, other):
        return isinstance(other, TrainCell) and self.fields() == other.fields()


def add(cell: TrainCell, event: Event, policy: FlushPolicy) -> bool:
    """Queues `event` in the cell; True if it belongs in the `later` bag instead (the caller
    adds it there)."""
    release = policy.release_of(event)
    if not cell.waiting and not cell.later:
        cell.horizon_us = max(cell.horizon_us, release + policy.span_us)  # a window begins here
    if release <= cell.horizon_us:
        cell.waiting.append(event)
        return False
    cell.later += 1
    cell.later_first_us = min(cell.later_first_us or release, release)
    return True


def wake(cell: TrainCell, at_us: int) -> None:
    """Asks for a flush at `at_us` (or sooner, if events are due sooner)."""
    cell.wake_us = min(cell.wake_us or at_us, at_us)


def flush_at(cell: TrainCell, policy: FlushPolicy) -> Optional[int]:
    """When the train's timer should fire (module docstring), or None: nothing waits."""
    last, floor = cell.last_flush_us, cell.last_flush_us + policy.min_gap_us
    changes = [policy.release_of(e) for e in cell.waiting if is_change(e)]
    idle = [policy.release_of(e) for e in cell.waiting if not is_change(e)]
    due = []
    if changes:
        due.append(max(min(changes), floor, min(last + policy.flush_interval_us, max(changes))))
    if idle:
        idle_until = last + policy.idle_interval_us if len(idle) < MAX_IDLE_WAITING else 0
        due.append(max(min(idle), floor, idle_until))
    if cell.later_first_us:
        due.append(max(cell.later_first_us, last + policy.flush_interval_us))
    if cell.wake_us:
        due.append(max(cell.wake_us, floor))
    return min(due) if due else None


def later_due(cell: TrainCell, fired_us: int, policy: FlushPolicy) -> bool:
    """Whether a flush at `fired_us` copies events from the `later` bag (the caller reads it):
    some are due within the next window, and the window's end is near (a bag read once per
    window, not at every flush)."""
    if cell.later_first_us == V1_LATER:
        return True
    near = cell.horizon_us < fired_us + policy.reach_us
    return bool(cell.later_first_us) and near and cell.later_first_us <= fired_us + policy.span_us


def take_due(
    cell: TrainCell, fired_us: int, policy: FlushPolicy, later: Optional[List[Event]] = None
) -> Tuple[List[Event], Optional[List[Event]]]:
    """Takes the events released by `fired_us` out of the cell, and records the flush.

    Args:
        later: the `later` bag's events, when `later_due` said to read them.

    Returns:
        (the due events, what the `later` bag should hold from now on, or None: unchanged).
    """
    due = [e for e in cell.waiting if policy.release_of(e) <= fired_us]
    cell.waiting = [e for e in cell.waiting if policy.release_of(e) > fired_us]
    cell.last_flush_us = fired_us
    if cell.wake_us and cell.wake_us <= fired_us:
        cell.wake_us = 0
    if later is None:
        if not cell.later:  # with events in `later`, the horizon says which were copied
            cell.horizon_us = max(cell.horizon_us, fired_us + policy.span_us)
        return due, None
    copied_through, horizon = cell.horizon_us, max(cell.horizon_us, fired_us + policy.span_us)
    from_v1 = cell.later_first_us == V1_LATER
    copied = policy.v1_release_of if from_v1 else policy.release_of
    living = []
    for event in later:
        if copied(event) <= copied_through:
            continue  # copied before
        release = policy.release_of(event)
        if release > horizon:
            living.append(event)
        else:
            (due if release <= fired_us else cell.waiting).append(event)
    cell.horizon_us = horizon
    cell.later_first_us = min((policy.release_of(e) for e in living), default=0)
    rewrite = None
    if from_v1 or len(later) - len(living) > len(living):  # the bag keeps the rest only
        rewrite, cell.later = living, len(living)
    return due, rewrite


def put_back(cell: TrainCell, events: List[Event]) -> None:
    """Puts taken events back (a flush that could not apply them): due at the next flush."""
    cell.waiting[:0] = events
