"""Trains attached to their scheduled trips in the feed and the API: a TripDescriptor the
validator accepts against the static feed, the train number's trip, and an operator's
assignment through the API overriding it."""

import datetime

import httpx
import pytest
from google.transit import gtfs_realtime_pb2 as pb

from adapters import registry
from api.gtfs_rt import build_feed
from local import stack
from occupancy import fleet, schedule
from tests import schedule_feed
from tests.support import ago, gtfs_rt_notices, serve_api, write_realtime

UTC = datetime.timezone.utc
MORNING = datetime.datetime(2026, 12, 1, 8, 30, tzinfo=schedule_feed.ZoneInfo("Europe/Zurich"))


def test_the_feed_carries_the_trip_and_passes_the_validator_against_the_static_feed(tmp_path):
    feed_static = schedule.Schedule(schedule_feed.FILES)
    now = MORNING.astimezone(UTC)
    realtime = {
        "current_value": 40,
        "last_updated": now - datetime.timedelta(seconds=3),
        "devices_seen": {
            "d1": {"last_seen": now - datetime.timedelta(seconds=2), "seq": 4, "trip_boarded": 30, "trip_alighted": 2},
            "d2": {"last_seen": now - datetime.timedelta(seconds=2), "seq": 9, "trip_boarded": 12, "trip_alighted": 0},
        },
    }
    view = fleet.train_view("ic1832", realtime, {"capacity": 300, "name": "IC 1832", "train_number": "1832"}, now)
    run, source = schedule.trip_of(feed_static, view.trains_doc, now)
    feed = build_feed(
        [view], now, fleet.Thresholds(), {"ic1832": {"d1": "car1-door1", "d2": "car2-door1"}}, {"ic1832": run}
    )
    assert [c.carriage_sequence for c in feed.entity[0].vehicle.multi_carriage_details] == [1, 2]
    trip = feed.entity[0].vehicle.trip
    assert (trip.trip_id, trip.route_id, trip.start_date, trip.start_time, trip.direction_id) == (
        "ic1832-wd",
        "ic3",
        "20261201",
        "08:00:00",
        0,
    )
    assert trip.schedule_relationship == pb.TripDescriptor.SCHEDULED and source == "schedule"
    assert gtfs_rt_notices(feed, tmp_path / "ok", schedule_feed.FILES, now) == []
    # The validator checks the trip against the schedule: one that does not exist is an error.
    feed.entity[0].vehicle.trip.trip_id = "no-such-trip"
    notices = gtfs_rt_notices(feed, tmp_path / "bad", schedule_feed.FILES, now)
    assert any(severity == "ERROR" for _, severity in notices), notices


@pytest.fixture(scope="module")
def trips_api(made_at, firestore_emulator, auth_emulator, tmp_path_factory):
    gtfs = schedule_feed.write(tmp_path_factory.mktemp("gtfs") / "gtfs.zip", schedule_feed.files_running_at(made_at))
    process, base_url = serve_api(
        tmp_path_factory,
        {**firestore_emulator.env(), **auth_emulator.env()},
        "--fleet_cache_s=0",
        f"--gtfs_static={gtfs}",
    )
    yield base_url
    stack.stop_process(process)


def test_an_assignment_through_the_api_overrides_the_train_number(trips_api, made_at, firestore_client, tokens):
    registry.set_train(firestore_client, "trains", "ic7777", 300, "IC 7777", train_number="7777")
    registry.register_device(firestore_client, "devices", "d1", "ic7777", "car1-door1")
    write_realtime(firestore_client, "ic7777", 30, 300, {"d1": (3, ago(2))})
    today = schedule_feed.service_day(made_at).strftime("%Y%m%d")
    with httpx.Client(base_url=trips_api, timeout=30) as http:

        def trip_now():
            train = next(t for t in http.get("/v1/trains").json()["trains"] if t["train_id"] == "ic7777")
            feed = pb.FeedMessage.FromString(http.get("/gtfs-rt/vehicle-positions.pb").content)
            assert feed.entity[0].vehicle.trip.trip_id == (train["trip"] or {}).get("trip_id", "")
            assert http.get("/v1/trains/ic7777").json()["trip"] == train["trip"]
            return train["trip"]

        assert trip_now() == {
            "trip_id": "now-7777",
            "start_date": today,
            "start_time": trip_now()["start_time"],
            "route_id": "ic3",
            "route_short_name": "IC 3",
            "headsign": "Chur",
            "direction_id": 0,
            "source": "schedule",
        }
        body = {"trip_id": "now-8888", "start_date": today}
        assert http.put("/v1/trains/ic7777/trip", json=body).status_code == 401
        assert http.put("/v1/trains/ic7777/trip", json=body, headers=tokens["user"]).status_code == 403
        response = http.put("/v1/trains/ic7777/trip", json=body, headers=tokens["operator"])
        assert response.status_code == 200 and response.json()["source"] == "assignment"
        assert (trip_now()["trip_id"], trip_now()["headsign"], trip_now()["source"]) == (
            "now-8888",
            "Basel SBB",
            "assignment",
        )
        for wrong, reason in (
            ({"trip_id": "nope", "start_date": today}, "no trip"),
            ({"trip_id": "ic1832-wd", "start_date": "20261205"}, "does not run"),
            ({"trip_id": "now-8888", "start_date": "2026-12-01"}, "start_date"),
        ):
            refused = http.put("/v1/trains/ic7777/trip", json=wrong, headers=tokens["operator"])
            assert refused.status_code == 422 and reason in refused.text, refused.text
        missing = http.put("/v1/trains/nosuch/trip", json=body, headers=tokens["operator"])
        assert missing.status_code == 404
        assert http.delete("/v1/trains/ic7777/trip", headers=tokens["operator"]).status_code == 204
        assert trip_now()["trip_id"] == "now-7777"
