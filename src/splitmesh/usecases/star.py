"""Ranking meshes (``task: ranking``): a star schema of a fact domain and its dimension
domains, trained as a recommender (NeuMF cut across the domains, split/star.py).

The centralized reference joins the fact table to the dimensions in the clear, in this
process, and trains the same network on the same examples, negatives and candidates.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from splitmesh.config import Optim
from splitmesh.data.interactions import (
    FeatureTable,
    PreparedFeatures,
    RecsysData,
    prepare_features,
    with_unknown_row,
)
from splitmesh.mesh.spec import MeshSpec
from splitmesh.split.centralized_ranker import CentralizedRanker
from splitmesh.split.star import (
    feature_table,
)


def domain_order(spec: MeshSpec) -> list[str]:
    """The fact domain first (it holds the ids), then its dimensions in mesh order."""
    dims = spec.dimensions
    return [spec.fact.domain, *[d.name for d in spec.domains if d.name in dims]]


def joined_data(spec: MeshSpec) -> tuple[RecsysData, dict[str, PreparedFeatures]]:
    """The fact table joined to every dimension in the clear (the centralized reference):
    the fact domain's indices, row ``u`` of a side's table describing entity ``u`` (every
    feature missing where the dimension does not hold it), and each dimension's rows as
    that domain prepares them (its own scaling; its unknown row where it lacks one)."""
    fact = spec.read_fact()
    users, user_index = fact.users.distinct, fact.users.index
    items, item_index = fact.items.distinct, fact.items.index
    tables: dict[str, FeatureTable] = {}
    prepared: dict[str, PreparedFeatures] = {}
    for d, side in spec.dimensions.items():
        table = spec.read_dimension(d)
        full = feature_table(table)
        wanted = users if side == "users" else items
        # by key text, as PSI matches them (an integer key meets its text in the other)
        own = pd.Index(table.keys.astype(str))
        rows = own.get_indexer(wanted.astype(str)).astype(np.int64)  # -1: not held
        known = (rows >= 0)[:, None]
        numeric = np.where(known, full.numeric[rows], np.nan)
        codes = np.where(known, full.categorical[rows], 0)
        tables[side] = FeatureTable(
            numeric, full.numeric_names, codes, full.categorical_names, full.cardinalities
        )
        f = with_unknown_row(prepare_features(full))
        at = np.where(rows >= 0, rows, len(full))  # the unknown row comes after the table's
        prepared[d] = dataclasses.replace(f, numeric=f.numeric[at], categorical=f.categorical[at])
    data = RecsysData(
        spec.name,
        user_index,
        item_index,
        fact.time,
        len(users),
        len(items),
        users=tables.get("users"),
        items=tables.get("items"),
    )
    return data, prepared


def star_centralized(
    spec: MeshSpec, *, run: str, ckpt: Path | None, optim: Optim
) -> CentralizedRanker:
    order = domain_order(spec)
    data, prepared = joined_data(spec)
    return CentralizedRanker(
        data,
        order,
        spec=spec.model,
        optim=optim,
        seed=spec.training.seed,
        ranking=spec.ranking,
        run=run,
        checkpoint_dir=ckpt,
        sides=spec.dimensions,
        prepared=prepared,
    )
