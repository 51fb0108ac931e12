"""The device registry in Firestore (replaces the retired Cloud IoT Core registry): its reads.

  devices/{device_id}: {train_id, enabled, door, registered_at, assigned_at, updated_at, keys}
  devices/{control_id}: {role: "control", trains, enabled, registered_at, updated_at, keys}
  trains/{train_id}:   {capacity, name, train_number, vehicle_id, trip, updated_at}

`keys`: up to 3 public keys a principal signs its messages with (occupancy.identity;
managed by adapters.registry.keys). A control principal (an operator's system)
signs resets and terminus events of the trains it names ("*": all); door devices
never may.

Reads (snapshot, changes since, one device; here) serve the pipeline's cached view;
writes (adapters/registry/writes.py) serve the `python -m registry` CLI
and the API; door health (adapters/registry/health.py) the CLI's `health`. Every write sets `updated_at`, which is
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
from typing import Optional

from adapters.store import count_ops
from occupancy.registry_entries import DeviceEntry, RegistrySnapshot, device_entry, train_entry
from occupancy.wire import valid_id


def _track(snapshot: RegistrySnapshot, data: dict) -> None:
    updated = data.get("updated_at")
    if isinstance(updated, datetime.datetime) and (
        snapshot.updated_through is None or updated > snapshot.updated_through
    ):
        snapshot.updated_through = updated


def load_snapshot(client, devices_collection: str, trains_collection: str) -> RegistrySnapshot:
    """Reads the whole registry (once per job, and now and then to catch deletions).

    Args:
        client: the Firestore client.
        devices_collection: the devices' collection (door devices and control principals).
        trains_collection: the trains' collection.

    Returns:
        Every train, and every device with a usable document and a valid id; `updated_through` the
        newest `updated_at` read.
    """
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

    Args:
        client: the Firestore client.
        snapshot: the snapshot read last (not changed); without `updated_through` the whole registry is read.
        devices_collection: the devices' collection.
        trains_collection: the trains' collection.

    Returns:
        A new snapshot; a device whose updated document is no longer usable is dropped from it.
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
    `since` (`>=`, as load_changes).

    Args:
        client: the Firestore client.
        trains_collection: the trains' collection.
        since: read only the trains whose `updated_at` is at or after it; None: every train.

    Returns:
        A snapshot of the trains read, without devices; `updated_through` the newest `updated_at` read,
        or `since` when none is newer.
    """
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
    """One device's registry entry, read from Firestore.

    Args:
        client: the Firestore client.
        devices_collection: the devices' collection.
        device_id: the device's document id.

    Returns:
        The device's entry; None if it is not registered or its document is not usable.
    """
    doc = client.collection(devices_collection).document(device_id).get()
    count_ops(reads=1)
    return device_entry(doc.to_dict()) if doc.exists else None


# The writes, listings and door health live in their own modules; the package is their one name
# (`registry.register_device`, ...), as the CLI, the API and the tests call them.
from adapters.registry.health import assess_doors  # noqa: E402, F401 (they import the reads above)
from adapters.registry.writes import (  # noqa: E402, F401
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
