"""A star schema of keyed tables: a fact domain (e.g. sales, one row per interaction) and
dimension domains (customers, products) keyed by the fact's foreign keys.

Each dimension aligns its keys with the fact domain's distinct foreign keys by signed PSI
(split/peer_alignment.py), as any mesh does, so neither learns a key the other holds
alone. From then on the fact domain names a dimension's rows only by aligned position,
sealed for that dimension (split/sealing.py): the coordinator relays row plans it cannot
read, and the dimension resolves them to its own rows. An entity the dimension does not
hold gets the dimension's "unknown" row: every feature at its mean, every category missing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from splitmesh.data.interactions import (
    FeatureTable,
    RecsysData,
    encode_categories,
    with_unknown_row,
)
from splitmesh.data.sources import DomainTable, FactTable
from splitmesh.errors import ProtocolError
from splitmesh.split.entity import EntityDomain
from splitmesh.split.interactions import InteractionsParty
from splitmesh.split.party import handles
from splitmesh.split.peer_alignment import (
    AlignsKeys,
    Peers,
    Relayed,
    SignedAlignment,
    claimed_sender,
)
from splitmesh.transport.identity import Identity
from splitmesh.transport.messages import (
    Ack,
    AlignDone,
)


def star_peers(fact: str, dimensions: list[str], identity: Identity) -> dict[str, Peers]:
    """One party's peers per star pair (fact, dimension): each pair aligns on its own."""
    return {d: Peers(fact, (fact, d), identity) for d in dimensions}


def feature_table(table: DomainTable) -> FeatureTable:
    """A dimension's keyed table as its bottom model reads it: categories coded 1..k
    (0: missing) in sorted order of their values (as read, when the loader coded them)."""
    if table.cardinalities is not None:
        return FeatureTable(
            table.numeric, tuple(table.numeric_names), table.categorical,
            tuple(table.categorical_names), table.cardinalities,
        )  # fmt: skip
    codes = [encode_categories(table.categorical[:, j]) for j in range(table.categorical.shape[1])]
    return FeatureTable(
        numeric=table.numeric,
        numeric_names=tuple(table.numeric_names),
        categorical=np.stack([c for c, _ in codes], axis=1)
        if codes
        else np.zeros((len(table), 0), np.int64),
        categorical_names=tuple(table.categorical_names),
        cardinalities=tuple(k for _, k in codes),
    )


class FactDomain(AlignsKeys, InteractionsParty):
    """The fact domain: the interactions owner of the recommender (split/interactions.py),
    over its own fact table, aligned with each dimension on the foreign key it names."""

    role = "fact domain"

    def __init__(
        self,
        table: FactTable,
        mode: str,
        dimensions: dict[str, str],
        *,
        peers: dict[str, Peers] | None = None,
        state_dir: str | Path | None = None,
    ) -> None:
        users, user_index = table.users.distinct, table.users.index
        items, item_index = table.items.distinct, table.items.index
        data = RecsysData(table.domain, user_index, item_index, table.time, len(users), len(items))
        super().__init__(table.domain, data, mode, state_dir=state_dir)
        self.dimensions = dict(dimensions)  # dimension -> side, from its own mesh file
        keys = {"users": users, "items": items}
        peers = peers or {}
        self.by_dimension = {
            d: SignedAlignment(self.name, [str(k) for k in keys[side].tolist()], peers.get(d))
            for d, side in self.dimensions.items()
        }
        self.maps: dict[str, np.ndarray] = {}  # side -> aligned position per index (-1: none)

    # -- alignment, one signed PSI per dimension (AlignsKeys' handlers) ---------------------
    def alignments(self) -> list[SignedAlignment]:
        return list(self.by_dimension.values())

    def by_peer(self, peer: object) -> SignedAlignment:
        a = self.by_dimension.get(peer) if isinstance(peer, str) else None
        if a is None:
            raise ProtocolError(
                f"{self.role} {self.name!r} aligns keys with {sorted(self.by_dimension)} "
                f"only, not {str(peer)[:40]!r}"
            )
        return a

    def by_sender(self, msg: Relayed) -> SignedAlignment:
        return self.by_peer(claimed_sender(msg, self.name))

    @handles(AlignDone)
    def on_align_done(self, msg: AlignDone) -> Ack:
        sizes = {}
        for d, side in self.dimensions.items():
            order = self.by_dimension[d].done()  # aligned position -> this side's index
            n = self.data.n_users if side == "users" else self.data.n_items
            aligned = np.full(n, -1, np.int64)
            aligned[order] = np.arange(len(order))
            self.maps[side], sizes[d] = aligned, len(order)
        return Ack(info={"rows": len(self.data), "common": sizes})

    def _sealed(self, peers: dict, context: str, users: np.ndarray, items: np.ndarray) -> dict:
        """Each dimension's rows of the plan, by aligned position, sealed for it. Who
        describes which side is this domain's own mesh file's word, not the relay's."""
        claimed = {p: v[0] if isinstance(v, list | tuple) and v else None for p, v in peers.items()}
        if claimed != self.dimensions:
            raise ProtocolError(
                f"{self.role} {self.name!r} seals row plans for its dimensions "
                f"{self.dimensions}, not {str(claimed)[:120]}"
            )
        if set(self.maps) != set(self.dimensions.values()):
            raise ProtocolError(f"{self.role} {self.name!r} plans rows only once aligned")
        rows = {side: self.maps[side][users if side == "users" else items] for side in self.maps}
        return {
            peer: self.seal.seal(peer, key, context, rows[side])
            for peer, (side, key) in sorted(peers.items())
        }


class DimensionDomain(AlignsKeys, EntityDomain):
    """A dimension domain: its own keyed table and bottom model; it learns which of its
    rows each example uses (sealed by the fact domain) and nothing else about it."""

    def __init__(
        self,
        table: DomainTable,
        side: str,
        *,
        peers: Peers | None = None,
        state_dir: str | Path | None = None,
        model_dir: str | Path | None = None,
    ) -> None:
        super().__init__(
            table.domain,
            feature_table(table),
            side,
            state_dir=state_dir,
            model_dir=model_dir,
            source=table.source,
        )
        self.alignment = SignedAlignment(table.domain, table.key_items(), peers)
        self.unknown = len(table)  # the row an entity it does not hold reads
        f = with_unknown_row(self.features)
        self._num, self._cat = torch.from_numpy(f.numeric), torch.from_numpy(f.categorical)

    def own_rows(self, partition: str, rows: np.ndarray) -> np.ndarray:
        """Aligned positions (-1: an entity it does not hold) -> its own rows."""
        if self.rows_ is None:
            raise ProtocolError(f"domain {self.name!r} got a row plan before its keys were aligned")
        n = len(self.rows_)
        if rows.ndim != 1 or (len(rows) and (rows.min() < -1 or rows.max() >= n)):
            raise ProtocolError(
                f"domain {self.name!r}: a row plan for {partition!r} names positions outside "
                f"its {n} aligned keys"
            )
        return np.where(rows >= 0, self.rows_[np.maximum(rows, 0)], self.unknown)
