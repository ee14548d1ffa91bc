"""The domains experiment on any mesh: domain sets over seeds, what each domain adds."""

import json

import pytest

from splitmesh.mesh.spec import load_mesh
from splitmesh.usecases.sweep import adds_lines, domain_sets, summarise
from tests.split.test_star import write_star
from tests.test_cli import splitmesh


def test_domain_sets_start_from_the_fact_and_drop_the_keys_into_left_out_dimensions(tmp_path):
    spec = load_mesh(write_star(tmp_path))
    sets = domain_sets(spec)
    assert [s.domain_names for s in sets] == [
        ["sales"], ["sales", "customers"], ["sales", "customers", "products"]
    ]  # fmt: skip
    assert sets[0].dimensions == {} and sets[1].dimensions == {"customers": "users"}


def _run(mode, domains, seed, value):
    return {"mode": mode, "domains": domains, "seed": seed, "metrics": {"m": value}}


def test_what_each_domain_adds_is_paired_by_seed_and_says_when_it_is_noise():
    runs = [_run("x", ["a"], s, v) for s, v in enumerate([0.50, 0.60, 0.70])]
    runs += [_run("x", ["a", "b"], s, v) for s, v in enumerate([0.52, 0.62, 0.72])]  # +0.02
    runs += [_run("x", ["a", "b", "c"], s, v) for s, v in enumerate([0.53, 0.61, 0.73])]
    s = summarise(runs, "m")["x"]
    assert [r["mean"] for r in s["sets"]] == pytest.approx([0.60, 0.62, 0.6233333])
    b, c = s["adds"]
    # the seeds spread the sets by 0.1, but b adds the same 0.02 under every seed
    assert b["domain"] == "b" and b["delta"] == pytest.approx(0.02) and not b["within_noise"]
    assert c["domain"] == "c" and c["within_noise"]  # +0.01, -0.01, +0.01
    lines = adds_lines({"metric": "m", "summary": {"x": s}})
    assert "beyond the seeds' noise" in lines[0] and "within the seeds' noise" in lines[1]


def test_train_domains_sweep_writes_the_table_plot_and_list(tmp_path):
    mesh = write_star(tmp_path)
    out = tmp_path / "out"
    p = splitmesh(
        "train", str(mesh), "--out", str(out), "--domains-sweep", "--seeds", "2",
        "--set", "training.epochs=1", "--no-progress",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    res = json.loads((out / "results.json").read_text())
    assert (
        res["experiment"] == "domains-sweep" and res["metric"] == "ndcg@5"
    )  # the first K asked for
    assert len(res["runs"]) == 3 * 2
    adds = res["summary"]["label-sharing"]["adds"]
    assert [a["domain"] for a in adds] == ["customers", "products"]
    assert all(a["std"] is not None and a["seeds"] == 2 for a in adds)
    assert (out / "domains.png").stat().st_size > 1000
    assert "What each domain adds" in (out / "report.md").read_text()
    assert "+ customers" in p.stdout
