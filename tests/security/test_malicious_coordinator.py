"""Every attack of issue 13's table, sent over real gRPC by a coordinator holding a valid
certificate: each is refused with a clear error, the node keeps serving its legitimate run,
and the attempt is in the node's access log."""

from __future__ import annotations

import hashlib
import json
import time
import uuid

import grpc
import numpy as np
import pytest

from splitmesh.data.datasets.creditcard import DOMAINS
from splitmesh.errors import PartyError, PolicyError
from splitmesh.mesh.audit import verify
from splitmesh.mesh.spec import load_mesh
from splitmesh.node.config import MeshRef, load_mesh_network
from splitmesh.node.launcher import LocalMesh
from splitmesh.split.trainer import fit
from splitmesh.transport.identity import Identity
from splitmesh.transport.messages import (
    Ack,
    Bye,
    Checkpoint,
    ErrorReply,
    FinishResample,
    Forward,
    Hello,
    PsiApply,
    PsiFinish,
    PsiRequest,
    PsiServe,
    PsiTake,
    SaveModel,
)
from splitmesh.usecases.train import (
    _transport,
    coordinator,
    run_mode,
    train_mesh,
)

from .conftest import LIMIT_MB, Attacker, peak_rss_mb, refused

MODE = "label-preserving"


def _network(credit_mesh, nodes):
    spec = load_mesh(credit_mesh).model_copy(update={"mode": MODE})
    return spec.model_copy(update={"transport": load_mesh_network(nodes.mesh_file)})


def _refused(reply, *words):
    assert isinstance(reply, ErrorReply), reply
    for w in words:
        assert w in reply.detail, reply.detail
    return reply


def _open(attacker, node, **kw):
    reply = attacker.send(node, Hello(uuid.uuid4().hex, MODE, **kw))
    assert not isinstance(reply, ErrorReply), reply
    return reply


def test_a_second_run_cannot_kill_hijack_or_prune_a_running_one(
    nodes, attacker, credit_mesh, tmp_path
):
    spec = _network(credit_mesh, nodes)
    transport = _transport(spec, MODE, tmp_path / "grpc", True)
    coord = coordinator(spec, transport, MODE, tmp_path / "ckpt")
    try:
        coord.prepare(test=0.2, validation=0.1, resample=spec.resample)
        coord.build()
        # not even the run's own session can have a domain publish its untrained bottom
        with pytest.raises(PartyError, match=r"phase 'setup' .*SaveModel belongs to: train"):
            transport.request("cardholder", SaveModel({"mesh": "early"}))
        assert refused(nodes, "cardholder", "SaveModel")
        for d in DOMAINS:  # a second run is refused, naming the one in progress
            _refused(attacker.send(d, Hello(uuid.uuid4().hex, MODE)), f"serves run {coord.run_id}")
            assert refused(nodes, d, "Hello")
        # nor can another session step into it, end it, or reopen it under a guessed id
        _refused(attacker.send("cardholder", Forward("train", np.arange(64), 0, True)),
                 "another session")  # fmt: skip
        _refused(attacker.send("cardholder", Bye()), "another session")
        _refused(attacker.send("cardholder", Hello(uuid.uuid4().hex, MODE, resume=True)),
                 f"serves run {coord.run_id}")  # fmt: skip
        # the legitimate run trains on undisturbed, to the in-process metrics
        fit(coord, spec.training, progress=False)
        metrics = coord.evaluate(["test"])["test"]
        run_id = coord.run_id
    finally:
        coord.close()
        transport.close()
    local = run_mode(
        spec.model_copy(update={"transport": "local"}), MODE, tmp_path / "local",
        progress=False, checkpoints=False,
    )  # fmt: skip
    assert metrics["roc_auc"] == local["metrics"]["roc_auc"]
    assert metrics["average_precision"] == local["metrics"]["average_precision"]

    # its checkpoints are its own: a later run (the attacker's) cannot prune them
    state = nodes.workdir / "state"
    mine = sorted(state.glob(f"*/**/runs/{run_id}/epoch-*.pt"))
    assert len(mine) >= len(DOMAINS)
    transport = _transport(spec, MODE, tmp_path / "other", True)
    other = coordinator(spec, transport, MODE, tmp_path / "ckpt2")
    try:
        other.prepare(test=0.2, validation=0.1, resample=spec.resample)
        other.build()
        transport.request_many({d: Checkpoint(0, keep=[]) for d in DOMAINS})
    finally:
        other.close()
        transport.close()
    assert sorted(state.glob(f"*/**/runs/{run_id}/epoch-*.pt")) == mine
    assert list(state.glob(f"*/**/runs/{other.run_id or '*'}/epoch-0000.pt"))
    # a run that finishes tells its nodes so; they delete what they wrote for it, only that
    done = run_mode(spec, MODE, tmp_path / "finished", progress=False)
    assert done["run_id"] and not list(state.glob(f"*/**/runs/{done['run_id']}"))
    assert sorted(state.glob(f"*/**/runs/{run_id}/epoch-*.pt")) == mine


def test_the_relay_cannot_forge_psi_to_learn_a_domains_keys(nodes, attacker):
    """The attack: PsiServe over 14,000 guessed keys gave the whole key set. Whatever the
    coordinator signs it with, a domain serves PSI only to its peer domain's signature."""
    from splitmesh.data.alignment import Blinder, key_points

    guessed = [f"c{i:08d}" for i in np.arange(14_000) * 7 + 1000]  # the key format, guessed
    points = Blinder()(key_points(guessed))
    files = load_mesh_network(nodes.mesh_file).tls
    me = Identity.from_files(files.ca, files.cert, files.key)  # the coordinator's own key
    payments_cert = (nodes.workdir / "certs" / "payments.crt").read_text()  # certs are public
    run = _open(attacker, "cardholder").info["run"]
    digest = hashlib.sha256(points.tobytes()).hexdigest()
    claim = {"kind": "psi-set", "run": run, "to": "cardholder", "size": len(guessed),
             "sha256": digest}  # fmt: skip
    try:
        as_label = me.sign({**claim, "from": "payments"})
        forged = {
            "signed by the coordinator": (as_label, "its certificate names 'coordinator'"),
            "under the label domain's certificate": (
                type(as_label)(as_label.claim, payments_cert, as_label.signature),
                "the signature does not check",
            ),
            "as the coordinator itself": (
                me.sign({**claim, "from": "coordinator"}),
                "serves PSI only for the label domain 'payments', not 'coordinator'",
            ),
        }
        for signed, says in forged.values():
            sig = np.frombuffer(signed.signature, np.uint8)
            reply = attacker.send(
                "cardholder", PsiServe(points, len(guessed), signed.claim, signed.cert, sig)
            )
            _refused(reply, says)
        header = {"size": 3, "claim": '{"from": "payments"}', "cert": "x"}
        tensors = {"points": points[:3], "signature": np.zeros(8, np.uint8)}
        _refused(attacker.raw("cardholder", "PsiServe", header, tensors), "no readable certificate")
        # points that are not 32-byte X25519 coordinates, refused before they are decoded
        narrow = {**tensors, "points": np.ascontiguousarray(points[:3, :31])}
        _refused(attacker.raw("cardholder", "PsiServe", header, narrow), "point width is 32")
        assert len(refused(nodes, "cardholder", "PsiServe")) >= 5
    finally:
        attacker.send("cardholder", Bye())


def test_a_signed_psi_message_cannot_be_replayed_redirected_or_faked(nodes, credit_mesh, tmp_path):
    """Even inside its own run, the coordinator cannot serve a domain's request twice,
    send it to another domain, or hand the label domain a reply or positions of its own
    making."""
    spec = _network(credit_mesh, nodes)
    transport = _transport(spec, MODE, tmp_path, False)
    coord = coordinator(spec, transport, MODE, None)
    files = load_mesh_network(nodes.mesh_file).tls
    me = Identity.from_files(files.ca, files.cert, files.key)
    ask = transport.request

    def mine(claim):  # signed by the coordinator, as if by a domain
        signed = me.sign({"run": coord.run_id, **claim})
        return signed.claim, signed.cert, np.frombuffer(signed.signature, np.uint8)

    try:
        coord.hello()
        blob = ask("payments", PsiRequest("cardholder"))  # the label domain's candidates
        serve = PsiServe(blob.points, blob.size, blob.claim, blob.cert, blob.signature)
        reply = ask("cardholder", serve)
        with pytest.raises(PartyError, match="has already served 'payments' in this run"):
            ask("cardholder", serve)
        with pytest.raises(PartyError, match="whose 'to' is 'cardholder', not 'security'"):
            ask("security", serve)
        theirs = ask("cardholder", PsiRequest("payments"))  # its shuffled set
        with pytest.raises(PartyError, match="offers its keys once"):
            ask("cardholder", PsiRequest("payments"))
        other = ask("security", PsiRequest("payments"))
        with pytest.raises(PartyError, match="its certificate names 'security'"):
            ask("payments", PsiTake(other.points, other.size, other.claim, other.cert,
                                    other.signature))  # fmt: skip
        ask("payments", PsiTake(theirs.points, theirs.size, theirs.claim, theirs.cert,
                                theirs.signature))  # fmt: skip
        # a reply of the coordinator's own making (points it raised itself)
        fake = PsiFinish(reply.points, *mine({"kind": "psi-reply", "from": "cardholder",
                                              "to": "payments"}))  # fmt: skip
        with pytest.raises(PartyError, match="its certificate names 'coordinator'"):
            ask("payments", fake)
        # the genuine reply still goes through: the run carries on
        done = ask("payments", PsiFinish(reply.points, reply.claim, reply.cert, reply.signature))
        assert done.info["size"] > 0
        # positions of the coordinator's making, to pick rows in cardholder's set, refused
        picks = np.arange(5, dtype=np.int64)
        fake_rows = PsiApply(picks, *mine({"kind": "psi-rows", "from": "payments",
                                           "to": "cardholder"}))  # fmt: skip
        with pytest.raises(PartyError, match="its certificate names 'coordinator'"):
            ask("cardholder", fake_rows)
    finally:
        coord.close()
        transport.close()
    assert refused(nodes, "cardholder", "PsiServe") and refused(nodes, "payments", "PsiFinish")
    assert refused(nodes, "payments", "PsiTake") and refused(nodes, "cardholder", "PsiApply")


def test_no_path_name_or_weights_come_from_the_wire(nodes, attacker, tmp_path):
    """Checkpoint.run/tag, LoadCheckpoint and WriteScores.path named any file on the
    node's host; GetState handed out weights. None of them exists any more."""
    target = tmp_path / "evil"
    _open(attacker, "payments")
    try:
        hostile = [
            ("Checkpoint", {"run": f"../../../..{target}", "tag": "x", "keep": []}, "malformed"),
            ("Checkpoint", {"epoch": "../x", "keep": []}, "field 'epoch' must be int"),
            ("Checkpoint", {"epoch": 1, "keep": ["../../etc"]}, "Checkpoint belongs to"),
            ("LoadCheckpoint", {"run": "/etc", "tag": "passwd"}, "malformed LoadCheckpoint"),
            ("WriteScores", {"partition": "p", "path": str(target / "s.csv")}, "malformed"),
            ("GetState", {}, "unknown message type 'GetState'"),
            ("SaveModel", {"meta": {"product_version": "evil"}}, "in phase 'align'"),
        ]
        for kind, header, says in hostile:
            _refused(attacker.raw("payments", kind, header), says)
        _refused(attacker.send("payments", Checkpoint(3, keep=[])), "belongs to: setup, train")
    finally:
        attacker.send("payments", Bye())
    assert not target.exists()
    assert refused(nodes, "payments", "GetState") and refused(nodes, "payments", "WriteScores")


def test_oversized_messages_are_refused_before_the_node_holds_them(nodes, attacker):
    before = peak_rss_mb(nodes, "security")
    huge = np.zeros(3 * LIMIT_MB * 2**20 // 8, np.int64)  # three times the node's limit
    with pytest.raises(grpc.RpcError) as err:
        attacker.send("security", Forward("train", huge, 0, True))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert peak_rss_mb(nodes, "security") - before < LIMIT_MB  # never held the message
    for _ in range(40):  # gRPC refused it before the node saw it; the node logs it anyway
        if refused(nodes, "security", "(not decoded)"):
            break
        time.sleep(0.25)
    assert refused(nodes, "security", "(not decoded)")[-1]["input"]["session"] == attacker.session
    _open(attacker, "security", batch_size=64, eval_batch=256)
    try:  # under the size limit, but past the run's declared batches: refused unallocated
        _refused(attacker.send("security", Forward("train", np.arange(100_000), 0, True)),
                 "at most 256 along 'batch'")  # fmt: skip
        # a shape whose element count overflows 64 bits, over no bytes at all
        huge_shape = {"name": "positions", "dtype": "<i8", "shape": [2**40, 2**40], "data": b""}
        _refused(_huge_shape(attacker, huge_shape), "do not fit shape")
    finally:
        attacker.send("security", Bye())
    assert refused(nodes, "security", "Forward")


def _huge_shape(attacker: Attacker, tensor: dict):
    from splitmesh.transport.grpc import splitmesh_pb2 as pb

    env = pb.Envelope(type="Forward", header=b'{"partition":"train","step":0,"train":true}')
    env.tensors.add(**tensor)
    return attacker.envelope("security", env)


def _hello(**fields) -> bytes:
    return json.dumps({"run": "a" * 32, "mode": MODE, **fields}).encode()


_FWD = b'{"partition": "train", "step": 0, "train": true}'


@pytest.mark.parametrize(
    ("kind", "header", "tensors", "says"),
    [
        ("Hello", b"not json", {}, "malformed Hello header"),
        ("Hello", b"[1, 2]", {}, "header is not a JSON object"),
        ("Nope", b"{}", {}, "unknown message type 'Nope'"),
        ("Hello", b'{"run": "x"}', {}, "malformed Hello"),
        ("Hello", _hello(run=5), {}, "field 'run' must be str"),
        ("Hello", _hello(epochs=True), {}, "field 'epochs' must be int"),
        ("Hello", _hello(run="../../x"), {}, "32 lowercase hex"),
        ("Hello", _hello(batch_size=-1), {}, "must be a positive integer"),
        ("Hello", _hello(purpose="own"), {}, "unknown purpose"),
        ("Hello", _hello(eval_batch=1e12), {}, "field 'eval_batch' must be int"),
        ("Hello", _hello(extra=1), {}, "malformed Hello: unknown field 'extra'"),
        ("Forward", _FWD[:-1] + b', "positions": [1, 2]}', {}, "wrong part"),
        ("Forward", _FWD, {"positions": ("|O", [2], b"\0" * 16)}, "unknown dtype"),
        ("Forward", _FWD, {"positions": ("<i8", [3], b"\0" * 5)}, "do not fit shape"),
        ("Forward", _FWD, {"positions": ("<i8", [2], b"\0" * 16), "x": ("<i8", [1], b"\0" * 8)},
         "unknown field 'x'"),
        ("Bye", b'{"x": 1}', {}, "malformed Bye"),
        ("Backward", b'{"step": 0}', {}, "malformed Backward"),
        ("PsiServe", b'{"size": 1}', {}, "malformed PsiServe"),
        ("Checkpoint", b'{"epoch": 1.5}', {}, "field 'epoch' must be int"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("via", ["Call", "Session"])
def test_malformed_envelopes_get_a_clear_error_reply(
    nodes, attacker, kind, header, tensors, says, via
):
    from splitmesh.transport.grpc import splitmesh_pb2 as pb

    before = len(refused(nodes, "cardholder", kind))
    env = pb.Envelope(type=kind, header=header)
    for name, (dtype, shape, data) in tensors.items():
        env.tensors.add(name=name, dtype=dtype, shape=shape, data=data)
    _refused(attacker.envelope("cardholder", env, via=via), says)
    assert len(refused(nodes, "cardholder", kind)) == before + 1


def test_idle_session_streams_cannot_starve_a_node(nodes, attacker):
    """The coordinator's certificate opening streams and sending nothing: past half the
    node's workers the node refuses another stream at once; it still answers health
    probes and, once those streams end, serves a new one."""
    import queue

    from splitmesh.transport.grpc import Endpoint, TlsFiles, wait_serving
    from splitmesh.transport.grpc.server import CLIENT_ID
    from splitmesh.transport.grpc.tls import read_fingerprints

    stub, held, ends = attacker.stubs["security"], [], []

    def idle():
        ends.append(queue.Queue())
        return iter(ends[-1].get, None)

    try:
        for _ in range(4):
            held.append(stub.Session(idle(), metadata=((CLIENT_ID, attacker.session),)))
        time.sleep(0.5)
        extra = stub.Session(idle(), timeout=10, metadata=((CLIENT_ID, attacker.session),))
        with pytest.raises(grpc.RpcError) as err:
            next(extra)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value.details()
        assert "refuses another session stream" in err.value.details()
        # and the node's access log says so, naming the caller's certificate
        (record,) = refused(nodes, "security", "(session stream)")
        assert "refuses another session stream" in record["reason"]
        coordinator = read_fingerprints(nodes.workdir / "certs" / "fingerprints.json")
        assert record["input"]["caller"] == coordinator["coordinator"]
        tls = TlsFiles.for_party(nodes.workdir / "certs", "coordinator")
        wait_serving([Endpoint("security", nodes.addresses["security"])], tls=tls, timeout=10)
    finally:
        for end in ends:
            end.put(None)
        for call in held:
            call.cancel()
    time.sleep(0.5)  # the node sees the streams end
    from splitmesh.transport.messages import envelope

    reply = attacker.envelope("security", envelope(Bye()), via="Session")
    assert isinstance(reply, Ack | ErrorReply)  # answered on a new stream


def test_a_mesh_certificate_the_node_does_not_accept_is_refused_and_logged(nodes):
    """Another domain's certificate (signed by the mesh CA, so TLS lets it in) calling a
    node that accepts only the coordinator: refused, and recorded in the node's log."""
    from splitmesh.transport.grpc import TlsFiles
    from splitmesh.transport.grpc import splitmesh_pb2_grpc as pb_grpc
    from splitmesh.transport.grpc.server import CLIENT_ID
    from splitmesh.transport.messages import envelope as to_envelope

    ca, cert, key = TlsFiles.for_party(nodes.workdir / "certs", "payments").read()
    creds = grpc.ssl_channel_credentials(ca, key, cert)
    target = [("grpc.ssl_target_name_override", "security")]
    with grpc.secure_channel(nodes.addresses["security"], creds, options=target) as ch:
        stub = pb_grpc.PartyStub(ch)
        with pytest.raises(grpc.RpcError) as err:
            stub.Call(to_envelope(Bye()), timeout=10, metadata=((CLIENT_ID, "intruder"),))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    (record,) = refused(nodes, "security", "(connection)")
    assert "does not accept the caller's certificate" in record["reason"]
    assert record["input"]["session"] == "intruder"


def test_the_access_log_holds_every_call_and_verifies(nodes):
    nodes.down()  # a stopped node makes its log durable and signs its head
    try:
        for d in DOMAINS:
            done = verify(nodes.workdir / "state" / d / "audit.jsonl")
            assert done["records"] > 0 and done["unsigned"] == 0
            assert refused(nodes, d, "Hello")  # the attempts of the tests above
    finally:
        for d in DOMAINS:
            nodes.start(d)
        nodes.wait_ready()


def test_the_label_node_refuses_resampling_distances_it_did_not_ask_for(
    nodes, credit_mesh, tmp_path
):
    """The run's own coordinator relays a distance matrix of another shape than the rows
    the label node asked about (a (1, k) one would broadcast): refused and logged."""
    spec = _network(credit_mesh, nodes)
    label = spec.label.domain
    transport = _transport(spec, MODE, tmp_path, False)
    coord = coordinator(spec, transport, MODE, None)
    honest = transport.request

    def lying(party, msg):
        if isinstance(msg, FinishResample):
            k = len(msg.distances)
            msg = FinishResample(np.zeros((1, max(k, 1))))  # one row, for the k asked
        return honest(party, msg)

    transport.request = lying
    try:
        with pytest.raises(PartyError, match=r"FinishResample: distances must be \d+ x \d+"):
            coord.prepare(test=0.2, validation=0.1, resample=spec.resample)
        assert refused(nodes, label, "FinishResample")
    finally:
        coord.close()
        transport.close()


def test_a_node_policy_limit_is_negotiated_at_hello(tmp_path, credit_mesh):
    """A node whose own policy asks for batches of 128 refuses a run of 64 at Hello, as a
    PolicyError naming the node and the rule, before anything trains."""
    import yaml

    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({
        "version": "1", "participants": [{"name": d} for d in DOMAINS],
        "label_placement": [MODE], "min_batch_size": 128,
    }))  # fmt: skip
    roles = {d: MeshRef(file=credit_mesh.resolve(), domain=d) for d in DOMAINS}
    with LocalMesh(tmp_path / "wd", roles, policy=policy) as local:
        spec = _network(credit_mesh, local)
        with pytest.raises(PolicyError, match=r"node '\w+': policy rule 'min_batch_size'") as e:
            train_mesh(spec, tmp_path / "out", progress=False)
        assert e.value.exit_code == 10


def test_a_killed_coordinator_resumes_its_own_run_to_the_same_metrics(nodes, credit_mesh, tmp_path):
    """The nodes still hold the run of a coordinator killed mid-run: only a resume of that
    very run is served, and it ends where an uninterrupted run would."""
    import signal
    import subprocess
    import sys

    import yaml

    raw = yaml.safe_load(credit_mesh.read_text())
    raw["training"] = {"epochs": 12, "batch_size": 32, "patience": None, "checkpoint_interval": 0}
    raw["mode"] = MODE
    net = load_mesh_network(nodes.mesh_file).model_dump(mode="json", exclude_none=True)
    local = credit_mesh.parent / "killed-local.yaml"
    local.write_text(yaml.safe_dump(raw))
    remote = credit_mesh.parent / "killed-grpc.yaml"
    remote.write_text(yaml.safe_dump({**raw, "transport": net}))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "splitmesh.cli", "train", str(remote), "--out", str(out),
           "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(600):
            manifests = list((out / "checkpoints").glob("*/checkpoint.json"))
            if manifests and json.loads(manifests[0].read_text()).get("epoch", 0) >= 2:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("no committed checkpoint")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    got = json.loads((out / "results.json").read_text())["runs"][0]
    whole = run_mode(load_mesh(local), MODE, tmp_path / "whole", progress=False)
    assert got["metrics"]["roc_auc"] == whole["metrics"]["roc_auc"]
    assert got["metrics"]["average_precision"] == whole["metrics"]["average_precision"]


def test_a_flood_of_refused_calls_is_counted_not_written_one_by_one(tmp_path, credit_mesh):
    """Over gRPC to a node process: 60 calls it refuses (Forward with no run open), from
    the coordinator's own certificate. The first 5 (its burst here) get records of their
    own; the rest are counted into one record naming the caller, the session and the
    type, written when the node stops; the log verifies with nothing unsigned."""
    from splitmesh.node.config import NodeLimits

    roles = {"security": MeshRef(file=credit_mesh.resolve(), domain="security")}
    limits = NodeLimits(refusals_burst=5, refusals_per_s=0.001)
    with LocalMesh(tmp_path / "wd", roles, limits=limits) as local:
        attacker = Attacker(local)
        try:
            for _ in range(60):
                reply = attacker.send("security", Forward("train", np.arange(4), 0, True))
                assert isinstance(reply, ErrorReply)
        finally:
            attacker.close()
    # the node stopped: its count is written and the log's head signed
    log = local.workdir / "state" / "security" / "audit.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    own = [r for r in records if r["event"] == "node.call" and r["input"]["type"] == "Forward"]
    assert len(own) == 5 and all(r["result"] == "refused" for r in own)
    (summary,) = [r for r in records if r["event"] == "node.calls_suppressed"]
    assert summary["input"]["count"] == 55
    assert summary["input"]["by_type"] == {"Forward: ProtocolError": 55}
    assert summary["input"]["sessions"] == [attacker.session]
    assert summary["input"]["caller"] == own[0]["input"]["caller"] is not None
    assert verify(log)["unsigned"] == 0
