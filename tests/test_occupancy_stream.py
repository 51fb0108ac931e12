"""RunningOccupancy on the BundleBasedDirectRunner with TestStream: ordering, timers, lateness.

Arrivals are driven the way the local Pub/Sub read drives them: the watermark
is already at the arrival time when an element arrives (every element is
behind it), so each flush happens when its own timer fires, mid-stream, and a
message that arrives after its bucket was flushed is really late.
"""

import random

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import BeamAssertException, assert_that
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp
from google.api_core import exceptions as gexc

from occupancy import documents, fold, train_cell, train_state, wire
from transforms.coders import EventCoder
from transforms.occupancy import LATE_COUNT_MS, STATS, CountFlushes, FlushStats, FoldOccupancy

T0 = wire.parse_time("2026-11-24T07:00:00Z")
S = 1_000_000
CONFIG = fold.FoldConfig(flush_interval_us=S, reorder_delay_us=2 * S)


def ev(device, seq, delta, t_s, train="t1"):
    return wire.Event(
        event_id=wire.event_id_for(device, seq),
        event_time_us=T0 + int(t_s * S),
        device_id=device,
        delta=delta,
        seq=seq,
        train_id=train,
    )


def run_stream(arrivals, check, config=CONFIG, expected_stats=None, check_ages=None):
    """arrivals: (arrival_s, event) pairs; the watermark moves to each arrival time first.

    `expected_stats`: {stat name: total over all flushes} for the per-flush stats output;
    `check_ages`: a check of every flush's age of its oldest event (ms; -1: none).
    """
    stream = TestStream()
    for arrival_s, event in sorted(arrivals, key=lambda a: a[0]):
        stream.advance_watermark_to(Timestamp(micros=T0 + round(arrival_s * 1000) * 1000))
        stream.add_elements([TimestampedValue((event.train_id, event), Timestamp(micros=event.event_time_us))])
    # Every flush must happen at a finite watermark, mid-stream: outputs emitted once the
    # watermark is at infinity would not even reach assert_that.
    last_release = max(e.event_time_us + config.reorder_delay_us for _, e in arrivals)
    stream.advance_watermark_to(
        Timestamp(micros=max(last_release, T0 + round(max(a for a, _ in arrivals) * 1000) * 1000) + S)
    )
    stream.advance_watermark_to_infinity()
    options = PipelineOptions(runner="BundleBasedDirectRunner")
    options.view_as(StandardOptions).streaming = True
    with TestPipeline(options=options) as p:
        outputs = p | stream | beam.ParDo(FoldOccupancy(config)).with_outputs(STATS, main="writes")
        writes = outputs.writes | beam.Map(lambda w, t=beam.DoFn.TimestampParam: (w, t.micros))
        assert_that(writes, check)
        if expected_stats is not None:

            def check_stats(rows):
                totals = {name: sum(getattr(row, name) for row in rows) for name in FlushStats._fields[:-1]}
                actual = {name: totals[name] for name in expected_stats}
                expect(actual == expected_stats, f"stats {actual} != {expected_stats}")

            assert_that(outputs[STATS], check_stats, label="Stats")
        if check_ages is not None:
            assert_that(outputs[STATS] | beam.Map(lambda row: row.oldest_count_ms), check_ages, label="Ages")


def expect(condition, message):
    if not condition:
        raise BeamAssertException(message)


def last_writes(outputs, collection):
    """doc_id -> data of the last write, in flush (timestamp) order."""
    latest = {}
    for write, _t in sorted(outputs, key=lambda o: o[1]):
        if write.collection == collection:
            latest[write.doc_id] = write.data
    return latest


def in_order_history(events, train="t1"):
    state = train_state.TrainState()
    result = fold.apply_events(state, events, CONFIG, 0)
    return {
        documents.history_doc_id(train, b.start_us): documents.history_write(train, b).data for b in result.buckets
    }, state.value


def test_shuffled_arrival_within_the_delay_gives_exactly_the_in_order_history():
    rng = random.Random(7)
    events = [ev(f"door{i % 4}", i, rng.choice([-2, -1, 1, 2, 3]), i * 0.25) for i in range(1, 60)]
    expected_history, expected_value = in_order_history(events)
    # Each event arrives up to 1.9 s after its event time: out of order, but within the delay.
    arrivals = [(e.event_time_us / S - T0 / S + rng.uniform(0, 1.9), e) for e in events]

    def check(outputs):
        history = last_writes(outputs, documents.HISTORY)
        diff = {
            k: (history.get(k), expected_history.get(k))
            for k in set(history) | set(expected_history)
            if history.get(k) != expected_history.get(k)
        }
        expect(not diff, f"history differs (actual, expected): {diff}")
        realtime = last_writes(outputs, documents.REALTIME)["t1"]
        expect(realtime["current_value"] == expected_value, f"realtime {realtime}")
        expect(all(d["late"] == 0 for d in history.values()), "no event may be late")
        # Counts every 0.25 s keep the train busy: its flushes are one flush interval (1 s) apart,
        # and each bucket is written whole by the time its last event is released (its end plus
        # the delay) plus one interval: none waited for the end of the stream.
        flushes = sorted({t for w, t in outputs if w.collection == documents.REALTIME})
        expect(all(b - a == S for a, b in zip(flushes, flushes[1:])), f"flushes at {flushes}")
        for write, t in outputs:
            if write.collection == documents.HISTORY:
                start = wire.to_micros(write.data["bucket_start"])
                expect(t <= start + 4 * S, f"bucket {start} flushed at {t}")

    run_stream(arrivals, check)


def test_a_duplicate_is_counted_once_even_after_its_flush():
    first = ev("door1", 1, 4, 0.2)
    arrivals = [
        (0.3, first),
        (0.5, first),
        (0.6, ev("door1", 2, 1, 0.4)),
        (10.0, first),
        (10.1, ev("door1", 3, 2, 9.9)),
    ]

    def check(outputs):
        realtime = last_writes(outputs, documents.REALTIME)
        expect(realtime["t1"]["current_value"] == 7, f"value {realtime}")
        events = sum(d["events"] for d in last_writes(outputs, documents.HISTORY).values())
        expect(events == 3, f"{events} events counted")

    run_stream(arrivals, check, expected_stats={"duplicates": 2, "applied": 3})


def test_an_event_below_zero_records_the_correction():
    arrivals = [(0.2, ev("door1", 1, 2, 0.1)), (0.3, ev("door2", 1, -5, 0.2))]

    def check(outputs):
        [history] = last_writes(outputs, documents.HISTORY).values()
        expect((history["value"], history["delta"], history["correction"]) == (0, -3, 3), f"{history}")
        expect(last_writes(outputs, documents.REALTIME)["t1"]["current_value"] == 0, "value")

    run_stream(arrivals, check, expected_stats={"corrections": 1, "applied": 2})


def test_an_event_beyond_the_delay_is_late_and_applied_in_the_latest_bucket():
    arrivals = [
        (0.2, ev("door1", 1, 5, 0.1)),
        (4.1, ev("door1", 2, 1, 4.0)),
        # Its bucket [0.0, 1.0) was flushed at 3.0: this one is late.
        (8.0, ev("door2", 1, 2, 0.5)),
    ]

    def check(outputs):
        history = last_writes(outputs, documents.HISTORY)
        latest = history[documents.history_doc_id("t1", T0 + 4 * S)]
        expect((latest["late"], latest["events"], latest["value"]) == (1, 2, 8), f"{latest}")
        first = history[documents.history_doc_id("t1", T0)]
        expect((first["events"], first["value"]) == (1, 5), f"first bucket untouched: {first}")
        expect(last_writes(outputs, documents.REALTIME)["t1"]["current_value"] == 8, "value")

    run_stream(arrivals, check, expected_stats={"late": 1, "corrections": 0})


def test_reset_event_sets_the_train_to_zero():
    reset = wire.Event(event_id="reset:t1:x", event_time_us=T0 + 2 * S, kind=wire.RESET, train_id="t1")
    arrivals = [(0.2, ev("door1", 1, 6, 0.1)), (2.1, reset), (2.4, ev("door1", 2, 1, 2.3))]

    def check(outputs):
        bucket = last_writes(outputs, documents.HISTORY)[documents.history_doc_id("t1", T0 + 2 * S)]
        expect((bucket["correction"], bucket["value"]) == (-6, 1), f"{bucket}")

    run_stream(arrivals, check)


def test_each_flush_says_how_old_its_oldest_event_was_when_applied():
    started_ms = (wire.now_us() - T0) // 1000
    arrivals = [(0.1, ev("a1", 1, 1, 0.05)), (0.2, ev("a1", 2, 1, 0.15)), (1.5, ev("a1", 3, 1, 1.2))]

    def check_ages(ages):
        # The events' times are T0 + under 1.2 s, and T0 is in the past: each flush's oldest event
        # is at least as old as the test's start makes it, and no older than now does.
        now_ms = (wire.now_us() - T0) // 1000
        # Three flushes: the first count at its release, then one a flush interval apart each.
        expect(len(ages) == 3 and all(started_ms - 1200 <= a <= now_ms for a in ages), f"{ages} {started_ms}")

    run_stream(arrivals, lambda outputs: None, check_ages=check_ages)


def test_trains_are_independent_and_realtime_is_written_once_per_flush():
    arrivals = []
    for i in range(20):  # 20 events per train within one bucket
        arrivals.append((0.05 * i + 0.01, ev("a1", i + 1, 1, 0.04 * i, train="ta")))
        arrivals.append((0.05 * i + 0.02, ev("b1", i + 1, 2, 0.04 * i, train="tb")))

    def check(outputs):
        # Per train, the first count at its release, the other 19 one flush interval later.
        realtime = [w for w, _ in outputs if w.collection == documents.REALTIME]
        expect(sorted(w.doc_id for w in realtime) == ["ta", "ta", "tb", "tb"], f"{[w.doc_id for w in realtime]}")
        values = last_writes(outputs, documents.REALTIME)
        values = {train: data["current_value"] for train, data in values.items()}
        expect(values == {"ta": 20, "tb": 40}, f"{values}")

    run_stream(arrivals, check)


def test_event_coder_round_trips_state_events():
    coder = EventCoder()
    for event in (
        ev("d1", 5, -3, 1.5),
        wire.Event(
            event_id="reset:t:x", event_time_us=T0, kind=wire.RESET, train_id="t", capacity=120, registered_us=9
        ),
        ev("d1", 6, 2, 1.5)._replace(raw=b"\xff{", attributes=(("a", "1"), ("b", "2")), message_id="m1"),
    ):
        assert coder.decode(coder.encode(event)) == event


def test_flush_stats_become_beam_counters():
    from apache_beam.metrics.metric import MetricsFilter

    p = TestPipeline(runner="BundleBasedDirectRunner")
    flushes = [
        FlushStats(3, 1, 0, 1, 2, 1, 0, 2500),
        FlushStats(2, 0, 1, 0, 0, 0, 0, 900),
        FlushStats(seeds_put_off=1),
        FlushStats(1, oldest_count_ms=LATE_COUNT_MS),  # a count riders saw late
        FlushStats(heartbeats=1),  # no count of people: no age
    ]
    p | beam.Create(flushes) | beam.ParDo(CountFlushes())
    result = p.run()
    result.wait_until_finish()
    found = result.metrics().query(MetricsFilter().with_namespace("occupancy"))
    counters = {c.key.metric.name: c.committed for c in found["counters"]}
    [age] = [d.committed for d in found["distributions"] if d.key.metric.name == "count_age_at_flush_ms"]
    # The flush put off and the heartbeats' applied no count: no age.
    assert (age.count, age.min, age.max, age.sum) == (3, 900, LATE_COUNT_MS, 3400 + LATE_COUNT_MS)
    assert counters == {
        "flushes": 4,
        "applied": 6,
        "duplicates": 1,
        "late": 1,
        "corrections": 1,
        "heartbeats": 3,
        "seeded": 1,
        "seeds_put_off": 1,
        "flushes_with_counts": 3,
        "flushes_with_late_counts": 1,
    }


class FlakySeed:
    """A RealtimeSeed whose first `failures` reads fail as Firestore does when it is cut off or
    refuses the job's account; then the train's stored state (value 10)."""

    calls = []

    def __init__(self, failures):
        self.failures = failures

    def setup(self):
        pass

    def load(self, train_id, config):
        FlakySeed.calls.append(train_id)
        if len(FlakySeed.calls) <= self.failures:
            raise (gexc.ServiceUnavailable if len(FlakySeed.calls) % 2 else gexc.PermissionDenied)("no")
        return train_state.TrainState(value=10)


def test_a_train_that_cannot_be_seeded_keeps_its_events_until_it_can():
    """Seeding fails twice (each read bounded by its own deadline): the flush is put off, not
    raised (the runner would retry the whole work item) and not applied from zero."""
    FlakySeed.calls.clear()
    arrivals = [
        (0.2, ev("d1", 1, 3, 0.1)),
        (0.4, ev("d1", 2, 2, 0.3)),
        (3.5, ev("hb", 1, 0, 3.4)),  # keeps the watermark moving, as heartbeats do
        (14.0, ev("hb", 2, 0, 13.9)),
        (25.0, ev("hb", 3, 0, 24.9)),
        (36.0, ev("hb", 4, 0, 35.9)),
    ]

    def check(outputs):
        realtime = [(t, w.data["current_value"]) for w, t in outputs if w.collection == documents.REALTIME]
        expect(realtime and all(value == 15 for _, value in realtime), f"{realtime}")
        # Put off at 2.1 s (the first count's release) to 12.1 s, failed again there, and
        # written 10 s of event time later.
        expect(min(t for t, _ in realtime) == T0 + 22_100_000, f"{realtime}")

    stream = TestStream()
    for arrival_s, event in arrivals:
        stream.advance_watermark_to(Timestamp(micros=T0 + int(arrival_s * S)))
        stream.add_elements([TimestampedValue((event.train_id, event), Timestamp(micros=event.event_time_us))])
    stream.advance_watermark_to(Timestamp(micros=T0 + 40 * S))
    stream.advance_watermark_to_infinity()
    options = PipelineOptions(runner="BundleBasedDirectRunner")
    options.view_as(StandardOptions).streaming = True
    with TestPipeline(options=options) as p:
        outputs = (
            p | stream | beam.ParDo(FoldOccupancy(CONFIG, FlakySeed(failures=2))).with_outputs(STATS, main="writes")
        )
        writes = outputs.writes | beam.Map(lambda w, t=beam.DoFn.TimestampParam: (w, t.micros))
        assert_that(writes, check)

        def check_stats(rows):
            totals = {name: sum(getattr(row, name) for row in rows) for name in FlushStats._fields[:-1]}
            expect((totals["seeds_put_off"], totals["seeded"]) == (2, 1), f"{totals}")
            expect(totals["applied"] == 2, f"{totals}")

        assert_that(outputs[STATS], check_stats, label="Stats")
    assert len(FlakySeed.calls) == 3


def test_a_backlog_replayed_ahead_of_the_watermark_gives_the_in_order_history():
    """Five minutes of one train's events all arrive first, then the watermark advances a second
    at a time, so every flush happens mid-stream and the cell's window moves on 4 times."""
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
    end = max(e.event_time_us for e in events) + CONFIG.reorder_delay_us
    for t in range(T0 + S, end + 3 * S, S):
        stream.advance_watermark_to(Timestamp(micros=t))
    stream.advance_watermark_to_infinity()
    expected_history, expected_value = in_order_history(events)
    assert max(e.event_time_us for e in events) - T0 > 4 * train_cell.MIN_SPAN_US and len(expected_history) > 150

    def check(outputs):
        expect(all(t < end + 3 * S for _, t in outputs), "a flush waited for the end of input")
        expect(last_writes(outputs, documents.HISTORY) == expected_history, "history differs")
        realtime = last_writes(outputs, documents.REALTIME)["t1"]
        expect(realtime["current_value"] == expected_value, f"realtime {realtime}")

    options = PipelineOptions(runner="BundleBasedDirectRunner")
    options.view_as(StandardOptions).streaming = True
    with TestPipeline(options=options) as p:
        writes = (p | stream | beam.ParDo(FoldOccupancy(CONFIG)).with_outputs(STATS, main="writes")).writes
        assert_that(writes | beam.Map(lambda w, t=beam.DoFn.TimestampParam: (w, t.micros)), check)
