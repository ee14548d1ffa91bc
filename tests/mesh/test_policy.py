"""The governance policy: each refusal names its rule, at the coordinator and at the node."""

import json

import numpy as np
import pytest
import yaml

from splitmesh.data.datasets.vertical import write_vertical_mesh
from splitmesh.mesh.audit import verify
from splitmesh.mesh.policy import Policy, PolicyError, PolicyGuard, check_run, load_policy
from splitmesh.mesh.spec import load_mesh
from splitmesh.split.columns import ColumnsParty
from splitmesh.split.node import Node
from splitmesh.transport.messages import Forward, Hello
from splitmesh.usecases.train import train_mesh
from tests.test_cli import splitmesh

POLICY = {
    "version": "1",
    "name": "credit-governance",
    "participants": [{"name": "bank"}, {"name": "insurer", "forbidden_columns": ["postcode"]}],
    "forbidden_columns": ["customer_name"],
    "label_placement": ["label-preserving"],
    "require_tls": True,
    "min_batch_size": 16,
    "max_epochs": 50,
}


@pytest.fixture
def mesh(tmp_path):
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 300
    df = pd.DataFrame({"x0": rng.normal(size=n), "x1": rng.normal(size=n),
                       "postcode": rng.integers(1000, 9999, n)})  # fmt: skip
    df["y"] = (df.x0 + df.x1 > 0).astype(int)
    path = write_vertical_mesh(
        df, {"bank": ["x0"], "insurer": ["x1", "postcode"]}, label="y", label_domain="bank",
        folder=tmp_path / "mesh", extra={"training": {"epochs": 2, "batch_size": 32}},
    )  # fmt: skip
    _mesh_edit(path, lambda m: m["domains"][1].update(exclude=["postcode"]))  # the insurer's
    return path  # table holds a postcode; the mesh leaves it out


def _write(tmp_path, **changes):
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({**POLICY, **changes}))
    return path


def _mesh_edit(path, change):
    m = yaml.safe_load(path.read_text())
    change(m)
    path.write_text(yaml.safe_dump(m))
    return load_mesh(path)


def test_an_allowed_run_trains_and_leaves_its_audit_trail(tmp_path, mesh):
    policy = load_policy(_write(tmp_path))
    res = train_mesh(load_mesh(mesh), tmp_path / "out", policy=policy, progress=False)
    assert res["policy"]["hash"] == policy.hash
    assert verify(tmp_path / "out" / "audit.jsonl")["records"] >= 8
    events = [json.loads(x) for x in (tmp_path / "out" / "audit.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events][-2:] == ["run.start", "run.complete"]
    assert all(e["policy_hash"] == policy.hash for e in events)


@pytest.mark.parametrize(
    ("change", "rule", "says"),
    [
        (lambda m: m["domains"][1].update(name="telco"), "participants", "'telco'"),
        (lambda m: m["domains"][1].pop("exclude"), "columns", "'insurer' uses forbidden"),
        (lambda m: m.update(mode="label-sharing"), "label_placement", "label-sharing"),
        (
            lambda m: m.update(transport={"insecure": True,
                                          "nodes": [{"name": "bank", "address": "x:1"}]}),
            "require_tls",
            "plaintext where TLS is required",
        ),
        (lambda m: m["training"].update(batch_size=8), "min_batch_size", "batch size 8"),
    ],
)  # fmt: skip
def test_refusals_name_the_rule_and_are_audited(tmp_path, mesh, change, rule, says):
    spec = _mesh_edit(mesh, change)
    policy = load_policy(_write(tmp_path))
    with pytest.raises(PolicyError, match=f"policy rule '{rule}' refuses: .*{says}"):
        train_mesh(spec, tmp_path / "out", policy=policy, progress=False)
    events = [json.loads(x) for x in (tmp_path / "out" / "audit.jsonl").read_text().splitlines()]
    refused = [e for e in events if e["result"] == "refuse"]
    assert refused and refused[0]["input"]["rule"] == rule
    assert not any(e["event"] == "run.start" for e in events)


def test_policy_check_cli_says_rule_by_rule(tmp_path, mesh):
    p = splitmesh("policy", "check", str(_write(tmp_path)), str(mesh))
    assert p.returncode == 0 and "participants" in p.stdout and "allow" in p.stdout
    p = splitmesh("policy", "check", str(_write(tmp_path, max_epochs=1)), str(mesh))
    assert p.returncode != 0 and "policy rule 'max_epochs' refuses" in p.stderr


RUN = "0" * 32


def test_a_node_enforces_its_own_copy():
    policy = Policy(**POLICY)

    def make(hello):
        return ColumnsParty("insurer", np.zeros((40, 1)), ["x1"])

    guard = PolicyGuard(policy, "insurer", ["id", "x1"], wire="tls")
    node = Node(
        "insurer", make, serves={"bottom"}, modes=["label-sharing", "label-preserving"],
        guard=guard,
    )  # fmt: skip
    with pytest.raises(PolicyError, match="label_placement"):
        node.handle(Hello(RUN, "label-sharing", batch_size=32, min_batch=16))
    # the run's plan is judged at Hello, before anything trains: a batch size below the
    # minimum, or a last batch the coordinator would not merge, is refused naming the rule
    with pytest.raises(PolicyError, match=r"node 'insurer': policy rule 'min_batch_size'"):
        node.handle(Hello(RUN, "label-preserving", batch_size=8, min_batch=16))
    with pytest.raises(PolicyError, match="merges a last batch smaller than 1 rows"):
        node.handle(Hello(RUN, "label-preserving", batch_size=32, min_batch=1))
    node.handle(Hello(RUN, "label-preserving", batch_size=32, min_batch=16))
    node.run.phase = "train"  # (skip the setup: the guard checks every training Forward too)
    with pytest.raises(PolicyError, match="a training batch of 4 rows, minimum 16"):
        node.handle(Forward("train", np.arange(4), 0, True))
    hello = Hello(RUN, "label-preserving", batch_size=32, min_batch=16)
    plain = PolicyGuard(policy, "insurer", ["x1"], wire="plaintext")
    with pytest.raises(PolicyError, match="require_tls"):
        plain(hello)
    forbidden = PolicyGuard(policy, "insurer", ["x1", "postcode"], wire="tls")
    with pytest.raises(PolicyError, match="columns"):
        forbidden(hello)


def test_check_run_lists_every_rule():
    plan = {"mode": "label-preserving", "domains": {"bank": ["x"]}, "transport": "local",
            "batch_size": 32, "epochs": 2}  # fmt: skip
    rules = [d.rule for d in check_run(Policy(**POLICY), plan)]
    assert rules == [
        "participants", "columns", "label_placement", "require_tls", "min_batch_size",
        "max_epochs",
    ]  # fmt: skip


def test_a_node_serves_only_with_the_certificate_the_policy_lists():
    pinned = [{"name": "bank"}, {"name": "insurer", "fingerprint": "AB" * 32}]
    policy = Policy(**{**POLICY, "participants": pinned})
    hello = Hello(RUN, "label-preserving", batch_size=32, min_batch=16)
    PolicyGuard(policy, "insurer", ["x1"], wire="tls", fingerprint="ab" * 32)(hello)
    for other in ("cd" * 32, None):
        guard = PolicyGuard(policy, "insurer", ["x1"], wire="tls", fingerprint=other)
        with pytest.raises(PolicyError, match="'participant_certificate' refuses: node 'insurer'"):
            guard(hello)


def test_the_centralized_reference_needs_its_own_placement(tmp_path, mesh):
    policy = load_policy(_write(tmp_path))  # label-preserving only
    with pytest.raises(PolicyError, match="'label_placement' refuses: mode centralized"):
        train_mesh(load_mesh(mesh), tmp_path / "out", policy=policy, compare=True, progress=False)


def test_a_policy_requires_protections_and_each_node_checks_the_ones_it_applies():
    rules = {"labels_max_epsilon": 2.0, "embeddings_max_epsilon": 20.0}
    participants = [{"name": "bank"}, {"name": "insurer", "embeddings_max_epsilon": 10.0}]
    policy = Policy(**{**POLICY, "participants": participants, "privacy": rules})
    plan = {"mode": "label-preserving", "domains": {"bank": ["x"], "insurer": ["y"]},
            "transport": "local", "batch_size": 32, "epochs": 10}  # fmt: skip
    bare = {d.rule: d.allowed for d in check_run(policy, plan)}
    assert bare["privacy.labels"] is False and bare["privacy.embeddings"] is False
    strong = {"labels": {"epsilon": 1.0}, "embeddings": {"noise_multiplier": 2.0}}
    decided = check_run(policy, {**plan, "privacy": strong})
    got = [(d.rule, d.allowed) for d in decided if d.rule.startswith("privacy")]
    # sigma 2 over 10 epochs spends epsilon 8.08: within 20 for bank, within 10 for insurer
    assert got == [("privacy.labels", True)] + [("privacy.embeddings", True)] * 2
    weak = {"labels": {"epsilon": 1.0}, "embeddings": {"noise_multiplier": 1.0}}  # eps 19
    refused = [d for d in check_run(policy, {**plan, "privacy": weak}) if not d.allowed]
    assert [d.reason[:17] for d in refused] == ["domain 'insurer' "]
    # a node judges only what it applies, from its own mesh file, at every Hello
    hello = Hello(RUN, "label-preserving", batch_size=32, min_batch=16, epochs=10)
    node = PolicyGuard(policy, "insurer", ["x1"], wire="tls", privacy=weak)
    with pytest.raises(PolicyError, match=r"node 'insurer': policy rule 'privacy.embeddings'"):
        node(hello)
    PolicyGuard(policy, "insurer", ["x1"], wire="tls", privacy=strong)(hello)
    label_node = PolicyGuard(policy, "bank", ["x"], wire="tls", privacy={}, labels=True)
    with pytest.raises(PolicyError, match=r"privacy\.labels"):
        label_node(hello)
    masked = Policy(**{**POLICY, "participants": participants,
                       "privacy": {"secure_aggregation": True}})  # fmt: skip
    rule = "privacy.secure_aggregation"
    refused = [d for d in check_run(masked, plan) if not d.allowed and d.rule == rule]
    assert len(refused) == 2 and "sends its embeddings in the clear" in refused[0].reason
    on = {"secure_aggregation": {"precision_bits": 20}}
    assert all(d.allowed for d in check_run(masked, {**plan, "privacy": on}) if d.rule == rule)
