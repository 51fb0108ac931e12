"""The forecast as the API serves it, against the Firestore emulator: a trip's stops, a stop's
next departures; the public gets levels and the percentage in the public steps, operators the
loads."""

import datetime
from xml.etree import ElementTree

import httpx
import pytest

from local import stack
from tests import schedule_feed
from tests.support import serve_api, write_forecast

UTC = datetime.timezone.utc


@pytest.fixture(scope="module")
def forecast_api(made_at, firestore_emulator, auth_emulator, tmp_path_factory):
    feed = schedule_feed.write(tmp_path_factory.mktemp("gtfs") / "gtfs.zip", schedule_feed.files_running_at(made_at))
    process, base_url = serve_api(
        tmp_path_factory,
        {**firestore_emulator.env(), **auth_emulator.env()},
        f"--gtfs_static={feed}",
        "--public_precision=coarse",
        "--fleet_cache_s=0",
    )
    yield base_url
    stack.stop_process(process)


def test_a_trips_forecast_and_a_stops_departures_public_coarse_operators_exact(
    forecast_api, made_at, firestore_client, tokens
):
    today = schedule_feed.service_day(made_at)
    write_forecast(firestore_client, "now-7777", today, zip(((1, "basel"), (2, "chur")), (131, 160)))
    with httpx.Client(base_url=forecast_api, timeout=30) as http:
        public = http.get("/v1/trips/now-7777/forecast", params={"date": today.isoformat()})
        assert public.status_code == 200, public.text
        stops = public.json()["stops"]
        # 131 of 300 is 44 %: 40 in the public's 10 % steps; no loads for the public.
        assert [(s["stop_id"], s["occupancy_status"], s["occupancy_percentage"]) for s in stops] == [
            ("basel", "FEW_SEATS_AVAILABLE", 40),
            ("chur", "STANDING_ROOM_ONLY", 50),
        ]
        assert all("predicted_load" not in s for s in stops)
        # Named and timed from the static feed: now-7777 leaves Chur an hour after the feed was made.
        assert [s["stop_name"] for s in stops] == ["Basel SBB", "Chur"]
        leaves = datetime.datetime.fromisoformat(stops[1]["departure_time"])
        assert abs((leaves - datetime.datetime.now(UTC)).total_seconds() - 3600) < 120, stops
        assert public.json()["forecast_start"] == (today - datetime.timedelta(days=2)).isoformat()
        operator = http.get("/v1/trips/now-7777/forecast", headers=tokens["operator"]).json()["stops"]
        assert [(s["predicted_load"], s["predicted_load_p10"], s["predicted_load_p90"]) for s in operator] == [
            (131, 111, 156),
            (160, 140, 185),
        ]
        assert operator[0]["occupancy_percentage"] == 44
        missing = http.get("/v1/trips/now-7777/forecast", params={"date": "2026-01-01"})
        assert missing.status_code == 404 and "no forecast" in missing.json()["detail"]
        assert http.get("/v1/trips/now-7777/forecast", params={"date": "tomorrow"}).status_code == 422

        # Chur: now-7777 and now-8888 both leave it within the hour; now-7777 has a forecast. (Between
        # 22:30 and 23:30 in Zurich the feed's ic1999-night leaves Chur before them: found by trip.)
        board = http.get("/v1/stops/chur/departures").json()
        assert board["stop_name"] == "Chur"
        shown = {d["trip_id"]: (d["occupancy_status"], d.get("occupancy_percentage")) for d in board["departures"]}
        assert shown["now-7777"] == ("STANDING_ROOM_ONLY", 50)
        times = [d["departure_time"] for d in board["departures"]]
        assert times == sorted(times, key=datetime.datetime.fromisoformat)
        assert all(
            datetime.datetime.fromisoformat(d["departure_time"])
            >= datetime.datetime.fromisoformat(board["generated_at"])
            for d in board["departures"]
        )
        basel = http.get("/v1/stops/basel/departures", params={"limit": 3}).json()["departures"]
        assert len(basel) <= 3
        # A departure without a forecast document is shown, with no level.
        assert {d["occupancy_status"] for d in basel if d["trip_id"] != "now-7777"} <= {"NO_DATA_AVAILABLE"}
        assert http.get("/v1/stops/nowhere/departures").json()["departures"] == []


def test_the_trip_updates_feed_says_the_level_ahead_of_a_train_on_its_trip(
    forecast_api, made_at, firestore_client, tokens
):
    from google.transit import gtfs_realtime_pb2 as pb

    from adapters import registry
    from tests.support import ago, write_realtime

    today = schedule_feed.service_day(made_at)
    write_forecast(firestore_client, "now-7777", today, zip(((1, "basel"), (2, "chur")), (131, 160)))
    registry.set_train(firestore_client, "trains", "t7777", 300, "IC 7777", train_number="7777")
    write_realtime(firestore_client, "t7777", 200, 300, {"d1": (3, ago(2))})
    with httpx.Client(base_url=forecast_api, timeout=30) as http:
        # It left Basel an hour ago with 200 on board where 131 were forecast: for an operator,
        # Chur's 160 plus those 69 more, over 0.7 of 300 places. The public, who sees no count,
        # gets the day-ahead level (160 of 300).
        for headers, level in (({}, "STANDING_ROOM_ONLY"), (tokens["operator"], "CRUSHED_STANDING_ROOM_ONLY")):
            feed = pb.FeedMessage.FromString(http.get("/gtfs-rt/trip-updates.pb", headers=headers).content)
            [entity] = feed.entity
            update = entity.trip_update
            assert (update.trip.trip_id, update.vehicle.id) == ("now-7777", "t7777")
            [chur] = update.stop_time_update
            assert (chur.stop_id, pb.VehiclePosition.OccupancyStatus.Name(chur.departure_occupancy_status)) == (
                "chur",
                level,
            )
            # SIRI-ET says the same, in SIRI's spelling of the GTFS-R level.
            siri = http.get("/siri/2.1/estimated-timetable.xml", headers=headers)
            assert siri.headers["content-type"].startswith("application/xml")
            ns = {"siri": "http://www.siri.org.uk/siri"}
            [call] = ElementTree.fromstring(siri.content).iterfind(".//siri:EstimatedCall", ns)
            assert (
                call.findtext("siri:StopPointRef", namespaces=ns),
                call.findtext("siri:ExpectedDepartureOccupancy/siri:OccupancyLevel", namespaces=ns),
            ) == (
                "chur",
                {"STANDING_ROOM_ONLY": "standingRoomOnly", "CRUSHED_STANDING_ROOM_ONLY": "crushedStandingRoomOnly"}[
                    level
                ],
            )
        # The trip's forecast and Chur's board carry the same correction for the stop to come.
        operator = http.get("/v1/trips/now-7777/forecast", headers=tokens["operator"]).json()
        assert operator["train_id"] == "t7777"
        basel, chur = operator["stops"]
        assert "same_day" not in basel and basel["predicted_load"] == 131  # passed: the day-ahead as is
        assert chur["same_day"] is True
        assert (chur["predicted_load"], chur["occupancy_percentage"]) == (160 + 69, 76)
        assert chur["occupancy_status"] == "CRUSHED_STANDING_ROOM_ONLY" and "predicted_load_p90" not in chur
        public_chur = http.get("/v1/trips/now-7777/forecast").json()["stops"][1]
        assert "same_day" not in public_chur and "predicted_load" not in public_chur
        assert (public_chur["occupancy_status"], public_chur["occupancy_percentage"]) == ("STANDING_ROOM_ONLY", 50)
        board = http.get("/v1/stops/chur/departures", headers=tokens["operator"]).json()["departures"]
        [board] = [d for d in board if d["trip_id"] == "now-7777"]
        assert (board["same_day"], board["occupancy_status"]) == (True, "CRUSHED_STANDING_ROOM_ONLY")


def test_a_forecast_document_is_read_once_a_minute_and_a_missing_one_is_not_kept(firestore_emulator, firestore_client):
    import uuid

    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import Settings

    collection, day = f"forecasts-{uuid.uuid4().hex[:8]}", "2027-01-04"
    settings = Settings(project=stack.PROJECT, forecast_collection=collection)
    with TestClient(create_app(settings, client=firestore_client)) as http:

        def levels():
            answer = http.get("/v1/trips/t1/forecast", params={"date": day})
            return answer.status_code, [s["occupancy_status"] for s in answer.json().get("stops", [])]

        assert levels() == (404, [])
        stops = ((1, "basel"), (2, "chur"))
        write_forecast(firestore_client, "t1", datetime.date(2027, 1, 4), zip(stops, (40, 60)), collection=collection)
        assert levels() == (200, ["FEW_SEATS_AVAILABLE", "FEW_SEATS_AVAILABLE"])  # the 404 was not kept
        write_forecast(firestore_client, "t1", datetime.date(2027, 1, 4), zip(stops, (200, 250)), collection=collection)
        # Within the minute, the document as read: the job writes once a run, dashboards ask often.
        assert levels() == (200, ["FEW_SEATS_AVAILABLE", "FEW_SEATS_AVAILABLE"])


def test_a_train_out_on_its_trip_keeps_its_forecast_in_the_feeds_while_its_doors_are_quiet(
    forecast_api, made_at, firestore_client, tokens
):
    """The feeds' load ahead is a forecast: a train out on its trip keeps it while its doors have
    gone quiet, its old count correcting nothing; a train never seen, or last seen before the
    run began, is in the depot whatever its number; of two trains on one run, the one counting."""
    from google.transit import gtfs_realtime_pb2 as pb

    from adapters import registry
    from tests.support import ago, write_realtime

    today = schedule_feed.service_day(made_at)
    write_forecast(firestore_client, "now-8888", today, zip(((1, "basel"), (2, "chur")), (100, 160)))
    registry.set_train(firestore_client, "trains", "t8888", 300, "IC 8888", train_number="8888")
    ns = {"siri": "http://www.siri.org.uk/siri"}
    with httpx.Client(base_url=forecast_api, timeout=30) as http:

        def feeds(headers):
            """(vehicle, levels) of now-8888 in TripUpdates, and [(vehicle, level)] in SIRI-ET."""
            feed = pb.FeedMessage.FromString(http.get("/gtfs-rt/trip-updates.pb", headers=headers).content)
            updates = [e.trip_update for e in feed.entity if e.trip_update.trip.trip_id == "now-8888"]
            root = ElementTree.fromstring(http.get("/siri/2.1/estimated-timetable.xml", headers=headers).content)
            journeys = [
                j
                for j in root.iterfind(".//siri:EstimatedVehicleJourney", ns)
                if j.findtext(".//siri:DatedVehicleJourneyRef", namespaces=ns) == "now-8888"
            ]
            status = pb.VehiclePosition.OccupancyStatus.Name
            return (
                [(u.vehicle.id, [status(s.departure_occupancy_status) for s in u.stop_time_update]) for u in updates],
                [
                    (j.findtext("siri:VehicleRef", namespaces=ns), j.findtext(".//siri:OccupancyLevel", namespaces=ns))
                    for j in journeys
                ],
            )

        def both(expected):
            return all(feeds(headers) == expected for headers in ({}, tokens["operator"]))

        # Never seen: in the depot, for all its number says.
        assert both(([], []))
        # Seen 10 minutes ago, within the run (it began an hour ago), quiet since (stale past
        # 90 s) with 290 on board then: out on its trip, the day-ahead level at Chur (160 of
        # 300); the old count is no correction, which would make it crushed.
        write_realtime(firestore_client, "t8888", 290, 300, {"d1": (3, ago(600))})
        day_ahead = ([("t8888", ["STANDING_ROOM_ONLY"])], [("t8888", "standingRoomOnly")])
        assert stack.wait_for(lambda: both(day_ahead), 30, what="t8888 in the feeds")
        # Last seen two hours ago, before its run began: in the depot.
        write_realtime(firestore_client, "t8888", 290, 300, {"d1": (3, ago(7200))})
        assert stack.wait_for(lambda: both(([], [])), 30, what="t8888 out of the feeds")
        # Back within the run, and a second train given the same number, counting now: one
        # update for the run, the counting train's (the public's level the day-ahead one).
        write_realtime(firestore_client, "t8888", 290, 300, {"d1": (4, ago(600))})
        registry.set_train(firestore_client, "trains", "t8888b", 300, "IC 8888 (spare)", train_number="8888")
        write_realtime(firestore_client, "t8888b", 20, 300, {"d2": (1, ago(2))})
        spare = ([("t8888b", ["STANDING_ROOM_ONLY"])], [("t8888b", "standingRoomOnly")])
        assert stack.wait_for(lambda: feeds({}) == spare, 30, what="the spare alone in the feeds")
        assert http.get("/v1/trips/now-8888/forecast", headers=tokens["operator"]).json()["train_id"] == "t8888b"
