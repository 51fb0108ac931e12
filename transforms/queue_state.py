"""The release queue's small state in one cell, read once per train and bundle.

Over the Fn API, as on Dataflow, every read of a state cell the SDK does not hold is a
request to the runner and a wait for its answer: on FnApiRunner's multi_threading mode about
0.5 ms of CPU each, against a few µs for a write (sent when the bundle ends, not waited
for; docs/sizing.md). FoldOccupancy kept the queue's clock (armed flush, last flush) and its
horizon in two cells and read `pending` at every flush, so an element cost one or two
reads and a flush five. Here the three live in one `queue` cell, (armed, last flush,
horizon, events in `pending`), so that

* an element reads that cell only, and only once per train in a bundle (`BundleMemo`: the
  value read or written last in this bundle is the cell's value, as every write goes
  through it);
* a flush reads it, the train's state and `waiting`, and reads `pending` only when events
  were put there (events that arrived already late: rarely).

`QueueCell` presents the one cell as the cells `transforms.release_queue` expects (`clock`,
`horizon`, `pending`), so the queue's logic is unchanged. A train whose state was written by
a job before this cell (`clock` and `horizon` cells, or earlier still) is read through those
once; the next write moves it here. The clock is still written to `clock` too, for a job
rolled back to that version (a stale `horizon` is safe there: it only reads `later` sooner;
it always reads `pending`).
"""

from typing import Callable, Dict, Optional, Tuple

from apache_beam.coders import coders

# (armed flush or 0, last flush, horizon or 0, events in `pending`): µs of event time and a count.
QUEUE_CODER = coders.TupleCoder([coders.VarIntCoder()] * 4)
Queue = Tuple[int, int, int, int]


class BundleMemo:
    """What this bundle last read or wrote of each train's `queue` cell. A DoFn instance runs
    one bundle at a time; `start_bundle` clears it, so nothing is kept from one bundle to the
    next (where another worker may have changed the train)."""

    def __init__(self):
        self._values: Dict[str, Queue] = {}

    def clear(self) -> None:
        self._values = {}

    def get(self, key: str) -> Optional[Queue]:
        return self._values.get(key)

    def put(self, key: str, value: Queue) -> None:
        self._values[key] = value


class QueueCell:
    """One train's `queue` cell, read at most once (through `memo`), and the views of it the
    release queue uses: `clock`, `horizon` and `pending`."""

    def __init__(self, key: str, cell, pending_bag, memo: BundleMemo, legacy: Callable[[], Queue], clock_cell):
        """`legacy()`: the queue as an earlier job left it, for a train without the cell;
        `clock_cell`: that job's `clock`, still written (a write costs no wait) so that a job
        rolled back to it finds the clock it routes new events by."""
        self._key, self._cell, self._bag, self._memo, self._legacy = key, cell, pending_bag, memo, legacy
        self._clock_cell = clock_cell
        self._value: Optional[Queue] = memo.get(key)

    def value(self) -> Queue:
        if self._value is None:
            stored = self._cell.read()
            self._value = tuple(stored) if stored is not None else self._legacy()
            self._memo.put(self._key, self._value)
        return self._value

    def _write(self, **changes) -> None:
        armed, last_flush, horizon, pending = self.value()
        value = (
            changes.get("armed", armed),
            changes.get("last_flush", last_flush),
            changes.get("horizon", horizon),
            changes.get("pending", pending),
        )
        self._value = value
        self._memo.put(self._key, value)
        self._cell.write(value)
        if value[:2] != (armed, last_flush):
            self._clock_cell.write(value[:2])

    @property
    def clock(self) -> "_Clock":
        return _Clock(self)

    @property
    def horizon(self) -> "_Horizon":
        return _Horizon(self)

    @property
    def pending(self) -> "_Pending":
        return _Pending(self)


class _Clock:
    """(armed flush or 0, last flush), as release_queue reads and writes its `timer_at` cell."""

    def __init__(self, cell: QueueCell):
        self._cell = cell

    def read(self) -> Tuple[int, int]:
        armed, last_flush, _, _ = self._cell.value()
        return armed, last_flush

    def write(self, clock: Tuple[int, int]) -> None:
        self._cell._write(armed=clock[0], last_flush=clock[1])


class _Horizon:
    def __init__(self, cell: QueueCell):
        self._cell = cell

    def read(self) -> Optional[int]:
        return self._cell.value()[2] or None

    def write(self, horizon: int) -> None:
        self._cell._write(horizon=horizon)


class _Pending:
    """The `pending` bag, read only when the cell counts events in it."""

    def __init__(self, cell: QueueCell):
        self._cell = cell

    def read(self):
        counted = self._cell.value()[3]
        if not counted:
            return []
        items = list(self._cell._bag.read())
        if len(items) != counted:  # a train from before the count: counted from now on
            self._cell._write(pending=len(items))
        return items

    def add(self, element) -> None:
        self._cell._bag.add(element)
        self._cell._write(pending=self._cell.value()[3] + 1)

    def clear(self) -> None:
        self._cell._bag.clear()
        self._cell._write(pending=0)
