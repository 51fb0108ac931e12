"""`mqtt sync` writes files the broker can read after it drops privileges: Debian's unit starts
mosquitto as root, which then reads the password and ACL files as the user `mosquitto`.

The rewritten files keep the owner, group and mode of those they replace (never readable by
others); `--group` gives them the broker's group. These tests chown files and start mosquitto as
root, as Debian's unit does, so they run as root (`make test` in the dev container).
"""

import grp
import os
import pwd
import shutil
import subprocess
import sys
import tempfile

import pytest

from adapters import registry
from faults.mqtt_client import MqttClient
from local import stack
from local.broker import Broker
from occupancy import mqtt
from registry import mqtt_commands
from registry.__main__ import build_parser, main
from tests.support import REPO_ROOT

USERS = [mqtt.BrokerUser("d1", mqtt.password_hash("s1"))]
PASSWORDS, ACL = mqtt.broker_files(USERS)


def _as_root():
    assert os.geteuid() == 0, "these tests chown files and start mosquitto as root (as Debian's unit does)"


def _owner_and_mode(path) -> tuple:
    info = os.stat(path)
    return info.st_uid, info.st_gid, info.st_mode & 0o7777


def _sync(tmp_path, monkeypatch, *flags):
    """sync_once as the CLI runs it (its parser), on USERS instead of a registry."""
    monkeypatch.setattr(mqtt_commands, "broker_users", lambda client, collection, timeout=None: USERS)
    args = build_parser().parse_args(
        ["mqtt", "sync", "--password_file", str(tmp_path / "passwords"), "--acl_file", str(tmp_path / "acl"), *flags]
    )
    return mqtt_commands.sync_once(None, args)


def test_sync_keeps_the_owner_group_and_mode_of_the_files_it_replaces(tmp_path, monkeypatch):
    _as_root()
    for name, mode in (("passwords", 0o640), ("acl", 0o664)):
        (tmp_path / name).write_text("old\n")
        os.chown(tmp_path / name, 12345, 23456)
        os.chmod(tmp_path / name, mode)
    assert _sync(tmp_path, monkeypatch) == 1
    assert (tmp_path / "passwords").read_text() == PASSWORDS and (tmp_path / "acl").read_text() == ACL
    assert _owner_and_mode(tmp_path / "passwords") == (12345, 23456, 0o640)
    assert _owner_and_mode(tmp_path / "acl") == (12345, 23456, 0o660)  # never readable by others
    assert sorted(os.listdir(tmp_path)) == ["acl", "passwords"]  # no temporary file left
    assert _sync(tmp_path, monkeypatch) is None  # unchanged: not rewritten, no reload


def test_group_gives_the_files_the_brokers_group(tmp_path, monkeypatch, capsys):
    _as_root()
    group = next(g for g in grp.getgrall() if g.gr_gid != os.getegid())
    assert _sync(tmp_path, monkeypatch, "--group", group.gr_name) == 1
    for name in ("passwords", "acl"):
        assert _owner_and_mode(tmp_path / name) == (os.geteuid(), group.gr_gid, 0o640)
    # Files the old sync left (0600, this user's group) are fixed, though their text is the same.
    os.chown(tmp_path / "passwords", -1, os.getegid())
    os.chmod(tmp_path / "passwords", 0o600)
    assert _sync(tmp_path, monkeypatch, "--group", group.gr_name) == 1
    assert _owner_and_mode(tmp_path / "passwords") == (os.geteuid(), group.gr_gid, 0o640)
    # Without --group a new file is 0600.
    os.unlink(tmp_path / "passwords")
    assert _sync(tmp_path, monkeypatch) == 1
    assert _owner_and_mode(tmp_path / "passwords") == (os.geteuid(), os.getegid(), 0o600)

    code = main(["mqtt", "sync", "--password_file", "p", "--acl_file", "a", "--group", "no-such-group"])
    err = capsys.readouterr().err
    assert code == 2 and "argument --group: no group named 'no-such-group'" in err and "Traceback" not in err


# ---- the broker as Debian runs it ----------------------------------------------------------


@pytest.fixture
def debian_broker():
    """A broker (not started) that drops to the user mosquitto, its files laid out as Debian's.
    Not under tmp_path: pytest's directories are closed to other users."""
    _as_root()
    directory = tempfile.mkdtemp(prefix="mosquitto-debian-")
    broker = Broker(directory=directory, user="mosquitto")  # fails, clearly, if there is no such user
    yield broker
    broker.stop()
    shutil.rmtree(directory)


def _login(broker, username: str, secret: str) -> str:
    """The broker's answer to a login ("Success", "Not authorized")."""
    client = MqttClient(broker, username, secret)
    client.close()
    return client.connack.getName()


def _broker_uid(broker) -> int:
    with open(f"/proc/{broker._process.pid}/status") as f:
        return int(next(line for line in f if line.startswith("Uid:")).split()[1])


@pytest.mark.parametrize("files", ["existing root:mosquitto 0640", "new, --group mosquitto"])
def test_debian_broker_runs_on_the_files_sync_writes(files, firestore_client, firestore_emulator, debian_broker):
    broker, mosquitto = debian_broker, grp.getgrnam("mosquitto")
    secrets = {}
    for device in ("d1", "d2"):
        registry.register_device(firestore_client, "devices", device, "t1")
        secrets[device] = mqtt.write_secret_file(os.path.join(broker.directory, f"{device}.secret"))
        mqtt_commands.set_secret(firestore_client, "devices", device, secrets[device])
    sync = ["--password_file", broker.password_file, "--acl_file", broker.acl_file, "--pid_file", broker.pid_file]
    if files.startswith("new"):
        os.unlink(broker.password_file)
        os.unlink(broker.acl_file)
        sync += ["--group", "mosquitto"]

    def run_sync():
        result = subprocess.run(
            [sys.executable, "-m", "registry", "mqtt", "sync", *sync],
            cwd=REPO_ROOT,
            env=dict(os.environ, **firestore_emulator.env()),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr

    def assert_debian_layout():
        for path in (broker.password_file, broker.acl_file):
            assert _owner_and_mode(path) == (0, mosquitto.gr_gid, 0o640), path

    run_sync()
    broker.start()  # "Unable to open pwfile" if the broker's user cannot read it
    assert_debian_layout()
    assert _broker_uid(broker) == pwd.getpwnam("mosquitto").pw_uid  # it dropped privileges
    d1 = MqttClient(broker, "d1", secrets["d1"])
    assert not d1.connack.is_failure
    assert _login(broker, "d1", "wrong-secret") == "Not authorized"

    # Disabled: the second sync rewrites the files and reloads (SIGHUP) the broker, which goes on.
    registry.set_enabled(firestore_client, "devices", "d1", False)
    run_sync()
    assert_debian_layout()
    stack.wait_for(lambda: d1.disconnects, 10, what="the broker dropping d1")
    assert broker.running(), broker.log_tail()
    assert _login(broker, "d1", secrets["d1"]) == "Not authorized"
    assert _login(broker, "d2", secrets["d2"]) == "Success"
    d1.close()
