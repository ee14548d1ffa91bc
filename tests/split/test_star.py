"""The star schema: a fact domain and dimension domains aligned on foreign keys by PSI,
row plans sealed for each dimension, entities a dimension lacks on its unknown row."""

import numpy as np
import pandas as pd
import pytest
import yaml

from splitmesh.data.sources import Source, load_fact_table
from splitmesh.errors import ConfigError, DataError, ProtocolError
from splitmesh.mesh.spec import load_mesh
from splitmesh.split.star import DimensionDomain, FactDomain, star_peers
from splitmesh.transport.identity import Identity
from splitmesh.usecases.train import train_mesh


def write_star(folder, *, n_users=40, n_items=30, per_user=8, seed=0):
    """Sales (string user keys, integer item keys), customers missing some users and
    holding others the sales never name, products holding every item."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        liked = rng.choice(n_items, per_user, replace=False)
        rows += [(f"c{u:03d}", int(i), int(t)) for t, i in enumerate(liked)]
    pd.DataFrame(rows, columns=["customer_id", "article_id", "t"]).to_csv(
        folder / "sales.csv", index=False
    )
    held = [f"c{u:03d}" for u in range(n_users) if u % 5] + ["x1", "x2"]
    pd.DataFrame(
        {
            "customer_id": held,
            "age": rng.integers(18, 80, len(held)),
            "club": rng.choice(["gold", "none"], len(held)),
        }
    ).to_csv(folder / "customers.csv", index=False)
    pd.DataFrame({"article_id": np.arange(n_items)[::-1], "price": rng.random(n_items)}).to_csv(
        folder / "products.csv", index=False
    )
    mesh = {
        "name": "star",
        "task": "ranking",
        "mode": "label-sharing",
        "fact": {
            "domain": "sales",
            "user": {"column": "customer_id", "domain": "customers"},
            "item": {"column": "article_id", "domain": "products"},
            "time": "t",
        },
        "domains": [
            {"name": "sales", "source": "sales.csv"},
            {"name": "customers", "source": "customers.csv", "key": "customer_id",
             "categorical": ["club"]},
            {"name": "products", "source": "products.csv", "key": "article_id"},
        ],
        "ranking": {"negatives": 2, "eval_negatives": 20, "ks": [5, 10]},
        "model": {"gmf": 4, "mlp": 8, "top": [16], "bottom": [8]},
        "training": {"epochs": 2, "batch_size": 64, "patience": None},
    }  # fmt: skip
    path = folder / "mesh.yaml"
    path.write_text(yaml.safe_dump(mesh, sort_keys=False))
    return path


def test_a_star_mesh_aligns_each_dimension_and_trains_every_mode(tmp_path):
    spec = load_mesh(write_star(tmp_path))
    res = train_mesh(spec, tmp_path / "out", compare=True, progress=False)
    split, central = res["runs"]
    assert (split["mode"], central["mode"]) == ("label-sharing", "centralized")
    # PSI found what each dimension holds of the fact's keys, nothing about the extras
    steps = {s["with"]: s["common"] for s in split["alignment"]["steps"]}
    assert steps == {"customers": 32, "products": 30}
    # customers lacks 8 of the 40 users: they use its unknown row, in both runs alike
    assert split["metrics"] == pytest.approx(central["metrics"], rel=1e-5)
    for run in res["runs"]:
        assert {"hr@5", "ndcg@10", "mrr"} <= run["metrics"].keys()
        assert run["metrics"]["users"] == 40
        assert 0 <= run["metrics"]["hr@10"] <= 1
    # the dimensions publish their feature bottoms as data products; the ids are none
    assert (tmp_path / "out" / "customers" / split["mode"] / "bottom.onnx").is_file()
    assert not (tmp_path / "out" / "sales").exists()


def test_split_equals_centralized_when_every_entity_has_its_row(tmp_path):
    path = write_star(tmp_path)
    customers = pd.read_csv(tmp_path / "customers.csv")
    full = pd.DataFrame(
        {"customer_id": [f"c{u:03d}" for u in range(40)], "age": 30, "club": "gold"}
    )
    full.loc[: len(customers) - 1, ["age", "club"]] = customers[["age", "club"]].to_numpy()[:40]
    full.to_csv(tmp_path / "customers.csv", index=False)
    spec = load_mesh(path, ["mode=label-preserving"])
    res = train_mesh(spec, tmp_path / "out", compare=True, progress=False)
    split, central = (r["metrics"] for r in res["runs"])
    assert split == pytest.approx(central, rel=1e-5)


def _parties(tmp_path):
    spec = load_mesh(write_star(tmp_path))
    ids = Identity.ephemeral(["sales", "customers", "products"])
    peers = star_peers("sales", ["customers", "products"], ids["sales"])
    fact = FactDomain(spec.read_fact(), "label-sharing", spec.dimensions, peers=peers)
    customers = star_peers("sales", ["customers"], ids["customers"])["customers"]
    dim = DimensionDomain(spec.read_domain("customers"), "users", peers=customers)
    return fact, dim


def test_the_fact_domain_seals_plans_by_its_own_mesh_file_not_the_relays_word(tmp_path):
    fact, _ = _parties(tmp_path)
    fact.maps = {"users": np.arange(fact.data.n_users), "items": np.arange(fact.data.n_items)}
    from splitmesh.split.sealing import SealBox

    fact.seal = SealBox("sales", "r" * 32)
    key = SealBox("customers", "r" * 32).public
    users, items = np.array([0, 1]), np.array([2, 3])
    swapped = {"customers": ["items", key], "products": ["users", key]}
    with pytest.raises(ProtocolError, match="seals row plans for its dimensions"):
        fact._sealed(swapped, "ctx", users, items)
    missing = {"customers": ["users", key]}
    with pytest.raises(ProtocolError, match="seals row plans"):
        fact._sealed(missing, "ctx", users, items)
    right = {"customers": ["users", key], "products": ["items", key]}
    assert set(fact._sealed(right, "ctx", users, items)) == {"customers", "products"}


def test_the_fact_domain_aligns_only_with_its_own_dimensions(tmp_path):
    from splitmesh.transport.messages import Hello, PsiRequest

    fact, _ = _parties(tmp_path)
    fact.handle(Hello("r" * 32, "label-sharing"))
    for peer in ("insurer", "sales", ["customers"]):  # unknown, itself, not a name
        with pytest.raises(ProtocolError, match=r"aligns keys with \['customers', 'products'\]"):
            fact.handle(PsiRequest(peer))
    assert fact.handle(PsiRequest("customers")).size > 0  # its own dimension: served


def test_a_dimension_resolves_aligned_positions_and_refuses_others(tmp_path):
    _, dim = _parties(tmp_path)
    with pytest.raises(ProtocolError, match="before its keys were aligned"):
        dim.own_rows("train", np.array([0]))
    dim.rows_ = np.array([5, 3, 0])
    assert dim.own_rows("train", np.array([2, -1, 0])).tolist() == [0, dim.unknown, 5]
    assert dim.unknown == 34  # its own rows, then the unknown entity's
    for bad in ([3], [-2]):
        with pytest.raises(ProtocolError, match="outside its 3 aligned keys"):
            dim.own_rows("train", np.array(bad))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("negatives", 10**9, "negatives"),  # it would draw that many per positive
        ("eval_negatives", 10**9, "eval_negatives"),
        ("ks", [10] * 100, "ks"),
        ("holdout", "1", "holdout"),  # no coercion on the wire
        ("model", {"gmf": 10**9}, "gmf"),
        ("model", {"history": 10**6}, "history"),  # it would look up that many per example
        ("model", {"bottom": [8], "layers": 3}, "layers"),
        ("optim", {"optimizer": "lbfgs"}, "optimizer"),
    ],
)
def test_the_fact_domain_checks_its_setup_as_a_mesh_file_would_be(tmp_path, field, value, message):
    from splitmesh.transport.messages import SetupRanking

    fact, _ = _parties(tmp_path)
    ok = {"holdout": 1, "negatives": 4, "eval_negatives": 99, "ks": [10], "model": {},
          "optim": {}, "seed": 0}  # fmt: skip
    with pytest.raises(ProtocolError, match=f"fact domain 'sales'.*{message}"):
        fact.handle(SetupRanking(**{**ok, field: value}))
    assert fact.handle(SetupRanking(**ok)).info["train_examples"] > 0


def test_every_mesh_entry_is_one_domain_party_in_process_and_on_a_node(tmp_path):
    from splitmesh.split import protocol as proto
    from splitmesh.split.domain import Domain, mesh_domain
    from splitmesh.transport.messages import Hello

    spec = load_mesh(write_star(tmp_path))
    ids = Identity.ephemeral(spec.domain_names)
    hello = Hello("f" * 32, "label-sharing", "train")
    kinds = {}
    for name in spec.domain_names:
        made = mesh_domain(spec, name, identity=ids[name])
        party = made.make(hello)
        assert isinstance(party, Domain) and party.name == name
        kinds[name] = (type(party.rows).__name__, made.serves)
    assert kinds["sales"] == ("FactDomain", {proto.KEYS, proto.LABELS, proto.FACT})
    assert kinds["customers"] == ("DimensionDomain", {proto.KEYS, proto.ENTITY})


def test_a_fact_table_names_a_missing_column_or_key(tmp_path):
    (tmp_path / "f.csv").write_text("u,i\n1,2\n,3\n")
    src = Source(path=tmp_path / "f.csv")
    with pytest.raises(Exception, match="time column 't' is not in the table"):
        load_fact_table("sales", src, user="u", item="i", time="t")
    with pytest.raises(Exception, match="missing foreign key") as info:
        load_fact_table("sales", src, user="u", item="i", time=None)
    assert info.value.row == 2


def test_a_fact_table_reads_in_batches_into_sorted_distinct_keys(tmp_path):
    users = ["c9", "c10", "c2", "c9", "c2", "c10", "c1"]
    items = [5, 3, 5, 7, 3, 3, 11]
    pd.DataFrame({"u": users, "i": items, "t": range(7)}).to_parquet(tmp_path / "f.parquet")
    src = Source(path=tmp_path / "f.parquet")
    whole = load_fact_table("sales", src, user="u", item="i", time="t")
    for rows in (1, 3):  # the same table, whatever the batches
        fact = load_fact_table("sales", src, user="u", item="i", time="t", batch_rows=rows)
        for a, b in ((fact.users, whole.users), (fact.items, whole.items)):
            np.testing.assert_array_equal(a.distinct, b.distinct)
            np.testing.assert_array_equal(a.index, b.index)
        np.testing.assert_array_equal(fact.time, whole.time)
    assert list(whole.users.distinct) == sorted(set(users))  # as text, as PSI sorts
    assert whole.items.distinct.tolist() == [3, 5, 7, 11]  # numbers as numbers
    assert whole.users.distinct[whole.users.index].tolist() == users
    assert whole.items.distinct[whole.items.index].tolist() == items
    (tmp_path / "g.csv").write_text("u,i\n" + "a,1\n" * 5 + "b,\n")
    with pytest.raises(DataError, match="missing foreign key") as info:
        load_fact_table("sales", Source(path=tmp_path / "g.csv"), user="u", item="i",
                        time=None, batch_rows=2)  # fmt: skip
    assert info.value.row == 6 and info.value.column == "i"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.pop("fact"), "a ranking task needs a fact"),
        (lambda m: m["fact"]["user"].update(domain="nobody"), "dimension domain 'nobody'"),
        (lambda m: m["domains"][1].pop("key"), "names no key"),
        (lambda m: m["fact"]["item"].update(domain="customers"), "the same dimension"),
        (lambda m: m["training"].update(select_metric="hr@20"), "not a ranking metric"),
        (
            lambda m: (m["ranking"].update(pretrain={}), m["training"].update(weight_decay=1e-4)),
            "ranking.pretrain needs training.weight_decay 0",
        ),
        (lambda m: m["ranking"].update(pretrain={"alpha": 1}), "alpha"),
    ],
)
def test_a_ranking_mesh_file_is_checked(tmp_path, change, message):
    path = write_star(tmp_path)
    raw = yaml.safe_load(path.read_text())
    change(raw)
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=message):
        load_mesh(path)


def test_set_overrides_fields_lists_by_name_and_names_a_bad_one(tmp_path):
    path = write_star(tmp_path)
    spec = load_mesh(path, ["training.epochs=7", "domains.customers.categorical=[]",
                            "ranking.ks=[5]", "model.top=[32, 8]"])  # fmt: skip
    assert spec.training.epochs == 7 and spec.ranking.ks == [5]
    assert spec.domain("customers").categorical == [] and spec.model.top == [32, 8]
    with pytest.raises(ConfigError, match=r"field 'training\.epochs'"):
        load_mesh(path, ["training.epochs=many"])
    with pytest.raises(ConfigError, match="no list item 'nobody'"):
        load_mesh(path, ["domains.nobody.key=x"])
    with pytest.raises(ConfigError, match=r"expected field\.path=value"):
        load_mesh(path, ["training.epochs"])


def test_a_star_run_resumes_from_its_checkpoints_to_the_same_result(tmp_path):
    from splitmesh.config import Training
    from splitmesh.split.trainer import fit
    from splitmesh.transport.local import LocalTransport
    from splitmesh.usecases.train import coordinator, local_domains

    spec = load_mesh(write_star(tmp_path), ["mode=label-preserving"])

    def make(run_dir, resume=False):
        parties = local_domains(spec, spec.mode, model_dir=None, state_dir=run_dir / "parties")
        train = Training(epochs=3, batch_size=64, patience=3, select_metric="ndcg@5")
        c = coordinator(spec, LocalTransport(parties), spec.mode, run_dir / "coord", train)
        c.prepare(resume=resume)  # PSI again: alignment is per run, and the data the same
        c.build()
        return c

    cfg = Training(epochs=3, batch_size=64, patience=3, select_metric="ndcg@5")
    whole = fit(make(tmp_path / "a"), cfg, progress=False)
    one = Training(epochs=1, batch_size=64, patience=3, select_metric="ndcg@5")
    fit(make(tmp_path / "b"), one, progress=False)
    resumed = fit(make(tmp_path / "b", resume=True), cfg, progress=False, resume=True)
    assert resumed.losses == pytest.approx(whole.losses, rel=1e-6)
    assert resumed.validation == pytest.approx(whole.validation, rel=1e-6)
