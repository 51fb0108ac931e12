"""A train's cell: its state, the events waiting to be applied, and when to apply them.

Pure functions over one value. FoldOccupancy (transforms/occupancy.py) keeps a
`TrainCell` per train in one Beam state cell, sets the train's one event-time
timer where `rearm` says, and calls `add` for each event and `take_due` when
the timer fires (docs/design.md, "Running occupancy").

When a train is flushed (`flush_at`), for an event released at
`event time + reorder delay`:

* a change (a count of people, a reset, a terminus) after a quiet spell (no
  flush within `flush_interval` before it is released) is flushed at its
  release: the load as the doors open;
* while changes keep coming, at most one flush per `flush_interval`, and one
  as soon as the newest change is released with nothing newer behind it: the
  load as the train leaves;
* never two flushes within `MIN_FLUSH_GAP_US` (Firestore sustains one write a
  second to a document): changes spread out (or late, released before they
  arrive) are flushed at most that often, and none before `retry_us` after a
  flush failed;
* heartbeats alone wait up to `idle_interval` after the last flush (they change
  no count), or until `MAX_IDLE_WAITING` of them wait (a train of many doors);
* a flush asked for without an event (`wake`, the stop visits') at its time.

The cell holds the events released within `span` of the earliest waiting one
(or of the last flush, if later); events beyond it (a backlog handed over
before the watermark moves, events dated ahead) wait in a bag of their own
(`later`), which `take_due` reads only when `later_due` says, so a backlog is
not rewritten with the cell at every bundle.
"""

import dataclasses
from typing import Callable, Iterable, List, Optional, Tuple

from occupancy import state_codec
from occupancy.fold import HEARTBEAT_WRITE_INTERVAL_US, FoldConfig
from occupancy.train_state import TrainState
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


def is_change(event: Event) -> bool:
    """Whether applying `event` may change the train's count (anything but a heartbeat)."""
    return event.kind != COUNT or event.delta != 0


class _Tally:
    """Running figures of a cell's waiting events, so that placing an event costs the same
    however many wait. Not encoded: counted again from the events once a cell is read."""

    __slots__ = ("first_change", "last_change", "first_idle", "idles")

    def __init__(self, events=(), policy: "FlushPolicy" = None):
        self.first_change = self.last_change = self.first_idle = None
        self.idles = 0
        for event in events:
            self.count(policy.release_of(event), is_change(event))

    @property
    def first(self) -> Optional[int]:
        """The earliest release of all (None: nothing waits)."""
        return min((t for t in (self.first_change, self.first_idle) if t is not None), default=None)

    def count(self, release: int, change: bool) -> None:
        if change:
            self.first_change = release if self.first_change is None else min(self.first_change, release)
            self.last_change = release if self.last_change is None else max(self.last_change, release)
        else:
            self.first_idle = release if self.first_idle is None else min(self.first_idle, release)
            self.idles += 1


@dataclasses.dataclass(eq=False)
class TrainCell:
    """One train's cell. `train` is decoded from `train_bytes` only when asked for: an event
    needs the queue, never the train's counts."""

    last_flush_us: int = 0
    armed_us: int = 0  # where the flush timer is set; 0: not set
    wake_us: int = 0  # a flush asked for without an event; 0: none
    retry_us: int = 0  # no flush before this (a flush that failed); 0: none
    horizon_us: int = 0  # events released up to here wait in `waiting`, later ones in `later`
    later: int = 0  # events in the `later` bag, those already copied to `waiting` included
    later_first_us: int = 0  # the earliest release in `later` not yet copied; 0: none
    waiting: List[Event] = dataclasses.field(default_factory=list)
    train_bytes: Optional[bytes] = None
    _train: Optional[TrainState] = None
    _tally: Optional[_Tally] = None

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
            self.retry_us,
            self.horizon_us,
            self.later,
            self.later_first_us,
            self.waiting,
            self.encoded_train(),
        )

    def copy(self) -> "TrainCell":
        """A value of its own (a state cache hands out the object it keeps); the train's bytes
        are shared, not decoded."""
        *clock, waiting, train = self.fields()
        return TrainCell(*clock, list(waiting), train)

    def __eq__(self, other):
        return isinstance(other, TrainCell) and self.fields() == other.fields()


def _tallied(cell: TrainCell, policy: FlushPolicy) -> _Tally:
    if cell._tally is None:
        cell._tally = _Tally(cell.waiting, policy)
    return cell._tally


def _window_end(cell: TrainCell, policy: FlushPolicy, first: Optional[int]) -> int:
    """Where the window of a cell with nothing in `later` ends: `span` after the earliest waiting
    release (`first`), or after the last flush if that is later (an event dated ahead, however
    far the device's clock allows, does not stretch the window for the events after it)."""
    return max(cell.last_flush_us, first if first is not None else cell.last_flush_us) + policy.span_us


def add(cell: TrainCell, event: Event, policy: FlushPolicy) -> List[Event]:
    """Queues `event` in the cell. Returns the events the caller adds to the `later` bag: `event`
    if it is beyond the window, and any the window, moved back by it, leaves out."""
    release, tally = policy.release_of(event), _tallied(cell, policy)
    out = []
    if not cell.later:  # the window follows the earliest event; with events in `later` it stays
        first = release if tally.first is None else min(tally.first, release)
        horizon = _window_end(cell, policy, first)
        if horizon < cell.horizon_us and tally.first is not None:
            out = [e for e in cell.waiting if policy.release_of(e) > horizon]
            if out:
                cell.waiting = [e for e in cell.waiting if policy.release_of(e) <= horizon]
                cell.later, cell.later_first_us = len(out), min(policy.release_of(e) for e in out)
                cell._tally = None
        cell.horizon_us = horizon
    if release <= cell.horizon_us:
        cell.waiting.append(event)
        _tallied(cell, policy).count(release, is_change(event))
        return out
    cell.later += 1
    cell.later_first_us = min(cell.later_first_us or release, release)
    return out + [event]


def wake(cell: TrainCell, at_us: int) -> None:
    """Asks for a flush at `at_us` (or sooner, if events are due sooner)."""
    cell.wake_us = min(cell.wake_us or at_us, at_us)


def flush_at(cell: TrainCell, policy: FlushPolicy) -> Optional[int]:
    """When the train's timer should fire (module docstring), or None: nothing waits."""
    tally, last = _tallied(cell, policy), cell.last_flush_us
    floor, full = last + policy.min_gap_us, last + policy.flush_interval_us
    due = []
    if tally.first_change is not None:
        # After a quiet spell (the first change released a full interval after the last flush),
        # at its release; else at the interval's end, or sooner once the newest change is released.
        due.append(max(tally.first_change, floor, min(full, tally.last_change)))
    if tally.first_idle is not None:
        idle_until = last + policy.idle_interval_us if tally.idles < MAX_IDLE_WAITING else 0
        due.append(max(tally.first_idle, floor, idle_until))
    if cell.later_first_us == V1_LATER:
        due.append(cell.armed_us or full)  # the timer the job before set
    elif cell.later_first_us:
        due.append(max(cell.later_first_us, full))
    if cell.wake_us:
        due.append(max(cell.wake_us, floor))
    return max(min(due), cell.retry_us) if due else None


def rearm(cell: TrainCell, policy: FlushPolicy) -> Optional[int]:
    """Where the caller should set the train's timer now (recorded as armed), or None: where it
    is set already, or nothing waits."""
    at = flush_at(cell, policy)
    if at is None or at == cell.armed_us:
        return None
    cell.armed_us = at
    return at


def later_due(cell: TrainCell, fired_us: int, policy: FlushPolicy) -> bool:
    """Whether a flush at `fired_us` copies events from the `later` bag (the caller reads it):
    some are due within the next window, and the window's end is near (a bag read once per
    window, not at every flush)."""
    if cell.later_first_us == V1_LATER:
        return True
    near = cell.horizon_us < fired_us + policy.reach_us
    return bool(cell.later_first_us) and near and cell.later_first_us <= fired_us + policy.span_us


def take_due(
    cell: TrainCell, fired_us: int, policy: FlushPolicy, read_later: Callable[[], Iterable[Event]]
) -> Tuple[List[Event], Optional[List[Event]]]:
    """Takes the events released by `fired_us` out of the cell, and records the flush.

    Args:
        read_later: reads the `later` bag; called only when `later_due` says.

    Returns:
        (the due events, what the `later` bag should hold from now on, or None: unchanged).
    """
    later = list(read_later()) if later_due(cell, fired_us, policy) else None
    before = cell.last_flush_us
    waited = {e.event_id for e in cell.waiting} if cell.later_first_us == V1_LATER else ()
    due, kept = [], []
    for event in cell.waiting:
        (due if policy.release_of(event) <= fired_us else kept).append(event)
    cell.waiting, cell._tally = kept, None
    cell.last_flush_us = max(cell.last_flush_us, fired_us)
    cell.wake_us = 0 if cell.wake_us <= fired_us else cell.wake_us
    cell.retry_us = 0 if cell.retry_us <= fired_us else cell.retry_us
    if later is None:
        end = _window_end(cell, policy, _tallied(cell, policy).first)
        if cell.later:  # the horizon says which were copied: it stays below those that were not
            end = min(end, cell.later_first_us - 1)
        cell.horizon_us = max(cell.horizon_us, end)
        return due, None
    from_v1 = cell.later_first_us == V1_LATER
    copied_through, horizon = cell.horizon_us, max(cell.horizon_us, fired_us + policy.span_us)
    living = []
    for event in later:
        release = policy.release_of(event)
        if _copied(event, release, from_v1, copied_through, before, waited):
            continue
        if release > horizon:
            living.append(event)
        else:
            (due if release <= fired_us else cell.waiting).append(event)
    cell.horizon_us, cell._tally = horizon, None
    cell.later_first_us = min((policy.release_of(e) for e in living), default=0)
    rewrite = None
    if from_v1 or len(later) - len(living) > len(living):  # the bag keeps the rest only
        rewrite, cell.later = living, len(living)
    return due, rewrite


def _copied(event: Event, release: int, from_v1: bool, copied_through: int, last_flush: int, waited) -> bool:
    """Whether an event of the `later` bag was copied out before. A version-1 job copied by its
    own release times (its buckets' ends), which this one cannot know: it kept its horizon at
    least one of its intervals plus the delay past its last flush, so an event it never copied
    is released after that flush, and one it copied has been applied since or waits still."""
    if from_v1:
        return release <= last_flush or event.event_id in waited
    return release <= copied_through


def put_back(cell: TrainCell, events: List[Event], retry_us: int) -> None:
    """Puts taken events back (a flush that could not apply them), due again at `retry_us`."""
    cell.waiting[:0] = events
    cell._tally, cell.retry_us = None, retry_us
