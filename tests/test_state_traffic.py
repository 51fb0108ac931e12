"""FoldOccupancy's state traffic: on Dataflow every read of a state cell is a request to the runner
(and a wait), and every cell written two more when the bundle commits. A train is one cell,
`train_cell` (occupancy.train_cell): an event reads it once per train in a bundle, a flush reads
it and writes it, and the `later` bag is touched only for a backlog."""

import collections

from apache_beam.utils.timestamp import Timestamp

from occupancy import fold, train_cell, wire
from transforms.occupancy import FoldOccupancy

S = 1_000_000
T0 = 1_800_000_000 * S
CONFIG = fold.FoldConfig(flush_interval_us=S, reorder_delay_us=S)


class Cell:
    """A state cell (bag or value) that counts its reads by name, and says whether it was written."""

    def __init__(self, name, reads):
        self.name, self.reads, self.items, self.value = name, reads, [], None
        self.written = self.cleared = False

    def read(self):
        self.reads[self.name] += 1
        return list(self.items) if self.name == "later" else self.value

    def add(self, item):
        self.items.append(item)
        self.written = True

    def clear(self):
        self.items, self.value, self.cleared = [], None, True

    def write(self, value):
        self.value, self.written = value, True


class Timer:
    def __init__(self):
        self.at, self.sets = None, 0

    def set(self, timestamp):
        self.at, self.sets = timestamp.micros, self.sets + 1


def cells(reads):
    return {"stored": Cell("train_cell", reads), "later": Cell("later", reads)}


def event(seq, t_us, delta=1):
    return "t1", wire.Event(f"d1:{seq}", t_us, device_id="d1", delta=delta, seq=seq, train_id="t1")


def process(fn, state, timer, element):
    fn.process(element, flush=timer, **state)


def flush(fn, state, timer):
    return list(fn.on_flush(key="t1", fired=Timestamp(micros=timer.at), flush=timer, visits=None, **state))


def train_of(state):
    return state["stored"].value.train


def untouched(state):
    for cell in state.values():
        cell.written = cell.cleared = False


def test_an_event_reads_one_cell_once_per_train_and_bundle():
    fn, reads, timer = FoldOccupancy(CONFIG), collections.Counter(), Timer()
    state = cells(reads)
    fn.start_bundle()
    for seq in range(1, 50):
        process(fn, state, timer, event(seq, T0 + seq * 10_000))
    assert reads == {"train_cell": 1}, reads
    reads.clear()
    for seq in range(50, 60):  # a bundle each
        fn.start_bundle()
        process(fn, state, timer, event(seq, T0 + seq * 10_000))
    assert reads == {"train_cell": 10}, reads
    assert not state["later"].written  # streaming traffic stays in the cell's window
    assert len(state["stored"].value.waiting) == 59


def test_a_flush_reads_and_writes_the_one_cell_and_nothing_else():
    fn, reads, timer = FoldOccupancy(CONFIG), collections.Counter(), Timer()
    state = cells(reads)
    process(fn, state, timer, event(1, T0))
    flush(fn, state, timer)
    for seq in range(2, 20):
        process(fn, state, timer, event(seq, T0 + 2 * S + seq * 50_000))
    fn.start_bundle()
    reads.clear()
    untouched(state)
    fired = timer.at
    out = flush(fn, state, timer)
    assert reads == {"train_cell": 1}, reads
    assert [name for name, cell in state.items() if cell.written or cell.cleared] == ["stored"]
    value = state["stored"].value
    # A quiet train: its first count is flushed at its release, the others a second later.
    assert train_of(state).value == 2 and value.last_flush_us == fired and len(value.waiting) == 17
    assert any(w.collection == "realtime" for w in out if hasattr(w, "collection"))

    # An event that arrives already late waits in the cell: the next flush applies it.
    fn.start_bundle()
    process(fn, state, timer, event(20, T0 + 2 * S))
    assert [e.seq for e in state["stored"].value.waiting][-1] == 20
    fn.start_bundle()
    reads.clear()
    flush(fn, state, timer)
    assert reads == {"train_cell": 1} and train_of(state).value == 20
    assert state["stored"].value.waiting == []


def test_the_timer_is_set_only_when_the_flush_moves():
    """Setting a timer is a request too: events that leave the flush where it is set none."""
    fn, reads, timer = FoldOccupancy(CONFIG), collections.Counter(), Timer()
    state = cells(reads)
    process(fn, state, timer, event(1, T0))
    flush(fn, state, timer)
    timer.sets = 0
    for seq in range(2, 12):  # a busy train: its flush is a second after the last
        process(fn, state, timer, event(seq, T0 + 5 * S + seq * 10_000))
    assert timer.sets == 1 and timer.at == T0 + 6 * S + 20_000


def test_a_backlog_beyond_the_window_goes_to_later_and_comes_back_once():
    fn, reads, timer = FoldOccupancy(CONFIG), collections.Counter(), Timer()
    state = cells(reads)
    span = train_cell.FlushPolicy.of(CONFIG).span_us
    process(fn, state, timer, event(1, T0))
    process(fn, state, timer, event(2, T0 + span + 5 * S))  # beyond the window
    assert [e.seq for _, e in [("t1", x) for x in state["later"].items]] == [2]
    flush(fn, state, timer)
    assert train_of(state).value == 1 and reads["later"] == 0  # not read before it is near
    while timer.at is not None and train_of(state).value < 2:
        at = timer.at
        flush(fn, state, timer)
        assert timer.at != at or train_of(state).value == 2
    assert train_of(state).value == 2 and reads["later"] == 1
    assert state["later"].items == [] and state["stored"].value.later == 0


def test_a_seq_jump_leaves_the_flush_as_a_dead_letter():
    import apache_beam as beam

    fn, reads, timer = FoldOccupancy(CONFIG), collections.Counter(), Timer()
    state = cells(reads)
    process(fn, state, timer, event(1, T0))
    flush(fn, state, timer)
    far = 1 + fold.SEQ_JUMP_WINDOWS * CONFIG.dedup_window + 1
    process(fn, state, timer, event(far, T0 + 5 * S))
    out = flush(fn, state, timer)
    dead = [o.value for o in out if isinstance(o, beam.pvalue.TaggedOutput) and o.tag == "dead_letter"]
    assert [(d["reason"], d["step"], d["attributes"]["event_id"]) for d in dead] == [
        (wire.SEQ_JUMP, "RunningOccupancy", f"d1:{far}")
    ]
    assert train_of(state).value == 1 and train_of(state).devices["d1"].seq == 1


def test_a_flush_that_raises_leaves_the_train_as_it_was(monkeypatch):
    """The cell hands out the state it holds and the fold changes it in place: a flush that raised
    after the fold once kept the change (seqs marked applied, counts in the value) while its
    events became dead letters."""
    import apache_beam as beam

    from transforms import occupancy

    fn, reads, timer = FoldOccupancy(CONFIG), collections.Counter(), Timer()
    state = cells(reads)
    process(fn, state, timer, event(1, T0))
    flush(fn, state, timer)
    process(fn, state, timer, event(2, T0 + 5 * S))
    fn.start_bundle()  # as read from the runner: the train's bytes, decoded by this flush

    def raising(*args, **kwargs):
        raise OverflowError("a document no client takes")

    monkeypatch.setattr(occupancy.documents, "realtime_write", raising)
    out = flush(fn, state, timer)
    dead = [o.value for o in out if isinstance(o, beam.pvalue.TaggedOutput) and o.tag == "dead_letter"]
    assert [(d["reason"], d["attributes"]["event_id"]) for d in dead] == [(wire.INTERNAL_ERROR, "d1:2")]
    assert train_of(state).value == 1 and train_of(state).devices["d1"].seq == 1
