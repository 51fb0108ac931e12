"""`python -m local.demo` (what `make run` runs) end to end on the test's emulators.

The demo runs as a subprocess with the emulator variables set, so it reuses the
test's emulators instead of starting its own. Every process it starts inherits
a token in its environment: after the demo exits, no process may carry it.
"""

import base64
import collections
import datetime
import os
import pathlib
import re
import signal
import subprocess
import sys
import time
import uuid
from xml.etree import ElementTree

import httpx
import pytest

from local import demo, emulators, stack
from local.emulators import free_port, is_up
from sim import simulator, timetable
from sim.publisher import DevicePublisher

REPO = pathlib.Path(__file__).resolve().parent.parent
TRAINS = [t.train_id for t in simulator.DEMO_FLEET]
TOKEN_VAR = "OCCUPANCY_DEMO_TEST_TOKEN"


def processes_with(token: str):
    """(pid, cmdline) of every live process whose environment carries the token."""
    marker = f"{TOKEN_VAR}={token}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read().split(b"\0")
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in environ:
            found.append((int(entry), cmdline))
    return found


def api_port():
    return ["--api_port", str(free_port())]


def start_demo(tmp_path, *args):
    token = uuid.uuid4().hex
    out = open(tmp_path / "demo.out", "w")
    env = dict(os.environ, **{TOKEN_VAR: token, "PYTHONUNBUFFERED": "1"})
    process = subprocess.Popen(
        # A port of its own: demos on other test workers run at the same time.
        [sys.executable, "-m", "local.demo", "--log", str(tmp_path / "pipeline.log"), *api_port(), *args],
        cwd=REPO,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    out.close()
    process.token = token
    process.out_path = tmp_path / "demo.out"
    return process


def output(process) -> str:
    return process.out_path.read_text(errors="replace")


def realtime(client):
    return {d.id: d.to_dict() for d in client.collection("realtime").stream()}


def is_demo_pipeline(cmdline: str) -> bool:
    return "pipeline.main" in cmdline and stack.subscription_path(stack.PROJECT, demo.SUBSCRIPTION) in cmdline


def watch(process, client, timeout_s, until=lambda seen: False):
    """Polls realtime while the demo runs: train -> the distinct values seen, and the demo's processes."""
    seen = {}
    children = set()
    deadline = time.monotonic() + timeout_s
    while process.poll() is None and time.monotonic() < deadline and not until(seen):
        for train, doc in realtime(client).items():
            seen.setdefault(train, set()).add(doc.get("current_value"))
        children.update(cmd for _, cmd in processes_with(process.token) if is_demo_pipeline(cmd))
        time.sleep(0.5)
    return seen, children


def stop(process):
    if process.poll() is None:
        process.send_signal(signal.SIGUSR1)  # where it hangs, into its output (local/demo.py)
        time.sleep(1)
        process.kill()
        process.wait(10)
    if process.stdout is not None:
        process.stdout.close()


def final_table(text: str):
    """train -> (occupancy, expected) from the last table the demo printed."""
    rows = {}
    for line in text.splitlines():
        if line.split()[:1] and line.split()[0] in TRAINS:
            rest = line[9 + 26 :].split()  # after the train and the fixed-width name
            rows[line.split()[0]] = (rest[0], rest[-1])  # OCCUPANCY ... EXPECTED
    return rows


def api_url(text: str):
    match = re.search(r"API: (http://127\.0\.0\.1:\d+)", text)
    return match.group(1) if match else None


def test_demo_runs_for_its_duration_counts_and_leaves_nothing_running(
    emulator_env, firestore_client, auth_emulator, monkeypatch, tmp_path
):
    monkeypatch.setenv(auth_emulator.env_var, auth_emulator.host_port)
    # TIDES files of 5 s, a stop left after 10 s without a count: visits are written while it runs.
    process = start_demo(tmp_path, "--duration", "75", "--seed", "1", "--tides_window_s", "5", "--stop_gap_s", "10")
    try:
        stack.wait_for(lambda: api_url(output(process)) or process.poll() is not None, 120, what="the demo's API URL")
        url = api_url(output(process))
        assert url, output(process)
        seen, children = watch(process, firestore_client, timeout_s=120, until=lambda seen: set(seen) >= set(TRAINS))
        served = httpx.get(f"{url}/v1/trains", timeout=30).json()["trains"]
        assert {t["train_id"] for t in served} == set(TRAINS)
        # Each on a trip of the demo's timetable, found by the train's number.
        assert all(t["trip"]["trip_id"].startswith(t["train_id"] + "-") for t in served), served
        forecast_is_served(url, served)
        # The signals a scraper reads: the API's requests, the bridge's forwarded messages.
        assert 'occupancy_api_requests_total{method="GET",route="/v1/trains"' in httpx.get(f"{url}/metrics").text
        bridge = re.search(r"bridge metrics \(Prometheus\): (http://\S+)", output(process)).group(1)
        stack.wait_for(
            lambda: re.search(r"^occupancy_bridge_forwarded_total [1-9]", httpx.get(bridge).text, re.M),
            60,
            what="the bridge forwarding",
        )
        assert httpx.get(f"{url}/docs", timeout=30).status_code == 200
        assert "Train occupancy" in httpx.get(f"{url}/", timeout=30).text
        feed = httpx.get(f"{url}/gtfs-rt/vehicle-positions.pb", params={"format": "json"}, timeout=30).json()
        assert {e["id"] for e in feed["entity"]} == set(TRAINS)
        more, _ = watch(process, firestore_client, timeout_s=120)
        for train, values in more.items():
            seen.setdefault(train, set()).update(values)
        code = process.wait(30)
    finally:
        stop(process)
    text = output(process)
    assert code == 0, text
    assert "reusing the pubsub emulator" in text and "reusing the firestore emulator" in text, text
    assert "reusing the auth emulator" in text and "operator sign-in" in text, text
    assert f"dashboard: {url}/" in text and f"GTFS-Realtime feed: {url}/gtfs-rt/vehicle-positions.pb" in text, text
    assert f"{url}/siri/2.1/estimated-timetable.xml (SIRI-ET)" in text, text
    assert "pipeline log:" in text and "75s are up" in text and "[demo] stopped" in text, text

    docs = realtime(firestore_client)
    for train in TRAINS:
        assert train in docs, f"no realtime/{train}: {sorted(docs)}\n{text}"
        assert isinstance(docs[train]["current_value"], int) and docs[train]["current_value"] >= 0
        assert docs[train]["last_updated"] is not None
    assert any(len(values - {None}) >= 2 for values in seen.values()), seen
    # The pipeline's counts agree with the simulator's truth at the same event time.
    table = final_table(text)
    assert set(table) == set(TRAINS), text
    assert all(occupancy == expected != "-" for occupancy, expected in table.values()), text

    # It ran a pipeline, stopped it, and left the emulators it reused running.
    assert children, "never saw the demo's pipeline process"
    assert processes_with(process.token) == []
    assert is_up(emulator_env["PUBSUB_EMULATOR_HOST"]) and is_up(emulator_env["FIRESTORE_EMULATOR_HOST"])
    assert re.search(r"archived \d+ messages", text), text

    replay_matches_the_run(firestore_client, tmp_path, emulator_env)


def forecast_is_served(url, served):
    """The forecast job, run by the demo on its seeded history, serves each train's trip today:
    a level at every stop, from the model; a stop's board shows the trains leaving it."""

    def forecast(train):
        # Its run's service date, not the endpoint's default (today: after midnight, a run of
        # yesterday's still under way would be looked up on the new day).
        day = datetime.datetime.strptime(train["trip"]["start_date"], "%Y%m%d").date().isoformat()
        answer = httpx.get(f"{url}/v1/trips/{train['trip']['trip_id']}/forecast", params={"date": day}, timeout=30)
        return answer.json() if answer.status_code == 200 else None

    found = stack.wait_for(
        lambda: (got := [forecast(t) for t in served]) and all(got) and got, 100, what="the demo's forecast"
    )
    for trip in found:
        assert trip["history_days"] >= 14 and trip["model"], trip
        assert all(s["occupancy_status"] != "NO_DATA_AVAILABLE" and s["stop_name"] for s in trip["stops"]), trip
    board = httpx.get(f"{url}/v1/stops/zurich/departures", timeout=30).json()
    assert board["stop_name"] == "Zuerich HB", board
    leaving = {d["trip_id"].split("-")[0] for d in board["departures"][:6]}
    assert leaving == {"ic1832", "ic1840", "s3"}, board  # the three routes through Zurich
    assert board["departures"][0]["occupancy_status"] != "NO_DATA_AVAILABLE", board

    # The same load ahead as SIRI-ET, once the trains count (a train never seen is not taken to
    # be out on its trip), each journey the trip its train is on, read just before or just after
    # it (a train may begin its next trip between two reads).
    def trips():
        trains = httpx.get(f"{url}/v1/trains", timeout=30).json()["trains"]
        return {t["train_id"]: (t.get("trip") or {}).get("trip_id") for t in trains}

    def journeys():
        before = trips()
        root = ElementTree.fromstring(httpx.get(f"{url}/siri/2.1/estimated-timetable.xml", timeout=30).content)
        ns = {"siri": "http://www.siri.org.uk/siri"}
        found = [
            (j.findtext("siri:VehicleRef", namespaces=ns), j.findtext(".//siri:DatedVehicleJourneyRef", namespaces=ns))
            for j in root.iterfind(".//siri:EstimatedVehicleJourney", ns)
        ]
        return found and (found, before, trips())

    found, before, after = stack.wait_for(journeys, 90, what="SIRI-ET's journeys")
    assert all(trip in (before.get(train), after.get(train)) for train, trip in found), (found, before, after)


REPLAYED = {"realtime": "realtime_replay", "history": "history_replay", "trips": "trips_replay"}


def replay_matches_the_run(client, tmp_path, env):
    """The recorded run replayed in batch (python -m pipeline.main --archive) into collections
    and a directory of its own: every history document and TIDES row the running job wrote,
    the replay writes the same; a line it refuses is a dead letter naming its file and offset."""
    archive = tmp_path / "archive"
    assert sorted(archive.glob("*.txt")), "the demo recorded no archive"
    command = [
        sys.executable,
        "-m",
        "pipeline.main",
        "--runner=FnApiRunner",
        f"--project={stack.PROJECT}",
        f"--archive={archive}/*.txt",
        f"--tides_output={tmp_path / 'tides_replay'}",
        "--tides_window_s=5",
        "--stop_gap_s=10",
        f"--gtfs_static={tmp_path / 'timetable.zip'}",
        "--dead_letter_collection=dead_letters_replay",
        *(f"--{name}_collection={replayed}" for name, replayed in REPLAYED.items()),
    ]
    done = subprocess.run(command, cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    def docs(name):
        return {d.id: d.to_dict() for d in client.collection(name).stream()}

    ran, replayed = docs("history"), docs("history_replay")
    assert ran and set(ran) <= set(replayed)
    # The running job was stopped with the fleet on the move: what it had not yet flushed
    # (the last seconds) is in the replay only; every bucket it wrote is the same there.
    last = {train: max(d["bucket_start"] for d in ran.values() if d["train"] == train) for train in TRAINS}
    differ = [k for k, d in ran.items() if d != replayed[k] and d["bucket_start"] < last[d["train"]]]
    assert differ == [], [(ran[k], replayed[k]) for k in differ[:3]]

    from adapters import tides_parquet
    from occupancy import tides

    def rows(directory, table):
        found = tides_parquet.read_table(str(tmp_path / directory), table).to_pylist()
        return {tuple(r[k] for k in tides.KEYS[table]): r for r in found}

    for table in ("stop_visits", "passenger_events"):
        ran_rows, replay_rows = rows("tides", table), rows("tides_replay", table)
        assert ran_rows, table
        assert {k: replay_rows.get(k) for k in ran_rows} == ran_rows, table
    # The trains kept to the timetable, and each stop they counted at is matched to its stop time.
    counted = [r for r in rows("tides", "stop_visits").values() if r["dwell"] is not None]
    assert counted and all(r["schedule_relationship"] == "Scheduled" for r in counted), counted
    for row in counted:
        late = (row["actual_departure_time"] - row["schedule_departure_time"]).total_seconds()
        assert -timetable.DWELL_S <= late <= 1, row

    for dead in docs("dead_letters_replay").values():  # the simulator's malformed messages
        path, offset = dead["message_id"].rsplit("@", 1)
        with open(path, "rb") as f:
            f.seek(int(offset))
            assert f.readline().rstrip(b"\n") == base64.b64decode(dead["payload"]), dead


def test_demo_stops_everything_on_ctrl_c(emulator_env, firestore_client, tmp_path):
    process = start_demo(tmp_path, "--seed", "2")
    try:
        seen, children = watch(process, firestore_client, timeout_s=90, until=lambda seen: set(seen) >= set(TRAINS))
        assert process.poll() is None, output(process)
        assert set(seen) >= set(TRAINS), f"no realtime documents for every train:\n{output(process)}"
        process.send_signal(signal.SIGINT)
        code = process.wait(60)
    finally:
        stop(process)
    assert code == 0, output(process)
    assert "interrupted (Ctrl-C)" in output(process) and "[demo] stopped" in output(process)
    assert children, "never saw the demo's pipeline process"
    assert processes_with(process.token) == []


@pytest.mark.parametrize("how", ["sighup", "broken_stdout"])
def test_demo_stops_everything_when_its_terminal_or_reader_goes(emulator_env, firestore_client, tmp_path, how):
    """The terminal closed (SIGHUP), or `make run | tee` / `| head` whose reader went first
    (a broken stdout): the demo stops everything it started, as on Ctrl-C."""
    token = uuid.uuid4().hex
    env = dict(os.environ, **{TOKEN_VAR: token, "PYTHONUNBUFFERED": "1"})
    process = subprocess.Popen(
        [sys.executable, "-m", "local.demo", "--log", str(tmp_path / "pipeline.log"), *api_port(), "--seed", "3"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    process.token = token
    try:
        children = set()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and process.poll() is None and not (children and realtime(firestore_client)):
            children.update(cmd for _, cmd in processes_with(token) if is_demo_pipeline(cmd))
            time.sleep(0.5)
        if process.poll() is not None:
            pytest.fail(f"the demo exited ({process.returncode}) before it ran: {process.stdout.read().decode()}")
        assert children, "the demo never ran its pipeline"
        if how == "sighup":
            process.send_signal(signal.SIGHUP)
            head = process.stdout.read()
            code = process.wait(60)
            assert b"terminated (SIGHUP)" in head and b"[demo] stopped" in head
        else:
            process.stdout.close()  # the reader is gone; the demo's next table write fails
            code = process.wait(60)
    finally:
        stop(process)
    assert code == 0
    assert processes_with(token) == []


def pull_all(subscription: str, expected: int, timeout_s: float = 30):
    from google.cloud import pubsub_v1

    received = []
    deadline = time.monotonic() + timeout_s
    with pubsub_v1.SubscriberClient() as subscriber:
        while len(received) < expected and time.monotonic() < deadline:
            response = subscriber.pull(subscription=subscription, max_messages=100, timeout=10)
            ids = [m.ack_id for m in response.received_messages]
            if ids:
                subscriber.acknowledge(subscription=subscription, ack_ids=ids)
            received += [m.message for m in response.received_messages]
    return received


def test_publisher_sends_each_message_at_its_time_and_stops_when_told(emulator_env):
    name = uuid.uuid4().hex[:8]
    stack.ensure_topic(stack.PROJECT, f"sim-{name}", [f"sim-{name}"])
    faulty = simulator.SimConfig(faults=simulator.FaultRates(0.1, 0.1, 0.1))
    sim = simulator.Simulation(simulator.DEMO_FLEET[:2], seed=5, config=faulty)
    publisher = DevicePublisher(sim, stack.PROJECT, f"sim-{name}", seconds=5).start()
    assert publisher.wait(30) and publisher.error is None
    planned = list(simulator.Simulation(sim.fleet, 5, faulty).messages(publisher.start_us, 5))
    received = pull_all(stack.subscription_path(stack.PROJECT, f"sim-{name}"), len(planned))

    key = lambda payload, attributes: (payload, tuple(sorted(attributes.items())))
    assert sorted(key(m.data, m.attributes) for m in received) == sorted(key(m.payload, m.attributes) for m in planned)
    counts = publisher.counts()
    assert counts["failed"] == 0 and sum(counts[k] for k in simulator.KINDS) == len(planned)
    assert publisher.expected() == sim.truth.final()
    # Real time: each message was published about when it was due, not all at once: never
    # before its time, and not long after (a loaded machine delays a publish by a second or so).
    # (Only messages sent once: a duplicate, or a malformed payload used twice, has two due times.)
    once = collections.Counter(key(m.payload, m.attributes) for m in planned)
    due = {k: m.send_at for m in planned if once[k := key(m.payload, m.attributes)] == 1}
    assert len(due) > len(planned) / 2
    for m in received:
        sent_at = m.publish_time.timestamp() - publisher.start_us / 1e6
        if key(m.data, m.attributes) in due:
            assert -0.1 < sent_at - due[key(m.data, m.attributes)] < 2.0

    endless = DevicePublisher(simulator.Simulation(seed=6), stack.PROJECT, f"sim-{name}").start()
    time.sleep(2)
    endless.stop()
    assert not endless.running and endless.published() > 0
    published = endless.published()
    time.sleep(1)
    assert endless.published() == published


def test_the_api_moves_to_a_free_port_when_another_demo_takes_its_port_first(
    firestore_emulator, auth_emulator, monkeypatch, tmp_path
):
    """Two demos at once (`make run` twice, or test workers): the port was free when checked
    and taken before the API bound it. The API comes up on another port, not an error."""
    import socket

    monkeypatch.setenv(firestore_emulator.env_var, firestore_emulator.host_port)
    monkeypatch.setenv(auth_emulator.env_var, auth_emulator.host_port)
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:1")  # unused by the API
    with socket.socket() as other_demo:
        other_demo.bind(("127.0.0.1", 0))
        other_demo.listen()
        taken = other_demo.getsockname()[1]
        checks = []
        real_port_free = emulators.port_free

        def port_free(port):
            checks.append(port)
            return len(checks) == 1 or real_port_free(port)  # the other demo binds right after the first check

        monkeypatch.setattr(emulators, "port_free", port_free)
        run = demo.Demo(demo.parse_args(["--api_port", str(taken), "--log", str(tmp_path / "pipeline.log")]))
        try:
            run.write_timetable()  # the API reads it, as the demo starts them
            run.start_api()
            assert run.api.poll() is None
            assert not run.api_url.endswith(f":{taken}")
            assert httpx.get(f"{run.api_url}/healthz", timeout=5).status_code == 200
        finally:
            if run.api is not None:
                stack.stop_process(run.api)
    assert checks[0] == taken
