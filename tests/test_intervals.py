"""Intervals on CLV and churn, tier confidence and the borderline flag (crmscore.intervals).

Coverage is checked against outcomes drawn from the model's own generative process (BG/NBD ×
Gamma-Gamma with known parameters) and from a known spend distribution (conformal), with tolerances of
about four standard errors of a coverage share at the test's sample size; the scoring tests train tiny
champions on 1,500 simulated customers.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import champions
from crmscore import intervals
from crmscore.churn import ChurnModel
from crmscore.clv.value import BtydClv
from crmscore.config import Settings
from crmscore.stages import score_stage
from crmscore.tiers import fit_tier_scale

LEVEL = 0.8


def _tolerance(n: int, level: float = LEVEL) -> float:
    """Four standard errors of a coverage share over n customers."""
    return 4 * math.sqrt(level * (1 - level) / n)


# --- order statistics and split conformal ------------------------------------------------------------------------


def test_interval_from_draws_holds_its_level_for_continuous_and_zero_inflated_values():
    from scipy import stats

    rng = np.random.default_rng(1)
    n, d = 20_000, 199
    # zero with probability z (customer-specific), else gamma: the shape of future spend
    zero = rng.uniform(0.0, 0.95, n)
    scale = rng.uniform(1, 100, n)

    def spend(size):
        return np.where(rng.random((n, size)) < zero[:, None], 0.0, rng.gamma(2.0, scale[:, None], (n, size)))

    low, high = intervals.interval_from_draws(spend(d), LEVEL)
    # what each interval holds under the true distribution: the level, or more where P(0) alone exceeds it
    held = np.where(low == 0, zero, 0.0) + (1 - zero) * (
        stats.gamma.cdf(high, 2.0, scale=scale) - stats.gamma.cdf(low, 2.0, scale=scale)
    )
    continuous = zero < 0.05
    assert abs(held[continuous].mean() - LEVEL) < 0.01
    assert abs(held[zero < LEVEL - 0.1].mean() - LEVEL) < 0.015
    assert (held[zero > LEVEL + 0.05] >= zero[zero > LEVEL + 0.05] - 1e-12).all()
    new = spend(1)[:, 0]
    inside = (new >= low) & (new <= high)
    assert abs(inside.mean() - held.mean()) < _tolerance(n)


def test_conformal_spend_covers_in_every_predicted_decile():
    rng = np.random.default_rng(2)

    def customers(n):
        predicted = rng.lognormal(3, 1.2, n)
        buys = rng.random(n) < np.clip(predicted / 100, 0.05, 0.95)
        actual = np.where(buys, rng.gamma(1.5, predicted / 1.5 / np.clip(predicted / 100, 0.05, 0.95)), 0.0)
        return predicted, actual

    calibration = intervals.fit_conformal_spend(*customers(20_000), bins=10)
    predicted, actual = customers(20_000)
    low, high = calibration.interval(predicted, LEVEL)
    table = intervals.coverage_by_decile(predicted, actual, low, high)
    deciles = table.drop("overall")
    # deciles where more customers than the level buy nothing cover their zero share ([0, 0] is the
    # shortest interval holding the level); the others hold the level
    rank = pd.Series(predicted).rank(method="first").to_numpy()
    zero_share = pd.Series(actual == 0).groupby(np.minimum(((rank - 1) * 10 / len(rank)).astype(int), 9)).mean()
    target = np.maximum(LEVEL, zero_share.to_numpy())
    assert np.all(np.abs(deciles["coverage"].to_numpy() - target) < _tolerance(2_000) + 0.01)
    assert abs(table.loc["overall", "coverage"] - target.mean()) < _tolerance(20_000)
    assert (target == LEVEL).sum() >= 3  # the check bites where an interval has a width
    assert (high >= low).all() and (low >= 0).all()


def test_randomized_coverage_holds_the_level_where_spend_zero_alone_exceeds_it():
    """Over a mass at 0 larger than the level no interval holds the level; broken at random, the tie does."""
    rng = np.random.default_rng(4)
    n, d = 20_000, 199
    zero = rng.uniform(0.0, 0.99, n)

    def spend(size):
        return np.where(rng.random((n, size)) < zero[:, None], 0.0, rng.gamma(2.0, 30.0, (n, size)))

    draws = spend(d)
    low, high = intervals.interval_from_draws(draws, LEVEL)
    keep = intervals.zero_inclusion_from_draws(draws, low, high, LEVEL)
    new = spend(1)[:, 0]
    heavy = zero > LEVEL + 0.05
    assert (keep[heavy] < 1).all() and (keep[zero < 0.02] == 1).all()
    table = intervals.coverage_by_decile(zero, new, low, high, zero_inclusion=keep)
    deciles = table.drop("overall")
    assert deciles["coverage"].iloc[-1] > LEVEL + 0.1  # plain coverage is the zero share there
    assert np.all(np.abs(deciles["randomized"] - LEVEL) < _tolerance(2_000) + 0.015)
    assert abs(table.loc["overall", "randomized"] - LEVEL) < _tolerance(n) + 0.01

    # the split-conformal intervals: the same from the held-out ratios of each bin
    def customers(size):
        predicted = rng.lognormal(2, 1.5, size)
        buys = rng.random(size) < np.clip(predicted / 60, 0.02, 0.98)
        return predicted, np.where(buys, rng.gamma(2.0, predicted), 0.0)

    calibration = intervals.fit_conformal_spend(*customers(40_000), bins=10)
    predicted, actual = customers(40_000)
    low, high = calibration.interval(predicted, LEVEL)
    keep = calibration.zero_inclusion(predicted, LEVEL)
    table = intervals.coverage_by_decile(predicted, actual, low, high, zero_inclusion=keep)
    deciles = table.drop("overall")
    assert deciles["zero_share"].iloc[0] > LEVEL + 0.1 and deciles["coverage"].iloc[0] > LEVEL + 0.1
    assert np.all(np.abs(deciles["randomized"] - LEVEL) < _tolerance(4_000) + 0.01)
    assert "randomized" not in intervals.coverage_by_decile(predicted, actual, low, high).columns


def test_conformal_spend_is_wider_at_a_higher_level_and_refuses_too_few_rows():
    rng = np.random.default_rng(3)
    predicted = rng.lognormal(3, 1, 5_000)
    actual = predicted * rng.gamma(2, 0.5, 5_000)
    calibration = intervals.fit_conformal_spend(predicted, actual, bins=5)
    low80, high80 = calibration.interval(predicted, 0.8)
    low95, high95 = calibration.interval(predicted, 0.95)
    assert (low95 <= low80).all() and (high95 >= high80).all() and (high95 > high80).any()
    with pytest.raises(ValueError, match="at least 20 held-out rows"):
        intervals.fit_conformal_spend(predicted[:10], actual[:10], bins=10)


# --- BTYD: against outcomes drawn from BG/NBD × Gamma-Gamma itself -----------------------------------------------


def _bgnbd_customers(n: int, seed: int, weeks: float = 52.0, horizon: float = 52.0) -> tuple[pd.DataFrame, np.ndarray]:
    """Feature frame (the BTYD columns) of customers drawn from BG/NBD × Gamma-Gamma, and their holdout spend."""
    rng = np.random.default_rng(seed)
    r, alpha, a, b = 0.6, 4.0, 0.8, 3.0
    p_gg, q, gamma = 4.0, 3.0, 15.0
    lam = rng.gamma(r, 1 / alpha, n)
    drop = rng.beta(a, b, n)
    nu = rng.gamma(q, 1 / gamma, n)
    T = rng.uniform(10, weeks, n)
    rows, future = [], np.zeros(n)
    for i in range(n):
        t, times = 0.0, []
        while True:  # the first purchase at 0, then Poisson repeat purchases, each followed by dropout w.p. p
            t += rng.exponential(1 / lam[i])
            if t > T[i] + horizon:
                break
            times.append(t)
            if rng.random() < drop[i]:
                break
        calib = [s for s in times if s <= T[i]]
        hold = len(times) - len(calib)
        values = rng.gamma(p_gg, 1 / nu[i], len(calib) + hold)
        future[i] = values[len(calib) :].sum()
        x = len(calib)
        rows.append((x, (T[i] - (calib[-1] if calib else 0.0)) * 7, T[i] * 7, values[:x].mean() if x else np.nan))
    frame = pd.DataFrame(rows, columns=["repeat_purchase_days", "recency_days", "first_purchase_days", "spend_mean"])
    frame["repeat_spend_mean"] = frame.pop("spend_mean")
    frame.index = pd.RangeIndex(1, n + 1, name="customer_id")
    return frame, future


@pytest.fixture(scope="module")
def bgnbd_world():
    X_fit, _ = _bgnbd_customers(6_000, seed=11)
    model = BtydClv(horizon_days=364, time_unit="W").fit(X_fit)
    X, future = _bgnbd_customers(4_000, seed=12)
    return model, X, future


def test_btyd_interval_covers_spend_drawn_from_the_model(bgnbd_world):
    model, X, future = bgnbd_world
    low, high = intervals.btyd_spend_interval(model, X, LEVEL, draws=200, seed=42)
    predicted = model.predict(X)
    table = intervals.coverage_by_decile(predicted, future, low, high, deciles=5)
    # upper deciles (customers likely to buy) hold the level; the lower ones hold at least it (zero mass)
    assert abs(table.loc["overall", "coverage"] - LEVEL) < 0.08
    top = table.drop("overall").iloc[-2:]
    assert np.all(np.abs(top["coverage"] - LEVEL) < _tolerance(800) + 0.02)
    # an interval that has a width holds the expected spend
    wide = high > low
    assert ((low[wide] <= predicted[wide]) & (predicted[wide] <= high[wide])).mean() > 0.95


def test_btyd_draws_average_to_the_model_prediction_and_parameter_uncertainty_widens(bgnbd_world):
    from crmscore.clv.value import summary_from_features

    model, X, _ = bgnbd_world
    summary = summary_from_features(X, "W")
    futures = np.concatenate(list(intervals._btyd_futures(model, summary, 52.0, 400, 7)))
    predicted = model.predict(X)
    assert futures.mean() == pytest.approx(predicted.mean(), rel=0.05)
    assert np.corrcoef(futures.mean(axis=1), predicted)[0, 1] > 0.98
    # without parameter uncertainty (a covariance of 0) the intervals of the top customers are not wider
    certain = BtydClv(horizon_days=364, time_unit="W").fit(X)
    for fitted in (certain.transaction_model_, certain.spend_model_):
        fitted.covariance_log_ = np.zeros_like(fitted.covariance_log_)
    low_c, high_c = intervals.btyd_spend_interval(certain, X, LEVEL, 200, 42)
    low, high = intervals.btyd_spend_interval(certain.__class__(horizon_days=364).fit(X), X, LEVEL, 200, 42)
    assert np.mean(high - low) >= np.mean(high_c - low_c) * 0.99


def test_btyd_interval_is_the_same_for_any_chunking_and_seed_dependent(bgnbd_world):
    model, X, _ = bgnbd_world
    low, high = intervals.btyd_spend_interval(model, X, LEVEL, 200, 42)
    parts = [intervals.btyd_spend_interval(model, X.iloc[s : s + 777], LEVEL, 200, 42) for s in range(0, len(X), 777)]
    assert np.array_equal(low, np.concatenate([p[0] for p in parts]))
    assert np.array_equal(high, np.concatenate([p[1] for p in parts]))
    other = intervals.btyd_spend_interval(model, X, LEVEL, 200, 43)
    assert not np.array_equal(high, other[1])


def test_btyd_interval_is_zero_for_customers_who_never_bought(bgnbd_world):
    model, X, _ = bgnbd_world
    X = X.copy()
    X.iloc[:5, X.columns.get_loc("repeat_purchase_days")] = np.nan
    low, high = intervals.btyd_spend_interval(model, X, LEVEL, 200, 42)
    assert (low[:5] == 0).all() and (high[:5] == 0).all() and (high[5:] > 0).any()


# --- churn --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def churn_data():
    rng = np.random.default_rng(5)
    n = 12_000
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.uniform(size=n)})
    p = 1 / (1 + np.exp(-(X["a"] * 1.2 - 0.8 * X["b"] - 1)))
    y = (rng.random(n) < p).astype(int)
    return X, y, p.to_numpy()


@pytest.mark.parametrize("validation", [True, False], ids=["one model", "cross-fitted"])
def test_churn_interval_brackets_the_probability_and_covers_the_decile_rates(churn_data, validation):
    X, y, truth = churn_data
    train, test = slice(0, 8_000), slice(8_000, None)
    model = ChurnModel(max_trees=80, calibration="sigmoid", calibration_bootstraps=40, linear_blend=False, n_folds=3)
    if validation:
        model.fit(X.iloc[:6_000], y[:6_000], X.iloc[6_000:8_000], y[6_000:8_000])
    else:
        model.fit(X.iloc[train], y[train])
    p, low, high = intervals.churn_interval(model, X.iloc[test], LEVEL)
    assert np.array_equal(p, model.predict_proba(X.iloc[test])[:, 1])
    assert ((low <= p + 1e-12) & (p <= high + 1e-12)).mean() > 0.95
    assert (high - low).mean() > 0
    # the interval of each decile's mean probability lies near the decile's true churn rate
    decile = pd.qcut(p, 10, labels=False)
    true_rate = pd.Series(truth[test]).groupby(decile).mean().to_numpy()
    mean_low = pd.Series(low).groupby(decile).mean().to_numpy()
    mean_high = pd.Series(high).groupby(decile).mean().to_numpy()
    assert np.all(true_rate >= mean_low - 0.08) and np.all(true_rate <= mean_high + 0.08)


def test_spread_boosters_join_the_interval_and_leave_predictions_and_reasons_alone(churn_data):
    X, y, _ = churn_data
    kwargs = dict(max_trees=60, calibration="sigmoid", calibration_bootstraps=30, linear_blend=False, seed=3)
    plain = ChurnModel(**kwargs).fit(X[:6000], y[:6000], X[6000:8000], y[6000:8000])
    spread = ChurnModel(**kwargs, spread_folds=3).fit(X[:6000], y[:6000], X[6000:8000], y[6000:8000])
    assert len(spread.spread_boosters_) == 3 and plain.spread_boosters_ == [] and len(spread.boosters_) == 1
    test = X.iloc[8000:9000]
    assert np.array_equal(spread.predict_proba(test), plain.predict_proba(test))
    assert np.array_equal(spread.shap_values(test)[0], plain.shap_values(test)[0])
    p, low, high = intervals.churn_interval(spread, test, LEVEL)
    _, plain_low, plain_high = intervals.churn_interval(plain, test, LEVEL)
    assert (high - low).mean() > 1.2 * (plain_high - plain_low).mean()
    assert ((low <= p + 1e-12) & (p <= high + 1e-12)).mean() > 0.95
    # each customer's spread is her own: the width varies beyond what the calibrators' slope gives
    ratio = (high - low) / np.maximum(plain_high - plain_low, 1e-12)
    assert ratio.std() > 0.1


def test_churn_rate_interval_holds_realized_rates_of_groups():
    rng = np.random.default_rng(6)
    n, groups = 40_000, 200
    p = rng.beta(1.0, 3.0, n)
    group = rng.integers(0, groups, n)
    # exact probabilities (an interval of width 0): only the outcome's noise is left
    exact = intervals.churn_rate_interval(p, p, p, group, LEVEL)
    assert np.allclose(exact["rate"], exact["rate_low"]) and np.allclose(exact["rate"], exact["rate_high"])
    assert np.allclose(exact["expected_churners"], pd.Series(p).groupby(group).sum())
    inside = []
    for _ in range(10):
        realized = pd.Series(rng.random(n) < p).groupby(group).mean()
        inside.append(((realized >= exact["realized_low"]) & (realized <= exact["realized_high"])).mean())
    assert abs(np.mean(inside) - LEVEL) < _tolerance(10 * groups)
    # an uncertain rate widens the realized interval, on its own side
    wide = intervals.churn_rate_interval(p, p - 0.05, p + 0.02, None, LEVEL).loc["all"]
    assert wide["rate_low"] == pytest.approx(p.mean() - 0.05) and wide["rate_high"] == pytest.approx(p.mean() + 0.02)
    assert wide["realized_low"] < wide["rate_low"] and wide["realized_high"] > wide["rate_high"]
    assert wide["rate"] - wide["realized_low"] > wide["realized_high"] - wide["rate"]


def test_churn_interval_is_nan_without_bootstrapped_calibrators(churn_data):
    X, y, _ = churn_data
    model = ChurnModel(max_trees=30, calibration="sigmoid", linear_blend=False).fit(
        X[:3000], y[:3000], X[3000:4000], y[3000:4000]
    )
    p, low, high = intervals.churn_interval(model, X[4000:4500])
    assert np.isnan(low).all() and np.isnan(high).all() and np.isfinite(p).all()


# --- tier confidence -----------------------------------------------------------------------------------------------


def _scorecard_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frequency = rng.poisson(rng.gamma(1.0, 4.0, n)).astype(float)
    return pd.DataFrame(
        {
            "monetary_365d": frequency * rng.gamma(3, 20, n),
            "collection_rate": rng.uniform(0.5, 1, n),
            "frequency_365d": frequency,
            "product_breadth_365d": np.minimum(frequency, rng.poisson(2, n)).astype(float),
            "contacts_365d": rng.poisson(1.5, n).astype(float),
        },
        index=pd.RangeIndex(1, n + 1, name="customer_id"),
    )


def test_tier_confidence_is_lower_near_a_cutoff_and_identical_for_any_chunking():
    settings = Settings()
    frame = _scorecard_frame(6_000, 8)
    scale = fit_tier_scale(frame, None, settings.tiers)
    cutoffs = settings.tiers.scorecard.cutoffs
    confidence = intervals.tier_confidence(frame, scale, cutoffs, draws=200, seed=42)
    assert ((confidence >= 0) & (confidence <= 1)).all()
    points = scale.scorecard.points(frame)["total"].to_numpy()
    distance = np.min(np.abs(points[:, None] - np.array(list(cutoffs.values()))[None, :]), axis=1)
    near, far = distance < 1, distance > 15
    assert confidence[near].mean() < 0.75 < confidence[far].mean()
    half = intervals.tier_confidence(frame.iloc[:2_500], scale, cutoffs, draws=200, seed=42)
    assert np.array_equal(half, confidence[:2_500])
    assert not np.array_equal(intervals.tier_confidence(frame, scale, cutoffs, draws=200, seed=1), confidence)


def test_tier_confidence_redraws_the_collection_rate_from_the_invoices_behind_it():
    settings = Settings()
    frame = _scorecard_frame(6_000, 9)
    scale = fit_tier_scale(frame, None, settings.tiers)
    cutoffs = settings.tiers.scorecard.cutoffs
    held = intervals.tier_confidence(frame, scale, cutoffs, draws=200, seed=42)  # no invoice counts: held
    few, many = frame.assign(invoices_due=2.0), frame.assign(invoices_due=400.0)
    confidence_few = intervals.tier_confidence(few, scale, cutoffs, draws=200, seed=42)
    confidence_many = intervals.tier_confidence(many, scale, cutoffs, draws=200, seed=42)
    # a paid share of 2 invoices says little, of 400 a lot: measured again it moves less, and so does the tier
    assert confidence_few.mean() < confidence_many.mean() - 0.05
    assert abs(confidence_many.mean() - held.mean()) < 0.03
    # the table (up to 60 invoices) and the normal beyond it agree where they meet
    at_60 = intervals.tier_confidence(frame.assign(invoices_due=60.0), scale, cutoffs, draws=200, seed=42)
    at_61 = intervals.tier_confidence(frame.assign(invoices_due=61.0), scale, cutoffs, draws=200, seed=42)
    assert abs(at_60.mean() - at_61.mean()) < 0.01
    half = intervals.tier_confidence(few.iloc[:2_500], scale, cutoffs, draws=200, seed=42)
    assert np.array_equal(half, confidence_few[:2_500])


def test_tier_confidence_under_the_pyramid_reads_the_clv_interval():
    settings = Settings(tiers={"method": "pyramid"})
    rng = np.random.default_rng(4)
    clv = pd.Series(rng.lognormal(4, 1, 2_000), index=pd.RangeIndex(1, 2_001, name="customer_id"))
    frame = pd.DataFrame(index=clv.index)
    scale = fit_tier_scale(frame, clv, settings.tiers)
    narrow = intervals.tier_confidence(frame, scale, {}, clv, clv * 0.99, clv * 1.01)
    wide = intervals.tier_confidence(frame, scale, {}, clv, clv * 0.2, clv * 5)
    assert np.nanmean(narrow) > np.nanmean(wide)
    assert np.nanmin(narrow) >= 0 and np.nanmax(narrow) <= 1


def test_borderline_summary_counts_customers_and_value_per_tier():
    tier = pd.Series(["A", "A", "B", "B", "B", None])
    borderline = pd.Series([True, False, True, True, False, True])
    clv = pd.Series([100.0, 300.0, 10.0, 20.0, 70.0, 5.0])
    table = intervals.borderline_summary(tier, borderline, clv)
    assert table.loc["A", "customers"] == 2 and table.loc["A", "borderline"] == 1
    assert table.loc["A", "borderline_clv_share"] == pytest.approx(0.25)
    assert table.loc["B", "borderline_share"] == pytest.approx(2 / 3)
    assert table.loc["B", "share_of_all_clv"] == pytest.approx(30 / 500)


# --- scoring: the columns in scores.parquet ---------------------------------------------------------------


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("intervals")
    budget = {"trials": 2, "timeout_seconds": 600, "max_trees": 120}
    with champions(root, budget, scoring={"out_dir": str(root / "scores")}) as made:
        yield made


def _scores(settings: Settings, out: Path) -> pd.DataFrame:
    result = score_stage(settings, "2026-09-30", out_dir=out, progress=False)
    return pd.read_parquet(result.out_dir / "scores.parquet")


def _with(settings: Settings, section: str, **updates) -> Settings:
    return settings.model_copy(update={section: getattr(settings, section).model_copy(update=updates)})


def test_scores_carry_intervals_tier_confidence_and_borderline(ws, tmp_path):
    scores = _scores(ws.settings, tmp_path / "a")
    for column in ("churn_low", "churn_high", "clv_low", "clv_high", "tier_confidence", "borderline"):
        assert column in scores.columns
    assert scores[["churn_low", "churn_high", "clv_low", "clv_high", "tier_confidence"]].notna().all().all()
    assert (scores["churn_low"] <= scores["churn_high"]).all() and (scores["clv_low"] <= scores["clv_high"]).all()
    assert (scores["clv_low"] >= 0).all()
    flagged = scores["tier_confidence"] < ws.settings.intervals.borderline_below
    assert (scores["borderline"].astype(bool) == flagged).all()
    assert 0 < flagged.sum() < len(scores)
    # same data, params and seed: the same intervals, for another chunk size and worker count too
    again = _scores(_with(ws.settings, "scoring", chunk_size=333, workers=1), tmp_path / "b")
    columns = ["customer_id", "churn_low", "churn_high", "clv_low", "clv_high", "tier_confidence", "borderline"]
    pd.testing.assert_frame_equal(scores[columns], again[columns])


def test_scoring_with_intervals_off_leaves_the_columns_null(ws, tmp_path):
    scores = _scores(_with(ws.settings, "intervals", enabled=False), tmp_path / "off")
    assert scores[["churn_low", "clv_high", "tier_confidence"]].isna().all().all()
    assert scores["borderline"].isna().all()
    assert scores["churn_probability"].notna().all()


def test_registered_clv_model_carries_its_conformal_calibration(ws):
    from crmscore.stages import load_scoring_models

    models = load_scoring_models(ws.settings)
    calibration = models.clv.estimator.conformal_
    assert isinstance(calibration, intervals.ConformalSpend)
    assert calibration.counts.sum() > 0
    assert models.churn.estimator.calibrator_draws_
    assert len(models.churn.estimator.spread_boosters_) == ws.settings.intervals.churn_spread_folds
    metrics = ws.trained["clv"].metrics
    assert 0 < metrics["ml_test_interval_coverage"] <= 1
    # the tie at spend 0 broken at random never covers more than the deterministic interval
    assert 0 < metrics["ml_test_interval_randomized_coverage"] <= metrics["ml_test_interval_coverage"]
    churn_metrics = ws.trained["churn"].metrics
    assert 0 <= churn_metrics["test_interval_deciles_inside"] <= 10 and churn_metrics["test_interval_mean_width"] > 0


# --- the review report -------------------------------------------------------------------------------------------


def _report_scores(with_confidence: bool) -> pd.DataFrame:
    n = 40
    scores = pd.DataFrame(
        {
            "customer_id": np.arange(1, n + 1),
            "tier": ["A"] * 10 + ["B"] * 30,
            "risk_band": ["low"] * n,
            "clv": np.r_[np.full(10, 100.0), np.full(30, 10.0)],
            "value_at_risk": np.full(n, 1.0),
            "clv_low": np.full(n, 1.0),
            "clv_high": np.full(n, 51.0),
            "churn_probability": np.r_[np.full(10, 0.1), np.full(30, 0.5)],
            "churn_low": np.r_[np.full(10, 0.08), np.full(30, 0.45)],
            "churn_high": np.r_[np.full(10, 0.12), np.full(30, 0.55)],
        }
    )
    if not with_confidence:
        scores[["churn_low", "churn_high"]] = np.nan
    confidence = np.r_[np.full(4, 0.3), np.full(6, 0.9), np.full(15, 0.5), np.full(15, 0.95)]
    scores["tier_confidence"] = confidence if with_confidence else np.nan
    flags = confidence < 0.6 if with_confidence else [None] * n
    scores["borderline"] = pd.array(flags, dtype="boolean")
    return scores


def test_report_lists_borderline_customers_per_tier_and_their_share_of_value():
    from crmscore.report import tiers_section

    section = tiers_section(_report_scores(True), pd.DataFrame(), {"previous_scoring": None})
    assert "How sure: borderline customers" in section.body
    assert "19 of 40 tiered customers are borderline" in section.body
    assert "mean CLV interval width 50" in section.body
    # tier A: 4 of 10 borderline holding 40 % of A's value; tier B: 15 of 30 holding 50 %
    assert "40.0%" in section.body and "50.0%" in section.body
    # expected churners: A 10 × 10 % = 1, B 30 × 50 % = 15, with the rate intervals as scored
    assert "Expected churners per tier" in section.body
    assert "8.0% – 12.0%" in section.body and "45.0% – 55.0%" in section.body
    part = section.body.split("Expected churners per tier")[1]
    assert "<td>1</td>" in part and "<td>15</td>" in part
    low, high = (float(v) for v in re.findall(r"<td>(\d+) – (\d+)</td>", part)[-1])
    assert low < 13.5 < 16.5 < high  # chance widens 30 × [45 %, 55 %]


def test_report_says_when_a_scoring_has_no_tier_confidence():
    from crmscore.report import tiers_section

    section = tiers_section(_report_scores(False), pd.DataFrame(), {"previous_scoring": None})
    assert "no tier confidence (scored without intervals)" in section.body
    assert "Expected churners per tier" not in section.body
