"""occupancy.stop_visits: door counts grouped into stops and matched to the trip's stop times
(the rows made of them: tests/test_tides_rows.py)."""

import datetime

import pytest

from occupancy.schedule import Schedule
from occupancy.stop_visits import DoorCount, StopVisits, VisitState
from tests.door_visits import DAY, FILES, Doors, at_us, r1_then_nothing, summary, visit_all


@pytest.fixture(scope="module")
def schedule():
    return Schedule(FILES)


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


def test_a_trip_begins_at_its_first_stop_even_when_its_clock_is_nearer_the_second(schedule):
    # 8 minutes late at a (08:00): nearer b's time (08:10) than a's; the trip's first visit
    # passes a stop only when the clock says so clearly.
    doors = Doors()
    counts = doors.burst("08:08:00", 5) + doors.burst("08:18:10", 2)
    visits = visit_all(counts, r1_then_nothing(schedule))
    assert summary(visits)[:2] == [(1, "a", 5, 0, 5), (2, "b", 2, 0, 7)]
