"""deploy/firestore.rules on the Firestore emulator started with them (`--rules`): what a
client outside the service accounts may read and write, anonymous and signed in (a real ID
token from the Auth emulator), through Firestore's REST API."""

import pathlib
import time

import httpx
import pytest

from adapters import registry
from adapters.store import make_client
from local.emulators import Emulator
from local.stack import PROJECT
from tests.support import write_realtime

RULES = pathlib.Path(__file__).resolve().parent.parent / "deploy" / "firestore.rules"


RULES = pathlib.Path(__file__).resolve().parent.parent / "deploy" / "firestore.rules"


@pytest.fixture(scope="module")
def rules_emulator():
    emulator = Emulator("firestore", project=PROJECT, rules=str(RULES)).start()
    yield emulator
    emulator.stop()


def test_firestore_rules_let_clients_read_trains_and_nothing_else(rules_emulator, auth_emulator, monkeypatch):
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", rules_emulator.host_port)
    # Seeded as the service accounts write: the client library, which the emulator lets
    # through as an administrator (rules do not apply to IAM principals).
    client = make_client(PROJECT)
    registry.set_train(client, "trains", "t1", 100)
    registry.register_device(client, "devices", "d1", "t1")
    write_realtime(client, "t1", 3, 100)
    client.collection("history").document("h1").set({"train": "t1", "value": 3})
    client.collection("dead_letters").document("x1").set({"reason": "malformed"})

    _, token = auth_emulator.sign_up(f"rules-{time.time_ns()}@example.com", "secret-r")
    docs = f"http://{rules_emulator.host_port}/v1/projects/{PROJECT}/databases/(default)/documents"
    for who, headers in (("anonymous", {}), ("signed in", {"Authorization": f"Bearer {token}"})):
        response = httpx.get(f"{docs}/trains/t1", headers=headers)
        assert response.status_code == 200, (who, response.text)
        # Exact counts and the job's checkpoint: riders get them coarse, through the API.
        for hidden in ("realtime/t1", "history/h1", "devices/d1", "dead_letters/x1", "other/y"):
            assert httpx.get(f"{docs}/{hidden}", headers=headers).status_code == 403, (who, hidden)
        listing = httpx.get(f"{docs}/devices", headers=headers)
        assert listing.status_code == 403, (who, listing.text)
        for target in ("realtime/t1", "trains/t9", "history/h2", "devices/d9"):
            write = httpx.patch(
                f"{docs}/{target}", headers=headers, json={"fields": {"current_value": {"integerValue": "999"}}}
            )
            assert write.status_code == 403, (who, target, write.text)
        assert httpx.delete(f"{docs}/realtime/t1", headers=headers).status_code == 403
    assert client.collection("realtime").document("t1").get().to_dict()["current_value"] == 3
