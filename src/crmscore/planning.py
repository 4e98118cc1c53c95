"""Retention planning: whom to contact within a budget, for how much retained value.

A retention offer pays where it changes what the customer does, weighed by what the customer is worth.
Per customer, the **expected incremental value** of a contact is

    uplift × CLV − contact cost

with ``uplift`` the uplift model's change in the probability of buying again within its horizon
(:class:`crmscore.uplift.UpliftModel`) and ``CLV`` the customer's lifetime value (margin applied). A lost
cause (uplift near 0), a loyal customer (the same) and a customer the offer pushes away (negative uplift)
all have a negative value; so has a customer worth less than the contact.

:func:`plan_contacts` ranks the customers of a scoring by that value and keeps those with a positive one
until the budget is spent: with one cost per contact this is the most expected profit the budget can buy.
:func:`profit_curve` is the cumulative expected profit against the number contacted (it rises while the
values are positive, then falls). :func:`profit_interval` says how sure the plan's expected profit is:
on the uplift model's held-out randomized customers, the realized uplift of the top share (treated minus
control retention) over the predicted one is bootstrapped, and the expected profit is scaled by each
resample's ratio.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from crmscore.errors import DataError

__all__ = [
    "PLAN_COLUMNS",
    "ProfitInterval",
    "contact_cost",
    "expected_incremental_value",
    "plan_contacts",
    "profit_curve",
    "profit_interval",
    "targeted_by",
]

#: Columns of plan.parquet, in order.
PLAN_COLUMNS = [
    "rank",
    "customer_id",
    "expected_incremental_value",
    "uplift",
    "clv",
    "churn_probability",
    "value_at_risk",
    "tier",
    "risk_band",
    "cumulative_cost",
    "reasons",
]


def contact_cost(given: float | None, setting: float | None, uplift_model: object | None) -> float:
    """The cost of one contact: ``given`` (e.g. ``--cost``), else ``setting`` (``plan.contact_cost``), else the
    uplift model's ``contact_cost`` (the mean cost of a treated customer in its campaigns), else 0."""
    for cost in (given, setting):
        if cost is not None:
            return float(cost)
    return float(getattr(uplift_model, "contact_cost", 0.0) or 0.0)


def expected_incremental_value(uplift: np.ndarray, clv: np.ndarray, cost: float) -> np.ndarray:
    """``uplift × clv − cost`` per customer; NaN where the uplift or the CLV is missing."""
    if not np.isfinite(cost) or cost < 0:
        raise ValueError(f"the contact cost must be a number ≥ 0, got {cost!r}")
    return np.asarray(uplift, dtype=float) * np.asarray(clv, dtype=float) - float(cost)


def _contacts_affordable(budget: float | None, cost: float, candidates: int) -> int:
    if budget is None or cost == 0:
        return candidates
    if not np.isfinite(budget) or budget < 0:
        raise ValueError(f"the budget must be a number ≥ 0, got {budget!r}")
    return min(candidates, int(np.floor(budget / cost + 1e-9)))


def _ranked(scores: pd.DataFrame, value: np.ndarray) -> np.ndarray:
    """Row positions by descending ``value``, ties by customer id (so the order never depends on the input's)."""
    return np.lexsort((scores["customer_id"].to_numpy(), -value))


def plan_contacts(
    scores: pd.DataFrame, budget: float | None, cost: float, reasons: pd.Series | None = None
) -> pd.DataFrame:
    """The contact list: customers with a positive expected incremental value, best first, within budget.

    Args:
        scores: a scoring's rows (``scores.parquet``) with ``uplift`` and ``clv``.
        budget: total contact cost to spend; ``None`` contacts every customer worth more than the contact.
        cost: cost of one contact.
        reasons: text per customer id (e.g. the churn model's top reasons), copied to ``reasons``.

    Returns:
        :data:`PLAN_COLUMNS`, ranked from 1; ``expected_incremental_value`` is recomputed with ``cost``.
    """
    if scores["uplift"].isna().all():
        raise DataError(
            "plan: the scores have no uplift (no uplift champion when they were scored): run `crmscore train "
            "uplift` and score again"
        )
    if scores["clv"].isna().all():
        raise DataError(
            "plan: the scores have no CLV (no CLV champion when they were scored): the plan weighs uplift by CLV"
        )
    value = expected_incremental_value(scores["uplift"].to_numpy(), scores["clv"].to_numpy(), cost)
    value = np.where(np.isnan(value), -np.inf, value)
    order = _ranked(scores, value)
    positive = order[value[order] > 0]
    chosen = positive[: _contacts_affordable(budget, cost, len(positive))]
    plan = scores.iloc[chosen].reset_index(drop=True)
    plan["expected_incremental_value"] = value[chosen]
    plan["rank"] = np.arange(1, len(plan) + 1, dtype=np.int64)
    plan["cumulative_cost"] = plan["rank"].to_numpy(dtype=float) * float(cost)
    if reasons is not None:
        plan["reasons"] = plan["customer_id"].map(reasons).fillna("").astype(object)
    else:
        plan["reasons"] = ""
    return plan.reindex(columns=PLAN_COLUMNS)


def profit_curve(scores: pd.DataFrame, cost: float, points: int = 200) -> pd.DataFrame:
    """Cumulative expected profit against the number contacted, best expected incremental value first.

    At most ``points`` rows (evenly spaced counts, always including 0, the count where the profit peaks and
    everyone): ``contacted``, ``share`` of the scored customers, ``cost`` and ``expected_profit``.
    """
    value = expected_incremental_value(scores["uplift"].to_numpy(), scores["clv"].to_numpy(), cost)
    value = np.where(np.isnan(value), -float(cost), value)  # without a prediction a contact costs its price
    cumulative = np.concatenate([[0.0], np.cumsum(value[_ranked(scores, value)])])
    n = len(value)
    counts = np.unique(np.concatenate([np.linspace(0, n, min(points, n + 1)).round(), [np.argmax(cumulative)]]))
    counts = counts.astype(np.int64)
    return pd.DataFrame(
        {
            "contacted": counts,
            "share": counts / max(n, 1),
            "cost": counts * float(cost),
            "expected_profit": cumulative[counts],
        }
    )


def targeted_by(scores: pd.DataFrame, column: str, count: int) -> np.ndarray:
    """Row positions of the ``count`` customers with the highest ``column`` (ties by customer id), e.g. the
    churn risk or the value at risk a plan is compared with."""
    values = scores[column].to_numpy(dtype=float)
    return _ranked(scores, np.where(np.isnan(values), -np.inf, values))[:count]


@dataclasses.dataclass(frozen=True)
class ProfitInterval:
    """A plan's expected profit, the same scaled to the held-out realized uplift, and its 95 % interval."""

    expected: float
    calibrated: float | None
    low: float | None
    high: float | None
    ratio: float | None  # realized / predicted uplift of the held-out customers in the plan's top share
    holdout_customers: int


def _realized_ratio(holdout: pd.DataFrame, top: int) -> float | None:
    """Realized (treated minus control retention) over mean predicted uplift of the ``top`` best-ranked."""
    rows = holdout.iloc[:top]
    t = rows["treated"].to_numpy() == 1
    if t.all() or not t.any():
        return None
    predicted = float(rows["uplift"].mean())
    if predicted <= 0:
        return None
    realized = float(rows.loc[t, "retained"].mean() - rows.loc[~t, "retained"].mean())
    return realized / predicted


def profit_interval(
    plan: pd.DataFrame,
    customers: int,
    cost: float,
    holdout: pd.DataFrame | None,
    samples: int = 200,
    seed: int = 42,
) -> ProfitInterval:
    """The plan's expected profit (sum of its expected incremental values) and how far to trust it.

    ``holdout`` holds the uplift model's held-out randomized customers (``uplift`` predicted, ``treated``,
    ``retained``). Among them the same top share the plan contacts (``len(plan) / customers``, at least
    100 customers) is taken by predicted uplift; realized over predicted uplift there scales the plan's
    expected retained value, and ``samples`` bootstrap resamples of the held-out customers give the 2.5 %
    and 97.5 % points. Without held-out customers, or where the top share lacks an arm, only the expected
    profit is given.
    """
    gained = float((plan["uplift"] * plan["clv"]).sum())
    spent = float(cost) * len(plan)
    expected = gained - spent
    if holdout is None or not len(holdout) or not len(plan):
        return ProfitInterval(expected, None, None, None, None, 0 if holdout is None else len(holdout))
    ranked = holdout.sort_values("uplift", ascending=False, kind="stable")
    top = max(100, int(np.ceil(len(ranked) * len(plan) / max(customers, 1))))
    ratio = _realized_ratio(ranked, top)
    if ratio is None:
        return ProfitInterval(expected, None, None, None, None, len(holdout))
    rng = np.random.default_rng(seed)
    ratios = []
    for _ in range(samples):
        resample = ranked.iloc[np.sort(rng.integers(0, len(ranked), len(ranked)))]
        resample = resample.sort_values("uplift", ascending=False, kind="stable")
        r = _realized_ratio(resample, top)
        if r is not None:
            ratios.append(r)
    low = high = None
    if ratios:
        low, high = (float(q) * gained - spent for q in np.quantile(ratios, [0.025, 0.975]))
    return ProfitInterval(expected, ratio * gained - spent, low, high, ratio, len(holdout))
