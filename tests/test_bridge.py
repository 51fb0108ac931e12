"""The MQTT-to-Pub/Sub bridge on a real broker and the Pub/Sub emulator: payloads forwarded
byte for byte, acknowledged to the broker only after Pub/Sub took them, a bounded window,
and nothing lost through kills, a broker restart and a Pub/Sub outage (the bridge_kills
fault scenario, on the real pipeline).
"""

import base64
import json
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import pytest
from google.cloud import pubsub_v1

from bridge import forwarder, health
from device.sender import make_client_factory
from faults.mqtt_client import MqttClient
from faults.proxy import Proxy
from local import stack
from local.stack import PROJECT
from occupancy import mqtt, wire
from tests.support import KEYS

T = 1_800_000_000_000_000


def _pull_all(subscriber, subscription, n, timeout_s=60):
    """Pulls until `n` distinct payloads arrived: copies (at least once, after a reconnect) do not
    count towards `n`."""
    got = []
    deadline = time.monotonic() + timeout_s
    while len({m.data for m in got}) < n and time.monotonic() < deadline:
        response = subscriber.pull(subscription=subscription, max_messages=100, timeout=10)
        if response.received_messages:
            subscriber.acknowledge(subscription=subscription, ack_ids=[m.ack_id for m in response.received_messages])
        got += [m.message for m in response.received_messages]
    return got


@pytest.fixture
def pubsub(pubsub_emulator, monkeypatch):
    """A topic and subscription on the emulator, and a proxy to cut the bridge off from it."""
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.host_port)
    name = uuid.uuid4().hex[:8]
    stack.ensure_topic(PROJECT, f"bridge-{name}", [f"bridge-sub-{name}"])
    proxy = Proxy(pubsub_emulator.host_port).start()
    yield stack.topic_path(PROJECT, f"bridge-{name}"), f"projects/{PROJECT}/subscriptions/bridge-sub-{name}", proxy
    proxy.stop()


def _bridge(broker, topic, publisher_factory, counters, **kwargs):
    """The bridge in this process on `broker` (users d1 and the bridge), connected."""
    broker.set_users(
        [
            mqtt.BrokerUser("bridge", mqtt.password_hash("bridge-secret"), reads_all=True),
            mqtt.BrokerUser("d1", mqtt.password_hash("d1-secret")),
        ]
    )
    bridge = forwarder.Forwarder(
        host="127.0.0.1",
        port=broker.port,
        username="bridge",
        secret="bridge-secret",
        client_id="test-bridge",
        topic=topic,
        publisher_factory=publisher_factory,
        counters=counters,
        max_in_flight=10,
        publish_timeout_s=3,
        max_backoff_s=1,
        **kwargs,
    )
    running = threading.Thread(target=bridge.run, daemon=True)
    running.start()
    stack.wait_for(lambda: counters.connected, 10, what="the bridge connected")
    return bridge, running


def _metrics(port: int) -> dict:
    """GET /metrics read by prometheus-client's parser: sample name -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_bridge_forwards_unchanged_and_acks_only_what_pubsub_took(broker, pubsub, monkeypatch):
    topic, subscription, proxy = pubsub
    counters = health.Counters()
    server = health.serve(counters, 0)
    # The bridge reaches Pub/Sub through the proxy only.
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", proxy.host_port)
    bridge, running = _bridge(broker, topic, make_client_factory(None, 100, 0.01), counters)
    device = MqttClient(broker, "d1", "d1-secret")
    signed = [KEYS.sign("d1", wire.encode_event("d1", 1, T, seq)[0]) for seq in range(1, 51)]
    hostile = [b"\xff\xfe\x00binary", b"", "zähler".encode("latin-1")]

    proxy.cut()
    for payload in signed[:25] + hostile:
        # Success, not "No matching subscribers": the bridge is connected once subscribed.
        assert device.publish(mqtt.topic_for("d1"), payload).getName() == "Success"
    stack.wait_for(lambda: counters.publish_errors > 0, 30, what=f"a failed publish {counters.snapshot()}")
    status = json.loads(_get(server.server_port)[1])
    assert _get(server.server_port)[0] == 503 and status["status"] == "degraded"
    assert counters.forwarded == 0  # nothing acknowledged while Pub/Sub is away
    # What a scraper reads says so too.
    scraped = _metrics(server.server_port)
    assert scraped["occupancy_bridge_healthy"] == 0 and scraped["occupancy_bridge_publish_errors_total"] >= 1
    assert scraped["occupancy_bridge_forwarded_total"] == 0 and scraped["occupancy_bridge_received_total"] >= 1
    time.sleep(2)
    proxy.restore()
    for payload in signed[25:]:
        assert device.publish(mqtt.topic_for("d1"), payload).getName() == "Success"
    subscriber = pubsub_v1.SubscriberClient()
    got = _pull_all(subscriber, subscription, len(signed) + len(hostile))
    by_payload = {}
    for message in got:
        by_payload.setdefault(message.data, dict(message.attributes))
    # Every payload arrived unchanged (copies are allowed: at least once), with what the topic proves.
    assert set(by_payload) == set(signed) | set(hostile)
    for seq, payload in enumerate(signed, 1):
        assert by_payload[payload] == {"device_id": "d1", "event_id": f"d1:{seq}", "event_time": wire.format_time(T)}
    assert by_payload[hostile[0]] == {"device_id": "d1"}
    stack.wait_for(lambda: _get(server.server_port)[0] == 200, 30, what="the bridge healthy again")
    assert counters.max_in_flight_seen <= 10 and counters.reconnects >= 1
    assert counters.forwarded >= len(signed) + len(hostile)
    scraped = _metrics(server.server_port)
    assert scraped["occupancy_bridge_forwarded_total"] >= len(signed) + len(hostile)
    assert (scraped["occupancy_bridge_healthy"], scraped["occupancy_bridge_connected"]) == (1, 1)
    bridge.stop()
    running.join(10)
    server.shutdown()
    server.server_close()  # its listening socket too
    device.close()


class _Subscriptions:
    """Stands in for the paho client in the bridge's callbacks: records what it subscribes to."""

    def __init__(self):
        self.topics = []

    def subscribe(self, topic, qos):
        self.topics.append((topic, qos))


def test_the_bridge_is_connected_only_once_its_subscription_is_granted():
    from paho.mqtt.client import ConnectFlags
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    counters = health.Counters()
    bridge = forwarder.Forwarder(
        host="127.0.0.1",
        port=1,
        username="bridge",
        secret="s",
        client_id="test-bridge",
        topic="projects/p/topics/t",
        publisher_factory=None,
        counters=counters,
    )
    client = bridge._client = _Subscriptions()
    bridge._on_connect(client, None, ConnectFlags(session_present=False), ReasonCode(PacketTypes.CONNACK), None)
    assert client.topics == [(mqtt.TOPIC_FILTER, 1)]
    assert counters.snapshot()["status"] == "degraded" and not counters.connected
    bridge._on_subscribe(client, None, 1, [ReasonCode(PacketTypes.SUBACK, "Granted QoS 1")], None)
    assert counters.snapshot()["status"] == "ok"

    bridge._on_subscribe(client, None, 2, [ReasonCode(PacketTypes.SUBACK, "Not authorized")], None)
    snapshot = counters.snapshot()
    assert snapshot["status"] == "degraded"
    assert "the broker refused the bridge's subscription: Not authorized" in snapshot["last_error"]


def _get(port):
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_bridge_help_and_a_missing_secret_are_clear():
    result = subprocess.run([sys.executable, "-m", "bridge", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--max_in_flight" in result.stdout and "--health_port" in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "--secret_file", "/nonexistent", "--emulator", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stderr.startswith("error:") and "/nonexistent" in result.stderr


def test_the_bridge_and_a_device_refuse_a_secret_others_may_read_and_a_bad_key_file(tmp_path):
    secret = tmp_path / "bridge.secret"
    assert mqtt.write_secret_file(str(secret)) and secret.stat().st_mode & 0o777 == 0o600
    key = tmp_path / "key.json"
    key.write_text('{"type": "service_account"}')
    bridge = [sys.executable, "-m", "bridge", "--secret_file", str(secret), "--project", "p1"]
    publisher = [
        *(sys.executable, "-m", "device.publisher", "--device_id", "d1", "--transport", "mqtt"),
        *("--mqtt_secret_file", str(secret), "--outbox", str(tmp_path / "o.sqlite")),
    ]

    def one_line_error(command):
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        return lines[0]

    assert one_line_error([*bridge, "--credentials", str(key)]).startswith(f"error: bad credentials file {key}: ")
    secret.chmod(0o640)  # whoever reads it can connect as the bridge (or publish as the device)
    for command, flag in ((bridge, "--secret_file"), (publisher, "--mqtt_secret_file")):
        assert one_line_error(command) == f"error: {flag} {secret}: readable by others (mode 0o40): chmod 600 it"
    secret.chmod(0o600)
    secret.write_text("\n")
    assert one_line_error(bridge) == f"error: --secret_file {secret}: empty"


@pytest.mark.emulator
@pytest.mark.timeout(600)
def test_bridge_kills_a_broker_restart_and_a_pubsub_outage_lose_nothing(tmp_path):
    """5 bridge SIGKILLs, a broker restart, Pub/Sub unreachable 20 s; hostile MQTT payloads."""
    out = tmp_path / "results.json"
    completed = subprocess.run(
        [sys.executable, "-m", "faults", "--scenarios", "bridge_kills", f"--output={out}"],
        capture_output=True,
        text=True,
        timeout=590,
    )
    row = json.loads(out.read_text())["scenarios"][0]
    if not row["passed"]:
        print(json.dumps(row, indent=1, sort_keys=True), completed.stderr[-5000:])
    assert row["passed"], row.get("notes") or row.get("error")
    assert (row["lost"], row["double_counted"], row["count_error"]) == (0, 0, 0)
    assert (row["bridge_kills"], row["broker_restarts"], row["pubsub_cut_s"]) == (5, 1, 20)
    assert row["hostile_dead_letters"] == 3 and row["bridge_alive"]


def test_a_nested_payload_does_not_stall_the_bridge(broker, pubsub):
    """A JWS whose payload is "[" * 5000 raised RecursionError in paho's thread: nothing more was
    forwarded while /healthz said ok. It is forwarded (the pipeline dead-letters it), and so is
    everything after it."""
    topic, subscription, _ = pubsub
    counters = health.Counters()
    bridge, running = _bridge(broker, topic, make_client_factory(None, 100, 0.01), counters)
    device = MqttClient(broker, "d1", "d1-secret")
    head = base64.urlsafe_b64encode(json.dumps({"alg": "EdDSA", "kid": "d1/k1"}).encode()).rstrip(b"=")
    bomb = head + b"." + base64.urlsafe_b64encode(b"[" * 5000).rstrip(b"=") + b".c2ln"
    signed = [KEYS.sign("d1", wire.encode_event("d1", 1, T, seq)[0]) for seq in range(1, 6)]
    for payload in [bomb, *signed]:
        assert device.publish(mqtt.topic_for("d1"), payload).getName() == "Success"
    got = _pull_all(pubsub_v1.SubscriberClient(), subscription, 1 + len(signed))
    assert {m.data for m in got} == {bomb, *signed}
    assert next(dict(m.attributes) for m in got if m.data == bomb) == {"device_id": "d1"}
    stack.wait_for(lambda: counters.forwarded >= 6, 10, what="every message acknowledged")
    assert counters.snapshot()["status"] == "ok" and counters.snapshot()["oldest_unacknowledged_s"] == 0
    bridge.stop()
    running.join(10)
    device.close()


class _RefusingPublisher:
    """Stands in for Pub/Sub as it refuses an attribute value over 1,024 bytes (the emulator does
    not check it), with the client's ordering: publishes complete in batches (every 50 ms), a
    refused one pauses its ordering key, and every later publish of that key fails for the pause
    until resume_publish."""

    def __init__(self):
        import threading

        self.published, self._pending, self._paused = [], [], set()
        self._lock = threading.Lock()
        threading.Thread(target=self._batches, daemon=True).start()

    def publish(self, topic, data, ordering_key="", retry=None, timeout=None, **attributes):
        from concurrent.futures import Future

        future = Future()
        with self._lock:
            self._pending.append((future, ordering_key, data, attributes))
        return future

    def resume_publish(self, topic, ordering_key):
        with self._lock:
            self._paused.discard(ordering_key)

    def _batches(self):
        from google.api_core import exceptions as gexc
        from google.cloud.pubsub_v1.publisher.exceptions import PublishToPausedOrderingKeyException

        while True:
            time.sleep(0.05)
            with self._lock:
                batch, self._pending = self._pending, []
                outcomes = []
                for future, key, data, attributes in batch:
                    if key in self._paused:
                        outcomes.append((future, PublishToPausedOrderingKeyException(key)))
                    elif any(len(v.encode()) > 1024 for v in attributes.values()):
                        self._paused.add(key)
                        outcomes.append((future, gexc.InvalidArgument("attribute value too long")))
                    else:
                        self.published.append((data, attributes))
                        outcomes.append((future, None))
            for future, error in outcomes:
                future.set_exception(error) if error else future.set_result("id")

    def stop(self):
        pass


def test_a_message_pubsub_refuses_for_good_is_forwarded_cut_not_redelivered_for_ever(broker, monkeypatch):
    """A message real Pub/Sub refuses (InvalidArgument) made the bridge reconnect, and the broker
    delivered it again first, for ever: every count behind it waited."""
    publisher = _RefusingPublisher()
    counters = health.Counters()
    bridge, running = _bridge(broker, "projects/p/topics/t", lambda: publisher, counters)
    # The bridge's own attributes are bounded; make one too long to meet a refusal as Pub/Sub's.
    monkeypatch.setattr(mqtt, "event_attributes", lambda device, payload: {"device_id": device, "x": "y" * 2000})
    device = MqttClient(broker, "d1", "d1-secret")
    payloads = [KEYS.sign("d1", wire.encode_event("d1", 1, T, seq)[0]) for seq in range(1, 4)]
    for payload in payloads:
        assert device.publish(mqtt.topic_for("d1"), payload).getName() == "Success"
    stack.wait_for(lambda: counters.forwarded >= 3, 15, what=f"all acknowledged {counters.snapshot()}")
    assert [data for data, _ in publisher.published] == payloads  # under the bound: not cut
    assert all(
        a["bridge_refused"].startswith("InvalidArgument") and a["device_id"] == "d1" for _, a in publisher.published
    )
    assert counters.refused_by_pubsub == 3 and counters.reconnects == 0 and counters.unforwardable == 0
    bridge.stop()
    running.join(10)
    device.close()


def test_a_message_not_forwarded_in_time_makes_the_bridge_unhealthy():
    counters = health.Counters(stall_after_s=5)
    counters.connected = True
    assert counters.snapshot()["status"] == "ok"
    counters.oldest_pending = time.monotonic() - 6
    snapshot = counters.snapshot()
    assert snapshot["status"] == "degraded" and snapshot["oldest_unacknowledged_s"] >= 6
