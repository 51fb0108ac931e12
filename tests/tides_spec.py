"""What the TIDES specification requires of each table (its JSON schemas' "required"), written
out here rather than read from occupancy.tides, which the rows and tables are made with."""

TIDES_REQUIRED = {
    "stop_visits": {"service_date", "trip_id_performed", "trip_stop_sequence", "vehicle_id"},
    "passenger_events": {
        "passenger_event_id",
        "service_date",
        "event_timestamp",
        "trip_stop_sequence",
        "event_type",
        "vehicle_id",
    },
}
