"""A seeded sample of whole customers across the input tables, for training on large customer bases.

Churn and CLV training stack several past as-of dates, each with point-in-time features of every
customer known then, and tune LightGBM on them: on a million customers that is millions of rows, far
more time and memory than the models need to be as good. :func:`sample_customers` draws a number of
customers once, with the model's seed, and keeps every row of theirs in every table (transactions,
payments, interactions, campaigns), so the features and labels of a sampled customer are exactly those
of the full data; it runs before any cutoff is stacked or feature built, so it saves that time too.

The draw depends only on the set of customer ids, the sample size and the seed (the ids are sorted
before drawing), so the same data, params and seed give the same sample whatever the row order.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping

import numpy as np
import pandas as pd

__all__ = ["CustomerSample", "sample_customers"]


@dataclasses.dataclass(frozen=True)
class CustomerSample:
    """What :func:`sample_customers` drew: sizes, seed, the setting that asked for it and a hash of the ids."""

    customers: int
    of_customers: int
    seed: int
    setting: str
    ids_hash: str

    def note(self) -> str:
        """One line for the training output, e.g. "trained on a sample of 200,000 of 1,000,000 customers …"."""
        return (
            f"trained on a sample of {self.customers:,} of {self.of_customers:,} customers "
            f"({self.setting}, seed {self.seed})"
        )

    def params(self) -> dict[str, str]:
        """The sample as MLflow params (``sample.*``)."""
        return {
            "sample.customers": str(self.customers),
            "sample.of_customers": str(self.of_customers),
            "sample.seed": str(self.seed),
            "sample.ids_hash": self.ids_hash,
        }


def _ids_hash(ids: pd.Index) -> str:
    return hashlib.sha256("\n".join(map(str, ids)).encode()).hexdigest()[:16]


def sample_customers(
    tables: Mapping[str, pd.DataFrame], size: int | None, seed: int, setting: str = "sample_customers"
) -> tuple[dict[str, pd.DataFrame], CustomerSample | None]:
    """``tables`` restricted to ``size`` customers drawn without replacement with ``seed``.

    Every table with a ``customer_id`` column keeps the rows of the drawn customers only, in their
    original order (with a fresh index, as the loader gives). With ``size`` None, or no more customers
    than ``size``, the tables come back as they are and the sample is None (nothing to say).
    ``setting`` names the parameter in the note.
    """
    tables = dict(tables)
    if size is None:
        return tables, None
    if size <= 0:
        raise ValueError(f"{setting}: expected a positive number of customers, got {size}")
    ids = pd.Index(tables["customers"]["customer_id"].to_numpy()).unique()
    if len(ids) <= size:
        return tables, None
    ordered = ids.sort_values()
    rng = np.random.default_rng(seed)
    positions = np.sort(rng.choice(len(ordered), size=size, replace=False))
    chosen = ordered[positions]
    for name, table in tables.items():
        if table is not None and "customer_id" in table.columns:
            tables[name] = table.loc[table["customer_id"].isin(chosen).to_numpy()].reset_index(drop=True)
    return tables, CustomerSample(
        customers=int(size), of_customers=int(len(ids)), seed=int(seed), setting=setting, ids_hash=_ids_hash(chosen)
    )
