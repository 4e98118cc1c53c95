"""Value tiers, churn risk bands, lifecycle stages, value at risk and the action matrix.

Everything here is a pure function of DataFrames/Series and settings (the ``tiers`` section of
``params.yaml``); nothing reads or writes files. The pieces, in the order scoring uses them:

* **scorecard** (DESIGN.md): each metric (annual sales, payment collection, repurchase frequency, product
  breadth, interactions) becomes 0-100 points, the customer's percentile among a reference population;
  the weighted sum is the ``total`` and the cut-offs turn it into tiers A-E (:func:`scorecard_tiers`).
  Percentiles depend on the population, so the scale is fitted once (:func:`fit_scorecard`, a JSON-able
  :class:`Scorecard`) and then applied to any chunk of customers (:meth:`Scorecard.points`): the points of
  a customer never depend on which other customers share the chunk.
* **value pyramid**: customers ranked by CLV, the top 1 % A, the next 4 % B, … (:func:`pyramid_tiers`);
  for chunks, the boundaries are fitted once (:func:`fit_pyramid`) and applied with
  :func:`pyramid_tiers_from_thresholds`.
* :func:`risk_band` (low / medium / high churn probability), :func:`lifecycle_stage` (new / active /
  dormant / lapsed), :func:`value_at_risk` (CLV × P(churn)) and :func:`recommended_action` (the tier ×
  risk-band matrix); :func:`assign` does all of them for one table of customers.
* reports: :func:`tier_migration` (tier moves between two scorings), :func:`tier_summary` and
  :func:`tier_risk_matrix`.

Tiers, bands and stages are ordered pandas categoricals with fixed categories (:data:`TIERS`,
:data:`RISK_BANDS`, :data:`LIFECYCLE_STAGES`), so chunks concatenate without losing their dtype.
Arguments a caller got wrong (probabilities outside [0, 1], negative CLV, an unknown tier) raise
:class:`ValueError`; data that cannot be scored (a feature column missing, text where numbers belong)
raises :class:`~crmscore.errors.DataError`. Both carry one line naming the column and the rule.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from crmscore.config import ScorecardSettings, TierSettings
from crmscore.errors import DataError

__all__ = [
    "TIERS",
    "RISK_BANDS",
    "LIFECYCLE_STAGES",
    "TIER_DTYPE",
    "RISK_BAND_DTYPE",
    "LIFECYCLE_DTYPE",
    "ScorecardMetric",
    "Scorecard",
    "fit_scorecard",
    "scorecard_points",
    "scorecard_tiers",
    "fit_pyramid",
    "pyramid_tiers_from_thresholds",
    "pyramid_tiers",
    "risk_band",
    "lifecycle_stage",
    "value_at_risk",
    "recommended_action",
    "assign",
    "TierScale",
    "fit_tier_scale",
    "tier_migration",
    "tier_summary",
    "tier_risk_matrix",
]

log = logging.getLogger("crmscore.tiers")

TIERS: tuple[str, ...] = ("A", "B", "C", "D", "E")
RISK_BANDS: tuple[str, ...] = ("low", "medium", "high")
LIFECYCLE_STAGES: tuple[str, ...] = ("new", "active", "dormant", "lapsed")

# Ordered in reading order: A (best) is the first category, so sorting lists A first.
TIER_DTYPE = pd.CategoricalDtype(list(TIERS), ordered=True)
RISK_BAND_DTYPE = pd.CategoricalDtype(list(RISK_BANDS), ordered=True)
LIFECYCLE_DTYPE = pd.CategoricalDtype(list(LIFECYCLE_STAGES), ordered=True)

# Points are interpolated between at most this many knots per metric: exact percentiles when the reference
# has no more distinct values, otherwise within POINTS_RESOLUTION points of them.
_MAX_KNOTS = 2002
POINTS_RESOLUTION = 0.1
# The weighted sum of points carries float rounding (0.5 × 90 + 0.2 × 90 + … may land a hair under 90);
# a total this close below a cut-off still reaches it.
_CUTOFF_TOLERANCE = 1e-9
_SCORECARD_FORMAT = 1


# --- input checks ------------------------------------------------------------------------------------


def _as_series(values: Any, name: str) -> pd.Series:
    """``values`` as a Series (arrays get a RangeIndex); the customer index must be unique."""
    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values))
    if series.ndim != 1:
        raise ValueError(f"{name}: expected one value per customer (1-D), got shape {np.shape(values)}")
    if not series.index.is_unique:
        duplicated = series.index[series.index.duplicated()][0]
        raise ValueError(f"{name}: customer ids must be unique, {duplicated!r} appears more than once")
    return series


def _numbers(values: Any, name: str) -> pd.Series:
    """A float Series with no missing or infinite values."""
    series = _as_series(values, name)
    if not (pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)):
        raise ValueError(f"{name}: expected numbers, got dtype {series.dtype}")
    out = series.astype(float)
    missing = int(out.isna().sum())
    if missing:
        raise ValueError(f"{name}: {missing} missing value(s); every customer needs a value")
    if not np.isfinite(out.to_numpy()).all():
        raise ValueError(f"{name}: infinite values are not allowed")
    return out


def _probabilities(p: Any, name: str = "p_churn") -> pd.Series:
    out = _numbers(p, name)
    if len(out) and not (out.min() >= 0 and out.max() <= 1):
        raise ValueError(f"{name}: probabilities must lie in [0, 1], got {out.min():.6g} to {out.max():.6g}")
    return out


def _amounts(values: Any, name: str = "clv") -> pd.Series:
    out = _numbers(values, name)
    if len(out) and out.min() < 0:
        raise ValueError(f"{name}: values must be >= 0, got {out.min():.6g}")
    return out


def _labels(values: Any, name: str, allowed: Sequence[str]) -> pd.Series:
    """Labels as an object Series, every one among ``allowed``."""
    series = _as_series(values, name)
    as_object = series.astype(object)
    if as_object.isna().any():
        raise ValueError(f"{name}: {int(as_object.isna().sum())} missing value(s); every customer needs a label")
    unknown = sorted({str(v) for v in pd.unique(as_object)} - set(allowed))
    if unknown:
        raise ValueError(f"{name}: unknown value {unknown[0]!r} (expected one of {', '.join(allowed)})")
    return as_object


def _aligned(index: pd.Index, name: str, *series: pd.Series) -> None:
    """Every series must hold exactly the customers of ``index`` (any order)."""
    for s in series:
        if len(s) != len(index) or not s.index.isin(index).all():
            raise ValueError(f"{name}: {s.name or 'input'} must hold the same customers as the other inputs")


def _feature_values(features: pd.DataFrame, column: str, context: str) -> np.ndarray:
    """One numeric feature column as float (missing values stay NaN); infinite values are an error."""
    series = features[column]
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype) or not (
        pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)
    ):
        raise DataError(f"{context}: column '{column}' must be numeric, got dtype {dtype}")
    values = series.to_numpy(dtype=float, na_value=np.nan)
    if np.isinf(values).any():
        raise DataError(f"{context}: column '{column}' has infinite values; expected finite numbers or missing")
    return values


# --- scorecard ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScorecardMetric:
    """One fitted scorecard metric: the feature that measures it, its weight, and its points scale.

    ``values`` are strictly increasing knots taken from the reference customers' values of ``feature`` and
    ``points`` the 0-100 points at each knot (0 at the lowest value, 100 at the highest); a value between
    two knots gets the linearly interpolated points, one outside the range 0 or 100.
    """

    name: str
    feature: str
    weight: float
    values: tuple[float, ...]
    points: tuple[float, ...]

    def __post_init__(self) -> None:
        where = f"scorecard metric '{self.name}'"
        if not (isinstance(self.weight, int | float) and math.isfinite(self.weight) and 0 <= self.weight <= 1):
            raise ValueError(f"{where}: weight must be a number in [0, 1], got {self.weight!r}")
        v = np.asarray(self.values, dtype=float)
        p = np.asarray(self.points, dtype=float)
        if v.ndim != 1 or v.size < 2 or v.shape != p.shape:
            raise ValueError(f"{where}: values and points must be two lists of the same length >= 2")
        if not (np.isfinite(v).all() and (np.diff(v) > 0).all()):
            raise ValueError(f"{where}: values must be finite and strictly increasing")
        if not (np.isfinite(p).all() and (np.diff(p) >= 0).all() and p[0] >= 0 and p[-1] <= 100):
            raise ValueError(f"{where}: points must rise from 0 to 100 without falling")

    def points_for(self, values: np.ndarray) -> np.ndarray:
        """Points of raw feature values (missing values get 0 points)."""
        points = np.interp(values, np.asarray(self.values), np.asarray(self.points))
        return np.where(np.isnan(values), 0.0, points)


@dataclass(frozen=True)
class Scorecard:
    """A fitted scorecard scale: per metric a percentile grid over a reference population, and the weights.

    Fitted by :func:`fit_scorecard`; :meth:`points` maps any customers onto the same scale, so scoring in
    chunks gives exactly the points of scoring everyone at once. ``dropped`` lists ``(metric, reason)`` for
    metrics of the settings that could not rank the reference customers; their weight was spread over the
    kept ones in proportion to their weights. ``to_dict``/``from_dict`` round-trip through JSON exactly.
    """

    metrics: tuple[ScorecardMetric, ...]
    dropped: tuple[tuple[str, str], ...] = ()
    reference_customers: int = 0

    def __post_init__(self) -> None:
        if not self.metrics:
            raise ValueError("scorecard: needs at least one metric")
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names) or "total" in names:
            raise ValueError(f"scorecard: metric names must be unique and not 'total', got {names}")
        total = sum(m.weight for m in self.metrics)
        if abs(total - 1) > 1e-6:
            raise ValueError(f"scorecard: metric weights must add up to 1, got {total:.6g}")

    @property
    def weights(self) -> dict[str, float]:
        """Weight of each kept metric (after spreading the weight of dropped metrics)."""
        return {m.name: m.weight for m in self.metrics}

    def points(self, features: pd.DataFrame) -> pd.DataFrame:
        """0-100 points per metric and their weighted ``total`` for each customer of ``features``.

        Args:
            features: one row per customer with the feature column of every kept metric (other columns
                are ignored); the index is kept.

        Returns:
            DataFrame with one column per kept metric (in the scorecard's order) and ``total``, all float.
            A missing feature value earns 0 points for that metric (no record, no points).

        Raises:
            DataError: a metric's feature column is absent, not numeric or holds infinite values.
        """
        if not isinstance(features, pd.DataFrame):
            raise TypeError(f"features: expected a DataFrame, got {type(features).__name__}")
        out: dict[str, np.ndarray] = {}
        for metric in self.metrics:
            if metric.feature not in features.columns:
                raise DataError(
                    f"scorecard: feature column '{metric.feature}' (metric {metric.name}) is missing from the data"
                )
            out[metric.name] = metric.points_for(_feature_values(features, metric.feature, "scorecard"))
        # Summed metric by metric, element-wise: each customer's total is the same bits in any chunk
        # (a matrix product may block rows differently for different chunk sizes).
        total = np.zeros(len(features))
        for metric in self.metrics:
            total = total + metric.weight * out[metric.name]
        out["total"] = total
        return pd.DataFrame(out, index=features.index)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description (plain lists, floats and strings)."""
        return {
            "format": _SCORECARD_FORMAT,
            "reference_customers": int(self.reference_customers),
            "metrics": [
                {
                    "name": m.name,
                    "feature": m.feature,
                    "weight": float(m.weight),
                    "values": [float(v) for v in m.values],
                    "points": [float(p) for p in m.points],
                }
                for m in self.metrics
            ],
            "dropped": {name: reason for name, reason in self.dropped},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scorecard:
        """The :class:`Scorecard` described by :meth:`to_dict`; ValueError names what is malformed."""
        if not isinstance(data, Mapping) or data.get("format") != _SCORECARD_FORMAT:
            raise ValueError(f"scorecard: expected a mapping with format {_SCORECARD_FORMAT}")
        try:
            metrics = tuple(
                ScorecardMetric(
                    name=str(m["name"]),
                    feature=str(m["feature"]),
                    weight=float(m["weight"]),
                    values=tuple(float(v) for v in m["values"]),
                    points=tuple(float(p) for p in m["points"]),
                )
                for m in data["metrics"]
            )
            dropped = tuple((str(k), str(v)) for k, v in dict(data.get("dropped", {})).items())
            reference = int(data.get("reference_customers", 0))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"scorecard: malformed description ({type(exc).__name__}: {exc})") from None
        return cls(metrics=metrics, dropped=dropped, reference_customers=reference)


def _percentile_knots(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knots (distinct values) and their 0-100 points among ``values`` (no NaN, at least two distinct).

    A value's points are its percentile with tied customers at their average rank, ``100 × (rank - 1) /
    (n - 1)``, except at the two ends: the lowest value earns 0 and the highest 100 however many customers
    share it (customers who bought nothing get no sales points; everyone who paid in full gets the full
    collection points).
    """
    knots, counts = np.unique(values, return_counts=True)
    below = np.cumsum(counts) - counts
    points = 100.0 * (below + (counts - 1) / 2.0) / (values.size - 1)
    points[0], points[-1] = 0.0, 100.0
    if knots.size > _MAX_KNOTS:
        # Keep, around every multiple of POINTS_RESOLUTION, the knots just below and at or above it: two kept
        # knots that are not neighbours then differ by at most POINTS_RESOLUTION points, which bounds the
        # interpolation error, while heavy ties (big jumps in points) keep both of their edges exactly.
        targets = np.linspace(0.0, 100.0, int(round(100 / POINTS_RESOLUTION)) + 1)
        at = np.searchsorted(points, targets, side="left").clip(0, knots.size - 1)
        keep = np.unique(np.concatenate([at, (at - 1).clip(0), [0, knots.size - 1]]))
        knots, points = knots[keep], points[keep]
    return knots, points


def fit_scorecard(features: pd.DataFrame, settings: ScorecardSettings | None = None) -> Scorecard:
    """Fit the scorecard's percentile scale on a reference population of customers.

    For each metric of ``settings.metrics`` the reference customers' values of its feature become knots
    with 0-100 points (:func:`_percentile_knots`: percentile rank, ties at their average rank, the lowest
    value 0 and the highest 100; customers with a missing value are not part of the ranking). Higher is
    better for every metric. A metric that cannot rank the reference customers — its feature column is
    absent (e.g. no payments table), or every value is missing, or all customers share one value — is
    dropped with a logged warning and its weight spread over the kept metrics in proportion to their
    weights, so totals stay on the 0-100 scale of the cut-offs.

    Args:
        features: one row per reference customer (usually every customer scored on the as-of date).
        settings: metrics, weights and cut-offs (``tiers.scorecard`` of ``params.yaml``).

    Returns:
        The fitted :class:`Scorecard`; it holds at most about 2,000 knots per metric, never the data.

    Raises:
        DataError: no metric with a positive weight can be scored, or a feature column is not numeric.
    """
    settings = settings or ScorecardSettings()
    if not isinstance(features, pd.DataFrame):
        raise TypeError(f"features: expected a DataFrame, got {type(features).__name__}")
    kept: list[tuple[str, str, np.ndarray, np.ndarray]] = []
    dropped: list[tuple[str, str]] = []
    for name, feature in settings.metrics.items():
        if feature not in features.columns:
            dropped.append((name, f"feature column '{feature}' is absent"))
            continue
        values = _feature_values(features, feature, "scorecard")
        values = values[~np.isnan(values)]
        if values.size == 0:
            dropped.append((name, f"feature column '{feature}' has no values"))
        elif values.min() == values.max():
            dropped.append((name, f"every customer has the same '{feature}' ({values[0]:.6g})"))
        else:
            kept.append((name, feature, *_percentile_knots(values)))
    weight_kept = sum(settings.weights[name] for name, *_ in kept)
    if not weight_kept > 0:
        reasons = "; ".join(f"{name}: {reason}" for name, reason in dropped) or "every kept metric has weight 0"
        raise DataError(f"scorecard: no metric with a positive weight can rank the customers ({reasons})")
    for name, reason in dropped:
        log.warning(
            "scorecard: metric %s dropped (%s); its weight %.3g is spread over the other metrics",
            name,
            reason,
            settings.weights[name],
        )
    metrics = tuple(
        ScorecardMetric(
            name=name,
            feature=feature,
            weight=settings.weights[name] / weight_kept,
            values=tuple(float(v) for v in knots),
            points=tuple(float(p) for p in points),
        )
        for name, feature, knots, points in kept
    )
    return Scorecard(metrics=metrics, dropped=tuple(dropped), reference_customers=len(features))


def scorecard_points(features: pd.DataFrame, settings: ScorecardSettings | None = None) -> pd.DataFrame:
    """Scorecard points of ``features`` ranked among themselves: ``fit_scorecard(features).points(features)``.

    Use it when the customers passed are the whole population; to score chunks, fit once with
    :func:`fit_scorecard` and call :meth:`Scorecard.points` per chunk.
    """
    return fit_scorecard(features, settings).points(features)


def scorecard_tiers(total_points: pd.Series, settings: ScorecardSettings | None = None) -> pd.Series:
    """Tier A-E of each total: A when ``total >= cutoffs['A']`` (90), B when ``>= cutoffs['B']`` (80), …, else E.

    Boundaries are inclusive as in DESIGN.md (exactly 90 is A, 89.99 is B); a total within 1e-9 below a
    cut-off counts as reaching it, so float rounding in the weighted sum never moves a customer down.
    Returns an ordered categorical (:data:`TIER_DTYPE`) named ``tier`` with the index of ``total_points``.
    Raises ValueError on missing totals or totals outside [0, 100].
    """
    settings = settings or ScorecardSettings()
    total = _numbers(total_points, "total_points")
    if len(total) and not (total.min() >= -_CUTOFF_TOLERANCE and total.max() <= 100 + _CUTOFF_TOLERANCE):
        raise ValueError(f"total_points: points must lie in [0, 100], got {total.min():.6g} to {total.max():.6g}")
    values = total.to_numpy()
    codes = np.full(len(values), len(TIERS) - 1, dtype=np.int8)
    # From D up to A, so the best tier whose cut-off is reached wins.
    for code in range(len(TIERS) - 2, -1, -1):
        codes[values >= settings.cutoffs[TIERS[code]] - _CUTOFF_TOLERANCE] = code
    return pd.Series(pd.Categorical.from_codes(codes, dtype=TIER_DTYPE), index=total.index, name="tier")


# --- value pyramid ------------------------------------------------------------------------------------


def _pyramid_shares(shares: Mapping[str, float]) -> list[float]:
    """Cumulative shares of A, A+B, A+B+C, A+B+C+D, checked."""
    if set(shares) != set(TIERS[:-1]):
        raise ValueError(f"shares: expected the customer shares of A, B, C and D (E is the rest), got {sorted(shares)}")
    for tier in TIERS[:-1]:
        share = shares[tier]
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
            raise ValueError(f"shares: share of {tier} must be a number in [0, 1], got {share!r}")
    cumulative = list(np.cumsum([float(shares[t]) for t in TIERS[:-1]]))
    if cumulative[-1] > 1 + 1e-9:
        raise ValueError(f"shares: shares of A-D must add up to at most 1, got {cumulative[-1]:.6g}")
    return cumulative


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value, so thresholds serialise to JSON."""
    return value.item() if isinstance(value, np.generic) else value


def fit_pyramid(clv: pd.Series, shares: Mapping[str, float]) -> dict[str, dict[str, Any] | None]:
    """Boundaries of the value pyramid: for each tier A-D, the last customer inside it, by rank.

    Customers are ranked by CLV descending, ties by customer id ascending (the index of ``clv``). Tiers
    take cumulative counts ``ceil(n × (share_A + … + share_k))`` (the rule of
    :func:`crmscore.evaluation.top_share_count`; 1,000 customers give exactly 10 / 40 / 150 / 300 / 500).

    Returns:
        ``{"A": {"clv": 1520.3, "customer_id": 17}, "B": …, "C": …, "D": …}``: the CLV and id of the
        lowest-ranked customer in that tier or above; ``None`` when no customer is (an empty top). A
        customer belongs to the best tier whose boundary it ranks at or above
        (:func:`pyramid_tiers_from_thresholds`), which reproduces :func:`pyramid_tiers` exactly on the
        reference customers and places any other customer consistently. JSON-serialisable when ids are
        numbers or strings.

    Raises:
        ValueError: negative, missing or non-numeric CLV, duplicate ids, or bad shares.
    """
    cumulative = _pyramid_shares(shares)
    values = _amounts(clv, "clv")
    n = len(values)
    order = _pyramid_order(values)
    thresholds: dict[str, dict[str, Any] | None] = {}
    for tier, share in zip(TIERS[:-1], cumulative, strict=True):
        count = min(n, math.ceil(round(share * n, 9)))
        if count == 0:
            thresholds[tier] = None
        else:
            last = order[count - 1]
            thresholds[tier] = {"clv": float(values.iat[last]), "customer_id": _plain(values.index[last])}
    return thresholds


def _pyramid_order(values: pd.Series) -> np.ndarray:
    """Positions of customers from the highest CLV down, equal CLV by ascending customer id."""
    by_id = np.argsort(values.index.to_numpy(), kind="stable")
    return by_id[np.argsort(-values.to_numpy()[by_id], kind="stable")]


def pyramid_tiers_from_thresholds(clv: pd.Series, thresholds: Mapping[str, Mapping[str, Any] | None]) -> pd.Series:
    """Tier A-E of each customer against boundaries fitted by :func:`fit_pyramid` (any subset of customers).

    A customer is in the best tier k whose boundary ``(clv_k, id_k)`` it ranks at or above: a CLV above
    ``clv_k``, or equal to it with an id at most ``id_k``; below every boundary it is E. Each customer's tier
    depends only on its own CLV and id, so chunks give the tiers of the whole. Returns an ordered
    categorical named ``tier`` with the index of ``clv``.
    """
    if set(thresholds) != set(TIERS[:-1]):
        raise ValueError(f"thresholds: expected boundaries of A, B, C and D, got {sorted(thresholds)}")
    values = _amounts(clv, "clv")
    v = values.to_numpy()
    ids = values.index
    codes = np.full(len(v), len(TIERS) - 1, dtype=np.int8)
    placed = np.zeros(len(v), dtype=bool)
    for code, tier in enumerate(TIERS[:-1]):
        boundary = thresholds[tier]
        if boundary is None:
            continue
        if not isinstance(boundary, Mapping) or set(boundary) != {"clv", "customer_id"}:
            raise ValueError(f"thresholds: boundary of {tier} must be None or {{'clv': …, 'customer_id': …}}")
        b_clv, b_id = float(boundary["clv"]), boundary["customer_id"]
        try:
            at_or_above = (v > b_clv) | ((v == b_clv) & np.asarray(ids <= b_id, dtype=bool))
        except TypeError:
            raise ValueError(
                f"thresholds: customer id {b_id!r} of {tier} cannot be compared with the ids of clv"
            ) from None
        codes[at_or_above & ~placed] = code
        placed |= at_or_above
    return pd.Series(pd.Categorical.from_codes(codes, dtype=TIER_DTYPE), index=values.index, name="tier")


def pyramid_tiers(clv: pd.Series, shares: Mapping[str, float]) -> pd.Series:
    """Value-pyramid tiers of customers ranked among themselves by CLV (top 1 % A, next 4 % B, …, rest E).

    ``clv`` is indexed by customer id; ties in CLV are broken by ascending id, so the result never depends
    on row order. Equals ``pyramid_tiers_from_thresholds(clv, fit_pyramid(clv, shares))``; use that pair to
    score chunks against the whole population.
    """
    return pyramid_tiers_from_thresholds(clv, fit_pyramid(clv, shares))


# --- risk, lifecycle, value at risk, action ---------------------------------------------------------------


def _risk_thresholds(thresholds: Mapping[str, float]) -> tuple[float, float]:
    if set(thresholds) != {"medium", "high"}:
        raise ValueError(f"thresholds: expected 'medium' and 'high', got {sorted(thresholds)}")
    medium, high = thresholds["medium"], thresholds["high"]
    if not (isinstance(medium, int | float) and isinstance(high, int | float) and 0 < float(medium) < float(high) < 1):
        raise ValueError(f"thresholds: must be 0 < medium < high < 1, got medium={medium!r}, high={high!r}")
    return float(medium), float(high)


def risk_band(p_churn: pd.Series, thresholds: Mapping[str, float]) -> pd.Series:
    """Churn risk band of each probability: low below ``medium``, medium from ``medium`` up to ``high``, else high.

    ``low: p < medium``, ``medium: medium <= p < high``, ``high: high <= p`` (settings
    ``tiers.risk_thresholds``). Returns an ordered categorical (:data:`RISK_BAND_DTYPE`) named
    ``risk_band`` with the index of ``p_churn``. Raises ValueError on probabilities outside [0, 1] or
    missing ones.
    """
    medium, high = _risk_thresholds(thresholds)
    p = _probabilities(p_churn)
    values = p.to_numpy()
    codes = np.where(values >= high, 2, np.where(values >= medium, 1, 0)).astype(np.int8)
    return pd.Series(pd.Categorical.from_codes(codes, dtype=RISK_BAND_DTYPE), index=p.index, name="risk_band")


def lifecycle_stage(features: pd.DataFrame, settings: TierSettings | None = None) -> pd.Series:
    """Lifecycle stage of each customer from ``tenure_days`` and ``recency_days``, first rule that holds:

    1. **new**: ``tenure_days < new_days``, whatever the purchases (a newcomer is new, bought or not);
    2. **active**: ``recency_days <= active_days``;
    3. **dormant**: ``recency_days <= dormant_days``;
    4. **lapsed**: otherwise.

    A customer past ``new_days`` who never bought (``recency_days`` missing) counts from the sign-up
    instead: dormant while ``tenure_days <= dormant_days``, lapsed after — never active, since signing up
    is not buying. Data without purchases at all (no ``recency_days`` column, e.g. subscription data)
    has no purchase rhythm to lose: every customer past ``new_days`` is active (holding the subscription
    is the activity), logged once at info level.

    Returns an ordered categorical (:data:`LIFECYCLE_DTYPE`) named ``lifecycle_stage`` indexed like
    ``features``. Raises DataError when ``tenure_days`` is absent or missing for some customer.
    """
    settings = settings or TierSettings()
    if "tenure_days" not in features.columns and "recency_days" not in features.columns:
        # A snapshot without signup dates or purchases: nothing tells how long anyone has been a customer.
        log.info("lifecycle_stage: no tenure_days and no recency_days; the stage is left empty")
        return pd.Series(
            pd.Categorical.from_codes(np.full(len(features), -1, np.int8), dtype=LIFECYCLE_DTYPE),
            index=features.index,
            name="lifecycle_stage",
        )
    if "tenure_days" in features.columns:
        tenure = _feature_values(features, "tenure_days", "lifecycle_stage")
        if np.isnan(tenure).any():
            raise DataError(f"lifecycle_stage: column 'tenure_days' has {int(np.isnan(tenure).sum())} missing value(s)")
    else:  # no signup dates: nobody is known to be new; the stage follows the purchases
        tenure = np.full(len(features), np.inf)
    if "recency_days" in features.columns:
        recency = _feature_values(features, "recency_days", "lifecycle_stage")
        never_bought = np.isnan(recency)
        active = ~never_bought & (recency <= settings.active_days)
        dormant = np.where(never_bought, tenure, recency) <= settings.dormant_days
    else:
        log.info("lifecycle_stage: no recency_days (no purchase data); customers past new_days are active")
        active = np.ones(len(tenure), dtype=bool)
        dormant = np.zeros(len(tenure), dtype=bool)
    codes = np.select([tenure < settings.new_days, active, dormant], [0, 1, 2], default=3).astype(np.int8)
    return pd.Series(
        pd.Categorical.from_codes(codes, dtype=LIFECYCLE_DTYPE), index=features.index, name="lifecycle_stage"
    )


def value_at_risk(clv: pd.Series, p_churn: pd.Series) -> pd.Series:
    """Expected value lost to churn, ``clv × p_churn``, per customer (named ``value_at_risk``).

    Series are matched by customer id (the result follows ``clv``'s order); arrays by position. Raises
    ValueError on negative or missing CLV, probabilities outside [0, 1], or different customers.
    """
    value = _amounts(clv, "clv")
    p = _probabilities(p_churn)
    if isinstance(clv, pd.Series) and isinstance(p_churn, pd.Series):
        _aligned(value.index, "value_at_risk", p.rename("p_churn"))
        p = p.reindex(value.index)
    elif len(p) != len(value):
        raise ValueError(f"value_at_risk: p_churn has {len(p)} values for {len(value)} customers in clv")
    return pd.Series(value.to_numpy() * p.to_numpy(), index=value.index, name="value_at_risk")


def recommended_action(tier: pd.Series, band: pd.Series, actions: Mapping[str, Mapping[str, str]]) -> pd.Series:
    """The action of each customer from the tier × risk-band matrix (``tiers.actions`` of the settings).

    Series are matched by customer id (the result follows ``tier``'s order), arrays by position. Returns
    a categorical named ``action`` whose categories are the matrix's actions in matrix order, the same
    for every chunk. Raises ValueError when a tier or band is unknown, missing, or has no action.
    """
    tier_labels = [str(t) for t in actions]
    for t in tier_labels:
        missing = [b for b in RISK_BANDS if b not in actions[t]]
        if missing:
            raise ValueError(f"actions: tier {t!r} has no action for risk band {missing[0]!r}")
    tiers = _labels(tier, "tier", tier_labels)
    bands = _labels(band, "risk_band", RISK_BANDS)
    if isinstance(tier, pd.Series) and isinstance(band, pd.Series):
        _aligned(tiers.index, "recommended_action", bands.rename("risk_band"))
        bands = bands.reindex(tiers.index)
    elif len(bands) != len(tiers):
        raise ValueError(f"recommended_action: risk_band has {len(bands)} values for {len(tiers)} tiers")
    matrix = np.array([[str(actions[t][b]) for b in RISK_BANDS] for t in tier_labels], dtype=object)
    categories = list(dict.fromkeys(matrix.ravel()))
    row = pd.Index(tier_labels).get_indexer(tiers.to_numpy())
    col = pd.Index(RISK_BANDS).get_indexer(bands.to_numpy())
    chosen = matrix[row, col] if len(row) else np.empty(0, dtype=object)
    return pd.Series(pd.Categorical(chosen, categories=categories), index=tiers.index, name="action")


# --- everything for one table of customers ------------------------------------------------------------------


def _per_customer(values: Any, index: pd.Index, name: str) -> pd.Series:
    """``values`` in the order of ``index``: a Series by customer id (same customers), an array by position."""
    if isinstance(values, pd.Series):
        series = _as_series(values, name)
        if len(series) != len(index) or not series.index.isin(index).all():
            raise ValueError(f"assign: {name} must hold exactly the customers of features ({len(index)})")
        return series.reindex(index)
    array = np.asarray(values)
    if array.shape != (len(index),):
        raise ValueError(f"assign: {name} has shape {array.shape}, expected ({len(index)},) like features")
    return pd.Series(array, index=index)


def assign(
    features: pd.DataFrame,
    clv: pd.Series,
    p_churn: pd.Series,
    settings: TierSettings | None = None,
    scorecard: Scorecard | None = None,
    pyramid: Mapping[str, Mapping[str, Any] | None] | None = None,
) -> pd.DataFrame:
    """Tier, risk band, lifecycle stage, value at risk and action of every customer of ``features``.

    Args:
        features: one row per customer (index: customer id), with the scorecard features and
            ``tenure_days`` (and ``recency_days`` where there are purchases).
        clv: predicted CLV per customer (Series by customer id, or an array in the order of ``features``).
        p_churn: calibrated churn probability per customer, likewise.
        settings: the ``tiers`` section (method, scorecard, pyramid shares, thresholds, stages, actions).
        scorecard: a fitted :class:`Scorecard`; ``None`` fits one on ``features`` itself.
        pyramid: boundaries from :func:`fit_pyramid`; ``None`` fits them on ``clv`` itself.
            Scoring in chunks must pass both, fitted on every customer: otherwise each chunk is ranked
            only against itself.

    Returns:
        DataFrame indexed like ``features`` with ``points`` (scorecard total, also under the pyramid
        method; NaN only when no scorecard metric can be scored there), ``tier`` (by ``settings.method``),
        ``risk_band``, ``lifecycle_stage``, ``value_at_risk`` and ``action``.
    """
    settings = settings or TierSettings()
    if not isinstance(features, pd.DataFrame):
        raise TypeError(f"features: expected a DataFrame, got {type(features).__name__}")
    index = features.index
    if not index.is_unique:
        raise ValueError(f"assign: customer ids must be unique, {index[index.duplicated()][0]!r} appears twice")
    clv_s = _amounts(_per_customer(clv, index, "clv"), "clv")
    p_s = _probabilities(_per_customer(p_churn, index, "p_churn"))
    if scorecard is None:
        try:
            scorecard = fit_scorecard(features, settings.scorecard)
        except DataError:
            if settings.method == "scorecard":
                raise
            log.info("assign: no scorecard metric can be scored; points are left empty (method pyramid)")
    method = settings.method
    if method == "auto":  # the scorecard when it can rank the customers, else the value pyramid
        method = "scorecard" if scorecard is not None else "pyramid"
    if method == "pyramid" and pyramid is None:
        pyramid = fit_pyramid(clv_s, settings.pyramid_shares)
    points, tier = TierScale(method, scorecard, pyramid).tiers(features, clv_s, settings)
    band = risk_band(p_s, settings.risk_thresholds)
    columns = {
        "points": points,
        "tier": tier,
        "risk_band": band,
        "lifecycle_stage": lifecycle_stage(features, settings),
        "value_at_risk": value_at_risk(clv_s, p_s),
        "action": recommended_action(tier, band, settings.actions),
    }
    # Every column is indexed like features; .array keeps the categoricals' fixed categories.
    return pd.DataFrame({name: series.array for name, series in columns.items()}, index=index)


@dataclass
class TierScale:
    """The tier scale of one scoring: the method used and what it was fitted to (all customers at once)."""

    method: str  # scorecard | pyramid | none (``auto`` resolved; none: nothing ranks the customers)
    scorecard: Scorecard | None
    pyramid: dict[str, dict[str, Any] | None] | None
    note: str = ""  # why there are no tiers (method none)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "scorecard": None if self.scorecard is None else self.scorecard.to_dict(),
            "pyramid": self.pyramid,
            **({"note": self.note} if self.note else {}),
        }

    def tiers(self, features: pd.DataFrame, clv: pd.Series, settings: TierSettings) -> tuple[pd.Series, pd.Series]:
        """Scorecard points (NaN without a scorecard) and tier (None under method none) of each customer."""
        index = features.index
        points = (
            self.scorecard.points(features)["total"]
            if self.scorecard is not None
            else pd.Series(np.nan, index=index, dtype=float)
        )
        if self.method == "scorecard":
            tier = scorecard_tiers(points, settings.scorecard)
        elif self.method == "pyramid":
            tier = pyramid_tiers_from_thresholds(clv, self.pyramid)
        else:
            tier = pd.Series(pd.Categorical([None] * len(index), dtype=TIER_DTYPE), index=index, name="tier")
        return points, tier


_MAP_HINT = (
    "map numeric attributes in tiers.scorecard.metrics (e.g. sales: Balance) with their weights, or give the "
    "customers a monthly_revenue column (or transactions) so that a CLV model ranks them (tiers.method: pyramid)"
)


def fit_tier_scale(features: pd.DataFrame, clv: pd.Series | None, settings: TierSettings | None = None) -> TierScale:
    """Fit the tier scale on every scored customer: ``tiers.method`` resolved against what the data has.

    ``scorecard`` needs at least one scorecard metric that ranks the customers; ``pyramid`` needs CLV
    (``clv``: a Series by customer id, None when no CLV model was scored) and fits the scorecard only
    where it can (points are then informative); ``auto`` takes the scorecard when it can rank the
    customers, else the pyramid when there is CLV, else gives no tiers (method ``none``, with a note
    saying what to map). ``scorecard`` or ``pyramid`` chosen where it cannot apply raises
    :class:`DataError` with one line saying what to map.
    """
    settings = settings or TierSettings()
    try:
        scorecard: Scorecard | None = fit_scorecard(features, settings.scorecard)
        problem = ""
    except DataError as exc:
        scorecard, problem = None, str(exc)
    has_clv = clv is not None and bool(np.isfinite(np.asarray(clv, dtype=float)).any())
    method = settings.method
    if method == "auto":
        method = "scorecard" if scorecard is not None else "pyramid" if has_clv else "none"
        if method == "none":
            note = f"no tiers: no scorecard metric can rank these customers and there is no CLV; {_MAP_HINT}"
            log.warning("%s", note)
            return TierScale(method="none", scorecard=None, pyramid=None, note=note)
    if method == "scorecard" and scorecard is None:
        raise DataError(f"tiers.method scorecard: {problem}; {_MAP_HINT}")
    if method == "pyramid" and not has_clv:
        raise DataError("tiers.method pyramid ranks customers by CLV, and no CLV model was scored; " + _MAP_HINT)
    pyramid = fit_pyramid(clv.astype(float), settings.pyramid_shares) if has_clv else None
    return TierScale(method=method, scorecard=scorecard, pyramid=pyramid)


# --- reports -------------------------------------------------------------------------------------------


def tier_migration(previous: pd.Series, current: pd.Series) -> pd.DataFrame:
    """Counts of customers moving from each tier of an earlier scoring to each tier of the current one.

    Both Series are indexed by customer id with tiers A-E. Rows are the previous tier A-E plus ``new``
    (customers absent before), columns the current tier A-E plus ``gone`` (customers absent now); every row
    and column is present, in that order, so two reports always line up. The diagonal counts customers who
    kept their tier; the ``new``/``gone`` cell is always 0. Raises ValueError on unknown or missing tiers
    or duplicate ids.
    """
    prev = _labels(previous, "previous", TIERS)
    curr = _labels(current, "current", TIERS)
    rows, cols = [*TIERS, "new"], [*TIERS, "gone"]
    ids = prev.index.union(curr.index, sort=False)
    row = pd.Index(rows).get_indexer(prev.reindex(ids).fillna("new").to_numpy())
    col = pd.Index(cols).get_indexer(curr.reindex(ids).fillna("gone").to_numpy())
    counts = np.bincount(row * len(cols) + col, minlength=len(rows) * len(cols)).reshape(len(rows), len(cols))
    return pd.DataFrame(
        counts.astype(np.int64), index=pd.Index(rows, name="previous"), columns=pd.Index(cols, name="current")
    )


def _report_inputs(tiers: pd.Series, *others: tuple[Any, str]) -> tuple[pd.Series, list[pd.Series]]:
    labels = _labels(tiers, "tiers", TIERS)
    out = []
    for values, name in others:
        series = _labels(values, name, RISK_BANDS) if name == "bands" else _amounts(values, name)
        if isinstance(tiers, pd.Series) and isinstance(values, pd.Series):
            _aligned(labels.index, "tier report", series.rename(name))
            series = series.reindex(labels.index)
        elif len(series) != len(labels):
            raise ValueError(f"tier report: {name} has {len(series)} values for {len(labels)} tiers")
        out.append(series)
    return labels, out


def _share(part: np.ndarray, total: float) -> np.ndarray:
    return part / total if total > 0 else np.full(len(part), np.nan)


def tier_summary(tiers: pd.Series, clv: pd.Series, value_at_risk: pd.Series, band: pd.Series) -> pd.DataFrame:
    """One row per tier A-E: its customers and value, and how much of that value is at risk.

    Columns: ``customers``, ``customer_share`` (of all customers), ``clv`` (total CLV), ``clv_share`` (of
    all CLV; NaN when the total is 0), ``value_at_risk`` (total), ``high_risk_customers`` (in risk band
    high). Every tier has a row, empty ones with zeros, so the count and amount columns add up to the
    totals over all customers and the shares to 1. Inputs are matched by customer id (Series) or position.
    """
    labels, (value, at_risk, bands) = _report_inputs(
        tiers, (clv, "clv"), (value_at_risk, "value_at_risk"), (band, "bands")
    )
    code = pd.Index(TIERS).get_indexer(labels.to_numpy())
    k = len(TIERS)
    customers = np.bincount(code, minlength=k)
    total_clv = np.bincount(code, weights=value.to_numpy(), minlength=k)
    return pd.DataFrame(
        {
            "customers": customers.astype(np.int64),
            "customer_share": _share(customers.astype(float), float(len(labels))),
            "clv": total_clv,
            "clv_share": _share(total_clv, float(value.sum())),
            "value_at_risk": np.bincount(code, weights=at_risk.to_numpy(), minlength=k),
            "high_risk_customers": np.bincount(code[bands.to_numpy() == "high"], minlength=k).astype(np.int64),
        },
        index=pd.Index(TIERS, name="tier"),
    )


def tier_risk_matrix(tiers: pd.Series, bands: pd.Series, clv: pd.Series, var: pd.Series) -> pd.DataFrame:
    """Tier × risk band matrix of customers, CLV and value at risk (``var``).

    Rows are tiers A-E, columns a two-level index ``(measure, risk band)`` with measures ``customers``,
    ``clv`` and ``value_at_risk`` and bands low / medium / high, all present; ``matrix["customers"]`` is
    the 5 × 3 count matrix. Inputs are matched by customer id (Series) or position.
    """
    labels, (band_labels, value, at_risk) = _report_inputs(
        tiers, (bands, "bands"), (clv, "clv"), (var, "value_at_risk")
    )
    k, b = len(TIERS), len(RISK_BANDS)
    row = pd.Index(TIERS).get_indexer(labels.to_numpy())
    cell = row * b + pd.Index(RISK_BANDS).get_indexer(band_labels.to_numpy())
    measures = {
        "customers": np.bincount(cell, minlength=k * b).astype(np.int64).reshape(k, b),
        "clv": np.bincount(cell, weights=value.to_numpy(), minlength=k * b).reshape(k, b),
        "value_at_risk": np.bincount(cell, weights=at_risk.to_numpy(), minlength=k * b).reshape(k, b),
    }
    columns = pd.MultiIndex.from_product([list(measures), RISK_BANDS], names=["measure", "risk_band"])
    data = {(m, band): matrix[:, j] for m, matrix in measures.items() for j, band in enumerate(RISK_BANDS)}
    return pd.DataFrame(data, index=pd.Index(TIERS, name="tier"), columns=columns)
