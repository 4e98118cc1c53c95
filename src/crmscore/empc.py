"""Expected Maximum Profit for customer Churn (EMPC): what a retention campaign chosen with the model earns.

Verbraken, Verbeke & Baesens (2013), "A novel profit maximizing metric for measuring classification
performance of customer churn prediction models", IEEE TKDE 25(5). A campaign contacts the customers
with the highest churn scores and offers them an incentive. Contacting the top of the ranking at a
threshold ``t`` earns, per customer of the base,

    P(t; γ) = CLV · (γ (1 − δ) − φ) · π0 · F0(t) − CLV · (δ + φ) · π1 · F1(t)

with ``δ = incentive / CLV``, ``φ = contact_cost / CLV``, ``π0`` the churn rate, ``π1 = 1 − π0`` and
``F0(t)`` / ``F1(t)`` the shares of churners / non-churners contacted. A contacted churner accepts the
offer (and stays, worth ``CLV − incentive``) with probability ``γ``; a contacted non-churner takes the
incentive anyway. ``γ`` is unknown and follows a Beta(``alpha``, ``beta``) distribution (6 and 14 in
the paper, a mean of 30 %). For each ``γ`` the campaign contacts the share that maximises the profit;
EMPC is that maximum profit averaged over ``γ``, in currency units per customer.

The maximum of a linear function of ``(F1, F0)`` lies on a vertex of the ROC convex hull, and as ``γ``
grows the best vertex moves along the hull at the ``γ`` where the profits of two neighbours meet. So
the integral is exact, a sum over hull vertices of the Beta CDF and partial first moment between those
``γ`` values, as in the paper. Only the ranking of the scores matters (any strictly increasing
transform gives the same EMPC); customers with equal scores are contacted together.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from crmscore.evaluation import validate_binary_predictions

__all__ = ["EmpcResult", "empc", "empc_fraction", "empc_detail", "mpc"]

ArrayLike = Sequence[float] | np.ndarray | pd.Series


@dataclasses.dataclass(frozen=True)
class EmpcResult:
    """EMPC (currency units per customer) and the expected share of customers the best campaign contacts."""

    empc: float
    fraction: float


def empc(
    y_true: ArrayLike,
    p: ArrayLike,
    clv: float = 200.0,
    incentive: float = 10.0,
    contact_cost: float = 1.0,
    alpha: float = 6.0,
    beta: float = 14.0,
) -> float:
    """Expected maximum profit per customer of a retention campaign targeted with ``p`` (Verbraken et al. 2013).

    ``y_true`` holds 1 for a churner, ``p`` the churn score (higher = more likely to churn). ``clv`` is
    the value of a retained customer, ``incentive`` what the offer costs when taken, ``contact_cost``
    the cost of one contact (all in the same currency), and the acceptance rate ``γ`` of contacted
    churners follows Beta(``alpha``, ``beta``). 0 means no campaign pays; a perfect ranking earns
    ``E[max(0, CLV · (γ (1 − δ) − φ) · π0)]``, contacting exactly the churners whenever that pays. Raises
    :class:`ValueError` on invalid input or a single class.
    """
    return empc_detail(y_true, p, clv, incentive, contact_cost, alpha, beta).empc


def empc_fraction(
    y_true: ArrayLike,
    p: ArrayLike,
    clv: float = 200.0,
    incentive: float = 10.0,
    contact_cost: float = 1.0,
    alpha: float = 6.0,
    beta: float = 14.0,
) -> float:
    """Expected share of customers the profit-maximising campaign contacts (η_empc of Verbraken et al. 2013).

    The share contacted at the best hull vertex for each ``γ``, averaged over Beta(``alpha``, ``beta``);
    arguments as in :func:`empc`. A campaign that never pays contacts 0.
    """
    return empc_detail(y_true, p, clv, incentive, contact_cost, alpha, beta).fraction


def empc_detail(
    y_true: ArrayLike,
    p: ArrayLike,
    clv: float = 200.0,
    incentive: float = 10.0,
    contact_cost: float = 1.0,
    alpha: float = 6.0,
    beta: float = 14.0,
) -> EmpcResult:
    """EMPC and the expected share contacted in one pass (arguments as in :func:`empc`).

    Between consecutive breakpoints ``γ_{i-1} < γ < γ_i`` hull vertex ``i`` is best and its profit is
    linear in ``γ``, so its part of the integral needs only the Beta CDF ``H`` and the partial first
    moment ``E[γ; γ < g] = α / (α + β) · H_{α+1, β}(g)``.
    """
    delta, phi = _cost_shares(clv, incentive, contact_cost)
    _check_beta_parameters(alpha, beta)
    fpr, tpr, churn_rate = _roc_hull(y_true, p, "empc")
    gain, loss = _profit_coefficients(fpr, tpr, churn_rate, clv, delta, phi)
    edges = np.r_[0.0, np.clip(_breakpoints(fpr, tpr, churn_rate, delta, phi), 0.0, 1.0), 1.0]
    # Vertex i is best for γ in [edges[i], edges[i + 1]]: profit gain · γ − loss there.
    probability = np.diff(stats.beta.cdf(edges, alpha, beta))
    first_moment = np.diff(alpha / (alpha + beta) * stats.beta.cdf(edges, alpha + 1.0, beta))
    profit = float(np.sum(gain * first_moment - loss * probability))
    contacted = churn_rate * tpr + (1.0 - churn_rate) * fpr
    fraction = float(np.sum(contacted * probability))
    # Vertex 0 (contact nobody) earns exactly 0; rounding must not turn "never pays" into -1e-17.
    return EmpcResult(empc=max(profit, 0.0), fraction=min(max(fraction, 0.0), 1.0))


def mpc(
    y_true: ArrayLike,
    p: ArrayLike,
    clv: float = 200.0,
    incentive: float = 10.0,
    contact_cost: float = 1.0,
    gamma: float = 0.3,
) -> float:
    """Maximum profit per customer of a campaign targeted with ``p`` when contacted churners accept with rate ``gamma``.

    The best of :math:`P(t; γ)` over all thresholds (hull vertices, contacting nobody included, so never
    below 0); the deterministic profit measure that :func:`empc` averages over ``γ``.
    """
    delta, phi = _cost_shares(clv, incentive, contact_cost)
    if not _number(gamma) or not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be a number in [0, 1], got {gamma!r}")
    fpr, tpr, churn_rate = _roc_hull(y_true, p, "mpc")
    gain, loss = _profit_coefficients(fpr, tpr, churn_rate, clv, delta, phi)
    return max(float(np.max(gain * gamma - loss)), 0.0)


# --- helpers --------------------------------------------------------------------------------------------


def _number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float | np.integer | np.floating)


def _cost_shares(clv: float, incentive: float, contact_cost: float) -> tuple[float, float]:
    """``δ = incentive / clv`` and ``φ = contact_cost / clv``, after checking the three amounts."""
    if not _number(clv) or not (math.isfinite(clv) and clv > 0):
        raise ValueError(f"clv must be a positive number, got {clv!r}")
    for name, value in (("incentive", incentive), ("contact_cost", contact_cost)):
        if not _number(value) or not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(incentive) / float(clv), float(contact_cost) / float(clv)


def _check_beta_parameters(alpha: float, beta: float) -> None:
    for name, value in (("alpha", alpha), ("beta", beta)):
        if not _number(value) or not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} of the acceptance-rate Beta distribution must be positive, got {value!r}")


def _roc_hull(y_true: ArrayLike, p: ArrayLike, metric: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Vertices of the ROC convex hull from (0, 0) to (1, 1) as (false, true positive rate), and the churn rate.

    Customers with equal scores form one ROC point (they are contacted together). The hull is built on
    integer counts, so collinear points are dropped exactly and the hull's slopes strictly decrease.
    """
    y, scores = validate_binary_predictions(y_true, p)
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        only = 1 if positives else 0
        raise ValueError(f"{metric} needs both classes in y_true, got only class {only} in {len(y)} customer(s)")
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_y = scores[order], y[order]
    # Last row of each group of equal scores: the cumulative counts there are one ROC point.
    group_ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(y) - 1]
    true_pos = np.r_[0, np.cumsum(sorted_y)[group_ends]]
    false_pos = np.r_[0, group_ends + 1 - true_pos[1:]]
    hull: list[tuple[int, int]] = []
    for point in zip(false_pos.tolist(), true_pos.tolist(), strict=True):
        # Upper hull (Andrew's monotone chain): drop the last vertex while it is not a right turn.
        while len(hull) >= 2:
            (x0, y0), (x1, y1) = hull[-2], hull[-1]
            if (x1 - x0) * (point[1] - y0) - (y1 - y0) * (point[0] - x0) >= 0:
                hull.pop()
            else:
                break
        hull.append(point)
    vertices = np.asarray(hull, dtype=np.float64)
    return vertices[:, 0] / negatives, vertices[:, 1] / positives, positives / len(y)


def _profit_coefficients(
    fpr: np.ndarray, tpr: np.ndarray, churn_rate: float, clv: float, delta: float, phi: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per vertex, ``gain`` and ``loss`` with profit ``P(γ) = gain · γ − loss`` (currency per customer)."""
    gain = clv * (1.0 - delta) * churn_rate * tpr
    loss = clv * (phi * churn_rate * tpr + (delta + phi) * (1.0 - churn_rate) * fpr)
    return gain, loss


def _breakpoints(fpr: np.ndarray, tpr: np.ndarray, churn_rate: float, delta: float, phi: float) -> np.ndarray:
    """The ``γ`` above which moving from hull vertex ``i`` to ``i + 1`` pays, one per hull segment.

    Moving pays when ``(γ (1 − δ) − φ) π0 ΔF0 > (δ + φ) π1 ΔF1``. The values increase along the hull
    (its slopes decrease); a flat segment (no churner gained) or an offer worth the whole CLV (``δ ≥ 1``)
    never pays: ``inf``.
    """
    d_tpr, d_fpr = np.diff(tpr), np.diff(fpr)
    gamma = np.full(len(d_tpr), np.inf)
    if delta >= 1.0:
        return gamma
    gains = d_tpr > 0
    ratio = d_fpr[gains] / d_tpr[gains]
    gamma[gains] = (phi + (delta + phi) * (1.0 - churn_rate) / churn_rate * ratio) / (1.0 - delta)
    return gamma
