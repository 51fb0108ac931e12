"""The door-device publisher (device/publisher.py) and its outbox (device/outbox.py).

Pure tests of line parsing, back-off and the outbox; then `python -m
device.publisher` as a subprocess against the real Pub/Sub emulator (no mocks):
an outage (the emulator stopped and started again on the same port, losing its
topics), a SIGKILL and restart, malformed input, a missing topic, SIGTERM while
Pub/Sub is unreachable, and end to end through the pipeline to Firestore.

What arrived is read back with subscriptions and de-duplicated by the
`event_id` attribute, as the pipeline does.
"""

import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid

import pytest
from google.api_core import exceptions as gexc

from device import sender, sources
from device.outbox import Outbox, OutboxError
from local import stack
from local.emulators import free_port
from local.stack import PROJECT
from occupancy import registry, wire
from occupancy.store import make_client
from tests.support import KEYS

S = 1_000_000
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---- pure: parsing, back-off ---------------------------------------------------------


@pytest.mark.parametrize(
    "line, delta",
    [
        ("+2", 2),
        ("-1", -1),
        ("3", 3),
        (" 0 ", 0),
        ("2,1", 1),
        ("2,-1", 1),
        ("0,4", -4),
        (" 5 , 2 \n", 3),
        ("", None),
        ("   \n", None),
        ("# a comment", None),
    ],
)
def test_parse_count_line(line, delta):
    assert sources.parse_count_line(line) == delta


@pytest.mark.parametrize("line", ["abc", "+", "1.5", "1,2,3", "-1,2", "1;2", "+101", "60,-60,"])
def test_parse_count_line_rejects(line):
    with pytest.raises(ValueError):
        sources.parse_count_line(line)


def test_parse_replay_line_csv_jsonl_and_header():
    t = wire.parse_time("2025-03-01T07:30:00.250Z")
    assert sources.parse_replay_line("2025-03-01T07:30:00.250Z,3") == (t, 3)
    assert sources.parse_replay_line("2025-03-01T08:30:00.250+01:00, -2") == (t, -2)
    assert sources.parse_replay_line(f"{t / S},1") == (t, 1)  # epoch seconds
    assert sources.parse_replay_line('{"event_time": "2025-03-01T07:30:00.250Z", "delta": 4}') == (t, 4)
    assert sources.parse_replay_line(json.dumps({"event_time": t / S, "delta": -1})) == (t, -1)
    for skipped in ("time,delta", "event_time,delta", "", "# note"):
        assert sources.parse_replay_line(skipped) is None
    for bad in (
        "2025-03-01 07:30:00,1",
        "yesterday,1",
        "2025-03-01T07:30:00Z,x",
        "1,2,3",
        '{"delta": 1}',
        '{"event_time": 1, "delta": "1"}',
        "{not json",
        "1,500",
    ):
        with pytest.raises(ValueError):
            sources.parse_replay_line(bad)


def test_backoff_grows_exponentially_is_capped_and_jittered():
    import random

    rng = random.Random(1)
    delays = [sender.backoff_s(n, cap_s=10, rng=rng) for n in range(1, 12)]
    assert 0.25 <= delays[0] <= 0.5 and 0.5 <= delays[1] <= 1.0 and 2 <= delays[3] <= 4
    assert all(5 <= d <= 10 for d in delays[6:])
    assert len({round(d, 6) for d in delays[6:]}) > 1, "jitter"


# ---- pure: the outbox ----------------------------------------------------------------


def test_outbox_seq_is_persisted_and_continues_after_reopening(tmp_path):
    path = str(tmp_path / "o.sqlite")
    box = Outbox(path)
    rows = [box.append("door-a", d, 1000 + i) for i, d in enumerate((1, -1, 2))]
    assert [(r.seq, r.event_id) for r in rows] == [(1, "door-a:1"), (2, "door-a:2"), (3, "door-a:3")]
    box.delete([r.id for r in rows])
    box.close()
    box = Outbox(path)  # a restart: the seq continues even though the outbox is empty
    assert box.pending() == 0 and box.last_seq("door-a") == 3
    assert box.append("door-a", 5, 2000).seq == 4
    assert box.append("door-b", 1, 2001).seq == 1  # per device
    box.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_outbox_rows_come_oldest_first_and_leave_only_when_deleted(tmp_path):
    box = Outbox(str(tmp_path / "o.sqlite"))
    for i in range(5):
        box.append("door-a", i + 1, 1000 + i)
    first = box.oldest(3)
    assert [r.seq for r in first] == [1, 2, 3]
    assert box.oldest(3) == first, "reading does not remove: only an acknowledged delete does"
    assert box.delete([first[0].id, first[1].id]) == 2
    assert [r.seq for r in box.oldest(10)] == [3, 4, 5] and box.pending() == 3
    payload, attributes = box.oldest(1)[0].encode()
    assert payload == wire.encode_event("door-a", 3, 1002, 3)[0]
    assert attributes == {"event_id": "door-a:3", "event_time": wire.format_time(1002)}
    box.close()


def test_outbox_meta_is_written_with_the_count(tmp_path):
    box = Outbox(str(tmp_path / "o.sqlite"))
    box.append("door-a", 1, 1000, meta={"replay:/x": "7"})
    assert box.get_meta("replay:/x") == "7"
    box.set_meta("replay:/x", "9")
    assert box.get_meta("replay:/x") == "9" and box.get_meta("other") is None
    box.close()


def test_a_full_outbox_blocks_the_reader_until_rows_are_acknowledged(tmp_path):
    warnings = []
    box = Outbox(str(tmp_path / "o.sqlite"), max_rows=2, on_full=warnings.append)
    box.append("door-a", 1, 1)
    box.append("door-a", 1, 2)
    stored = []
    reader = threading.Thread(target=lambda: stored.append(box.append("door-a", 1, 3)))
    reader.start()
    time.sleep(0.5)
    assert reader.is_alive() and not stored and warnings == [2], "blocked, with one warning"
    box.delete([box.oldest(1)[0].id])
    reader.join(5)
    assert [r.seq for r in stored] == [3] and box.pending() == 2

    # Stopping while full: the count already read is stored anyway, one over the bound.
    cancel = threading.Event()
    late = threading.Thread(target=lambda: stored.append(box.append("door-a", 1, 4, cancel=cancel)))
    late.start()
    time.sleep(0.3)
    assert late.is_alive()
    cancel.set()
    late.join(5)
    assert [r.seq for r in stored] == [3, 4] and box.pending() == 3
    box.close()


def test_an_outbox_has_one_owner(tmp_path):
    path = str(tmp_path / "o.sqlite")
    box = Outbox(path)
    with pytest.raises(OutboxError, match="in use by another publisher"):
        Outbox(path)
    box.close()
    Outbox(path).close()  # free again


# ---- pure: the sources ---------------------------------------------------------------


class _NoWait:
    """A stop event whose waits return at once: sources run without pacing."""

    def __init__(self):
        self.waited = []

    def wait(self, timeout=None):
        self.waited.append(timeout)
        return False

    def is_set(self):
        return False


def test_replay_source_paces_by_speed_resumes_and_retimes(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text(
        "time,delta\n2025-03-01T07:30:00.000Z,2\n2025-03-01T07:30:01.000Z,oops\n2025-03-01T07:30:04.000Z,-1\n\n"
    )
    stop = _NoWait()
    readings = list(sources.replay_source(str(log), speed=2, retime=False, start_line=0, max_abs_delta=100, stop=stop))
    t0 = wire.parse_time("2025-03-01T07:30:00Z")
    assert [(r.delta, r.event_time_us, r.position) for r in readings if not r.error] == [
        (2, t0, 2),
        (-1, t0 + 4 * S, 4),
        (None, None, 5),
    ]
    assert [r.error for r in readings if r.error] == [
        f"{log}:3: delta must be an integer: '2025-03-01T07:30:01.000Z,oops'"
    ]
    assert stop.waited[-1] == pytest.approx(2.0, abs=0.1), "4 s of log at speed 2"

    resumed = list(
        sources.replay_source(str(log), speed=0, retime=True, start_line=2, max_abs_delta=100, stop=_NoWait())
    )
    assert [(r.delta, r.event_time_us, r.position) for r in resumed if not r.error] == [
        (-1, None, 4),
        (None, None, 5),
    ], "resumes after line 2; retimed counts are stamped when stored"


def test_simulate_source_gives_one_doors_station_bursts():
    readings = list(itertools.islice(sources.simulate_source("door-sim", 3, _NoWait()), 40))
    deltas = [r.delta for r in readings]
    assert all(r.error == "" and r.event_time_us is None for r in readings)
    assert 0 not in deltas and all(abs(d) <= 5 for d in deltas), "counts only, small deltas"
    assert any(d > 0 for d in deltas)


def test_the_publisher_imports_neither_beam_nor_firestore():
    code = (
        "import sys, device.publisher as p, device.outbox, sim.simulator, sim.publisher\n"
        "p.make_client_factory(None, 10, 0.01)\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('apache_beam', 'google.cloud.firestore')))\n"
        "assert not bad, bad\n"
        "assert 'google.cloud.pubsub_v1' in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--device_id", "car3/door2"], "invalid device id 'car3/door2'"),
        (
            ["--device_id", "d1", "--credentials", "/nonexistent/key.json"],
            "bad credentials file /nonexistent/key.json: not found",
        ),
        (["--device_id", "d1", "--source", "replay"], "replay needs one FILE"),
        (["--device_id", "d1", "--emulator", "localhost:1", "--topic", "a/b"], "invalid --topic 'a/b'"),
    ],
)
def test_configuration_errors_are_one_line_with_exit_code_2(argv, message, tmp_path):
    result = run_publisher(argv + ["--outbox", str(tmp_path / "o.sqlite")], timeout=30)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert message in lines[0]


def test_a_credentials_file_that_is_not_a_key_is_refused(tmp_path):
    key = tmp_path / "key.json"
    key.write_text('{"type": "service_account"}')
    result = run_publisher(
        [
            "--device_id",
            "d1",
            "--credentials",
            str(key),
            "--topic",
            "projects/p1/topics/events",
            "--outbox",
            str(tmp_path / "o.sqlite"),
        ],
        timeout=30,
    )
    assert result.returncode == 2 and result.stderr.startswith(f"error: bad credentials file {key}: ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_sigterm_while_pubsub_is_unreachable_keeps_the_counts_and_exits_0(tmp_path):
    outbox = tmp_path / "o.sqlite"
    # Nothing listens on this port: every publish fails as unavailable (not fatal).
    process = start_publisher(tmp_path, f"127.0.0.1:{free_port()}", "events", outbox, "--drain_timeout_s", "1")
    try:
        feed(process, ["+1", "+2", "-1"])
        stack.wait_for(lambda: outbox_state(outbox)[1] == 3, 30, what="3 counts stored")
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert time.monotonic() - started < 5
    finally:
        kill(process)
    assert outbox_state(outbox) == (3, 3)
    assert "3 counts stay in the outbox" in log_of(tmp_path)


# ---- subprocess helpers -----------------------------------------------------------------


def run_publisher(argv, timeout):
    return subprocess.run(
        [sys.executable, "-m", "device.publisher", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def start_publisher(
    tmp_path, emulator_host, topic, outbox, *extra, log_name="publisher.log", stdin=subprocess.PIPE, device="door-t"
):
    """`python -m device.publisher` with a stdin pipe the test writes to; log in tmp_path."""
    log = open(tmp_path / log_name, "ab")
    try:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "device.publisher",
                "--device_id",
                device,
                "--topic",
                topic,
                "--emulator",
                emulator_host,
                "--outbox",
                str(outbox),
                "--status_interval_s",
                "0.5",
                "--max_backoff_s",
                "1",
                *extra,
            ],
            cwd=REPO,
            stdin=stdin,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
    finally:
        log.close()


def kill(process):
    """Ends a publisher the test started, if it still runs (it is no group leader: no killpg)."""
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)
    if process.stdin and not process.stdin.closed:
        process.stdin.close()


def feed(process, lines, pause_s=0.0):
    for line in lines:
        process.stdin.write(line.encode("utf-8") if isinstance(line, str) else line)
        process.stdin.write(b"\n")
        process.stdin.flush()
        if pause_s:
            time.sleep(pause_s)


def log_of(tmp_path, name="publisher.log"):
    return (tmp_path / name).read_text(errors="replace")


def outbox_state(path):
    """(rows pending, last seq handed out) as another process sees the outbox file."""
    return Outbox.peek(str(path))


def create_topic(topic, subscription):
    """The topic and an ordered subscription on it (on the emulator the fixture names)."""
    from google.cloud import pubsub_v1

    pubsub_v1.PublisherClient().create_topic(name=stack.topic_path(PROJECT, topic))
    with pubsub_v1.SubscriberClient() as subscriber:
        subscriber.create_subscription(
            request={
                "name": stack.subscription_path(PROJECT, subscription),
                "topic": stack.topic_path(PROJECT, topic),
                "enable_message_ordering": True,
            }
        )
    return Collector(subscription)


class Collector:
    """Pulls (and acknowledges) one subscription; keeps every arrival in order."""

    def __init__(self, subscription):
        from google.cloud import pubsub_v1

        self.client = pubsub_v1.SubscriberClient()
        self.path = stack.subscription_path(PROJECT, subscription)
        self.arrivals = []  # (event_id, payload dict)

    def pull(self):
        try:
            response = self.client.pull(subscription=self.path, max_messages=100, timeout=2)
        except (gexc.DeadlineExceeded, gexc.ServiceUnavailable):
            return
        messages = response.received_messages
        if messages:
            self.client.acknowledge(subscription=self.path, ack_ids=[m.ack_id for m in messages])
        self.arrivals += [(m.message.attributes["event_id"], json.loads(m.message.data)) for m in messages]

    def wait_for(self, count, timeout_s=30):
        def enough():
            self.pull()
            return len({event_id for event_id, _ in self.arrivals}) >= count

        stack.wait_for(enough, timeout_s, interval_s=0.05, what=f"{count} distinct events")


def first_arrivals(*collectors):
    """Payloads de-duplicated by event_id, in order of first arrival; and the duplicate count."""
    seen, out, duplicates = set(), [], 0
    for collector in collectors:
        for event_id, payload in collector.arrivals:
            if event_id in seen:
                duplicates += 1
                continue
            seen.add(event_id)
            out.append(payload)
    return out, duplicates


def deltas_of(lines):
    return [sources.parse_count_line(line) for line in lines]


@pytest.fixture
def shared_pubsub(pubsub_emulator, monkeypatch):
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.host_port)
    return pubsub_emulator


# ---- against the emulator ---------------------------------------------------------------


@pytest.mark.emulator
def test_an_outage_loses_nothing_and_everything_arrives_once_in_seq_order(own_emulator, tmp_path):
    emulator, outbox = own_emulator("pubsub"), tmp_path / "o.sqlite"
    before = create_topic("outage-events", "outage-sub")
    process = start_publisher(tmp_path, emulator.host_port, "outage-events", outbox, "--drain_timeout_s", "20")
    lines = [("+1", "2,1", "-1", "0,2", "+3")[i % 5] for i in range(60)]
    try:
        feed(process, lines[:20])
        before.wait_for(20)

        emulator.stop()
        outage_started = time.monotonic()
        feed(process, lines[20:50], pause_s=0.2)  # counting goes on during the outage
        stack.wait_for(lambda: outbox_state(outbox) == (30, 50), 20, what="30 counts waiting")
        stack.wait_for(
            lambda: "pending 30 (oldest" in log_of(tmp_path), 5, what="a status line showing the 30 waiting counts"
        )

        emulator.start()  # same port, but the emulator forgot the topic: publishes get NotFound
        offset = len(log_of(tmp_path))
        stack.wait_for(
            lambda: "NotFound" in log_of(tmp_path)[offset:],
            20,
            what="a publish refused with NotFound after the restart",
        )
        assert outbox_state(outbox)[0] == 30, "refused publishes stay in the outbox"
        # Topic and subscription must both exist before the next retry, or that retry's
        # messages would be accepted by a topic with no subscription yet: freeze the publisher.
        process.send_signal(signal.SIGSTOP)
        time.sleep(0.5)
        after = create_topic("outage-events", "outage-sub")
        process.send_signal(signal.SIGCONT)
        after.wait_for(30, timeout_s=30)
        outage_s = time.monotonic() - outage_started
        feed(process, lines[50:])
        after.wait_for(40)
        process.stdin.close()
        assert process.wait(timeout=30) == 0, log_of(tmp_path)
    finally:
        kill(process)

    arrived, duplicates = first_arrivals(before, after)
    assert [p["seq"] for p in arrived] == list(range(1, 61)), "each once, in seq order"
    assert [p["delta"] for p in arrived] == deltas_of(lines)
    assert {p["device_id"] for p in arrived} == {"door-t"}
    assert outbox_state(outbox) == (0, 60)
    assert "Stopped: published 60, pending 0, read 60, malformed 0" in log_of(tmp_path)
    print(f"outage: {outage_s:.1f}s until the backlog arrived, 30 counts during it, {duplicates} duplicates")


@pytest.mark.emulator
def test_sigkill_and_restart_lose_nothing_and_continue_the_seq(shared_pubsub, tmp_path):
    name = uuid.uuid4().hex[:8]
    collector = create_topic(f"kill-{name}", f"kill-sub-{name}")
    outbox = tmp_path / "o.sqlite"
    lines = [str(d) for d in (1, 2, -1, 3, 1, -2, 1, 1, 2, -3) * 2]
    first = start_publisher(
        tmp_path, shared_pubsub.host_port, f"kill-{name}", outbox, "--batch_max_latency_s", "2", log_name="first.log"
    )
    try:
        feed(first, lines[:10])
        collector.wait_for(10)
        # Batches wait up to 2 s before they go: these are stored but not yet acknowledged.
        feed(first, lines[10:15])
        stack.wait_for(lambda: outbox_state(outbox)[1] == 15, 20, what="15 counts stored")
        first.kill()
        first.wait(timeout=10)
    finally:
        kill(first)
    pending_at_kill, last_seq = outbox_state(outbox)
    assert last_seq == 15 and pending_at_kill > 0

    second = start_publisher(tmp_path, shared_pubsub.host_port, f"kill-{name}", outbox, log_name="second.log")
    try:
        feed(second, lines[15:])
        second.stdin.close()
        assert second.wait(timeout=30) == 0, log_of(tmp_path, "second.log")
    finally:
        kill(second)
    collector.wait_for(20)
    time.sleep(0.5)
    collector.pull()
    arrived, duplicates = first_arrivals(collector)
    assert [p["seq"] for p in arrived] == list(range(1, 21)), "no seq reused, none skipped"
    assert [p["delta"] for p in arrived] == deltas_of(lines)
    assert outbox_state(outbox) == (0, 20)
    assert "holds %d counts, last seq 15" % pending_at_kill in log_of(tmp_path, "second.log")
    print(
        f"SIGKILL with {pending_at_kill} of 15 counts unacknowledged; after the restart "
        f"20 arrived once each, {duplicates} duplicates"
    )


@pytest.mark.emulator
def test_malformed_lines_are_skipped_and_counted(shared_pubsub, tmp_path):
    name = uuid.uuid4().hex[:8]
    collector = create_topic(f"bad-{name}", f"bad-sub-{name}")
    process = start_publisher(tmp_path, shared_pubsub.host_port, f"bad-{name}", tmp_path / "o.sqlite")
    try:
        feed(process, ["+1", "abc", "1,2,3", "", "# a comment", "+500", "-1", b"\xff\xfe", "2,1"])
        process.stdin.close()
        assert process.wait(timeout=30) == 0
    finally:
        kill(process)
    log = log_of(tmp_path)
    assert "Stopped: published 3, pending 0, read 3, malformed 4" in log
    assert log.count("Skipped malformed input") == 4 and "line 6: |delta| 500 exceeds" in log
    collector.wait_for(3)
    assert [(p["seq"], p["delta"]) for p in first_arrivals(collector)[0]] == [(1, 1), (2, -1), (3, 1)]


@pytest.mark.emulator
def test_heartbeats_fill_silences_and_take_their_seq(shared_pubsub, tmp_path):
    name = uuid.uuid4().hex[:8]
    collector = create_topic(f"hb-{name}", f"hb-sub-{name}")
    process = start_publisher(
        tmp_path, shared_pubsub.host_port, f"hb-{name}", tmp_path / "o.sqlite", "--heartbeat_s", "0.5"
    )
    try:
        feed(process, ["+2"])
        collector.wait_for(4)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        kill(process)
    arrived = first_arrivals(collector)[0]
    assert [(p["seq"], p["delta"]) for p in arrived[:4]] == [(1, 2), (2, 0), (3, 0), (4, 0)]
    gaps = [wire.parse_time(b["event_time"]) - wire.parse_time(a["event_time"]) for a, b in zip(arrived, arrived[1:4])]
    assert all(0.45 * S <= g <= 1.5 * S for g in gaps), gaps


@pytest.mark.emulator
def test_a_missing_topic_at_the_first_publish_is_a_one_line_error(shared_pubsub, tmp_path):
    outbox = tmp_path / "o.sqlite"
    process = start_publisher(tmp_path, shared_pubsub.host_port, "no-such-topic", outbox)
    feed(process, ["+1"])
    try:
        assert process.wait(timeout=30) == 2
    finally:
        kill(process)
    assert log_of(tmp_path).strip().splitlines()[-1] == (
        f"error: topic projects/{PROJECT}/topics/no-such-topic does not exist"
    )
    assert outbox_state(outbox) == (1, 1), "the count stays for a run with the right topic"


# ---- end to end: replay -> publisher -> pipeline -> Firestore ------------------------


class _Heartbeats(threading.Thread):
    """Delta-0 messages from one registered device: the local runner needs traffic to advance."""

    def __init__(self, topic, device):
        super().__init__(daemon=True)
        from google.cloud import pubsub_v1

        self.client, self.topic, self.device = pubsub_v1.PublisherClient(), topic, device
        self.halt = threading.Event()

    def run(self):
        for seq in itertools.count(1):
            payload, attributes = wire.encode_event(self.device, 0, int(time.time() * S), seq)
            payload = KEYS.sign(self.device, payload)
            self.client.publish(self.topic, payload, **attributes).result(timeout=30)
            if self.halt.wait(0.5):
                return

    def stop(self):
        self.halt.set()
        self.join(timeout=10)


def test_replayed_counts_reach_realtime_through_the_pipeline(emulator_env, tmp_path):
    name = uuid.uuid4().hex[:8]
    topic, subscription = f"replay-{name}", f"replay-pipeline-{name}"
    stack.ensure_topic(PROJECT, topic, [subscription])
    client = make_client(PROJECT)
    train, door, beat = f"tr-{name}", f"door-{name}", f"hb-{name}"
    registry.set_train(client, "trains", train, 100)
    for device in (door, beat):
        registry.register_device(client, "devices", device, train)
    KEYS.register(client, "devices", [door, beat])  # the publisher signs with the door's key
    key = KEYS.write_private_key(door, str(tmp_path / "door.pem"))

    # Last year's log: kept as is, these times would be applied as late; --retime moves them to now.
    deltas = [5, 3, -2, -10, 4, 1]
    expected = 0
    for d in deltas:
        expected = max(0, expected + d)  # the pipeline clamps at 0
    start = wire.parse_time("2025-11-24T07:30:00Z")
    log = tmp_path / "door.csv"
    log.write_text(
        "time,delta\n" + "".join(f"{wire.format_time(start + i * S // 2)},{d}\n" for i, d in enumerate(deltas))
    )

    pipeline = stack.start_pipeline(
        PROJECT,
        subscription,
        "--registry_refresh_s=2",
        "--reorder_delay_s=2",
        "--flush_interval_s=1",
        env=emulator_env,
        log_path=str(tmp_path / "pipeline.log"),
    )
    beats = _Heartbeats(stack.topic_path(PROJECT, topic), beat)
    beats.start()
    try:
        realtime = client.collection("realtime").document(train)
        stack.wait_for(
            lambda: pipeline.poll() is not None or realtime.get().exists,
            120,
            what="the pipeline's first realtime write",
        )
        assert pipeline.poll() is None, (tmp_path / "pipeline.log").read_text()[-3000:]

        replayed_at = int(time.time() * S)
        process = start_publisher(
            tmp_path,
            emulator_env["PUBSUB_EMULATOR_HOST"],
            topic,
            tmp_path / "o.sqlite",
            "--source",
            "replay",
            str(log),
            "--retime",
            "--speed",
            "5",
            "--private_key",
            key,
            device=door,
            stdin=subprocess.DEVNULL,
        )
        assert process.wait(timeout=60) == 0, log_of(tmp_path)
        stack.wait_for(
            lambda: (realtime.get().to_dict() or {}).get("devices_seen", {}).get(door, {}).get("seq") == len(deltas),
            60,
            what=f"all {len(deltas)} counts applied",
        )
    finally:
        beats.stop()
        stack.stop_process(pipeline)
    doc = realtime.get().to_dict()
    assert doc["current_value"] == expected == 5
    assert replayed_at <= wire.to_micros(doc["last_updated"]) <= int(time.time() * S), "retimed to now"
    assert "Stopped: published 6, pending 0, read 6, malformed 0" in log_of(tmp_path)
