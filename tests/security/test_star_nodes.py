"""A ranking mesh's nodes (fact and dimensions, mutual TLS) against a coordinator that
follows the protocol until it tries to learn, or misroute, who bought what."""

import numpy as np
import pytest

from splitmesh.errors import PartyError
from splitmesh.mesh.spec import load_mesh
from splitmesh.node.config import MeshRef, load_mesh_network
from splitmesh.node.launcher import LocalMesh
from splitmesh.split.sealing import seal_context
from splitmesh.transport.messages import AssignRows, PlanEpoch, Plans
from splitmesh.usecases.train import coordinator
from tests.split.test_star import write_star

DOMAINS = ("sales", "customers", "products")


@pytest.fixture(scope="module")
def star(tmp_path_factory):
    """One mesh-domain node per domain of a star, and a coordinator holding its run."""
    mesh = write_star(tmp_path_factory.mktemp("star"))
    roles = {d: MeshRef(file=mesh.resolve(), domain=d) for d in DOMAINS}
    with LocalMesh(tmp_path_factory.mktemp("nodes"), roles, deadline_s=30) as local:
        net = load_mesh_network(local.mesh_file)
        spec = load_mesh(mesh).model_copy(update={"transport": net})
        transport = spec.transport.connect(list(DOMAINS), "star")
        coord = coordinator(spec, transport, spec.mode, None)
        coord.prepare()  # hello, PSI with each dimension, setup
        yield coord, transport
        coord.close()
        transport.close()


def test_the_fact_node_will_not_seal_plans_for_sides_the_relay_invents(star):
    coord, t = star
    swapped = {d: ["items" if side == "users" else "users", key] for d, (side, key) in
               coord.steps.peers.items()}  # fmt: skip
    with pytest.raises(PartyError, match="seals row plans for its dimensions"):
        t.request("sales", PlanEpoch(0, swapped))
    one = {"customers": coord.steps.peers["customers"]}  # leaving a dimension out: refused too
    with pytest.raises(PartyError, match="seals row plans"):
        t.request("sales", PlanEpoch(0, one))


def test_the_fact_node_plans_no_part_its_epochs_do_not_have(star):
    coord, t = star
    last = len(coord.steps.parts) - 1
    for part in (last + 1, -1, 2**40):
        with pytest.raises(PartyError, match=rf"plans epochs in parts 0\.\.{last}, not part"):
            t.request("sales", PlanEpoch(0, coord.steps.peers, part))


def test_a_plan_sealed_for_one_dimension_opens_for_no_other(star):
    coord, t = star
    plans = t.request("sales", PlanEpoch(0, coord.steps.peers))
    assert isinstance(plans, Plans) and plans.recipients == ["customers", "products"]
    cut = np.cumsum([0, *plans.sizes])
    blob = {d: plans.sealed[cut[k] : cut[k + 1]] for k, d in enumerate(plans.recipients)}
    key = coord.nodes_["sales"]["seal_key"]
    context = seal_context(coord.run_id, "train", 0, 0)
    # what the relay holds is ciphertext: no row index of the plan shows in it
    assert len(blob["customers"]) == 12 + 4 * plans.examples + 16  # nonce, int32 rows, tag
    swapped = AssignRows("train", context, "sales", key, blob["customers"])
    with pytest.raises(PartyError, match="could not open a row plan"):
        t.request("products", swapped)  # sealed for customers
    for epoch, part in ((1, 0), (0, 1)):  # another epoch's context, or another part's
        other = seal_context(coord.run_id, "train", epoch, part)
        replayed = AssignRows("train", other, "sales", key, blob["customers"])
        with pytest.raises(PartyError, match="could not open a row plan"):
            t.request("customers", replayed)
    ok = t.request("customers", AssignRows("train", context, "sales", key, blob["customers"]))
    assert ok.info["rows"] == plans.examples


def test_the_fact_node_refuses_a_history_beyond_its_bound_over_grpc(tmp_path):
    """``model.history`` sizes what the fact domain looks up per example: a coordinator
    asking for more than the bound is refused by the fact node at setup, naming the field."""
    (tmp_path / "star").mkdir()
    mesh = write_star(tmp_path / "star")
    roles = {d: MeshRef(file=mesh.resolve(), domain=d) for d in DOMAINS}
    with LocalMesh(tmp_path / "nodes", roles, deadline_s=30) as local:
        spec = load_mesh(mesh)
        hostile = spec.model.model_copy(update={"history": 10**6})  # past its own check
        spec = spec.model_copy(
            update={"transport": load_mesh_network(local.mesh_file), "model": hostile}
        )
        transport = spec.transport.connect(list(DOMAINS), "star")
        coord = coordinator(spec, transport, spec.mode, None)
        try:
            with pytest.raises(PartyError, match=r"party 'sales'.*SetupRanking.*history"):
                coord.prepare()
        finally:
            coord.close()
            transport.close()
