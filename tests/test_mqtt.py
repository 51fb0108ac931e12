"""Devices over MQTT, at the broker: a credential per device made by the registry CLI, and the
broker (Debian's mosquitto, a real one per test) letting each device publish on its own topic
only, refusing a wrong secret, and locking a disabled device out at the next sync.
"""

import base64
import json
import os
import subprocess
import sys

from adapters import registry
from faults.mqtt_client import MqttClient
from local import stack
from occupancy import mqtt, wire
from tests.support import KEYS, REPO_ROOT

T = 1_800_000_000_000_000


def test_the_bridge_vouches_only_for_what_the_topic_proves():
    own = KEYS.sign("d1", wire.encode_event("d1", 2, T, 7)[0])
    assert mqtt.event_attributes("d1", own) == {
        "device_id": "d1",
        "event_id": "d1:7",
        "event_time": wire.format_time(T),
    }
    # d2 sends a message that names d1 (a replay, or an attempt to make Dataflow drop d1's
    # count 7 as a duplicate): no event_id is derived from it.
    assert mqtt.event_attributes("d2", own) == {"device_id": "d2"}
    for hostile in (b"\xff\xfe" * 50, b"not.an.envelope!", b"", b"a.b.c", b"{}"):
        assert mqtt.event_attributes("d1", hostile) == {"device_id": "d1"}
    body = base64.urlsafe_b64encode(json.dumps({"device_id": "d1", "seq": True}).encode()).rstrip(b"=")
    assert mqtt.event_attributes("d1", b"eyJhbGciOiJFZERTQSJ9." + body + b".c2ln") == {"device_id": "d1"}


def test_topics_name_a_valid_device_or_none():
    assert mqtt.device_of_topic(mqtt.topic_for("ic1832-car3-door2")) == "ic1832-car3-door2"
    for topic in (
        "/devices/a/b/events",
        "devices/d1/events",
        "/devices//events",
        "/devices/d1/state",
        "/devices/" + "x" * 200 + "/events",
    ):
        assert mqtt.device_of_topic(topic) is None


def test_broker_users_are_the_enabled_doors_and_bridges_with_a_secret():
    secret_hash = mqtt.password_hash("s")
    documents = [
        ("d1", {"train_id": "t1", "mqtt_password": secret_hash}),
        ("d2", {"train_id": "t1", "mqtt_password": secret_hash, "enabled": False}),
        ("d3", {"train_id": "t1"}),
        ("ops", {"role": "control", "trains": ["*"], "mqtt_password": secret_hash}),
        ("bridge", {"role": "bridge", "mqtt_password": secret_hash}),
        ("d4", {"train_id": "t1", "mqtt_password": "plain-text"}),
    ]
    assert [(u.username, u.reads_all) for u in mqtt.broker_users(documents)] == [("bridge", True), ("d1", False)]
    passwords, acl = mqtt.broker_files(mqtt.broker_users(documents))
    assert passwords.splitlines() == [f"bridge:{secret_hash}", f"d1:{secret_hash}"]
    assert "pattern write /devices/%u/events" in acl and "topic read /devices/+/events" in acl


def _cli(*args, env):
    return subprocess.run(
        [sys.executable, "-m", "registry", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_each_device_publishes_as_itself_on_its_own_topic_only(firestore_client, firestore_emulator, broker, tmp_path):
    env = dict(os.environ, **firestore_emulator.env())
    for device in ("d1", "d2"):
        registry.register_device(firestore_client, "devices", device, "t1")
    secrets = {}
    for device in ("d1", "d2"):
        path = tmp_path / f"{device}.secret"
        result = _cli("mqtt", "secret", device, "--secret_file", str(path), env=env)
        assert result.returncode == 0, result.stderr
        assert os.stat(path).st_mode & 0o777 == 0o600
        secrets[device] = path.read_text().strip()
    # The registry holds the hash only.
    stored = firestore_client.collection("devices").document("d1").get().to_dict()["mqtt_password"]
    assert secrets["d1"] not in stored and stored.startswith("$7$")
    refused = _cli("mqtt", "secret", "nobody", "--secret_file", str(tmp_path / "x"), env=env)
    assert refused.returncode == 2 and "not registered" in refused.stderr and not (tmp_path / "x").exists()
    bridge_secret = tmp_path / "bridge.secret"
    assert _cli("mqtt", "bridge", "bridge", "--secret_file", str(bridge_secret), env=env).returncode == 0
    sync = (
        "mqtt",
        "sync",
        "--password_file",
        broker.password_file,
        "--acl_file",
        broker.acl_file,
        "--pid_file",
        broker.pid_file,
    )
    reloads = broker.reloads()
    result = _cli(*sync, env=env)
    assert result.returncode == 0 and "3 users" in result.stdout, result.stderr
    broker.wait_reloaded(reloads)  # the sync's SIGHUP, read by the broker

    reader = MqttClient(broker, "bridge", bridge_secret.read_text().strip())
    assert not reader.connack.is_failure
    assert not reader.subscribe(mqtt.TOPIC_FILTER).is_failure
    d1 = MqttClient(broker, "d1", secrets["d1"])
    assert not d1.connack.is_failure
    assert d1.publish(mqtt.topic_for("d1"), b"own").getName() == "Success"  # not "No matching subscribers"
    assert d1.publish(mqtt.topic_for("d2"), b"forged").getName() == "Not authorized"
    assert d1.publish("/devices/d1/state", b"elsewhere").getName() == "Not authorized"
    stack.wait_for(lambda: reader.messages, 10, what="the bridge's copy")
    assert reader.messages == [(mqtt.topic_for("d1"), b"own")]

    assert MqttClient(broker, "d2", "wrong-secret").connack.getName() == "Not authorized"
    assert MqttClient(broker, "d2", secrets["d1"]).connack.getName() == "Not authorized"
    assert MqttClient(broker, "nobody", secrets["d1"]).connack.getName() == "Not authorized"

    # Disabled: out of the files at the next sync, and its open connection is dropped.
    registry.set_enabled(firestore_client, "devices", "d1", False)
    assert _cli(*sync, env=env).returncode == 0
    stack.wait_for(lambda: d1.disconnects, 10, what="the broker dropping d1")
    assert MqttClient(broker, "d1", secrets["d1"]).connack.getName() == "Not authorized"
    assert not MqttClient(broker, "d2", secrets["d2"]).connack.is_failure
    unchanged = _cli(*sync, env=env)
    assert unchanged.returncode == 0 and "unchanged" in unchanged.stdout
    reader.close()


def _publish_over_mqtt(broker, tmp_path, secret: str, lines: bytes, drain_timeout_s: int = 10):
    secret_file = tmp_path / "d1.secret"
    secret_file.write_text(secret)
    secret_file.chmod(0o600)
    key = KEYS.write_private_key("d1", str(tmp_path / "d1.pem"))
    outbox = tmp_path / "outbox.sqlite"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "device.publisher",
            "--device_id",
            "d1",
            "--transport",
            "mqtt",
            "--broker",
            broker.host_port,
            "--mqtt_secret_file",
            str(secret_file),
            "--private_key",
            key,
            "--outbox",
            str(outbox),
            "--drain_timeout_s",
            str(drain_timeout_s),
        ],
        input=lines,
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=60,
    )
    from device.outbox import Outbox

    return result, Outbox.peek(str(outbox))


def test_the_publisher_sends_over_mqtt_and_keeps_what_the_broker_refused(broker, tmp_path):
    users = [
        mqtt.BrokerUser("d1", mqtt.password_hash("right")),
        mqtt.BrokerUser("bridge", mqtt.password_hash("b"), True),
    ]
    broker.set_users(users)
    reader = MqttClient(broker, "bridge", "b")
    assert not reader.subscribe(mqtt.TOPIC_FILTER).is_failure

    result, (pending, last_seq) = _publish_over_mqtt(broker, tmp_path, "wrong", b"+2\n-1\n")
    assert result.returncode == 2, result.stderr
    assert b"error: the broker refused the connection: Not authorized" in result.stderr
    assert (pending, last_seq) == (2, 2)  # both counts kept for the next start

    result, (pending, last_seq) = _publish_over_mqtt(broker, tmp_path, "right", b"+3\n")
    assert result.returncode == 0, result.stderr
    assert (pending, last_seq) == (0, 3)
    stack.wait_for(lambda: len(reader.messages) >= 3, 10, what="the three counts at the broker")
    from occupancy import identity

    seqs = [json.loads(identity.open_envelope(payload)[1])["seq"] for _, payload in reader.messages]
    assert seqs == [1, 2, 3] and {topic for topic, _ in reader.messages} == {mqtt.topic_for("d1")}
    reader.close()


def test_a_count_no_bridge_is_subscribed_for_stays_in_the_outbox(broker, tmp_path):
    """Before any bridge has subscribed (or after its session expired), mosquitto takes a count
    and answers "No matching subscribers": it is dropped there, so the device keeps it."""
    users = [
        mqtt.BrokerUser("d1", mqtt.password_hash("right")),
        mqtt.BrokerUser("bridge", mqtt.password_hash("b"), True),
    ]
    broker.set_users(users)
    result, (pending, last_seq) = _publish_over_mqtt(broker, tmp_path, "right", b"+2\n-1\n", drain_timeout_s=2)
    assert result.returncode == 1, result.stderr  # not drained, not a configuration error
    assert b"no subscriber for /devices/d1/events" in result.stderr
    assert (pending, last_seq) == (2, 2)

    reader = MqttClient(broker, "bridge", "b")
    assert not reader.subscribe(mqtt.TOPIC_FILTER).is_failure
    result, (pending, last_seq) = _publish_over_mqtt(broker, tmp_path, "right", b"")
    assert result.returncode == 0, result.stderr
    assert (pending, last_seq) == (0, 2)
    stack.wait_for(lambda: len(reader.messages) >= 2, 10, what="the two kept counts at the broker")
    from occupancy import identity

    assert [json.loads(identity.open_envelope(payload)[1])["seq"] for _, payload in reader.messages] == [1, 2]
    reader.close()
