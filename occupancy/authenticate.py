"""Who sent a message: its envelope's signature checked against the registry's keys.

Pure, no Beam: the pipeline's registry lookup (transforms/enrich.py) calls `check` with
the worker's registry view. The rules (docs/design.md, "Device identity"):

* a count is accepted only if signed by a key of the very device it names;
* a reset or terminus (it changes a whole train) only if signed by a key of an enabled
  control principal that names that train, never by a door device's key;
* the key must be in the registry now (a removed key stops working within one registry
  refresh) and not past its expiry.

Nothing of what a refused message claims reaches a train's state: the lookup dead-letters it
before it is keyed. What can be refused without the registry (no envelope, a `kid` naming
another principal than the count's device) is refused by `precheck`, before any registry
read, so that a forger's invented ids cost no read.
"""

import threading
from typing import Optional, Tuple

from occupancy import identity, registry_entries, wire

REQUIRE, LOG, OFF = "require", "log", "off"
MODES = (REQUIRE, LOG, OFF)
# Parsed public keys kept per worker (a PEM parse costs more than a verify); bounded.
_MAX_PARSED = 100_000


# The length of a signature by algorithm (bytes): Ed25519 and P-256's r||s are 64; RSA's is the
# key's size, 2048 to 8192 bits. Checked before any registry read.
_SIGNATURE_BYTES = {"EdDSA": (64, 64), "ES256": (64, 64), "RS256": (256, 1024)}


def _signature_bytes(raw: bytes) -> int:
    """The decoded length of an envelope's signature (base64url, unpadded)."""
    encoded = len(raw) - raw.rfind(b".") - 1
    return encoded * 3 // 4


def _open(event: wire.Event):
    """((header, principal, key name), None) of `event`'s envelope, or (None, (reason, detail)):
    what is refused from the envelope alone. A count's `kid` must name its own device; a
    signature must have a length its algorithm gives."""
    if not wire.is_envelope(event.raw):
        return None, (wire.UNSIGNED, "the message is not signed (a JWS envelope with the sender's key)")
    try:
        header, _ = identity.open_envelope(event.raw)
        principal, name = identity.split_key_id(header.get("kid"))
    except identity.IdentityError as e:
        return None, (wire.BAD_SIGNATURE, wire.shown(str(e)))
    if event.kind not in wire.ZEROING and principal != event.device_id:
        return None, (wire.BAD_SIGNATURE, f"signed by {wire.shown(principal)}, not by {event.device_id}")
    size = _signature_bytes(event.raw)
    low, high = _SIGNATURE_BYTES[header["alg"]]
    if not low <= size <= high:
        return None, (wire.BAD_SIGNATURE, f"a signature of {size} bytes is no {header['alg']} signature")
    return (header, principal, name), None


class Authenticator:
    """Checks envelopes; keeps the registry's public keys parsed, never a verdict."""

    def __init__(self):
        self._parsed = {}
        self._lock = threading.Lock()

    @staticmethod
    def precheck(event: wire.Event) -> Optional[Tuple[str, str]]:
        """None if `event` may be signed as it must be, else (reason, detail): what is refused
        without the registry, so before any read of it."""
        return _open(event)[1]

    def check(
        self, event: wire.Event, entry: Optional[registry_entries.DeviceEntry], now_us: int, principal_entry=None
    ) -> Optional[Tuple[str, str]]:
        """None if `event` (with its `raw` envelope) is signed as it must be, else (reason, detail):
        `precheck`'s refusals, then the registry's.

        `entry`: the registry entry of the device a count names; for a reset or terminus,
        `principal_entry(principal)` returns the entry of the principal that signed it.

        Args:
            event: the message, its `raw` the envelope as received.
            entry: the registry entry of the device the event names; None: not registered.
            now_us: the time now in microseconds since the epoch, which a key's expiry is checked against.
            principal_entry: principal id -> its registry entry or None; None: every reset and terminus
                is refused.

        Returns:
            None if accepted, else (reason, detail): reason wire.UNSIGNED, BAD_SIGNATURE, UNKNOWN_KEY or
            EXPIRED_KEY, detail a message for the dead letter.
        """
        opened, refused = _open(event)
        if refused is not None:
            return refused
        header, principal, name = opened
        raw = event.raw
        if event.kind in wire.ZEROING:
            signer = principal_entry(principal) if principal_entry else None
            if signer is None or signer.role != registry_entries.CONTROL or not signer.enabled:
                return wire.BAD_SIGNATURE, (
                    f"{event.kind} signed by {wire.shown(principal)}, which is not an enabled control principal"
                )
            if not signer.controls(event.train_id):
                return wire.BAD_SIGNATURE, f"{principal} may not {event.kind} train {event.train_id}"
        else:
            signer = entry
        key = signer.key(name) if signer is not None else None
        if key is None:
            return wire.UNKNOWN_KEY, f"{principal} has no key {wire.shown(name)} in the registry"
        if key.alg != header.get("alg"):
            return wire.BAD_SIGNATURE, f"key {name} of {principal} is {key.alg}, the envelope says {header.get('alg')}"
        if key.expired(now_us):
            return wire.EXPIRED_KEY, f"key {name} of {principal} expired at {wire.format_time(key.expires_us)}"
        try:
            public = self._public(key.pem)
        except identity.IdentityError:  # a document edited by hand: the key cannot be used
            return wire.UNKNOWN_KEY, f"key {name} of {principal} in the registry is not a usable public key"
        if not identity.verify(raw, public, key.alg):
            return wire.BAD_SIGNATURE, f"the signature does not verify with key {name} of {principal}"
        return None

    def _public(self, pem: str):
        parsed = self._parsed.get(pem)
        if parsed is None:
            parsed, _ = identity.load_public_key(pem)
            with self._lock:
                if len(self._parsed) >= _MAX_PARSED:
                    self._parsed.clear()
                self._parsed[pem] = parsed
        return parsed
