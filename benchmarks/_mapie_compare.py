"""The ML CLV intervals against MAPIE's on the same customers (benchmarks/clv_intervals.py).

crmscore's intervals are split-conformal per decile of predicted spend on the ratio actual / predicted
(:class:`crmscore.intervals.ConformalSpend`). MAPIE (the ``bench`` extra) is the reference library for
conformal prediction; compared here on the same calibration and measurement customers:

* ``SplitConformalRegressor`` around the same fitted model, absolute residuals: one width for everyone;
* the same with MAPIE's ``gamma`` score (residual / prediction: width proportional to the prediction), on
  customers with a positive prediction and spend (the score divides by both);
* ``ConformalizedQuantileRegressor`` (CQR, Romano et al. 2019) with LightGBM quantile models trained on the
  training rows.

Coverage is read per decile of crmscore's predicted spend for every method, so the groups are the same.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin

from crmscore import intervals


class _Fitted(RegressorMixin, BaseEstimator):
    """A fitted crmscore model as the prefit scikit-learn regressor MAPIE wraps (numeric feature codes in)."""

    def __init__(self, model=None, columns=None, categories=None):
        self.model = model
        self.columns = columns
        self.categories = categories

    def fit(self, X, y=None):  # prefit: MAPIE never calls it
        return self

    def predict(self, X):
        return self.model.predict(_frame(X, self.columns, self.categories))

    def __sklearn_is_fitted__(self) -> bool:
        return True


def _numeric(X: pd.DataFrame) -> tuple[np.ndarray, dict[str, pd.Index]]:
    """Feature codes MAPIE's array checks accept, and the categories to turn them back."""
    categories = {c: X[c].cat.categories for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)}
    codes = X.copy()
    for column in categories:
        codes[column] = X[column].cat.codes.replace(-1, np.nan).astype(float)
    return codes.to_numpy(dtype=float), categories


def _frame(values: np.ndarray, columns, categories) -> pd.DataFrame:
    frame = pd.DataFrame(values, columns=columns)
    for column, cats in categories.items():
        codes = frame[column].fillna(-1).astype(int)
        frame[column] = pd.Categorical.from_codes(codes, categories=cats)
    return frame


def compare(ml, train, calib_X, calib_y, test_X, test_y, level: float, seed: int) -> tuple[dict, list[str]]:
    """Coverage, worst decile gap and mean width of crmscore's and MAPIE's intervals on the same customers."""
    try:
        import mapie
        from mapie.regression import ConformalizedQuantileRegressor, SplitConformalRegressor
    except ImportError:
        return {}, ["MAPIE is not installed here (the `bench` extra): not compared."]
    from lightgbm import LGBMRegressor

    calib_y, test_y = np.asarray(calib_y, dtype=float), np.asarray(test_y, dtype=float)
    predicted = ml.predict(test_X)
    columns = list(test_X.columns)
    calib_codes, categories = _numeric(calib_X)
    test_codes, _ = _numeric(test_X)
    fitted = _Fitted(ml, columns, categories)
    results, tables = {}, {}

    t0 = time.perf_counter()
    low, high = ml.conformal_.interval(predicted, level)
    tables["crmscore: split-conformal per predicted decile, ratio score"] = (low, high, time.perf_counter() - t0)

    t0 = time.perf_counter()
    absolute = SplitConformalRegressor(fitted, confidence_level=level, conformity_score="absolute", prefit=True)
    absolute.conformalize(calib_codes, calib_y)
    bounds = absolute.predict_interval(test_codes)[1]
    tables["MAPIE split conformal, absolute residual"] = (bounds[:, 0, 0], bounds[:, 1, 0], time.perf_counter() - t0)

    positive_cal = (calib_y > 0) & (ml.predict(calib_X) > 0)
    t0 = time.perf_counter()
    gamma = SplitConformalRegressor(fitted, confidence_level=level, conformity_score="gamma", prefit=True)
    gamma.conformalize(calib_codes[positive_cal], calib_y[positive_cal])
    positive = predicted > 0
    bounds = gamma.predict_interval(test_codes[positive])[1]
    g_low, g_high = np.zeros(len(predicted)), np.zeros(len(predicted))
    g_low[positive], g_high[positive] = bounds[:, 0, 0], bounds[:, 1, 0]
    tables["MAPIE split conformal, gamma score (calibrated on buyers)"] = (g_low, g_high, time.perf_counter() - t0)

    t0 = time.perf_counter()
    train_codes, _ = _numeric(train.X[columns])
    quantile = LGBMRegressor(
        objective="quantile", alpha=0.5, n_estimators=300, learning_rate=0.05, random_state=seed, verbose=-1
    )
    cqr = ConformalizedQuantileRegressor(quantile, confidence_level=level, prefit=False)
    cqr.fit(train_codes, np.asarray(train.y, dtype=float))
    cqr.conformalize(calib_codes, calib_y)
    bounds = cqr.predict_interval(test_codes)[1]
    tables["MAPIE CQR, LightGBM quantile models"] = (bounds[:, 0, 0], bounds[:, 1, 0], time.perf_counter() - t0)

    lines = [
        f"**Against MAPIE {mapie.__version__}** (same calibration half and measurement half; coverage per decile of "
        "crmscore's predicted spend for every method; seconds include MAPIE's calibration and, for CQR, the "
        "training of its three quantile models):",
        "",
        "| intervals | coverage | worst decile gap | coverage by decile (1 → 10) | mean width | s |",
        "|---|---|---|---|---|---|",
    ]
    for name, (lo, hi, seconds) in tables.items():
        table = intervals.coverage_by_decile(predicted, test_y, lo, hi)
        deciles = table.drop("overall")["coverage"]
        holdable = table.drop("overall")["zero_share"] <= level
        gap = float((deciles - level).abs()[holdable].max())
        results[name] = {
            "coverage": float(table.loc["overall", "coverage"]),
            "worst_gap_holdable": gap,
            "mean_width": float(table.loc["overall", "mean_width"]),
            "seconds": seconds,
        }
        lines.append(
            f"| {name} | {results[name]['coverage']:.3f} | {gap:.3f} | "
            + ", ".join(f"{c:.2f}" for c in deciles)
            + f" | {results[name]['mean_width']:.1f} | {seconds:.1f} |"
        )
    lines += [
        "",
        "*Worst decile gap* over the deciles where an interval can hold the level (fewer customers than the level "
        "spend nothing). One width for everyone (absolute residual) covers the small customers fully and the large "
        "ones rarely. The gamma score divides by the spend, so it is calibrated on buyers only and its intervals "
        "miss every customer who buys nothing. CQR learns the spread with quantile models of its own and holds the "
        "level far better; against it, compare the worst gap and the width with the per-decile ratio intervals "
        "crmscore registers with its model (which need no second model and cost a lookup at scoring).",
    ]
    return results, lines
