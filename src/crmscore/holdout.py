"""Labelled holdout data for evaluating a registered model on a file of your own.

A published train / test split, or next quarter's customers, is evaluated by training on one file and
scoring the other with the registered model (``crmscore evaluate``). These functions build, from the
validated tables of that file, the features and the label the model is judged on — the same features and
labels as training builds, so the figures compare with the training run's test metrics:

* **churn** — snapshot data (a ``churned`` flag): every labelled customer as of the snapshot date;
  transaction data: the customers known on the test as-of date (``churn.test_as_of``, default the last
  date whose horizon the file observes fully) and whether they bought in the horizon after it;
* **CLV** — the customers known on the CLV test as-of date and their spend in the horizon after it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import pandas as pd

from crmscore.churn import snapshot_frame
from crmscore.config import Settings
from crmscore.errors import DataError
from crmscore.features import build_features
from crmscore.labels import future_value, label_kind, last_labelable_as_of, transaction_churn

__all__ = ["Holdout", "churn_holdout", "clv_holdout"]


@dataclasses.dataclass
class Holdout:
    """Features and label of the customers a model is evaluated on, as of one date."""

    X: pd.DataFrame
    y: pd.Series
    as_of: pd.Timestamp
    kind: str  # subscription | transaction (churn), value (CLV)

    def __len__(self) -> int:
        return len(self.y)


def _test_as_of(tables: Mapping[str, pd.DataFrame], horizon_days: int, requested) -> pd.Timestamp:
    latest = last_labelable_as_of(tables, horizon_days)
    when = pd.Timestamp(requested) if requested else latest
    if when > latest:
        raise DataError(
            f"test as-of date {when.date()} leaves its {horizon_days}-day horizon unobserved (the file's history "
            f"ends {(latest + pd.Timedelta(days=horizon_days)).date()})"
        )
    return when


def churn_holdout(
    tables: Mapping[str, pd.DataFrame], settings: Settings, snapshot_date: pd.Timestamp | None = None
) -> Holdout:
    """Every labelled customer of the file, with the churn label training uses (see the module docstring)."""
    cfg = settings.churn
    kind = label_kind(tables, cfg.label)
    if kind == "subscription":
        X, y, when = snapshot_frame(tables, settings.features, snapshot_date)
    else:
        when = _test_as_of(tables, cfg.horizon_days, cfg.test_as_of)
        X = build_features(tables, when, settings.features)
        y = transaction_churn(tables["transactions"], X.index, when, cfg.horizon_days)
    if y.nunique() < 2:
        raise DataError(f"churn label as of {when.date()}: only one class in the file; ROC AUC needs both")
    return Holdout(X=X, y=y, as_of=when, kind=kind)


def clv_holdout(tables: Mapping[str, pd.DataFrame], settings: Settings) -> Holdout:
    """The customers known on the CLV test as-of date and their spend in the horizon after it."""
    if "transactions" not in tables or tables["transactions"].empty:
        raise DataError(
            "CLV evaluation needs a transactions table: the spend after the as-of date is the label "
            "(contractual CLV of subscription data has no observed value to compare with)"
        )
    cfg = settings.clv
    when = _test_as_of(tables, cfg.horizon_days, cfg.test_as_of)
    X = build_features(tables, when, settings.features)
    y = future_value(tables["transactions"], X.index, when, cfg.horizon_days)["future_spend"]
    return Holdout(X=X, y=y.rename("future_spend"), as_of=when, kind="value")
