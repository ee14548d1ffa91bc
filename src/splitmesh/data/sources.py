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

    Read by DuckDB into Arrow, a column at a time into numpy: no DataFrame of the whole
    table (pandas held about three times the final arrays). ``features`` None: every
    column but the key, the label and ``exclude``. ``label_optional``: new rows to score
    may come without the label column. Categorical values keep their type (text, numbers,
    booleans; None where missing).
    """
    read = _read_arrow(
        source, domain, key=key, label=label, features=features, categorical=categorical,
        exclude=exclude, label_optional=label_optional, text_categories=False,
    )  # fmt: skip
    keys, numeric, columns = _split_columns(read)
    cats = np.empty((len(keys), len(read.categorical)), dtype=object)
    for j in range(len(read.categorical)):
        cats[:, j] = _objects(columns.pop(0))
    label_values = None if read.label is None else _pandas(columns.pop(0)).to_numpy()
    return read.domain_table(keys, numeric, cats, label_name=read.label, label=label_values)


# DuckDB types whose Arrow columns cast to float64 as numbers; any other type of a numeric
# feature goes through ``_numbers`` (text that must parse, dates as their instants)
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
    """A label-free table (a star schema's dimension) with its categories already coded:
    no Python object per cell (the keys aside: PSI hashes their text). Numbers as float64
    (NaN where missing); each categorical column as codes 1..k in sorted order of its
    values' text (0: missing or empty), the codes ``encode_categories`` gives, without
    holding the values. Same checks and errors as ``load_domain_table``."""
    read = _read_arrow(
        source, domain, key=key, label=None, features=features, categorical=categorical,
        exclude=exclude, label_optional=False, text_categories=True,
    )  # fmt: skip
    keys, numeric, columns = _split_columns(read)
    codes = np.zeros((len(keys), len(read.categorical)), np.int64)
    cards = []
    for j in range(len(read.categorical)):
        codes[:, j], k = _sorted_codes(columns.pop(0))
        cards.append(k)
    return read.domain_table(keys, numeric, codes, cardinalities=tuple(cards))


@dataclasses.dataclass
class _Read:
    """A table as read: its Arrow columns in order (key, numeric features, categorical
    features, label), the names of each kind and DuckDB's type of each numeric feature."""

    domain: str
    where: str
    key: str
    columns: list[pa.ChunkedArray]
    numeric: list[str]
    categorical: list[str]
    label: str | None
    numeric_types: list[str]

    def domain_table(
        self, keys: np.ndarray, numeric: np.ndarray, categorical: np.ndarray, **rest
    ) -> DomainTable:
        return DomainTable(
            domain=self.domain,
            source=self.where,
            key=self.key,
            keys=keys,
            numeric_names=self.numeric,
            numeric=numeric,
            categorical_names=self.categorical,
            categorical=categorical,
            **rest,
        )


def _read_arrow(
    source: Source,
    domain: str,
    *,
    key: str,
    label: str | None,
    features: list[str] | None,
    categorical: list[str] | None,
    exclude: list[str] | None,
    label_optional: bool,
    text_categories: bool,
) -> _Read:
    """The key, feature and label columns of a source, checked by name, read by DuckDB
    into Arrow; decimals as doubles, categories as text with ``text_categories``."""
    query, where = _query(source, domain)
    con = _confined(source.folders())
    with _reading(source, domain, where):
        rel = con.sql(query)
        have, types = list(rel.columns), [str(t) for t in rel.types]
        if have and _INDEX_COLUMN.match(have[0]) and have[0] != key:
            have, types = have[1:], types[1:]
        if label is not None and label_optional and label not in have:
            label = None
        numeric_names, cat_names = _feature_columns(
            domain, where, have, key=key, label=label, features=features,
            categorical=categorical, exclude=exclude,
        )  # fmt: skip
        typed = dict(zip(have, types, strict=True))

        def quoted(c: str) -> str:
            return '"' + c.replace('"', '""') + '"'

        def as_read(c: str) -> str:
            """Decimals as DuckDB's doubles (Arrow's are a bit off: 0.47000000000000003);
            other numbers are made float64 by Arrow, not by a CAST here, because DuckDB
            pushes a cast into its CSV reader, which then parses a BOOLEAN's text as a
            number and fails."""
            wide = typed[c].startswith("DECIMAL") or typed[c].endswith("HUGEINT")
            return f"CAST({quoted(c)} AS DOUBLE)" if wide else quoted(c)

        cols = [as_read(c) for c in (key, *numeric_names)]
        if text_categories:
            cols += [f"CAST({quoted(c)} AS VARCHAR)" for c in cat_names]
        else:
            cols += [as_read(c) for c in cat_names]
        cols += [as_read(label)] if label is not None else []
        table = con.sql(f"SELECT {', '.join(cols)} FROM ({query})").arrow()
        if hasattr(table, "read_all"):  # DuckDB 2 gives a reader: the query runs here
            table = table.read_all()
    if table.num_rows == 0:
        raise DataError(f"domain {domain!r}: the table has no rows", path=where)
    columns = list(table.columns)
    del table  # each column is let go once it is converted
    numeric_types = [typed[c] for c in numeric_names]
    return _Read(domain, where, key, columns, numeric_names, cat_names, label, numeric_types)


def _split_columns(read: _Read) -> tuple[np.ndarray, np.ndarray, list[pa.ChunkedArray]]:
    """The keys (checked) and the numeric features as one float64 array (NaN where
    missing, infinities refused); the columns not yet converted, in order. Each column's
    Arrow memory is let go as soon as it is in numpy."""
    import pyarrow as pa
    import pyarrow.compute as pc

    columns, domain, where = read.columns, read.domain, read.where
    keys = _arrow_keys(columns.pop(0), domain, where, read.key)
    numeric = np.empty((len(keys), len(read.numeric)))
    for j, (c, kind) in enumerate(zip(read.numeric, read.numeric_types, strict=True)):
        col = columns.pop(0)
        if _NUMBER_TYPES.match(kind):
            numeric[:, j] = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)  # NaN
        else:
            values = _numbers(_pandas(col), domain, where, c)
            numeric[:, j] = values.astype("float64").to_numpy(na_value=np.nan)
        del col
    _refuse_infinite(numeric, read.numeric, domain, where)
    return keys, numeric, columns


def _objects(column: pa.ChunkedArray) -> np.ndarray:
    """A categorical column as Python values, None where missing (NaN included), as a
    DataFrame of DuckDB's table gave them: text, integers, floats, booleans; any other
    type through ``_pandas``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return column.to_numpy(zero_copy_only=False)  # str objects, None where null
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind) or pa.types.is_floating(kind):
        missing = np.asarray(pc.is_null(column, nan_is_null=True), bool)
        if pa.types.is_floating(kind):
            values = column.to_numpy(zero_copy_only=False)
        else:  # nulls filled first, so that integers stay integers
            values = pc.fill_null(column, False if pa.types.is_boolean(kind) else 0).to_numpy()
        out = values.astype(object)
        out[missing] = None
        return out
    col = _pandas(column)
    return np.where(col.isna().to_numpy(), None, col.astype(object).to_numpy())


# Arrow integer and boolean types as the nullable pandas types DuckDB gives when a column
# has nulls (integers stay integers, missing values are pd.NA)
_NULLABLE = {
    "int8": "Int8", "int16": "Int16", "int32": "Int32", "int64": "Int64", "uint8": "UInt8",
    "uint16": "UInt16", "uint32": "UInt32", "uint64": "UInt64", "bool": "boolean",
}  # fmt: skip


def _pandas(column: pa.ChunkedArray) -> pd.Series:
    """One Arrow column as the Series a DataFrame of DuckDB's result holds: dates as
    datetime64[us], integers and booleans with nulls nullable (decimals are read as
    doubles by ``_read_arrow``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_date(kind):
        column = pc.cast(column, pa.timestamp("us"))
    if column.null_count and str(column.type) in _NULLABLE:
        dtype = pd.api.types.pandas_dtype(_NULLABLE[str(column.type)])
        return column.to_pandas(types_mapper={column.type: dtype}.get)
    return column.to_pandas()


def _arrow_keys(column: pa.ChunkedArray, domain: str, where: str, key: str) -> np.ndarray:
    """``_keys`` on an Arrow column: integer and text keys checked without pandas (its
    duplicate check of 1.4M text keys took 650 MB); other types go to ``_keys``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    text = pa.types.is_string(kind) or pa.types.is_large_string(kind)
    if not (text or pa.types.is_integer(kind)):
        return _keys(_pandas(column), domain, where, key)
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
