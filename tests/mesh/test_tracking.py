"""MLflow: a run logged to a local store and read back; its models in the registry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from splitmesh.data.datasets.vertical import write_vertical_mesh
from tests.test_cli import splitmesh

mlflow = pytest.importorskip("mlflow", reason="MLflow tracking needs splitmesh[mlflow]")


@pytest.fixture
def mesh(tmp_path):
    rng = np.random.default_rng(3)
    n = 300
    df = pd.DataFrame({"x0": rng.normal(size=n), "x1": rng.normal(size=n)})
    df["y"] = (df.x0 + df.x1 > 0).astype(int)
    return write_vertical_mesh(
        df, {"bank": ["x0"], "insurer": ["x1"]}, label="y", label_domain="bank",
        folder=tmp_path / "mesh", extra={"training": {"epochs": 3, "batch_size": 64}},
    )  # fmt: skip


def test_train_logs_its_runs_and_registers_the_composite_and_the_bottoms(mesh, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "out"
    r = splitmesh("train", str(mesh), "--out", str(out), "--compare", "--mlflow", uri)
    assert r.returncode == 0, r.stderr
    assert "MLflow" in r.stdout
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("splitmesh/mesh")
    runs = {x.info.run_name: x for x in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"label-preserving", "centralized"}
    split = runs["label-preserving"]
    assert split.data.params["training.epochs"] == "3" and split.data.params["domains"]
    assert 0.5 < split.data.metrics["test_roc_auc"] <= 1.0
    losses = client.get_metric_history(split.info.run_id, "train_loss")
    assert [m.step for m in losses] == [1, 2, 3]
    assert len(client.get_metric_history(split.info.run_id, "val_curve_log_loss")) == 3
    artifacts = {a.path for a in client.list_artifacts(split.info.run_id)}
    assert {"report.md", "results.json", "plots", "products", "model"} <= artifacts
    onnx = {a.path for a in client.list_artifacts(split.info.run_id, "products/insurer")}
    assert "products/insurer/bottom.onnx" in onnx
    # the registry: the composite, tagged with the bottoms it was trained with
    (composite,) = client.search_model_versions("name='mesh-label-preserving'")
    assert composite.run_id == split.info.run_id
    assert composite.tags["bottom.mesh-insurer-bottom"] == "1"
    (bottom,) = client.search_model_versions("name='mesh-insurer-bottom'")
    assert bottom.tags["splitmesh.onnx_sha256"] and bottom.source.endswith("products/insurer")


def test_a_second_run_adds_versions_not_models(mesh, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for out in ("a", "b"):
        r = splitmesh("train", str(mesh), "--out", str(tmp_path / out), "--mlflow", uri)
        assert r.returncode == 0, r.stderr
    client = mlflow.MlflowClient(uri)
    versions = client.search_model_versions("name='mesh-label-preserving'")
    assert sorted(int(v.version) for v in versions) == [1, 2]


def test_asking_for_mlflow_without_it_installed_fails_before_training(monkeypatch):
    import builtins

    from splitmesh.errors import ConfigError
    from splitmesh.mesh.tracking import check_available

    real = builtins.__import__

    def no_mlflow(name, *args, **kwargs):
        if name == "mlflow":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    with pytest.raises(ConfigError, match="mlflow is not installed") as err:
        check_available()
    assert "splitmesh[mlflow]" in err.value.hint


def test_an_unreachable_server_is_refused_before_training_and_resume_logs_a_finished_run(
    mesh, tmp_path
):
    out = tmp_path / "out"
    r = splitmesh("train", str(mesh), "--out", str(out), "--mlflow", "http://127.0.0.1:9")
    assert r.returncode == 13 and "does not answer" in r.stderr
    assert not (out / "results.json").exists()  # nothing trained
    r = splitmesh("train", str(mesh), "--out", str(out))
    assert r.returncode == 0, r.stderr
    # logged afterwards: --resume finds the finished run and trains nothing
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    r = splitmesh("train", str(mesh), "--out", str(out), "--resume", "--mlflow", uri)
    assert r.returncode == 0, r.stderr
    assert "epoch 1/" not in r.stderr
    client = mlflow.MlflowClient(uri)
    (version,) = client.search_model_versions("name='mesh-label-preserving'")
    run = client.get_run(version.run_id)
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 3


def test_a_domains_sweep_is_logged_as_one_run_with_a_nested_run_per_training(mesh, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "sweep"
    r = splitmesh("train", str(mesh), "--out", str(out), "--domains-sweep", "--seeds", "2",
                  "--mlflow", uri)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "run domains-sweep" in r.stdout and "nested runs" in r.stdout
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("splitmesh/mesh")
    runs = client.search_runs([exp.experiment_id])
    (top,) = [x for x in runs if x.info.run_name == "domains-sweep"]
    children = [x for x in runs if x.data.tags.get("mlflow.parentRunId") == top.info.run_id]
    assert len(children) == 4  # 1 and 2 domains, 2 seeds each, one mode
    assert {c.data.params["seed"] for c in children} == {"0", "1"}
    assert all(0.0 <= c.data.metrics["test_roc_auc"] <= 1.0 for c in children)
    metrics = top.data.metrics
    means = sorted(k for k in metrics if "/mean_" in k)
    assert len(means) == 2 and any("/add_insurer/delta_" in k for k in metrics)
    assert {"results.json", "report.md"} <= {a.path for a in client.list_artifacts(top.info.run_id)}
    assert not client.search_registered_models()  # a sweep explores: nothing registered
