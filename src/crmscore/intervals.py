"""How sure are the scores: intervals on CLV and churn probability, and each customer's tier confidence.

Every score is a point; this module says which points are solid and which are a coin toss.

* **BTYD CLV** (:func:`btyd_spend_interval`). A predictive interval of the spend a customer will actually
  make over the horizon under BG/NBD (or Pareto/NBD, or NBD) × Gamma-Gamma, combining *parameter
  uncertainty* — each simulated future uses its own parameter vector drawn from the normal approximation
  of the maximum-likelihood estimates on the log scale (mean the estimates, covariance the inverse Hessian,
  ``covariance_log_`` of the fitted models) — with the *purchase process's own variance*: whether the
  customer is still alive, her purchase rate λ | history ~ Gamma(r + x, α + T), her dropout probability
  p | alive ~ Beta(a, b + x) (BG/NBD: she drops out after each purchase with probability p), the Poisson
  count of purchases, and the value of each purchase under Gamma-Gamma with ν | history ~ Gamma(q + p·x,
  γ + x·m̄). Nothing is widened to fit the data: where the model is wrong (CDNOW's holdout), the coverage
  shows it.
* **ML CLV** (:class:`ConformalSpend`). Split-conformal intervals on customers held out of training (a
  seeded half of the test customers, the latest fully observed window, as ``crmscore train clv`` does it):
  within each bin of predicted spend (``conformal_bins``, deciles by
  default) the held-out ratios actual / predicted give the interval's two ends, with the finite-sample
  correction of split conformal prediction, so the coverage holds in every predicted-value decile and
  not only overall (Mondrian conformal prediction, Vovk et al. 2005). The calibration travels with the
  model (``conformal_`` on the registered estimator).
* **Churn** (:func:`churn_interval`). The spread of the calibrated probability over bootstrap resamples of
  the calibrator (``ChurnModel.calibrator_draws_``) and, for a cross-fitted model, over its fold models:
  an interval of the customer's churn *probability*, not of the yes/no outcome.
* **Tier confidence** (:func:`tier_confidence`). The probability that a customer with the same underlying
  purchase and contact rates lands in the same tier when measured over another year: each count metric
  of the scorecard (purchases, contacts, product breadth) is redrawn from its predictive distribution
  (Poisson with rate ~ Gamma(count + ½, 1), Jeffreys' prior), spend follows the purchase count at the
  customer's mean ticket, the collection rate is redrawn as the paid share of the customer's invoices
  (beta-binomial, Jeffreys' prior), other metrics are held, and the redrawn metrics are put through the
  fitted scorecard. Under the pyramid method the CLV interval is read as a log-normal spread.
  A customer below ``borderline_below`` is ``borderline``: the tier moves such customers make are noise.

Draws are shared by all customers (uniforms from ``seed``, Latin-hypercube stratified) and every
computation is per customer, so the intervals are identical for any chunk size and number of workers,
and the same data, params and seed give the same intervals. Per-customer work is vectorised over
blocks of customers × draws; the special functions run on small tables (per distinct purchase count, per
draw), never per customer.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats

__all__ = [
    "ConformalSpend",
    "fit_conformal_spend",
    "calibrate_ml_clv",
    "calibration_half",
    "btyd_spend_interval",
    "clv_interval",
    "churn_interval",
    "tier_confidence",
    "borderline_summary",
    "coverage_by_decile",
    "interval_from_draws",
    "zero_inclusion_from_draws",
    "churn_rate_interval",
]

#: Customers per block of the customers × draws arrays (memory: a few MB per array).
_BLOCK = 4096
#: Poisson quantile table: log-spaced means from 1e-6 to 1e4, 1 % apart.
_POISSON_GRID = np.exp(np.arange(np.log(1e-6), np.log(1e4), 0.01))
#: Count metrics of the scorecard are redrawn from a table up to this count, beyond it by a normal approximation.
_COUNT_TABLE_MAX = 400
#: Scorecard features read as counts (their values are numbers of events in a window).
COUNT_PREFIXES = ("frequency_", "contacts_", "complaints_", "inquiries_", "product_breadth")
#: Scorecard features read as shares of a count (feature → the count it is a share of).
SHARE_OF = {"collection_rate": "invoices_due", "late_share": "invoices_due"}
#: Shares of up to this many events are redrawn from a table (per count and successes), beyond by a normal.
_SHARE_TABLE_MAX = 60


# --- shared draws ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _uniform_row(draws: int, row: int, seed: int) -> np.ndarray:
    """Row ``row`` of stratified uniforms: one in each of ``draws`` equal strata of (0, 1), shuffled."""
    rng = np.random.default_rng([seed, row])
    u = (rng.permutation(draws) + rng.random(draws)) / draws
    return np.clip(u, 1e-12, 1 - 1e-12)


def _uniforms(draws: int, dims: int, seed: int) -> np.ndarray:
    """``dims`` rows of ``draws`` Latin-hypercube uniforms, the same for every customer and chunk (row k
    does not depend on ``dims``)."""
    return np.stack([_uniform_row(draws, row, seed) for row in range(dims)])


@functools.lru_cache(maxsize=8)
def _poisson_table(draws: int, seed: int, dim: int) -> np.ndarray:
    """Poisson quantiles (grid of means × draws) at the draws' uniforms of row ``dim``."""
    u = _uniform_row(draws, dim, seed)
    return stats.poisson.ppf(u[None, :], _POISSON_GRID[:, None])


def _gather(table: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``table[rows[i, d], d]`` for every customer i and draw d (a flat take: faster than fancy indexing)."""
    width = table.shape[1]
    return np.take(table.ravel(), rows * width + np.arange(width)[None, :])


def _poisson(log_mean: np.ndarray, table: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Poisson counts (customers × draws) with the given log means, from the table (normal beyond its top)."""
    step = 0.01
    position = np.rint((log_mean - np.log(_POISSON_GRID[0])) / step)
    index = np.clip(position, 0, len(_POISSON_GRID) - 1).astype(np.intp)
    counts = _gather(table, index)
    counts[position < -np.log(2) / step] = 0.0  # means below half the grid's first point: no purchase
    big = log_mean > np.log(_POISSON_GRID[-1])
    if big.any():
        mean = np.exp(log_mean[big])
        counts[big] = np.maximum(np.rint(mean + np.sqrt(mean) * np.broadcast_to(z, log_mean.shape)[big]), 0.0)
    return counts


def interval_from_draws(draws: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the interval between order statistics of ``draws`` (rows × draws) that holds ``level``.

    With D exchangeable draws, the k-th smallest lies below a new value with probability k / (D + 1): the
    lower end is the ⌊(D + 1)·α/2⌋-th smallest. Values tied at the lower end (spend 0 for customers who may
    not buy) are all inside, so the upper end takes the whole miss α less the share strictly below the lower
    end: an interval [0, q] of a customer likely to buy nothing holds ``level``, not more.
    """
    n_draws = draws.shape[1]
    alpha = 1.0 - level
    ordered = np.sort(draws, axis=1)
    k_low = max(int(math.floor((n_draws + 1) * alpha / 2)), 1) - 1
    low = ordered[:, k_low]
    below = (ordered < low[:, None]).sum(axis=1) / n_draws
    k_high = np.ceil((n_draws + 1) * (1.0 - alpha + below)).astype(np.intp) - 1
    high = ordered[np.arange(len(ordered)), np.clip(k_high, 0, n_draws - 1)]
    return low, high


def zero_inclusion_from_draws(draws: np.ndarray, low: np.ndarray, high: np.ndarray, level: float) -> np.ndarray:
    """Per row, the probability that a randomized interval keeps 0, so that it holds exactly ``level``.

    Where spend 0 has more mass than the level ([0, 0] for a customer likely to buy nothing), a
    deterministic interval holds that whole mass. Breaking the tie at 0 at random (Vovk's smoothed
    conformal predictor; the randomized PIT of Czado, Gneiting and Held 2009) keeps 0 with probability
    1 − (content − level) / mass at 0, and the interval then holds the level exactly. 1 where 0 is not an
    end of the interval or the interval holds no more than the level.
    """
    content = ((draws >= low[:, None]) & (draws <= high[:, None])).mean(axis=1)
    atom = ((draws == 0) & (low[:, None] == 0)).mean(axis=1)
    return _keep_zero(content, atom, level)


def _keep_zero(content: np.ndarray, atom: np.ndarray, level: float) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        keep = np.where((atom > 0) & (content > level), 1.0 - (content - level) / atom, 1.0)
    return np.clip(keep, 0.0, 1.0)


# --- ML CLV: split-conformal by predicted-value bin --------------------------------------------------------

#: Levels of the stored quantiles of the held-out ratios (0, 0.001, …, 1).
_GRID_LEVELS = np.linspace(0.0, 1.0, 1001)


@dataclasses.dataclass(frozen=True)
class ConformalSpend:
    """Held-out ratios actual / predicted spend per bin of predicted spend, as quantiles (bins × 1001).

    ``edges`` are the inner bin edges of predicted spend, ``counts`` the held-out rows per bin; ``level``
    any coverage (0–1) is served from the same calibration.
    """

    edges: np.ndarray
    quantiles: np.ndarray
    counts: np.ndarray

    def ratios(self, level: float) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper ratio per bin for ``level`` (split-conformal ranks; ties at 0 counted inside)."""
        alpha = 1.0 - level
        n = self.counts.astype(float)
        low_rank = np.floor((n + 1) * alpha / 2)
        low_position = np.ceil(low_rank / n * 1000).astype(np.intp)
        low = np.where(low_rank >= 1, self.quantiles[np.arange(len(n)), np.clip(low_position, 0, 1000)], 0.0)
        below = np.array(
            [np.searchsorted(q, lo, side="left") / 1000 for q, lo in zip(self.quantiles, low, strict=True)]
        )
        below = np.minimum(below, alpha / 2)
        high_rank = np.ceil((n + 1) * (1.0 - alpha + below))
        high_position = np.clip(np.ceil(high_rank / n * 1000).astype(np.intp), 0, 1000)
        return low, self.quantiles[np.arange(len(n)), high_position]

    def interval(self, predicted: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper spend of each customer from its predicted spend."""
        predicted = np.asarray(predicted, dtype=float)
        low, high = self.ratios(level)
        bins = np.searchsorted(self.edges, predicted, side="right")
        return predicted * low[bins], predicted * high[bins]

    def zero_inclusion(self, predicted: np.ndarray, level: float) -> np.ndarray:
        """Per customer, the probability that the smoothed (randomized) interval keeps spend 0.

        The held-out ratios of a bin say how much the interval holds (content) and how much of it is spend
        0 (atom); see :func:`zero_inclusion_from_draws`. Used to measure coverage with the tie at 0 broken
        at random, which a deterministic interval over a mass at 0 larger than the level cannot hold.
        """
        low, high = self.ratios(level)
        steps = self.quantiles.shape[1] - 1

        def cdf(value: np.ndarray, side: str) -> np.ndarray:  # share of held-out ratios ≤ value (< with "left")
            at = [np.searchsorted(q, v, side=side) for q, v in zip(self.quantiles, value, strict=True)]
            return np.clip((np.array(at) - 1) / steps, 0.0, 1.0)

        content = cdf(high, "right") - cdf(low, "left")
        atom = np.where(low == 0, cdf(np.zeros(len(low)), "right"), 0.0)
        keep = _keep_zero(content, atom, level)
        return keep[np.searchsorted(self.edges, np.asarray(predicted, dtype=float), side="right")]


def fit_conformal_spend(predicted: np.ndarray, actual: np.ndarray, bins: int = 10) -> ConformalSpend:
    """Calibrate :class:`ConformalSpend` on held-out customers' predicted and actual spend."""
    predicted = np.asarray(predicted, dtype=float)
    actual = np.asarray(actual, dtype=float)
    if len(predicted) != len(actual) or len(predicted) < 2 * bins:
        raise ValueError(f"conformal calibration: need at least {2 * bins} held-out rows, got {len(predicted)}")
    edges = np.unique(np.quantile(predicted, np.arange(1, bins) / bins))
    which = np.searchsorted(edges, predicted, side="right")
    ratio = actual / np.maximum(predicted, 1e-12)
    quantiles, counts = [], []
    for b in range(len(edges) + 1):
        part = ratio[which == b]
        quantiles.append(np.quantile(part, _GRID_LEVELS, method="inverted_cdf") if len(part) else np.zeros(1001))
        counts.append(max(len(part), 1))
    return ConformalSpend(edges=edges, quantiles=np.array(quantiles), counts=np.array(counts))


def calibration_half(n: int, seed: int) -> np.ndarray:
    """A seeded half of ``n`` held-out rows (True) to calibrate on; the other half measures the coverage."""
    return np.random.default_rng(seed).random(n) < 0.5


def calibrate_ml_clv(model: Any, X_held: pd.DataFrame, y_held: Any, bins: int = 10) -> Any:
    """Attach the split-conformal calibration on held-out customers to the ML CLV model (``conformal_``)."""
    model.conformal_ = fit_conformal_spend(model.predict(X_held), np.asarray(y_held, dtype=float), bins)
    return model


# --- BTYD CLV: simulated futures under drawn parameters ------------------------------------------------------


def _parameter_draws(model: Any, z: np.ndarray) -> dict[str, np.ndarray]:
    """Parameter vectors (one per draw) from the normal approximation on the log scale."""
    names = model._names
    theta = np.array([model.params_[n] for n in names])
    covariance = getattr(model, "covariance_log_", None)
    if covariance is None or not np.all(np.isfinite(covariance)):
        se = np.array([model.standard_errors_[n] for n in names]) / theta
        covariance = np.diag(np.where(np.isfinite(se), se, 0.0) ** 2)
    values, vectors = np.linalg.eigh((covariance + covariance.T) / 2)
    root = vectors * np.sqrt(np.clip(values, 0.0, None))
    log_draws = np.log(theta)[:, None] + root @ z[: len(names)]
    return {name: np.exp(log_draws[i]) for i, name in enumerate(names)}


def btyd_spend_interval(
    estimator: Any,
    X: pd.DataFrame,
    level: float = 0.8,
    draws: int = 200,
    seed: int = 42,
    purchases: bool = False,
    zero_inclusion: bool = False,
) -> tuple[np.ndarray, ...]:
    """Predictive interval of each customer's spend over the estimator's horizon (undiscounted, no margin).

    ``estimator`` is a fitted :class:`~crmscore.clv.value.BtydClv`; customers who never bought get [0, 0]
    (they are outside the model, whose spend for them is 0). See the module docstring for what is drawn.
    ``purchases=True`` gives the interval of the number of purchases instead; ``zero_inclusion=True`` adds a
    third array, :func:`zero_inclusion_from_draws` per customer (1 for those outside the model).
    """
    from crmscore.clv import btyd
    from crmscore.clv.value import summary_from_features

    low, high, keep = np.zeros(len(X)), np.zeros(len(X)), np.ones(len(X))
    summary = summary_from_features(X, estimator.time_unit)
    if summary.empty:
        return (low, high, keep) if zero_inclusion else (low, high)
    horizon = estimator.horizon_days / btyd.TIME_UNITS[estimator.time_unit]
    futures = _btyd_futures(estimator, summary, horizon, draws, seed, purchases)
    parts: list[tuple[np.ndarray, ...]] = []
    for block in futures:
        lo, hi = interval_from_draws(block, level)
        parts.append((lo, hi, zero_inclusion_from_draws(block, lo, hi, level) if zero_inclusion else lo))
    rows = np.flatnonzero(X["repeat_purchase_days"].notna().to_numpy())
    for target, column in ((low, 0), (high, 1), (keep, 2)):
        if column < 2 or zero_inclusion:
            target[rows] = np.concatenate([part[column] for part in parts])
    return (low, high, keep) if zero_inclusion else (low, high)


def _btyd_futures(
    estimator: Any, summary: pd.DataFrame, horizon: float, draws: int, seed: int, count_only: bool = False
):
    """Blocks of simulated spend (or purchases: ``count_only``) (customers × draws) over ``horizon`` time units.

    Everything that depends only on a customer's purchase count and the draw (the standard gamma and beta
    quantiles, their logs) is tabled once per distinct count; per customer and draw there remain a few
    logs and gathers. Probabilities are compared in log space (alive: log-odds against the draw's logit).
    """
    tx, spend_model = estimator.transaction_model_, estimator.spend_model_
    kind = type(tx).__name__
    u = _uniforms(draws, 16, seed)
    z = special.ndtri(u)
    theta = _parameter_draws(tx, z[0:4])
    gg = _parameter_draws(spend_model, z[4:7])
    x = summary["frequency"].to_numpy(dtype=float)
    t_x = summary["recency"].to_numpy(dtype=float)
    T = summary["T"].to_numpy(dtype=float)
    m = np.maximum(summary["monetary_value"].to_numpy(dtype=float), 0.0)
    distinct, row = np.unique(x, return_inverse=True)
    c = distinct[:, None]
    with np.errstate(divide="ignore"):
        log_rate = np.log(special.gammaincinv(theta["r"][None, :] + c, u[7][None, :]))
    value_table = special.gammaincinv(gg["q"][None, :] + gg["p"][None, :] * c, u[8][None, :])
    if kind == "BetaGeoModel":
        dropout = special.betaincinv(theta["a"][None, :], theta["b"][None, :] + c, u[9][None, :])
        log_stay = np.log1p(-np.clip(dropout, 1e-12, 1 - 1e-12))
        odds_head = np.log(theta["a"])[None, :] - np.log(np.maximum(theta["b"][None, :] + c - 1, 1e-300))
        alive_below = np.log1p(-u[10]) - np.log(u[10])  # alive iff log-odds of dropout < logit(1 − u)
    elif kind == "ParetoNBDModel":
        alive_fixed = tx.probability_alive(summary)
        lifetime_rate = special.gammaincinv(theta["s"], u[9])
    poisson = _poisson_table(draws, seed, 11)
    gamma_sums = _GammaSums(gg["p"], u[13])
    log_u_dropout = np.log(u[12])[None, :]
    for start in range(0, len(x), _BLOCK):
        s = slice(start, start + _BLOCK)
        xs, Ts, rows = x[s, None], T[s, None], row[s]
        log_at = np.log(theta["alpha"] + Ts)
        log_mean = log_rate[rows] - log_at + math.log(horizon)
        if kind == "BetaGeoModel":
            log_odds = odds_head[rows] + (theta["r"] + xs) * (log_at - np.log(theta["alpha"] + t_x[s, None]))
            alive = (xs == 0) | (log_odds < alive_below)
        elif kind == "ParetoNBDModel":
            alive = u[10][None, :] < alive_fixed[s, None]
            remaining = -np.log(u[12])[None, :] * (theta["beta"][None, :] + Ts) / lifetime_rate[None, :]
            log_mean = log_mean + np.log(np.minimum(remaining, horizon) / horizon)
        else:
            alive = np.ones(log_mean.shape, dtype=bool)
        purchases = _poisson(log_mean, poisson, z[11][None, :])
        if kind == "BetaGeoModel":
            until_dropout = np.maximum(np.ceil(log_u_dropout / log_stay[rows]), 1.0)
            purchases = np.minimum(purchases, until_dropout)
        purchases = np.where(alive, purchases, 0.0)
        if count_only:
            yield purchases
            continue
        nu = value_table[rows] / (gg["gamma"][None, :] + xs * m[s, None])
        yield gamma_sums(purchases) / nu


class _GammaSums:
    """Sums of n standard Gamma(shape) purchase values per draw, Gamma(n × shape), tabled by n as n grows."""

    def __init__(self, shape: np.ndarray, u: np.ndarray) -> None:
        self.shape, self.u = shape, u
        self.table = np.zeros((1, len(u)))

    def __call__(self, purchases: np.ndarray) -> np.ndarray:
        counts = purchases.astype(np.intp)
        top = int(counts.max()) if counts.size else 0
        if top >= len(self.table):
            more = np.arange(len(self.table), max(top + 1, 2 * len(self.table)))
            extra = special.gammaincinv(more[:, None] * self.shape[None, :], self.u[None, :])
            self.table = np.vstack([self.table, extra])
        return _gather(self.table, counts)


def clv_interval(
    estimator: Any,
    X: pd.DataFrame,
    spend: np.ndarray,
    value: np.ndarray,
    level: float,
    draws: int,
    seed: int,
    zero_inclusion: bool = False,
) -> tuple[np.ndarray, ...]:
    """``clv_low`` and ``clv_high`` of each customer: the spend interval on the CLV's scale.

    The spend interval (ML: :class:`ConformalSpend` in ``estimator.conformal_``; BTYD:
    :func:`btyd_spend_interval`) is scaled by each customer's CLV / expected spend (margin and discounting).
    NaN for an estimator without an interval (a contractual CLV, or an ML model trained before intervals).
    ``zero_inclusion=True`` adds a third array: the probability that the randomized interval keeps spend 0
    (:meth:`ConformalSpend.zero_inclusion`, :func:`zero_inclusion_from_draws`; 1 without an interval).
    """
    if hasattr(estimator, "transaction_model_"):
        low, high, *keep = btyd_spend_interval(estimator, X, level, draws, seed, zero_inclusion=zero_inclusion)
    elif getattr(estimator, "conformal_", None) is not None:
        low, high = estimator.conformal_.interval(spend, level)
        keep = [estimator.conformal_.zero_inclusion(spend, level)] if zero_inclusion else []
    else:
        low = high = np.full(len(X), np.nan)
        keep = [np.ones(len(X))] if zero_inclusion else []
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = np.where(spend > 0, value / spend, 0.0)
    return (low * factor, high * factor, *keep)


# --- churn -----------------------------------------------------------------------------------------------------


def churn_interval(model: Any, X: pd.DataFrame, level: float = 0.8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Churn probability and its interval: quantiles of the probabilities under the bootstrapped calibrators.

    Returns ``(p, low, high)``; ``p`` is exactly ``model.predict_proba(X)[:, 1]``. A model without
    bootstrapped calibrators (trained before, or with ``calibration_bootstraps: 0``) gets NaN bounds.
    """
    if not hasattr(model, "probability_draws"):
        p = model.predict_proba(X)[:, 1]
        return p, np.full(len(p), np.nan), np.full(len(p), np.nan)
    p, draws = model.probability_draws(X)
    if draws is None:
        return p, np.full(len(p), np.nan), np.full(len(p), np.nan)
    n_draws = draws.shape[0]
    alpha = 1.0 - level
    ordered = np.sort(draws, axis=0)
    low = ordered[max(int(math.floor((n_draws + 1) * alpha / 2)), 1) - 1]
    high = ordered[min(int(math.ceil((n_draws + 1) * (1 - alpha / 2))), n_draws) - 1]
    return p, low, high


# --- tier confidence -------------------------------------------------------------------------------------------


def _is_count(feature: str) -> bool:
    return feature.startswith(COUNT_PREFIXES)


@functools.lru_cache(maxsize=16)
def _count_table(draws: int, seed: int, dim: int) -> np.ndarray:
    """Predictive counts of another period (rows: observed count 0…max; columns: draws).

    Row c is negative binomial (c + ½ successes, probability ½): a Poisson count whose rate ~ Gamma(c + ½, 1),
    inverted from its CDF P(X ≤ k) = I_½(c + ½, k + 1) at the draws' uniforms.
    """
    u = _uniform_row(draws, dim, seed)
    shape = np.arange(_COUNT_TABLE_MAX + 1, dtype=float)[:, None] + 0.5
    cdf = special.betainc(shape, np.arange(4 * _COUNT_TABLE_MAX)[None, :] + 1.0, 0.5)
    return np.stack([np.searchsorted(row, u) for row in cdf]).astype(float)


def _count_rows(values: np.ndarray, draws: int, seed: int, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each customer's row of the count table, the customers beyond it and their redrawn counts (normal)."""
    counts = np.rint(np.nan_to_num(values, nan=0.0)).clip(0)
    rows = np.minimum(counts, _COUNT_TABLE_MAX).astype(np.intp)
    big = np.flatnonzero(counts > _COUNT_TABLE_MAX)
    z = special.ndtri(_uniform_row(draws, dim, seed))
    shape = counts[big, None] + 0.5
    return rows, big, np.maximum(np.rint(shape + np.sqrt(2 * shape) * z[None, :]), 0.0)


def _count_points(metric: Any, values: np.ndarray, draws: int, seed: int, dim: int) -> np.ndarray:
    """Points (customers × draws) of a count metric redrawn from its predictive distribution."""
    rows, big, redrawn = _count_rows(values, draws, seed, dim)
    out = metric.on_table(_count_table, draws, seed, dim)[rows]  # customers with the same count share their draws
    out[big] = metric.points_for(redrawn)
    out[np.isnan(values)] = 0.0
    return out


def _spend_points(metric: Any, spend: np.ndarray, count: np.ndarray, draws: int, seed: int, dim: int) -> np.ndarray:
    """Points of spend redrawn as the customer's mean ticket × her redrawn purchase count (that count's draws)."""
    table = _count_table(draws, seed, dim)
    rows, big, redrawn = _count_rows(count, draws, seed, dim)
    with np.errstate(invalid="ignore", divide="ignore"):
        ticket = np.where(count > 0, spend / count, 0.0)
    out = np.zeros((len(spend), draws))
    for row in np.unique(rows):
        who = np.flatnonzero(rows == row)
        values, position = np.unique(table[row], return_inverse=True)  # few distinct counts per row
        out[who] = metric.points_for(ticket[who, None] * values[None, :])[:, position]
    out[big] = metric.points_for(ticket[big, None] * redrawn)
    out[np.isnan(spend)] = 0.0
    return out


@functools.lru_cache(maxsize=16)
def _share_table(draws: int, seed: int, dim: int) -> np.ndarray:
    """Predictive shares of another period (n events, k of them "successes"; rows n × (k = 0…n); draws).

    Row (n, k) is the share k' / n of a beta-binomial: the underlying rate ~ Beta(k + ½, n − k + ½)
    (Jeffreys' prior), then k' ~ Binomial(n, rate), at the draws' uniforms (two rows of them).
    """
    u_rate, u_count = _uniform_row(draws, dim, seed), _uniform_row(draws, dim + 64, seed)
    n = np.concatenate([np.full(m + 1, m) for m in range(_SHARE_TABLE_MAX + 1)]).astype(float)
    k = np.concatenate([np.arange(m + 1) for m in range(_SHARE_TABLE_MAX + 1)]).astype(float)
    rate = special.betaincinv(k[:, None] + 0.5, n[:, None] - k[:, None] + 0.5, u_rate[None, :])
    redrawn = stats.binom.ppf(u_count[None, :], n[:, None], rate)
    return np.where(n[:, None] > 0, redrawn / np.maximum(n[:, None], 1.0), np.nan)


def _share_points(metric: Any, share: np.ndarray, events: np.ndarray, draws: int, seed: int, dim: int) -> np.ndarray:
    """Points of a share of ``events`` (collection rate: paid share of the invoices) redrawn from its
    predictive distribution; the share of an amount is read as a share of the events. Missing stays 0 points."""
    n = np.rint(np.nan_to_num(events, nan=0.0)).clip(0)
    k = np.clip(np.rint(np.nan_to_num(share, nan=0.0) * n), 0, n)
    out = np.zeros((len(share), draws))
    small = n <= _SHARE_TABLE_MAX
    rows = (n * (n + 1) / 2 + k).astype(np.intp)
    out[small] = metric.on_table(_share_table, draws, seed, dim)[rows[small]]
    big = np.flatnonzero(~small)
    if len(big):  # many events: normal around the observed share, the beta-binomial's variance
        z = special.ndtri(_uniform_row(draws, dim, seed))
        rate = (k[big] + 0.5) / (n[big] + 1.0)
        sd = np.sqrt(rate * (1 - rate) * (2 * n[big] + 1) / ((n[big] + 2) * n[big]))
        out[big] = metric.points_for(np.clip(rate[:, None] + sd[:, None] * z[None, :], 0.0, 1.0))
    keep = np.isnan(share) | (n == 0)  # no events: the share is as measured (or missing: 0 points)
    out[keep] = metric.points_for(share[keep])[:, None]
    return out


class _Points:
    """A scorecard metric's points function with its knots as arrays once (``points_for`` converts them per call),
    and the points of the redraw tables it reads, worked out once per scoring part rather than per block."""

    def __init__(self, metric: Any) -> None:
        self.values = np.asarray(metric.values, dtype=float)
        self.points = np.asarray(metric.points, dtype=float)
        self._tables: dict[tuple, np.ndarray] = {}

    def points_for(self, values: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(values), 0.0, np.interp(values, self.values, self.points))

    def on_table(self, make: Any, draws: int, seed: int, dim: int) -> np.ndarray:
        """Points of ``make(draws, seed, dim)`` (:func:`_count_table`, :func:`_share_table`)."""
        key = (make.__name__, draws, seed, dim)
        if key not in self._tables:
            self._tables[key] = self.points_for(make(draws, seed, dim))
        return self._tables[key]


def _tier_index(points: np.ndarray, cutoffs: Sequence[float]) -> np.ndarray:
    """0 for A … len(cutoffs) for the last tier, from points and the falling cut-offs."""
    index = np.full(points.shape, len(cutoffs), dtype=np.int8)
    for k in range(len(cutoffs) - 1, -1, -1):
        index[points >= cutoffs[k]] = k
    return index


def _redrawn_points(part: pd.DataFrame, scorecard: Any, scales: list[_Points], draws: int, seed: int) -> np.ndarray:
    """Total scorecard points (customers × draws) of another year at the same rates.

    Count metrics are redrawn, spend (``monetary_<w>``) follows the redrawn purchases of its window
    (``frequency_<w>``, the same draws where that is a metric too), shares of a count (collection rate of
    the invoices due, :data:`SHARE_OF`) are redrawn as beta-binomial shares, other metrics are held.
    """
    features = [m.feature for m in scorecard.metrics]
    total = np.zeros((len(part), draws))
    for dim, (metric, scale) in enumerate(zip(scorecard.metrics, scales, strict=True)):
        values = part[metric.feature].to_numpy(dtype=float)
        paired = metric.feature.replace("monetary_", "frequency_", 1)
        if _is_count(metric.feature):
            total += metric.weight * _count_points(scale, values, draws, seed, dim)
        elif SHARE_OF.get(metric.feature) in part.columns:
            events = part[SHARE_OF[metric.feature]].to_numpy(dtype=float)
            total += metric.weight * _share_points(scale, values, events, draws, seed, dim)
        elif metric.feature.startswith("monetary_") and paired in part.columns:
            count_dim = features.index(paired) if paired in features else len(features)
            count = part[paired].to_numpy(dtype=float)
            total += metric.weight * _spend_points(scale, values, count, draws, seed, count_dim)
        else:
            total += metric.weight * scale.points_for(values)[:, None]
    return total


def _scorecard_confidence(frame: pd.DataFrame, scorecard: Any, cutoffs: Sequence[float], draws: int, seed: int):
    assigned = _tier_index(scorecard.points(frame)["total"].to_numpy(), cutoffs)
    confidence = np.empty(len(frame))
    scales = [_Points(metric) for metric in scorecard.metrics]
    for start in range(0, len(frame), _BLOCK):
        stop = start + _BLOCK
        total = _redrawn_points(frame.iloc[start:stop], scorecard, scales, draws, seed)
        confidence[start:stop] = (_tier_index(total, cutoffs) == assigned[start:stop, None]).mean(axis=1)
    return confidence


def _pyramid_confidence(clv: np.ndarray, low: np.ndarray, high: np.ndarray, pyramid: Mapping, level: float):
    """P(a log-normal read of the CLV interval lies in the customer's pyramid tier's CLV range)."""
    bounds = [np.inf] + [pyramid[t]["clv"] if pyramid.get(t) else np.inf for t in ("A", "B", "C", "D")] + [0.0]
    bounds = np.minimum.accumulate(np.array(bounds, dtype=float))
    centre = np.log1p(clv)
    spread = (np.log1p(high) - np.log1p(low)) / (2 * special.ndtri(0.5 + level / 2))
    tier = np.searchsorted(-bounds[1:-1], -clv, side="right")
    upper, lower = bounds[tier], np.where(tier == 4, 0.0, bounds[tier + 1])
    with np.errstate(invalid="ignore", divide="ignore"):
        cdf_upper = np.where(np.isinf(upper), 1.0, special.ndtr((np.log1p(upper) - centre) / spread))
        cdf_lower = np.where(lower <= 0, 0.0, special.ndtr((np.log1p(lower) - centre) / spread))
    confidence = np.where(spread > 0, cdf_upper - cdf_lower, 1.0)
    return np.where(np.isfinite(low) & np.isfinite(high), confidence, np.nan)


def tier_confidence(
    frame: pd.DataFrame,
    scale: Any,
    cutoffs: Mapping[str, float],
    clv: Any = None,
    clv_low: Any = None,
    clv_high: Any = None,
    level: float = 0.8,
    draws: int = 200,
    seed: int = 42,
) -> np.ndarray:
    """Each customer's probability of being in the tier assigned to her (NaN where there is no tier).

    ``scale`` is the fitted :class:`~crmscore.tiers.TierScale`, ``cutoffs`` the scorecard's A–D cut-offs;
    ``frame`` holds the scorecard's features; ``clv``, ``clv_low`` and ``clv_high`` serve the pyramid.
    """
    n = len(frame)
    if scale.method == "scorecard":
        falling = [float(cutoffs[t]) for t in ("A", "B", "C", "D")]
        return _scorecard_confidence(frame, scale.scorecard, falling, draws, seed)
    if scale.method == "pyramid" and clv is not None and clv_low is not None:
        as_float = [np.asarray(v, dtype=float) for v in (clv, clv_low, clv_high)]
        return _pyramid_confidence(*as_float, scale.pyramid, level)
    return np.full(n, np.nan)


# --- summaries for the report and the benchmark ------------------------------------------------------------------


def borderline_summary(tier: pd.Series, borderline: pd.Series, clv: pd.Series) -> pd.DataFrame:
    """Per tier: customers, borderline customers and their share, and the share of the tier's CLV they hold."""
    frame = pd.DataFrame(
        {
            "tier": tier.astype(object).to_numpy(),
            "borderline": borderline.fillna(False).astype(bool).to_numpy(),
            "clv": pd.to_numeric(clv, errors="coerce").fillna(0.0).to_numpy(dtype=float),
        }
    ).dropna(subset=["tier"])
    frame["borderline_clv"] = np.where(frame["borderline"], frame["clv"], 0.0)
    grouped = frame.groupby("tier", sort=True)
    out = pd.DataFrame(
        {
            "customers": grouped.size(),
            "borderline": grouped["borderline"].sum().astype(int),
            "clv": grouped["clv"].sum(),
            "borderline_clv": grouped["borderline_clv"].sum(),
        }
    )
    out["borderline_share"] = out["borderline"] / out["customers"]
    with np.errstate(invalid="ignore", divide="ignore"):
        out["borderline_clv_share"] = np.where(out["clv"] > 0, out["borderline_clv"] / out["clv"], np.nan)
    total_clv = float(frame["clv"].sum())
    out["share_of_all_clv"] = out["borderline_clv"] / total_clv if total_clv > 0 else np.nan
    return out[["customers", "borderline", "borderline_share", "borderline_clv_share", "share_of_all_clv"]]


def coverage_by_decile(
    predicted: Any, actual: Any, low: Any, high: Any, deciles: int = 10, zero_inclusion: Any = None
) -> pd.DataFrame:
    """Coverage and mean width of intervals per decile of the point prediction (and ``overall`` last).

    ``zero_share`` is the share of customers whose actual value is 0: where it exceeds the level, the
    shortest interval holding the level is [0, 0], which covers that whole share, so no interval can hold
    the level exactly there. With ``zero_inclusion`` (each customer's probability that the randomized
    interval keeps 0: :meth:`ConformalSpend.zero_inclusion`, :func:`zero_inclusion_from_draws`) a
    ``randomized`` column gives the coverage with that tie broken at random: a customer who spent 0
    counts that probability. It holds the level in every decile when the intervals are calibrated.
    """
    predicted, actual, low, high = (np.asarray(v, dtype=float) for v in (predicted, actual, low, high))
    ranks = pd.Series(predicted).rank(method="first").to_numpy()
    decile = np.minimum(((ranks - 1) * deciles / len(predicted)).astype(int), deciles - 1)
    inside = (actual >= low) & (actual <= high)
    keep = np.ones(len(actual)) if zero_inclusion is None else np.asarray(zero_inclusion, dtype=float)
    frame = pd.DataFrame(
        {
            "decile": decile + 1,
            "inside": inside,
            "randomized": np.where(inside & (actual == 0), keep, inside.astype(float)),
            "width": high - low,
            "predicted": predicted,
            "zero": actual == 0,
        }
    )
    rows = frame.groupby("decile").agg(
        customers=("inside", "size"),
        coverage=("inside", "mean"),
        mean_width=("width", "mean"),
        mean_predicted=("predicted", "mean"),
        zero_share=("zero", "mean"),
        randomized=("randomized", "mean"),
    )
    rows.loc["overall"] = [
        len(frame),
        inside.mean(),
        frame["width"].mean(),
        predicted.mean(),
        frame["zero"].mean(),
        frame["randomized"].mean(),
    ]
    return rows if zero_inclusion is not None else rows.drop(columns="randomized")


def churn_rate_interval(p: Any, low: Any, high: Any, groups: Any = None, level: float = 0.8) -> pd.DataFrame:
    """Per group of customers: the expected churn rate, its interval, and the interval of the realized rate.

    From scored columns (``churn_probability``, ``churn_low``, ``churn_high``). The *rate* interval is
    the mean of the customers' bounds: their probabilities move together (one calibration), so the
    group's rate is as uncertain as its customers' and no narrower. The *realized* interval is where the
    share who actually churn will fall: it adds to the rate's uncertainty (read as normal on each side,
    with the rate interval's half-widths at ``level``) the outcome's own noise, Σ p(1 − p) / n² for n
    independent yes/no outcomes. A group's realized churn rate is checked against the realized interval;
    the true rate (known in a simulation) against the rate interval. ``groups`` None gives one row, ``all``.
    """
    frame = pd.DataFrame({"p": p, "low": low, "high": high}, dtype=float)
    frame["noise"] = frame["p"] * (1.0 - frame["p"])
    keys = pd.Series("all", index=frame.index) if groups is None else pd.Series(np.asarray(groups), index=frame.index)
    rows = frame.groupby(keys, sort=True).agg(
        customers=("p", "size"),
        rate=("p", "mean"),
        rate_low=("low", "mean"),
        rate_high=("high", "mean"),
        noise=("noise", "sum"),
    )
    z = special.ndtri(0.5 + level / 2)
    outcome = np.sqrt(rows.pop("noise")) / rows["customers"]
    down = np.hypot(rows["rate"] - rows["rate_low"], z * outcome)
    up = np.hypot(rows["rate_high"] - rows["rate"], z * outcome)
    rows["realized_low"] = np.clip(rows["rate"] - down, 0.0, 1.0)
    rows["realized_high"] = np.clip(rows["rate"] + up, 0.0, 1.0)
    rows["expected_churners"] = rows["rate"] * rows["customers"]
    return rows
