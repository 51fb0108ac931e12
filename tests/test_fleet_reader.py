"""occupancy.fleet_views.FleetReader on the emulator: after one full read, a read asks only for
the documents written since, and still sees deletions at its periodic full read."""

from occupancy import registry
from occupancy.fleet_views import FleetReader
from tests.support import ago, write_realtime


def _values(reader):
    return {v.train_id: (v.current_value, v.capacity, v.name) for v in reader.read()}


def test_a_read_after_the_first_joins_only_what_was_written_since(firestore_client):
    for i in range(50):
        registry.set_train(firestore_client, "trains", f"t{i:02d}", 100, f"Train {i}")
        write_realtime(firestore_client, f"t{i:02d}", i, 100, {f"d{i}": (1, ago(1))})
    clock = [0.0]
    reader = FleetReader(firestore_client, full_every_s=60, clock=lambda: clock[0])
    assert _values(reader)["t07"] == (7, 100, "Train 7") and len(_values(reader)) == 50
    assert reader.full_reads == 1
    # What the first read joined is kept: a read now joins only the newest write again.
    joins = reader.joins
    reader.read()
    assert reader.joins - joins <= 2

    write_realtime(firestore_client, "t07", 70, 100, {"d7": (2, ago(0))})
    registry.set_train(firestore_client, "trains", "t08", 120, "Renamed")  # the registry's writes too
    write_realtime(firestore_client, "t99", 5, None, {"d99": (1, ago(0))})  # a train not registered yet
    joins = reader.joins
    values = _values(reader)
    assert values["t07"] == (70, 100, "Train 7") and values["t08"] == (8, 120, "Renamed")
    assert values["t99"] == (5, None, None) and values["t06"] == (6, 100, "Train 6")
    assert reader.joins - joins <= 4 and reader.full_reads == 1

    # A deletion is seen by the next full read, not before.
    firestore_client.collection("realtime").document("t99").delete()
    assert "t99" in _values(reader)
    clock[0] = 60.0
    assert "t99" not in _values(reader) and reader.full_reads == 2 and len(_values(reader)) == 50


def test_documents_without_updated_at_are_read_in_full_every_time(firestore_client):
    """Nothing to ask "since" about: each read is a full read, never a view that stops changing."""
    firestore_client.collection("realtime").document("t1").set({"current_value": 1})
    reader = FleetReader(firestore_client, clock=lambda: 0.0)
    assert [v.current_value for v in reader.read()] == [1]
    firestore_client.collection("realtime").document("t1").set({"current_value": 2})
    assert [v.current_value for v in reader.read()] == [2] and reader.full_reads == 2
