"""Tests for the CLV (regression) section of crmscore.evaluation: hand-computed values, agreement with
Google's lifetime_value metrics, the tie rule, and the error messages."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from crmscore import evaluation

# ---------------------------------------------------------------------------------------------------
# fixtures and reference implementations
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def value_predictions() -> tuple[np.ndarray, np.ndarray]:
    """5,000 customers, ~40 % spending nothing, with distinct, informative but noisy predictions."""
    rng = np.random.default_rng(8)
    y = rng.gamma(0.6, 120.0, 5_000) * rng.binomial(1, 0.6, 5_000)
    y_pred = y * rng.lognormal(0.0, 0.8, 5_000) + rng.uniform(0.0, 15.0, 5_000)
    return y, y_pred


def google_normalized_gini(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Google's lifetime_value/metrics.py (cumulative_true + gini_from_gain), restated for comparison."""

    def cumulative_true(values: np.ndarray, ranking: np.ndarray) -> np.ndarray:
        df = pd.DataFrame({"y_true": values, "y_pred": ranking}).sort_values(by="y_pred", ascending=False)
        return (df["y_true"].cumsum() / df["y_true"].sum()).to_numpy()

    gain = pd.DataFrame({"ground_truth": cumulative_true(y_true, y_true), "model": cumulative_true(y_true, y_pred)})
    raw = gain.apply(lambda column: 2 * column.sum() / gain.shape[0] - 1.0)
    return float(raw.iloc[1] / raw.iloc[0])


def google_decile_stats(y_true: np.ndarray, y_pred: np.ndarray) -> pd.DataFrame:
    """Google's decile_stats: pd.qcut into ten buckets of y_pred (bucket '0' the lowest), means and MAPE."""
    decile = pd.qcut(y_pred, q=10, labels=[str(i) for i in range(10)])
    df = (
        pd.DataFrame({"y_true": y_true, "y_pred": y_pred, "decile": decile})
        .groupby("decile", observed=False)
        .agg(label_mean=("y_true", "mean"), pred_mean=("y_pred", "mean"))
    )
    df["decile_mape"] = np.abs(df["pred_mean"] - df["label_mean"]) / df["label_mean"]
    return df


# Four customers used in several hand computations. Ranked by their actual value: 60, 30, 10, 0 out of
# 100, so the perfect gains are G = 0.6, 0.9, 1.0, 1.0 and the perfect raw Gini is 2 * 3.5 / 4 - 1 = 0.75.
HAND_Y = np.array([0.0, 10.0, 30.0, 60.0])


# ---------------------------------------------------------------------------------------------------
# normalized Gini
# ---------------------------------------------------------------------------------------------------


def test_perfect_ranking_has_gini_one(value_predictions):
    y, _ = value_predictions
    assert evaluation.normalized_gini(y, y) == pytest.approx(1.0)
    # Only the order matters: any increasing transform of the truth is still a perfect ranking.
    assert evaluation.normalized_gini(HAND_Y, np.sqrt(HAND_Y) + 1.0) == pytest.approx(1.0)


def test_gini_by_hand():
    # Ranked by y_pred (4, 3, 2, 1) the actual values are 0, 30, 60, 10: G = 0, 0.3, 0.9, 1.0, sum 2.2,
    # raw Gini = 2 * 2.2 / 4 - 1 = 0.1, normalised = 0.1 / 0.75.
    assert evaluation.normalized_gini(HAND_Y, [4.0, 1.0, 3.0, 2.0]) == pytest.approx(0.1 / 0.75)


def test_reversed_ranking_gives_the_negative_value_up_to_the_one_over_n_offset():
    # Reversed: G = 0, 0.1, 0.4, 1.0, sum 1.5, raw = -0.25; normalised -1/3 = -1 + 2 / (n * raw_perfect).
    assert evaluation.normalized_gini(HAND_Y, -HAND_Y + 100.0) == pytest.approx(-1.0 / 3.0)
    rng = np.random.default_rng(0)
    y = rng.gamma(1.0, 50.0, 2_000)
    perfect_raw = 2 * np.mean(np.cumsum(np.sort(y)[::-1]) / y.sum()) - 1
    reversed_gini = evaluation.normalized_gini(y, y.max() - y)
    assert reversed_gini == pytest.approx(-1.0 + 2.0 / (len(y) * perfect_raw))
    assert reversed_gini < -0.99


def test_gini_matches_google_lifetime_value_without_ties(value_predictions):
    y, y_pred = value_predictions
    assert evaluation.normalized_gini(y, y_pred) == pytest.approx(google_normalized_gini(y, y_pred), rel=1e-12)


def test_tied_predictions_share_their_mean_value_whatever_the_row_order():
    # Every prediction tied: each customer counts with the mean, G_k = k / 4, raw = 2 * 2.5 / 4 - 1 = 0.25.
    constant = np.full(4, 7.0)
    assert evaluation.normalized_gini(HAND_Y, constant) == pytest.approx(0.25 / 0.75)
    assert evaluation.normalized_gini(HAND_Y[::-1], constant) == pytest.approx(0.25 / 0.75)
    # A partial tie: 60 ranked first, then 0 and 30 tied (15 each), then 10: G = 0.6, 0.75, 0.9, 1.0.
    assert evaluation.normalized_gini(HAND_Y, [5.0, 1.0, 5.0, 9.0]) == pytest.approx((2 * 3.25 / 4 - 1) / 0.75)


def test_gini_is_undefined_without_value():
    with pytest.raises(ValueError, match="normalized_gini needs some positive value in y_true, got a total of 0"):
        evaluation.normalized_gini([0.0, 0.0, 0.0], [1.0, 2.0, 3.0])


def test_cumulative_value_curve_runs_from_origin_to_one(value_predictions):
    y, y_pred = value_predictions
    share_of_customers, share_of_value = evaluation.cumulative_value_curve(y, y_pred)
    assert len(share_of_customers) == len(share_of_value) == len(y) + 1
    assert (share_of_customers[0], share_of_value[0]) == (0.0, 0.0)
    assert (share_of_customers[-1], share_of_value[-1]) == (1.0, 1.0)
    assert np.all(np.diff(share_of_value) >= 0)


# ---------------------------------------------------------------------------------------------------
# Spearman
# ---------------------------------------------------------------------------------------------------


def test_spearman_agrees_with_scipy_and_ignores_scale(value_predictions):
    y, y_pred = value_predictions
    assert evaluation.spearman(y, y_pred) == pytest.approx(stats.spearmanr(y, y_pred).statistic)
    assert evaluation.spearman(HAND_Y, HAND_Y**2) == pytest.approx(1.0)
    assert evaluation.spearman(HAND_Y, 100.0 - HAND_Y) == pytest.approx(-1.0)


@pytest.mark.parametrize(
    ("y", "y_pred", "message"),
    [
        (
            [1.0, 2.0, 3.0],
            [5.0, 5.0, 5.0],
            r"spearman is undefined when y_pred is constant \(all 3 value\(s\) equal 5\)",
        ),
        ([4.0, 4.0], [1.0, 2.0], "spearman is undefined when y_true is constant"),
        ([4.0], [1.0], "spearman is undefined when y_true is constant"),
    ],
)
def test_spearman_rejects_constant_input(y, y_pred, message):
    with pytest.raises(ValueError, match=message):
        evaluation.spearman(y, y_pred)


# ---------------------------------------------------------------------------------------------------
# deciles
# ---------------------------------------------------------------------------------------------------


def test_decile_table_columns_order_and_totals(value_predictions):
    y, y_pred = value_predictions
    table = evaluation.decile_table(y, y_pred)
    assert list(table.columns) == ["bin", "customers", "mean_predicted", "mean_actual", "label_share", "abs_pct_error"]
    assert table["bin"].tolist() == list(range(1, 11))
    assert table["customers"].sum() == len(y)
    assert table["label_share"].sum() == pytest.approx(1.0)
    np.testing.assert_allclose(np.average(table["mean_actual"], weights=table["customers"]), y.mean())
    # Bin 1 holds the lowest predictions, as in Google's qcut.
    assert table["mean_predicted"].is_monotonic_increasing


def test_decile_table_and_mape_match_google_decile_stats(value_predictions):
    y, y_pred = value_predictions  # 5,000 distinct predictions: qcut's bins are 500 customers each
    google = google_decile_stats(y, y_pred)
    table = evaluation.decile_table(y, y_pred)
    np.testing.assert_allclose(table["mean_actual"], google["label_mean"])
    np.testing.assert_allclose(table["mean_predicted"], google["pred_mean"])
    np.testing.assert_allclose(table["abs_pct_error"], google["decile_mape"])
    assert evaluation.decile_mape(y, y_pred) == pytest.approx(google["decile_mape"].mean())


def test_decile_table_by_hand_with_three_bins():
    # Predictions swap each pair of customers, so every bin's mean is right while every customer is wrong.
    y = [1.0, 3.0, 10.0, 30.0, 100.0, 300.0]
    y_pred = [3.0, 1.0, 30.0, 10.0, 300.0, 100.0]
    table = evaluation.decile_table(y, y_pred, n_bins=3)
    assert table["customers"].tolist() == [2, 2, 2]
    np.testing.assert_allclose(table["mean_actual"], [2.0, 20.0, 200.0])
    np.testing.assert_allclose(table["mean_predicted"], [2.0, 20.0, 200.0])
    np.testing.assert_allclose(table["label_share"], [4 / 444, 40 / 444, 400 / 444])
    np.testing.assert_allclose(table["abs_pct_error"], [0.0, 0.0, 0.0])
    assert evaluation.decile_mape(y, y_pred, n_bins=3) == 0.0
    assert evaluation.mae(y, y_pred) > 0


def test_decile_mape_by_hand_skips_bins_without_value():
    # Bin 1 (predictions 1, 2) spent nothing: its percentage error is undefined and left out.
    # Bin 2 (predictions 3, 4): mean actual 15, mean predicted 3.5, error 11.5 / 15.
    table = evaluation.decile_table([0.0, 0.0, 10.0, 20.0], [1.0, 2.0, 3.0, 4.0], n_bins=2)
    assert np.isnan(table["abs_pct_error"].iloc[0])
    assert table["abs_pct_error"].iloc[1] == pytest.approx(11.5 / 15)
    assert evaluation.decile_mape([0.0, 0.0, 10.0, 20.0], [1.0, 2.0, 3.0, 4.0], n_bins=2) == pytest.approx(11.5 / 15)
    # Over-predicting by 50 % in every bin gives a decile MAPE of 0.5.
    assert evaluation.decile_mape([1.0, 2.0, 3.0, 4.0], [1.5, 3.0, 4.5, 6.0], n_bins=2) == pytest.approx(0.5)


def test_decile_bins_follow_the_ceiling_rule_from_the_top():
    rng = np.random.default_rng(0)
    y, y_pred = rng.uniform(1, 10, 25), rng.uniform(1, 10, 25)
    table = evaluation.decile_table(y, y_pred)
    # Counted from the top, bin k ends after ceil(2.5 k) customers: 3, 2, 3, 2, ... ; listed lowest first.
    assert table["customers"].tolist() == [2, 3, 2, 3, 2, 3, 2, 3, 2, 3]
    assert table["label_share"].iloc[-1] == pytest.approx(evaluation.top_decile_capture(y, y_pred, 0.1))


def test_decile_table_tied_predictions_do_not_depend_on_row_order():
    y = np.arange(10, dtype=float)
    constant = np.ones(10)
    for values in (y, y[::-1]):
        table = evaluation.decile_table(values, constant, n_bins=5)
        np.testing.assert_allclose(table["mean_actual"], np.full(5, 4.5))
        np.testing.assert_allclose(table["label_share"], np.full(5, 0.2))


def test_decile_table_needs_a_customer_per_bin_and_some_value():
    with pytest.raises(ValueError, match="decile_table needs at least n_bins=10 customers, got 5"):
        evaluation.decile_table([1.0, 2.0, 3.0, 4.0, 5.0], [1.0, 2.0, 3.0, 4.0, 5.0])
    with pytest.raises(ValueError, match="decile_mape needs some positive value in y_true"):
        evaluation.decile_mape(np.zeros(20), np.arange(20.0))
    with pytest.raises(ValueError, match="n_bins must be a positive integer"):
        evaluation.decile_table([1.0, 2.0], [1.0, 2.0], n_bins=0)


# ---------------------------------------------------------------------------------------------------
# level and capture
# ---------------------------------------------------------------------------------------------------


def test_mae_and_aggregate_bias_by_hand():
    y = [10.0, 20.0, 30.0, 40.0]  # total 100
    over = [15.0, 20.0, 35.0, 40.0]  # total 110
    under = [5.0, 20.0, 30.0, 35.0]  # total 90
    assert evaluation.mae(y, over) == pytest.approx(2.5)
    assert evaluation.aggregate_bias(y, over) == pytest.approx(0.1)
    assert evaluation.aggregate_bias(y, under) == pytest.approx(-0.1)
    assert evaluation.aggregate_bias(y, y) == 0.0


def test_aggregate_bias_needs_value():
    with pytest.raises(ValueError, match="aggregate_bias needs some positive value in y_true"):
        evaluation.aggregate_bias([0.0, 0.0], [1.0, 2.0])


def test_top_decile_capture_by_hand():
    # 30 customers: the top 10 % is exactly 3 of them (ceil(0.1 * 30) with the rounding guard).
    y = np.r_[np.full(3, 100.0), np.full(27, 10.0)]  # total 570
    y_pred = np.arange(30.0)[::-1]
    assert evaluation.top_decile_capture(y, y_pred) == pytest.approx(300 / 570)
    assert evaluation.top_decile_capture(y, y_pred, share=0.2) == pytest.approx(330 / 570)
    assert evaluation.top_decile_capture(y, y_pred, share=1.0) == 1.0


def test_top_decile_capture_with_tied_predictions_at_the_cut():
    # The top 25 % is one customer, but two share the highest prediction: each counts with their mean, 5 of 10.
    tied = [1.0, 1.0, 0.0, 0.0]
    assert evaluation.top_decile_capture([10.0, 0.0, 0.0, 0.0], tied, share=0.25) == pytest.approx(0.5)
    assert evaluation.top_decile_capture([0.0, 10.0, 0.0, 0.0], tied, share=0.25) == pytest.approx(0.5)
    assert evaluation.top_decile_capture([0.0, 10.0, 0.0, 0.0], tied, share=0.5) == pytest.approx(1.0)


@pytest.mark.parametrize("share", [0, 1.5, float("nan"), "10%"])
def test_top_decile_capture_rejects_a_bad_share(share):
    with pytest.raises(ValueError, match="share must be"):
        evaluation.top_decile_capture([0.0, 0.0], [1.0, 2.0], share)


# ---------------------------------------------------------------------------------------------------
# everything at once, and the direction of each metric
# ---------------------------------------------------------------------------------------------------


def test_value_metrics_keys_and_values(value_predictions):
    y, y_pred = value_predictions
    metrics = evaluation.value_metrics(y, y_pred)
    assert list(metrics) == [
        "gini",
        "spearman",
        "decile_mape",
        "mae",
        "bias",
        "top_decile_capture",
        "mean_actual",
        "mean_predicted",
        "n",
    ]
    assert tuple(metrics) == evaluation.VALUE_METRIC_KEYS
    assert all(type(value) is float for value in metrics.values())
    assert metrics["gini"] == pytest.approx(evaluation.normalized_gini(y, y_pred))
    assert metrics["spearman"] == pytest.approx(evaluation.spearman(y, y_pred))
    assert metrics["decile_mape"] == pytest.approx(evaluation.decile_mape(y, y_pred))
    assert metrics["mae"] == pytest.approx(evaluation.mae(y, y_pred))
    assert metrics["bias"] == pytest.approx(evaluation.aggregate_bias(y, y_pred))
    assert metrics["top_decile_capture"] == pytest.approx(evaluation.top_decile_capture(y, y_pred))
    assert metrics["mean_actual"] == pytest.approx(y.mean())
    assert metrics["mean_predicted"] == pytest.approx(y_pred.mean())
    assert metrics["n"] == len(y)


def test_value_metrics_need_value():
    with pytest.raises(ValueError, match="value_metrics needs some positive value in y_true"):
        evaluation.value_metrics(np.zeros(20), np.arange(20.0))


def test_lower_is_better_names_logged_metrics_and_leaves_bias_out():
    assert evaluation.LOWER_IS_BETTER == {"mae", "decile_mape", "log_loss", "brier", "ece"}
    logged = set(evaluation.VALUE_METRIC_KEYS) | set(evaluation.CLASSIFICATION_METRIC_KEYS)
    assert evaluation.LOWER_IS_BETTER <= logged
    assert "bias" not in evaluation.LOWER_IS_BETTER
    assert "gini" not in evaluation.LOWER_IS_BETTER


def test_new_names_are_exported():
    for name in ("value_metrics", "VALUE_METRIC_KEYS", "LOWER_IS_BETTER", "lorenz_curve", "decile_table"):
        assert name in evaluation.__all__
        assert hasattr(evaluation, name)


# ---------------------------------------------------------------------------------------------------
# value concentration
# ---------------------------------------------------------------------------------------------------


def test_lorenz_curve_by_hand():
    share_of_customers, share_of_value = evaluation.lorenz_curve([1.0, 4.0, 2.0, 3.0])
    np.testing.assert_allclose(share_of_customers, [0.0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(share_of_value, [0.0, 0.4, 0.7, 0.9, 1.0])
    assert evaluation.top_share_of_value([1.0, 4.0, 2.0, 3.0], share=0.5) == pytest.approx(0.7)


def test_lorenz_curve_endpoints_and_the_eighty_twenty_rule():
    values = np.r_[40.0, 40.0, np.full(8, 2.5)]  # two of ten customers hold 80 of 100
    share_of_customers, share_of_value = evaluation.lorenz_curve(values)
    assert (share_of_customers[0], share_of_value[0]) == (0.0, 0.0)
    assert (share_of_customers[-1], share_of_value[-1]) == (1.0, 1.0)
    assert evaluation.top_share_of_value(values) == pytest.approx(0.8)
    # Equal values lie on the diagonal.
    _, equal = evaluation.lorenz_curve(np.full(5, 3.0))
    np.testing.assert_allclose(equal, np.linspace(0, 1, 6))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([0.0, 0.0], "lorenz_curve needs some positive value in values"),
        ([1.0, -2.0], r"values must be >= 0 \(spend cannot be negative\), found 1 negative value"),
        ([], "values is empty"),
        ([[1.0, 2.0]], "values must be 1-D"),
        ([1.0, np.nan], "values must be finite"),
    ],
)
def test_lorenz_curve_rejects_bad_values(values, message):
    with pytest.raises(ValueError, match=message):
        evaluation.lorenz_curve(values)


def test_top_share_of_value_rejects_a_bad_share():
    with pytest.raises(ValueError, match=r"share must be in \(0, 1\]"):
        evaluation.top_share_of_value([1.0, 2.0], share=0.0)


# ---------------------------------------------------------------------------------------------------
# input validation
# ---------------------------------------------------------------------------------------------------


def test_accepts_integers_and_pandas_by_position():
    y = pd.Series([0, 10, 30, 60], index=[7, 6, 5, 4])
    y_pred = pd.Series([1.0, 2.0, 3.0, 4.0], index=[0, 1, 2, 3])
    clean_y, clean_pred = evaluation.validate_value_predictions(y, y_pred)
    assert clean_y.dtype == np.float64 and clean_pred.dtype == np.float64
    np.testing.assert_array_equal(clean_y, [0.0, 10.0, 30.0, 60.0])
    assert evaluation.normalized_gini(y, y_pred) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("y", "y_pred", "message"),
    [
        ([1.0, 2.0, 3.0], [1.0, 2.0], "same length, got 3 and 2"),
        ([], [], "empty"),
        ([[1.0, 2.0]], [[1.0, 2.0]], "must be 1-D"),
        ([1.0, np.nan], [1.0, 2.0], r"y_true must be finite, found 1 NaN or infinite value\(s\)"),
        ([1.0, 2.0], [1.0, np.inf], "y_pred must be finite"),
        ([1.0, -5.0], [1.0, 2.0], r"y_true must be >= 0 \(spend cannot be negative\), found 1 negative value\(s\)"),
        ([1.0, 2.0], [-0.5, 2.0], r"y_pred must be >= 0 \(CLV predictions cannot be negative\)"),
        (["10", "20"], [1.0, 2.0], "y_true must be numeric spend, got dtype"),
        ([1.0, None], [1.0, 2.0], "y_true must be"),
        ([1.0, 2.0], ["a", 2.0], "y_pred must be numeric CLV predictions"),
    ],
)
def test_invalid_inputs_fail_with_one_clear_line(y, y_pred, message):
    with pytest.raises(ValueError, match=message) as caught:
        evaluation.value_metrics(y, y_pred)
    assert "\n" not in str(caught.value)
