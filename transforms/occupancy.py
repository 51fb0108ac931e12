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
* A train's state is one cell (`transforms.train_cell`), read once per bundle
  and written once: over the Fn API each request costs more than the fold.
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

from occupancy import documents, fold, state_codec, wire
from occupancy.store import TRANSIENT, RetryPolicy, count_ops, make_client
from transforms import guard
from transforms.coders import EventCoder, TrainCellCoder, TrainStateCoder, VisitStateCoder
from transforms.release_queue import ReleaseQueue, arm_flush
from transforms.stop_visits import TABLES
from transforms.train_cell import BundleMemo, LegacyCells, TrainCell, read_legacy

_LOGGER = logging.getLogger(__name__)
STATS = "stats"
DEAD_LETTER = "dead_letter"
STAT_NAMES = ("applied", "duplicates", "late", "corrections", "heartbeats", "seeded", "seeds_put_off")
# A flush's stats: the STAT_NAMES counts, then the age of the oldest count of people it applied,
# in milliseconds from its event time to the flush in processing time (-1: none applied).
AGE = len(STAT_NAMES)
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

    # The train: its TrainState, the release queue's clock, horizon and near events, in one cell
    # read once per bundle (transforms.train_cell); versioned bytes, not a pickled class.
    TRAIN_CELL = ReadModifyWriteStateSpec("train_cell", TrainCellCoder())
    # The release queue's far events (a backlog's), read when its horizon moves on.
    LATER = BagStateSpec("later", EventCoder())
    # Where jobs before `train_cell` kept a train (transforms.train_cell.LegacyCells): read once
    # for a train without `train_cell`, then cleared.
    TRAIN = ReadModifyWriteStateSpec("train", TrainStateCoder())
    QUEUE = ReadModifyWriteStateSpec("queue", coders.TupleCoder([coders.VarIntCoder()] * 4))
    CLOCK = ReadModifyWriteStateSpec("clock", coders.TupleCoder([coders.VarIntCoder(), coders.VarIntCoder()]))
    TIMER_AT = ReadModifyWriteStateSpec("timer_at", coders.TupleCoder([coders.VarIntCoder(), coders.VarIntCoder()]))
    HORIZON = ReadModifyWriteStateSpec("horizon", coders.VarIntCoder())
    PENDING = BagStateSpec("pending", EventCoder())
    WAITING = BagStateSpec("waiting", EventCoder())
    FLUSH = TimerSpec("flush", TimeDomain.WATERMARK)
    # The train's stop visits (transforms.stop_visits), with --tides_output only: versioned bytes
    # (occupancy.state_codec.encode_visits), bounded by the open burst of counts.
    VISITS = ReadModifyWriteStateSpec("visits", VisitStateCoder())

    def __init__(self, config: fold.FoldConfig, seed: RealtimeSeed = None, visits=None):
        self._config = config
        self._seed = seed
        self._visits = visits  # transforms.stop_visits.StopVisitTracker: the TIDES rows, or None
        self._release_of = lambda event: config.release_time(event.event_time_us)
        self._queue = ReleaseQueue(self._release_of, config.flush_interval_us, config.reorder_delay_us, min_dead=None)
        self._memo = BundleMemo()
        self._unexpected = guard.counter()
        self._refused = {
            reason: beam.metrics.Metrics.counter("occupancy", f"rejected_{reason}")
            for reason in (wire.SEQ_JUMP, wire.LATE_CONTROL, wire.BEFORE_ASSIGNMENT)
        }

    def setup(self):
        if self._seed is not None:
            self._seed.setup()
        if self._visits is not None:
            self._visits.setup()

    def start_bundle(self):
        self._memo.clear()

    def _cell(self, key, cell, legacy: LegacyCells) -> TrainCell:
        return TrainCell(key, cell, self._memo, lambda: read_legacy(legacy, self._release_of))

    def process(
        self,
        element,
        train_cell=beam.DoFn.StateParam(TRAIN_CELL),
        later=beam.DoFn.StateParam(LATER),
        train=beam.DoFn.StateParam(TRAIN),
        queue=beam.DoFn.StateParam(QUEUE),
        clock=beam.DoFn.StateParam(CLOCK),
        timer_at=beam.DoFn.StateParam(TIMER_AT),
        horizon=beam.DoFn.StateParam(HORIZON),
        pending=beam.DoFn.StateParam(PENDING),
        waiting=beam.DoFn.StateParam(WAITING),
        flush=beam.DoFn.TimerParam(FLUSH),
    ):
        key, event = element
        legacy = LegacyCells(train, queue, clock, timer_at, horizon, pending, waiting)
        try:
            self._queue.add(event, self._cell(key, train_cell, legacy).queue_state(later, flush))
        except TRANSIENT:
            raise
        except Exception as e:  # noqa: BLE001 - no element may fail the bundle (transforms/guard.py)
            self._unexpected.inc()
            payload, attributes = _as_sent(event)
            return [guard.dead_letter("RunningOccupancy", e, payload, attributes, None)]

    @on_timer(FLUSH)
    def on_flush(
        self,
        key=beam.DoFn.KeyParam,
        fired=beam.DoFn.TimestampParam,
        train_cell=beam.DoFn.StateParam(TRAIN_CELL),
        later=beam.DoFn.StateParam(LATER),
        train=beam.DoFn.StateParam(TRAIN),
        queue=beam.DoFn.StateParam(QUEUE),
        clock=beam.DoFn.StateParam(CLOCK),
        timer_at=beam.DoFn.StateParam(TIMER_AT),
        horizon=beam.DoFn.StateParam(HORIZON),
        pending=beam.DoFn.StateParam(PENDING),
        waiting=beam.DoFn.StateParam(WAITING),
        visits=beam.DoFn.StateParam(VISITS),
        flush=beam.DoFn.TimerParam(FLUSH),
    ):
        fired_us = fired.micros
        cell = self._cell(key, train_cell, LegacyCells(train, queue, clock, timer_at, horizon, pending, waiting))
        queue = cell.queue_state(later, flush)
        ready, _ = self._queue.take_due(fired_us, queue)
        if not ready:
            if self._visits is not None:  # a flush armed for the stop visits alone
                try:
                    yield from self._flush_visits(key, [], fired_us, visits, queue)
                except TRANSIENT:
                    raise
                except Exception:  # noqa: BLE001 - no element may fail the bundle; no event to dead-letter
                    self._unexpected.inc()
                    _LOGGER.exception("Train %s: closing its stop visits failed; they close at its next flush", key)
            return
        try:
            state = cell.train
        except state_codec.UnknownVersion as e:
            # Bytes of a newer job (rolled back without a drain): what this job cannot read it
            # takes from realtime, as after a restart, rather than stop this train's timer.
            _LOGGER.error("Train %s: its state cannot be read (%s); seeded from Firestore again", key, e)
            state = None
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
                    queue.pending.add(event)  # due at the next flush
                self._queue.put_off(fired_us, SEED_RETRY_US, queue)
                yield beam.pvalue.TaggedOutput(STATS, (0,) * (len(STAT_NAMES) - 1) + (1, -1))
                return
        # The cell hands out the state it holds, and the fold changes it in place: its bytes are
        # kept, so that a flush that raises leaves the train as it was.
        before = None if seeded else cell.train_bytes_before_change()
        try:
            outputs = self._apply(key, state, ready, fired_us, seeded, visits, queue)
        except TRANSIENT:
            raise  # Firestore unreachable past its retries: the runner retries the bundle
        except Exception as e:  # noqa: BLE001 - no element may fail the bundle (transforms/guard.py)
            # The train's state as it was; the events the flush took are dead letters, each with
            # the error.
            if before is not None:
                cell.train = state_codec.decode_state(before)
            for event in ready:
                self._unexpected.inc()
                payload, attributes = _as_sent(event)
                yield guard.dead_letter("RunningOccupancy", e, payload, attributes, None)
            return
        cell.train = state
        yield from outputs

    def _apply(self, key, state: fold.TrainState, ready, fired_us: int, seeded: bool, visits, queue) -> list:
        """Applies the released events to `state`: what the flush emits (dead letters of the
        events the fold refused, its statistics, TIDES rows, the documents), built whole before
        any is emitted."""
        result = fold.apply_events(state, ready, self._config, fired_us)
        outputs = []
        for event, reason, detail in result.refused:
            self._refused[reason].inc()
            # The raw message was left behind at the lookup (state keeps no payloads): the dead
            # letter carries the event as its sender sent it, unsigned.
            payload, attributes = _as_sent(event)
            outputs.append(
                beam.pvalue.TaggedOutput(
                    DEAD_LETTER,
                    wire.dead_letter(reason, detail, payload, attributes, None, wire.now_us(), "RunningOccupancy"),
                )
            )
        # Of the counts of people applied: not duplicates, heartbeats or refused events.
        oldest_us = min((event.event_time_us for event, _ in result.counts), default=None)
        oldest_ms = -1 if oldest_us is None else max(0, (wire.now_us() - oldest_us) // 1000)
        outputs.append(
            beam.pvalue.TaggedOutput(
                STATS,
                (
                    *(result.applied, result.duplicates, result.late, result.corrections, result.heartbeats),
                    *(int(seeded), 0, oldest_ms),
                ),
            )
        )
        if self._visits is not None:
            outputs += self._flush_visits(key, result.counts, fired_us, visits, queue)
        outputs += [documents.history_write(key, bucket) for bucket in result.buckets]
        outputs += [documents.trip_write(key, trip) for trip in result.trips]
        if result.write_realtime:
            outputs.append(documents.realtime_write(key, state))
        return outputs

    def _flush_visits(self, key, applied, fired_us, visits, queue) -> list:
        rows, again = self._visits.flush(key, applied, fired_us, visits)
        if again is not None:  # the one flush timer, armed for it unless due sooner
            arm_flush(queue, again, self._config.flush_interval_us)
        return list(rows)


def _as_sent(event: wire.Event):
    """(payload, attributes) of an event as its sender made it (without its signature)."""
    if event.kind in wire.ZEROING:
        return wire.encode_reset(event.train_id, event.event_time_us, event.kind)
    return wire.encode_event(event.device_id, event.delta, event.event_time_us, event.seq)


class CountFlushes(beam.DoFn):
    """Per-flush stats tuple (STAT_NAMES order, then AGE) -> Beam counters (a flush put off for
    its seed counts in `seeds_put_off`, not in `flushes`) and the distribution
    `count_age_at_flush_ms`: how old, in processing time, the oldest count of people of each flush
    was when it was applied (what a rider's number lagged behind the doors at worst, the device's
    clock and Pub/Sub included).

    Counted here rather than in the timer callback: the local DirectRunner does
    not report metrics incremented in `on_timer` (measured with Beam 2.77).
    """

    def __init__(self):
        self._flushes = beam.metrics.Metrics.counter("occupancy", "flushes")
        self._counters = [beam.metrics.Metrics.counter("occupancy", name) for name in STAT_NAMES]
        self._age = beam.metrics.Metrics.distribution("occupancy", "count_age_at_flush_ms")

    def process(self, stats):
        if not stats[STAT_NAMES.index("seeds_put_off")]:
            self._flushes.inc()
        for counter, value in zip(self._counters, stats):
            if value:
                counter.inc(value)
        if len(stats) > AGE and stats[AGE] >= 0:
            self._age.update(stats[AGE])


class RunningOccupancy(beam.PTransform):
    """PCollection[(train_id, Event)] -> {"writes": PCollection[DocumentWrite] (realtime, history,
    trips), "dead_letter": PCollection[dict] (seq jumps, late resets), and each TIDES table of
    transforms.stop_visits.TABLES: PCollection[dict] (its rows, with `visits`)}."""

    def __init__(self, config: fold.FoldConfig, seed: RealtimeSeed = None, visits=None):
        super().__init__()
        self._fn = FoldOccupancy(config, seed, visits)

    def expand(self, keyed_events):
        outputs = keyed_events | "FoldOccupancy" >> beam.ParDo(self._fn).with_outputs(
            STATS, DEAD_LETTER, *TABLES, main="writes"
        )
        outputs[STATS] | "CountFlushes" >> beam.ParDo(CountFlushes())
        return {"writes": outputs.writes, DEAD_LETTER: outputs[DEAD_LETTER], **{t: outputs[t] for t in TABLES}}
