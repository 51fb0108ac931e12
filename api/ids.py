"""Path ids checked with the wire format's rule before anything reaches a Firestore path
(adapters.registry.check_id: its RegistryError is a 422, see api.app)."""

from fastapi import Path

from adapters.registry import check_id
from occupancy.wire import ID_PATTERN


def _checked(kind: str, value: str) -> str:
    check_id(kind, value)
    return value


def train_id(train_id: str = Path(description=f"A train id matching {ID_PATTERN}")) -> str:
    return _checked("train id", train_id)


def device_id(device_id: str = Path(description=f"A device id matching {ID_PATTERN}")) -> str:
    return _checked("device id", device_id)
