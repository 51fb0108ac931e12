"""Trips from the static schedule: a train number to its trip on the service date, with
calendar_dates' exceptions and trips past midnight, and an operator's assignment first."""

import datetime
from zoneinfo import ZoneInfo

import pytest

from occupancy import schedule
from tests import schedule_feed

ZURICH = ZoneInfo("Europe/Zurich")


@pytest.fixture(scope="module")
def feed(tmp_path_factory):
    return schedule.Schedule.from_zip(schedule_feed.write(tmp_path_factory.mktemp("gtfs") / "gtfs.zip"))


def at(y, mo, d, h, mi=0):
    return datetime.datetime(y, mo, d, h, mi, tzinfo=ZURICH)


def run_of(feed, number, moment):
    run = feed.current_run(number, moment)
    return None if run is None else (run.trip.trip_id, run.start_date, run.start_time)


def test_the_same_number_is_a_different_trip_on_weekdays_and_at_weekends(feed):
    assert run_of(feed, "1832", at(2026, 12, 1, 8, 30)) == ("ic1832-wd", "20261201", "08:00:00")  # a Tuesday
    assert run_of(feed, "1832", at(2026, 12, 5, 9, 30)) == ("ic1832-we", "20261205", "09:00:00")  # a Saturday
    assert run_of(feed, "1832", at(2026, 12, 1, 7, 40)) == ("ic1832-wd", "20261201", "08:00:00")  # boarding
    assert run_of(feed, "1832", at(2026, 12, 1, 13, 0)) is None  # long arrived
    assert run_of(feed, "9999", at(2026, 12, 1, 8, 30)) is None


def test_calendar_dates_remove_and_add_service(feed):
    assert run_of(feed, "1832", at(2026, 12, 25, 8, 30)) is None  # a Friday, the weekday service removed
    assert run_of(feed, "1832", at(2026, 12, 24, 8, 30)) == ("ic1832-wd", "20261224", "08:00:00")
    assert run_of(feed, "1850", at(2026, 12, 8, 12, 30)) == ("ic1850-special", "20261208", "12:00:00")
    assert run_of(feed, "1850", at(2026, 12, 9, 12, 30)) is None  # added for one day only


def test_a_trip_past_midnight_belongs_to_the_previous_service_date(feed):
    # Wednesday 00:40: the trip that left on Tuesday at 23:30 (25:10:00 arrival).
    assert run_of(feed, "1999", at(2026, 12, 2, 0, 40)) == ("ic1999-night", "20261201", "23:30:00")
    # Saturday 00:40: Friday's trip (a weekday) is still under way.
    assert run_of(feed, "1999", at(2026, 12, 5, 0, 40)) == ("ic1999-night", "20261204", "23:30:00")
    # Monday 00:40: Sunday has no weekday service, so nothing is under way.
    assert run_of(feed, "1999", at(2026, 12, 7, 0, 40)) is None
    run = feed.current_run("1999", at(2026, 12, 2, 0, 40))
    assert run.ends_at == at(2026, 12, 2, 1, 10)


def test_a_trip_named_without_a_date_is_yesterdays_while_its_run_past_midnight_lasts(feed):
    day = datetime.date
    # Wednesday 00:40, and up to LATE_S after its 01:10 arrival: Tuesday's run; later, Wednesday's.
    assert feed.service_date_of("ic1999-night", at(2026, 12, 2, 0, 40)) == day(2026, 12, 1)
    assert feed.service_date_of("ic1999-night", at(2026, 12, 2, 2, 10)) == day(2026, 12, 1)
    assert feed.service_date_of("ic1999-night", at(2026, 12, 2, 2, 11)) == day(2026, 12, 2)
    # Monday 00:40: no run on Sunday (weekdays only): Monday's.
    assert feed.service_date_of("ic1999-night", at(2026, 12, 7, 0, 40)) == day(2026, 12, 7)
    # A trip that ends before midnight is today's, whatever the hour.
    assert feed.service_date_of("ic1832-wd", at(2026, 12, 2, 0, 40)) == day(2026, 12, 2)
    assert feed.service_date_of("nowhere", at(2026, 12, 2, 0, 40)) is None


def test_an_assignment_wins_over_the_train_number(feed):
    now = at(2026, 12, 1, 8, 30)
    by_number = {"train_number": "1832"}
    assert schedule.trip_of(feed, by_number, now)[1] == "schedule"
    assigned = {"train_number": "1832", "trip": {"trip_id": "ic1999-night", "start_date": "20261201"}}
    run, source = schedule.trip_of(feed, assigned, now)
    assert (run.trip.trip_id, run.start_date, source) == ("ic1999-night", "20261201", "assignment")
    # Once the assigned run is over, the number applies again.
    later = at(2026, 12, 2, 8, 30)
    assert schedule.trip_of(feed, assigned, later)[0].start_date == "20261202"
    with pytest.raises(schedule.ScheduleError, match="does not run"):
        feed.assigned_run("ic1832-wd", "20261205")
    with pytest.raises(schedule.ScheduleError, match="no trip"):
        feed.assigned_run("nope", "20261201")
    assert schedule.trip_of(None, assigned, now) == (None, None)


def test_a_feed_without_what_it_needs_is_a_clear_error(tmp_path):
    broken = dict(schedule_feed.FILES)
    del broken["agency.txt"]
    with pytest.raises(schedule.ScheduleError, match="agency.txt"):
        schedule.Schedule(broken)
    with pytest.raises(schedule.ScheduleError, match="cannot read"):
        schedule.Schedule.from_zip(str(tmp_path / "missing.zip"))


def test_values_no_gtfs_feed_may_hold_are_refused_at_loading_or_read_as_unknown():
    """A feed that loaded and then failed requests: a direction_id past the field's range and a
    stop_sequence past uint32 failed the TripUpdates and VehiclePositions feeds (protobuf
    ValueError), a time of 99999999:00:00 /v1/trains (OverflowError) while a train ran it."""

    def with_row(trip_field=None, stop_row=None):
        files = dict(schedule_feed.FILES)
        if trip_field is not None:
            files["trips.txt"] += f"ic3,weekdays,odd,2222,Chur,{trip_field}\n"
            files["stop_times.txt"] += "odd,08:00:00,08:00:00,basel,1\n"
        if stop_row is not None:
            files["stop_times.txt"] += f"ic1832-wd,{stop_row}\n"
        return schedule.Schedule(files)

    for direction in ("99999999999", "2"):  # GTFS has 0 and 1: anything else is no direction
        assert with_row(trip_field=direction).trips["odd"].direction_id is None
    assert with_row(trip_field="1").trips["odd"].direction_id == 1
    with pytest.raises(schedule.ScheduleError, match="stop_sequence 4294967296"):
        with_row(stop_row="11:00:00,11:00:00,chur,4294967296")
    for time in ("99999999:00:00", "08:75:00", "0²:00:00"):
        with pytest.raises(schedule.ScheduleError, match="not a GTFS time"):
            with_row(stop_row=f"{time},{time},chur,4")


def test_a_number_run_back_to_back_is_on_the_run_under_way_not_the_next_one():
    # Train 5 runs short trips every 15 minutes: at 08:12 it is near the end of the 08:00 run,
    # the 08:15 run starting sooner than the one it is on started.
    files = {
        **schedule_feed.FILES,
        "trips.txt": schedule_feed.FILES["trips.txt"] + "ic3,weekdays,s1,5,Chur,0\nic3,weekdays,s2,5,Basel,1\n",
        "stop_times.txt": schedule_feed.FILES["stop_times.txt"]
        + "s1,08:00:00,08:00:00,basel,1\ns1,08:13:00,08:13:00,chur,2\n"
        + "s2,08:15:00,08:15:00,chur,1\ns2,08:28:00,08:28:00,basel,2\n",
    }
    feed = schedule.Schedule(files)
    assert run_of(feed, "5", at(2026, 12, 1, 8, 12))[0] == "s1"
    assert run_of(feed, "5", at(2026, 12, 1, 8, 14))[0] == "s2"  # between the two: the nearer start
    assert run_of(feed, "5", at(2026, 12, 1, 8, 20))[0] == "s2"


def test_a_stop_time_of_a_feed_without_departure_takes_its_arrival():
    files = {
        **schedule_feed.WITH_STOPS,
        "stop_times.txt": "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n"
        "r1,08:00:00,,a,1\nr1,,08:10:00,b,2\nr1,,,x,3\nr1,08:30:00,08:30:00,d,4\n",
    }
    stops = schedule.Schedule(files).trips["r1"].stops
    # x has no time: not a StopTime, but d is the trip's fourth stop still.
    assert stops == (
        schedule.StopTime(1, "a", 8 * 3600, 8 * 3600, place=1),
        schedule.StopTime(2, "b", 8 * 3600 + 600, 8 * 3600 + 600, place=2),
        schedule.StopTime(4, "d", 8 * 3600 + 1800, 8 * 3600 + 1800, place=4),
    )


@pytest.mark.parametrize(
    "moment",
    ["2027-10-30T22:05:00", "2027-10-30T22:40:00", "2027-03-27T23:30:00", "2026-12-07T23:10:00", "2026-12-08T12:00:00"],
)
def test_the_tests_feed_for_now_has_its_trips_under_way_on_the_nights_clocks_change(moment):
    """tests/schedule_feed.files_running_at, which the API tests serve: at any moment, 00:00 to
    01:00 on the night clocks go back included (the day's times begin at 01:00 then), each of its
    trips is under way, from up to an hour before (not before its day's times begin) to an hour
    after, on its service_day."""
    at = datetime.datetime.fromisoformat(moment).replace(tzinfo=datetime.timezone.utc)
    feed = schedule.Schedule(schedule_feed.files_running_at(at))
    for number in ("7777", "8888"):
        run = feed.current_run(number, at)
        assert run is not None and run.service_date == schedule_feed.service_day(at), moment
        assert run.starts_at <= at and run.ends_at == at + datetime.timedelta(hours=1), moment
