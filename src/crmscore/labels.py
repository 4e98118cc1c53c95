"""Churn labels and future value: what happens after the as-of date, and only that.

* **Transaction churn**: a customer churns when they make no purchase in ``(as_of, as_of + horizon]``.
  It can only be labelled when the whole horizon is observed (``as_of + horizon <= last day of data``);
  :func:`last_labelable_as_of` gives the latest such as-of date.
* **Subscription churn**: the ``churned`` flag the business records (a snapshot label, no dates).
* **Future value**: spend in ``(as_of, as_of + horizon]``, the target of the CLV models.

Labels read only rows dated after ``as_of``; features (``features.py``) read only rows on or before it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import numpy as np
import pandas as pd

from crmscore.errors import DataError

__all__ = [
    "label_kind",
    "transaction_churn",
    "subscription_churn",
    "future_value",
    "data_end",
    "data_start",
    "last_labelable_as_of",
]


def label_kind(tables: Mapping[str, pd.DataFrame], requested: str = "auto") -> str:
    """``"transaction"`` or ``"subscription"``: the requested kind, or the one the tables support.

    ``auto`` prefers transaction churn when there are transactions (a dated, point-in-time label) and
    falls back to the ``churned`` flag of ``customers``.
    """
    if requested not in {"auto", "transaction", "subscription"}:
        raise ValueError(f"churn label kind must be auto, transaction or subscription, got {requested!r}")
    has_tx = "transactions" in tables and len(tables["transactions"]) > 0
    has_flag = "churned" in tables["customers"].columns
    if requested == "transaction" or (requested == "auto" and has_tx):
        if not has_tx:
            raise DataError("churn.label: transaction churn needs a transactions table")
        return "transaction"
    if not has_flag:
        raise DataError("customers: column 'churned': subscription churn needs it (or give a transactions table)")
    return "subscription"


def data_end(tables: Mapping[str, pd.DataFrame]) -> pd.Timestamp:
    """The last day the transaction history covers (its latest transaction date)."""
    if "transactions" not in tables or tables["transactions"].empty:
        raise DataError("transactions: no rows, so no history end date")
    return pd.Timestamp(tables["transactions"]["date"].max()).normalize()


def data_start(tables: Mapping[str, pd.DataFrame]) -> pd.Timestamp:
    """The first day of the history: the first signup, else (no signup dates) the first transaction."""
    customers = tables["customers"]
    if "signup_date" in customers.columns:
        return pd.Timestamp(customers["signup_date"].min())
    return pd.Timestamp(tables["transactions"]["date"].min()).normalize()


def last_labelable_as_of(tables: Mapping[str, pd.DataFrame], horizon_days: int) -> pd.Timestamp:
    """The latest as-of date whose whole horizon lies inside the history."""
    return data_end(tables) - pd.Timedelta(days=horizon_days)


def _window(tx: pd.DataFrame, as_of: pd.Timestamp, horizon_days: int) -> pd.DataFrame:
    end = as_of + pd.Timedelta(days=horizon_days)
    dates = tx["date"]
    return tx.loc[(dates > as_of) & (dates <= end)]


def transaction_churn(
    transactions: pd.DataFrame, customer_ids: pd.Index, as_of: dt.date | str | pd.Timestamp, horizon_days: int
) -> pd.Series:
    """1 where the customer makes no purchase in ``(as_of, as_of + horizon_days]``, else 0.

    ``customer_ids`` are the customers to label (those known on ``as_of``); the result is aligned
    to them and named ``churned``.
    """
    as_of = pd.Timestamp(as_of).normalize()
    buyers = _window(transactions, as_of, horizon_days)["customer_id"].unique()
    label = (~pd.Index(customer_ids).isin(buyers)).astype(np.int8)
    return pd.Series(label, index=pd.Index(customer_ids, name="customer_id"), name="churned")


def subscription_churn(customers: pd.DataFrame, customer_ids: pd.Index) -> pd.Series:
    """The recorded ``churned`` flag as 0/1, aligned to ``customer_ids``; missing flags are an error."""
    flag = customers.set_index("customer_id")["churned"].reindex(customer_ids)
    if flag.isna().any():
        missing = flag.index[flag.isna()][0]
        raise DataError(f"customers: column 'churned': missing for customer {missing!r} (needed as label)")
    return flag.astype(np.int8).rename("churned")


def future_value(
    transactions: pd.DataFrame, customer_ids: pd.Index, as_of: dt.date | str | pd.Timestamp, horizon_days: int
) -> pd.DataFrame:
    """Spend and purchases of each customer in ``(as_of, as_of + horizon_days]`` (zeros for none)."""
    as_of = pd.Timestamp(as_of).normalize()
    window = _window(transactions, as_of, horizon_days)
    grouped = window.groupby("customer_id")["amount"].agg(["sum", "size"])
    index = pd.Index(customer_ids, name="customer_id")
    return pd.DataFrame(
        {
            "future_spend": grouped["sum"].reindex(index, fill_value=0.0).to_numpy(dtype=float),
            "future_purchases": grouped["size"].reindex(index, fill_value=0).to_numpy(dtype=np.int64),
        },
        index=index,
    )
