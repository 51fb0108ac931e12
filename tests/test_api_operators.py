"""Who may do what on the HTTP API, and what operators do with it: the operator role (Firebase
custom claim, granted by `python -m api.operators`), revoked tokens, private reads, and the
fleet registry's endpoints (devices, trains, device keys), including a device moved through
the API while the pipeline runs. Served for real as in tests/test_api.py.
"""

import os
import subprocess
import sys
import time

import httpx
import pytest

from adapters import registry
from local import stack
from local.stack import PROJECT
from occupancy import registry_entries
from tests.support import Heartbeats, ago, parse_time, register, serve_api, wait_for_values, warm_up, write_realtime

# ---- who may do what -----------------------------------------------------------------


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("GET", "/v1/devices", None),
        ("POST", "/v1/devices", {"device_id": "d", "train_id": "t"}),
        ("PUT", "/v1/devices/d/train", {"train_id": "t"}),
        ("POST", "/v1/devices/d/enable", None),
        ("POST", "/v1/devices/d/disable", None),
        ("PUT", "/v1/trains/t", {"capacity": 10}),
    ],
)
def test_device_endpoints_and_writes_need_an_operator(http, tokens, method, path, body):
    anonymous = http.request(method, path, json=body)
    assert anonymous.status_code == 401 and "sign in" in anonymous.json()["detail"]
    assert anonymous.headers["www-authenticate"] == "Bearer"
    forged = http.request(method, path, json=body, headers={"Authorization": "Bearer not.a.token"})
    assert forged.status_code == 401 and "invalid ID token" in forged.json()["detail"]
    user = http.request(method, path, json=body, headers=tokens["user"])
    assert user.status_code == 403 and "not an operator" in user.json()["detail"]


def test_private_reads_need_a_signed_in_user(firestore_emulator, auth_emulator, tokens, tmp_path_factory):
    process, base_url = serve_api(
        tmp_path_factory, {**firestore_emulator.env(), **auth_emulator.env()}, "--private_reads"
    )
    try:
        assert httpx.get(f"{base_url}/v1/trains").status_code == 401
        assert httpx.get(f"{base_url}/v1/trains", headers=tokens["user"]).status_code == 200
        assert httpx.get(f"{base_url}/healthz").status_code == 200
    finally:
        stack.stop_process(process)


def test_auth_config_points_a_browser_at_the_emulator(http, auth_emulator):
    config = http.get("/v1/auth/config").json()
    assert config["emulator"] is True and config["public_reads"] is True
    assert config["sign_in_url"].startswith(f"http://{auth_emulator.host_port}/identitytoolkit")
    token = httpx.post(
        config["sign_in_url"],
        params={"key": config["api_key"]},
        json={"email": stack.DEMO_OPERATOR[0] + ".missing", "password": "x", "returnSecureToken": True},
    )
    assert token.status_code == 400  # the URL is the real sign-in endpoint: an unknown user is refused


def test_a_revoked_operator_token_is_refused_at_the_next_write_and_read(http, auth_emulator, firestore_client):
    email = f"leaving-{time.time_ns()}@example.com"
    token = stack.create_operator(auth_emulator, email, "leaving-pass")
    headers = {"Authorization": f"Bearer {token}"}
    assert http.put("/v1/trains/t1", json={"capacity": 100}, headers=headers).status_code == 200
    time.sleep(1.1)  # revocation counts in whole seconds
    auth_emulator.revoke(auth_emulator.lookup(email))
    refused = http.put("/v1/trains/t1", json={"capacity": 120}, headers=headers)
    assert refused.status_code == 401 and "revoked" in refused.text, refused.text
    # Its exact reads too: asked of Auth at most every 30 s per token (this token's first read).
    read = http.get("/v1/trains/t1", headers=headers)
    assert read.status_code == 401 and "revoked" in read.text, read.text
    assert http.get("/v1/trains/t1").status_code == 200  # the public's still
    fresh = {"Authorization": f"Bearer {auth_emulator.sign_in(email, 'leaving-pass')}"}
    assert http.put("/v1/trains/t1", json={"capacity": 120}, headers=fresh).status_code == 200


def test_operators_cli_grants_and_revokes_the_role(http, auth_emulator, monkeypatch):
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", auth_emulator.host_port)
    email, password = f"promoted-{time.time_ns()}@example.com", "secret-p"
    auth_emulator.sign_up(email, password)
    run = lambda *a: subprocess.run(
        [sys.executable, "-m", "api.operators", *a, email, "--project", PROJECT],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **auth_emulator.env()},
    )
    headers = lambda: {"Authorization": f"Bearer {auth_emulator.sign_in(email, password)}"}
    assert http.get("/v1/devices", headers=headers()).status_code == 403
    granted = run("grant")
    assert granted.returncode == 0 and "operator" in granted.stdout, granted.stderr
    held = headers()  # a token with the claim, as a removed operator still holds it
    assert http.get("/v1/devices", headers=held).status_code == 200
    assert run("revoke").returncode == 0
    assert http.get("/v1/devices", headers=headers()).status_code == 403
    # Shut out at once, not when the held token expires (an hour): its claim is checked against
    # the user as now, and its refresh tokens were revoked.
    refused = http.get("/v1/devices", headers=held)
    assert refused.status_code in (401, 403), refused.text
    missing = subprocess.run(
        [sys.executable, "-m", "api.operators", "grant", "nobody@example.com", "--project", PROJECT],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **auth_emulator.env()},
    )
    assert missing.returncode == 1 and "no user" in missing.stderr


# ---- the fleet registry --------------------------------------------------------------


def test_list_devices_with_last_seen_and_filters(http, tokens, firestore_client):
    op = tokens["operator"]
    registry.register_device(firestore_client, "devices", "d1", "t1", "car1-door1")
    registry.register_device(firestore_client, "devices", "d2", "t1", "car2-door1")
    registry.register_device(firestore_client, "devices", "d3", "t2")
    registry.set_enabled(firestore_client, "devices", "d2", False)
    write_realtime(firestore_client, "t1", 5, None, {"d1": (11, ago(3))})

    devices = {d["device_id"]: d for d in http.get("/v1/devices", headers=op).json()["devices"]}
    assert sorted(devices) == ["d1", "d2", "d3"]
    d1 = devices["d1"]
    assert (d1["train_id"], d1["door"], d1["enabled"], d1["seq"]) == ("t1", "car1-door1", True, 11)
    assert abs((parse_time(d1["last_seen"]) - ago(3)).total_seconds()) < 5
    assert d1["registered_at"] and d1["updated_at"]
    assert devices["d2"]["enabled"] is False and devices["d2"]["last_seen"] is None
    assert devices["d3"]["seq"] is None

    by_train = http.get("/v1/devices", params={"train": "t1"}, headers=op).json()["devices"]
    assert [d["device_id"] for d in by_train] == ["d1", "d2"]
    disabled = http.get("/v1/devices", params={"enabled": "false"}, headers=op).json()["devices"]
    assert [d["device_id"] for d in disabled] == ["d2"]
    bad = http.get("/v1/devices", params={"train": "a/b"}, headers=op)
    assert bad.status_code == 422 and "invalid train id" in bad.json()["detail"]


def test_register_move_enable_disable_and_set_train(http, tokens, firestore_client):
    op = tokens["operator"]
    created = http.post("/v1/devices", json={"device_id": "n1", "train_id": "t1", "door": "car1-door2"}, headers=op)
    assert created.status_code == 201 and created.headers["location"] == "/v1/devices/n1"
    assert created.json()["train_id"] == "t1" and created.json()["enabled"] is True
    assert registry.read_device(firestore_client, "devices", "n1").door == "car1-door2"

    elsewhere = http.post("/v1/devices", json={"device_id": "n1", "train_id": "t2"}, headers=op)
    assert elsewhere.status_code == 409 and "registered to train t1" in elsewhere.json()["detail"]
    for body in (
        {"device_id": "a/b", "train_id": "t1"},
        {"device_id": "ok\n", "train_id": "t1"},
        {"device_id": "n2"},
        {"device_id": "n2", "train_id": 5},
    ):
        response = http.post("/v1/devices", json=body, headers=op)
        assert response.status_code == 422, body
        assert isinstance(response.json()["detail"], str) and response.json()["detail"]

    moved = http.put("/v1/devices/n1/train", json={"train_id": "t2"}, headers=op)
    assert moved.status_code == 200 and moved.json()["train_id"] == "t2"
    assert registry.read_device(firestore_client, "devices", "n1").train_id == "t2"
    unknown = http.put("/v1/devices/ghost/train", json={"train_id": "t2"}, headers=op)
    assert unknown.status_code == 404 and "not registered" in unknown.json()["detail"]
    assert http.put("/v1/devices/ghost/train", json={"train_id": "../x"}, headers=op).status_code == 422
    assert http.put("/v1/devices/__x__/train", json={"train_id": "t2"}, headers=op).status_code == 422

    assert http.post("/v1/devices/n1/disable", headers=op).json()["enabled"] is False
    assert registry.read_device(firestore_client, "devices", "n1").enabled is False
    # A stolen device, disabled: registering it by accident must not enable it again.
    same = http.post("/v1/devices", json={"device_id": "n1", "train_id": "t2"}, headers=op)
    assert same.status_code == 409 and "already registered" in same.json()["detail"], same.text
    again = http.post("/v1/devices", json={"device_id": "n1", "train_id": "t2", "again": True}, headers=op)
    assert again.status_code == 201 and again.json()["enabled"] is False, again.text
    assert registry.read_device(firestore_client, "devices", "n1").enabled is False
    assert http.post("/v1/devices/n1/enable", headers=op).json()["enabled"] is True
    assert http.post("/v1/devices/ghost/enable", headers=op).status_code == 404

    train = http.put("/v1/trains/t2", json={"capacity": 300, "name": "Night train"}, headers=op)
    assert train.status_code == 200 and (train.json()["capacity"], train.json()["name"]) == (300, "Night train")
    assert http.put("/v1/trains/t2", json={"capacity": 250}, headers=op).json()["name"] == "Night train"
    assert registry_entries.train_entry(
        firestore_client.collection("trains").document("t2").get().to_dict()
    ) == registry_entries.TrainEntry(250, "Night train")
    assert http.put("/v1/trains/t2", json={"capacity": 0}, headers=op).status_code == 422
    assert http.put("/v1/trains/t2", json={"name": "no capacity"}, headers=op).status_code == 422


# ---- a device moved through the API while the pipeline runs ------------------------------


def test_device_moved_through_the_api_counts_for_its_new_train(local_stack, auth_emulator, tokens, tmp_path_factory):
    client, fleet, start = local_stack
    register(client, {"ta": ["mover", "hb-a"], "tb": ["hb-b"]}, {"ta": 100, "tb": 100})
    process, base_url = serve_api(
        tmp_path_factory, {"FIRESTORE_EMULATOR_HOST": os.environ["FIRESTORE_EMULATOR_HOST"], **auth_emulator.env()}
    )
    pipeline = start()
    try:
        warm_up(client, fleet, pipeline, ["hb-a", "hb-b"])
        beats = Heartbeats(fleet, ["hb-a", "hb-b"])
        beats.start()
        try:
            fleet.publish("mover", 4)
            wait_for_values(client, {"ta": 4, "tb": 0}, pipeline)
            moved = httpx.put(
                f"{base_url}/v1/devices/mover/train", json={"train_id": "tb"}, headers=tokens["operator"], timeout=30
            )
            assert moved.status_code == 200, moved.text
            time.sleep(3.5)  # the pipeline's registry refresh (--registry_refresh_s=2) picks it up
            fleet.publish("mover", 3)
            wait_for_values(client, {"ta": 4, "tb": 3}, pipeline)
        finally:
            beats.stop()
        trains = {t["train_id"]: t for t in httpx.get(f"{base_url}/v1/trains", timeout=30).json()["trains"]}
        assert (trains["ta"]["current_value"], trains["tb"]["current_value"]) == (4, 3)
        assert trains["tb"]["status"] == "ok" and trains["tb"]["occupancy_ratio"] == 0.03
        devices = httpx.get(
            f"{base_url}/v1/devices", params={"train": "tb"}, headers=tokens["operator"], timeout=30
        ).json()["devices"]
        mover = {d["device_id"]: d for d in devices}["mover"]
        assert mover["train_id"] == "tb" and mover["seq"] == 2
    finally:
        stack.stop_process(process)


def test_device_keys_are_listed_added_and_removed_by_operators_only(http, tokens, firestore_client):
    from occupancy import identity

    op = tokens["operator"]
    assert http.post("/v1/devices", json={"device_id": "k1dev", "train_id": "t1"}, headers=op).status_code == 201
    pem = identity.public_pem(identity.generate_private_key("ES256"))
    assert (
        http.post(
            "/v1/devices/k1dev/keys", json={"key_id": "k1", "public_key": pem}, headers=tokens["user"]
        ).status_code
        == 403
    )
    added = http.post(
        "/v1/devices/k1dev/keys",
        json={"key_id": "k1", "public_key": pem, "expires_at": "2030-01-01T00:00:00Z"},
        headers=op,
    )
    assert added.status_code == 201 and added.json()["alg"] == "ES256"
    assert http.post("/v1/devices/k1dev/keys", json={"key_id": "k1", "public_key": pem}, headers=op).status_code == 409
    assert (
        http.post("/v1/devices/k1dev/keys", json={"key_id": "k2", "public_key": "not a key"}, headers=op).status_code
        == 409
    )
    listed = http.get("/v1/devices/k1dev/keys", headers=op).json()["keys"]
    assert [(k["key_id"], k["alg"], k["expires_at"][:4]) for k in listed] == [("k1", "ES256", "2030")]
    assert http.delete("/v1/devices/k1dev/keys/k1", headers=op).status_code == 204
    assert http.get("/v1/devices/k1dev/keys", headers=op).json()["keys"] == []
    assert http.get("/v1/devices/nobody/keys", headers=op).status_code == 404
