import numpy as np
import pytest

from splitmesh.data.interactions import (
    EpochExamples,
    FeatureTable,
    RecsysData,
    SeenPairs,
    UserHistory,
    epoch_examples,
    epoch_parts,
    leave_latest_out,
    prepare_features,
    ranking_candidates,
    sample_unseen,
    time_order,
)
from splitmesh.errors import DataError


def toy(n_users=30, n_items=40, per_user=8, seed=0) -> RecsysData:
    rng = np.random.default_rng(seed)
    user = np.repeat(np.arange(n_users), per_user)
    item = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
    time = rng.permutation(len(user))
    return RecsysData("toy", user, item, time, n_users, n_items)


def test_leave_latest_out_holds_out_each_users_latest_items():
    d = toy()
    s = leave_latest_out(d, holdout=2)
    for u in range(d.n_users):
        times = np.sort(d.time[d.user == u])
        assert set(d.time[s.test][d.user[s.test] == u]) == set(times[-2:])
        assert d.time[s.val][d.user[s.val] == u] == times[-3]
        assert d.time[s.train][d.user[s.train] == u].max() < times[-3]
    assert len(s.train) + len(s.val) + len(s.test) == len(d)


def test_leave_latest_out_refuses_users_with_too_few_interactions():
    d = toy(per_user=3)
    with pytest.raises(DataError, match="fewer than 4 interactions"):
        leave_latest_out(d, holdout=2)


def test_a_user_history_is_the_latest_earlier_items_and_never_a_held_out_one():
    d = toy(n_users=12, per_user=6)
    order = time_order(d)
    h = UserHistory(d, 3, order)
    idx = np.arange(len(d))
    got = h.before(d.user, UserHistory.places(order, idx))
    for n in idx:  # by hand: the user's items with an earlier time, latest first
        mine = np.flatnonzero((d.user == d.user[n]) & (d.time < d.time[n]))
        earlier = d.item[mine[np.argsort(-d.time[mine])]][:3]
        assert got[n].tolist() == [*earlier.tolist(), *[d.n_items] * (3 - len(earlier))]
    s = leave_latest_out(d, holdout=2, order=order)
    users = np.arange(d.n_users)
    for partition, before in (("val", s.train), ("test", np.concatenate([s.train, s.val]))):
        recent = h.before(users, h.held_out(users, 2, partition))
        for u in users:  # the latest three of what comes before the partition, nothing after
            mine = before[d.user[before] == u]
            assert recent[u].tolist() == d.item[mine[np.argsort(-d.time[mine])]][:3].tolist()


def test_negatives_are_unseen_and_fresh_every_epoch():
    d = toy()
    seen = SeenPairs(d.user, d.item, d.n_items)
    neg = sample_unseen(d.user, 5, seen, np.random.default_rng(0))
    assert not seen.contains(np.repeat(d.user, 5), neg.reshape(-1)).any()
    u0, i0, y0 = epoch_examples(d.user, d.item, seen, 4, seed=0, epoch=0)
    u1, i1, y1 = epoch_examples(d.user, d.item, seen, 4, seed=0, epoch=1)
    assert len(u0) == 5 * len(d) and y0.sum() == len(d)
    assert not np.array_equal(i0, i1)  # fresh negatives (and order) each epoch
    again = epoch_examples(d.user, d.item, seen, 4, seed=0, epoch=1)
    assert np.array_equal(i1, again[1])  # but reproducible from (seed, epoch)
    assert not seen.contains(u1[y1 == 0], i1[y1 == 0]).any()


@pytest.mark.parametrize("n_negatives", [99, None])
def test_ranking_a_sample_of_users_keeps_their_candidates_as_drawn_for_them(n_negatives):
    d = toy(n_users=300, n_items=200)
    s = leave_latest_out(d)
    every = ranking_candidates(d, s, "val", n_negatives=n_negatives, seed=0)
    some = ranking_candidates(d, s, "val", n_negatives=n_negatives, seed=0, n_users=50)
    assert len(some.users) == 50 and set(some.users) < set(every.users)
    at = np.searchsorted(every.users, some.users)
    assert np.array_equal(some.positives, every.positives[at])
    again = ranking_candidates(d, s, "val", n_negatives=n_negatives, seed=0, n_users=50)
    assert np.array_equal(again.users, some.users)
    assert (
        ranking_candidates(d, s, "test", n_negatives=None, seed=0, n_users=50).users.tolist()
        != some.users.tolist()
    )
    same = ranking_candidates(d, s, "val", n_negatives=n_negatives, seed=0, n_users=300)
    assert np.array_equal(same.users, every.users)


@pytest.mark.parametrize(
    ("n", "ratio", "part", "batch", "min_batch", "counts"),
    [
        (600, 4, 1024, 64, 1, [192, 192, 192, 24]),  # 960 examples: 15 batches a part
        (600, 4, 1 << 23, 64, 1, [600]),  # fits in one part
        (100, 3, 64, 16, 1, [16, 16, 16, 16, 16, 16, 4]),  # at least a batch per part
        (97, 1, 64, 32, 8, [32, 32, 33]),  # 2 examples left over: they join the part before
    ],
)
def test_epoch_parts_hold_whole_batches(n, ratio, part, batch, min_batch, counts):
    got = epoch_parts(n, ratio, part, batch, min_batch)
    assert got == counts and sum(got) == n
    assert all(c * (1 + ratio) % batch == 0 for c in got[:-1])


def test_an_epoch_in_parts_holds_every_positive_once_with_unseen_negatives():
    d = toy(n_users=60, per_user=20, n_items=400)
    seen = SeenPairs(d.user, d.item, d.n_items)
    counts = epoch_parts(len(d), 4, 1024, 64)
    assert len(counts) > 1
    place = np.arange(len(d)) + 1000  # each positive's own tag
    epoch = EpochExamples(d.user, d.item, seen, 4, seed=0, epoch=3, counts=counts, place=place)
    parts = [epoch.part(k) for k in range(epoch.parts)]
    assert [len(u) for u, *_ in parts] == [5 * c for c in counts]
    positives = np.concatenate([u * d.n_items + i for u, i, *_ in parts])
    labels = np.concatenate([y for _, _, y, _ in parts])
    assert sorted(positives[labels == 1]) == sorted(d.user * d.n_items + d.item)
    for u, i, y, p in parts:
        assert y.sum() == len(y) // 5  # a positive and its negatives stay in one part
        assert not seen.contains(u[y == 0], i[y == 0]).any()
        # every positive keeps its own place; its four negatives share it, and its user
        assert np.array_equal(p[y == 1] - 1000, _index_of(d, u[y == 1], i[y == 1]))
        tags, n = np.unique(p, return_counts=True)
        assert (n == 5).all() and np.array_equal(d.user[tags - 1000][np.searchsorted(tags, p)], u)
    again = EpochExamples(d.user, d.item, seen, 4, seed=0, epoch=3, counts=counts, place=place)
    assert all(np.array_equal(a, b) for a, b in zip(parts[1], again.part(1), strict=True))
    # places change nothing that is drawn
    bare = EpochExamples(d.user, d.item, seen, 4, seed=0, epoch=3, counts=counts).part(1)
    assert all(np.array_equal(a, b) for a, b in zip(parts[1][:3], bare[:3], strict=True))
    assert bare[3] is None
    # one part is drawn as an epoch always was
    whole = EpochExamples(d.user, d.item, seen, 4, seed=0, epoch=3, counts=[len(d)]).part(0)
    assert all(
        np.array_equal(a, b)
        for a, b in zip(whole[:3], epoch_examples(d.user, d.item, seen, 4, 0, 3), strict=True)
    )


def _index_of(d, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """The interaction index of each (user, item) pair of ``d`` (pairs are distinct)."""
    keys = d.user.astype(np.int64) * d.n_items + d.item
    order = np.argsort(keys)
    return order[np.searchsorted(keys[order], users.astype(np.int64) * d.n_items + items)]


def test_seen_pairs_of_a_subset_share_the_keys_and_answer_as_their_own():
    rng = np.random.default_rng(0)
    user, item = rng.integers(0, 3000, 200_000), rng.integers(0, 700, 200_000)
    part = rng.random(len(user)) < 0.6
    every = SeenPairs(user, item, 700)
    assert np.array_equal(every.keys, np.unique(user * 700 + item))
    own, shared = SeenPairs(user[part], item[part], 700), every.among(user[part], item[part])
    assert shared.keys is every.keys
    qu, qi = rng.integers(0, 3000, 100_000), rng.integers(0, 700, 100_000)  # sorted path
    for seen in (every, own):
        assert np.array_equal(seen.contains(qu, qi), np.isin(qu * 700 + qi, seen.keys))
    assert np.array_equal(shared.contains(qu, qi), own.contains(qu, qi))
    assert np.array_equal(shared.contains(qu[:50], qi[:50]), own.contains(qu[:50], qi[:50]))
    assert np.array_equal(shared.per_user(3005), own.per_user(3005))
    missing = np.flatnonzero(~own.contains(user, item))[0]  # inside the key range, or beyond
    for u, i in ((user[missing], item[missing]), (5000, 1)):
        with pytest.raises(DataError, match="outside the seen pairs"):
            own.among(np.array([u]), np.array([i]))


def test_ranking_candidates_are_distinct_items_never_interacted_with():
    d = toy(n_items=200)
    s = leave_latest_out(d)
    c = ranking_candidates(d, s, "test", n_negatives=99, seed=0)
    seen = SeenPairs(d.user, d.item, d.n_items)
    assert c.negatives.shape == (d.n_users, 99)
    assert all(len(set(row)) == 99 for row in c.negatives)
    assert not seen.contains(np.repeat(c.users, 99), c.negatives.reshape(-1)).any()
    again = ranking_candidates(d, s, "test", n_negatives=99, seed=0)
    assert np.array_equal(c.negatives, again.negatives)


def test_prepare_features_fills_and_flags_missing_values():
    t = FeatureTable(
        numeric=np.array([[1.0, 5.0], [np.nan, 7.0], [3.0, 9.0]]),
        numeric_names=("age", "x"),
        categorical=np.array([[1], [0], [2]]),
        categorical_names=("club",),
        cardinalities=(3,),
    )
    f = prepare_features(t)
    assert f.numeric_names == ("age", "x", "age_missing")
    assert np.isfinite(f.numeric).all()
    assert f.numeric[:, 2].tolist() == [0.0, 1.0, 0.0]
    assert f.missing == {"age": 1, "club": 1}
