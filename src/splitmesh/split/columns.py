"""A domain's columns as a party: its own scaler, bottom model and optimizer.

It hands out embeddings of its own rows and partial distances between them, never a
column. Rows are addressed by aligned positions within a partition.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from splitmesh.config import Optim, from_message
from splitmesh.data.features import FeaturePrep, missing_counts
from splitmesh.data.resampling import apply_plan, squared_distances
from splitmesh.data.sources import DomainTable
from splitmesh.errors import ConfigError, DataError, NotFittedError, ProtocolError
from splitmesh.io import atomic_write_json
from splitmesh.nn.network import bottom_model, bottom_wire, build_bottom
from splitmesh.split.bottom import BottomParty
from splitmesh.split.checkpoint import digest
from splitmesh.split.common import PARTITIONS, take
from splitmesh.split.party import handles
from splitmesh.split.saved import save_module, wire_meta
from splitmesh.transport.messages import (
    Ack,
    Augment,
    Distances,
    Hello,
    PartialDistances,
    SaveModel,
    SetupDomain,
)


class ColumnsParty(BottomParty):
    """One domain's node logic. ``table`` holds only this domain's numeric columns (NaN
    where missing), ``categorical`` its categorical ones (raw values), in aligned order.

    ``product``: the domain's declared data product (mesh/products.py); its input contract is
    checked against the data at every Hello, and a trained model is published under its
    contracts. ``model_dir``: where SaveModel writes the trained part and its product."""

    setup_message = "SetupDomain"

    def __init__(
        self,
        name: str,
        table: np.ndarray,
        columns: list[str],
        *,
        categorical: np.ndarray | None = None,
        categorical_names: list[str] | None = None,
        state_dir: str | None = None,
        model_dir: str | Path | None = None,
        product=None,
        source: DomainTable | None = None,
    ) -> None:
        super().__init__(name, state_dir=state_dir)
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.product = product
        self._model_cfg: dict | None = None
        table = np.asarray(table, dtype=np.float64)
        if table.ndim != 2 or table.shape[1] != len(columns):
            raise DataError(
                f"domain {name!r}: table of shape {table.shape} does not match "
                f"{len(columns)} columns"
            )
        self.categorical_names = list(categorical_names or [])
        if categorical is None:
            categorical = np.empty((len(table), 0), dtype=object)
        if categorical.shape != (len(table), len(self.categorical_names)):
            raise DataError(
                f"domain {name!r}: categorical columns of shape {categorical.shape} do not "
                f"match {len(self.categorical_names)} names and {len(table)} rows"
            )
        self.table, self.columns, self.categorical = table, list(columns), categorical
        self._x64: dict[str, np.ndarray] = {}  # prepared numeric rows per partition
        self._x: dict[str, torch.Tensor] = {}  # float32 copies fed to the model
        self._codes: dict[str, torch.Tensor] = {}  # category codes per partition
        # the table as its contract sees it; rows aligned by position when there is no key
        self.source = source or DomainTable(
            name, "(in memory)", "row", np.arange(len(table)), self.columns, table,
            self.categorical_names, categorical,
        )  # fmt: skip

    @handles(Hello)
    def on_hello(self, msg: Hello) -> Ack:
        if self.product is not None:
            from splitmesh.mesh.contracts import check_table

            check_table(self.product.input, self.source, rows=msg.purpose == "train")
        return super().on_hello(msg)

    # -- setup ---------------------------------------------------------------------------
    @handles(SetupDomain)
    def on_setup_domain(self, msg: SetupDomain) -> Ack:
        who = f"domain {self.name!r}"
        model = bottom_model(msg.model, who)  # validated before any work
        optim = from_message(Optim, msg.optim, who)
        parts = {p: np.asarray(getattr(msg, p), dtype=np.int64) for p in PARTITIONS}
        for p, pos in parts.items():
            self.check_positions(p, pos, len(self.table))
        # fitted on training rows only: validation and test rows must not leak into scaling
        train = parts["train"]
        self.prep_ = FeaturePrep.fit(self.table[train], self.categorical[train])
        for p, pos in parts.items():
            self._set_partition(p, *self.prep_.transform(self.table[pos], self.categorical[pos]))
        cards = self.prep_.categorical.cardinalities
        self.bottom_ = build_bottom(model, self.name, self.prep_.numeric.width, msg.seed, cards)
        self.optimizer_ = optim.build(self.bottom_.parameters())
        self.wire_dtype, self.noise_seed = msg.wire_dtype, msg.seed
        self._model_cfg = bottom_wire(model)
        missing = missing_counts(self.table, self.categorical, self.columns, self.categorical_names)
        return Ack(
            info={
                "n_features": len(self.columns) + len(self.categorical_names),
                "cut_width": model.bottom[-1],
                "rows": {p: len(v) for p, v in parts.items()},
                "missing": missing,
            }
        )

    # -- the trained bottom model, published as this domain's data product ------------------
    def _folder(self) -> Path:
        if self.model_dir is None:
            raise ConfigError(f"domain {self.name!r} has no model folder", hint="give --out DIR")
        return self.model_dir

    def model_facts(self, msg: SaveModel) -> dict:
        """What model.json records beside the weights (subclasses add their key); the
        coordinator's ``meta`` is checked and cannot overwrite the domain's own facts."""
        return {
            **wire_meta(msg.meta, f"domain {self.name!r}"),
            "domain": self.name,
            "run": self.run_id,
            "numeric": self.columns,
            "categorical": self.categorical_names,
            "bottom": self._model_cfg,
            "input_width": self.prep_.numeric.width,
            "cardinalities": list(self.prep_.categorical.cardinalities),
            "cut_width": self._model_cfg["hidden"][-1],
            "protection": self.protections() or None,
            "data": self.fingerprint(),
        }

    @handles(SaveModel)
    def on_save_model(self, msg: SaveModel) -> Ack:
        from splitmesh.mesh.products import publish

        if self.bottom_ is None or self._model_cfg is None:
            raise NotFittedError(f"domain {self.name!r} has no trained model to save")
        folder, facts = self._folder(), self.model_facts(msg)
        save_module(folder / "bottom.pt", self.bottom_)
        prep = self.prep_.to_dict()
        atomic_write_json(folder / "prep.json", prep)
        atomic_write_json(folder / "model.json", facts)
        product = publish(
            folder,
            table=self.source,
            bottom=self.bottom_,
            input_width=facts["input_width"],
            n_categorical=len(facts["cardinalities"]),
            cut_width=facts["cut_width"],
            prep=prep,
            meta=facts,
            declared=self.product,
        )
        return Ack(info={"folder": str(folder), "product": product})

    def _set_partition(self, partition: str, x64: np.ndarray, codes: np.ndarray) -> None:
        self._x64[partition] = x64
        self._x[partition] = torch.from_numpy(x64.astype(np.float32))
        self._codes[partition] = torch.from_numpy(codes)

    def _rows(self, partition: str) -> np.ndarray:
        if partition not in self._x64:
            raise NotFittedError(
                f"domain {self.name!r} has no partition {partition!r}; set up first"
            )
        return self._x64[partition]

    def fingerprint(self) -> dict:
        columns = [*self.columns, *self.categorical_names]
        data = [self.table] + ([self.categorical.astype(str)] if self.categorical.size else [])
        return {"rows": len(self.table), "columns": columns, "sha256": digest(*data)}

    # -- resampling across the boundary ----------------------------------------------------
    @handles(PartialDistances)
    def on_partial_distances(self, msg: PartialDistances) -> Distances:
        x = self._rows(msg.partition)
        self.check_positions(msg.partition, msg.positions, len(x))
        return Distances(values=squared_distances(x[msg.positions]))

    @handles(Augment)
    def on_augment(self, msg: Augment) -> Ack:
        x = self._rows(msg.partition)
        self.check_positions(msg.partition, msg.base, len(x))
        if self.categorical_names and len(msg.order) != len(x):
            raise ProtocolError(
                f"domain {self.name!r} has categorical columns, which SMOTE cannot interpolate"
            )
        new = apply_plan(x, msg.base, msg.rows, msg.neighbours, msg.gaps, msg.order)
        codes = self._codes[msg.partition].numpy()  # no categorical columns: (n, 0)
        codes = np.concatenate([codes, codes[msg.base[msg.rows]]])[msg.order]
        self._set_partition(msg.partition, new, codes)
        return Ack(info={"rows": len(new)})

    def _inputs(self, partition: str, positions: np.ndarray) -> tuple[torch.Tensor, ...]:
        x = self._x.get(partition)
        if x is None:
            raise ProtocolError(f"domain {self.name!r} has no partition {partition!r}")
        self.check_positions(partition, positions, len(x))
        return take(x, positions), take(self._codes[partition], positions)
