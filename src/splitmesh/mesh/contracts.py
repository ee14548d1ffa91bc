"""Data contracts (ODCS v3.1.0) for a domain's two ports: the columns its bottom model reads
(input) and the embeddings it hands out (output).

Contracts are validated against the official JSON schema shipped by the
``open-data-contract-standard`` package, then checked against what actually flows: a node
checks its table against its input contract before a run, the coordinator checks every
embedding it receives against the domain's output contract.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from splitmesh.errors import ContractError

API_VERSION = "v3.1.0"
EMBEDDING = "embedding"  # the output port's one property


__all__ = ["ContractError"]  # re-exported: it lives in the error table (errors.py)


@functools.cache
def odcs_schema() -> dict:
    text = resources.files("open_data_contract_standard").joinpath("schema.json").read_text()
    return json.loads(text)


def schema_errors(doc: Any) -> list[str]:
    """Every place where ``doc`` breaks the official ODCS JSON schema (empty: valid)."""
    import jsonschema

    validator = jsonschema.Draft201909Validator(odcs_schema())
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    out = []
    for e in errors:
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        out.append(f"{where}: {e.message[:300]}")
    return out


def validate(doc: Any, where: str) -> dict:
    """``doc`` if it is an ODCS v3.1.0 contract by the official schema; else ContractError."""
    problems = schema_errors(doc)
    if not problems and doc.get("apiVersion") != API_VERSION:
        problems = [f"apiVersion: {doc.get('apiVersion')!r}, splitmesh writes {API_VERSION}"]
    if problems:
        listed = "; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if problems[5:] else "")
        raise ContractError(f"{where} is not a valid ODCS {API_VERSION} contract: {listed}")
    return doc


def read_contract(path: str | Path) -> dict:
    from splitmesh.yaml_files import read_yaml_mapping

    return validate(read_yaml_mapping(path, "contract", ContractError), f"contract {path}")


def _custom(props: list[dict] | None) -> dict:
    return {p["property"]: p["value"] for p in props or []}


# -- writing contracts ---------------------------------------------------------------------

_FORMATS = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".json": "json",
            ".jsonl": "json", ".ndjson": "json"}  # fmt: skip


def source_servers(domain: str, source) -> list[dict]:
    """ODCS ``servers``: where a domain's table physically lives, one per file its source
    (a data/sources.Source) reads: the path, or every file its SQL names."""
    from splitmesh.data.sources import file_names

    names = [str(source.path)] if source.path is not None else file_names(source.sql)
    out = []
    for i, name in enumerate(names):
        fmt = next((f for ext, f in _FORMATS.items() if name.lower().endswith(ext)), "csv")
        server = {"server": domain if len(names) == 1 else f"{domain}-{i + 1}"}
        if name.startswith("s3://"):
            out.append({**server, "type": "s3", "location": name, "format": fmt})
            continue
        path = Path(name) if Path(name).is_absolute() else Path(source.base) / name
        out.append({**server, "type": "local", "path": os.path.normpath(path), "format": fmt})
    return out


def team_block(domain: str, owner: str | None = None, contact: str | None = None) -> dict:
    """ODCS ``team`` (the v3.1 object): the owning team, and its contact as the owner."""
    team = {"name": owner or f"{domain} domain team"}
    if contact:
        team["members"] = [{"username": contact, "role": "owner"}]
    return team


_SLA = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_]*)\s*=\s*(\d+(?:\.\d+)?)?\s*(.*?)\s*$")


def sla_properties(items: list[str] = (), *, published: str | None = None) -> list[dict]:
    """ODCS ``slaProperties`` from ``PROPERTY=VALUE[UNIT]`` items (``frequency=1d``,
    ``latency=4h``, ``retention=365d``, ``timeOfAvailability=09:00``), after
    ``generalAvailability``: the day the contract was published."""
    import datetime as dt

    day = published or dt.date.today().isoformat()
    out = [{"property": "generalAvailability", "value": day}]
    for item in items:
        m = _SLA.match(item)
        if m is None or (m.group(2) is None and not m.group(3)):
            raise ContractError(
                f"SLA {item!r} is not PROPERTY=VALUE[UNIT]",
                hint="e.g. --sla frequency=1d --sla latency=4h --sla retention=365d",
            )
        name, number, rest = m.groups()
        if number is None:
            prop = {"property": name, "value": rest}
        else:
            value = float(number) if "." in number else int(number)
            prop = {"property": name, "value": value, **({"unit": rest} if rest else {})}
        out = [p for p in out if p["property"] != name] + [prop]
    return out


def input_contract(
    table,
    *,
    version: str = "1.0.0",
    product: str | None = None,
    pii: tuple[str, ...] = (),
    servers: list[dict] = (),
    team: dict | None = None,
    sla: list[dict] | None = None,
) -> dict:
    """The input contract a domain's current table satisfies: its key, feature columns, their
    logical types and nullability, and its row count as the floor. No observed value (a
    minimum, a maximum) goes in: a published contract carries no training value, and new
    rows outside the training range are the model's to score, not the contract's to refuse.
    Ranges that must hold are declared by the domain (``logicalTypeOptions``). ``servers``,
    ``team`` and ``sla``: where the table lives, who owns it, what it promises."""
    unknown = [c for c in pii if c not in table.columns]
    if unknown:
        raise ContractError(
            f"domain {table.domain!r}: PII column {unknown[0]!r} is not one of its columns "
            f"({', '.join(table.columns[:12])})"
        )
    props = [
        {
            "name": table.key,
            "logicalType": table.key_type,
            "primaryKey": True,
            "primaryKeyPosition": 1,
            "required": True,
            "unique": True,
            # a key names an entity: never a feature, never handed out
            "classification": "restricted",
        }
    ]
    for j, col in enumerate(table.numeric_names):
        x = table.numeric[:, j]
        seen = x[~np.isnan(x)]
        whole = bool(seen.size) and bool(np.all(seen == np.round(seen)))
        prop = {
            "name": col,
            "logicalType": "integer" if whole else "number",
            "physicalType": "BIGINT" if whole else "DOUBLE",
            "required": bool(seen.size == len(x)),
            "classification": "pii" if col in pii else "internal",
        }
        props.append(prop)
    for j, col in enumerate(table.categorical_names):
        present = np.array([v is not None and v == v for v in table.categorical[:, j]])
        props.append(
            {
                "name": col,
                "logicalType": "string",
                "physicalType": "VARCHAR",
                "required": bool(present.all()),
                "classification": "pii" if col in pii else "internal",
            }
        )
    domain = table.domain
    return {
        "apiVersion": API_VERSION,
        "kind": "DataContract",
        "id": f"{domain}-input",
        "name": f"{domain} input columns",
        "version": version,
        "status": "active",
        "domain": domain,
        "dataProduct": product or f"{domain}-bottom-model",
        **({"servers": list(servers)} if servers else {}),
        "team": team or team_block(domain),
        **({"slaProperties": sla} if sla else {}),
        "description": {
            "purpose": f"The columns of domain {domain!r} its bottom model reads; they never "
            "leave the domain.",
            "usage": "checked by the domain's node before every splitmesh run",
        },
        "schema": [
            {
                "name": domain,
                "physicalType": "table",
                # where it was read: a declared contract's (its servers say so too); a
                # derived one names no location, so the same data gives the same contract
                # wherever it is read from (one shared catalog holds every run's)
                **({"physicalName": str(table.source)} if servers else {}),
                "properties": props,
                "quality": [
                    {
                        "type": "library",
                        "metric": "rowCount",
                        "mustBeGreaterOrEqualTo": len(table),
                        "unit": "rows",
                        "description": "at least as many rows as when the contract was written",
                    }
                ],
            }
        ],
    }


def output_contract(
    domain: str,
    width: int,
    *,
    version: str = "1.0.0",
    product: str | None = None,
    team: dict | None = None,
    sla: list[dict] | None = None,
) -> dict:
    """The embedding port: one float32 array of ``width`` values per row, restricted."""
    return {
        "apiVersion": API_VERSION,
        "kind": "DataContract",
        "id": f"{domain}-embedding",
        "name": f"{domain} cut-layer embeddings",
        "version": version,
        "status": "active",
        "domain": domain,
        "dataProduct": product or f"{domain}-bottom-model",
        "team": team or team_block(domain),
        **({"slaProperties": sla} if sla else {}),
        "description": {
            "purpose": f"What domain {domain!r} hands the coordinator: one cut-layer embedding "
            "per aligned row, never a raw column.",
            "limitations": "embeddings can leak information about the inputs; share them only "
            "with the run's coordinator",
        },
        "schema": [
            {
                "name": EMBEDDING,
                "physicalType": "tensor",
                "properties": [
                    {
                        "name": EMBEDDING,
                        "logicalType": "array",
                        "physicalType": "float32",
                        "required": True,
                        "classification": "restricted",
                        "items": {"name": "value", "logicalType": "number"},
                        "customProperties": [
                            {"property": "width", "value": int(width)},
                            {"property": "shape", "value": f"[batch, {int(width)}]"},
                            {"property": "dtype", "value": "float32"},
                        ],
                    }
                ],
            }
        ],
    }


def write_contract(path: str | Path, doc: dict) -> Path:
    from splitmesh.io import atomic_write_yaml

    validate(doc, f"contract {doc.get('id')}")
    atomic_write_yaml(path, doc)
    return Path(path)


# -- checking data against contracts ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EmbeddingContract:
    """What the coordinator checks every embedding of one domain against."""

    id: str
    version: str
    domain: str
    width: int
    dtype: str = "float32"

    @classmethod
    def from_doc(cls, doc: dict) -> EmbeddingContract:
        where = f"contract {doc.get('id')!r}"
        try:
            prop = next(
                p
                for obj in doc["schema"]
                for p in obj.get("properties", [])
                if p.get("logicalType") == "array"
            )
            width = int(_custom(prop.get("customProperties"))["width"])
        except (KeyError, StopIteration, TypeError, ValueError) as exc:
            raise ContractError(
                f"{where} has no embedding property (logicalType array with a 'width' custom "
                "property)"
            ) from exc
        return cls(
            doc["id"],
            str(doc["version"]),
            doc.get("domain", ""),
            width,
            prop.get("physicalType", "float32"),
        )

    def check(self, values, *, wire: str = "float32", rows: int | None = None) -> None:
        """Refuse an embedding batch whose shape or dtype breaks the contract. ``wire``: the
        run's agreed wire encoding (float16 / int8 compress the contract's float32)."""
        shape = tuple(values.shape)
        dtype = "int8" if hasattr(values, "scale") else str(np.dtype(values.dtype))
        allowed = {self.dtype, wire}
        bad = len(shape) != 2 or shape[1] != self.width or dtype not in allowed
        if bad or (rows is not None and shape[0] != rows):
            on_wire = "" if wire == self.dtype else f" ({wire} on the wire in this run)"
            raise ContractError(
                f"domain {self.domain!r} sent embeddings of shape {list(shape)} {dtype}; its "
                f"output contract {self.id!r} v{self.version} promises [batch, {self.width}] "
                f"{self.dtype}{on_wire}"
            )


def _table_columns(table) -> dict[str, tuple[str, np.ndarray]]:
    cols = {table.key: ("key", table.keys)}
    cols.update({c: ("numeric", table.numeric[:, j]) for j, c in enumerate(table.numeric_names)})
    cols.update(
        {c: ("categorical", table.categorical[:, j]) for j, c in enumerate(table.categorical_names)}
    )
    return cols


def _missing(kind: str, values: np.ndarray) -> np.ndarray:
    if kind == "numeric":
        return np.isnan(values)
    return np.array([v is None or v != v for v in values], dtype=bool)


_OPS = {
    "mustBe": lambda n, v: n == v,
    "mustNotBe": lambda n, v: n != v,
    "mustBeGreaterThan": lambda n, v: n > v,
    "mustBeGreaterOrEqualTo": lambda n, v: n >= v,
    "mustBeLessThan": lambda n, v: n < v,
    "mustBeLessOrEqualTo": lambda n, v: n <= v,
    "mustBeBetween": lambda n, v: v[0] <= n <= v[1],
    "mustNotBeBetween": lambda n, v: not v[0] <= n <= v[1],
}


def table_violations(doc: dict, table, *, rows: bool = True) -> list[str]:
    """Where ``table`` (a DomainTable) breaks its input contract: schema (every column present,
    none unlisted, logical types), nulls, ranges and (``rows``) the row-count rules, which
    bind training data, not a batch of new rows to score."""
    have = _table_columns(table)
    obj = doc["schema"][0]
    props = {p["name"]: p for p in obj.get("properties", [])}
    out = [f"column {c!r} is not in the contract" for c in have if c not in props]
    for name, prop in props.items():
        if name not in have:
            out.append(f"column {name!r} is missing")
            continue
        kind, values = have[name]
        logical = prop.get("logicalType")
        if kind == "numeric" and logical not in ("number", "integer", None):
            out.append(f"column {name!r} holds numbers, the contract says {logical}")
        if kind == "categorical" and logical in ("number", "integer"):
            out.append(f"column {name!r} holds text, the contract says {logical}")
        if kind == "key":
            if logical not in (table.key_type, None):
                out.append(f"key column {name!r} is {table.key_type}, the contract says {logical}")
            continue
        gaps = int(_missing(kind, values).sum())
        if prop.get("required") and gaps:
            out.append(f"column {name!r} has {gaps} null value(s); the contract requires none")
        opts = prop.get("logicalTypeOptions") or {}
        if kind == "numeric" and len(values) > gaps:
            seen = values[~np.isnan(values)]
            lo, hi = float(seen.min()), float(seen.max())
            if "minimum" in opts and lo < float(opts["minimum"]):
                out.append(
                    f"column {name!r} has {lo:g} below the contract's minimum {opts['minimum']}"
                )
            if "maximum" in opts and hi > float(opts["maximum"]):
                out.append(
                    f"column {name!r} has {hi:g} above the contract's maximum {opts['maximum']}"
                )
            if logical == "integer" and not np.all(seen == np.round(seen)):
                out.append(f"column {name!r} has fractional values; the contract says integer")
    for rule in obj.get("quality", []) or []:
        if not rows or rule.get("metric") != "rowCount":
            continue
        for op, test in _OPS.items():
            if op in rule and not test(len(table), rule[op]):
                out.append(f"{len(table)} rows, the contract's rowCount rule says {op} {rule[op]}")
    return out


def check_table(doc: dict, table, *, rows: bool = True) -> None:
    """Refuse a table that breaks its input contract, naming every breach."""
    problems = table_violations(doc, table, rows=rows)
    if problems:
        raise ContractError(
            f"domain {table.domain!r}, file {table.source}: the data breaks input contract "
            f"{doc['id']!r} v{doc['version']}: " + "; ".join(problems),
            hint="fix the data, or publish a new contract version (splitmesh product init)",
        )
