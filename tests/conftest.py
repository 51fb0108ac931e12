"""Shared fixtures: the real emulators on free ports, started once per session.

Tests that use them are marked `emulator` automatically (`make test-fast` skips them).
"""

import datetime
import time
import uuid

import httpx
import pytest

from adapters.store import make_client
from local import stack
from local.auth_emulator import AuthEmulator
from local.broker import Broker
from local.emulators import Emulator
from local.stack import PROJECT
from tests.support import PIPELINE_ARGS, Fleet, serve_api

EMULATOR_FIXTURES = {
    "firestore_emulator",
    "pubsub_emulator",
    "firestore_client",
    "emulator_env",
    "own_emulator",
    "auth_emulator",
}


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
def broker(tmp_path):
    """A mosquitto broker of this test's own (Debian's package) on a free port, no users yet."""
    started = Broker(directory=str(tmp_path / "broker")).start()
    yield started
    started.stop()


@pytest.fixture
def bigquery(monkeypatch):
    """A local BigQuery Storage Write API server (tests/bigquery_write_server.py) with the TIDES
    tables of dataset demo-occupancy.tides, and the job's client pointed at it."""
    from adapters import tides_bigquery
    from adapters.tides_bigquery import EMULATOR_ENV
    from tests.bigquery_write_server import BigQueryWriteServer

    server = BigQueryWriteServer().start()
    for resource in tides_bigquery.table_resources("demo-occupancy", "tides").values():
        server.create_table(resource)
    monkeypatch.setenv(EMULATOR_ENV["write"], server.host)
    yield server
    server.stop()


@pytest.fixture
def bigquery_read(monkeypatch):
    """A local BigQuery Storage Read API server (tests/bigquery_read_server.py), no tables yet
    (`load` makes one), and the job's read client pointed at it."""
    from adapters.tides_bigquery import EMULATOR_ENV
    from tests.bigquery_read_server import BigQueryReadServer

    server = BigQueryReadServer().start()
    monkeypatch.setenv(EMULATOR_ENV["read"], server.host)
    yield server
    server.stop()


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


# ---- the running stack: the pipeline as a subprocess, the API server --------------------


@pytest.fixture
def local_stack(emulator_env, tmp_path):
    """Topic, subscription, a Firestore client and a way to start the pipeline; stops what it started."""
    name = uuid.uuid4().hex[:8]
    stack.ensure_topic(PROJECT, f"events-{name}", [f"pipeline-{name}"])
    client = make_client(PROJECT)
    processes = []

    def start(log_name="pipeline.log", *extra_args):
        log_path = str(tmp_path / log_name)
        process = stack.start_pipeline(
            PROJECT, f"pipeline-{name}", *PIPELINE_ARGS, *extra_args, env=emulator_env, log_path=log_path
        )
        process.log_path = log_path
        processes.append(process)
        return process

    fleet = Fleet(stack.topic_path(PROJECT, f"events-{name}"))
    yield client, fleet, start
    for process in processes:
        stack.stop_process(process)


@pytest.fixture(scope="module")
def made_at():
    """A module's moment to make its static feed at (tests/schedule_feed.py files_running_at):
    its trips now-7777 and now-8888 run on that moment's service_day, which a test that reads
    the clock again, past midnight, would miss."""
    return datetime.datetime.now(datetime.timezone.utc)


@pytest.fixture(scope="module")
def api(firestore_emulator, auth_emulator, tmp_path_factory):
    """Base URL of the API served against the emulators (public occupancy reads)."""
    # No fleet cache: each test reads what it has just written.
    process, base_url = serve_api(
        tmp_path_factory, {**firestore_emulator.env(), **auth_emulator.env()}, "--fleet_cache_s=0"
    )
    yield base_url
    stack.stop_process(process)


@pytest.fixture(scope="module")
def tokens(auth_emulator):
    """ID tokens from real sign-ins: an operator, and a signed-in user without the role."""
    suffix = str(time.time_ns())
    operator = stack.create_operator(auth_emulator, f"op-{suffix}@example.com", "secret-op")
    _, user = auth_emulator.sign_up(f"user-{suffix}@example.com", "secret-user")
    return {"operator": {"Authorization": f"Bearer {operator}"}, "user": {"Authorization": f"Bearer {user}"}}


@pytest.fixture
def http(api, firestore_client):
    """An HTTP client on the API, over an emptied Firestore."""
    with httpx.Client(base_url=api, timeout=30) as client:
        yield client
