"""The fleet's views kept across reads: a train is joined again only when one of its documents
changed, and the fleet is read again only for what changed (docs/api.md, "Serving cost").

`JoinedFleet` is what both ways of serving the fleet share: the listeners
(adapters/fleet_listener.py) hand it the documents they were sent, `FleetReader` the
documents its queries returned. Either way every other train is re-stated (status,
staleness) from the clock, not joined again: at 10,000 trains a full join cost about 1.4 s.

`FleetReader` is the fleet cache's read (api/deps.py). Reading the whole fleet cost two
queries and one billed read per train for every refresh, and at 3,000 trains it took 1.8 to
2.7 s on the emulator, so a change took up to twice that to show (4.2 s p95, 5.1 s under
requests). After one full read, each read asks `realtime` and `trains` only for the
documents written since the newest `updated_at` it holds (both carry it: the pipeline's
sink and every registry write set it to the server's time), about 25 ms at 20 changes a
second. A full read every `full_every_s` catches what such a query cannot: a document
deleted, or one written without `updated_at`. It runs beside the reads, in a thread of its
own, and is merged into the view when it is done: at 3,000 trains it takes about 4 s on the
emulator (6 under requests), and while reads waited for it a change took 7 s to show, where a
30-second benchmark window that happened to hold no full read saw 1.2 s at p95.
"""

import datetime
import logging
import threading
import time
from typing import Dict, List, Optional, Tuple

from adapters.store import count_ops
from occupancy import fleet
from occupancy.wire import valid_id

_LOGGER = logging.getLogger(__name__)
UPDATED_AT = "updated_at"
Documents = Dict[str, Tuple[Optional[dict], Optional[dict]]]  # train_id -> (realtime, trains) documents


class JoinedFleet:
    """Every train's view, joined from its documents, kept between reads."""

    def __init__(self, stale_after_s: float = fleet.DEFAULT_STALE_AFTER_S):
        self.stale_after_s = stale_after_s
        self.joins = 0  # trains joined from their documents (the rest are re-stated): for tests
        self.clear()

    def clear(self) -> None:
        """Forget every train: the next `views` is given every document anew."""
        self._joined: Dict[str, fleet.TrainView] = {}
        self._ids: List[str] = []  # sorted keys of _joined

    def views(self, changed: Documents, now: datetime.datetime) -> List[fleet.TrainView]:
        """Every train's view as of `now`, sorted by id, after joining the trains in `changed`
        again ((realtime, trains) documents; both None: the train is gone)."""
        trains_before, removed = len(self._joined), False
        for train_id, (realtime_doc, train_doc) in changed.items():
            if not valid_id(train_id) or (realtime_doc is None and train_doc is None):
                removed = self._joined.pop(train_id, None) is not None or removed
            else:
                self._joined[train_id] = fleet.train_view(train_id, realtime_doc, train_doc, now, self.stale_after_s)
        self.joins += len(changed)
        if removed or len(self._joined) != trains_before or not self._ids:
            self._ids = sorted(self._joined)
        return [
            self._joined[i] if i in changed else fleet.restated(self._joined[i], now, self.stale_after_s)
            for i in self._ids
        ]


class FleetReader:
    """Reads every train known to the registry or with a realtime document (two queries, one
    billed read per document), after the first time only what changed since."""

    def __init__(
        self,
        client,
        realtime_collection: str = "realtime",
        trains_collection: str = "trains",
        stale_after_s: float = fleet.DEFAULT_STALE_AFTER_S,
        full_every_s: float = 60.0,
        clock=time.monotonic,
    ):
        self.client, self.full_every_s, self._clock = client, full_every_s, clock
        self._names = (realtime_collection, trains_collection)
        self._docs: Tuple[Dict[str, dict], Dict[str, dict]] = ({}, {})
        self._newest: Optional[datetime.datetime] = None  # the newest updated_at of any document held
        self._full_at: Optional[float] = None  # when the last full read began
        self._joined = JoinedFleet(stale_after_s)
        self._lock = threading.Lock()  # one read at a time (uncached, requests read concurrently)
        self._full: Optional[threading.Thread] = None  # a full read running beside the reads
        self._full_done = None  # its (documents, the newest updated_at held when it began)
        self.full_reads = 0

    @property
    def joins(self) -> int:
        return self._joined.joins

    def read(self, now: Optional[datetime.datetime] = None) -> List[fleet.TrainView]:
        """Every train known to the registry or with a realtime document, sorted by id."""
        with self._lock:
            started = self._clock()
            if self._newest is None:  # nothing to ask "since" about: read it all, now
                changed = self._take_full(self._read_all(), None)
                self._full_at = started
            else:
                if self._full is None and started - self._full_at >= self.full_every_s:
                    self._start_full()
                    self._full_at = started
                changed = self._read_since(self._newest)
                if self._full_done is not None:
                    (done, since), self._full_done, self._full = self._full_done, None, None
                    changed.update(self._take_full(done, since))
            now = now or datetime.datetime.now(datetime.timezone.utc)
            return self._joined.views(changed, now)

    def wait_full(self, timeout_s: float = 60.0) -> None:
        """Waits until a full read running beside the reads is done (the next read merges it)."""
        running = self._full
        if running is not None:
            running.join(timeout_s)

    def _start_full(self) -> None:
        since = self._newest

        def full():
            try:
                docs = self._read_all()
            except Exception as e:  # noqa: BLE001 - its own thread: said, and tried again next interval
                _LOGGER.warning("Full read of the fleet failed (tried again in %ss): %s", self.full_every_s, e)
                with self._lock:
                    self._full = None
                return
            with self._lock:
                self._full_done = (docs, since)

        self._full = threading.Thread(target=full, name="fleet-full-read", daemon=True)
        self._full.start()

    def _read_all(self) -> Tuple[Dict[str, dict], Dict[str, dict]]:
        self.full_reads += 1
        return tuple(self._query(name) for name in self._names)

    def _take_full(self, full, since: Optional[datetime.datetime]) -> Documents:
        """Merges a full read that began when `since` was the newest `updated_at` held: what it
        lacks and nothing newer holds is gone (deleted); what it holds replaces the document held
        unless that one was written after it (a read beside it brought it)."""
        changed = set()
        for docs, fresh in zip(self._docs, full):
            for doc_id in [d for d in docs if d not in fresh]:
                updated = fleet.as_utc(docs[doc_id].get(UPDATED_AT))
                if since is None or updated is None or updated <= since:
                    del docs[doc_id]
                    changed.add(doc_id)
            for doc_id, data in fresh.items():
                held = docs.get(doc_id)
                if held is not None and _written_after(held, data):
                    continue
                if held != data:
                    docs[doc_id] = data
                    changed.add(doc_id)
            self._track(fresh.values())
        if since is None:
            self._joined.clear()
            changed = set(self._docs[0]) | set(self._docs[1])
        return {i: self._pair(i) for i in changed}

    def _read_since(self, since: datetime.datetime) -> Documents:
        """`>=`, as adapters.registry.load_changes: a write in the same microsecond as the
        newest held is not missed. `updated_at` is the commit's time, and a query sees every
        commit up to its read time, so nothing older than the newest held can still appear."""
        from google.cloud.firestore_v1.base_query import FieldFilter

        changed = set()
        for docs, name in zip(self._docs, self._names):
            fresh = self._query(name, FieldFilter(UPDATED_AT, ">=", since))
            docs.update(fresh)
            self._track(fresh.values())
            changed |= set(fresh)
        return {i: self._pair(i) for i in changed}

    def _query(self, name: str, where=None) -> Dict[str, dict]:
        query = self.client.collection(name)
        if where is not None:
            query = query.where(filter=where)
        docs = {doc.id: doc.to_dict() or {} for doc in query.stream()}
        count_ops(reads=max(1, len(docs)))  # a query bills at least one read; one line per query
        return docs

    def _track(self, docs) -> None:
        for data in docs:
            updated = fleet.as_utc(data.get(UPDATED_AT))
            if updated is not None and (self._newest is None or updated > self._newest):
                self._newest = updated

    def _pair(self, train_id: str) -> Tuple[Optional[dict], Optional[dict]]:
        return self._docs[0].get(train_id), self._docs[1].get(train_id)


def _written_after(held: dict, data: dict) -> bool:
    """Whether the document held was written after the version `data` (both by `updated_at`)."""
    held_at, data_at = fleet.as_utc(held.get(UPDATED_AT)), fleet.as_utc(data.get(UPDATED_AT))
    return held_at is not None and data_at is not None and held_at > data_at


def read_train(
    client,
    train_id: str,
    realtime_collection: str = "realtime",
    trains_collection: str = "trains",
    now: Optional[datetime.datetime] = None,
    stale_after_s: float = fleet.DEFAULT_STALE_AFTER_S,
) -> Optional[fleet.TrainView]:
    """One train (two document reads), or None when neither document exists.

    Args:
        client: the Firestore client.
        train_id: the train to read.
        realtime_collection: the pipeline's realtime documents' collection.
        trains_collection: the registry's trains' collection.
        now: the time its status and staleness are as of; None: the current time (UTC).
        stale_after_s: seconds without a count after which the train's status is stale.

    Raises:
        ValueError: an invalid train id.
    """
    if not valid_id(train_id):
        raise ValueError(f"invalid train id {train_id!r}")
    now = now or datetime.datetime.now(datetime.timezone.utc)
    realtime = client.collection(realtime_collection).document(train_id).get()
    train = client.collection(trains_collection).document(train_id).get()
    count_ops(reads=2)
    if not realtime.exists and not train.exists:
        return None
    return fleet.train_view(
        train_id,
        realtime.to_dict() if realtime.exists else None,
        train.to_dict() if train.exists else None,
        now,
        stale_after_s,
    )
