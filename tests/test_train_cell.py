"""A train's cell (occupancy.train_cell) and its encoding (transforms.coders.TrainCellCoder).

The flush policy is driven here through its pure functions, with the timer fired where
`flush_at` says; the same cell on a runner is exercised by test_occupancy_stream.py and the
end-to-end tests.
"""

import random

import pytest

from occupancy import state_codec, train_cell, wire
from occupancy.fold import FoldConfig
from occupancy.train_cell import FlushPolicy, TrainCell
from tests.states import DATA, random_state, stored_state
from transforms.coders import TrainCellCoder

S = 1_000_000
T0 = 1_800_000_120 * S
POLICY = FlushPolicy(reorder_delay_us=2 * S, flush_interval_us=5 * S)


def count(seq: int, t_us: int, delta: int = 1, **fields) -> wire.Event:
    return wire.Event(f"d1:{seq}", t_us, device_id="t1-car1-door1", delta=delta, seq=seq, train_id="t1", **fields)


def heartbeat(seq: int, t_us: int) -> wire.Event:
    return count(seq, t_us, delta=0)


class Train:
    """A cell, its `later` bag and its timer, driven as FoldOccupancy drives them."""

    def __init__(self, policy=POLICY):
        self.policy, self.cell, self.later, self.later_writes, self.later_reads = policy, TrainCell(), [], 0, 0
        self.flushes = []  # (fired, the events it took)

    def add(self, event):
        beyond = train_cell.add(self.cell, event, self.policy)
        self.later += beyond
        self.later_writes += len(beyond)

    def _read_later(self):
        self.later_reads += 1
        return list(self.later)

    def due(self):
        return train_cell.flush_at(self.cell, self.policy)

    def fire(self, at=None):
        fired = self.due() if at is None else at
        taken, rewrite = train_cell.take_due(self.cell, fired, self.policy, self._read_later)
        if rewrite is not None:
            self.later, self.later_writes = list(rewrite), self.later_writes + len(rewrite)
        self.flushes.append((fired, taken))
        return taken


def stream(train: Train, events, until_us):
    """Feeds `events` (time-ordered, each arriving at its event time) and fires every timer due
    by then, as a watermark at the arrival time would."""
    for event in [*events, None]:
        now = event.event_time_us if event is not None else until_us
        while train.due() is not None and train.due() <= now:
            train.fire()
        if event is not None:
            train.add(event)


# ---- the flush policy ---------------------------------------------------------------------


def test_the_first_count_after_a_quiet_spell_is_flushed_at_its_release():
    train = Train()
    train.cell.last_flush_us = T0 - 60 * S  # quiet for a minute
    train.add(count(1, T0))
    assert train.due() == T0 + 2 * S  # its event time plus the reorder delay
    assert [e.seq for e in train.fire()] == [1]


def test_while_counts_keep_coming_one_flush_per_interval_and_one_as_they_stop():
    """A stop: counts every 0.4 s for 20 s. The load as the doors open is flushed at once, then
    one flush per 5 s interval, and the load as the train leaves once its last count is released."""
    train = Train()
    counts = [count(i + 1, T0 + i * 400_000) for i in range(50)]
    stream(train, counts, until_us=T0 + 60 * S)
    fired = [f for f, _ in train.flushes]
    assert fired[0] == T0 + 2 * S
    assert all(b - a == 5 * S for a, b in zip(fired, fired[1:-1]))
    assert fired[-1] == counts[-1].event_time_us + 2 * S  # the departure load: at its release
    assert len(fired) == 5  # not one per count: 50 counts in 5 flushes
    assert [e.seq for _, taken in train.flushes for e in taken] == list(range(1, 51))  # each once, in order
    assert all(POLICY.release_of(e) <= f for f, taken in train.flushes for e in taken)  # none early


def test_heartbeats_alone_wait_for_the_idle_interval_and_ride_along_with_counts():
    train = Train()
    train.cell.last_flush_us = T0
    train.add(heartbeat(1, T0 + 1 * S))
    assert train.due() == T0 + POLICY.idle_interval_us
    train.add(count(2, T0 + 10 * S))  # a count: the heartbeat goes with it
    assert train.due() == T0 + 12 * S and [e.seq for e in train.fire()] == [1, 2]


def test_heartbeats_of_many_doors_are_flushed_once_enough_wait():
    train = Train()
    train.cell.last_flush_us = T0
    for i in range(train_cell.MAX_IDLE_WAITING - 1):
        train.add(heartbeat(i + 1, T0 + 1 * S + i * 1000))
    assert train.due() == T0 + POLICY.idle_interval_us
    train.add(heartbeat(100, T0 + 2 * S))
    assert train.due() == T0 + 3 * S  # the first one's release: the cell stays small


def test_late_events_are_flushed_no_sooner_than_a_second_after_the_last_flush():
    """Counts whose release has passed (a device's clock behind): one flush a second at most,
    Firestore's sustained rate for one document, and none lost."""
    train = Train(FlushPolicy(reorder_delay_us=2 * S, flush_interval_us=S))
    train.cell.last_flush_us = T0 + 100 * S
    for i in range(30):
        train.add(count(i + 1, T0 + i * 1000))
        assert train.due() == train.cell.last_flush_us + S
        if i % 10 == 9:
            train.fire()
    fired = [f for f, _ in train.flushes]
    assert fired == [T0 + 101 * S, T0 + 102 * S, T0 + 103 * S]
    assert sorted(e.seq for _, taken in train.flushes for e in taken) == list(range(1, 31))


def test_a_flush_asked_for_without_an_event_fires_and_is_forgotten():
    train = Train()
    train.cell.last_flush_us = T0
    train_cell.wake(train.cell, T0 + 30 * S)
    train_cell.wake(train.cell, T0 + 40 * S)  # the earlier one stands
    assert train.due() == T0 + 30 * S
    assert train.fire() == [] and train.due() is None


def test_events_put_back_are_due_again_when_asked_not_sooner():
    train = Train()
    train.add(count(1, T0))
    taken = train.fire()
    train_cell.put_back(train.cell, taken, T0 + 12 * S)  # a seed that failed: tried in 10 s
    train.add(count(2, T0 + 1 * S))
    assert train.due() == T0 + 12 * S and train.fire() == taken + [count(2, T0 + 1 * S)]
    train.add(count(3, T0 + 11 * S))
    assert train.due() == T0 + 13 * S  # the retry is over once it fired


def test_an_event_far_ahead_in_later_does_not_send_the_others_there():
    """With one event dated 250 s ahead waiting in `later`, the window still moves on with the
    flushes: the train's other events keep to the cell, and the bag is not read for them."""
    train = Train()
    train.add(count(1, T0))
    ahead = count(2, T0 + 250 * S)
    train.add(ahead)
    assert train.later == [ahead]
    stream(train, [count(i, T0 + i * S) for i in range(3, 200)], until_us=T0 + 199 * S)
    assert train.later == [ahead] and train.later_reads == 0
    while train.due() is not None:
        train.fire()
    assert sorted(e.seq for _, taken in train.flushes for e in taken) == list(range(1, 200))


def test_changes_spread_out_or_late_are_flushed_at_most_once_a_second():
    """One change every 2.5 s (a door counting slowly), then one a second dated 10 s back
    (released before it arrives): each may be the last of its stop, and is flushed as soon as
    it is released, but never within a second of the flush before (Firestore's sustained rate
    for one document); none lost."""
    train = Train()
    spread = [count(i + 1, T0 + i * 2_500_000) for i in range(20)]
    stream(train, spread, until_us=T0 + 60 * S)
    for i in range(30):
        now = T0 + 60 * S + i * 500_000
        while train.due() is not None and train.due() <= now:
            train.fire()
        train.add(count(100 + i, now - 10 * S))
    while train.due() is not None:
        train.fire()
    fired = [f for f, _ in train.flushes]
    assert all(b - a >= S for a, b in zip(fired, fired[1:])), fired
    assert sum(1 for f in fired if f > T0 + 60 * S) <= 15 + 1  # 30 late ones in 15 s: a flush a second
    assert sorted(e.seq for _, taken in train.flushes for e in taken) == [*range(1, 21), *range(100, 130)]


def test_an_event_dated_ahead_does_not_stretch_the_window_for_the_rest():
    """A device's clock ahead by 200 s (within the accepted skew): its event waits in `later`,
    and the cell keeps a window from the earliest event, not from it."""
    train = Train()
    ahead = count(1, T0 + 200 * S)
    train.add(ahead)
    for i in range(2, 200):
        train.add(count(i, T0 + i * 500_000))
    assert ahead in train.later and ahead not in train.cell.waiting
    assert max(POLICY.release_of(e) for e in train.cell.waiting) <= T0 + 3 * S + POLICY.span_us
    while train.due() is not None:
        train.fire()
    assert sorted(e.seq for _, taken in train.flushes for e in taken) == list(range(1, 200))


# ---- a backlog ----------------------------------------------------------------------------


def released_in_time_order(train: Train) -> bool:
    """Whether every flush took only events later than those of the flushes before it."""
    times = [[e.event_time_us for e in taken] for _, taken in train.flushes if taken]
    return all(max(a) <= min(b) for a, b in zip(times, times[1:]))


def test_a_two_hour_backlog_is_released_once_in_time_order_with_linear_state_writes():
    """A job catching up, its watermark held: a train's two hours of events arrive (in publish
    order, a few seconds out of order) before its first timer fires. The cell holds a window of
    them; the rest wait in `later`, each written there a bounded number of times."""
    rng = random.Random(3)
    times = sorted(T0 + rng.randrange(0, 7200 * S) for _ in range(4000))
    events = [count(i + 1, t) for i, t in enumerate(times)]
    train = Train()
    for event in sorted(events, key=lambda e: e.event_time_us + rng.randrange(0, 3 * S)):
        train.add(event)
    largest = 0
    while train.due() is not None:
        train.fire()
        largest = max(largest, len(train.cell.waiting))
    released = [e for _, taken in train.flushes for e in taken]
    assert sorted(e.seq for e in released) == list(range(1, 4001))  # each once
    assert all(POLICY.release_of(e) <= f for f, taken in train.flushes for e in taken)  # never early
    assert released_in_time_order(train)
    assert train.later_writes <= 3 * len(events), train.later_writes
    # Read once per window as it moves on, not at every flush.
    assert train.later_reads <= 7200 * S / (POLICY.span_us - POLICY.reach_us) + 2, train.later_reads
    # The cell holds about a window's worth (4,000 over 2 h: ~33 a minute), not the backlog.
    assert largest < 4 * len(events) * POLICY.span_us / (7200 * S), largest
    assert train.cell.later == len(train.later) and train.cell.later_first_us == 0


def test_a_backlog_in_any_order_is_released_once_in_time_order():
    rng = random.Random(5)
    events = [count(i + 1, T0 + rng.randrange(0, 3600 * S)) for i in range(1000)]
    train = Train()
    for event in events:
        train.add(event)
    while train.due() is not None:
        train.fire()
    assert sorted(e.seq for _, taken in train.flushes for e in taken) == list(range(1, 1001))
    assert all(POLICY.release_of(e) <= f for f, taken in train.flushes for e in taken)
    assert released_in_time_order(train)


def test_an_event_the_backlog_left_in_the_cell_window_is_not_taken_twice():
    train = Train()
    train.add(count(1, T0))
    far = count(2, T0 + POLICY.span_us + 10 * S)
    train.add(far)
    assert train.later == [far] and train.cell.later == 1
    assert [e.seq for e in train.fire()] == [1]
    while train.due() is not None:
        train.fire()
    assert [e.seq for _, taken in train.flushes for e in taken] == [1, 2]


# ---- the encoding -------------------------------------------------------------------------


def stored_cell() -> TrainCell:
    """What tests/data/train_cell_v2.bin holds, written out by hand."""
    return TrainCell(
        last_flush_us=T0 + 4 * S,
        armed_us=T0 + 6 * S,
        wake_us=T0 + 30 * S,
        retry_us=T0 + 14 * S,
        horizon_us=T0 + 64 * S,
        later=2,
        later_first_us=T0 + 70 * S,
        waiting=[
            count(121, T0 + 2 * S, capacity=300, registered_us=1_790_000_000_000_000),
            count(122, T0 + 4 * S + 1),
            wire.Event("reset-1", T0 + 5 * S, kind=wire.RESET, train_id="t1"),
        ],
        # The train's state in its own version-1 bytes, passed through undecoded.
        train_bytes=(DATA / "train_state_v1.bin").read_bytes(),
    )


def stored_train():
    """The train state stored_cell() holds, as read from its version-1 bytes: its job kept applied
    resets within the reorder window only, so all before the trip's start counts as seen."""
    state = stored_state()
    state.control_floor_us = state.trip_start_us
    return state


def test_every_field_of_the_cell_survives_the_encoding():
    coder, rng = TrainCellCoder(), random.Random(11)
    for _ in range(100):
        value = TrainCell(
            *(rng.randrange(0, 2**62) for _ in range(5)),
            later=rng.randrange(0, 10**6),
            later_first_us=rng.randrange(0, 2**62),
            waiting=[count(rng.randrange(1, 10**9), rng.randrange(0, 2**62)) for _ in range(rng.randrange(0, 50))],
        )
        if rng.random() < 0.8:
            value.train = random_state(rng)
        decoded = coder.decode(coder.encode(value))
        assert decoded == value
        assert decoded.train == value.train


def test_version_2_bytes_stay_readable_and_are_what_the_coder_writes():
    stored = (DATA / "train_cell_v2.bin").read_bytes()
    decoded = TrainCellCoder().decode(stored)
    assert decoded == stored_cell() and decoded.train == stored_train()
    # A change to version 2's layout would strand every train's state: it must be a new version.
    assert TrainCellCoder().encode(stored_cell()) == stored


def test_version_1_bytes_are_read_with_their_events_waiting_and_their_later_bag_read_next():
    """What jobs before this layout kept: the clock, the horizon, the count of `later` events,
    `pending` and `waiting`, and the train's bytes."""
    decoded = TrainCellCoder().decode((DATA / "train_cell_v1.bin").read_bytes())
    assert (decoded.last_flush_us, decoded.armed_us, decoded.wake_us) == (T0 + 4 * S, T0 + 6 * S, 0)
    assert (decoded.horizon_us, decoded.later) == (T0 + 64 * S, 2)
    assert [e.seq for e in decoded.waiting] == [121, 122, wire.NO_SEQ]
    assert decoded.train == stored_train()
    assert train_cell.later_due(decoded, T0 + 5 * S, POLICY)  # its `later` bag is read next
    policy = FlushPolicy.of(FoldConfig(flush_interval_us=S, reorder_delay_us=2 * S))
    assert train_cell.flush_at(decoded, policy) == T0 + 5 * S  # a second after its last flush


def test_a_version_1_later_bag_loses_nothing_and_copies_nothing_twice():
    """A version-1 job released an event at its bucket's end plus the delay and kept in `later`
    what it had not copied by its horizon, at least an interval plus the delay past its last
    flush. By this job's release times an event it never copied may fall under that horizon
    (with its interval of 30 s, an event 10 s before it): still copied, once; one it copied is
    applied or waits already."""
    horizon, last_flush = T0 + 130 * S, T0 + 90 * S
    applied = count(1, T0 + 80 * S)  # copied and applied before
    waits = count(2, T0 + 100 * S)  # copied, waiting still
    edge = count(3, horizon - 10 * S)  # released at the horizon + 22 s then: never copied
    far = count(4, T0 + 400 * S)
    stored = TrainCellCoder()._v1.encode((T0 + 95 * S, last_flush, horizon, 4, [], [waits], None))
    cell = TrainCellCoder().decode(bytes([1]) + stored)
    assert train_cell.later_due(cell, T0 + 95 * S, POLICY)
    assert train_cell.flush_at(cell, POLICY) == T0 + 95 * S  # the timer the job before set
    due, rewrite = train_cell.take_due(cell, T0 + 95 * S, POLICY, lambda: [applied, waits, edge, far])
    assert due == [] and [e.seq for e in cell.waiting] == [2, 3] and rewrite == [far]
    assert cell.later == 1 and cell.later_first_us == POLICY.release_of(far)


def test_bytes_of_another_version_or_none_are_refused_with_a_reason():
    encoded = TrainCellCoder().encode(stored_cell())
    with pytest.raises(state_codec.UnknownVersion, match="train cell in version 3; this job reads versions 1 and 2"):
        TrainCellCoder().decode(bytes([3]) + encoded[1:])
    with pytest.raises(state_codec.UnknownVersion, match="version None"):
        TrainCellCoder().decode(b"")


def test_an_event_passes_the_trains_bytes_through_undecoded():
    coder = TrainCellCoder()
    cell = coder.decode(coder.encode(stored_cell()))
    train_cell.add(cell, count(123, T0 + 7 * S), POLICY)
    assert cell._train is None  # never decoded: the queue is all an event needs
    again = coder.decode(coder.encode(cell))
    assert [e.seq for e in again.waiting][-1] == 123 and again.train == stored_train()


def test_a_copy_is_a_value_of_its_own():
    """A state cache hands out the object it keeps; a bundle that changed it and then failed
    would leave the cache holding what was never committed."""
    kept = TrainCellCoder().decode(TrainCellCoder().encode(stored_cell()))
    assert kept.train == stored_train()  # decoded, as the cache keeps it after a flush
    cell = kept.copy()
    train_cell.add(cell, count(123, T0 + 7 * S), POLICY)
    train_cell.take_due(cell, T0 + 8 * S, POLICY, list)
    cell.train.value += 1
    assert kept.fields()[:7] == stored_cell().fields()[:7] and kept.train == stored_train()
    assert cell.train.value == stored_state().value + 1
