"""Secure aggregation: masks cancel exactly, each is bound to one Forward, and the relaying
coordinator can neither slip in a key of its own, drop a domain, nor read one domain's
embedding; a masked run trains as the plain sum does."""

import json

import numpy as np
import pytest

from splitmesh.errors import ConfigError, ProtocolError, SplitmeshError
from splitmesh.mesh.spec import load_mesh
from splitmesh.privacy.secure_sum import Masker, add_up, decode, encode
from splitmesh.transport.identity import Identity
from tests.privacy.test_audit import _mesh

RUN = "ab" * 16
NAMES = ["bank", "shop", "telco"]


def _maskers(bits=16, identities=None):
    ids = identities or Identity.ephemeral([*NAMES, "coordinator"])
    ms = {n: Masker(n, NAMES, ids[n], bits) for n in NAMES}
    return ms, {n: m.announce(RUN) for n, m in ms.items()}, ids


def _agreed(bits=16):
    ms, keys, _ = _maskers(bits)
    for m in ms.values():
        m.agree(json.dumps(keys))
    return ms


def test_masks_cancel_exactly_and_one_part_alone_reads_as_noise():
    ms = _agreed()
    rng = np.random.default_rng(0)
    x = {n: (rng.normal(size=(64, 8)) * 3).astype(np.float32) for n in NAMES}
    pos = rng.permutation(500)[:64]
    masked = {n: m.mask(x[n], "train", True, pos) for n, m in ms.items()}
    total = add_up(list(masked.values()))
    assert np.array_equal(total, sum(encode(x[n], 16, n) for n in NAMES))  # exactly
    assert np.abs(decode(total, 16) - sum(x.values())).max() <= 2 * 2.0**-16
    for n in NAMES:  # a part alone: uniform over the ring, nothing like the embedding
        assert masked[n].dtype == np.int64
        assert np.abs(decode(masked[n], 16) - x[n]).mean() > 1e9


def test_a_mask_is_bound_to_its_rows_and_never_reused():
    ms = _agreed()
    x = {n: np.ones((4, 2), np.float32) for n in NAMES}
    a, b = np.arange(4), np.arange(4, 8)
    # rows that differ between domains: the masks do not cancel
    parts = [ms["bank"].mask(x["bank"], "train", True, a)]
    parts += [ms[n].mask(x[n], "train", True, b) for n in NAMES[1:]]
    assert np.abs(decode(add_up(parts), 16)).min() > 1e3
    # the same rows again: a fresh mask, so two releases do not difference out
    first = ms["bank"].mask(x["bank"], "train", True, a)
    again = ms["bank"].mask(x["bank"], "train", True, a)
    assert not np.array_equal(first, again)
    assert np.abs(decode(first - again, 16)).min() > 1e3


def test_the_relay_cannot_substitute_drop_or_replay_a_key():
    ms, keys, ids = _maskers()
    bank = ms["bank"]
    # the coordinator's own key, signed by its own certificate from the same CA
    mine = Masker("coordinator", ["coordinator", "shop"], ids["coordinator"], 16).announce(RUN)
    with pytest.raises(ProtocolError, match="its certificate names 'coordinator'"):
        bank.agree(json.dumps({**keys, "shop": mine}))
    # a key from another mesh's CA
    other = Identity.ephemeral(NAMES)
    forged = Masker("shop", NAMES, other["shop"], 16).announce(RUN)
    with pytest.raises(ProtocolError, match="not from this mesh's CA"):
        bank.agree(json.dumps({**keys, "shop": forged}))
    # the public key swapped under an honest signature
    claim = json.loads(keys["shop"]["claim"])
    swapped = {**keys["shop"], "claim": json.dumps({**claim, "public": "00" * 32})}
    with pytest.raises(ProtocolError, match="signature does not check"):
        bank.agree(json.dumps({**keys, "shop": swapped}))
    # a domain left out: the sum of two would not hide the third's peers
    with pytest.raises(ProtocolError, match="its mesh file sums"):
        bank.agree(json.dumps({n: keys[n] for n in ("bank", "shop")}))
    # a key of another run
    old, _, _ = _maskers(identities=ids)
    stale = old["shop"].announce("cd" * 16)
    with pytest.raises(ProtocolError, match="'run'"):
        bank.agree(json.dumps({**keys, "shop": stale}))
    with pytest.raises(ProtocolError, match="no mask keys yet"):
        bank.mask(np.zeros((1, 2), np.float32), "train", True, np.arange(1))
    bank.agree(json.dumps(keys))
    with pytest.raises(ProtocolError, match="already"):
        bank.agree(json.dumps(keys))
    with pytest.raises(SplitmeshError, match="at least two domains"):
        Masker("bank", ["bank"], ids["bank"], 16)
    with pytest.raises(SplitmeshError, match="not finite"):
        encode(np.array([np.nan]), 16, "domain 'bank'")


def _spec(tmp_path, aggregation="sum", secure=True):
    extra = {"model": {"aggregation": aggregation}}
    if secure:
        extra["privacy"] = {"secure_aggregation": True}
    return load_mesh(_mesh(tmp_path, extra=extra))


@pytest.mark.parametrize("mode", ["label-sharing", "label-preserving"])
def test_a_masked_run_trains_as_the_plain_sum_and_the_coordinator_sees_only_masks(tmp_path, mode):
    from splitmesh.privacy.audit import Wiretap
    from splitmesh.split.trainer import fit
    from splitmesh.usecases.train import coordinator, local_domains, run_mode

    secure = _spec(tmp_path / "s").model_copy(update={"mode": mode})
    plain = _spec(tmp_path / "p", secure=False).model_copy(update={"mode": mode})
    a = run_mode(secure, mode, tmp_path / "a", progress=False)
    b = run_mode(plain, mode, tmp_path / "b", progress=False)
    for k in ("roc_auc", "average_precision", "log_loss"):
        assert a["metrics"][k] == pytest.approx(b["metrics"][k], abs=1e-4), k
    assert set(a["privacy"]["applied"]) == set(NAMES)
    assert all("secure_aggregation" in v for v in a["privacy"]["applied"].values())
    # what crossed: every domain's embedding as int64, useless alone, exact in the sum
    tap = Wiretap(local_domains(secure, mode, model_dir=None, state_dir=None))
    coord = coordinator(secure, tap, mode, None)
    try:
        coord.prepare(test=0.2, validation=0.1)
        coord.build()
        fit(coord, secure.training.model_copy(update={"epochs": 1}), progress=False)
    finally:
        coord.close()
    seen = {d: np.stack(list(tap.embeddings[d].values())) for d in NAMES}
    assert all(v.dtype == np.int64 for v in seen.values())
    assert all(np.abs(decode(v, 20)).mean() > 1e6 for v in seen.values())


def test_secure_aggregation_is_all_or_none_and_needs_a_sum(tmp_path):
    from splitmesh.transport.local import LocalTransport
    from splitmesh.usecases.train import coordinator, local_domains

    with pytest.raises(ConfigError, match=r"model\.aggregation sum or mean"):
        _spec(tmp_path / "c", aggregation="concat")
    # the coordinator's file asks for it, the domains' files do not
    plain, secure = _spec(tmp_path / "p", secure=False), _spec(tmp_path / "s")
    mode = "label-preserving"
    domains = local_domains(plain, mode, model_dir=None, state_dir=None)
    coord = coordinator(secure, LocalTransport(domains), mode, None)
    with pytest.raises(ConfigError, match=r"domain\(s\) \['bank', 'shop', 'telco'\] do not mask"):
        coord.prepare(test=0.2, validation=0.1)
    coord.close()


def test_a_masked_model_scores_new_rows_as_the_plain_sum_does(tmp_path):
    import pandas as pd

    from splitmesh.usecases.train import predict_mesh, train_mesh

    scores = {}
    for name, secure in (("masked", True), ("plain", False)):
        spec = _spec(tmp_path / name, aggregation="mean", secure=secure)
        train_mesh(spec, tmp_path / name / "out", progress=False)
        predict_mesh(spec, tmp_path / name / "out", tmp_path / name / "scores.csv")
        scores[name] = pd.read_csv(tmp_path / name / "scores.csv").sort_values("id")
    assert len(scores["masked"]) == 1500
    diff = scores["masked"]["score"].to_numpy() - scores["plain"]["score"].to_numpy()
    assert abs(diff).max() < 1e-3
