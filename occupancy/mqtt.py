"""The MQTT side of the system, as IoT Core laid it out (docs/design.md, "Devices over MQTT").

A door device connects to the broker as itself (username = its device id, password = its
own secret) and publishes its signed messages, unchanged, at QoS 1 on
`/devices/{device_id}/events`, the topic IoT Core's bridge used, so migrated firmware
changes its host and credentials only. The broker (mosquitto) lets it publish there and
nowhere else; the bridge (`python -m bridge`) alone reads every device's topic.

No network: the topic layout, the event attributes the bridge derives, the broker's
password and ACL files generated from the registry (`mqtt sync`) and its configuration
(`mqtt config`, and the local broker's: local/broker.py), the secret files a device and the
bridge keep their broker secret in, and how a client reaches the broker (TLS, or plaintext on
loopback only).
"""

import base64
import binascii
import os
import re
import secrets
from typing import Dict, Iterable, NamedTuple, Optional, Tuple

from occupancy import cli, wire

TOPIC_FILTER = "/devices/+/events"
_TOPIC_RE = re.compile(r"^/devices/([^/+#]+)/events$")
# mosquitto 2.0's password file format `$7$`: PBKDF2-HMAC-SHA512, 101 rounds, 12-byte salt
# (what `mosquitto_passwd` writes; tests/test_mqtt.py checks the broker accepts ours).
_HASH_PREFIX, _HASH_ROUNDS, _SALT_BYTES = "$7$", 101, 12
# The bridge's own principal in the registry: it reads every device's topic, publishes none.
BRIDGE = "bridge"
# MQTT 5's PUBACK reason code 0x10, not a failure code: the broker took the message and holds
# it for no one (no bridge session subscribed), so it is dropped. A device keeps such a count.
NO_MATCHING_SUBSCRIBERS = 0x10

# The broker's limits (docs/design.md, "Devices over MQTT"). A packet holds a message within the
# wire format's bound and its own fields (topic, properties): anything larger is refused by the
# broker itself (the client is disconnected), so it never reaches the bridge.
MAX_PACKET_BYTES = wire.MAX_MESSAGE_BYTES + 1024
# Messages and bytes the broker holds for a client that is away (the bridge during a Pub/Sub
# outage), beyond those in flight; mosquitto drops what exceeds either, so they are sized for
# the longest outage to ride out (docs/operations.md): a million counts of about 400 bytes.
MAX_QUEUED_MESSAGES = 1_000_000
MAX_QUEUED_BYTES = 1024**3
# QoS 1 messages the broker sends a client before it waits for PUBACKs. mosquitto 2.0.11 honours
# a client's MQTT 5 Receive Maximum on a new session but not on a resumed one (measured:
# 10 asked, 40 sent after 5 acks), so the bridge's bound is set here too.
MAX_INFLIGHT = 10
# Hosts a client may reach in plaintext: the secret and the counts never leave the machine.
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class BrokerTls(NamedTuple):
    """The broker's TLS listener for devices: its port, its certificate chain and key (PEM)."""

    port: int
    certfile: str
    keyfile: str
    host: str = ""  # the address it listens on ("": every address)


def broker_config(
    password_file: str,
    acl_file: str,
    *,
    port: int = 1883,
    host: str = "127.0.0.1",
    tls: Optional[BrokerTls] = None,
    max_queued_messages: int = MAX_QUEUED_MESSAGES,
    max_queued_bytes: int = MAX_QUEUED_BYTES,
) -> str:
    """The broker's configuration (mosquitto 2.0) for the fleet, in production and locally alike.

    * Every client logs in (no anonymous), with the password and ACL files `mqtt sync` writes.
    * `use_username_as_clientid`: a client's id is its username, so no device can take another
      client's session (the bridge's, with every count queued for it) by claiming its client id.
    * `retain_available false`: a retained message would be sent again to every new session.
    * Packets fit the wire format's bound; queues are bounded in messages and bytes.
    * A plaintext listener on `host` (loopback: the bridge beside the broker) and, with `tls`, the
      devices' TLS listener.
    """
    lines = [
        "# Written by occupancy.mqtt.broker_config (python -m registry mqtt config).",
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {password_file}",
        f"acl_file {acl_file}",
        "retain_available false",
        f"max_packet_size {MAX_PACKET_BYTES}",
        f"max_queued_messages {max_queued_messages}",
        f"max_queued_bytes {max_queued_bytes}",
        f"max_inflight_messages {MAX_INFLIGHT}",
        # A listener's own settings follow it (mosquitto 2.0.11 reads use_username_as_clientid
        # as one: given before any listener, it opens the default one on 1883).
        f"listener {port} {host}".rstrip(),
        "use_username_as_clientid true",
    ]
    if tls is not None:
        lines += [
            f"listener {tls.port} {tls.host}".rstrip(),
            "use_username_as_clientid true",
            f"certfile {tls.certfile}",
            f"keyfile {tls.keyfile}",
            "tls_version tlsv1.2",
        ]
    return "\n".join(lines) + "\n"


def broker_tls(
    broker: str, ca_file: Optional[str], system_cas: bool, insecure: bool, ca_option: str, insecure_option: str
) -> bool:
    """Whether a client (a device, the bridge) reaches `broker` (HOST:PORT) over TLS: with a CA
    file or the system's CAs. Plaintext is refused (cli.UsageError, naming the client's own
    options) to a broker off this machine, which would see the client's secret and signed counts
    go by in clear, unless `insecure` says so."""
    if ca_file and not os.path.isfile(ca_file):
        raise cli.UsageError(f"{ca_option} {ca_file}: not found")
    tls = bool(ca_file or system_cas)
    host = broker.rsplit(":", 1)[0]
    if not (tls or insecure or host.strip("[]") in LOOPBACK):
        raise cli.UsageError(
            f"the broker {host} is not on this machine and the connection is not TLS: the secret and the "
            f"counts would cross the network in clear; give {ca_option} (TLS), or {insecure_option} on purpose"
        )
    return tls


def use_tls(client, ca_file: Optional[str]) -> None:
    """TLS on a paho client, the broker's certificate verified (host name included) against
    `ca_file`, or the system's CAs without one."""
    import ssl

    client.tls_set_context(ssl.create_default_context(cafile=ca_file))


def topic_for(device_id: str) -> str:
    return f"/devices/{device_id}/events"


def device_of_topic(topic: str) -> Optional[str]:
    """The device id in `/devices/{device_id}/events`, or None for any other topic."""
    match = _TOPIC_RE.match(topic)
    return match.group(1) if match and wire.valid_id(match.group(1)) else None


def event_attributes(topic_device: str, payload: bytes) -> Dict[str, str]:
    """The Pub/Sub attributes the bridge can vouch for, never more than the topic proves, each
    bounded and valid whatever the payload (real Pub/Sub refuses a value over 1,024 bytes).

    `device_id` is the device the broker authenticated. `event_id` (`{device_id}:{seq}`) and
    `event_time` are informative, set as the device itself would set them, but only if the
    message names that very device and holds a seq and a time in the wire format's bounds.
    Nothing downstream trusts them: the pipeline reads the signed payload. Never raises.
    """
    attributes = {"device_id": topic_device}
    claimed = _claimed_event(payload)
    if claimed is not None and claimed[0] == topic_device:
        attributes["event_id"] = wire.event_id_for(claimed[0], claimed[1])
        if claimed[2]:
            attributes["event_time"] = claimed[2]
    return attributes


def _claimed_event(payload: bytes) -> Optional[Tuple[str, int, str]]:
    """(device_id, seq, event_time or "") a signed count claims, or None: a light look, bounded."""
    if len(payload) > wire.MAX_MESSAGE_BYTES or not wire.is_envelope(payload):
        return None
    try:
        body = bytes(payload).split(b".")[1]
        obj = wire.load_json(base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4)))
    except (wire.Rejected, ValueError, binascii.Error, IndexError):
        return None
    if not isinstance(obj, dict):
        return None
    device_id, seq, event_time = obj.get("device_id"), obj.get("seq"), obj.get("event_time")
    if not wire.valid_id(device_id) or not isinstance(seq, int) or isinstance(seq, bool):
        return None
    if not 0 <= seq <= wire.MAX_SEQ:
        return None
    try:
        wire.parse_time(event_time)
    except wire.Rejected:
        event_time = ""
    return device_id, seq, event_time


# ---- broker credentials -----------------------------------------------------------------


class SecretFileError(ValueError):
    """A broker secret file that cannot be used (missing, readable by others, empty): one line."""


def write_secret_file(path: str) -> str:
    """A new random secret to `path` (mode 0600, never overwritten); returns it."""
    secret = secrets.token_urlsafe(32)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        f.write(secret + "\n")
    return secret


def read_secret_file(path: str) -> str:
    """The broker secret in `path`. Refused (SecretFileError) when its group or others may read
    it (occupancy.cli.access_of_others)."""
    try:
        mode = cli.access_of_others(path)
        if mode:
            raise SecretFileError(f"{path}: readable by others (mode {oct(mode)}): chmod 600 it")
        with open(path) as f:
            secret = f.read().strip()
    except OSError as e:
        raise SecretFileError(f"{path}: {e.strerror}") from None
    if not secret:
        raise SecretFileError(f"{path}: empty")
    return secret


def password_hash(secret: str, salt: Optional[bytes] = None) -> str:
    """The broker's hash of a device secret (PBKDF2-HMAC-SHA512 from `cryptography`)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

    salt = salt if salt is not None else os.urandom(_SALT_BYTES)
    digest = PBKDF2HMAC(algorithm=hashes.SHA512(), length=64, salt=salt, iterations=_HASH_ROUNDS).derive(
        secret.encode("utf-8")
    )
    return f"{_HASH_PREFIX}{_HASH_ROUNDS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def valid_hash(text) -> bool:
    if not isinstance(text, str) or not text.startswith(_HASH_PREFIX):
        return False
    parts = text.split("$")
    return len(parts) == 5 and parts[2].isdigit() and all(parts[3:])


class BrokerUser(NamedTuple):
    username: str
    password_hash: str
    reads_all: bool = False  # the bridge


def broker_users(documents: Iterable[Tuple[str, dict]]) -> list:
    """Who may connect to the broker, from registry documents (id, data): every enabled door
    device and bridge with a broker secret. Disabled devices and control principals (they
    sign resets, they do not publish over MQTT) are left out, so the broker refuses them."""
    users = []
    for principal, data in documents:
        if not wire.valid_id(principal) or not data.get("enabled", True):
            continue
        secret_hash = data.get("mqtt_password")
        if not valid_hash(secret_hash):
            continue
        role = data.get("role")
        if role == BRIDGE:
            users.append(BrokerUser(principal, secret_hash, reads_all=True))
        elif role in (None, "door") and wire.valid_id(data.get("train_id")):
            users.append(BrokerUser(principal, secret_hash))
    return sorted(users)


def broker_files(users: Iterable[BrokerUser]) -> Tuple[str, str]:
    """(password file, ACL file) text for mosquitto.

    The ACL's `pattern` line gives every authenticated user write access to its own topic
    only (%u: the username, which the broker authenticated); the bridge reads them all."""
    users = list(users)
    passwords = "".join(f"{u.username}:{u.password_hash}\n" for u in users)
    acl = [
        "# Generated by `python -m registry mqtt sync`; edits are overwritten.",
        "# Each device publishes on its own topic only.",
        f"pattern write {topic_for('%u')}",
    ]
    for user in users:
        if user.reads_all:
            acl += [f"user {user.username}", f"topic read {TOPIC_FILTER}"]
    return passwords, "\n".join(acl) + "\n"
