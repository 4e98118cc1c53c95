"""Tests for crmscore.labels: horizon boundaries, future value, label kinds and their error messages."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crmscore.errors import DataError
from crmscore.features import build_features
from crmscore.labels import (
    data_end,
    future_value,
    label_kind,
    last_labelable_as_of,
    subscription_churn,
    transaction_churn,
)

AS_OF = pd.Timestamp("2024-03-31")
HORIZON = 30  # so the window is (2024-03-31, 2024-04-30]


def ts(values: list[str]) -> pd.Series:
    return pd.Series(pd.to_datetime(values), dtype="datetime64[ns]")


@pytest.fixture
def boundary_tx() -> pd.DataFrame:
    """One customer per boundary case; customer 6 buys twice inside the horizon."""
    return pd.DataFrame(
        {
            "customer_id": [1, 2, 3, 4, 6, 6, 6],
            "date": ts(
                [
                    "2024-03-31",  # 1: on as_of, not in the horizon
                    "2024-04-30",  # 2: on as_of + horizon, in it
                    "2024-05-01",  # 3: one day past the horizon
                    "2024-04-01",  # 4: first day of the horizon
                    "2024-04-10",
                    "2024-04-20",
                    "2024-03-01",  # 6: before as_of, not counted
                ]
            ),
            "amount": [10.0, 20.0, 30.0, 40.0, 5.0, 7.5, 100.0],
        }
    )


IDS = pd.Index([6, 5, 4, 3, 2, 1])  # 5 never buys; unsorted on purpose


def test_transaction_churn_boundaries(boundary_tx):
    churned = transaction_churn(boundary_tx, IDS, AS_OF, HORIZON)
    assert churned.name == "churned" and churned.index.name == "customer_id"
    assert list(churned.index) == list(IDS)  # aligned to the ids given, in their order
    assert churned.dtype == np.int8
    assert churned.to_dict() == {1: 1, 2: 0, 3: 1, 4: 0, 5: 1, 6: 0}


def test_transaction_churn_accepts_date_strings_and_times(boundary_tx):
    # as_of is normalised to its day; any representation of the same day gives the same label.
    expected = transaction_churn(boundary_tx, IDS, AS_OF, HORIZON)
    for as_of in ("2024-03-31", AS_OF.date(), pd.Timestamp("2024-03-31 18:30")):
        pd.testing.assert_series_equal(transaction_churn(boundary_tx, IDS, as_of, HORIZON), expected)


def test_future_value_sums_the_horizon_only(boundary_tx):
    value = future_value(boundary_tx, IDS, AS_OF, HORIZON)
    assert list(value.index) == list(IDS) and value.index.name == "customer_id"
    assert list(value.columns) == ["future_spend", "future_purchases"]
    assert value["future_spend"].to_dict() == {6: 12.5, 5: 0.0, 4: 40.0, 3: 0.0, 2: 20.0, 1: 0.0}
    assert value["future_purchases"].to_dict() == {6: 2, 5: 0, 4: 1, 3: 0, 2: 1, 1: 0}
    assert value["future_spend"].dtype == np.float64 and value["future_purchases"].dtype == np.int64
    # Churned exactly when nothing is bought in the horizon.
    churned = transaction_churn(boundary_tx, IDS, AS_OF, HORIZON)
    np.testing.assert_array_equal(churned == 1, value["future_purchases"] == 0)


def test_labels_and_features_split_history_at_as_of(small_sim):
    # Purchases up to as_of (features) plus those in the horizon (label) are those up to as_of + h.
    tables = small_sim.tables()
    as_of, horizon = pd.Timestamp("2025-06-15"), 90
    now = build_features(tables, as_of)
    later = build_features(tables, as_of + pd.Timedelta(days=horizon)).loc[now.index]
    value = future_value(tables["transactions"], now.index, as_of, horizon)
    np.testing.assert_array_equal(now["frequency_total"] + value["future_purchases"], later["frequency_total"])
    np.testing.assert_allclose(now["monetary_total"] + value["future_spend"], later["monetary_total"], rtol=1e-9)
    churned = transaction_churn(tables["transactions"], now.index, as_of, horizon)
    assert 0.1 < churned.mean() < 0.9  # both classes present in simulated data


# ---------------------------------------------------------------------------------------------------
# subscription churn and label kinds
# ---------------------------------------------------------------------------------------------------


def test_subscription_churn_reads_the_flag():
    customers = pd.DataFrame({"customer_id": ["a", "b", "c"], "churned": pd.array([True, False, True], "boolean")})
    label = subscription_churn(customers, pd.Index(["c", "a", "b"]))
    assert label.name == "churned" and label.dtype == np.int8
    assert label.to_dict() == {"c": 1, "a": 1, "b": 0}


@pytest.mark.parametrize(
    ("flags", "ids", "missing"),
    [
        (pd.array([True, pd.NA, False], "boolean"), ["a", "b", "c"], "'b'"),  # flag left empty
        (pd.array([True, False, False], "boolean"), ["a", "z"], "'z'"),  # customer not in the table
    ],
)
def test_subscription_churn_missing_flag_names_column_and_customer(flags, ids, missing):
    customers = pd.DataFrame({"customer_id": ["a", "b", "c"], "churned": flags})
    with pytest.raises(DataError, match="column 'churned'") as info:
        subscription_churn(customers, pd.Index(ids))
    assert missing in str(info.value)


@pytest.fixture
def kinds_tables(boundary_tx) -> dict[str, pd.DataFrame]:
    customers = pd.DataFrame({"customer_id": [1, 2, 3], "churned": [False, True, False]})
    return {"customers": customers, "transactions": boundary_tx}


def test_label_kind_choices(kinds_tables):
    customers = kinds_tables["customers"]
    no_flag = customers.drop(columns="churned")
    empty_tx = kinds_tables["transactions"].iloc[:0]
    # auto prefers the dated transaction label, falls back to the flag.
    assert label_kind(kinds_tables) == "transaction"
    assert label_kind({"customers": customers}) == "subscription"
    assert label_kind({"customers": customers, "transactions": empty_tx}) == "subscription"
    # explicit choices win when the data supports them.
    assert label_kind(kinds_tables, "subscription") == "subscription"
    assert label_kind({"customers": no_flag, "transactions": kinds_tables["transactions"]}, "transaction") == (
        "transaction"
    )


@pytest.mark.parametrize(
    ("has_flag", "tx", "requested", "message"),
    [
        (True, None, "transaction", "transaction churn needs a transactions table"),
        (True, "empty", "transaction", "transaction churn needs a transactions table"),
        (False, "rows", "subscription", "column 'churned'"),
        (False, None, "auto", "column 'churned'"),
        (False, "empty", "auto", "column 'churned'"),
    ],
)
def test_label_kind_errors(kinds_tables, has_flag, tx, requested, message):
    customers = kinds_tables["customers"] if has_flag else kinds_tables["customers"].drop(columns="churned")
    tables = {"customers": customers}
    if tx is not None:
        tables["transactions"] = kinds_tables["transactions"].iloc[: (0 if tx == "empty" else None)]
    with pytest.raises(DataError, match=message):
        label_kind(tables, requested)


# ---------------------------------------------------------------------------------------------------
# end of history
# ---------------------------------------------------------------------------------------------------


def test_last_labelable_as_of_leaves_a_whole_horizon(boundary_tx):
    tables = {"customers": pd.DataFrame({"customer_id": [1]}), "transactions": boundary_tx}
    assert data_end(tables) == pd.Timestamp("2024-05-01")
    assert last_labelable_as_of(tables, 30) == pd.Timestamp("2024-04-01")
    assert last_labelable_as_of(tables, 1) == pd.Timestamp("2024-04-30")
    # A time of day on the last purchase does not shift the end of the history.
    late = boundary_tx.assign(date=boundary_tx["date"].where(boundary_tx["date"] < "2024-05-01", "2024-05-01 17:45"))
    assert last_labelable_as_of({"transactions": late}, 30) == pd.Timestamp("2024-04-01")


def test_last_labelable_as_of_on_simulated_data(small_sim):
    tables = small_sim.tables()
    assert last_labelable_as_of(tables, 90) == pd.Timestamp("2026-10-31") - pd.Timedelta(days=90)


@pytest.mark.parametrize("tables", [{}, {"transactions": pd.DataFrame({"customer_id": [], "date": []})}])
def test_last_labelable_as_of_needs_transactions(tables):
    with pytest.raises(DataError, match="transactions: no rows"):
        last_labelable_as_of(tables, 90)
