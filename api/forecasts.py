"""The load ahead (docs/forecast.md): a trip's forecast at each of its stops, and a stop's next
departures with theirs. `python -m pipeline.forecast` writes them to Firestore (one document per
trip and service date, occupancy.forecast.rows.trip_document); the API reads them.

The public gets the level and the percentage in the public steps, as for the live numbers;
an operator (or `--public_precision exact`) gets the loads and their p10-p90 too.

Today, for a trip a train is out on now (api/trip_updates.running_trips), an operator gets at
the stops still to come the same-day forecast (occupancy.forecast.same_day: the day-ahead
forecast corrected by the count on board, while it is fresh), marked `same_day`, without
p10-p90, which the correction does not give. The public keeps the day-ahead forecast:
corrected from its coarse sample it was worse than uncorrected.
"""

import datetime
from typing import Dict, List, Optional, Tuple

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request

from adapters.store import count_ops
from api import public
from api.auth import READ_RESPONSES, allow_read
from api.deps import ClientDep, SettingsDep, read_fleet, read_forecasts
from api.models import StopDepartures, TripForecast
from api.services import services_of
from api.trip_updates import on_board, running_trips
from occupancy import fleet, privacy, schedule
from occupancy.forecast import same_day
from occupancy.forecast.rows import document_id
from occupancy.levels import NO_DATA_AVAILABLE, OCCUPANCY_LEVELS

router = APIRouter(tags=["forecast"], dependencies=[Depends(allow_read)], responses=READ_RESPONSES)
MAX_DEPARTURES = 50
FORECAST_CACHE_S = 60.0


def _stop_out(stop: dict, exact: bool, policy: privacy.Policy) -> dict:
    """A stop's forecast as this caller may see it: the loads for operators, the percentage in
    the public steps for the public."""
    out = {k: stop.get(k) for k in ("stop_sequence", "stop_id", "occupancy_status", "occupancy_percentage", "same_day")}
    if exact:
        out.update({k: stop.get(k) for k in ("predicted_load", "predicted_load_p10", "predicted_load_p90")})
    elif out["occupancy_percentage"] is not None:
        out["occupancy_percentage"] = round(100 * privacy.coarse_ratio(out["occupancy_percentage"] / 100, policy))
    return out


def _running(request: Request, claims) -> Dict[Tuple[str, str], tuple]:
    """(trip_id, service date) -> (train view, run) of a train with a capacity on it now, as this
    caller may see it (api/trip_updates.running_trips)."""
    return {
        (run.trip.trip_id, run.service_date.isoformat()): (view, run)
        for view, run in running_trips(request, claims, read_fleet(request))
        if view.capacity
    }


def _with_same_day(
    stops: List[dict], live, document: dict, now: datetime.datetime, thresholds: fleet.Thresholds
) -> List[dict]:
    """The document's stops, those still to come of the train `live` (view, run) corrected."""
    view, run = live
    load_now = on_board(view)
    if load_now is None or same_day.left_last(run, now) is None:
        return stops  # no count on board (the public), or not left its first stop: nothing to correct
    loads = {seq: load for seq, _, load in same_day.stops_to_come(run, document, load_now, now)}
    out = []
    for stop in stops:
        load = loads.get(stop["stop_sequence"])
        if load is not None:
            ratio = load / view.capacity
            stop = {
                **stop,
                "predicted_load": round(load),
                "predicted_load_p10": None,
                "predicted_load_p90": None,
                "occupancy_percentage": round(100 * ratio),
                "occupancy_status": thresholds.status(ratio),
                "same_day": True,
            }
        out.append(stop)
    return out


def _service_date(request: Request, trip_id: str) -> datetime.date:
    """The trip's service date when none is asked for: yesterday's while its run past midnight
    is still under way, else today (the feed's zone; UTC without a feed)."""
    loaded = services_of(request).schedule
    now = datetime.datetime.now(datetime.timezone.utc)
    day = loaded.service_date_of(trip_id, now) if loaded is not None else None
    return day or now.astimezone(loaded.timezone if loaded is not None else datetime.timezone.utc).date()


@router.get(
    "/v1/trips/{trip_id}/forecast",
    response_model=TripForecast,
    response_model_exclude_none=True,
    summary="A trip's forecast load at each of its stops",
    responses={404: {"description": "No forecast for that trip and date"}, 422: {"description": "Invalid date"}},
)
def trip_forecast(
    request: Request,
    settings: SettingsDep,
    client: ClientDep,
    trip_id: str = Path(min_length=1, max_length=200, description="A trip_id of the static feed."),
    date: Optional[datetime.date] = Query(
        None,
        description="Its service date (default: today in the feed's zone; yesterday while a run of "
        "yesterday's is still under way past midnight).",
    ),
    claims: Optional[dict] = Depends(allow_read),
):
    loaded = services_of(request).schedule
    if loaded is not None and trip_id not in loaded.trips:  # answered without a read
        raise HTTPException(status_code=404, detail=f"no trip {trip_id} in the static feed")
    day = date or _service_date(request, trip_id)
    document = _document(request, settings, client, trip_id, day)
    exact = public.exact_for(request, claims)
    now = datetime.datetime.now(datetime.timezone.utc)
    stops, live = _stops(document), _running(request, claims).get((trip_id, day.isoformat()))
    if live is not None:
        stops = _with_same_day(stops, live, document, now, settings.thresholds)
    shown = [_stop_out(s, exact, services_of(request).privacy_policy) for s in stops]
    return {
        "trip_id": trip_id,
        "service_date": day.isoformat(),
        "model": document.get("model") if isinstance(document.get("model"), str) else None,
        "history_days": document.get("history_days") if type(document.get("history_days")) is int else None,
        "forecast_start": document.get("forecast_start") if isinstance(document.get("forecast_start"), str) else None,
        "train_id": live[0].train_id if live else None,
        "stops": _with_schedule(shown, services_of(request).schedule, trip_id, day),
    }


def _with_schedule(stops: List[dict], loaded: Optional[schedule.Schedule], trip_id: str, day) -> List[dict]:
    """The stops with their names and scheduled departures on `day`, where the static feed has
    the trip and it runs that day."""
    trip = loaded.trips.get(trip_id) if loaded is not None else None
    if trip is None or not loaded.runs_on(trip.service_id, day):
        return stops
    run = loaded.run(trip, day)
    times = {stop.stop_sequence: stop for stop in trip.stops}
    out = []
    for stop in stops:
        scheduled = times.get(stop["stop_sequence"])
        if scheduled is not None:
            stop = {
                **stop,
                "stop_name": loaded.stop_names.get(scheduled.stop_id) or None,
                "departure_time": run.at(scheduled.departure_s),
            }
        out.append(stop)
    return out


def _document(request: Request, settings, client, trip_id: str, day: datetime.date) -> dict:
    """A trip's forecast document, read at most once per FORECAST_CACHE_S (the forecast job
    writes it once a run; every open dashboard asks for each train's): a missing one is not
    kept, so a forecast written is served at once."""

    def read() -> dict:
        ref = client.collection(settings.forecast_collection).document(document_id(trip_id, day.isoformat()))
        snapshot = ref.get(timeout=settings.firestore_timeout_s)
        count_ops(reads=1)
        if not snapshot.exists:
            raise HTTPException(
                status_code=404, detail=f"no forecast for trip {trip_id} on {day}: run the forecast job"
            )
        return snapshot.to_dict()

    return services_of(request).forecast_documents.get((settings.forecast_collection, trip_id, day.isoformat()), read)


def _board_documents(request: Request, settings, ids: Tuple[str, ...]) -> Dict[str, dict]:
    """The forecast documents of a departures board (one batched read), read at most once per
    FORECAST_CACHE_S for the same departures: every open board asks every few seconds."""
    if not ids:
        return {}
    return services_of(request).forecast_boards.get(
        (settings.forecast_collection, ids), lambda: read_forecasts(request, ids)
    )


_WHOLE = ("occupancy_percentage", "predicted_load", "predicted_load_p10", "predicted_load_p90")


def _stops(document: dict) -> List[dict]:
    """The document's stops that say which stop they are, each value of another type than the
    forecast job writes left out (a document written by hand may hold anything: a percentage
    as text was a 500)."""
    out = []
    for stop in document.get("stops") or []:
        if not isinstance(stop, dict) or type(stop.get("stop_sequence")) is not int:
            continue
        stop = {k: v for k, v in stop.items() if k != "same_day"}  # the API's to say, never a document's
        stop.update({k: stop[k] if type(stop.get(k)) is int else None for k in _WHOLE})
        stop["stop_id"] = stop.get("stop_id") if isinstance(stop.get("stop_id"), str) else None
        status = stop.get("occupancy_status")
        stop["occupancy_status"] = status if status in OCCUPANCY_LEVELS or status == NO_DATA_AVAILABLE else None
        out.append(stop)
    return out


def _stop_index(loaded: schedule.Schedule) -> Dict[str, List[Tuple[schedule.Trip, schedule.StopTime]]]:
    index: Dict[str, List[Tuple[schedule.Trip, schedule.StopTime]]] = {}
    for trip in loaded.trips.values():
        for stop in trip.stops:
            index.setdefault(stop.stop_id, []).append((trip, stop))
    return index


@router.get(
    "/v1/stops/{stop_id}/departures",
    response_model=StopDepartures,
    response_model_exclude_none=True,
    summary="A stop's next departures, each with its forecast level",
    responses={409: {"description": "No static schedule loaded"}},
)
def stop_departures(
    request: Request,
    settings: SettingsDep,
    stop_id: str = Path(min_length=1, max_length=200, description="A stop_id of the static feed."),
    limit: int = Query(10, ge=1, le=MAX_DEPARTURES),
    claims: Optional[dict] = Depends(allow_read),
):
    """From the static schedule: the next `limit` departures at the stop within a day; their
    forecast from the documents of their trips (one batched read)."""
    services = services_of(request)
    loaded = services.schedule
    if loaded is None:
        raise HTTPException(status_code=409, detail="no static schedule: start the API with --gtfs_static GTFS.zip")
    if services.stop_index is None:
        services.stop_index = _stop_index(loaded)
    now = datetime.datetime.now(datetime.timezone.utc)
    today = now.astimezone(loaded.timezone).date()
    upcoming = []
    for trip, stop in services.stop_index.get(stop_id, ()):
        for day in (today - datetime.timedelta(days=1), today, today + datetime.timedelta(days=1)):
            if loaded.runs_on(trip.service_id, day):
                run = loaded.run(trip, day)
                leaves = run.at(stop.departure_s)
                if now <= leaves <= now + datetime.timedelta(days=1):
                    upcoming.append((leaves, run, stop))
    upcoming.sort(key=lambda item: (item[0], item[1].trip.trip_id))
    upcoming = upcoming[:limit]
    ids = tuple(document_id(run.trip.trip_id, run.service_date.isoformat()) for _, run, _ in upcoming)
    documents = _board_documents(request, settings, ids)
    exact = public.exact_for(request, claims)
    running = _running(request, claims) if upcoming else {}
    departures = []
    for leaves, run, stop in upcoming:
        document = documents.get(document_id(run.trip.trip_id, run.service_date.isoformat())) or {}
        stops, live = _stops(document), running.get((run.trip.trip_id, run.service_date.isoformat()))
        if live is not None:
            stops = _with_same_day(stops, live, document, now, settings.thresholds)
        forecast = next((s for s in stops if s["stop_sequence"] == stop.stop_sequence), None)
        shown = _stop_out(forecast, exact, services_of(request).privacy_policy) if forecast else {}
        departures.append(
            {
                "trip_id": run.trip.trip_id,
                "service_date": run.service_date.isoformat(),
                "route_id": run.trip.route_id,
                "route_short_name": run.trip.route_short_name,
                "headsign": run.trip.headsign,
                "stop_sequence": stop.stop_sequence,
                "departure_time": leaves,
                "occupancy_status": shown.get("occupancy_status") or "NO_DATA_AVAILABLE",
                **{k: v for k, v in shown.items() if k not in ("stop_sequence", "stop_id", "occupancy_status")},
            }
        )
    name = loaded.stop_names.get(stop_id) or None
    return {"stop_id": stop_id, "stop_name": name, "generated_at": now, "departures": departures}
