"""GTFS-Realtime TripUpdates with the forecast load at each stop still to come, for journey
planners (docs/forecast.md, "Same day").

    GET /gtfs-rt/trip-updates.pb              protobuf FeedMessage
    GET /gtfs-rt/trip-updates.pb?format=json  the same message as JSON

One TripUpdate per scheduled trip under way now (--gtfs_static) with a train out on it
(`out_on_its_trip`: counting now, or seen since the run began and quiet since, or put on it by
an operator; one train per run) that has a forecast (the forecast job's document for the trip
and service date) and a capacity: the levels are a forecast, which a train whose doors went
quiet still has. Each stop after the last one whose scheduled departure has passed gets a
StopTimeUpdate with `departure_occupancy_status` (experimental in GTFS-RT), and
`schedule_relationship NO_DATA` as the specification asks of an update without times.

For an operator the level is the same-day forecast (occupancy.forecast.same_day): the
day-ahead forecast corrected by the count on board now, while that count is fresh; for the
public, and for a train whose count is stale, the day-ahead forecast (corrected from the
public's coarse sample, it was worse than uncorrected).
"""

import datetime
from typing import Dict, Iterable, List, Optional, Tuple

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from api.auth import READ_RESPONSES, allow_read
from api.deps import SettingsDep, read_fleet, read_forecasts, trip_for
from api.gtfs_rt import GTFS_RT_VERSION, PROTOBUF, feed_response
from api.public import exact_for, views_for
from api.services import services_of
from occupancy import fleet
from occupancy.forecast import same_day
from occupancy.forecast.rows import document_id
from occupancy.schedule import EARLY_S

router = APIRouter(
    prefix="/gtfs-rt", tags=["GTFS-Realtime"], dependencies=[Depends(allow_read)], responses=READ_RESPONSES
)


def on_board(view: fleet.TrainView) -> Optional[float]:
    """The load on board the same-day correction starts from: the count, which operators see,
    while it is fresh; None for the public, whose coarse sample would make it worse than none
    (docs/forecast.md: MAE 9.4 people a stop ahead from it, against 6.0 for the day-ahead
    forecast), and for a count that is stale (the train may have emptied since)."""
    if view.current_value is None or view.status != fleet.STATUS_OK:
        return None
    return float(view.current_value)


def out_on_its_trip(view: fleet.TrainView, run, source: Optional[str]) -> bool:
    """Whether a train is taken to be out on the run its number (or an assignment) gives it: its
    doors counting now; or seen since just before the run began (EARLY_S), quiet since; or put
    on it by an operator. A train never seen, or last seen before the run, is not: a train in
    the depot keeps its number."""
    if view.status == fleet.STATUS_OK or source == "assignment":
        return True
    return view.last_seen is not None and view.last_seen >= run.starts_at - datetime.timedelta(seconds=EARLY_S)


def _claim(view: fleet.TrainView, source: Optional[str]) -> tuple:
    """How strongly a train claims its run, for two on one run: counting now first, then put on
    it by an operator, then the one seen last."""
    seen = view.last_seen.timestamp() if view.last_seen else 0.0
    return (view.status == fleet.STATUS_OK, source == "assignment", seen, view.train_id)


def running_trips(request: Request, claims, fleet_read: Tuple[datetime.datetime, list]) -> List[Tuple]:
    """(train view as this caller may see it, run) of the train out on each scheduled trip at the
    fleet read (read at, views) (out_on_its_trip; of two on one run, the stronger _claim),
    decided on the exact views: found once per fleet view (every train's trip looked up: 0.35 s
    at 10,000 trains)."""
    generated_at, views = fleet_read

    def build():
        chosen = {}
        for view, shown in zip(views, views_for(request, views, generated_at, claims)):
            run, source = trip_for(request, view, generated_at)
            if run is None or not out_on_its_trip(view, run, source):
                continue
            key, claim = (run.trip.trip_id, run.service_date), _claim(view, source)
            if key not in chosen or claim > chosen[key][0]:
                chosen[key] = (claim, shown, run)
        return sorted(((shown, run) for _, shown, run in chosen.values()), key=lambda pair: pair[0].train_id)

    exact = exact_for(request, claims)
    return services_of(request).trips_ahead.get(("running", exact), (views,), generated_at, build)


def build_trip_updates(
    running: Iterable[Tuple[fleet.TrainView, object, dict]],
    generated_at: datetime.datetime,
    thresholds: fleet.Thresholds,
):
    """The FeedMessage for (train view, run, forecast document) of each train running a trip."""
    from google.transit import gtfs_realtime_pb2 as pb

    feed = pb.FeedMessage()
    feed.header.gtfs_realtime_version = GTFS_RT_VERSION
    feed.header.incrementality = pb.FeedHeader.FULL_DATASET
    feed.header.timestamp = int(generated_at.timestamp())
    for view, run, forecast in running:
        if not view.capacity:
            continue
        ahead = same_day.stops_to_come(run, forecast, on_board(view), generated_at)
        if not ahead:
            continue
        entity = feed.entity.add()
        entity.id = f"{view.train_id}@{run.trip.trip_id}"
        update = entity.trip_update
        update.trip.trip_id = run.trip.trip_id
        update.trip.route_id = run.trip.route_id
        update.trip.start_date = run.start_date
        update.trip.start_time = run.start_time
        if run.trip.direction_id is not None:
            update.trip.direction_id = run.trip.direction_id
        update.trip.schedule_relationship = pb.TripDescriptor.SCHEDULED
        update.vehicle.id = view.train_id
        update.vehicle.label = view.name or view.train_id
        update.timestamp = int(generated_at.timestamp())
        for sequence, stop_id, load in ahead:
            stop = update.stop_time_update.add()
            stop.stop_sequence = sequence
            if stop_id:
                stop.stop_id = stop_id
            stop.schedule_relationship = pb.TripUpdate.StopTimeUpdate.NO_DATA
            level = thresholds.status(load / view.capacity)
            stop.departure_occupancy_status = pb.VehiclePosition.OccupancyStatus.Value(level)
    return feed


def _forecasts(request: Request, runs: Dict[str, object]) -> Dict[str, dict]:
    """train_id -> the forecast document of the run it is on (one batched read)."""
    ids = {train: document_id(run.trip.trip_id, run.service_date.isoformat()) for train, run in runs.items()}
    found = read_forecasts(request, ids.values())
    return {train: found[i] for train, i in ids.items() if i in found}


def trips_ahead(request: Request, claims: Optional[dict]) -> Tuple[bool, datetime.datetime, List[Tuple]]:
    """(exact, read at, [(train view, run, forecast document)]) of each train on a scheduled
    trip now with a forecast for it, as this caller may see it: what the TripUpdates feed and
    SIRI-ET (api/siri_et.py) are built from, read once per fleet view."""
    generated_at, views = read_fleet(request)
    exact = exact_for(request, claims)

    def build():
        runs = {view.train_id: (view, run) for view, run in running_trips(request, claims, (generated_at, views))}
        forecasts = _forecasts(request, {train: run for train, (_, run) in runs.items()})
        return [(*runs[train], forecast) for train, forecast in sorted(forecasts.items())]

    ahead = services_of(request).trips_ahead.get(("trips", exact), (views,), generated_at, build)
    return exact, generated_at, ahead


@router.get(
    "/trip-updates.pb",
    summary="GTFS-Realtime TripUpdates: the forecast level at each stop to come",
    response_class=Response,
    responses={
        200: {
            "content": {PROTOBUF: {}, "application/json": {}},
            "description": "A FeedMessage (protobuf, or JSON with ?format=json)",
        }
    },
)
def trip_updates(
    request: Request,
    settings: SettingsDep,
    format: str = Query("pb", pattern="^(pb|json)$", description="pb (default) or json"),
    claims: Optional[dict] = Depends(allow_read),
):
    exact, generated_at, ahead = trips_ahead(request, claims)
    feed = services_of(request).trips_ahead.get(
        ("trip-updates", exact),
        (ahead,),
        generated_at,
        lambda: build_trip_updates(ahead, generated_at, settings.thresholds),
    )
    return feed_response(request, ("trip-updates", exact), feed, generated_at, format)
