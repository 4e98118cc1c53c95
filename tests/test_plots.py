"""Tests for crmscore.plots: what each figure draws, how overlays combine, and the SHAP feature order."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # tests never open a window, whatever the machine's default backend

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from tests.plot_helpers import assert_labelled, legend_texts, overlay  # noqa: E402

from crmscore import evaluation, plots  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def predictions() -> dict[str, np.ndarray]:
    """A champion and a weaker challenger scored on the same 600 customers."""
    rng = np.random.default_rng(11)
    p = rng.beta(1.5, 5, 600)
    y = rng.binomial(1, p)
    challenger = np.clip(0.6 * p + rng.normal(0, 0.08, 600) + 0.05, 0, 1)
    return {"y": y, "champion": p, "challenger": challenger}


# ---------------------------------------------------------------------------------------------------
# model quality plots
# ---------------------------------------------------------------------------------------------------


def test_plot_roc_creates_axes_with_curve_and_diagonal(predictions):
    ax = plots.plot_roc(predictions["y"], predictions["champion"])
    assert isinstance(ax, Axes)
    assert len(ax.lines) == 2
    assert_labelled(ax)
    auc = evaluation.roc_auc(predictions["y"], predictions["champion"])
    assert f"AUC = {auc:.3f}" in legend_texts(ax)


def test_plot_roc_overlay_draws_one_diagonal(predictions):
    ax = overlay(plots.plot_roc, predictions)
    assert len(ax.lines) == 3
    texts = legend_texts(ax)
    assert any(text.startswith("champion (AUC = ") for text in texts)
    assert any(text.startswith("challenger (AUC = ") for text in texts)
    curve = ax.lines[1]
    assert curve.get_xdata()[0] == 0.0 and curve.get_xdata()[-1] == 1.0


def test_plot_roc_rejects_a_single_class():
    with pytest.raises(ValueError, match="needs both classes"):
        plots.plot_roc([0, 0, 0], [0.1, 0.2, 0.3])


def test_plot_precision_recall_overlay_shares_the_base_rate_line(predictions):
    ax = overlay(plots.plot_precision_recall, predictions)
    assert len(ax.lines) == 3
    base_rate = predictions["y"].mean()
    baseline = ax.lines[0]
    np.testing.assert_allclose(baseline.get_ydata(), [base_rate, base_rate])
    texts = legend_texts(ax)
    assert f"base rate = {base_rate:.3f}" in texts
    ap = evaluation.pr_auc(predictions["y"], predictions["champion"])
    assert f"champion (AP = {ap:.3f})" in texts
    assert_labelled(ax)


def test_plot_calibration_draws_table_points_and_one_histogram_inset(predictions):
    ax = overlay(plots.plot_calibration, predictions)
    assert len(ax.lines) == 3  # diagonal + one reliability curve per model
    table = evaluation.calibration_table(predictions["y"], predictions["champion"])
    np.testing.assert_allclose(ax.lines[1].get_xdata(), table["mean_p"])
    np.testing.assert_allclose(ax.lines[1].get_ydata(), table["observed_rate"])
    assert len(ax.child_axes) == 1
    histogram = ax.child_axes[0]
    assert len(histogram.patches) == 2  # one outline per model, in its curve's colour
    assert to_rgba(histogram.patches[1].get_edgecolor()) == to_rgba(ax.lines[2].get_color())
    ece = evaluation.expected_calibration_error(predictions["y"], predictions["champion"])
    assert f"champion (ECE = {ece:.3f})" in legend_texts(ax)
    assert_labelled(ax)


def test_plot_gains_marks_ten_and_twenty_percent(predictions):
    ax = overlay(plots.plot_gains, predictions)
    assert len(ax.lines) == 5  # diagonal, two guides at 10 % and 20 %, two curves
    assert len(ax.collections) == 2  # the marked points of each model
    marked = ax.collections[0].get_offsets()
    y, p = predictions["y"], predictions["champion"]
    np.testing.assert_allclose(marked[:, 1], [evaluation.capture_at(y, p, 0.1), evaluation.capture_at(y, p, 0.2)])
    np.testing.assert_allclose(marked[:, 0], [0.1, 0.2])
    texts = legend_texts(ax)
    assert "random" in texts
    assert sum("top 10%" in text for text in texts) == 2
    assert_labelled(ax)


def test_plot_gains_thins_long_curves_but_keeps_their_ends():
    rng = np.random.default_rng(5)
    p = rng.uniform(size=20_000)
    ax = plots.plot_gains(rng.binomial(1, p), p)
    curve = ax.lines[-1]
    assert len(curve.get_xdata()) <= 1_003
    assert (curve.get_xdata()[0], curve.get_ydata()[0]) == (0.0, 0.0)
    assert (curve.get_xdata()[-1], curve.get_ydata()[-1]) == (1.0, 1.0)


def test_plot_lift_bars_sit_side_by_side(predictions):
    ax = overlay(plots.plot_lift, predictions)
    assert len(ax.patches) == 20
    assert len(ax.lines) == 1  # the random line at lift 1
    assert len(ax.containers) == 2
    champion_bars, challenger_bars = (container.patches for container in ax.containers)
    table = evaluation.gains_table(predictions["y"], predictions["champion"])
    np.testing.assert_allclose([bar.get_height() for bar in champion_bars], table["lift"])
    for left, right in zip(champion_bars, challenger_bars, strict=True):
        assert left.get_x() + left.get_width() <= right.get_x() + 1e-9
    assert [tick.get_text() for tick in ax.get_xticklabels()] == [str(k) for k in range(1, 11)]
    assert len(legend_texts(ax)) == 3
    assert_labelled(ax)


def test_plot_lift_single_model_bars_are_centred_on_their_bin(predictions):
    ax = plots.plot_lift(predictions["y"], predictions["champion"], n_bins=5)
    centres = [bar.get_x() + bar.get_width() / 2 for bar in ax.patches]
    np.testing.assert_allclose(centres, [1, 2, 3, 4, 5])


def test_plots_draw_on_a_given_axes(predictions):
    fig, axes = plt.subplots(1, 5)
    drawers = [plots.plot_roc, plots.plot_precision_recall, plots.plot_calibration, plots.plot_gains, plots.plot_lift]
    for drawer, ax in zip(drawers, axes, strict=True):
        assert drawer(predictions["y"], predictions["champion"], ax=ax) is ax
    assert len(fig.axes) == 5  # nothing drawn elsewhere, no extra figure
    assert plt.get_fignums() == [fig.number]


# ---------------------------------------------------------------------------------------------------
# SHAP plots
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shap_example() -> tuple[np.ndarray, pd.DataFrame]:
    """300 rows, four features whose mean |SHAP| order is: tenure_days, region, recency_days, spend."""
    rng = np.random.default_rng(2)
    n = 300
    X = pd.DataFrame(
        {
            "recency_days": rng.exponential(30, n),
            "tenure_days": rng.integers(1, 2_000, n),
            "region": pd.Categorical(rng.choice(["north", "south", "west"], n)),
            "spend": rng.gamma(2.0, 50.0, n),
        }
    )
    shap_values = np.column_stack(
        [
            rng.normal(0, 0.5, n),
            rng.normal(0, 2.0, n),
            rng.normal(0, 1.0, n),
            rng.normal(0, 0.1, n),
        ]
    )
    return shap_values, X


def test_shap_summary_orders_features_by_mean_abs_shap(shap_example):
    shap_values, X = shap_example
    ax = plots.plot_shap_summary(shap_values, X)
    # Tick labels run bottom to top; the most important feature is at the top.
    bottom_to_top = [tick.get_text() for tick in ax.get_yticklabels()]
    assert bottom_to_top[::-1] == ["tenure_days", "region", "recency_days", "spend"]
    assert len(ax.collections) == 1
    assert len(ax.collections[0].get_offsets()) == shap_values.size
    assert_labelled(ax)


def test_shap_summary_greys_the_categorical_column_only(shap_example):
    shap_values, X = shap_example
    ax = plots.plot_shap_summary(shap_values, X)
    colours = ax.collections[0].get_facecolors()
    grey = np.all(np.isclose(colours[:, :3], to_rgba("0.6")[:3]), axis=1)
    assert grey.sum() == len(X)  # exactly the rows of "region"
    # Rows are drawn in display order, so the grey block is the second feature's.
    assert grey[len(X) : 2 * len(X)].all()
    assert legend_texts(ax) == ["non-numeric or missing"]


def test_shap_summary_points_stay_in_their_feature_row(shap_example):
    shap_values, X = shap_example
    ax = plots.plot_shap_summary(shap_values, X)
    heights = ax.collections[0].get_offsets()[:, 1].reshape(4, len(X))
    for row, expected_centre in zip(heights, [3, 2, 1, 0], strict=True):
        assert np.all(np.abs(row - expected_centre) <= 0.4)


def test_shap_summary_shows_only_max_display_features(shap_example):
    shap_values, X = shap_example
    ax = plots.plot_shap_summary(shap_values, X, max_display=2)
    assert [tick.get_text() for tick in ax.get_yticklabels()] == ["region", "tenure_days"]
    assert "top 2 of 4" in ax.get_title()


def test_shap_summary_rejects_mismatched_shapes(shap_example):
    shap_values, X = shap_example
    with pytest.raises(ValueError, match="shap_values has 3 columns but there are 4 features"):
        plots.plot_shap_summary(shap_values[:, :3], X)
    with pytest.raises(ValueError, match="shap_values has 299 rows but X has 300"):
        plots.plot_shap_summary(shap_values[1:], X)


def test_shap_importance_bars_match_mean_abs_shap(shap_example):
    shap_values, X = shap_example
    ax = plots.plot_shap_importance(shap_values, list(X.columns), max_display=3)
    assert isinstance(ax, Axes)
    assert len(ax.patches) == 3
    bottom_to_top = [tick.get_text() for tick in ax.get_yticklabels()]
    assert bottom_to_top[::-1] == ["tenure_days", "region", "recency_days"]
    mean_abs = np.abs(shap_values).mean(axis=0)
    widths_top_down = [bar.get_width() for bar in sorted(ax.patches, key=lambda bar: -bar.get_y())]
    np.testing.assert_allclose(widths_top_down, mean_abs[[1, 2, 0]])
    assert "|SHAP" in ax.get_xlabel()
    assert_labelled(ax)


def test_shap_importance_rejects_a_name_count_mismatch(shap_example):
    shap_values, _ = shap_example
    with pytest.raises(ValueError, match="shap_values has 4 columns but there are 2 features"):
        plots.plot_shap_importance(shap_values, ["a", "b"])
