"""PSI alignment: the same rows as a plain inner join, and no key outside the intersection
in any message the coordinator relays."""

import json

import numpy as np
import pandas as pd
import pytest

from splitmesh.config import Model, Optim
from splitmesh.data.alignment import Blinder, KeyAligner, key_points, matches, plain_join_rows
from splitmesh.data.sources import Source, load_domain_table
from splitmesh.errors import ConfigError, DataError, ProtocolError
from splitmesh.split.coordinator import Coordinator
from splitmesh.split.domain import Domain
from splitmesh.split.keyed import KeyedDomain
from splitmesh.split.peer_alignment import Peers
from splitmesh.transport import messages
from splitmesh.transport.codec import decode_frame
from splitmesh.transport.local import LocalTransport


def _table(tmp_path, name, keys, *, label=False, fmt="csv"):
    rng = np.random.default_rng(len(name))
    df = pd.DataFrame({"id": keys, f"{name}_x": rng.normal(size=len(keys))})
    if label:
        df["y"] = rng.integers(0, 2, len(keys))
    path = tmp_path / f"{name}.{fmt}"
    df.to_parquet(path) if fmt == "parquet" else df.to_csv(path, index=False)
    return load_domain_table(name, Source(path=path), key="id", label="y" if label else None)


def _keys(rng, universe, share, as_str):
    keys = rng.choice(universe, size=int(share * len(universe)), replace=False)
    return [f"k{k}" for k in keys] if as_str else keys


def _coordinator(transport, mode):
    """The coordinator of these parties; "bank" holds the labels."""
    return Coordinator(
        transport,
        transport.parties,
        "bank",
        mode=mode,
        spec=Model(),
        optim=Optim(),
        seed=0,
    )


class Recording(LocalTransport):
    """Keeps every encoded request and reply, as the coordinator would see them."""

    def __init__(self, parties):
        super().__init__(parties)
        self.seen = []

    def request(self, party, msg):
        self.seen.append(messages.encode(msg))
        reply = super().request(party, msg)
        self.seen.append(messages.encode(reply))
        return reply


@pytest.mark.parametrize("as_str", [False, True])
def test_psi_alignment_equals_a_plain_join_and_hides_other_keys(tmp_path, as_str):
    rng = np.random.default_rng(0)
    universe = np.arange(10_000, 10_600)
    tables = {
        "bank": _table(tmp_path, "bank", _keys(rng, universe, 0.8, as_str), label=True),
        "insurer": _table(tmp_path, "insurer", _keys(rng, universe, 0.7, as_str), fmt="parquet"),
        "telco": _table(tmp_path, "telco", _keys(rng, universe, 0.9, as_str)),
    }
    peers = Peers.in_process("bank", list(tables))
    parties = {
        "bank": Domain.keyed(
            tables["bank"], mode="label-preserving", task="binary", peers=peers["bank"]
        ),
        "insurer": KeyedDomain(tables["insurer"], peers=peers["insurer"]),
        "telco": KeyedDomain(tables["telco"], peers=peers["telco"]),
    }
    transport = Recording(parties)
    coord = _coordinator(transport, "label-preserving")
    coord.hello()
    steps = []
    coord.on_step = steps.append  # what the progress spinner shows
    coord.align()
    assert steps[0].startswith("blinding keys") and steps[-1] == "sharing the common keys"
    assert [s.split(" with ")[1].split(" ")[0] for s in steps[1:-1]] == ["insurer", "telco"]
    assert coord.alignment_["seconds"] > 0
    join = plain_join_rows({d: t.key_items() for d, t in tables.items()})
    assert coord.alignment_["aligned"] == len(join["bank"]) > 0
    np.testing.assert_array_equal(parties["bank"].rows.rows_, join["bank"])
    for d in ("insurer", "telco"):
        np.testing.assert_array_equal(parties[d].rows_, join[d])
        # the same entity at every position
        np.testing.assert_array_equal(
            tables[d].keys[parties[d].rows_], tables["bank"].keys[join["bank"]]
        )
    # no key, inside or outside the intersection, travels in the clear: not in any tensor,
    # nor in any scalar field; the signed claims name only run, parties, sizes and hashes
    every = {k for t in tables.values() for k in t.key_items()}
    parts = []
    for data in transport.seen:
        _, header, tensors = decode_frame(data)
        claim = header.pop("claim", None)
        header.pop("cert", None)  # a PEM certificate: its base64 may hold any digits
        # the run id is random hex minted before any key is read; by chance it can hold
        # five digits in a row that spell a key
        assert header.pop("run", coord.run_id) == coord.run_id
        if claim is not None:
            assert set(json.loads(claim)) <= {"kind", "run", "from", "to", "size", "sha256",
                                              "request", "set"}  # fmt: skip
        parts.append(json.dumps(header).encode())
        parts += [np.ascontiguousarray(v).tobytes() for v in tensors.values()]
    wire = b"".join(parts)
    assert all(k.encode() not in wire for k in every if len(k) >= 5)
    # nor can the relay match one domain's points with another's: a point blinded under
    # both secrets travels only from a domain back to the label domain, never one of theirs
    sent = {p: set() for p in ("label", "others")}
    for data in transport.seen:
        kind, header, tensors = decode_frame(data)
        if kind in ("PsiBlob", "PsiReply") and "points" in tensors:
            who = "label" if json.loads(header["claim"])["from"] == "bank" else "others"
            sent[who] |= {bytes(p) for p in tensors["points"]}
    assert sent["label"] and sent["others"] and not sent["label"] & sent["others"]


def test_aligner_roles_directly():
    keys, their_keys = ["1", "2", "3", "9"], ["3", "2", "7"]
    label, other = KeyAligner(list(keys)), KeyAligner(list(their_keys))
    rows, mine = label.offer()
    theirs = other.shuffled()
    where = label.intersect(rows, other.blind(mine), label.blind(theirs))
    assert sorted(keys[i] for i in label.candidates) == ["2", "3"]
    assert other.take(np.sort(where[label.candidates])) == 2
    assert [keys[i] for i in label.done()] == [their_keys[i] for i in other.done()]
    assert [keys[i] for i in label.rows] == ["2", "3"]
    # done: the key texts and points are let go (hundreds of MB at a million keys)
    assert label.items == [] and label.done() is label.rows


def test_blinding_commutes_and_refuses_points_no_key_hashes_to():
    points = key_points(["a", "b"])
    one, two = Blinder(), Blinder()
    np.testing.assert_array_equal(one(two(points)), two(one(points)))
    assert not np.array_equal(one(points), two(points))
    with pytest.raises(ProtocolError, match="small order"):
        one(np.zeros((3, 32), np.uint8), " from 'x'")  # u = 0: the point of order 2
    with pytest.raises(ProtocolError, match="n x 32 bytes"):
        one(np.zeros((3, 31), np.uint8))
    with pytest.raises(ProtocolError, match="repeats a point"):
        matches(points[:1], np.concatenate([points, points]))


def test_positions_from_the_label_domain_are_checked():
    other = KeyAligner(["a", "b", "c"])
    with pytest.raises(ProtocolError, match="never offered"):
        other.take(np.array([0]))
    other.shuffled()
    for bad, says in [([3], "outside the 3 keys"), ([-1], "outside"), ([1, 1], "repeat"),
                      (np.array([0.5]), "integers")]:  # fmt: skip
        with pytest.raises(ProtocolError, match=says):
            other.take(np.asarray(bad))
    assert other.take(np.array([0, 2])) == 2


def test_key_type_mismatch_is_reported(tmp_path):
    bank = _table(tmp_path, "bank", [1, 2, 3, 4], label=True)
    other = _table(tmp_path, "insurer", ["a1", "a2", "a3"])
    peers = Peers.in_process("bank", ["bank", "insurer"])
    parties = {
        "bank": Domain.keyed(bank, mode="label-sharing", task="binary", peers=peers["bank"]),
        "insurer": KeyedDomain(other, peers=peers["insurer"]),
    }
    coord = _coordinator(LocalTransport(parties), "label-sharing")
    coord.hello()
    with pytest.raises(ConfigError, match="'bank' has integer keys, 'insurer' has string keys"):
        coord.align()


def test_duplicate_keys_are_refused_naming_domain_and_key(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"id": [5, 6, 6, 7], "x": [1, 2, 3, 4]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="domain 'insurer': duplicate key 6"):
        load_domain_table("insurer", Source(path=path), key="id")
