"""The coordinator trusts no reply either: every tensor a party sends it is held to the
shape the run expects, and refused with the party and the call named, before the top
model reads it (a wrong one would fail deep in torch, a NaN would spread to every weight)."""

import dataclasses

import numpy as np
import pytest

from splitmesh.config import Resample, Training
from splitmesh.errors import PartyError, ProtocolError, SplitmeshError
from splitmesh.mesh.spec import load_mesh
from splitmesh.split.columns import ColumnsParty
from splitmesh.split.label_owner import LabelOwner
from splitmesh.split.star import DimensionDomain, FactDomain
from splitmesh.split.trainer import fit
from splitmesh.transport.messages import Ack, Head, HeadReply, Metrics, SlotEmbeddings
from splitmesh.usecases.train import train_mesh

from .helpers import make_pair, toy_tables
from .test_star import write_star

BAD_EMBEDDINGS = {
    "a row short": lambda v: v[:-1],
    "a column short": lambda v: v[:, :-1],
    "not a matrix": lambda v: v.reshape(-1),
    "integers": lambda v: v.astype(np.int64),
    "a NaN": lambda v: np.where(np.arange(v.size).reshape(v.shape) == 3, np.nan, v),
}


def _sending(party, change):
    """Make ``party`` (in this process) answer every Forward with its reply's values changed."""
    honest = party.on_forward

    def lying(msg):
        reply = honest(msg)
        return dataclasses.replace(reply, values=change(reply.values))

    party.on_forward = lying


@pytest.mark.parametrize("mode", ["label-sharing", "label-preserving"])
@pytest.mark.parametrize("bad", list(BAD_EMBEDDINGS))
def test_an_embedding_of_the_wrong_shape_or_not_finite_is_refused_naming_the_domain(mode, bad):
    tables, y = toy_tables()
    coord, _, transport = make_pair(mode, tables, y)
    coord.train_step(np.arange(16), 0)  # an honest step first
    _sending(transport._handlers["d1"], BAD_EMBEDDINGS[bad])
    with pytest.raises(PartyError, match=r"party 'd1' failed on Forward: ProtocolError") as err:
        coord.train_step(np.arange(16), 1)
    assert err.value.party == "d1"
    with pytest.raises(PartyError, match="'d1'"):  # evaluation reads embeddings too
        coord.evaluate(["val"])


@pytest.mark.parametrize(
    "grad, loss, message",
    [
        (lambda g: g[:-1], 0.5, r"shape \(15, 6\).*\(16, 6\)"),
        (lambda g: g.T.copy(), 0.5, r"shape \(6, 16\)"),
        (lambda g: None, 0.5, "NoneType"),
        (lambda g: g * np.inf, 0.5, "not finite"),
        (lambda g: g, float("nan"), "loss of nan"),
    ],
)
def test_the_label_owners_gradient_is_held_to_the_activations_it_answers(grad, loss, message):
    tables, y = toy_tables()
    coord, _, transport = make_pair("label-preserving", tables, y)
    honest = transport.request

    def lying(party, msg):  # what a hostile frame decodes to (JSON reads NaN)
        reply = honest(party, msg)
        if isinstance(msg, Head) and msg.train:
            return HeadReply(loss=loss, grad=grad(reply.grad))
        return reply

    transport.request = lying
    with pytest.raises(PartyError, match=message) as err:
        coord.train_step(np.arange(16), 0)
    assert (err.value.party, err.value.call) == ("labels", "Head")


def test_a_domain_announcing_another_cut_width_is_refused_at_setup(monkeypatch):
    honest = ColumnsParty.on_setup_domain

    def lying(self, msg):
        reply = honest(self, msg)
        if self.name != "d2":
            return reply
        return Ack(info={**reply.info, "cut_width": reply.info["cut_width"] + 1})

    monkeypatch.setattr(ColumnsParty, "on_setup_domain", lying)
    tables, y = toy_tables()
    with pytest.raises(ProtocolError, match=r"domain 'd2' announced a cut layer of width 5.*4"):
        make_pair("label-sharing", tables, y)


def _star(folder):
    folder.mkdir(parents=True, exist_ok=True)
    return load_mesh(write_star(folder), ["training.epochs=1"])


def test_slot_embeddings_are_held_to_the_side_and_shape_a_dimension_announced(
    tmp_path, monkeypatch
):
    honest = DimensionDomain.on_embed_slots

    def both_sides(self, msg):  # customers describe users: an item side is not theirs
        reply = honest(self, msg)
        side = reply.users if reply.users is not None else reply.items
        return SlotEmbeddings(users=side, items=side)

    monkeypatch.setattr(DimensionDomain, "on_embed_slots", both_sides)
    with pytest.raises(SplitmeshError, match=r"'customers'.*a side it does not describe"):
        train_mesh(_star(tmp_path), tmp_path / "out", progress=False)

    def short(self, msg):
        reply = honest(self, msg)
        cut = {k: (None if v is None else v[:-1]) for k, v in vars(reply).items()}
        return SlotEmbeddings(**cut)

    monkeypatch.setattr(DimensionDomain, "on_embed_slots", short)
    with pytest.raises(SplitmeshError, match=r"failed on EmbedSlots: ProtocolError.*shape"):
        train_mesh(_star(tmp_path / "b"), tmp_path / "out2", progress=False)


def test_the_fact_domains_labels_are_one_zero_or_one_per_planned_example(tmp_path, monkeypatch):
    honest = FactDomain.on_get_labels

    def lying(self, msg):
        reply = honest(self, msg)
        return dataclasses.replace(reply, values=reply.values[:-1])

    monkeypatch.setattr(FactDomain, "on_get_labels", lying)
    with pytest.raises(SplitmeshError, match=r"'sales' sent .*labels of shape"):
        train_mesh(_star(tmp_path), tmp_path / "out", progress=False)


def test_partial_distances_are_held_to_the_rows_smote_asked_about(monkeypatch):
    honest = ColumnsParty.on_partial_distances

    def lying(self, msg):  # a (1, k) matrix would broadcast over the others' (k, k)
        reply = honest(self, msg)
        return dataclasses.replace(reply, values=reply.values[:1]) if self.name == "d0" else reply

    monkeypatch.setattr(ColumnsParty, "on_partial_distances", lying)
    tables, y = toy_tables()
    y = (tables["d0"][:, 0] > np.quantile(tables["d0"][:, 0], 0.85)).astype(int)  # a minority
    with pytest.raises(PartyError, match=r"party 'd0' failed on PartialDistances.*shape \(1, "):
        make_pair("label-sharing", tables, y, resample=Resample(smote_ratio=0.5))


def test_shared_labels_are_one_per_row_of_each_partition(monkeypatch):
    honest = LabelOwner.on_get_labels

    def lying(self, msg):
        reply = honest(self, msg)
        return dataclasses.replace(reply, values=reply.values[:-1])

    monkeypatch.setattr(LabelOwner, "on_get_labels", lying)
    tables, y = toy_tables()
    with pytest.raises(ProtocolError, match=r"'labels' sent int64 labels of shape \(\d+,\) for"):
        make_pair("label-sharing", tables, y)


@pytest.mark.parametrize("values", [{"val": 0.9}, {"test": {}}, {"val": [0.5]}], ids=str)
def test_metrics_are_named_figures_for_each_partition_asked_about(values, monkeypatch):
    monkeypatch.setattr(LabelOwner, "on_evaluate", lambda self, msg: Metrics(values=values))
    tables, y = toy_tables()
    coord, _, _ = make_pair("label-preserving", tables, y)
    with pytest.raises(PartyError, match=r"'labels' failed on Evaluate: ProtocolError: sent"):
        coord.evaluate(["val"])


def test_a_selection_metric_that_is_not_a_number_stops_training_with_a_hint(monkeypatch):
    honest = LabelOwner.on_evaluate

    def lying(self, msg):
        reply = honest(self, msg)
        return Metrics(
            values={p: {**m, "average_precision": "high"} for p, m in reply.values.items()}
        )

    monkeypatch.setattr(LabelOwner, "on_evaluate", lying)
    tables, y = toy_tables()
    coord, _, _ = make_pair("label-preserving", tables, y)
    cfg = Training(epochs=2, batch_size=64, patience=2, select_metric="average_precision")
    with pytest.raises(ProtocolError, match="'average_precision', not a number") as err:
        fit(coord, cfg, progress=False)
    assert "select_metric" in err.value.hint
