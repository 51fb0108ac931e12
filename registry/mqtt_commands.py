"""The registry CLI's broker commands (python -m registry mqtt ...): a credential per
device at the MQTT broker, and the broker's password and ACL files kept in step with the
registry (docs/operations.md, "MQTT devices").

  mqtt secret DEVICE_ID --secret_file PATH     run on the device: make its broker secret
  mqtt bridge BRIDGE_ID --secret_file PATH     register the bridge, which reads every device
  mqtt sync --password_file P --acl_file A [--group G] [--every S] [--pid_file F]

The registry keeps only the secret's hash (what mosquitto checks), never the secret: a
reader of Firestore cannot connect as a device. A disabled device is left out of the
files, and `sync` reloads the broker (SIGHUP), which drops the device's connection: it is
locked out within `--every` seconds plus the reload.
"""

import argparse
import contextlib
import grp
import logging
import os
import signal
import stat
import tempfile
import threading
from typing import Optional

from adapters.registry import check_id, rpc_options
from occupancy import mqtt
from occupancy.cli import UsageError
from occupancy.registry_entries import RegistryConflict, RegistryError, UnknownDevice

_LOGGER = logging.getLogger("registry")


def set_secret(client, collection: str, device_id: str, secret: str, *, timeout=None) -> None:
    """Stores the hash of a registered door device's broker secret (replacing the old one)."""
    from google.cloud import firestore

    check_id("device id", device_id)
    ref = client.collection(collection).document(device_id)
    snap = ref.get(**rpc_options(timeout))
    if not snap.exists:
        raise UnknownDevice(f"{device_id} is not registered; register it first")
    if (snap.to_dict() or {}).get("role") not in (None, "door"):
        raise RegistryConflict(f"{device_id} is not a door device")
    ref.update(
        {"mqtt_password": mqtt.password_hash(secret), "updated_at": firestore.SERVER_TIMESTAMP},
        option=client.write_option(last_update_time=snap.update_time),
        **rpc_options(timeout),
    )


def register_bridge(client, collection: str, bridge_id: str, secret: str, *, timeout=None) -> None:
    from google.cloud import firestore

    check_id("bridge id", bridge_id)
    ref = client.collection(collection).document(bridge_id)
    existing = ref.get(**rpc_options(timeout))
    if existing.exists and (existing.to_dict() or {}).get("role") != mqtt.BRIDGE:
        raise RegistryConflict(f"{bridge_id} is registered, and not as a bridge")
    data = {
        "role": mqtt.BRIDGE,
        "enabled": True,
        "mqtt_password": mqtt.password_hash(secret),
        "updated_at": firestore.SERVER_TIMESTAMP,
    }
    if not existing.exists:
        data["registered_at"] = firestore.SERVER_TIMESTAMP
    ref.set(data, merge=True, **rpc_options(timeout))


def broker_users(client, collection: str, *, timeout=None) -> list:
    fields = ["enabled", "role", "train_id", "mqtt_password"]
    return mqtt.broker_users(
        (doc.id, doc.to_dict() or {})
        for doc in client.collection(collection).select(fields).stream(**rpc_options(timeout))
    )


def group_id(name: str) -> int:
    """--group: the gid of a group name (the broker's, e.g. mosquitto)."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise argparse.ArgumentTypeError(f"no group named {name!r} on this host") from None


def write_broker_file(path: str, text: str, gid: Optional[int] = None) -> bool:
    """Replaces `path` atomically (a temporary file beside it, then os.replace) if its text
    differs, or its group is not `gid`. The broker drops to its own user before it reads the
    file, so the new file keeps the owner, group and mode of the one it replaces; `gid`
    makes the group that one, with read access. A new file is this process's user's, 0600
    (0640 with `gid`). Never readable by others: the hashes are still worth guarding.
    Returns whether it was written; an OSError (e.g. not root and the owner cannot be kept)
    leaves the old file as it was."""
    try:
        with open(path) as f:
            old, same = os.fstat(f.fileno()), f.read() == text
    except FileNotFoundError:
        old, same = None, False
    owner = old.st_uid if old else -1  # -1: fchown leaves it as it is (this process's user)
    mode = ((stat.S_IMODE(old.st_mode) if old else 0o600) | (0o040 if gid is not None else 0)) & 0o770
    gid = gid if gid is not None else (old.st_gid if old else -1)
    if same and (old.st_gid, stat.S_IMODE(old.st_mode)) == (gid, mode):
        return False
    fd, temporary = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(fd, "w") as f:
            os.fchown(fd, owner, gid)
            os.fchmod(fd, mode)
            f.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return True


def sync_once(client, args) -> Optional[int]:
    """Writes the broker's files from the registry; reloads the broker if they changed.
    Returns the number of users when the files changed, else None."""
    users = broker_users(client, args.devices_collection, timeout=args.timeout)
    passwords, acl = mqtt.broker_files(users)
    group = getattr(args, "group", None)  # callers' own namespaces (local/, bench/, faults/) have none
    changed = False
    for path, text in ((args.acl_file, acl), (args.password_file, passwords)):
        try:
            changed = write_broker_file(path, text, group) or changed
        except OSError as e:
            raise RegistryError(
                f"cannot write {path}: {e.strerror}. Run sync as root, or as the owner of the broker's "
                f"files in the broker's group, in a directory it can write (docs/operations.md, MQTT devices)"
            ) from None
    if changed and args.pid_file:
        _reload(args.pid_file)
    return len(users) if changed else None


def _reload(pid_file: str) -> None:
    try:
        with open(pid_file) as f:
            pid = int(f.read().strip())
        os.kill(pid, signal.SIGHUP)  # mosquitto re-reads both files and re-checks its clients
    except (OSError, ValueError) as e:
        _LOGGER.warning("Could not reload the broker from %s: %s", pid_file, e)


# ---- commands ----------------------------------------------------------------------------


def cmd_secret(client, args, out) -> None:
    secret = mqtt.write_secret_file(args.secret_file)
    try:
        set_secret(client, args.devices_collection, args.device_id, secret, timeout=args.timeout)
    except BaseException:
        os.unlink(args.secret_file)  # not registered: no orphan secret left on the device
        raise
    print(
        f"broker secret for {args.device_id} written to {args.secret_file} (mode 0600); it works at "
        f"the broker after the next 'mqtt sync'",
        file=out,
    )


def cmd_bridge(client, args, out) -> None:
    secret = (
        mqtt.read_secret_file(args.secret_file)
        if os.path.exists(args.secret_file)
        else mqtt.write_secret_file(args.secret_file)
    )
    register_bridge(client, args.devices_collection, args.bridge_id, secret, timeout=args.timeout)
    print(f"bridge {args.bridge_id} registered; its secret is in {args.secret_file}", file=out)


def cmd_sync(client, args, out) -> None:
    if not args.every:
        users = sync_once(client, args)
        print(f"broker files written: {users} users" if users is not None else "broker files unchanged", file=out)
        return
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    sync_forever(client, args, stop, args.every)


def cmd_config(_client, args, out) -> None:
    tls = mqtt.BrokerTls(args.tls_port, args.certfile, args.keyfile) if args.certfile else None
    if bool(args.certfile) != bool(args.keyfile):
        raise UsageError("--certfile and --keyfile go together (the devices' TLS listener)")
    out.write(
        mqtt.broker_config(
            args.password_file,
            args.acl_file,
            tls=tls,
            max_queued_messages=args.max_queued_messages,
            max_queued_bytes=args.max_queued_bytes,
        )
    )


def add_commands(commands, command) -> None:
    from occupancy.cli import non_negative_float

    group = commands.add_parser(
        "mqtt", help="Broker credentials for MQTT devices.", description="A credential per device at the MQTT broker."
    )
    sub = group.add_subparsers(dest="mqtt_command", required=True, metavar="COMMAND")
    secret = command(
        sub, "secret", cmd_secret, "Run on the device: make its broker secret (mode 0600) and register its hash."
    )
    secret.add_argument("device_id", metavar="DEVICE_ID")
    secret.add_argument(
        "--secret_file", required=True, metavar="PATH", help="Where the secret goes (never overwritten)."
    )
    bridge = command(sub, "bridge", cmd_bridge, "Register the bridge's broker credential.")
    bridge.add_argument("bridge_id", metavar="BRIDGE_ID")
    bridge.add_argument("--secret_file", required=True, metavar="PATH", help="The bridge's secret (made if missing).")
    sync = command(sub, "sync", cmd_sync, "Write the broker's password and ACL files from the registry.")
    sync.add_argument(
        "--password_file",
        required=True,
        metavar="PATH",
        help="The broker's password_file (an existing one keeps its owner, group and mode).",
    )
    sync.add_argument(
        "--acl_file",
        required=True,
        metavar="PATH",
        help="The broker's acl_file (an existing one keeps its owner, group and mode).",
    )
    sync.add_argument(
        "--group",
        type=group_id,
        default=None,
        metavar="NAME",
        help="Give both files this group (the broker's, e.g. mosquitto) with read access: 0640 for a new file. "
        "Default: an existing file keeps its owner, group and mode; a new one is 0600.",
    )
    sync.add_argument("--pid_file", metavar="PATH", help="The broker's pid file: reload it when the files change.")
    config = command(
        sub,
        "config",
        cmd_config,
        "Print the broker's configuration (mosquitto 2.0) for the fleet.",
        "Print the broker's configuration: no anonymous clients, the files 'mqtt sync' writes, a "
        "client's id its username (no device takes the bridge's session), no retained messages, "
        "packets and queues bounded, plaintext on loopback for the bridge and, with --certfile and "
        "--keyfile, the devices' TLS listener. Needs no registry access.",
    )
    config.set_defaults(needs_registry=False)
    config.add_argument("--password_file", default="/etc/mosquitto/occupancy.passwords", metavar="PATH")
    config.add_argument("--acl_file", default="/etc/mosquitto/occupancy.acl", metavar="PATH")
    config.add_argument("--certfile", metavar="PEM", help="The broker's certificate chain, for its public name.")
    config.add_argument("--keyfile", metavar="PEM", help="Its private key.")
    config.add_argument("--tls_port", type=int, default=8883, metavar="PORT", help="The devices' TLS listener.")
    config.add_argument(
        "--max_queued_messages",
        type=int,
        default=mqtt.MAX_QUEUED_MESSAGES,
        metavar="N",
        help="Messages held for the bridge while it is away: the fleet's messages a second times the "
        "longest Pub/Sub outage to ride out.",
    )
    config.add_argument(
        "--max_queued_bytes", type=int, default=mqtt.MAX_QUEUED_BYTES, metavar="N", help="The same, in bytes."
    )
    sync.add_argument(
        "--every",
        type=non_negative_float,
        default=0.0,
        metavar="S",
        help="Keep syncing every S seconds (0: once). A disabled device is locked out within S seconds.",
    )


def sync_forever(client, args, stop: threading.Event, every_s: float) -> None:
    """Syncs every `every_s` seconds until `stop` is set; a failed sync keeps the last good files."""
    while not stop.is_set():
        try:
            users = sync_once(client, args)
            if users is not None:
                _LOGGER.info("Broker files written: %s users", users)
        except Exception as e:  # noqa: BLE001 - the broker keeps its last files; tried again
            _LOGGER.warning("mqtt sync failed, the broker keeps its last files: %s", e)
        stop.wait(every_s)
