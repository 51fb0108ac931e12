"""The release queue (transforms/release_queue.py): each event released once, in time, and a
backlog costs state writes in proportion to its length, not its square.

The queue logic is driven here directly over its in-memory state
(`release_queue.memory_state`, which counts what was written); the same queue on a runner is exercised by
test_occupancy_stream.py (TestStream) and the end-to-end tests.
"""

import random

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from occupancy import documents
from tests.test_occupancy_stream import CONFIG, T0, S, ev, expect, in_order_history, last_writes
from transforms.occupancy import STATS, FoldOccupancy
from transforms.release_queue import MIN_HORIZON_US, ReleaseQueue, keep_clock, memory_state

RELEASE = lambda t_us: t_us - t_us % S + S + 2 * S  # bucket end + reorder delay, 1 s buckets
QUEUE = ReleaseQueue(RELEASE, S, 2 * S)


def fire(state, released):
    """Fires the timer; returns (fired time, the state as the caller keeps it after)."""
    fired = state.flush.at
    state.flush.at = None
    ready, clock = QUEUE.take_due(fired, state)
    released.extend((fired, t) for t in ready)
    return fired, (keep_clock(state, clock) if ready else state)


def test_a_two_hour_backlog_is_released_once_in_time_order_with_linear_state_writes():
    events = sorted(T0 + random.Random(3).randrange(0, 7200 * S) for _ in range(4000))
    state, released = memory_state(), []
    for t in random.Random(4).sample(events, len(events)):  # all before the first flush
        QUEUE.add(t, state)
    largest_waiting = 0
    while state.flush.at is not None:
        _, state = fire(state, released)
        largest_waiting = max(largest_waiting, len(state.waiting.items))
    assert sorted(t for _, t in released) == events  # each once
    assert all(RELEASE(t) <= fired for fired, t in released)  # never early
    assert [fired for fired, _ in released] == sorted(fired for fired, _ in released)
    writes = state.pending.writes + state.waiting.writes + state.later.writes
    assert writes <= 4 * len(events), writes
    # `waiting` holds about a horizon's worth of events (4,000 over 2 h: ~33 a minute).
    assert largest_waiting < 4 * len(events) * MIN_HORIZON_US / (7200 * S), largest_waiting
    assert not state.later.items and not state.pending.items


def test_a_late_event_is_released_at_the_next_flush_never_lost_among_the_dead():
    state, released = memory_state(), []
    for t in (T0, T0 + 100_000, T0 + 3 * S):
        QUEUE.add(t, state)
    first, state = fire(state, released)
    assert [t for _, t in released] == [T0, T0 + 100_000]
    QUEUE.add(T0 + 200_000, state)  # its release time has passed: late
    assert state.pending.items == [T0 + 200_000]
    second, state = fire(state, released)
    assert second == first + S  # the timer was brought forward for it, not sooner than a flush apart
    assert [t for f, t in released if f == second] == [T0 + 200_000]
    third, state = fire(state, released)
    assert [t for f, t in released if f == third] == [T0 + 3 * S] and third == RELEASE(T0 + 3 * S)
    assert state.flush.at is None and state.clock == (0, third)
    QUEUE.add(T0 + 10 * S, state)  # the timer fired: a new event arms it again
    assert state.flush.at == RELEASE(T0 + 10 * S)


def test_an_idle_train_keeps_no_dead_events_beyond_a_few():
    state, released = memory_state(), []
    for i in range(500):  # one event per flush, as sparse traffic gives
        QUEUE.add(T0 + i * 10 * S, state)
        _, state = fire(state, released)
        assert len(state.waiting.items) <= ReleaseQueue.MIN_DEAD + 1
    assert len(released) == 500


def test_a_backlog_replayed_ahead_of_the_watermark_gives_the_in_order_history():
    """On the local runner: five minutes of one train's events all arrive first, then the
    watermark advances a second at a time, so every flush happens mid-stream."""
    rng = random.Random(11)
    events = [
        ev(f"door-{d}", seq, rng.choice((-2, -1, 1, 2, 3)), seq * 1.5 + d * 0.3)
        for d in range(2)
        for seq in range(1, 200)
    ]
    stream = TestStream().advance_watermark_to(Timestamp(micros=T0))
    stream.add_elements(
        [TimestampedValue(("t1", e), Timestamp(micros=e.event_time_us)) for e in rng.sample(events, len(events))]
    )
    end = max(CONFIG.release_time(e.event_time_us) for e in events)
    for t in range(T0 + S, end + 2 * S, S):
        stream.advance_watermark_to(Timestamp(micros=t))
    stream.advance_watermark_to_infinity()
    expected_history, expected_value = in_order_history(events)
    span = max(e.event_time_us for e in events) - T0
    assert span > 4 * MIN_HORIZON_US and len(expected_history) > 150  # the horizon moves on 4 times

    def check(outputs):
        expect(all(t < end + 2 * S for _, t in outputs), "a flush waited for the end of input")
        expect(last_writes(outputs, documents.HISTORY) == expected_history, "history differs")
        realtime = last_writes(outputs, documents.REALTIME)["t1"]
        expect(realtime["current_value"] == expected_value, f"realtime {realtime}")

    options = PipelineOptions(runner="BundleBasedDirectRunner")
    options.view_as(StandardOptions).streaming = True
    with TestPipeline(options=options) as p:
        writes = (p | stream | beam.ParDo(FoldOccupancy(CONFIG)).with_outputs(STATS, main="writes")).writes
        assert_that(writes | beam.Map(lambda w, t=beam.DoFn.TimestampParam: (w, t.micros)), check)
