"""The registry CLI's `list` (table and JSON, by train) and `health` (doors biased or silent,
from the trips), against the real Firestore emulator."""

import json

import pytest

from occupancy.wire import format_time, to_micros
from tests.registry_cli_support import (
    DEVICE_FIELDS,
    device_doc,
    run,
)


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


def test_health_flags_a_biased_and_a_silent_door_from_trips_and_list_shows_it(firestore_client, capsys):
    import random

    from occupancy import documents
    from occupancy.train_state import Trip

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
    from adapters.store import RetryPolicy, commit_documents

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
