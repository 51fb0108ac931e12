"""The fleet registry over HTTP (the prototype's `list_devices` and `update_train`, and the
rest of what `python -m registry` does). Every endpoint needs an operator's token.

Writes go through `adapters.registry` with the same checks as the CLI; the
pipeline picks them up on its next registry refresh (`--registry_refresh_s`).
"""

import logging
from typing import Optional

from fastapi import APIRouter, Depends, Query, Request, Response

from adapters import registry
from adapters.store import count_ops
from api import ids
from api.auth import OPERATOR_RESPONSES, require_operator
from api.deps import ClientDep, SettingsDep, get_client
from api.models import Device, DeviceList, NewDevice, TrainAssignment, TrainSettings, TrainSettingsOut
from api.services import services_of
from occupancy import registry_entries
from occupancy.wire import valid_id

_LOGGER = logging.getLogger(__name__)
router = APIRouter(
    tags=["fleet registry"],
    dependencies=[Depends(require_operator)],
    responses=OPERATOR_RESPONSES,
)


def _seen_by_train(client, settings, train_ids) -> dict:
    """train_id -> realtime `devices_seen`, with one batched read for all the trains."""
    refs = [client.collection(settings.realtime_collection).document(t) for t in sorted(train_ids)]
    if not refs:
        return {}
    docs = list(client.get_all(refs, timeout=settings.firestore_timeout_s))
    count_ops(reads=len(refs))
    return {doc.id: (doc.to_dict() or {}).get("devices_seen") or {} for doc in docs if doc.exists}


def device_out(device_id: str, data: dict, seen: Optional[dict]) -> dict:
    seen = seen or {}
    return dict(
        device_id=device_id,
        train_id=data.get("train_id"),
        door=data.get("door"),
        enabled=bool(data.get("enabled", True)),
        registered_at=data.get("registered_at"),
        updated_at=data.get("updated_at"),
        last_seen=seen.get("last_seen"),
        seq=seen.get("seq"),
        health=data.get("health"),
    )


@router.get("/v1/devices", response_model=DeviceList, summary="Every device (the prototype's list_devices)")
def list_devices(
    request: Request,
    settings: SettingsDep,
    client: ClientDep,
    train: Optional[str] = Query(None, description="Only this train's devices."),
    enabled: Optional[bool] = Query(None, description="Only enabled (true) or disabled (false)."),
):
    """Registry entries joined with `last_seen` / `seq` from their train's realtime document."""
    entries = registry.list_devices(client, settings.devices_collection, train, timeout=settings.firestore_timeout_s)
    count_ops(reads=max(1, len(entries)))
    if enabled is not None:
        entries = [(d, data) for d, data in entries if bool(data.get("enabled", True)) is enabled]
    seen = _seen_by_train(
        client, settings, {data.get("train_id") for _, data in entries if valid_id(data.get("train_id"))}
    )
    return {"devices": [device_out(d, data, seen.get(data.get("train_id"), {}).get(d)) for d, data in entries]}


@router.post(
    "/v1/devices",
    status_code=201,
    response_model=Device,
    summary="Register a device",
    responses={
        409: {"description": "Already registered (again: true to register it again), or on another train"},
        422: {"description": "Invalid id"},
    },
)
def register(body: NewDevice, request: Request, settings: SettingsDep, client: ClientDep, response: Response):
    """As `registry register`: a device on another train must be moved with PUT .../train; one
    already registered is registered again only with `again: true`, which never enables it."""
    registry.register_device(
        client,
        settings.devices_collection,
        body.device_id,
        body.train_id,
        body.door,
        again=body.again,
        timeout=settings.firestore_timeout_s,
    )
    _LOGGER.info("Registered device %s to train %s", body.device_id, body.train_id)
    response.headers["Location"] = f"/v1/devices/{body.device_id}"
    return _read_device(client, settings, body.device_id)


@router.put(
    "/v1/devices/{device_id}/train",
    response_model=Device,
    summary="Move a device to another train (the prototype's update_train)",
    responses={404: {"description": "Unknown device"}, 422: {"description": "Invalid id"}},
)
def move(
    body: TrainAssignment,
    request: Request,
    settings: SettingsDep,
    client: ClientDep,
    device_id: str = Depends(ids.device_id),
):
    registry.assign_device(
        client, settings.devices_collection, device_id, body.train_id, timeout=settings.firestore_timeout_s
    )
    _LOGGER.info("Moved device %s to train %s", device_id, body.train_id)
    return _read_device(client, settings, device_id)


@router.post(
    "/v1/devices/{device_id}/enable",
    response_model=Device,
    summary="Enable a device",
    responses={404: {"description": "Unknown device"}},
)
def enable(request: Request, device_id: str = Depends(ids.device_id), client=Depends(get_client)):
    return _set_enabled(request, client, device_id, True)


@router.post(
    "/v1/devices/{device_id}/disable",
    response_model=Device,
    summary="Disable a device (its events are dead-lettered)",
    responses={404: {"description": "Unknown device"}},
)
def disable(request: Request, device_id: str = Depends(ids.device_id), client=Depends(get_client)):
    return _set_enabled(request, client, device_id, False)


def _set_enabled(request, client, device_id, enabled):
    settings = services_of(request).settings
    registry.set_enabled(client, settings.devices_collection, device_id, enabled, timeout=settings.firestore_timeout_s)
    _LOGGER.info("%s device %s", "Enabled" if enabled else "Disabled", device_id)
    return _read_device(client, settings, device_id)


@router.put(
    "/v1/trains/{train_id}",
    summary="Set a train's capacity and name",
    response_model=TrainSettingsOut,
    responses={422: {"description": "Invalid id or capacity"}},
)
def set_train(
    body: TrainSettings,
    request: Request,
    settings: SettingsDep,
    client: ClientDep,
    train_id: str = Depends(ids.train_id),
) -> dict:
    """As `registry train`: creates the train or updates it; a name not given is kept."""
    registry.set_train(
        client, settings.trains_collection, train_id, body.capacity, body.name, timeout=settings.firestore_timeout_s
    )
    doc = client.collection(settings.trains_collection).document(train_id).get(timeout=settings.firestore_timeout_s)
    count_ops(reads=1)
    data = doc.to_dict() or {}
    return {
        "train_id": train_id,
        "capacity": data.get("capacity"),
        "name": data.get("name"),
        "updated_at": data.get("updated_at"),
    }


def _read_device(client, settings, device_id: str) -> dict:
    doc = client.collection(settings.devices_collection).document(device_id).get(timeout=settings.firestore_timeout_s)
    count_ops(reads=1)
    if not doc.exists:
        raise registry_entries.UnknownDevice(f"device {device_id} is not registered")
    data = doc.to_dict() or {}
    seen = _seen_by_train(client, settings, {data["train_id"]} if valid_id(data.get("train_id")) else set())
    return device_out(device_id, data, seen.get(data.get("train_id"), {}).get(device_id))
