"""StopVisitRows: (train_id, DoorCount) -> TIDES `stop_visits` and `passenger_events` rows.

Input: the counts of people RunningOccupancy applied (its `counts` output: each with the
train's value after it, in the order applied, timestamped at the flush that applied them).
Output: tagged `stop_visits` and `passenger_events`, dicts as occupancy.tides makes them,
emitted when a visit closes (TrackStopVisits: when the watermark passes the end of its burst
of counts), and for the stops of a run no door counted at, when the next visit or the
run's end shows they were passed.

Which trip a train runs at a count's time (occupancy.schedule.trip_of): the static schedule
(`--gtfs_static`, read once per worker) and the train's number or an operator's assignment
from the registry's trains (read once per worker, refreshed every `refresh_s`). Without a
schedule every visit is unscheduled, numbered along the train's service day.
"""

import datetime
import io
import logging
import threading
import time
import uuid
import zoneinfo
from typing import Optional

import apache_beam as beam
from apache_beam.coders import coders
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Timestamp

from occupancy import registry, schedule, tides
from occupancy.stop_visits import DoorCount, StopVisits, VisitState
from occupancy.store import TRANSIENT, RetryPolicy, make_client
from transforms import worker_cache
from transforms.coders import VisitStateCoder

_LOGGER = logging.getLogger(__name__)
STOP_VISITS, PASSENGER_EVENTS = "stop_visits", "passenger_events"
# The run's stops no door counted at are given as passed this long after its scheduled end.
RUN_LATE_US = schedule.LATE_S * 1_000_000
# A waiting count: (its timestamp, µs; then DoorCount's fields: device, seq, time, delta, load).
PENDING_CODER = coders.TupleCoder([coders.VarIntCoder(), coders.StrUtf8Coder()] + [coders.VarIntCoder()] * 4)


def read_schedule(path: str) -> schedule.Schedule:
    """The static feed at `path` (local, gs://: any filesystem Beam has)."""
    from apache_beam.io.filesystems import FileSystems

    try:
        with FileSystems.open(path, compression_type="uncompressed") as f:
            data = f.read()
    except (OSError, IOError) as e:  # Beam's BeamIOError is an IOError
        raise schedule.ScheduleError(f"cannot read the static feed {path}: {e}") from None
    return schedule.Schedule.from_zip(io.BytesIO(data))


class _TrainsView:
    """A worker's view of the registry's trains (number, assignment), refreshed in place."""

    def __init__(self, snapshot: registry.RegistrySnapshot):
        self.snapshot, self.loaded_at, self.lock = snapshot, time.monotonic(), threading.Lock()


class TripRuns:
    """Which run of the schedule a train is on at a time; one schedule and one view of the
    trains per worker process (transforms/worker_cache.py)."""

    def __init__(self, project: str, database: str, trains_collection: str, refresh_s: float, gtfs_static: str):
        self._project, self._database, self._trains = project, database, trains_collection
        self._refresh_s, self._path = refresh_s, gtfs_static
        self._key = f"trip-runs-{uuid.uuid4()}"

    def setup(self) -> None:
        self._schedule = worker_cache.get(self._key + "-schedule", self._load_schedule) if self._path else None
        self._client = make_client(self._project, self._database) if self._path else None
        self._view = None

    def _load_schedule(self):
        loaded = read_schedule(self._path)
        _LOGGER.info("Loaded the static schedule %s: %s trips", self._path, len(loaded.trips))
        return loaded

    def _load_trains(self) -> _TrainsView:
        return _TrainsView(RetryPolicy().call(lambda: registry.load_trains(self._client, self._trains)))

    def _trains_now(self) -> registry.RegistrySnapshot:
        if self._view is None:
            self._view = worker_cache.get(self._key + "-trains", self._load_trains)
        view = self._view
        if time.monotonic() - view.loaded_at >= self._refresh_s and view.lock.acquire(blocking=False):
            try:
                since = view.snapshot.updated_through
                changed = registry.load_trains(self._client, self._trains, since=since)
                view.snapshot = registry.RegistrySnapshot(
                    trains={**view.snapshot.trains, **changed.trains},
                    updated_through=changed.updated_through or since,
                )
            except TRANSIENT as e:  # a stale view is better than a stopped job
                _LOGGER.warning("Trains refresh failed, keeping the cached view: %s", e)
            finally:
                view.loaded_at = time.monotonic()
                view.lock.release()
        return view.snapshot

    def run_at(self, train_id: str, t_us: int) -> Optional[schedule.TripRun]:
        if self._schedule is None:
            return None
        entry = self._trains_now().trains.get(train_id)
        if entry is None:
            return None
        at = datetime.datetime.fromtimestamp(t_us / 1_000_000, datetime.timezone.utc)
        return schedule.trip_of(self._schedule, entry.schedule_fields(), at)[0]

    def run_of(self, key) -> Optional[schedule.TripRun]:
        """The run a stored key names (None: no run, or the schedule no longer has it)."""
        if not key[0] or self._schedule is None:
            return None
        try:
            return self._schedule.assigned_run(*key)
        except schedule.ScheduleError:
            return None


class TrackStopVisits(beam.DoFn):
    """(train_id, DoorCount) -> tagged `stop_visits` and `passenger_events` rows (dicts).

    The counts come in no particular order (a shuffle is between this and the fold), so they
    wait in `pending` until the watermark passes the flush that applied them (their
    timestamp) and are then taken in event-time order. One timer, `tick`, armed for the
    earliest of: the oldest waiting count, the open burst's end, the run's end. A burst's end
    is `gap_us` after its last count plus `hold_us`, the longest an on-time count takes from
    its door to the fold's output (reorder delay and flush interval): a count of the same
    burst may still be on its way until then.
    """

    PENDING = BagStateSpec("pending", PENDING_CODER)
    # Versioned bytes (occupancy.state_codec.encode_visits): bounded, the open burst's counts.
    VISITS = ReadModifyWriteStateSpec("visits", VisitStateCoder())
    ARMED = ReadModifyWriteStateSpec("armed", coders.VarIntCoder())  # when `tick` fires, µs
    TICK = TimerSpec("tick", TimeDomain.WATERMARK)

    def __init__(self, runs: TripRuns, rules: StopVisits, hold_us: int):
        self._runs, self._rules, self._hold_us = runs, rules, hold_us
        self._visits = beam.metrics.Metrics.counter("occupancy", "stop_visits")
        self._unscheduled = beam.metrics.Metrics.counter("occupancy", "stop_visits_unscheduled")

    def setup(self):
        self._runs.setup()

    def process(
        self,
        element,
        timestamp=beam.DoFn.TimestampParam,
        pending=beam.DoFn.StateParam(PENDING),
        armed=beam.DoFn.StateParam(ARMED),
        tick=beam.DoFn.TimerParam(TICK),
    ):
        _, count = element
        pending.add((timestamp.micros, *count))
        at = armed.read()
        if not at or timestamp.micros < at:
            tick.set(timestamp)
            armed.write(timestamp.micros)

    @on_timer(TICK)
    def on_tick(
        self,
        key=beam.DoFn.KeyParam,
        fired=beam.DoFn.TimestampParam,
        pending=beam.DoFn.StateParam(PENDING),
        visits=beam.DoFn.StateParam(VISITS),
        armed=beam.DoFn.StateParam(ARMED),
        tick=beam.DoFn.TimerParam(TICK),
    ):
        now = fired.micros
        waiting = list(pending.read())
        ready = sorted(DoorCount(*w[1:]) for w in waiting if w[0] <= now)
        rest = [w for w in waiting if w[0] > now]
        if ready:
            pending.clear()
            for w in rest:
                pending.add(w)
        state = self._read(visits)
        closed = []
        for count in sorted(ready, key=lambda c: (c.event_time_us, c.device_id, c.seq)):
            closed += self._rules.add(state, count, self._runs.run_at(key, count.event_time_us))
        closed += self._rules.close(state, now - self._hold_us, self._runs.run_at(key, now - self._hold_us))
        visits.write(state)
        due = [w[0] for w in rest]
        for end in (self._rules.due_us(state), self._rules.run_ends_us(state, RUN_LATE_US)):
            if end is not None:
                due.append(end + self._hold_us)
        if due:
            tick.set(Timestamp(micros=min(due)))
            armed.write(min(due))
        else:
            armed.clear()
        timezone = self._rules.timezone
        for visit in closed:
            self._visits.inc()
            if visit.stop is None:
                self._unscheduled.inc()
            yield beam.pvalue.TaggedOutput(STOP_VISITS, tides.stop_visit_row(visit, key, timezone))
            for row in tides.passenger_event_rows(visit, key, timezone):
                yield beam.pvalue.TaggedOutput(PASSENGER_EVENTS, row)

    def _read(self, cell) -> VisitState:
        state = cell.read()
        if state is None:
            return VisitState()
        if state.key[0] and state.run is None:  # decoded: the run by its key
            state.run = self._runs.run_of(state.key)
            if state.run is None:  # the schedule changed under it: its visits end here
                state.key, state.visits, state.next_stop = ("", ""), 0, 0
        return state


class StopVisitRows(beam.PTransform):
    """PCollection[(train_id, DoorCount)] -> {"stop_visits": rows, "passenger_events": rows}."""

    def __init__(
        self,
        project: str,
        database: str,
        trains_collection: str,
        refresh_s: float,
        gtfs_static: str,
        timezone: str,
        gap_s: float,
        hold_s: float,
    ):
        """`hold_s`: the longest an on-time count takes from its door to the fold's output (the
        job's reorder delay and two flush intervals)."""
        super().__init__()
        runs = TripRuns(project, database, trains_collection, refresh_s, gtfs_static)
        rules = StopVisits(gap_us=int(gap_s * 1_000_000), timezone=zoneinfo.ZoneInfo(timezone))
        self._fn = TrackStopVisits(runs, rules, int(hold_s * 1_000_000))

    def expand(self, counts):
        rows = counts | "TrackStopVisits" >> beam.ParDo(self._fn).with_outputs(STOP_VISITS, PASSENGER_EVENTS)
        return {STOP_VISITS: rows[STOP_VISITS], PASSENGER_EVENTS: rows[PASSENGER_EVENTS]}
