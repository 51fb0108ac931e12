"""occupancy/fleet.py: freshness, thresholds and carriages (pure logic, no emulator)."""

import datetime
import threading
import time

import pytest

from adapters import fleet_cache
from occupancy import fleet

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "ratio,status",
    [
        (None, "NO_DATA_AVAILABLE"),
        (0.0, "EMPTY"),
        (0.0499, "EMPTY"),
        (0.05, "MANY_SEATS_AVAILABLE"),
        (0.1999, "MANY_SEATS_AVAILABLE"),
        (0.2, "FEW_SEATS_AVAILABLE"),
        (0.4999, "FEW_SEATS_AVAILABLE"),
        (0.5, "STANDING_ROOM_ONLY"),
        (0.6999, "STANDING_ROOM_ONLY"),
        (0.7, "CRUSHED_STANDING_ROOM_ONLY"),
        (0.8999, "CRUSHED_STANDING_ROOM_ONLY"),
        (0.9, "FULL"),
        (1.0, "FULL"),
        (1.7, "FULL"),
    ],
)
def test_default_thresholds_at_every_boundary(ratio, status):
    assert fleet.Thresholds().status(ratio) == status


def test_thresholds_parse_and_reject():
    custom = fleet.Thresholds.parse("0.1,0.3,0.6,0.8,1.0")
    assert custom.status(0.29) == "MANY_SEATS_AVAILABLE" and custom.status(0.99) == "CRUSHED_STANDING_ROOM_ONLY"
    for bad, message in (
        ("0.1,0.2", "need 5"),
        ("a,b,c,d,e", "comma-separated"),
        ("0.5,0.2,0.6,0.7,0.9", "strictly increasing"),
        ("0.1,0.1,0.2,0.3,0.4", "strictly"),
        ("-1,0.2,0.5,0.7,0.9", ">= 0"),
        ("0.1,0.2,0.5,0.7,inf", "finite"),
        ("0.1,0.2,0.5,0.7,nan", "finite"),
    ):
        with pytest.raises(ValueError, match=message):
            fleet.Thresholds.parse(bad)


@pytest.mark.parametrize("age_s,status", [(0, "ok"), (90, "ok"), (90.5, "stale"), (-5, "ok")])
def test_train_status_from_the_newest_last_seen(age_s, status):
    got, staleness = fleet.train_status(NOW - datetime.timedelta(seconds=age_s), NOW, 90)
    assert got == status and staleness == max(0.0, age_s)
    assert fleet.train_status(None, NOW) == ("no_data", None)


def test_train_view_joins_registry_and_realtime():
    seen = {
        "d1": {"last_seen": NOW - datetime.timedelta(seconds=200)},
        "d2": {"last_seen": NOW - datetime.timedelta(seconds=10)},
        "d3": {"last_seen": datetime.datetime(1970, 1, 1, tzinfo=UTC)},
    }
    view = fleet.train_view("t1", {"current_value": 30, "devices_seen": seen}, {"capacity": 120, "name": "X"}, NOW)
    assert (view.capacity, view.current_value, view.occupancy_ratio) == (120, 30, 0.25)
    assert view.status == "ok" and view.staleness_s == 10 and view.name == "X"
    assert fleet.published_status(view, fleet.Thresholds()) == "FEW_SEATS_AVAILABLE"
    unseen = fleet.train_view("t2", None, {"capacity": 10}, NOW)
    assert unseen.status == "no_data" and unseen.current_value is None
    assert fleet.published_status(unseen, fleet.Thresholds()) == "NO_DATA_AVAILABLE"
    stale = fleet.train_view("t3", {"current_value": 5, "devices_seen": {"d": seen["d1"]}}, {"capacity": 10}, NOW)
    assert stale.status == "stale" and fleet.published_status(stale, fleet.Thresholds()) == "NO_DATA_AVAILABLE"
    no_capacity = fleet.train_view("t4", {"current_value": 5, "devices_seen": seen}, None, NOW)
    assert no_capacity.occupancy_ratio is None
    assert fleet.published_status(no_capacity, fleet.Thresholds()) == "NO_DATA_AVAILABLE"


@pytest.mark.parametrize(
    "value,capacity,pct",
    [(0, 100, 0), (50, 200, 25), (1, 3, 33), (250, 200, 125), (-3, 100, 0), (5, None, None), (5, 0, None)],
)
def test_occupancy_percentage(value, capacity, pct):
    assert fleet.occupancy_percentage(value, capacity) == pct


def test_carriages_from_door_names():
    assert fleet.carriage_of("car3-door2") == ("car3", 3)
    assert fleet.carriage_of("CAR12_door1") == ("car12", 12)
    assert fleet.carriage_of("car1") == ("car1", 1)
    for door in (None, "", "front", "carriage3", "car-3", "car0-door1", f"car{fleet.MAX_CARRIAGES + 1}"):
        assert fleet.carriage_of(door) is None
    seen = {
        "a": {"trip_boarded": 10, "trip_alighted": 2},
        "b": {"trip_boarded": 3, "trip_alighted": 1},
        "c": {"trip_boarded": 1, "trip_alighted": 6},
        "d": {"trip_boarded": 9},
    }
    doors = {"a": "car2-door1", "b": "car2-door2", "c": "car1-door1", "d": "front", "e": "car3-door1"}
    # car3's one door never reported: no count (not an empty carriage).
    assert fleet.carriage_counts(seen, doors) == {("car1", 1): 0, ("car2", 2): 10}
    assert fleet.carriage_counts(seen, {"d": "front"}) == {}


def _wait(predicate, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_fleet_cache_refreshes_in_the_background_while_it_serves_the_last_view():
    clock = [100.0]
    reads, release = [], threading.Event()

    def read():
        reads.append(clock[0])
        if len(reads) > 1:
            release.wait(5)  # a slow fleet read
        return clock[0], [len(reads)]

    cache = fleet_cache.FleetCache(1.0, max_age_s=30.0, clock=lambda: clock[0])
    assert cache.get(read) == (100.0, [1])
    clock[0] = 100.9
    assert cache.get(read) == (100.0, [1]) and len(reads) == 1
    clock[0] = 101.5  # older than the TTL: one background read starts, callers get the last view
    for _ in range(20):
        assert cache.get(read) == (100.0, [1])
    _wait(lambda: len(reads) == 2)
    assert cache.refreshes == 1
    clock[0] = 103.0  # the refresh read began at 101.5 and still runs: no second one
    assert cache.get(read) == (100.0, [1]) and cache.refreshes == 1
    release.set()
    _wait(lambda: cache.get(read)[1] == [2])  # the refreshed view, stamped when its read began
    assert cache._read_at == 101.5
    never = fleet_cache.FleetCache(0.0, clock=lambda: clock[0])
    never.get(read)
    never.get(read)
    assert len(reads) >= 4


def test_a_read_slower_than_the_ttl_is_not_repeated_for_every_request():
    """The old cache stamped its read time before a read and reused the view for the TTL from
    it: a read longer than the TTL was stale on arrival and every request read the fleet again."""
    reads = []

    def read():
        reads.append(1)
        time.sleep(0.05)  # longer than the TTL
        return time.monotonic(), []

    cache = fleet_cache.FleetCache(0.02, max_age_s=30.0)
    for _ in range(50):
        cache.get(read)
        time.sleep(0.002)
    assert len(reads) <= 50 * 0.002 / 0.05 + 4  # about one read per read time, not one per call


def test_a_view_that_cannot_be_refreshed_is_refused_once_too_old():
    from google.api_core import exceptions as gexc

    clock = [100.0]
    failing = [False]

    def read():
        if failing[0]:
            raise gexc.ServiceUnavailable("Firestore is down")
        return clock[0], ["view"]

    cache = fleet_cache.FleetCache(1.0, max_age_s=10.0, clock=lambda: clock[0])
    cache.get(read)
    failing[0] = True
    clock[0] = 105.0
    assert cache.get(read) == (100.0, ["view"])  # the refresh fails in the background
    _wait(lambda: not cache._refreshing)
    clock[0] = 111.0
    with pytest.raises(fleet_cache.FleetStale):
        cache.get(read)
    failing[0] = False  # Firestore is back: the next refresh recovers without a restart
    _wait(lambda: not cache._refreshing)
    _wait(lambda: _served(cache, read) == (111.0, ["view"]))


def _served(cache, read):
    try:
        return cache.get(read)
    except fleet_cache.FleetStale:
        return None


def test_a_fleet_whose_read_outlasts_the_max_age_is_still_served():
    """10,000 trains: one read took longer than --fleet_max_age_s; the view it returns is served
    (the age that makes a 503 counts from the last read that finished)."""
    clock = [100.0]

    def slow_read():
        began = clock[0]
        clock[0] += 40.0  # longer than max_age_s
        return began, ["view"]

    cache = fleet_cache.FleetCache(1.0, max_age_s=30.0, clock=lambda: clock[0])
    assert cache.get(slow_read) == (100.0, ["view"])
    _wait(lambda: not cache._refreshing)  # its refresh (40 s more) finished too
    assert cache.get(slow_read)[1] == ["view"]
