"""splitmesh train / predict on meshes of shuffled, partly overlapping domain tables."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from splitmesh.data.datasets.creditcard import DOMAINS
from splitmesh.data.datasets.vertical import write_vertical_mesh
from splitmesh.errors import ConfigError, DataError
from splitmesh.mesh.spec import load_mesh
from splitmesh.usecases.train import predict_mesh, train_mesh
from tests.test_cli import splitmesh

MODES = ("label-sharing", "label-preserving", "centralized")


@pytest.fixture
def fraud_mesh(tmp_path, creditcard_path):
    """The real fraud subset cut into three domains (CSV and Parquet, string keys, each
    domain missing a different 10% of the transactions)."""
    df = pd.read_csv(creditcard_path).iloc[:, 1:]
    return write_vertical_mesh(
        df,
        DOMAINS,
        label="Class",
        label_domain="payments",
        folder=tmp_path / "mesh",
        string_keys=True,
        extra={"training": {"epochs": 30, "patience": 8, "batch_size": 64}},
    )


def test_real_fraud_mesh_split_matches_centralized_and_predicts(tmp_path, fraud_mesh):
    spec = load_mesh(fraud_mesh)
    scores = {}
    for mode in ("label-sharing", "label-preserving"):
        spec = spec.model_copy(update={"mode": mode})
        out = tmp_path / mode
        res = train_mesh(spec, out, compare=mode == "label-preserving", progress=False)
        runs = {r["mode"]: r for r in res["runs"]}
        if "centralized" in runs:
            split, central = runs[mode]["metrics"], runs["centralized"]["metrics"]
            assert abs(split["roc_auc"] - central["roc_auc"]) < 0.01
            assert split["roc_auc"] == pytest.approx(central["roc_auc"], abs=1e-6)
            assert central["roc_auc"] > 0.95
        a = runs[mode]["alignment"]
        assert a["aligned"] < min(a["rows_per_domain"].values())  # partial overlap
        assert {"roc_auc", "average_precision", "f1", "accuracy"} <= runs[mode]["metrics"].keys()
        # each party's model in its own folder; none of the domains' in the coordinator's
        for d in DOMAINS:
            assert (out / d / "bottom.pt").is_file()
        assert sorted(p.name for p in (out / "coordinator").iterdir()) == sorted(
            ["top.pt", "model.json", "product.odps.yaml"]
            + (["head.pt"] if mode == "label-sharing" else [])
        )
        # the top is the consuming team's composite product: its inputs are the domains'
        # embedding ports, by contract id and version
        from splitmesh.mesh.products import read_descriptor

        composite = read_descriptor(out / "coordinator" / "product.odps.yaml")
        embedding = {d: read_descriptor(out / d / "product.odps.yaml") for d in DOMAINS}
        assert {(p.contractId, p.version) for p in composite.inputPorts} == {
            (e.outputPorts[0].contractId, e.outputPorts[0].version) for e in embedding.values()
        }
        assert composite.custom()["runId"] == runs[mode]["run_id"]
        predict_mesh(spec, out, tmp_path / f"{mode}.csv")
        frame = pd.read_csv(tmp_path / f"{mode}.csv")
        assert len(frame) == a["aligned"] and list(frame.columns) == ["id", "score", "predicted"]
        scores[mode] = frame
    np.testing.assert_allclose(
        scores["label-sharing"]["score"], scores["label-preserving"]["score"], atol=1e-5
    )
    assert (scores["label-sharing"]["id"] == scores["label-preserving"]["id"]).all()


def test_a_label_only_domain_holds_the_labels_and_no_bottom(tmp_path, creditcard_path):
    df = pd.read_csv(creditcard_path).iloc[:, 1:]
    mesh = write_vertical_mesh(
        df,
        {"labels": [], **DOMAINS},
        label="Class",
        label_domain="labels",
        folder=tmp_path / "mesh",
        extra={"training": {"epochs": 10, "batch_size": 64}},
    )
    spec = load_mesh(mesh)
    assert spec.label_only and spec.embedding_domains == list(DOMAINS)
    out = tmp_path / "out"
    res = train_mesh(spec, out, compare=True, progress=False)
    split, central = (r["metrics"] for r in res["runs"])
    assert split["roc_auc"] == pytest.approx(central["roc_auc"], abs=1e-6)
    assert split["roc_auc"] > 0.9
    assert not (out / "labels" / "bottom.pt").exists()  # labels and its head, no bottom
    assert (out / "labels" / "labels.json").is_file() and (out / "labels" / "head.pt").is_file()
    predict_mesh(spec, out, tmp_path / "scores.csv")
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert list(scores.columns) == ["id", "score", "predicted"]
    assert len(scores) == res["runs"][0]["alignment"]["aligned"]
    # its node serves no bottom model: a coordinator cannot make it embed anything
    from splitmesh.split import protocol as proto
    from splitmesh.usecases.train import local_domains

    nodes = local_domains(spec, "label-preserving", model_dir=None, state_dir=None)
    assert proto.BOTTOM not in nodes["labels"].serves


def _wine_mesh(tmp_path, task):
    """A real public dataset (sklearn's bundled wine / diabetes), cut into two domains, with
    a categorical column and missing values."""
    from sklearn.datasets import load_diabetes, load_wine

    data = load_wine(as_frame=True) if task == "multiclass" else load_diabetes(as_frame=True)
    df = data.frame.rename(columns={"target": "y"})
    cols = [c for c in df.columns if c != "y"]
    rng = np.random.default_rng(0)
    df[cols[0]] = df[cols[0]].mask(rng.random(len(df)) < 0.1)  # gaps in a numeric column
    df["band"] = pd.qcut(df[cols[2]], 3, labels=["low", "mid", "high"]).astype(str)
    half = len(cols) // 2
    domains = {"lab": [*cols[:half], "band"], "clinic": cols[half:]}
    return write_vertical_mesh(
        df, domains, label="y", label_domain="lab", folder=tmp_path / task, task=task,
        keep=0.95, mode="label-preserving",
        extra={"training": {"epochs": 40, "patience": 10, "batch_size": 32, "lr": 0.003}},
    )  # fmt: skip


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_multiclass_and_regression_with_categories_and_gaps(tmp_path, task):
    spec = load_mesh(_wine_mesh(tmp_path, task))
    res = train_mesh(spec, tmp_path / "out", compare=True, progress=False)
    split, central = (r["metrics"] for r in res["runs"])
    key = "accuracy" if task == "multiclass" else "rmse"
    assert split[key] == pytest.approx(central[key], rel=1e-5)
    if task == "multiclass":
        assert {"accuracy", "macro_f1"} <= split.keys() and split["accuracy"] > 0.85
    else:
        assert {"rmse", "mae", "r2"} <= split.keys() and split["r2"] > 0.3
    notes = " ".join(res["runs"][0]["notes"])
    prep = json.loads((tmp_path / "out" / "lab" / "prep.json").read_text())
    assert prep["categories"] == [["high", "low", "mid"]]  # the declared column's vocabulary
    assert "missing value(s) among its rows, filled by the domain" in notes
    predict_mesh(spec, tmp_path / "out", tmp_path / "scores.csv")
    frame = pd.read_csv(tmp_path / "scores.csv")
    assert "predicted" in frame.columns and frame["id"].is_unique
    if task == "multiclass":
        assert set(frame["predicted"]) <= {0, 1, 2}


def test_cli_train_and_predict(tmp_path, fraud_mesh):
    out = tmp_path / "out"
    p = splitmesh("train", str(fraud_mesh), "--out", str(out), "--no-progress")
    assert p.returncode == 0, p.stderr
    assert "AUC" in p.stdout
    res = json.loads((out / "results.json").read_text())
    assert res["task"] == "binary" and res["runs"][0]["mode"] == "label-preserving"
    p = splitmesh("predict", str(fraud_mesh), "--model", str(out), "--out", str(tmp_path / "s.csv"))
    assert p.returncode == 0, p.stderr
    assert "scored" in p.stdout and (tmp_path / "s.csv").is_file()


def _edit(path, change):
    mesh = yaml.safe_load(path.read_text())
    change(mesh)
    path.write_text(yaml.safe_dump(mesh))
    return path


def test_mesh_file_errors_name_file_field_and_expectation(tmp_path, fraud_mesh):
    _edit(fraud_mesh, lambda m: m.update(task="ordinal"))
    with pytest.raises(ConfigError, match=r"mesh file .*mesh.yaml, field 'task': Input should be"):
        load_mesh(fraud_mesh)
    _edit(fraud_mesh, lambda m: m.update(task="binary", label={"domain": "nobody", "column": "y"}))
    with pytest.raises(ConfigError, match=r"label\.domain 'nobody' is not one of"):
        load_mesh(fraud_mesh)


def test_bad_columns_name_domain_file_and_column(tmp_path, fraud_mesh):
    _edit(fraud_mesh, lambda m: m["domains"][1].update(features=["V10", "V99"]))
    spec = load_mesh(fraud_mesh)
    with pytest.raises(DataError, match=r"file .*cardholder.parquet, column 'V99'.*domain "):
        train_mesh(spec, tmp_path / "out", progress=False)
    p = splitmesh("train", str(fraud_mesh), "--out", str(tmp_path / "o"), "--no-progress")
    assert p.returncode == 3 and "V99" in p.stderr and "Traceback" not in p.stderr


def test_over_grpc_nodes_give_the_in_process_model(tmp_path, fraud_mesh):
    """One node process per domain (mutual TLS), each reading only its own file: the same
    metrics and the same scores as in process."""
    _edit(fraud_mesh, lambda m: m.update(mode="label-sharing", training={"epochs": 3}))
    local, remote = tmp_path / "local", tmp_path / "grpc"
    p = splitmesh("train", str(fraud_mesh), "--out", str(local), "--no-progress")
    assert p.returncode == 0, p.stderr
    up = ["mesh", "up", "--workdir", str(tmp_path / "wd")]
    p = splitmesh(*up, "train", str(fraud_mesh), "--out", str(remote), "--no-progress")
    assert p.returncode == 0, p.stderr
    runs = [json.loads((d / "results.json").read_text())["runs"][0] for d in (local, remote)]
    assert runs[1]["transport"] == "grpc" and runs[0]["transport"] == "in-process"
    assert runs[0]["metrics"]["roc_auc"] == runs[1]["metrics"]["roc_auc"]
    # peak memory by process: one in process; the coordinator and every node over gRPC
    assert list(runs[0]["peak_rss_mb"]) == ["process"]
    nodes = [d["name"] for d in yaml.safe_load(fraud_mesh.read_text())["domains"]]
    assert sorted(runs[1]["peak_rss_mb"]) == sorted(["coordinator", *nodes])
    assert all(100 < mb < 4096 for mb in runs[1]["peak_rss_mb"].values())  # torch alone: >100
    p = splitmesh(*up, "predict", str(fraud_mesh), "--model", str(remote), "--out",
                  str(tmp_path / "grpc.csv"))  # fmt: skip
    assert p.returncode == 0, p.stderr
    predict_mesh(load_mesh(fraud_mesh), local, tmp_path / "local.csv")
    a, b = (pd.read_csv(tmp_path / f) for f in ("local.csv", "grpc.csv"))
    pd.testing.assert_frame_equal(a, b)


def test_the_references_read_the_categories_of_any_domain_that_has_them():
    """One domain with a telling category, another with numbers only: the references one-hot
    the category (it used to be dropped unless every domain had one)."""
    from splitmesh.config import Model, Optim, Resample
    from splitmesh.split.centralized import CentralizedLearner
    from splitmesh.split.tasks import Task
    from splitmesh.usecases.train import references

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600)
    colour = np.array(["red", "green", "blue"], dtype=object)[y][:, None]
    learner = CentralizedLearner(
        {"shop": np.zeros((600, 0)), "bank": rng.normal(size=(600, 2))},
        y,
        categorical={"shop": colour},
        task=Task("multiclass", n_classes=3),
        spec=Model(bottom=(8, 4), top=(8,)),
        optim=Optim(),
        seed=0,
    )
    learner.prepare(test=0.2, validation=0.2, resample=Resample())
    learner.build()
    linear, trees = references(learner, 0)
    assert linear["mode"] == "linear (reference)" and linear["metrics"]["accuracy"] > 0.95
    assert trees["mode"] == "boosted trees (reference)" and trees["metrics"]["accuracy"] > 0.95
