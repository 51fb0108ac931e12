"""GTFS-Realtime TripUpdates with the forecast level at each stop to come: built from a run, its
forecast document and the load on board (pure), checked by gtfs-rt-validator (PyPI) against
the static feed."""

import datetime

import pytest
from google.transit import gtfs_realtime_pb2 as pb

from api.trip_updates import build_trip_updates
from occupancy import fleet, schedule
from occupancy.forecast import rows
from occupancy.forecast.same_day import stops_to_come
from tests import schedule_feed
from tests.support import gtfs_rt_notices

UTC = datetime.timezone.utc
# The stops r1 calls at, which schedule_feed's stops.txt leaves out.
STATIC = {
    **schedule_feed.WITH_STOPS,
    "stops.txt": schedule_feed.WITH_STOPS["stops.txt"]
    + "".join(f"{s},Stop {s},47.{i},8.{i}\n" for i, s in enumerate("abcd", start=1)),
}
FEED = schedule.Schedule(STATIC)
DAY = datetime.date(2026, 12, 3)  # a Thursday: r1 runs a 08:00, b 08:10, c 08:20, d 08:30 (Zurich)
RUN = FEED.run(FEED.trips["r1"], DAY)
LEFT_B = RUN.at(8 * 3600 + 12 * 60)  # 08:12: it has left b


def forecast_document(loads):
    return rows.trip_document(
        [
            {
                "service_date": DAY,
                "trip_id": "r1",
                "stop_sequence": sequence,
                "stop_id": stop,
                "predicted_load": load,
                "predicted_load_p10": None,
                "predicted_load_p90": None,
                "occupancy_percentage": None,
                "occupancy_status": None,
                "model": "level-hgb",
                "history_days": 56,
                "forecast_start": DAY,
            }
            for (sequence, stop), load in zip(((1, "a"), (2, "b"), (3, "c"), (4, "d")), loads)
        ]
    )


def view(on_board, capacity=200):
    realtime = {"current_value": on_board, "last_updated": LEFT_B, "devices_seen": {"d1": {"last_seen": LEFT_B}}}
    return fleet.train_view("t1", realtime, {"capacity": capacity, "name": "IC 1"}, LEFT_B)


def test_the_stops_to_come_carry_the_forecast_corrected_by_the_load_on_board():
    document = forecast_document((50, 120, 60, 0))
    # 30 more on board than forecast as it left b; of them, 60/120 are still on board after c.
    assert stops_to_come(RUN, document, 150, LEFT_B) == [(3, "c", 60 + 30 * 0.5), (4, "d", 0.0)]
    before = RUN.at(7 * 3600 + 50 * 60)  # before its first departure: the day-ahead forecast
    assert [load for _, _, load in stops_to_come(RUN, document, 0, before)] == [50, 120, 60, 0]
    assert stops_to_come(RUN, {"stops": []}, 150, LEFT_B) == []


def validate(feed, tmp_path):
    return gtfs_rt_notices(feed, tmp_path, STATIC, LEFT_B, role="-tu")


@pytest.mark.parametrize("on_board", [150, 20])
def test_the_feed_says_each_stops_level_and_passes_a_gtfs_realtime_validator(on_board, tmp_path):
    feed = build_trip_updates([(view(on_board), RUN, forecast_document((50, 120, 60, 0)))], LEFT_B, fleet.Thresholds())
    [entity] = feed.entity
    update = entity.trip_update
    assert (update.trip.trip_id, update.trip.start_date, update.vehicle.id) == ("r1", "20261203", "t1")
    assert [(s.stop_sequence, s.stop_id) for s in update.stop_time_update] == [(3, "c"), (4, "d")]
    assert all(s.schedule_relationship == pb.TripUpdate.StopTimeUpdate.NO_DATA for s in update.stop_time_update)
    expected = [
        fleet.Thresholds().status(load / 200)
        for _, _, load in stops_to_come(RUN, forecast_document((50, 120, 60, 0)), on_board, LEFT_B)
    ]
    assert [
        pb.VehiclePosition.OccupancyStatus.Name(s.departure_occupancy_status) for s in update.stop_time_update
    ] == expected
    # Its one warning is for an update without times, which the specification has NO_DATA for.
    assert validate(feed, tmp_path / "ours") == [("P008", "WARNING")]
    # The validator does look: a trip the static feed does not have is an error.
    broken = build_trip_updates(
        [(view(on_board), RUN, forecast_document((50, 120, 60, 0)))], LEFT_B, fleet.Thresholds()
    )
    broken.entity[0].trip_update.trip.trip_id = "no-such-trip"
    assert any(severity == "ERROR" for _, severity in validate(broken, tmp_path / "broken"))


def test_a_train_without_capacity_or_forecast_gets_no_update():
    nothing = build_trip_updates(
        [(view(100, capacity=None), RUN, forecast_document((50, 120, 60, 0)))], LEFT_B, fleet.Thresholds()
    )
    assert list(nothing.entity) == []
    assert list(build_trip_updates([(view(100), RUN, {"stops": []})], LEFT_B, fleet.Thresholds()).entity) == []


def test_the_api_corrects_and_marks_only_stops_it_can_correct():
    from api.forecasts import _with_same_day

    document = forecast_document((50, 120, 60, 0))
    stops, thresholds = document["stops"], fleet.Thresholds()
    corrected = _with_same_day(stops, (view(150), RUN), document, LEFT_B, thresholds)
    assert [s.get("same_day") for s in corrected] == [None, None, True, True]
    assert [s["predicted_load"] for s in corrected] == [50, 120, 75, 0]
    before = RUN.at(7 * 3600 + 50 * 60)  # not left its first stop: nothing to correct
    assert _with_same_day(stops, (view(150), RUN), document, before, thresholds) == stops
    public = view(150)._replace(current_value=None)  # no count on board for the public
    assert _with_same_day(stops, (public, RUN), document, LEFT_B, thresholds) == stops
