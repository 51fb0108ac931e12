"""Key pairs of simulated devices and of the simulated operator's control principal.

Generated when a simulation starts and never written anywhere but the registry's public
half (no private key lives in the repository): `make run`, the fault suite, the benchmarks
and the tests sign every message as a real device does (occupancy.identity).
"""

import threading
from typing import Dict, Iterable, Optional

from adapters.registry import keys as registry_keys
from adapters.registry import rpc_options
from occupancy import identity

# The operator system that sends resets and terminus events in the simulations.
CONTROL_ID = "operations-control"
KEY_NAME = "k1"


class Keyring:
    """One key pair per principal, made on first use (Ed25519 unless told otherwise).

    With a `seed`, the Ed25519 keys are derived from it and the principal's id, so that the
    processes of one benchmark (the one that registers the fleet, the ones that publish) hold
    the same keys without passing them around. Simulations only: a real device's key is
    generated on the device (`python -m registry register --generate_key`).
    """

    def __init__(self, alg: str = "EdDSA", seed: Optional[bytes] = None):
        if seed is not None and alg != "EdDSA":
            raise ValueError("seeded keys are Ed25519")
        self.alg, self._seed = alg, seed
        self._signers: Dict[str, identity.Signer] = {}
        self._lock = threading.Lock()

    def signer(self, principal: str) -> identity.Signer:
        with self._lock:
            signer = self._signers.get(principal)
            if signer is None:
                signer = self._signers[principal] = identity.Signer(
                    self._new_key(principal), identity.key_id(principal, KEY_NAME)
                )
            return signer

    def _new_key(self, principal: str):
        if self._seed is None:
            return identity.generate_private_key(self.alg)
        import hashlib

        from cryptography.hazmat.primitives.asymmetric import ed25519

        return ed25519.Ed25519PrivateKey.from_private_bytes(
            hashlib.sha256(self._seed + b"|" + principal.encode("utf-8")).digest()
        )

    def sign(self, principal: str, payload: bytes) -> bytes:
        return self.signer(principal).sign(payload)

    def sign_control(self, payload: bytes) -> bytes:
        return self.sign(CONTROL_ID, payload)

    def sign_message(self, payload: bytes) -> bytes:
        """A simulated message signed by who sends it: the device it names, else (a reset or
        terminus) the control principal."""
        import json

        device = json.loads(payload).get("device_id")
        return self.sign(device, payload) if device else self.sign_control(payload)

    def write_private_key(self, principal: str, path: str) -> str:
        """The principal's private key to `path` (mode 0600), for a real publisher process."""
        return identity.write_private_key(path, self.signer(principal)._key, overwrite=True)

    def public_pem(self, principal: str) -> str:
        return identity.public_pem(self.signer(principal)._key)

    def key_document(self, principal: str) -> dict:
        """The registry's `keys` entry for a principal (for batched registration)."""
        signer = self.signer(principal)
        return {"key_id": KEY_NAME, "alg": signer.alg, "public_key": self.public_pem(principal), "expires_at": None}

    def register(
        self,
        client,
        collection: str,
        principals: Iterable[str],
        control_trains: Optional[list] = None,
        timeout: Optional[float] = None,
    ) -> None:
        """Sets each registered principal's keys to this keyring's one key (batched: a whole
        simulated fleet at once; an earlier run's key is replaced); with `control_trains`,
        registers the control principal for them (["*"]: every train) with its key."""
        from google.cloud import firestore

        if control_trains is not None:
            registry_keys.register_control(client, collection, CONTROL_ID, control_trains, timeout=timeout)
            principals = [*principals, CONTROL_ID]
        principals = list(principals)
        for start in range(0, len(principals), 400):
            batch = client.batch()
            for principal in principals[start : start + 400]:
                batch.update(
                    client.collection(collection).document(principal),
                    {"keys": [self.key_document(principal)], "updated_at": firestore.SERVER_TIMESTAMP},
                )
            batch.commit(**rpc_options(timeout))
