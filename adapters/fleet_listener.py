"""The fleet view kept current by Firestore listeners: billed per changed document, not per
request (docs/api.md, "Serving cost").

Two `on_snapshot` listeners, on `realtime` and on `trains`, keep every document in memory;
`view()` joins them as the fleet cache's reads do (`adapters.fleet_views`), with no read at all. A third, on
`devices` (when given), keeps the registry's door of each device for the feed's carriages
(`doors()`): devices change rarely, so it costs almost nothing after its first snapshot. The pipeline
writes a train's realtime document at most once per flush interval, so the listener costs
one read per train per flush at most, whatever the number of requests; a whole-fleet read costs one
read per train per refresh.

`view()` keeps each train's joined view and re-joins only the trains whose documents changed;
the rest are re-stated (status, staleness) from the request's clock
(`adapters.fleet_views.JoinedFleet`, as the fleet cache's reads). The list is built at
most once per `REUSE_S`: at 10,000 trains a full join cost about 1.4 s a request in the API
(the join, and the public view of every train, memoised per built list).

Each listener is an `_UnchangedSkippingWatch`: the Firestore emulator sends every document of
the collection again with each snapshot, and the client library decodes each before finding
it unchanged (3,000 trains, 20 changing a second: ~1.4 s of CPU a snapshot, the listener
never caught up and a change took 61 s to show at p95). It skips a document whose update time
it already holds before decoding it: the same change then shows in about 1 s (bench.serving,
"change to visible"). Firestore itself sends only what changed, and again after a resume.

A listener that stops (Firestore unreachable long enough for the client library to give up)
is noticed by `view()` and started again; until it has delivered its first snapshot the
view is not ready and `view()` raises NotReady (the caller reads the fleet instead).
"""

import datetime
import logging
import threading
from typing import Dict, List, Optional, Set, Tuple

from google.cloud.firestore_v1 import watch as firestore_watch
from google.cloud.firestore_v1.document import DocumentSnapshot

from adapters import fleet_views
from adapters.store import count_ops
from occupancy import fleet

_LOGGER = logging.getLogger(__name__)


class NotReady(Exception):
    """No snapshot yet (starting, or started again after an outage)."""


class _UnchangedSkippingWatch(firestore_watch.Watch):
    """The client library's Watch, but a document sent again with the update time it already
    has is taken as the snapshot it holds, not decoded again (the library decodes it, then
    finds it unchanged). The emulator resets the target before each snapshot (every document
    marked removed, then sent again): a document sent again is kept, one not sent is removed."""

    def on_snapshot(self, proto):
        pb = getattr(proto, "_pb", None)
        if pb is not None and pb.WhichOneof("response_type") == "document_change":
            document = pb.document_change.document
            held = self.doc_map.get(document.name)
            if (
                held is not None
                and self.change_map.get(document.name, firestore_watch.ChangeType.REMOVED)
                is firestore_watch.ChangeType.REMOVED  # the emulator resets the target first
                and firestore_watch.WATCH_TARGET_ID in pb.document_change.target_ids
                and held.update_time is not None
                and held.update_time.timestamp_pb() == document.update_time
            ):
                self.change_map[document.name] = held  # still there, unchanged: no change pushed
                return
        super().on_snapshot(proto)


def follow_collection(client, name: str, callback):
    """A listener on collection `name` calling callback(docs, changes, read_time), as
    CollectionReference.on_snapshot, skipping what it already holds."""
    query = client.collection(name)._query()  # what CollectionReference.on_snapshot watches
    return _UnchangedSkippingWatch.for_query(query, callback, DocumentSnapshot)


class _Collection:
    """One collection followed by a listener: its documents, and when they were last current."""

    def __init__(self, client, name: str, follow=follow_collection):
        self.client, self.name, self.follow = client, name, follow
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
        self.watch = self.follow(self.client, self.name, self._on_snapshot)

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
        follow=follow_collection,
    ):
        """`follow(client, name, callback)` starts one collection's listener (tests give their own)."""
        self._collections = (
            _Collection(client, realtime_collection, follow),
            _Collection(client, trains_collection, follow),
        )
        self._devices = _Collection(client, devices_collection, follow) if devices_collection else None
        self._doors = None  # (devices version, train_id -> {device_id: door})
        self.restarts = 0
        self._joined = fleet_views.JoinedFleet(stale_after_s)
        self._generations = None  # the collections' generations _joined was built from
        self._built = None  # (at, views): the last list, reused for REUSE_S
        self._built_lock = threading.Lock()

    @property
    def joins(self) -> int:
        return self._joined.joins

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
                    self._joined.clear()
                    changed = set(realtime.docs) | set(trains.docs)
                documents = {i: (realtime.docs.get(i), trains.docs.get(i)) for i in changed}
            views = self._joined.views(documents, now)
            self._generations, self._built = generations, (now, views)
            return self._built

    def stop(self) -> None:
        for collection in self._all():
            collection.stop()
