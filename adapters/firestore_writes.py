"""Firestore `Write` messages for the documents the job writes, built as protobuf directly.

The client library builds each write through proto-plus, a Python wrapper per value:
a realtime document (ten devices, four values each) took about 500 µs of CPU to turn into
a `Write`, and the sink's writes were the largest share of the job's CPU in memory
(docs/sizing.md, "Where the time goes"). This builds the very same message on the protobuf
classes underneath (the C implementation), in about a tenth of that.

Only what the job's documents hold is built here: None, bool, int, float, str, bytes,
datetimes, lists and maps of them, and at the top level SERVER_TIMESTAMP (a field
transform) and, in an update, DELETE_FIELD (in the mask, not in the fields). Anything else
raises Unsupported and `add_to_batch` leaves that write to the library, so a document of
another shape is written exactly as before. tests/test_firestore_writes.py holds every
shape the job writes to the library's own `Write`, field for field.
"""

import datetime
import re

from google.cloud.firestore_v1 import _helpers, transforms
from google.cloud.firestore_v1.types import write as write_types

_WRITE = write_types.Write.pb()
_REQUEST_TIME = write_types.DocumentTransform.FieldTransform.ServerValue.REQUEST_TIME
# A top-level field name that is its own field path (no quoting, no dots).
_SIMPLE_FIELD = re.compile(r"^[A-Za-z_][A-Za-z_0-9]*$")
SET, CREATE, UPDATE = "set", "create", "update"
_SENTINELS = (transforms.SERVER_TIMESTAMP, transforms.DELETE_FIELD)


class Unsupported(Exception):
    """A value this module does not build: the library builds the write instead."""


def write_pb(document_path: str, data: dict, how: str, update_time=None):
    """The `Write` (protobuf) that `batch.set` / `batch.create` / `batch.update` (`how`) would
    make of `data` for the document at `document_path`; an update is conditional on
    `update_time` (the document's last update time) when given. Raises Unsupported."""
    if not data:
        raise Unsupported("an empty document")
    pb = _WRITE()
    pb.update.name = document_path
    fields = pb.update.fields
    mask, server_times = [], []
    for key in sorted(data):
        value = data[key]
        if not isinstance(key, str) or not _SIMPLE_FIELD.match(key):
            raise Unsupported(f"field name {key!r}")
        if value is transforms.SERVER_TIMESTAMP:
            server_times.append(key)
            continue
        mask.append(key)
        if value is transforms.DELETE_FIELD:
            if how != UPDATE:
                raise Unsupported("DELETE_FIELD outside an update")
            continue
        _fill(fields[key], value)
    if how == UPDATE:
        pb.update_mask.field_paths.extend(mask)
        if update_time is not None:
            # As the library's LastUpdateOption: to the microsecond (Firestore's own precision).
            pb.current_document.update_time.CopyFrom(_helpers._datetime_to_pb_timestamp(update_time))
        else:
            pb.current_document.exists = True
    elif how == CREATE:
        pb.current_document.exists = False
    elif how != SET:
        raise ValueError(f"how must be {SET}, {CREATE} or {UPDATE}, got {how!r}")
    for key in server_times:
        transform = pb.update_transforms.add()
        transform.field_path = key
        transform.set_to_server_value = _REQUEST_TIME
    return pb


def add_to_batch(batch, ref, data: dict, how: str, update_time=None) -> None:
    """Adds the write to `batch` (a WriteBatch), built here, or by the library if Unsupported."""
    try:
        pb = write_pb(ref._document_path, data, how, update_time)
    except Unsupported:
        if how == SET:
            batch.set(ref, data)
        elif how == CREATE:
            batch.create(ref, data)
        else:
            option = batch._client.write_option(last_update_time=update_time) if update_time is not None else None
            batch.update(ref, data, option=option)
        return
    # What batch.set and the others do with the Write they build (BaseBatch._add_write_pbs):
    # held in order with the batch's other writes, sent by batch.commit().
    batch._add_write_pbs([pb])


def _fill(target, value) -> None:
    """Sets `target` (a protobuf Value) to `value`."""
    if value is None:
        target.null_value = 0
    elif isinstance(value, bool):  # before int: bool is one
        target.boolean_value = value
    elif isinstance(value, int):
        target.integer_value = value  # out of int64 raises ValueError, as the library does
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, str):
        target.string_value = value
    elif type(value) is bytes:
        target.bytes_value = value
    elif isinstance(value, datetime.datetime):
        if hasattr(value, "timestamp_pb"):  # DatetimeWithNanoseconds: its nanoseconds kept
            target.timestamp_value.CopyFrom(value.timestamp_pb())
        else:
            target.timestamp_value.CopyFrom(_helpers._datetime_to_pb_timestamp(value))
    elif isinstance(value, dict):
        target.map_value.SetInParent()  # an empty map is still a map
        fields = target.map_value.fields
        for key, item in value.items():
            if not key or not isinstance(key, str) or item in _SENTINELS:  # the library refuses an empty name
                raise Unsupported(f"map key or value {key!r}")
            _fill(fields[key], item)
    elif isinstance(value, (list, tuple)):
        target.array_value.SetInParent()
        values = target.array_value.values
        for item in value:
            _fill(values.add(), item)
    else:
        raise Unsupported(type(value).__name__)
