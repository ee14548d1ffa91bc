"""Reading numeric tables with errors that name the file, the column and the row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from splitmesh.errors import DataError


def read_numeric_csv(
    path: str | Path, columns: list[str], label: str | None = None
) -> pd.DataFrame:
    """Read ``columns`` (and ``label``) from a CSV as float64, validating every cell.

    A leading unnamed index column (as written by ``DataFrame.to_csv``) is ignored.
    Rows are numbered from 1 as data rows (line = row + 1, after the header).
    """
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise DataError("no such file", path=where)
    try:
        df = pd.read_csv(path, low_memory=False)
    except pd.errors.EmptyDataError:
        raise DataError("the file is empty", path=where) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"not a readable CSV: {exc}", path=where) from None
    if len(df.columns) and (df.columns[0] == "" or str(df.columns[0]).startswith("Unnamed")):
        df = df.drop(columns=df.columns[0])
    if df.empty:
        raise DataError("the file has a header but no rows", path=where)
    wanted = [*columns, *([label] if label else [])]
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise DataError(
            f"missing column(s) {', '.join(map(repr, missing))}; the file has "
            f"{', '.join(map(str, df.columns[:8]))}{' ...' if len(df.columns) > 8 else ''}",
            path=where,
            column=missing[0],
        )
    out = {}
    for c in wanted:
        raw = df[c]
        values = pd.to_numeric(raw, errors="coerce")
        bad = values.isna() & raw.notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"non-numeric value {raw.iloc[i]!r}", path=where, column=c, row=i + 1)
        nan = values.isna().to_numpy() | ~np.isfinite(values.to_numpy(dtype=np.float64))
        if nan.any():
            i = int(np.flatnonzero(nan)[0])
            raise DataError("missing or infinite value (NaN/inf)", path=where, column=c, row=i + 1)
        out[c] = values.to_numpy(dtype=np.float64)
    return pd.DataFrame(out)


def check_binary_labels(values: np.ndarray, *, path: str, column: str) -> np.ndarray:
    """Labels must be exactly 0 or 1; name the first row that is not."""
    bad = ~np.isin(values, (0.0, 1.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"label value {float(values[i]):g} is not 0 or 1", path=path, column=column, row=i + 1
        )
    y = values.astype(np.int64)
    if len(np.unique(y)) < 2:
        raise DataError(f"the labels hold a single class ({y[0]})", path=path, column=column)
    return y
