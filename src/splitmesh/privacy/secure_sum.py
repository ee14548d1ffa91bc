"""Secure aggregation: the coordinator learns the sum of the domains' embeddings, not one.

Every domain draws a fresh X25519 key for each run and signs its public half with its own
identity (its node's certificate, from the mesh CA), so the coordinator that relays the
keys cannot slip in one of its own. Each pair of domains then holds a key the coordinator
does not know; for every Forward both draw the same mask from ChaCha20 under that key, the
domain whose name sorts first adds it and the other subtracts it. Values travel in fixed
point (int64, ``2**-bits`` resolution), where the masks cancel exactly in the sum (mod 2^64).

A mask is bound to the Forward's place in the run (a counter each domain keeps itself), its
partition and the hash of its rows: a coordinator that sends the domains different rows, or
the same rows twice, gets sums whose masks do not cancel (uniformly random values), never
one domain's embedding nor the difference of two.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from splitmesh.errors import ProtocolError, SplitmeshError
from splitmesh.transport.identity import Identity, Signed

KIND = "mask-key"  # what a domain's signed claim of its public key says it is


def encode(x: np.ndarray, bits: int, who: str) -> np.ndarray:
    """Floats as int64 fixed point with ``bits`` fraction bits."""
    x = np.asarray(x, dtype=np.float64)
    # summed over up to 2**10 domains without overflow
    bound = 2.0 ** (62 - bits - 10)
    if not np.isfinite(x).all() or np.abs(x).max(initial=0.0) >= bound:
        raise SplitmeshError(
            f"{who}: an embedding value is not finite or not below {bound:.3g} in magnitude; "
            "secure aggregation cannot encode it (lower the learning rate or clip embeddings)"
        )
    return np.rint(x * 2.0**bits).astype(np.int64)


def decode(total: np.ndarray, bits: int) -> np.ndarray:
    """The fixed-point sum back as float32."""
    return (np.asarray(total, dtype=np.int64).astype(np.float64) / 2.0**bits).astype(np.float32)


def add_up(parts: list[np.ndarray]) -> np.ndarray:
    """The sum of masked parts modulo 2^64, where the masks cancel."""
    total = np.zeros(parts[0].shape, dtype=np.uint64)
    for p in parts:
        total += np.asarray(p, dtype=np.int64).view(np.uint64)  # wraps: arithmetic mod 2^64
    return total.view(np.int64)


def _stream(key: bytes, nonce: bytes, n: int) -> np.ndarray:
    """``n`` uniform uint64 from ChaCha20 keyed by a pair's key."""
    enc = Cipher(algorithms.ChaCha20(key, nonce), mode=None).encryptor()
    return np.frombuffer(enc.update(bytes(8 * n)), dtype="<u8").astype(np.uint64)


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class Masker:
    """One domain's side of secure aggregation for one run.

    ``group``: every domain whose embedding is summed, from this domain's own mesh file;
    the coordinator cannot shrink it (a group of one would be no mask at all)."""

    def __init__(self, name: str, group: list[str], identity: Identity | None, bits: int) -> None:
        if name not in group or len(group) < 2:
            raise SplitmeshError(
                f"domain {name!r}: secure aggregation needs at least two domains with "
                f"embeddings, this one among them (its mesh file lists {sorted(group)})"
            )
        if identity is None:
            raise ProtocolError(
                f"domain {name!r} has no identity to sign its mask key with",
                hint="give the node its certificate (tls)",
            )
        self.name, self.group, self.identity, self.bits = name, sorted(group), identity, bits
        self._private = X25519PrivateKey.generate()  # this run's only: masks never repeat
        self.run: str | None = None
        self._pairs: dict[str, tuple[bytes, int]] | None = None  # peer -> (key, +1 / -1)
        self._count = 0  # Forwards masked in this run

    @property
    def who(self) -> str:
        return f"domain {self.name!r}"

    def announce(self, run: str) -> dict:
        """This run's public key, signed: what the coordinator relays to the other domains."""
        self.run = run
        claim = {
            "kind": KIND,
            "run": run,
            "from": self.name,
            "public": _raw(self._private.public_key()).hex(),
            "group": self.group,
            "bits": self.bits,
        }
        signed = self.identity.sign(claim)
        return {"claim": signed.claim, "cert": signed.cert, "signature": signed.signature.hex()}

    def agree(self, keys: str) -> None:
        """Check every domain's signed key (relayed as JSON by the coordinator) and agree
        a key with each."""
        if self._pairs is not None:
            raise ProtocolError(f"{self.who} has agreed its mask keys for this run already")
        try:
            announced = json.loads(keys)
        except (TypeError, ValueError):
            announced = None
        if not isinstance(announced, dict):
            raise ProtocolError(f"{self.who}: mask keys must be a JSON object by domain")
        if sorted(announced) != self.group:
            raise ProtocolError(
                f"{self.who}: mask keys for {sorted(announced)[:16]}, but its mesh file sums "
                f"{self.group}: refused"
            )
        pairs = {}
        for peer in self.group:
            claim = self._check(peer, announced[peer])
            if peer == self.name:
                if claim["public"] != _raw(self._private.public_key()).hex():
                    raise ProtocolError(f"{self.who}: the mask key relayed as its own is not")
                continue
            try:
                public = X25519PublicKey.from_public_bytes(bytes.fromhex(claim["public"]))
            except ValueError:
                raise ProtocolError(
                    f"{self.who}: the mask key of {peer!r} is no X25519 key"
                ) from None
            shared = self._private.exchange(public)
            first, second = sorted((self.name, peer))
            info = f"splitmesh/secure-sum/{self.run}/{first}/{second}".encode()
            key = HKDF(hashes.SHA256(), 32, salt=None, info=info).derive(shared)
            pairs[peer] = (key, 1 if self.name == first else -1)
        self._pairs = pairs

    def _check(self, peer: str, entry: object) -> dict:
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(k), str) for k in ("claim", "cert", "signature")
        ):
            raise ProtocolError(f"{self.who}: the mask key of {peer!r} is malformed")
        try:
            signature = bytes.fromhex(entry["signature"])
        except ValueError:
            raise ProtocolError(f"{self.who}: the mask key of {peer!r} is malformed") from None
        signed = Signed(entry["claim"], entry["cert"], signature)
        claim = self.identity.verify(signed, sender=peer, what="a mask key")
        expect = {"kind": KIND, "run": self.run, "from": peer, "group": self.group}
        expect["bits"] = self.bits
        wrong = [k for k, v in expect.items() if claim.get(k) != v]
        if wrong:
            raise ProtocolError(
                f"{self.who}: the mask key of {peer!r} has {wrong[0]!r} "
                f"{str(claim.get(wrong[0]))[:60]!r}, not {str(expect[wrong[0]])[:60]!r}"
            )
        if not isinstance(claim.get("public"), str):
            raise ProtocolError(f"{self.who}: the mask key of {peer!r} names no public key")
        return claim

    @property
    def ready(self) -> bool:
        return self._pairs is not None

    def mask(
        self, values: np.ndarray, partition: str, train: bool, positions: np.ndarray
    ) -> np.ndarray:
        """What leaves for one Forward: the embedding in fixed point plus this domain's
        share of every pair's mask."""
        if self._pairs is None:
            raise ProtocolError(
                f"{self.who} masks its embeddings (secure aggregation) and has no mask keys "
                "yet: the coordinator must relay them (MaskPeers) before any Forward"
            )
        rows = hashlib.sha256(np.ascontiguousarray(positions, dtype="<i8").tobytes()).hexdigest()
        where = f"{self._count}/{partition}/{int(train)}/{rows}".encode()
        self._count += 1
        nonce = hashlib.blake2b(where, digest_size=16, person=b"splitmesh-mask").digest()
        out = encode(values, self.bits, self.who).view(np.uint64)
        for key, sign in self._pairs.values():
            m = _stream(key, nonce, out.size).reshape(out.shape)
            if sign > 0:
                out += m
            else:
                out -= m
        return out.view(np.int64)
