"""A domain's partial model as a data product: an ODPS v1.0.0 descriptor with two ODCS
contracts (its input columns, its embedding port), and, once trained, the bottom model as
ONNX with a model card.

One folder per product::

    product.odps.yaml     the descriptor (ports name the contracts by id and version)
    input.odcs.yaml       the columns the bottom model reads
    embedding.odcs.yaml   what it hands out: float32 [batch, width], restricted
    bottom.onnx           the trained bottom model (after a run), with metadata
    MODEL_CARD.md         Mitchell et al. headings
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from splitmesh.mesh.contracts import (
    ContractError,
    EmbeddingContract,
    input_contract,
    output_contract,
    read_contract,
    sla_properties,
    team_block,
    write_contract,
)
from splitmesh.yaml_files import dump, load_yaml_model

DESCRIPTOR = "product.odps.yaml"
INPUT = "input.odcs.yaml"
OUTPUT = "embedding.odcs.yaml"
ONNX = "bottom.onnx"
CARD = "MODEL_CARD.md"
ODPS_VERSION = "v1.0.0"


class _Odps(BaseModel):
    # ODPS forbids fields it does not define (additionalProperties: false)
    model_config = ConfigDict(extra="forbid")


class CustomProperty(_Odps):
    property: str
    value: Any
    description: str | None = None


class Description(_Odps):
    purpose: str | None = None
    limitations: str | None = None
    usage: str | None = None


class InputPort(_Odps):
    name: str
    version: str
    contractId: str


class InputContract(_Odps):
    id: str
    version: str


class OutputPort(_Odps):
    name: str
    version: str
    description: str | None = None
    type: str | None = None
    contractId: str | None = None
    inputContracts: list[InputContract] | None = None


class TeamMember(_Odps):
    username: str | None = None
    name: str | None = None
    role: str | None = None
    description: str | None = None


class Descriptor(_Odps):
    """The fields of an ODPS v1.0.0 descriptor that splitmesh reads and writes."""

    apiVersion: Literal["v1.0.0"] = ODPS_VERSION
    kind: Literal["DataProduct"] = "DataProduct"
    id: str
    name: str | None = None
    version: str | None = None
    status: str
    domain: str | None = None
    tenant: str | None = None
    description: Description | None = None
    tags: list[str] | None = None
    customProperties: list[CustomProperty] | None = None
    inputPorts: list[InputPort] | None = None
    outputPorts: list[OutputPort] | None = None
    team: list[TeamMember] | None = None
    productCreatedTs: str | None = None

    def custom(self) -> dict:
        return {p.property: p.value for p in self.customProperties or []}


def descriptor(
    domain: str,
    input_doc: dict,
    output_doc: dict,
    *,
    version: str,
    owner: str | None = None,
    extra: dict | None = None,
) -> Descriptor:
    pid = f"{domain}-bottom-model"
    return Descriptor(
        id=pid,
        name=f"{domain} bottom model",
        version=version,
        status="active",
        domain=domain,
        description=Description(
            purpose=f"Domain {domain!r}'s part of a split-learning model: it turns the "
            "domain's own columns into cut-layer embeddings.",
            limitations="the raw columns never leave the domain; the embeddings are "
            "restricted to the run's coordinator",
            usage="splitmesh train / splitmesh predict",
        ),
        tags=["split-learning", "bottom-model"],
        inputPorts=[
            InputPort(name="columns", version=input_doc["version"], contractId=input_doc["id"])
        ],
        outputPorts=[
            OutputPort(
                name=EMBEDDING_PORT,
                version=output_doc["version"],
                type="embeddings",
                description="cut-layer embeddings, one per aligned row",
                contractId=output_doc["id"],
                inputContracts=[InputContract(id=input_doc["id"], version=input_doc["version"])],
            )
        ],
        team=[TeamMember(name=owner or f"{domain} domain team", role="owner")],
        customProperties=[CustomProperty(property=k, value=v) for k, v in (extra or {}).items()]
        or None,
        productCreatedTs=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )


EMBEDDING_PORT = "embeddings"


def publish_composite(
    folder: str | Path, mesh: str, parts: dict[str, dict], facts: dict[str, Any]
) -> Descriptor:
    """The consuming team's composite product (the paper's "composite data product"): the
    top model, whose input ports are the embedding ports of the domain products it needs
    (``parts``: domain -> what its publish returned) and whose output is the scores."""
    inputs = []
    for d, p in parts.items():
        contract = p["output_contract"]  # [id, version], or "id@version"
        cid, version = contract if isinstance(contract, list) else contract.split("@", 1)
        inputs.append(InputPort(name=f"{d}-{EMBEDDING_PORT}", version=version, contractId=cid))
    version = facts.get("version") or "1.0.0"
    d = Descriptor(
        id=f"{mesh}-composite-model",
        name=f"{mesh} composite model",
        version=str(version),
        status="active",
        domain="coordinator",
        description=Description(
            purpose=f"The top of mesh {mesh!r}'s split model: it turns the domains' "
            "cut-layer embeddings into scores.",
            limitations="it needs every input port's domain product, each run by its owner",
            usage="splitmesh predict",
        ),
        tags=["split-learning", "composite-model"],
        inputPorts=inputs,
        outputPorts=[OutputPort(name="scores", version=str(version), type="predictions")],
        team=[TeamMember(name="consuming team", role="owner")],
        customProperties=[CustomProperty(property=k, value=v) for k, v in facts.items()],
        productCreatedTs=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    write_descriptor(Path(folder) / DESCRIPTOR, d)
    return d


def write_descriptor(path: str | Path, d: Descriptor) -> Path:
    return dump(d, path)


def read_descriptor(path: str | Path) -> Descriptor:

    return load_yaml_model(
        path, Descriptor, f"ODPS {ODPS_VERSION} descriptor", path_keys=(), error=ContractError
    )


class Product:
    """One product folder, read and cross-checked: the descriptor's ports must name the two
    contracts beside it, by id and version."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not (self.folder / DESCRIPTOR).is_file():
            raise ContractError(
                f"{self.folder} holds no {DESCRIPTOR}", hint="write one with splitmesh product init"
            )
        self.descriptor = read_descriptor(self.folder / DESCRIPTOR)
        self.input = read_contract(self.folder / INPUT)
        self.output = read_contract(self.folder / OUTPUT)
        self.embedding = EmbeddingContract.from_doc(self.output)
        d, where = self.descriptor, f"product {self.folder / DESCRIPTOR}"
        ins = {(p.contractId, p.version) for p in d.inputPorts or []}
        outs = {(p.contractId, p.version) for p in d.outputPorts or []}
        for doc, ports, kind in ((self.input, ins, "input"), (self.output, outs, "output")):
            if (doc["id"], str(doc["version"])) not in ports:
                raise ContractError(
                    f"{where}: no {kind} port names contract {doc['id']!r} "
                    f"v{doc['version']} (ports: {sorted(ports)})"
                )
        if self.input.get("domain") != self.output.get("domain"):
            raise ContractError(f"{where}: the two contracts name different domains")

    @property
    def domain(self) -> str:
        return self.descriptor.domain or self.input.get("domain", "")

    def summary(self) -> dict:
        return {
            "id": self.descriptor.id,
            "domain": self.domain,
            "version": self.descriptor.version,
            "status": self.descriptor.status,
            "input_contract": [self.input["id"], str(self.input["version"])],
            "output_contract": [self.output["id"], str(self.output["version"])],
            "cut_width": self.embedding.width,
            "onnx": (self.folder / ONNX).is_file(),
            "folder": str(self.folder),
        }


def init_product(
    folder: str | Path,
    table,
    cut_width: int,
    *,
    version: str = "1.0.0",
    owner: str | None = None,
    contact: str | None = None,
    pii: tuple[str, ...] = (),
    servers: list[dict] = (),
    sla: list[str] = (),
) -> Product:
    """A starting descriptor and contracts from a domain's table (DomainTable): ``servers``
    where it lives, ``owner`` and ``contact`` its team, ``sla`` items (PROPERTY=VALUE[UNIT])."""
    folder = Path(folder)
    pid = f"{table.domain}-bottom-model"
    team = team_block(table.domain, owner, contact)
    promises = sla_properties(list(sla))
    ins = input_contract(
        table, version=version, product=pid, pii=pii, servers=servers, team=team, sla=promises
    )
    outs = output_contract(
        table.domain, cut_width, version=version, product=pid, team=team, sla=promises
    )
    write_contract(folder / INPUT, ins)
    write_contract(folder / OUTPUT, outs)
    write_descriptor(
        folder / DESCRIPTOR, descriptor(table.domain, ins, outs, version=version, owner=owner)
    )
    return Product(folder)


def find_products(root: str | Path) -> list[Product]:
    """``root`` itself when it is a product folder, else every product folder below it."""
    root = Path(root)
    if (root / DESCRIPTOR).is_file():
        return [Product(root)]
    found = sorted(p.parent for p in root.glob(f"*/{DESCRIPTOR}"))
    if not found:
        raise ContractError(f"no product under {root} (no */{DESCRIPTOR})")
    return [Product(p) for p in found]


def _sha6(*docs: dict) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(docs, sort_keys=True, default=str).encode()).hexdigest()[:6]


def publish(
    folder: str | Path,
    *,
    table,
    bottom,
    input_width: int,
    n_categorical: int,
    cut_width: int,
    prep: dict,
    meta: dict,
    declared: Product | None = None,
) -> dict:
    """Write the trained bottom model as a product into ``folder``: the declared contracts (or
    ones derived from the training table), the descriptor at the run's version, ONNX and
    the model card. Returns what the catalog records."""
    from splitmesh.mesh.export import export_onnx, model_card, sha256_file

    folder = Path(folder)
    # without a declared product, the derived contracts are versioned by the data they
    # describe (semver build metadata), so a changed table never reuses a contract version
    data_sha = str((meta.get("data") or {}).get("sha256", ""))[:8]
    pid = f"{table.domain}-bottom-model"
    if declared is not None:
        version = meta.get("product_version") or declared.descriptor.version
        ins, outs = declared.input, declared.output
    else:
        # versioned by the data and by the contracts' own text: a contract written
        # differently (another splitmesh) never reuses a version another text holds
        shape = _sha6(
            input_contract(table, version="0", product=pid),
            output_contract(table.domain, cut_width, version="0", product=pid),
        )
        version = meta.get("product_version") or f"1.0.0+{data_sha or 'unknown'}.{shape}"
        ins = input_contract(table, version=version, product=pid)
        outs = output_contract(table.domain, cut_width, version=version, product=pid)
    write_contract(folder / INPUT, ins)
    write_contract(folder / OUTPUT, outs)
    policy = meta.get("policy") or {}
    facts = {
        "domain": table.domain,
        "run_id": meta.get("run", ""),
        "input_contract": f"{ins['id']}@{ins['version']}",
        "output_contract": f"{outs['id']}@{outs['version']}",
        "cut_layer_shape": f"[batch, {cut_width}]",
        "policy_version": str(policy.get("version", "")),
        "policy_hash": str(policy.get("hash", "")),
        "training_data_sha256": meta.get("data", {}).get("sha256", ""),
        "mesh": str(meta.get("mesh", "")),
        # what it applied to what it released (privacy/), by kind, or none
        "embedding_protection": json.dumps(meta["protection"])
        if meta.get("protection")
        else "none",
    }
    export_onnx(bottom, input_width, n_categorical, folder / ONNX, {**facts, "prep": prep})
    facts["onnx_sha256"] = sha256_file(folder / ONNX)
    owner = declared.descriptor.team[0].name if declared and declared.descriptor.team else None
    d = descriptor(
        table.domain,
        ins,
        outs,
        version=version,
        owner=owner,
        extra={
            "runId": facts["run_id"],
            "onnxSha256": facts["onnx_sha256"],
            "policyHash": facts["policy_hash"],
        },
    )
    write_descriptor(folder / DESCRIPTOR, d)
    from splitmesh.io import atomic_write_text

    card = model_card(
        facts, meta, table=table, input_width=input_width, n_categorical=n_categorical
    )
    atomic_write_text(folder / CARD, card)
    # the contracts themselves go to the catalog (not to results.json)
    return {**facts, **Product(folder).summary(), "input_doc": ins, "output_doc": outs}
