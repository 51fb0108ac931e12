"""The GTFS-Realtime VehiclePositions feed: built from the fleet (pure), checked by a GTFS-RT
validator from PyPI (gtfs-rt-validator), and served by the real API over the emulator."""

import datetime

import pytest
from google.transit import gtfs_realtime_pb2 as pb

from adapters import registry
from api.gtfs_rt import build_feed
from occupancy import fleet
from tests.support import ago, gtfs_rt_notices, write_realtime

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
VP = pb.VehiclePosition


def seen(age_s, boarded=0, alighted=0):
    return {
        "last_seen": NOW - datetime.timedelta(seconds=age_s),
        "seq": 1,
        "trip_boarded": boarded,
        "trip_alighted": alighted,
    }


def view(train_id, value, capacity, devices, name=None):
    realtime = {"current_value": value, "devices_seen": devices, "last_updated": NOW - datetime.timedelta(seconds=3)}
    return fleet.train_view(train_id, realtime, {"capacity": capacity, "name": name}, NOW)


def fleet_feed():
    views = [
        view("fresh", 130, 200, {"a": seen(5, 100, 10), "b": seen(8, 50, 10), "c": seen(4, 0, 0)}, "IC 1"),
        view("stale", 40, 100, {"s": seen(600)}),
        fleet.train_view("never", None, {"capacity": 80}, NOW),
        view("nocap", 12, None, {"n": seen(1)}),
        view("overfull", 250, 200, {"o": seen(2)}),
    ]
    doors = {"fresh": {"a": "car1-door1", "b": "car3-door2", "c": "car3-door1"}, "stale": {"s": "car1-door1"}}
    return build_feed(views, NOW, fleet.Thresholds(), doors)


def test_feed_header_and_one_entity_per_train():
    feed = fleet_feed()
    assert feed.header.gtfs_realtime_version == "2.0"
    assert feed.header.incrementality == pb.FeedHeader.FULL_DATASET
    assert feed.header.timestamp == int(NOW.timestamp())
    # "never" is registered but was never seen: nothing to publish.
    assert [e.id for e in feed.entity] == ["fresh", "stale", "nocap", "overfull"]
    for entity in feed.entity:
        assert entity.HasField("vehicle") and entity.vehicle.vehicle.id == entity.id
    again = pb.FeedMessage.FromString(feed.SerializeToString())
    assert again == feed


def test_occupancy_fields_per_train():
    entities = {e.id: e.vehicle for e in fleet_feed().entity}
    fresh = entities["fresh"]
    # Measured at its newest device message (4 s ago), not its last count (3 s ago... or older).
    assert fresh.vehicle.label == "IC 1" and fresh.timestamp == int(NOW.timestamp()) - 4
    assert fresh.occupancy_percentage == 65 and fresh.occupancy_status == VP.STANDING_ROOM_ONLY
    stale = entities["stale"]  # an old number is never published as current
    assert stale.occupancy_status == VP.NO_DATA_AVAILABLE and not stale.HasField("occupancy_percentage")
    assert stale.vehicle.label == "stale"
    assert stale.timestamp == int(NOW.timestamp())  # "no data", stated now (not 600 s ago)
    nocap = entities["nocap"]  # no capacity: no percentage, no level
    assert not nocap.HasField("occupancy_percentage") and nocap.occupancy_status == VP.NO_DATA_AVAILABLE
    overfull = entities["overfull"]  # the spec allows more than 100 for an over-full vehicle
    assert overfull.occupancy_percentage == 125 and overfull.occupancy_status == VP.FULL


def test_carriages_from_door_names():
    entities = {e.id: e.vehicle for e in fleet_feed().entity}
    cars = entities["fresh"].multi_carriage_details
    assert [(c.carriage_sequence, c.id, c.label) for c in cars] == [
        (1, "fresh-car1", "car1"),
        (2, "fresh-car2", "car2"),
        (3, "fresh-car3", "car3"),
    ]
    # capacity 200 over 3 carriages: car1 90 net of 66.7 -> 135 %, car3 40 -> 60 %, car2 has no door.
    assert (cars[0].occupancy_percentage, cars[0].occupancy_status) == (135, VP.FULL)
    assert (cars[1].occupancy_percentage, cars[1].occupancy_status) == (-1, VP.NO_DATA_AVAILABLE)
    assert (cars[2].occupancy_percentage, cars[2].occupancy_status) == (60, VP.STANDING_ROOM_ONLY)
    stale_cars = entities["stale"].multi_carriage_details
    assert [(c.occupancy_percentage, c.occupancy_status) for c in stale_cars] == [(-1, VP.NO_DATA_AVAILABLE)]
    assert len(entities["nocap"].multi_carriage_details) == 0  # no door mapping


def test_a_count_past_what_the_percentage_fields_hold_does_not_fail_the_feed():
    """One train inflated by a device's valid counts (about 11 million of +100): its carriage's
    percentage (int32) or the train's (uint32) out of range raised ValueError and failed the
    feed of every train. Each is held at the field's largest value."""
    doors = {"inflated": {"x": "car1-door1", "y": "car8-door1"}}
    for value in (1_100_000_000, 17_200_000_000):
        views = [
            view("inflated", value, 400, {"x": seen(1, value, 0), "y": seen(1)}),
            view("honest", 100, 400, {"h": seen(1)}),
        ]
        entities = {e.id: e.vehicle for e in build_feed(views, NOW, fleet.Thresholds(), doors).entity}
        assert entities["honest"].occupancy_percentage == 25
        inflated = entities["inflated"]
        assert inflated.occupancy_status == VP.FULL
        assert inflated.occupancy_percentage == min(round(100 * value / 400), 2**31 - 1)
        assert inflated.multi_carriage_details[0].occupancy_percentage == 2**31 - 1


def test_a_door_name_no_train_has_leaves_the_feed_as_it_was():
    """`car0-door1` divided the capacity by 0 and failed the feed of every train at each request;
    `car200000-door1` made one train's entry 8.5 MB. Carriages are numbered 1 to MAX_CARRIAGES."""
    doors = {"fresh": {"a": "car1-door1", "b": "car0-door1", "c": f"car{fleet.MAX_CARRIAGES + 1}-door1"}}
    views = [view("fresh", 130, 200, {"a": seen(5, 100, 10), "b": seen(8, 50, 10), "c": seen(4, 0, 0)})]
    [entity] = build_feed(views, NOW, fleet.Thresholds(), doors).entity
    cars = entity.vehicle.multi_carriage_details
    assert [(c.carriage_sequence, c.occupancy_percentage) for c in cars] == [(1, 45)]
    assert fleet.carriage_of(f"car{fleet.MAX_CARRIAGES}-door2") == (f"car{fleet.MAX_CARRIAGES}", fleet.MAX_CARRIAGES)


def test_a_carriage_whose_doors_never_reported_has_no_data_and_the_public_sees_none():
    """The public view carries no door counts: each mapped carriage was published EMPTY, 0 %, on
    a train 250 of 300 full. A carriage none of whose doors reported is not empty either."""
    doors = {"t": {"a": "car1-door1", "b": "car2-door1"}}
    exact = view("t", 250, 300, {"a": seen(2, 200, 10)})
    public = exact._replace(devices_seen={})
    for shown, expected in (
        (exact, [(127, VP.FULL), (-1, VP.NO_DATA_AVAILABLE)]),
        (public, [(-1, VP.NO_DATA_AVAILABLE)] * 2),
    ):
        [entity] = build_feed([shown], NOW, fleet.Thresholds(), doors).entity
        cars = entity.vehicle.multi_carriage_details
        assert [(c.occupancy_percentage, c.occupancy_status) for c in cars] == expected


GTFS_STATIC = {
    "agency.txt": "agency_id,agency_name,agency_url,agency_timezone\na,Demo Rail,https://example.com,Europe/Zurich\n",
    "stops.txt": "stop_id,stop_name,stop_lat,stop_lon\ns1,A,47.0,8.0\ns2,B,47.1,8.1\n",
    "routes.txt": "route_id,agency_id,route_short_name,route_long_name,route_type\nr1,a,IC,Intercity,2\n",
    "calendar.txt": "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\n"
    "all,1,1,1,1,1,1,1,20260101,20271231\n",
    "trips.txt": "route_id,service_id,trip_id\nr1,all,trip1\n",
    "stop_times.txt": "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n"
    "trip1,08:00:00,08:00:00,s1,1\ntrip1,09:00:00,09:00:00,s2,2\n",
}


def validate(feed, tmp_path, static=None, at=NOW):
    return gtfs_rt_notices(feed, tmp_path, static or GTFS_STATIC, at)


def test_the_feed_passes_a_gtfs_realtime_validator(tmp_path):
    assert validate(fleet_feed(), tmp_path / "ours") == []
    # The validator does find what is wrong: a broken feed gets errors.
    broken = fleet_feed()
    broken.entity[1].id = broken.entity[0].id
    broken.entity[0].vehicle.multi_carriage_details[0].carriage_sequence = 0
    notices = validate(broken, tmp_path / "broken")
    assert any(severity == "ERROR" for _, severity in notices), notices


def test_served_feed_matches_firestore(http, firestore_client):
    registry.set_train(firestore_client, "trains", "t1", 120, "Morning IC")
    registry.set_train(firestore_client, "trains", "t2", 60)
    registry.register_device(firestore_client, "devices", "d1", "t1", "car1-door1")
    registry.register_device(firestore_client, "devices", "d2", "t1", "car2-door1")
    registry.register_device(firestore_client, "devices", "d3", "t2")
    write_realtime(firestore_client, "t1", 30, 120, {"d1": (3, ago(2)), "d2": (5, ago(4))})
    write_realtime(firestore_client, "t2", 50, 60, {"d3": (9, ago(1000))})

    response = http.get("/gtfs-rt/vehicle-positions.pb")
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-protobuf"
    feed = pb.FeedMessage.FromString(response.content)
    assert abs(feed.header.timestamp - datetime.datetime.now(UTC).timestamp()) < 30
    vehicles = {e.id: e.vehicle for e in feed.entity}
    assert sorted(vehicles) == ["t1", "t2"]
    realtime = firestore_client.collection("realtime").document("t1").get().to_dict()
    t1 = vehicles["t1"]
    newest = max(seen["last_seen"] for seen in realtime["devices_seen"].values())
    assert t1.vehicle.label == "Morning IC" and t1.timestamp == int(newest.timestamp())
    assert t1.occupancy_percentage == round(100 * realtime["current_value"] / 120) == 25
    assert t1.occupancy_status == VP.FEW_SEATS_AVAILABLE
    assert [c.label for c in t1.multi_carriage_details] == ["car1", "car2"]
    t2 = vehicles["t2"]  # its only device is silent for 1000 s
    assert t2.occupancy_status == VP.NO_DATA_AVAILABLE and not t2.HasField("occupancy_percentage")

    as_json = http.get("/gtfs-rt/vehicle-positions.pb", params={"format": "json"}).json()
    assert as_json["header"]["gtfs_realtime_version"] == "2.0"
    assert {e["id"]: e["vehicle"].get("occupancy_percentage") for e in as_json["entity"]} == {"t1": 25, "t2": None}
    assert http.get("/gtfs-rt/vehicle-positions.pb", params={"format": "xml"}).status_code == 422


@pytest.mark.parametrize(
    "value,status",
    [
        (0, VP.EMPTY),
        (5, VP.MANY_SEATS_AVAILABLE),
        (20, VP.FEW_SEATS_AVAILABLE),
        (50, VP.STANDING_ROOM_ONLY),
        (70, VP.CRUSHED_STANDING_ROOM_ONLY),
        (90, VP.FULL),
        (4, VP.EMPTY),
        (89, VP.CRUSHED_STANDING_ROOM_ONLY),
    ],
)
def test_feed_status_at_the_threshold_boundaries(value, status):
    feed = build_feed([view("t", value, 100, {"d": seen(1)})], NOW, fleet.Thresholds(), {})
    assert feed.entity[0].vehicle.occupancy_status == status
    assert feed.entity[0].vehicle.occupancy_percentage == value
