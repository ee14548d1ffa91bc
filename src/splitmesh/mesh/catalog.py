"""The catalog: products and their versions, contracts, runs, metrics and lineage.

SQLite by default (a file path), PostgreSQL when given a ``postgresql://`` URL; SQLAlchemy
Core either way. Every write is one transaction, so an interrupted run leaves the catalog
as it was before the write, and a run that never finished stays ``running``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from splitmesh.errors import CatalogError

metadata = sa.MetaData()

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),  # a UUID (the OpenLineage run id)
    sa.Column("name", sa.String(200), nullable=False),  # splitmesh's run id (config hash)
    sa.Column("job", sa.String(200), nullable=False),  # e.g. mesh:credit, fraud, recsys
    sa.Column("mode", sa.String(40), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # running | complete | failed
    sa.Column("started_at", sa.String(40), nullable=False),
    sa.Column("ended_at", sa.String(40)),
    sa.Column("policy_name", sa.String(200)),
    sa.Column("policy_version", sa.String(100)),
    sa.Column("policy_hash", sa.String(64)),
    sa.Column("reason", sa.Text),
    sa.Column("config", sa.Text),
)
metrics = sa.Table(
    "metrics",
    metadata,
    sa.Column("run_id", sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("split", sa.String(20), primary_key=True),
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
)
products = sa.Table(
    "products",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("domain", sa.String(200), nullable=False),
    sa.Column("first_seen", sa.String(40), nullable=False),
)
product_versions = sa.Table(
    "product_versions",
    metadata,
    sa.Column("product_id", sa.ForeignKey("products.id"), primary_key=True),
    sa.Column("version", sa.String(100), primary_key=True),
    sa.Column("run_id", sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("status", sa.String(40)),
    sa.Column("input_contract", sa.String(300)),
    sa.Column("output_contract", sa.String(300)),
    sa.Column("onnx_sha256", sa.String(64)),
    sa.Column("location", sa.Text),
    sa.Column("recorded_at", sa.String(40), nullable=False),
)
contracts = sa.Table(
    "contracts",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("version", sa.String(100), primary_key=True),
    sa.Column("product_id", sa.String(200)),
    sa.Column("kind", sa.String(20)),  # input | output
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
)
lineage = sa.Table(
    "lineage",
    metadata,
    sa.Column("run_id", sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("direction", sa.String(10), primary_key=True),  # input | output
    sa.Column("namespace", sa.String(300), primary_key=True),
    sa.Column("name", sa.String(500), primary_key=True),
)


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def engine_url(where: str | Path) -> str:
    """A file path means SQLite; postgresql:// URLs use the psycopg (v3) driver."""
    text = str(where)
    if text.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + text.split("://", 1)[1]
    if "://" in text:
        return text
    path = Path(text).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _body(doc: dict) -> tuple[str, str]:
    body = json.dumps(doc, sort_keys=True, default=str)
    return body, hashlib.sha256(body.encode()).hexdigest()


def default_catalog() -> str:
    """The catalog every run records into unless told otherwise: ``$SPLITMESH_CATALOG`` (a
    SQLite file or a postgresql:// URL), else ``catalog.db`` in the user's splitmesh folder,
    one for all of this user's runs."""
    from splitmesh.io import splitmesh_home

    return os.environ.get("SPLITMESH_CATALOG") or str(splitmesh_home() / "catalog.db")


class Catalog:
    """``create``: make the catalog when it is not there (a run records into it); a
    command that only reads one refuses a SQLite file that does not exist."""

    def __init__(self, where: str | Path, *, create: bool = True) -> None:
        if not create and "://" not in str(where) and not Path(where).is_file():
            raise CatalogError(
                f"no catalog at {where}",
                hint="runs record into $SPLITMESH_CATALOG, else ~/.splitmesh/catalog.db; "
                "--catalog names another (a SQLite file a run wrote, or a postgresql:// URL)",
            )
        self.url = engine_url(where)
        try:
            self.engine = sa.create_engine(self.url)
            metadata.create_all(self.engine)
        except sa.exc.SQLAlchemyError as exc:
            raise CatalogError(f"catalog {where}: {exc.__class__.__name__}: {exc}") from exc

    def close(self) -> None:
        self.engine.dispose()

    # -- writing -----------------------------------------------------------------------------
    def start_run(
        self,
        name: str,
        job: str,
        mode: str,
        *,
        policy=None,
        config: dict | None = None,
        run_id: str | None = None,
    ) -> str:
        rid = run_id or str(uuid.uuid4())
        with self.engine.begin() as c:
            c.execute(
                runs.insert().values(
                    id=rid,
                    name=name,
                    job=job,
                    mode=mode,
                    status="running",
                    started_at=now(),
                    policy_name=policy and policy.name,
                    policy_version=policy and policy.version,
                    policy_hash=policy and policy.hash,
                    config=json.dumps(config or {}, sort_keys=True, default=str),
                )
            )
        return rid

    def finish_run(
        self,
        rid: str,
        *,
        status: str,
        reason: str | None = None,
        scores: dict[str, dict] | None = None,
        published: list[dict] = (),
        inputs: list[tuple[str, str]] = (),
        outputs: list[tuple[str, str]] = (),
    ) -> None:
        """The run's end, its metrics, products and lineage, in one transaction."""
        with self.engine.begin() as c:
            c.execute(
                runs.update()
                .where(runs.c.id == rid)
                .values(status=status, ended_at=now(), reason=reason)
            )
            for split, values in (scores or {}).items():
                rows = [
                    {"run_id": rid, "split": split, "name": k, "value": float(v)}
                    for k, v in values.items()
                    if isinstance(v, int | float) and not isinstance(v, bool)
                ]
                if rows:
                    c.execute(metrics.insert(), rows)
            for p in published:
                self._add_product(c, rid, p)
            edges = {("input", *i) for i in inputs} | {("output", *o) for o in outputs}
            if edges:
                c.execute(
                    lineage.insert(),
                    [
                        {"run_id": rid, "direction": d, "namespace": ns, "name": n}
                        for d, ns, n in sorted(edges)
                    ],
                )

    def _add_product(self, c, rid: str, p: dict) -> None:
        if c.execute(sa.select(products.c.id).where(products.c.id == p["id"])).first() is None:
            c.execute(products.insert().values(id=p["id"], domain=p["domain"], first_seen=now()))
        for kind in ("input", "output"):
            doc = p.get(f"{kind}_doc")
            if doc is None:
                continue
            body, sha = _body(doc)
            key = (contracts.c.id == doc["id"]) & (contracts.c.version == str(doc["version"]))
            known = c.execute(sa.select(contracts.c.sha256).where(key)).first()
            if known is None:
                c.execute(
                    contracts.insert().values(
                        id=doc["id"],
                        version=str(doc["version"]),
                        product_id=p["id"],
                        kind=kind,
                        sha256=sha,
                        body=body,
                    )
                )
            elif known[0] != sha:
                raise CatalogError(
                    f"contract {doc['id']!r} v{doc['version']} is already in the catalog with "
                    "different content",
                    hint="a changed contract needs a new version",
                )
        c.execute(
            product_versions.insert().values(
                product_id=p["id"],
                version=str(p.get("version")),
                run_id=rid,
                status=p.get("status"),
                input_contract="@".join(p["input_contract"]),
                output_contract="@".join(p["output_contract"]),
                onnx_sha256=p.get("onnx_sha256"),
                location=p.get("folder"),
                recorded_at=now(),
            )
        )

    # -- reading -----------------------------------------------------------------------------
    def _rows(self, query) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(query)]

    def list_runs(self) -> list[dict]:
        return self._rows(sa.select(runs).order_by(runs.c.started_at, runs.c.id))

    def list_products(self) -> list[dict]:
        q = (
            sa.select(
                products.c.id,
                products.c.domain,
                sa.func.count(product_versions.c.run_id).label("runs"),
                sa.func.max(product_versions.c.version).label("latest"),
            )
            .join(product_versions, isouter=True)
            .group_by(products.c.id, products.c.domain)
            .order_by(products.c.id)
        )
        return self._rows(q)

    def list_contracts(self) -> list[dict]:
        return self._rows(
            sa.select(
                contracts.c.id, contracts.c.version, contracts.c.product_id, contracts.c.kind
            ).order_by(contracts.c.id, contracts.c.version)
        )

    def show(self, ident: str) -> dict:
        """A run (by UUID, its prefix or its name), a product or a contract, with what
        links to it."""
        found = self._rows(
            sa.select(runs).where(
                (runs.c.id == ident) | (runs.c.name == ident) | runs.c.id.startswith(ident)
            )
        )
        if len(found) == 1:
            run = found[0]
            rid = run["id"]
            run["config"] = json.loads(run["config"] or "{}")
            run["metrics"] = self._rows(sa.select(metrics).where(metrics.c.run_id == rid))
            run["products"] = self._rows(
                sa.select(product_versions).where(product_versions.c.run_id == rid)
            )
            run["lineage"] = self._rows(sa.select(lineage).where(lineage.c.run_id == rid))
            return {"run": run}
        if len(found) > 1:
            ids = ", ".join(r["id"] for r in found[:5])
            raise CatalogError(f"{ident!r} names {len(found)} runs ({ids}); give more of the id")
        product = self._rows(sa.select(products).where(products.c.id == ident))
        if product:
            versions = self._rows(
                sa.select(product_versions)
                .where(product_versions.c.product_id == ident)
                .order_by(product_versions.c.recorded_at)
            )
            return {"product": {**product[0], "versions": versions}}
        contract = self._rows(sa.select(contracts).where(contracts.c.id == ident))
        if contract:
            for c in contract:
                c["body"] = json.loads(c["body"])
            return {"contracts": contract}
        raise CatalogError(
            f"nothing in catalog {self.url} is called {ident!r}",
            hint="splitmesh catalog list shows what is there",
        )
