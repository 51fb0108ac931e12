"""`python -m device.publisher` as a subprocess against the real Pub/Sub emulator (no mocks):
an outage (the emulator stopped and started again on the same port, losing its topics), a
SIGKILL and restart, malformed input, a missing topic, SIGTERM while Pub/Sub is unreachable,
heartbeats, and end to end through the pipeline to Firestore.

What arrived is read back with subscriptions and de-duplicated by the `event_id` attribute,
as the pipeline does."""

import itertools
import signal
import subprocess
import threading
import time
import uuid

import pytest

from adapters import registry
from adapters.store import make_client
from local import stack
from local.emulators import free_port
from local.stack import PROJECT
from occupancy import wire
from tests.publisher_process import (
    create_topic,
    deltas_of,
    feed,
    first_arrivals,
    kill,
    log_of,
    outbox_state,
    start_publisher,
)
from tests.support import KEYS

S = 1_000_000


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


@pytest.fixture
def shared_pubsub(pubsub_emulator, monkeypatch):
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.host_port)
    return pubsub_emulator


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
            lambda: "pending 30 (oldest" in log_of(tmp_path), 15, what="a status line showing the 30 waiting counts"
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
        time.sleep(2)  # a publish already on the wire reaches the emulator before the topic is made
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
        tmp_path, shared_pubsub.host_port, f"kill-{name}", outbox, "--batch_max_latency_s", "5", log_name="first.log"
    )
    try:
        feed(first, lines[:10])
        collector.wait_for(10)
        # Batches wait up to 5 s before they go: these are stored but not yet acknowledged.
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
    assert all(0.45 * S <= g <= 2.5 * S for g in gaps), gaps  # every 0.5 s, a loaded machine's pause allowed


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
