"""Tests for crmscore.features: no leakage (proven by rewriting the future), hand-checked values,
whichever tables exist (Telco, CDNOW), descriptions of every column, determinism."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from crmscore.config import FeatureSettings
from crmscore.data import public
from crmscore.features import FEATURES, LABEL_COLUMNS, build_features, describe, feature_columns
from crmscore.labels import future_value

SIM_AS_OF = pd.Timestamp("2025-06-15")  # the simulated history runs 2023-11-01 .. 2026-10-31
DAY = pd.Timedelta(days=1)


def has_public(relpath: str) -> bool:
    return (public.data_dir() / relpath).is_file()


# ---------------------------------------------------------------------------------------------------
# no leakage: rewrite everything after as_of, the features must not move
# ---------------------------------------------------------------------------------------------------


def _rotate(values: pd.Series, mask: np.ndarray, shift: int = 1) -> pd.Series:
    """A categorical column with the masked rows moved to another of its existing categories."""
    codes = values.cat.codes.to_numpy().copy()
    k = len(values.cat.categories)
    codes[mask & (codes >= 0)] = (codes[mask & (codes >= 0)] + shift) % k
    return pd.Series(pd.Categorical.from_codes(codes, dtype=values.dtype), index=values.index)


def _days_after(rng: np.random.Generator, as_of: pd.Timestamp, size: int, most: int = 400) -> pd.Series:
    """Random days strictly after ``as_of`` (1 .. most days later), as datetime64[ns]."""
    return pd.Series(as_of + pd.to_timedelta(rng.integers(1, most + 1, size), unit="D")).astype("datetime64[ns]")


def rewrite_future(tables: dict[str, pd.DataFrame], as_of: pd.Timestamp, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Copy of ``tables`` where every row dated after ``as_of`` is changed, some deleted, new ones added.

    Rows on or before ``as_of`` keep their values and their order, so sums come out bit for bit the same.
    """
    rng = np.random.default_rng(seed)
    known_ids = tables["customers"].loc[tables["customers"]["signup_date"] <= as_of, "customer_id"].to_numpy()

    # transactions: amounts scaled, products changed, a third deleted, extra purchases added.
    tx = tables["transactions"].copy()
    future = (tx["date"] > as_of).to_numpy()
    tx.loc[future, "amount"] = tx.loc[future, "amount"] * 3.7 + 1.0
    tx["product"] = _rotate(tx["product"], future, shift=3)
    tx["quantity"] = np.where(future, tx["quantity"] + 5, tx["quantity"]).astype(tx["quantity"].dtype)
    tx = tx.loc[~(future & (rng.random(len(tx)) < 0.33))]
    extra = 5_000
    extra_tx = pd.DataFrame(
        {
            "customer_id": rng.choice(known_ids, extra),
            "date": _days_after(rng, as_of, extra).where(np.arange(extra) % 10 > 0, as_of + DAY),
            "amount": np.round(rng.gamma(2.0, 50.0, extra), 2),
            "product": pd.Categorical.from_codes(
                rng.integers(0, len(tx["product"].cat.categories), extra), dtype=tx["product"].dtype
            ),
            "quantity": rng.integers(1, 9, extra).astype(tx["quantity"].dtype),
        }
    )
    tx = pd.concat([tx, extra_tx], ignore_index=True)

    # interactions: kinds and channels changed, some deleted, extra complaints added.
    it = tables["interactions"].copy()
    future = (it["date"] > as_of).to_numpy()
    it["kind"] = _rotate(it["kind"], future)
    it["channel"] = _rotate(it["channel"], future, shift=2)
    it = it.loc[~(future & (rng.random(len(it)) < 0.33))]
    extra = 2_000
    extra_it = pd.DataFrame(
        {
            "customer_id": rng.choice(known_ids, extra),
            "date": _days_after(rng, as_of, extra).where(np.arange(extra) % 10 > 0, as_of + DAY),
            "channel": pd.Categorical.from_codes(np.zeros(extra, dtype=int), dtype=it["channel"].dtype),
            "kind": pd.Categorical(["complaint"] * extra, dtype=it["kind"].dtype),
        }
    )
    it = pd.concat([it, extra_it], ignore_index=True)

    # payments: invoices due later changed or deleted; invoices due by as_of but settled later are
    # settled on another later day with another amount; unpaid ones get paid later; new invoices added.
    pay = tables["payments"].copy()
    due_later = (pay["due_date"] > as_of).to_numpy()
    pay.loc[due_later, "amount_due"] = pay.loc[due_later, "amount_due"] * 2.0 + 3.0
    pay.loc[due_later, "paid_date"] = as_of - pd.Timedelta(days=3)  # paid early, but not due yet
    pay.loc[due_later, "amount_paid"] = 0.5
    paid_later = ~due_later & (pay["paid_date"] > as_of).to_numpy()
    pay.loc[paid_later, "paid_date"] = pay.loc[paid_later, "paid_date"] + pd.Timedelta(days=17)
    pay.loc[paid_later, "amount_paid"] = pay.loc[paid_later, "amount_due"] * 0.3
    unpaid = ~due_later & pay["paid_date"].isna().to_numpy()
    pay.loc[unpaid, "paid_date"] = as_of + pd.Timedelta(days=5)
    pay.loc[unpaid, "amount_paid"] = pay.loc[unpaid, "amount_due"]
    pay = pay.loc[~(due_later & (rng.random(len(pay)) < 0.33))]
    extra = 1_000
    due = _days_after(rng, as_of, extra, most=60)
    extra_pay = pd.DataFrame(
        {
            "customer_id": rng.choice(known_ids, extra),
            "invoice_date": (due - pd.Timedelta(days=30)).to_numpy(),
            "due_date": due.to_numpy(),
            "amount_due": np.round(rng.gamma(2.0, 50.0, extra), 2),
            "paid_date": (due + pd.Timedelta(days=3)).to_numpy(),
            "amount_paid": 1.0,
        }
    )
    pay = pd.concat([pay, extra_pay], ignore_index=True)

    # customers: later signups get other attributes and another later signup day; some deleted;
    # brand-new customers signing up later are added.
    cu = tables["customers"].copy()
    later = (cu["signup_date"] > as_of).to_numpy()
    for column in cu.columns:
        if isinstance(cu[column].dtype, pd.CategoricalDtype):
            cu[column] = _rotate(cu[column], later)
    if "segment" in cu.columns:
        cu["segment"] = cu["segment"].where(~later, "a value only later customers have")
    cu.loc[later, "signup_date"] = cu.loc[later, "signup_date"] + pd.Timedelta(days=11)
    cu = cu.loc[~(later & (rng.random(len(cu)) < 0.33))]
    new = cu.loc[cu["signup_date"] > as_of].head(50).copy()
    new["customer_id"] = np.arange(10**6, 10**6 + len(new))
    new["signup_date"] = as_of + DAY
    cu = pd.concat([cu, new], ignore_index=True)

    return {"customers": cu, "transactions": tx, "payments": pay, "interactions": it}


@pytest.fixture
def sim_with_segment(sim_tables: dict) -> dict:
    """Simulated tables plus a plain-text customer attribute (the loader's categories come from text)."""
    customers = sim_tables["customers"]
    customers["segment"] = np.where(customers["customer_id"] % 3 == 0, "gold", "standard")
    customers["segment"] = customers["segment"].astype("str")
    return sim_tables


def test_rewriting_every_row_after_as_of_leaves_features_identical(sim_with_segment):
    tables = sim_with_segment
    before = {name: df.copy() for name, df in tables.items()}
    rewritten = rewrite_future(tables, SIM_AS_OF)

    # The rewrite is not vacuous: every table really changed after as_of.
    for name in ("transactions", "interactions"):
        assert (tables[name]["date"] > SIM_AS_OF).sum() > 100
        assert len(rewritten[name]) != len(tables[name])
    assert (tables["payments"]["due_date"] > SIM_AS_OF).sum() > 100
    assert ((tables["payments"]["due_date"] <= SIM_AS_OF) & (tables["payments"]["paid_date"] > SIM_AS_OF)).sum() > 10
    assert (tables["customers"]["signup_date"] > SIM_AS_OF).sum() > 100

    original = build_features(tables, SIM_AS_OF)
    changed = build_features(rewritten, SIM_AS_OF)
    pd.testing.assert_frame_equal(changed, original, check_exact=True)
    assert "segment" in original.columns and isinstance(original["segment"].dtype, pd.CategoricalDtype)
    # build_features reads, never writes, its inputs.
    for name, df in tables.items():
        pd.testing.assert_frame_equal(df, before[name])


def test_rewrite_changes_labels_so_the_future_really_moved(sim_tables):
    # The same rewrite that leaves features alone changes what happens after as_of.
    rewritten = rewrite_future(sim_tables, SIM_AS_OF)
    ids = build_features(sim_tables, SIM_AS_OF).index
    old = future_value(sim_tables["transactions"], ids, SIM_AS_OF, 90)
    new = future_value(rewritten["transactions"], ids, SIM_AS_OF, 90)
    assert not np.allclose(old["future_spend"], new["future_spend"])


def _on_as_of_transaction(tables: dict) -> tuple[dict, pd.Index]:
    tx = tables["transactions"]
    on = tx["date"] == SIM_AS_OF
    tx.loc[on, "amount"] = tx.loc[on, "amount"] + 100.0
    return tables, pd.Index(tx.loc[on, "customer_id"].unique())


def _on_as_of_complaint(tables: dict) -> tuple[dict, pd.Index]:
    customers = tables["customers"]
    known = customers.loc[customers["signup_date"] <= SIM_AS_OF, "customer_id"]
    row = pd.DataFrame(
        {
            "customer_id": [known.iloc[0]],
            "date": [SIM_AS_OF],
            "channel": pd.Categorical(["phone"], dtype=tables["interactions"]["channel"].dtype),
            "kind": pd.Categorical(["complaint"], dtype=tables["interactions"]["kind"].dtype),
        }
    )
    tables["interactions"] = pd.concat([tables["interactions"], row], ignore_index=True)
    return tables, pd.Index(row["customer_id"])


def _on_as_of_payment(tables: dict) -> tuple[dict, pd.Index]:
    pay = tables["payments"]
    on = (pay["paid_date"] == SIM_AS_OF) & (pay["due_date"] <= SIM_AS_OF) & (pay["amount_paid"] > 0)
    pay.loc[on, "paid_date"] = SIM_AS_OF + DAY  # paid one day later: now open on as_of
    return tables, pd.Index(pay.loc[on, "customer_id"].unique())


def _on_as_of_signup(tables: dict) -> tuple[dict, pd.Index]:
    cu = tables["customers"]
    on = cu["signup_date"] == SIM_AS_OF
    cu.loc[on, "signup_date"] = SIM_AS_OF + DAY
    return tables, pd.Index(cu.loc[on, "customer_id"])


@pytest.mark.parametrize(
    "change",
    [_on_as_of_transaction, _on_as_of_complaint, _on_as_of_payment, _on_as_of_signup],
    ids=["transaction", "interaction", "payment", "signup"],
)
def test_changing_a_row_dated_on_as_of_does_change_features(sim_tables, change):
    original = build_features({k: v.copy() for k, v in sim_tables.items()}, SIM_AS_OF)
    changed_tables, touched = change(sim_tables)
    assert len(touched) > 0, "the simulated data should have such a row on the as-of date"
    changed = build_features(changed_tables, SIM_AS_OF)
    if change is _on_as_of_signup:
        assert not touched.isin(changed.index).any() and touched.isin(original.index).all()
        return
    diff = (changed != original) & ~(changed.isna() & original.isna())
    moved = diff.any(axis=1)
    assert set(moved[moved].index) == set(touched)


# ---------------------------------------------------------------------------------------------------
# hand-checked values on a tiny dataset (as_of 2024-03-31; 2024 is a leap year)
# ---------------------------------------------------------------------------------------------------

HAND_AS_OF = "2024-03-31"


def ts(values: list[str | None]) -> pd.Series:
    return pd.Series(pd.to_datetime(values), dtype="datetime64[ns]")


@pytest.fixture
def hand_tables() -> dict[str, pd.DataFrame]:
    """Customer 1 buys four times, 2 never, 3 signs up after as_of, 4 once a year ago."""
    customers = pd.DataFrame(
        {
            "customer_id": [3, 1, 4, 2],  # unsorted on purpose
            "signup_date": ts(["2024-04-01", "2024-01-01", "2023-03-31", "2023-12-31"]),
            "plan": ["basic", "gold", "basic", "gold"],
        }
    )
    transactions = pd.DataFrame(
        {
            "customer_id": [1, 1, 1, 1, 1, 3, 4],
            "date": ts(
                ["2024-01-01", "2024-01-31", "2024-03-01", "2024-03-25", "2024-04-01", "2024-04-02", "2023-04-30"]
            ),
            "amount": [10.0, 20.0, 30.0, 40.0, 1000.0, 5.0, 5.0],
            "product": ["x", "y", "x", "z", "w", "x", None],
        }
    )
    payments = pd.DataFrame(
        {
            "customer_id": [1, 1, 1, 1, 1, 2],
            "due_date": ts(["2024-02-15", "2024-03-01", "2024-03-21", "2024-03-25", "2024-04-15", "2024-03-15"]),
            "amount_due": [100.0, 50.0, 40.0, 60.0, 70.0, 80.0],
            "paid_date": ts(["2024-02-10", "2024-03-11", None, "2024-04-05", "2024-03-30", "2024-03-14"]),
            "amount_paid": [100.0, 50.0, np.nan, 60.0, 70.0, 20.0],
        }
    )
    interactions = pd.DataFrame(
        {
            "customer_id": [1, 1, 1, 1, 4],
            "date": ts(["2024-03-20", "2024-02-15", "2023-12-01", "2024-04-01", "2023-04-01"]),
            "channel": ["phone", "email", "store", "phone", "web"],
            "kind": ["COMPLAINT", "inquiry", "visit", "complaint", "inquiry"],
        }
    )
    return {"customers": customers, "transactions": transactions, "payments": payments, "interactions": interactions}


def test_hand_checked_transaction_features(hand_tables):
    f = build_features(hand_tables, HAND_AS_OF)
    assert list(f.index) == [1, 2, 4]  # 3 signs up after as_of; sorted by id
    a = f.loc[1]  # purchases 90, 60, 30 and 6 days before as_of; the one after as_of is ignored
    assert a["tenure_days"] == 90
    assert a["recency_days"] == 6
    assert a["first_purchase_days"] == 90
    assert a["frequency_total"] == 4 and a["monetary_total"] == 100
    assert a["avg_order_value"] == 25
    # Windows hold the last w days including as_of: a purchase exactly 30 days back is outside 30d.
    assert (a["frequency_30d"], a["monetary_30d"]) == (1, 40)
    assert (a["frequency_90d"], a["monetary_90d"]) == (3, 90)
    assert (a["frequency_365d"], a["monetary_365d"]) == (4, 100)
    assert a["ipt_mean_days"] == 28  # gaps 30, 30, 24
    assert a["ipt_std_days"] == pytest.approx(math.sqrt(12))
    assert a["last_gap_days"] == 24
    assert a["overdue_ratio"] == pytest.approx(6 / 28)
    assert a["frequency_trend"] == pytest.approx(math.log(4 / 2))  # 3 in the last 90 days, 1 in the 90 before
    assert a["monetary_trend"] == pytest.approx(math.log(91 / 11))
    assert a["product_breadth"] == 3 and a["product_breadth_365d"] == 3  # x, y, z; w is after as_of

    b = f.loc[2]  # no purchases at all
    assert b["tenure_days"] == 91
    assert np.isnan(b["recency_days"]) and np.isnan(b["ipt_mean_days"]) and np.isnan(b["overdue_ratio"])
    assert b["frequency_total"] == 0 and b["frequency_30d"] == 0 and b["monetary_365d"] == 0
    assert b["product_breadth"] == 0 and b["frequency_trend"] == 0

    d = f.loc[4]  # one purchase 336 days back, product missing
    assert (d["tenure_days"], d["recency_days"], d["frequency_365d"], d["frequency_90d"]) == (366, 336, 1, 0)
    assert np.isnan(d["ipt_mean_days"]) and np.isnan(d["last_gap_days"])
    assert d["product_breadth"] == 0


def test_hand_checked_payment_features(hand_tables):
    f = build_features(hand_tables, HAND_AS_OF)
    # Customer 1, invoices due by as_of: on time (100), 10 days late (50), unpaid 10 days past due (40),
    # paid only after as_of so still open, 6 days past due (60); the one due 2024-04-15 is not due yet.
    a = f.loc[1]
    assert a["invoices_due"] == 4
    assert a["collection_rate"] == pytest.approx(150 / 250)
    assert a["days_late_mean"] == pytest.approx((0 + 10 + 10 + 6) / 4)
    assert a["late_share"] == pytest.approx(3 / 4)
    assert a["overdue_amount"] == pytest.approx(100)
    b = f.loc[2]  # one invoice of 80, 20 paid a day early
    assert (b["invoices_due"], b["days_late_mean"], b["late_share"]) == (1, 0, 0)
    assert b["collection_rate"] == pytest.approx(0.25) and b["overdue_amount"] == pytest.approx(60)
    d = f.loc[4]  # no invoices
    assert d["invoices_due"] == 0 and d["overdue_amount"] == 0
    assert np.isnan(d["collection_rate"]) and np.isnan(d["days_late_mean"]) and np.isnan(d["late_share"])


def test_hand_checked_contact_features(hand_tables):
    f = build_features(hand_tables, HAND_AS_OF)
    a = f.loc[1]  # complaint 11 days back (upper case kind), inquiry 45, visit 121; one complaint after as_of
    assert (a["complaints_30d"], a["contacts_30d"]) == (1, 1)
    assert (a["complaints_90d"], a["contacts_90d"]) == (1, 2)
    assert (a["complaints_365d"], a["contacts_365d"]) == (1, 3)
    assert a["days_since_contact"] == 11
    assert a["complaint_trend"] == pytest.approx(math.log(2))
    b = f.loc[2]
    assert b["contacts_365d"] == 0 and np.isnan(b["days_since_contact"])
    d = f.loc[4]  # one inquiry exactly 365 days back: outside the 365-day window, still the last contact
    assert d["contacts_365d"] == 0 and d["days_since_contact"] == 365


def test_customer_attributes_pass_through_as_categories(hand_tables):
    f = build_features(hand_tables, HAND_AS_OF)
    assert isinstance(f["plan"].dtype, pd.CategoricalDtype)
    assert f["plan"].astype(str).tolist() == ["gold", "gold", "basic"]
    assert "signup_date" not in f.columns and "customer_id" not in f.columns
    numeric, categorical = feature_columns(f)
    assert categorical == ["plan"] and "recency_days" in numeric
    assert all(f[c].dtype == np.float64 for c in numeric)


def test_the_as_of_day_itself_counts(hand_tables):
    # as_of on customer 1's signup day: known, tenure 0, the signup-day purchase already counts.
    f = build_features(hand_tables, "2024-01-01")
    assert list(f.index) == [1, 2, 4]
    a = f.loc[1]
    assert (a["tenure_days"], a["frequency_total"], a["recency_days"], a["frequency_30d"]) == (0, 1, 0, 1)
    assert np.isnan(a["ipt_mean_days"]) and a["invoices_due"] == 0
    # One day earlier customer 1 is not known yet.
    assert 1 not in build_features(hand_tables, "2023-12-31").index


def test_no_purchase_on_or_before_as_of_with_a_product_column(hand_tables):
    # Only customer 4 is known on 2023-04-15 and has bought nothing yet (first purchase 2023-04-30).
    f = build_features(hand_tables, "2023-04-15")
    assert (f["frequency_total"] == 0).all() and (f["product_breadth"] == 0).all()


# ---------------------------------------------------------------------------------------------------
# whichever tables exist
# ---------------------------------------------------------------------------------------------------


@pytest.mark.public_data
@pytest.mark.skipif(not has_public(public.TELCO_FILE), reason="Telco data not found; set CRMSCORE_DATA_DIR")
def test_customers_only_telco():
    tables = public.load_telco()
    customers = tables["customers"]
    f = build_features(tables, public.TELCO_SNAPSHOT_DATE)
    assert len(f) == len(customers) == 7043
    assert not LABEL_COLUMNS & set(f.columns)  # the label never becomes a feature
    assert "churned" not in f.columns
    assert not {"recency_days", "invoices_due", "contacts_30d"} & set(f.columns)
    for column in ("contract", "payment_method", "internet_service", "gender"):
        assert isinstance(f[column].dtype, pd.CategoricalDtype), column
    by_id = customers.set_index("customer_id")
    np.testing.assert_array_equal(f["monthly_revenue"], by_id.loc[f.index, "monthly_revenue"])
    assert set(f["senior_citizen"].unique()) == {0.0, 1.0}
    # Nominal signup = snapshot minus tenure months, so tenure_days is about 30.4 days a month.
    months = by_id.loc[f.index, "tenure_months"]
    assert (f["tenure_days"][months == 0] == 0).all()
    assert (f["tenure_days"] / months)[months > 0].between(28, 31).all()


@pytest.mark.public_data
@pytest.mark.skipif(
    not (has_public(public.CDNOW_SAMPLE) and has_public(public.CDNOW_SUMMARY_WITH_TRANSACTIONS)),
    reason="CDNOW data not found; set CRMSCORE_DATA_DIR",
)
def test_transactions_only_cdnow_matches_published_summary():
    tables = public.load_cdnow(sample=True)
    f = build_features(tables, "1997-09-30")  # end of the published 39-week calibration period
    assert len(f) == 2357
    assert "product_breadth" not in f.columns and "invoices_due" not in f.columns
    summary = public.load_cdnow_summary().set_index("customer_id").loc[f.index]
    np.testing.assert_array_equal(f["frequency_total"] - 1, summary["x"])  # repeat purchases
    # Recency and age in weeks, published to two decimals.
    np.testing.assert_allclose((f["first_purchase_days"] - f["recency_days"]) / 7, summary["t_x"], atol=0.005)
    np.testing.assert_allclose(f["first_purchase_days"] / 7, summary["T"], atol=0.005)


# ---------------------------------------------------------------------------------------------------
# descriptions
# ---------------------------------------------------------------------------------------------------


def test_every_feature_column_has_a_description(sim_tables):
    f = build_features(sim_tables, SIM_AS_OF)
    attributes = set(sim_tables["customers"].columns)
    for column in f.columns:
        text = describe(column)
        assert text and "{" not in text, column
        if column in attributes:
            assert text == column.replace("_", " ")
        else:
            assert text != column and text != column.replace("_", " "), column
    assert set(FEATURES) - {k for k in FEATURES if "{w}" in k} <= set(f.columns)


def test_custom_windows_are_built_and_described(sim_tables):
    f = build_features(sim_tables, SIM_AS_OF, FeatureSettings(windows_days=[60, 7], trend_window_days=30))
    for stem in ("frequency", "monetary", "complaints", "contacts"):
        assert {f"{stem}_7d", f"{stem}_60d"} <= set(f.columns)
        assert f"{stem}_30d" not in f.columns
    assert "product_breadth_60d" in f.columns  # breadth uses the longest window
    assert "7 days" in describe("frequency_7d") and "60 days" in describe("frequency_60d")
    assert "60 days" in describe("complaints_60d")
    assert "30 days" in describe("frequency_trend", trend_window_days=30)
    assert (f["frequency_7d"] <= f["frequency_60d"]).all()


# ---------------------------------------------------------------------------------------------------
# determinism and order
# ---------------------------------------------------------------------------------------------------


def test_same_inputs_same_output_sorted_by_customer(sim_tables):
    first = build_features(sim_tables, SIM_AS_OF)
    second = build_features({k: v.copy() for k, v in sim_tables.items()}, pd.Timestamp(SIM_AS_OF).date())
    pd.testing.assert_frame_equal(first, second, check_exact=True)
    assert first.index.name == "customer_id"
    assert first.index.is_monotonic_increasing and first.index.is_unique
    known = sim_tables["customers"]["signup_date"] <= SIM_AS_OF
    assert len(first) == known.sum()


def test_row_order_of_the_inputs_does_not_matter(sim_tables):
    original = build_features(sim_tables, SIM_AS_OF)
    shuffled = {k: v.sample(frac=1.0, random_state=1) for k, v in sim_tables.items()}
    pd.testing.assert_frame_equal(build_features(shuffled, SIM_AS_OF), original, rtol=1e-12)


def test_attribute_named_like_a_feature_does_not_shadow_it():
    customers = pd.DataFrame(
        {"customer_id": [1, 2], "signup_date": pd.to_datetime(["2024-01-01", "2024-02-01"]), "tenure_days": [5.0, 6.0]}
    )
    features = build_features({"customers": customers}, "2024-03-01")
    assert list(features.columns).count("tenure_days") == 1
    assert features["customer_tenure_days"].tolist() == [5.0, 6.0]
    assert features.loc[1, "tenure_days"] == 60


def test_unknown_label_kind_is_refused():
    from crmscore.labels import label_kind

    with pytest.raises(ValueError, match="auto, transaction or subscription"):
        label_kind({"customers": pd.DataFrame({"customer_id": [1]})}, "bogus")
