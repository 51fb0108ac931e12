"""The registry CLI (`python -m occupancy.registry`) against the real Firestore emulator.

Most tests call `occupancy.registry.__main__.main([...])` in-process and read stdout/stderr
with capsys; `test_entry_point_as_subprocess` runs the module as a real
process. After each write the Firestore documents are read directly.
"""

import datetime
import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

from local.emulators import free_port
from occupancy import registry
from occupancy.registry import __main__ as cli
from occupancy.wire import format_time, to_micros

REPO = pathlib.Path(__file__).resolve().parents[1]
DEVICE_FIELDS = {"device_id", "train_id", "door", "enabled", "registered_at", "updated_at", "health"}
TRAIN_FIELDS = {"train_id", "capacity", "name", "updated_at"}


def run(capsys, *argv):
    """Runs the CLI in-process; returns (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def device_doc(client, device_id, collection="devices"):
    snapshot = client.collection(collection).document(device_id).get()
    return snapshot.to_dict() if snapshot.exists else None


def train_doc(client, train_id):
    snapshot = client.collection("trains").document(train_id).get()
    return snapshot.to_dict() if snapshot.exists else None


def assert_usage_error(code, out, err, *fragments):
    """Exit 2, nothing on stdout, one `error: ...` line on stderr that names the problem."""
    assert code == 2
    assert out == ""
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err


def is_timestamp(value):
    return isinstance(value, datetime.datetime) and value.tzinfo is not None


# ---- register ------------------------------------------------------------------------


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


def test_register_again_to_the_same_train_resets_the_entry(firestore_client, capsys):
    assert run(capsys, "register", "d1", "--train", "t1", "--door", "1")[0] == 0
    assert run(capsys, "disable", "d1")[0] == 0
    first = device_doc(firestore_client, "d1")
    assert first["enabled"] is False
    time.sleep(0.01)
    code, out, err = run(capsys, "register", "d1", "--train", "t1", "--door", "4")
    assert (code, err) == (0, "")
    again = device_doc(firestore_client, "d1")
    assert again["registered_at"] > first["registered_at"]
    assert again["updated_at"] > first["updated_at"]
    assert (again["train_id"], again["enabled"], again["door"]) == ("t1", True, "4")


def test_register_help_says_that_registering_again_resets_seq(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["register", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "registered_at" in text and "forget the device's old seq" in text
    assert "use 'assign'" in text


# ---- assign / enable / disable ----------------------------------------------------------


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


# ---- validation ----------------------------------------------------------------------------


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


# ---- trains ----------------------------------------------------------------------------------


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


# ---- list ------------------------------------------------------------------------------------


@pytest.fixture
def fleet(firestore_client, capsys):
    """Three devices on two trains, one of them disabled."""
    for device_id, train_id, door in (
        ("ic1-car1-door1", "ic1", "1"),
        ("ic1-car2-door2", "ic1", None),
        ("re5-car1-door1", "re5", "1"),
    ):
        argv = ["register", device_id, "--train", train_id] + (["--door", door] if door else [])
        assert run(capsys, *argv)[0] == 0
    assert run(capsys, "disable", "ic1-car2-door2")[0] == 0
    return firestore_client


def test_list_prints_an_aligned_table(fleet, capsys):
    code, out, err = run(capsys, "list")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["DEVICE", "TRAIN", "DOOR", "ENABLED", "HEALTH", "UPDATED"]
    rows = [line.split() for line in lines[1:]]
    updated = format_time(to_micros(device_doc(fleet, "ic1-car2-door2")["updated_at"]))
    assert rows == [
        ["ic1-car1-door1", "ic1", "1", "yes", "-", rows[0][5]],
        ["ic1-car2-door2", "ic1", "-", "no", "-", updated],
        ["re5-car1-door1", "re5", "1", "yes", "-", rows[2][5]],
    ]
    # Aligned: each column starts at the same offset on every line.
    for header in ("TRAIN", "DOOR", "ENABLED", "HEALTH", "UPDATED"):
        column = lines[0].index(header)
        assert all(line[column - 2 : column] == "  " and line[column] != " " for line in lines[1:])


def test_list_filters_by_train(fleet, capsys):
    code, out, err = run(capsys, "list", "--train", "ic1")
    assert (code, err) == (0, "")
    assert [line.split()[:2] for line in out.splitlines()[1:]] == [["ic1-car1-door1", "ic1"], ["ic1-car2-door2", "ic1"]]
    code, out, err = run(capsys, "list", "--train", "nothing-here")
    assert (code, err) == (0, "")
    assert out.splitlines()[1:] == ["(none)"]


@pytest.mark.parametrize("argv", [["list", "--json"], ["--json", "list"]])
def test_list_json_has_the_fields(fleet, capsys, argv):
    code, out, err = run(capsys, *argv)
    assert (code, err) == (0, "")
    rows = json.loads(out)
    assert all(set(row) == DEVICE_FIELDS for row in rows)
    assert [(r["device_id"], r["train_id"], r["door"], r["enabled"]) for r in rows] == [
        ("ic1-car1-door1", "ic1", "1", True),
        ("ic1-car2-door2", "ic1", None, False),
        ("re5-car1-door1", "re5", "1", True),
    ]
    doc = device_doc(fleet, "re5-car1-door1")
    assert rows[2]["registered_at"] == format_time(to_micros(doc["registered_at"]))
    assert rows[2]["updated_at"] == format_time(to_micros(doc["updated_at"]))


def test_list_json_with_train_filter_and_empty_registry(firestore_client, capsys):
    code, out, err = run(capsys, "list", "--json")
    assert (code, json.loads(out), err) == (0, [], "")
    assert run(capsys, "register", "d1", "--train", "t1")[0] == 0
    assert run(capsys, "register", "d2", "--train", "t2")[0] == 0
    code, out, err = run(capsys, "list", "--train", "t2", "--json")
    assert [row["device_id"] for row in json.loads(out)] == ["d2"]


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


# ---- the real entry point ---------------------------------------------------------------------


def test_entry_point_as_subprocess(firestore_client):
    env = dict(os.environ)  # FIRESTORE_EMULATOR_HOST is set by the fixture
    env.pop("GOOGLE_CLOUD_PROJECT", None)
    env["PYTHONPATH"] = str(REPO)

    def module(*argv):
        return subprocess.run(
            [sys.executable, "-m", "occupancy.registry", *argv],
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


# ---- a concurrent change between register's read and its write ----------------------------------


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
    code, out, err = run(capsys, "register", "d1", "--train", "t1")
    assert_usage_error(code, out, err, "registered to train t2", "assign")
    assert reads == [exists_before, True]
    assert device_doc(firestore_client, "d1")["train_id"] == "t2"


def test_health_flags_a_biased_and_a_silent_door_from_trips_and_list_shows_it(firestore_client, capsys):
    import random

    from occupancy import documents
    from occupancy.fold import Trip

    doors = [f"t1-car{i}-door1" for i in range(1, 7)]
    for device in doors:
        assert run(capsys, "register", device, "--train", "t1")[0] == 0
    rng = random.Random(4)
    writes = []
    for k in range(40):  # 40 trips; car2 counts 25 % too many ins, car6 is dead from trip 30
        counts = {}
        for device in doors:
            ins = outs = 0
            for _ in range(120):
                ins += rng.random() < 0.5
                outs += rng.random() < 0.5
            if device.startswith("t1-car2"):
                ins = round(ins * 1.25)
            if device.startswith("t1-car6") and k >= 30:
                continue
            counts[device] = (ins, outs)
        trip = Trip(
            start_us=k * 10**9,
            end_us=(k + 1) * 10**9,
            ons=sum(b for b, _ in counts.values()),
            offs=sum(a for _, a in counts.values()),
            residual=0,
            doors=counts,
        )
        write = documents.trip_write("t1", trip)
        writes.append((write.collection, write.doc_id, write.data))
    from occupancy.store import RetryPolicy, commit_documents

    assert not commit_documents(firestore_client, writes, RetryPolicy())
    code, out, err = run(capsys, "health", "--json")
    assert (code, err) == (0, "")
    status = {row["device_id"]: row["status"] for row in json.loads(out)}
    assert status == {**{d: "ok" for d in doors}, "t1-car2-door1": "biased", "t1-car6-door1": "silent"}
    stored = device_doc(firestore_client, "t1-car2-door1")["health"]
    assert stored["status"] == "biased" and 0.15 < stored["bias_estimate"] < 0.35 and stored["trips"] == 40
    code, out, err = run(capsys, "list")
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "biased +" in rows["t1-car2-door1"] and "silent" in rows["t1-car6-door1"] and " ok " in rows["t1-car1-door1"]


# ---- import: a whole fleet, and the devices-per-train limit ----------------------------


def write_csv(tmp_path, rows, header="train_id,capacity,name,device_id,door"):
    path = tmp_path / "fleet.csv"
    path.write_text("\n".join([header] + rows) + "\n", encoding="utf-8")
    return str(path)


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
    monkeypatch.setattr(registry, "MAX_DEVICES_PER_TRAIN", 3)
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
    assert run(capsys, "register", "d0", "--train", "t1")[0] == 0  # again, same train: no new device
