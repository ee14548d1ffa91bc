"""A domain's own table, read by DuckDB from a CSV, a Parquet file or a SQL query.

Each domain reads only its own source. What comes out is a ``DomainTable``: its keys,
numeric columns (NaN where missing), categorical columns and, for the label owner, the
label column. Errors name the domain, the file and the column at fault.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from splitmesh.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pyarrow as pa

# What pandas writes as an unnamed index column, as DuckDB and pandas name it on reading
_INDEX_COLUMN = re.compile(r"^(|column0+|Unnamed: 0)$")
# What DuckDB may hold while it reads a source (its default is 80% of the machine): a
# window or a sort over 30M rows then spills to disk instead of taking 5 GB of a node
# that needs its memory for training.
READ_MEMORY = "1GB"


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a domain's table comes from: ``path`` (CSV or Parquet) or a DuckDB ``sql``.

    ``allowed``: the only folders DuckDB may read (default: ``base``, the mesh file's
    folder, for SQL; the file's own folder for a path). A SQL source is one SELECT.
    """

    path: Path | None = None
    sql: str | None = None
    base: Path = Path(".")  # relative paths (also inside the SQL) are read from here
    allowed: tuple[Path, ...] = ()

    def describe(self) -> str:
        return str(self.path) if self.path is not None else f"SQL query {self.sql!r}"

    def folders(self) -> tuple[Path, ...]:
        if self.allowed:
            return tuple(p if p.is_absolute() else self.base / p for p in self.allowed)
        if self.path is not None:
            path = self.path if self.path.is_absolute() else self.base / self.path
            return (path if path.is_dir() else path.parent,)
        return (self.base,)


def _confined(folders: tuple[Path, ...]):
    """A DuckDB connection that reads files only under ``folders`` (absolute paths: a
    relative one is refused): no other file, no network, no extension installed or loaded,
    settings locked."""
    import duckdb

    con = duckdb.connect(
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    )
    con.execute("SET enable_progress_bar = false")  # ours are drawn by rich
    con.execute("SET memory_limit = ?", [READ_MEMORY])
    # ours, not the data's folder; one per process: DuckDB names its spill files alike
    spill = Path(tempfile.gettempdir()) / f"splitmesh-duckdb-{os.getpid()}"
    con.execute("SET temp_directory = ?", [str(spill)])
    dirs = [str(f.resolve()).rstrip("/") + "/" for f in folders]
    con.execute("SET allowed_directories = ?", [dirs])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def _path_literals(node, out: list, in_function: bool = False) -> list:
    """(offset, text) of every file name a SELECT's syntax tree names: quoted table names
    (DuckDB's replacement scans) and string constants passed to table functions."""
    if isinstance(node, dict):
        kind = node.get("type")
        if kind == "BASE_TABLE" and any(c in node.get("table_name", "") for c in "./"):
            out.append((node.get("query_location"), node["table_name"]))
        literal = node.get("literal")
        if (
            in_function
            and kind == "VALUE_CONSTANT"
            and isinstance(literal, dict)
            and literal.get("kind") == "STRING"
        ):
            out.append((node.get("query_location"), literal.get("text", "")))
        # a named option (delim='|') is a comparison inside the call: not a file name
        inside = (in_function or kind == "TABLE_FUNCTION") and node.get("class") != "COMPARISON"
        for v in node.values():
            _path_literals(v, out, inside)
    elif isinstance(node, list):
        for v in node:
            _path_literals(v, out, in_function)
    return out


def _syntax_tree(sql: str) -> dict | None:
    """DuckDB's syntax tree of ``sql``; None where DuckDB cannot parse it here."""
    import json

    import duckdb

    con = duckdb.connect()
    try:
        return json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])
    except (duckdb.Error, TypeError, ValueError):
        return None
    finally:
        con.close()


def file_names(sql: str) -> list[str]:
    """Every file name a query spells out (quoted table names, table functions' string
    arguments), in order, each once: what it reads, for lineage."""
    tree = _syntax_tree(sql)
    names = [text for _, text in _path_literals(tree, [])] if tree is not None else []
    return list(dict.fromkeys(names))


def map_paths(sql: str, change: Callable[[str], str | None]) -> str:
    """The query with every file name it spells out as one plain quoted name replaced by
    ``change(name)`` (None: kept). Names built at run time are not seen."""
    tree = _syntax_tree(sql)
    if tree is None:
        return sql  # unparsable here: DuckDB refuses it with its own message
    edits = []
    for offset, text in _path_literals(tree, []):
        if not isinstance(offset, int) or not 0 <= offset < len(sql):
            continue
        quote = sql[offset]
        if quote not in "'\"" or sql[offset + 1 : offset + 1 + len(text) + 1] != text + quote:
            continue  # not spelled as one plain quoted name (escapes, expressions): left as is
        new = change(text)
        if new is not None:
            edits.append(
                (offset, offset + len(text) + 2, quote + new.replace(quote, quote * 2) + quote)
            )
    for start, end, new in sorted(set(edits), reverse=True):
        sql = sql[:start] + new + sql[end:]
    return sql


def absolute_paths(sql: str, base: Path) -> str:
    """The query with every relative file name it spells out made absolute against
    ``base``, so that DuckDB's confinement (absolute folders only) can allow it. Names
    built at run time stay relative, and are refused."""
    root = base.resolve()

    def absolute(text: str) -> str | None:
        return None if Path(text).is_absolute() or "://" in text else str(root / text)

    return map_paths(sql, absolute)


def _one_select(sql: str, domain: str) -> None:
    """A SQL source is a single SELECT: no COPY, ATTACH, INSTALL, LOAD, SET, PRAGMA..."""
    import duckdb

    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"domain {domain!r}: its SQL source does not parse: {first}") from None
    kinds = [s.type.name for s in statements]
    if kinds != ["SELECT"]:
        refused = next((k for k in kinds if k != "SELECT"), "more than one statement")
        raise ConfigError(
            f"domain {domain!r}: its SQL source must be one SELECT; {refused} is refused",
            hint="a source reads the domain's own files; it may not write, attach, install, "
            "load or set anything",
        )


@dataclasses.dataclass(frozen=True)
class DomainTable:
    """One domain's rows as its party holds them; never leaves the domain."""

    domain: str
    source: str
    key: str
    keys: np.ndarray  # (n,) int64 or object (str)
    numeric_names: list[str]
    numeric: np.ndarray  # (n, k) float64, NaN where missing
    categorical_names: list[str]
    categorical: np.ndarray  # (n, c) object, None where missing; codes if ``cardinalities``
    label_name: str | None = None
    label: np.ndarray | None = None  # raw label values
    notes: tuple[str, ...] = ()
    # set by ``load_coded_table``: ``categorical`` holds codes 1..k in sorted order of the
    # values' text, 0 for missing, and column j has cardinalities[j] codes (0 included)
    cardinalities: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def features(self) -> list[str]:
        """Its feature columns (none: a label domain holding labels alone)."""
        return [*self.numeric_names, *self.categorical_names]

    @property
    def columns(self) -> list[str]:
        """What it brings to a run: its key, then its features."""
        return [self.key, *self.features]

    @property
    def key_type(self) -> str:
        return "integer" if self.keys.dtype.kind in "iu" else "string"

    def key_items(self) -> list[str]:
        """Keys as the strings PSI hashes; integers and strings never meet (key_type)."""
        return [str(k) for k in self.keys.tolist()]

    def take(self, rows: np.ndarray) -> DomainTable:
        return dataclasses.replace(
            self,
            keys=self.keys[rows],
            numeric=self.numeric[rows],
            categorical=self.categorical[rows],
            label=None if self.label is None else self.label[rows],
        )


def _query(source: Source, domain: str) -> tuple[str, str]:
    """The SELECT that reads ``source`` and how errors name it."""
    if source.sql is not None:
        _one_select(source.sql, domain)
    if source.path is not None:
        path = source.path if source.path.is_absolute() else source.base / source.path
        if not path.exists():
            raise DataError(f"domain {domain!r}: no such file", path=str(path))
        p = str(path).replace("'", "''")
        if path.is_dir():
            rel = f"read_parquet('{p}/*.parquet')"
        elif path.suffix.lower() in (".parquet", ".pq"):
            rel = f"read_parquet('{p}')"
        else:
            rel = f"read_csv('{p}', header=true)"
        return f"SELECT * FROM {rel}", str(path)
    if source.sql is not None:
        return absolute_paths(source.sql, source.base), source.describe()
    raise ConfigError(f"domain {domain!r}: its source names neither a path nor sql")


@contextlib.contextmanager
def _reading(source: Source, domain: str, where: str) -> Iterator[None]:
    """DuckDB's errors while reading ``source`` as DataErrors naming domain and source."""
    import duckdb

    try:
        yield
    except duckdb.PermissionException as exc:
        first = str(exc).splitlines()[0]
        dirs = ", ".join(str(f) for f in source.folders())
        raise DataError(
            f"domain {domain!r}: its source may read only under {dirs}; refused: {first}",
            path=where,
        ) from None
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        raise DataError(f"domain {domain!r}: cannot read it: {first}", path=where) from None


def read_frame(source: Source, domain: str) -> pd.DataFrame:
    """The whole table of one source as a DataFrame (types as DuckDB infers them)."""
    query, where = _query(source, domain)
    con = _confined(source.folders())
    with _reading(source, domain, where):
        return con.sql(query).df()


def read_batches(source: Source, domain: str, rows: int = 1 << 20) -> Iterator[pa.RecordBatch]:
    """The table of one source as Arrow record batches of up to ``rows`` rows, in order:
    only one batch is in memory at a time (DuckDB streams the rest)."""
    query, where = _query(source, domain)
    con = _confined(source.folders())
    with _reading(source, domain, where):
        yield from con.sql(query).to_arrow_reader(rows)


def write_parquet(source: Source, domain: str, path: Path) -> Path:
    """The source's table as one Parquet file, streamed batch by batch, written whole or
    not at all."""
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    writer = None
    try:
        for batch in read_batches(source, domain):
            if writer is None:
                writer = pq.ParquetWriter(tmp, batch.schema)
            writer.write_batch(batch)
        if writer is None:
            raise DataError(f"domain {domain!r}: {source.describe()} holds no rows")
        writer.close()
        writer = None
        os.replace(tmp, path)
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return path


def load_domain_table(
    domain: str,
    source: Source,
    *,
    key: str,
    features: list[str] | None = None,
    categorical: list[str] | None = None,
    label: str | None = None,
    exclude: list[str] | None = None,
    label_optional: bool = False,
) -> DomainTable:
    """Validate and split one domain's table into keys, numeric and categorical columns.

    ``features`` None: every column but the key, the label and ``exclude``. Columns that
    are not numbers are embedded as categories even when not listed (a note says so).
    ``label_optional``: new rows to score may come without the label column.
    """
    df = read_frame(source, domain)
    where = source.describe()
    if len(df.columns) and _INDEX_COLUMN.match(str(df.columns[0])) and df.columns[0] != key:
        df = df.drop(columns=df.columns[0])
    if label is not None and label_optional and label not in df.columns:
        label = None
    numeric_names, cat_names = _feature_columns(
        domain, where, list(df.columns), key=key, label=label, features=features,
        categorical=categorical, exclude=exclude,
    )  # fmt: skip
    if df.empty:
        raise DataError(f"domain {domain!r}: the table has no rows", path=where)

    keys = _keys(df[key], domain, where, key)
    notes: list[str] = []
    for c in numeric_names:  # types are declared, never guessed from a stray cell
        df[c] = _numbers(df[c], domain, where, c)
    numeric = (
        np.column_stack([df[c].astype("float64").to_numpy(na_value=np.nan) for c in numeric_names])
        if numeric_names
        else np.zeros((len(df), 0))
    )
    _refuse_infinite(numeric, numeric_names, domain, where)
    cats = np.empty((len(df), len(cat_names)), dtype=object)
    for j, c in enumerate(cat_names):
        col = df[c]
        cats[:, j] = np.where(col.isna().to_numpy(), None, col.astype(object).to_numpy())
    return DomainTable(
        domain=domain,
        source=where,
        key=key,
        keys=keys,
        numeric_names=numeric_names,
        numeric=numeric,
        categorical_names=cat_names,
        categorical=cats,
        label_name=label,
        label=None if label is None else df[label].to_numpy(),
        notes=tuple(notes),
    )


# DuckDB types read as numbers as they are; any other type of a numeric feature goes
# through ``_numbers`` (text that must parse, dates as their instants), as in a DataFrame
_NUMBER_TYPES = re.compile(
    r"^(U?(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT)|FLOAT|DOUBLE|DECIMAL.*|BOOLEAN)$"
)


def load_coded_table(
    domain: str,
    source: Source,
    *,
    key: str,
    features: list[str] | None = None,
    categorical: list[str] | None = None,
    exclude: list[str] | None = None,
) -> DomainTable:
    """A label-free table (a star schema's dimension) with its categories already coded,
    read by DuckDB into Arrow: no DataFrame and no Python object per cell (the keys aside:
    PSI hashes their text). Numbers as float64 (NaN where missing); each categorical
    column as codes 1..k in sorted order of its values' text (0: missing or empty), the
    codes ``encode_categories`` gives, without holding the values. Same checks and errors
    as ``load_domain_table``."""
    query, where = _query(source, domain)
    con = _confined(source.folders())
    with _reading(source, domain, where):
        rel = con.sql(query)
        have, types = list(rel.columns), [str(t) for t in rel.types]
        if have and _INDEX_COLUMN.match(have[0]) and have[0] != key:
            have, types = have[1:], types[1:]
        numeric_names, cat_names = _feature_columns(
            domain, where, have, key=key, label=None, features=features,
            categorical=categorical, exclude=exclude,
        )  # fmt: skip
        typed = dict(zip(have, types, strict=True))

        def quoted(c: str) -> str:
            return '"' + c.replace('"', '""') + '"'

        cols = [quoted(key)]
        cols += [
            f"CAST({quoted(c)} AS DOUBLE)" if _NUMBER_TYPES.match(typed[c]) else quoted(c)
            for c in numeric_names
        ]
        cols += [f"CAST({quoted(c)} AS VARCHAR)" for c in cat_names]
        table = con.sql(f"SELECT {', '.join(cols)} FROM ({query})").arrow()
        if hasattr(table, "read_all"):  # DuckDB 2 gives a reader: the query runs here
            table = table.read_all()
    if table.num_rows == 0:
        raise DataError(f"domain {domain!r}: the table has no rows", path=where)
    keys = _arrow_keys(table.column(0), domain, where, key)
    numeric = np.empty((table.num_rows, len(numeric_names)))
    for j, c in enumerate(numeric_names):
        col = table.column(1 + j)
        if _NUMBER_TYPES.match(typed[c]):
            numeric[:, j] = col.to_numpy(zero_copy_only=False)  # nulls come as NaN
        else:
            values = _numbers(col.to_pandas(), domain, where, c)
            numeric[:, j] = values.astype("float64").to_numpy(na_value=np.nan)
    _refuse_infinite(numeric, numeric_names, domain, where)
    codes = np.zeros((table.num_rows, len(cat_names)), np.int64)
    cards = []
    for j in range(len(cat_names)):
        codes[:, j], k = _sorted_codes(table.column(1 + len(numeric_names) + j))
        cards.append(k)
    return DomainTable(
        domain=domain,
        source=where,
        key=key,
        keys=keys,
        numeric_names=numeric_names,
        numeric=numeric,
        categorical_names=cat_names,
        categorical=codes,
        cardinalities=tuple(cards),
    )


def _arrow_keys(column: pa.ChunkedArray, domain: str, where: str, key: str) -> np.ndarray:
    """``_keys`` on an Arrow column: integer and text keys checked without pandas (its
    duplicate check of 1.4M text keys took 650 MB); other types go to ``_keys``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    text = pa.types.is_string(kind) or pa.types.is_large_string(kind)
    if not (text or pa.types.is_integer(kind)):
        return _keys(column.to_pandas(), domain, where, key)
    if column.null_count:
        i = int(np.flatnonzero(np.asarray(pc.is_null(column), bool))[0])
        raise DataError(f"domain {domain!r}: missing key", path=where, column=key, row=i + 1)
    if pa.types.is_integer(kind):
        keys = column.to_numpy().astype(np.int64)
        order = np.argsort(keys, kind="stable")
        repeat = order[np.flatnonzero(keys[order][1:] == keys[order][:-1]) + 1]
    else:  # a set of the strings (Arrow's hashing of them took 460 MB at 1.4M keys)
        keys = column.to_numpy(zero_copy_only=False).astype(object, copy=False)
        repeat = np.zeros(0, np.int64)
        if len(set(keys)) < len(keys):
            seen: set = set()
            repeat = np.array([i for i, k in enumerate(keys) if k in seen or seen.add(k)])
    if len(repeat):  # the first row whose key an earlier row holds
        _refuse_duplicate(keys, int(repeat.min()), len(repeat), domain, where, key)
    return keys


def _refuse_duplicate(
    keys: np.ndarray, row: int, count: int, domain: str, where: str, key: str
) -> None:
    """The error for ``count`` rows whose key an earlier row holds, the first at ``row``."""
    example = keys[row].item() if isinstance(keys[row], np.generic) else keys[row]
    raise DataError(
        f"domain {domain!r}: duplicate key {example!r} ({count} duplicate row(s)); "
        "a key must name one row",
        path=where,
        column=key,
        row=row + 1,
        hint="de-duplicate the table, or give a {sql: ...} source that does",
    )


def _sorted_codes(column: pa.ChunkedArray) -> tuple[np.ndarray, int]:
    """Codes 1..k of a text column by sorted distinct value (0: null or empty) and k + 1.
    Arrow sorts text by its UTF-8 bytes, which is Python's order of the strings."""
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(column.combine_chunks())
    values = encoded.dictionary
    order = np.asarray(pc.array_sort_indices(values), np.int64)
    order = order[np.asarray(pc.not_equal(values, ""), bool)[order]]  # "" counts as missing
    code = np.zeros(len(values) + 1, np.int64)  # per dictionary entry; the last one: null
    code[order] = np.arange(1, len(order) + 1)
    return code[np.asarray(encoded.indices.fill_null(-1), np.int64)], len(order) + 1


def _feature_columns(
    domain: str,
    where: str,
    have: list[str],
    *,
    key: str,
    label: str | None,
    features: list[str] | None,
    categorical: list[str] | None,
    exclude: list[str] | None,
) -> tuple[list[str], list[str]]:
    """The table's numeric and categorical feature columns, checked against what it has
    (``have``): every named column present, the key and the label never features."""

    def need(cols: list[str], what: str) -> None:
        missing = [c for c in cols if c not in have]
        if missing:
            shown = ", ".join(map(str, have[:10])) + (" ..." if len(have) > 10 else "")
            raise DataError(
                f"domain {domain!r}: {what} column {missing[0]!r} is not in the table "
                f"(it has {shown})",
                path=where,
                column=missing[0],
            )

    need([key], "key")
    if label is not None:
        need([label], "label")
    categorical = list(categorical or [])
    skip = {key, *([label] if label else []), *(exclude or [])}
    if features is None:
        features = [c for c in have if c not in skip]
    need(list(features), "feature")
    need(categorical, "categorical")
    stray = [c for c in categorical if c not in features]
    if stray:
        raise ConfigError(
            f"domain {domain!r}: categorical column {stray[0]!r} is not among its features"
        )
    if key in features or (label and label in features):
        bad = key if key in features else label
        raise ConfigError(f"domain {domain!r}: {bad!r} cannot be a feature (key or label)")
    numeric_names = [c for c in features if c not in categorical]
    cat_names = [c for c in features if c in categorical]
    if not numeric_names and not cat_names and not (label is not None and features == []):
        raise ConfigError(
            f"domain {domain!r} has no feature columns",
            hint="list its features (a label domain with features: [] holds labels only)",
        )
    return numeric_names, cat_names


def _refuse_infinite(numeric: np.ndarray, names: list[str], domain: str, where: str) -> None:
    if np.isinf(numeric).any():
        j = int(np.flatnonzero(np.isinf(numeric).any(axis=0))[0])
        i = int(np.flatnonzero(np.isinf(numeric[:, j]))[0])
        raise DataError(
            f"domain {domain!r}: infinite value", path=where, column=names[j], row=i + 1
        )


def _numbers(col: pd.Series, domain: str, where: str, name: str, offset: int = 0) -> pd.Series:
    """A feature not declared categorical as numbers; the first value that is not a number
    is a DataError naming the file, the column, the row (``offset``: rows before this
    batch) and the value."""
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
        return col
    as_numbers = pd.to_numeric(col, errors="coerce")
    bad = as_numbers.isna().to_numpy() & col.notna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        value = str(col.iloc[i])[:60]
        raise DataError(
            f"domain {domain!r}: non-numeric value {value!r} in a column not declared categorical",
            path=where,
            column=name,
            row=offset + i + 1,
            hint=f"fix the value, or list {name!r} under the domain's categorical columns",
        )
    return as_numbers


def _keys(col: pd.Series, domain: str, where: str, key: str) -> np.ndarray:
    """Keys as int64 or str; missing and duplicate keys are refused with an example."""
    if col.isna().any():
        i = int(np.flatnonzero(col.isna().to_numpy())[0])
        raise DataError(f"domain {domain!r}: missing key", path=where, column=key, row=i + 1)
    if pd.api.types.is_integer_dtype(col):
        keys = col.to_numpy(dtype=np.int64)
    elif pd.api.types.is_float_dtype(col) and (col == col.round()).all():
        keys = col.to_numpy(dtype=np.int64)  # 1.0 read from a column with gaps elsewhere
    else:
        keys = col.astype(str).to_numpy(dtype=object)
    dup = pd.Series(keys).duplicated()
    if dup.any():
        _refuse_duplicate(
            keys, int(np.flatnonzero(dup.to_numpy())[0]), int(dup.sum()), domain, where, key
        )
    return keys


@dataclasses.dataclass(frozen=True)
class KeyColumn:
    """A foreign-key column without a Python object per row: its distinct keys in sorted
    order (numbers as numbers) and each row's index into them (int32: 4 bytes per row of
    a fact table of tens of millions)."""

    distinct: np.ndarray  # (k,) int64, or object (str)
    index: np.ndarray  # (n,) int32

    def __len__(self) -> int:
        return len(self.index)


class _KeyEncoder:
    """Builds a KeyColumn batch by batch: codes in first-seen order, sorted at the end."""

    def __init__(self) -> None:
        self.codes: list[np.ndarray] = []
        self.seen: dict = {}
        self.integral: bool | None = None

    def add(self, col: pa.Array, rows: int, domain: str, where: str, name: str) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        missing = col.is_null(nan_is_null=True).to_numpy(zero_copy_only=False)
        if missing.any():
            i = rows + int(np.flatnonzero(missing)[0])
            raise DataError(
                f"domain {domain!r}: missing foreign key", path=where, column=name, row=i + 1
            )
        integral = pa.types.is_integer(col.type) or (
            pa.types.is_floating(col.type) and bool(pc.all(pc.equal(col, pc.round(col))).as_py())
        )
        if self.integral is None:
            self.integral = integral
        if integral and self.integral:
            col = col.cast(pa.int64())
        else:  # a column that is not all integers is read as text, as it is everywhere
            if self.integral:  # earlier batches were integers: their keys become text
                self.seen = {str(k): v for k, v in self.seen.items()}
                self.integral = False
            col = col.cast(pa.string())
        enc = col.dictionary_encode()
        found = np.fromiter(
            (self.seen.setdefault(k, len(self.seen)) for k in enc.dictionary.to_pylist()),
            dtype=np.int64,
            count=len(enc.dictionary),
        )
        if len(self.seen) >= 2**31:
            raise DataError(
                f"domain {domain!r}: more than 2**31 distinct keys", path=where, column=name
            )
        found = found.astype(np.int32)
        self.codes.append(found[enc.indices.to_numpy()])

    def column(self) -> KeyColumn:
        keys = list(self.seen)
        distinct = np.array(keys, dtype=np.int64) if self.integral else np.array(keys, dtype=object)
        order = np.argsort(distinct, kind="stable")
        rank = np.empty(len(order), np.int32)
        rank[order] = np.arange(len(order), dtype=np.int32)
        codes = np.concatenate(self.codes) if self.codes else np.zeros(0, np.int32)
        return KeyColumn(distinct[order], rank[codes])


@dataclasses.dataclass(frozen=True)
class FactTable:
    """A star schema's fact table (e.g. sales): one row per interaction, naming its user
    and item by foreign key. Its rows are the examples of a ranking task."""

    domain: str
    source: str
    user_name: str
    item_name: str
    users: KeyColumn
    items: KeyColumn
    time: np.ndarray  # (n,) int64; the input order when the table has no time column

    def __len__(self) -> int:
        return len(self.users)


def load_fact_table(
    domain: str,
    source: Source,
    *,
    user: str,
    item: str,
    time: str | None,
    batch_rows: int = 1 << 20,
) -> FactTable:
    """The fact table's foreign keys and time, read ``batch_rows`` rows at a time (no
    Python object per row); errors name the file, column and row."""
    import pyarrow as pa

    where = source.describe()
    keys, times, rows = {user: _KeyEncoder(), item: _KeyEncoder()}, [], 0
    for batch in read_batches(source, domain, batch_rows):
        if rows == 0:
            for role, col in (("user", user), ("item", item), ("time", time)):
                if col is not None and col not in batch.schema.names:
                    have = ", ".join(map(str, batch.schema.names[:10]))
                    raise DataError(
                        f"domain {domain!r}: {role} column {col!r} is not in the table "
                        f"(it has {have})",
                        path=where,
                        column=col,
                    )
        for col, enc in keys.items():
            enc.add(batch.column(col), rows, domain, where, col)
        if time is None:
            times.append(np.arange(rows, rows + batch.num_rows, dtype=np.int64))
        else:
            col = batch.column(time)
            if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
                stamps = col.cast(pa.timestamp("ns"))
                bad = stamps.is_null().to_numpy(zero_copy_only=False)
                values = stamps.fill_null(0).to_numpy().astype(np.int64)
            else:
                values = _numbers(col.to_pandas(), domain, where, time, rows)
                values = values.to_numpy(np.float64)
                bad = np.isnan(values)
            if bad.any():
                i = rows + int(np.flatnonzero(bad)[0])
                raise DataError(
                    f"domain {domain!r}: missing time", path=where, column=time, row=i + 1
                )
            times.append(values.astype(np.int64))
        rows += batch.num_rows
    if rows == 0:
        raise DataError(f"domain {domain!r}: the table has no rows", path=where)
    return FactTable(
        domain, where, user, item, keys[user].column(), keys[item].column(),
        np.concatenate(times),
    )  # fmt: skip
