"""adapters.fleet_views.FleetReader on the emulator: after one full read, a read asks only for
the documents written since, and still sees deletions at its periodic full read."""

from adapters import registry
from adapters.fleet_views import FleetReader
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

    # A deletion is seen by the next full read, not before. The full read runs beside the reads,
    # which go on answering what changed meanwhile (they waited for it: a change took 7 s to show
    # at 3,000 trains), and is merged at the first read after it is done.
    firestore_client.collection("realtime").document("t99").delete()
    assert "t99" in _values(reader)
    clock[0] = 60.0
    write_realtime(firestore_client, "t05", 55, 100, {"d5": (2, ago(0))})
    assert _values(reader)["t05"] == (55, 100, "Train 5")
    reader.wait_full()
    assert reader.full_reads == 2
    write_realtime(firestore_client, "t06", 66, 100, {"d6": (2, ago(0))})
    values = _values(reader)
    assert "t99" not in values and len(values) == 50
    assert values["t05"] == (55, 100, "Train 5") and values["t06"] == (66, 100, "Train 6")


def test_reads_go_on_while_a_full_read_is_slow():
    """A full read that takes long (3,000 trains: 4 to 6 s on the emulator) holds no read back."""
    import threading

    release = threading.Event()

    class Slow:
        """A client whose queries answer at once, but a full one only once released."""

        def __init__(self):
            self.docs = {"realtime": {"t1": {"current_value": 1, "updated_at": ago(2)}}, "trains": {}}
            self.full_queries = 0

        def collection(self, name):
            return _Query(self, name, None)

    class _Query:
        def __init__(self, client, name, since_filter):
            self.client, self.name, self.since_filter = client, name, since_filter

        def where(self, filter):  # noqa: A002 - the client's own keyword
            return _Query(self.client, self.name, filter)

        def stream(self):
            if self.since_filter is None:
                self.client.full_queries += 1
                if self.client.full_queries > 2:  # the first full read (two queries) answers at once
                    release.wait(30)
            docs = self.client.docs[self.name]
            since = None if self.since_filter is None else self.since_filter.value
            return [_Doc(i, d) for i, d in docs.items() if since is None or d["updated_at"] >= since]

    class _Doc:
        def __init__(self, doc_id, data):
            self.id, self._data = doc_id, data

        def to_dict(self):
            return dict(self._data)

    client, clock = Slow(), [0.0]
    reader = FleetReader(client, full_every_s=60, clock=lambda: clock[0])
    assert [v.current_value for v in reader.read()] == [1]
    clock[0] = 60.0
    client.docs["realtime"]["t1"] = {"current_value": 2, "updated_at": ago(0)}
    answered = []
    reading = threading.Thread(target=lambda: answered.append([v.current_value for v in reader.read()]))
    reading.start()
    reading.join(10)  # the full read waits until released (30 s); the read must not wait for it
    assert answered == [[2]], "a read waited for the full read"
    client.docs["realtime"]["t1"] = {"current_value": 3, "updated_at": ago(-1)}
    assert [v.current_value for v in reader.read()] == [3]
    release.set()
    reader.wait_full()
    # The full read's older copy of t1 does not undo what a read beside it brought.
    assert [v.current_value for v in reader.read()] == [3] and reader.full_reads == 2


def test_documents_without_updated_at_are_read_in_full_every_time(firestore_client):
    """Nothing to ask "since" about: each read is a full read, never a view that stops changing."""
    firestore_client.collection("realtime").document("t1").set({"current_value": 1})
    reader = FleetReader(firestore_client, clock=lambda: 0.0)
    assert [v.current_value for v in reader.read()] == [1]
    firestore_client.collection("realtime").document("t1").set({"current_value": 2})
    assert [v.current_value for v in reader.read()] == [2] and reader.full_reads == 2
