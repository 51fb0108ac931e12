"""FoldOccupancy's state traffic: on Dataflow every read of an uncached state cell is a request to
the runner, so a new element reads at most two cells and never the train's whole state, and a
flush reads each cell at most once. State written by a job before the `clock` cell still works."""

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
    names = ("pending", "waiting", "later", "horizon", "train", "clock", "timer_at")
    return {n: Cell(n, reads, values.get(n)) for n in names}


def event(seq, t_us):
    return "t1", wire.Event(f"d1:{seq}", t_us, device_id="d1", delta=1, seq=seq, train_id="t1")


def process(fn, state, timer, element):
    fn.process(element, flush=timer, **state)


def test_a_new_element_reads_at_most_two_cells_and_never_the_train_state():
    fn, reads, timer = FoldOccupancy(CONFIG), collections.Counter(), Timer()
    state = cells(reads)
    process(fn, state, timer, event(1, T0))  # a new train: no clock yet
    reads.clear()
    for seq in range(2, 50):
        process(fn, state, timer, event(seq, T0 + seq * 10_000))
    assert reads["train"] == 0 and reads["timer_at"] == 0
    assert reads["clock"] == 48 and reads["horizon"] <= 48
    assert sum(reads.values()) <= 2 * 48


def test_a_flush_reads_each_cell_at_most_once_and_releases_in_order():
    fn, reads, timer = FoldOccupancy(CONFIG), collections.Counter(), Timer()
    state = cells(reads)
    for seq in range(1, 20):
        process(fn, state, timer, event(seq, T0 + seq * 50_000))
    reads.clear()
    out = list(fn.on_flush(key="t1", fired=Timestamp(micros=timer.at), flush=timer, **state))
    assert max(reads.values()) == 1, reads
    assert state["train"].value.value > 0 and state["clock"].value[1] > 0
    assert any(w.collection == "realtime" for w in out if hasattr(w, "collection"))


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
