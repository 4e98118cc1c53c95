"""Contractual (subscription) CLV: monthly revenue × margin × expected discounted months still to come.

In a contractual setting (a telecom line, a software subscription) the business sees every churn, the
customer pays a known monthly charge, and the value of a customer is the discounted sum of the charges
they will still pay. With a constant monthly retention rate ``r`` (the chance of renewing for another
month), a monthly discount rate ``d`` and a horizon of ``H`` months:

    CLV = margin × monthly_revenue × Σ_{t=1..H} rᵗ / (1 + d)ᵗ

This is the retention-based formula of Gupta & Lehmann ("Customers as assets", Journal of Interactive
Marketing 17(1), 2003) and Gupta, Lehmann & Stuart ("Valuing customers", Journal of Marketing Research
41(1), 2004), truncated at ``H`` months. In Fader & Hardie's terms (e.g. "Customer-base valuation in a
contractual setting", Marketing Science 29(1), 2010) it is the expected residual lifetime value of a
customer who has just paid for the current month, under a constant (homogeneous) retention rate.

**Which month is counted first.** The current month is already paid and is *not* counted: the first
term (t = 1) is next month's charge, paid only if the customer renews (probability ``r``) and discounted
by one month. Add ``margin × monthly_revenue`` to count the current month too.

**Closed form.** With ``q = r / (1 + d)`` the sum is a finite geometric series,

    Σ_{t=1..H} qᵗ = q (1 − q^H) / (1 − q)   (q ≠ 1),   = H   (q = 1, i.e. r = 1 and d = 0),

computed as ``q · expm1(H log q) / (q − 1)`` so that it stays exact as ``q`` approaches 1. As
``H → ∞`` (for q < 1) it tends to ``q / (1 − q) = r / (1 + d − r)``, Gupta & Lehmann's *margin
multiple*.

**Inputs.** The churn model gives P(churn within ``horizon_days``); :func:`monthly_retention` turns it
into the constant monthly rate with the same survival over that horizon, ``r = (1 − p)^(30.4375 /
horizon_days)`` (30.4375 = 365.25 / 12 days per month). The annual discount rate becomes the monthly
rate with the same compounded effect, ``d = (1 + annual)^(1/12) − 1``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "DAYS_PER_MONTH",
    "monthly_retention",
    "monthly_discount_rate",
    "expected_discounted_months",
    "contractual_clv",
]

DAYS_PER_MONTH = 365.25 / 12  # 30.4375


def _as_array(values: Any, name: str) -> np.ndarray:
    """``values`` as a float array with no missing value (one-line ValueError otherwise)."""
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric") from None
    missing = np.isnan(arr)
    if missing.any():
        first = int(np.flatnonzero(missing.ravel())[0])
        raise ValueError(f"{name} holds {int(missing.sum())} missing (NaN) value(s), the first at position {first}")
    return arr


def _check_range(arr: np.ndarray, name: str, low: float, high: float) -> None:
    outside = (arr < low) | (arr > high)
    if outside.any():
        first = int(np.flatnonzero(outside.ravel())[0])
        raise ValueError(
            f"{name} must lie in [{low:g}, {high:g}], found {int(outside.sum())} value(s) outside, "
            f"e.g. {arr.ravel()[first]:.6g} at position {first}"
        )


def monthly_retention(churn_probability: Any, horizon_days: float) -> np.ndarray:
    """Constant monthly retention rate with the same survival as P(churn within ``horizon_days``).

    ``r = (1 − p)^(30.4375 / horizon_days)``: a 90-day churn probability of 0.25 gives
    ``0.75^(30.4375 / 90) ≈ 0.907`` per month. Vectorised; ``p`` must lie in [0, 1].
    """
    p = _as_array(churn_probability, "churn_probability")
    _check_range(p, "churn_probability", 0.0, 1.0)
    if not np.isfinite(horizon_days) or horizon_days <= 0:
        raise ValueError(f"horizon_days must be a positive number of days, got {horizon_days!r}")
    return np.power(1.0 - p, DAYS_PER_MONTH / horizon_days)


def monthly_discount_rate(annual_discount_rate: float) -> float:
    """Monthly rate compounding to ``annual_discount_rate`` over a year: ``(1 + annual)^(1/12) − 1``."""
    if not np.isfinite(annual_discount_rate) or annual_discount_rate < 0:
        raise ValueError(f"annual_discount_rate must be a finite rate ≥ 0, got {annual_discount_rate!r}")
    return float((1.0 + annual_discount_rate) ** (1.0 / 12.0) - 1.0)


def expected_discounted_months(retention: Any, monthly_discount: Any, horizon_months: int) -> np.ndarray:
    """Expected discounted number of future monthly payments, ``Σ_{t=1..H} (r / (1 + d))ᵗ``.

    Months are counted from the next one (the current month is already paid). Vectorised over
    ``retention`` and ``monthly_discount`` (broadcast together); exact at ``r / (1 + d) = 1``, where it
    equals ``horizon_months``, and 0 when ``r = 0`` or ``horizon_months = 0``.
    """
    r = _as_array(retention, "retention")
    _check_range(r, "retention", 0.0, 1.0)
    d = _as_array(monthly_discount, "monthly_discount")
    if not np.isfinite(d).all() or (d < 0).any():
        raise ValueError("monthly_discount must be finite and ≥ 0")
    if isinstance(horizon_months, bool) or not float(horizon_months).is_integer() or horizon_months < 0:
        raise ValueError(f"horizon_months must be a whole number of months ≥ 0, got {horizon_months!r}")
    h = float(horizon_months)
    q = r / (1.0 + d)
    at_one = q == 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        # q (q^H − 1) / (q − 1) with expm1 / log: no cancellation as q approaches 1; log(0) = −inf gives 0.
        geometric = q * np.expm1(h * np.log(q)) / np.where(at_one, 1.0, q - 1.0)
    months = np.where(at_one, h, geometric)
    return np.where(q == 0.0, 0.0, months)


def contractual_clv(
    monthly_revenue: Any,
    churn_probability: Any,
    churn_horizon_days: float,
    margin: float = 1.0,
    annual_discount_rate: float = 0.10,
    horizon_months: int = 12,
) -> np.ndarray:
    """CLV of subscribers: ``margin × monthly_revenue × Σ_{t=1..H} rᵗ / (1 + d)ᵗ`` (see the module docstring).

    Args:
        monthly_revenue: monthly charge of each customer (≥ 0).
        churn_probability: P(churn within ``churn_horizon_days``) of each customer, e.g. from the churn
            model, in [0, 1]; turned into a monthly retention rate by :func:`monthly_retention`.
        churn_horizon_days: the horizon of ``churn_probability``, in days.
        margin: share of revenue that is profit, in [0, 1] (1 = CLV in revenue).
        annual_discount_rate: yearly discount rate (≥ 0), applied monthly as ``(1 + annual)^(1/12) − 1``.
        horizon_months: months counted, starting with the next one (the current month is already paid).

    Returns:
        One CLV per customer (``monthly_revenue`` and ``churn_probability`` broadcast together), as floats.
    """
    revenue = _as_array(monthly_revenue, "monthly_revenue")
    if not np.isfinite(revenue).all():
        raise ValueError("monthly_revenue must be finite")
    negative = revenue < 0
    if negative.any():
        first = int(np.flatnonzero(negative.ravel())[0])
        raise ValueError(
            f"monthly_revenue must be ≥ 0, found {int(negative.sum())} negative value(s), "
            f"e.g. {revenue.ravel()[first]:.6g} at position {first}"
        )
    if not np.isfinite(margin) or not 0.0 <= margin <= 1.0:
        raise ValueError(f"margin must lie in [0, 1], got {margin!r}")
    retention = monthly_retention(churn_probability, churn_horizon_days)
    months = expected_discounted_months(retention, monthly_discount_rate(annual_discount_rate), horizon_months)
    return margin * revenue * months
