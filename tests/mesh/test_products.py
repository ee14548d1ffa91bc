"""Data products: init / validate, contracts enforced during a run (node: input, coordinator:
embeddings), and each domain's trained bottom published as ONNX that onnxruntime agrees with."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from splitmesh.config import Model
from splitmesh.data.datasets.vertical import write_vertical_mesh
from splitmesh.errors import PartyError
from splitmesh.mesh.contracts import ContractError
from splitmesh.mesh.export import onnx_metadata, run_onnx
from splitmesh.mesh.policy import load_policy
from splitmesh.mesh.products import CARD, DESCRIPTOR, ONNX, OUTPUT, Product, find_products
from splitmesh.mesh.spec import load_mesh
from splitmesh.nn.network import build_bottom
from splitmesh.usecases.train import export_domain, train_mesh
from tests.test_cli import splitmesh


@pytest.fixture
def mesh(tmp_path):
    rng = np.random.default_rng(1)
    n = 400
    df = pd.DataFrame({"x0": rng.normal(size=n), "x1": rng.normal(size=n)})
    df["x2"], df["city"] = rng.normal(size=n), rng.choice(["a", "b", "c"], n)
    df["y"] = (df.x0 + df.x1 - df.x2 > 0).astype(int)
    return write_vertical_mesh(
        df, {"bank": ["x0", "city"], "insurer": ["x1", "x2"]}, label="y", label_domain="bank",
        folder=tmp_path / "mesh", extra={"training": {"epochs": 2, "batch_size": 32}},
    )  # fmt: skip


def _with_products(mesh, tmp_path):
    r = splitmesh("product", "init", str(mesh), "--out", str(mesh.parent / "products"),
                  "--owner", "risk team")  # fmt: skip
    assert r.returncode == 0, r.stderr
    m = yaml.safe_load(mesh.read_text())
    m["products"] = "products"
    mesh.write_text(yaml.safe_dump(m))
    return mesh.parent / "products"


def test_init_writes_products_that_validate(tmp_path, mesh):
    products = _with_products(mesh, tmp_path)
    found = find_products(products)
    assert sorted(p.domain for p in found) == ["bank", "insurer"]
    assert all(p.embedding.width == 16 for p in found)  # the mesh's cut width
    r = splitmesh("product", "validate", str(products), "--mesh", str(mesh))
    assert r.returncode == 0 and "2 product(s) valid" in r.stdout, r.stdout + r.stderr


def test_a_descriptor_naming_another_contract_version_is_refused(tmp_path, mesh):
    products = _with_products(mesh, tmp_path)
    path = products / "bank" / DESCRIPTOR
    d = yaml.safe_load(path.read_text())
    d["outputPorts"][0]["version"] = "2.0.0"
    path.write_text(yaml.safe_dump(d))
    with pytest.raises(ContractError, match="no output port names contract 'bank-embedding'"):
        Product(products / "bank")
    d["unknownField"] = 1  # ODPS forbids fields it does not define
    path.write_text(yaml.safe_dump(d))
    r = splitmesh("product", "validate", str(products))
    assert r.returncode == 11 and "unknownField" in r.stderr


def test_a_governed_run_publishes_onnx_products_equal_to_pytorch(tmp_path, mesh):
    _with_products(mesh, tmp_path)
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump({
        "version": "7", "participants": [{"name": "bank"}, {"name": "insurer"}]}))  # fmt: skip
    policy = load_policy(policy_file)
    out = tmp_path / "out"
    res = train_mesh(load_mesh(mesh), out, policy=policy, progress=False)
    run = res["runs"][0]
    assert sorted(p["domain"] for p in run["products"]) == ["bank", "insurer"]
    for domain in ("bank", "insurer"):
        folder = out / domain
        meta = onnx_metadata(folder / ONNX)
        assert meta["domain"] == domain
        assert meta["input_contract"] == f"{domain}-input@1.0.0"
        assert meta["output_contract"] == f"{domain}-embedding@1.0.0"
        assert meta["cut_layer_shape"] == "[batch, 16]"
        assert meta["policy_version"] == "7" and meta["policy_hash"] == policy.hash
        model = json.loads((folder / "model.json").read_text())
        assert meta["training_data_sha256"] == model["data"]["sha256"]
        assert meta["run_id"] == run["products"][0]["run_id"] != ""
        card = (folder / CARD).read_text()
        for heading in ("Model details", "Intended use", "Factors", "Metrics",
                        "Evaluation data", "Training data", "Quantitative analyses",
                        "Ethical considerations", "Caveats and recommendations"):  # fmt: skip
            assert f"## {heading}" in card
        # the ONNX model gives the PyTorch embeddings of the domain's own prepared rows
        done = export_domain(folder, tmp_path / "export" / domain)
        assert done["max_difference"] < 1e-5
    from splitmesh.data.features import FeaturePrep
    from splitmesh.split.saved import load_module

    spec = load_mesh(mesh)
    table = spec.read_domain("bank")
    prep = FeaturePrep.from_dict(json.loads((out / "bank" / "prep.json").read_text()))
    num, codes = prep.transform(table.numeric, table.categorical)
    model = json.loads((out / "bank" / "model.json").read_text())
    bottom = build_bottom(Model(bottom=[32, 16]), "bank", model["input_width"], 0,
                                                       tuple(model["cardinalities"]))  # fmt: skip
    load_module(out / "bank" / "bottom.pt", bottom, "bank")
    import torch

    with torch.no_grad():
        want = bottom.eval()(torch.from_numpy(num.astype(np.float32)), torch.from_numpy(codes))
    got = run_onnx(out / "bank" / ONNX, num, codes)
    assert codes.shape[1] == 1 and np.abs(got - want.numpy()).max() < 1e-5


def test_data_breaking_its_input_contract_refuses_the_run(tmp_path, mesh):
    products = _with_products(mesh, tmp_path)
    path = products / "insurer" / "input.odcs.yaml"
    doc = yaml.safe_load(path.read_text())
    x1 = next(p for p in doc["schema"][0]["properties"] if p["name"] == "x1")
    x1.setdefault("logicalTypeOptions", {})["maximum"] = 0.5
    path.write_text(yaml.safe_dump(doc))
    # the node refuses (its party checks at Hello); the coordinator names party and reason
    with pytest.raises(PartyError, match=r"party 'insurer' failed on Hello: ContractError: "
                       r".*'insurer-input' v1.0.0: column 'x1' has .* above the contract's "
                       r"maximum 0.5"):  # fmt: skip
        train_mesh(load_mesh(mesh), tmp_path / "out", progress=False)
    events = [json.loads(x) for x in (tmp_path / "out" / "audit.jsonl").read_text().splitlines()]
    assert (
        events[-1]["event"] == "run.fail"
        and "above the contract's maximum" in (events[-1]["reason"])
    )


def test_an_embedding_that_breaks_its_output_contract_refuses_the_run(tmp_path, mesh):
    products = _with_products(mesh, tmp_path)
    path = products / "insurer" / OUTPUT
    doc = yaml.safe_load(path.read_text())
    custom = doc["schema"][0]["properties"][0]["customProperties"]
    next(c for c in custom if c["property"] == "width")["value"] = 8
    path.write_text(yaml.safe_dump(doc))
    r = splitmesh("train", str(mesh), "--out", str(tmp_path / "out"), "--no-progress")
    assert r.returncode == 11
    assert ("domain 'insurer' sent embeddings of shape [32, 16] float32; its output contract "
            "'insurer-embedding' v1.0.0 promises [batch, 8] float32") in r.stderr  # fmt: skip


def test_init_writes_servers_team_and_sla_blocks_the_odcs_schema_accepts(tmp_path, mesh):
    from splitmesh.mesh.contracts import schema_errors

    out = mesh.parent / "products"
    r = splitmesh("product", "init", str(mesh), "--out", str(out), "--owner", "risk team",
                  "--contact", "risk@bank.example", "--sla", "frequency=1d",
                  "--sla", "latency=4h", "--sla", "retention=365d")  # fmt: skip
    assert r.returncode == 0, r.stderr
    spec = load_mesh(mesh)
    for domain in ("bank", "insurer"):
        doc = yaml.safe_load((out / domain / "input.odcs.yaml").read_text())
        assert schema_errors(doc) == []
        source = (mesh.parent / spec.domain(domain).source).resolve()
        (server,) = doc["servers"]
        assert server["type"] == "local" and server["path"] == str(source)
        assert server["format"] == source.suffix.lstrip(".")
        assert doc["team"] == {
            "name": "risk team",
            "members": [{"username": "risk@bank.example", "role": "owner"}],
        }
        sla = {p["property"]: (p["value"], p.get("unit")) for p in doc["slaProperties"]}
        assert sla["frequency"] == (1, "d") and sla["latency"] == (4, "h")
        assert sla["retention"] == (365, "d") and "generalAvailability" in sla
        embedding = yaml.safe_load((out / domain / OUTPUT).read_text())
        assert schema_errors(embedding) == [] and embedding["team"] == doc["team"]
    r = splitmesh("product", "init", str(mesh), "--out", str(tmp_path / "p2"), "--sla", "often")
    assert r.returncode == 11 and "PROPERTY=VALUE[UNIT]" in r.stderr
    assert not (tmp_path / "p2").exists()


def test_scoring_data_outside_the_training_range_is_accepted_a_declared_range_is_not(
    tmp_path, mesh
):
    products = _with_products(mesh, tmp_path)
    r = splitmesh("train", str(mesh), "--out", str(tmp_path / "out"), "--no-progress")
    assert r.returncode == 0, r.stderr
    # new rows one unit beyond anything seen in training: the derived contract has no range
    spec = load_mesh(mesh)
    source = mesh.parent / spec.domain("insurer").source
    table = pd.read_parquet(source) if source.suffix == ".parquet" else pd.read_csv(source)
    table["x1"] = table["x1"].max() + 1.0
    table.to_parquet(source) if source.suffix == ".parquet" else table.to_csv(source, index=False)
    r = splitmesh("predict", str(mesh), "--model", str(tmp_path / "out"),
                  "--out", str(tmp_path / "scores.csv"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    # a range the domain declares refuses them, exit 11 with a hint
    path = products / "insurer" / "input.odcs.yaml"
    doc = yaml.safe_load(path.read_text())
    x1 = next(p for p in doc["schema"][0]["properties"] if p["name"] == "x1")
    x1["logicalTypeOptions"] = {"maximum": 1.0}
    path.write_text(yaml.safe_dump(doc))
    r = splitmesh("train", str(mesh), "--out", str(tmp_path / "out2"), "--no-progress")
    assert r.returncode == 11, r.stderr
    assert "above the contract's maximum 1.0" in r.stderr and "hint:" in r.stderr
