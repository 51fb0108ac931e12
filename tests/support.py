"""Helpers the end-to-end, API, dashboard and feed tests share (their fixtures are in
conftest.py)."""

import datetime
import pathlib
import threading
import time

from google.cloud import firestore, pubsub_v1

from adapters import registry
from adapters.store import RetryPolicy, commit_documents
from local import stack
from local.emulators import free_port
from local.stack import PROJECT
from occupancy import documents, wire
from occupancy.train_state import DeviceMemory, TrainState
from sim.keyring import Keyring

S = 1_000_000
REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
UTC = datetime.timezone.utc
REFRESH_S = 2
# The pipeline's options in the end-to-end tests.
PIPELINE_ARGS = (f"--registry_refresh_s={REFRESH_S}", "--reorder_delay_s=2", "--flush_interval_s=1")


# The simulated devices' and operator's keys (generated per test session, registered by
# `register`): every message the tests' devices send is signed, as a real device's is.
KEYS = Keyring()


class Fleet:
    """Publishes like devices do: per-device seq, payload and attributes from occupancy.wire,
    the payload signed with the device's key (KEYS)."""

    def __init__(self, topic: str):
        self.publisher = pubsub_v1.PublisherClient()
        self.topic = topic
        self.seqs = {}
        self.lock = threading.Lock()
        self.sent = []  # (device, seq, delta, event_time_us, payload, attributes)

    def publish(self, device: str, delta: int, event_time_us: int = None, seq: int = None):
        with self.lock:
            if seq is None:
                seq = self.seqs[device] = self.seqs.get(device, 0) + 1
        t = event_time_us if event_time_us is not None else int(time.time() * S)
        payload, attributes = wire.encode_event(device, delta, t, seq)
        payload = KEYS.sign(device, payload)
        self.publisher.publish(self.topic, payload, **attributes).result(timeout=30)
        self.sent.append((device, seq, delta, t, payload, attributes))
        return t

    def publish_raw(self, payload: bytes, **attributes):
        self.publisher.publish(self.topic, payload, **attributes).result(timeout=30)


class Heartbeats(threading.Thread):
    """A heartbeat (delta 0) from one device per train every `interval_s`, until stopped."""

    def __init__(self, fleet: Fleet, devices, interval_s: float = 1.0):
        super().__init__(daemon=True)
        self.fleet, self.devices, self.interval_s = fleet, devices, interval_s
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            for device in self.devices:
                self.fleet.publish(device, 0)
            self.halt.wait(self.interval_s)

    def stop(self):
        self.halt.set()
        self.join(timeout=10)


def realtime_values(client):
    return {d.id: d.to_dict().get("current_value") for d in client.collection("realtime").stream()}


def wait_for_values(client, expected: dict, process, timeout_s: float = 60):
    def reached():
        assert process.poll() is None, f"pipeline died:\n{tail(process)}"
        values = realtime_values(client)
        return all(values.get(k) == v for k, v in expected.items())

    try:
        stack.wait_for(reached, timeout_s, what=f"realtime {expected}")
    except TimeoutError:
        raise AssertionError(f"realtime is {realtime_values(client)}, expected {expected}\n{tail(process)}") from None


def tail(process, lines=40):
    with open(process.log_path, errors="replace") as f:
        return "".join(line for line in f.readlines()[-lines:])


def register(client, trains: dict, capacities: dict = None):
    """Registers the trains and devices, the devices' public keys, and the operator's control
    principal for every train."""
    for train, devices in trains.items():
        registry.set_train(client, "trains", train, (capacities or {}).get(train))
        for device in devices:
            registry.register_device(client, "devices", device, train)
    KEYS.register(client, "devices", [d for devices in trains.values() for d in devices], control_trains=["*"])


def warm_up(client, fleet, process, heartbeat_devices):
    """Heartbeats until the pipeline has written a realtime document for each of their trains."""
    beats = Heartbeats(fleet, heartbeat_devices, interval_s=0.5)
    beats.start()
    try:
        stack.wait_for(
            lambda: process.poll() is not None or len(realtime_values(client)) >= len(heartbeat_devices),
            120,
            what="the pipeline's first realtime writes",
        )
        assert process.poll() is None, f"pipeline died:\n{tail(process)}"
    finally:
        beats.stop()


def serve_api(tmp_path_factory, env: dict, *args: str):
    """The API as a subprocess; exact public numbers unless `args` choose (tests of the numbers
    themselves; tests/test_privacy.py is about the coarse ones)."""
    if not any(a.startswith("--public_precision") for a in args):
        args = (*args, "--public_precision=exact")
    if "--fleet_cache_s=0" in args and not any(a.startswith("--doors_cache_s") for a in args):
        args = (*args, "--doors_cache_s=0")  # no cache: the doors a test has just registered too
    for attempt in range(3):
        # A free port can be taken by another test's process before the API binds it: try another.
        port = free_port()
        log = tmp_path_factory.mktemp("api") / "api.log"
        process = stack.start_api(PROJECT, port, *args, env=env, log_path=str(log))
        process.log_path = log
        base_url = f"http://127.0.0.1:{port}"
        try:
            stack.wait_until_serving(process, base_url)
            return process, base_url
        except (RuntimeError, TimeoutError):
            stack.stop_process(process)
            if "address already in use" not in log.read_text() or attempt == 2:
                raise AssertionError(f"the API did not start:\n{log.read_text()}") from None


def write_realtime(client, train_id, value, capacity=None, seen=None, collection=None):
    """A realtime document as the pipeline writes it; seen: device -> (seq, last_seen datetime);
    `collection`: another than the pipeline's default."""
    state = TrainState(value=value, capacity=capacity, last_applied_us=wire.now_us())
    for device, (seq, last_seen) in (seen or {}).items():
        state.devices[device] = DeviceMemory(seq=seq, applied=[[1, seq]], last_seen_us=wire.to_micros(last_seen))
    write = documents.realtime_write(train_id, state)
    data = {**write.data, "updated_at": firestore.SERVER_TIMESTAMP}  # as the sink stamps it
    assert not commit_documents(client, [(collection or write.collection, write.doc_id, data)], RetryPolicy())


def write_forecast(
    client, trip_id: str, day: datetime.date, stops, capacity: int = 300, collection: str = "forecasts"
) -> None:
    """A forecast document as the forecast job writes it: `stops`, ((stop_sequence, stop_id), load)
    pairs; FEW_SEATS_AVAILABLE below half the capacity, STANDING_ROOM_ONLY above."""
    from occupancy.forecast import rows

    forecast = [
        {
            "service_date": day,
            "trip_id": trip_id,
            "stop_sequence": sequence,
            "stop_id": stop,
            "predicted_load": load,
            "predicted_load_p10": load - 20,
            "predicted_load_p90": load + 25,
            "occupancy_percentage": round(100 * load / capacity),
            "occupancy_status": "FEW_SEATS_AVAILABLE" if load < capacity / 2 else "STANDING_ROOM_ONLY",
            "model": "level-hgb",
            "history_days": 56,
            "forecast_start": day - datetime.timedelta(days=2),
        }
        for (sequence, stop), load in stops
    ]
    client.collection(collection).document(rows.document_id(trip_id, day.isoformat())).set(rows.trip_document(forecast))


def ago(seconds):
    return datetime.datetime.now(UTC) - datetime.timedelta(seconds=seconds)


def parse_time(text):
    """A time the API serves (RFC 3339, "Z"), as an aware datetime to compare with `ago`."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def flag_values(command) -> dict:
    """A parsed command line's --name=value flags, by name."""
    return dict(arg[2:].split("=", 1) for arg in command if arg.startswith("--") and "=" in arg)


def option_actions(options_class=None) -> dict:
    """An options class's flags (default OccupancyOptions) as argparse builds them, by dest: what
    `--help`, the template metadata and the job's tests are checked against (each through
    argparse, not a shared list)."""
    import argparse

    from pipeline.options import OccupancyOptions

    parser = argparse.ArgumentParser()
    (options_class or OccupancyOptions)._add_argparse_args(parser)
    return {a.dest: a for a in parser._actions if a.option_strings and a.dest != "help"}


def setup_beam_version() -> str:
    """The Beam version setup.py pins (BEAM_VERSION), read from its source, not imported."""
    import ast

    tree = ast.parse((REPO_ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "BEAM_VERSION" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("no BEAM_VERSION in setup.py")


def gtfs_rt_notices(feed, directory: pathlib.Path, static_files: dict, at: datetime.datetime, role: str = "-vp"):
    """The notices (code, severity) of gtfs-rt-validator (PyPI) on a FeedMessage against a static
    feed, at a pinned clock; `role`: -vp (VehiclePositions) or -tu (TripUpdates)."""
    import json
    import subprocess
    import sys
    import zipfile

    directory.mkdir()
    gtfs = directory / "gtfs.zip"
    with zipfile.ZipFile(gtfs, "w") as z:
        for name, text in static_files.items():
            z.writestr(name, text)
    message = directory / "feed.pb"
    message.write_bytes(feed.SerializeToString())
    out = directory / "report"
    at_text = at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "gtfs_rt_validator.cli",
            "-gtfs",
            str(gtfs),
            role,
            str(message),
            "--at",
            at_text,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads((out / "system_errors.json").read_text())["notices"] == []
    return [(n["code"], n["severity"]) for n in json.loads((out / "report.json").read_text())["notices"]]
