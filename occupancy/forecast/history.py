"""What a forecast learns from and what it predicts: observed departure loads from the TIDES
tables, and the slots (a trip on a service date at a stop) the static schedule runs."""

import datetime
from typing import Dict, Iterable, List, NamedTuple, Optional, Tuple

from occupancy.schedule import Schedule, Trip

# More people than any train carries: a load above this is no count.
MAX_LOAD = 10_000


class Observation(NamedTuple):
    """One stop visit's departure load, on the GTFS trip its trip performed ran."""

    service_date: datetime.date
    trip_id: str
    stop_sequence: int
    stop_id: str
    load: int
    vehicle_id: str


class Slot(NamedTuple):
    """A scheduled departure: a trip on a service date at one of its stops."""

    service_date: datetime.date
    trip_id: str
    stop_sequence: int
    stop_id: str
    route_id: str
    direction_id: int
    departure_s: int  # seconds after the service day's reference (GTFS time)
    position: int  # 0 at the trip's first stop
    stops: int  # the trip's number of stops
    service_id: str


def _date(value) -> Optional[datetime.date]:
    if isinstance(value, datetime.datetime):
        return value.date()
    if isinstance(value, datetime.date):
        return value
    if isinstance(value, str):
        try:
            return datetime.date.fromisoformat(value.strip())
        except ValueError:
            return None
    return None


def _int(value) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def observations(
    stop_visits: Iterable[dict], trips_performed: Iterable[dict]
) -> Tuple[List[Observation], List[Tuple[dict, str]]]:
    """(the observations, (row, why) of each row that cannot be one). A visit counts when its
    trip performed names a scheduled trip and it has a scheduled stop and a departure load;
    a visit of an unscheduled trip or an added stop is no observation and no problem. A visit
    given twice (the same day, trip performed, stop sequences and vehicle: a replay appended
    to a BigQuery table again) counts once, the higher load if they differ."""
    scheduled: Dict[Tuple[datetime.date, str], str] = {}
    problems: List[Tuple[dict, str]] = []
    for row in trips_performed:
        day, performed = _date(row.get("service_date")), row.get("trip_id_performed")
        if day is None or not isinstance(performed, str) or not performed:
            problems.append((row, "trips_performed: no service_date or trip_id_performed"))
            continue
        if row.get("trip_id_scheduled"):
            scheduled[(day, performed)] = str(row["trip_id_scheduled"])
    out: Dict[tuple, Observation] = {}
    for row in stop_visits:
        day, performed = _date(row.get("service_date")), row.get("trip_id_performed")
        sequence, load = _int(row.get("scheduled_stop_sequence")), _int(row.get("departure_load"))
        if day is None or not isinstance(performed, str):
            problems.append((row, "stop_visits: no service_date or trip_id_performed"))
            continue
        trip = scheduled.get((day, performed))
        if trip is None or sequence is None or row.get("departure_load") in (None, ""):
            continue
        if load is None or not 0 <= load <= MAX_LOAD:
            problems.append((row, f"stop_visits: departure_load {row.get('departure_load')!r} is no count"))
            continue
        seen = Observation(day, trip, sequence, str(row.get("stop_id") or ""), load, str(row.get("vehicle_id") or ""))
        key = (day, performed, _int(row.get("trip_stop_sequence")), sequence, seen.vehicle_id)
        if key not in out or (load, seen.stop_id) > (out[key].load, out[key].stop_id):
            out[key] = seen
    return list(out.values()), problems


def slots(schedule: Schedule, start: datetime.date, days: int, route_ids: Optional[set] = None) -> List[Slot]:
    """Every scheduled departure from `start` for `days` days (of the routes named, or all)."""
    by_service: Dict[str, List[Trip]] = {}
    for trip in schedule.trips.values():
        if route_ids is None or trip.route_id in route_ids:
            by_service.setdefault(trip.service_id, []).append(trip)
    out = []
    for offset in range(days):
        day = start + datetime.timedelta(days=offset)
        for service in sorted(schedule.services_on(day) & set(by_service)):
            for trip in sorted(by_service[service], key=lambda t: t.trip_id):
                for position, stop in enumerate(trip.stops):
                    out.append(
                        Slot(
                            day,
                            trip.trip_id,
                            stop.stop_sequence,
                            stop.stop_id,
                            trip.route_id,
                            trip.direction_id or 0,
                            stop.departure_s,
                            position,
                            len(trip.stops),
                            trip.service_id,
                        )
                    )
    return out
