"""The forecast's domain (occupancy/forecast/): TIDES rows to observations, the schedule's
slots, the baselines by hand, the model against the baseline on held-out weeks of a simulated
line, and the rows it publishes."""

import dataclasses
import datetime

import numpy as np
import pytest

from occupancy import schedule
from occupancy.forecast import baseline, history, model, rows
from occupancy.levels import NO_DATA_AVAILABLE
from sim import ridership
from tests import schedule_feed

DAY = datetime.date(2026, 12, 7)  # a Monday


def visit(day, performed, sequence, load, stop="a"):
    return {
        "service_date": day,
        "trip_id_performed": performed,
        "scheduled_stop_sequence": sequence,
        "stop_id": stop,
        "departure_load": load,
        "vehicle_id": "t1",
    }


def test_observations_join_visits_to_their_scheduled_trip_and_name_the_rows_they_cannot_use():
    trips = [
        {"service_date": DAY, "trip_id_performed": f"{DAY}:r1:t1", "trip_id_scheduled": "r1", "vehicle_id": "t1"},
        {"service_date": DAY, "trip_id_performed": f"{DAY}:t1", "trip_id_scheduled": None, "vehicle_id": "t1"},
        {"service_date": None, "trip_id_performed": "x"},
    ]
    visits = [
        visit(DAY, f"{DAY}:r1:t1", 1, 5),
        visit(DAY.isoformat(), f"{DAY}:r1:t1", "2", "7"),  # CSV: every value text
        visit(DAY, f"{DAY}:r1:t1", None, 9),  # an added stop: no scheduled stop, no observation
        visit(DAY, f"{DAY}:t1", None, 3),  # a train on no trip: nothing to forecast by
        visit(DAY, f"{DAY}:r1:t1", 3, -4),
        visit(DAY, f"{DAY}:r1:t1", 3, history.MAX_LOAD + 1),  # more than any train carries
        visit("not a date", f"{DAY}:r1:t1", 3, 4),
    ]
    found, problems = history.observations(visits, trips)
    assert [(o.trip_id, o.stop_sequence, o.load) for o in found] == [("r1", 1, 5), ("r1", 2, 7)]
    assert [why for _, why in problems] == [
        "trips_performed: no service_date or trip_id_performed",
        "stop_visits: departure_load -4 is no count",
        f"stop_visits: departure_load {history.MAX_LOAD + 1} is no count",
        "stop_visits: no service_date or trip_id_performed",
    ]


def test_a_visit_given_twice_counts_once_and_a_second_visit_of_a_stop_stays():
    """A replay appended to a BigQuery table gives each visit again: one observation of it (the
    higher load of two that differ, whichever came first); a train at one stop twice in a trip
    (two trip_stop_sequences) is two visits."""
    trips = [{"service_date": DAY, "trip_id_performed": f"{DAY}:r1:t1", "trip_id_scheduled": "r1", "vehicle_id": "t1"}]
    first, again = visit(DAY, f"{DAY}:r1:t1", 1, 5), visit(DAY, f"{DAY}:r1:t1", 2, 7)
    loop = {**visit(DAY, f"{DAY}:r1:t1", 2, 9), "trip_stop_sequence": 3}
    for visits in (
        [first, again, first, again, loop],
        [again, {**again, "departure_load": 8}],
        [{**again, "departure_load": 8}, again],
    ):
        found, problems = history.observations(visits, trips)
        assert problems == []
        assert sorted((o.stop_sequence, o.load) for o in found) == (
            [(1, 5), (2, 7), (2, 9)] if len(visits) == 5 else [(2, 8)]
        ), visits


def test_slots_are_the_trips_the_calendar_runs_each_day_a_holiday_the_service_it_names():
    feed = schedule.Schedule(schedule_feed.WITH_STOPS)
    christmas = datetime.date(2026, 12, 25)  # a Friday: the weekday service removed
    by_day = {}
    for slot in history.slots(feed, datetime.date(2026, 12, 7), 20):
        by_day.setdefault(slot.service_date, set()).add(slot.trip_id)
    assert by_day[datetime.date(2026, 12, 7)] == {"ic1832-wd", "ic1999-night", "r1", "r2"}
    assert by_day[datetime.date(2026, 12, 8)] == {"ic1832-wd", "ic1999-night", "r1", "r2", "ic1850-special"}
    assert by_day[datetime.date(2026, 12, 12)] == {"ic1832-we"}
    assert christmas not in by_day
    r1 = [s for s in history.slots(feed, DAY, 1) if s.trip_id == "r1"]
    assert [(s.stop_sequence, s.stop_id, s.position, s.stops) for s in r1] == [
        (1, "a", 0, 4),
        (2, "b", 1, 4),
        (3, "c", 2, 4),
        (4, "d", 3, 4),
    ]
    assert feed.exception_days() == {christmas, datetime.date(2026, 12, 8)}
    assert feed.weekly_pattern("weekdays") == 0b0011111 and feed.weekly_pattern("special") == 0


def test_the_baselines_are_last_weeks_load_and_the_mean_of_four_same_weekdays():
    loads = {DAY - datetime.timedelta(weeks=w): load for w, load in ((1, 40), (2, 30), (3, 20), (4, 10), (5, 99))}
    loads[DAY - datetime.timedelta(days=1)] = 500  # a Sunday: another weekday
    past = baseline.History(history.Observation(d, "r1", 2, "b", load, "t1") for d, load in loads.items())
    slot = history.Slot(DAY, "r1", 2, "b", "ic3", 0, 0, 1, 4, "weekdays")
    assert baseline.last_week(past, slot, DAY) == 40
    assert baseline.weekday_mean(past, slot, DAY) == 25  # (40 + 30 + 20 + 10) / 4
    later = slot._replace(service_date=DAY + datetime.timedelta(weeks=1))
    assert baseline.last_week(past, later, DAY) == 40  # nothing after the origin is known
    # made two weeks earlier, from what was known then
    assert baseline.weekday_mean(past, slot, DAY - datetime.timedelta(weeks=2)) == (20 + 10 + 99) / 3
    assert baseline.last_week(past, slot._replace(trip_id="r2"), DAY) is None


@pytest.fixture(scope="module")
def growing_line():
    """Ten weeks of a small line whose riders grow 4 % a week."""
    scenario = ridership.Scenario(weeks=10, stops=6, growth=((10, 0.04),), seed=3)
    simulated = ridership.simulate(scenario)
    found, problems = history.observations(simulated.stop_visits, simulated.trips_performed)
    assert problems == []
    return scenario, schedule.Schedule(ridership.gtfs_files(scenario)), found


def test_the_model_beats_the_weekday_mean_on_held_out_weeks_of_a_growing_line(growing_line):
    scenario, feed, found = growing_line
    origin = scenario.start + datetime.timedelta(weeks=8)
    fitted = model.Model(found, feed, origin)
    assert fitted.history_days == 56
    counted = {(o.service_date, o.trip_id, o.stop_sequence): o.load for o in found}
    slots = [s for s in history.slots(feed, origin, 14) if (s.service_date, s.trip_id, s.stop_sequence) in counted]
    predicted = fitted.predict(slots)
    past = baseline.History(found)
    actual = np.array([counted[(s.service_date, s.trip_id, s.stop_sequence)] for s in slots], dtype=float)
    mean4 = np.array([baseline.weekday_mean(past, s, origin) for s in slots], dtype=float)
    point = np.array([p.load for p in predicted])
    # The weeks ahead carry more riders than any the trees saw: the level carries them there.
    assert point.mean() > mean4.mean() * 1.04
    assert np.abs(point - actual).mean() < 0.9 * np.abs(mean4 - actual).mean()
    low, high = np.array([p.p10 for p in predicted]), np.array([p.p90 for p in predicted])
    assert np.all(low <= point) and np.all(point <= high)
    assert 0.7 <= np.mean((actual >= low) & (actual <= high)) <= 0.92


def test_no_forecast_without_history_and_never_a_number_for_a_trip_never_seen(growing_line):
    scenario, feed, found = growing_line
    too_early = model.Model(found, feed, scenario.start + datetime.timedelta(days=10))
    slots = history.slots(feed, scenario.start + datetime.timedelta(days=10), 1)
    assert too_early.predict(slots) == [None] * len(slots)
    some_trip = slots[0].trip_id
    fitted = model.Model(
        [o for o in found if o.trip_id != some_trip], feed, scenario.start + datetime.timedelta(weeks=8)
    )
    predicted = fitted.predict(slots)
    assert all((p is None) == (s.trip_id == some_trip) for s, p in zip(slots, predicted))


def test_a_route_whose_counts_stopped_weeks_before_the_forecast_is_still_forecast(growing_line):
    """A route suspended for works, or its counters moved, for 14 days or more before the
    origin: its calibration had no day to score and raised, and with it the whole job."""
    scenario, feed, found = growing_line
    last = scenario.start + datetime.timedelta(weeks=6)
    seen = [o for o in found if o.service_date < last]
    origin = last + datetime.timedelta(days=20)
    fitted = model.Model(seen, feed, origin)
    slots = history.slots(feed, origin, 1)
    predicted = fitted.predict(slots)
    assert slots and all(p is not None and p.p10 <= p.load <= p.p90 for p in predicted)
    # Calibrated on its last 14 days counted, as a route counted up to the origin is.
    assert fitted.widen == model.Model(seen, feed, last).widen


def test_a_route_whose_model_fails_gets_no_forecast_and_the_others_go_on(growing_line, monkeypatch):
    """Batch Beam fails the whole job on a DoFn that raises past its retries: one route's fit
    that raises is that route's departures without a forecast, counted and logged."""
    from transforms.forecast import _ForecastRoute

    scenario, feed, found = growing_line
    origin = scenario.start + datetime.timedelta(weeks=8)

    class Feed:
        def get(self):
            return feed

    def broken(*args, **kwargs):
        raise FloatingPointError("a fit that fails")

    route = next(iter({t.route_id for t in feed.trips.values()}))
    grouped = {"observations": [o for o in found if feed.trips[o.trip_id].route_id == route]}
    monkeypatch.setattr(model, "Model", broken)
    out = list(_ForecastRoute(Feed(), origin, 1).process((route, grouped), {}))
    assert out and all(r["predicted_load"] is None and r["occupancy_status"] == NO_DATA_AVAILABLE for r in out)
    assert {r["trip_id"] for r in out} == {s.trip_id for s in history.slots(feed, origin, 1, {route})}


def test_a_route_too_quiet_to_say_a_level_is_forecast_at_its_usual_level():
    quiet = [history.Observation(DAY - datetime.timedelta(days=d), "r1", 1, "a", 0, "t1") for d in range(1, 29)]
    level = model.Level(quiet)
    assert (level.weeks, level.ahead, level.slope) == ({}, 1.0, 0.0)


def test_rows_carry_the_level_of_the_latest_trains_capacity_and_no_invented_status():
    slot = history.Slot(DAY, "r1", 2, "b", "ic3", 0, 0, 1, 4, "weekdays")
    prediction = model.Prediction(151.4, 120.2, 180.9)
    out = rows.forecast_rows(
        [slot, slot._replace(trip_id="r2"), slot._replace(trip_id="r3")],
        [prediction, prediction, None],
        {"r1": 300, "r3": 300},
        "level-hgb",
        56,
        DAY - datetime.timedelta(days=3),
    )
    assert set(out[0]) == set(rows.FIELDS)
    assert {r["forecast_start"] for r in out} == {DAY - datetime.timedelta(days=3)}
    assert (out[0]["predicted_load"], out[0]["predicted_load_p10"], out[0]["predicted_load_p90"]) == (151, 120, 181)
    assert (out[0]["occupancy_percentage"], out[0]["occupancy_status"]) == (50, "STANDING_ROOM_ONLY")
    assert (out[1]["predicted_load"], out[1]["occupancy_percentage"], out[1]["occupancy_status"]) == (151, None, None)
    assert (out[2]["predicted_load"], out[2]["occupancy_status"]) == (None, NO_DATA_AVAILABLE)
    assert rows.latest_vehicles(
        [
            history.Observation(DAY, "r1", 1, "a", 1, "t1"),
            history.Observation(DAY + datetime.timedelta(days=1), "r1", 1, "a", 1, "t2"),
            history.Observation(DAY - datetime.timedelta(days=1), "r1", 1, "a", 1, "t3"),
        ]
    ) == {"r1": "t2"}


def test_the_simulated_line_is_the_same_for_the_same_seed_and_its_loads_are_plausible():
    scenario = ridership.Scenario(weeks=2, stops=5)
    first, again = ridership.simulate(scenario), ridership.simulate(scenario)
    assert first.stop_visits == again.stop_visits
    other = ridership.simulate(dataclasses.replace(scenario, seed=scenario.seed + 1))
    assert other.stop_visits != first.stop_visits
    loads = [v["departure_load"] for v in first.stop_visits]
    assert 0 < np.mean(loads) < scenario.capacity and max(loads) <= scenario.capacity * 1.5
    last = max(v["trip_stop_sequence"] for v in first.stop_visits)
    assert {v["departure_load"] for v in first.stop_visits if v["trip_stop_sequence"] == last} == {0}


def test_tides_rows_as_text_are_typed_and_what_breaks_a_type_is_named():
    from occupancy import tides_read

    row, wrong = tides_read.typed_row(
        "stop_visits",
        {
            "service_date": "2026-12-07",
            "trip_id_performed": "x",
            "trip_stop_sequence": "3",
            "actual_departure_time": "2026-12-07T08:00:10Z",
            "departure_load": "NA",
            "timepoint": "true",  # a TIDES field this system does not fill: left out
        },
    )
    assert wrong == []
    assert row["trip_stop_sequence"] == 3 and row["departure_load"] is None and "timepoint" not in row
    assert row["actual_departure_time"] == datetime.datetime(2026, 12, 7, 8, 0, 10, tzinfo=datetime.timezone.utc)
    _, wrong = tides_read.typed_row(
        "stop_visits",
        {"service_date": "2026-12-07", "trip_id_performed": "x", "trip_stop_sequence": "0", "dwell": "-"},
    )
    assert wrong == ["dwell: '-' is not of type integer", "trip_stop_sequence: 0 below 1"]
    _, wrong = tides_read.typed_row(
        "stop_visits",
        {
            "service_date": "2026-12-07",
            "trip_id_performed": "x",
            "trip_stop_sequence": "1",
            "actual_arrival_time": "2026-12-07T08:00:00",
        },
    )
    assert wrong == ["actual_arrival_time has no time zone"]
    _, wrong = tides_read.typed_row(
        "stop_visits",
        {"service_date": "2026-12-07", "trip_id_performed": "x", "trip_stop_sequence": str(2**63)},
    )
    assert wrong == [f"trip_stop_sequence: {str(2**63)!r} is not of type integer"]
    # Parquet gives integers typed already: a uint64 past int64 passed (BigQuery refuses it).
    _, wrong = tides_read.typed_row(
        "stop_visits", {"service_date": "2026-12-07", "trip_id_performed": "x", "trip_stop_sequence": 2**63}
    )
    assert wrong == [f"trip_stop_sequence: {2**63} past 64 bits"]
    row, wrong = tides_read.typed_row(
        "stop_visits",
        {
            "service_date": "2026-12-07",
            "trip_id_performed": "x",
            "trip_stop_sequence": 1,
            "departure_load": float("nan"),
        },
    )
    assert wrong == [] and row["departure_load"] is None  # NaN: Parquet's missing number


def test_the_same_day_forecast_keeps_todays_riders_as_far_as_they_ride_and_scales_the_rest():
    from occupancy.forecast import same_day

    forecast = [(1, 100.0), (2, 150.0), (3, 60.0), (4, 80.0)]
    # As forecast so far: the forecast itself.
    assert same_day.ahead(forecast, 1, 100, [(100, 100)]) == [(2, 150.0), (3, 60.0), (4, 80.0)]
    # 30 more on board than forecast as it leaves stop 2, after a stop as forecast: today's ratio
    # is (100 + 150) / (100 + 180), drawn halfway to 1 (2 stops seen, 2 of prior); the 30 stay
    # with the load's low on the way: 60 / 150 of them after stop 3.
    ratio = 1 + 0.5 * (280 / 250 - 1)
    assert same_day.today_ratio([(100, 100), (150, 180)]) == pytest.approx(ratio)
    predicted = dict(same_day.ahead(forecast, 2, 180, [(100, 100), (150, 180)]))
    surplus = 180 - ratio * 150
    assert predicted[3] == pytest.approx(ratio * 60 + surplus * 60 / 150)
    assert predicted[4] == pytest.approx(ratio * 80 + surplus * 60 / 150)
    assert same_day.today_ratio([(10, 100)]) == same_day.BOUNDS[1]  # bounded
    assert same_day.ahead(forecast, 9, 50, []) == []  # a stop the trip does not have
    assert same_day.ahead(forecast, 4, 50, []) == []  # the last stop: nothing to come


def test_the_forecast_options_leave_every_other_job_parsing_as_before():
    """Beam parses every options class for every job in the process: the forecast's must take
    their defaults quietly and name no flag another job defines."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.forecast.options import ForecastOptions
    from pipeline.options import OccupancyOptions

    options = PipelineOptions(["--input_subscription=projects/p/subscriptions/s", "--gtfs_static=feed.zip"])
    assert options.view_as(OccupancyOptions).gtfs_static == "feed.zip"
    forecast = options.view_as(ForecastOptions)
    assert forecast.forecast_days == 14 and forecast.shared().gtfs_static == "feed.zip"
    assert forecast.start_date() == datetime.datetime.now(datetime.timezone.utc).date() + datetime.timedelta(days=1)
    with pytest.raises(ValueError, match="--tides_input"):
        forecast.validate_forecast()
    # The history in files (under a root, a table's patterns instead of the root's) or in BigQuery.
    base = ["--gtfs_static=feed.zip", "--forecast_output=out"]
    for sources, refused in (
        (["--tides_input=h", "--tides_bigquery=p.tides"], "not both"),
        (["--tides_bigquery=p.tides", "--stop_visits=a.csv"], "not both"),
        (["--stop_visits=a.csv"], "give --tides_input"),
    ):
        with pytest.raises(ValueError, match=refused):
            PipelineOptions(base + sources).view_as(ForecastOptions).validate_forecast()
    for sources in (
        ["--tides_bigquery=p.tides"],
        ["--stop_visits=a.csv", "--trips_performed=b.csv"],
        ["--tides_input=h", "--stop_visits=a.csv"],
    ):
        PipelineOptions(base + sources).view_as(ForecastOptions).validate_forecast()
