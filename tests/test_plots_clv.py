"""Tests for the CLV plots of crmscore.plots: what each figure draws, how overlays combine, and thinning."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # tests never open a window, whatever the machine's default backend

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from tests.plot_helpers import assert_labelled, legend_texts, overlay  # noqa: E402

from crmscore import evaluation, plots  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def values() -> dict[str, np.ndarray]:
    """A champion and a weaker challenger predicting the spend of the same 800 customers."""
    rng = np.random.default_rng(21)
    y = rng.gamma(0.6, 100.0, 800) * rng.binomial(1, 0.6, 800)
    champion = y * rng.lognormal(0.0, 0.5, 800) + rng.uniform(0.0, 5.0, 800)
    challenger = np.clip(0.5 * y + rng.normal(30.0, 20.0, 800), 0.0, None)
    return {"y": y, "champion": champion, "challenger": challenger}


# ---------------------------------------------------------------------------------------------------
# model plots: deciles, gains, scatter
# ---------------------------------------------------------------------------------------------------


def test_plot_value_deciles_draws_bars_of_actual_and_markers_of_predicted(values):
    ax = plots.plot_value_deciles(values["y"], values["champion"], label="champion")
    assert isinstance(ax, Axes)
    table = evaluation.decile_table(values["y"], values["champion"])
    assert len(ax.patches) == 10
    np.testing.assert_allclose([bar.get_height() for bar in ax.patches], table["mean_actual"])
    assert len(ax.lines) == 1
    np.testing.assert_allclose(ax.lines[0].get_ydata(), table["mean_predicted"])
    np.testing.assert_allclose(ax.lines[0].get_xdata(), range(1, 11))  # one model: centred on its bin
    mape = evaluation.decile_mape(values["y"], values["champion"])
    assert f"champion (mean actual, decile MAPE = {mape:.1%})" in legend_texts(ax)
    assert [tick.get_text() for tick in ax.get_xticklabels()] == [str(k) for k in range(1, 11)]
    assert_labelled(ax)


def test_plot_value_deciles_overlay_puts_groups_side_by_side_with_their_markers(values):
    ax = overlay(plots.plot_value_deciles, values)
    assert len(ax.patches) == 20
    assert len(ax.containers) == 2
    assert len(ax.lines) == 2
    champion_bars, challenger_bars = (container.patches for container in ax.containers)
    for left, right in zip(champion_bars, challenger_bars, strict=True):
        assert left.get_x() + left.get_width() <= right.get_x() + 1e-9
    for bars, markers in zip((champion_bars, challenger_bars), ax.lines, strict=True):
        np.testing.assert_allclose(markers.get_xdata(), [bar.get_x() + bar.get_width() / 2 for bar in bars])
    texts = legend_texts(ax)
    assert len(texts) == 4
    assert sum("decile MAPE = " in text for text in texts) == 2


def test_plot_value_deciles_needs_a_customer_per_bin():
    with pytest.raises(ValueError, match="at least n_bins=10 customers"):
        plots.plot_value_deciles([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])


def test_plot_value_gains_draws_reference_curves_once(values):
    ax = plots.plot_value_gains(values["y"], values["champion"], label="champion")
    assert len(ax.lines) == 3  # random diagonal, perfect ranking, model
    gini = evaluation.normalized_gini(values["y"], values["champion"])
    assert any(text.startswith(f"champion (Gini = {gini:.3f}") for text in legend_texts(ax))
    _, perfect = evaluation.lorenz_curve(values["y"])
    np.testing.assert_allclose(ax.lines[1].get_ydata(), perfect)
    np.testing.assert_allclose(
        ax.lines[2].get_ydata(), evaluation.cumulative_value_curve(values["y"], values["champion"])[1]
    )
    plots.plot_value_gains(values["y"], values["challenger"], ax=ax, label="challenger")
    assert len(ax.lines) == 4  # one more curve, no second diagonal or perfect curve
    texts = legend_texts(ax)
    assert texts.count("random") == 1
    assert texts.count("perfect ranking (Gini = 1)") == 1
    assert_labelled(ax)


def test_plot_value_gains_draws_a_second_perfect_curve_for_other_data(values):
    ax = plots.plot_value_gains(values["y"], values["champion"])
    other_y = values["y"][::-1] ** 1.5  # a different evaluation set: its own upper bound
    plots.plot_value_gains(other_y, values["champion"], ax=ax)
    assert len(ax.lines) == 5


def test_plot_value_gains_thins_long_curves_but_keeps_their_ends():
    rng = np.random.default_rng(5)
    y = rng.gamma(0.5, 100.0, 20_000)
    ax = plots.plot_value_gains(y, y + rng.uniform(0, 50, 20_000))
    curve = ax.lines[-1]
    assert len(curve.get_xdata()) <= 1_002
    assert (curve.get_xdata()[0], curve.get_ydata()[0]) == (0.0, 0.0)
    assert (curve.get_xdata()[-1], curve.get_ydata()[-1]) == (1.0, 1.0)


def test_plot_predicted_vs_actual_samples_large_inputs_reproducibly():
    rng = np.random.default_rng(9)
    y = rng.gamma(0.5, 100.0, 20_000)
    y_pred = y * rng.lognormal(0, 0.5, 20_000)
    first = plots.plot_predicted_vs_actual(y, y_pred, label="champion")
    second = plots.plot_predicted_vs_actual(y, y_pred)
    points = first.collections[0].get_offsets()
    assert len(points) == 5_000
    np.testing.assert_array_equal(points, second.collections[0].get_offsets())
    # Every drawn point is a real customer.
    assert np.isin(points[:, 0], y).all()
    error = evaluation.mae(y, y_pred)
    assert f"champion (MAE = {error:.3g}, 5,000 of 20,000 shown)" in legend_texts(first)
    assert first.get_xscale() == "symlog" and first.get_yscale() == "symlog"
    assert_labelled(first)


def test_plot_predicted_vs_actual_overlay_keeps_one_diagonal_covering_both(values):
    ax = plots.plot_predicted_vs_actual(values["y"], values["champion"], label="champion")
    assert len(ax.collections) == 1
    assert len(ax.collections[0].get_offsets()) == len(values["y"])  # small data is drawn in full
    assert any("n = 800" in text for text in legend_texts(ax))
    bigger = values["challenger"] * 10.0
    plots.plot_predicted_vs_actual(values["y"], bigger, ax=ax, label="challenger")
    assert len(ax.collections) == 2
    assert len(ax.lines) == 1
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [0.0, bigger.max()])
    assert legend_texts(ax).count("predicted = actual") == 1


def test_plot_predicted_vs_actual_rejects_negative_predictions():
    with pytest.raises(ValueError, match="CLV predictions cannot be negative"):
        plots.plot_predicted_vs_actual([1.0, 2.0], [1.0, -2.0])


def test_value_model_plots_draw_on_a_given_axes(values):
    fig, axes = plt.subplots(1, 3)
    drawers = [plots.plot_value_deciles, plots.plot_value_gains, plots.plot_predicted_vs_actual]
    for drawer, ax in zip(drawers, axes, strict=True):
        assert drawer(values["y"], values["champion"], ax=ax) is ax
    assert plots.plot_lorenz(values["y"], ax=axes[0]) is axes[0]
    assert len(fig.axes) == 3
    assert plt.get_fignums() == [fig.number]


# ---------------------------------------------------------------------------------------------------
# value concentration
# ---------------------------------------------------------------------------------------------------


def test_plot_lorenz_marks_the_top_twenty_percent():
    spend = np.r_[40.0, 40.0, np.full(8, 2.5)]  # two of ten customers hold 80 % of value
    ax = plots.plot_lorenz(spend, label="2024")
    assert len(ax.lines) == 2  # diagonal and curve
    marked = ax.collections[0].get_offsets()
    np.testing.assert_allclose(marked, [[0.2, 0.8]])
    assert "2024 (top 20% hold 80.0% of value)" in legend_texts(ax)
    plots.plot_lorenz(np.full(10, 3.0), ax=ax, label="flat")
    assert len(ax.lines) == 3
    assert legend_texts(ax).count("equal value per customer") == 1
    assert "flat (top 20% hold 20.0% of value)" in legend_texts(ax)
    assert_labelled(ax)


def test_plot_lorenz_rejects_a_base_without_value():
    with pytest.raises(ValueError, match="needs some positive value"):
        plots.plot_lorenz([0.0, 0.0, 0.0])


# ---------------------------------------------------------------------------------------------------
# BTYD holdout checks
# ---------------------------------------------------------------------------------------------------


def test_plot_cumulative_transactions_two_lines_and_the_calibration_end():
    periods = np.arange(1, 11)
    actual = np.cumsum(np.full(10, 10.0))  # 100 at the end
    predicted = np.cumsum(np.full(10, 11.0))  # 110: 10 % too many
    ax = plots.plot_cumulative_transactions(periods, actual, predicted, calibration_end=6, unit="week")
    assert len(ax.lines) == 3
    actual_line, predicted_line, calibration_line = ax.lines
    np.testing.assert_allclose(actual_line.get_ydata(), actual)
    np.testing.assert_allclose(predicted_line.get_ydata(), predicted)
    assert actual_line.get_linestyle() == "-"
    assert predicted_line.get_linestyle() == "--"
    np.testing.assert_allclose(calibration_line.get_xdata(), [6, 6])
    texts = legend_texts(ax)
    assert "predicted (end: 110, +10.0% vs actual)" in texts
    assert "end of calibration" in texts
    assert "week" in ax.get_xlabel()
    assert_labelled(ax)


def test_plot_cumulative_transactions_without_calibration_end_draws_two_lines():
    ax = plots.plot_cumulative_transactions([1, 2, 3], [1.0, 3.0, 6.0], [1.5, 3.0, 5.5], unit="day")
    assert len(ax.lines) == 2
    assert "day" in ax.get_title()


@pytest.mark.parametrize(
    ("periods", "actual", "predicted", "message"),
    [
        ([1, 2, 3], [5.0, 3.0, 6.0], [1.0, 2.0, 3.0], r"actual must be cumulative \(never falling\)"),
        ([1, 2, 3], [1.0, 2.0, 3.0], [1.0, 2.0], r"predicted must be 1-D with one value per period \(3\)"),
        ([1, 3, 2], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], "periods must be strictly increasing"),
        ([], [], [], "periods is empty"),
        ([1, 2], [1.0, np.nan], [1.0, 2.0], "actual must be finite and >= 0"),
    ],
)
def test_plot_cumulative_transactions_rejects_bad_series(periods, actual, predicted, message):
    with pytest.raises(ValueError, match=message):
        plots.plot_cumulative_transactions(periods, actual, predicted)


def test_plot_conditional_expectations_groups_frequencies_by_hand():
    frequency = [0, 0, 1, 2, 5]
    actual = [0.0, 1.0, 1.0, 2.0, 4.0]
    predicted = [0.5, 0.5, 1.5, 2.0, 4.0]
    ax = plots.plot_conditional_expectations(frequency, actual, predicted, max_frequency=2)
    assert len(ax.lines) == 2
    actual_line, predicted_line = ax.lines
    np.testing.assert_allclose(actual_line.get_xdata(), [0, 1, 2])
    np.testing.assert_allclose(actual_line.get_ydata(), [0.5, 1.0, 3.0])  # the "2+" group holds 2 and 5
    np.testing.assert_allclose(predicted_line.get_ydata(), [0.5, 1.5, 3.0])
    assert predicted_line.get_linestyle() == "--"
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["0\n(n=2)", "1\n(n=1)", "2+\n(n=2)"]
    # Customer-weighted mean gap: (2 * 0 + 1 * 0.5 + 2 * 0) / 5 = 0.1.
    assert "predicted (mean abs. gap = 0.100)" in legend_texts(ax)
    assert_labelled(ax)


def test_plot_conditional_expectations_skips_empty_groups():
    ax = plots.plot_conditional_expectations([0, 3, 3], [0.0, 1.0, 2.0], [0.1, 1.0, 1.0])
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [0, 3])
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["0\n(n=1)", "3\n(n=2)"]


@pytest.mark.parametrize(
    ("frequency", "actual", "max_frequency", "message"),
    [
        ([0, 1.5], [1.0, 2.0], 7, "frequency must hold whole numbers"),
        ([0, -1], [1.0, 2.0], 7, "frequency must be finite and >= 0"),
        ([0, 1], [1.0, 2.0, 3.0], 7, r"actual must be 1-D with one value per customer \(2\)"),
        ([0, 1], [1.0, -2.0], 7, "actual must be finite and >= 0"),
        ([0, 1], [1.0, 2.0], 0, "max_frequency must be a positive integer, got 0"),
        ([], [], 7, "frequency must be 1-D with at least one customer"),
    ],
)
def test_plot_conditional_expectations_rejects_bad_input(frequency, actual, max_frequency, message):
    predicted = np.ones(len(actual))
    with pytest.raises(ValueError, match=message):
        plots.plot_conditional_expectations(frequency, actual, predicted, max_frequency=max_frequency)


def test_new_plots_are_exported():
    for name in (
        "plot_value_deciles",
        "plot_value_gains",
        "plot_lorenz",
        "plot_cumulative_transactions",
        "plot_conditional_expectations",
        "plot_predicted_vs_actual",
    ):
        assert name in plots.__all__
