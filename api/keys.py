"""A device's public keys over HTTP (as `python -m registry key ...`): list, add, remove.
Every endpoint needs an operator's token; the pipeline picks changes up within its registry
refresh (docs/design.md, "Device identity")."""

import datetime
import logging
from typing import List, Optional

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from adapters.registry import keys
from api import ids
from api.auth import OPERATOR_RESPONSES, require_operator
from api.deps import ClientDep, SettingsDep
from api.models import RequestTime

_LOGGER = logging.getLogger(__name__)
router = APIRouter(
    tags=["device keys"],
    dependencies=[Depends(require_operator)],
    responses={**OPERATOR_RESPONSES, 404: {"description": "Unknown device"}},
)


class Key(BaseModel):
    key_id: str
    alg: str = Field(description="EdDSA, ES256 or RS256")
    public_key: str = Field(description="PEM")
    expires_at: Optional[datetime.datetime] = None


class NewKey(BaseModel):
    key_id: str = "k1"
    public_key: str = Field(description="PEM public key: Ed25519, EC P-256 or RSA 2048+")
    expires_at: Optional[RequestTime] = Field(None, description="ISO 8601, from 2000 to 2100; none: never.")


class KeyList(BaseModel):
    device_id: str
    keys: List[Key]


def _out(key) -> Key:
    expires = datetime.datetime.fromtimestamp(key.expires_us / 1e6, datetime.timezone.utc) if key.expires_us else None
    return Key(key_id=key.key_id, alg=key.alg, public_key=key.pem, expires_at=expires)


@router.get("/v1/devices/{device_id}/keys", response_model=KeyList, summary="A device's public keys")
def list_keys(request: Request, settings: SettingsDep, client: ClientDep, device_id: str = Depends(ids.device_id)):
    found = keys.list_keys(client, settings.devices_collection, device_id, timeout=settings.firestore_timeout_s)
    return KeyList(device_id=device_id, keys=[_out(k) for k in found])


@router.post(
    "/v1/devices/{device_id}/keys",
    status_code=201,
    response_model=Key,
    summary="Add a public key",
    responses={409: {"description": "Not a usable key, a key of that id exists, or 3 keys already"}},
)
def add_key(
    body: NewKey,
    request: Request,
    settings: SettingsDep,
    client: ClientDep,
    response: Response,
    device_id: str = Depends(ids.device_id),
):
    key = keys.add_key(
        client,
        settings.devices_collection,
        device_id,
        body.key_id,
        body.public_key,
        body.expires_at,
        timeout=settings.firestore_timeout_s,
    )
    _LOGGER.info("Added key %s to %s", body.key_id, device_id)
    response.headers["Location"] = f"/v1/devices/{device_id}/keys/{body.key_id}"
    return _out(key)


@router.delete(
    "/v1/devices/{device_id}/keys/{key_id}",
    status_code=204,
    summary="Remove a public key",
    responses={409: {"description": "The device has no such key"}},
)
def remove_key(
    key_id: str, request: Request, settings: SettingsDep, client: ClientDep, device_id: str = Depends(ids.device_id)
):
    keys.remove_key(client, settings.devices_collection, device_id, key_id, timeout=settings.firestore_timeout_s)
    _LOGGER.info("Removed key %s of %s", key_id, device_id)
    return Response(status_code=204)
