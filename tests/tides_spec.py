"""What the TIDES specification says of each table's fields, written out here by hand from its
JSON schemas (TIDES-transit/TIDES, spec/stop_visits.schema.json,
spec/passenger_events.schema.json and spec/trips_performed.schema.json, v1.0) rather than
read from occupancy.tides, which the rows and tables are made with. route_type's and
ntd_mode's long value lists are left out: no row here fills them.

Each field: (Frictionless type, required, minimum, enum). The spec's fields a door counter
cannot know (fares, ramps, bikes, locations) are listed too, so that a field the project adds
is checked to be one of the spec's.
"""

_DOOR_STATUS = (
    "Doors did not open",
    "Front door opened and back doors remain closed",
    "Back doors opened and front door remained closed",
    "All doors opened",
    "Other configuration",
)
_EVENT_TYPES = (
    "Vehicle arrived at stop",
    "Vehicle departed stop",
    "Door opened",
    "Door closed",
    "Passenger boarded",
    "Passenger alighted",
    "Kneel was engaged",
    "Kneel was disengaged",
    "Ramp was deployed",
    "Ramp was raised",
    "Ramp deployment failed",
    "Lift was deployed",
    "Lift was raised",
    "Individual bike boarded",
    "Individual bike alighted",
    "Bike rack deployed",
)

TIDES_FIELDS = {
    "stop_visits": {
        "service_date": ("date", True, None, ()),
        "trip_id_performed": ("string", True, None, ()),
        "trip_stop_sequence": ("integer", True, 1, ()),
        "scheduled_stop_sequence": ("integer", False, 0, ()),
        "pattern_id": ("string", False, None, ()),
        "vehicle_id": ("string", False, None, ()),
        "dwell": ("integer", False, 0, ()),
        "stop_id": ("string", False, None, ()),
        "timepoint": ("boolean", False, None, ()),
        "schedule_arrival_time": ("datetime", False, None, ()),
        "schedule_departure_time": ("datetime", False, None, ()),
        "actual_arrival_time": ("datetime", False, None, ()),
        "actual_departure_time": ("datetime", False, None, ()),
        "distance": ("integer", False, 0, ()),
        "boarding_1": ("integer", False, 0, ()),
        "alighting_1": ("integer", False, 0, ()),
        "boarding_2": ("integer", False, 0, ()),
        "alighting_2": ("integer", False, 0, ()),
        "departure_load": ("integer", False, 0, ()),
        "door_open": ("datetime", False, None, ()),
        "door_close": ("datetime", False, None, ()),
        "door_status": ("string", False, None, _DOOR_STATUS),
        "ramp_deployed_time": ("number", False, 0, ()),
        "ramp_failure": ("boolean", False, None, ()),
        "kneel_deployed_time": ("number", False, 0, ()),
        "lift_deployed_time": ("number", False, 0, ()),
        "bike_rack_deployed": ("boolean", False, None, ()),
        "bike_load": ("integer", False, 0, ()),
        "revenue": ("number", False, None, ()),
        "number_of_transactions": ("integer", False, 0, ()),
        "schedule_relationship": ("string", False, None, ("Scheduled", "Skipped", "Added", "Missing")),
    },
    "passenger_events": {
        "passenger_event_id": ("string", True, None, ()),
        "service_date": ("date", True, None, ()),
        "event_timestamp": ("datetime", True, None, ()),
        "location_ping_id": ("string", False, None, ()),
        "trip_id_performed": ("string", False, None, ()),
        "trip_id_scheduled": ("string", False, None, ()),
        "trip_stop_sequence": ("integer", True, 1, ()),
        "scheduled_stop_sequence": ("integer", False, 0, ()),
        "event_type": ("string", True, None, _EVENT_TYPES),
        "vehicle_id": ("string", True, None, ()),
        "device_id": ("string", False, None, ()),
        "train_car_id": ("string", False, None, ()),
        "stop_id": ("string", False, None, ()),
        "pattern_id": ("string", False, None, ()),
        "event_count": ("integer", False, 0, ()),
    },
}

TIDES_FIELDS["trips_performed"] = {
    "service_date": ("date", True, None, ()),
    "trip_id_performed": ("string", True, None, ()),
    "vehicle_id": ("string", True, None, ()),
    "trip_id_scheduled": ("string", False, None, ()),
    "route_id": ("string", False, None, ()),
    "route_type": ("string", False, None, ()),
    "ntd_mode": ("string", False, None, ()),
    "route_type_agency": ("string", False, None, ()),
    "shape_id": ("string", False, None, ()),
    "pattern_id": ("string", False, None, ()),
    "direction_id": ("integer", False, None, (0, 1)),
    "operator_id": ("string", False, None, ()),
    "block_id": ("string", False, None, ()),
    "trip_start_stop_id": ("string", False, None, ()),
    "trip_end_stop_id": ("string", False, None, ()),
    "schedule_trip_start": ("datetime", False, None, ()),
    "schedule_trip_end": ("datetime", False, None, ()),
    "actual_trip_start": ("datetime", False, None, ()),
    "actual_trip_end": ("datetime", False, None, ()),
    "trip_type": (
        "string",
        False,
        None,
        (
            "In service",
            "Deadhead",
            "Layover",
            "Pullout",
            "Pullin",
            "Extra Pullout",
            "Extra Pullin",
            "Deadhead To Layover",
            "Deadhead From Layover",
            "Other not in service",
        ),
    ),
    "schedule_relationship": ("string", False, None, ("Scheduled", "Added", "Unscheduled", "Canceled", "Duplicated")),
}

TIDES_REQUIRED = {
    table: {name for name, (_, required, _, _) in fields.items() if required} for table, fields in TIDES_FIELDS.items()
}


def spec_problems(table: str, row: dict) -> list:
    """What keeps `row` from being valid against the spec's enums, minimums and required fields
    (the types are the project checker's and the Parquet and BigQuery schemas' to hold)."""
    fields = TIDES_FIELDS[table]
    out = [f"{name} is not a TIDES field" for name in row if name not in fields]
    for name, (_, required, minimum, enum) in fields.items():
        value = row.get(name)
        if value is None:
            out += [f"{name} is required"] if required else []
        elif minimum is not None and value < minimum:
            out.append(f"{name}: {value} below {minimum}")
        elif enum and value not in enum:
            out.append(f"{name}: {value!r} is not one of the spec's values")
    return out
