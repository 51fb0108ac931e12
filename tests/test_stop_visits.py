"""occupancy.stop_visits: door counts grouped into stops and matched to the trip's stop times;
occupancy.tides: those visits as TIDES rows; adapters.tides_parquet: the rows as files."""

import datetime
import pathlib
from zoneinfo import ZoneInfo

import pytest

from adapters import tides_parquet
from occupancy import tides
from occupancy.schedule import Schedule, StopTime
from occupancy.stop_visits import DoorCount, StopVisits, VisitState
from tests import schedule_feed
from tests.tides_spec import TIDES_FIELDS, TIDES_REQUIRED, spec_problems

ZURICH = ZoneInfo("Europe/Zurich")
DAY = datetime.date(2026, 12, 3)  # a Thursday: the weekday service runs
FILES = schedule_feed.WITH_STOPS


@pytest.fixture(scope="module")
def schedule():
    return Schedule(FILES)


def at_us(hh_mm_ss: str) -> int:
    h, m, s = map(int, hh_mm_ss.split(":"))
    return int(datetime.datetime(2026, 12, 3, h, m, s, tzinfo=ZURICH).timestamp() * 1_000_000)


class Doors:
    """Counts as a train's doors send them, with the train's running load after each."""

    def __init__(self, load=0):
        self.load, self.seq = load, 0

    def burst(self, hh_mm_ss: str, *deltas, device="t1-d1"):
        out = []
        for k, delta in enumerate(deltas):
            self.load += delta
            self.seq += 1
            out.append(DoorCount(device, self.seq, at_us(hh_mm_ss) + k * 5_000_000, delta, self.load))
        return out


def visit_all(counts, run_of, close_after_each=False):
    """Every visit the counts make, closed at the end (at the last count + 2 hours)."""
    rules, state, visits = StopVisits(), VisitState(), []
    for count in counts:
        visits += rules.add(state, count, run_of(count.event_time_us))
        if close_after_each:  # as a timer at the burst's end would, when no count came first
            due = rules.due_us(state)
            visits += rules.close(state, due - 1, run_of(due - 1))
    end = counts[-1].event_time_us + 7_200_000_000
    return visits + rules.close(state, end, run_of(end))


def r1_then_nothing(schedule):
    run = schedule.run(schedule.trips["r1"], DAY)
    return lambda t_us: run if t_us < at_us("09:00:00") else None


def summary(visits):
    return [
        (v.trip_stop_sequence, v.stop.stop_id if v.stop else None, v.boarded, v.alighted, v.departure_load)
        for v in visits
    ]


def test_the_schedule_keeps_every_stop_of_a_trip_with_its_times(schedule):
    stops = schedule.trips["ic1832-wd"].stops
    assert [(s.stop_sequence, s.stop_id) for s in stops] == [(1, "basel"), (2, "zurich"), (3, "chur")]
    assert (stops[1].arrival_s, stops[1].departure_s) == (9 * 3600, 9 * 3600 + 120)


def test_each_stop_is_one_visit_with_its_ons_offs_and_departure_load(schedule):
    doors = Doors()
    counts = (
        doors.burst("08:00:05", 3, 2, 4)
        + doors.burst("08:10:10", -1, 2)
        + doors.burst("08:20:00", -3, 1)
        + doors.burst("08:30:00", -4, -4)
    )
    visits = visit_all(counts, r1_then_nothing(schedule))
    assert summary(visits) == [(1, "a", 9, 0, 9), (2, "b", 2, 1, 10), (3, "c", 1, 3, 8), (4, "d", 0, 8, 0)]
    first = visits[0]
    assert (first.arrived_us, first.departed_us) == (at_us("08:00:05"), at_us("08:00:15"))


def test_a_stop_where_nobody_got_on_or_off_is_a_visit_of_nobody_with_the_load_carried(schedule):
    doors = Doors()
    counts = doors.burst("08:00:05", 5) + doors.burst("08:20:05", -2) + doors.burst("08:30:00", -3)
    visits = visit_all(counts, r1_then_nothing(schedule))
    assert summary(visits) == [(1, "a", 5, 0, 5), (2, "b", 0, 0, 5), (3, "c", 0, 2, 3), (4, "d", 0, 3, 0)]
    assert visits[1].arrived_us is None and visits[1].counts == ()


def test_a_delay_growing_past_the_time_between_stops_still_matches_each_stop(schedule):
    # 4 more minutes late at each stop: at c (08:28) the train is nearer d's time (08:30) than
    # c's (08:20), and at d 12 minutes late, more than a stop interval.
    doors = Doors()
    counts = (
        doors.burst("08:00:05", 4)
        + doors.burst("08:14:00", 1)
        + doors.burst("08:28:00", -2)
        + doors.burst("08:42:00", -3)
    )
    visits = visit_all(counts, lambda t: schedule.run(schedule.trips["r1"], DAY))
    assert [s for _, s, *_ in summary(visits)] == ["a", "b", "c", "d"]


def test_a_burst_far_from_every_stop_left_is_an_unscheduled_visit(schedule):
    doors = Doors()
    counts = doors.burst("08:00:05", 4) + doors.burst("08:30:00", -1) + doors.burst("08:58:00", -3)
    visits = visit_all(counts, r1_then_nothing(schedule))
    assert summary(visits) == [
        (1, "a", 4, 0, 4),
        (2, "b", 0, 0, 4),
        (3, "c", 0, 0, 4),
        (4, "d", 0, 1, 3),
        (5, None, 0, 3, 0),  # after the last stop: no stop of the trip is within 15 minutes
    ]


def test_a_train_on_no_known_trip_makes_unscheduled_visits_in_order():
    doors = Doors()
    counts = doors.burst("08:00:05", 4) + doors.burst("08:05:00", -1, 2)
    visits = visit_all(counts, lambda t: None)
    assert summary(visits) == [(1, None, 4, 0, 4), (2, None, 2, 1, 5)]


def test_a_door_that_never_stops_counting_cannot_hold_a_burst_open_without_bound():
    """A door counting twice a second for ever (a chattering sensor, or a hostile device)
    kept one burst open: every count in the train's state, re-encoded at each flush, and no
    visit until it paused. A burst of MAX_BURST_COUNTS counts is a visit and the next begins."""
    from occupancy.stop_visits import MAX_BURST_COUNTS

    rules, state, visits = StopVisits(), VisitState(), []
    start, load = at_us("08:00:00"), 0
    for seq in range(1, 3 * MAX_BURST_COUNTS + 2):
        delta = 1 if seq % 2 else -1
        load += delta
        visits += rules.add(state, DoorCount("chatter", seq, start + seq * 500_000, delta, load), None)
        assert len(state.counts) <= MAX_BURST_COUNTS
    assert [len(v.counts) for v in visits] == [MAX_BURST_COUNTS] * 3
    assert [v.trip_stop_sequence for v in visits] == [1, 2, 3]


def test_a_new_run_ends_the_last_with_its_remaining_stops_and_starts_counting_again(schedule):
    r1, r2 = (schedule.run(schedule.trips[t], DAY) for t in ("r1", "r2"))
    doors = Doors()
    counts = doors.burst("08:00:05", 4) + doors.burst("08:10:00", 2) + doors.burst("09:00:00", -6, 3)
    visits = visit_all(counts, lambda t: r1 if t < at_us("08:50:00") else r2 if t < at_us("10:00:00") else None)
    assert [(v.run.trip.trip_id, *s) for v, s in zip(visits, summary(visits))] == [
        ("r1", 1, "a", 4, 0, 4),
        ("r1", 2, "b", 2, 0, 6),
        ("r1", 3, "c", 0, 0, 6),
        ("r1", 4, "d", 0, 0, 6),
        ("r2", 1, "d", 3, 6, 3),
        ("r2", 2, "a", 0, 0, 3),
    ]


def test_a_train_that_stops_counting_makes_no_visits_of_the_trips_its_number_runs_later():
    """Its number runs every hour all day; its doors counted on one trip, then fell silent (the
    train parked). Closing whenever the rules ask to (the timers a flush arms, which a batch
    replay fires one after the other up to the end of time) ends that trip and nothing more."""
    hourly = dict(FILES)
    hourly["trips.txt"] += "".join(f"ic3,weekdays,h{h},2001,Chur,0\n" for h in range(9, 24))
    hourly["stop_times.txt"] += "".join(
        f"h{h},{h}:00:00,{h}:00:00,a,1\nh{h},{h}:10:00,{h}:10:00,b,2\n" for h in range(9, 24)
    )
    schedule = Schedule(hourly)
    rules, state = StopVisits(), VisitState()
    count = Doors().burst("08:00:05", 4)[0]

    def run_of(t_us):
        when = datetime.datetime.fromtimestamp(t_us / 1_000_000, datetime.timezone.utc)
        return schedule.current_run("2001", when)

    visits, closes = rules.add(state, count, run_of(count.event_time_us)), 0
    while (at := rules.next_close_us(state, 3_600_000_001)) is not None and closes < 30:
        visits += rules.close(state, at, run_of(at))
        closes += 1
    assert closes < 30, "the rules kept asking to close"
    assert [(v.run.trip.trip_id, *s) for v, s in zip(visits, summary(visits))] == [
        ("r1", 1, "a", 4, 0, 4),
        ("r1", 2, "b", 0, 0, 4),
        ("r1", 3, "c", 0, 0, 4),
        ("r1", 4, "d", 0, 0, 4),
    ]


def test_a_delay_carries_into_the_next_trip_through_a_close_between_them(schedule):
    """r1 runs 20 minutes late; a flush between the trips (a heartbeat's) ends r1 before r2's
    first count: r2 still starts 20 minutes late, its stops matched as without that flush."""
    r1, r2 = (schedule.run(schedule.trips[t], DAY) for t in ("r1", "r2"))

    def run_of(t_us):
        return r1 if t_us < at_us("09:00:00") else r2

    doors = Doors()
    counts = (
        doors.burst("08:20:00", 4)
        + doors.burst("08:30:00", 1)
        + doors.burst("08:39:00", -1)
        + doors.burst("08:50:00", -4)
        + doors.burst("09:20:00", 3)
        + doors.burst("09:50:00", -3)
    )
    rules, state, visits, between = StopVisits(), VisitState(), [], at_us("09:05:00")
    for count in counts:
        if counts[0].event_time_us < between < count.event_time_us and state.run is r1:
            visits += rules.close(state, between, run_of(between))
            assert state.run is None  # r1 is over: the train is on no run until its next count
        visits += rules.add(state, count, run_of(count.event_time_us))
    end = counts[-1].event_time_us + 7_200_000_000
    visits += rules.close(state, end, run_of(end))
    assert summary(visits) == summary(visit_all(counts, run_of))
    assert [(v.run.trip.trip_id, v.stop.stop_id) for v in visits if v.run is r2] == [("r2", "d"), ("r2", "a")]


def test_a_days_delay_does_not_carry_into_the_next_morning(schedule):
    """r1 ran later and later, 25 minutes late at its end, then the train had no trip all
    evening; next morning r1 runs on time, and each stop is its own."""
    today, tomorrow = (schedule.run(schedule.trips["r1"], d) for d in (DAY, DAY + datetime.timedelta(days=1)))
    next_day = 24 * 3600 * 1_000_000

    def run_of(t_us):
        return today if t_us < at_us("09:00:00") else tomorrow if t_us > at_us("07:00:00") + next_day else None

    doors = Doors()
    late = doors.burst("08:10:00", 4) + doors.burst("08:25:00", -1) + doors.burst("08:40:00", -1)
    late += doors.burst("08:55:00", -2)
    on_time = [
        c._replace(event_time_us=c.event_time_us + next_day)
        for c in doors.burst("08:00:00", 2) + doors.burst("08:10:00", 1) + doors.burst("08:20:00", -1)
    ]
    rules, state, visits = StopVisits(), VisitState(), []
    for count in late:
        visits += rules.add(state, count, run_of(count.event_time_us))
    visits += rules.close(state, at_us("08:56:00"), run_of(at_us("08:56:00")))
    assert state.delay_us > rules.window_us  # later than a stop's window: it must not carry
    evening = at_us("20:00:00")
    visits += rules.close(state, evening, run_of(evening))  # a heartbeat's flush, no trip now
    for count in on_time:
        visits += rules.add(state, count, run_of(count.event_time_us))
    end = on_time[-1].event_time_us + 7_200_000_000
    visits += rules.close(state, end, run_of(end))
    assert [(v.stop.stop_id if v.stop else None, v.boarded) for v in visits if v.run is tomorrow] == [
        ("a", 2),
        ("b", 1),
        ("c", 0),
    ]


def test_closing_at_every_burst_end_makes_the_same_visits_as_closing_once(schedule):
    doors = Doors()
    counts = (
        doors.burst("08:00:05", 3, 2)
        + doors.burst("08:20:00", -1)
        + doors.burst("08:31:00", -4)
        + doors.burst("08:59:00", 1)
        + doors.burst("09:20:00", -1)
    )
    run_of = r1_then_nothing(schedule)
    assert visit_all(counts, run_of, close_after_each=True) == visit_all(counts, run_of)


# ---- TIDES rows ------------------------------------------------------------------------------


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


def test_a_stop_time_of_a_feed_without_departure_takes_its_arrival():
    files = {
        **FILES,
        "stop_times.txt": "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n"
        "r1,08:00:00,,a,1\nr1,,08:10:00,b,2\nr1,,,x,3\nr1,08:30:00,08:30:00,d,4\n",
    }
    stops = Schedule(files).trips["r1"].stops
    # x has no time: not a StopTime, but d is the trip's fourth stop still.
    assert stops == (
        StopTime(1, "a", 8 * 3600, 8 * 3600, place=1),
        StopTime(2, "b", 8 * 3600 + 600, 8 * 3600 + 600, place=2),
        StopTime(4, "d", 8 * 3600 + 1800, 8 * 3600 + 1800, place=4),
    )


def test_a_trip_begins_at_its_first_stop_even_when_its_clock_is_nearer_the_second(schedule):
    # 8 minutes late at a (08:00): nearer b's time (08:10) than a's; the trip's first visit
    # passes a stop only when the clock says so clearly.
    doors = Doors()
    counts = doors.burst("08:08:00", 5) + doors.burst("08:18:10", 2)
    visits = visit_all(counts, r1_then_nothing(schedule))
    assert summary(visits)[:2] == [(1, "a", 5, 0, 5), (2, "b", 2, 0, 7)]


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
