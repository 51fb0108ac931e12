"""Registry writes and listings, for the `python -m registry` CLI and the API (the
layout and the `timeout` rule: adapters/registry/__init__.py)."""

import logging
from typing import List, Optional, Tuple

from occupancy import registry_entries
from occupancy.registry_entries import RegistryConflict, RegistryError, UnknownDevice
from occupancy.wire import ID_PATTERN, valid_id

_LOGGER = logging.getLogger(__name__)
# How often a registration is re-read and re-tried when the document changes under it.
_REGISTER_ATTEMPTS = 3


def rpc_options(timeout: Optional[float]) -> dict:
    """Keyword arguments that bound one Firestore call, retries included, to `timeout` seconds."""
    if timeout is None:
        return {}
    from google.api_core import retry as retries

    return {
        "retry": retries.Retry(
            predicate=retries.if_transient_error, initial=0.1, maximum=2.0, multiplier=2.0, timeout=timeout
        ),
        "timeout": timeout,
    }


def check_id(kind: str, value: str) -> None:
    """RegistryError (a 422 in the API) unless `value` is a valid id (the wire format's rule)."""
    if not valid_id(value):
        raise RegistryError(f"invalid {kind} {value!r}: must match {ID_PATTERN}")


def register_device(
    client,
    collection: str,
    device_id: str,
    train_id: str,
    door: Optional[str] = None,
    *,
    again: bool = False,
    timeout: Optional[float] = None,
) -> dict:
    """Registers a new device to a train, enabled; returns what was written.

    A device already registered is refused (RegistryConflict) unless `again`: a device on
    another train needs `assign`, and registering one again is a decision (its counter was
    wiped), never an accident. Registering again (same train) gives a new `registered_at` and
    `assigned_at`, so that the pipeline forgets the device's old `seq` and refuses the counts it
    made before, and the door as given; `enabled` stays as it was (a disabled device, a stolen
    one, is never enabled by it). The check and the write are one optimistic step: the write
    carries a precondition (document absent, or unchanged since it was read), so a concurrent
    `register`/`assign` cannot slip in between them.

    Args:
        client: the Firestore client.
        collection: the devices' collection.
        device_id: the device's id (its document id).
        train_id: the train it counts for.
        door: the door it watches, stored as given (None: unknown).
        again: register a device already registered to this train again (its counter was wiped).
        timeout: seconds bounding each Firestore call, retries included; None: the library's defaults.

    Returns:
        The device's fields as written, timestamps as firestore.SERVER_TIMESTAMP; registering again,
        `enabled` is the value kept.

    Raises:
        RegistryError: an invalid device or train id.
        RegistryConflict: the device is on another train, already registered without `again`, the train
            is full (check_room), or the document kept changing over all attempts.
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
            raise RegistryConflict(f"device {device_id} is registered to train {current}; use 'assign' to move it")
        if existing.exists and not again:
            raise RegistryConflict(
                f"device {device_id} is already registered to train {train_id}; register it again only if its "
                'seq counter was wiped (--again; the API\'s "again": true)'
            )
        if current is None:
            check_room(client, collection, train_id, 1, timeout)
        try:
            if existing.exists:
                again_data = {k: v for k, v in data.items() if k != "enabled"}
                ref.update(
                    dict(again_data, assigned_at=data["registered_at"]),
                    option=client.write_option(last_update_time=existing.update_time),
                    **rpc_options(timeout),
                )
                return dict(again_data, enabled=bool((existing.to_dict() or {}).get("enabled", True)))
            ref.create(data, **rpc_options(timeout))
            return data
        except (gexc.Conflict, gexc.FailedPrecondition, gexc.NotFound):
            _LOGGER.info("Device %s changed while it was being registered; reading it again", device_id)
    raise RegistryConflict(f"device {device_id} kept changing while being registered; try again")


def device_document(train_id: str, door: Optional[str]) -> dict:
    from google.cloud import firestore

    return {
        "train_id": train_id,
        "enabled": True,
        "door": door,
        "registered_at": firestore.SERVER_TIMESTAMP,
        "updated_at": firestore.SERVER_TIMESTAMP,
    }


def check_room(client, collection: str, train_id: str, adding: int, timeout=None) -> None:
    """RegistryConflict if `train_id` would have more than MAX_DEVICES_PER_TRAIN devices.

    Args:
        client: the Firestore client.
        collection: the devices' collection (counted with one aggregation query).
        train_id: the train to count the devices of.
        adding: how many devices are about to be added to it.
        timeout: seconds bounding each Firestore call, retries included; None: the library's defaults.

    Raises:
        RegistryConflict: its devices plus `adding` would be more than MAX_DEVICES_PER_TRAIN.
    """
    from google.cloud.firestore_v1.base_query import FieldFilter

    query = client.collection(collection).where(filter=FieldFilter("train_id", "==", train_id))
    count = int(query.count().get(**rpc_options(timeout))[0][0].value)
    limit = registry_entries.MAX_DEVICES_PER_TRAIN  # read when called: the domain's one value
    if count + adding > limit:
        raise RegistryConflict(
            f"train {train_id} has {count} devices; at most {limit} per train (its realtime document holds them all)"
        )


def assign_device(client, collection: str, device_id: str, train_id: str, *, timeout: Optional[float] = None) -> None:
    """Moves a registered device to another train (the prototype's update_train); its counts
    made before the move (`assigned_at`) no longer count, on either train.

    Args:
        client: the Firestore client.
        collection: the devices' collection.
        device_id: the registered device to move.
        train_id: the train to move it to.
        timeout: seconds bounding each Firestore call, retries included; None: the library's defaults.

    Raises:
        RegistryError: an invalid device or train id.
        RegistryConflict: `train_id` has no room for another device (check_room).
        UnknownDevice: the device is not registered.
    """
    from google.cloud import firestore

    check_room(client, collection, train_id, 1, timeout)
    _update_device(
        client,
        collection,
        device_id,
        {"train_id": train_id, "assigned_at": firestore.SERVER_TIMESTAMP},
        check_train=train_id,
        timeout=timeout,
    )


def set_enabled(client, collection: str, device_id: str, enabled: bool, *, timeout: Optional[float] = None) -> None:
    """Enables or disables a registered device (a disabled device's events are dead-lettered).

    Args:
        client: the Firestore client.
        collection: the devices' collection.
        device_id: the registered device.
        enabled: whether its events are to be accepted.
        timeout: seconds bounding each Firestore call, retries included; None: the library's defaults.

    Raises:
        RegistryError: an invalid device id.
        UnknownDevice: the device is not registered.
    """
    _update_device(client, collection, device_id, {"enabled": enabled}, timeout=timeout)


def _update_device(client, collection, device_id, fields, check_train=None, timeout=None) -> None:
    from google.api_core import exceptions as gexc
    from google.cloud import firestore

    check_id("device id", device_id)
    if check_train is not None:
        check_id("train id", check_train)
    try:
        client.collection(collection).document(device_id).update(
            dict(fields, updated_at=firestore.SERVER_TIMESTAMP), **rpc_options(timeout)
        )
    except gexc.NotFound:
        raise UnknownDevice(f"device {device_id} is not registered; use 'register'") from None


def set_train(
    client,
    collection: str,
    train_id: str,
    capacity: Optional[int],
    name: Optional[str] = None,
    *,
    train_number: Optional[str] = None,
    vehicle_id: Optional[str] = None,
    timeout: Optional[float] = None,
) -> None:
    """Creates or updates a train's capacity; `name`, `train_number` (its scheduled trips'
    `trip_short_name`, occupancy.schedule) and `vehicle_id` (its id in the operator's own
    VehiclePositions feed, api/enricher.py) are written only when given (else kept; "" clears).

    Args:
        client: the Firestore client.
        collection: the trains' collection.
        train_id: the train's id (its document id).
        capacity: its capacity in passengers, a positive integer; None: stored as null (no capacity).
        name: its display name; None: kept.
        train_number: its scheduled trips' `trip_short_name`, stripped; None: kept; "": cleared.
        vehicle_id: its id in the operator's VehiclePositions feed, stripped; None: kept; "": cleared.
        timeout: seconds bounding each Firestore call, retries included; None: the library's defaults.

    Raises:
        RegistryError: an invalid train id, or a capacity that is not a positive integer.
    """
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


def assign_trip(
    client,
    collection: str,
    train_id: str,
    trip_id: Optional[str],
    start_date: Optional[str],
    *,
    timeout: Optional[float] = None,
) -> None:
    """An operator's assignment of a train to a scheduled trip on a service date (None: cleared,
    the train number applies again). The caller checks it against the static feed.

    Args:
        client: the Firestore client.
        collection: the trains' collection.
        train_id: the registered train.
        trip_id: the scheduled trip's GTFS `trip_id`; None or "": the assignment is cleared.
        start_date: the trip's service date, stored as given (GTFS `start_date`).
        timeout: seconds bounding each Firestore call, retries included; None: the library's defaults.

    Raises:
        RegistryError: an invalid train id.
        RegistryConflict: the train is not registered.
    """
    from google.cloud import firestore

    check_id("train id", train_id)
    ref = client.collection(collection).document(train_id)
    if not ref.get(**rpc_options(timeout)).exists:
        raise RegistryConflict(f"train {train_id} is not registered")
    value = (
        {"trip_id": trip_id, "start_date": start_date, "assigned_at": firestore.SERVER_TIMESTAMP}
        if trip_id
        else firestore.DELETE_FIELD
    )
    # updated_at as every registry write: the API's fleet reads ask for what changed since it.
    ref.update({"trip": value, "updated_at": firestore.SERVER_TIMESTAMP}, **rpc_options(timeout))


def check_capacity(capacity) -> None:
    if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity <= 0:
        raise RegistryError(f"capacity must be a positive integer, got {capacity!r}")


def list_devices(
    client, collection: str, train_id: Optional[str] = None, *, timeout: Optional[float] = None
) -> List[Tuple[str, dict]]:
    """(device_id, document) for every device, or for one train's devices, sorted by id.

    The documents are returned as stored, including entries the pipeline would
    ignore (e.g. a missing or invalid train_id), so that they can be seen and fixed.

    Args:
        client: the Firestore client.
        collection: the devices' collection.
        train_id: list only this train's devices; None: every device, control principals included.
        timeout: seconds bounding each Firestore call, retries included; None: the library's defaults.

    Raises:
        RegistryError: an invalid `train_id`.
    """
    query = client.collection(collection)
    if train_id is not None:
        from google.cloud.firestore_v1.base_query import FieldFilter

        check_id("train id", train_id)
        query = query.where(filter=FieldFilter("train_id", "==", train_id))
    return sorted((doc.id, doc.to_dict() or {}) for doc in query.stream(**rpc_options(timeout)))


def list_trains(client, collection: str, *, timeout: Optional[float] = None) -> List[Tuple[str, dict]]:
    """(train_id, document) for every train, sorted by id.

    Args:
        client: the Firestore client.
        collection: the trains' collection.
        timeout: seconds bounding each Firestore call, retries included; None: the library's defaults.
    """
    return sorted((doc.id, doc.to_dict() or {}) for doc in client.collection(collection).stream(**rpc_options(timeout)))
