"""Buy-till-you-die models fitted by maximum likelihood: BG/NBD, Pareto/NBD and Gamma-Gamma.

The models of non-contractual repeat buying, as published:

* **BG/NBD** — Fader, Hardie & Lee (2005), "Counting your customers the easy way: an alternative to the
  Pareto/NBD model", *Marketing Science* 24(2). While alive a customer buys as a Poisson process with
  rate λ ~ Gamma(r, α); after each purchase she drops out with probability p ~ Beta(a, b).
* **Pareto/NBD** — Schmittlein, Morrison & Colombo (1987); likelihood and conditional expectations as in
  Fader & Hardie (2005), "A note on deriving the Pareto/NBD model and related expressions". Lifetimes
  are exponential with rate μ ~ Gamma(s, β).
* **Gamma-Gamma** — Fader, Hardie & Lee (2005), "RFM and CLV: using iso-value curves for customer base
  analysis", *Journal of Marketing Research* 42(4): the value of each repeat purchase is Gamma(p, ν)
  with ν ~ Gamma(q, γ), independent of the purchase process.
* **NBD** — Ehrenberg (1959); Morrison & Schmittlein (1988): Poisson purchasing with rate
  λ ~ Gamma(r, α) and nobody dropping out, the boundary of both dropout models.

Every model takes a calibration summary as built by :func:`rfm_summary` — one row per customer with
``frequency`` (repeat purchases, x), ``recency`` (time from first to last purchase, t_x), ``T`` (time
from first purchase to the end of calibration) and, for Gamma-Gamma, ``monetary_value`` (mean value of
the repeat purchases). Times are in the summary's **time unit** (``"D"`` days or ``"W"`` weeks), which
the estimators record and check, so a model fitted in weeks is never fed days. The summary keeps its
unit in ``summary.attrs["time_unit"]``; a column named ``T`` is always read as ``summary["T"]``
(``summary.T`` is the transpose).

Log-likelihoods are written in log space with ``gammaln``/``betaln`` and ``logaddexp``; the Pareto/NBD
term with Gauss's hypergeometric function is evaluated as a difference of logs. Parameters are fitted
on the log scale (so they stay positive) with analytic gradients for BG/NBD and Gamma-Gamma, on the
distinct ``(x, t_x, T)`` rows weighted by their counts, which makes a million customers cheap. Standard
errors come from the inverse Hessian of the log-likelihood at the optimum (delta method from the log
scale). A fit that does not converge raises :class:`~crmscore.errors.FitError` with a suggestion,
never returns NaN.

Some data put the maximum on a boundary of the parameter space, which is a finding rather than a
failure: customers who never drop out (a → 0 or b → ∞ in BG/NBD, s → 0 in Pareto/NBD), purchase rates or
spend that hardly differ between customers (parameters running to infinity). Each model class then raises
:class:`NoMaximumError`, with the point where the optimiser stopped; :func:`fit_transaction_model` and
:func:`fit_spend_model`, which the CLV estimator calls, fit the model the boundary calls for instead —
the NBD where nobody drops out, a refit with :data:`FALLBACK_PENALIZER` otherwise — and say so in a note.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd
from scipy import optimize
from scipy.special import betaln, digamma, gammaln, hyp2f1
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from crmscore.errors import DataError, FitError

__all__ = [
    "TIME_UNITS",
    "rfm_summary",
    "validate_summary",
    "BetaGeoModel",
    "ParetoNBDModel",
    "NBDModel",
    "GammaGammaModel",
    "NoMaximumError",
    "FallbackFit",
    "FALLBACK_PENALIZER",
    "NO_DROPOUT_LEVEL",
    "fit_transaction_model",
    "fit_spend_model",
    "discount_factors",
    "customer_lifetime_value",
    "repeat_transactions_tracking",
]

TimeUnit = Literal["D", "W"]
#: Days per time unit.
TIME_UNITS: dict[str, float] = {"D": 1.0, "W": 7.0}
_DAYS_PER_YEAR = 365.25
_SUMMARY_COLUMNS = ("frequency", "recency", "T")


def _unit_days(unit: str) -> float:
    try:
        return TIME_UNITS[unit]
    except KeyError:
        raise ValueError(f"time unit {unit!r}: expected one of {', '.join(TIME_UNITS)} (days, weeks)") from None


# ---------------------------------------------------------------------------------------------------
# calibration summary
# ---------------------------------------------------------------------------------------------------


def rfm_summary(
    transactions: pd.DataFrame,
    as_of: dt.date | str | pd.Timestamp,
    unit: TimeUnit = "W",
    holdout_end: dt.date | str | pd.Timestamp | None = None,
    customer_col: str = "customer_id",
    date_col: str = "date",
    amount_col: str = "amount",
) -> pd.DataFrame:
    """Calibration summary of each customer whose first purchase is on or before ``as_of``.

    Purchases on the same day are merged into one (amounts summed), as in the published analyses.
    Columns: ``frequency`` (purchase days after the first), ``recency`` (first to last purchase day),
    ``T`` (first purchase day to ``as_of``), both in ``unit``; ``monetary_value`` (mean value of the
    repeat purchase days, 0 without repeats). With ``holdout_end``, also ``frequency_holdout`` (purchase
    days in ``(as_of, holdout_end]``), ``monetary_holdout`` (spend in that window) and
    ``duration_holdout`` (its length in ``unit``). Indexed by customer; ``attrs["time_unit"]`` = unit.
    """
    days_per_unit = _unit_days(unit)
    missing = [c for c in (customer_col, date_col, amount_col) if c not in transactions.columns]
    if missing:
        raise DataError(f"transactions: missing column(s) {', '.join(missing)} needed for the RFM summary")
    if transactions.empty:
        raise DataError("transactions: no rows; the RFM summary needs at least one purchase")
    as_of = pd.Timestamp(as_of).normalize()
    # Rows with a missing key would be dropped silently by the groupby below, so they are refused here.
    if transactions[customer_col].isna().any():
        n_missing = int(transactions[customer_col].isna().sum())
        raise DataError(f"transactions: column {customer_col!r}: {n_missing} value(s) are missing")
    try:
        dates = pd.to_datetime(transactions[date_col]).dt.normalize()
    except (ValueError, TypeError) as exc:
        raise DataError(f"transactions: column {date_col!r}: values are not dates ({exc})") from exc
    if dates.isna().any():
        raise DataError(f"transactions: column {date_col!r}: {int(dates.isna().sum())} value(s) are missing")
    amounts = pd.to_numeric(transactions[amount_col], errors="coerce")
    if not np.isfinite(amounts.to_numpy(dtype=float)).all():
        n_bad = int((~np.isfinite(amounts.to_numpy(dtype=float))).sum())
        raise DataError(f"transactions: column {amount_col!r}: {n_bad} value(s) are missing, not numbers or infinite")
    if (amounts < 0).any():
        first = transactions.loc[amounts < 0, customer_col].iloc[0]
        raise DataError(
            f"transactions: column {amount_col!r}: {int((amounts < 0).sum())} negative amount(s) (e.g. customer "
            f"{first!r}); spend must be ≥ 0 — send refunds through the data contract's rejects"
        )
    days = pd.DataFrame({"c": transactions[customer_col].to_numpy(), "d": dates.to_numpy(), "a": amounts.to_numpy()})
    daily = days.groupby(["c", "d"], sort=True, observed=True)["a"].sum().reset_index()
    calib = daily[daily["d"] <= as_of]
    if calib.empty:
        raise DataError(f"transactions: no purchase on or before {as_of.date()}; nothing to summarise")
    grouped = calib.groupby("c", sort=True)
    first = grouped["d"].min()
    last = grouped["d"].max()
    n_days = grouped.size()
    first_amount = calib.loc[calib["d"].eq(calib["c"].map(first)), ["c", "a"]].set_index("c")["a"]
    total = grouped["a"].sum()
    frequency = (n_days - 1).astype(np.int64)
    repeat_spend = total - first_amount.reindex(total.index)
    with np.errstate(invalid="ignore", divide="ignore"):
        monetary = np.where(frequency > 0, repeat_spend / frequency.clip(lower=1), 0.0)
    day = np.timedelta64(1, "D")
    out = pd.DataFrame(
        {
            "frequency": frequency.to_numpy(),
            "recency": ((last - first) / day).to_numpy(dtype=float) / days_per_unit,
            "T": ((as_of - first) / day).to_numpy(dtype=float) / days_per_unit,
            "monetary_value": np.asarray(monetary, dtype=float),
        },
        index=pd.Index(first.index, name=customer_col),
    )
    if holdout_end is not None:
        end = pd.Timestamp(holdout_end).normalize()
        if end <= as_of:
            raise ValueError(f"holdout_end {end.date()} must be after as_of {as_of.date()}")
        hold = daily[(daily["d"] > as_of) & (daily["d"] <= end)].groupby("c")["a"].agg(["size", "sum"])
        out["frequency_holdout"] = hold["size"].reindex(out.index, fill_value=0).to_numpy(dtype=np.int64)
        out["monetary_holdout"] = hold["sum"].reindex(out.index, fill_value=0.0).to_numpy(dtype=float)
        out["duration_holdout"] = ((end - as_of) / day) / days_per_unit
    out.attrs["time_unit"] = unit
    out.attrs["as_of"] = str(as_of.date())
    return out


def validate_summary(summary: pd.DataFrame, where: str = "summary", monetary: bool = False) -> pd.DataFrame:
    """Check a calibration summary; a one-line :class:`DataError` names the column and the rule."""
    return _validate_summary(summary, where, monetary, negative_monetary=False)


def _validate_summary(summary: pd.DataFrame, where: str, monetary: bool, negative_monetary: bool) -> pd.DataFrame:
    if not isinstance(summary, pd.DataFrame):
        raise TypeError(f"{where}: expected a pandas DataFrame with columns frequency, recency, T")
    columns = (*_SUMMARY_COLUMNS, "monetary_value") if monetary else _SUMMARY_COLUMNS
    missing = [c for c in columns if c not in summary.columns]
    if missing:
        raise DataError(f"{where}: missing column(s) {', '.join(missing)} (build it with rfm_summary)")
    if len(summary) == 0:
        raise DataError(f"{where}: no customers")

    def bad(mask: np.ndarray, column: str, rule: str) -> None:
        if mask.any():
            example = summary.index[np.flatnonzero(mask)[0]]
            raise DataError(f"{where}: column {column!r}: {int(mask.sum())} row(s) {rule} (e.g. customer {example!r})")

    values = {c: pd.to_numeric(summary[c], errors="coerce").to_numpy(dtype=float) for c in columns}
    for column in columns:
        bad(~np.isfinite(values[column]), column, "are missing or not finite")
    x, t_x, T = values["frequency"], values["recency"], values["T"]
    bad(x < 0, "frequency", "are negative")
    bad(x != np.round(x), "frequency", "are not whole numbers")
    bad(t_x < 0, "recency", "are negative")
    # before recency > T, which a negative T would otherwise always trip first
    bad(T < 0, "T", "are negative (a first purchase after the end of calibration)")
    bad(t_x > T * (1 + 1e-12), "recency", "are after T (a last purchase after the end of calibration)")
    bad((x == 0) & (t_x != 0), "recency", "are not 0 for customers without repeat purchases")
    if monetary and not negative_monetary:
        bad(values["monetary_value"] < 0, "monetary_value", "are negative")
    return summary


def _check_unit(summary: pd.DataFrame, expected: str, where: str) -> None:
    unit = summary.attrs.get("time_unit")
    if unit is not None and unit != expected:
        raise DataError(f"{where}: summary is in time unit {unit!r} but the model uses {expected!r}")


def _arrays(summary: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        summary["frequency"].to_numpy(dtype=float),
        summary["recency"].to_numpy(dtype=float),
        summary["T"].to_numpy(dtype=float),
    )


def _compress(*columns: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Distinct rows of the columns and how many customers each stands for."""
    frame = pd.DataFrame({str(i): c for i, c in enumerate(columns)})
    counts = frame.groupby(list(frame.columns), sort=False).size()
    keys = counts.index.to_frame(index=False)
    return [keys[str(i)].to_numpy(dtype=float) for i in range(len(columns))], counts.to_numpy(dtype=float)


def _wsum(w: np.ndarray, values: np.ndarray) -> float:
    """Σ w·values without BLAS (whose threads only add overhead for one vector and stall on a busy machine)."""
    return float(np.sum(w * values))


class _Levels:
    """Distinct values of a column and each row's position among them (for per-value special functions)."""

    def __init__(self, column: np.ndarray) -> None:
        self.values, self.index = np.unique(column, return_inverse=True)


# ---------------------------------------------------------------------------------------------------
# shared fitting machinery
# ---------------------------------------------------------------------------------------------------


class NoMaximumError(FitError):
    """The log-likelihood has no proper maximum on the data: the optimiser ran off towards a boundary, stopped
    on a ridge or plateau, or did not converge.

    ``estimates`` holds the parameters where it stopped and ``log_likelihood`` the (unpenalised)
    log-likelihood there (NaN when not finite): on a flat ridge they are arbitrary points, but they show
    which boundary the fit runs to (e.g. a → 0 in BG/NBD: no dropout).
    """

    def __init__(
        self, message: str, estimates: dict[str, float] | None = None, log_likelihood: float = float("nan")
    ) -> None:
        super().__init__(message)
        self.estimates = dict(estimates or {})
        self.log_likelihood = log_likelihood


def _hessian(f: Any, u: np.ndarray, step: float = 1e-4) -> np.ndarray:
    """Central-difference Hessian of the scalar ``f`` at ``u``."""
    k = len(u)
    H = np.empty((k, k))
    f0 = f(u)
    for i in range(k):
        ei = np.zeros(k)
        ei[i] = step
        H[i, i] = (f(u + ei) - 2 * f0 + f(u - ei)) / step**2
        for j in range(i + 1, k):
            ej = np.zeros(k)
            ej[j] = step
            H[i, j] = H[j, i] = (f(u + ei + ej) - f(u + ei - ej) - f(u - ei + ej) + f(u - ei - ej)) / (4 * step**2)
    return H


class _BaseFitter(BaseEstimator):
    """Maximum likelihood on log-parameters; subclasses give names, likelihood and gradient."""

    _names: tuple[str, ...] = ()
    _label = "model"

    def _fit_log_params(
        self,
        neg_ll: Any,
        n_customers: float,
        grad: Any | None,
        start: np.ndarray,
    ) -> None:
        """Minimise the mean negative log-likelihood (+ L2 penalty on the log-parameters).

        ``neg_ll(u)`` is the summed negative log-likelihood at log-parameters ``u``; ``grad(u)``, when
        given, returns it together with its gradient (BFGS), else L-BFGS-B with finite differences
        and a Nelder-Mead polish are used.
        """
        penalty = float(self.penalizer)

        def objective(u: np.ndarray) -> float:
            return neg_ll(u) / n_customers + penalty * float(u @ u)

        def objective_and_gradient(u: np.ndarray) -> tuple[float, np.ndarray]:
            value, g = grad(u)
            return value / n_customers + penalty * float(u @ u), g / n_customers + 2 * penalty * u

        with np.errstate(all="ignore"):
            if grad is not None:
                result = optimize.minimize(
                    objective_and_gradient, start, jac=True, method="BFGS", options={"gtol": 1e-9, "maxiter": 2000}
                )
            else:
                result = optimize.minimize(
                    objective, start, method="L-BFGS-B", options={"ftol": 1e-14, "gtol": 1e-9, "maxiter": 2000}
                )
                if not result.success:
                    # Finite-difference gradients can stall the line search near the optimum; Nelder-Mead
                    # needs no gradient and finishes the job.
                    polish = optimize.minimize(
                        objective,
                        result.x,
                        method="Nelder-Mead",
                        options={"xatol": 1e-9, "fatol": 1e-13, "maxiter": 4000, "maxfev": 8000},
                    )
                    if polish.fun <= result.fun:
                        result = polish
            value = objective(result.x)
        hint = "set clv.penalizer (e.g. 0.001) or check the summary for outliers"
        if not np.isfinite(value) or not np.all(np.isfinite(result.x)):
            message = f"{self._label}: the log-likelihood is not finite at the optimum; {hint}"
            raise self._no_maximum(message, result.x, neg_ll)
        if np.any(np.abs(result.x) > 25):
            worst = int(np.argmax(np.abs(result.x)))
            message = (
                f"{self._label}: parameter {self._names[worst]} ran off to {np.exp(result.x[worst]):.3g} (the "
                f"likelihood has no finite maximum on this data); {hint}"
            )
            raise self._no_maximum(message, result.x, neg_ll)
        if grad is not None and not result.success:
            gnorm = float(np.max(np.abs(objective_and_gradient(result.x)[1])))
            if gnorm > 1e-5:
                message = f"{self._label}: the optimiser did not converge ({result.message}); {hint}"
                raise self._no_maximum(message, result.x, neg_ll)
        self._set_fitted(result.x, neg_ll, n_customers, hint)

    def _no_maximum(self, message: str, u: np.ndarray, neg_ll: Any) -> NoMaximumError:
        """The error of a fit without a proper maximum, with the point where the optimiser stopped."""
        with np.errstate(all="ignore"):
            loglik = -float(neg_ll(u)) if np.all(np.isfinite(u)) else float("nan")
            estimates = dict(zip(self._names, (float(v) for v in np.exp(u)), strict=True))
        return NoMaximumError(message, estimates, loglik)

    def _set_fitted(self, u: np.ndarray, neg_ll: Any, n_customers: float, hint: str) -> None:
        theta = np.exp(u)
        penalty = float(self.penalizer)
        with np.errstate(all="ignore"):
            H = _hessian(lambda v: neg_ll(v) + n_customers * penalty * float(v @ v), u)
            try:
                # A maximum has a positive definite Hessian of the negative log-likelihood. Where it is
                # not, the optimiser stopped on a ridge or a plateau running towards the boundary (e.g.
                # a, b -> inf in BG/NBD, s -> 0 in Pareto/NBD): the "estimates" are arbitrary points on
                # it and their standard errors NaN, so this is a failed fit, not a result.
                np.linalg.cholesky(H)
                covariance = np.linalg.inv(H)
                se_log = np.sqrt(np.diag(covariance))
            except np.linalg.LinAlgError:
                covariance = np.full((len(u), len(u)), np.nan)
                se_log = np.full(len(u), np.nan)
        if not np.all(np.isfinite(se_log)):
            shown = ", ".join(f"{n} = {v:.3g}" for n, v in zip(self._names, theta, strict=True))
            message = (
                f"{self._label}: the log-likelihood has no proper maximum ({shown}: flat or not curving down in "
                f"some direction, so the estimates are not identified by this data); {hint}"
            )
            raise self._no_maximum(message, u, neg_ll)
        self.params_ = dict(zip(self._names, (float(v) for v in theta), strict=True))
        self.log_likelihood_ = -float(neg_ll(u))
        self.n_customers_ = int(round(n_customers))
        self.standard_errors_ = dict(zip(self._names, (float(v) for v in theta * se_log), strict=True))
        # Covariance of the log-parameters (inverse Hessian): parameter draws for the CLV intervals.
        self.covariance_log_ = covariance

    def _reset(self) -> None:
        """Forget a previous fit, so that a failed refit leaves no stale parameters behind."""
        fitted = ("params_", "standard_errors_", "covariance_log_", "log_likelihood_", "n_customers_", "time_unit_")
        for name in (*fitted, "n_excluded_"):
            self.__dict__.pop(name, None)

    def _start_fit(self) -> None:
        self._reset()
        _unit_days(self.time_unit)  # a bad time_unit fails here with the list of valid ones

    def _theta(self) -> tuple[float, ...]:
        if not hasattr(self, "params_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit(summary) first")
        return tuple(self.params_[n] for n in self._names)

    def summary_table(self) -> pd.DataFrame:
        """Parameters with standard errors and 95 % intervals (from the log scale, so they stay positive)."""
        theta = self._theta()
        rows = []
        for name, value in zip(self._names, theta, strict=True):
            se = self.standard_errors_[name]
            half = 1.96 * se / value if np.isfinite(se) else np.nan
            rows.append(
                {
                    "parameter": name,
                    "estimate": value,
                    "std_error": se,
                    "lower_95": value * math.exp(-half) if np.isfinite(half) else np.nan,
                    "upper_95": value * math.exp(half) if np.isfinite(half) else np.nan,
                }
            )
        return pd.DataFrame(rows).set_index("parameter")

    def _check_summary(self, summary: pd.DataFrame, fitting: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        validate_summary(summary, where=self._label)
        # fit checks against the constructor's unit, never the unit of an earlier fit
        unit = self.time_unit if fitting else getattr(self, "time_unit_", self.time_unit)
        _check_unit(summary, unit, self._label)
        return _arrays(summary)


# ---------------------------------------------------------------------------------------------------
# BG/NBD
# ---------------------------------------------------------------------------------------------------


class BetaGeoModel(_BaseFitter):
    """BG/NBD model of repeat purchasing (Fader, Hardie & Lee 2005).

    Args:
        penalizer: L2 penalty on the log-parameters, added to the mean negative log-likelihood (0 =
            plain maximum likelihood). A small value (1e-3) helps when the fit runs off to the boundary.
        time_unit: time unit of the summaries (``"D"`` or ``"W"``).

    Fitted: ``params_`` (r, alpha, a, b), ``standard_errors_``, ``covariance_log_`` (of the
    log-parameters, the inverse Hessian), ``log_likelihood_`` (sum over customers, without penalty),
    ``n_customers_``, ``time_unit_``.
    """

    _names = ("r", "alpha", "a", "b")
    _label = "BG/NBD"

    def __init__(self, penalizer: float = 0.0, time_unit: TimeUnit = "W") -> None:
        self.penalizer = penalizer
        self.time_unit = time_unit

    @staticmethod
    def _terms(
        theta: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, levels: _Levels | None = None
    ) -> tuple[np.ndarray, ...]:
        r, alpha, a, b = theta
        lv = levels or _Levels(x)
        xs = lv.values  # the few distinct purchase counts carry every special-function call
        rep = xs > 0
        lbeta_ab = betaln(a, b)
        lbeta_a = betaln(a, b + xs) - lbeta_ab
        lbeta_b = np.full_like(xs, -np.inf)
        lbeta_b[rep] = betaln(a + 1, b + xs[rep] - 1) - lbeta_ab
        head_x = gammaln(r + xs) - gammaln(r) + r * np.log(alpha)
        rx = r + x
        log_a = lbeta_a[lv.index] - rx * np.log(alpha + T)
        log_b = lbeta_b[lv.index] - rx * np.log(alpha + t_x)
        return head_x[lv.index], log_a, log_b, x > 0

    def _loglik(
        self, theta: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, levels: _Levels | None = None
    ) -> np.ndarray:
        head, log_a, log_b, _ = self._terms(theta, x, t_x, T, levels)
        return head + np.logaddexp(log_a, log_b)

    def _value_and_grad(
        self, theta: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, w: np.ndarray, levels: _Levels
    ) -> tuple[float, np.ndarray]:
        """Weighted log-likelihood and its gradient with respect to the log-parameters."""
        r, alpha, a, b = theta
        head, log_a, log_b, _ = self._terms(theta, x, t_x, T, levels)
        log_sum = np.logaddexp(log_a, log_b)
        value = _wsum(w, head + log_sum)
        # Weight of the "dropped out at t_x" term; tiny weights are set to 0 rather than left as subnormal
        # floats, which make every later product many times slower.
        log_share = log_b - log_sum
        share_b = np.where(log_share > -600, np.exp(np.maximum(log_share, -600)), 0.0)
        share_a = 1 - share_b
        xs, idx = levels.values, levels.index
        rep = xs > 0
        ab = digamma(a + b)
        d_abx = digamma(a + b + xs)
        dA_da = (ab - d_abx)[idx]
        dA_db = (digamma(b + xs) - d_abx - digamma(b) + ab)[idx]
        dB_da = np.zeros_like(xs)
        dB_db = np.zeros_like(xs)
        dB_da[rep] = digamma(a + 1) - d_abx[rep] - digamma(a) + ab
        dB_db[rep] = digamma(b + xs[rep] - 1) - d_abx[rep] - digamma(b) + ab
        log_at = np.log(alpha + T)
        log_atx = np.log(alpha + t_x)
        d_r = (digamma(r + xs) - digamma(r))[idx] + np.log(alpha) - share_a * log_at - share_b * log_atx
        d_alpha = r / alpha - (r + x) * (share_a / (alpha + T) + share_b / (alpha + t_x))
        d_a = share_a * dA_da + share_b * dB_da[idx]
        d_b = share_a * dA_db + share_b * dB_db[idx]
        g = np.array([_wsum(w, d_r), _wsum(w, d_alpha), _wsum(w, d_a), _wsum(w, d_b)])
        return value, g * theta  # chain rule to the log scale

    def fit(self, summary: pd.DataFrame, y: Any = None) -> BetaGeoModel:
        """Fit by maximum likelihood on ``summary`` (columns frequency, recency, T)."""
        self._start_fit()
        x, t_x, T = self._check_summary(summary, fitting=True)
        (x, t_x, T), w = _compress(x, t_x, T)
        levels = _Levels(x)

        def neg_ll(u: np.ndarray) -> float:
            return -_wsum(w, self._loglik(np.exp(u), x, t_x, T, levels))

        def grad(u: np.ndarray) -> tuple[float, np.ndarray]:
            value, g = self._value_and_grad(np.exp(u), x, t_x, T, w, levels)
            return -value, -g

        self._fit_log_params(neg_ll, float(w.sum()), grad, np.zeros(4))
        self.time_unit_ = self.time_unit
        return self

    def log_likelihood_individual(self, summary: pd.DataFrame) -> np.ndarray:
        """Each customer's log-likelihood under the fitted parameters."""
        x, t_x, T = self._check_summary(summary)
        return self._loglik(np.array(self._theta()), x, t_x, T)

    def expected_purchases(self, t: float | np.ndarray) -> np.ndarray:
        """Expected purchases of a new customer in ``(0, t]`` (eq. 9): E[X(t)]."""
        r, alpha, a, b = self._theta()
        t = np.asarray(t, dtype=float)

        def at(a: float) -> np.ndarray:
            return (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, t / (alpha + t)))

        return _removable_at_one(a, at)

    def probability_alive(self, summary: pd.DataFrame) -> np.ndarray:
        """P(alive at T | x, t_x, T) (eq. 13 of the FHL note)."""
        r, alpha, a, b = self._theta()
        x, t_x, T = self._check_summary(summary)
        with np.errstate(divide="ignore"):
            log_odds = np.where(
                x > 0,
                np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x)),
                -np.inf,
            )
        return 1.0 / (1.0 + np.exp(log_odds))

    def conditional_expected_purchases(self, t: float | np.ndarray, summary: pd.DataFrame) -> np.ndarray:
        """Expected purchases in ``(T, T + t]`` given the customer's history (eq. 10)."""
        r, alpha, a, b = self._theta()
        x, t_x, T = self._check_summary(summary)
        t = np.asarray(t, dtype=float)
        z = t / (alpha + T + t)
        log_ratio = (r + x) * (np.log(alpha + T) - np.log(alpha + T + t))

        def head(a: float) -> np.ndarray:
            return (a + b + x - 1) / (a - 1) * (1 - np.exp(log_ratio) * hyp2f1(r + x, b + x, a + b + x - 1, z))

        return _removable_at_one(a, head) * self.probability_alive(summary)


def _removable_at_one(a: float, f: Any, h: float = 1e-4) -> np.ndarray:
    """``f(a)`` where ``f`` has a removable singularity at a = 1 — the 0/0 of the (a − 1) denominators of
    eq. 9 and 10, which a penalised fit lands on exactly when the data say nothing about a — interpolated
    linearly between a = 1 ± h within h of it (an error of order h² there)."""
    if abs(a - 1) >= h:
        return f(a)
    low, high = f(1 - h), f(1 + h)
    return low + (a - 1 + h) / (2 * h) * (high - low)


# ---------------------------------------------------------------------------------------------------
# Pareto/NBD
# ---------------------------------------------------------------------------------------------------


class ParetoNBDModel(_BaseFitter):
    """Pareto/NBD model (Schmittlein, Morrison & Colombo 1987; expressions of Fader & Hardie 2005).

    Args:
        penalizer: L2 penalty on the log-parameters (see :class:`BetaGeoModel`).
        time_unit: time unit of the summaries.

    Fitted: ``params_`` (r, alpha, s, beta), ``standard_errors_``, ``log_likelihood_``,
    ``n_customers_``, ``time_unit_``.
    """

    _names = ("r", "alpha", "s", "beta")
    _label = "Pareto/NBD"

    def __init__(self, penalizer: float = 0.0, time_unit: TimeUnit = "W") -> None:
        self.penalizer = penalizer
        self.time_unit = time_unit

    @staticmethod
    def _log_a0(theta: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """log A0 of Fader & Hardie (2005, eq. 19-20), as a difference of logs."""
        r, alpha, s, beta = theta
        rsx = r + s + x
        if alpha >= beta:
            c, big, second = alpha - beta, alpha, s + 1
        else:
            c, big, second = beta - alpha, beta, r + x
        f_tx = hyp2f1(rsx, second, rsx + 1, c / (big + t_x))
        f_T = hyp2f1(rsx, second, rsx + 1, c / (big + T))
        l1 = np.log(f_tx) - rsx * np.log(big + t_x)
        l2 = np.log(f_T) - rsx * np.log(big + T)
        # A0 = e^l1 - e^l2 > 0 for t_x < T; equal (A0 = 0) when the last purchase is on the last day.
        with np.errstate(divide="ignore"):
            return l1 + np.log(-np.expm1(np.minimum(l2 - l1, 0.0)))

    def _loglik(self, theta: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        r, alpha, s, beta = theta
        head = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
        survive = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
        died = np.log(s) - np.log(r + s + x) + self._log_a0(theta, x, t_x, T)
        return head + np.logaddexp(survive, died)

    def fit(self, summary: pd.DataFrame, y: Any = None) -> ParetoNBDModel:
        """Fit by maximum likelihood on ``summary`` (columns frequency, recency, T)."""
        self._start_fit()
        x, t_x, T = self._check_summary(summary, fitting=True)
        (x, t_x, T), w = _compress(x, t_x, T)

        def neg_ll(u: np.ndarray) -> float:
            return -_wsum(w, self._loglik(np.exp(u), x, t_x, T))

        self._fit_log_params(neg_ll, float(w.sum()), None, np.zeros(4))
        self.time_unit_ = self.time_unit
        return self

    def log_likelihood_individual(self, summary: pd.DataFrame) -> np.ndarray:
        """Each customer's log-likelihood under the fitted parameters."""
        x, t_x, T = self._check_summary(summary)
        return self._loglik(np.array(self._theta()), x, t_x, T)

    def expected_purchases(self, t: float | np.ndarray) -> np.ndarray:
        """Expected purchases of a new customer in ``(0, t]``: E[X(t)] = rβ/(α(s−1)) [1 − (β/(β+t))^(s−1)]."""
        r, alpha, s, beta = self._theta()
        t = np.asarray(t, dtype=float)
        return r * beta / alpha * _one_minus_power_over(beta / (beta + t), s - 1)

    def probability_alive(self, summary: pd.DataFrame) -> np.ndarray:
        """P(alive at T | x, t_x, T) (Fader & Hardie 2005, eq. 18)."""
        theta = np.array(self._theta())
        r, alpha, s, beta = theta
        x, t_x, T = self._check_summary(summary)
        log_odds = (
            np.log(s)
            - np.log(r + s + x)
            + (r + x) * np.log(alpha + T)
            + s * np.log(beta + T)
            + self._log_a0(theta, x, t_x, T)
        )
        return 1.0 / (1.0 + np.exp(log_odds))

    def conditional_expected_purchases(self, t: float | np.ndarray, summary: pd.DataFrame) -> np.ndarray:
        """Expected purchases in ``(T, T + t]`` given the history (Fader & Hardie 2005, eq. 22)."""
        r, alpha, s, beta = self._theta()
        x, t_x, T = self._check_summary(summary)
        t = np.asarray(t, dtype=float)
        rate = (r + x) * (beta + T) / (alpha + T)
        return rate * _one_minus_power_over((beta + T) / (beta + T + t), s - 1) * self.probability_alive(summary)


def _one_minus_power_over(base: np.ndarray, k: float) -> np.ndarray:
    """(1 − base^k) / k, continuous at k = 0 (where it is −log base)."""
    base = np.asarray(base, dtype=float)
    if abs(k) < 1e-10:
        return -np.log(base)
    return -np.expm1(k * np.log(base)) / k


# ---------------------------------------------------------------------------------------------------
# NBD: the no-dropout limit
# ---------------------------------------------------------------------------------------------------


class NBDModel(_BaseFitter):
    """NBD model of repeat purchasing (Ehrenberg 1959; Morrison & Schmittlein 1988): nobody drops out.

    Every customer buys for ever as a Poisson process with rate λ ~ Gamma(r, α). It is the boundary of
    both dropout models — BG/NBD as the dropout probability p ~ Beta(a, b) goes to 0 (a → 0 or b → ∞),
    Pareto/NBD as the dropout rate μ ~ Gamma(s, β) does (s → 0) — and its likelihood,
    Γ(r + x)/Γ(r) · α^r / (α + T)^(r + x), is their limit, so the log-likelihoods compare directly.
    The time of the last purchase carries no information: P(alive) = 1 for everyone.

    Args:
        penalizer: L2 penalty on the log-parameters (see :class:`BetaGeoModel`).
        time_unit: time unit of the summaries.

    Fitted: ``params_`` (r, alpha), ``standard_errors_``, ``log_likelihood_``, ``n_customers_``,
    ``time_unit_``.
    """

    _names = ("r", "alpha")
    _label = "NBD"

    def __init__(self, penalizer: float = 0.0, time_unit: TimeUnit = "W") -> None:
        self.penalizer = penalizer
        self.time_unit = time_unit

    @staticmethod
    def _loglik(theta: np.ndarray, x: np.ndarray, T: np.ndarray, levels: _Levels | None = None) -> np.ndarray:
        r, alpha = theta
        lv = levels or _Levels(x)
        head_x = gammaln(r + lv.values) - gammaln(r) + r * np.log(alpha)
        return head_x[lv.index] - (r + x) * np.log(alpha + T)

    @staticmethod
    def _value_and_grad(
        theta: np.ndarray, x: np.ndarray, T: np.ndarray, w: np.ndarray, levels: _Levels
    ) -> tuple[float, np.ndarray]:
        """Weighted log-likelihood and its gradient with respect to the log-parameters."""
        r, alpha = theta
        xs, idx = levels.values, levels.index
        log_at = np.log(alpha + T)
        value = _wsum(w, (gammaln(r + xs) - gammaln(r))[idx] + r * np.log(alpha) - (r + x) * log_at)
        d_r = (digamma(r + xs) - digamma(r))[idx] + np.log(alpha) - log_at
        d_alpha = r / alpha - (r + x) / (alpha + T)
        return value, np.array([_wsum(w, d_r), _wsum(w, d_alpha)]) * theta

    def fit(self, summary: pd.DataFrame, y: Any = None) -> NBDModel:
        """Fit by maximum likelihood on ``summary`` (columns frequency, recency, T; recency is not used)."""
        self._start_fit()
        x, _, T = self._check_summary(summary, fitting=True)
        (x, T), w = _compress(x, T)
        levels = _Levels(x)

        def neg_ll(u: np.ndarray) -> float:
            return -_wsum(w, self._loglik(np.exp(u), x, T, levels))

        def grad(u: np.ndarray) -> tuple[float, np.ndarray]:
            value, g = self._value_and_grad(np.exp(u), x, T, w, levels)
            return -value, -g

        # Start from the moments of the purchase rate x/T, so the optimiser begins near the data's scale.
        rate = float(np.average(x / np.maximum(T, 1e-9), weights=w))
        self._fit_log_params(neg_ll, float(w.sum()), grad, np.log(np.array([1.0, 1.0 / max(rate, 1e-6)])))
        self.time_unit_ = self.time_unit
        return self

    def log_likelihood_individual(self, summary: pd.DataFrame) -> np.ndarray:
        """Each customer's log-likelihood under the fitted parameters."""
        x, _, T = self._check_summary(summary)
        return self._loglik(np.array(self._theta()), x, T)

    def expected_purchases(self, t: float | np.ndarray) -> np.ndarray:
        """Expected purchases of a new customer in ``(0, t]``: E[X(t)] = r·t/α."""
        r, alpha = self._theta()
        return r * np.asarray(t, dtype=float) / alpha

    def probability_alive(self, summary: pd.DataFrame) -> np.ndarray:
        """P(alive at T): 1 for every customer (nobody drops out)."""
        self._theta()
        x, _, _ = self._check_summary(summary)
        return np.ones_like(x)

    def conditional_expected_purchases(self, t: float | np.ndarray, summary: pd.DataFrame) -> np.ndarray:
        """Expected purchases in ``(T, T + t]`` given the history: (r + x)·t/(α + T), the posterior mean rate × t."""
        r, alpha = self._theta()
        x, _, T = self._check_summary(summary)
        return (r + x) * np.asarray(t, dtype=float) / (alpha + T)


# ---------------------------------------------------------------------------------------------------
# Gamma-Gamma
# ---------------------------------------------------------------------------------------------------


class GammaGammaModel(_BaseFitter):
    """Gamma-Gamma model of the mean value of repeat purchases (Fader, Hardie & Lee 2005, JMR).

    Fitted on customers with at least one repeat purchase and a positive mean repeat value; the
    others cannot inform it and are excluded and counted in ``n_excluded_`` (by reason), never an
    error. The expected spend of a customer without repeats is the population mean p·γ/(q − 1); a
    repeat buyer whose mean repeat value is negative (refunds) is predicted as if it were 0.

    Fitted: ``params_`` (p, q, gamma), ``standard_errors_``, ``log_likelihood_``, ``n_customers_``,
    ``n_excluded_`` ({"no_repeat_purchase": …, "non_positive_value": …}).
    """

    _names = ("p", "q", "gamma")
    _label = "Gamma-Gamma"

    def __init__(self, penalizer: float = 0.0, time_unit: TimeUnit = "W") -> None:
        self.penalizer = penalizer
        self.time_unit = time_unit

    @staticmethod
    def _loglik(theta: np.ndarray, x: np.ndarray, m: np.ndarray, levels: _Levels | None = None) -> np.ndarray:
        p, q, gamma = theta
        lv = levels or _Levels(x)
        pxs = p * lv.values
        per_x = (gammaln(pxs + q) - gammaln(pxs) - gammaln(q) + pxs * np.log(lv.values))[lv.index]
        px = p * x
        return per_x + q * np.log(gamma) + (px - 1) * np.log(m) - (px + q) * np.log(gamma + x * m)

    @staticmethod
    def _value_and_grad(
        theta: np.ndarray, x: np.ndarray, m: np.ndarray, w: np.ndarray, levels: _Levels
    ) -> tuple[float, np.ndarray]:
        """Weighted log-likelihood and its gradient with respect to the log-parameters."""
        p, q, gamma = theta
        xs, idx = levels.values, levels.index
        pxs = p * xs
        dg_pxq = digamma(pxs + q)
        px = p * x
        log_gxm = np.log(gamma + x * m)
        per_x = (gammaln(pxs + q) - gammaln(pxs) - gammaln(q) + pxs * np.log(xs))[idx]
        value = _wsum(w, per_x + q * np.log(gamma) + (px - 1) * np.log(m) - (px + q) * log_gxm)
        d_p = x * ((dg_pxq - digamma(pxs) + np.log(xs))[idx] + np.log(m) - log_gxm)
        d_q = (dg_pxq - digamma(q))[idx] + np.log(gamma) - log_gxm
        d_gamma = q / gamma - (px + q) / (gamma + x * m)
        return value, np.array([_wsum(w, d_p), _wsum(w, d_q), _wsum(w, d_gamma)]) * theta

    def _usable(self, summary: pd.DataFrame) -> tuple[np.ndarray, dict[str, int]]:
        # Negative mean values are allowed here: they are excluded (and counted), never an error.
        _validate_summary(summary, self._label, monetary=True, negative_monetary=True)
        x = summary["frequency"].to_numpy(dtype=float)
        m = summary["monetary_value"].to_numpy(dtype=float)
        excluded = {"no_repeat_purchase": int((x == 0).sum()), "non_positive_value": int(((x > 0) & (m <= 0)).sum())}
        return (x > 0) & (m > 0), excluded

    def fit(self, summary: pd.DataFrame, y: Any = None) -> GammaGammaModel:
        """Fit on the repeat buyers of ``summary`` (columns frequency, monetary_value, recency, T)."""
        self._start_fit()
        usable, excluded = self._usable(summary)
        if usable.sum() < 2:
            raise DataError(
                f"{self._label}: {int(usable.sum())} customer(s) with a repeat purchase of positive value; the "
                f"spend model needs repeat buyers ({excluded['no_repeat_purchase']} have no repeat purchase, "
                f"{excluded['non_positive_value']} a mean repeat value ≤ 0)"
            )
        x = summary["frequency"].to_numpy(dtype=float)[usable]
        m = summary["monetary_value"].to_numpy(dtype=float)[usable]
        (x, m), w = _compress(x, m)
        levels = _Levels(x)

        def neg_ll(u: np.ndarray) -> float:
            return -_wsum(w, self._loglik(np.exp(u), x, m, levels))

        def grad(u: np.ndarray) -> tuple[float, np.ndarray]:
            value, g = self._value_and_grad(np.exp(u), x, m, w, levels)
            return -value, -g

        # Start from a moment match of the mean value so the optimiser begins near the data's scale.
        start = np.log(np.array([1.0, 2.0, max(float(np.average(m, weights=w)), 1e-3)]))
        self._fit_log_params(neg_ll, float(w.sum()), grad, start)
        if self.params_["q"] <= 1:
            q = self.params_["q"]
            self._reset()
            raise FitError(
                f"{self._label}: q = {q:.3g} ≤ 1, so the mean spend p·γ/(q − 1) does not exist; "
                "set clv.penalizer (e.g. 0.001) or remove extreme purchase values"
            )
        self.n_excluded_ = excluded
        self.time_unit_ = summary.attrs.get("time_unit", self.time_unit)
        return self

    def population_mean_spend(self) -> float:
        """Mean value of a purchase over the population, p·γ/(q − 1)."""
        p, q, gamma = self._theta()
        return p * gamma / (q - 1)

    def expected_average_spend(self, summary: pd.DataFrame) -> np.ndarray:
        """E[value of a purchase | x, mean repeat value] (population mean for customers without repeats)."""
        p, q, gamma = self._theta()
        _validate_summary(summary, self._label, monetary=True, negative_monetary=True)
        x = summary["frequency"].to_numpy(dtype=float)
        m = np.maximum(summary["monetary_value"].to_numpy(dtype=float), 0.0)
        return (p * (gamma + x * m)) / (p * x + q - 1)


# ---------------------------------------------------------------------------------------------------
# fits on a boundary: the NBD where nobody drops out, a penalizer where parameters run off
# ---------------------------------------------------------------------------------------------------

#: Penalizer of the refit of a likelihood without a proper maximum (when the fit had less): an L2 pull of
#: the log-parameters towards 0 costing 0.001·(log θ)² per customer, negligible for parameters the
#: data identify and decisive for those running off to 0 or infinity.
FALLBACK_PENALIZER = 1e-3
#: A dropout model whose fit (or the point where its optimiser stopped) expects a smaller share of
#: customers than this to drop out over the calibration period sits on the no-dropout (NBD) boundary.
NO_DROPOUT_LEVEL = 1e-2
#: The NBD replaces a dropout model at the boundary only if its log-likelihood is at most this much lower
#: (half the 95 % point of χ²(1): the dropout is not significant in a likelihood-ratio test).
_NO_DROPOUT_LOGLIK_GAP = 1.92
_TRANSACTION_MODELS: dict[str, type[_BaseFitter]] = {"bgnbd": BetaGeoModel, "pnbd": ParetoNBDModel}


class FallbackFit(NamedTuple):
    """A fitted model; the boundary the data pushed its fit to (None, ``"no_dropout"`` or ``"penalized"``);
    and a note for the reader saying what happened and what was used instead (None for a plain fit)."""

    model: Any
    boundary: str | None
    note: str | None


#: What a parameter running off says about the customers: (parameter, runs to infinity?, reading).
_RUNAWAY_READINGS = (
    ("r", True, "purchase rates hardly differ between customers"),
    ("r", False, "few customers buy again"),
    ("b", True, "dropout probabilities hardly differ between customers"),
    ("s", True, "dropout rates hardly differ between customers"),
    ("p", True, "the values of a customer's purchases hardly vary around her own mean"),
    ("q", True, "mean purchase values hardly differ between customers"),
)


def _shown(estimates: dict[str, float]) -> str:
    """The estimates, and what those that run off (beyond 1e4 or below 1e-4) say about the customers."""
    shown = ", ".join(f"{name} = {value:.3g}" for name, value in estimates.items())
    readings = [
        reading
        for name, up, reading in _RUNAWAY_READINGS
        if name in estimates and (estimates[name] > 1e4 if up else estimates[name] < 1e-4)
    ]
    return f"{shown}: {'; '.join(readings)}" if readings else shown


def _dropout_share(kind: str, estimates: dict[str, float], summary: pd.DataFrame) -> float:
    """Share of customers expected to drop out over the calibration period at ``estimates`` (NaN if not finite).

    BG/NBD: 1 − E[(1 − p)^n], the share that drops out within n = the mean number of repeat purchases (at
    least 1, so that data with few repeat purchases, which say little about dropout, are not read as
    having none); Pareto/NBD: 1 − E[exp(−μ·T̄)] = 1 − (β/(β + T̄))^s over the mean time T̄ since the first
    purchase. Unlike the mean dropout a/(a + b) or s/β, these stay small when the fit puts a tiny share
    of customers at a very high dropout (a, b → 0 or s, β → 0 together).
    """
    x, _, T = _arrays(summary)
    with np.errstate(all="ignore"):
        if kind == "bgnbd":
            a, b = estimates.get("a", np.nan), estimates.get("b", np.nan)
            n = max(float(np.mean(x)), 1.0)
            share = -np.expm1(betaln(a, b + n) - betaln(a, b))
        else:
            s, beta = estimates.get("s", np.nan), estimates.get("beta", np.nan)
            share = -np.expm1(s * (np.log(beta) - np.log(beta + np.mean(T))))
    return float(np.maximum(share, 0.0))  # rounding can give -0


def _fit_or_penalize(cls: type[_BaseFitter], summary: pd.DataFrame, penalizer: float, time_unit: str) -> FallbackFit:
    """``cls`` fitted with ``penalizer``; without a proper maximum, refitted with :data:`FALLBACK_PENALIZER`."""
    try:
        return FallbackFit(cls(penalizer=penalizer, time_unit=time_unit).fit(summary), None, None)
    except NoMaximumError as exc:
        if penalizer >= FALLBACK_PENALIZER:
            raise
        return _penalized_refit(cls, summary, exc, time_unit)


def _penalized_refit(
    cls: type[_BaseFitter], summary: pd.DataFrame, failure: NoMaximumError, time_unit: str
) -> FallbackFit:
    try:
        model = cls(penalizer=FALLBACK_PENALIZER, time_unit=time_unit).fit(summary)
    except FitError as exc:
        raise FitError(f"{failure} (a refit with penalizer {FALLBACK_PENALIZER:g} failed too: {exc})") from exc
    note = (
        f"{cls._label}: the log-likelihood has no proper maximum on this data (the optimiser stopped at "
        f"{_shown(failure.estimates)}); refitted with penalizer {FALLBACK_PENALIZER:g}, which shrinks the "
        "log-parameters towards 0: the predictions are usable, the parameters are regularised estimates."
    )
    return FallbackFit(model, "penalized", note)


def _no_dropout_fit(
    kind: str, summary: pd.DataFrame, penalizer: float, time_unit: str, stop: tuple[dict[str, float], float, bool]
) -> FallbackFit | None:
    """The NBD in place of a dropout model; None if it fits worse than a likelihood-ratio test allows, or
    cannot be fitted either.

    ``stop`` is where the dropout model's fit ended: its estimates, log-likelihood, and whether that is a
    proper maximum.
    """
    estimates, loglik, at_optimum = stop
    near = _dropout_share(kind, estimates, summary) < NO_DROPOUT_LEVEL
    if at_optimum and not near:
        return None
    runaway: dict[str, float] = {}
    try:
        nbd = NBDModel(penalizer=penalizer, time_unit=time_unit).fit(summary)
        ll = nbd.log_likelihood_
    except NoMaximumError as exc:
        # Away from the boundary, a failed dropout model points to no dropout only if the NBD is identified.
        if not near or penalizer >= FALLBACK_PENALIZER:
            return None
        ll, runaway = exc.log_likelihood, exc.estimates
        try:
            nbd = NBDModel(penalizer=FALLBACK_PENALIZER, time_unit=time_unit).fit(summary)
        except FitError:
            return None
    if not ll >= loglik - _NO_DROPOUT_LOGLIK_GAP:
        return None
    label = _TRANSACTION_MODELS[kind]._label
    dropout = {"bgnbd": ("a", "b"), "pnbd": ("s", "beta")}[kind]
    limit = ", ".join(f"{name} = {estimates[name]:.3g}" for name in dropout)
    share = _dropout_share(kind, estimates, summary)
    where = "as fitted" if at_optimum else "where its optimiser stopped, without a proper maximum"
    note = (
        f"{label}: no dropout in this data ({limit}: a share of {share:.2g} of the customers is expected to "
        f"drop out in the calibration period), so customers keep buying at their own rates; the NBD, its "
        f"no-dropout limit, is used instead, with P(alive) = 1 for everyone: it fits as well (log-likelihood "
        f"{ll:.1f} against {loglik:.1f} for the {label} {where})."
    )
    if runaway:
        note += (
            f" Its r and alpha have no proper maximum either ({_shown(runaway)}): it is fitted with "
            f"penalizer {FALLBACK_PENALIZER:g}."
        )
    return FallbackFit(nbd, "no_dropout", note)


def fit_transaction_model(
    summary: pd.DataFrame, kind: str = "bgnbd", penalizer: float = 0.0, time_unit: TimeUnit = "W"
) -> FallbackFit:
    """Fit BG/NBD (``"bgnbd"``) or Pareto/NBD (``"pnbd"``), or the model its boundary calls for.

    The :class:`NBDModel` (boundary ``"no_dropout"``), whose two parameters the data identify, replaces a
    fit that has no proper maximum, or one that lands on the no-dropout boundary (less than
    :data:`NO_DROPOUT_LEVEL` of the customers expected to drop out), when it fits as well: its log-likelihood is
    within 1.92 of the dropout model's (a likelihood-ratio test at 5 %). Any other fit without a proper
    maximum is refitted with :data:`FALLBACK_PENALIZER` (boundary ``"penalized"``). Errors in the data,
    and fits that fail even so, are raised.
    """
    if kind not in _TRANSACTION_MODELS:
        raise ValueError(f"transaction model {kind!r}: expected bgnbd or pnbd")
    cls = _TRANSACTION_MODELS[kind]
    model: _BaseFitter | None = None
    try:
        model = cls(penalizer=penalizer, time_unit=time_unit).fit(summary)
        estimates, loglik = model.params_, model.log_likelihood_
    except NoMaximumError as exc:
        failure, estimates, loglik = exc, exc.estimates, exc.log_likelihood
    replaced = _no_dropout_fit(kind, summary, penalizer, time_unit, (estimates, loglik, model is not None))
    if replaced is not None:
        return replaced
    if model is not None:
        return FallbackFit(model, None, None)
    if penalizer >= FALLBACK_PENALIZER:
        raise failure
    return _penalized_refit(cls, summary, failure, time_unit)


def fit_spend_model(summary: pd.DataFrame, penalizer: float = 0.0, time_unit: TimeUnit = "W") -> FallbackFit:
    """Fit Gamma-Gamma; where the data do not identify p, q and γ, refit with :data:`FALLBACK_PENALIZER`.

    A mean spend that does not exist (q ≤ 1) is a finding no penalizer fixes: it is raised.
    """
    return _fit_or_penalize(GammaGammaModel, summary, penalizer, time_unit)


# ---------------------------------------------------------------------------------------------------
# CLV over a horizon
# ---------------------------------------------------------------------------------------------------


def discount_factors(
    horizon_days: float, annual_rate: float, step_days: float = 365.25 / 12
) -> tuple[np.ndarray, np.ndarray]:
    """Ends of the sub-periods of a horizon (in days) and the discount factor of each.

    The horizon is cut into ``ceil(horizon / step)`` equal steps (about a month each); spend in a step is
    discounted from its end at ``(1 + annual_rate) ** -(days / 365.25)``.
    """
    if horizon_days <= 0:
        raise ValueError(f"horizon {horizon_days} days: expected a positive number")
    if annual_rate < 0:
        raise ValueError(f"discount rate {annual_rate}: expected a number ≥ 0")
    n = max(1, math.ceil(horizon_days / step_days - 1e-9))
    ends = np.linspace(horizon_days / n, horizon_days, n)
    return ends, (1 + annual_rate) ** (-ends / _DAYS_PER_YEAR)


def customer_lifetime_value(
    transaction_model: BetaGeoModel | ParetoNBDModel | NBDModel,
    spend_model: GammaGammaModel,
    summary: pd.DataFrame,
    horizon_days: float,
    annual_discount_rate: float = 0.0,
    margin: float = 1.0,
) -> np.ndarray:
    """margin × E[value of a purchase] × Σ_k ΔE[purchases in step k] × discount_k over the horizon.

    ``horizon_days`` is converted to the models' time unit; with ``annual_discount_rate = 0`` this is
    the expected spend in the horizon, the quantity an ML model of future spend predicts.
    """
    unit_days = _unit_days(getattr(transaction_model, "time_unit_", transaction_model.time_unit))
    ends, factors = discount_factors(horizon_days, annual_discount_rate)
    cumulative = np.column_stack(
        [transaction_model.conditional_expected_purchases(e / unit_days, summary) for e in ends]
    )
    increments = np.diff(np.column_stack([np.zeros(len(summary)), cumulative]), axis=1)
    purchases = increments @ factors
    return margin * spend_model.expected_average_spend(summary) * purchases


def repeat_transactions_tracking(
    model: BetaGeoModel | ParetoNBDModel | NBDModel,
    transactions: pd.DataFrame,
    as_of: dt.date | str | pd.Timestamp,
    end: dt.date | str | pd.Timestamp,
    time_unit: TimeUnit = "W",
) -> pd.DataFrame:
    """Cumulative repeat purchases per period, actual against a BTYD model's unconditional expectation.

    Customers are those with a first purchase on or before ``as_of`` (the calibration population);
    each contributes E[X(t − first purchase)] by period end ``t``. Returns a DataFrame with columns
    ``period`` (1, 2, …), ``period_end`` (date), ``actual`` and ``predicted`` (cumulative).
    """
    as_of, end = pd.Timestamp(as_of).normalize(), pd.Timestamp(end).normalize()
    unit_days = _unit_days(time_unit)
    daily = transactions.assign(date=pd.to_datetime(transactions["date"]).dt.normalize())[["customer_id", "date"]]
    daily = daily.drop_duplicates()
    first = daily.groupby("customer_id")["date"].min()
    first = first[first <= as_of]
    daily = daily[daily["customer_id"].isin(first.index) & (daily["date"] <= end)]
    repeat_dates = daily.loc[daily["date"] > daily["customer_id"].map(first), "date"]
    start = first.min()
    n_periods = int(np.ceil(((end - start).days + 1) / unit_days))
    period_ends = start + pd.to_timedelta(np.arange(1, n_periods + 1) * unit_days - 1, unit="D")
    period_ends = pd.DatetimeIndex(np.minimum(period_ends.values, end.to_datetime64()))
    actual = np.searchsorted(np.sort(repeat_dates.to_numpy()), period_ends.values, side="right")
    first_days = first.to_numpy(dtype="datetime64[ns]")
    counts = pd.Series(first_days).value_counts()
    predicted = []
    for period_end in period_ends.values:
        age_days = (period_end - counts.index.to_numpy(dtype="datetime64[ns]")) / np.timedelta64(1, "D")
        age = np.clip(age_days, 0, None) / unit_days
        predicted.append(float(np.sum(counts.to_numpy() * model.expected_purchases(age))))
    return pd.DataFrame(
        {"period": np.arange(1, n_periods + 1), "period_end": period_ends, "actual": actual, "predicted": predicted}
    )
