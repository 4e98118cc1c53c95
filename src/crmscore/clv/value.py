"""CLV estimators as the registry serves them: expected spend and lifetime value from the feature frame.

Three estimators share one interface so that training, promotion and batch scoring treat them alike:
``fit`` learns, ``predict(X)`` returns the **expected spend** in the next ``horizon_days`` (the quantity
compared with what customers actually spent on a holdout), and ``clv(X)`` the **lifetime value**:
``margin`` × spend, discounted at ``annual_discount_rate``. ``X`` is always the point-in-time feature
frame of :func:`crmscore.features.build_features` (indexed by customer).

* :class:`BtydClv` — BG/NBD (or Pareto/NBD) × Gamma-Gamma. The calibration summary is read from the
  features ``repeat_purchase_days``, ``first_purchase_days``, ``recency_days`` and ``repeat_spend_mean``
  (:func:`summary_from_features`, identical to :func:`~crmscore.clv.btyd.rfm_summary` at the same
  as-of date). It holds only the fitted parameters. Its discounting is exact: expected purchases are
  discounted month by month. Customers without any purchase yet are outside the model; their spend
  is 0. Where nobody drops out it uses the NBD, the dropout models' boundary, and says so in ``fit_note_``.
* :class:`~crmscore.clv.ml.ClvModel` — LightGBM on the features (module :mod:`crmscore.clv.ml`); its
  ``clv`` is given by :func:`lifetime_value`, which discounts the predicted spend as if it were spread
  evenly over the horizon (the mean of the monthly discount factors).
* :class:`ContractualClv` — subscription data: margin × monthly revenue × expected discounted remaining
  months given the churn model's retention (:mod:`crmscore.clv.contractual`). It needs the column
  ``churn_probability`` (from the churn champion) next to the features.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin

from crmscore.clv import btyd
from crmscore.clv.contractual import contractual_clv
from crmscore.errors import DataError

__all__ = [
    "BTYD_FEATURES",
    "summary_from_features",
    "BtydClv",
    "ContractualClv",
    "mean_discount_factor",
    "lifetime_value",
]

log = logging.getLogger("crmscore")

#: Features that hold the buy-till-you-die calibration summary.
BTYD_FEATURES = ("repeat_purchase_days", "first_purchase_days", "recency_days", "repeat_spend_mean")


def summary_from_features(X: pd.DataFrame, time_unit: str = "W") -> pd.DataFrame:
    """The BTYD summary (frequency, recency, T, monetary_value) of the customers with a purchase.

    Customers who have not bought yet (no first purchase) are left out; the index is kept.
    """
    missing = [c for c in BTYD_FEATURES if c not in X.columns]
    if missing:
        raise DataError(
            f"CLV features: missing column(s) {', '.join(missing)}; the buy-till-you-die models need a "
            "transactions table"
        )
    days = btyd._unit_days(time_unit)
    buyers = X["repeat_purchase_days"].notna().to_numpy()
    part = X.loc[buyers]
    first = part["first_purchase_days"].to_numpy(dtype=float)
    summary = pd.DataFrame(
        {
            "frequency": part["repeat_purchase_days"].to_numpy(dtype=float),
            "recency": (first - part["recency_days"].to_numpy(dtype=float)) / days,
            "T": first / days,
            "monetary_value": part["repeat_spend_mean"].fillna(0.0).to_numpy(dtype=float),
        },
        index=part.index,
    )
    summary.attrs["time_unit"] = time_unit
    return summary


def mean_discount_factor(horizon_days: float, annual_discount_rate: float) -> float:
    """Mean of the monthly discount factors over the horizon (spend spread evenly over it)."""
    _, factors = btyd.discount_factors(horizon_days, annual_discount_rate)
    return float(factors.mean())


class BtydClv(RegressorMixin, BaseEstimator):
    """BG/NBD (or Pareto/NBD) × Gamma-Gamma lifetime value, fitted on the feature frame.

    Args:
        transaction_model: ``"bgnbd"`` or ``"pnbd"``.
        penalizer: L2 penalty on the log-parameters of both models.
        time_unit: time unit of the models (``"W"`` weeks or ``"D"`` days).
        horizon_days: horizon of ``predict`` and ``clv``.
        annual_discount_rate: discount rate of ``clv``.
        margin: share of spend that is profit, applied by ``clv``.

    Fitted: ``transaction_model_`` (the BG/NBD or Pareto/NBD, or the
    :class:`~crmscore.clv.btyd.NBDModel` where the data show no dropout), ``spend_model_`` (their
    ``params_`` and ``standard_errors_``), ``n_buyers_``; ``boundary_`` — None for plain fits,
    ``"no_dropout"`` when the NBD replaced the dropout model, else ``"penalized"`` when a model was
    refitted with a penalizer — and ``fit_note_``: None, or a sentence or two per model saying what
    happened, what it means for the customers and what was used instead. No customer data is kept.
    """

    def __init__(
        self,
        transaction_model: str = "bgnbd",
        penalizer: float = 0.0,
        time_unit: str = "W",
        horizon_days: int = 365,
        annual_discount_rate: float = 0.0,
        margin: float = 1.0,
    ) -> None:
        self.transaction_model = transaction_model
        self.penalizer = penalizer
        self.time_unit = time_unit
        self.horizon_days = horizon_days
        self.annual_discount_rate = annual_discount_rate
        self.margin = margin

    def fit(self, X: pd.DataFrame, y: Any = None) -> BtydClv:
        """Fit both models on the customers of ``X`` who have bought (``y`` is ignored: the models are
        fitted on the calibration history alone).

        Where the data push a fit to a boundary, the model the boundary calls for is used instead — the
        NBD where nobody drops out, a refit with :data:`~crmscore.clv.btyd.FALLBACK_PENALIZER` where
        parameters run off (:func:`~crmscore.clv.btyd.fit_transaction_model`,
        :func:`~crmscore.clv.btyd.fit_spend_model`) — recorded in ``boundary_`` and ``fit_note_`` and
        logged as a warning.
        """
        if self.transaction_model not in ("bgnbd", "pnbd"):
            raise ValueError(f"transaction_model {self.transaction_model!r}: expected bgnbd or pnbd")
        summary = summary_from_features(X, self.time_unit)
        if summary.empty:
            raise DataError("CLV: no customer has a purchase before the as-of date; nothing to fit")
        transactions = btyd.fit_transaction_model(summary, self.transaction_model, self.penalizer, self.time_unit)
        spend = btyd.fit_spend_model(summary, self.penalizer, self.time_unit)
        self.transaction_model_ = transactions.model
        self.spend_model_ = spend.model
        self.boundary_ = transactions.boundary or spend.boundary
        self.fit_note_ = " ".join(note for note in (transactions.note, spend.note) if note) or None
        self.n_buyers_ = len(summary)
        if self.fit_note_:
            log.warning("CLV: %s", self.fit_note_)
        return self

    def _check(self) -> None:
        if not hasattr(self, "transaction_model_"):
            raise AttributeError("BtydClv is not fitted yet; call fit(features) first")

    @staticmethod
    def _by_customer(X: pd.DataFrame, values: Any, fill: float = 0.0) -> np.ndarray:
        """Spread values of the buyers (in the order of :func:`summary_from_features`) over all rows."""
        out = np.full(len(X), fill)
        out[np.flatnonzero(X["repeat_purchase_days"].notna().to_numpy())] = values
        return out

    def _summary(self, X: pd.DataFrame) -> pd.DataFrame:
        self._check()
        return summary_from_features(X, self.time_unit)

    def expected_purchases(self, X: pd.DataFrame) -> np.ndarray:
        """Expected purchase days in the next ``horizon_days`` (0 for customers who never bought)."""
        summary = self._summary(X)
        t = self.horizon_days / btyd.TIME_UNITS[self.time_unit]
        values = self.transaction_model_.conditional_expected_purchases(t, summary) if len(summary) else []
        return self._by_customer(X, values)

    def probability_alive(self, X: pd.DataFrame) -> np.ndarray:
        """P(alive) at the as-of date (NaN for customers who never bought)."""
        summary = self._summary(X)
        values = self.transaction_model_.probability_alive(summary) if len(summary) else []
        return self._by_customer(X, values, np.nan)

    def expected_average_spend(self, X: pd.DataFrame) -> np.ndarray:
        """Expected value of a purchase (NaN for customers who never bought)."""
        summary = self._summary(X)
        values = self.spend_model_.expected_average_spend(summary) if len(summary) else []
        return self._by_customer(X, values, np.nan)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Expected spend in the next ``horizon_days``, undiscounted and before margin."""
        summary = self._summary(X)
        if not len(summary):
            return np.zeros(len(X))
        values = btyd.customer_lifetime_value(
            self.transaction_model_, self.spend_model_, summary, self.horizon_days, 0.0, 1.0
        )
        return self._by_customer(X, values)

    def clv(self, X: pd.DataFrame) -> np.ndarray:
        """Lifetime value over ``horizon_days``: margin × spend, discounted month by month."""
        summary = self._summary(X)
        if not len(summary):
            return np.zeros(len(X))
        values = btyd.customer_lifetime_value(
            self.transaction_model_,
            self.spend_model_,
            summary,
            self.horizon_days,
            self.annual_discount_rate,
            self.margin,
        )
        return self._by_customer(X, values)

    def parameter_table(self) -> pd.DataFrame:
        """Both models' parameters with standard errors and 95 % intervals."""
        self._check()
        parts = []
        for name, model in (("transactions", self.transaction_model_), ("spend", self.spend_model_)):
            table = model.summary_table().reset_index()
            table.insert(0, "model", f"{name} ({model._label})")
            parts.append(table)
        return pd.concat(parts, ignore_index=True)


class ContractualClv(RegressorMixin, BaseEstimator):
    """Subscription CLV: margin × monthly revenue × expected discounted remaining months.

    Nothing is learned from data: ``fit`` only checks that the revenue column exists. ``predict`` and
    ``clv`` need ``churn_probability`` (P(churn within ``churn_horizon_days``), from the churn model)
    next to ``revenue_column`` in ``X``. ``predict`` is the undiscounted revenue expected over the
    horizon; ``clv`` applies margin and discounting.
    """

    def __init__(
        self,
        revenue_column: str = "monthly_revenue",
        churn_horizon_days: int = 30,
        horizon_days: int = 365,
        annual_discount_rate: float = 0.10,
        margin: float = 1.0,
    ) -> None:
        self.revenue_column = revenue_column
        self.churn_horizon_days = churn_horizon_days
        self.horizon_days = horizon_days
        self.annual_discount_rate = annual_discount_rate
        self.margin = margin

    def fit(self, X: pd.DataFrame, y: Any = None) -> ContractualClv:
        """Check the revenue column; nothing is estimated."""
        self._inputs(X, need_probability=False)
        self.fitted_ = True
        return self

    def _inputs(self, X: pd.DataFrame, need_probability: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        if self.revenue_column not in X.columns:
            raise DataError(f"contractual CLV: column {self.revenue_column!r} (monthly revenue) is missing")
        revenue = pd.to_numeric(X[self.revenue_column], errors="coerce").to_numpy(dtype=float)
        if not need_probability:
            return revenue, None
        if "churn_probability" not in X.columns:
            raise DataError("contractual CLV: column 'churn_probability' is missing; score the churn model first")
        return revenue, X["churn_probability"].to_numpy(dtype=float)

    def _months(self) -> int:
        return max(1, round(self.horizon_days / 30.4375))

    def _value(self, X: pd.DataFrame, discount: float, margin: float) -> np.ndarray:
        revenue, p = self._inputs(X)
        return contractual_clv(
            revenue,
            p,
            self.churn_horizon_days,
            margin=margin,
            annual_discount_rate=discount,
            horizon_months=self._months(),
        )

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Revenue expected over the horizon, undiscounted and before margin."""
        return self._value(X, 0.0, 1.0)

    def clv(self, X: pd.DataFrame) -> np.ndarray:
        """Lifetime value over the horizon: margin and discounting applied."""
        return self._value(X, self.annual_discount_rate, self.margin)


def lifetime_value(
    estimator: Any, X: pd.DataFrame, horizon_days: int, annual_discount_rate: float, margin: float
) -> np.ndarray:
    """``estimator.clv(X)`` where the estimator discounts itself, else its predicted spend with margin and
    the mean discount factor of the horizon (spend spread evenly over it)."""
    if hasattr(estimator, "clv"):
        return np.asarray(estimator.clv(X), dtype=float)
    spend = np.asarray(estimator.predict(X), dtype=float)
    return margin * mean_discount_factor(horizon_days, annual_discount_rate) * spend
