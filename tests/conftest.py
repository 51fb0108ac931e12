"""Shared fixtures: the real emulators on free ports, started once per session.

Tests that use them are marked `emulator` automatically (`make test-fast` skips them).
"""
import pytest

from local.auth_emulator import AuthEmulator
from local.emulators import Emulator
from local.stack import PROJECT
from occupancy.store import make_client

EMULATOR_FIXTURES = {"firestore_emulator", "pubsub_emulator", "firestore_client", "emulator_env",
                     "own_emulator", "auth_emulator"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if EMULATOR_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.emulator)


@pytest.fixture(scope="session")
def firestore_emulator():
    emulator = Emulator("firestore", project=PROJECT).start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def pubsub_emulator():
    emulator = Emulator("pubsub", project=PROJECT).start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def auth_emulator():
    """The Firebase Auth emulator (firebase-tools, installed by `make install-firebase`)."""
    emulator = AuthEmulator(project=PROJECT).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def firestore_client(firestore_emulator, monkeypatch):
    """A client on an emptied Firestore emulator (FIRESTORE_EMULATOR_HOST set for the test)."""
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", firestore_emulator.host_port)
    firestore_emulator.reset()
    return make_client(PROJECT)


@pytest.fixture
def emulator_env(firestore_emulator, pubsub_emulator, monkeypatch):
    """Both emulators, Firestore emptied; returns the environment a subprocess needs."""
    env = {**firestore_emulator.env(), **pubsub_emulator.env()}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    firestore_emulator.reset()
    return env


@pytest.fixture
def own_emulator(monkeypatch):
    """start(kind) -> an emulator of this test's own, which it may stop and start again on
    the same port (outages); its environment variable is set for the test."""
    started = []

    def start(kind: str) -> Emulator:
        emulator = Emulator(kind, project=PROJECT).start()
        monkeypatch.setenv(emulator.env_var, emulator.host_port)
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()
