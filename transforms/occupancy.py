"""RunningOccupancy: (train_id, Event) -> DocumentWrite for realtime/, history/ and trips/.

A stateful DoFn per train buffers events and applies them, in event-time
order, when an event-time timer releases them (docs/design.md, "Running
occupancy"):

* An event may be applied at release_time = end of its history bucket
  (`flush_interval_s`, epoch-aligned) + `reorder_delay_s`. Events that arrive
  out of order before then are applied in order: the in-order result.
* The queue of waiting events and the timer discipline are in
  `transforms.release_queue`: one timer per train, never sooner than one flush
  interval after the previous flush, so that realtime is written at most once
  per train per interval even when late events trickle in.
* A flush applies the released events with the pure fold in `occupancy.fold`
  and emits one history write per touched bucket and, when needed, one
  realtime write. The outputs are complete documents, so a retried bundle
  rewrites the same documents.

When a train's state is empty (new job, restart) it is seeded from its
realtime document and latest history document, so counts continue and the
per-device seq memory de-duplicates across the restart.
"""

import logging

import apache_beam as beam
from apache_beam.coders import coders
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec, TimerSpec, on_timer
from google.api_core import exceptions as gexc

from occupancy import documents, fold, wire
from occupancy.store import RetryPolicy, count_ops, make_client
from transforms.coders import EventCoder, TrainStateCoder, VisitStateCoder
from transforms.queue_state import QUEUE_CODER, BundleMemo, QueueCell
from transforms.release_queue import QueueState, ReleaseQueue, arm_flush

_LOGGER = logging.getLogger(__name__)
STATS = "stats"
DEAD_LETTER = "dead_letter"
STOP_VISITS, PASSENGER_EVENTS = "stop_visits", "passenger_events"
STAT_NAMES = ("applied", "duplicates", "late", "corrections", "heartbeats", "seeded", "seeds_put_off")
# A train whose state could not be seeded tries its flush again this much event time later.
SEED_RETRY_US = 10_000_000


class RealtimeSeed:
    """Reads a train's last written state back from Firestore (realtime + latest history)."""

    def __init__(
        self,
        project: str,
        database: str,
        realtime_collection: str,
        history_collection: str,
        retry_deadline_s: float = 60.0,
    ):
        self._project = project
        self._database = database
        self._realtime = realtime_collection
        self._history = history_collection
        self._retry_deadline_s = retry_deadline_s

    def setup(self):
        self._client = make_client(self._project, self._database)

    def load(self, train_id: str, config: fold.FoldConfig) -> fold.TrainState:
        policy = RetryPolicy(deadline_s=self._retry_deadline_s)
        snap = policy.call(lambda: self._client.collection(self._realtime).document(train_id).get())
        realtime = snap.to_dict() if snap.exists else None
        history = None
        start = documents.bucket_start_of(realtime or {}, config.flush_interval_us)
        if start is not None:
            doc_id = documents.history_doc_id(train_id, start)
            snap = policy.call(lambda: self._client.collection(self._history).document(doc_id).get())
            history = snap.to_dict() if snap.exists else None
        count_ops(reads=1 if start is None else 2)
        return documents.state_from_documents(realtime, history, config.dedup_window)


class FoldOccupancy(beam.DoFn):
    """(train_id, Event) -> DocumentWrite, emitted when the train's flush timer fires."""

    # The release queue's bags: transforms.release_queue.
    PENDING = BagStateSpec("pending", EventCoder())
    WAITING = BagStateSpec("waiting", EventCoder())
    LATER = BagStateSpec("later", EventCoder())
    # Its horizon (microseconds of event time) as the job before the `queue` cell kept it: read
    # for a train without `queue` only.
    HORIZON = ReadModifyWriteStateSpec("horizon", coders.VarIntCoder())
    # Versioned bytes (occupancy.state_codec), not a pickled class: `--update` and renames read them.
    TRAIN = ReadModifyWriteStateSpec("train", TrainStateCoder())
    # The release queue's clock, horizon and count of `pending` events in one cell, read once per
    # train and bundle (transforms.queue_state).
    QUEUE = ReadModifyWriteStateSpec("queue", QUEUE_CODER)
    # The clock as the job before the `queue` cell kept it: (armed release time or 0, time of the
    # last flush), microseconds of event time. Read for a train without `queue`; still written.
    CLOCK = ReadModifyWriteStateSpec("clock", coders.TupleCoder([coders.VarIntCoder(), coders.VarIntCoder()]))
    # The clock as jobs before the `clock` cell kept it (with TrainState.queue_clock after a flush
    # that released events): read only for a train whose state has neither cell.
    TIMER_AT = ReadModifyWriteStateSpec("timer_at", coders.TupleCoder([coders.VarIntCoder(), coders.VarIntCoder()]))
    FLUSH = TimerSpec("flush", TimeDomain.WATERMARK)
    # The train's stop visits (transforms.stop_visits), with --tides_output only: versioned bytes
    # (occupancy.state_codec.encode_visits), bounded by the open burst of counts.
    VISITS = ReadModifyWriteStateSpec("visits", VisitStateCoder())

    def __init__(self, config: fold.FoldConfig, seed: RealtimeSeed = None, visits=None):
        self._config = config
        self._seed = seed
        self._visits = visits  # transforms.stop_visits.StopVisitTracker: the TIDES rows, or None
        self._queue = ReleaseQueue(
            lambda event: config.release_time(event.event_time_us), config.flush_interval_us, config.reorder_delay_us
        )
        self._memo = BundleMemo()

    def setup(self):
        if self._seed is not None:
            self._seed.setup()
        if self._visits is not None:
            self._visits.setup()

    def start_bundle(self):
        self._memo.clear()

    def _queue_state(self, key, pending, waiting, later, horizon, queue, clock, flush, legacy_clock) -> QueueState:
        """The queue's handles, its small state read once (transforms.queue_state): from `queue`,
        else as an earlier job left it, from `clock` (or what `legacy_clock()` returns) and
        `horizon`, with `pending` read at the next flush whatever it holds."""

        def legacy():
            stored = clock.read()
            armed, last_flush = stored if stored is not None else legacy_clock()
            return armed, last_flush, horizon.read() or 0, 1

        cell = QueueCell(key, queue, pending, self._memo, legacy, clock)
        return QueueState(cell.pending, waiting, later, cell.horizon, cell.clock, flush)

    def process(
        self,
        element,
        pending=beam.DoFn.StateParam(PENDING),
        waiting=beam.DoFn.StateParam(WAITING),
        later=beam.DoFn.StateParam(LATER),
        horizon=beam.DoFn.StateParam(HORIZON),
        train=beam.DoFn.StateParam(TRAIN),
        queue=beam.DoFn.StateParam(QUEUE),
        clock=beam.DoFn.StateParam(CLOCK),
        timer_at=beam.DoFn.StateParam(TIMER_AT),
        flush=beam.DoFn.TimerParam(FLUSH),
    ):
        # No read of the train's state here: on Dataflow each read is a request to the runner.
        def legacy_clock():
            return _legacy_clock(train.read(), timer_at.read())

        key, event = element
        self._queue.add(
            event, self._queue_state(key, pending, waiting, later, horizon, queue, clock, flush, legacy_clock)
        )

    @on_timer(FLUSH)
    def on_flush(
        self,
        key=beam.DoFn.KeyParam,
        fired=beam.DoFn.TimestampParam,
        pending=beam.DoFn.StateParam(PENDING),
        waiting=beam.DoFn.StateParam(WAITING),
        later=beam.DoFn.StateParam(LATER),
        horizon=beam.DoFn.StateParam(HORIZON),
        train=beam.DoFn.StateParam(TRAIN),
        queue=beam.DoFn.StateParam(QUEUE),
        clock=beam.DoFn.StateParam(CLOCK),
        timer_at=beam.DoFn.StateParam(TIMER_AT),
        visits=beam.DoFn.StateParam(VISITS),
        flush=beam.DoFn.TimerParam(FLUSH),
    ):
        fired_us = fired.micros
        state = train.read()
        queue = self._queue_state(
            key, pending, waiting, later, horizon, queue, clock, flush, lambda: _legacy_clock(state, timer_at.read())
        )
        ready, queue_clock = self._queue.take_due(fired_us, queue)
        if not ready:
            if self._visits is not None:  # a flush armed for the stop visits alone
                yield from self._flush_visits(key, [], fired_us, visits, queue)
            return
        seeded = state is None
        if seeded:
            try:
                state = self._seed.load(key, self._config) if self._seed else fold.TrainState()
            except gexc.GoogleAPIError as e:
                # Bounded here (the read's own retries end at its deadline), and not raised: a
                # failed work item is retried by the runner with every other train in it. This
                # train's events go back to the queue, due at its next flush; nothing is applied
                # from a made-up zero.
                _LOGGER.error(
                    "Train %s not seeded from Firestore (%s: %s); its %d events wait and the flush "
                    "is tried again in %d s of event time. Check that Firestore is reachable and "
                    "the workers' service account may read it (roles/datastore.user)",
                    key,
                    type(e).__name__,
                    e,
                    len(ready),
                    SEED_RETRY_US // 1_000_000,
                )
                for event in ready:
                    queue.pending.add(event)  # counted, so that the next flush reads it
                self._queue.put_off(fired_us, SEED_RETRY_US, queue)
                yield beam.pvalue.TaggedOutput(STATS, (0,) * (len(STAT_NAMES) - 1) + (1,))
                return
        result = fold.apply_events(state, ready, self._config, fired_us)
        for event, detail in result.refused:
            # The raw message was left behind at the lookup (state keeps no payloads): the dead
            # letter carries the event as its device sent it.
            payload, attributes = wire.encode_event(event.device_id, event.delta, event.event_time_us, event.seq)
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTER,
                wire.dead_letter(wire.SEQ_JUMP, detail, payload, attributes, None, wire.now_us(), "RunningOccupancy"),
            )
        state.queue_clock = queue_clock  # what a job of an earlier version reads, if rolled back to
        train.write(state)
        yield beam.pvalue.TaggedOutput(
            STATS,
            (result.applied, result.duplicates, result.late, result.corrections, result.heartbeats, int(seeded), 0),
        )
        if self._visits is not None:
            yield from self._flush_visits(key, result.counts, fired_us, visits, queue)
        for bucket in result.buckets:
            yield documents.history_write(key, bucket)
        for trip in result.trips:
            yield documents.trip_write(key, trip)
        if result.write_realtime:
            yield documents.realtime_write(key, state)

    def _flush_visits(self, key, applied, fired_us, visits, queue):
        rows, again = self._visits.flush(key, applied, fired_us, visits)
        if again is not None:  # the one flush timer, armed for it unless due sooner
            arm_flush(queue, again, self._config.flush_interval_us)
        yield from rows


def _legacy_clock(state, timer_at):
    """The clock as a job before the `clock` cell kept it: the later of the train state's and
    `timer_at` (by last flush time)."""
    kept = state.queue_clock if state is not None else (0, 0)
    stored = timer_at or (0, 0)
    return stored if stored[1] >= kept[1] else kept


class CountFlushes(beam.DoFn):
    """Per-flush stats tuple (STAT_NAMES order) -> Beam counters (a flush put off for its seed
    counts in `seeds_put_off`, not in `flushes`).

    Counted here rather than in the timer callback: the local DirectRunner does
    not report metrics incremented in `on_timer` (measured with Beam 2.77).
    """

    def __init__(self):
        self._flushes = beam.metrics.Metrics.counter("occupancy", "flushes")
        self._counters = [beam.metrics.Metrics.counter("occupancy", name) for name in STAT_NAMES]

    def process(self, stats):
        if not stats[-1]:
            self._flushes.inc()
        for counter, value in zip(self._counters, stats):
            if value:
                counter.inc(value)


class RunningOccupancy(beam.PTransform):
    """PCollection[(train_id, Event)] -> {"writes": PCollection[DocumentWrite] (realtime, history,
    trips), "dead_letter": PCollection[dict] (seq jumps), "stop_visits" and "passenger_events":
    PCollection[dict] (TIDES rows, with `visits`: transforms.stop_visits)}."""

    def __init__(self, config: fold.FoldConfig, seed: RealtimeSeed = None, visits=None):
        super().__init__()
        self._fn = FoldOccupancy(config, seed, visits)

    def expand(self, keyed_events):
        outputs = keyed_events | "FoldOccupancy" >> beam.ParDo(self._fn).with_outputs(
            STATS, DEAD_LETTER, STOP_VISITS, PASSENGER_EVENTS, main="writes"
        )
        outputs[STATS] | "CountFlushes" >> beam.ParDo(CountFlushes())
        return {
            "writes": outputs.writes,
            DEAD_LETTER: outputs[DEAD_LETTER],
            STOP_VISITS: outputs[STOP_VISITS],
            PASSENGER_EVENTS: outputs[PASSENGER_EVENTS],
        }
