"""Coarse public numbers: sampled once per departure, a rounded percentage, a level drawn with
secret-seeded boundaries, nothing for small vehicles; operators still see the counts."""

import datetime

import httpx
import pytest
from google.transit import gtfs_realtime_pb2 as pb

from local import stack
from occupancy import fleet, privacy, registry, schedule
from tests import schedule_feed
from tests.support import ago, serve_api, write_realtime

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
POLICY = privacy.Policy(seed=b"a test seed, not a secret 0123456789")


def view(value, capacity=300, train="t1"):
    realtime = {
        "current_value": value,
        "last_updated": NOW,
        "devices_seen": {"d1": {"last_seen": NOW, "seq": value + 1}},
    }
    return fleet.train_view(train, realtime, {"capacity": capacity}, NOW)


def published(v, key, thresholds=fleet.Thresholds()):
    public = privacy.public_view(v, v, thresholds, POLICY, key)
    return fleet.published_status(public, thresholds), public.occupancy_ratio


def test_within_a_departure_no_single_boarding_shows():
    holder = privacy.Holder()
    key = privacy.departure_key(NOW, POLICY)
    first = privacy.public_view(holder.sample(view(100), key), view(100), fleet.Thresholds(), POLICY, key)
    for value in (99, 101, 150, 0):  # whatever boards or alights until the next departure
        again = privacy.public_view(holder.sample(view(value), key), view(value), fleet.Thresholds(), POLICY, key)
        assert (again.occupancy_ratio, again.public_status) == (first.occupancy_ratio, first.public_status)
        assert again.current_value is None and again.devices_seen == {}
    nxt = privacy.departure_key(NOW + datetime.timedelta(seconds=POLICY.window_s), POLICY)
    assert nxt != key
    later = holder.sample(view(150), nxt)
    assert later.current_value == 150  # a new departure samples anew


def test_the_holder_publishes_the_departures_sample_with_liveness_from_now():
    holder = privacy.Holder(fleet.Thresholds(), POLICY)
    key = privacy.departure_key(NOW, POLICY)
    first = holder.public(view(100), key)
    assert first == privacy.public_view(view(100), view(100), fleet.Thresholds(), POLICY, key)
    later = NOW + datetime.timedelta(seconds=200)  # same departure, the train gone quiet
    quiet = fleet.train_view(
        "t1", {"current_value": 250, "devices_seen": {"d1": {"last_seen": NOW}}}, {"capacity": 300}, later
    )
    again = holder.public(quiet, key)
    assert (again.occupancy_ratio, again.public_status) == (first.occupancy_ratio, first.public_status)
    assert (again.status, again.staleness_s) == (fleet.STATUS_STALE, 200.0)  # liveness is now's
    nxt = privacy.departure_key(NOW + datetime.timedelta(seconds=POLICY.window_s), POLICY)
    assert holder.public(view(250), nxt).occupancy_ratio == 0.8  # a new departure samples anew
    with pytest.raises(ValueError):
        privacy.Holder().public(view(1), key)


def test_the_public_percentage_moves_in_steps_a_single_person_cannot_make_visible():
    capacity = 300
    for value in range(0, capacity + 1):
        ratio = privacy.public_view(
            view(value, capacity), view(value, capacity), fleet.Thresholds(), POLICY, "k"
        ).occupancy_ratio
        assert round(ratio * 100) % POLICY.step_pct == 0
    # ±1 around any count changes the step only where a 10 % boundary lies, and the same count
    # 15 people from it never does: a step is 30 people here.
    changes = sum(published(view(v), "k")[1] != published(view(v + 1), "k")[1] for v in range(capacity))
    assert changes == capacity // 30


def test_the_level_is_the_same_for_a_departure_and_drawn_differently_across_departures():
    near_boundary = view(int(0.5 * 300))  # exactly on STANDING_ROOM_ONLY's lower bound
    assert published(near_boundary, "ic1832/20261201/3") == published(near_boundary, "ic1832/20261201/3")
    levels = {published(near_boundary, f"ic1832/20261201/{stop}")[0] for stop in range(40)}
    assert levels == {"FEW_SEATS_AVAILABLE", "STANDING_ROOM_ONLY"}
    other_seed = POLICY._replace(seed=b"another seed entirely, 0123456789")
    draws = [
        privacy.coarse_status(0.5, fleet.Thresholds(), p, "t1", f"k{i}")
        for p in (POLICY, other_seed)
        for i in range(40)
    ]
    assert draws[:40] != draws[40:]  # the seed decides: without it the draws cannot be predicted


def test_small_vehicles_publish_nothing():
    status, ratio = published(view(5, capacity=12), "k")
    assert (status, ratio) == ("NO_DATA_AVAILABLE", None)
    assert privacy.coarse_history_value(5, 12, POLICY) is None
    assert privacy.coarse_history_value(47, 300, POLICY) == 60  # 47 people: the 10 % step is 30


def test_a_scheduled_train_is_sampled_at_each_stop_departure():
    feed = schedule.Schedule(schedule_feed.FILES)
    morning = datetime.datetime(2026, 12, 1, 8, 30, tzinfo=schedule_feed.ZoneInfo("Europe/Zurich"))
    run = feed.current_run("1832", morning)
    departures = run.departure_times()
    assert len(departures) == 3
    between = departures[1] - datetime.timedelta(minutes=1)
    assert privacy.departure_key(between, POLICY, run, departures) == "ic1832-wd/20261201/0"
    assert privacy.departure_key(departures[1], POLICY, run, departures) == "ic1832-wd/20261201/1"


@pytest.fixture(scope="module")
def coarse_api(firestore_emulator, auth_emulator, tmp_path_factory):
    seed = tmp_path_factory.mktemp("seed") / "seed"
    seed.write_bytes(b"a secret seed for this test only, 32b")
    process, base_url = serve_api(
        tmp_path_factory,
        {**firestore_emulator.env(), **auth_emulator.env()},
        "--fleet_cache_s=0",
        "--public_precision=coarse",
        "--privacy_window_s=86400",
        f"--privacy_seed_file={seed}",
    )
    yield base_url
    stack.stop_process(process)


def test_the_public_reads_are_coarse_and_operators_see_the_counts(coarse_api, firestore_client, tokens):
    registry.set_train(firestore_client, "trains", "t1", 300, "IC 1")
    registry.register_device(firestore_client, "devices", "d1", "t1", "car1-door1")
    write_realtime(firestore_client, "t1", 101, 300, {"d1": (3, ago(1))})
    with httpx.Client(base_url=coarse_api, timeout=30) as http:

        def public():
            train = http.get("/v1/trains").json()["trains"][0]
            feed = pb.FeedMessage.FromString(http.get("/gtfs-rt/vehicle-positions.pb").content)
            return train, feed.entity[0].vehicle

        train, vehicle = public()
        assert train["current_value"] is None and train["occupancy_ratio"] == 0.3
        assert vehicle.occupancy_percentage == 30
        assert http.get("/v1/trains/t1").json()["devices"] == []
        exact = http.get("/v1/trains", headers=tokens["operator"]).json()["trains"][0]
        assert exact["current_value"] == 101
        # One more person: the public numbers do not move until the next departure.
        write_realtime(firestore_client, "t1", 102, 300, {"d1": (4, ago(1))})
        again, vehicle_again = public()
        assert (again["occupancy_ratio"], again["occupancy_status"]) == (
            train["occupancy_ratio"],
            train["occupancy_status"],
        )
        assert vehicle_again.occupancy_percentage == vehicle.occupancy_percentage
        assert http.get("/v1/trains", headers=tokens["operator"]).json()["trains"][0]["current_value"] == 102
        # A signed-in user who is not an operator is the public.
        assert http.get("/v1/trains", headers=tokens["user"]).json()["trains"][0]["current_value"] is None
