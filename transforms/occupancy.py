"""RunningOccupancy: (train_id, Event) -> DocumentWrite for realtime/, history/ and trips/.

A stateful DoFn per train keeps the train in one cell (`occupancy.train_cell`:
its state, the events waiting for their release, the flush clock) and sets its
one event-time timer where that module's flush policy says (docs/design.md,
"Running occupancy"). An event is applied once the watermark has passed it by
`reorder_delay_s`: events that arrive out of order before then are applied in
order. A flush applies the released events with the pure fold in
`occupancy.fold` and emits one history write per touched bucket and, when
needed, one realtime write. The outputs are complete documents, so a retried
bundle rewrites the same documents.

The cell is read once per train and bundle and written when the bundle
commits: over the Fn API every state request costs more than the fold
(docs/sizing.md).

When a train's state is empty (new job, restart) it is seeded from its
realtime document and latest history document, so counts continue and the
per-device seq memory de-duplicates across the restart.
"""

import logging
from typing import NamedTuple

import apache_beam as beam
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Timestamp
from google.api_core import exceptions as gexc

from adapters.store import TRANSIENT, RetryPolicy, count_ops, make_client
from occupancy import dead_letters, documents, fold, state_codec, train_cell, train_state, wire
from transforms import guard
from transforms.coders import EventCoder, TrainCellCoder, VisitStateCoder
from transforms.stop_visits import TABLES

_LOGGER = logging.getLogger(__name__)
STATS = "stats"
DEAD_LETTER = "dead_letter"
# A train whose state could not be seeded tries its flush again this much event time later.
SEED_RETRY_US = 10_000_000


class FlushStats(NamedTuple):
    """What one flush did (CountFlushes makes them counters)."""

    applied: int = 0
    duplicates: int = 0
    late: int = 0
    corrections: int = 0
    heartbeats: int = 0
    seeded: int = 0
    seeds_put_off: int = 0
    # The age of the oldest count of people applied, in ms from its event time to the flush in
    # processing time; -1: none applied.
    oldest_count_ms: int = -1


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

    def load(self, train_id: str, config: fold.FoldConfig) -> train_state.TrainState:
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

    # The train (occupancy.train_cell.TrainCell), as versioned bytes (TrainCellCoder).
    CELL = ReadModifyWriteStateSpec("train_cell", TrainCellCoder())
    # Events beyond the cell's window (a backlog's), read when the cell says.
    LATER = BagStateSpec("later", EventCoder())
    FLUSH = TimerSpec("flush", TimeDomain.WATERMARK)
    # The train's stop visits (transforms.stop_visits), with --tides_output only: versioned bytes
    # (occupancy.state_codec.encode_visits), bounded by the open burst of counts.
    VISITS = ReadModifyWriteStateSpec("visits", VisitStateCoder())

    def __init__(self, config: fold.FoldConfig, seed: RealtimeSeed = None, visits=None):
        self._config = config
        self._policy = train_cell.FlushPolicy.of(config)
        self._seed = seed
        self._visits = visits  # transforms.stop_visits.StopVisitTracker: the TIDES rows, or None
        self._cells = {}  # the cells this bundle read, by train
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
        # A DoFn instance runs one bundle at a time; another worker may change a train between two.
        self._cells = {}

    def _read(self, key: str, stored) -> train_cell.TrainCell:
        """The train's cell, read from state once per bundle. A copy: a state cache hands out the
        object it keeps, which a bundle that then fails must not have changed."""
        cell = self._cells.get(key)
        if cell is None:
            value = stored.read()
            cell = self._cells[key] = value.copy() if value is not None else train_cell.TrainCell()
        return cell

    def _write(self, cell: train_cell.TrainCell, stored, flush) -> None:
        """Writes the cell back (sent when the bundle commits) and moves the timer if it should."""
        at = train_cell.rearm(cell, self._policy)
        if at is not None:
            flush.set(Timestamp(micros=at))
        stored.write(cell)

    def process(
        self,
        element,
        stored=beam.DoFn.StateParam(CELL),
        later=beam.DoFn.StateParam(LATER),
        flush=beam.DoFn.TimerParam(FLUSH),
    ):
        key, event = element
        try:
            cell = self._read(key, stored)
            for beyond in train_cell.add(cell, event, self._policy):
                later.add(beyond)
            self._write(cell, stored, flush)
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
        stored=beam.DoFn.StateParam(CELL),
        later=beam.DoFn.StateParam(LATER),
        visits=beam.DoFn.StateParam(VISITS),
        flush=beam.DoFn.TimerParam(FLUSH),
    ):
        fired_us = fired.micros
        cell = self._read(key, stored)
        cell.armed_us = 0  # this timer has fired
        ready, rewrite = train_cell.take_due(cell, fired_us, self._policy, later.read)
        if rewrite is not None:
            later.clear()
            for event in rewrite:
                later.add(event)
        outputs = (
            self._flush(key, cell, ready, fired_us, visits)
            if ready
            else self._close_visits(key, cell, fired_us, visits)
        )
        self._write(cell, stored, flush)
        yield from outputs

    def _close_visits(self, key, cell, fired_us, visits) -> list:
        """A flush with no event due (armed for the stop visits alone): closes what is due."""
        if self._visits is None:
            return []
        try:
            return self._flush_visits(key, [], fired_us, visits, cell)
        except TRANSIENT:
            raise
        except Exception:  # noqa: BLE001 - no element may fail the bundle; no event to dead-letter
            self._unexpected.inc()
            _LOGGER.exception("Train %s: closing its stop visits failed; they close at its next flush", key)
            return []

    def _flush(self, key, cell: train_cell.TrainCell, ready, fired_us: int, visits) -> list:
        """Applies `ready` to the train in `cell`: what the flush emits. A flush that fails leaves
        the train as it was and its events as dead letters."""
        try:
            state = cell.train
        except state_codec.Unreadable as e:
            # Bytes of a newer job (rolled back without a drain), or broken: what this job cannot
            # read it takes from realtime, as after a restart, rather than stop this train's timer.
            _LOGGER.error("Train %s: its state cannot be read (%s); seeded from Firestore again", key, e)
            state = None
        seeded = state is None
        if seeded:
            try:
                state = self._seed.load(key, self._config) if self._seed else train_state.TrainState()
            except gexc.GoogleAPIError as e:
                # Bounded here (the read's own retries end at its deadline), and not raised: a
                # failed work item is retried by the runner with every other train in it. This
                # train's events go back to the cell, due at its next flush; nothing is applied
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
                train_cell.put_back(cell, ready, fired_us + SEED_RETRY_US)
                return [beam.pvalue.TaggedOutput(STATS, FlushStats(seeds_put_off=1))]
            except Exception as e:  # noqa: BLE001 - no element may fail the bundle (transforms/guard.py)
                # A realtime document the seed cannot read (edited by hand: a count that is not
                # a number). Read again at the next flush; until it is mended or deleted, the
                # train's events are dead letters, to be replayed (docs/runbook.md).
                unreadable = RuntimeError(f"realtime/{key} cannot be read to seed the train: {guard.describe(e)}")
                return self._dead_letters(unreadable, ready)
        # The fold changes the state in place: its bytes before, to put back should it raise.
        before = None if seeded else cell.train_snapshot()
        try:
            outputs = self._apply(key, state, ready, fired_us, seeded, visits, cell)
        except TRANSIENT:
            raise  # Firestore unreachable past its retries: the runner retries the bundle
        except Exception as e:  # noqa: BLE001 - no element may fail the bundle (transforms/guard.py)
            if before is not None:
                cell.train = state_codec.decode_state(before)
            return self._dead_letters(e, ready)
        cell.train = state
        return outputs

    def _dead_letters(self, error: BaseException, events) -> list:
        """Each of `events` as a dead letter of `error` (internal_error), as its sender sent it."""
        outputs = []
        for event in events:
            self._unexpected.inc()
            payload, attributes = _as_sent(event)
            outputs.append(guard.dead_letter("RunningOccupancy", error, payload, attributes, None))
        return outputs

    def _apply(self, key, state: train_state.TrainState, ready, fired_us: int, seeded: bool, visits, cell) -> list:
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
                    dead_letters.record(reason, detail, payload, attributes, None, wire.now_us(), "RunningOccupancy"),
                )
            )
        # Of the counts of people applied: not duplicates, heartbeats or refused events.
        oldest_us = min((event.event_time_us for event, _ in result.counts), default=None)
        stats = FlushStats(
            result.applied,
            result.duplicates,
            result.late,
            result.corrections,
            result.heartbeats,
            seeded=int(seeded),
            oldest_count_ms=-1 if oldest_us is None else max(0, (wire.now_us() - oldest_us) // 1000),
        )
        outputs.append(beam.pvalue.TaggedOutput(STATS, stats))
        if self._visits is not None:
            outputs += self._flush_visits(key, result.counts, fired_us, visits, cell)
        outputs += [documents.history_write(key, bucket) for bucket in result.buckets]
        outputs += [documents.trip_write(key, trip) for trip in result.trips]
        if result.write_realtime:
            outputs.append(documents.realtime_write(key, state))
        return outputs

    def _flush_visits(self, key, applied, fired_us, visits, cell) -> list:
        rows, again = self._visits.flush(key, applied, fired_us, visits)
        if again is not None:
            train_cell.wake(cell, again)
        return list(rows)


def _as_sent(event: wire.Event):
    """(payload, attributes) of an event as its sender made it (without its signature)."""
    if event.kind in wire.ZEROING:
        return wire.encode_reset(event.train_id, event.event_time_us, event.kind)
    return wire.encode_event(event.device_id, event.delta, event.event_time_us, event.seq)


# The FlushStats fields that are counters of the same name.
COUNTED = FlushStats._fields[:-1]
# A flush whose oldest count of people was at least this old when applied showed riders that count
# late: `flushes_with_late_counts` over `flushes_with_counts` is what the "counts applied late"
# alert reads (deploy/monitoring/policies/counts-applied-late.json).
LATE_COUNT_MS = 30_000


class CountFlushes(beam.DoFn):
    """FlushStats -> Beam counters (a flush put off for its seed counts in `seeds_put_off`, not
    in `flushes`) and the distribution
    `count_age_at_flush_ms`: how old, in processing time, the oldest count of people of each flush
    was when it was applied (what a rider's number lagged behind the doors at worst, the device's
    clock and Pub/Sub included). Of the flushes that applied a count of people,
    `flushes_with_counts` counts each and `flushes_with_late_counts` those whose oldest was
    LATE_COUNT_MS old or more: counters, which Cloud Monitoring receives from Dataflow as
    `job/user_counter`, so that an alert policy can read their ratio.

    Counted here rather than in the timer callback: the local DirectRunner does
    not report metrics incremented in `on_timer` (measured with Beam 2.77).
    """

    def __init__(self):
        self._flushes = beam.metrics.Metrics.counter("occupancy", "flushes")
        self._counters = {name: beam.metrics.Metrics.counter("occupancy", name) for name in COUNTED}
        self._age = beam.metrics.Metrics.distribution("occupancy", "count_age_at_flush_ms")
        self._with_counts = beam.metrics.Metrics.counter("occupancy", "flushes_with_counts")
        self._with_late_counts = beam.metrics.Metrics.counter("occupancy", "flushes_with_late_counts")

    def process(self, stats: FlushStats):
        if not stats.seeds_put_off:
            self._flushes.inc()
        for name, counter in self._counters.items():
            value = getattr(stats, name)
            if value:
                counter.inc(value)
        if stats.oldest_count_ms >= 0:
            self._age.update(stats.oldest_count_ms)
            self._with_counts.inc()
            if stats.oldest_count_ms >= LATE_COUNT_MS:
                self._with_late_counts.inc()


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
