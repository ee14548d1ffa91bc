import json

import pytest

from tests.test_cli import splitmesh

TINY = [
    "--dataset", "hm-synthetic", "--synthetic-transactions", "6000",
    "--synthetic-customers", "300", "--synthetic-articles", "600",
    "--min-user", "8", "--min-item", "2", "--epochs", "1", "--patience", "1",
    "--batch-size", "512", "--no-progress",
]  # fmt: skip


def test_diversity_on_synthetic_hm_writes_results_report_and_plot(tmp_path):
    out = tmp_path / "out"
    p = splitmesh("recsys", *TINY, "--data", str(tmp_path / "hm"), "--diversity", "--out", str(out))
    assert p.returncode == 0, p.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["task"] == "recsys" and res["experiment"] == "domains-sweep"
    assert {(len(r["domains"]), r["mode"]) for r in res["runs"]} == {
        (n, m) for n in (1, 2, 3) for m in ("centralized", "label-sharing", "label-preserving")
    }
    for run in res["runs"]:
        assert {
            "mode",
            "dataset",
            "domains",
            "metrics",
            "train_seconds",
            "wire_bytes",
        } <= run.keys()
        assert {"hr@10", "ndcg@10", "recall@10"} <= run["metrics"].keys()
        assert (run["wire_bytes"] > 0) == (run["mode"] != "centralized")
    assert [r["mode"] for r in res["references"]] == ["random", "ItemPop", "NeuMF ids-only"]
    # one seed, same examples: every split run equals its centralized twin
    by = {(len(r["domains"]), r["mode"]): r["metrics"]["ndcg@10"] for r in res["runs"]}
    for n in (1, 2, 3):
        assert by[(n, "label-sharing")] == pytest.approx(by[(n, "centralized")], rel=1e-5)
        assert by[(n, "label-preserving")] == pytest.approx(by[(n, "centralized")], rel=1e-5)
    report = (out / "report.md").read_text()
    assert "What each domain adds" in report and "domains.png" in report
    assert (out / "domains.png").stat().st_size > 1000
    assert "HR@10" in p.stdout and "NDCG@10" in p.stdout
    # every run recorded; the customers and products bottoms published as data products
    from splitmesh.mesh.audit import verify
    from splitmesh.mesh.catalog import Catalog

    runs = Catalog(out / "catalog.db").list_runs()
    assert len(runs) == 9 and {r["status"] for r in runs} == {"complete"}
    assert verify(out / "audit.jsonl")["records"] == 18
    assert len((out / "lineage.jsonl").read_text().splitlines()) == 18
    for n, domains in ((2, ["customers"]), (3, ["customers", "products"])):
        for mode in ("label-sharing", "label-preserving"):
            for d in domains:
                assert (out / "products" / f"{n}-domains" / mode / d / "bottom.onnx").is_file()


def test_a_policy_forbidding_a_customer_column_refuses_the_recommender(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: '1'\nparticipants: [{name: sales}, {name: customers, forbidden_columns: "
        "[age]}, {name: products}]\nlabel_placement: [label-sharing]\n"
    )
    out = tmp_path / "out"
    p = splitmesh("recsys", *TINY, "--data", str(tmp_path / "hm"), "--mode", "label-sharing",
                  "--out", str(out), "--policy", str(policy))  # fmt: skip
    assert p.returncode == 10, p.stderr
    assert "policy rule 'columns' refuses: domain 'customers' uses forbidden column(s) ['age']" in (
        p.stderr
    )
    events = [json.loads(x) for x in (out / "audit.jsonl").read_text().splitlines()]
    assert any(e["result"] == "refuse" for e in events)
    assert not any(e["event"] == "run.start" for e in events)


def test_movielens_split_beats_item_popularity(ml100k_path, tmp_path):
    out = tmp_path / "out"
    p = splitmesh(
        "recsys", "--data", str(ml100k_path), "--mode", "label-sharing", "--epochs", "2",
        "--patience", "2", "--no-reference", "--no-progress", "--out", str(out),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    res = json.loads((out / "results.json").read_text())
    run, refs = res["runs"][0], {r["mode"]: r["metrics"] for r in res["references"]}
    assert run["metrics"]["users"] == 943
    assert refs["random"]["hr@10"] < 0.15  # 1 in 100 candidates: about 0.10
    assert run["metrics"]["hr@10"] > refs["ItemPop"]["hr@10"] + 0.05
    assert run["metrics"]["ndcg@10"] > refs["ItemPop"]["ndcg@10"] + 0.03


@pytest.mark.parametrize(
    ("args", "code", "pattern"),
    [
        (["--dataset", "hm"], 2, "--dataset hm needs --data"),
        (["--dataset", "ml-100k", "--data", "nowhere"], 2, "MovieLens 100K not found at nowhere"),
        (["--domains", "4"], 2, "'domains' parameter must be 1 to 3"),
        (["--eval", "half"], 2, "'eval' parameter must be 'sampled' or 'full'"),
    ],
)
def test_bad_options_are_named(args, code, pattern):
    p = splitmesh("recsys", *args, "--no-progress")
    assert p.returncode == code, p.stderr
    assert pattern in p.stderr
    assert "Traceback" not in p.stderr
