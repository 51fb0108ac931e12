"""The registry CLI's train commands (`train set`, `train list`) and the fleet import, against
the real Firestore emulator."""

import json
import time

import pytest

from adapters import registry
from occupancy import registry_entries
from occupancy.wire import format_time, to_micros
from tests.registry_cli_support import (
    TRAIN_FIELDS,
    assert_usage_error,
    device_doc,
    is_timestamp,
    run,
    train_doc,
    write_csv,
)


def test_train_set_creates_and_updates_a_train(firestore_client, capsys):
    code, out, err = run(capsys, "train", "set", "ic1832", "--capacity", "420", "--name", "IC 1832")
    assert (code, err) == (0, "")
    assert "ic1832" in out and "420" in out
    first = train_doc(firestore_client, "ic1832")
    assert (first["capacity"], first["name"]) == (420, "IC 1832")
    assert is_timestamp(first["updated_at"])
    time.sleep(0.01)
    assert run(capsys, "train", "set", "ic1832", "--capacity", "380")[0] == 0
    second = train_doc(firestore_client, "ic1832")
    assert (second["capacity"], second["name"]) == (380, "IC 1832")  # name kept
    assert second["updated_at"] > first["updated_at"]
    assert registry.load_snapshot(firestore_client, "devices", "trains").capacity("ic1832") == 380


def test_train_list_table_and_json(firestore_client, capsys):
    assert run(capsys, "train", "set", "t2", "--capacity", "80")[0] == 0
    assert run(capsys, "train", "set", "t1", "--capacity", "120", "--name", "Morning")[0] == 0
    code, out, err = run(capsys, "train", "list")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["TRAIN", "CAPACITY", "NAME", "UPDATED"]
    updated = format_time(to_micros(train_doc(firestore_client, "t1")["updated_at"]))
    assert lines[1].split() == ["t1", "120", "Morning", updated]
    assert lines[2].split()[:3] == ["t2", "80", "-"]
    assert len(lines) == 3

    code, out, err = run(capsys, "train", "list", "--json")
    assert (code, err) == (0, "")
    rows = json.loads(out)
    assert [set(row) for row in rows] == [TRAIN_FIELDS, TRAIN_FIELDS]
    assert [(r["train_id"], r["capacity"], r["name"]) for r in rows] == [("t1", 120, "Morning"), ("t2", 80, None)]
    assert rows[0]["updated_at"] == updated


def test_import_registers_a_fleet_and_leaves_known_devices_as_they_are(firestore_client, capsys, tmp_path):
    assert run(capsys, "register", "t0-d0", "--train", "t0", "--door", "old")[0] == 0
    before = firestore_client.collection("devices").document("t0-d0").get()
    rows = [
        f"t{t},{300 + t},Train {t},t{t}-d{d},car{d // 2 + 1}-door{d % 2 + 1}" for t in range(60) for d in range(10)
    ]  # 600 devices: more than one batch of 500
    code, out, err = run(capsys, "import", write_csv(tmp_path, rows))
    assert (code, err) == (0, "")
    assert "imported 60 trains; devices: 599 registered, 1 already on their train" in out
    snapshot = registry.load_snapshot(firestore_client, "devices", "trains")
    assert len(snapshot.devices) == 600 and snapshot.devices["t59-d9"].train_id == "t59"
    assert snapshot.devices["t59-d9"].door == "car5-door2"
    assert snapshot.trains["t7"].capacity == 307 and train_doc(firestore_client, "t7")["name"] == "Train 7"
    after = firestore_client.collection("devices").document("t0-d0").get()
    assert after.update_time == before.update_time and after.to_dict()["door"] == "old"


@pytest.mark.parametrize(
    "rows, fragment",
    [
        (["t1,100,,d1,", "t2,100,,d1,"], "d1 is listed twice"),
        (["t1,many,,d1,"], "line 2: capacity 'many'"),
        (["t1,100,,d/1,"], "invalid device id"),
        (["t1,0,,d1,"], "capacity must be a positive integer"),
    ],
)
def test_import_refuses_a_wrong_file_and_writes_nothing(firestore_client, capsys, tmp_path, rows, fragment):
    code, out, err = run(capsys, "import", write_csv(tmp_path, rows + ["t9,100,,ok1,"]))
    assert_usage_error(code, out, err, fragment)
    assert registry.list_devices(firestore_client, "devices") == []
    assert registry.list_trains(firestore_client, "trains") == []


def test_import_refuses_a_device_of_another_train_and_a_missing_file(firestore_client, capsys, tmp_path):
    assert run(capsys, "register", "d1", "--train", "t1")[0] == 0
    code, out, err = run(capsys, "import", write_csv(tmp_path, ["t2,100,,d1,", "t2,100,,d2,"]))
    assert_usage_error(code, out, err, "d1", "t1", "assign")
    assert device_doc(firestore_client, "d2") is None
    code, out, err = run(capsys, "import", str(tmp_path / "none.csv"))
    assert_usage_error(code, out, err, "cannot read", "none.csv")
    code, out, err = run(capsys, "import", write_csv(tmp_path, ["t1,100"], header="train_id,capacity"))
    assert_usage_error(code, out, err, "missing device_id")


def test_a_train_takes_at_most_max_devices_whatever_the_way_in(firestore_client, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(registry_entries, "MAX_DEVICES_PER_TRAIN", 3)
    rows = [f"t1,100,,d{i}," for i in range(4)]
    code, out, err = run(capsys, "import", write_csv(tmp_path, rows))
    assert_usage_error(code, out, err, "train t1 would have 4 devices; at most 3")
    assert run(capsys, "import", write_csv(tmp_path, rows[:3]))[0] == 0
    code, out, err = run(capsys, "register", "d9", "--train", "t1")
    assert_usage_error(code, out, err, "train t1 has 3 devices; at most 3")
    assert run(capsys, "register", "d9", "--train", "t2")[0] == 0
    code, out, err = run(capsys, "assign", "d9", "t1")
    assert_usage_error(code, out, err, "train t1 has 3 devices")
    assert device_doc(firestore_client, "d9")["train_id"] == "t2"
    assert run(capsys, "register", "d0", "--train", "t1", "--again")[0] == 0  # again, same train: no new device
