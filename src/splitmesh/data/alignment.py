"""Private key alignment: ECDH private set intersection (DH-PSI) on Curve25519.

Every key is hashed (SHA-256, domain-separated) to an X25519 u-coordinate; a party *blinds*
a point by multiplying it by its secret scalar for the run (X25519 of RFC 7748, OpenSSL
through ``cryptography``). Blinding commutes, so a key blinded by both parties, in either
order, is the same point in both domains exactly when the key is the same. This is the
construction of SecretFlow's and FATE's ECDH-PSI on Curve25519.

How a mesh aligns (the coordinator only relays blinded points and learns counts):
1. blind: every domain blinds its own keys under a fresh secret, all at the same time;
2. intersect, with each other domain D in turn: the label domain L sends D its candidates
   blinded (A = H(x)^l); D returns A^d; D also sends its whole blinded set B = H(y)^d, in
   an order it shuffled in secret, which L raises to its own secret (B^l) while D works.
   L keeps the candidates whose A^d is in B^l: the keys D also holds. It notes, for each,
   where it sits in D's shuffled set. D2 then gets only the candidates D1 left.
3. share: L tells each D the shuffled positions of the keys every domain holds; D maps
   them back through its shuffle to its own rows;
4. order: everyone sorts its intersected rows by the key's text, the same order
   everywhere, so an aligned position names the same entity in every domain. From then on
   only positions travel.

What each learns: L, which of its keys D1 holds, then which of those D2 holds, and so on
(as PSI client of each); D, the number of L's candidates and which of its own rows are in
the final intersection (as it must, to train on them); the coordinator, set sizes and
counts. Blinded points look random to whoever lacks the secret (decisional Diffie-Hellman
on Curve25519 and its twist), and a party never sends a point blinded under both secrets,
so the relay cannot match one domain's points with another's. Nobody receives a key it did
not already hold. Costs: two X25519 multiplications per key per party, run by both parties
of a pair at once; 32 bytes per key per message.
"""

from __future__ import annotations

import hashlib
import secrets

import numpy as np

from splitmesh.errors import ProtocolError

POINT = 32  # bytes in a blinded point (an X25519 u-coordinate)
_DOMAIN = b"splitmesh/psi/x25519/v1\x00"  # hashes of keys here are not hashes used elsewhere
_CHUNK = 1 << 16  # points multiplied per joined buffer: bounded temporary memory


def key_points(items: list[str]) -> np.ndarray:
    """Each key hashed to a point: an (n, 32) uint8 array."""
    sha = hashlib.sha256
    out = np.frombuffer(
        b"".join([sha(_DOMAIN + k.encode()).digest() for k in items]), dtype=np.uint8
    )
    return out.reshape(len(items), POINT)


class Blinder:
    """A secret scalar for one run: multiplies points by it (X25519)."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        self._key = X25519PrivateKey.generate()

    def __call__(self, points: np.ndarray, whose: str = "") -> np.ndarray:
        """``points`` (n, 32) uint8 multiplied by the secret; ``whose`` names them in errors."""
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

        points = np.ascontiguousarray(points, dtype=np.uint8)
        if points.ndim != 2 or points.shape[1] != POINT:
            raise ProtocolError(f"blinded points{whose} must be n x {POINT} bytes")
        out = np.empty_like(points)
        load, mul = X25519PublicKey.from_public_bytes, self._key.exchange
        for start in range(0, len(points), _CHUNK):
            flat = points[start : start + _CHUNK].tobytes()
            at = range(0, len(flat), POINT)
            try:
                raised = b"".join([mul(load(flat[i : i + POINT])) for i in at])
            except ValueError:  # OpenSSL refuses a point of small order (an all-zero result)
                raise ProtocolError(
                    f"blinded points{whose}: one is of small order, which no key hashes to"
                ) from None
            out[start : start + _CHUNK] = np.frombuffer(raised, np.uint8).reshape(-1, POINT)
        return out


def _as_keys(points: np.ndarray) -> list[bytes]:
    flat = np.ascontiguousarray(points, dtype=np.uint8).tobytes()
    return [flat[i : i + POINT] for i in range(0, len(flat), POINT)]


def matches(mine: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    """For each of ``mine`` (points blinded by both parties), its position in ``theirs``
    (the same), or -1."""
    where = {p: j for j, p in enumerate(_as_keys(theirs))}
    if len(where) != len(theirs):
        raise ProtocolError("a peer's blinded set repeats a point: its keys are not unique")
    get = where.get
    return np.fromiter((get(p, -1) for p in _as_keys(mine)), dtype=np.int64, count=len(mine))


class KeyAligner:
    """One party's side of the alignment: its keys, the candidates still in, its secret,
    and (as a domain that is not the label domain) the order it shuffled its set into."""

    def __init__(self, items: list[str]) -> None:
        self.items = items
        self.candidates = np.arange(len(items))  # own rows still in the intersection
        self.blind = Blinder()
        self._blinded: np.ndarray | None = None  # own points under own secret, by row
        self._shuffle: np.ndarray | None = None  # shuffled position -> own row
        self.rows: np.ndarray | None = None  # aligned position -> own row, once done

    def blinded(self, rows: np.ndarray) -> np.ndarray:
        """Own keys at ``rows``, blinded (all keys are blinded once, at the first call)."""
        if self._blinded is None:
            self._blinded = self.blind(key_points(self.items))
        return self._blinded[rows]

    # -- the label domain: the PSI client of every other domain ----------------------------
    def offer(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, their blinded points): the current candidates, for a peer to raise."""
        rows = self.candidates.copy()
        return rows, self.blinded(rows)

    def intersect(self, rows: np.ndarray, raised: np.ndarray, theirs: np.ndarray) -> np.ndarray:
        """Keep the offered ``rows`` whose points, raised by the peer (``raised``), are among
        the peer's set raised by this party (``theirs``); returns, for every own row, its
        position in the peer's set (-1: not there)."""
        pos = matches(raised, theirs)
        where = np.full(len(self.items), -1, dtype=np.int64)
        hit = pos >= 0
        where[rows[hit]] = pos[hit]
        self.candidates = rows[hit]
        return where

    # -- any other domain: the PSI server of the label domain -------------------------------
    def shuffled(self) -> np.ndarray:
        """All candidates blinded, in an order shuffled in secret (kept for ``take``)."""
        rng = np.random.default_rng(secrets.randbits(128))
        self._shuffle = self.candidates[rng.permutation(len(self.candidates))]
        return self.blinded(self._shuffle)

    def take(self, positions: np.ndarray) -> int:
        """Keep the rows at these positions of the shuffled set; how many."""
        if self._shuffle is None:
            raise ProtocolError("PSI positions for a set this party never offered")
        pos = np.asarray(positions)
        if pos.ndim != 1 or pos.dtype.kind not in "iu":
            raise ProtocolError("PSI positions must be a list of integers")
        if pos.size and (pos.min() < 0 or pos.max() >= len(self._shuffle)):
            raise ProtocolError(f"PSI positions outside the {len(self._shuffle)} keys offered")
        if np.unique(pos).size != pos.size:
            raise ProtocolError("PSI positions repeat a key")
        self.candidates = np.sort(self._shuffle[pos])
        return len(self.candidates)

    def done(self) -> np.ndarray:
        """Fix the order: candidates sorted by key text, the same order in every domain."""
        if self.rows is not None:
            return self.rows
        keys = np.array([self.items[i] for i in self.candidates], dtype=object)
        self.rows = self.candidates[np.argsort(keys, kind="stable")]
        # no longer needed: at 1.4M keys the texts and points hold hundreds of MB
        self.items, self._blinded, self._shuffle = [], None, None
        return self.rows


def plain_join_rows(keys: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """The same alignment by a plain inner join (keys in the clear): the reference that the
    tests and the centralized baseline use, never the split path."""
    common = set.intersection(*(set(k) for k in keys.values()))
    order = sorted(common)
    out = {}
    for d, ks in keys.items():
        where = {k: i for i, k in enumerate(ks)}
        out[d] = np.array([where[k] for k in order], dtype=np.int64)
    return out
