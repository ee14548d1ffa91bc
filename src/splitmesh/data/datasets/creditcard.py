"""The ULB credit-card fraud schema (Kaggle ``creditcard.csv``): loader and generator.

Columns: Time, V1..V28 (PCA components), Amount, Class (1 = fraud).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from splitmesh.data.tables import check_binary_labels, read_numeric_csv
from splitmesh.errors import ConfigError

V = [f"V{i}" for i in range(1, 29)]
FEATURES = ["Time", *V, "Amount"]
LABEL = "Class"

# The source paper's three domains, in the order ``--domains N`` adds them.
DOMAINS: dict[str, list[str]] = {
    "payments": ["Time", *V[0:9]],
    "cardholder": V[9:19],
    "security": [*V[19:28], "Amount"],
}

FRAUD_RATE = 492 / 284_807  # the original's imbalance, about 0.17 %
ORIGINAL_ROWS = 284_807


@dataclasses.dataclass(frozen=True)
class CreditCardTable:
    """Feature columns (float64) and labels; ``source`` says where they came from."""

    x: np.ndarray
    y: np.ndarray
    source: str
    columns: tuple[str, ...] = tuple(FEATURES)


def domain_names(n: int) -> list[str]:
    if not 1 <= n <= len(DOMAINS):
        raise ConfigError(f"The 'domains' parameter must be 1 to {len(DOMAINS)}. Got {n} instead.")
    return list(DOMAINS)[:n]


def load_creditcard(path: str | Path) -> CreditCardTable:
    """Read and validate a creditcard.csv (the original or a subset with an index column)."""
    df = read_numeric_csv(path, FEATURES, LABEL)
    y = check_binary_labels(df[LABEL].to_numpy(), path=str(path), column=LABEL)
    return CreditCardTable(x=df[FEATURES].to_numpy(np.float64), y=y, source=str(path))


# Spread of V1..V28 in the original (they are PCA components: decreasing variance), and the
# direction frauds move in: strongest in the cardholder domain (V10..V19), then payments,
# weakest in security, so adding domains one by one shows what each brings.
_V_STD = np.array(
    [1.96, 1.65, 1.52, 1.42, 1.38, 1.33, 1.24, 1.19, 1.10, 1.09, 1.02, 1.00, 1.00, 0.96,
     0.92, 0.88, 0.85, 0.84, 0.81, 0.77, 0.73, 0.73, 0.62, 0.61, 0.52, 0.48, 0.40, 0.33]
)  # fmt: skip
_FRAUD_SHIFT = np.array(
    [-1.6, 1.3, -2.2, 1.8, -1.0, -0.5, -1.9, 0.3, -1.0,
     -2.6, 1.7, -2.8, 0.0, -3.2, 0.0, -1.9, -3.0, -1.1, 0.4,
     0.3, 0.5, 0.0, 0.0, -0.1, 0.1, 0.0, 0.4, 0.3]
)  # fmt: skip


def synthetic_creditcard(
    n_rows: int, seed: int = 0, *, fraud_rate: float = FRAUD_RATE
) -> CreditCardTable:
    """Rows of the creditcard schema with the original's imbalance and a learnable signal.

    Frauds are shifted along ``_FRAUD_SHIFT`` by a per-row severity (some frauds look
    normal, so scores overlap as in the real data), with heavier tails and larger amounts.
    """
    if n_rows < 100:
        raise ConfigError(f"The 'synthetic_rows' parameter must be >= 100. Got {n_rows} instead.")
    rng = np.random.default_rng(seed)
    n_fraud = max(2, round(n_rows * fraud_rate))
    y = np.zeros(n_rows, np.int64)
    y[rng.choice(n_rows, size=n_fraud, replace=False)] = 1
    # two days of seconds, with fewer transactions at night
    hours = rng.choice(48, size=n_rows, p=_hour_weights())
    time = np.sort(hours * 3600 + rng.uniform(0, 3600, n_rows)).round()
    v = rng.standard_t(df=5, size=(n_rows, 28)) * (_V_STD / np.sqrt(5 / 3))
    fraud = y == 1
    severity = rng.gamma(shape=2.0, scale=0.7, size=n_fraud)[:, None]
    v[fraud] += severity * _FRAUD_SHIFT + rng.normal(0, 0.8, size=(n_fraud, 28)) * _V_STD
    # a non-linear cue: frauds pair a low V14 with a high |V4|
    v[fraud, 3] += 0.6 * np.abs(v[fraud, 13])
    amount = np.round(rng.lognormal(3.0, 1.4, n_rows), 2)
    amount[fraud] = np.round(rng.lognormal(3.4, 1.8, n_fraud), 2)
    x = np.column_stack([time, v, amount])
    return CreditCardTable(x=x, y=y, source=f"synthetic({n_rows} rows, seed {seed})")


def _hour_weights() -> np.ndarray:
    w = np.array([0.3 if (h % 24) < 7 else 1.0 for h in range(48)])
    return w / w.sum()


def write_creditcard_csv(
    path: str | Path, table: CreditCardTable, *, chunk_rows: int = 100_000, index: bool = False
) -> None:
    """Write a table in the Kaggle layout, in chunks so memory stays bounded; ``index``:
    with a leading unnamed row-number column, as the real subset has (its key)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(table.y), chunk_rows):
        stop = start + chunk_rows
        rows = range(start, min(stop, len(table.y)))
        df = pd.DataFrame(table.x[start:stop], columns=FEATURES, index=rows)
        df[LABEL] = table.y[start:stop]
        df.to_csv(path, mode="w" if start == 0 else "a", header=start == 0, index=index)
