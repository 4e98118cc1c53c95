"""Population stability: how far the customers being scored have moved from those a model was judged on.

The population stability index (PSI) compares the distribution of one feature in an *expected* sample
(the reference: the customers the churn champion was tested on) with an *actual* sample (the customers of
the latest scoring). Both are cut into the same bins; with ``e_i`` and ``a_i`` the shares of the expected
and actual sample in bin ``i``,

    PSI = sum_i (a_i - e_i) * ln(a_i / e_i).

Each term is >= 0 (the difference and the log have the same sign), so the PSI is 0 exactly when every
bin holds the same share in both samples and grows with any shift. It is the symmetrised Kullback-Leibler
divergence of the two binned distributions, KL(a || e) + KL(e || a) (Jeffreys' divergence); for two
normal distributions with unit variance whose means differ by ``d`` its unbinned value is ``d ** 2``, and
binning only loses information, so a binned PSI is smaller. The customary reading (Siddiqi 2006, *Credit
Risk Scorecards*): below 0.1 no real change, 0.1-0.25 a moderate shift worth a look, above 0.25 a major
shift; the report flags features above ``threshold`` = 0.2.

Binning rules (:func:`population_stability_index`):

* **numeric** features get ``bins`` quantile bins of the *expected* sample, closed on the right, with
  repeated quantiles merged (a feature that is mostly 0 keeps all its zeros in one bin) and open outer
  bins, so actual values beyond the expected range still land in the first or last bin (a constant
  reference gets a bin for its value and one on each side);
* **categorical** features (``category``, ``object``, string and boolean columns) get one bin per value
  seen in either sample;
* **missing values** get a bin of their own in both cases, so a feature that starts going missing
  counts as drift rather than vanishing from the comparison;
* a bin that is empty in one sample would make ``ln(a_i / e_i)`` infinite, so shares are floored at
  ``epsilon`` (1e-4, i.e. one customer in 10,000) before the sum; the floor bounds the contribution of a
  brand-new bin to about ``a_i * ln(a_i / 1e-4)`` instead of infinity.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "PSI_EPSILON",
    "DRIFT_THRESHOLD",
    "psi_bins",
    "population_stability_index",
    "feature_drift",
]

#: Floor of a bin's share, so a bin empty in one sample gives a large but finite term.
PSI_EPSILON = 1e-4
#: PSI above which the report flags a feature as drifted.
DRIFT_THRESHOLD = 0.2

_MISSING = "(missing)"


def _is_categorical(values: pd.Series) -> bool:
    dtype = values.dtype
    return (
        isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(dtype)
        or pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
    )


def _as_series(values: Sequence | np.ndarray | pd.Series, name: str) -> pd.Series:
    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values))
    if series.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional")
    return series.reset_index(drop=True)


def _numeric(series: pd.Series, name: str) -> np.ndarray:
    try:
        values = series.to_numpy(dtype="float64", na_value=np.nan)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric or categorical, got dtype {series.dtype}") from None
    if np.isinf(values).any():
        raise ValueError(f"{name} holds infinite values; PSI bins need finite numbers or missing values")
    return values


def psi_bins(expected: Sequence | np.ndarray | pd.Series, bins: int = 10) -> np.ndarray:
    """Interior edges of the quantile bins of a numeric ``expected`` sample (missing values ignored).

    The edges are the ``k / bins`` quantiles for ``k = 1 … bins - 1``, repeated values merged; a value
    ``x`` falls in bin ``i`` when ``edges[i - 1] < x <= edges[i]`` (the first and last bins are open), so
    tied values never straddle two bins. A constant sample gets the edges ``[v⁻, v]`` (``v⁻`` the float
    just below its value ``v``): one bin for ``v`` and one on each side of it. An all-missing sample gets
    no edges (every known value then shares one bin).
    """
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    values = _numeric(_as_series(expected, "expected"), "expected")
    values = values[~np.isnan(values)]
    distinct = np.unique(values)
    if len(distinct) == 0:
        return np.empty(0)
    if len(distinct) == 1:
        # Quantiles of a constant are all equal: bins below, at and above the one value, so a sample
        # that moved off it still shows as a shift.
        return np.array([np.nextafter(distinct[0], -np.inf), distinct[0]])
    return np.unique(np.quantile(values, np.linspace(0.0, 1.0, bins + 1)[1:-1]))


def _shares(codes: np.ndarray, n_bins: int) -> np.ndarray:
    counts = np.bincount(codes, minlength=n_bins).astype(np.float64)
    return counts / counts.sum()


def _numeric_shares(expected: pd.Series, actual: pd.Series, bins: int) -> tuple[np.ndarray, np.ndarray]:
    e = _numeric(expected, "expected")
    a = _numeric(actual, "actual")
    edges = psi_bins(e, bins)
    missing_bin = len(edges) + 1

    def codes(values: np.ndarray) -> np.ndarray:
        out = np.searchsorted(edges, values, side="left")
        return np.where(np.isnan(values), missing_bin, out)

    return _shares(codes(e), missing_bin + 1), _shares(codes(a), missing_bin + 1)


def _categorical_shares(expected: pd.Series, actual: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    def labels(values: pd.Series) -> pd.Series:
        return values.astype(object).where(values.notna(), _MISSING).map(str)

    e, a = labels(expected), labels(actual)
    levels = pd.Index(pd.unique(pd.concat([e, a], ignore_index=True)))
    return _shares(levels.get_indexer(e), len(levels)), _shares(levels.get_indexer(a), len(levels))


def population_stability_index(
    expected: Sequence | np.ndarray | pd.Series,
    actual: Sequence | np.ndarray | pd.Series,
    bins: int = 10,
    epsilon: float = PSI_EPSILON,
) -> float:
    """PSI of ``actual`` against the reference sample ``expected``: ``sum (a_i - e_i) ln(a_i / e_i)``.

    Numeric samples are cut into ``bins`` quantile bins of ``expected`` (see :func:`psi_bins`);
    categorical ones (category, object, string or boolean dtype in either sample) get one bin per value;
    missing values always get a bin of their own. Shares below ``epsilon`` are raised to it so empty bins
    give a finite term. 0 for identical distributions; see the module docstring for the reading. Raises
    :class:`ValueError` on an empty sample, infinite values or a numeric sample paired with a
    non-numeric one that cannot be read as numbers.
    """
    if not 0 < epsilon < 1:
        raise ValueError(f"epsilon must lie in (0, 1), got {epsilon!r}")
    e = _as_series(expected, "expected")
    a = _as_series(actual, "actual")
    if len(e) == 0 or len(a) == 0:
        raise ValueError(f"PSI needs customers in both samples, got {len(e)} expected and {len(a)} actual")
    if _is_categorical(e) or _is_categorical(a):
        e_share, a_share = _categorical_shares(e, a)
    else:
        e_share, a_share = _numeric_shares(e, a, bins)
    e_share = np.maximum(e_share, epsilon)
    a_share = np.maximum(a_share, epsilon)
    return float(np.sum((a_share - e_share) * np.log(a_share / e_share)))


def feature_drift(
    train_X: pd.DataFrame,
    score_X: pd.DataFrame,
    threshold: float = DRIFT_THRESHOLD,
    bins: int = 10,
) -> pd.DataFrame:
    """PSI of every feature the two frames share, the reference ``train_X`` against ``score_X``.

    Returns one row per shared column, largest PSI first: ``feature``, ``kind`` (``numeric`` or
    ``categorical``), ``psi``, ``drifted`` (PSI above ``threshold``), and the share of missing values in
    each sample (``missing_expected``, ``missing_actual``), which often explains a jump. Columns present in
    only one frame are left out. Raises :class:`ValueError` when the frames share no column.
    """
    shared = [c for c in train_X.columns if c in score_X.columns]
    if not shared:
        raise ValueError("feature_drift: the training and scoring features share no column")
    rows = []
    for column in shared:
        expected, actual = train_X[column], score_X[column]
        categorical = _is_categorical(expected) or _is_categorical(actual)
        rows.append(
            {
                "feature": str(column),
                "kind": "categorical" if categorical else "numeric",
                "psi": population_stability_index(expected, actual, bins=bins),
                "missing_expected": float(expected.isna().mean()) if len(expected) else np.nan,
                "missing_actual": float(actual.isna().mean()) if len(actual) else np.nan,
            }
        )
    table = pd.DataFrame(rows)
    table.insert(3, "drifted", table["psi"] > threshold)
    return table.sort_values("psi", ascending=False, kind="stable", ignore_index=True)
