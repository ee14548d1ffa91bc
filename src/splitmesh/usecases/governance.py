"""One governed run, whatever the use case: the policy judged before anything runs, then
every run's events in the audit log, OpenLineage and the catalog.

Where things go, by default: ``audit.jsonl`` and ``lineage.jsonl`` under the run's
``--out``, the run into the user's shared catalog (``$SPLITMESH_CATALOG``, else
``~/.splitmesh/catalog.db``); each can be pointed elsewhere (the catalog at a PostgreSQL URL).
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from splitmesh.mesh.audit import AuditLog
from splitmesh.mesh.catalog import Catalog, default_catalog
from splitmesh.mesh.lineage import Lineage, dataset
from splitmesh.mesh.policy import Policy, check_run, enforce


@dataclasses.dataclass
class RunRecord:
    """What a run fills in for its COMPLETE events."""

    id: str  # a UUID: the OpenLineage run id and the catalog's key
    name: str
    metrics: dict[str, dict] = dataclasses.field(default_factory=dict)  # split -> name -> value
    products: list[dict] = dataclasses.field(default_factory=list)  # products.publish() output
    privacy: dict | None = None  # the protections it ran with and the privacy spent


@dataclasses.dataclass
class Governance:
    out: Path
    policy: Policy | None = None
    audit_path: Path | None = None
    lineage_path: Path | None = None
    catalog_url: str | None = None

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.audit = AuditLog(self.audit_path or self.out / "audit.jsonl")
        self.lineage = Lineage(self.lineage_path or self.out / "lineage.jsonl")
        self.catalog = Catalog(self.catalog_url or default_catalog())

    @property
    def policy_hash(self) -> str | None:
        return self.policy.hash if self.policy else None

    def locations(self) -> dict:
        where = {
            "audit_log": str(self.audit.path),
            "lineage": str(self.lineage.path),
            "catalog": self.catalog.url,
        }
        if self.lineage.transport is not None:  # openlineage.yml, OPENLINEAGE_URL, ...
            where["lineage_transport"] = self.lineage.transport
        return where

    def product_meta(self) -> dict:
        """What every published product records of the governance it was trained under."""
        return {"policy": self.policy.facts()} if self.policy else {}

    def check_modes(self, plan: dict, modes, subject: str) -> None:
        """``check`` for each mode of a run (each mode places the labels its own way)."""
        for m in modes:
            self.check({**plan, "mode": m}, subject)

    def check(self, plan: dict, subject: str) -> None:
        """Judge ``plan`` rule by rule (audited, one decision id), refuse on the first
        refused rule. Without a policy there is nothing to judge."""
        if self.policy is None:
            return
        decisions = check_run(self.policy, plan)
        decision_id = uuid.uuid4().hex
        for d in decisions:
            self.audit.append(
                "policy.rule",
                result="allow" if d.allowed else "refuse",
                reason=d.reason,
                policy_hash=self.policy_hash,
                inputs={"rule": d.rule, "subject": subject, "mode": plan["mode"]},
                decision_id=decision_id,
            )
        enforce(decisions)

    @contextlib.contextmanager
    def run(
        self, job: str, name: str, mode: str, *, inputs: list[dict], config: dict | None = None
    ) -> Iterator[RunRecord]:
        """START events, the body, then COMPLETE (with metrics, products, lineage) or FAIL."""
        rec = RunRecord(id=str(uuid.uuid4()), name=name)
        facts = {"job": job, "mode": mode, "run": name, "run_uuid": rec.id}
        self.audit.append("run.start", result="ok", policy_hash=self.policy_hash, inputs=facts)
        self.catalog.start_run(name, job, mode, policy=self.policy, config=config, run_id=rec.id)
        self.lineage.emit("START", rec.id, job, inputs=inputs)
        try:
            yield rec
        except BaseException as exc:
            reason = str(exc) or type(exc).__name__
            self.audit.append(
                "run.fail",
                result="error",
                reason=reason,
                policy_hash=self.policy_hash,
                inputs=facts,
            )
            self.catalog.finish_run(rec.id, status="failed", reason=reason)
            self.lineage.emit("FAIL", rec.id, job, inputs=inputs, error=reason)
            raise
        outputs = [dataset(f"{self.lineage.namespace}.products", p["id"]) for p in rec.products]
        test = {k: v for k, v in rec.metrics.get("test", {}).items() if isinstance(v, float)}
        self.audit.append(
            "run.complete",
            result="ok",
            policy_hash=self.policy_hash,
            inputs={
                **facts,
                "metrics": test,
                "products": [p["id"] for p in rec.products],
                **({"privacy": rec.privacy} if rec.privacy else {}),
            },
        )
        self.catalog.finish_run(
            rec.id,
            status="complete",
            scores=rec.metrics,
            published=rec.products,
            inputs=[(d["namespace"], d["name"]) for d in inputs],
            outputs=[(d["namespace"], d["name"]) for d in outputs],
        )
        self.lineage.emit("COMPLETE", rec.id, job, inputs=inputs, outputs=outputs)

    def close(self) -> None:
        self.catalog.close()


def governed(
    gov: Governance | None,
    job: str,
    name: str,
    mode: str,
    *,
    inputs: list[dict],
    config: dict,
    train: Callable[[], dict],
) -> dict:
    """``train()`` (a run's results: metrics, validation_metrics and what it published
    under ``_products``) as one governed run, or plainly without ``gov``. The run gains its
    ``run_uuid`` and ``products`` (without the contract bodies, which go to the catalog)."""
    if gov is None:
        run = train()
        run.pop("_products", None)
        return run
    with gov.run(job, name, mode, inputs=inputs, config=config) as rec:
        run = train()
        rec.metrics = {"test": run["metrics"], "val": run["validation_metrics"]}
        rec.products = run.pop("_products", [])
        rec.privacy = run.get("privacy")
    run["run_uuid"] = rec.id
    run["products"] = [{k: v for k, v in p.items() if not k.endswith("_doc")} for p in rec.products]
    return run
