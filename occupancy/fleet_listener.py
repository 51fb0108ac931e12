"""The fleet view kept current by Firestore listeners: billed per changed document, not per
request (docs/api.md, "Serving cost").

Two `on_snapshot` listeners, on `realtime` and on `trains`, keep every document in memory;
`view()` joins them as `occupancy.fleet.read_fleet` does, with no read at all. A third, on
`devices` (when given), keeps the registry's door of each device for the feed's carriages
(`doors()`): devices change rarely, so it costs almost nothing after its first snapshot. The pipeline
writes a train's realtime document at most once per flush interval, so the listener costs
one read per train per flush at most, whatever the number of requests; `read_fleet` costs one
read per train per refresh.

`view()` keeps each train's joined view and re-joins only the trains whose documents changed;
the rest are re-stated (status, staleness) from the request's clock. The list is built at
most once per `REUSE_S`: at 10,000 trains a full join cost about 1.4 s a request in the API
(the join, and the public view of every train, memoised per built list).

A listener that stops (Firestore unreachable long enough for the client library to give up)
is noticed by `view()` and started again; until it has delivered its first snapshot the
view is not ready and `view()` raises NotReady (the caller reads the fleet instead).
"""

import datetime
import logging
import threading
from typing import Dict, List, Optional, Set, Tuple

from occupancy import fleet
from occupancy.store import count_ops
from occupancy.wire import valid_id

_LOGGER = logging.getLogger(__name__)


class NotReady(Exception):
    """No snapshot yet (starting, or started again after an outage)."""


class _Collection:
    """One collection followed by a listener: its documents, and when they were last current."""

    def __init__(self, client, name: str):
        self.client, self.name = client, name
        self.docs: Dict[str, dict] = {}
        self.read_at: Optional[datetime.datetime] = None
        self.version = 0  # changes with every snapshot
        self.generation = 0  # changes with every (re)start: the documents are read anew
        self.changed: Set[str] = set()  # ids changed since the last take_changed()
        self.watch = None
        self.lock = threading.Lock()

    def start(self) -> None:
        with self.lock:
            self.docs, self.read_at, self.changed = {}, None, set()
            self.generation += 1
        self.watch = self.client.collection(self.name).on_snapshot(self._on_snapshot)

    def _on_snapshot(self, docs, changes, read_time) -> None:
        with self.lock:
            for change in changes:
                doc_id = change.document.id
                if change.type.name == "REMOVED":
                    self.docs.pop(doc_id, None)
                else:
                    self.docs[doc_id] = change.document.to_dict() or {}
                self.changed.add(doc_id)
            self.read_at = read_time
            self.version += 1
        count_ops(reads=max(1, len(changes)))  # billed: one read per document that changed

    def take_changed(self) -> Set[str]:
        """The ids changed since the last call (the caller holds the lock)."""
        changed, self.changed = self.changed, set()
        return changed

    def alive(self) -> bool:
        return self.watch is not None and self.watch.is_active

    def stop(self) -> None:
        if self.watch is not None:
            try:
                self.watch.unsubscribe()
            except Exception:  # noqa: BLE001 - best effort: the listener is discarded anyway
                pass


class FleetListener:
    # How long one built list serves (generated_at says when it was built): the public view
    # of a list is memoised per list, so this also bounds how often that is redone.
    REUSE_S = 1.0

    def __init__(
        self,
        client,
        realtime_collection: str = "realtime",
        trains_collection: str = "trains",
        stale_after_s: float = fleet.DEFAULT_STALE_AFTER_S,
        devices_collection: Optional[str] = None,
    ):
        self._collections = (_Collection(client, realtime_collection), _Collection(client, trains_collection))
        self._devices = _Collection(client, devices_collection) if devices_collection else None
        self._doors = None  # (devices version, train_id -> {device_id: door})
        self._stale_after_s = stale_after_s
        self.restarts = 0
        self.joins = 0  # trains joined from their documents (the rest are re-stated): for tests
        self._joined: Dict[str, fleet.TrainView] = {}  # per train, as of its documents
        self._ids: List[str] = []  # sorted keys of _joined
        self._generations = None  # the collections' generations _joined was built from
        self._built = None  # (at, views): the last list, reused for REUSE_S
        self._built_lock = threading.Lock()

    def start(self) -> "FleetListener":
        for collection in self._all():
            collection.start()
        return self

    def _all(self):
        return self._collections + ((self._devices,) if self._devices else ())

    def _revive(self) -> None:
        for collection in self._all():
            if not collection.alive():
                _LOGGER.warning("The %s listener stopped: starting it again", collection.name)
                self.restarts += 1
                collection.start()

    def doors(self) -> Dict[str, Dict[str, Optional[str]]]:
        """train_id -> {device_id: door} of the enabled devices (as api.gtfs_rt reads them); NotReady."""
        if self._devices is None:
            raise NotReady("no devices listener")
        self._revive()
        devices = self._devices
        with devices.lock:
            if devices.read_at is None:
                raise NotReady("the devices listener has no snapshot yet")
            if self._doors is not None and self._doors[0] == devices.version:
                return self._doors[1]
            version, docs = devices.version, dict(devices.docs)
        doors = fleet.doors_by_train(docs.items())
        self._doors = (version, doors)
        return doors

    def view(self, now: Optional[datetime.datetime] = None) -> Tuple[datetime.datetime, List[fleet.TrainView]]:
        """(when this list was built, every train's view); NotReady."""
        self._revive()
        realtime, trains = self._collections
        now = now or datetime.datetime.now(datetime.timezone.utc)
        with self._built_lock:
            with realtime.lock, trains.lock:
                if realtime.read_at is None or trains.read_at is None:
                    raise NotReady("the fleet listeners have no snapshot yet")
                generations = (realtime.generation, trains.generation)
                built = self._built
                if (
                    built is not None
                    and generations == self._generations
                    and 0 <= (now - built[0]).total_seconds() < self.REUSE_S
                ):
                    return built
                changed = realtime.take_changed() | trains.take_changed()
                if generations != self._generations:  # (re)started: every document read anew
                    self._joined, changed = {}, set(realtime.docs) | set(trains.docs)
                documents = {i: (realtime.docs.get(i), trains.docs.get(i)) for i in changed}
            trains_before = len(self._joined)
            removed = False
            for train_id, (realtime_doc, train_doc) in documents.items():
                if not valid_id(train_id) or (realtime_doc is None and train_doc is None):
                    removed = self._joined.pop(train_id, None) is not None or removed
                else:
                    self._joined[train_id] = fleet.train_view(
                        train_id, realtime_doc, train_doc, now, self._stale_after_s
                    )
            self.joins += len(documents)
            if removed or len(self._joined) != trains_before or not self._ids:
                self._ids = sorted(self._joined)
            views = [
                self._joined[i] if i in documents else fleet.restated(self._joined[i], now, self._stale_after_s)
                for i in self._ids
            ]
            self._generations, self._built = generations, (now, views)
            return self._built

    def stop(self) -> None:
        for collection in self._all():
            collection.stop()
