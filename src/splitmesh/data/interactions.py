"""Implicit-feedback data for recommenders: interactions, entity feature tables, the
leave-latest-out split, negatives drawn per epoch and the ranking candidates.

Everything is index arrays (one int per interaction), never one Python object per row.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from splitmesh.data.features import NumericPrep
from splitmesh.errors import ConfigError, DataError


@dataclasses.dataclass(frozen=True)
class FeatureTable:
    """One domain's entity table, row ``r`` describing entity index ``r``.

    ``numeric`` may hold NaN (missing); ``categorical`` holds codes with 0 for missing or
    unknown, so ``cardinalities[j]`` counts that bucket too.
    """

    numeric: np.ndarray  # (n, k) float64
    numeric_names: tuple[str, ...]
    categorical: np.ndarray  # (n, c) int64
    categorical_names: tuple[str, ...]
    cardinalities: tuple[int, ...]

    def __post_init__(self) -> None:
        n = len(self.numeric)
        if self.numeric.shape != (n, len(self.numeric_names)) or self.categorical.shape != (
            n,
            len(self.categorical_names),
        ):
            raise DataError(
                f"feature table shapes {self.numeric.shape} / {self.categorical.shape} do not "
                f"match {len(self.numeric_names)} numeric and {len(self.categorical_names)} "
                "categorical columns"
            )

    def __len__(self) -> int:
        return len(self.numeric)

    @property
    def columns(self) -> list[str]:
        return [*self.numeric_names, *self.categorical_names]

    def take(self, rows: np.ndarray) -> FeatureTable:
        return dataclasses.replace(
            self, numeric=self.numeric[rows], categorical=self.categorical[rows]
        )


def encode_categories(values) -> tuple[np.ndarray, int]:
    """Codes 1..k by sorted distinct value, 0 for missing; returns (codes, k + 1)."""
    import pandas as pd

    s = pd.Series(values)
    missing = s.isna().to_numpy()
    codes, uniques = pd.factorize(s.astype("string").fillna(""), sort=True)
    # factorize put "" (missing) somewhere in the sorted order: renumber so missing is 0
    labels = np.asarray(uniques, dtype=object)
    keep = labels != ""
    remap = np.zeros(len(labels), np.int64)
    remap[keep] = np.arange(1, keep.sum() + 1)
    out = remap[codes]
    out[missing] = 0
    return out.astype(np.int64), int(keep.sum()) + 1


@dataclasses.dataclass(frozen=True)
class RecsysData:
    """A three-domain star: interactions (the fact table) plus user and item features.

    Users and items are re-indexed 0..n-1; row ``u`` of ``users`` describes user ``u``.
    """

    name: str
    user: np.ndarray  # (n_interactions,) int32 or int64
    item: np.ndarray
    time: np.ndarray  # int64; ties keep the input order
    n_users: int
    n_items: int
    users: FeatureTable | None = None
    items: FeatureTable | None = None

    def __post_init__(self) -> None:
        n = len(self.user)
        if not (len(self.item) == len(self.time) == n):
            raise DataError(f"{self.name}: user, item and time columns differ in length")
        if n == 0:
            raise DataError(f"{self.name}: no interactions")
        for what, col, bound in (
            ("user", self.user, self.n_users),
            ("item", self.item, self.n_items),
        ):
            if col.min() < 0 or col.max() >= bound:
                raise DataError(f"{self.name}: {what} index outside 0..{bound - 1}")
        for what, table, bound in (
            ("users", self.users, self.n_users),
            ("items", self.items, self.n_items),
        ):
            if table is not None and len(table) != bound:
                raise DataError(f"{self.name}: the {what} table has {len(table)} rows, not {bound}")

    def __len__(self) -> int:
        return len(self.user)

    def summary(self) -> dict:
        return {
            "dataset": self.name,
            "interactions": len(self),
            "users": self.n_users,
            "items": self.n_items,
            "density": len(self) / (self.n_users * self.n_items),
        }


# --- leave-latest-out -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RankingSplit:
    """Interaction indices per partition: each user's ``holdout`` latest are test, the one
    before them validation, the rest training."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    holdout: int


def time_order(data: RecsysData) -> np.ndarray:
    """Interaction indices by user, then time, then input order (ties keep it)."""
    return np.lexsort((np.arange(len(data)), data.time, data.user))


def leave_latest_out(
    data: RecsysData, holdout: int = 1, order: np.ndarray | None = None
) -> RankingSplit:
    """``order``: ``time_order(data)``, if the caller holds it already."""
    if holdout < 1:
        raise ConfigError(f"The 'holdout' parameter must be >= 1. Got {holdout} instead.")
    order = time_order(data) if order is None else order
    users = data.user[order]
    counts = np.bincount(users, minlength=data.n_users)
    too_few = np.flatnonzero((counts > 0) & (counts < holdout + 2))
    if len(too_few):
        raise DataError(
            f"{data.name}: {len(too_few)} user(s) have fewer than {holdout + 2} interactions "
            f"(holdout {holdout} + 1 validation + 1 training), e.g. user index {too_few[0]}",
            hint="raise the k-core minimum per user or lower --holdout",
        )
    ends = np.cumsum(counts)
    rank_from_end = ends[users] - 1 - np.arange(len(users))  # 0 = the user's latest
    del users, ends
    # positions as int32 below 2**31 rows: the training positions are most of the table
    kind = np.int32 if len(order) < 2**31 else np.int64
    test = np.sort(order[rank_from_end < holdout]).astype(kind)
    val = np.sort(order[rank_from_end == holdout]).astype(kind)
    train = np.sort(order[rank_from_end > holdout]).astype(kind)
    return RankingSplit(train, val, test, holdout)


class UserHistory:
    """The items each user interacted with just before a given interaction, for the user
    side of the id embeddings (nn/neumf.py): its ``k`` latest earlier items, ``n_items``
    (padding) where the user has fewer.

    An interaction is named by its *place*: its position in ``time_order``, where each
    user's interactions are consecutive and in time order, so the items before place ``q``
    are those at ``q - 1, q - 2, ...`` down to the user's first place.
    """

    def __init__(self, data: RecsysData, k: int, order: np.ndarray) -> None:
        if k < 1:
            raise ConfigError(f"a user history holds 1 item or more, not {k}")
        self.k, self.pad = k, data.n_items
        self.items = data.item[order].astype(np.int32 if data.n_items < 2**31 else np.int64)
        self.back = np.arange(1, k + 1)
        counts = np.bincount(data.user, minlength=data.n_users)
        self.ends = np.cumsum(counts)  # one past each user's last place
        self.starts = self.ends - counts

    @staticmethod
    def places(order: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """The places of the interactions ``indices`` (``order`` is ``time_order``)."""
        kind = np.int32 if len(order) < 2**31 else np.int64
        place = np.empty(len(order), kind)
        place[order] = np.arange(len(order), dtype=kind)
        return place[indices]

    def before(self, users: np.ndarray, places: np.ndarray) -> np.ndarray:
        """(n, k) items: the latest first, ``pad`` past the user's first interaction."""
        at = places[:, None] - self.back  # int64: places are positions, never below 0
        out = self.items[np.maximum(at, 0)].astype(np.int64)  # what a lookup reads
        out[at < self.starts[users][:, None]] = self.pad
        return out

    def held_out(self, users: np.ndarray, holdout: int, partition: str) -> np.ndarray:
        """Each user's place where ``partition`` begins under leave-latest-out: its history
        there is every interaction before the held-out ones (for test, validation's too)."""
        first = {"test": holdout, "val": holdout + 1}[partition]
        return self.ends[users] - first


# --- sampling items a user never interacted with ------------------------------------------


class SeenPairs:
    """Which (user, item) pairs exist, for vectorised membership tests."""

    def __init__(self, user: np.ndarray, item: np.ndarray, n_items: int) -> None:
        self.n_items = n_items
        self.keys = _sorted_distinct(user.astype(np.int64) * n_items + item)
        self.mask: np.ndarray | None = None  # a subset's pairs among ``keys`` (``among``)
        self._per_user: np.ndarray | None = None

    def among(self, user: np.ndarray, item: np.ndarray) -> SeenPairs:
        """The pairs (user, item), all of them in this set, sharing its keys: a byte per
        pair instead of another sorted copy (at 30M pairs, 240 MB)."""
        sub = object.__new__(SeenPairs)
        sub.n_items, sub.keys, sub._per_user = self.n_items, self.keys, None
        mine = _sorted_distinct(user.astype(np.int64) * self.n_items + item)
        at = np.searchsorted(self.keys, mine)  # sorted queries: a walk, not random reads
        if len(at) and (at[-1] >= len(self.keys) or not np.array_equal(self.keys[at], mine)):
            raise DataError("a pair outside the seen pairs it is a subset of")
        sub.mask = np.zeros(len(self.keys), bool)
        sub.mask[at] = True
        return sub

    def _find(self, user: np.ndarray, item: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keys = user.astype(np.int64) * self.n_items + item
        if len(keys) < 1 << 16:
            at = np.searchsorted(self.keys, keys)
        else:  # sorted first: 6.7M lookups in 31.8M keys, 16 s in random order, 1.8 s so
            order = np.argsort(keys)
            at = np.empty(len(keys), np.int64)
            at[order] = np.searchsorted(self.keys, keys[order])
        at = np.minimum(at, len(self.keys) - 1)
        return at, self.keys[at] == keys

    def contains(self, user: np.ndarray, item: np.ndarray) -> np.ndarray:
        at, found = self._find(user, item)
        return found if self.mask is None else found & self.mask[at]

    def per_user(self, n_users: int) -> np.ndarray:
        """Pairs per user index (0..n_users-1 at least); counted once."""
        if self._per_user is None:
            keys = self.keys if self.mask is None else self.keys[self.mask]
            self._per_user = np.bincount(keys // self.n_items)
        counts = self._per_user
        if len(counts) < n_users:
            counts = np.concatenate([counts, np.zeros(n_users - len(counts), counts.dtype)])
        return counts


def _sorted_distinct(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` by one sort: numpy 2's hash-based unique took 3.6 s for 3M
    int64 here, a sort 0.3 s."""
    out = np.sort(values)
    if len(out) > 1:
        out = out[np.concatenate([[True], out[1:] != out[:-1]])]
    return out


def sample_unseen(
    users: np.ndarray,
    count: int,
    seen: SeenPairs,
    rng: np.random.Generator,
    checked: bool = False,
) -> np.ndarray:
    """``count`` items per entry of ``users`` drawn uniformly among items that user has not
    seen (with replacement across draws), by vectorised rejection. ``checked``: the caller
    has made sure no user has seen every item (counting costs a pass over all pairs)."""
    if not checked:
        per_user = seen.per_user(int(users.max()) + 1 if len(users) else 0)
        full = per_user[users] >= seen.n_items
        if full.any():
            raise DataError(f"user index {users[full][0]} has interacted with every item")
    rows = np.repeat(users, count)
    out = rng.integers(0, seen.n_items, size=len(rows))
    bad = seen.contains(rows, out)
    while bad.any():  # each round redraws only the rejected entries
        out[bad] = rng.integers(0, seen.n_items, size=int(bad.sum()))
        bad[bad] = seen.contains(rows[bad], out[bad])
    return out.reshape(len(users), count)


def distinct_unseen(
    users: np.ndarray,
    count: int,
    seen: SeenPairs,
    rng: np.random.Generator,
    draws: int = 1 << 22,
) -> np.ndarray:
    """``count`` distinct unseen items per user (the 99 negatives of the NCF protocol), as
    int32. Drawn in blocks of users of about ``draws`` items: at 1.4M users x 99 the draws
    and their membership tests would hold several GB at once."""
    room = seen.n_items - seen.per_user(int(users.max()) + 1)[users]
    if len(users) and room.min() < count:
        r = int(np.argmin(room))
        raise DataError(
            f"user index {users[r]} has only {room[r]} items it never interacted with; "
            f"{count} are needed as negatives"
        )
    out = np.empty((len(users), count), np.int32)
    block = max(1, draws // max(count, 1))
    for start in range(0, len(users), block):  # one block: the draws of a single call
        part = users[start : start + block]
        out[start : start + len(part)] = _distinct_block(part, count, seen, rng)
    return out


def _distinct_block(
    users: np.ndarray, count: int, seen: SeenPairs, rng: np.random.Generator
) -> np.ndarray:
    out = sample_unseen(users, count, seen, rng, checked=True)
    ordered = np.sort(out, axis=1)
    repeats = np.flatnonzero((ordered[:, 1:] == ordered[:, :-1]).any(axis=1))
    del ordered
    for r in repeats:  # rows with a repeated item: fixed row by row, in order
        row = out[r]
        chosen = list(dict.fromkeys(row.tolist()))
        while len(chosen) < count:
            extra = sample_unseen(users[r : r + 1], count, seen, rng, checked=True)[0]
            chosen.extend(x for x in extra.tolist() if x not in chosen)
        out[r] = chosen[:count]
    return out


def epoch_parts(
    n_positives: int, ratio: int, part_examples: int, batch_size: int, min_batch: int = 1
) -> list[int]:
    """Positives per part of an epoch. An epoch is planned, relayed and held one part at a
    time, so what every party holds for it is bounded by ``part_examples``, not by the
    table. Every part but the last holds whole batches (no batch straddles two parts); a
    last part smaller than ``min_batch`` examples joins the one before, as a last batch
    joins the batch before it."""
    width = 1 + ratio
    unit = batch_size // math.gcd(batch_size, width)  # positives whose examples fill batches
    per_part = max(unit, part_examples // width // unit * unit)
    counts = [per_part] * (n_positives // per_part)
    if n_positives % per_part:
        counts.append(n_positives % per_part)
    if len(counts) > 1 and counts[-1] * width < min_batch:
        tail = counts.pop()
        counts[-1] += tail
    return counts


class EpochExamples:
    """One epoch's training examples, drawn a part at a time: every positive plus ``ratio``
    fresh negatives for it, shuffled within its part; (user, item, label, place) per part,
    where ``place`` is the place (``UserHistory``) of the positive each example was drawn
    for, or None when no ``place`` was given.

    An epoch of one part is drawn as it always was (one generator from (seed, epoch));
    with more, the positives are first shuffled across the epoch, so each part is a random
    share of them, and each part's negatives and order come from its own generator.
    """

    def __init__(
        self,
        user: np.ndarray,
        item: np.ndarray,
        seen: SeenPairs,
        ratio: int,
        seed: int,
        epoch: int,
        counts: list[int],
        place: np.ndarray | None = None,
    ) -> None:
        if ratio < 1:
            raise ConfigError(f"The 'negatives' ratio must be >= 1. Got {ratio} instead.")
        if sum(counts) != len(user):
            raise ConfigError(f"epoch parts cover {sum(counts)} positives, not {len(user)}")
        self.user, self.item, self.seen, self.ratio = user, item, seen, ratio
        self.seed, self.epoch, self.place = seed, epoch, place
        self.bounds = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.order = None
        if len(counts) > 1:  # int32: at 30M positives the order is held all epoch
            rng = np.random.default_rng([seed, 7919, epoch, 1])
            self.order = rng.permutation(len(user)).astype(np.int32)

    @property
    def parts(self) -> int:
        return len(self.bounds) - 1

    def part(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        if not 0 <= k < self.parts:
            raise ConfigError(f"epoch {self.epoch} has parts 0..{self.parts - 1}, not {k}")
        user, item, place = self.user, self.item, self.place
        if self.order is None:
            rng = np.random.default_rng([self.seed, 7919, self.epoch])
        else:
            rng = np.random.default_rng([self.seed, 7919, self.epoch, 2, k])
            picked = self.order[self.bounds[k] : self.bounds[k + 1]]
            user, item = user[picked], item[picked]
            place = None if place is None else place[picked]
        return _examples(user, item, self.seen, self.ratio, rng, place)


def epoch_examples(
    user: np.ndarray,
    item: np.ndarray,
    seen: SeenPairs,
    ratio: int,
    seed: int,
    epoch: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One epoch's training examples in one part (see ``EpochExamples``): user, item, label."""
    return EpochExamples(user, item, seen, ratio, seed, epoch, [len(user)]).part(0)[:3]


def _examples(
    user: np.ndarray,
    item: np.ndarray,
    seen: SeenPairs,
    ratio: int,
    rng: np.random.Generator,
    place: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    neg = sample_unseen(user, ratio, seen, rng).reshape(-1)
    users = np.concatenate([user, np.repeat(user, ratio)])
    items = np.concatenate([item, neg])
    labels = np.concatenate([np.ones(len(user), np.float32), np.zeros(len(neg), np.float32)])
    order = rng.permutation(len(users))
    if place is not None:  # a negative is drawn for a positive: it shares that one's place
        place = np.concatenate([place, np.repeat(place, ratio)])[order]
    return users[order], items[order], labels[order], place


@dataclasses.dataclass(frozen=True)
class Candidates:
    """A ranking task: per user, held-out positives and the items they compete with.

    ``negatives`` is (n_users, m) for the sampled protocol, or None for full ranking
    (every item the user did not interact with in training or validation competes).
    """

    users: np.ndarray  # (n,)
    positives: np.ndarray  # (n, holdout)
    negatives: np.ndarray | None


def ranking_candidates(
    data: RecsysData,
    split: RankingSplit,
    partition: str,
    *,
    n_negatives: int | None,
    seed: int,
    seen: SeenPairs | None = None,
    n_users: int | None = None,
) -> Candidates:
    """Held-out items of ``partition`` per user and, unless full ranking, ``n_negatives``
    items each user never interacted with (in any partition), sampled once by seed.
    ``seen``: every (user, item) pair of ``data``, if the caller holds it already.
    ``n_users``: rank only a sample of that many users (drawn once by seed)."""
    idx = getattr(split, partition)
    order = np.lexsort((data.time[idx], data.user[idx]))
    idx = idx[order]
    users, counts = np.unique(data.user[idx], return_counts=True)
    if len(np.unique(counts)) != 1:
        raise DataError(f"{data.name}: users hold different numbers of {partition} items")
    positives = data.item[idx].reshape(len(users), counts[0])
    salt = {"val": 1, "test": 2}[partition]
    if n_users is not None and len(users) > n_users:
        rng = np.random.default_rng([seed, 104729, salt, 1])
        keep = np.sort(rng.choice(len(users), n_users, replace=False))
        users, positives = users[keep], positives[keep]
    if n_negatives is None:
        return Candidates(users, positives, None)
    seen = seen or SeenPairs(data.user, data.item, data.n_items)
    negatives = distinct_unseen(
        users, n_negatives, seen, np.random.default_rng([seed, 104729, salt])
    )
    return Candidates(users, positives, negatives)


@dataclasses.dataclass(frozen=True)
class PreparedFeatures:
    """A feature table as a bottom model reads it: scaled numeric columns (missing values
    filled with the mean, plus a 0/1 "was missing" column each) and categorical codes."""

    numeric: np.ndarray  # (n, k') float32
    categorical: np.ndarray  # (n, c) int64
    numeric_names: tuple[str, ...]
    cardinalities: tuple[int, ...]
    missing: dict  # column -> number of missing values


def with_unknown_row(f: PreparedFeatures) -> PreparedFeatures:
    """``f`` plus one row after its own for an entity the table does not hold: every
    (scaled) numeric feature at its mean (0), every category missing (code 0)."""
    return dataclasses.replace(
        f,
        numeric=np.vstack([f.numeric, np.zeros((1, f.numeric.shape[1]), f.numeric.dtype)]),
        categorical=np.vstack([f.categorical, np.zeros((1, f.categorical.shape[1]), np.int64)]),
    )


def prepare_features(table: FeatureTable) -> PreparedFeatures:
    """Scale by the whole entity table: entity rows carry no labels, so nothing leaks."""
    x = table.numeric.astype(np.float64)
    missing = np.isnan(x)
    prep = NumericPrep.fit(x)
    numeric, holes = prep.transform(x), prep.holes
    names = prep.names(table.numeric_names)
    counts = {table.numeric_names[j]: int(missing[:, j].sum()) for j in holes}
    for j, name in enumerate(table.categorical_names):
        n = int((table.categorical[:, j] == 0).sum())
        if n:
            counts[name] = n
    return PreparedFeatures(
        numeric=numeric.astype(np.float32),
        categorical=table.categorical.astype(np.int64),
        numeric_names=names,
        cardinalities=tuple(table.cardinalities),
        missing=counts,
    )
