"""The broker as the project configures it (occupancy.mqtt.broker_config, on Debian's mosquitto
2.0.11), and how devices and the bridge reach it: TLS verified against the broker's CA, never
plaintext off the machine by accident; no client taking another's session (the bridge's queue);
no retained messages; no packet past the wire format's bound.

Certificates are made here (a CA and the broker's certificate for 127.0.0.1 and localhost).
"""

import datetime
import ipaddress
import subprocess
import sys
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from faults.mqtt_client import MqttClient
from local import stack
from local.broker import Broker
from occupancy import mqtt, wire
from tests.support import KEYS, REPO_ROOT

T = 1_800_000_000_000_000


def _certificate(subject, issuer_name, public_key, signing_key, ca: bool, names=()):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def _write(path, data: bytes, mode=0o600):
    path.write_bytes(data)
    path.chmod(mode)
    return str(path)


@pytest.fixture
def tls_broker(tmp_path):
    """A broker with the devices' TLS listener (a CA of this test's own) beside the loopback one;
    users d1 and d2 (secrets "s1", "s2") and the bridge ("b"). Yields (broker, CA file, another CA)."""
    ca_key, server_key, other_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _certificate("test CA", "test CA", ca_key.public_key(), ca_key, ca=True)
    other_ca = _certificate("other CA", "other CA", other_key.public_key(), other_key, ca=True)
    names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    server = _certificate("broker", "test CA", server_key.public_key(), ca_key, ca=False, names=names)
    pem = serialization.Encoding.PEM
    certfile = _write(tmp_path / "broker.pem", server.public_bytes(pem))
    keyfile = _write(
        tmp_path / "broker.key",
        server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    broker = Broker(directory=str(tmp_path / "broker"), tls=mqtt.BrokerTls(0, certfile, keyfile)).start()
    broker.set_users(
        [
            mqtt.BrokerUser("d1", mqtt.password_hash("s1")),
            mqtt.BrokerUser("d2", mqtt.password_hash("s2")),
            mqtt.BrokerUser("bridge", mqtt.password_hash("b"), reads_all=True),
        ]
    )
    yield (
        broker,
        _write(tmp_path / "ca.pem", ca.public_bytes(pem), 0o644),
        _write(tmp_path / "other-ca.pem", other_ca.public_bytes(pem), 0o644),
    )
    broker.stop()


def _publisher(tmp_path, broker_address: str, *flags: str, lines: bytes = b"+2\n-1\n"):
    secret = _write(tmp_path / "d1.secret", b"s1\n")
    key = KEYS.write_private_key("d1", str(tmp_path / "d1.pem"))
    return subprocess.run(
        [
            *(sys.executable, "-m", "device.publisher", "--device_id", "d1", "--transport", "mqtt"),
            *("--broker", broker_address, "--mqtt_secret_file", secret, "--private_key", key),
            *("--outbox", str(tmp_path / f"outbox-{time.monotonic_ns()}.sqlite"), "--drain_timeout_s", "10"),
            *flags,
        ],
        input=lines,
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=60,
    )


def test_a_device_sends_over_tls_verified_against_the_brokers_ca(tls_broker, tmp_path):
    """docs/operations.md told devices to use :8883, and the sender had no TLS at all."""
    broker, ca, other_ca = tls_broker
    reader = MqttClient(broker, "bridge", "b")
    assert not reader.subscribe(mqtt.TOPIC_FILTER).is_failure
    tls_address = f"127.0.0.1:{broker.tls.port}"
    sent = _publisher(tmp_path, tls_address, "--mqtt_ca_file", ca)
    assert sent.returncode == 0, sent.stderr
    stack.wait_for(lambda: len(reader.messages) >= 2, 10, what="two counts over TLS")
    assert all(wire.is_envelope(payload) for _, payload in reader.messages)
    # A broker whose certificate this CA did not sign: a configuration error, the counts kept.
    refused = _publisher(tmp_path, tls_address, "--mqtt_ca_file", other_ca)
    assert refused.returncode == 2 and b"certificate does not verify" in refused.stderr, refused.stderr
    reader.close()


def test_plaintext_to_a_broker_off_the_machine_is_refused_unless_said(tmp_path):
    refused = _publisher(tmp_path, "192.0.2.1:1883")  # TEST-NET-1: never reached
    lines = refused.stderr.decode().strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 1 and "--mqtt_ca_file" in lines[0], refused.stderr
    secret = _write(tmp_path / "bridge.secret", b"b\n")
    bridge = subprocess.run(
        [sys.executable, "-m", "bridge", "--broker", "192.0.2.1:1883", "--secret_file", secret, "--project", "p"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PUBSUB_EMULATOR_HOST": "127.0.0.1:1", "PATH": "/usr/bin:/bin"},
    )
    assert bridge.returncode == 2 and "not TLS" in bridge.stderr and "--ca_file" in bridge.stderr, bridge.stderr


def _session(broker, username: str, secret: str, client_id: str, clean_start: bool):
    """A paho client with a session the broker keeps a day; returns (client, received payloads)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    got, connected = [], []
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    client.username_pw_set(username, secret)
    client.on_connect = lambda c, u, f, rc, p: connected.append(rc)
    client.on_message = lambda c, u, m: got.append(m.payload)
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 86400
    client.connect("127.0.0.1", broker.port, clean_start=clean_start, properties=properties)
    client.loop_start()
    stack.wait_for(lambda: connected, 10, what="a CONNACK")
    return client, got


def _close(client):
    client.disconnect()
    client.loop_stop()


def test_no_device_can_take_the_bridges_session(tls_broker):
    """Any device's credentials connecting with the bridge's client id (clean start) wiped the
    bridge's session and every count queued for it (20 acknowledged, 0 delivered)."""
    broker, _, _ = tls_broker
    bridge, _ = _session(broker, "bridge", "b", "occupancy-bridge", clean_start=False)
    bridge.subscribe(mqtt.TOPIC_FILTER, qos=1)
    time.sleep(0.5)
    _close(bridge)
    device = MqttClient(broker, "d1", "s1")
    for seq in range(1, 6):
        payload = KEYS.sign("d1", wire.encode_event("d1", 1, T, seq)[0])
        assert device.publish(mqtt.topic_for("d1"), payload).getName() == "Success"
    device.close()
    thief, _ = _session(broker, "d2", "s2", "occupancy-bridge", clean_start=True)
    _close(thief)
    bridge, got = _session(broker, "bridge", "b", "occupancy-bridge", clean_start=False)
    stack.wait_for(lambda: len(got) >= 5, 10, what=f"the bridge's queued counts ({len(got)} came)")
    _close(bridge)


def test_a_retained_message_and_a_packet_past_the_bound_are_refused_by_the_broker(tls_broker):
    broker, _, _ = tls_broker
    reader = MqttClient(broker, "bridge", "b")
    assert not reader.subscribe(mqtt.TOPIC_FILTER).is_failure
    device = MqttClient(broker, "d1", "s1")
    retained = KEYS.sign("d1", wire.encode_event("d1", 1, T, 1)[0])
    device.client.publish(mqtt.topic_for("d1"), retained, qos=1, retain=True)
    stack.wait_for(lambda: device.disconnects, 10, what="the broker refusing a retained message")
    big = MqttClient(broker, "d1", "s1")
    big.client.publish(mqtt.topic_for("d1"), b"x" * (mqtt.MAX_PACKET_BYTES + 1), qos=1)
    stack.wait_for(lambda: big.disconnects, 10, what="the broker refusing a packet past the bound")
    time.sleep(0.5)
    assert reader.messages == []
    fresh = MqttClient(broker, "bridge", "b", client_id="another")
    assert not fresh.subscribe(mqtt.TOPIC_FILTER).is_failure
    time.sleep(0.5)
    assert fresh.messages == []  # nothing retained for a new session
    for client in (reader, device, big, fresh):
        client.close()


def test_the_production_configuration_is_one_command_away_and_needs_no_registry(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "registry", "mqtt", "config", "--certfile", "/c.pem", "--keyfile", "/k.pem"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},  # no project, no credentials, no emulator
    )
    assert done.returncode == 0, done.stderr
    tls = mqtt.BrokerTls(8883, "/c.pem", "/k.pem")
    assert done.stdout == mqtt.broker_config(
        "/etc/mosquitto/occupancy.passwords", "/etc/mosquitto/occupancy.acl", tls=tls
    )
    for line in ("use_username_as_clientid true", "retain_available false", "listener 8883", "allow_anonymous false"):
        assert line in done.stdout.splitlines()
