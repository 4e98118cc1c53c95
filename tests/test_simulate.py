"""The embedded synthetic data: reproducible, realistic, and with a truth that matches what happens."""

from __future__ import annotations

import datetime as dt
import hashlib

import pandas as pd
import pytest

from crmscore.config import Settings
from crmscore.data.simulate import simulate_crm
from crmscore.stages import simulate_stage

AS_OF = pd.Timestamp("2026-07-31")


@pytest.fixture(scope="module")
def sim():
    return simulate_crm(customers=8_000, seed=11)


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_seed_gives_identical_files(tmp_path):
    settings = Settings(simulate={"customers": 600})
    simulate_stage(settings, tmp_path / "a", seed=3)
    simulate_stage(settings, tmp_path / "b", seed=3)
    simulate_stage(settings, tmp_path / "c", seed=4)
    a, b, c = (_digest(tmp_path / x) for x in "abc")
    assert set(a) == {
        "customers.parquet",
        "transactions.parquet",
        "payments.parquet",
        "interactions.parquet",
        "campaigns.parquet",  # the shipped settings have past campaigns
        "truth.parquet",
        "campaign_truth.parquet",
    }
    assert a == b
    assert a["transactions.parquet"] != c["transactions.parquet"]


def test_csv_format_writes_csv(tmp_path):
    settings = Settings(simulate={"customers": 200, "format": "csv"})
    result = simulate_stage(settings, tmp_path)
    assert result.paths["transactions"].suffix == ".csv"
    assert len(pd.read_csv(result.paths["transactions"])) == result.rows["transactions"]


def test_cohorts_span_two_to_three_years(sim):
    months = sim.customers["signup_date"].dt.to_period("M")
    assert months.nunique() >= 30
    span_days = (sim.customers["signup_date"].max() - sim.customers["signup_date"].min()).days
    assert 730 <= span_days <= 3 * 366
    # every customer is acquired by a purchase on the signup day
    first = sim.transactions.groupby("customer_id")["date"].min()
    assert (first == sim.customers.set_index("customer_id")["signup_date"]).all()


def test_about_twenty_purchases_per_customer_with_heterogeneity(sim):
    per_customer = sim.transactions.groupby("customer_id").size()
    assert 12 <= per_customer.mean() <= 30
    assert per_customer.std() / per_customer.mean() > 1.0  # heavy-tailed purchase rates
    assert (per_customer == 1).mean() > 0.05  # some customers never come back


def test_spend_varies_by_customer_and_type(sim):
    tx = sim.transactions.merge(sim.customers[["customer_id", "customer_type"]], on="customer_id")
    assert (tx["amount"] > 0).all()
    per_customer = tx.groupby("customer_id").filter(lambda g: len(g) >= 5).groupby("customer_id")["amount"].mean()
    assert per_customer.std() / per_customer.mean() > 0.3
    by_type = tx.groupby("customer_type", observed=True)["amount"].mean()
    assert by_type["corporate"] > by_type["vip"] > by_type["individual"]
    assert tx["product"].nunique() == 8


def test_dropout_rises_with_risk_factors(sim):
    truth = sim.truth[sim.truth["horizon_days"] == 90].merge(sim.customers, on="customer_id")
    truth = truth[truth["signup_date"] < AS_OF - pd.Timedelta(days=365)]
    dropped = truth["dropout_date"].notna()
    by_contract = dropped.groupby(truth["contract"], observed=True).mean()
    assert by_contract["month-to-month"] > by_contract["two-year"]

    pays = sim.payments[sim.payments["due_date"] <= AS_OF]
    late_share = (pays["paid_date"].isna() | (pays["paid_date"] > pays["due_date"])).groupby(pays["customer_id"]).mean()
    late = truth["customer_id"].map(late_share).fillna(0)
    assert dropped[late > late.quantile(0.8)].mean() > dropped[late <= late.median()].mean()

    complaints = sim.interactions[(sim.interactions["kind"] == "complaint") & (sim.interactions["date"] <= AS_OF)]
    has_complaint = truth["customer_id"].isin(complaints["customer_id"])
    # Complaints per week while alive: dropped customers complained more before leaving.
    alive_until = truth["dropout_date"].fillna(AS_OF).clip(upper=AS_OF)
    alive_weeks = ((alive_until - truth["signup_date"]).dt.days / 7).clip(lower=1)
    weekly_complaints = truth["customer_id"].map(complaints.groupby("customer_id").size()).fillna(0) / alive_weeks
    assert weekly_complaints[dropped].mean() > weekly_complaints[~dropped].mean()
    assert has_complaint.any()

    breadth = sim.transactions.groupby("customer_id")["product"].nunique()
    wide = truth["customer_id"].map(breadth) >= 4
    assert dropped[wide].mean() < dropped[~wide].mean()


def test_december_peak(sim):
    tx = sim.transactions
    truth = sim.truth[sim.truth["horizon_days"] == 90]
    alive_ids = truth.loc[truth["alive"], "customer_id"]
    early = sim.customers.loc[sim.customers["signup_date"] < "2024-06-01", "customer_id"]
    cohort = tx[tx["customer_id"].isin(set(alive_ids) & set(early))]  # alive all year: no dropout confound
    in_2025 = cohort[cohort["date"].dt.year == 2025]
    per_month = (
        in_2025.groupby(in_2025["date"].dt.month).size()
        / in_2025["date"].dt.days_in_month.groupby(in_2025["date"].dt.month).first()
    )
    assert per_month[12] > 1.25 * per_month[6]


def test_payments_and_interactions_look_real(sim):
    pays = sim.payments
    assert (pays["amount_due"] > 0).all()
    closed = pays["paid_date"].notna()
    late = (pays["paid_date"] > pays["due_date"])[closed]
    assert 0.05 < late.mean() < 0.35
    assert 0.02 < (pays["amount_paid"] < pays["amount_due"])[closed].mean() < 0.25  # partial payments
    assert (~closed).any() and (pays.loc[~closed, "amount_paid"] == 0).all()
    assert pays["paid_date"].max() <= pd.Timestamp("2026-10-31")
    kinds = sim.interactions["kind"].value_counts()
    assert set(kinds.index) == {"inquiry", "complaint", "visit"}
    assert kinds["inquiry"] > kinds["complaint"]
    assert sim.interactions["channel"].nunique() >= 5
    attributes = {"customer_type", "region", "age_band", "industry", "acquisition_channel", "contract"}
    assert attributes <= set(sim.customers.columns)


def test_truth_matches_what_happens_next(sim):
    """The oracle is calibrated: its probabilities and expected spend agree with the realised future."""
    truth = sim.truth[sim.truth["horizon_days"] == 90].copy()
    assert truth["as_of"].eq(AS_OF).all()
    assert truth["p_no_purchase"].between(0, 1).all() and truth["p_alive"].between(0, 1).all()
    window = sim.transactions[
        (sim.transactions["date"] > AS_OF) & (sim.transactions["date"] <= AS_OF + pd.Timedelta(days=90))
    ]
    truth["no_purchase"] = ~truth["customer_id"].isin(window["customer_id"])
    truth["spend"] = truth["customer_id"].map(window.groupby("customer_id")["amount"].sum()).fillna(0)
    assert truth["no_purchase"].mean() == pytest.approx(truth["p_no_purchase"].mean(), abs=0.015)
    deciles = truth.groupby(pd.qcut(truth["p_no_purchase"].rank(method="first"), 10), observed=True)
    gap = (deciles["no_purchase"].mean() - deciles["p_no_purchase"].mean()).abs()
    assert gap.max() < 0.05
    assert truth["spend"].sum() == pytest.approx(truth["expected_spend"].sum(), rel=0.06)
    # p_alive is the posterior of the hidden state: customers it calls alive mostly are
    assert truth.loc[truth["p_alive"] > 0.9, "alive"].mean() > 0.85
    assert truth.loc[truth["p_alive"] < 0.1, "alive"].mean() < 0.15


def test_truth_has_one_row_per_known_customer_and_horizon(sim):
    known = (sim.customers["signup_date"] <= AS_OF).sum()
    counts = sim.truth.groupby("horizon_days").size()
    assert counts.to_dict() == {90: known, 365: known}
    wide = sim.truth.pivot(index="customer_id", columns="horizon_days", values="expected_spend")
    assert (wide[365] >= wide[90]).all()


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="customers must be positive"):
        simulate_crm(customers=0)
    with pytest.raises(ValueError, match="truth_as_of"):
        simulate_crm(customers=10, truth_as_of=dt.date(2030, 1, 1))
