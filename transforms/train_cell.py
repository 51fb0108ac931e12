"""A train's state in one cell: read once per train and bundle, written once when the bundle ends.

Over the Fn API, as on Dataflow, every read of a state cell is a request to the runner and a
wait for its answer, and every cell written is two more (a clear and an append) when the
bundle commits: about 0.55 ms of CPU a request on FnApiRunner's multi_threading mode, most of
the job's cost (docs/sizing.md has the measurements). FoldOccupancy kept a
train in seven cells (`train`, `queue`, `clock`, `waiting`, `pending`, `horizon`,
`timer_at`) and a flush made 9.3 requests; with all it needs in `train_cell` a flush makes
three (one read, one clear, one append), and one more for `later` while it holds events.
A train's first element also reads the seven old cells, once (below).

The cell (`TrainCellValue`, encoded by transforms.coders.TrainCellCoder, versioned):

* the release queue's clock (armed flush, last flush), horizon and the count of events in
  `later`;
* its `pending` and `waiting` events: those released up to the horizon (a minute or more
  ahead of the last flush; streaming traffic arrives within the reorder delay, so a few
  seconds' worth); a backlog's far events go to the `later` bag, which stays a cell of its
  own and is read only when the horizon moves on (transforms.release_queue);
* the TrainState, as its versioned bytes (occupancy.state_codec), decoded only at a flush:
  an element needs the queue, never the train's counts.

`TrainCell` presents the one cell as the handles `transforms.release_queue` expects (the
`pending` and `waiting` bags, the horizon, the clock; and `later`, counted), so the queue's
logic is unchanged.

A train whose state a job before this cell wrote is read once through the old cells
(`LegacyCells`), which are then cleared: the next write puts it all here. A job rolled back
across this change must be drained first (docs/operations.md, "Update, drain, roll back").
"""

from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

from occupancy import state_codec
from occupancy.fold import TrainState
from transforms.release_queue import QueueState


class TrainCellValue:
    """What the `train_cell` cell holds. The train's state is kept as the bytes it was read as
    until asked for (`train`), and encoded again only if it was."""

    __slots__ = ("armed", "last_flush", "horizon", "later", "pending", "waiting", "_train_bytes", "_train")

    def __init__(
        self,
        armed: int = 0,
        last_flush: int = 0,
        horizon: int = 0,
        later: int = 0,
        pending: List = None,
        waiting: List = None,
        train_bytes: Optional[bytes] = None,
        train: Optional[TrainState] = None,
    ):
        self.armed, self.last_flush, self.horizon = armed, last_flush, horizon
        self.later = later  # events in the `later` bag: it is read only if it holds some
        self.pending = list(pending or [])
        self.waiting = list(waiting or [])
        self._train_bytes, self._train = train_bytes, train

    @property
    def train(self) -> Optional[TrainState]:
        """The train's state (None: never seeded)."""
        if self._train is None and self._train_bytes is not None:
            self._train = state_codec.decode_state(self._train_bytes)
        return self._train

    @train.setter
    def train(self, state: TrainState) -> None:
        self._train, self._train_bytes = state, None

    def train_bytes_before_change(self) -> Optional[bytes]:
        """The train's state as bytes, to put back should a change of it fail: the bytes it was
        read as, kept until it is set (no encoding), else encoded now. Asked before the state
        handed out by `train` is changed in place."""
        return self._train_bytes if self._train_bytes is not None else self.train_bytes()

    def train_bytes(self) -> Optional[bytes]:
        """The train's state encoded (as read, if it was never decoded)."""
        if self._train is not None:
            return state_codec.encode_state(self._train)
        return self._train_bytes

    def fields(self) -> tuple:
        """(armed, last flush, horizon, events in `later`, pending, waiting, the train's bytes):
        the constructor's order, and the coder's (transforms.coders.TrainCellCoder)."""
        return (
            self.armed,
            self.last_flush,
            self.horizon,
            self.later,
            self.pending,
            self.waiting,
            self.train_bytes(),
        )

    def copy(self) -> "TrainCellValue":
        """A value of its own. A state cache (`--max_cache_memory_usage_mb`) hands out the object
        it keeps: changed in place by a bundle that then fails, the cache would hold what the
        runner never committed. Cheap without a cache: the train's bytes are shared, not decoded."""
        return TrainCellValue(*self.fields())

    def __eq__(self, other):
        return isinstance(other, TrainCellValue) and self.fields() == other.fields()

    def __repr__(self):
        return (
            f"TrainCellValue(armed={self.armed}, last_flush={self.last_flush}, horizon={self.horizon}, "
            f"later={self.later}, pending={len(self.pending)}, waiting={len(self.waiting)}, train={self.train!r})"
        )


class BundleMemo:
    """The `train_cell` values this bundle read or wrote, by train. A DoFn instance runs one
    bundle at a time; `start_bundle` clears it, so nothing is kept from one bundle to the next
    (where another worker may have changed the train)."""

    def __init__(self):
        self._values: Dict[str, TrainCellValue] = {}

    def clear(self) -> None:
        self._values = {}

    def get(self, key: str) -> Optional[TrainCellValue]:
        return self._values.get(key)

    def put(self, key: str, value: TrainCellValue) -> None:
        self._values[key] = value


class LegacyCells(NamedTuple):
    """The cells a job before `train_cell` kept a train in (FoldOccupancy declares them still)."""

    train: object  # TrainState (transforms.coders.TrainStateCoder)
    queue: object  # (armed, last flush, horizon, events in pending): jobs from 2026-12-03
    clock: object  # (armed, last flush): jobs from 2026-12-01 (and later ones, for a rollback)
    timer_at: object  # (armed, last flush), with TrainState.queue_clock: jobs before 2026-12-01
    horizon: object  # jobs before 2026-12-03
    pending: object  # bag of events
    waiting: object  # bag of events, with those released at the last flush or before (dead)


def read_legacy(cells: LegacyCells, release_of: Callable) -> TrainCellValue:
    """A train as an earlier job left it, or an empty value for a train no job kept. The old
    cells of a train found there are all cleared (a new train costs their reads only)."""
    train = cells.train.read()
    queue = cells.queue.read()
    clock = cells.clock.read()
    timer_at = None
    # The jobs with `queue` wrote `clock` too, so that a job rolled back to the one before
    # finds it; if such a job ran last, its `clock` (and `horizon`) are newer than `queue`.
    if queue is not None and (clock is None or queue[1] >= clock[1]):
        armed, last_flush, horizon, _ = queue
    else:
        if clock is None:
            timer_at = cells.timer_at.read()
        armed, last_flush = clock if clock is not None else _older_clock(train, timer_at)
        horizon = cells.horizon.read() or 0
    pending = list(cells.pending.read())
    stored_waiting = list(cells.waiting.read())
    found = any(held is not None for held in (train, queue, clock, timer_at)) or pending or stored_waiting or horizon
    if not found:
        return TrainCellValue()
    for cell in cells:
        cell.clear()
    waiting = [e for e in stored_waiting if release_of(e) > last_flush]  # the rest were released
    # `later` stays; what it holds is counted at its next read.
    return TrainCellValue(armed, last_flush, horizon, 1, pending, waiting, train=train)


def _older_clock(train: Optional[TrainState], timer_at) -> Tuple[int, int]:
    """The clock as a job before the `clock` cell kept it: the later (by last flush) of the
    train state's and `timer_at`."""
    kept = train.queue_clock if train is not None else (0, 0)
    stored = timer_at or (0, 0)
    return tuple(stored) if stored[1] >= kept[1] else tuple(kept)


class TrainCell:
    """One train's `train_cell`, read at most once a bundle (through `memo`), and the views of it
    the release queue uses."""

    def __init__(self, key: str, cell, memo: BundleMemo, legacy: Callable[[], TrainCellValue]):
        """`legacy()`: the train as an earlier job left it, for a train without the cell."""
        self._key, self._cell, self._memo, self._legacy = key, cell, memo, legacy
        self._value: Optional[TrainCellValue] = memo.get(key)

    def value(self) -> TrainCellValue:
        if self._value is None:
            stored = self._cell.read()
            self._value = stored.copy() if stored is not None else self._legacy()
            self._memo.put(self._key, self._value)
        return self._value

    def changed(self) -> None:
        """Writes the value back (sent once, when the bundle commits)."""
        self._cell.write(self.value())

    @property
    def train(self) -> Optional[TrainState]:
        return self.value().train

    @train.setter
    def train(self, state: TrainState) -> None:
        self.value().train = state
        self.changed()

    def train_bytes_before_change(self) -> Optional[bytes]:
        """TrainCellValue.train_bytes_before_change of this train's value."""
        return self.value().train_bytes_before_change()

    def queue_state(self, later, flush) -> QueueState:
        """The release queue's handles: `pending`, `waiting`, the horizon and the clock in this
        cell, `later` (a bag of its own) and the flush timer as given."""
        return QueueState(
            _Events(self, "pending"), _Events(self, "waiting"), _Later(self, later), _Horizon(self), _Clock(self), flush
        )


class _Events:
    """A list of events in the cell, as a bag."""

    def __init__(self, cell: TrainCell, field: str):
        self._cell, self._field = cell, field

    def read(self) -> List:
        return list(getattr(self._cell.value(), self._field))

    def add(self, event) -> None:
        getattr(self._cell.value(), self._field).append(event)
        self._cell.changed()

    def clear(self) -> None:
        setattr(self._cell.value(), self._field, [])
        self._cell.changed()


class _Later:
    """The `later` bag, read only when the cell counts events in it (a backlog's: rarely)."""

    def __init__(self, cell: TrainCell, bag):
        self._cell, self._bag = cell, bag

    def read(self) -> List:
        value = self._cell.value()
        if not value.later:
            return []
        items = list(self._bag.read())
        if len(items) != value.later:  # a train moved from an earlier job's cells: counted now
            value.later = len(items)
            self._cell.changed()
        return items

    def add(self, event) -> None:
        self._bag.add(event)
        self._cell.value().later += 1
        self._cell.changed()

    def clear(self) -> None:
        self._bag.clear()
        self._cell.value().later = 0
        self._cell.changed()


class _Horizon:
    def __init__(self, cell: TrainCell):
        self._cell = cell

    def read(self) -> Optional[int]:
        return self._cell.value().horizon or None

    def write(self, horizon: int) -> None:
        self._cell.value().horizon = horizon
        self._cell.changed()


class _Clock:
    """(armed flush or 0, last flush), as the release queue reads and writes its `timer_at`."""

    def __init__(self, cell: TrainCell):
        self._cell = cell

    def read(self) -> Tuple[int, int]:
        value = self._cell.value()
        return value.armed, value.last_flush

    def write(self, clock: Tuple[int, int]) -> None:
        value = self._cell.value()
        value.armed, value.last_flush = clock
        self._cell.changed()
