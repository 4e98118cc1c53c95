"""Tests for crmscore.planning: expected incremental value, the budgeted contact list, the profit curve and
the interval of a plan's expected profit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crmscore import planning
from crmscore.errors import DataError


def _scores(uplift, clv, ids=None) -> pd.DataFrame:
    n = len(uplift)
    return pd.DataFrame(
        {
            "customer_id": np.arange(1, n + 1) if ids is None else ids,
            "uplift": np.asarray(uplift, dtype=float),
            "clv": np.asarray(clv, dtype=float),
            "churn_probability": np.linspace(0.1, 0.9, n),
            "value_at_risk": np.linspace(10, 90, n),
            "tier": ["A"] * n,
            "risk_band": ["high"] * n,
        }
    )


def test_expected_incremental_value_is_uplift_times_clv_minus_cost():
    value = planning.expected_incremental_value(np.array([0.1, -0.05, np.nan]), np.array([200.0, 100.0, 50.0]), 5.0)
    np.testing.assert_allclose(value[:2], [15.0, -10.0])
    assert np.isnan(value[2])
    with pytest.raises(ValueError, match="contact cost"):
        planning.expected_incremental_value(np.array([0.1]), np.array([1.0]), -1.0)


def test_plan_keeps_positive_values_best_first_within_budget():
    # values: 15, -10, 45, 5, -5 (cost 5) -> ranked 3, 1, 4; budget 10 buys two contacts
    scores = _scores([0.1, -0.05, 0.25, 0.05, 0.0], [200, 100, 200, 200, 300])
    plan = planning.plan_contacts(scores, budget=10.0, cost=5.0)
    assert plan["customer_id"].tolist() == [3, 1]
    assert plan["rank"].tolist() == [1, 2]
    np.testing.assert_allclose(plan["expected_incremental_value"], [45.0, 15.0])
    np.testing.assert_allclose(plan["cumulative_cost"], [5.0, 10.0])
    assert list(plan.columns) == planning.PLAN_COLUMNS
    unlimited = planning.plan_contacts(scores, budget=None, cost=5.0)
    assert unlimited["customer_id"].tolist() == [3, 1, 4]  # never a customer worth less than the contact


def test_plan_is_the_most_profit_the_budget_buys():
    rng = np.random.default_rng(3)
    scores = _scores(rng.normal(0.02, 0.05, 500), rng.gamma(2.0, 100.0, 500))
    budget, cost = 300.0, 4.0
    plan = planning.plan_contacts(scores, budget, cost)
    value = scores["uplift"] * scores["clv"] - cost
    best = np.sort(value.to_numpy())[::-1][: int(budget // cost)]
    assert plan["expected_incremental_value"].sum() == pytest.approx(best[best > 0].sum())
    assert len(plan) * cost <= budget


def test_plan_order_does_not_depend_on_row_order():
    scores = _scores([0.1, 0.1, 0.1, 0.2], [100, 100, 100, 100], ids=[7, 3, 5, 1])
    first = planning.plan_contacts(scores, None, 1.0)
    second = planning.plan_contacts(scores.iloc[::-1].reset_index(drop=True), None, 1.0)
    assert first["customer_id"].tolist() == second["customer_id"].tolist() == [1, 3, 5, 7]


def test_plan_carries_reasons_and_refuses_scores_without_uplift():
    scores = _scores([0.2, 0.1], [100, 100])
    plan = planning.plan_contacts(scores, None, 1.0, reasons=pd.Series({1: "late payments", 2: "few purchases"}))
    assert plan["reasons"].tolist() == ["late payments", "few purchases"]
    with pytest.raises(DataError, match="crmscore train uplift"):
        planning.plan_contacts(_scores([np.nan, np.nan], [1, 1]), None, 1.0)
    with pytest.raises(DataError, match="no CLV"):
        planning.plan_contacts(_scores([0.1, 0.1], [np.nan, np.nan]), None, 1.0)


def test_zero_budget_contacts_nobody():
    plan = planning.plan_contacts(_scores([0.2, 0.1], [100, 100]), budget=0.0, cost=5.0)
    assert plan.empty


def test_profit_curve_rises_to_the_positive_values_then_falls():
    scores = _scores([0.2, 0.1, 0.0, -0.1], [100, 100, 100, 100])
    curve = planning.profit_curve(scores, cost=5.0)
    np.testing.assert_allclose(curve["expected_profit"], [0.0, 15.0, 20.0, 15.0, 0.0])
    assert curve["contacted"].tolist() == [0, 1, 2, 3, 4]
    assert curve.loc[curve["expected_profit"].idxmax(), "contacted"] == 2


def test_targeted_by_takes_the_highest_values():
    scores = _scores([0.0] * 4, [1] * 4)
    scores["churn_probability"] = [0.3, 0.9, np.nan, 0.5]
    assert scores.iloc[planning.targeted_by(scores, "churn_probability", 2)]["customer_id"].tolist() == [2, 4]


def _holdout(n: int, true_uplift: float, predicted: float, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = rng.binomial(1, 0.5, n)
    y = rng.binomial(1, 0.5 + true_uplift * t)
    return pd.DataFrame({"uplift": np.full(n, predicted) + rng.normal(0, 1e-3, n), "treated": t, "retained": y})


def test_profit_interval_scales_by_the_held_out_realized_uplift():
    plan = pd.DataFrame({"uplift": [0.2] * 10, "clv": [100.0] * 10})
    # The model predicts 0.2 where the truth is 0.1: the calibrated profit is about half the gain.
    interval = planning.profit_interval(plan, 10, 1.0, _holdout(20_000, 0.1, 0.2), samples=100)
    assert interval.expected == pytest.approx(200.0 - 10.0)
    assert interval.ratio == pytest.approx(0.5, abs=0.1)
    assert interval.low < interval.calibrated < interval.high
    assert interval.low < 100.0 - 10.0 < interval.high
    assert not interval.low < interval.expected < interval.high  # the overstated expectation lies outside


def test_profit_interval_without_held_out_customers_gives_the_expectation_only():
    plan = pd.DataFrame({"uplift": [0.1], "clv": [100.0]})
    interval = planning.profit_interval(plan, 10, 1.0, None)
    assert interval.expected == pytest.approx(9.0)
    assert interval.low is None and interval.high is None and interval.calibrated is None
