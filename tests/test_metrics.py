"""GET /metrics of the API: every request counted by its route template, method and status, and
timed; the trains by status and the doors gone silent; as a Prometheus scraper reads it
(prometheus-client's parser), against the Firestore emulator in-process (FastAPI TestClient)."""

import uuid

from fastapi.testclient import TestClient
from google.api_core import exceptions as gexc
from prometheus_client.parser import text_string_to_metric_families

from adapters import registry
from api.app import create_app
from api.settings import Settings
from local.stack import PROJECT
from tests.support import ago, write_realtime


def scrape(http) -> dict:
    answer = http.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


class _Broken:
    """A Firestore client that fails as no outage does (a bug): the API answers 500."""

    def collection(self, name):
        raise RuntimeError("a bug")


def test_requests_are_counted_by_route_template_and_status_and_timed(firestore_emulator, firestore_client):
    with TestClient(create_app(Settings(project=PROJECT), client=firestore_client)) as http:
        for train in ("a", "b", "c"):
            assert http.get(f"/v1/trains/{train}-nowhere").status_code == 404
        for method in ("FOO1", "FOO2"):  # any word is a method: not one series each
            http.request(method, "/healthz")
        assert http.get("/healthz").status_code == 200
        assert http.get("/v1/no/such/path").status_code == 404
        seen = scrape(http)
        assert "/metrics" not in http.get("/openapi.json").json()["paths"]

    def count(route, status, method="GET"):
        key = (("method", method), ("route", route), ("status", status))
        return seen.get(("occupancy_api_requests_total", key), 0)

    # One series for the route, whatever train was asked for; a path no route has is "unmatched".
    assert count("/v1/trains/{train_id}", "404") == 3
    assert count("/healthz", "200") == 1 and count("unmatched", "404") == 1
    assert not any("a-nowhere" in str(key) or "FOO" in str(key) for key in seen)
    assert count("/healthz", "405", "other") == 2
    timed = seen[("occupancy_api_request_seconds_count", (("route", "/v1/trains/{train_id}"),))]
    assert timed == 3 and seen[("occupancy_api_request_seconds_sum", (("route", "/v1/trains/{train_id}"),))] > 0


def test_a_request_that_fails_with_an_unexpected_error_is_counted_as_a_500():
    with TestClient(create_app(Settings(), client=_Broken()), raise_server_exceptions=False) as http:
        assert http.get("/v1/trains/x").status_code == 500
        seen = scrape(http)
    key = ("occupancy_api_requests_total", (("method", "GET"), ("route", "/v1/trains/{train_id}"), ("status", "500")))
    assert seen.get(key) == 1, seen


def test_the_fleet_gauges_count_trains_by_status_and_silent_doors_of_live_trains(firestore_emulator, firestore_client):
    realtime, trains, devices = (f"{name}-{uuid.uuid4().hex[:8]}" for name in ("rt", "trains", "devices"))
    for train in ("live", "parked", "new"):
        registry.set_train(firestore_client, trains, train, 100, train)
    for device, train in (("l1", "live"), ("l2", "live"), ("p1", "parked"), ("p2", "parked"), ("m1", "parked")):
        registry.register_device(firestore_client, devices, device, train, "car1-door1")
    # live: l1 reports, l2 has been silent for 5 minutes, m1 too but it was moved to another
    # train since; parked: all of its doors silent (the train is stale).
    seen = {"l1": (3, ago(1)), "l2": (9, ago(300)), "m1": (2, ago(300))}
    write_realtime(firestore_client, "live", 10, 100, seen, collection=realtime)
    write_realtime(firestore_client, "parked", 0, 100, {"p1": (3, ago(300)), "p2": (4, ago(300))}, collection=realtime)
    settings = Settings(
        project=PROJECT,
        realtime_collection=realtime,
        trains_collection=trains,
        devices_collection=devices,
        stale_after_s=90,
    )
    with TestClient(create_app(settings, client=firestore_client)) as http:
        seen = scrape(http)
    assert {s: seen[("occupancy_trains", (("status", s),))] for s in ("ok", "stale", "no_data")} == {
        "ok": 1,
        "stale": 1,
        "no_data": 1,
    }
    # The parked train's doors are not counted: silent with their train, not on their own.
    assert seen[("occupancy_devices_silent", ())] == 1 and seen[("occupancy_fleet_readable", ())] == 1


class _Down:
    """A Firestore client whose every read fails as an outage does."""

    def collection(self, name):
        return self

    def where(self, *args, **kwargs):
        return self

    order_by = limit = start_after = document = where

    def stream(self, *args, **kwargs):
        raise gexc.ServiceUnavailable("down")

    get = stream


def test_a_fleet_that_cannot_be_read_is_said_so_and_the_requests_still_exported():
    with TestClient(create_app(Settings(), client=_Down()), raise_server_exceptions=False) as http:
        assert http.get("/v1/trains").status_code == 503
        seen = scrape(http)
    assert seen[("occupancy_fleet_readable", ())] == 0
    key = ("occupancy_api_requests_total", (("method", "GET"), ("route", "/v1/trains"), ("status", "503")))
    assert seen[key] == 1
