"""Sealed row plans: what the owner of the interactions tells each dimension domain
(which of its rows each example uses) travels through the coordinator, which must not
read it (it would learn who bought what).

Each party makes an X25519 key pair per run and announces the public half in its Hello
reply; sender and recipient derive a shared AES-256-GCM key (HKDF-SHA256), bound to the
run and both names; the context (run, partition, epoch) is authenticated, so a plan
cannot be replayed into another epoch or party. This holds against a coordinator that
follows the protocol but reads everything it relays; one that swapped public keys in
transit could read plans (binding the keys to the nodes' TLS certificates would close
that; see the README).
"""

from __future__ import annotations

import os

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from splitmesh.errors import ProtocolError

_NONCE = 12


class SealBox:
    """One party's key pair and the shared keys it derives with its peers."""

    def __init__(self, owner: str, run: str) -> None:
        self.owner, self.run = owner, run
        self._key = X25519PrivateKey.generate()
        self._shared: dict[tuple[str, ...], AESGCM] = {}

    @property
    def public(self) -> str:
        return self._key.public_key().public_bytes_raw().hex()

    def _aead(self, peer: str, peer_public: str, sender: str, recipient: str) -> AESGCM:
        cache = (peer, peer_public, sender, recipient)
        if cache not in self._shared:
            try:
                theirs = X25519PublicKey.from_public_bytes(bytes.fromhex(peer_public))
            except ValueError as exc:
                raise ProtocolError(
                    f"{self.owner!r}: bad sealing key for {peer!r}: {exc}"
                ) from None
            secret = self._key.exchange(theirs)
            info = f"splitmesh seal|{self.run}|{sender}|{recipient}".encode()
            key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)
            self._shared[cache] = AESGCM(key)
        return self._shared[cache]

    def seal(
        self, recipient: str, recipient_public: str, context: str, rows: np.ndarray
    ) -> np.ndarray:
        """Rows (int32 on the wire: half the bytes of int64) -> nonce + ciphertext (uint8),
        readable only by ``recipient``."""
        rows = np.asarray(rows)
        if rows.size and (rows.min() < -(2**31) or rows.max() >= 2**31):
            raise ProtocolError(f"{self.owner!r}: a row plan names a row beyond int32")
        aead = self._aead(recipient, recipient_public, self.owner, recipient)
        nonce = os.urandom(_NONCE)
        data = np.ascontiguousarray(rows, dtype="<i4").tobytes()
        blob = nonce + aead.encrypt(nonce, data, context.encode())
        return np.frombuffer(blob, dtype=np.uint8)

    def open(self, sender: str, sender_public: str, context: str, blob: np.ndarray) -> np.ndarray:
        aead = self._aead(sender, sender_public, sender, self.owner)
        raw = np.ascontiguousarray(blob, dtype=np.uint8).tobytes()
        try:
            data = aead.decrypt(raw[:_NONCE], raw[_NONCE:], context.encode())
        except InvalidTag:
            raise ProtocolError(
                f"{self.owner!r} could not open a row plan from {sender!r} for {context!r}: "
                "it was altered, replayed or sealed for another party"
            ) from None
        if len(data) % 4:
            raise ProtocolError(f"{self.owner!r}: a row plan from {sender!r} is not int32 rows")
        return np.frombuffer(data, dtype="<i4").astype(np.int64)


def seal_context(run: str, partition: str, epoch: int | None = None, part: int = 0) -> str:
    """What a sealed row plan is for: a ranking pass, or one part of an epoch."""
    return f"{run}/{partition}" + (f"/epoch-{epoch}/part-{part}" if epoch is not None else "")
