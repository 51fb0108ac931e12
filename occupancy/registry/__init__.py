"""The device registry in Firestore (replaces the retired Cloud IoT Core registry).

  devices/{device_id}: {train_id, enabled, door, registered_at, updated_at, keys}
  devices/{control_id}: {role: "control", trains, enabled, registered_at, updated_at, keys}
  trains/{train_id}:   {capacity, name, train_number, vehicle_id, trip, updated_at}

`keys`: up to 3 public keys a principal signs its messages with (occupancy.identity;
managed by occupancy.registry.keys). A control principal (an operator's system)
signs resets and terminus events of the trains it names ("*": all); door devices
never may.

Reads (snapshot, changes since, one device) serve the pipeline's cached view;
writes serve the `python -m occupancy.registry` CLI. Every write sets `updated_at`, which is
what lets the pipeline refresh with one query instead of a full scan.
`registered_at` changes only when a device is registered (again): the pipeline
then forgets the device's old `seq` (docs/design.md: a wiped device registers again).

The write and list functions take an optional `timeout` (seconds): it bounds
each call including the client library's own retries, which otherwise keep
trying an unreachable server for up to five minutes (measured: 300 s). The
CLI passes it; the pipeline's reads keep the library defaults.
"""
import datetime
import logging
from typing import Dict, List, NamedTuple, Optional, Tuple

from occupancy.store import count_ops
from occupancy.wire import ID_PATTERN, to_micros, valid_id

_LOGGER = logging.getLogger(__name__)

# How often a registration is re-read and re-tried when the document changes under it.
_REGISTER_ATTEMPTS = 3
# A train's realtime document holds every device's de-duplication memory; with
# documents.MAX_RANGES_PER_DEVICE this keeps it far below Firestore's 1 MiB
# (docs/sizing.md). A 16-car train with 8 doors a car has 128.
MAX_DEVICES_PER_TRAIN = 256


class RegistryError(ValueError):
    """A registry command that cannot be carried out, with a message for the user."""


class UnknownDevice(RegistryError):
    """The device is not registered."""


class RegistryConflict(RegistryError):
    """The registry's current state forbids the change (e.g. the device is on another train)."""


DOOR, CONTROL = "door", "control"
ALL_TRAINS = "*"


class DeviceEntry(NamedTuple):
    train_id: str
    enabled: bool
    registered_us: int
    door: Optional[str] = None
    keys: tuple = ()  # occupancy.identity.PublicKey, at most identity.MAX_KEYS
    role: str = DOOR
    trains: tuple = ()  # a control principal's trains (ALL_TRAINS: every one)

    def key(self, name: str):
        return next((k for k in self.keys if k.key_id == name), None)

    def controls(self, train_id: str) -> bool:
        return self.role == CONTROL and (ALL_TRAINS in self.trains or train_id in self.trains)


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
    if not data:
        return None
    keys = public_keys(data)
    if data.get("role") == CONTROL:
        trains = tuple(t for t in data.get("trains") or () if t == ALL_TRAINS or valid_id(t))
        return DeviceEntry(train_id="", enabled=bool(data.get("enabled", True)),
                           registered_us=_micros(data.get("registered_at")), keys=keys, role=CONTROL,
                           trains=trains)
    if not valid_id(data.get("train_id")):
        return None
    return DeviceEntry(train_id=data["train_id"], enabled=bool(data.get("enabled", True)),
                       registered_us=_micros(data.get("registered_at")), door=data.get("door"), keys=keys)


def public_keys(data: dict) -> tuple:
    """The well-formed keys of a registry document (a malformed one is left out, never fatal)."""
    from occupancy.identity import ALGORITHMS, PublicKey, expiry_us
    keys = []
    for item in data.get("keys") or ():
        if (isinstance(item, dict) and valid_id(item.get("key_id")) and item.get("alg") in ALGORITHMS
                and isinstance(item.get("public_key"), str)):
            expires = item.get("expires_at")
            keys.append(PublicKey(item["key_id"], item["alg"], item["public_key"],
                                  expiry_us(expires) if isinstance(expires, datetime.datetime) else 0))
    return tuple(keys)


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
    devices = list(client.collection(devices_collection).stream())
    trains = list(client.collection(trains_collection).stream())
    count_ops(reads=max(1, len(devices)) + max(1, len(trains)))  # a query bills at least one read
    for doc in devices:
        data = doc.to_dict()
        _track(snapshot, data)
        entry = device_entry(data)
        if entry and valid_id(doc.id):
            snapshot.devices[doc.id] = entry
    for doc in trains:
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
    devices = list(client.collection(devices_collection).where(filter=since).stream())
    trains = list(client.collection(trains_collection).where(filter=since).stream())
    count_ops(reads=max(1, len(devices)) + max(1, len(trains)))
    for doc in devices:
        data = doc.to_dict()
        _track(fresh, data)
        entry = device_entry(data)
        if entry and valid_id(doc.id):
            fresh.devices[doc.id] = entry
        else:
            fresh.devices.pop(doc.id, None)
    for doc in trains:
        data = doc.to_dict()
        _track(fresh, data)
        fresh.trains[doc.id] = train_entry(data)
    return fresh


def read_device(client, devices_collection: str, device_id: str) -> Optional[DeviceEntry]:
    doc = client.collection(devices_collection).document(device_id).get()
    count_ops(reads=1)
    return device_entry(doc.to_dict()) if doc.exists else None


# ---- writes and listings (the registry CLI) -------------------------------------

def rpc_options(timeout: Optional[float]) -> dict:
    """Keyword arguments that bound one Firestore call, retries included, to `timeout` seconds."""
    if timeout is None:
        return {}
    from google.api_core import retry as retries
    return {"retry": retries.Retry(predicate=retries.if_transient_error, initial=0.1,
                                   maximum=2.0, multiplier=2.0, timeout=timeout),
            "timeout": timeout}


def check_id(kind: str, value: str) -> None:
    """RegistryError (a 422 in the API) unless `value` is a valid id (the wire format's rule)."""
    if not valid_id(value):
        raise RegistryError(f"invalid {kind} {value!r}: must match {ID_PATTERN}")


def register_device(client, collection: str, device_id: str, train_id: str,
                    door: Optional[str] = None, *, timeout: Optional[float] = None) -> dict:
    """Registers a device to a train; a device already on another train needs `assign`.

    Registering again (same train) rewrites the whole entry: `enabled` true,
    `door` as given, and a new `registered_at`, so the pipeline forgets the
    device's old `seq`. The check and the write are one optimistic step: the
    write carries a precondition (document absent, or unchanged since it was
    read), so a concurrent `register`/`assign` cannot slip in between them.
    """
    from google.api_core import exceptions as gexc
    check_id("device id", device_id)
    check_id("train id", train_id)
    ref = client.collection(collection).document(device_id)
    data = device_document(train_id, door)
    for _ in range(_REGISTER_ATTEMPTS):
        existing = ref.get(**rpc_options(timeout))
        current = (existing.to_dict() or {}).get("train_id") if existing.exists else None
        if current not in (None, train_id):
            raise RegistryConflict(f"device {device_id} is registered to train {current}; "
                                f"use 'assign' to move it")
        if current is None:
            check_room(client, collection, train_id, 1, timeout)
        try:
            if existing.exists:
                ref.update(data, option=client.write_option(last_update_time=existing.update_time),
                           **rpc_options(timeout))
            else:
                ref.create(data, **rpc_options(timeout))
            return data
        except (gexc.Conflict, gexc.FailedPrecondition, gexc.NotFound):
            _LOGGER.info("Device %s changed while it was being registered; reading it again",
                         device_id)
    raise RegistryConflict(f"device {device_id} kept changing while being registered; try again")


def device_document(train_id: str, door: Optional[str]) -> dict:
    from google.cloud import firestore
    return {"train_id": train_id, "enabled": True, "door": door,
            "registered_at": firestore.SERVER_TIMESTAMP, "updated_at": firestore.SERVER_TIMESTAMP}


def check_room(client, collection: str, train_id: str, adding: int, timeout=None) -> None:
    """RegistryConflict if `train_id` would have more than MAX_DEVICES_PER_TRAIN devices."""
    from google.cloud.firestore_v1.base_query import FieldFilter
    query = client.collection(collection).where(filter=FieldFilter("train_id", "==", train_id))
    count = int(query.count().get(**rpc_options(timeout))[0][0].value)
    if count + adding > MAX_DEVICES_PER_TRAIN:
        raise RegistryConflict(f"train {train_id} has {count} devices; at most "
                               f"{MAX_DEVICES_PER_TRAIN} per train (its realtime document holds them all)")


def assign_device(client, collection: str, device_id: str, train_id: str, *,
                  timeout: Optional[float] = None) -> None:
    """Moves a registered device to another train (the prototype's update_train)."""
    check_room(client, collection, train_id, 1, timeout)
    _update_device(client, collection, device_id, {"train_id": train_id}, check_train=train_id,
                   timeout=timeout)


def set_enabled(client, collection: str, device_id: str, enabled: bool, *,
                timeout: Optional[float] = None) -> None:
    """Enables or disables a registered device (a disabled device's events are dead-lettered)."""
    _update_device(client, collection, device_id, {"enabled": enabled}, timeout=timeout)


def _update_device(client, collection, device_id, fields, check_train=None, timeout=None) -> None:
    from google.api_core import exceptions as gexc
    from google.cloud import firestore
    check_id("device id", device_id)
    if check_train is not None:
        check_id("train id", check_train)
    try:
        client.collection(collection).document(device_id).update(
            dict(fields, updated_at=firestore.SERVER_TIMESTAMP), **rpc_options(timeout))
    except gexc.NotFound:
        raise UnknownDevice(f"device {device_id} is not registered; use 'register'") from None


def set_train(client, collection: str, train_id: str, capacity: Optional[int],
              name: Optional[str] = None, *, train_number: Optional[str] = None,
              vehicle_id: Optional[str] = None, timeout: Optional[float] = None) -> None:
    """Creates or updates a train's capacity; `name`, `train_number` (its scheduled trips'
    `trip_short_name`, occupancy.schedule) and `vehicle_id` (its id in the operator's own
    VehiclePositions feed, api/enricher.py) are written only when given (else kept; "" clears)."""
    from google.cloud import firestore
    check_id("train id", train_id)
    if capacity is not None:
        check_capacity(capacity)
    data = {"capacity": capacity, "updated_at": firestore.SERVER_TIMESTAMP}
    if name is not None:
        data["name"] = name
    if train_number is not None:
        data["train_number"] = train_number.strip() or firestore.DELETE_FIELD
    if vehicle_id is not None:  # the operator's own id of this train in its VehiclePositions feed
        data["vehicle_id"] = vehicle_id.strip() or firestore.DELETE_FIELD
    client.collection(collection).document(train_id).set(data, merge=True, **rpc_options(timeout))


def assign_trip(client, collection: str, train_id: str, trip_id: Optional[str], start_date: Optional[str], *,
                timeout: Optional[float] = None) -> None:
    """An operator's assignment of a train to a scheduled trip on a service date (None: cleared,
    the train number applies again). The caller checks it against the static feed."""
    from google.cloud import firestore
    check_id("train id", train_id)
    ref = client.collection(collection).document(train_id)
    if not ref.get(**rpc_options(timeout)).exists:
        raise RegistryConflict(f"train {train_id} is not registered")
    value = ({"trip_id": trip_id, "start_date": start_date, "assigned_at": firestore.SERVER_TIMESTAMP}
             if trip_id else firestore.DELETE_FIELD)
    ref.update({"trip": value}, **rpc_options(timeout))


def check_capacity(capacity) -> None:
    if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity <= 0:
        raise RegistryError(f"capacity must be a positive integer, got {capacity!r}")


def list_devices(client, collection: str, train_id: Optional[str] = None, *,
                 timeout: Optional[float] = None) -> List[Tuple[str, dict]]:
    """(device_id, document) for every device, or for one train's devices, sorted by id.

    The documents are returned as stored, including entries the pipeline would
    ignore (e.g. a missing or invalid train_id), so that they can be seen and fixed.
    """
    query = client.collection(collection)
    if train_id is not None:
        from google.cloud.firestore_v1.base_query import FieldFilter
        check_id("train id", train_id)
        query = query.where(filter=FieldFilter("train_id", "==", train_id))
    return sorted((doc.id, doc.to_dict() or {}) for doc in query.stream(**rpc_options(timeout)))


def list_trains(client, collection: str, *,
                timeout: Optional[float] = None) -> List[Tuple[str, dict]]:
    """(train_id, document) for every train, sorted by id."""
    return sorted((doc.id, doc.to_dict() or {})
                  for doc in client.collection(collection).stream(**rpc_options(timeout)))


# ---- door health (occupancy.door_health), from the trips balanced at each terminus ----------

def assess_doors(client, devices_collection: str, trips_collection: str, train_id: Optional[str] = None,
                 rule=None, *, timeout: Optional[float] = None) -> Dict[str, object]:
    """device_id -> DoorHealth for every registered device (or one train's), written to each
    device's `health` field (not `updated_at`: the pipeline's registry view does not use it).

    One query per train for its newest `rule.window` trips (index: train, ended_at desc).
    """
    from google.cloud import firestore
    from google.cloud.firestore_v1.base_query import FieldFilter

    from occupancy import door_health
    rule = rule or door_health.Rule()
    by_train: Dict[str, List[str]] = {}
    for device_id, data in list_devices(client, devices_collection, train_id, timeout=timeout):
        if valid_id(data.get("train_id")):
            by_train.setdefault(data["train_id"], []).append(device_id)
    results = {}
    batch = client.batch()
    for train, devices in sorted(by_train.items()):
        query = (client.collection(trips_collection).where(filter=FieldFilter("train", "==", train))
                 .order_by("ended_at", direction=firestore.Query.DESCENDING).limit(rule.window))
        trips = [d.to_dict() for d in query.stream(**rpc_options(timeout))]
        count_ops(reads=max(1, len(trips)))
        health = door_health.assess(list(reversed(trips)), devices, rule)
        for device_id, h in health.items():
            batch.update(client.collection(devices_collection).document(device_id),
                         {"health": dict(h.as_document(), assessed_at=firestore.SERVER_TIMESTAMP)})
        results.update(health)
        if len(batch) >= 400:
            batch.commit(**rpc_options(timeout))
            batch = client.batch()
    if len(batch):
        batch.commit(**rpc_options(timeout))
    return results
