"""Device identity: each message signed by its sender's own key, as Cloud IoT Core authenticated
each device with a key pair of its own (docs/design.md, "Device identity").

The envelope is a JWS in compact serialization (RFC 7515): `header.payload.signature`, each
base64url, the payload being the exact event bytes the pipeline parses. It is plain ASCII, so it
travels unchanged where only a payload travels (MQTT 3.1.1 has no attributes). The header names
the key: `kid` = "<principal>/<key id>", the principal being the door device (a count) or the
operator's control principal (a reset or terminus). Algorithms: EdDSA (Ed25519) for new devices;
ES256 (P-256) and RS256 so that keys of devices moved from IoT Core keep working (PEM, as IoT
Core took them).

The JOSE work is PyJWT's (on `cryptography`); nothing here implements cryptography.
"""

import datetime
from typing import NamedTuple, Optional, Tuple

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from occupancy import wire

ALGORITHMS = wire.ENVELOPE_ALGORITHMS
# As IoT Core: up to 3 keys a device, so that a key can be rotated without a gap.
MAX_KEYS = 3
_JWS = jwt.api_jws.PyJWS()
_ALGORITHM_OBJECTS = {name: jwt.algorithms.get_default_algorithms()[name] for name in ALGORITHMS}


class IdentityError(ValueError):
    """A key or an envelope that cannot be used, with a message for the user."""


class PublicKey(NamedTuple):
    """One of a principal's public keys, as the registry holds it."""

    key_id: str
    alg: str
    pem: str
    expires_us: int = 0  # 0: never

    def expired(self, now_us: int) -> bool:
        return bool(self.expires_us) and now_us >= self.expires_us


def key_id(principal: str, name: str) -> str:
    """The JWS `kid` of a principal's key."""
    return f"{principal}/{name}"


def split_key_id(kid) -> Tuple[str, str]:
    """(principal, key name) of a `kid` (the wire format's rule: occupancy.wire.split_key_id);
    raises IdentityError."""
    try:
        return wire.split_key_id(kid)
    except wire.Rejected as e:
        raise IdentityError(e.detail) from None


# ---- keys -------------------------------------------------------------------------------


def generate_private_key(alg: str = "EdDSA"):
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise IdentityError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {alg!r}")


def private_pem(private_key) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_pem(private_or_public_key) -> str:
    key = getattr(private_or_public_key, "public_key", lambda: private_or_public_key)()
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def write_private_key(path: str, private_key, overwrite: bool = False) -> str:
    """`private_key` as PEM to `path`, readable by its owner only (mode 0600); an existing file is
    an error (FileExistsError) unless `overwrite`."""
    import os

    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    with os.fdopen(os.open(path, flags, 0o600), "wb") as f:
        f.write(private_pem(private_key))
    return path


def load_private_key(pem: bytes):
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise IdentityError(f"not a PEM private key without a password: {e}") from None
    algorithm_of(key.public_key())
    return key


def load_public_key(pem: str):
    """(key object, algorithm) of a PEM public key; raises IdentityError."""
    try:
        key = serialization.load_pem_public_key(pem.encode("ascii") if isinstance(pem, str) else pem)
    except (ValueError, TypeError, UnicodeEncodeError) as e:
        raise IdentityError(f"not a PEM public key: {e}") from None
    return key, algorithm_of(key)


def algorithm_of(public_key) -> str:
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "EdDSA"
    if isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(public_key.curve, ec.SECP256R1):
        return "ES256"
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size >= 2048:
        return "RS256"
    raise IdentityError("the key must be Ed25519, EC P-256 or RSA of 2048 bits or more")


# ---- envelopes --------------------------------------------------------------------------


class Signer:
    """Signs payloads with one private key under its `kid`."""

    def __init__(self, private_key, kid: str):
        split_key_id(kid)
        self.kid = kid
        self.alg = algorithm_of(private_key.public_key())
        self._key = private_key

    @classmethod
    def from_file(cls, path: str, kid: str) -> "Signer":
        with open(path, "rb") as f:
            return cls(load_private_key(f.read()), kid)

    def sign(self, payload: bytes) -> bytes:
        """The JWS compact serialization of `payload` (ASCII bytes)."""
        # typ None: no "typ": "JWT" header (this is a JWS of an event, not a JWT).
        return _JWS.encode(payload, self._key, algorithm=self.alg, headers={"kid": self.kid, "typ": None}).encode(
            "ascii"
        )


def open_envelope(data: bytes) -> Tuple[dict, bytes]:
    """(protected header, payload bytes) of an envelope, NOT verified (occupancy.wire.open_envelope);
    raises IdentityError. `verify` then checks the signature with the key the header names."""
    try:
        return wire.open_envelope(data)
    except wire.Rejected as e:
        raise IdentityError(e.detail) from None


def verify(data: bytes, public_key, alg: str) -> bool:
    """Whether `data` (an envelope) is signed by `public_key` (a loaded key object) with `alg`.

    RFC 7515's check, by PyJWT's algorithm objects (which turn ES256's raw r||s into what
    `cryptography` verifies): the signature over `header.payload` as sent. Not PyJWS.decode,
    which parses the header and payload again (measured: 235 against 197 µs per Ed25519 message).
    """
    signing_input, _, signature = data.rpartition(b".")
    try:
        return bool(_ALGORITHM_OBJECTS[alg].verify(signing_input, public_key, jwt.utils.base64url_decode(signature)))
    except (ValueError, TypeError, KeyError, jwt.exceptions.InvalidKeyError):
        return False


def expiry_us(value: Optional[datetime.datetime]) -> int:
    if value is None:
        return 0
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return int(value.timestamp() * 1_000_000)
