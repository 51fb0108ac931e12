"""The demo fleet's timetable (sim.timetable): a feed occupancy.schedule reads as the job and the
API do, whose trips the simulated trains keep to, at any time of day, across midnight and a
change of clocks."""

import datetime
import itertools

import pytest

from occupancy import wire
from occupancy.schedule import Schedule
from sim import simulator, timetable
from sim.simulator import SimConfig, Simulation

S = 1_000_000
NO_FAULTS = SimConfig(faults=simulator.FaultRates(0, 0, 0))


@pytest.fixture(scope="module")
def feed(tmp_path_factory):
    files = timetable.gtfs_files(datetime.date(2027, 1, 1), datetime.date(2027, 12, 31))
    return Schedule.from_zip(Schedule.write_zip(tmp_path_factory.mktemp("feed") / "demo.zip", files))


def test_every_train_has_a_trip_under_way_at_any_moment(feed):
    for train in simulator.DEMO_FLEET:
        for moment in ("2027-03-01T00:00:05Z", "2027-03-01T11:17:44Z", "2027-03-28T01:30:00Z", "2027-10-31T23:59:59Z"):
            at = datetime.datetime.fromisoformat(moment.replace("Z", "+00:00"))
            run = feed.current_run(train.train_id, at)
            assert run is not None and run.starts_at <= at <= run.ends_at + datetime.timedelta(
                seconds=timetable.STOP_S
            ), (train.train_id, moment, run)


def test_the_due_stops_are_the_feeds_stop_times(feed):
    start_us = wire.parse_time("2027-03-27T23:55:00Z")  # past local midnight and into the clock change
    for train in simulator.DEMO_FLEET:
        due = timetable.stops_from(train.train_id, start_us)
        stops = [next(due) for _ in range(60)]
        assert stops[0].arrive_us >= start_us and stops[0].index == 0  # a train begins at a trip's first stop
        assert all(a.arrive_us < a.depart_us <= b.arrive_us for a, b in zip(stops, stops[1:]))
        for stop in stops:
            leaves = datetime.datetime.fromtimestamp(stop.depart_us / S, datetime.timezone.utc)
            run = feed.current_run(train.train_id, leaves)
            assert run.trip.trip_id == stop.trip_id
            scheduled = run.trip.stops[stop.index]
            assert run.at(scheduled.departure_s) == leaves
            assert stop.depart_us - stop.arrive_us == timetable.DWELL_S * S


@pytest.mark.parametrize("start", ["2027-03-27T21:00:00Z", "2027-10-30T21:00:00Z"], ids=["forward", "back"])
def test_a_train_keeps_to_one_trip_at_a_time_when_clocks_change(start):
    for train in simulator.DEMO_FLEET:
        due = timetable.stops_from(train.train_id, wire.parse_time(start))
        stops = [next(due) for _ in range(8 * 40)]  # 40 trips: through the change
        assert all(a.depart_us <= b.arrive_us for a, b in zip(stops, stops[1:]))
        assert all(s.index == k % timetable.STOPS_PER_TRIP for k, s in enumerate(stops))


def test_a_phase_moves_every_trip_so_that_a_train_begins_one_when_asked():
    start = datetime.datetime(2027, 5, 4, 10, 0, 7, tzinfo=timetable.zoneinfo.ZoneInfo(timetable.TIMEZONE))
    phase = (10 * 3600 + 7 + 30) % timetable.HEADWAY_S  # as the demo does: 30 s from now
    moved = Schedule(timetable.gtfs_files(start.date(), start.date(), phase))
    for k, train in enumerate(simulator.DEMO_FLEET):
        first = next(timetable.stops_from(train.train_id, int(start.timestamp()) * S, phase))
        leaves = datetime.datetime.fromtimestamp(first.depart_us / S, datetime.timezone.utc)
        assert (leaves - start).total_seconds() == 30 + k * timetable.STOP_S // 4
        assert moved.current_run(train.train_id, leaves).starts_at == leaves


def test_the_simulated_trains_stop_when_and_where_the_timetable_says(feed):
    start_us = wire.parse_time("2027-05-04T07:58:31.250Z")
    sim = Simulation(simulator.DEMO_FLEET, 3, NO_FAULTS, timetable=timetable.stops_from)
    list(sim.messages(start_us, 900))
    made = sim.truth.stops
    # Each train waits for its next trip to begin (at most HEADWAY_S), then stops every STOP_S.
    assert len(made) >= len(simulator.DEMO_FLEET) * ((900 - timetable.HEADWAY_S) // timetable.STOP_S - 1)
    due = {
        (train.train_id, d.arrive_us): d
        for train in simulator.DEMO_FLEET
        for d in itertools.islice(timetable.stops_from(train.train_id, start_us), 900 // timetable.STOP_S)
    }
    for stop in made:
        scheduled = due[stop.train_id, stop.begin_us]
        assert (stop.end_us, stop.stop_index) == (scheduled.depart_us, scheduled.index)
        if scheduled.index == timetable.STOPS_PER_TRIP - 1:
            assert stop.boarded == 0  # the terminus: everybody out
    # Riders board at the first stops and leave at the last, trip after trip.
    boarded = {k: sum(s.boarded for s in made if s.stop_index == k) for k in range(timetable.STOPS_PER_TRIP)}
    assert boarded[0] > boarded[timetable.STOPS_PER_TRIP - 2] > 0


def test_the_seeded_history_is_valid_tides_on_the_feeds_trips_and_rides_less_at_weekends(feed):
    from sim.timetable_history import history
    from tests.tides_spec import spec_problems

    days = [datetime.date(2027, 3, 1) + datetime.timedelta(days=k) for k in range(14)]  # Monday to Sunday, twice
    seeded = history(simulator.DEMO_FLEET, days, (7 * 3600, 9 * 3600), seed=4)
    for table in ("stop_visits", "trips_performed"):
        rows = getattr(seeded, table)
        assert rows and [p for r in rows for p in spec_problems(table, r)] == [], table
    trips = {r["trip_id_performed"]: r for r in seeded.trips_performed}
    for visit in seeded.stop_visits:
        run = feed.run(feed.trips[trips[visit["trip_id_performed"]]["trip_id_scheduled"]], visit["service_date"])
        stop = run.trip.stops[visit["trip_stop_sequence"] - 1]
        assert (stop.stop_id, run.at(stop.departure_s)) == (visit["stop_id"], visit["schedule_departure_time"])
        assert 7 * 3600 <= run.trip.start_s < 9 * 3600
        if visit["trip_stop_sequence"] == timetable.STOPS_PER_TRIP:
            assert visit["departure_load"] == 0
    # Each train's runs in the window, every day; a few visits missing.
    assert len(trips) == len(days) * sum(
        sum(7 * 3600 <= r.start_s < 9 * 3600 for r in timetable.runs(t.train_id)) for t in simulator.DEMO_FLEET
    )
    assert (
        0.95 * len(trips) * timetable.STOPS_PER_TRIP < len(seeded.stop_visits) < len(trips) * timetable.STOPS_PER_TRIP
    )

    def boarded(weekdays):
        return sum(v["boarding_1"] for v in seeded.stop_visits if v["service_date"].weekday() in weekdays)

    assert boarded({5, 6}) / 4 < 0.8 * boarded({0, 1, 2, 3}) / 8  # a weekend day carries fewer
