"""Private key alignment: ECDH private set intersection through ``openmined.psi``.

How a mesh aligns (the coordinator only relays blinded points and learns counts):
1. shrink: the label owner, as PSI client, intersects its keys with each other domain's
   (each a PSI server) in turn, so it ends with the keys every domain holds;
2. share: each other domain, as PSI client, intersects its keys with that final set (the
   label owner serves it), so it learns which of its own rows are in it and nothing else;
3. everyone orders its intersected rows by the key's text: the same order everywhere,
   so an aligned position names the same entity in every domain. From then on only
   positions travel.

A PSI client learns which of its own keys the server also holds; a server learns only
the client's set size. Nobody receives a key it did not already hold.
"""

from __future__ import annotations

import numpy as np

from splitmesh.errors import ProtocolError

# RAW: exact (no false positives). The setup message costs 33 bytes per server key.
_FPR = 1e-9


def _psi():
    import private_set_intersection.python as psi

    return psi


def _bytes(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype=np.uint8).tobytes()


def _array(b: bytes) -> np.ndarray:
    return np.frombuffer(b, dtype=np.uint8)


def request_size(request: np.ndarray) -> int:
    """How many blinded keys a serialized PSI request holds."""
    psi = _psi()
    try:
        return len(psi.Request.FromString(_bytes(request)).encrypted_elements)
    except Exception as exc:  # protobuf's DecodeError, or worse
        raise ProtocolError(f"malformed PSI request: {exc}") from None


def psi_serve(items: list[str], request: np.ndarray, client_size: int) -> tuple[np.ndarray, ...]:
    """The server's answer to a client's request: (setup, response), as uint8 arrays."""
    psi = _psi()
    server = psi.server.CreateWithNewKey(True)
    setup = server.CreateSetupMessage(_FPR, max(1, client_size), items, psi.DataStructure.RAW)
    try:
        response = server.ProcessRequest(psi.Request.FromString(_bytes(request)))
    except Exception as exc:  # the C++ core raises plain RuntimeErrors on malformed input
        raise ProtocolError(f"malformed PSI request: {exc}") from None
    return _array(setup.SerializeToString()), _array(response.SerializeToString())


class KeyAligner:
    """One party's side of the alignment: its keys, the candidates still in, the order."""

    def __init__(self, items: list[str]) -> None:
        self.items = items
        self.candidates = np.arange(len(items))  # own rows still in the intersection
        self._client = None
        self.rows: np.ndarray | None = None  # aligned position -> own row, once done

    def request(self) -> np.ndarray:
        """As PSI client: a blinded request over the current candidates."""
        psi = _psi()
        self._client = psi.client.CreateWithNewKey(True)
        req = self._client.CreateRequest([self.items[i] for i in self.candidates])
        return _array(req.SerializeToString())

    def finish(self, setup: np.ndarray, response: np.ndarray) -> int:
        """As PSI client: keep the candidates the server also holds; returns how many."""
        if self._client is None:
            raise ProtocolError("PSI finish without a request")
        psi = _psi()
        try:
            idx = self._client.GetIntersection(
                psi.ServerSetup.FromString(_bytes(setup)), psi.Response.FromString(_bytes(response))
            )
        except Exception as exc:
            raise ProtocolError(f"malformed PSI reply: {exc}") from None
        self._client = None
        self.candidates = self.candidates[np.sort(np.asarray(idx, dtype=np.int64))]
        return len(self.candidates)

    def serve(self, request: np.ndarray, client_size: int) -> tuple[np.ndarray, np.ndarray]:
        """As PSI server over the current candidates."""
        return psi_serve([self.items[i] for i in self.candidates], request, client_size)

    def done(self) -> np.ndarray:
        """Fix the order: candidates sorted by key text, the same order in every domain."""
        keys = np.array([self.items[i] for i in self.candidates], dtype=object)
        self.rows = self.candidates[np.argsort(keys, kind="stable")]
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
