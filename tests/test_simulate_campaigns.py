"""Past retention campaigns of the simulator: the contract's campaigns table and the true effect behind it."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from crmscore.campaigns import campaign_summary, check_campaign_arms
from crmscore.config import DataSettings, Settings, settings_from_dict
from crmscore.data.load import load_tables, write_tables
from crmscore.data.schemas import contract_columns
from crmscore.data.simulate import CAMPAIGN_COLUMNS, CAMPAIGN_TRUTH_COLUMNS, Campaign, Shock, simulate_crm
from crmscore.errors import SettingsError
from crmscore.stages import simulate_stage

SPRING = Campaign(dt.date(2025, 6, 2), "spring-offer", share=0.4)
AUTUMN = Campaign(dt.date(2025, 10, 1), "autumn-offer", share=0.4)
WINTER = Campaign(dt.date(2026, 2, 2), "winter-targeted", targeted=True)
CAMPAIGNS = (WINTER, SPRING, AUTUMN)  # any order: the simulator takes them by date
RANDOMIZED = ("spring-offer", "autumn-offer")
HORIZON = pd.Timedelta(days=90)
ACTIVE = pd.Timedelta(days=30)
# Enough customers (about 2 M transactions, a few seconds) that the realized difference between treated and
# control customers has a standard error of about 0.3 points, pooled over the two randomized campaigns.
LARGE = 100_000


@pytest.fixture(scope="module")
def large():
    return simulate_crm(customers=LARGE, seed=5, campaigns=CAMPAIGNS)


@pytest.fixture(scope="module")
def small():
    return simulate_crm(customers=3_000, seed=8, campaigns=CAMPAIGNS)


@pytest.fixture(scope="module")
def participants(large) -> pd.DataFrame:
    """Every campaign row with its true effect and, from the realized data, what happened in the 90 days
    after the date: a purchase (``retained``), still alive at the end (hidden), and the spend."""
    frame = pd.concat([large.campaigns, large.campaign_truth.drop(columns=["customer_id", "campaign", "date"])], axis=1)
    dropout = frame["customer_id"].map(large.hidden.set_index("customer_id")["dropout_date"])
    frame["alive_at_end"] = dropout.isna() | (dropout > frame["date"] + HORIZON)
    frame["retained"] = False
    frame["active_at_end"] = False  # a purchase in the window's last 30 days: still buying at its end
    tx = large.transactions
    for date in frame["date"].unique():
        window = tx.loc[(tx["date"] > date) & (tx["date"] <= date + HORIZON), "customer_id"]
        tail = tx.loc[(tx["date"] > date + HORIZON - ACTIVE) & (tx["date"] <= date + HORIZON), "customer_id"]
        rows = frame["date"] == date
        frame.loc[rows, "retained"] = frame.loc[rows, "customer_id"].isin(window)
        frame.loc[rows, "active_at_end"] = frame.loc[rows, "customer_id"].isin(tail)
    return frame


def _treated_minus_control(frame: pd.DataFrame, column: str) -> tuple[float, float]:
    """Realized treated − control difference of ``column``, pooled over campaigns weighted by size, and its
    standard error."""
    diffs, variances, weights = [], [], []
    for _, group in frame.groupby("campaign"):
        treated = group["treated"] == 1
        y = group[column].astype(float)
        diffs.append(y[treated].mean() - y[~treated].mean())
        variances.append(y[treated].var() / treated.sum() + y[~treated].var() / (~treated).sum())
        weights.append(len(group))
    w = np.asarray(weights) / np.sum(weights)
    return float(w @ diffs), float(np.sqrt(w**2 @ variances))


# --- the campaigns table -------------------------------------------------------------------------------------


def test_same_seed_gives_identical_campaigns(small):
    again = simulate_crm(customers=3_000, seed=8, campaigns=CAMPAIGNS)
    pd.testing.assert_frame_equal(small.campaigns, again.campaigns)
    pd.testing.assert_frame_equal(small.campaign_truth, again.campaign_truth)
    pd.testing.assert_frame_equal(small.transactions, again.transactions)
    other = simulate_crm(customers=3_000, seed=9, campaigns=CAMPAIGNS)
    assert not other.campaigns["treated"].equals(small.campaigns["treated"])


def test_no_campaigns_leave_the_simulation_as_it_was():
    without = simulate_crm(customers=2_000, seed=4)
    empty = simulate_crm(customers=2_000, seed=4, campaigns=[])
    assert list(without.tables()) == ["customers", "transactions", "payments", "interactions"]
    for name, table in without.tables().items():
        pd.testing.assert_frame_equal(table, empty.tables()[name])
    pd.testing.assert_frame_equal(without.truth, empty.truth)
    assert dict(without.campaigns.dtypes.astype(str)) == CAMPAIGN_COLUMNS and without.campaigns.empty
    assert dict(without.campaign_truth.dtypes.astype(str)) == CAMPAIGN_TRUTH_COLUMNS and without.campaign_truth.empty


def test_nothing_before_the_first_offer_takes_effect_changes(small):
    """The customers, the dropouts and each week's purchases before the first campaign's effect starts (the
    first week starting on or after its date; weeks start on Saturdays here) are those of the run without
    campaigns; only the days drawn within each week differ, as every later random number does."""
    without = simulate_crm(customers=3_000, seed=8)
    effect_start = pd.Timestamp("2025-06-07")  # the Saturday after SPRING's date
    assert effect_start.day_name() == "Saturday" and effect_start - pd.Timestamp(SPRING.date) < pd.Timedelta(days=7)
    pd.testing.assert_frame_equal(small.customers, without.customers)

    def weekly_purchases(sim) -> pd.Series:
        tx = sim.transactions[sim.transactions["date"] < effect_start]
        week = (tx["date"] - effect_start).dt.days // 7
        return tx.groupby([tx["customer_id"], week]).size()

    pd.testing.assert_series_equal(weekly_purchases(small), weekly_purchases(without))
    dropped = small.hidden["dropout_date"] < effect_start
    assert dropped.equals(without.hidden["dropout_date"] < effect_start) and dropped.any()
    # … and the offers change what comes after.
    assert not small.hidden["dropout_date"].equals(without.hidden["dropout_date"])


def test_every_known_customer_takes_part_once_per_campaign(small):
    campaigns = small.campaigns
    assert list(campaigns.columns) == list(CAMPAIGN_COLUMNS)
    assert dict(campaigns.dtypes.astype(str)) == CAMPAIGN_COLUMNS
    assert list(small.tables()) == ["customers", "transactions", "payments", "interactions", "campaigns"]
    for c in CAMPAIGNS:
        rows = campaigns[campaigns["campaign"] == c.name]
        known = small.customers.loc[small.customers["signup_date"] <= pd.Timestamp(c.date), "customer_id"]
        assert rows["customer_id"].tolist() == known.tolist()
        assert (rows["date"] == pd.Timestamp(c.date)).all()
    treated = campaigns["treated"] == 1
    assert set(campaigns["treated"]) == {0, 1}
    assert (campaigns.loc[treated, "cost"] == 5.0).all() and (campaigns.loc[~treated, "cost"] == 0.0).all()
    truth = small.campaign_truth
    assert truth[["customer_id", "campaign", "date"]].equals(campaigns[["customer_id", "campaign", "date"]])


def test_randomized_campaigns_offer_their_share(large):
    for name in RANDOMIZED:
        rows = large.campaigns[large.campaigns["campaign"] == name]
        assert (rows["propensity"] == 0.4).all()
        assert rows["treated"].mean() == pytest.approx(0.4, abs=3 * np.sqrt(0.24 / len(rows)))


def test_targeted_propensities_are_probabilities_rising_with_risk(participants):
    rows = participants[participants["campaign"] == WINTER.name]
    propensity = rows["propensity"]
    assert propensity.between(0.05, 0.95).all() and propensity.nunique() > 100
    assert propensity.mean() == pytest.approx(0.3, abs=0.05)
    assert rows["treated"].mean() == pytest.approx(propensity.mean(), abs=3 * np.sqrt(0.25 / len(rows)))
    # Risk: the controls still alive at the date who dropped out in the 90 days after it.
    controls = rows[(rows["treated"] == 0) & rows["alive_at_date"]]
    dropped = ~controls["alive_at_end"]
    quintile = pd.qcut(controls["propensity"].rank(method="first"), 5, labels=False)
    by_quintile = dropped.groupby(quintile).mean()
    assert by_quintile.iloc[-1] > 2 * by_quintile.iloc[0]
    assert np.corrcoef(controls["propensity"], dropped)[0, 1] > 0.1


def test_campaigns_table_passes_the_contract(small, tmp_path):
    write_tables(small.tables(), tmp_path, "parquet")
    loaded = load_tables(tmp_path, DataSettings(max_date="2026-11-23"))
    kept = loaded.tables["campaigns"]
    report = loaded.reports["campaigns"]
    assert (report.rows_in, report.rows_kept, report.rows_rejected) == (len(small.campaigns),) * 2 + (0,)
    assert list(kept.columns) == contract_columns("campaigns")
    check_campaign_arms(kept)  # every campaign has treated and control customers
    summary = campaign_summary(kept)
    assert summary["propensity_given"].all()
    assert summary.loc["winter-targeted", "total_cost"] == 5.0 * summary.loc["winter-targeted", "treated"]


# --- the true effect -----------------------------------------------------------------------------------------


def test_realized_retention_gap_matches_the_true_uplift(participants):
    randomized = participants[participants["campaign"].isin(RANDOMIZED)]
    alive = randomized[randomized["alive_at_date"]]
    # An offer helps on average: P(alive) moves by several points, P(a purchase) by about one.
    assert alive["uplift_alive"].mean() > 0.03
    assert alive["uplift_retention"].mean() > 0.005
    assert (alive["delta"] < 0).mean() > 0.9
    for outcome, uplift in (("retained", "uplift_retention"), ("alive_at_end", "uplift_alive")):
        realized, se = _treated_minus_control(randomized, outcome)
        expected = randomized[uplift].mean()  # the campaigns weighted by size, as the realized difference
        assert realized == pytest.approx(expected, abs=3 * se), outcome
    realized_alive, se = _treated_minus_control(randomized, "alive_at_end")
    assert realized_alive > 5 * se  # the offer keeps customers, clearly


def test_still_buying_at_the_end_moves_more_than_buying_at_all(participants):
    # The uplift model's outcome: a purchase in the window's last 30 days. The offer moves it by more than a
    # purchase anywhere in the window, and the realized difference matches the truth (a weekly grid: the
    # truth's last 30 days are whole weeks, so allow 3 standard errors and a quarter of a point).
    randomized = participants[participants["campaign"].isin(RANDOMIZED)]
    realized, se = _treated_minus_control(randomized, "active_at_end")
    expected = randomized["uplift_active"].mean()
    assert realized == pytest.approx(expected, abs=3 * se + 0.0025)
    assert expected > 2 * randomized["uplift_retention"].mean() > 0
    assert realized > 3 * se
    annoyed = randomized[randomized["delta"] > 0]
    assert annoyed["uplift_active"].mean() < -0.02
    gone = participants[~participants["alive_at_date"]]
    assert (gone["uplift_active"] == 0).all()


def test_do_not_disturb_customers_are_harmed(participants):
    randomized = participants[participants["campaign"].isin(RANDOMIZED)]
    annoyed = randomized[randomized["delta"] > 0]
    assert (annoyed["delta"] == 1.0).all()
    assert 0.03 < len(annoyed) / len(randomized) < 0.08
    assert (annoyed["uplift_alive"] < 0).all() and (annoyed["uplift_retention"] <= 0).all()
    assert annoyed["uplift_retention"].mean() < -0.02
    for outcome in ("retained", "alive_at_end"):
        realized, se = _treated_minus_control(annoyed, outcome)
        assert realized < -se, outcome  # lower when treated
    assert _treated_minus_control(annoyed, "alive_at_end")[0] < 0


def test_customers_already_gone_gain_nothing(participants):
    gone = participants[~participants["alive_at_date"]]
    assert len(gone) > 1_000
    assert (gone[["delta", "uplift_retention", "uplift_alive", "uplift_spend"]] == 0).all().all()
    # … nor do the treated among them buy: they dropped out before the date
    assert not gone["retained"].any()


def test_uplift_follows_what_features_can_see(large, participants):
    """Contract and recent complaints are visible at the date, and the true effect differs by them."""
    rows = participants[participants["campaign"].isin(RANDOMIZED) & participants["alive_at_date"]]
    contract = rows["customer_id"].map(large.customers.set_index("customer_id")["contract"]).astype(str)
    by_contract = rows.groupby(contract)["uplift_alive"].mean()
    assert by_contract["month-to-month"] > 1.5 * by_contract["two-year"] > 0
    complaints = large.interactions[large.interactions["kind"] == "complaint"]
    recent = pd.Series(False, index=rows.index)
    for date in rows["date"].unique():
        at = rows["date"] == date
        window = complaints.loc[
            (complaints["date"] <= date) & (complaints["date"] > date - pd.Timedelta(days=28)), "customer_id"
        ]
        recent[at] = rows.loc[at, "customer_id"].isin(window)
    assert rows.loc[recent, "uplift_retention"].mean() < 0 < rows.loc[~recent, "uplift_retention"].mean()


def test_truth_has_finite_uplift_of_an_offer_on_its_as_of_date(large):
    truth = large.truth
    columns = ["uplift_retention", "uplift_active", "uplift_alive", "uplift_spend"]
    assert np.isfinite(truth[columns].to_numpy()).all()
    assert truth["uplift_retention"].between(-1, 1).all() and truth["uplift_alive"].between(-1, 1).all()
    assert truth["uplift_active"].between(-1, 1).all()
    for _, block in truth.groupby("horizon_days"):
        assert block["uplift_alive"].mean() > 0.01 and block["uplift_retention"].mean() > 0
        assert block["uplift_spend"].mean() > 0
        # weighted by p_alive: customers the oracle believes gone gain about nothing
        assert block.loc[block["p_alive"] < 0.01, "uplift_alive"].abs().max() < 0.01


def test_campaigns_keep_the_same_table_under_a_drift_scenario(small):
    shocked = simulate_crm(
        customers=3_000, seed=8, campaigns=CAMPAIGNS, shock=Shock(dt.date(2025, 3, 1), 5.0, region="north")
    )
    pd.testing.assert_frame_equal(shocked.campaigns, small.campaigns)
    hit = shocked.hidden["shocked"].to_numpy()
    earlier = shocked.hidden["dropout_date"].fillna(pd.Timestamp.max) < small.hidden["dropout_date"].fillna(
        pd.Timestamp.max
    )
    assert earlier[hit].mean() > 0.2 and not earlier[~hit].any()


# --- arguments, settings and the stage -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"share": 1.0}, r"campaign 'c': share must be in \(0, 1\), got 1.0"),
        ({"cost": -1.0}, "campaign 'c': cost must be a finite number >= 0, got -1.0"),
        ({"effect_weeks": 0}, "campaign 'c': effect_weeks must be a positive integer, got 0"),
        ({"name": " "}, "campaign.name must be a non-empty text"),
    ],
)
def test_campaign_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Campaign(**{"date": dt.date(2025, 1, 1), "name": "c", **kwargs})


def test_targeted_campaign_has_no_share():
    assert Campaign(dt.date(2025, 1, 1), "c", share=None).targeted
    assert Campaign(dt.date(2025, 1, 1), "c", targeted=True).share is None


def test_simulate_rejects_campaigns_outside_the_history_or_with_one_name():
    with pytest.raises(ValueError, match=r"campaign 'late': date must lie in \[start_date, end_date\]"):
        simulate_crm(customers=10, campaigns=[Campaign(dt.date(2027, 1, 1), "late")])
    with pytest.raises(ValueError, match="campaign names must be distinct, 'x' is used more than once"):
        simulate_crm(customers=10, campaigns=[Campaign(dt.date(2025, 1, 1), "x"), Campaign(dt.date(2025, 2, 1), "x")])
    with pytest.raises(ValueError, match="campaign_horizon_days must be a positive integer"):
        simulate_crm(customers=10, campaign_horizon_days=0)


def test_settings_ship_three_campaigns_and_reject_bad_ones():
    campaigns = Settings().simulate.to_campaigns()
    assert [c.name for c in campaigns] == ["spring-offer", "autumn-offer", "winter-targeted"]
    assert [c.share for c in campaigns] == [0.4, 0.4, None] and campaigns[2].targeted
    assert all(c.date < dt.date(2026, 8, 2) for c in campaigns)  # before the churn test window
    bad = [
        (
            [{"date": "2025-01-01", "name": "t", "targeted": True, "share": 0.4}],
            "simulate.campaigns.0: a targeted campaign takes no share",
        ),
        ([{"date": "2025-01-01", "name": "x", "share": 1}], "simulate.campaigns.0: campaign 'x': share must be in"),
        ([{"date": "2025-01-01", "name": "x", "share": None}], "simulate.campaigns.0: a randomized campaign needs"),
        ([{"date": "2025-01-01", "name": "x", "cost": -5}], "simulate.campaigns.0.cost: expected a number ≥ 0, got -5"),
        (
            [{"date": "2025-01-01", "name": "x"}, {"date": "2025-02-01", "name": "x"}],
            "simulate: campaign names must be distinct, 'x' is used more than once",
        ),
        ([{"date": "2022-01-01", "name": "y"}], "simulate: campaign 'y': date must lie in [start_date, end_date]"),
    ]
    # written out and read back, the settings are the same (a targeted campaign has no share)
    written = Settings().model_dump(mode="json")
    assert written["simulate"]["campaigns"][2]["share"] is None
    assert settings_from_dict(written) == Settings()
    for entries, message in bad:
        with pytest.raises(SettingsError) as error:
            settings_from_dict({"simulate": {"campaigns": entries}})
        assert str(error.value).startswith(f"params.yaml: {message}")


def test_stage_writes_campaigns_and_their_truth(tmp_path):
    result = simulate_stage(Settings(simulate={"customers": 800}), tmp_path, seed=2)
    assert result.paths["campaign_truth"] == tmp_path / "campaign_truth.parquet"
    campaigns = pd.read_parquet(result.paths["campaigns"])
    truth = pd.read_parquet(result.paths["campaign_truth"])
    assert len(campaigns) == len(truth) == result.rows["campaigns"] == result.rows["campaign_truth"] > 0
    assert set(campaigns["campaign"]) == {"spring-offer", "autumn-offer", "winter-targeted"}
    # without campaigns neither file is written, and those of an earlier run go
    result = simulate_stage(Settings(simulate={"customers": 800, "campaigns": []}), tmp_path, seed=2)
    assert "campaigns" not in result.paths and "campaign_truth" not in result.rows
    assert not (tmp_path / "campaigns.parquet").exists() and not (tmp_path / "campaign_truth.parquet").exists()


def test_the_oracle_weighs_the_effect_by_the_posterior_p_alive(participants):
    # expected_uplift_active: what the offer is worth knowing the traits and events, not the hidden dropout.
    alive = participants["alive_at_date"]
    assert participants["p_alive"].between(0, 1).all()
    assert participants.loc[alive, "p_alive"].mean() > participants.loc[~alive, "p_alive"].mean() + 0.3
    gone = participants.loc[~alive]
    assert (gone["uplift_active"] == 0).all() and gone["expected_uplift_active"].abs().max() > 0
    randomized = participants[participants["campaign"].isin(RANDOMIZED)]
    # Averaged over customers, the posterior is calibrated: the expected effect matches the realized one.
    realized, se = _treated_minus_control(randomized, "active_at_end")
    assert randomized["expected_uplift_active"].mean() == pytest.approx(realized, abs=3 * se + 0.0025)
