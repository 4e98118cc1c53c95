"""Tests for crmscore.evaluation: hand-computed values, agreement with sklearn, and the error messages."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as sk_metrics

from crmscore import evaluation

# ---------------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_predictions() -> tuple[np.ndarray, np.ndarray]:
    """2,000 customers with probabilities that carry some signal, ~30 % churners."""
    rng = np.random.default_rng(3)
    p = rng.beta(2, 5, 2_000)
    y = rng.binomial(1, np.clip(p * 1.1, 0, 1))
    return y, p


@pytest.fixture(scope="module")
def calibrated_predictions() -> tuple[np.ndarray, np.ndarray]:
    """200k outcomes drawn from their own probabilities, so p is calibrated by construction."""
    rng = np.random.default_rng(20240601)
    p = rng.uniform(0.0, 0.9, 200_000)  # room to shift by +0.1 and stay in [0, 1]
    return rng.binomial(1, p), p


def perfect_ranking(n: int, positives: int) -> tuple[np.ndarray, np.ndarray]:
    """The churners first, with strictly decreasing p, so the ranking is perfect."""
    y = np.r_[np.ones(positives, dtype=int), np.zeros(n - positives, dtype=int)]
    p = np.linspace(0.99, 0.01, n)
    return y, p


# ---------------------------------------------------------------------------------------------------
# classification: ranking metrics
# ---------------------------------------------------------------------------------------------------


def test_perfect_ranking_has_auc_one():
    y, p = perfect_ranking(10, 2)
    assert evaluation.roc_auc(y, p) == 1.0
    assert evaluation.pr_auc(y, p) == 1.0


def test_reversed_ranking_has_auc_zero():
    y, p = perfect_ranking(10, 2)
    assert evaluation.roc_auc(y, 1 - p) == 0.0


def test_metrics_agree_with_sklearn(random_predictions):
    y, p = random_predictions
    assert evaluation.roc_auc(y, p) == pytest.approx(sk_metrics.roc_auc_score(y, p))
    assert evaluation.pr_auc(y, p) == pytest.approx(sk_metrics.average_precision_score(y, p))
    assert evaluation.brier(y, p) == pytest.approx(np.mean((p - y) ** 2))
    expected_log_loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert evaluation.log_loss(y, p) == pytest.approx(expected_log_loss)


def test_log_loss_clips_certain_mistakes_to_a_finite_value():
    value = evaluation.log_loss([1, 0], [0.0, 1.0])
    # About -log(1e-15); 1 - 1e-15 is not exact in floating point, hence the tolerance.
    assert value == pytest.approx(-math.log(1e-15), rel=1e-4)


def test_log_loss_and_brier_work_with_one_class():
    assert evaluation.log_loss([0, 0], [0.5, 0.5]) == pytest.approx(math.log(2))
    assert evaluation.brier([1, 1], [0.5, 1.0]) == pytest.approx(0.125)


@pytest.mark.parametrize("metric", [evaluation.roc_auc, evaluation.pr_auc])
@pytest.mark.parametrize("y", [[0, 0, 0], [1, 1, 1]])
def test_ranking_metrics_need_both_classes(metric, y):
    with pytest.raises(ValueError, match="needs both classes"):
        metric(y, [0.1, 0.5, 0.9])


# ---------------------------------------------------------------------------------------------------
# classification: calibration
# ---------------------------------------------------------------------------------------------------


def test_calibration_table_and_ece_by_hand_with_two_bins():
    # Bin [0, 0.5): p 0.1, 0.2, 0.3 (mean 0.2), 1 churner of 3; bin [0.5, 1]: p 0.7, 0.9 (mean 0.8), 2 of 2.
    y = [0, 0, 1, 1, 1]
    p = [0.1, 0.2, 0.3, 0.7, 0.9]
    table = evaluation.calibration_table(y, p, n_bins=2)
    assert list(table.columns) == ["bin", "customers", "mean_p", "observed_rate"]
    assert table["bin"].tolist() == [1, 2]
    assert table["customers"].tolist() == [3, 2]
    np.testing.assert_allclose(table["mean_p"], [0.2, 0.8])
    np.testing.assert_allclose(table["observed_rate"], [1 / 3, 1.0])
    # ECE = 3/5 * |1/3 - 0.2| + 2/5 * |1 - 0.8| = 0.08 + 0.08
    assert evaluation.expected_calibration_error(y, p, n_bins=2) == pytest.approx(0.16)


def test_uniform_bins_are_closed_left_and_the_last_bin_includes_one():
    table = evaluation.calibration_table([0, 1, 1], [0.49, 0.5, 1.0], n_bins=2)
    assert table["customers"].tolist() == [1, 2]


def test_calibration_table_drops_empty_bins_but_keeps_bin_numbers():
    table = evaluation.calibration_table([0, 1, 0], [0.05, 0.1, 0.6], n_bins=4)
    assert table["bin"].tolist() == [1, 3]
    assert table["customers"].sum() == 3


def test_quantile_bins_have_equal_counts_and_keep_ties_together():
    p = np.linspace(0.1, 0.8, 8)
    table = evaluation.calibration_table(np.tile([0, 1], 4), p, n_bins=2, strategy="quantile")
    assert table["customers"].tolist() == [4, 4]
    tied = evaluation.calibration_table([0] * 6 + [1, 1], [0.2] * 6 + [0.9] * 2, n_bins=2, strategy="quantile")
    assert tied["customers"].tolist() == [6, 2]
    np.testing.assert_allclose(tied["mean_p"], [0.2, 0.9])


def test_ece_is_small_for_calibrated_probabilities(calibrated_predictions):
    y, p = calibrated_predictions
    assert evaluation.expected_calibration_error(y, p) < 0.01
    assert evaluation.expected_calibration_error(y, p, strategy="quantile") < 0.01


def test_ece_measures_a_shift_of_ten_points(calibrated_predictions):
    y, p = calibrated_predictions
    assert evaluation.expected_calibration_error(y, p + 0.1) == pytest.approx(0.1, abs=0.01)
    assert evaluation.expected_calibration_error(y, p + 0.1, strategy="quantile") == pytest.approx(0.1, abs=0.01)


def test_ece_rejects_bad_bins():
    with pytest.raises(ValueError, match="n_bins must be a positive integer"):
        evaluation.expected_calibration_error([0, 1], [0.2, 0.8], n_bins=0)
    with pytest.raises(ValueError, match='strategy must be "uniform" or "quantile"'):
        evaluation.expected_calibration_error([0, 1], [0.2, 0.8], strategy="equal")


# ---------------------------------------------------------------------------------------------------
# classification: lift, capture and gains
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "positives", "share"),
    [
        (10, 2, 0.1),  # top 1 customer, all churners: lift = 1 / base_rate = 5
        (20, 10, 0.1),  # churners fill the top 10 %: lift = 1 / base_rate = 2
        (100, 5, 0.1),  # all 5 churners within the top 10: lift capped at 1 / share = 10, not 1 / base_rate = 20
        (100, 5, 0.2),
    ],
)
def test_lift_of_a_perfect_ranking_is_capped_by_base_rate_and_share(n, positives, share):
    y, p = perfect_ranking(n, positives)
    top = math.ceil(share * n)
    assert evaluation.lift_at(y, p, share) == pytest.approx(min(n / positives, n / top))
    assert evaluation.capture_at(y, p, share) == pytest.approx(min(1.0, top / positives))


def test_lift_and_capture_of_everyone_are_one(random_predictions):
    y, p = random_predictions
    assert evaluation.capture_at(y, p, 1.0) == 1.0
    assert evaluation.lift_at(y, p, 1.0) == pytest.approx(1.0)


def test_lift_and_capture_by_hand():
    # Sorted by p: y = 1, 0, 1, 0, 0, 0, 1, 0, 0, 0; top 20 % = 2 customers hold 1 of 3 churners.
    y = [0, 1, 0, 1, 0, 1, 0, 0, 0, 0]
    p = [0.4, 0.9, 0.2, 0.7, 0.05, 0.3, 0.8, 0.1, 0.6, 0.5]
    assert evaluation.lift_at(y, p, 0.2) == pytest.approx((1 / 2) / (3 / 10))
    assert evaluation.capture_at(y, p, 0.2) == pytest.approx(1 / 3)
    assert evaluation.capture_at(y, p, 0.3) == pytest.approx(2 / 3)


def test_ties_are_broken_by_input_order():
    # Every p is equal: the stable sort keeps input order, so the top 10 % is the first customer only.
    p = np.full(10, 0.3)
    assert evaluation.lift_at([0, 1, 0, 0, 0, 0, 0, 0, 0, 0], p, 0.1) == 0.0
    assert evaluation.lift_at([1, 0, 0, 0, 0, 0, 0, 0, 0, 0], p, 0.1) == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("n", "share", "expected"),
    [(30, 0.1, 3), (10, 0.25, 3), (7, 1.0, 7), (1_000, 1e-9, 1), (100, 0.2, 20), (3, 0.7, 3)],
)
def test_top_share_count_is_the_ceiling_without_floating_point_surprises(n, share, expected):
    assert evaluation.top_share_count(n, share) == expected


@pytest.mark.parametrize("share", [0, -0.1, 1.5, float("nan"), "10%"])
def test_share_must_be_in_the_unit_interval(share):
    with pytest.raises(ValueError, match=r"share must be"):
        evaluation.lift_at([0, 1], [0.2, 0.8], share)


def test_lift_and_capture_need_a_churner():
    with pytest.raises(ValueError, match="lift_at needs at least one positive"):
        evaluation.lift_at([0, 0, 0], [0.1, 0.2, 0.3], 0.5)
    with pytest.raises(ValueError, match="capture_at needs at least one positive"):
        evaluation.capture_at([0, 0, 0], [0.1, 0.2, 0.3], 0.5)


def test_cumulative_gains_curve_runs_from_origin_to_one(random_predictions):
    y, p = random_predictions
    share_contacted, share_captured = evaluation.cumulative_gains_curve(y, p)
    assert len(share_contacted) == len(share_captured) == len(y) + 1
    assert (share_contacted[0], share_captured[0]) == (0.0, 0.0)
    assert (share_contacted[-1], share_captured[-1]) == (1.0, 1.0)
    assert np.all(np.diff(share_captured) >= 0)


def test_gains_table_columns_and_totals(random_predictions):
    y, p = random_predictions
    table = evaluation.gains_table(y, p)
    assert list(table.columns) == [
        "bin",
        "customers",
        "positives",
        "positive_rate",
        "mean_p",
        "lift",
        "cumulative_capture",
    ]
    assert table["bin"].tolist() == list(range(1, 11))
    assert table["customers"].sum() == len(y)
    assert table["positives"].sum() == y.sum()
    assert table["cumulative_capture"].iloc[-1] == pytest.approx(1.0)
    assert table["cumulative_capture"].is_monotonic_increasing
    # Bin 1 holds the highest risk, so mean_p falls from bin to bin.
    assert table["mean_p"].is_monotonic_decreasing
    # Lift averaged over customers is the overall rate divided by itself.
    assert np.average(table["lift"], weights=table["customers"]) == pytest.approx(1.0)


def test_gains_table_agrees_with_capture_and_lift(random_predictions):
    y, p = random_predictions
    table = evaluation.gains_table(y, p)
    assert table["cumulative_capture"].iloc[0] == pytest.approx(evaluation.capture_at(y, p, 0.1))
    assert table["cumulative_capture"].iloc[1] == pytest.approx(evaluation.capture_at(y, p, 0.2))
    assert table["lift"].iloc[0] == pytest.approx(evaluation.lift_at(y, p, 0.1))


def test_gains_table_bins_of_uneven_size_follow_the_ceiling_rule():
    rng = np.random.default_rng(0)
    table = evaluation.gains_table(rng.binomial(1, 0.5, 25) | np.eye(1, 25, dtype=int)[0], rng.uniform(size=25))
    # Bin k ends after ceil(2.5 k) customers: 3, 5, 8, 10, 13, 15, 18, 20, 23, 25.
    assert table["customers"].tolist() == [3, 2, 3, 2, 3, 2, 3, 2, 3, 2]


def test_gains_table_by_hand():
    y = [1, 1, 0, 1, 0, 0]
    p = [0.9, 0.8, 0.7, 0.6, 0.2, 0.1]
    table = evaluation.gains_table(y, p, n_bins=3)
    assert table["positives"].tolist() == [2, 1, 0]
    np.testing.assert_allclose(table["positive_rate"], [1.0, 0.5, 0.0])
    np.testing.assert_allclose(table["mean_p"], [0.85, 0.65, 0.15])
    np.testing.assert_allclose(table["lift"], [2.0, 1.0, 0.0])
    np.testing.assert_allclose(table["cumulative_capture"], [2 / 3, 1.0, 1.0])


def test_gains_table_needs_a_customer_per_bin():
    with pytest.raises(ValueError, match="at least n_bins=10 customers, got 5"):
        evaluation.gains_table([0, 1, 0, 1, 0], [0.1, 0.2, 0.3, 0.4, 0.5])


# ---------------------------------------------------------------------------------------------------
# classification: everything at once
# ---------------------------------------------------------------------------------------------------


def test_classification_metrics_keys_and_values(random_predictions):
    y, p = random_predictions
    metrics = evaluation.classification_metrics(y, p)
    assert list(metrics) == [
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
    ]
    assert tuple(metrics) == evaluation.CLASSIFICATION_METRIC_KEYS
    assert all(type(value) is float for value in metrics.values())
    assert metrics["roc_auc"] == pytest.approx(evaluation.roc_auc(y, p))
    assert metrics["ece"] == pytest.approx(evaluation.expected_calibration_error(y, p))
    assert metrics["lift_10"] == pytest.approx(evaluation.lift_at(y, p, 0.1))
    assert metrics["capture_20"] == pytest.approx(evaluation.capture_at(y, p, 0.2))
    assert metrics["base_rate"] == pytest.approx(y.mean())
    assert metrics["n"] == len(y)


def test_classification_metrics_need_both_classes():
    with pytest.raises(ValueError, match="classification_metrics needs both classes"):
        evaluation.classification_metrics([0, 0, 0], [0.1, 0.2, 0.3])


# ---------------------------------------------------------------------------------------------------
# classification: input validation
# ---------------------------------------------------------------------------------------------------


def test_accepts_bools_floats_and_pandas():
    y = pd.Series([True, False, True, False], index=[10, 11, 12, 13])
    p = pd.Series([0.9, 0.1, 0.8, 0.3], index=[3, 2, 1, 0])
    assert evaluation.roc_auc(y, p) == 1.0
    assert evaluation.roc_auc(np.array([1.0, 0.0, 1.0, 0.0]), p.to_numpy()) == 1.0


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([0, 1, 1], [0.2, 0.8], "same length, got 3 and 2"),
        ([], [], "empty"),
        ([0, 1], [0.2, 1.2], r"p must lie in \[0, 1\]"),
        ([0, 1], [-0.1, 0.5], r"p must lie in \[0, 1\]"),
        ([0, 1], [0.2, np.nan], "p must be finite"),
        ([0, 1], [0.2, np.inf], "p must be finite"),
        ([0, 2], [0.2, 0.8], r"y_true must be binary \(0/1\), found 1 other value\(s\) such as 2"),
        (["no", "yes"], [0.2, 0.8], r"y_true must be binary \(0/1\), got dtype"),
        ([0, None], [0.2, 0.8], r"y_true must be binary \(0/1\)"),
        ([0, 1], [[0.8, 0.2], [0.3, 0.7]], r"pass predict_proba\(X\)\[:, 1\]"),
        ([[0, 1]], [[0.2, 0.8]], "must be 1-D"),
    ],
)
def test_invalid_inputs_fail_with_one_clear_line(y, p, message):
    with pytest.raises(ValueError, match=message) as caught:
        evaluation.classification_metrics(y, p)
    assert "\n" not in str(caught.value)
