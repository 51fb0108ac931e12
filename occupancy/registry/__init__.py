"""The device registry in Firestore (replaces the retired Cloud IoT Core registry).

  devices/{device_id}: {train_id, enabled, door, registered_at, assigned_at, updated_at, keys}
  devices/{control_id}: {role: "control", trains, enabled, registered_at, updated_at, keys}
  trains/{train_id}:   {capacity, name, train_number, vehicle_id, trip, updated_at}

`keys`: up to 3 public keys a principal signs its messages with (occupancy.identity;
managed by occupancy.registry.keys). A control principal (an operator's system)
signs resets and terminus events of the trains it names ("*": all); door devices
never may.

Reads (snapshot, changes since, one device; here) serve the pipeline's cached view;
writes (occupancy/registry/writes.py) serve the `python -m occupancy.registry` CLI
and the API; door health (occupancy/registry/health.py) the CLI's `health`. Every write sets `updated_at`, which is
what lets the pipeline refresh with one query instead of a full scan.
`registered_at` changes only when a device is registered (again): the pipeline
then forgets the device's old `seq` (docs/design.md: a wiped device registers again).
`assigned_at` is set when a device is moved to another train or registered again (not at
its first registration, so that a backfill of counts made before it still counts): the
pipeline refuses a count of the device made before it (`before_assignment`), so that what
a device sent for its old train, or before it was registered again, never counts again.

The write and list functions take an optional `timeout` (seconds): it bounds
each call including the client library's own retries, which otherwise keep
trying an unreachable server for up to five minutes (measured: 300 s). The
CLI passes it; the pipeline's reads keep the library defaults.
"""

import datetime
import logging
from typing import Dict, NamedTuple, Optional, Tuple

from occupancy.store import count_ops
from occupancy.wire import to_micros, valid_id

_LOGGER = logging.getLogger(__name__)

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
    # When the device was last moved to `train_id` or registered again (0: never, or in a
    # document written before `assigned_at`): its counts made before it are refused.
    assigned_us: int = 0

    def key(self, name: str):
        return next((k for k in self.keys if k.key_id == name), None)

    def controls(self, train_id: str) -> bool:
        return self.role == CONTROL and (ALL_TRAINS in self.trains or train_id in self.trains)


class TrainEntry(NamedTuple):
    capacity: Optional[int]
    name: Optional[str] = None
    # What attaches the train to its scheduled trip (occupancy.schedule.trip_of): its number
    # and an operator's assignment, (trip_id, start_date).
    train_number: Optional[str] = None
    trip: Optional[Tuple[str, str]] = None

    def schedule_fields(self) -> dict:
        """The fields of the train's registry document occupancy.schedule.trip_of reads."""
        trip = {"trip_id": self.trip[0], "start_date": self.trip[1]} if self.trip else None
        return {"train_number": self.train_number, "trip": trip}


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
        return DeviceEntry(
            train_id="",
            enabled=bool(data.get("enabled", True)),
            registered_us=_micros(data.get("registered_at")),
            keys=keys,
            role=CONTROL,
            trains=trains,
        )
    if not valid_id(data.get("train_id")):
        return None
    return DeviceEntry(
        train_id=data["train_id"],
        enabled=bool(data.get("enabled", True)),
        registered_us=_micros(data.get("registered_at")),
        door=data.get("door"),
        keys=keys,
        assigned_us=_micros(data.get("assigned_at")),
    )


def public_keys(data: dict) -> tuple:
    """The well-formed keys of a registry document (a malformed one is left out, never fatal)."""
    from occupancy.identity import ALGORITHMS, PublicKey, expiry_us

    keys = []
    for item in data.get("keys") or ():
        if (
            isinstance(item, dict)
            and valid_id(item.get("key_id"))
            and item.get("alg") in ALGORITHMS
            and isinstance(item.get("public_key"), str)
        ):
            expires = item.get("expires_at")
            keys.append(
                PublicKey(
                    item["key_id"],
                    item["alg"],
                    item["public_key"],
                    expiry_us(expires) if isinstance(expires, datetime.datetime) else 0,
                )
            )
    return tuple(keys)


def train_entry(data: Optional[dict]) -> TrainEntry:
    data = data or {}
    capacity = data.get("capacity")
    if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity <= 0:
        capacity = None
    number = data.get("train_number")
    trip = data.get("trip")
    assigned = None
    if isinstance(trip, dict) and trip.get("trip_id") and trip.get("start_date"):
        assigned = (str(trip["trip_id"]), str(trip["start_date"]))
    return TrainEntry(
        capacity=capacity,
        name=data.get("name"),
        train_number=str(number) if number not in (None, "") else None,
        trip=assigned,
    )


def _track(snapshot: RegistrySnapshot, data: dict) -> None:
    updated = data.get("updated_at")
    if isinstance(updated, datetime.datetime) and (
        snapshot.updated_through is None or updated > snapshot.updated_through
    ):
        snapshot.updated_through = updated


def load_snapshot(client, devices_collection: str, trains_collection: str) -> RegistrySnapshot:
    """Reads the whole registry (once per job, and now and then to catch deletions)."""
    snapshot = load_trains(client, trains_collection)
    devices = list(client.collection(devices_collection).stream())
    count_ops(reads=max(1, len(devices)))  # a query bills at least one read
    for doc in devices:
        data = doc.to_dict()
        _track(snapshot, data)
        entry = device_entry(data)
        if entry and valid_id(doc.id):
            snapshot.devices[doc.id] = entry
    return snapshot


def load_changes(
    client, snapshot: RegistrySnapshot, devices_collection: str, trains_collection: str
) -> RegistrySnapshot:
    """A new snapshot: `snapshot` plus the documents updated since it was read.

    One query per collection: when nothing changed, that costs one read each.
    `>=` rather than `>` so that a write in the same microsecond is not missed.
    """
    if snapshot.updated_through is None:
        return load_snapshot(client, devices_collection, trains_collection)
    from google.cloud.firestore_v1.base_query import FieldFilter

    trains = load_trains(client, trains_collection, since=snapshot.updated_through)
    fresh = RegistrySnapshot(dict(snapshot.devices), {**snapshot.trains, **trains.trains}, trains.updated_through)
    since = FieldFilter("updated_at", ">=", snapshot.updated_through)
    devices = list(client.collection(devices_collection).where(filter=since).stream())
    count_ops(reads=max(1, len(devices)))
    for doc in devices:
        data = doc.to_dict()
        _track(fresh, data)
        entry = device_entry(data)
        if entry and valid_id(doc.id):
            fresh.devices[doc.id] = entry
        else:
            fresh.devices.pop(doc.id, None)
    return fresh


def load_trains(client, trains_collection: str, since: Optional[datetime.datetime] = None) -> RegistrySnapshot:
    """The trains alone (a snapshot without devices): all of them, or those updated since
    `since` (`>=`, as load_changes)."""
    snapshot = RegistrySnapshot(updated_through=since)
    query = client.collection(trains_collection)
    if since is not None:
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = query.where(filter=FieldFilter("updated_at", ">=", since))
    docs = list(query.stream())
    count_ops(reads=max(1, len(docs)))
    for doc in docs:
        data = doc.to_dict()
        _track(snapshot, data)
        snapshot.trains[doc.id] = train_entry(data)
    return snapshot


def read_device(client, devices_collection: str, device_id: str) -> Optional[DeviceEntry]:
    doc = client.collection(devices_collection).document(device_id).get()
    count_ops(reads=1)
    return device_entry(doc.to_dict()) if doc.exists else None


# The writes, listings and door health live in their own modules; the package is their one name
# (`registry.register_device`, ...), as the CLI, the API and the tests call them.
from occupancy.registry.health import assess_doors  # noqa: E402, F401 (they import the reads above)
from occupancy.registry.writes import (  # noqa: E402, F401
    assign_device,
    assign_trip,
    check_capacity,
    check_id,
    check_room,
    device_document,
    list_devices,
    list_trains,
    register_device,
    rpc_options,
    set_enabled,
    set_train,
)
