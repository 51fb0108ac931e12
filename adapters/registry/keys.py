"""Principals' public keys in the registry, and control principals (docs/design.md, "Device
identity").

A door device signs its counts with one of its keys; a control principal (an operator's
system) signs resets and terminus events of the trains it names. At most
`identity.MAX_KEYS` keys a principal, each with a key id and an optional expiry, as IoT
Core kept them: add the new key, move the device over, remove the old one, and no count is
refused on the way. The pipeline's registry view picks changes up within one refresh.
"""

import datetime
from typing import List, Optional, Sequence

from adapters.registry import check_id, rpc_options
from occupancy import identity
from occupancy.registry_entries import ALL_TRAINS, CONTROL, RegistryConflict, UnknownDevice, public_keys
from occupancy.wire import valid_id

_ATTEMPTS = 3


def add_key(
    client,
    collection: str,
    principal: str,
    name: str,
    pem: str,
    expires: Optional[datetime.datetime] = None,
    *,
    timeout: Optional[float] = None,
) -> identity.PublicKey:
    """Adds a PEM public key to a registered principal; RegistryError if it cannot be used.

    Args:
        client: the Firestore client.
        collection: the devices' collection (door devices and control principals).
        principal: the registered device or control principal.
        name: the key's id, unique among the principal's keys.
        pem: the PEM public key; its algorithm is read from it.
        expires: when the key stops being accepted (naive: UTC); None: never.
        timeout: seconds bounding each Firestore call, retries included; None: the library's defaults.

    Returns:
        The key as the pipeline reads it (expiry in microseconds, 0: none).

    Raises:
        RegistryError: an invalid principal or key id.
        RegistryConflict: a key that cannot be used, a key id already taken, already MAX_KEYS keys, or
            the document kept changing over all attempts.
        UnknownDevice: the principal is not registered.
    """
    check_id("device id", principal)
    check_id("key id", name)
    try:
        _, alg = identity.load_public_key(pem)
    except identity.IdentityError as e:
        raise RegistryConflict(str(e)) from None
    key = identity.PublicKey(name, alg, pem.strip() + "\n", identity.expiry_us(expires))

    def change(keys: List[dict]) -> List[dict]:
        if any(k.get("key_id") == name for k in keys):
            raise RegistryConflict(f"{principal} already has a key {name}; remove it first")
        if len(keys) >= identity.MAX_KEYS:
            raise RegistryConflict(f"{principal} has {len(keys)} keys, the most it may have; remove one first")
        return keys + [{"key_id": name, "alg": alg, "public_key": key.pem, "expires_at": expires}]

    _change_keys(client, collection, principal, change, timeout)
    return key


def remove_key(client, collection: str, principal: str, name: str, *, timeout: Optional[float] = None) -> None:
    """Removes one of a registered principal's public keys.

    Args:
        client: the Firestore client.
        collection: the devices' collection (door devices and control principals).
        principal: the registered device or control principal.
        name: the id of the key to remove.
        timeout: seconds bounding each Firestore call, retries included; None: the library's defaults.

    Raises:
        RegistryConflict: the principal has no such key, or its document kept changing over all attempts.
        UnknownDevice: the principal is not registered.
    """

    def change(keys: List[dict]) -> List[dict]:
        left = [k for k in keys if k.get("key_id") != name]
        if len(left) == len(keys):
            raise RegistryConflict(f"{principal} has no key {name}")
        return left

    _change_keys(client, collection, principal, change, timeout)


def list_keys(client, collection: str, principal: str, *, timeout: Optional[float] = None):
    """A registered principal's public keys.

    Args:
        client: the Firestore client.
        collection: the devices' collection (door devices and control principals).
        principal: the registered device or control principal.
        timeout: seconds bounding each Firestore call, retries included; None: the library's defaults.

    Returns:
        Its well-formed keys, as identity.PublicKey (a malformed one is left out).

    Raises:
        UnknownDevice: the principal is not registered.
    """
    snap = client.collection(collection).document(principal).get(**rpc_options(timeout))
    if not snap.exists:
        raise UnknownDevice(f"{principal} is not registered")
    return public_keys(snap.to_dict() or {})


def register_control(
    client, collection: str, principal: str, trains: Sequence[str], *, timeout: Optional[float] = None
) -> dict:
    """Registers (or updates) a control principal allowed to reset `trains` (["*"]: all).

    Args:
        client: the Firestore client.
        collection: the devices' collection (door devices and control principals).
        principal: the control principal's id (its document id).
        trains: the train ids it may reset, replacing any it had; "*": every train.
        timeout: seconds bounding each Firestore call, retries included; None: the library's defaults.

    Returns:
        The fields written (merged into the document; it is enabled), timestamps as firestore.SERVER_TIMESTAMP.

    Raises:
        RegistryError: an invalid principal id.
        RegistryConflict: no trains or an invalid train id, or `principal` is a door device.
    """
    from google.cloud import firestore

    check_id("control id", principal)
    trains = sorted(set(trains))
    if not trains or not all(t == ALL_TRAINS or valid_id(t) for t in trains):
        raise RegistryConflict(f"trains must be train ids or {ALL_TRAINS!r}, got {trains}")
    ref = client.collection(collection).document(principal)
    existing = ref.get(**rpc_options(timeout))
    if existing.exists and (existing.to_dict() or {}).get("role") != CONTROL:
        raise RegistryConflict(f"{principal} is a door device, not a control principal")
    data = {"role": CONTROL, "trains": trains, "enabled": True, "updated_at": firestore.SERVER_TIMESTAMP}
    if not existing.exists:
        data["registered_at"] = firestore.SERVER_TIMESTAMP
    ref.set(data, merge=True, **rpc_options(timeout))
    return data


def _change_keys(client, collection, principal, change, timeout) -> None:
    """Read, change, write back with a precondition (retried if the document changed between)."""
    from google.api_core import exceptions as gexc
    from google.cloud import firestore

    ref = client.collection(collection).document(principal)
    for _ in range(_ATTEMPTS):
        snap = ref.get(**rpc_options(timeout))
        if not snap.exists:
            raise UnknownDevice(f"{principal} is not registered; register it first")
        keys = list((snap.to_dict() or {}).get("keys") or [])
        try:
            ref.update(
                {"keys": change(keys), "updated_at": firestore.SERVER_TIMESTAMP},
                option=client.write_option(last_update_time=snap.update_time),
                **rpc_options(timeout),
            )
            return
        except (gexc.FailedPrecondition, gexc.Conflict):
            continue
    raise RegistryConflict(f"{principal} kept changing while its keys were being changed; try again")
