"""GTFS-Realtime TripUpdates with the forecast level at each stop to come: built from a run, its
forecast document and the load on board (pure), checked by gtfs-rt-validator (PyPI) against
the static feed; the API's reading of forecast documents."""

import pytest
from google.transit import gtfs_realtime_pb2 as pb

from api.trip_updates import build_trip_updates
from occupancy import fleet
from occupancy.forecast.same_day import stops_to_come
from tests.support import gtfs_rt_notices
from tests.trip_forecast import LEFT_B, RUN, STATIC, forecast_document, view


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


def test_a_forecast_document_written_by_hand_serves_what_it_can_and_never_a_500():
    """A percentage as text raised TypeError for the public; a load as a float failed the
    response's validation: each a 500."""
    from api.forecasts import _stop_out, _stops
    from occupancy.privacy import Policy

    document = {
        "stops": [
            {"stop_sequence": 1, "stop_id": "a", "occupancy_percentage": "50", "predicted_load": 12.5},
            {"stop_sequence": 2, "stop_id": 7, "occupancy_status": "CROWDED", "predicted_load": True, "same_day": "x"},
            {"stop_sequence": "3"},
            {"stop_sequence": 4, "occupancy_status": "FULL", "occupancy_percentage": 97, "predicted_load": 390},
        ]
    }
    stops = _stops(document)
    assert [s["stop_sequence"] for s in stops] == [1, 2, 4]
    assert [(s["stop_id"], s["occupancy_percentage"], s["predicted_load"], s["occupancy_status"]) for s in stops] == [
        ("a", None, None, None),
        (None, None, None, None),
        (None, 97, 390, "FULL"),
    ]
    assert all("same_day" not in s for s in stops)  # the API's to say, never a document's
    public = [_stop_out(s, False, Policy(seed=b"x" * 32)) for s in stops]
    assert [p["occupancy_percentage"] for p in public] == [None, None, 100]
