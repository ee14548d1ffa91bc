"""The recommender as a mesh file (a star schema, task: ranking): the same figures as the
recsys preset in process, and exactly those over gRPC with one node per domain."""

import json

from splitmesh.mesh.spec import load_mesh
from splitmesh.usecases.recsys import recsys_mesh
from splitmesh.usecases.train import train_mesh
from tests.conftest import ROOT
from tests.test_cli import splitmesh


def movielens_mesh(folder, data):
    """The shipped MovieLens mesh file, reading ``data`` instead of ../shared/data."""
    text = (ROOT / "examples" / "movielens" / "mesh.yaml").read_text()
    path = folder / "mesh.yaml"
    path.write_text(text.replace("../../../shared/data/ml-100k", str(data)))
    return path


def test_movielens_mesh_matches_the_recommender_in_process_and_over_grpc(tmp_path, ml100k_path):
    mesh = movielens_mesh(tmp_path, ml100k_path)
    local = train_mesh(load_mesh(mesh, ["training.epochs=1"]), tmp_path / "local", progress=False)
    local = local["runs"][0]
    preset = load_mesh(recsys_mesh(tmp_path / "preset", data=ml100k_path), ["training.epochs=1"])
    before = train_mesh(preset, tmp_path / "preset", progress=False)["runs"][0]
    assert local["metrics"] == before["metrics"]  # the recsys preset is this mesh file
    assert local["metrics"]["hr@10"] > 0.3  # far above random (about 0.1)

    out = tmp_path / "grpc"
    p = splitmesh(
        "mesh", "up", "train", str(mesh), "--workdir", str(tmp_path / "mesh"),
        "--out", str(out), "--set", "training.epochs=1", "--no-progress",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    grpc = json.loads((out / "results.json").read_text())["runs"][0]
    assert grpc["transport"] == "grpc"
    assert grpc["metrics"] == local["metrics"]
    assert [s["common"] for s in grpc["alignment"]["steps"]] == [943, 1682]
    assert (out / "customers" / "label-preserving" / "bottom.onnx").is_file()


def test_hm_sample_mesh_trains_with_customers_the_customers_domain_lacks(tmp_path, hm_sample_path):
    text = (ROOT / "examples" / "hm" / "mesh.yaml").read_text()
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(text.replace("../../../shared/data/hm-sample", str(hm_sample_path)))
    spec = load_mesh(mesh, ["training.epochs=1"])
    split, central = train_mesh(spec, tmp_path / "out", compare=True, progress=False)["runs"]
    users = split["metrics"]["users"]
    common = {s["with"]: s["common"] for s in split["alignment"]["steps"]}
    assert 0 < common["customers"] < users  # PSI: only these buyers are in the customers file
    assert split["metrics"] == central["metrics"]  # the same unknown row in both
    assert split["metrics"]["hr@10"] > 0.1  # above random (99 sampled competitors)


def test_synthetic_hm_mesh_example_writes_a_star_that_trains(tmp_path):
    import subprocess
    import sys

    script = ROOT / "examples" / "make_synthetic_hm_mesh.py"
    out = tmp_path / "shm"
    args = [
        "--out",
        str(out),
        "--transactions",
        "20000",
        "--customers",
        "2000",
        "--articles",
        "800",
    ]
    p = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    spec = load_mesh(out / "mesh.yaml", ["training.epochs=1", "mode=label-sharing"])
    assert spec.dimensions == {"customers": "users", "products": "items"}
    run = train_mesh(spec, tmp_path / "run", progress=False)["runs"][0]
    common = {s["with"]: s["common"] for s in run["alignment"]["steps"]}
    assert common["customers"] == run["metrics"]["users"]  # every buyer is a customer here
    assert 0 < run["metrics"]["ndcg@10"] <= 1
