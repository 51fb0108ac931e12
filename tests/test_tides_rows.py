"""Stop visits as TIDES rows (occupancy.tides: stop_visits, passenger_events, trips_performed),
checked against the TIDES specification's fields (tests/tides_spec.py), and written as Parquet
(adapters.tides_parquet)."""

import datetime
import pathlib

import pytest

from adapters import tides_parquet
from occupancy import tides
from occupancy.schedule import Schedule
from tests.door_visits import DAY, FILES, ZURICH, Doors, at_us, r1_then_nothing, visit_all
from tests.tides_spec import TIDES_FIELDS, TIDES_REQUIRED, spec_problems


@pytest.fixture(scope="module")
def schedule():
    return Schedule(FILES)


@pytest.fixture
def visits(schedule):
    doors = Doors()
    counts = doors.burst("08:00:05", 3, 2) + doors.burst("08:20:00", -1) + doors.burst("08:58:00", 1, -2)
    return visit_all(counts, r1_then_nothing(schedule))


def rows_of(visits):
    return (
        [tides.stop_visit_row(v, "t1", ZURICH) for v in visits],
        [r for v in visits for r in tides.passenger_event_rows(v, "t1", ZURICH)],
    )


def test_the_tables_declare_every_field_tides_requires_as_required():
    for table, required in TIDES_REQUIRED.items():
        assert {f.name for f in tides.FIELDS[table] if f.required} == required


def test_every_field_filled_is_the_specs_with_its_type_minimum_and_values():
    for table, spec in TIDES_FIELDS.items():
        for f in tides.FIELDS[table]:
            kind, required, minimum, enum = spec[f.name]  # a KeyError: a field TIDES does not have
            assert (f.type, f.required, f.minimum) == (kind, required, minimum), f
            assert set(f.enum) <= set(enum), f


def test_every_row_made_is_valid_tides_and_the_checker_catches_what_is_not(visits):
    stop_rows, event_rows = rows_of(visits)
    assert {r["schedule_relationship"] for r in stop_rows} == {"Scheduled", "Added"}
    for table, rows in (("stop_visits", stop_rows), ("passenger_events", event_rows)):
        assert [spec_problems(table, r) for r in rows] == [[]] * len(rows)
    assert [tides.problems("stop_visits", r) for r in stop_rows] == [[]] * len(stop_rows)
    assert [tides.problems("passenger_events", r) for r in event_rows] == [[]] * len(event_rows)
    for table, row in (("stop_visits", stop_rows[0]), ("passenger_events", event_rows[0])):
        for field in TIDES_REQUIRED[table]:
            assert tides.problems(table, {**row, field: None}) == [f"{field} is required"]
    bad = {**stop_rows[0], "boarding_1": -1, "schedule_relationship": "Late", "colour": "red"}
    assert sorted(tides.problems("stop_visits", bad)) == sorted(
        [
            "unknown field colour",
            "boarding_1: -1 below 0",
            "schedule_relationship: 'Late' not one of " + repr(tides.FIELDS["stop_visits"][-1].enum),
        ]
    )
    naive = {**event_rows[0], "event_timestamp": datetime.datetime(2026, 12, 3, 8)}
    assert tides.problems("passenger_events", naive) == ["event_timestamp has no time zone"]


def test_rows_name_the_trip_stop_and_times_as_tides_asks(visits):
    stop_rows, event_rows = rows_of(visits)
    a = stop_rows[0]
    assert a["trip_id_performed"] == "2026-12-03:r1:t1" and a["service_date"] == DAY
    assert (a["stop_id"], a["scheduled_stop_sequence"], a["trip_stop_sequence"]) == ("a", 1, 1)
    assert a["schedule_departure_time"] == datetime.datetime(2026, 12, 3, 7, 0, tzinfo=datetime.timezone.utc)
    assert a["actual_departure_time"] == datetime.datetime(2026, 12, 3, 7, 0, 10, tzinfo=datetime.timezone.utc)
    assert (a["boarding_1"], a["alighting_1"], a["departure_load"], a["dwell"]) == (5, 0, 5, 5)
    c = stop_rows[2]
    assert (c["stop_id"], c["schedule_arrival_time"].minute, c["schedule_departure_time"].minute) == ("c", 19, 20)
    assert [(r["stop_id"], r["schedule_relationship"]) for r in stop_rows[3:]] == [
        ("d", "Scheduled"),  # passed, nobody through the doors, before ...
        (None, "Added"),  # ... a stop 28 minutes after d's time
    ]
    assert [(e["passenger_event_id"], e["event_type"], e["event_count"], e["stop_id"]) for e in event_rows] == [
        ("t1-d1:1", "Passenger boarded", 3, "a"),
        ("t1-d1:2", "Passenger boarded", 2, "a"),
        ("t1-d1:3", "Passenger alighted", 1, "c"),
        ("t1-d1:4", "Passenger boarded", 1, None),
        ("t1-d1:5", "Passenger alighted", 2, None),
    ]


def test_parquet_files_read_back_as_the_rows_and_are_the_same_bytes_when_written_again(visits, tmp_path):
    stop_rows, event_rows = rows_of(visits)
    paths = tides_parquet.write_partitioned(str(tmp_path), "stop_visits", reversed(stop_rows), "part-0")
    tides_parquet.write_partitioned(str(tmp_path), "passenger_events", event_rows, "part-0")
    assert [p.split(str(tmp_path))[1] for p in paths] == ["/stop_visits/service_date=2026-12-03/part-0.parquet"]
    table = tides_parquet.read_table(str(tmp_path), "stop_visits")
    assert sorted(table.to_pylist(), key=lambda r: r["trip_stop_sequence"]) == stop_rows
    events = tides_parquet.read_table(str(tmp_path), "passenger_events")
    assert sorted(events.column("passenger_event_id").to_pylist()) == sorted(
        r["passenger_event_id"] for r in event_rows
    )
    first = pathlib.Path(paths[0]).read_bytes()
    again = tides_parquet.write_partitioned(str(tmp_path), "stop_visits", stop_rows, "part-0")
    assert pathlib.Path(again[0]).read_bytes() == first  # rows in key order, whatever order they came in


def test_each_trip_performed_is_one_trips_performed_row_linking_it_to_its_gtfs_trip(schedule):
    r1, r2 = (schedule.run(schedule.trips[t], DAY) for t in ("r1", "r2"))
    doors = Doors()
    counts = doors.burst("08:00:05", 4) + doors.burst("08:10:00", 2) + doors.burst("09:00:00", -6, 3)
    counts += doors.burst("10:30:00", 1)  # then on no trip: the rest of its day is one trip performed
    runs = lambda t: r1 if t < at_us("08:50:00") else r2 if t < at_us("10:00:00") else None  # noqa: E731
    visits = visit_all(counts, runs)
    trips = [row for v in visits if (row := tides.trip_performed_row(v, "t1", ZURICH)) is not None]
    utc = datetime.timezone.utc
    assert [
        (t["trip_id_performed"], t["trip_id_scheduled"], t["route_id"], t["schedule_relationship"]) for t in trips
    ] == [
        ("2026-12-03:r1:t1", "r1", "ic3", "Scheduled"),
        ("2026-12-03:r2:t1", "r2", "ic3", "Scheduled"),
        ("2026-12-03:t1", None, None, "Unscheduled"),
    ]
    first = trips[0]
    assert (first["trip_start_stop_id"], first["trip_end_stop_id"], first["direction_id"]) == ("a", "d", 0)
    assert (first["schedule_trip_start"], first["schedule_trip_end"]) == (
        datetime.datetime(2026, 12, 3, 7, 0, tzinfo=utc),  # 08:00 in Zurich
        datetime.datetime(2026, 12, 3, 7, 30, tzinfo=utc),
    )
    # Each stop visit's trip_id_performed names one of these rows, and every row is valid TIDES.
    assert {tides.stop_visit_row(v, "t1", ZURICH)["trip_id_performed"] for v in visits} == {
        t["trip_id_performed"] for t in trips
    }
    assert [spec_problems("trips_performed", t) for t in trips] == [[]] * 3
    assert [tides.problems("trips_performed", t) for t in trips] == [[]] * 3
    assert tides.problems("trips_performed", {**first, "direction_id": 2}) == ["direction_id: 2 not one of (0, 1)"]
