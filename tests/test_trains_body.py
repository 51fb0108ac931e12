"""GET /v1/trains and the feed render their body once per fleet view (in-process, no emulator): the same bytes
for every reader of that view, the public and the operators' kept apart."""

import datetime
import types

from fastapi.testclient import TestClient

import api.trains
from api.app import create_app
from api.settings import Settings


class _Fleet:
    """A Firestore client holding a fleet of `trains` trains, counting the queries."""

    def __init__(self, trains: int):
        self.queries = 0
        now = datetime.datetime.now(datetime.timezone.utc)  # devices seen just now: every train `ok`
        self.docs = {
            "realtime": {
                f"t{i}": {"current_value": 50 + i, "devices_seen": {f"d{i}": {"last_seen": now}}} for i in range(trains)
            },
            "trains": {f"t{i}": {"capacity": 100} for i in range(trains)},
            "devices": {f"d{i}": {"train_id": f"t{i}", "door": "car1-door1", "enabled": True} for i in range(trains)},
        }

    def collection(self, name):
        def stream(*args, **kwargs):
            self.queries += 1
            return [types.SimpleNamespace(id=i, to_dict=lambda d=d: d) for i, d in self.docs[name].items()]

        return types.SimpleNamespace(stream=stream)


def test_the_list_is_rendered_once_per_fleet_view(monkeypatch):
    rendered = []
    original = api.trains.train_out
    monkeypatch.setattr(api.trains, "train_out", lambda view, *a: rendered.append(view.train_id) or original(view, *a))
    fleet = _Fleet(3)
    with TestClient(create_app(Settings(fleet_cache_s=3600, fleet_max_age_s=7200), client=fleet)) as http:
        first, second = http.get("/v1/trains"), http.get("/v1/trains")
        assert first.status_code == second.status_code == 200
        assert first.headers["content-type"] == "application/json"
        assert first.content == second.content and len(rendered) == 3  # one view: rendered once
        body = first.json()
        assert [t["train_id"] for t in body["trains"]] == ["t0", "t1", "t2"]
        assert all(t["current_value"] is None for t in body["trains"])  # the public's: coarse
        assert {t["occupancy_status"] for t in body["trains"]} <= {
            "FEW_SEATS_AVAILABLE",
            "STANDING_ROOM_ONLY",
            "CRUSHED_STANDING_ROOM_ONLY",
        }
        assert fleet.queries == 2

    exact = Settings(fleet_cache_s=3600, fleet_max_age_s=7200, public_precision="exact")
    with TestClient(create_app(exact, client=_Fleet(3))) as http:
        assert [t["current_value"] for t in http.get("/v1/trains").json()["trains"]] == [50, 51, 52]


def test_the_feed_is_built_once_per_fleet_view(monkeypatch):
    from google.transit import gtfs_realtime_pb2 as pb

    import api.gtfs_rt

    built = []
    original = api.gtfs_rt.build_feed
    monkeypatch.setattr(api.gtfs_rt, "build_feed", lambda views, *a: built.append(len(views)) or original(views, *a))
    fleet = _Fleet(3)
    with TestClient(create_app(Settings(fleet_cache_s=3600, fleet_max_age_s=7200), client=fleet)) as http:
        first = http.get("/gtfs-rt/vehicle-positions.pb")
        second = http.get("/gtfs-rt/vehicle-positions.pb?format=json")
        assert first.status_code == second.status_code == 200 and built == [3]
        feed = pb.FeedMessage.FromString(first.content)
        assert [e.vehicle.vehicle.id for e in feed.entity] == ["t0", "t1", "t2"]
        assert len(second.json()["entity"]) == 3
