"""The fleet bench.serving serves: trains seeded as the pipeline writes them, realtime documents
changing at a rate while the API is timed, and what the fleet listeners themselves are billed
while they change (reads per changed document)."""

import os
import threading
import time
import uuid

from google.cloud import firestore

from adapters import registry
from adapters.store import COUNT_OPS_ENV, RetryPolicy, commit_documents, make_client
from bench.measure import read_ops, rounded
from local import stack
from local.emulators import free_port
from local.stack import PROJECT
from occupancy import documents, wire
from occupancy.train_state import DeviceMemory, TrainState

DEVICES_PER_TRAIN = 10
MARK = "bench_change"  # a field of the benchmark's own in a changed realtime document (the API ignores it)


def door(d: int) -> str:
    return f"car{d // 2 + 1}-door{d % 2 + 1}"  # 10 doors: 5 carriages of 2


def train_state(i: int, value: int) -> TrainState:
    """Train i's state as the pipeline keeps it: 10 doors, counted just now."""
    now = wire.now_us()
    state = TrainState(value=value, capacity=300, last_applied_us=now)
    for d in range(DEVICES_PER_TRAIN):
        state.devices[f"t{i:05d}-d{d}"] = DeviceMemory(
            seq=100, applied=[[1, 100]], last_seen_us=now, trip_boarded=(i + d) % 40, trip_alighted=d
        )
    return state


def stamped(data: dict) -> dict:
    """A realtime or trains document as the pipeline's sink and the registry write it: with the
    server's `updated_at`, which the API's fleet reads ask for (adapters.fleet_views)."""
    return {**data, "updated_at": firestore.SERVER_TIMESTAMP}


def seed(client, trains: int) -> None:
    writes = []
    for i in range(trains):
        write = documents.realtime_write(f"t{i:05d}", train_state(i, value=i % 300))
        writes.append((write.collection, write.doc_id, stamped(write.data)))
        writes.append(("trains", write.doc_id, stamped({"capacity": 300, "name": f"Train {i}"})))
    assert not commit_documents(client, writes, RetryPolicy())
    assert len(registry.list_trains(client, "trains")) == trains


def fresh(client, trains: int) -> None:
    """The emulator emptied and `trains` trains seeded again (the dashboard's and the larger fleet's runs)."""
    from local.emulators import Emulator

    firestore = Emulator("firestore", project=PROJECT)
    firestore.host_port = os.environ["FIRESTORE_EMULATOR_HOST"]
    firestore.reset()
    seed(client, trains)


class Changes(threading.Thread):
    """Writes `per_s` realtime documents a second (trains in turn, each a new count), as the
    pipeline does at each flush: what the listeners are billed for. One batch each TICK_S, as
    the pipeline's writer commits: one write at a time reached 7 a second beside the API."""

    TICK_S = 0.2

    def __init__(self, trains: int, per_s: float):
        super().__init__(daemon=True)
        self.trains, self.per_s, self.written = trains, per_s, 0
        # Each write carries a mark no earlier run wrote (a run before this one may have left
        # the same counts): train id -> the mark last written to it.
        self.run_id, self.last = uuid.uuid4().hex[:8], {}
        self.halt = threading.Event()
        # (train id, the write's last_updated in µs) of each write not yet taken: the time a
        # change was made, which the API serves as `last_updated` (bench.serving_visible).
        self._issued, self._issued_lock = [], threading.Lock()

    def run(self):
        client = make_client(PROJECT)
        began = time.monotonic()
        while not self.halt.is_set():
            due = int((time.monotonic() - began) * self.per_s) + 1 - self.written  # the first at once
            batch = client.batch()
            issued = []
            for n in range(self.written, self.written + max(0, min(due, 500))):
                i = n % self.trains
                state = train_state(i, value=(i + n) % 300)
                write = documents.realtime_write(f"t{i:05d}", state)
                mark = f"{self.run_id}:{n}"
                data = stamped({**write.data, MARK: mark})
                batch.set(client.collection(write.collection).document(write.doc_id), data)
                self.last[write.doc_id] = mark
                issued.append((write.doc_id, state.last_applied_us))
            if due > 0:
                batch.commit()
                self.written += min(due, 500)
                with self._issued_lock:
                    self._issued += issued
            self.halt.wait(self.TICK_S)

    def take_issued(self) -> list:
        """(train id, last_updated µs) of the writes committed since the last call."""
        with self._issued_lock:
            issued, self._issued = self._issued, []
        return issued

    def stop(self) -> int:
        self.halt.set()
        self.join(30)
        return self.written


def measure_listener_cost(trains: int, per_s: float, seconds: float, work_dir: str) -> dict:
    """What the listeners themselves are billed while `per_s` realtime documents change a second
    for `seconds`: reads per changed document, counted until the listener holds the last write
    to every changed train (not for a fixed time: on the emulator the listener falls
    behind, see `caught_up_after_s`). In this process, without the API, so that no request's
    read is counted with them."""
    from adapters.fleet_listener import FleetListener

    ops_path = os.path.join(work_dir, f"ops-listener-cost-{trains}.txt")
    os.environ[COUNT_OPS_ENV] = ops_path
    listener = FleetListener(make_client(PROJECT)).start()
    realtime = listener._collections[0]
    try:
        began = time.monotonic()
        stack.wait_for(lambda: _has_snapshot(listener), 300, what="the listeners' first snapshot")
        first_snapshot_s = time.monotonic() - began
        first_reads, _ = read_ops(ops_path)
        os.remove(ops_path)
        snapshots = realtime.version
        changes = Changes(trains, per_s)
        changes.start()
        time.sleep(seconds)
        written = changes.stop()
        stopped = time.monotonic()

        def caught_up():
            with realtime.lock:
                return all((realtime.docs.get(i) or {}).get(MARK) == mark for i, mark in changes.last.items())

        stack.wait_for(caught_up, 900, what="the listener holding every change")
        caught_up_s = time.monotonic() - stopped
        reads, _ = read_ops(ops_path)
        snapshots = realtime.version - snapshots
    finally:
        os.environ.pop(COUNT_OPS_ENV, None)
        listener.stop()
    per_change = reads / written if written else None
    return {
        "trains": trains,
        "changes_per_s": per_s,
        "seconds": seconds,
        "documents_changed": written,
        "trains_changed": len(changes.last),
        "first_snapshot_reads": first_reads,
        "first_snapshot_s": round(first_snapshot_s, 1),
        "firestore_reads": reads,
        "snapshots": snapshots,
        # One billed read per document a snapshot delivers as changed: fewer than the writes
        # when a train changed twice between two snapshots.
        "reads_per_changed_document": rounded(per_change, 3) if per_change is not None else None,
        "reads_per_minute_at_this_rate": round(60 * per_s * per_change) if per_change is not None else None,
        "caught_up_after_s": round(caught_up_s, 1),
    }


def _has_snapshot(listener) -> bool:
    from adapters.fleet_listener import NotReady

    try:
        listener.view()
        return True
    except NotReady:
        return False


def start_measured_api(name: str, work_dir: str, cache_s: float, listener: bool, *extra: str):
    """(process, base URL, ops file) of the API for one measurement named `name`: the fleet
    cache at `cache_s` or (listener) the listeners, its Firestore operations counted in the
    ops file (adapters.store.count_ops), its log in work_dir."""
    ops_path = os.path.join(work_dir, f"ops-{name}.txt")
    port = free_port()
    process = stack.start_api(
        PROJECT,
        port,
        f"--fleet_cache_s={cache_s}",
        "--log_level=warning",
        *(("--fleet_listener",) if listener else ()),
        *extra,
        env={COUNT_OPS_ENV: ops_path},
        log_path=os.path.join(work_dir, f"api-{name}.log"),
    )
    return process, f"http://127.0.0.1:{port}", ops_path


def quiet(ops_path: str, for_s: float = 2.0) -> bool:
    """Whether the API counted no Firestore reads for `for_s`: the listeners have their first
    snapshot (the whole fleet once), which is no request's cost."""
    try:
        return time.time() - os.path.getmtime(ops_path) > for_s
    except FileNotFoundError:
        return False
