"""FoldOccupancy's state traffic: on Dataflow every read of an uncached state cell is a request to
the runner (and a wait), so an element reads one small cell, once per train in a bundle, never
the train's whole state; a flush reads each cell at most once, and `pending` only when events
were put there. State written by a job before the `queue` cell (or the `clock` cell) still works,
and a job rolled back to the one before finds its clock."""

import collections

from apache_beam.utils.timestamp import Timestamp

from occupancy import fold, wire
from transforms.occupancy import FoldOccupancy

S = 1_000_000
T0 = 1_800_000_000 * S
CONFIG = fold.FoldConfig(flush_interval_us=S, reorder_delay_us=S)


class Cell:
    """A state cell (bag or value) that counts its reads by name."""

    def __init__(self, name, reads, value=None):
        self.name, self.reads, self.items, self.value = name, reads, [], value

    def read(self):
        self.reads[self.name] += 1
        return list(self.items) if self.value is None and self.name in BAGS else self.value

    def add(self, item):
        self.items.append(item)

    def clear(self):
        self.items = []

    def write(self, value):
        self.value = value


class Timer:
    def __init__(self):
        self.at = None

    def set(self, timestamp):
        self.at = timestamp.micros


BAGS = ("pending", "waiting", "later")


def cells(reads, **values):
    names = ("pending", "waiting", "later", "horizon", "train", "queue", "clock", "timer_at")
    return {n: Cell(n, reads, values.get(n)) for n in names}


def event(seq, t_us):
    return "t1", wire.Event(f"d1:{seq}", t_us, device_id="d1", delta=1, seq=seq, train_id="t1")


def process(fn, state, timer, element):
    fn.process(element, flush=timer, **state)


def test_an_element_reads_one_cell_once_per_train_and_bundle_never_the_train_state():
    fn, reads, timer = FoldOccupancy(CONFIG), collections.Counter(), Timer()
    state = cells(reads)
    fn.start_bundle()
    process(fn, state, timer, event(1, T0))  # a new train: nothing stored yet
    reads.clear()
    fn.start_bundle()  # a bundle reads again what the last one left
    for seq in range(2, 50):
        process(fn, state, timer, event(seq, T0 + seq * 10_000))
    assert reads == {"queue": 1}, reads
    reads.clear()
    for seq in range(50, 60):  # a bundle each
        fn.start_bundle()
        process(fn, state, timer, event(seq, T0 + seq * 10_000))
    assert reads == {"queue": 10}, reads


def test_a_flush_reads_each_cell_at_most_once_and_pending_only_when_used():
    fn, reads, timer = FoldOccupancy(CONFIG), collections.Counter(), Timer()
    state = cells(reads)
    process(fn, state, timer, event(1, T0))
    # A new train's first flush reads `pending` (nothing says yet that it is empty); not the next.
    list(fn.on_flush(key="t1", fired=Timestamp(micros=timer.at), flush=timer, **state))
    for seq in range(2, 20):
        process(fn, state, timer, event(seq, T0 + 2 * S + seq * 50_000))
    fn.start_bundle()
    reads.clear()
    fired = timer.at
    out = list(fn.on_flush(key="t1", fired=Timestamp(micros=fired), flush=timer, **state))
    assert max(reads.values()) == 1 and reads["pending"] == 0 and reads["train"] == 1, reads
    assert state["train"].value.value == 19 and state["queue"].value[1] == fired
    assert any(w.collection == "realtime" for w in out if hasattr(w, "collection"))

    # An event that arrives already late goes to `pending`: the next flush reads it and applies it.
    fn.start_bundle()
    process(fn, state, timer, event(20, T0 + 2 * S))
    assert [e.seq for e in state["pending"].items] == [20] and state["queue"].value[3] == 1
    fn.start_bundle()
    reads.clear()
    list(fn.on_flush(key="t1", fired=Timestamp(micros=timer.at), flush=timer, **state))
    assert reads["pending"] == 1 and state["train"].value.value == 20
    assert state["pending"].items == [] and state["queue"].value[3] == 0


def test_state_of_an_earlier_job_is_read_through_its_own_clock():
    """A job before the `clock` cell kept a flush's clock in TrainState.queue_clock: an element due
    by that clock must go to `pending` (due at the next flush), not `waiting`, where it would look
    already released and be dropped."""
    fn, reads, timer = FoldOccupancy(CONFIG), collections.Counter(), Timer()
    last_flush = T0 + 10 * S
    legacy = fold.TrainState(value=5, queue_clock=(0, last_flush))
    state = cells(reads, train=legacy, timer_at=(T0 + 3 * S, T0 + 2 * S))
    process(fn, state, timer, event(7, T0 + 5 * S))  # released at T0 + 7 s, before the last flush
    assert [e.seq for e in state["pending"].items] == [7]
    assert state["waiting"].items == [] and state["later"].items == []
    assert timer.at == last_flush + CONFIG.flush_interval_us
    # Moved to the `queue` cell, and still in `clock` for a job rolled back to the one before.
    assert state["queue"].value[:2] == state["clock"].value == (timer.at, last_flush)


def test_state_of_the_job_before_the_queue_cell_is_read_through_its_clock_and_horizon():
    fn, reads, timer = FoldOccupancy(CONFIG), collections.Counter(), Timer()
    last_flush = T0 + 10 * S
    state = cells(reads, clock=(0, last_flush), horizon=last_flush + 60 * S)
    state["pending"].items = [event(3, T0 + 9 * S)[1]]  # left by that job: not counted anywhere
    process(fn, state, timer, event(8, T0 + 20 * S))
    assert [e.seq for e in state["waiting"].items] == [8]  # within that job's horizon
    reads.clear()
    fn.start_bundle()
    list(fn.on_flush(key="t1", fired=Timestamp(micros=timer.at), flush=timer, **state))
    assert reads["pending"] == 1 and state["train"].value.value == 2  # both applied


def test_a_seq_jump_leaves_the_flush_as_a_dead_letter():
    import apache_beam as beam

    fn, reads, timer = FoldOccupancy(CONFIG), collections.Counter(), Timer()
    state = cells(reads)
    process(fn, state, timer, event(1, T0))
    list(fn.on_flush(key="t1", fired=Timestamp(micros=timer.at), flush=timer, **state))
    far = 1 + fold.SEQ_JUMP_WINDOWS * CONFIG.dedup_window + 1
    process(fn, state, timer, event(far, T0 + 5 * S))
    out = list(fn.on_flush(key="t1", fired=Timestamp(micros=timer.at), flush=timer, **state))
    dead = [o.value for o in out if isinstance(o, beam.pvalue.TaggedOutput) and o.tag == "dead_letter"]
    assert [(d["reason"], d["step"], d["attributes"]["event_id"]) for d in dead] == [
        (wire.SEQ_JUMP, "RunningOccupancy", f"d1:{far}")
    ]
    assert state["train"].value.value == 1 and state["train"].value.devices["d1"].seq == 1
