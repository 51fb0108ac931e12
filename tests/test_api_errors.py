"""The API's error paths in-process (FastAPI TestClient, no emulator): Firestore unreachable or a
fleet view too old answers 503 with Retry-After, never 500 or old numbers."""

import json

import pytest
from fastapi.testclient import TestClient
from google.api_core import exceptions as gexc

from api.app import RETRY_AFTER_S, create_app
from api.settings import Settings


class _Unreachable:
    """A Firestore client whose every query fails as a Firestore outage does."""

    def __init__(self, error):
        self.error, self.calls = error, 0

    def collection(self, name):
        return self

    def where(self, *args, **kwargs):
        return self

    order_by = limit = start_after = where

    def document(self, *args):
        return self

    def stream(self, *args, **kwargs):
        self.calls += 1
        raise self.error

    get = stream


def _client(error, **settings):
    return TestClient(create_app(Settings(**settings), client=_Unreachable(error)), raise_server_exceptions=False)


def test_firestore_unavailable_answers_503_with_retry_after():
    for error in (gexc.ServiceUnavailable("down"), gexc.DeadlineExceeded("slow"), gexc.RetryError("gave up", None)):
        with _client(error) as http:
            for path in ("/v1/trains", "/v1/trains/t1", "/gtfs-rt/vehicle-positions.pb"):
                response = http.get(path)
                assert response.status_code == 503, (path, error, response.text)
                assert response.headers["Retry-After"] == str(RETRY_AFTER_S)
                assert "unavailable" in response.json()["detail"]


def test_a_permanent_firestore_error_is_a_500_without_its_text():
    with _client(gexc.PermissionDenied("the service account lacks datastore.user")) as http:
        response = http.get("/v1/trains")
        assert response.status_code == 500 and "service account" not in response.text


def test_a_422_is_what_openapi_declares_and_the_client_is_closed_at_shutdown():
    client = _Unreachable(gexc.ServiceUnavailable("down"))
    client.closed = False

    def close():
        client.closed = True

    client.close = close
    with TestClient(create_app(Settings(), client=client), raise_server_exceptions=False) as http:
        schema = http.get("/openapi.json").json()
        declared = schema["paths"]["/v1/trains/{train_id}"]["get"]["responses"]["422"]
        ref = declared["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
        assert schema["components"]["schemas"][ref]["properties"]["detail"]["type"] == "string"
        put = schema["paths"]["/v1/trains/{train_id}"]["put"]["responses"]["200"]
        assert put["content"]["application/json"]["schema"]["$ref"].endswith("/TrainSettingsOut")
        answer = http.get("/v1/trains/bad%20id")
        assert answer.status_code == 422 and isinstance(answer.json()["detail"], str)
        assert not client.closed
    assert client.closed


def test_every_json_answer_is_declared_in_openapi():
    """A client generated from /openapi.json knows every success body: each JSON route's 2xx
    answer has a schema with named properties (not an empty `{}`), protobuf and XML feeds their type."""
    with TestClient(create_app(Settings(), client=_Unreachable(gexc.ServiceUnavailable("down")))) as http:
        schema = http.get("/openapi.json").json()
    undeclared = []
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            for code, answer in operation["responses"].items():
                if not code.startswith("2") or code == "204":
                    continue
                content = answer.get("content") or {}
                body = (content.get("application/json") or {}).get("schema") or {}
                if path.endswith(".pb"):
                    ok = "application/x-protobuf" in content
                elif path.endswith(".xml"):  # SIRI
                    ok = "application/xml" in content
                else:
                    ok = "$ref" in body or body.get("type") == "array"
                if not ok:
                    undeclared.append(f"{method.upper()} {path} {code}: {content}")
    assert undeclared == []


def test_a_time_past_the_ends_of_the_calendar_is_a_422_never_a_500():
    """Moved to UTC, 0001-01-01T00:00:00+01:00 has no year: a public, unauthenticated 500
    (OverflowError) from the history's `from`, `to` and a crafted cursor, and an operator's from a
    key's `expires_at`."""
    import base64
    import json

    from api.auth import require_operator

    app = create_app(Settings(), client=_Unreachable(gexc.ServiceUnavailable("down")))
    app.dependency_overrides[require_operator] = lambda: {"operator": True}
    extremes = (
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "1999-12-31T23:59:59Z",
        "2100-01-02T00:00:00Z",
    )
    with TestClient(app, raise_server_exceptions=False) as http:
        for value in extremes:
            for name in ("from", "to"):
                answer = http.get("/v1/trains/t1/history", params={name: value})
                assert answer.status_code == 422, (name, value, answer.text)
            cursor = base64.urlsafe_b64encode(json.dumps({"t": value, "id": "abc"}).encode()).decode()
            answer = http.get("/v1/trains/t1/history", params={"cursor": cursor})
            assert answer.status_code == 422 and "invalid cursor" in answer.json()["detail"], answer.text
            answer = http.post("/v1/devices/d1/keys", json={"public_key": "x", "expires_at": value})
            assert answer.status_code == 422, (value, answer.text)
        # A cursor nested past json's recursion (1,336 characters, no token needed) was a 500.
        nested = base64.urlsafe_b64encode(b"[" * 1000).decode()
        long_id = base64.urlsafe_b64encode(
            json.dumps({"t": "2026-12-01T00:00:00Z", "id": "a" * 2000}).encode()
        ).decode()
        for cursor in (nested, long_id):  # and an id past Firestore's 1,500 bytes
            answer = http.get("/v1/trains/t1/history", params={"cursor": cursor})
            assert answer.status_code == 422 and "invalid cursor" in answer.json()["detail"], answer.text
        # Within the bounds the query is made (and answers as Firestore does: here, unavailable).
        assert http.get("/v1/trains/t1/history", params={"from": "2026-11-24T07:00:00+01:00"}).status_code == 503


def test_an_answer_to_a_token_is_private_and_every_answer_varies_on_it():
    """Exact operator answers went out `Cache-Control: public` without `Vary: Authorization`: a
    shared cache could hand them to the public."""
    with TestClient(create_app(Settings(), client=_Unreachable(gexc.ServiceUnavailable("down")))) as http:
        for path in ("/openapi.json", "/v1/trains", "/gtfs-rt/vehicle-positions.pb"):
            public = http.get(path)
            assert "Authorization" in public.headers["Vary"] and "private" not in public.headers.get(
                "Cache-Control", ""
            )
            private = http.get(path, headers={"Authorization": "Bearer x"})
            assert private.headers["Cache-Control"] == "private, no-store", path
            assert "Authorization" in private.headers["Vary"]


def test_a_body_that_is_not_utf8_is_a_422_as_declared():
    """FastAPI answered 400 ("There was an error parsing the body"), which docs/api.md and the
    OpenAPI document do not give: a body to correct is a 422 like any other."""
    with TestClient(create_app(Settings(), client=_Unreachable(gexc.ServiceUnavailable("down")))) as http:
        answer = http.post(
            "/v1/devices", content=b'{"device_id": "\xff\xfe"}', headers={"Content-Type": "application/json"}
        )
        assert answer.status_code == 422 and "UTF-8" in answer.json()["detail"], answer.text


def test_a_trip_the_static_feed_does_not_have_is_a_404_without_a_read(tmp_path):
    """Every anonymous request for an invented trip_id cost a Firestore read (a missing forecast
    is not kept, so that one written is served at once)."""
    from tests import schedule_feed

    client = _Unreachable(gexc.ServiceUnavailable("down"))
    settings = Settings(gtfs_static=schedule_feed.write(str(tmp_path / "gtfs.zip")))
    with TestClient(create_app(settings, client=client), raise_server_exceptions=False) as http:
        answer = http.get("/v1/trips/invented-1/forecast")
        assert answer.status_code == 404 and "no trip invented-1 in the static feed" in answer.text
        assert client.calls == 0
        assert http.get("/v1/trips/ic1832-wd/forecast").status_code == 503  # a trip it has: read


def test_a_body_past_what_any_route_takes_is_a_413_before_it_is_parsed():
    """FastAPI parses a JSON body before the token is looked at: a 30 MB body to POST
    /v1/devices cost 0.7 s of a core, from anyone. A body sent in chunks is bounded too."""
    from api.auth import require_operator
    from api.body_limit import MAX_BODY_BYTES

    app = create_app(Settings(), client=_Unreachable(gexc.ServiceUnavailable("down")))
    huge = b'{"device_id": "' + b"d" * (MAX_BODY_BYTES + 1) + b'"}'
    with TestClient(app, raise_server_exceptions=False) as http:
        answer = http.post("/v1/devices", content=huge, headers={"content-type": "application/json"})
        assert answer.status_code == 413 and "over 65536 bytes" in answer.text

        def chunks(data, size=8192):
            for i in range(0, len(data), size):
                yield data[i : i + size]

        answer = http.post("/v1/devices", content=chunks(huge), headers={"content-type": "application/json"})
        assert answer.status_code == 413
        # What a route takes still reaches it: here, the token it needs.
        assert http.post("/v1/devices", json={"device_id": "d1", "train_id": "t1"}).status_code == 401
        app.dependency_overrides[require_operator] = lambda: {"operator": True}
        small = json.dumps({"public_key": "x", "expires_at": "2027-01-01T00:00:00Z"}).encode()
        answer = http.post(
            "/v1/devices/d1/keys", content=chunks(small, 7), headers={"content-type": "application/json"}
        )
        # Read whole and parsed: its key is looked at (and is not one).
        assert answer.status_code == 409 and "not a PEM public key" in answer.text, answer.text


def test_a_chunked_body_with_a_small_content_length_is_still_counted():
    """uvicorn's h11 reads the chunks of a request that has both headers: a Content-Length of 10
    let a body of any size through."""
    import asyncio

    from api.body_limit import MAX_BODY_BYTES, BodyLimit

    received, sent = [], []

    async def app(scope, receive, send):
        message = await receive()
        received.append(len(message["body"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    chunk = b"x" * 8192
    messages = [{"type": "http.request", "body": chunk, "more_body": True} for _ in range(MAX_BODY_BYTES // 8192 + 2)]

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "headers": [(b"content-length", b"10"), (b"transfer-encoding", b"chunked")]}
    asyncio.run(BodyLimit(app)(scope, receive, send))
    assert received == [] and sent[0]["status"] == 413


class _OneDocument(_Unreachable):
    """A Firestore client holding one document, wherever it is asked for, and no fleet."""

    def __init__(self, data):
        super().__init__(None)
        self.data = data

    def stream(self, *args, **kwargs):
        return iter(())

    def get(self, *args, **kwargs):
        return type("Snapshot", (), {"exists": True, "id": "any", "to_dict": lambda _: dict(self.data)})()


def test_a_forecast_document_written_by_hand_is_served_without_what_it_cannot_be():
    """A model that is not text, or history days not a whole number, failed the response's
    validation: a public 500."""
    document = {"model": 5, "history_days": 3.5, "stops": [{"stop_sequence": 1, "occupancy_status": "FULL"}]}
    with TestClient(create_app(Settings(), client=_OneDocument(document)), raise_server_exceptions=False) as http:
        answer = http.get("/v1/trips/t1/forecast", params={"date": "2026-12-07"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert "model" not in body and "history_days" not in body
        assert body["stops"] == [{"stop_sequence": 1, "occupancy_status": "FULL"}]


def test_an_operator_read_auth_cannot_check_now_is_answered_as_the_publics(monkeypatch):
    """Reads anyone may make never fail for Auth: an operator token that Auth cannot check now
    (or whose user is no longer an operator) reads without the role, and that answer is kept for
    the recheck interval instead of asking Auth at every poll; a revoked token is refused."""
    from fastapi import HTTPException
    from fastapi.security import HTTPAuthorizationCredentials
    from starlette.requests import Request

    from api import auth

    app = create_app(Settings(), client=_Unreachable(gexc.ServiceUnavailable("down")))
    request = Request({"type": "http", "app": app, "headers": []})
    asked = []

    def check(claims, project, outcome):
        asked.append(claims["uid"])
        raise outcome

    monkeypatch.setattr(auth, "verify", lambda token, project: {"uid": token, "operator": True})
    outcomes = {
        "unreachable": HTTPException(status_code=503, detail="cannot check the token with Firebase Auth now"),
        "demoted": HTTPException(status_code=403, detail="no longer an operator"),
        "uncheckable": auth._refused(auth.UNCHECKABLE),
        "revoked": auth._refused("invalid ID token: the token has been revoked"),
    }
    monkeypatch.setattr(auth, "check_current", lambda claims, project: check(claims, project, outcomes[claims["uid"]]))
    for token in ("unreachable", "demoted", "uncheckable"):
        for _ in range(3):
            claims = auth.allow_read(request, HTTPAuthorizationCredentials(scheme="Bearer", credentials=token))
            assert claims == {"uid": token}
    assert asked == ["unreachable", "demoted", "uncheckable"]  # once each within the interval
    with pytest.raises(HTTPException) as refused:
        auth.allow_read(request, HTTPAuthorizationCredentials(scheme="Bearer", credentials="revoked"))
    assert refused.value.status_code == 401


def test_a_server_credential_that_cannot_be_refreshed_is_a_503_for_writes_and_no_error_for_reads(monkeypatch):
    """google-auth's RefreshError (a deleted key, a metadata server failing) is neither a
    TransportError nor a FirebaseError: it escaped the check as a 500, for reads too."""
    from fastapi import HTTPException
    from fastapi.security import HTTPAuthorizationCredentials
    from firebase_admin import auth as firebase_auth
    from google.auth.exceptions import RefreshError
    from starlette.requests import Request

    from api import auth

    app = create_app(Settings(), client=_Unreachable(gexc.ServiceUnavailable("down")))
    request = Request({"type": "http", "app": app, "headers": []})

    def refused(*args, **kwargs):
        raise RefreshError("the service account's key was deleted")

    monkeypatch.setattr(firebase_auth, "get_user", refused)
    monkeypatch.setattr(auth, "verify", lambda token, project: {"uid": "u1", "operator": True})
    with pytest.raises(HTTPException) as unavailable:
        auth.check_current({"uid": "u1"}, "demo-occupancy")
    assert unavailable.value.status_code == 503
    claims = auth.allow_read(request, HTTPAuthorizationCredentials(scheme="Bearer", credentials="t"))
    assert claims == {"uid": "u1"}
