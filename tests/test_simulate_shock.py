"""Drift scenarios of the simulator: a shock to dropout, a slow shift of the contract mix, and the truth
outcomes monitoring is checked against."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from crmscore.config import Settings, settings_from_dict
from crmscore.data.simulate import MAX_SHOCKED_HAZARD, Scenario, Shift, Shock, simulate_crm
from crmscore.errors import SettingsError
from crmscore.stages import simulate_stage

CUSTOMERS, SEED = 1_500, 7
SHOCK_DATE = dt.date(2025, 6, 15)
SHIFT_START = dt.date(2025, 1, 1)
# Each table's event date: rows dated before the shock must not change.
EVENT_DATES = {"transactions": "date", "interactions": "date", "payments": "invoice_date"}


@pytest.fixture(scope="module")
def plain():
    return simulate_crm(customers=CUSTOMERS, seed=SEED)


@pytest.fixture(scope="module")
def shocked():
    return simulate_crm(customers=CUSTOMERS, seed=SEED, shock=Shock(SHOCK_DATE, 20.0, region="north"))


@pytest.fixture(scope="module")
def shifted():
    return simulate_crm(customers=CUSTOMERS, seed=SEED, shift=Shift(SHIFT_START, 0.95))


def test_shock_raises_dropout_of_the_region_after_its_date(plain, shocked):
    hit = shocked.hidden.set_index("customer_id")["shocked"]
    region = shocked.customers.set_index("customer_id")["region"]
    assert hit.equals(region == "north")
    assert shocked.scenario == Scenario(shock=Shock(SHOCK_DATE, 20.0, region="north"))
    # Customers alive on the shock date: the same customers in both runs (nothing before it changes).
    before = plain.outcomes(SHOCK_DATE, 90)
    alive = before.loc[before["alive_at_as_of"], "customer_id"]
    assert alive.equals(shocked.outcomes(SHOCK_DATE, 90).loc[lambda o: o["alive_at_as_of"], "customer_id"])

    def no_purchase(sim) -> pd.Series:
        outcomes = sim.outcomes(SHOCK_DATE, 90).set_index("customer_id").loc[alive]
        return outcomes.groupby(hit.loc[alive])["no_purchase"].mean()

    without, with_shock = no_purchase(plain), no_purchase(shocked)
    assert with_shock[False] == without[False]  # the others are untouched
    # About 85 customers of the region alive on the shock date; over seeds 1-8 the rise is 0.13-0.33.
    assert with_shock[True] - without[True] > 0.1
    assert with_shock[True] - with_shock[False] > 0.1 + (without[True] - without[False])
    # a higher hazard only ever takes purchases away
    assert (shocked.outcomes(SHOCK_DATE, 90)["purchases"] <= plain.outcomes(SHOCK_DATE, 90)["purchases"]).all()
    # dropouts move earlier, never later; none before the shock
    dropout = shocked.hidden["dropout_date"].fillna(pd.Timestamp.max)
    without_shock = shocked.hidden["dropout_date_without_scenario"].fillna(pd.Timestamp.max)
    assert (dropout <= without_shock).all() and (dropout < without_shock).sum() > 100
    assert (dropout[dropout < without_shock] >= pd.Timestamp(SHOCK_DATE)).all()
    assert shocked.hidden["dropout_date_without_scenario"].equals(plain.hidden["dropout_date"])


@pytest.mark.parametrize(
    ("shock", "shift"),
    [
        (Shock(SHOCK_DATE, 20.0, region="north"), None),
        (Shock(SHOCK_DATE, 0.2, share=0.5), None),  # fewer dropouts: survivors draw events of their own
        (Shock(dt.date(2024, 2, 29), 3.0, share=1.0), None),
        # with a shift that lets customers live longer, so both the shift and the shock add events
        (Shock(SHOCK_DATE, 0.2, share=0.5), Shift(dt.date(2024, 6, 1), 0.1)),
    ],
    ids=["region", "fewer dropouts", "everyone", "after a shift"],
)
def test_nothing_dated_before_the_shock_changes(plain, shock, shift):
    without = plain if shift is None else simulate_crm(customers=CUSTOMERS, seed=SEED, shift=shift)
    sim = simulate_crm(customers=CUSTOMERS, seed=SEED, shock=shock, shift=shift)
    assert sim.customers.equals(without.customers)
    day = pd.Timestamp(shock.date)
    hit = set(sim.hidden.loc[sim.hidden["shocked"], "customer_id"])
    for name, column in EVENT_DATES.items():
        after, before = getattr(sim, name), getattr(without, name)
        assert not after.equals(before), name
        early = after[after[column] < day].reset_index(drop=True)
        assert early.equals(before[before[column] < day].reset_index(drop=True)), name
        if shift is None:  # customers the shock does not hit keep every row
            others = after[~after["customer_id"].isin(hit)].reset_index(drop=True)
            assert others.equals(before[~before["customer_id"].isin(hit)].reset_index(drop=True)), name
    dropped_early = without.hidden["dropout_date"] < day
    assert sim.hidden.loc[dropped_early, "dropout_date"].equals(without.hidden.loc[dropped_early, "dropout_date"])


def test_a_shock_of_multiplier_one_changes_nothing(plain):
    sim = simulate_crm(customers=CUSTOMERS, seed=SEED, shock=Shock(SHOCK_DATE, 1.0, region="east"))
    for name in [*EVENT_DATES, "customers", "truth"]:
        assert getattr(sim, name).equals(getattr(plain, name)), name
    assert sim.hidden["shocked"].sum() > 0
    assert not plain.hidden[["shocked", "shifted"]].any().any()


def test_same_arguments_give_identical_tables():
    kwargs = {"shock": Shock(SHOCK_DATE, 0.5, share=0.3), "shift": Shift(SHIFT_START, 0.9)}
    a = simulate_crm(customers=600, seed=3, **kwargs)
    b = simulate_crm(customers=600, seed=3, **kwargs)
    for name in [*EVENT_DATES, "customers", "truth", "hidden"]:
        assert getattr(a, name).equals(getattr(b, name)), name
    assert a.scenario == Scenario(**kwargs)


def test_shift_moves_the_contract_mix_of_late_cohorts(plain, shifted):
    def month_to_month(sim, since: str, until: str = "2027-01-01") -> float:
        c = sim.customers
        cohort = c[(c["signup_date"] >= since) & (c["signup_date"] < until)]
        return (cohort["contract"] == "month-to-month").mean()

    assert month_to_month(plain, "2026-05-01") < 0.65
    assert month_to_month(shifted, "2026-05-01") > 0.85  # near the 0.95 reached on end_date
    assert 0.65 < month_to_month(shifted, "2025-07-01", "2025-11-01") < 0.85  # half way
    flags = shifted.hidden.set_index("customer_id")["shifted"]
    assert flags.equals(shifted.customers.set_index("customer_id")["signup_date"] > pd.Timestamp(SHIFT_START))
    early = ~flags.to_numpy()
    assert shifted.customers[early].equals(plain.customers[early])
    # New month-to-month contracts raise dropout through the existing covariate effect: never a later dropout.
    moved = (shifted.customers["contract"] == "month-to-month") & (plain.customers["contract"] != "month-to-month")
    assert moved.sum() > 100
    dropout = shifted.hidden["dropout_date"].fillna(pd.Timestamp.max)
    without = shifted.hidden["dropout_date_without_scenario"].fillna(pd.Timestamp.max)
    assert (dropout[moved] <= without[moved]).all() and (dropout[moved] < without[moved]).any()
    assert (dropout[~moved] == without[~moved]).all()


@pytest.mark.parametrize("as_of", ["2024-06-30", "2025-06-15", "2026-07-31"])
def test_outcomes_match_the_transactions(shocked, as_of):
    outcomes = shocked.outcomes(as_of, 90)
    day = pd.Timestamp(as_of)
    known = shocked.customers.loc[shocked.customers["signup_date"] <= day, "customer_id"]
    assert outcomes["customer_id"].tolist() == known.tolist()
    tx = shocked.transactions
    window = tx[(tx["date"] > day) & (tx["date"] <= day + pd.Timedelta(days=90))]
    counted = outcomes["customer_id"].map(window.groupby("customer_id").size()).fillna(0)
    assert (outcomes["purchases"] == counted).all() and outcomes["purchases"].sum() > 0
    spend = outcomes["customer_id"].map(window.groupby("customer_id")["amount"].sum()).fillna(0)
    assert outcomes["spend"].to_numpy() == pytest.approx(spend.to_numpy())
    assert (outcomes["no_purchase"] == (counted == 0)).all()
    # the hidden state agrees with what happened: the dropped-out buy nothing
    assert not (outcomes["purchases"] > 0)[~outcomes["alive_at_as_of"]].any()
    assert not (outcomes["dropped_by_end"] & (outcomes["purchases"] > 0) & ~outcomes["alive_at_as_of"]).any()
    assert (~outcomes["alive_at_as_of"] <= outcomes["dropped_by_end"]).all()
    if day == pd.Timestamp("2026-07-31"):
        truth = shocked.truth[shocked.truth["horizon_days"] == 90]
        assert (truth["alive"].to_numpy() == outcomes["alive_at_as_of"].to_numpy()).all()


def test_outcomes_refuse_a_window_beyond_the_history(plain):
    with pytest.raises(ValueError, match=r"within the history \(2023-11-01 … 2026-10-31\)"):
        plain.outcomes("2026-09-01", 90)
    with pytest.raises(ValueError, match="horizon_days must be a positive integer"):
        plain.outcomes("2025-01-01", 0)


def test_the_shocked_hazard_stays_below_one():
    sim = simulate_crm(customers=3_000, seed=5, shock=Shock(SHOCK_DATE, 1e6, share=1.0))
    dropout = sim.hidden["dropout_date"]
    first_week = dropout[dropout >= pd.Timestamp(SHOCK_DATE)].min()  # the first week the shock acts in
    exposed = (sim.customers["signup_date"] < first_week - pd.Timedelta(days=7)) & ~(dropout < first_week)
    dropped = (dropout[exposed] == first_week).mean()
    assert MAX_SHOCKED_HAZARD - 0.02 < dropped < 1  # a capped probability leaves survivors


def test_stage_passes_the_scenario_through(tmp_path):
    settings = settings_from_dict(
        {
            "simulate": {
                "customers": 500,
                "shock": {"date": "2025-06-15", "region": "south", "hazard_multiplier": 4},
                "shift": {"start": "2025-01-01", "month_to_month_share": 0.9},
            }
        }
    )
    simulate_stage(settings, tmp_path, seed=2)
    direct = simulate_crm(
        customers=500,
        seed=2,
        horizons_days=(90, 365),
        shock=Shock(SHOCK_DATE, 4.0, region="south"),
        shift=Shift(SHIFT_START, 0.9),
        campaigns=settings.simulate.to_campaigns(),  # the shipped past campaigns
    )
    written = pd.read_parquet(tmp_path / "transactions.parquet")
    assert len(written) == len(direct.transactions)
    assert (written["amount"].to_numpy() == direct.transactions["amount"].to_numpy()).all()
    assert Settings().simulate.shock.to_shock() is None and Settings().simulate.shift.to_shift() is None


@pytest.mark.parametrize(
    ("scenario", "message"),
    [
        ({"shock": {"hazard_multiplier": 0}}, "simulate.shock.hazard_multiplier: expected a number > 0, got 0"),
        ({"shock": {"date": "2025-06-15", "region": "nowhere"}}, "simulate: shock.region must be one of north"),
        ({"shock": {"date": "2025-06-15", "share": 1.5}}, "simulate.shock.share: expected a number between 0 and 1"),
        ({"shock": {"date": "2025-06-15", "share": 0}}, "simulate: shock.share must be in (0, 1], got 0.0"),
        ({"shock": {"date": "2025-06-15", "region": "north", "share": 0.2}}, "simulate: shock: give region or share"),
        ({"shock": {"date": "2025-06-15"}}, "simulate: shock: give the region it hits or the share"),
        (
            {"shock": {"date": "2023-11-01", "region": "north"}},
            "simulate: shock.date must lie in (start_date, end_date]",
        ),
        (
            {"shock": {"date": "2026-11-01", "region": "north"}},
            "simulate: shock.date must lie in (start_date, end_date]",
        ),
        ({"shock": {"date": "15/06/2025", "region": "north"}}, "simulate.shock.date: expected a date as YYYY-MM-DD"),
        ({"shock": {"multiplier": 2}}, "simulate.shock.multiplier: unknown key"),
        ({"shift": {"start": "2025-01-01"}}, "simulate: shift.month_to_month_share is needed with shift.start"),
        (
            {"shift": {"start": "2026-10-31", "month_to_month_share": 0.9}},
            "simulate: shift.start must lie in [start_date, end_date)",
        ),
    ],
)
def test_bad_scenarios_give_one_line_naming_the_key(scenario, message):
    with pytest.raises(SettingsError) as err:
        settings_from_dict({"simulate": scenario})
    assert str(err.value).startswith(f"params.yaml: {message}")
    assert "\n" not in str(err.value)


def test_bad_scenarios_are_refused_by_the_simulator_too():
    with pytest.raises(ValueError, match="shock.hazard_multiplier must be > 0"):
        Shock(SHOCK_DATE, -1.0, region="north")
    with pytest.raises(ValueError, match=r"shock.date must lie in \(start_date, end_date\]"):
        simulate_crm(customers=10, shock=Shock(dt.date(2030, 1, 1), 2.0, region="north"))
    with pytest.raises(ValueError, match=r"shift.month_to_month_share must be in \[0, 1\]"):
        Shift(SHIFT_START, 1.5)
