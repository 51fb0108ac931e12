"""A train's events waiting for their release time, kept in Beam state, and its flush timer.

Used by FoldOccupancy (transforms/occupancy.py) and the benchmark's runner
ceiling; the state specs are their class attributes, passed in here as handles.

The timer discipline (docs/design.md, "Running occupancy"): one timer per train,
armed for the oldest waiting release time, never pushed later by new events (a
timer re-set on every element never fires under steady traffic on the local
runner), and never sooner than one flush interval after the previous flush.

The queue is three bags of events and a horizon, handles the caller passes in
(FoldOccupancy keeps `waiting`, `pending`, the horizon and the clock in its one
`train_cell`, transforms/train_cell.py, and `later` in a bag of its own; the
runner ceiling keeps each in a cell). Where a bag is a cell of its own, a flush
rewrites none of them in the common case:

* `waiting`: events released up to the horizon (a minute or more ahead of the
  last flush). A flush takes those due and leaves the rest; what it took stays
  in the bag, dead (released at or before the last flush), until the dead
  outnumber the living and the bag is rewritten with the living only.
* `later`: events beyond the horizon, as when a bounded replay or a job
  catching up on a backlog hands a train hours of events before its first
  timer fires. Read when the horizon moves on (every minute or so of event
  time), its events up to the new horizon are copied to `waiting`; it too is
  rewritten only when more of it is dead (at or below the horizon) than alive.
* `pending`: events that arrive already late (released at or before the last
  flush, so they cannot go to `waiting`, where they would look dead). All are
  due at the next flush. It was the whole queue before (a job updated in place
  keeps its state): elements not yet due stay in it.

Streaming traffic arrives within the reorder delay of the watermark, so `later`
stays empty; each event is written to state a bounded number of times however
long the backlog.
"""

from typing import Callable, List, NamedTuple, Optional, Tuple

from apache_beam.utils.timestamp import Timestamp

# How far ahead of a flush the horizon is set, at least (ReleaseQueue: 4 x the reach if more).
MIN_HORIZON_US = 60_000_000


class QueueState(NamedTuple):
    """A key's state and timer handles, as the DoFn's StateParams and TimerParam give them.

    The clock is (armed flush time or 0, time of the last flush), kept in
    `timer_at`: written when a new element arms the timer and at every flush.
    `clock` is what the caller keeps of it elsewhere, if anything (the runner
    ceiling keeps it with its total, written at a flush that released
    elements); the later of the two, by last flush, is the clock.
    """

    pending: object
    waiting: object
    later: object
    horizon: object
    timer_at: object
    flush: object
    clock: Tuple[int, int] = (0, 0)


def _clock(states: QueueState) -> Tuple[int, int]:
    """(armed flush time or 0, last flush time): the later of `timer_at` and the caller's."""
    stored = states.timer_at.read() or (0, 0)
    armed, last_flush = stored if stored[1] >= states.clock[1] else states.clock
    return (armed if armed > last_flush else 0), last_flush


def arm_flush(
    states: QueueState, release_us: int, flush_interval_us: int, clock: Optional[Tuple[int, int]] = None
) -> None:
    """Arms a key's flush timer for a new element that may be released at `release_us`.

    `clock`: `_clock(states)` if the caller has it (one state read fewer)."""
    armed, last_flush = clock or _clock(states)
    release = max(release_us, last_flush + flush_interval_us)
    if not armed or release < armed:
        states.flush.set(Timestamp(micros=release))
        states.timer_at.write((release, last_flush))


class ReleaseQueue:
    """Routes new events to their bag and takes out the due ones at a flush."""

    # `waiting` is rewritten once its dead elements outnumber the living and this many.
    MIN_DEAD = 8

    def __init__(
        self, release_of: Callable, flush_interval_us: int, reorder_delay_us: int, min_dead: Optional[int] = MIN_DEAD
    ):
        """`min_dead`: None to drop dead elements from `waiting` at every flush, where the bag is
        part of a cell written anyway (transforms.train_cell) and a rewrite costs nothing more."""
        self._release_of = release_of
        self._min_dead = min_dead
        self._flush_interval_us = flush_interval_us
        # An on-time event is released at most this far ahead of the watermark.
        self._reach_us = flush_interval_us + reorder_delay_us
        self._span_us = max(MIN_HORIZON_US, 4 * self._reach_us)

    def add(self, element, states: QueueState) -> None:
        """Queues a new element: reads the clock, and the horizon when the element is not
        already due."""
        release = self._release_of(element)
        clock = _clock(states)
        if release <= clock[1]:
            states.pending.add(element)
        elif release <= (states.horizon.read() or 0):
            states.waiting.add(element)
        else:
            states.later.add(element)
        arm_flush(states, release, self._flush_interval_us, clock)

    def take_due(self, fired_us: int, states: QueueState) -> Tuple[List, Tuple[int, int]]:
        """(the elements released by `fired_us`, the clock); the rest stay queued, the timer re-armed.

        The clock is written to `timer_at`; a caller that keeps it elsewhere too
        (QueueState.clock) keeps the one returned.
        """
        release_of = self._release_of
        _, last_flush = _clock(states)
        ready, rest = [], []
        for element in states.pending.read():
            (ready if release_of(element) <= fired_us else rest).append(element)
        if ready:
            _rewrite(states.pending, rest)
        stored = list(states.waiting.read())
        living = []
        for element in stored:
            release = release_of(element)
            if release > fired_us:
                living.append(element)
            elif release > last_flush:
                ready.append(element)
        moved, later_release = self._refill(fired_us, states, bool(living))
        arriving = []
        for element in moved:
            (ready if release_of(element) <= fired_us else arriving).append(element)
        dead = len(stored) - len(living)
        living += arriving
        if dead and (self._min_dead is None or dead > max(len(living), self._min_dead)):
            _rewrite(states.waiting, living)
        else:
            for element in arriving:
                states.waiting.add(element)
        releases = [release_of(e) for e in rest + living]
        if later_release is not None:
            releases.append(later_release)
        clock = (0, fired_us)
        if releases:
            clock = (max(min(releases), fired_us + self._flush_interval_us), fired_us)
            states.flush.set(Timestamp(micros=clock[0]))
        # Written at every flush (one small write) so that a new element needs no other state
        # to know the clock; the caller may keep it too (QueueState.clock).
        states.timer_at.write(clock)
        return ready, clock

    def put_off(self, fired_us: int, delay_us: int, states: QueueState) -> None:
        """Takes nothing and arms the timer again `delay_us` after `fired_us`: the flush is
        tried again then (a new element may still arm it sooner)."""
        _, last_flush = _clock(states)
        at = fired_us + delay_us
        states.flush.set(Timestamp(micros=at))
        states.timer_at.write((at, last_flush))

    def _refill(self, fired_us: int, states, waiting_has_more: bool):
        """Moves the horizon on when it comes near (or nothing else waits).

        Returns the events copied from `later` and the earliest release left there (or None).
        """
        release_of = self._release_of
        current = states.horizon.read() or 0
        near = current < fired_us + self._reach_us
        if not near and waiting_has_more:
            return [], None
        stored = list(states.later.read())
        living = [e for e in stored if release_of(e) > current]  # the rest were copied before
        new_horizon = fired_us + self._span_us
        moved = []
        if (living or near) and new_horizon > current:
            states.horizon.write(new_horizon)
            moved = [e for e in living if release_of(e) <= new_horizon]
            living = [e for e in living if release_of(e) > new_horizon]
            if len(stored) - len(living) > len(living):
                _rewrite(states.later, living)
        return moved, (min(release_of(e) for e in living) if living else None)


def _rewrite(bag, elements) -> None:
    bag.clear()
    for element in elements:
        bag.add(element)


# ---- the same queue in memory, to replay it offline (benchmarks, tests) -------------------


class MemoryBag:
    """A bag state in memory; counts the elements ever written to it."""

    def __init__(self):
        self.items, self.writes = [], 0

    def read(self):
        return list(self.items)

    def add(self, item):
        self.items.append(item)
        self.writes += 1

    def clear(self):
        self.items = []


class MemoryValue:
    """A read-modify-write state in memory."""

    def __init__(self):
        self.value = None

    def read(self):
        return self.value

    def write(self, value):
        self.value = value


class MemoryTimer:
    """An event-time timer in memory: `at` is when it fires (microseconds), or None."""

    def __init__(self):
        self.at = None

    def set(self, timestamp):
        self.at = timestamp.micros


def memory_state() -> QueueState:
    return QueueState(MemoryBag(), MemoryBag(), MemoryBag(), MemoryValue(), MemoryValue(), MemoryTimer())


def keep_clock(states: QueueState, clock: Tuple[int, int]) -> QueueState:
    """`states` with the clock a flush that released events handed back, as a caller keeps it."""
    return states._replace(clock=clock)
