"""FoldOccupancy's state traffic: on Dataflow every read of a state cell is a request to the runner
(and a wait), and every cell written two more when the bundle commits. A train is one cell,
`train_cell` (transforms.train_cell): an element reads it once per train in a bundle, a flush
reads it and writes it, nothing else. State written by the jobs before it (the `queue` cell, the
`clock` cell, or TrainState.queue_clock with `timer_at`) is read through their own clock once, and
their cells cleared."""

import collections

from apache_beam.utils.timestamp import Timestamp

from occupancy import fold, wire
from transforms.occupancy import FoldOccupancy

S = 1_000_000
T0 = 1_800_000_000 * S
CONFIG = fold.FoldConfig(flush_interval_us=S, reorder_delay_us=S)


class Cell:
    """A state cell (bag or value) that counts its reads by name, and says whether it was written."""

    def __init__(self, name, reads, value=None):
        self.name, self.reads, self.items, self.value = name, reads, [], value
        self.written = self.cleared = False

    def read(self):
        self.reads[self.name] += 1
        return list(self.items) if self.name in BAGS else self.value

    def add(self, item):
        self.items.append(item)
        self.written = True

    def clear(self):
        self.items, self.value, self.cleared = [], None, True

    def write(self, value):
        self.value, self.written = value, True


class Timer:
    def __init__(self):
        self.at = None

    def set(self, timestamp):
        self.at = timestamp.micros


BAGS = ("pending", "waiting", "later")
LEGACY = ("train", "queue", "clock", "timer_at", "horizon", "pending", "waiting")


def cells(reads, **values):
    names = ("train_cell", "later") + LEGACY
    return {n: Cell(n, reads, values.get(n)) for n in names}


def event(seq, t_us):
    return "t1", wire.Event(f"d1:{seq}", t_us, device_id="d1", delta=1, seq=seq, train_id="t1")


def process(fn, state, timer, element):
    fn.process(element, flush=timer, **state)


def flush(fn, state, timer):
    return list(fn.on_flush(key="t1", fired=Timestamp(micros=timer.at), flush=timer, visits=None, **state))


def train_of(state):
    return state["train_cell"].value.train


def test_an_element_reads_one_cell_once_per_train_and_bundle():
    fn, reads, timer = FoldOccupancy(CONFIG), collections.Counter(), Timer()
    state = cells(reads)
    fn.start_bundle()
    process(fn, state, timer, event(1, T0))  # a new train: the old cells are read too, once
    assert reads == {name: 1 for name in ("train_cell",) + LEGACY}, reads
    assert not any(state[name].cleared for name in LEGACY)  # nothing there: nothing to clear
    reads.clear()
    fn.start_bundle()  # a bundle reads again what the last one left
    for seq in range(2, 50):
        process(fn, state, timer, event(seq, T0 + seq * 10_000))
    assert reads == {"train_cell": 1}, reads
    reads.clear()
    for seq in range(50, 60):  # a bundle each
        fn.start_bundle()
        process(fn, state, timer, event(seq, T0 + seq * 10_000))
    assert reads == {"train_cell": 10}, reads
    # Before a train's first flush its horizon is not set: its events wait in `later`.
    assert [e.seq for e in state["later"].items] == list(range(1, 60))


def test_a_flush_reads_and_writes_the_one_cell_and_nothing_else():
    fn, reads, timer = FoldOccupancy(CONFIG), collections.Counter(), Timer()
    state = cells(reads)
    process(fn, state, timer, event(1, T0))
    flush(fn, state, timer)
    for seq in range(2, 20):
        process(fn, state, timer, event(seq, T0 + 2 * S + seq * 50_000))
    fn.start_bundle()
    reads.clear()
    for cell in state.values():
        cell.written = cell.cleared = False
    fired = timer.at
    out = flush(fn, state, timer)
    assert reads == {"train_cell": 1}, reads
    assert [name for name, cell in state.items() if cell.written or cell.cleared] == ["train_cell"]
    value = state["train_cell"].value
    assert train_of(state).value == 19 and value.last_flush == fired and value.waiting == []
    assert any(w.collection == "realtime" for w in out if hasattr(w, "collection"))

    # An event that arrives already late goes to `pending`: the next flush applies it.
    fn.start_bundle()
    process(fn, state, timer, event(20, T0 + 2 * S))
    assert [e.seq for e in state["train_cell"].value.pending] == [20]
    fn.start_bundle()
    reads.clear()
    flush(fn, state, timer)
    assert reads == {"train_cell": 1} and train_of(state).value == 20
    assert state["train_cell"].value.pending == []


def test_the_cell_drops_released_events_at_every_flush():
    """`waiting` is rewritten with the cell anyway: what a flush released is not carried on."""
    fn, reads, timer = FoldOccupancy(CONFIG), collections.Counter(), Timer()
    state = cells(reads)
    for seq in range(1, 4):
        process(fn, state, timer, event(seq, T0 + seq * 10_000))
    process(fn, state, timer, event(4, T0 + 5 * S))  # due four flushes later
    flush(fn, state, timer)
    assert train_of(state).value == 3
    assert [e.seq for e in state["train_cell"].value.waiting] == [4]


def assert_moved_and_cleared(state):
    assert all(state[name].cleared for name in LEGACY), [n for n in LEGACY if not state[n].cleared]
    assert all(state[name].value is None and state[name].items == [] for name in LEGACY)


def test_state_of_the_job_before_the_train_cell_moves_into_it():
    """The job before kept the queue's clock, horizon and pending count in `queue`, and events
    released at its last flush stayed in `waiting` (dead) until outnumbered."""
    fn, reads, timer = FoldOccupancy(CONFIG), collections.Counter(), Timer()
    last_flush, armed = T0 + 10 * S, T0 + 11 * S
    timer.at = armed  # that job's timer, which the runner keeps
    train = fold.TrainState(value=5, queue_clock=(0, last_flush))
    train.devices["d1"] = fold.DeviceMemory(seq=5, applied=[[1, 5]])
    state = cells(
        reads, train=train, queue=(armed, last_flush, last_flush + 60 * S, 1), clock=(armed, last_flush), horizon=1
    )
    state["pending"].items = [event(6, T0 + 8 * S + S // 2)[1]]  # it arrived after its release
    state["waiting"].items = [event(5, T0 + 7 * S)[1], event(7, T0 + 12 * S)[1]]  # 5 was released
    state["later"].items = [event(9, T0 + 80 * S)[1]]  # beyond the horizon
    process(fn, state, timer, event(8, T0 + 12 * S))
    assert_moved_and_cleared(state)
    value = state["train_cell"].value
    assert (value.armed, value.last_flush, value.horizon) == (armed, last_flush, last_flush + 60 * S)
    assert [e.seq for e in value.pending] == [6] and [e.seq for e in value.waiting] == [7, 8]
    assert timer.at == armed and [e.seq for e in state["later"].items] == [9]  # `later` stays
    flush(fn, state, timer)
    assert train_of(state).value == 6  # 6; 7 and 8 later
    flush(fn, state, timer)
    assert train_of(state).value == 8 and train_of(state).devices["d1"].applied == [[1, 8]]
    while state["later"].items:  # counted at its first read since, then read only while it holds some
        flush(fn, state, timer)
    assert train_of(state).value == 9 and state["train_cell"].value.later == 0
    reads.clear()
    process(fn, state, timer, event(10, T0 + 90 * S))
    flush(fn, state, timer)
    assert train_of(state).value == 10 and "later" not in reads, reads


def test_state_of_a_job_rolled_back_to_before_the_queue_cell_is_read_through_its_newer_clock():
    """The job with `queue` wrote `clock` too; a job rolled back to the one before then moved
    `clock` and `horizon` on and left `queue` behind: the newer clock is the train's."""
    fn, reads, timer = FoldOccupancy(CONFIG), collections.Counter(), Timer()
    stale, last_flush = T0 + 4 * S, T0 + 10 * S
    state = cells(
        reads,
        queue=(0, stale, stale + 60 * S, 0),
        clock=(0, last_flush),
        horizon=last_flush + 60 * S,
    )
    # Released at T0 + 7 s: by the stale clock still waiting, by the newer one already applied.
    state["waiting"].items = [event(5, T0 + 5 * S)[1], event(8, T0 + 20 * S)[1]]
    process(fn, state, timer, event(9, T0 + 20 * S))
    assert_moved_and_cleared(state)
    value = state["train_cell"].value
    assert (value.last_flush, value.horizon) == (last_flush, last_flush + 60 * S)
    assert [e.seq for e in value.waiting] == [8, 9]


def test_state_of_the_job_before_the_queue_cell_is_read_through_its_clock_and_horizon():
    fn, reads, timer = FoldOccupancy(CONFIG), collections.Counter(), Timer()
    last_flush = T0 + 10 * S
    state = cells(reads, clock=(0, last_flush), horizon=last_flush + 60 * S)
    state["pending"].items = [event(3, T0 + 9 * S)[1]]  # left by that job
    process(fn, state, timer, event(8, T0 + 20 * S))
    assert_moved_and_cleared(state)
    assert [e.seq for e in state["train_cell"].value.waiting] == [8]  # within that job's horizon
    reads.clear()
    fn.start_bundle()
    flush(fn, state, timer)
    # `later` is read once, to count what that job left there.
    assert reads == {"train_cell": 1, "later": 1} and train_of(state).value == 2  # both applied


def test_state_of_an_earlier_job_is_read_through_its_own_clock():
    """A job before the `clock` cell kept a flush's clock in TrainState.queue_clock: an element due
    by that clock must go to `pending` (due at the next flush), not `waiting`, where it would look
    already released and be dropped."""
    fn, reads, timer = FoldOccupancy(CONFIG), collections.Counter(), Timer()
    last_flush = T0 + 10 * S
    legacy = fold.TrainState(value=5, queue_clock=(0, last_flush))
    state = cells(reads, train=legacy, timer_at=(T0 + 3 * S, T0 + 2 * S))
    process(fn, state, timer, event(7, T0 + 5 * S))  # released at T0 + 7 s, before the last flush
    assert_moved_and_cleared(state)
    value = state["train_cell"].value
    assert [e.seq for e in value.pending] == [7] and value.waiting == [] and state["later"].items == []
    assert timer.at == last_flush + CONFIG.flush_interval_us
    assert (value.armed, value.last_flush) == (timer.at, last_flush)
    flush(fn, state, timer)
    assert train_of(state).value == 6


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
