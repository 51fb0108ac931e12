"""StopVisitTracker: the counts FoldOccupancy applies -> TIDES `stop_visits`,
`passenger_events` and `trips_performed` rows (dicts as occupancy.tides makes them), tagged
outputs of the fold,
emitted when a visit closes (occupancy.stop_visits: a burst of counts ended, and the stops
of a run no door counted at, when the next visit or the run's end shows they were passed).

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
from typing import Optional, Tuple

import apache_beam as beam

from adapters import registry
from adapters.store import TRANSIENT, RetryPolicy, make_client
from occupancy import registry_entries, schedule, tides
from occupancy.stop_visits import DoorCount, StopVisits, VisitState
from transforms import worker_cache

_LOGGER = logging.getLogger(__name__)
STOP_VISITS, PASSENGER_EVENTS, TRIPS_PERFORMED = "stop_visits", "passenger_events", "trips_performed"
TABLES = (STOP_VISITS, PASSENGER_EVENTS, TRIPS_PERFORMED)


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

    def __init__(self, snapshot: registry_entries.RegistrySnapshot):
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

    def _trains_now(self) -> registry_entries.RegistrySnapshot:
        if self._view is None:
            self._view = worker_cache.get(self._key + "-trains", self._load_trains)
        view = self._view
        if time.monotonic() - view.loaded_at >= self._refresh_s and view.lock.acquire(blocking=False):
            try:
                since = view.snapshot.updated_through
                changed = registry.load_trains(self._client, self._trains, since=since)
                view.snapshot = registry_entries.RegistrySnapshot(
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


class StopVisitTracker:
    """The stop visits of FoldOccupancy's flushes (its `visits` cell): the counts a flush applied,
    in the order applied, then the visits that closed by the flush's time, as tagged rows.

    Inside the fold rather than a stage after it: the fold applies a train's counts in
    event-time order, which nothing after a shuffle is given (measured: FnApiRunner's batch
    mode fired a later stage's event-time timers before the fold had emitted the counts
    they were to wait for). A burst that has ended is closed at the train's next flush (a
    heartbeat's included); the fold arms its flush timer for the burst's end too (one timer:
    a second one, measured, fired before flushes due earlier on FnApiRunner).
    """

    def __init__(self, runs: TripRuns, rules: StopVisits, hold_us: int):
        """`hold_us`: how far behind a flush's time its counts may still be arriving (the
        reorder delay and a flush interval)."""
        self._runs, self._rules, self._hold_us = runs, rules, hold_us
        self._visits = beam.metrics.Metrics.counter("occupancy", "stop_visits")
        self._unscheduled = beam.metrics.Metrics.counter("occupancy", "stop_visits_unscheduled")

    def setup(self) -> None:
        self._runs.setup()

    def flush(self, key: str, applied, fired_us: int, cell) -> Tuple[list, Optional[int]]:
        """At a flush of the train: `applied`, (Event, the train's value after it) of each count
        it applied (none: a flush armed for the visits alone). (The rows of the visits that
        closed, as tagged outputs; when to flush again for them if no count comes, or None.)"""
        state = self._read(cell)
        closed = []
        for event, value in applied:
            count = DoorCount(event.device_id, event.seq, event.event_time_us, event.delta, value)
            closed += self._rules.add(state, count, self._runs.run_at(key, count.event_time_us))
        now = fired_us - self._hold_us
        closed += self._rules.close(state, now, self._runs.run_at(key, now))
        if applied or closed:
            cell.write(state)
        # For when no flush comes (the last stop before a layover; the end of a replay's input):
        # a microsecond past the run's end as occupancy.schedule.trip_of sees it.
        at = self._rules.next_close_us(state, schedule.LATE_S * 1_000_000 + 1)
        again = at + self._hold_us if at is not None and at + self._hold_us > fired_us else None
        return self._rows(key, closed), again

    def _rows(self, key: str, closed) -> list:
        timezone, out = self._rules.timezone, []
        for visit in closed:
            self._visits.inc()
            if visit.stop is None:
                self._unscheduled.inc()
            trip = tides.trip_performed_row(visit, key, timezone)
            if trip is not None:
                out.append(beam.pvalue.TaggedOutput(TRIPS_PERFORMED, trip))
            out.append(beam.pvalue.TaggedOutput(STOP_VISITS, tides.stop_visit_row(visit, key, timezone)))
            for row in tides.passenger_event_rows(visit, key, timezone):
                out.append(beam.pvalue.TaggedOutput(PASSENGER_EVENTS, row))
        return out

    def _read(self, cell) -> VisitState:
        state = cell.read()
        if state is None:
            return VisitState()
        if state.key[0] and state.run is None:  # decoded: the run by its key
            state.run = self._runs.run_of(state.key)
            if state.run is None:  # the schedule changed under it: its visits end here
                state.key, state.visits, state.next_stop = ("", ""), 0, 0
        return state


def tracker(
    project: str,
    database: str,
    trains_collection: str,
    refresh_s: float,
    gtfs_static: str,
    timezone: str,
    gap_s: float,
    hold_s: float,
) -> StopVisitTracker:
    runs = TripRuns(project, database, trains_collection, refresh_s, gtfs_static)
    rules = StopVisits(gap_us=int(gap_s * 1_000_000), timezone=zoneinfo.ZoneInfo(timezone))
    return StopVisitTracker(runs, rules, int(hold_s * 1_000_000))
