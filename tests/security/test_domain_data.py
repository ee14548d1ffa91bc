"""What a domain reads and publishes: SQL sources confined to its own folders, column
types declared (never guessed from a stray cell), no raw training value in anything it
publishes, and every setting checked before any data is read."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from splitmesh.data.sources import Source, load_domain_table
from splitmesh.errors import ConfigError, DataError, ProtocolError
from splitmesh.mesh.spec import load_mesh
from splitmesh.split.columns import ColumnsParty
from splitmesh.split.domain import Domain
from splitmesh.split.keyed import KeyedDomain
from splitmesh.split.peer_alignment import Peers
from splitmesh.split.saved import wire_meta
from splitmesh.transport.messages import Checkpoint, Hello
from tests.test_cli import splitmesh

from .conftest import credit_frame


@pytest.fixture
def own(tmp_path):
    """A domain's own folder with its table, and a secret beside it (another team's)."""
    folder = tmp_path / "bank"
    folder.mkdir()
    pd.DataFrame({"id": [1, 2, 3], "x": [0.5, 1.5, 2.5]}).to_csv(folder / "t.csv", index=False)
    (tmp_path / "secret.csv").write_text("id,password\n1,hunter2\n")
    return folder


@pytest.mark.parametrize(
    ("sql", "error", "says"),
    [
        ("SELECT * FROM read_csv('{secret}')", DataError, "may read only under"),
        ("SELECT * FROM read_csv('/etc/passwd')", DataError, "may read only under"),
        ("SELECT * FROM read_text('../secret.csv')", DataError, "may read only under"),
        ("SELECT * FROM read_csv('https://example.com/x.csv')", DataError, "may read only"),
        ("COPY (SELECT 1) TO 'out.csv'", ConfigError, "COPY is refused"),
        ("ATTACH 'x.db'", ConfigError, "ATTACH is refused"),
        ("INSTALL httpfs", ConfigError, "is refused"),
        ("LOAD httpfs", ConfigError, "LOAD is refused"),
        ("SET enable_external_access = true", ConfigError, "SET is refused"),
        ("PRAGMA database_list", ConfigError, "PRAGMA is refused"),
        ("SELECT 1; COPY (SELECT 1) TO 'x.csv'", ConfigError, "is refused"),
        ("CREATE TABLE t AS SELECT 1", ConfigError, "CREATE is refused"),
    ],
)
def test_a_sql_source_reads_only_its_own_folder(own, sql, error, says):
    sql = sql.format(secret=own.parent / "secret.csv")
    with pytest.raises(error, match=f"domain 'bank'.*{says}") as e:
        load_domain_table("bank", Source(sql=sql, base=own), key="id")
    assert "hunter2" not in str(e.value)
    assert not (own / "out.csv").exists() and not (own / "x.db").exists()


def test_a_sql_source_still_reads_its_own_files(own):
    src = Source(sql="SELECT id, x * 2 AS x2 FROM 't.csv'", base=own)
    table = load_domain_table("bank", src, key="id")
    assert table.numeric_names == ["x2"] and table.numeric[:, 0].tolist() == [1.0, 3.0, 5.0]


def test_the_cli_refuses_a_prying_mesh_before_training(tmp_path, own):
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(yaml.safe_dump({
        "name": "m", "label": {"domain": "bank", "column": "y"},
        "domains": [{"name": "bank", "source": {"sql": "SELECT * FROM read_csv('/etc/passwd')"},
                     "key": "id", "data_dirs": ["bank"]}],
    }))  # fmt: skip
    p = splitmesh("train", str(mesh), "--out", str(tmp_path / "out"), "--no-progress")
    assert p.returncode == 3 and "may read only under" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "out" / "bank").exists()


def test_a_text_cell_in_an_undeclared_column_is_a_data_error(tmp_path):
    """One 'abc' in a numeric column used to turn it categorical silently and publish its
    raw values as a vocabulary."""
    df = credit_frame().head(300).copy()
    df.insert(0, "id", np.arange(len(df)))
    df["V3"] = df["V3"].astype(object)
    df.loc[df.index[41], "V3"] = "abc"
    df.to_csv(tmp_path / "t.csv", index=False)
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(yaml.safe_dump({
        "name": "m", "label": {"domain": "bank", "column": "Class"},
        "domains": [{"name": "bank", "source": "t.csv", "key": "id"}],
    }))  # fmt: skip
    p = splitmesh("train", str(mesh), "--out", str(tmp_path / "out"), "--no-progress")
    assert p.returncode == 3, p.stderr
    assert "t.csv, column 'V3', row 42: domain 'bank': non-numeric value 'abc'" in p.stderr
    assert "categorical" in p.stderr  # the hint: declare it, or fix the value
    assert not (tmp_path / "out" / "bank").exists()


def test_published_artifacts_carry_no_raw_training_value(tmp_path):
    """Contracts, prep.json, model.json, the model card and the ONNX metadata of a trained
    domain hold statistics and declared vocabularies, never a row's value."""
    rng = np.random.default_rng(0)
    n = 300
    df = pd.DataFrame({"id": np.arange(n), "income": rng.normal(50_000, 9_000, n).round(2),
                       "segment": rng.choice(["gold", "silver"], n)})  # fmt: skip
    df["y"] = (df.income > 50_000).astype(int)
    df.loc[7, "income"] = 987654.25  # a distinctive extreme: the max a derived range pinned
    df.to_csv(tmp_path / "t.csv", index=False)
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(yaml.safe_dump({
        "name": "m", "label": {"domain": "bank", "column": "y"},
        "domains": [{"name": "bank", "source": "t.csv", "key": "id",
                     "categorical": ["segment"]}],
        "training": {"epochs": 1, "patience": None},
    }))  # fmt: skip
    p = splitmesh("train", str(mesh), "--out", str(tmp_path / "out"), "--no-progress")
    assert p.returncode == 0, p.stderr
    import onnx

    folder = tmp_path / "out" / "bank"
    texts = [f.read_text() for f in folder.iterdir() if f.suffix in (".json", ".yaml", ".md")]
    model = onnx.load(str(folder / "bottom.onnx"))
    texts += [prop.value for prop in model.metadata_props]
    published = "\n".join(texts)
    assert "987654" not in published
    assert '"gold"' in published or "gold" in published  # a declared vocabulary may be
    sample = [f"{v:.2f}" for v in df.income.iloc[:50] if v != 987654.25]
    assert not [v for v in sample if v in published]


def test_settings_are_checked_before_any_data_is_read(tmp_path):
    base = {"name": "m", "label": {"domain": "bank", "column": "y"},
            "domains": [{"name": "bank", "source": "missing.csv", "key": "id"}]}  # fmt: skip
    cases = [
        ({"training": {"select_metric": "nope"}}, "select_metric 'nope' is not a binary metric"),
        ({"task": "regression", "training": {"select_metric": "roc_auc"}}, "not a regression"),
        ({"split": {"validation": 0.0}}, "field 'split.validation'"),
    ]
    for extra, says in cases:
        (tmp_path / "mesh.yaml").write_text(yaml.safe_dump({**base, **extra}))
        with pytest.raises(ConfigError, match=says):
            load_mesh(tmp_path / "mesh.yaml")  # the table does not even exist
        p = splitmesh("train", str(tmp_path / "mesh.yaml"), "--out", str(tmp_path / "o"))
        assert p.returncode == 2 and "Traceback" not in p.stderr


def test_checkpoint_names_come_from_the_node_not_the_wire(tmp_path):
    party = ColumnsParty("d", np.zeros((8, 2)), ["a", "b"], state_dir=tmp_path / "state")
    party.handle(Hello("e" * 32, "label-sharing"))
    for bad in (Checkpoint(-1), Checkpoint(10**9), Checkpoint(1, keep=["../../etc"])):
        with pytest.raises(ProtocolError, match="an epoch is an integer"):
            party.handle(bad)
    party.run_id = "../../../tmp"  # even a run id that got past its node is not a path
    with pytest.raises(ProtocolError, match="has no valid run open"):
        party.handle(Checkpoint(1))
    assert not any(p.suffix == ".pt" for p in tmp_path.rglob("*"))


def test_save_model_meta_cannot_overwrite_a_domains_own_facts():
    with pytest.raises(ProtocolError, match="not 'numeric'"):
        wire_meta({"numeric": ["x"], "mesh": "m"}, "domain 'bank'")
    with pytest.raises(ProtocolError, match="over 16384 bytes"):
        wire_meta({"mesh": "m" * 20_000}, "domain 'bank'")
    with pytest.raises(ProtocolError, match="'threshold'\\] must be a number"):
        wire_meta({"threshold": "0.5"}, "domain 'bank'")
    assert wire_meta({"mesh": "m", "threshold": 0.4}, "x") == {"mesh": "m", "threshold": 0.4}


def test_a_psi_set_larger_than_its_signed_size_is_refused(tmp_path):
    """Even a set its peer really signed must hold the keys it declared."""
    import hashlib

    from splitmesh.data.alignment import Blinder, key_points
    from splitmesh.data.sources import DomainTable
    from splitmesh.transport.messages import PsiServe

    def table(name, n, label=False):
        keys = np.array([f"k{i}" for i in range(n)], dtype=object)
        empty = np.empty((n, 0), dtype=object)
        y = (np.arange(n) % 2) if label else None
        return DomainTable(name, "t", "id", keys, ["x"], np.zeros((n, 1)), [], empty,
                           "y" if label else None, y)  # fmt: skip

    peers = Peers.in_process("bank", ["bank", "telco"])
    telco = KeyedDomain(table("telco", 50), peers=peers["telco"])
    telco.handle(Hello("f" * 32, "label-preserving"))
    points = Blinder()(key_points([f"k{i}" for i in range(5_000)]))  # guessed keys, blinded
    claim = {"kind": "psi-set", "run": "f" * 32, "from": "bank", "to": "telco",
             "size": 10, "sha256": hashlib.sha256(points.tobytes()).hexdigest()}  # fmt: skip
    signed = peers["bank"].identity.sign(claim)
    serve = PsiServe(points, 10, signed.claim, signed.cert, np.frombuffer(signed.signature, "u1"))
    with pytest.raises(ProtocolError, match="of 5000 keys from 'bank', which declared 10"):
        telco.handle(serve)
    Domain.keyed(
        table("bank", 40, label=True), mode="label-preserving", task="binary", peers=peers["bank"]
    )
    assert json.loads(signed.claim)["size"] == 10


def test_the_coordinator_cannot_size_a_domains_model_at_will():
    from splitmesh.split.head import HeadHolder
    from splitmesh.split.tasks import Task
    from splitmesh.transport.messages import SetupDomain, SetupHead

    party = ColumnsParty("d", np.zeros((8, 2)), ["a", "b"])
    parts = {"train": np.arange(4), "val": np.arange(4, 6), "test": np.arange(6, 8)}
    for hidden in ([10**9], [], [8] * 40, ["8"], [True]):
        with pytest.raises(ProtocolError, match="domain 'd': Model field 'bottom"):
            party.handle(SetupDomain(**parts, model={"hidden": hidden}, optim={}, seed=0))
    with pytest.raises(ProtocolError, match="at most 1048576"):
        HeadHolder("labels", SetupHead(10**10, {}, 0), Task())
