"""Dead-letter records: a message the system refused, as both sinks keep it (the dead-letter
topic and the `dead_letters` collection, transforms/dead_letters.py), with the reason (one of
occupancy.wire.REASONS) and the step that refused it (docs/design.md, "Dead letters").
"""

import base64
import hashlib
import json
from typing import Optional

from occupancy import wire

# What a record keeps of a message: the payload's first bytes, each attribute cut, so that a
# record fits both sinks (a Pub/Sub message of 10 MB, a Firestore document of 1 MiB).
PAYLOAD_BYTES = 16 * 1024
ATTRIBUTES = 32
ATTRIBUTE_CHARS = 1024


def record(
    reason: str,
    detail: str,
    payload: bytes,
    attributes: Optional[dict],
    message_id: Optional[str],
    rejected_at_us: int,
    step: str,
) -> dict:
    """A dead-letter record: the original message (payload base64) and why it was rejected.

    Bounded whatever the message (PAYLOAD_BYTES, ATTRIBUTES, ATTRIBUTE_CHARS), so that
    one record fits either sink: a payload cut is flagged `payload_truncated`, with its full
    size in `payload_bytes`.
    """
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    payload = bytes(payload or b"")
    record = {
        "reason": reason,
        "detail": detail[:1000],  # details quote values through shown(); this bounds the rest
        "payload": base64.b64encode(payload[:PAYLOAD_BYTES]).decode("ascii"),
        "attributes": _bounded_attributes(attributes),
        "message_id": message_id if message_id is None else str(message_id)[:200],
        "rejected_at": wire.format_time(rejected_at_us),
        "step": step,
    }
    if len(payload) > PAYLOAD_BYTES:
        record.update(payload_truncated=True, payload_bytes=len(payload))
    return record


def _bounded_attributes(attributes: Optional[dict]) -> dict:
    """At most ATTRIBUTES attributes (the first by name), names and values cut."""
    items = sorted((str(k), str(v)) for k, v in dict(attributes or {}).items())
    return {k[:256]: v[:ATTRIBUTE_CHARS] for k, v in items[:ATTRIBUTES]}


def record_id(record: dict) -> str:
    """Deterministic, so that a retried write of the same dead letter replaces itself."""
    key = "|".join(
        (
            record["reason"],
            record.get("message_id") or "",
            record["payload"],
            record["step"],
            json.dumps(record["attributes"], sort_keys=True),
        )
    )
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
