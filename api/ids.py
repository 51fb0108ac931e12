"""Path ids checked with the wire format's rule before anything reaches a Firestore path."""
from fastapi import HTTPException, Path

from occupancy.wire import ID_PATTERN, valid_id


def _checked(kind: str, value: str) -> str:
    if not valid_id(value):
        raise HTTPException(status_code=422, detail=f"invalid {kind} {value!r}: must match {ID_PATTERN}")
    return value


def train_id(train_id: str = Path(description=f"A train id matching {ID_PATTERN}")) -> str:
    return _checked("train id", train_id)


def device_id(device_id: str = Path(description=f"A device id matching {ID_PATTERN}")) -> str:
    return _checked("device id", device_id)
