"""Bad credentials are 401/403 with nothing changed, never a 5xx: the API as production runs it,
without the Auth emulator (whose tokens are unsigned) and without Application Default
Credentials (what a laptop or a misconfigured service has).

Google's public keys are played by a key pair made here and served on a local port, so that a
token can be genuinely signed; every other token is forged in one way or another. The device
registry is the real one on the Firestore emulator, read back after each refused write.
"""

import datetime
import http.server
import json
import threading
import time
import uuid

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient

from adapters.registry import read_device, register_device
from api.app import create_app
from api.settings import Settings
from local.emulators import free_port

KID = "test-key-1"


def _key_and_cert():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "securetoken.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM).decode()


class _Certs(http.server.BaseHTTPRequestHandler):
    body = b"{}"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def google_keys():
    """(private key, URL of its certificate as Google publishes its ID-token keys)."""
    key, pem = _key_and_cert()
    handler = type("Certs", (_Certs,), {"body": json.dumps({KID: pem}).encode()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield key, f"http://127.0.0.1:{server.server_port}/certs"
    server.shutdown()
    server.server_close()


@pytest.fixture
def production(firestore_client, google_keys, monkeypatch):
    """(HTTP client of an API for a project of its own, as production runs it; its project id;
    the Firestore client). A project per test: firebase-admin keeps an app per project."""
    import firebase_admin._token_gen as token_gen

    monkeypatch.delenv("FIREBASE_AUTH_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/application_default_credentials.json")
    monkeypatch.setattr(token_gen, "ID_TOKEN_CERT_URI", google_keys[1])
    project = f"tokens-{uuid.uuid4().hex[:12]}"
    register_device(firestore_client, "devices", "d1", "t1", None)
    app = create_app(Settings(project=project, public_reads=False), client=firestore_client)
    with TestClient(app, raise_server_exceptions=False) as http_client:
        yield http_client, project, firestore_client


def _claims(project: str, **extra) -> dict:
    now = int(time.time())
    return {
        "iss": f"https://securetoken.google.com/{project}",
        "aud": project,
        "sub": "u1",
        "iat": now - 5,
        "exp": now + 3600,
        "auth_time": now - 5,
        "email": "op@example.com",
        "operator": True,
        **extra,
    }


def _move(http_client, token: str):
    return http_client.put(
        "/v1/devices/d1/train", json={"train_id": "t2"}, headers={"Authorization": f"Bearer {token}"}
    )


def test_forged_tokens_are_401_and_change_nothing(production, google_keys):
    http_client, project, firestore_client = production
    google_key = google_keys[0]
    other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_ec = ec.generate_private_key(ec.SECP256R1())
    now = int(time.time())
    forged = {
        "signed by another key, under Google's key id": jwt.encode(
            _claims(project), other_rsa, algorithm="RS256", headers={"kid": KID}
        ),
        "ES256 under Google's key id": jwt.encode(_claims(project), other_ec, algorithm="ES256", headers={"kid": KID}),
        "unsigned (alg none)": jwt.encode(_claims(project), None, algorithm="none", headers={"kid": KID}),
        "HS256 with the public key id as secret": jwt.encode(
            _claims(project), KID * 8, algorithm="HS256", headers={"kid": KID}
        ),
        "an unknown key id": jwt.encode(_claims(project), other_rsa, algorithm="RS256", headers={"kid": "nope"}),
        "genuine, for another project": jwt.encode(
            _claims("someone-else"), google_key, algorithm="RS256", headers={"kid": KID}
        ),
        "genuine, expired": jwt.encode(
            _claims(project, iat=now - 7200, exp=now - 3600, auth_time=now - 7200),
            google_key,
            algorithm="RS256",
            headers={"kid": KID},
        ),
        "not a JWT": "abc.def.ghi",
        "empty segments": "..",
        "a header of junk": "eyJ" + "A" * 600 + ".e30.",
    }
    for what, token in forged.items():
        response = _move(http_client, token)
        assert response.status_code == 401, (what, response.status_code, response.text)
        assert response.headers.get("WWW-Authenticate") == "Bearer", what
        assert "invalid ID token" in response.json()["detail"], (what, response.text)
    latin1 = http_client.put(
        "/v1/devices/d1/train", json={"train_id": "t2"}, headers={"Authorization": b"Bearer \xff\xfe\x00"}
    )
    assert latin1.status_code == 401, latin1.text
    assert read_device(firestore_client, "devices", "d1").train_id == "t1"


def test_a_genuine_token_is_checked_for_revocation_or_refused(production, google_keys):
    """Signed by the keys, but the server has no credential to ask Firebase Auth whether it was
    revoked: refused (401, saying why), not a 5xx and not let through; a genuine token without
    the role is a 403 before any revocation check; reads need no revocation check."""
    http_client, project, firestore_client = production
    google_key = google_keys[0]
    operator = jwt.encode(_claims(project), google_key, algorithm="RS256", headers={"kid": KID})
    rider = jwt.encode(_claims(project, operator=False), google_key, algorithm="RS256", headers={"kid": KID})

    refused = _move(http_client, operator)
    assert refused.status_code == 401, refused.text
    assert "revocation" in refused.json()["detail"]
    not_operator = _move(http_client, rider)
    assert not_operator.status_code == 403 and "not an operator" in not_operator.json()["detail"]
    assert read_device(firestore_client, "devices", "d1").train_id == "t1"

    read = http_client.get("/v1/trains", headers={"Authorization": f"Bearer {rider}"})
    assert read.status_code == 200, read.text
    assert http_client.get("/v1/trains").status_code == 401  # reads are not public here


def test_keys_that_cannot_be_fetched_refuse_the_token(firestore_client, google_keys, monkeypatch):
    """Google's keys unreachable: nothing can be verified, so every token is refused (401)."""
    import firebase_admin._token_gen as token_gen

    monkeypatch.delenv("FIREBASE_AUTH_EMULATOR_HOST", raising=False)
    monkeypatch.setattr(token_gen, "ID_TOKEN_CERT_URI", f"http://127.0.0.1:{free_port()}/certs")
    project = f"tokens-{uuid.uuid4().hex[:12]}"
    register_device(firestore_client, "devices", "d1", "t1", None)
    token = jwt.encode(_claims(project), google_keys[0], algorithm="RS256", headers={"kid": KID})
    with TestClient(create_app(Settings(project=project), client=firestore_client)) as http_client:
        response = _move(http_client, token)
    assert response.status_code == 401, response.text
    assert "public keys" in response.json()["detail"]
    assert read_device(firestore_client, "devices", "d1").train_id == "t1"
