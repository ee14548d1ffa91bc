"""The recommender's split parties against its centralized baseline, and what each party
gets to see."""

import numpy as np
import pytest
import torch

from splitmesh.config import Model, Optim, Pretrain, Ranking, Training
from splitmesh.data.interactions import FeatureTable, RecsysData
from splitmesh.errors import PartyError, ProtocolError
from splitmesh.split.centralized_ranker import CentralizedRanker
from splitmesh.split.coordinator import Coordinator
from splitmesh.split.entity import EntityDomain
from splitmesh.split.interactions import InteractionsParty
from splitmesh.split.sealing import SealBox
from splitmesh.split.trainer import fit
from splitmesh.transport.local import LocalTransport
from splitmesh.transport.messages import Ack, AssignRows, GetLabels, PlanEpoch, Plans, decode

SPEC = Model(gmf=4, mlp=8, top=[16, 8], bottom=[8, 4])
TRAIN = Training(epochs=3, batch_size=64, patience=3, select_metric="ndcg@10")
DOMAINS = ["sales", "customers", "products"]


def star(n_users=60, n_items=120, seed=0) -> RecsysData:
    """Users in four taste groups buy items of their group; features say the group."""
    rng = np.random.default_rng(seed)
    group_u, group_i = rng.integers(0, 4, n_users), np.arange(n_items) % 4
    user, item = [], []
    for u in range(n_users):
        liked = np.flatnonzero(group_i == group_u[u])
        picks = rng.choice(liked, 12, replace=False)
        user += [u] * 12
        item += picks.tolist()
    users = FeatureTable(
        numeric=np.column_stack([group_u + rng.normal(0, 0.3, n_users)]),
        numeric_names=("age",),
        categorical=rng.integers(0, 3, (n_users, 1)),
        categorical_names=("club",),
        cardinalities=(3,),
    )
    items = FeatureTable(
        numeric=np.zeros((n_items, 0)),
        numeric_names=(),
        categorical=(group_i + 1)[:, None],
        categorical_names=("section",),
        cardinalities=(5,),
    )
    n = len(user)
    return RecsysData(
        "star", np.array(user), np.array(item), rng.permutation(n), n_users, n_items, users, items
    )


class Recording(LocalTransport):
    """Keeps every encoded request and reply, as the coordinator's side of the wire sees them."""

    def __init__(self, handlers):
        super().__init__(handlers)
        self.wire = []

    def request(self, party, msg):
        reply = super().request(party, msg)
        self.wire.append((party, msg, reply))
        return reply


OPTIM = Optim(lr=0.02)
DEFAULT = Ranking()


def split(mode, data, ranking=DEFAULT, transport_cls=LocalTransport, **kw):
    t = transport_cls(
        {
            "sales": InteractionsParty("sales", data, mode),
            "customers": EntityDomain("customers", data.users, "users"),
            "products": EntityDomain("products", data.items, "items"),
        }
    )
    spec = kw.pop("spec", SPEC)
    c = Coordinator(
        t, DOMAINS, "sales", mode=mode, task="ranking", spec=spec, optim=OPTIM, seed=0,
        ranking=ranking, **kw,
    )  # fmt: skip
    c.prepare()
    c.build()
    return c, t


def central(data, ranking=DEFAULT):
    c = CentralizedRanker(data, DOMAINS, spec=SPEC, optim=OPTIM, seed=0, ranking=ranking)
    c.prepare()
    c.build()
    return c


@pytest.mark.parametrize("mode", ["label-sharing", "label-preserving"])
@pytest.mark.parametrize("eval_negatives", [99, None])
def test_split_equals_centralized(mode, eval_negatives):
    data = star()
    ranking = Ranking(eval_negatives=eval_negatives, ks=(5, 10))
    ref = central(data, ranking)
    r0 = fit(ref, TRAIN, progress=False)
    learner, _ = split(mode, data, ranking)
    r1 = fit(learner, TRAIN, progress=False)
    assert r1.losses == pytest.approx(r0.losses, rel=1e-5)
    assert r1.validation == pytest.approx(r0.validation, rel=1e-5)
    m0, m1 = ref.evaluate(["test"])["test"], learner.evaluate(["test"])["test"]
    assert m1 == pytest.approx(m0, rel=1e-5)
    assert m1["hr@10"] > 0.25  # it learns the taste groups (random: about 0.1)


def test_an_epoch_in_parts_trains_the_same_split_as_centralized():
    """Epochs planned, relayed and held a part at a time (Ranking.part_examples): the
    split run follows the centralized one step for step, and both differ from one part."""
    data, mode = star(), "label-preserving"
    ranking = Ranking(part_examples=1024, ks=(10,))
    learner, t = split(mode, data, ranking, transport_cls=Recording, train=TRAIN)
    r1 = fit(learner, TRAIN, progress=False)
    r0 = fit(central(data, ranking), TRAIN, progress=False)
    assert r1.losses == pytest.approx(r0.losses, rel=1e-5)
    assert r1.validation == pytest.approx(r0.validation, rel=1e-5)
    plans = [m for _, m, _ in t.wire if isinstance(m, PlanEpoch)]
    assert [(m.epoch, m.part) for m in plans[:5]] == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0)]
    sizes = [r.examples for _, m, r in t.wire if isinstance(m, PlanEpoch)]
    assert sizes[:4] == [960, 960, 960, 120] and max(sizes) <= ranking.part_examples
    whole = fit(central(data, Ranking(ks=(10,))), TRAIN, progress=False)
    assert whole.losses != pytest.approx(r0.losses, rel=1e-5)


def test_the_coordinator_never_sees_rows_in_the_clear():
    data = star()
    learner, t = split("label-preserving", data, transport_cls=Recording)
    fit(
        learner,
        Training(epochs=1, batch_size=128, patience=1, select_metric="ndcg@10"),
        progress=False,
    )
    learner.evaluate(["test"])
    relays = [m for _, m, _ in t.wire if isinstance(m, AssignRows)]
    assert {m.partition for m in relays} == {"train", "val", "test"}
    users = data.user.astype("<i8").tobytes()
    for m in relays:
        blob = m.sealed.tobytes()
        assert data.user[:8].astype("<i8").tobytes() not in blob and blob not in users
    # the held-out item sits at a different candidate column from user to user
    plans = [r for _, m, r in t.wire if isinstance(r, Plans) and r.candidates is not None]
    assert plans and all(p.candidates.max() < p.item_slots for p in plans)
    sales = t._handlers["sales"]
    plan = sales._plans["test"]
    cols = [
        int(np.flatnonzero(row == p[0])[0])
        for row, p in zip(plan.candidates, plan.positive, strict=True)
    ]
    assert len(set(cols)) > 20
    # in label-preserving mode no label ever reaches the coordinator
    with pytest.raises(PartyError, match="label-sharing"):
        t.request("sales", GetLabels("train"))


def test_a_sealed_plan_opens_only_for_its_recipient_and_context():
    sender, customers, products = (SealBox(n, "run") for n in ("sales", "customers", "products"))
    rows = np.arange(10)
    blob = sender.seal("customers", customers.public, "run/train/epoch-0", rows)
    assert np.array_equal(customers.open("sales", sender.public, "run/train/epoch-0", blob), rows)
    with pytest.raises(ProtocolError, match="altered, replayed or sealed for another"):
        products.open("sales", sender.public, "run/train/epoch-0", blob)
    with pytest.raises(ProtocolError, match="replayed"):
        customers.open("sales", sender.public, "run/train/epoch-1", blob)


def test_a_dimension_domain_refuses_a_plan_of_another_run():
    data = star()
    learner, t = split("label-sharing", data)
    learner.start_epoch(0)
    relay = AssignRows(
        "train", "other-run/train/epoch-0", "sales", "00" * 32, np.zeros(4, np.uint8)
    )
    with pytest.raises(PartyError, match="other-run"):
        t.request("customers", relay)


def test_the_fact_domain_plans_only_the_parts_an_epoch_has():
    learner, t = split("label-sharing", star(), Ranking(part_examples=1024), train=TRAIN)
    peers = learner.steps.peers
    assert isinstance(t.request("sales", PlanEpoch(0, peers, 3)), Plans)  # the last of 4
    for part in (4, -1):
        with pytest.raises(PartyError, match=r"plans epochs in parts 0\.\.3, not part"):
            t.request("sales", PlanEpoch(0, peers, part))


def test_split_training_resumes_to_the_same_result(tmp_path):
    data = star()
    cfg = Training(epochs=3, batch_size=128, patience=3, select_metric="ndcg@10")

    def make(run_dir, resume=False):
        t = LocalTransport(
            {
                "sales": InteractionsParty(
                    "sales", data, "label-preserving", state_dir=run_dir / "sales"
                ),
                "customers": EntityDomain(
                    "customers", data.users, "users", state_dir=run_dir / "c"
                ),
                "products": EntityDomain("products", data.items, "items", state_dir=run_dir / "p"),
            }
        )
        c = Coordinator(
            t,
            DOMAINS,
            "sales",
            mode="label-preserving",
            task="ranking",
            spec=SPEC,
            optim=OPTIM,
            seed=0,
            ranking=Ranking(),
            run="r",
            checkpoint_dir=run_dir / "coord",
        )
        c.prepare(resume=resume)  # a resumed run reopens the run its checkpoint names
        c.build()
        return c

    whole = fit(make(tmp_path / "a"), cfg, progress=False)
    first = make(tmp_path / "b")
    fit(
        first,
        Training(epochs=1, batch_size=128, patience=3, select_metric="ndcg@10"),
        progress=False,
    )
    resumed = fit(make(tmp_path / "b", resume=True), cfg, progress=False, resume=True)
    assert resumed.losses == pytest.approx(whole.losses, rel=1e-6)
    assert resumed.validation == pytest.approx(whole.validation, rel=1e-6)


def test_encoded_plans_hold_only_slots_and_ciphertext():
    data = star()
    learner, t = split("label-sharing", data, transport_cls=Recording)
    learner.start_epoch(0)
    party, _, reply = next(w for w in t.wire if isinstance(w[2], Plans))
    assert party == "sales" and reply.candidates is None and reply.sealed.dtype == np.uint8
    assert (
        decode(__import__("splitmesh.transport.messages", fromlist=["encode"]).encode(reply)).sizes
        == reply.sizes
    )


class Tampering(LocalTransport):
    """A fact domain whose ranking plans name item slots the pass does not have."""

    def request(self, party, msg):
        reply = super().request(party, msg)
        if isinstance(reply, Plans) and reply.candidates is not None:
            reply.candidates[0, 0] = reply.item_slots  # one past the last slot
        return reply


def test_the_coordinator_refuses_candidates_outside_the_item_slots():
    learner, _ = split("label-sharing", star(), transport_cls=Tampering)
    with pytest.raises(ProtocolError, match=r"not item slots 0\.\.[0-9]+ for 60 users"):
        learner.evaluate(["test"])


def test_sparse_id_tables_train_the_same_split_as_centralized():
    """Id tables from ``model.sparse_ids`` rows take sparse gradients and a lazy Adam step
    (only the batch's rows move): in the fact domain and in the centralized model alike."""
    data, mode = star(), "label-sharing"
    spec = SPEC.model_copy(update={"sparse_ids": 100})  # the 120 items, not the 60 users
    learner, t = split(mode, data, spec=spec)
    r1 = fit(learner, TRAIN, progress=False)
    ref = CentralizedRanker(data, DOMAINS, spec=spec, optim=OPTIM, seed=0, ranking=DEFAULT)
    ref.prepare()
    ref.build()
    r0 = fit(ref, TRAIN, progress=False)
    assert r1.losses == pytest.approx(r0.losses, rel=1e-5)
    assert r1.validation == pytest.approx(r0.validation, rel=1e-5)
    bottom = t._handlers["sales"].bottom_
    assert bottom.item.sparse and not bottom.user.sparse
    dense = fit(central(data), TRAIN, progress=False)
    assert dense.losses != pytest.approx(r0.losses, rel=1e-5)


class MiscountingParts(LocalTransport):
    """A fact domain that says it cuts epochs into another number of parts."""

    def request(self, party, msg):
        reply = super().request(party, msg)
        if isinstance(reply, Ack) and "epoch_parts" in reply.info:
            reply.info["epoch_parts"] += 1
        return reply


def test_the_coordinator_refuses_a_fact_domain_that_cuts_epochs_otherwise():
    with pytest.raises(ProtocolError, match="cuts each epoch into 2 parts; this run's sizes"):
        split("label-sharing", star(), transport_cls=MiscountingParts)


def _weights(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("mode", ["label-sharing", "label-preserving"])
def test_pretraining_gmf_alone_leaves_every_other_part_where_it_was(mode):
    # the NCF paper's pre-training in a split run: while GMF trains alone, the MLP id parts,
    # the dimension domains' towers, the coordinator's tower and the head's MLP inputs stay
    # as they were (zero gradients and no weight decay)
    data = star()
    ranking = Ranking(ks=(5, 10), pretrain=Pretrain(gmf_epochs=1, mlp_epochs=1, alpha=0.3))
    learner, t = split(mode, data, ranking)
    sales, customers = t._handlers["sales"], t._handlers["customers"]
    head = learner.head_ if mode == "label-sharing" else sales.head_.head
    parts = (sales.bottom_, customers.bottom_, learner.top_, head)
    before, seen = [_weights(m) for m in parts], {}

    def set_phase(phase, own=learner.set_phase):
        if phase == "mlp":  # GMF's epoch is over: what each part holds now
            seen["after"] = [_weights(m) for m in parts]
        own(phase)

    learner.set_phase = set_phase
    fit(learner, Training(epochs=1, batch_size=64, patience=None), progress=False)
    (ids, tower, top, head_w), (ids_now, tower_now, top_now, head_now) = before, seen["after"]
    g = SPEC.gmf
    for side in ("user", "item"):
        was, now = ids[f"{side}.weight"], ids_now[f"{side}.weight"]
        assert torch.equal(now[:, g:], was[:, g:])  # the MLP parts
        assert not torch.equal(now[:, :g], was[:, :g])  # GMF trained
    assert all(torch.equal(v, tower[k]) for k, v in tower_now.items())
    assert all(torch.equal(v, top[k]) for k, v in top_now.items())
    assert torch.equal(head_now["weight"][:, g:], head_w["weight"][:, g:])
    assert not torch.equal(head_now["weight"][:, :g], head_w["weight"][:, :g])


@pytest.mark.parametrize("mode", ["label-sharing", "label-preserving"])
def test_pretrained_split_equals_centralized(mode):
    data = star()
    ranking = Ranking(ks=(5, 10), pretrain=Pretrain(gmf_epochs=2, mlp_epochs=1, alpha=0.3))
    ref = central(data, ranking)
    r0 = fit(ref, TRAIN, progress=False)
    learner, _ = split(mode, data, ranking)
    r1 = fit(learner, TRAIN, progress=False)
    assert len(r1.losses) == 6 and r1.pretrain_epochs == 3 and r1.best_epoch > 3
    assert r1.losses == pytest.approx(r0.losses, rel=1e-5)
    assert r1.validation == pytest.approx(r0.validation, rel=1e-5)
    m0, m1 = ref.evaluate(["test"])["test"], learner.evaluate(["test"])["test"]
    assert m1 == pytest.approx(m0, rel=1e-5)
    assert m1["hr@10"] > 0.25


def chain(n_users=80, n_items=120, walks=4, steps=3, seed=1) -> RecsysData:
    """Each user makes a few short walks along one fixed chain of items, each from a
    random start: what comes next is told by the item just before it, while who the user
    is only says which stretches of the chain they visited."""
    rng = np.random.default_rng(seed)
    follows = rng.permutation(n_items)  # item -> the item after it
    user, item = [], []
    for u in range(n_users):
        for _ in range(walks):
            at = int(rng.integers(n_items))
            for _ in range(steps):
                user.append(u)
                item.append(at)
                at = int(follows[at])
    n = len(user)
    tables = star(n_users, n_items)  # feature tables of these shapes, telling nothing here
    return RecsysData(
        "chain", np.array(user), np.array(item), np.arange(n), n_users, n_items,
        tables.users, tables.items,
    )  # fmt: skip


@pytest.mark.parametrize("mode", ["label-sharing", "label-preserving"])
def test_a_users_recent_items_predict_the_next_one_split_as_centralized(mode):
    data, ranking = chain(), Ranking(ks=(10,))
    train = TRAIN.model_copy(update={"epochs": 6, "patience": 6})
    spec = SPEC.model_copy(update={"history": 2})
    ref = CentralizedRanker(data, DOMAINS, spec=spec, optim=OPTIM, seed=0, ranking=ranking)
    ref.prepare()
    ref.build()
    r0 = fit(ref, train, progress=False)
    learner, _ = split(mode, data, ranking, spec=spec)
    r1 = fit(learner, train, progress=False)
    assert r1.losses == pytest.approx(r0.losses, rel=1e-5)
    m0, m1 = ref.evaluate(["test"])["test"], learner.evaluate(["test"])["test"]
    assert m1 == pytest.approx(m0, rel=1e-5)
    ids = CentralizedRanker(
        data, DOMAINS, spec=spec.model_copy(update={"history": 0}), optim=OPTIM, seed=0,
        ranking=ranking,
    )  # fmt: skip
    ids.prepare()
    ids.build()
    fit(ids, train, progress=False)
    alone = ids.evaluate(["test"])["test"]
    # the next item from the last ones (random: about 0.1); ids alone barely learn it
    assert m0["hr@10"] > 0.5 and m0["hr@10"] > alone["hr@10"] + 0.3, (m0, alone)
