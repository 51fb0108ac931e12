"""Coarse public numbers: sampled once per departure, a rounded percentage, a level drawn with
secret-seeded boundaries, nothing for small vehicles; operators still see the counts."""

import base64
import concurrent.futures
import datetime
import json

import httpx
import pytest
from google.transit import gtfs_realtime_pb2 as pb

from adapters import registry
from adapters.store import COUNT_OPS_ENV
from local import stack
from occupancy import fleet, privacy, schedule
from tests import schedule_feed
from tests.support import ago, parse_time, serve_api, write_realtime

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


def hold(key, at=NOW):
    return privacy.Hold(key, at, at + datetime.timedelta(seconds=POLICY.window_s))


def published(v, key, thresholds=fleet.Thresholds()):
    public = privacy.public_view(v, v, thresholds, POLICY, hold(key))
    return fleet.published_status(public, thresholds), public.occupancy_ratio


def test_within_a_departure_no_single_boarding_shows():
    holder = privacy.Holder()
    key = privacy.hold_of(NOW, POLICY)
    first = privacy.public_view(holder.sample(view(100), key), view(100), fleet.Thresholds(), POLICY, key)
    for value in (99, 101, 150, 0):  # whatever boards or alights until the next departure
        again = privacy.public_view(holder.sample(view(value), key), view(value), fleet.Thresholds(), POLICY, key)
        assert (again.occupancy_ratio, again.public_status) == (first.occupancy_ratio, first.public_status)
        assert again.current_value is None and again.devices_seen == {}
    nxt = privacy.hold_of(NOW + datetime.timedelta(seconds=POLICY.window_s), POLICY)
    assert nxt.key != key.key and nxt.start == key.end
    later = holder.sample(view(150), nxt)
    assert later.current_value == 150  # a new departure samples anew


def test_the_holder_publishes_the_departures_sample_with_liveness_from_now():
    holder = privacy.Holder(fleet.Thresholds(), POLICY)
    key = privacy.hold_of(NOW, POLICY)
    first = holder.public(view(100), key)
    assert first == privacy.public_view(view(100), view(100), fleet.Thresholds(), POLICY, key)
    later = NOW + datetime.timedelta(seconds=200)  # same departure, the train gone quiet
    quiet = fleet.train_view(
        "t1", {"current_value": 250, "devices_seen": {"d1": {"last_seen": NOW}}}, {"capacity": 300}, later
    )
    again = holder.public(quiet, key)
    assert (again.occupancy_ratio, again.public_status) == (first.occupancy_ratio, first.public_status)
    assert (again.status, again.staleness_s) == (fleet.STATUS_STALE, 200.0)  # liveness is now's
    nxt = privacy.hold_of(NOW + datetime.timedelta(seconds=POLICY.window_s), POLICY)
    assert holder.public(view(250), nxt).occupancy_ratio == 0.8  # a new departure samples anew
    with pytest.raises(ValueError):
        privacy.Holder().public(view(1), key)


def test_the_public_percentage_moves_in_steps_a_single_person_cannot_make_visible():
    capacity = 300
    for value in range(0, capacity + 1):
        ratio = privacy.public_view(
            view(value, capacity), view(value, capacity), fleet.Thresholds(), POLICY, hold("k")
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
    assert privacy.hold_of(between, POLICY, run, departures) == ("ic1832-wd/20261201/0", *departures[:2])
    assert privacy.hold_of(departures[1], POLICY, run, departures).key == "ic1832-wd/20261201/1"
    window = datetime.timedelta(seconds=POLICY.window_s)
    last = privacy.hold_of(departures[-1], POLICY, run, departures)
    assert (last.start, last.end) == (departures[-1], departures[-1] + window)  # the last one holds a window
    before = privacy.hold_of(departures[0] - datetime.timedelta(seconds=1), POLICY, run, departures)
    assert before.key.startswith("w") and before.end == departures[0]  # a window ends at the first departure
    after = privacy.hold_of(departures[-1] + window, POLICY, run, departures)
    assert after.key.startswith("w") and after.start == departures[-1] + window


def windows(at):
    return privacy.hold_of(at, POLICY)


def test_public_history_cannot_tell_when_within_a_hold_one_person_boarded():
    """A count of 44 on a 300-place train (the step is 30 people: 44 shows as 30) and one person
    boarding: wherever in its window the boarding falls, the public history is the same, and
    every time in it is a window's end."""
    start = NOW
    later = NOW + datetime.timedelta(hours=1)

    def history(boarded_at_s):
        buckets = [(start + datetime.timedelta(seconds=s), 44) for s in range(0, 3 * POLICY.window_s, 7)]
        buckets.append((start + datetime.timedelta(seconds=boarded_at_s), 45))
        buckets.sort()
        # after the boarding, the count stays 45
        buckets = [(t, 45 if t >= start + datetime.timedelta(seconds=boarded_at_s) else v) for t, v in buckets]
        return privacy.public_history(buckets, windows, 300, POLICY, later)

    window = POLICY.window_s
    for second in (window, window + 1, window + 100, 2 * window - 1):  # anywhere in the second window
        assert history(second) == history(window + 37)
    samples = history(window + 37)
    assert [s.at - start for s in samples] == [datetime.timedelta(seconds=window * k) for k in (1, 2, 3)]
    assert [s.value for s in samples] == [30, 60, 60]  # 44 -> 30 people; 45 -> 60 from that window's end
    assert all(s.value % 30 == 0 for s in samples)


def test_public_history_samples_what_the_realtime_numbers_show_at_each_departure():
    """What the history publishes for a hold is what GET /v1/trains shows during the next one:
    the value standing when it began, at the step."""
    holder = privacy.Holder(fleet.Thresholds(), POLICY)
    values = [(NOW + datetime.timedelta(seconds=13 * i), (37 * i) % 300) for i in range(200)]
    samples = privacy.public_history(values, windows, 300, POLICY, NOW + datetime.timedelta(days=1))
    assert len(samples) == 200 * 13 // POLICY.window_s + 1
    for sample in samples:
        standing = [v for t, v in values if t < sample.at][-1]
        shown = holder.public(view(standing), privacy.hold_of(sample.at, POLICY))
        assert sample.value == round(shown.occupancy_ratio * 300)
        assert shown.last_updated == sample.at  # the moment the sample stands for, not a count's


def test_public_history_waits_for_a_hold_to_end():
    buckets = [(NOW + datetime.timedelta(seconds=10), 100)]
    assert privacy.public_history(buckets, windows, 300, POLICY, NOW + datetime.timedelta(seconds=299)) == []
    [sample] = privacy.public_history(buckets, windows, 300, POLICY, NOW + datetime.timedelta(seconds=300))
    assert sample.at == NOW + datetime.timedelta(seconds=300)
    assert privacy.public_history(buckets, windows, 12, POLICY, NOW + datetime.timedelta(days=1)) == []


def test_a_hold_not_ended_is_not_published_when_a_bucket_is_dated_past_now():
    """A device whose clock runs ahead dates a bucket in the next hold: the hold standing now is
    not published early (its value at each refresh would show when people board)."""
    policy = privacy.Policy(seed=b"s" * 16, window_s=60)
    now = datetime.datetime(2026, 12, 1, 8, 1, 30, tzinfo=UTC)  # within the 08:01 window

    def hold_at(at):
        return privacy.hold_of(at, policy)

    buckets = [(now - datetime.timedelta(seconds=80), 100), (now - datetime.timedelta(seconds=10), 150)]
    ahead = buckets + [(now + datetime.timedelta(seconds=45), 160)]
    samples = privacy.public_history(buckets, hold_at, 300, policy, now)
    assert [s.at for s in samples] == [datetime.datetime(2026, 12, 1, 8, 1, tzinfo=UTC)]
    assert privacy.public_history(ahead, hold_at, 300, policy, now) == samples


def test_the_public_last_seen_does_not_move_with_each_count():
    holder = privacy.Holder(fleet.Thresholds(), POLICY)
    hold_now = privacy.hold_of(NOW, POLICY)
    seen = []
    for offset in (3, 61, 200, 299):  # a count at each of these seconds of the window
        moment = NOW + datetime.timedelta(seconds=offset)
        realtime = {"current_value": 100, "last_updated": moment, "devices_seen": {"d1": {"last_seen": moment}}}
        v = fleet.train_view("t1", realtime, {"capacity": 300}, moment + datetime.timedelta(seconds=1))
        shown = holder.public(v, hold_now)
        seen.append((shown.last_seen, shown.last_updated))
        assert shown.staleness_s == offset + 1  # from the floored time: no finer than the window
    assert set(seen) == {(NOW, NOW)}


@pytest.fixture(scope="module")
def coarse_api(firestore_emulator, auth_emulator, tmp_path_factory):
    seed = tmp_path_factory.mktemp("seed") / "seed"
    seed.write_bytes(b"a secret seed for this test only, 32b")
    ops = tmp_path_factory.mktemp("ops") / "ops"
    process, base_url = serve_api(
        tmp_path_factory,
        {**firestore_emulator.env(), **auth_emulator.env(), COUNT_OPS_ENV: str(ops)},
        "--fleet_cache_s=0",
        "--public_precision=coarse",
        "--privacy_window_s=86400",
        f"--privacy_seed_file={seed}",
    )
    yield base_url, ops
    stack.stop_process(process)


def reads_counted(ops) -> int:
    return sum(int(line.split()[0]) for line in ops.read_text().splitlines()) if ops.exists() else 0


def test_the_public_history_is_one_sample_per_hold_at_its_end_read_once_for_every_reader(
    coarse_api, firestore_client, tokens
):
    base_url, ops = coarse_api
    registry.set_train(firestore_client, "trains", "t9", 300, "IC 9")  # not t1: the API holds t1's sample
    midnight = datetime.datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    days = [midnight - datetime.timedelta(days=d) for d in (3, 2, 1)]
    exact = []
    for day, value in zip(days, (44, 45, 200)):  # holds of a day (--privacy_window_s=86400)
        for second, delta in ((8 * 3600 + 17, -3), (12 * 3600 + 1, 0), (17 * 3600 + 59, +3)):
            moment = day + datetime.timedelta(seconds=second)
            exact.append((moment, value + delta))
            firestore_client.collection("history").document(f"h{len(exact)}").set(
                {"train": "t9", "timestamp": moment, "bucket_start": moment, "value": value + delta, "boarded": 1}
            )
    path = "/v1/trains/t9/history"
    with httpx.Client(base_url=base_url, timeout=30) as http:
        items = http.get(path).json()["items"]
        # One sample per day, at the day's end, of the value standing then, at the step (30 people).
        assert [parse_time(i["timestamp"]) for i in items] == [d + datetime.timedelta(days=1) for d in days]
        assert [i["value"] for i in items] == [60, 60, 210]  # 47, 48, 203 standing at each day's end
        assert all(i["boarded"] == 0 and i["events"] == 0 for i in items)
        walked, cursor = [], None
        while True:  # a page at a time: the same samples
            page = http.get(path, params={"limit": 1, **({"cursor": cursor} if cursor else {})}).json()
            walked += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert walked == items
        # A bound or a cursor inside a hold is widened to whole holds: no bound cuts a hold.
        mid = datetime.timedelta(hours=10)
        assert http.get(path, params={"to": (days[2] + mid).isoformat()}).json()["items"] == items[:2]
        assert http.get(path, params={"from": (days[1] + mid).isoformat()}).json()["items"] == items[1:]
        forged = base64.urlsafe_b64encode(json.dumps({"t": (days[1] + mid).isoformat(), "id": "h5"}).encode())
        assert http.get(path, params={"cursor": forged.decode()}).json()["items"] == items[1:]
        # An operator gets every bucket, exact.
        operator = http.get(path, headers=tokens["operator"]).json()["items"]
        assert [(parse_time(i["timestamp"]), i["value"]) for i in operator] == exact
        # A crowd of readers of one page: one read of the history within --public_cache_s.
        before = reads_counted(ops)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            crowd = list(pool.map(lambda _: http.get(path, params={"limit": 2}).json(), range(24)))
        assert all(answer == crowd[0] for answer in crowd)
        history_reads = reads_counted(ops) - before - 24 * 2  # each request also reads the fleet (2 queries)
        assert history_reads <= len(exact) + 1, history_reads


def test_a_public_history_page_costs_a_bounded_read_and_a_hold_of_thousands_of_buckets_is_one_sample(
    coarse_api, firestore_client
):
    """A day's hold (--privacy_window_s=86400) holding 5,200 buckets, and the days around it a
    bucket each: each page reads at most its budget, however many buckets a hold holds, and the
    walk through the pages ends, with one sample per day at its end."""
    base_url, ops = coarse_api
    registry.set_train(firestore_client, "trains", "t8", 300, "IC 8")
    midnight = datetime.datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    busy, quiet = midnight - datetime.timedelta(days=3), midnight - datetime.timedelta(days=2)
    buckets = [(busy - datetime.timedelta(days=1, hours=-9), 30)]  # the day before: one bucket
    buckets += [(busy + datetime.timedelta(seconds=5 * k), 100 + k % 7) for k in range(5200)]
    buckets += [(quiet + datetime.timedelta(hours=9), 200)]
    batch = firestore_client.batch()
    for n, (moment, value) in enumerate(buckets):
        doc = firestore_client.collection("history").document(f"t8h{n:05d}")
        batch.set(doc, {"train": "t8", "timestamp": moment, "bucket_start": moment, "value": value, "boarded": 0})
        if n % 500 == 499:
            batch.commit()
            batch = firestore_client.batch()
    batch.commit()
    path, walked, cursor, pages = "/v1/trains/t8/history", [], None, 0
    with httpx.Client(base_url=base_url, timeout=60) as http:
        while pages < 20:
            before = reads_counted(ops)
            page = http.get(path, params={"limit": 500, **({"cursor": cursor} if cursor else {})}).json()
            assert reads_counted(ops) - before <= 1_200, pages  # the page's budget, and the fleet's read
            walked, cursor, pages = walked + page["items"], page["next_cursor"], pages + 1
            if not cursor:
                break
    # The last bucket of the busy day is 100 + 5199 % 7 = 105 people: 120 in the public's steps.
    assert [(parse_time(i["timestamp"]), i["value"]) for i in walked] == [
        (busy, 30),
        (busy + datetime.timedelta(days=1), 120),
        (quiet + datetime.timedelta(days=1), 210),
    ], pages


def test_the_public_reads_are_coarse_and_operators_see_the_counts(coarse_api, firestore_client, tokens):
    registry.set_train(firestore_client, "trains", "t1", 300, "IC 1")
    registry.register_device(firestore_client, "devices", "d1", "t1", "car1-door1")
    write_realtime(firestore_client, "t1", 101, 300, {"d1": (3, ago(1))})
    with httpx.Client(base_url=coarse_api[0], timeout=30) as http:

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


def test_the_public_read_cache_is_bounded_and_reads_again_after_its_interval():
    from api.caches import ReadCache

    now = [0.0]
    cache = ReadCache(ttl_s=30, size=3, clock=lambda: now[0])
    calls = []

    def read(key):
        return lambda: calls.append(key) or f"answer {key} #{len(calls)}"

    assert cache.get("a", read("a")) == cache.get("a", read("a")) == "answer a #1"
    now[0] = 30.0
    assert cache.get("a", read("a")) == "answer a #2"  # the interval over: read again
    for key in "bcd":
        cache.get(key, read(key))
    cache.get("a", read("a"))  # "a" was the least recently used of four: dropped, read again
    assert calls == ["a", "a", "b", "c", "d", "a"]

    def broken():
        raise OSError("Firestore down")

    with pytest.raises(OSError):
        cache.get("e", broken)
    assert cache.get("e", read("e")) == "answer e #7"  # a failed read is not kept
