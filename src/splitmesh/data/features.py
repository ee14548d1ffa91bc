"""Turning a domain's columns into model inputs, fitted on training rows only.

Numeric columns: missing values filled with the training mean, a 0/1 "was missing" column
added for each column that had gaps in training, then standard scaling. Categorical
columns: codes 1..k for the values seen in training, 0 for missing or unseen values.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd


@dataclasses.dataclass(frozen=True)
class NumericPrep:
    mean: np.ndarray
    std: np.ndarray
    holes: tuple[int, ...]  # columns that get a "was missing" flag

    @classmethod
    def fit(cls, x: np.ndarray) -> NumericPrep:
        x = np.asarray(x, dtype=np.float64)
        missing = np.isnan(x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-missing: mean 0, std 1 below
            mean = np.nanmean(x, axis=0) if len(x) else np.zeros(x.shape[1])
            std = np.nanstd(x, axis=0) if len(x) else np.ones(x.shape[1])
        mean = np.where(np.isfinite(mean), mean, 0.0)
        std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
        holes = tuple(int(j) for j in np.flatnonzero(missing.any(axis=0)))
        return cls(mean, std, holes)

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        missing = np.isnan(x)
        scaled = np.where(missing, 0.0, (x - self.mean) / self.std)
        if not self.holes:
            return scaled
        return np.column_stack([scaled, missing[:, list(self.holes)].astype(np.float64)])

    def names(self, columns: list[str] | tuple[str, ...]) -> tuple[str, ...]:
        return (*columns, *(f"{columns[j]}_missing" for j in self.holes))

    @property
    def width(self) -> int:
        return len(self.mean) + len(self.holes)


@dataclasses.dataclass(frozen=True)
class CategoryVocab:
    """Training values of each categorical column, in sorted order (code = index + 1)."""

    values: tuple[tuple[str, ...], ...]

    @classmethod
    def fit(cls, columns: np.ndarray) -> CategoryVocab:
        cols = np.asarray(columns, dtype=object).reshape(len(columns), -1)
        return cls(
            tuple(tuple(sorted(set(_as_text(cols[:, j])) - {""})) for j in range(cols.shape[1]))
        )

    def transform(self, columns: np.ndarray) -> np.ndarray:
        cols = np.asarray(columns, dtype=object).reshape(len(columns), -1)
        out = np.zeros(cols.shape, np.int64)
        for j, vocab in enumerate(self.values):
            index = pd.Index(vocab)
            codes = index.get_indexer(_as_text(cols[:, j]))  # -1: unseen or missing
            out[:, j] = codes + 1
        return out

    @property
    def cardinalities(self) -> tuple[int, ...]:
        return tuple(len(v) + 1 for v in self.values)


def _as_text(values: np.ndarray) -> list[str]:
    """Category values as strings; missing ones as ""."""
    return ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values]


@dataclasses.dataclass(frozen=True)
class FeaturePrep:
    """A domain's fitted preparation: what its bottom model's inputs are."""

    numeric: NumericPrep
    categorical: CategoryVocab

    @classmethod
    def fit(cls, numeric: np.ndarray, categorical: np.ndarray) -> FeaturePrep:
        return cls(NumericPrep.fit(numeric), CategoryVocab.fit(categorical))

    def transform(self, numeric: np.ndarray, categorical: np.ndarray):
        return self.numeric.transform(numeric), self.categorical.transform(categorical)

    def to_dict(self) -> dict:
        """JSON-ready, to publish with the bottom model."""
        n = self.numeric
        return {
            "mean": n.mean.tolist(),
            "std": n.std.tolist(),
            "missing_flags": list(n.holes),
            "categories": [list(v) for v in self.categorical.values],
        }

    @classmethod
    def from_dict(cls, d: dict) -> FeaturePrep:
        numeric = NumericPrep(
            np.asarray(d["mean"], dtype=np.float64),
            np.asarray(d["std"], dtype=np.float64),
            tuple(d["missing_flags"]),
        )
        return cls(numeric, CategoryVocab(tuple(tuple(v) for v in d["categories"])))


def missing_notes(missing: dict[str, dict[str, int]], mean: str) -> list[str]:
    """One note per domain column with missing values (``missing``: domain -> column ->
    count): how many, and how its domain filled them; ``mean``: what the mean is of."""
    return [
        f"{d}.{col}: {n} missing value(s) among its rows, filled by the domain (numeric: "
        f"{mean} mean plus a was-missing column; categorical: code 0)"
        for d, cols in missing.items()
        for col, n in cols.items()
    ]


def missing_counts(
    numeric: np.ndarray, categorical: np.ndarray, names: list[str], cat_names: list[str]
) -> dict[str, int]:
    """Missing values per column, for the run report (only columns that have any)."""
    out = {}
    for j, name in enumerate(names):
        n = int(np.isnan(numeric[:, j]).sum())
        if n:
            out[name] = n
    for j, name in enumerate(cat_names):
        n = sum(1 for v in _as_text(categorical[:, j]) if v == "")
        if n:
            out[name] = n
    return out
