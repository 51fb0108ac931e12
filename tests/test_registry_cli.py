"""The registry CLI (`python -m registry`) against the real Firestore emulator: the
device commands (register, assign, enable, disable), ids, usage errors, an unreachable Firestore.

Most tests call `registry.__main__.main([...])` in-process and read stdout/stderr
with capsys; `test_entry_point_as_subprocess` runs the module as a real process. After each
write the Firestore documents are read directly. The train commands and the fleet import:
tests/test_registry_cli_trains.py; `list` and `health`: tests/test_registry_cli_list.py.
"""

import datetime
import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

from adapters import registry
from local.emulators import free_port
from occupancy.wire import to_micros
from registry import __main__ as cli
from tests.registry_cli_support import (
    assert_usage_error,
    device_doc,
    is_timestamp,
    run,
    train_doc,
)

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_register_writes_the_device_document(firestore_client, capsys):
    before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)
    code, out, err = run(capsys, "register", "ic1832-car3-door2", "--train", "ic1832", "--door", "2")
    assert (code, err) == (0, "")
    assert "registered device ic1832-car3-door2 to train ic1832, door 2" in out
    doc = device_doc(firestore_client, "ic1832-car3-door2")
    assert doc["train_id"] == "ic1832"
    assert doc["enabled"] is True
    assert doc["door"] == "2"
    assert is_timestamp(doc["updated_at"]) and doc["updated_at"] > before
    assert is_timestamp(doc["registered_at"]) and doc["registered_at"] > before


def test_register_without_door_stores_null_and_the_pipeline_sees_it(firestore_client, capsys):
    assert run(capsys, "register", "d1", "--train", "t1")[0] == 0
    doc = device_doc(firestore_client, "d1")
    assert "door" in doc and doc["door"] is None
    snapshot = registry.load_snapshot(firestore_client, "devices", "trains")
    entry = snapshot.devices["d1"]
    assert (entry.train_id, entry.enabled, entry.door) == ("t1", True, None)
    assert entry.registered_us == to_micros(doc["registered_at"])


def test_register_to_another_train_is_refused(firestore_client, capsys):
    assert run(capsys, "register", "d1", "--train", "t1", "--door", "1")[0] == 0
    before = firestore_client.collection("devices").document("d1").get()
    code, out, err = run(capsys, "register", "d1", "--train", "t2")
    assert_usage_error(code, out, err, "d1", "t1", "assign")
    after = firestore_client.collection("devices").document("d1").get()
    assert after.to_dict() == before.to_dict()
    assert after.update_time == before.update_time


def test_register_again_only_when_told_and_never_enabling_a_disabled_device(firestore_client, capsys):
    assert run(capsys, "register", "d1", "--train", "t1", "--door", "1")[0] == 0
    assert run(capsys, "disable", "d1")[0] == 0
    first = device_doc(firestore_client, "d1")
    assert first["enabled"] is False
    # By accident: refused, and nothing changed (it re-enabled a disabled, perhaps stolen, device).
    code, out, err = run(capsys, "register", "d1", "--train", "t1", "--door", "4")
    assert_usage_error(code, out, err, "already registered", "--again")
    assert device_doc(firestore_client, "d1") == first
    time.sleep(0.01)
    code, out, err = run(capsys, "register", "d1", "--train", "t1", "--door", "4", "--again")
    assert (code, err) == (0, "") and "still disabled" in out
    again = device_doc(firestore_client, "d1")
    assert again["registered_at"] > first["registered_at"] and again["assigned_at"] == again["registered_at"]
    assert again["updated_at"] > first["updated_at"]
    assert (again["train_id"], again["enabled"], again["door"]) == ("t1", False, "4")


def test_register_help_says_that_registering_again_resets_seq(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["register", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "registered_at" in text and "forget the device's old seq" in text and "--again" in text
    assert "use 'assign'" in text


def test_assign_moves_the_device_and_keeps_registered_at(firestore_client, capsys):
    assert run(capsys, "register", "d1", "--train", "t1", "--door", "3")[0] == 0
    first = device_doc(firestore_client, "d1")
    time.sleep(0.01)
    code, out, err = run(capsys, "assign", "d1", "t2")
    assert (code, err) == (0, "")
    assert "assigned device d1 to train t2" in out
    moved = device_doc(firestore_client, "d1")
    assert moved["train_id"] == "t2"
    assert moved["registered_at"] == first["registered_at"]
    assert moved["updated_at"] > first["updated_at"]
    assert (moved["enabled"], moved["door"]) == (True, "3")


def test_disable_and_enable_flip_enabled(firestore_client, capsys):
    assert run(capsys, "register", "d1", "--train", "t1")[0] == 0
    registered = device_doc(firestore_client, "d1")
    time.sleep(0.01)
    code, out, err = run(capsys, "disable", "d1")
    assert (code, out, err) == (0, "disabled device d1\n", "")
    disabled = device_doc(firestore_client, "d1")
    assert disabled["enabled"] is False
    assert disabled["updated_at"] > registered["updated_at"]
    assert disabled["registered_at"] == registered["registered_at"]
    assert registry.load_snapshot(firestore_client, "devices", "trains").devices["d1"].enabled is False
    time.sleep(0.01)
    code, out, err = run(capsys, "enable", "d1")
    assert (code, out, err) == (0, "enabled device d1\n", "")
    enabled = device_doc(firestore_client, "d1")
    assert enabled["enabled"] is True
    assert enabled["updated_at"] > disabled["updated_at"]


@pytest.mark.parametrize("argv", [["assign", "ghost", "t1"], ["enable", "ghost"], ["disable", "ghost"]])
def test_changing_an_unknown_device_is_an_error(firestore_client, capsys, argv):
    code, out, err = run(capsys, *argv)
    assert_usage_error(code, out, err, "ghost", "not registered")
    assert device_doc(firestore_client, "ghost") is None


@pytest.mark.parametrize(
    "argv, bad",
    [
        (["register", "car3/door2", "--train", "t1"], "car3/door2"),
        (["register", "d1", "--train", "trains/t1"], "trains/t1"),
        (["register", "d 1", "--train", "t1"], "d 1"),
        (["register", "_d1", "--train", "t1"], "_d1"),
        (["register", "", "--train", "t1"], "''"),
        (["register", "d" * 129, "--train", "t1"], "d" * 129),
        (["assign", "a/b", "t1"], "a/b"),
        (["assign", "d1", "t/1"], "t/1"),
        (["enable", "a/b"], "a/b"),
        (["disable", "a/b"], "a/b"),
        (["list", "--train", "x/y"], "x/y"),
        (["train", "set", "ic/1", "--capacity", "10"], "ic/1"),
    ],
)
def test_invalid_ids_are_refused(firestore_client, capsys, argv, bad):
    code, out, err = run(capsys, *argv)
    assert_usage_error(code, out, err, "invalid", bad, "must match")
    assert list(firestore_client.collection("devices").stream()) == []
    assert list(firestore_client.collection("trains").stream()) == []


def test_an_id_of_128_characters_is_accepted(firestore_client, capsys):
    long_id = "d" * 128
    assert run(capsys, "register", long_id, "--train", "t1")[0] == 0
    assert device_doc(firestore_client, long_id)["train_id"] == "t1"


@pytest.mark.parametrize("capacity", ["0", "-5"])
def test_a_capacity_that_is_not_positive_is_refused(firestore_client, capsys, capacity):
    code, out, err = run(capsys, "train", "set", "ic1", "--capacity", capacity)
    assert_usage_error(code, out, err, "capacity must be a positive integer", capacity)
    assert train_doc(firestore_client, "ic1") is None


@pytest.mark.parametrize(
    "argv, fragment",
    [
        ([], "required: COMMAND"),
        (["register", "d1"], "required: --train"),
        (["train", "set", "ic1"], "required: --capacity"),
        (["train", "set", "ic1", "--capacity", "many"], "invalid int value"),
        (["frobnicate"], "invalid choice"),
        (["--timeout", "0", "list"], "--timeout"),
    ],
)
def test_usage_errors_are_one_line_with_exit_code_2(monkeypatch, capsys, argv, fragment):
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{free_port()}")
    code, out, err = run(capsys, *argv)
    assert_usage_error(code, out, err, fragment)


def test_no_project_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)
    code, out, err = run(capsys, "list")
    assert_usage_error(code, out, err, "no project", "--project", "GOOGLE_CLOUD_PROJECT")


def test_project_resolution(monkeypatch):
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:1")
    assert cli.resolve_project(None) == "demo-occupancy"
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "from-env")
    assert cli.resolve_project(None) == "from-env"
    assert cli.resolve_project("from-flag") == "from-flag"


def test_unreachable_firestore_exits_1_with_a_clear_message(monkeypatch, capsys):
    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", host)
    started = time.monotonic()
    code, out, err = run(capsys, "--timeout", "1", "register", "d1", "--train", "t1")
    assert time.monotonic() - started < 20
    assert code == 1 and out == ""
    assert err.startswith("error: cannot reach Firestore") and err.count("\n") == 1, err
    assert host in err and "demo-occupancy" in err and "Traceback" not in err


def test_custom_collections(firestore_client, capsys):
    code, _, err = run(capsys, "--devices_collection", "fleet", "register", "d1", "--train", "t1")
    assert (code, err) == (0, "")
    assert device_doc(firestore_client, "d1", "fleet")["train_id"] == "t1"
    assert device_doc(firestore_client, "d1") is None
    # Global flags are accepted after the command too.
    code, out, _ = run(capsys, "list", "--json", "--devices_collection", "fleet")
    assert [row["device_id"] for row in json.loads(out)] == ["d1"]
    assert json.loads(run(capsys, "list", "--json")[1]) == []
    assert run(capsys, "train", "set", "t1", "--capacity", "5", "--trains_collection", "stock")[0] == 0
    assert firestore_client.collection("stock").document("t1").get().to_dict()["capacity"] == 5


def test_entry_point_as_subprocess(firestore_client):
    env = dict(os.environ)  # FIRESTORE_EMULATOR_HOST is set by the fixture
    env.pop("GOOGLE_CLOUD_PROJECT", None)
    env["PYTHONPATH"] = str(REPO)

    def module(*argv):
        return subprocess.run(
            [sys.executable, "-m", "registry", *argv],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    done = module("register", "sub-d1", "--train", "sub-t1", "--door", "7")
    assert done.returncode == 0, done.stderr
    assert device_doc(firestore_client, "sub-d1")["door"] == "7"

    done = module("list", "--json")
    assert done.returncode == 0, done.stderr
    assert [(r["device_id"], r["train_id"]) for r in json.loads(done.stdout)] == [("sub-d1", "sub-t1")]

    done = module("register", "sub-d1", "--train", "other")
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "assign" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""

    done = module("assign", "a/b", "sub-t1")
    assert done.returncode == 2 and "invalid device id 'a/b'" in done.stderr


@pytest.mark.parametrize("exists_before", [True, False])
def test_register_does_not_overwrite_a_concurrent_change(firestore_client, capsys, monkeypatch, exists_before):
    from google.cloud import firestore
    from google.cloud.firestore_v1.document import DocumentReference

    if exists_before:
        assert run(capsys, "register", "d1", "--train", "t1")[0] == 0
    real_get = DocumentReference.get
    reads = []

    def get_then_change(self, *args, **kwargs):
        snapshot = real_get(self, *args, **kwargs)
        reads.append(snapshot.exists)
        if len(reads) == 1:  # another admin moves the device right after register read it
            firestore_client.collection("devices").document("d1").set(
                {
                    "train_id": "t2",
                    "enabled": True,
                    "door": None,
                    "registered_at": firestore.SERVER_TIMESTAMP,
                    "updated_at": firestore.SERVER_TIMESTAMP,
                }
            )
        return snapshot

    monkeypatch.setattr(DocumentReference, "get", get_then_change)
    code, out, err = run(capsys, "register", "d1", "--train", "t1", *(["--again"] if exists_before else []))
    assert_usage_error(code, out, err, "registered to train t2", "assign")
    assert reads == [exists_before, True]
    assert device_doc(firestore_client, "d1")["train_id"] == "t2"


def test_verbose_shows_the_debug_lines_of_the_cli_and_of_the_code_it_drives(capsys, monkeypatch):
    """-v: the CLI's own lines and those of the registry's reads and writes (adapters/) and the
    domain, whichever package each lives in."""
    import logging

    names = ("registry", "adapters", "adapters.registry.writes", "adapters.store", "occupancy")
    for name in names:
        monkeypatch.setattr(logging.getLogger(name), "level", logging.NOTSET)
    assert cli.main(["-v", "mqtt", "config", "--certfile", "/c.pem", "--keyfile", "/k.pem"]) == 0
    assert {name: logging.getLogger(name).getEffectiveLevel() for name in names} == dict.fromkeys(names, logging.DEBUG)
