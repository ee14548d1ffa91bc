"""The recsys preset end to end through the command line (synthetic H&M, MovieLens)."""

import json

import pytest

from tests.test_cli import splitmesh

TINY = [
    "--dataset", "hm-synthetic", "--synthetic-transactions", "6000",
    "--synthetic-customers", "300", "--synthetic-articles", "600",
    "--min-user", "8", "--min-item", "2", "--epochs", "1", "--patience", "1",
    "--batch-size", "512", "--no-progress",
]  # fmt: skip


def test_a_domains_sweep_on_synthetic_hm_writes_results_report_and_plot(tmp_path):
    out = tmp_path / "out"
    p = splitmesh("recsys", *TINY, "--domains-sweep", "--seeds", "2", "--out", str(out))
    assert p.returncode == 0, p.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["task"] == "ranking" and res["experiment"] == "domains-sweep"
    assert {(len(r["domains"]), r["mode"], r["seed"]) for r in res["runs"]} == {
        (n, m, s)
        for n in (1, 2, 3)
        for m in ("centralized", "label-sharing", "label-preserving")
        for s in (0, 1)
    }
    for run in res["runs"]:
        assert {"mode", "domains", "metrics", "train_seconds", "wire_bytes"} <= run.keys()
        assert {"hr@10", "ndcg@10", "recall@10"} <= run["metrics"].keys()
        assert (run["wire_bytes"] > 0) == (run["mode"] != "centralized")
    # same seed, same examples: every split run equals its centralized twin
    by = {(len(r["domains"]), r["mode"], r["seed"]): r["metrics"]["ndcg@10"] for r in res["runs"]}
    for (n, mode, seed), v in by.items():
        assert v == pytest.approx(by[(n, "centralized", seed)], rel=1e-5), (n, mode, seed)
    report = (out / "report.md").read_text()
    assert "domains.png" in report and "+ customers" in report
    assert (out / "domains.png").stat().st_size > 1000
    # every run recorded; the customers and products bottoms published as data products
    from splitmesh.mesh.audit import verify

    assert verify(out / "3-domains" / "seed-0" / "audit.jsonl")["records"] == 6  # 3 runs
    for mode in ("label-sharing", "label-preserving"):
        for d in ("customers", "products"):
            assert (out / "3-domains" / "seed-0" / d / mode / "bottom.onnx").is_file()


def test_a_policy_forbidding_a_customer_column_refuses_the_recommender(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: '1'\nparticipants: [{name: sales}, {name: customers, forbidden_columns: "
        "[age]}, {name: products}]\nlabel_placement: [label-sharing]\n"
    )
    out = tmp_path / "out"
    p = splitmesh("recsys", *TINY, "--mode", "label-sharing", "--out", str(out),
                  "--policy", str(policy))  # fmt: skip
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
        "recsys", "--data", str(ml100k_path), "--mode", "centralized,label-sharing",
        "--epochs", "2", "--no-progress", "--out", str(out),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    res = json.loads((out / "results.json").read_text())
    run, refs = res["runs"][1], {r["mode"]: r["metrics"] for r in res["references"]}
    assert run["metrics"]["users"] == 943
    assert refs["random"]["hr@10"] < 0.15  # 1 in 100 candidates: about 0.10
    assert run["metrics"]["hr@10"] > refs["ItemPop"]["hr@10"] + 0.05
    assert run["metrics"]["ndcg@10"] > refs["ItemPop"]["ndcg@10"] + 0.03
    assert "ItemPop" in p.stdout and "NDCG@10" in p.stdout


@pytest.mark.parametrize(
    ("args", "code", "pattern"),
    [
        (["--dataset", "netflix"], 2, "'dataset' parameter must be one of"),
        (["--dataset", "ml-100k", "--data", "nowhere"], 2, "ml-100k data not found at"),
        (["--domains", "4"], 2, "'domains' parameter must be 1 to 3"),
        (["--eval-negatives", "half"], 2, "'ranking.eval_negatives'"),
    ],
)
def test_bad_options_are_named(tmp_path, args, code, pattern):
    p = splitmesh("recsys", *args, "--no-progress", "--out", str(tmp_path / "o"))
    assert p.returncode == code, p.stderr
    assert pattern in p.stderr
    assert "Traceback" not in p.stderr


def test_pretraining_runs_its_phases_first_and_keeps_an_epoch_of_the_whole_model(tmp_path):
    out = tmp_path / "out"
    p = splitmesh("recsys", *TINY, "--pretrain", "2", "--epochs", "2", "--patience", "2",
                  "--mode", "centralized,label-sharing", "--out", str(out))  # fmt: skip
    assert p.returncode == 0, p.stderr
    central, split = json.loads((out / "results.json").read_text())["runs"]
    for run in (central, split):
        assert run["epochs_run"] == 6 and run["pretrain_epochs"] == 4
        assert run["best_epoch"] in (5, 6)  # never a pre-training epoch
        assert len(run["validation_curve"]["values"]) == 6
    assert split["metrics"] == pytest.approx(central["metrics"], rel=1e-5)
    assert split["losses"] == pytest.approx(central["losses"], rel=1e-5)


def test_mesh_up_recsys_gives_the_in_process_figures(tmp_path):
    # pre-trained: its phases change only the coordinator's top, the same over the wire
    args = [*TINY, "--mode", "label-preserving", "--pretrain", "1"]
    local = splitmesh("recsys", *args, "--out", str(tmp_path / "local"))
    grpc = splitmesh("mesh", "up", "recsys", "--workdir", str(tmp_path / "mesh"), *args,
                     "--out", str(tmp_path / "grpc"))  # fmt: skip
    assert local.returncode == 0 and grpc.returncode == 0, grpc.stderr[-2000:]
    a, b = (json.loads((tmp_path / d / "results.json").read_text())["runs"][0]
            for d in ("local", "grpc"))  # fmt: skip
    assert (a["transport"], b["transport"]) == ("in-process", "grpc")
    assert a["metrics"] == b["metrics"] and a["wire_bytes"] == b["wire_bytes"]


def test_train_pipeline_flag_runs_a_ranking_mesh_one_step_stale(tmp_path):
    """`train --pipeline` on the mesh file `recsys` wrote: the same run as `recsys
    --pipeline` (deterministic), not the same as the unpipelined one (stale by a step)."""
    args = [*TINY, "--epochs", "2", "--mode", "label-preserving"]
    plain = splitmesh("recsys", *args, "--out", str(tmp_path / "plain"))
    piped = splitmesh("recsys", *args, "--pipeline", "--out", str(tmp_path / "piped"))
    # the preset's options are overrides, not part of the mesh file it wrote
    sets = ["training.epochs=2", "training.patience=1", "training.batch_size=512"]
    again = splitmesh("train", str(tmp_path / "piped" / "mesh.yaml"), "--pipeline",
                      "--mode", "label-preserving", "--no-progress",
                      *[x for s in sets for x in ("--set", s)],
                      "--out", str(tmp_path / "train"))  # fmt: skip
    for p in (plain, piped, again):
        assert p.returncode == 0, p.stderr[-2000:]
    a, b, c = (json.loads((tmp_path / d / "results.json").read_text())["runs"][0]
               for d in ("plain", "piped", "train"))  # fmt: skip
    assert b["metrics"] == c["metrics"]
    assert b["metrics"] != a["metrics"]
    assert b["metrics"]["hr@10"] > 0.1  # still ranks better than chance (0.1 of 100)
