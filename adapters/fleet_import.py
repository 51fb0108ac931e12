"""Registering a whole fleet at once: `python -m registry import FLEET.csv` and the benchmarks.

One device at a time (`register`) is a read and a conditional write per
device: fine for an operator, slow for a thousand trains. This checks the
whole list against the registry first (one query each for devices and trains)
and then writes in batches of 500.
"""

import csv
from typing import Dict, List, Optional, TextIO, Tuple

from adapters import registry
from occupancy import registry_entries
from occupancy.registry_entries import RegistryConflict, RegistryError, UnknownDevice

CSV_COLUMNS = ("train_id", "capacity", "name", "device_id", "door")
# Optional: a PEM public key file per device (relative to the CSV), registered as key `k1`.
KEY_COLUMN = "public_key_file"
KEY_NAME = "k1"


def read_csv(stream: TextIO, directory: str = ".") -> Tuple[List[Tuple[str, int, Optional[str]]], List[tuple]]:
    """(trains, devices) from CSV rows train_id,capacity,name,device_id,door[,public_key_file]
    (a header row first). Devices are (id, train, door, public key PEM or None).

    A train's capacity and name are taken from its first row; name, door and the key file may be
    empty; a key file is read relative to `directory`.
    """
    import os

    reader = csv.DictReader(stream)
    missing = [c for c in ("train_id", "capacity", "device_id") if c not in (reader.fieldnames or [])]
    if missing:
        raise RegistryError(f"the CSV needs the columns {', '.join(CSV_COLUMNS)}; missing {', '.join(missing)}")
    trains: Dict[str, Tuple[str, int, Optional[str]]] = {}
    devices = []
    for line, row in enumerate(reader, start=2):
        train_id = (row.get("train_id") or "").strip()
        try:
            capacity = int(row.get("capacity") or "")
        except ValueError:
            raise RegistryError(f"line {line}: capacity {row.get('capacity')!r} is not an integer") from None
        trains.setdefault(train_id, (train_id, capacity, (row.get("name") or "").strip() or None))
        pem, key_file = None, (row.get(KEY_COLUMN) or "").strip()
        if key_file:
            try:
                with open(os.path.join(directory, key_file)) as f:
                    pem = f.read()
            except OSError as e:
                raise RegistryError(f"line {line}: cannot read {key_file}: {e.strerror}") from None
        devices.append(((row.get("device_id") or "").strip(), train_id, (row.get("door") or "").strip() or None, pem))
    return list(trains.values()), devices


def import_fleet(
    client,
    devices_collection: str,
    trains_collection: str,
    trains: List[Tuple[str, int, Optional[str]]],
    devices: List[tuple],
    *,
    timeout: Optional[float] = None,
) -> Dict[str, int]:
    """Registers a whole fleet in batches: trains (id, capacity, name), devices (id, train, door)
    or (id, train, door, public key PEM or None).

    A device's key is registered as `k1` on a device created now or one that has no key yet
    (a device with keys keeps them: rotate with `key add` / `key remove`).

    Everything is checked before anything is written: ids, capacities, every
    device's train among `trains` or already registered, a device already on
    another train (RegistryConflict: move it with `assign`), at most
    registry_entries.MAX_DEVICES_PER_TRAIN per train. Trains are created or updated (a name of
    None is kept); devices already on their train are left as they are (their
    seq history kept); the others are created. Returns the counts written.

    Args:
        client: the Firestore client.
        devices_collection: the devices' collection.
        trains_collection: the trains' collection.
        trains: (train_id, capacity, name or None) of each train to create or update.
        devices: (device_id, train_id, door or None[, public key PEM or None]) of each device.
        timeout: seconds bounding each Firestore call (listing, batch commit), retries included; None: the
            library's defaults.

    Returns:
        {"trains", "devices_created", "devices_unchanged", "keys_registered"}: how many of each.

    Raises:
        RegistryError: an invalid id or capacity, or a device listed twice.
        UnknownDevice: a device's train is neither in `trains` nor registered.
        RegistryConflict: a device on another train, a train with too many devices, or a key that cannot
            be used.
    """
    from google.cloud import firestore

    for train_id, capacity, _ in trains:
        registry.check_id("train id", train_id)
        registry.check_capacity(capacity)
    listed = registry.list_devices(client, devices_collection, timeout=timeout)
    existing = {device_id: doc.get("train_id") for device_id, doc in listed}
    keyless = {device_id for device_id, doc in listed if not doc.get("keys")}
    known_trains = {t for t, _ in registry.list_trains(client, trains_collection, timeout=timeout)}
    known_trains.update(t for t, _, _ in trains)
    per_train: Dict[str, int] = {}
    for train_id in existing.values():
        per_train[train_id] = per_train.get(train_id, 0) + 1
    new, seen, keyed = [], set(), []
    for device_id, train_id, door, *pem in devices:
        pem = pem[0] if pem else None
        key = _key_document(device_id, pem) if pem else None
        registry.check_id("device id", device_id)
        registry.check_id("train id", train_id)
        if device_id in seen:
            raise RegistryError(f"device {device_id} is listed twice")
        seen.add(device_id)
        if train_id not in known_trains:
            raise UnknownDevice(f"device {device_id}: train {train_id} is neither listed nor registered")
        current = existing.get(device_id)
        if current is not None and current != train_id:
            raise RegistryConflict(f"device {device_id} is registered to train {current}; use 'assign' to move it")
        if current is None:
            new.append((device_id, train_id, door, key))
            per_train[train_id] = per_train.get(train_id, 0) + 1
        elif key is not None and device_id in keyless:
            keyed.append((device_id, key))
    limit = registry_entries.MAX_DEVICES_PER_TRAIN
    full = sorted(t for t, n in per_train.items() if n > limit)
    if full:
        raise RegistryConflict(f"train {full[0]} would have {per_train[full[0]]} devices; at most {limit} per train")
    batch = client.batch()
    for train_id, capacity, name in trains:
        data = {"capacity": capacity, "updated_at": firestore.SERVER_TIMESTAMP}
        if name is not None:
            data["name"] = name
        batch.set(client.collection(trains_collection).document(train_id), data, merge=True)
        batch = _full_batch(client, batch, timeout)
    for device_id, train_id, door, key in new:
        document = registry.device_document(train_id, door)
        if key is not None:
            document["keys"] = [key]
        batch.create(client.collection(devices_collection).document(device_id), document)
        batch = _full_batch(client, batch, timeout)
    for device_id, key in keyed:
        batch.update(
            client.collection(devices_collection).document(device_id),
            {"keys": [key], "updated_at": firestore.SERVER_TIMESTAMP},
        )
        batch = _full_batch(client, batch, timeout)
    if len(batch):
        batch.commit(**registry.rpc_options(timeout))
    return {
        "trains": len(trains),
        "devices_created": len(new),
        "devices_unchanged": len(devices) - len(new),
        "keys_registered": sum(k is not None for *_, k in new) + len(keyed),
    }


def _key_document(device_id: str, pem: str) -> dict:
    from occupancy import identity

    try:
        _, alg = identity.load_public_key(pem)
    except identity.IdentityError as e:
        raise RegistryConflict(f"device {device_id}: {e}") from None
    return {"key_id": KEY_NAME, "alg": alg, "public_key": pem.strip() + "\n", "expires_at": None}


def _full_batch(client, batch, timeout):
    """Commits a batch once it holds Firestore's 500 writes; returns the batch to go on with."""
    if len(batch) < 500:
        return batch
    batch.commit(**registry.rpc_options(timeout))
    return client.batch()
