"""The HTTP API, served for real: `python -m api` (uvicorn) on a free port against the
Firestore emulator, tokens from the Firebase Auth emulator, called with httpx.

Documents are written with the same functions the pipeline uses
(occupancy.documents, adapters.store), so the API reads what production writes.
"""

import os
import subprocess
import sys
import time

import httpx

from adapters import registry
from adapters.store import RetryPolicy, commit_documents
from local import stack
from local.emulators import free_port
from occupancy import documents, wire
from occupancy.train_state import Bucket
from tests.support import S, ago, parse_time, serve_api, write_realtime

# ---- health and docs -----------------------------------------------------------------


def test_health_ready_and_openapi(http):
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").json() == {"status": "ready"}
    paths = http.get("/openapi.json").json()["paths"]
    for path in (
        "/v1/devices",
        "/v1/devices/{device_id}/train",
        "/v1/trains",
        "/v1/trains/{train_id}",
        "/v1/trains/{train_id}/history",
    ):
        assert path in paths
    docs = http.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_readyz_answers_503_when_firestore_is_unreachable(auth_emulator, tmp_path_factory):
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    process, base_url = serve_api(tmp_path_factory, {"FIRESTORE_EMULATOR_HOST": dead, **auth_emulator.env()})
    try:
        began = time.monotonic()
        response = httpx.get(f"{base_url}/readyz", timeout=30)
        assert response.status_code == 503
        assert "Firestore unreachable" in response.json()["detail"]
        assert time.monotonic() - began < 10
        assert httpx.get(f"{base_url}/healthz").status_code == 200
    finally:
        stack.stop_process(process)


def test_help_lists_the_flags():
    out = subprocess.run([sys.executable, "-m", "api", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for flag in ("--host", "--port", "--project", "--private_reads", "--stale_after_s", "--thresholds"):
        assert flag in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "api", "--thresholds", "0.5,0.2"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "thresholds" in bad.stderr


def test_the_auth_emulator_is_refused_outside_a_demo_project(firestore_emulator):
    """firebase-admin accepts unsigned tokens while FIREBASE_AUTH_EMULATOR_HOST is set: a real
    project must not start so."""
    env = dict(os.environ, FIREBASE_AUTH_EMULATOR_HOST="127.0.0.1:9", **firestore_emulator.env())
    out = subprocess.run(
        [sys.executable, "-m", "api", "--project", "my-real-project", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 1 and "refusing to serve project my-real-project" in out.stderr, out.stderr


# ---- occupancy reads ---------------------------------------------------------------


def test_trains_now_with_status_staleness_and_ratio(http, firestore_client):
    registry.set_train(firestore_client, "trains", "t-ok", 200, "Fresh")
    registry.set_train(firestore_client, "trains", "t-stale", 100, "Old")
    registry.set_train(firestore_client, "trains", "t-none", 50, "Never seen")
    write_realtime(firestore_client, "t-ok", 120, 200, {"d1": (7, ago(5)), "d2": (3, ago(40))})
    write_realtime(firestore_client, "t-stale", 30, 100, {"d3": (2, ago(600))})
    write_realtime(firestore_client, "t-nocap", 4, None, {"d4": (1, ago(1))})

    body = http.get("/v1/trains").json()
    trains = {t["train_id"]: t for t in body["trains"]}
    assert sorted(trains) == ["t-nocap", "t-none", "t-ok", "t-stale"]
    ok = trains["t-ok"]
    assert (ok["name"], ok["capacity"], ok["current_value"], ok["occupancy_ratio"]) == ("Fresh", 200, 120, 0.6)
    assert ok["status"] == "ok" and ok["occupancy_status"] == "STANDING_ROOM_ONLY"
    assert 4 <= ok["staleness_s"] <= 30  # from the newest device (5 s ago), not the older one
    assert trains["t-stale"]["status"] == "stale" and trains["t-stale"]["staleness_s"] >= 599
    assert trains["t-stale"]["occupancy_status"] == "NO_DATA_AVAILABLE"
    none = trains["t-none"]
    assert none["status"] == "no_data" and none["current_value"] is None and none["staleness_s"] is None
    nocap = trains["t-nocap"]
    assert nocap["occupancy_ratio"] is None and nocap["occupancy_status"] == "NO_DATA_AVAILABLE"
    assert nocap["status"] == "ok"


def test_one_train_with_its_devices_404_and_invalid_ids(http, firestore_client):
    registry.set_train(firestore_client, "trains", "t1", 100)
    write_realtime(firestore_client, "t1", 10, 100, {"d1": (4, ago(2)), "d2": (9, ago(3))})
    body = http.get("/v1/trains/t1").json()
    assert body["current_value"] == 10 and body["status"] == "ok"
    assert [(d["device_id"], d["seq"]) for d in body["devices"]] == [("d1", 4), ("d2", 9)]
    assert abs((parse_time(body["devices"][0]["last_seen"]) - ago(2)).total_seconds()) < 5

    missing = http.get("/v1/trains/nope")
    assert missing.status_code == 404 and "no train nope" in missing.json()["detail"]
    for bad in ("__x__", "..x", "a%20b", "-x", "x" * 129, "caf%C3%A9"):
        response = http.get(f"/v1/trains/{bad}")
        assert response.status_code == 422, bad
        assert "invalid train id" in response.json()["detail"]
    # An encoded slash is never a Firestore path: no route matches it.
    assert http.get("/v1/trains/a%2Fb").status_code in (404, 422)
    assert http.get("/v1/trains/a%2Fb/history").status_code in (404, 422)
    assert http.get("/v1/trains/..").status_code == 404  # the client resolves it to /v1


def test_the_jobs_checkpoint_is_never_served(http, tokens, firestore_client):
    """realtime's `checkpoint` (the job's de-duplication memory) stays with the job: no endpoint,
    operator or public, JSON or protobuf, returns it or the fields it holds."""
    registry.set_train(firestore_client, "trains", "t1", 100)
    registry.register_device(firestore_client, "devices", "d1", "t1", "car1-door1")
    write_realtime(firestore_client, "t1", 10, 100, {"d1": (400, ago(2))})
    checkpoint = firestore_client.collection("realtime").document("t1").get().to_dict()[documents.CHECKPOINT]
    assert checkpoint  # written, so that its absence below means something
    for path in (
        "/v1/trains",
        "/v1/trains/t1",
        "/v1/trains/t1/history",
        "/v1/devices",
        "/gtfs-rt/vehicle-positions.pb",
    ):
        for headers in ({}, tokens["operator"]):
            response = http.get(path, headers=headers)
            if path == "/v1/devices" and not headers:
                assert response.status_code == 401
                continue
            assert response.status_code == 200, (path, response.text)
            assert checkpoint not in response.content, path
            for name in ("checkpoint", "applied", "registered_us"):
                assert name.encode() not in response.content, (path, name)


def test_history_pages_with_a_cursor_and_a_time_range(http, firestore_client):
    base = (wire.now_us() // S - 3600) * S
    writes = []
    for k in range(7):
        bucket = Bucket(
            start_us=base + k * 60 * S,
            timestamp_us=base + k * 60 * S + 5 * S,
            value=10 + k,
            delta=1,
            events=1,
            boarded=1,
        )
        write = documents.history_write("th", bucket)
        writes.append((write.collection, write.doc_id, write.data))
    other = documents.history_write("other", Bucket(start_us=base, timestamp_us=base + S, value=99))
    writes.append((other.collection, other.doc_id, other.data))
    assert not commit_documents(firestore_client, writes, RetryPolicy())

    values, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = http.get("/v1/trains/th/history", params=params).json()
        values += [item["value"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert values == [10, 11, 12, 13, 14, 15, 16] and pages == 3

    start = wire.from_micros(base + 2 * 60 * S).isoformat()
    end = wire.from_micros(base + 5 * 60 * S).isoformat()
    ranged = http.get("/v1/trains/th/history", params={"from": start, "to": end}).json()
    assert [item["value"] for item in ranged["items"]] == [12, 13, 14] and ranged["next_cursor"] is None
    item = ranged["items"][0]
    assert (item["delta"], item["events"], item["boarded"], item["alighted"]) == (1, 1, 1, 0)

    assert http.get("/v1/trains/th/history", params={"from": end, "to": start}).status_code == 422
    bad_cursor = http.get("/v1/trains/th/history", params={"cursor": "not-a-cursor"})
    assert bad_cursor.status_code == 422 and "cursor" in bad_cursor.json()["detail"]
    assert http.get("/v1/trains/th/history", params={"limit": 0}).status_code == 422
    assert http.get("/v1/trains/th/history", params={"from": "yesterday"}).status_code == 422
    assert http.get("/v1/trains/none/history").json() == {"items": [], "next_cursor": None}


def test_the_api_answers_503_while_firestore_is_cut_off_and_recovers_by_itself(
    firestore_emulator, auth_emulator, firestore_client, tmp_path_factory
):
    from faults.proxy import Proxy

    registry.set_train(firestore_client, "trains", "t1", 100)
    proxy = Proxy(firestore_emulator.host_port).start()
    process, base_url = serve_api(
        tmp_path_factory,
        {"FIRESTORE_EMULATOR_HOST": proxy.host_port, **auth_emulator.env()},
        "--fleet_cache_s=1",
        "--fleet_max_age_s=3",
        "--firestore_timeout_s=2",
    )
    try:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            assert client.get("/v1/trains").status_code == 200
            proxy.cut()
            stack.wait_for(lambda: client.get("/v1/trains").status_code == 503, 30, what="a 503 while cut off")
            cut = client.get("/v1/trains")
            assert cut.status_code == 503 and cut.headers["retry-after"], cut.text
            proxy.restore()
            stack.wait_for(lambda: client.get("/v1/trains").status_code == 200, 60, what="recovery, no restart")
            assert process.poll() is None
    finally:
        stack.stop_process(process)
        proxy.stop()
