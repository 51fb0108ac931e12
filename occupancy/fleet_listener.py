"""The fleet view kept current by Firestore listeners: billed per changed document, not per
request (docs/api.md, "Serving cost").

Two `on_snapshot` listeners, on `realtime` and on `trains`, keep every document in memory;
`view()` joins them as `occupancy.fleet.read_fleet` does, with no read at all. A third, on
`devices` (when given), keeps the registry's door of each device for the feed's carriages
(`doors()`): devices change rarely, so it costs almost nothing after its first snapshot. The pipeline
writes a train's realtime document at most once per flush interval, so the listener costs
one read per train per flush at most, whatever the number of requests; `read_fleet` costs one
read per train per refresh.

A listener that stops (Firestore unreachable long enough for the client library to give up)
is noticed by `view()` and started again; until it has delivered its first snapshot the
view is not ready and `view()` raises NotReady (the caller reads the fleet instead).
"""

import datetime
import logging
import threading
from typing import Dict, List, Optional, Tuple

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
        self.watch = None
        self.lock = threading.Lock()

    def start(self) -> None:
        with self.lock:
            self.docs, self.read_at = {}, None
        self.watch = self.client.collection(self.name).on_snapshot(self._on_snapshot)

    def _on_snapshot(self, docs, changes, read_time) -> None:
        with self.lock:
            for change in changes:
                if change.type.name == "REMOVED":
                    self.docs.pop(change.document.id, None)
                else:
                    self.docs[change.document.id] = change.document.to_dict() or {}
            self.read_at = read_time
            self.version += 1
        count_ops(reads=max(1, len(changes)))  # billed: one read per document that changed

    def alive(self) -> bool:
        return self.watch is not None and self.watch.is_active

    def stop(self) -> None:
        if self.watch is not None:
            try:
                self.watch.unsubscribe()
            except Exception:  # noqa: BLE001 - best effort: the listener is discarded anyway
                pass


class FleetListener:
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
        # The last view built, reused for up to a second while no document changed: joining
        # 1,000 trains costs more than serving them.
        self._built = None
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
        """(as of when the listeners were last current, every train's view); NotReady."""
        self._revive()
        realtime, trains = self._collections
        now = now or datetime.datetime.now(datetime.timezone.utc)
        with self._built_lock:
            with realtime.lock, trains.lock:
                if realtime.read_at is None or trains.read_at is None:
                    raise NotReady("the fleet listeners have no snapshot yet")
                versions = (realtime.version, trains.version, self.restarts)
                built = self._built
                if built is not None and built[0] == versions and (now - built[1]).total_seconds() < 1:
                    return built[1], built[2]
                realtime_docs, train_docs = dict(realtime.docs), dict(trains.docs)
            ids = sorted(i for i in set(realtime_docs) | set(train_docs) if valid_id(i))
            views = [
                fleet.train_view(i, realtime_docs.get(i), train_docs.get(i), now, self._stale_after_s) for i in ids
            ]
            self._built = (versions, now, views)
            return now, views

    def stop(self) -> None:
        for collection in self._all():
            collection.stop()
