"""The device registry in Firestore (replaces the retired Cloud IoT Core registry).

  devices/{device_id}: {train_id, enabled, door, registered_at, updated_at}
  trains/{train_id}:   {capacity, name, updated_at}

Reads (snapshot, changes since, one device) serve the pipeline's cached view;
writes serve the `device.registry` CLI. Every write sets `updated_at`, which is
what lets the pipeline refresh with one query instead of a full scan.
`registered_at` changes only when a device is registered (again): the pipeline
then forgets the device's old `seq` (DESIGN.md: a wiped device registers again).
"""
import datetime
from typing import Dict, NamedTuple, Optional

from occupancy.wire import ID_PATTERN, to_micros, valid_id


class RegistryError(ValueError):
    """A registry command that cannot be carried out, with a message for the user."""


class DeviceEntry(NamedTuple):
    train_id: str
    enabled: bool
    registered_us: int
    door: Optional[str] = None


class TrainEntry(NamedTuple):
    capacity: Optional[int]
    name: Optional[str] = None


class RegistrySnapshot:
    """A picklable view of the registry: what the pipeline's cache holds."""

    def __init__(self, devices=None, trains=None, updated_through=None):
        self.devices: Dict[str, DeviceEntry] = devices or {}
        self.trains: Dict[str, TrainEntry] = trains or {}
        # The newest `updated_at` seen: the next refresh asks for what came since.
        self.updated_through: Optional[datetime.datetime] = updated_through

    def capacity(self, train_id: str) -> Optional[int]:
        entry = self.trains.get(train_id)
        return entry.capacity if entry else None


def _micros(value) -> int:
    return to_micros(value) if isinstance(value, datetime.datetime) else 0


def device_entry(data: Optional[dict]) -> Optional[DeviceEntry]:
    if not data or not valid_id(data.get("train_id")):
        return None
    return DeviceEntry(train_id=data["train_id"], enabled=bool(data.get("enabled", True)),
                       registered_us=_micros(data.get("registered_at")), door=data.get("door"))


def train_entry(data: Optional[dict]) -> TrainEntry:
    data = data or {}
    capacity = data.get("capacity")
    if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity <= 0:
        capacity = None
    return TrainEntry(capacity=capacity, name=data.get("name"))


def _track(snapshot: RegistrySnapshot, data: dict) -> None:
    updated = data.get("updated_at")
    if isinstance(updated, datetime.datetime) and (
            snapshot.updated_through is None or updated > snapshot.updated_through):
        snapshot.updated_through = updated


def load_snapshot(client, devices_collection: str, trains_collection: str) -> RegistrySnapshot:
    """Reads the whole registry (once per job, and now and then to catch deletions)."""
    snapshot = RegistrySnapshot()
    for doc in client.collection(devices_collection).stream():
        data = doc.to_dict()
        _track(snapshot, data)
        entry = device_entry(data)
        if entry and valid_id(doc.id):
            snapshot.devices[doc.id] = entry
    for doc in client.collection(trains_collection).stream():
        data = doc.to_dict()
        _track(snapshot, data)
        snapshot.trains[doc.id] = train_entry(data)
    return snapshot


def load_changes(client, snapshot: RegistrySnapshot, devices_collection: str,
                 trains_collection: str) -> RegistrySnapshot:
    """A new snapshot: `snapshot` plus the documents updated since it was read.

    One query per collection: when nothing changed, that costs one read each.
    `>=` rather than `>` so that a write in the same microsecond is not missed.
    """
    if snapshot.updated_through is None:
        return load_snapshot(client, devices_collection, trains_collection)
    from google.cloud.firestore_v1.base_query import FieldFilter
    fresh = RegistrySnapshot(dict(snapshot.devices), dict(snapshot.trains), snapshot.updated_through)
    since = FieldFilter("updated_at", ">=", snapshot.updated_through)
    for doc in client.collection(devices_collection).where(filter=since).stream():
        data = doc.to_dict()
        _track(fresh, data)
        entry = device_entry(data)
        if entry:
            fresh.devices[doc.id] = entry
        else:
            fresh.devices.pop(doc.id, None)
    for doc in client.collection(trains_collection).where(filter=since).stream():
        data = doc.to_dict()
        _track(fresh, data)
        fresh.trains[doc.id] = train_entry(data)
    return fresh


def read_device(client, devices_collection: str, device_id: str) -> Optional[DeviceEntry]:
    doc = client.collection(devices_collection).document(device_id).get()
    return device_entry(doc.to_dict()) if doc.exists else None


# ---- writes (the registry CLI) -------------------------------------------------

def _check_id(kind: str, value: str) -> None:
    if not valid_id(value):
        raise RegistryError(f"invalid {kind} {value!r}: must match {ID_PATTERN}")


def register_device(client, collection: str, device_id: str, train_id: str,
                    door: Optional[str] = None) -> dict:
    """Registers a device to a train; a device already on another train needs `assign`."""
    from google.cloud import firestore
    _check_id("device id", device_id)
    _check_id("train id", train_id)
    ref = client.collection(collection).document(device_id)
    existing = ref.get()
    if existing.exists and (existing.to_dict() or {}).get("train_id") not in (None, train_id):
        raise RegistryError(f"device {device_id} is registered to train "
                            f"{existing.to_dict()['train_id']}; use 'assign' to move it")
    data = {"train_id": train_id, "enabled": True, "door": door,
            "registered_at": firestore.SERVER_TIMESTAMP, "updated_at": firestore.SERVER_TIMESTAMP}
    ref.set(data)
    return data


def assign_device(client, collection: str, device_id: str, train_id: str) -> None:
    """Moves a registered device to another train (the prototype's update_train)."""
    _update_device(client, collection, device_id, {"train_id": train_id}, check_train=train_id)


def set_enabled(client, collection: str, device_id: str, enabled: bool) -> None:
    _update_device(client, collection, device_id, {"enabled": enabled})


def _update_device(client, collection, device_id, fields, check_train=None) -> None:
    from google.cloud import firestore
    from google.api_core import exceptions as gexc
    _check_id("device id", device_id)
    if check_train is not None:
        _check_id("train id", check_train)
    try:
        client.collection(collection).document(device_id).update(
            dict(fields, updated_at=firestore.SERVER_TIMESTAMP))
    except gexc.NotFound:
        raise RegistryError(f"device {device_id} is not registered; use 'register'") from None


def set_train(client, collection: str, train_id: str, capacity: Optional[int],
              name: Optional[str] = None) -> None:
    from google.cloud import firestore
    _check_id("train id", train_id)
    if capacity is not None and capacity <= 0:
        raise RegistryError(f"capacity must be a positive integer, got {capacity}")
    client.collection(collection).document(train_id).set(
        {"capacity": capacity, "name": name, "updated_at": firestore.SERVER_TIMESTAMP})
