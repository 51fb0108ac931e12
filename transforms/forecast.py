"""The forecast job's steps between its reads and its writes (docs/forecast.md):

* `JoinObservations`: {"stop_visits", "trips_performed": PCollection[row]} ->
  PCollection[(route_id, Observation)]: each visit on the GTFS trip its trip performed ran
  (occupancy.forecast.history), keyed by the trip's route in the static feed;
* `ForecastRoutes`: PCollection[(route_id, Observation)] -> PCollection[forecast row]: per route
  of the static feed (those without history too), the model fitted on the route's history and
  a row for each departure it runs from `start` for `days` days (occupancy.forecast.rows).
  The capacity of a trip's latest train comes from the registry's trains, when one is named.
"""

import datetime
import logging
import uuid
from typing import Optional

import apache_beam as beam

from adapters import registry
from adapters.store import RetryPolicy, make_client
from occupancy.forecast import history, model, rows
from transforms import worker_cache
from transforms.stop_visits import read_schedule

_LOGGER = logging.getLogger(__name__)


class _Schedule:
    """The static feed, read once per worker process."""

    def __init__(self, path: str):
        self._path, self._key = path, f"forecast-schedule-{uuid.uuid4()}"

    def get(self):
        return worker_cache.get(self._key, lambda: read_schedule(self._path))


class _ToObservations(beam.DoFn):
    """((service_date, trip_id_performed), {"visits": rows, "trips": rows}) -> (route, Observation)."""

    def __init__(self, schedule: _Schedule):
        self._schedule = schedule
        self._unknown = beam.metrics.Metrics.counter("forecast", "observations_of_trips_not_in_the_feed")
        self._observations = beam.metrics.Metrics.counter("forecast", "observations")

    def process(self, element):
        _, grouped = element
        found, _ = history.observations(grouped["visits"], grouped["trips"])
        trips = self._schedule.get().trips
        for o in found:
            trip = trips.get(o.trip_id)
            if trip is None:
                self._unknown.inc()
                continue
            self._observations.inc()
            yield trip.route_id, o


def _performed(row):
    return (row["service_date"].isoformat(), row["trip_id_performed"]), row


class JoinObservations(beam.PTransform):
    """See the module's docstring."""

    def __init__(self, gtfs_static: str):
        super().__init__()
        self._schedule = _Schedule(gtfs_static)

    def expand(self, tables):
        return (
            {
                "visits": tables["stop_visits"] | "KeyVisits" >> beam.Map(_performed),
                "trips": tables["trips_performed"] | "KeyTrips" >> beam.Map(_performed),
            }
            | "ByTripPerformed" >> beam.CoGroupByKey()
            | "Observations" >> beam.ParDo(_ToObservations(self._schedule))
        )


class _Routes(beam.DoFn):
    """None -> every route id of the static feed."""

    def __init__(self, schedule: _Schedule):
        self._schedule = schedule

    def process(self, _):
        yield from sorted({trip.route_id for trip in self._schedule.get().trips.values()})


class _Capacities(beam.DoFn):
    """None -> (train_id, capacity) of each train the registry gives a capacity."""

    def __init__(self, project: Optional[str], database: str, trains_collection: str):
        self._project, self._database, self._trains = project, database, trains_collection

    def process(self, _):
        if not self._project:
            return
        client = make_client(self._project, self._database)
        snapshot = RetryPolicy().call(lambda: registry.load_trains(client, self._trains))
        for train_id, entry in sorted(snapshot.trains.items()):
            if entry.capacity:
                yield train_id, entry.capacity


class _ForecastRoute(beam.DoFn):
    """(route, {"observations": [...], "route": [...]}) + capacities -> the route's forecast rows."""

    def __init__(self, schedule: _Schedule, start: datetime.date, days: int):
        self._schedule, self._start, self._days = schedule, start, days
        self._rows = beam.metrics.Metrics.counter("forecast", "rows")
        self._no_data = beam.metrics.Metrics.counter("forecast", "rows_without_history")
        self._failed = beam.metrics.Metrics.counter("forecast", "routes_failed")

    def process(self, element, capacities):
        route, grouped = element
        observations = list(grouped["observations"])
        schedule = self._schedule.get()
        slots = history.slots(schedule, self._start, self._days, {route})
        try:
            fitted = model.Model(observations, schedule, self._start)
            predictions, history_days = fitted.predict(slots), fitted.history_days
        except Exception:  # noqa: BLE001 - one route's fit must not fail the forecast of every route
            self._failed.inc()
            _LOGGER.exception("Route %s: the model failed on its history; its departures get no forecast", route)
            predictions, history_days = [None] * len(slots), 0
        latest = rows.latest_vehicles(o for o in observations if o.service_date < self._start)
        capacity = {trip: capacities[train] for trip, train in latest.items() if train in capacities}
        _LOGGER.info(
            "Route %s: %s observations over %s days, %s departures forecast",
            route,
            len(observations),
            history_days,
            len(slots),
        )
        for row in rows.forecast_rows(slots, predictions, capacity, model.NAME, history_days, self._start):
            self._rows.inc()
            if row["predicted_load"] is None:
                self._no_data.inc()
            yield row


class ForecastRoutes(beam.PTransform):
    """See the module's docstring."""

    def __init__(
        self,
        gtfs_static: str,
        start: datetime.date,
        days: int,
        project: Optional[str] = None,
        database: str = "(default)",
        trains_collection: str = "trains",
    ):
        super().__init__()
        self._schedule = _Schedule(gtfs_static)
        self._start, self._days = start, days
        self._registry = (project, database, trains_collection)

    def expand(self, observations):
        pipeline = observations.pipeline
        routes = (
            pipeline
            | "Start" >> beam.Create([None])
            | "Routes" >> beam.ParDo(_Routes(self._schedule))
            | "KeyRoutes" >> beam.Map(lambda route: (route, None))
        )
        capacities = (
            pipeline | "StartRegistry" >> beam.Create([None]) | "Capacities" >> beam.ParDo(_Capacities(*self._registry))
        )
        return (
            {"observations": observations, "route": routes}
            | "ByRoute" >> beam.CoGroupByKey()
            | "Forecast"
            >> beam.ParDo(_ForecastRoute(self._schedule, self._start, self._days), beam.pvalue.AsDict(capacities))
        )
