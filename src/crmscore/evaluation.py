"""Metrics shared by model training, model selection and the review report.

Every function is pure: arrays in, numbers or small DataFrames out. The module is organised in
sections by the kind of model being judged:

* **classification** (churn): ``y_true`` holds 0/1 outcomes (1 = churned) and ``p`` the predicted
  probability of churn. Inputs are checked once at the boundary by :func:`validate_binary_predictions`,
  which raises :class:`ValueError` with a one-line message. Ranking (:func:`roc_auc`, :func:`pr_auc`),
  probability quality (:func:`log_loss`, :func:`brier`, :func:`expected_calibration_error`) and the
  campaign view (:func:`lift_at`, :func:`capture_at`, :func:`gains_table`) all share the same
  validation, binning and top-share rules, so the numbers in a training run, a gains table and a
  plot always agree.
* **regression (CLV)**: ``y_true`` holds what each customer actually spent over the horizon and
  ``y_pred`` the predicted CLV for the same horizon, both >= 0, checked by
  :func:`validate_value_predictions`. The ranking and level metrics follow Google's ``lifetime_value``
  (``lifetime_value/metrics.py``): :func:`normalized_gini` from the value gains curve
  (:func:`cumulative_value_curve`), :func:`decile_table` and :func:`decile_mape` from equal-count bins of
  the prediction; next to them :func:`spearman`, :func:`mae`, :func:`aggregate_bias` and
  :func:`top_decile_capture`, all collected by :func:`value_metrics`. One rule for ties runs through
  the section: customers with the same prediction share their mean actual value, so no number depends
  on the order of the input rows. :func:`lorenz_curve` and :func:`top_share_of_value` describe how
  concentrated value is, with no model involved.

:data:`LOWER_IS_BETTER` names the logged metrics where a smaller value wins, for anything that ranks
models by a metric chosen in the settings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats
from sklearn import metrics as sk_metrics

__all__ = [
    "validate_binary_predictions",
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "calibration_table",
    "expected_calibration_error",
    "top_share_count",
    "cumulative_gains_curve",
    "lift_at",
    "capture_at",
    "gains_table",
    "classification_metrics",
    "CLASSIFICATION_METRIC_KEYS",
    "validate_value_predictions",
    "cumulative_value_curve",
    "normalized_gini",
    "spearman",
    "decile_table",
    "decile_mape",
    "mae",
    "aggregate_bias",
    "top_decile_capture",
    "value_metrics",
    "VALUE_METRIC_KEYS",
    "lorenz_curve",
    "top_share_of_value",
    "LOWER_IS_BETTER",
]

ArrayLike = Sequence[float] | np.ndarray | pd.Series
BinStrategy = Literal["uniform", "quantile"]

# Keys of classification_metrics(), in the order they are returned (and logged).
CLASSIFICATION_METRIC_KEYS: tuple[str, ...] = (
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "ece",
    "lift_10",
    "capture_10",
    "lift_20",
    "capture_20",
    "base_rate",
    "n",
)

# Keys of value_metrics(), in the order they are returned (and logged).
VALUE_METRIC_KEYS: tuple[str, ...] = (
    "gini",
    "spearman",
    "decile_mape",
    "mae",
    "bias",
    "top_decile_capture",
    "mean_actual",
    "mean_predicted",
    "n",
)

# Logged metrics where a smaller value is better; every other ranking metric is better when larger.
# "bias" is in neither camp (0 is best, its sign says which way the model errs), so it must not be used
# to rank models at all.
LOWER_IS_BETTER: frozenset[str] = frozenset({"mae", "decile_mape", "log_loss", "brier", "ece"})

# log(0) is -inf: a single confident mistake would make the log loss infinite and useless for comparing
# models, so probabilities are kept this far away from 0 and 1 (the value sklearn used to apply itself).
_LOG_LOSS_CLIP = 1e-15


# ---------------------------------------------------------------------------------------------------
# classification
# ---------------------------------------------------------------------------------------------------


def validate_binary_predictions(y_true: ArrayLike, p: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Check churn outcomes and predicted probabilities and return them as clean 1-D numpy arrays.

    ``y_true`` must hold only 0 and 1 (bools and floats such as 0.0/1.0 are accepted) and ``p`` finite
    probabilities in [0, 1], both one-dimensional, non-empty and of the same length. Returns
    ``(y, p)`` as ``int64`` and ``float64`` arrays. Every metric and plot calls this first, so a bad
    input fails with the same one-line :class:`ValueError` wherever it enters; a common slip, passing the
    two-column output of ``predict_proba``, is named in the message.
    """
    y_arr = np.asarray(y_true)
    p_arr = np.asarray(p)
    if y_arr.ndim == 1 and p_arr.ndim == 2 and p_arr.shape[1] == 2:
        raise ValueError(
            f"p must be the 1-D probability of the positive class, got shape {p_arr.shape}; pass predict_proba(X)[:, 1]"
        )
    if y_arr.ndim != 1 or p_arr.ndim != 1:
        raise ValueError(f"y_true and p must be 1-D, got shapes {y_arr.shape} and {p_arr.shape}")
    if len(y_arr) != len(p_arr):
        raise ValueError(f"y_true and p must have the same length, got {len(y_arr)} and {len(p_arr)}")
    if len(y_arr) == 0:
        raise ValueError("y_true and p are empty; metrics need at least one customer")

    try:
        p_float = p_arr.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"p must be numeric probabilities, got dtype {p_arr.dtype}") from None
    non_finite = int((~np.isfinite(p_float)).sum())
    if non_finite:
        raise ValueError(f"p must be finite, found {non_finite} NaN or infinite value(s)")
    if p_float.min() < 0.0 or p_float.max() > 1.0:
        raise ValueError(f"p must lie in [0, 1], found values from {p_float.min():.6g} to {p_float.max():.6g}")

    # Strings such as "0"/"1" would convert to float silently; outcomes must already be numbers.
    if y_arr.dtype.kind not in "biuf" and y_arr.dtype != object:
        raise ValueError(f"y_true must be binary (0/1), got dtype {y_arr.dtype}")
    try:
        y_float = y_arr.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError("y_true must be binary (0/1), found missing or non-numeric values") from None
    not_binary = ~np.isin(y_float, (0.0, 1.0))
    if not_binary.any():
        examples = ", ".join(str(v) for v in pd.unique(y_arr[not_binary])[:3])
        count = int(not_binary.sum())
        raise ValueError(f"y_true must be binary (0/1), found {count} other value(s) such as {examples}")
    return y_float.astype(np.int64), p_float


def _require_both_classes(y: np.ndarray, metric: str) -> None:
    """Raise when ``y`` holds a single class, for metrics that compare churners with non-churners."""
    positives = int(y.sum())
    if positives == 0 or positives == len(y):
        only = 1 if positives else 0
        raise ValueError(f"{metric} needs both classes in y_true, got only class {only} in {len(y)} customer(s)")


def _require_positives(y: np.ndarray, metric: str) -> None:
    """Raise when ``y`` holds no churner, for metrics divided by the number or rate of churners."""
    if int(y.sum()) == 0:
        raise ValueError(f"{metric} needs at least one positive (churner) in y_true, got none in {len(y)}")


def roc_auc(y_true: ArrayLike, p: ArrayLike) -> float:
    """Area under the ROC curve: the chance that a random churner gets a higher ``p`` than a random non-churner.

    Measures ranking only (any monotone transform of ``p`` gives the same value); 0.5 is random, 1.0 a
    perfect ranking. Computed by :func:`sklearn.metrics.roc_auc_score`; raises :class:`ValueError` when
    ``y_true`` holds only one class, where the area is undefined.
    """
    y, p_arr = validate_binary_predictions(y_true, p)
    return _roc_auc(y, p_arr)


def _roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    _require_both_classes(y, "roc_auc")
    return float(sk_metrics.roc_auc_score(y, p))


def pr_auc(y_true: ArrayLike, p: ArrayLike) -> float:
    """Area under the precision-recall curve, as average precision (step-wise, no interpolation).

    More informative than ROC AUC when churners are rare: a random model scores the base rate, not 0.5.
    Computed by :func:`sklearn.metrics.average_precision_score`; raises :class:`ValueError` when
    ``y_true`` holds only one class.
    """
    y, p_arr = validate_binary_predictions(y_true, p)
    return _pr_auc(y, p_arr)


def _pr_auc(y: np.ndarray, p: np.ndarray) -> float:
    _require_both_classes(y, "pr_auc")
    return float(sk_metrics.average_precision_score(y, p))


def log_loss(y_true: ArrayLike, p: ArrayLike) -> float:
    """Mean negative log-likelihood of the outcomes under ``p`` (natural log, lower is better).

    ``p`` is clipped to [1e-15, 1 - 1e-15] first so one confident mistake costs about 34.5 instead of
    infinity. Computed by :func:`sklearn.metrics.log_loss`; defined (and returned) even when only one
    class is present.
    """
    y, p_arr = validate_binary_predictions(y_true, p)
    return _log_loss(y, p_arr)


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    clipped = np.clip(p, _LOG_LOSS_CLIP, 1.0 - _LOG_LOSS_CLIP)
    # labels= keeps a single-class sample (a quiet validation fold) from being rejected by sklearn.
    return float(sk_metrics.log_loss(y, clipped, labels=[0, 1]))


def brier(y_true: ArrayLike, p: ArrayLike) -> float:
    """Brier score: the mean squared difference between ``p`` and the 0/1 outcome (lower is better).

    Rewards both ranking and calibration; a constant prediction of the base rate ``r`` scores
    ``r * (1 - r)``. Computed by :func:`sklearn.metrics.brier_score_loss`; defined even when only one
    class is present.
    """
    y, p_arr = validate_binary_predictions(y_true, p)
    return _brier(y, p_arr)


def _brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(sk_metrics.brier_score_loss(y, p, labels=[0, 1]))


def _check_n_bins(n_bins: int) -> None:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")


def _calibration_bins(p: np.ndarray, n_bins: int, strategy: str) -> np.ndarray:
    """0-based calibration bin of each probability (see :func:`calibration_table` for the rules)."""
    if strategy == "uniform":
        # floor(p * n_bins) puts p in [k/n, (k+1)/n); p == 1 would open a bin of its own, so it joins
        # the last one, which is therefore closed on the right.
        return np.minimum(np.floor(p * n_bins).astype(np.int64), n_bins - 1)
    if strategy == "quantile":
        interior_edges = np.quantile(p, np.linspace(0.0, 1.0, n_bins + 1)[1:-1])
        # side="left" makes bins closed on the right, (q_{k-1}, q_k], matching "a share k/n of p is at or
        # below q_k"; tied probabilities therefore never straddle two bins, and repeated edges simply
        # leave bins empty (dropped by the caller).
        return np.searchsorted(interior_edges, p, side="left").astype(np.int64)
    raise ValueError(f'strategy must be "uniform" or "quantile", got {strategy!r}')


def calibration_table(
    y_true: ArrayLike, p: ArrayLike, n_bins: int = 10, strategy: BinStrategy = "uniform"
) -> pd.DataFrame:
    """Reliability table: predicted against observed churn rate in bins of ``p``.

    With ``strategy="uniform"`` (the default) bin ``k`` (1-based) holds ``p`` in
    ``[(k-1)/n_bins, k/n_bins)``, the last bin closed at 1; with ``"quantile"`` the edges are quantiles
    of ``p`` and bins are closed on the right, giving bins of about equal size with tied probabilities
    kept together. Returns one row per non-empty bin, in order of ``p``, with columns ``bin`` (the bin
    number, so gaps show empty bins), ``customers``, ``mean_p`` (average predicted probability) and
    ``observed_rate`` (share that churned). This is the one binning behind both
    :func:`expected_calibration_error` and the calibration plot.
    """
    y, p_arr = validate_binary_predictions(y_true, p)
    return _calibration_table(y, p_arr, n_bins, strategy)


def _calibration_table(y: np.ndarray, p: np.ndarray, n_bins: int, strategy: str) -> pd.DataFrame:
    _check_n_bins(n_bins)
    bins = _calibration_bins(p, n_bins, strategy)
    customers = np.bincount(bins, minlength=n_bins)
    sum_p = np.bincount(bins, weights=p, minlength=n_bins)
    positives = np.bincount(bins, weights=y, minlength=n_bins)
    filled = customers > 0
    return pd.DataFrame(
        {
            "bin": np.arange(1, n_bins + 1)[filled],
            "customers": customers[filled].astype(np.int64),
            "mean_p": sum_p[filled] / customers[filled],
            "observed_rate": positives[filled] / customers[filled],
        }
    )


def expected_calibration_error(
    y_true: ArrayLike, p: ArrayLike, n_bins: int = 10, strategy: BinStrategy = "uniform"
) -> float:
    """Expected calibration error: the customer-weighted mean gap between predicted and observed churn rate.

    ECE = sum over bins of ``(n_b / n) * |observed_rate_b - mean_p_b|``, using the bins of
    :func:`calibration_table`. The default ``"uniform"`` (ten equal-width bins on [0, 1]) is the standard
    definition (Naeini et al. 2015, Guo et al. 2017), so values compare across models, datasets and
    papers; ``"quantile"`` (equal-count bins) resolves more detail when most probabilities sit in one
    corner, as they do when churn is rare, but its bins move with the model, so use it to diagnose
    rather than to compare. 0 is perfect; a model off by 0.1 everywhere scores 0.1.
    """
    y, p_arr = validate_binary_predictions(y_true, p)
    return _expected_calibration_error(y, p_arr, n_bins, strategy)


def _expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int, strategy: str) -> float:
    table = _calibration_table(y, p, n_bins, strategy)
    weights = table["customers"].to_numpy() / len(y)
    gaps = np.abs(table["observed_rate"].to_numpy() - table["mean_p"].to_numpy())
    return float(np.sum(weights * gaps))


def top_share_count(n_customers: int, share: float) -> int:
    """How many of ``n_customers`` make up the top ``share`` (0 < share <= 1): ``ceil(share * n)``, at least 1.

    The product is rounded to 9 decimals before the ceiling because floating point would otherwise turn
    an exact count into one more customer (``0.1 * 30`` is ``3.0000000000000004``). Used by
    :func:`lift_at`, :func:`capture_at` and the bin edges of :func:`gains_table`, so the top decile of a
    gains table is exactly the customers counted by ``capture_at(y, p, 0.1)``.
    """
    if isinstance(share, bool) or not isinstance(share, int | float | np.integer | np.floating):
        raise ValueError(f"share must be a number in (0, 1], got {share!r}")
    if not (math.isfinite(share) and 0.0 < share <= 1.0):
        raise ValueError(f"share must be in (0, 1], got {share!r}")
    return max(1, math.ceil(round(share * n_customers, 9)))


def _ranked_outcomes(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Outcomes ordered by ``p`` from highest to lowest; ties keep their input order (stable sort)."""
    return y[np.argsort(-p, kind="stable")]


def cumulative_gains_curve(y_true: ArrayLike, p: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative gains: share of churners captured against share of customers contacted, riskiest first.

    Customers are sorted by ``p`` descending with a stable sort (ties keep their input order). Returns
    ``(share_contacted, share_captured)``, two arrays of length ``n + 1`` starting at ``(0, 0)`` and ending
    at ``(1, 1)``; element ``k`` describes contacting the top ``k`` customers. Raises :class:`ValueError`
    when there is no churner to capture.
    """
    y, p_arr = validate_binary_predictions(y_true, p)
    return _cumulative_gains_curve(y, p_arr)


def _cumulative_gains_curve(
    y: np.ndarray, p: np.ndarray, metric: str = "cumulative_gains_curve"
) -> tuple[np.ndarray, np.ndarray]:
    _require_positives(y, metric)
    captured = np.concatenate([[0], np.cumsum(_ranked_outcomes(y, p))])
    share_contacted = np.arange(len(y) + 1) / len(y)
    return share_contacted, captured / captured[-1]


def lift_at(y_true: ArrayLike, p: ArrayLike, share: float) -> float:
    """Lift of the top ``share`` of customers by ``p``: their churn rate divided by the overall churn rate.

    Takes exactly ``ceil(share * n)`` customers (see :func:`top_share_count`) after a stable sort by ``p``
    descending, so ties are broken by input order. 1 means no better than random; the maximum is
    ``min(1 / base_rate, 1 / share)``. Raises :class:`ValueError` when there is no churner.
    """
    return _lift_from_curve(_checked_gains_curve(y_true, p, share, "lift_at"), share)


def capture_at(y_true: ArrayLike, p: ArrayLike, share: float) -> float:
    """Share of all churners found among the top ``share`` of customers by ``p`` (the gains at ``share``).

    Uses the same top ``ceil(share * n)`` customers as :func:`lift_at`; ``capture_at(y, p, 1.0)`` is 1.
    Raises :class:`ValueError` when there is no churner.
    """
    return _capture_from_curve(_checked_gains_curve(y_true, p, share, "capture_at"), share)


def _checked_gains_curve(y_true: ArrayLike, p: ArrayLike, share: float, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate inputs and ``share`` (a bad share is reported before a missing churner), then rank."""
    y, p_arr = validate_binary_predictions(y_true, p)
    top_share_count(len(y), share)
    return _cumulative_gains_curve(y, p_arr, metric)


def _lift_from_curve(curve: tuple[np.ndarray, np.ndarray], share: float) -> float:
    # Churn rate of the top k over the overall rate equals (share of churners captured) / (share contacted).
    share_contacted, share_captured = curve
    top = top_share_count(len(share_contacted) - 1, share)
    return float(share_captured[top] / share_contacted[top])


def _capture_from_curve(curve: tuple[np.ndarray, np.ndarray], share: float) -> float:
    share_contacted, share_captured = curve
    return float(share_captured[top_share_count(len(share_contacted) - 1, share)])


def gains_table(y_true: ArrayLike, p: ArrayLike, n_bins: int = 10) -> pd.DataFrame:
    """Gains table: customers sorted by ``p`` descending and cut into ``n_bins`` groups of (nearly) equal size.

    Bin 1 holds the highest predicted risk. Bin ``k`` ends after the top ``ceil(k / n_bins * n)``
    customers, the rule of :func:`top_share_count`, so the cumulative capture of bin 1 of a decile table
    equals ``capture_at(y, p, 0.1)``. Columns: ``bin``, ``customers``, ``positives``, ``positive_rate``,
    ``mean_p``, ``lift`` (bin churn rate over overall churn rate) and ``cumulative_capture`` (share of
    all churners in bins 1..k, ending at 1). Raises :class:`ValueError` when there are fewer customers
    than bins or no churner.
    """
    y, p_arr = validate_binary_predictions(y_true, p)
    return _gains_table(y, p_arr, n_bins)


def _gains_table(y: np.ndarray, p: np.ndarray, n_bins: int) -> pd.DataFrame:
    _check_n_bins(n_bins)
    n = len(y)
    if n < n_bins:
        raise ValueError(f"gains_table needs at least n_bins={n_bins} customers, got {n}")
    _require_positives(y, "gains_table")
    order = np.argsort(-p, kind="stable")
    ends = np.array([0] + [top_share_count(n, k / n_bins) for k in range(1, n_bins + 1)])
    # One label per sorted customer; with n >= n_bins every bin gets at least one customer.
    bin_of_rank = np.repeat(np.arange(n_bins), np.diff(ends))
    customers = np.diff(ends)
    positives = np.bincount(bin_of_rank, weights=y[order], minlength=n_bins).astype(np.int64)
    sum_p = np.bincount(bin_of_rank, weights=p[order], minlength=n_bins)
    positive_rate = positives / customers
    return pd.DataFrame(
        {
            "bin": np.arange(1, n_bins + 1),
            "customers": customers.astype(np.int64),
            "positives": positives,
            "positive_rate": positive_rate,
            "mean_p": sum_p / customers,
            "lift": positive_rate / y.mean(),
            "cumulative_capture": np.cumsum(positives) / positives.sum(),
        }
    )


def classification_metrics(y_true: ArrayLike, p: ArrayLike) -> dict[str, float]:
    """All churn-model metrics in one dict, ready for ``mlflow.log_metrics`` and the report.

    Keys, in order: ``roc_auc``, ``pr_auc``, ``log_loss``, ``brier``, ``ece`` (uniform, 10 bins),
    ``lift_10``, ``capture_10``, ``lift_20``, ``capture_20`` (top 10 % and 20 % by ``p``), ``base_rate``
    (share that churned) and ``n`` (customers, as a float like every other value). Inputs are validated
    once; raises :class:`ValueError` when ``y_true`` holds only one class, because the ranking metrics
    are then undefined.
    """
    y, p_arr = validate_binary_predictions(y_true, p)
    _require_both_classes(y, "classification_metrics")
    # The ranking behind lift and capture is computed once, not once per share.
    curve = _cumulative_gains_curve(y, p_arr)
    return {
        "roc_auc": _roc_auc(y, p_arr),
        "pr_auc": _pr_auc(y, p_arr),
        "log_loss": _log_loss(y, p_arr),
        "brier": _brier(y, p_arr),
        "ece": _expected_calibration_error(y, p_arr, 10, "uniform"),
        "lift_10": _lift_from_curve(curve, 0.1),
        "capture_10": _capture_from_curve(curve, 0.1),
        "lift_20": _lift_from_curve(curve, 0.2),
        "capture_20": _capture_from_curve(curve, 0.2),
        "base_rate": float(y.mean()),
        "n": float(len(y)),
    }


# ---------------------------------------------------------------------------------------------------
# regression (CLV)
# ---------------------------------------------------------------------------------------------------


def _as_amounts(values: np.ndarray, name: str, what: str) -> np.ndarray:
    """``values`` (already known to be 1-D) as finite, non-negative float64, or a one-line ValueError."""
    # Strings such as "12.5" would convert to float silently; amounts must already be numbers.
    if values.dtype.kind not in "biuf" and values.dtype != object:
        raise ValueError(f"{name} must be numeric {what}, got dtype {values.dtype}")
    try:
        as_float = values.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric {what}, found missing or non-numeric values") from None
    non_finite = int((~np.isfinite(as_float)).sum())
    if non_finite:
        raise ValueError(f"{name} must be finite, found {non_finite} NaN or infinite value(s)")
    negative = int((as_float < 0).sum())
    if negative:
        raise ValueError(
            f"{name} must be >= 0 ({what} cannot be negative), found {negative} negative value(s), "
            f"the smallest {as_float.min():.6g}"
        )
    return as_float


def validate_value_predictions(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Check actual and predicted customer values and return them as clean 1-D ``float64`` arrays.

    ``y_true`` is what each customer actually spent over the horizon and ``y_pred`` the predicted CLV
    over the same horizon; both must be one-dimensional, non-empty, of the same length, numeric, finite
    and >= 0 (spend cannot be negative, and neither can a CLV prediction: a model that predicts negative
    values must be clipped by its caller, knowingly). Every CLV metric and plot calls this first, so a
    bad input fails with the same one-line :class:`ValueError` wherever it enters.
    """
    y_arr = np.asarray(y_true)
    pred_arr = np.asarray(y_pred)
    if y_arr.ndim != 1 or pred_arr.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D, got shapes {y_arr.shape} and {pred_arr.shape}")
    if len(y_arr) != len(pred_arr):
        raise ValueError(f"y_true and y_pred must have the same length, got {len(y_arr)} and {len(pred_arr)}")
    if len(y_arr) == 0:
        raise ValueError("y_true and y_pred are empty; metrics need at least one customer")
    return _as_amounts(y_arr, "y_true", "spend"), _as_amounts(pred_arr, "y_pred", "CLV predictions")


def _validate_values(values: ArrayLike) -> np.ndarray:
    """One array of customer values (for the concentration measures), checked like ``y_true``."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {arr.shape}")
    if len(arr) == 0:
        raise ValueError("values is empty; value concentration needs at least one customer")
    return _as_amounts(arr, "values", "spend")


def _require_positive_total(y: np.ndarray, metric: str, name: str = "y_true") -> None:
    """Raise when every value is 0, for measures that are shares of (or divided by) the total value."""
    if not y.sum() > 0:
        raise ValueError(f"{metric} needs some positive value in {name}, got a total of 0 over {len(y)} customer(s)")


def _ranked_values(y: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Actual values ordered by ``y_pred`` from highest to lowest, each tie group replaced by its mean.

    Customers with the same prediction cannot be told apart by the model, so each counts with the mean
    actual value of its tie group: cumulative sums are then the expectation over every order of the
    ties, and no result depends on the order of the input rows (which is often sorted by spend).
    """
    order = np.argsort(-y_pred, kind="stable")
    pred_sorted = y_pred[order]
    starts_group = np.r_[True, pred_sorted[1:] != pred_sorted[:-1]]
    group = np.cumsum(starts_group) - 1
    group_mean = np.bincount(group, weights=y[order]) / np.bincount(group)
    return group_mean[group]


def cumulative_value_curve(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Value gains: share of all actual value held by the top customers by ``y_pred``, against their share.

    Customers are sorted by ``y_pred`` descending; customers with tied predictions each count with the
    mean actual value of their tie group (the expected curve over every order of the ties). Returns
    ``(share_of_customers, share_of_value)``, two arrays of length ``n + 1`` from ``(0, 0)`` to ``(1, 1)``;
    element ``k`` describes the top ``k`` customers. This is Google's ``cumulative_true`` with a leading
    0 added. Raises :class:`ValueError` when every actual value is 0.
    """
    y, pred = validate_value_predictions(y_true, y_pred)
    return _cumulative_value_curve(y, pred, "cumulative_value_curve")


def _cumulative_value_curve(y: np.ndarray, y_pred: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    _require_positive_total(y, metric)
    cumulative = np.concatenate([[0.0], np.cumsum(_ranked_values(y, y_pred))])
    # Divided by the last element, not y.sum(), so the curve ends at exactly 1 despite rounding.
    return np.arange(len(y) + 1) / len(y), cumulative / cumulative[-1]


def _raw_gini(share_of_value: np.ndarray) -> float:
    # Google's gini_from_gain: 2 * mean(gain) - 1 over the n points after the origin (a right Riemann sum).
    return float(2.0 * share_of_value[1:].mean() - 1.0)


def normalized_gini(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Normalised Gini of a CLV ranking, as in Google's ``lifetime_value`` (Wang, Liu & Miao 2019).

    With ``G_k`` the share of all actual value held by the top ``k`` of ``n`` customers by ``y_pred``
    (:func:`cumulative_value_curve`), the raw Gini is ``2 / n * sum_{k=1..n} G_k - 1`` (Google's
    ``gini_from_gain``) and the normalised Gini divides the model's raw Gini by that of the perfect
    ranking, by ``y_true`` itself. 1 is a perfect ranking; a random one scores about 0 and the reversed
    ranking about -1 (exactly ``-1 + 2 / (n * raw_perfect)``: the sum leaves out the origin, so small
    samples sit slightly above the ideal values). Google's code sorts with pandas' default, unstable sort
    and so leaves tied predictions in arbitrary order; here tied customers share their mean actual value,
    the expected Gini over every order of the ties. Without ties the value is Google's exactly. Raises
    :class:`ValueError` when every actual value is 0, where the Gini is undefined.
    """
    y, pred = validate_value_predictions(y_true, y_pred)
    _, share_of_value = _cumulative_value_curve(y, pred, "normalized_gini")
    return _normalized_gini_from_curve(y, share_of_value)


def _normalized_gini_from_curve(y: np.ndarray, share_of_value: np.ndarray) -> float:
    _, perfect = _cumulative_value_curve(y, y, "normalized_gini")
    # The perfect raw Gini is at least 1/n > 0 (its curve never falls below k/n), so the ratio is defined.
    return _raw_gini(share_of_value) / _raw_gini(perfect)


def spearman(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Spearman rank correlation between actual and predicted values (ties get their average rank).

    Computed by :func:`scipy.stats.spearmanr`; 1 is the same order, 0 no monotone relation. Raises
    :class:`ValueError` when either input is constant (including a single customer), where the
    correlation is undefined, instead of returning NaN.
    """
    y, pred = validate_value_predictions(y_true, y_pred)
    return _spearman(y, pred)


def _spearman(y: np.ndarray, pred: np.ndarray) -> float:
    for name, values in (("y_true", y), ("y_pred", pred)):
        if np.ptp(values) == 0:
            raise ValueError(
                f"spearman is undefined when {name} is constant (all {len(values)} value(s) equal {values[0]:.6g})"
            )
    return float(stats.spearmanr(y, pred).statistic)


def decile_table(y_true: ArrayLike, y_pred: ArrayLike, n_bins: int = 10) -> pd.DataFrame:
    """Google's ``decile_stats``: customers cut into ``n_bins`` equal-count bins of ``y_pred``, lowest first.

    Bin 1 holds the lowest predictions and bin ``n_bins`` the highest, the order of Google's
    ``pd.qcut(y_pred, 10)`` (and the opposite of :func:`gains_table`, where bin 1 is the top). Bin sizes
    follow :func:`top_share_count` counted from the top, so the last bin is exactly the customers of
    ``top_decile_capture(y, p, 1 / n_bins)``; qcut's quantile edges give the same bins when ``n`` is a
    multiple of ``n_bins`` and predictions are distinct, but fail on repeated predictions, whereas here
    customers with tied predictions that straddle a bin edge each count with their tie group's mean
    actual value. Columns: ``bin``, ``customers``, ``mean_predicted``, ``mean_actual``, ``label_share``
    (share of all actual value in the bin) and ``abs_pct_error`` (``|mean_predicted - mean_actual| /
    mean_actual``, Google's per-decile ``decile_mape``; NaN where the bin's mean actual value is 0, where
    Google's code gives infinity). Raises :class:`ValueError` when there are fewer customers than bins or
    every actual value is 0.
    """
    y, pred = validate_value_predictions(y_true, y_pred)
    return _decile_table(y, pred, n_bins, "decile_table")


def _decile_table(y: np.ndarray, pred: np.ndarray, n_bins: int, metric: str) -> pd.DataFrame:
    _check_n_bins(n_bins)
    n = len(y)
    if n < n_bins:
        raise ValueError(f"{metric} needs at least n_bins={n_bins} customers, got {n}")
    _require_positive_total(y, metric)
    ends = np.array([0] + [top_share_count(n, k / n_bins) for k in range(1, n_bins + 1)])
    customers = np.diff(ends)
    # Group g (0 = top predictions) of the descending ranking becomes bin n_bins - g.
    group_of_rank = np.repeat(np.arange(n_bins), customers)
    sum_actual = np.bincount(group_of_rank, weights=_ranked_values(y, pred), minlength=n_bins)
    sum_predicted = np.bincount(group_of_rank, weights=np.sort(pred)[::-1], minlength=n_bins)
    mean_actual = (sum_actual / customers)[::-1]
    mean_predicted = (sum_predicted / customers)[::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        abs_pct_error = np.where(mean_actual > 0, np.abs(mean_predicted - mean_actual) / mean_actual, np.nan)
    return pd.DataFrame(
        {
            "bin": np.arange(1, n_bins + 1),
            "customers": customers[::-1].astype(np.int64),
            "mean_predicted": mean_predicted,
            "mean_actual": mean_actual,
            "label_share": sum_actual[::-1] / sum_actual.sum(),
            "abs_pct_error": abs_pct_error,
        }
    )


def decile_mape(y_true: ArrayLike, y_pred: ArrayLike, n_bins: int = 10) -> float:
    """Decile MAPE: the mean over bins of ``|mean_predicted - mean_actual| / mean_actual`` (lower is better).

    Google's ``decile_stats(y, p)['decile_mape'].mean()``: each bin of :func:`decile_table` counts once,
    whatever its size, so the error of the predicted level is judged across the whole range of the
    ranking. 0 when every bin's mean prediction equals its mean actual value, even if individual
    predictions are far off. Bins whose mean actual value is 0 are left out (their percentage error is
    undefined; pandas' mean in Google's code would give infinity). Raises :class:`ValueError` when there
    are fewer customers than bins or every actual value is 0.
    """
    y, pred = validate_value_predictions(y_true, y_pred)
    return _decile_mape(y, pred, n_bins, "decile_mape")


def _decile_mape(y: np.ndarray, pred: np.ndarray, n_bins: int, metric: str) -> float:
    # At least one bin has a positive mean (the total is positive), so the mean is over a non-empty set.
    return float(np.nanmean(_decile_table(y, pred, n_bins, metric)["abs_pct_error"].to_numpy()))


def mae(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean absolute error between predicted and actual value per customer, in the unit of the values."""
    y, pred = validate_value_predictions(y_true, y_pred)
    return float(np.mean(np.abs(pred - y)))


def aggregate_bias(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Relative error of the total: ``(sum(y_pred) - sum(y_true)) / sum(y_true)``.

    Positive when the model over-predicts the value of the whole base (0.1 = 10 % too high), negative
    when it under-predicts; 0 is best, so the sign matters and neither direction is "better". Raises
    :class:`ValueError` when every actual value is 0.
    """
    y, pred = validate_value_predictions(y_true, y_pred)
    return _aggregate_bias(y, pred, "aggregate_bias")


def _aggregate_bias(y: np.ndarray, pred: np.ndarray, metric: str) -> float:
    _require_positive_total(y, metric)
    return float((pred.sum() - y.sum()) / y.sum())


def top_decile_capture(y_true: ArrayLike, y_pred: ArrayLike, share: float = 0.1) -> float:
    """Share of all actual value held by the top ``share`` of customers by ``y_pred``.

    Takes exactly ``ceil(share * n)`` customers (:func:`top_share_count`), read off
    :func:`cumulative_value_curve`, so customers with tied predictions at the cut count with their tie
    group's mean value instead of by input order. Raises :class:`ValueError` when every actual value is 0.
    """
    y, pred = validate_value_predictions(y_true, y_pred)
    top_share_count(len(y), share)  # a bad share is reported before a zero total
    _, share_of_value = _cumulative_value_curve(y, pred, "top_decile_capture")
    return float(share_of_value[top_share_count(len(y), share)])


def value_metrics(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float]:
    """All CLV-model metrics in one dict, ready for ``mlflow.log_metrics``, model selection and the report.

    Keys, in order (:data:`VALUE_METRIC_KEYS`): ``gini`` (:func:`normalized_gini`), ``spearman``,
    ``decile_mape`` (10 bins), ``mae``, ``bias`` (:func:`aggregate_bias`), ``top_decile_capture`` (top
    10 %), ``mean_actual``, ``mean_predicted`` and ``n`` (customers, as a float like every other value).
    Inputs are validated once; raises :class:`ValueError` when every actual value is 0, either input is
    constant (Spearman is undefined) or there are fewer than 10 customers.
    """
    y, pred = validate_value_predictions(y_true, y_pred)
    _require_positive_total(y, "value_metrics")
    _, share_of_value = _cumulative_value_curve(y, pred, "value_metrics")
    return {
        "gini": _normalized_gini_from_curve(y, share_of_value),
        "spearman": _spearman(y, pred),
        "decile_mape": _decile_mape(y, pred, 10, "value_metrics"),
        "mae": float(np.mean(np.abs(pred - y))),
        "bias": _aggregate_bias(y, pred, "value_metrics"),
        "top_decile_capture": float(share_of_value[top_share_count(len(y), 0.1)]),
        "mean_actual": float(y.mean()),
        "mean_predicted": float(pred.mean()),
        "n": float(len(y)),
    }


def lorenz_curve(values: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Value concentration: share of all value held by the most valuable customers, against their share.

    Customers are sorted by value descending (the classic Lorenz curve turned round, so it bows above the
    diagonal). Returns ``(share_of_customers, share_of_value)``, two arrays of length ``n + 1`` from
    ``(0, 0)`` to ``(1, 1)``; element ``k`` describes the ``k`` most valuable customers. It is the
    perfect-ranking curve of :func:`cumulative_value_curve`. Raises :class:`ValueError` on negative,
    non-finite or empty input, or when every value is 0.
    """
    v = _validate_values(values)
    _require_positive_total(v, "lorenz_curve", name="values")
    return _cumulative_value_curve(v, v, "lorenz_curve")


def top_share_of_value(values: ArrayLike, share: float = 0.2) -> float:
    """Share of all value held by the most valuable ``share`` of customers (the "80/20" number at 0.2).

    Takes exactly ``ceil(share * n)`` customers (:func:`top_share_count`) off :func:`lorenz_curve`. Raises
    :class:`ValueError` on a bad share or when every value is 0.
    """
    v = _validate_values(values)
    top = top_share_count(len(v), share)
    _require_positive_total(v, "top_share_of_value", name="values")
    _, share_of_value = _cumulative_value_curve(v, v, "top_share_of_value")
    return float(share_of_value[top])
