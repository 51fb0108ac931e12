"""Stop visits, door counts and trips as rows of the TIDES tables `stop_visits`,
`passenger_events` and `trips_performed` (docs/design.md, "TIDES tables"), and the tables'
fields as this system fills them; and `occupancy_forecast`, the forecast job's table (not a
TIDES table: its rows are occupancy.forecast.rows'), so that the same Parquet and BigQuery
writers carry it.

TIDES (Transit ITS Data Exchange Specification, https://tides-transit.org) describes each
table as a Frictionless Table Schema. `FIELDS` lists, per table, every field the
specification requires and every one filled here, with the type and constraints the
specification gives it; the rest of its fields (fares, ramps, locations) are not known to a
door counter and are left out, which TIDES allows. The Parquet and BigQuery schemas are made
from `FIELDS` (adapters.tides_parquet), and `problems` checks a row against it.

Ids are made from the data, never drawn: a replay of the same counts makes the same rows.

* `trip_id_performed`: `<service date>:<trip_id>:<train>` on a scheduled trip, and
  `<service date>:<train>` for a train on no known trip (its whole service day is one trip
  performed: there is nothing else to cut it by);
* `passenger_event_id`: `<device>:<seq>`, the device's own numbering of its counts (each
  count is one event: a count is of people in or of people out, never both); a legacy
  count without seq is `<device>@<event time, µs>`.

All times are UTC; `service_date` is the trip's (GTFS's: a trip past midnight keeps the day
it started), or the train's local day in the feed's time zone without a trip.
"""

import datetime
from typing import Dict, Iterable, List, NamedTuple, Optional, Tuple

from occupancy.levels import NO_DATA_AVAILABLE, OCCUPANCY_LEVELS
from occupancy.stop_visits import StopVisit


class Field(NamedTuple):
    name: str
    type: str  # Frictionless: string, integer, number, boolean, date, datetime
    required: bool = False
    minimum: Optional[int] = None
    enum: Tuple[str, ...] = ()


BOARDED, ALIGHTED = "Passenger boarded", "Passenger alighted"
# A visit to a stop of the trip's schedule, and one to no stop of it (TIDES v1.0 calls that an
# added stop; "Unscheduled" was a value of its drafts, gone since 2023).
SCHEDULED, ADDED = "Scheduled", "Added"
# The GTFS-Realtime OccupancyStatus names a forecast row may carry.
FORECAST_LEVELS = (*OCCUPANCY_LEVELS, NO_DATA_AVAILABLE)
# A trip performed with no scheduled trip (trips_performed keeps "Unscheduled"), and in service.
UNSCHEDULED, IN_SERVICE = "Unscheduled", "In service"

FIELDS: Dict[str, Tuple[Field, ...]] = {
    "stop_visits": (
        Field("service_date", "date", required=True),
        Field("trip_id_performed", "string", required=True),
        Field("trip_stop_sequence", "integer", required=True, minimum=1),
        Field("scheduled_stop_sequence", "integer", minimum=0),
        Field("vehicle_id", "string"),  # always filled here; TIDES does not require it
        Field("stop_id", "string"),
        Field("dwell", "integer", minimum=0),
        Field("schedule_arrival_time", "datetime"),
        Field("schedule_departure_time", "datetime"),
        Field("actual_arrival_time", "datetime"),
        Field("actual_departure_time", "datetime"),
        Field("boarding_1", "integer", minimum=0),
        Field("alighting_1", "integer", minimum=0),
        Field("departure_load", "integer", minimum=0),
        Field(
            "schedule_relationship",
            "string",
            enum=("Scheduled", "Skipped", "Added", "Missing"),
        ),
    ),
    "passenger_events": (
        Field("passenger_event_id", "string", required=True),
        Field("service_date", "date", required=True),
        Field("event_timestamp", "datetime", required=True),
        Field("trip_id_performed", "string"),
        Field("trip_id_scheduled", "string"),
        Field("trip_stop_sequence", "integer", required=True, minimum=1),
        Field("scheduled_stop_sequence", "integer", minimum=0),
        Field("event_type", "string", required=True, enum=(BOARDED, ALIGHTED)),
        Field("vehicle_id", "string", required=True),
        Field("device_id", "string"),
        Field("stop_id", "string"),
        Field("event_count", "integer", minimum=0),
    ),
    "trips_performed": (
        Field("service_date", "date", required=True),
        Field("trip_id_performed", "string", required=True),
        Field("vehicle_id", "string", required=True),
        Field("trip_id_scheduled", "string"),
        Field("route_id", "string"),
        Field("direction_id", "integer", enum=(0, 1)),
        Field("trip_start_stop_id", "string"),
        Field("trip_end_stop_id", "string"),
        Field("schedule_trip_start", "datetime"),
        Field("schedule_trip_end", "datetime"),
        Field("trip_type", "string", enum=(IN_SERVICE,)),
        Field("schedule_relationship", "string", enum=(SCHEDULED, UNSCHEDULED)),
    ),
    # Not TIDES: the forecast job's output (docs/forecast.md), one row per scheduled departure.
    "occupancy_forecast": (
        Field("service_date", "date", required=True),
        Field("trip_id", "string", required=True),
        Field("stop_sequence", "integer", required=True, minimum=0),
        Field("stop_id", "string"),
        Field("predicted_load", "integer", minimum=0),
        Field("predicted_load_p10", "integer", minimum=0),
        Field("predicted_load_p90", "integer", minimum=0),
        Field("occupancy_percentage", "integer", minimum=0),
        Field("occupancy_status", "string", enum=FORECAST_LEVELS),
        Field("model", "string", required=True),
        Field("history_days", "integer", required=True, minimum=0),
        Field("forecast_start", "date", required=True),
    ),
}
# Each table's key: what a row is the one row of. TIDES's primaryKey; stop_visits' names the
# vehicle too, which its trip_id_performed already holds (so it is no less unique), for
# BigQuery to cluster a day's visits by train.
KEYS = {
    "stop_visits": ("service_date", "trip_id_performed", "trip_stop_sequence", "vehicle_id"),
    "passenger_events": ("passenger_event_id",),
    "trips_performed": ("service_date", "trip_id_performed"),
    # Each run forecasts from its start on: a day is forecast again by every later run.
    "occupancy_forecast": ("service_date", "trip_id", "stop_sequence", "forecast_start"),
}


def table_label(table: str) -> str:
    """StopVisits, PassengerEvents: the table's name in CamelCase (Beam labels, proto messages)."""
    return "".join(part.title() for part in table.split("_"))


def in_key_order(table: str, rows: Iterable[dict]) -> List[dict]:
    """The rows sorted by the table's key: the order both sinks write them in, whatever order
    the runner handed them over."""
    return sorted(rows, key=lambda r: tuple(str(r.get(k)) for k in KEYS[table]))


def _utc(us: Optional[int]) -> Optional[datetime.datetime]:
    if us is None:
        return None
    return datetime.datetime.fromtimestamp(us // 1_000_000, datetime.timezone.utc).replace(microsecond=us % 1_000_000)


def service_date(visit: StopVisit, timezone: datetime.tzinfo) -> datetime.date:
    if visit.run is not None:
        return visit.run.service_date
    return _utc(visit.arrived_us).astimezone(timezone).date()


def trip_id_performed(visit: StopVisit, train_id: str, timezone: datetime.tzinfo) -> str:
    """The visit's `trip_id_performed`: `<service date>:<trip_id>:<train>`, or `<service date>:<train>` on no trip.

    Args:
        visit: the stop visit.
        train_id: the train that made it.
        timezone: the feed's time zone, which gives the service date of a visit on no known trip.
    """
    day = service_date(visit, timezone).isoformat()
    return f"{day}:{visit.run.trip.trip_id}:{train_id}" if visit.run is not None else f"{day}:{train_id}"


def stop_visit_row(visit: StopVisit, train_id: str, timezone: datetime.tzinfo) -> dict:
    """One `stop_visits` row. The doors' first and last counts stand for arrival and departure
    (the train stood there at least that long): a stop with no count has no actual times.

    Args:
        visit: the stop visit.
        train_id: the train that made it (the row's `vehicle_id`).
        timezone: the feed's time zone, which gives the service date of a visit on no known trip.
    """
    stop, run = visit.stop, visit.run
    return {
        "service_date": service_date(visit, timezone),
        "trip_id_performed": trip_id_performed(visit, train_id, timezone),
        "trip_stop_sequence": visit.trip_stop_sequence,
        "scheduled_stop_sequence": stop.stop_sequence if stop else None,
        "vehicle_id": train_id,
        "stop_id": (stop.stop_id or None) if stop else None,
        "dwell": (visit.departed_us - visit.arrived_us) // 1_000_000 if visit.counts else None,
        "schedule_arrival_time": run.at(stop.arrival_s).astimezone(datetime.timezone.utc) if stop else None,
        "schedule_departure_time": run.at(stop.departure_s).astimezone(datetime.timezone.utc) if stop else None,
        "actual_arrival_time": _utc(visit.arrived_us),
        "actual_departure_time": _utc(visit.departed_us),
        "boarding_1": visit.boarded,  # every door: the registry does not know a door's side (design.md)
        "alighting_1": visit.alighted,
        "departure_load": visit.departure_load,
        "schedule_relationship": SCHEDULED if stop else ADDED,
    }


def trip_performed_row(visit: StopVisit, train_id: str, timezone: datetime.tzinfo) -> Optional[dict]:
    """The `trips_performed` row of the trip a run's first visit begins (None for any other
    visit): each trip performed is made once, by its first visit, whatever follows. It links
    `trip_id_performed` to the GTFS trip; the actual times are its stop visits'.

    Args:
        visit: the stop visit.
        train_id: the train that made it (the row's `vehicle_id`).
        timezone: the feed's time zone, which gives the service date of a visit on no known trip.
    """
    if visit.trip_stop_sequence != 1:
        return None
    run = visit.run
    stops = run.trip.stops if run is not None else ()
    return {
        "service_date": service_date(visit, timezone),
        "trip_id_performed": trip_id_performed(visit, train_id, timezone),
        "vehicle_id": train_id,
        "trip_id_scheduled": run.trip.trip_id if run else None,
        "route_id": (run.trip.route_id or None) if run else None,
        "direction_id": run.trip.direction_id if run else None,
        "trip_start_stop_id": stops[0].stop_id if stops else None,
        "trip_end_stop_id": stops[-1].stop_id if stops else None,
        "schedule_trip_start": run.at(stops[0].departure_s).astimezone(datetime.timezone.utc) if stops else None,
        "schedule_trip_end": run.at(stops[-1].arrival_s).astimezone(datetime.timezone.utc) if stops else None,
        "trip_type": IN_SERVICE,
        "schedule_relationship": SCHEDULED if run else UNSCHEDULED,
    }


def passenger_event_rows(visit: StopVisit, train_id: str, timezone: datetime.tzinfo) -> List[dict]:
    """One `passenger_events` row per count of the visit (counts of nobody are left out).

    Args:
        visit: the stop visit.
        train_id: the train that made it (the row's `vehicle_id`).
        timezone: the feed's time zone, which gives the service date of a visit on no known trip.
    """
    if not visit.counts:
        return []
    stop = visit.stop
    common = {
        "service_date": service_date(visit, timezone),
        "trip_id_performed": trip_id_performed(visit, train_id, timezone),
        "trip_id_scheduled": visit.run.trip.trip_id if visit.run else None,
        "trip_stop_sequence": visit.trip_stop_sequence,
        "scheduled_stop_sequence": stop.stop_sequence if stop else None,
        "vehicle_id": train_id,
        "stop_id": (stop.stop_id or None) if stop else None,
    }
    return [
        {
            "passenger_event_id": _event_id(count),
            "event_timestamp": _utc(count.event_time_us),
            "event_type": BOARDED if count.delta > 0 else ALIGHTED,
            "device_id": count.device_id,
            "event_count": abs(count.delta),
            **common,
        }
        for count in visit.counts
        if count.delta
    ]


def _event_id(count) -> str:
    # A legacy count has no seq (occupancy.wire.NO_SEQ): its device and time name it, as its
    # de-duplication does (the time is in its event_id).
    return f"{count.device_id}:{count.seq}" if count.seq >= 0 else f"{count.device_id}@{count.event_time_us}"


_TYPES = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "date": datetime.date,
    "datetime": datetime.datetime,
}


def problems(table: str, row: dict) -> List[str]:
    """What keeps `row` from being a valid row of `table` as FIELDS describe it (empty: none)."""
    fields = {f.name: f for f in FIELDS[table]}
    out = [f"unknown field {name}" for name in row if name not in fields]
    for f in fields.values():
        value = row.get(f.name)
        if value is None:
            if f.required:
                out.append(f"{f.name} is required")
            continue
        kind = _TYPES[f.type]
        wrong = not isinstance(value, kind) or (f.type == "integer" and isinstance(value, bool))
        if f.type == "date" and isinstance(value, datetime.datetime):
            wrong = True
        if f.type == "datetime" and not wrong and value.tzinfo is None:
            out.append(f"{f.name} has no time zone")
        if wrong:
            out.append(f"{f.name}: {type(value).__name__}, not {f.type}")
        elif f.type == "integer" and not -(2**63) <= value < 2**63:  # what Parquet and BigQuery hold
            out.append(f"{f.name}: {value} past 64 bits")
        elif f.minimum is not None and value < f.minimum:
            out.append(f"{f.name}: {value} below {f.minimum}")
        elif f.enum and value not in f.enum:
            out.append(f"{f.name}: {value!r} not one of {f.enum}")
    return out
