"""Contractual CLV (``crmscore.clv.contractual``): hand-computed values, limits and input checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crmscore.clv import contractual as cc


def loop_sum(r: float, d: float, months: int) -> float:
    """The definition, term by term: next month first, each paid with probability rᵗ, discounted t months."""
    return sum(r**t / (1 + d) ** t for t in range(1, months + 1))


# --- monthly retention and discount ------------------------------------------------------------------


def test_monthly_retention_keeps_the_survival_over_the_churn_horizon():
    r = cc.monthly_retention([0.0, 0.25, 1.0], horizon_days=90)

    assert r[0] == 1.0 and r[2] == 0.0
    assert r[1] == pytest.approx(0.75 ** (30.4375 / 90))
    # Surviving 90 days' worth of months reproduces the 90-day survival.
    assert r[1] ** (90 / cc.DAYS_PER_MONTH) == pytest.approx(0.75)
    # A one-month horizon leaves the probability unchanged.
    assert cc.monthly_retention(0.1, cc.DAYS_PER_MONTH) == pytest.approx(0.9)


def test_monthly_discount_rate_compounds_to_the_annual_rate():
    d = cc.monthly_discount_rate(0.10)

    assert d == pytest.approx(1.1 ** (1 / 12) - 1)
    assert (1 + d) ** 12 == pytest.approx(1.10)
    assert cc.monthly_discount_rate(0.0) == 0.0


# --- expected discounted months --------------------------------------------------------------------


def test_expected_discounted_months_hand_computed():
    # r = 0.9, d = 0, H = 3: 0.9 + 0.81 + 0.729.
    assert cc.expected_discounted_months(0.9, 0.0, 3) == pytest.approx(2.439)
    # r = 0.5, d = 0.25 → q = 0.4, H = 2: 0.4 + 0.16.
    assert cc.expected_discounted_months(0.5, 0.25, 2) == pytest.approx(0.56)


def test_expected_discounted_months_limits():
    assert cc.expected_discounted_months(1.0, 0.0, 12) == 12.0  # nobody leaves, no discounting: H months
    assert cc.expected_discounted_months(0.0, 0.01, 12) == 0.0  # everybody leaves now: nothing more is paid
    assert cc.expected_discounted_months(0.0, 0.0, 12) == 0.0
    assert cc.expected_discounted_months(0.8, 0.01, 0) == 0.0  # a zero horizon counts nothing
    # Long horizons approach the margin multiple r / (1 + d − r).
    assert cc.expected_discounted_months(0.9, 0.01, 5000) == pytest.approx(0.9 / (1.01 - 0.9))


def test_expected_discounted_months_is_exact_close_to_and_at_q_equal_one():
    for r in (1.0, 1 - 1e-9, 1 - 1e-6, 1 - 1e-3):
        assert cc.expected_discounted_months(r, 0.0, 24) == pytest.approx(loop_sum(r, 0.0, 24), rel=1e-12)


@pytest.mark.parametrize("r", [0.0, 0.3, 0.77, 0.95, 0.999, 1.0])
@pytest.mark.parametrize("d", [0.0, 0.00797, 0.05])
@pytest.mark.parametrize("months", [1, 12, 60])
def test_closed_form_agrees_with_the_loop_sum(r, d, months):
    assert cc.expected_discounted_months(r, d, months) == pytest.approx(loop_sum(r, d, months), rel=1e-12, abs=1e-15)


def test_expected_discounted_months_is_vectorised_and_broadcasts():
    r = np.array([0.0, 0.5, 0.9, 1.0])
    d = np.array([[0.0], [0.02]])

    out = cc.expected_discounted_months(r, d, 6)

    assert out.shape == (2, 4)
    expected = [[loop_sum(ri, di, 6) for ri in r] for di in (0.0, 0.02)]
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_expected_discounted_months_is_monotone():
    r = np.linspace(0, 1, 101)
    by_retention = cc.expected_discounted_months(r, 0.01, 12)
    by_discount = cc.expected_discounted_months(0.9, np.linspace(0, 0.1, 50), 12)
    by_horizon = [cc.expected_discounted_months(0.9, 0.01, h) for h in range(0, 40)]

    assert np.all(np.diff(by_retention) > 0)
    assert np.all(np.diff(by_discount) < 0)
    assert np.all(np.diff(by_horizon) > 0)


# --- contractual CLV -----------------------------------------------------------------------------------


def test_contractual_clv_hand_computed():
    # 50/month, 90-day churn probability 0.2, margin 0.6, 10 % a year, 12 months.
    r = 0.8 ** (30.4375 / 90)
    d = 1.1 ** (1 / 12) - 1
    expected = 0.6 * 50 * sum((r / (1 + d)) ** t for t in range(1, 13))

    clv = cc.contractual_clv(50.0, 0.2, 90, margin=0.6, annual_discount_rate=0.10, horizon_months=12)

    assert clv == pytest.approx(expected, rel=1e-12)
    # By hand: r = 0.8^0.3382 = 0.92731, d = 0.0079741, q = r / (1 + d) = 0.91997, q¹² = 0.36752,
    # Σ = q (1 − q¹²) / (1 − q) = 7.2705 months, × 0.6 × 50 = 218.1.
    assert clv == pytest.approx(218.12, abs=0.01)


def test_contractual_clv_limits_and_scaling():
    assert cc.contractual_clv(30.0, 0.0, 90, annual_discount_rate=0.0, horizon_months=12) == pytest.approx(360.0)
    assert cc.contractual_clv(30.0, 1.0, 90) == 0.0
    assert cc.contractual_clv(0.0, 0.3, 90) == 0.0
    assert cc.contractual_clv(30.0, 0.3, 90, margin=0.0) == 0.0
    # Linear in revenue and margin.
    base = cc.contractual_clv(10.0, 0.3, 90)
    assert cc.contractual_clv(20.0, 0.3, 90, margin=0.5) == pytest.approx(base)


def test_contractual_clv_is_vectorised_and_monotone():
    revenue = pd.Series([20.0, 20.0, 20.0, 80.0])
    p = pd.Series([0.1, 0.4, 0.9, 0.4])

    clv = cc.contractual_clv(revenue, p, 90)

    assert isinstance(clv, np.ndarray) and clv.shape == (4,)
    assert clv[0] > clv[1] > clv[2] > 0  # more churn risk, less value
    assert clv[3] == pytest.approx(4 * clv[1])
    singles = [float(cc.contractual_clv(m, q, 90)) for m, q in zip(revenue, p, strict=True)]
    np.testing.assert_allclose(clv, singles)
    # A longer horizon or a lower discount rate adds value.
    assert cc.contractual_clv(20.0, 0.4, 90, horizon_months=24) > clv[1]
    assert cc.contractual_clv(20.0, 0.4, 90, annual_discount_rate=0.0) > clv[1]


# --- errors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"monthly_revenue": [10.0, -5.0]},
            r"monthly_revenue must be ≥ 0, found 1 negative value\(s\), e.g. -5 at position 1",
        ),
        (
            {"monthly_revenue": [10.0, np.nan]},
            r"monthly_revenue holds 1 missing \(NaN\) value\(s\), the first at position 1",
        ),
        ({"monthly_revenue": [np.inf]}, "monthly_revenue must be finite"),
        ({"monthly_revenue": ["a lot"]}, "monthly_revenue must be numeric"),
        (
            {"churn_probability": [0.2, 1.5]},
            r"churn_probability must lie in \[0, 1\], found 1 value\(s\) outside, e.g. 1.5",
        ),
        ({"churn_probability": [-0.1]}, r"churn_probability must lie in \[0, 1\]"),
        (
            {"churn_probability": [np.nan, 0.2]},
            r"churn_probability holds 1 missing \(NaN\) value\(s\), the first at position 0",
        ),
        ({"churn_horizon_days": 0}, "horizon_days must be a positive number of days, got 0"),
        ({"margin": 1.5}, r"margin must lie in \[0, 1\], got 1.5"),
        ({"annual_discount_rate": -0.1}, "annual_discount_rate must be a finite rate ≥ 0, got -0.1"),
        ({"horizon_months": 2.5}, "horizon_months must be a whole number of months ≥ 0, got 2.5"),
        ({"horizon_months": -1}, "horizon_months must be a whole number of months ≥ 0, got -1"),
    ],
)
def test_contractual_clv_rejects_bad_input_with_a_clear_message(kwargs, message):
    args = {"monthly_revenue": [10.0, 20.0], "churn_probability": [0.2, 0.3], "churn_horizon_days": 90} | kwargs
    with pytest.raises(ValueError, match=message):
        cc.contractual_clv(**args)


def test_expected_discounted_months_rejects_bad_input():
    with pytest.raises(ValueError, match=r"retention must lie in \[0, 1\]"):
        cc.expected_discounted_months(1.2, 0.0, 12)
    with pytest.raises(ValueError, match="monthly_discount must be finite and ≥ 0"):
        cc.expected_discounted_months(0.9, -0.01, 12)
