"""Figures for MLflow runs and the model review report.

Every function draws on ``ax`` (a new figure of a sensible size when ``ax`` is None) and returns the
Axes; nothing is shown or saved here, the caller decides (``mlflow.log_figure(ax.figure, ...)``,
``ax.figure.savefig(...)``). Only :func:`matplotlib.pyplot.subplots` is used from pyplot, so the module
works under any backend, including the headless Agg used in batch jobs.

The model-quality plots (:func:`plot_roc`, :func:`plot_precision_recall`, :func:`plot_calibration`,
:func:`plot_gains`, :func:`plot_lift`) can be called several times on the same Axes to compare a champion
with a challenger: each call adds one curve (or one set of bars) with its ``label`` and headline number
in the legend, while reference lines (diagonals, base rate) are drawn only once. All numbers come from
:mod:`crmscore.evaluation`, so a figure always agrees with the logged metrics.

The CLV plots judge a model of customer value the same way: :func:`plot_value_gains` (ranking, with the
normalised Gini), :func:`plot_value_deciles` (level per decile of prediction, with the decile MAPE) and
:func:`plot_predicted_vs_actual` overlay models like the churn plots, and :func:`plot_lorenz` shows how
concentrated value is. :func:`plot_cumulative_transactions` and :func:`plot_conditional_expectations` are
the two classic checks of a buy-till-you-die model against a holdout period.

:func:`plot_shap_summary` and :func:`plot_shap_importance` take a plain ``(n_samples, n_features)`` array
of SHAP contributions and draw it themselves, so the figures do not change with SHAP's plotting API.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize, to_rgba
from matplotlib.patches import Patch
from matplotlib.ticker import PercentFormatter
from sklearn import metrics as sk_metrics

from crmscore import evaluation

__all__ = [
    "plot_roc",
    "plot_precision_recall",
    "plot_calibration",
    "plot_gains",
    "plot_lift",
    "plot_shap_summary",
    "plot_shap_importance",
    "plot_value_deciles",
    "plot_value_gains",
    "plot_lorenz",
    "plot_cumulative_transactions",
    "plot_conditional_expectations",
    "plot_predicted_vs_actual",
]

ArrayLike = evaluation.ArrayLike

# Reference lines carry a gid so a second call on the same Axes finds them and does not draw them again.
_DIAGONAL_GID = "crmscore-diagonal"
_LIFT_BAR_GID = "crmscore-lift-bar"
_CALIBRATION_HIST_LABEL = "crmscore-calibration-histogram"
_GAINS_MARKED_SHARES = (0.1, 0.2)
# A gains curve is monotone, so ~1,000 points draw it faithfully however many customers there are.
_MAX_CURVE_POINTS = 1_000
_REFERENCE_STYLE = {"color": "0.55", "linestyle": "--", "linewidth": 1.0}
_NON_NUMERIC_COLOUR = "0.6"
_SHAP_COLOURMAP = "coolwarm"
_VALUE_DECILE_BAR_GID = "crmscore-value-decile-bar"
_VALUE_DECILE_MARKER_GID = "crmscore-value-decile-marker"
_LORENZ_MARKED_SHARE = 0.2
# A scatter of more points than this is a blot; a fixed-seed sample of it shows the same shape.
_MAX_SCATTER_POINTS = 5_000


def _axes(ax: Axes | None, figsize_inches: tuple[float, float]) -> Axes:
    """``ax`` itself, or the Axes of a new figure of ``figsize_inches``."""
    if ax is not None:
        return ax
    _, new_ax = plt.subplots(figsize=figsize_inches)
    return new_ax


def _legend_label(label: str | None, headline: str) -> str:
    return f"{label} ({headline})" if label else headline


def _has_gid(ax: Axes, gid: str) -> bool:
    return any(line.get_gid() == gid for line in ax.lines)


def _draw_once(ax: Axes, gid: str, x: Sequence[float], y: Sequence[float], label: str) -> None:
    """Draw a reference line unless this Axes already has one with the same ``gid``."""
    if not _has_gid(ax, gid):
        ax.plot(x, y, gid=gid, label=label, zorder=1, **_REFERENCE_STYLE)


def _finish_unit_square(
    ax: Axes, xlabel: str, ylabel: str, title: str, legend_loc: str, legend_size: float | None = None
) -> Axes:
    """Limits, grid, labels and (refreshed) legend shared by the plots whose axes both run from 0 to 1."""
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.grid(alpha=0.3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc=legend_loc, fontsize=legend_size)
    return ax


def plot_roc(y_true: ArrayLike, p: ArrayLike, ax: Axes | None = None, label: str | None = None) -> Axes:
    """ROC curve of churn probabilities ``p`` against outcomes ``y_true``, with the random diagonal.

    The legend entry is ``label`` followed by the ROC AUC of :func:`crmscore.evaluation.roc_auc`. Call it
    again on the returned Axes to overlay another model; the diagonal is drawn once. Raises
    :class:`ValueError` on invalid input or a single class.
    """
    y, p_arr = evaluation.validate_binary_predictions(y_true, p)
    auc = evaluation.roc_auc(y, p_arr)
    false_positive_rate, true_positive_rate, _ = sk_metrics.roc_curve(y, p_arr)
    ax = _axes(ax, (6.0, 5.5))
    _draw_once(ax, _DIAGONAL_GID, [0, 1], [0, 1], "random (AUC = 0.5)")
    ax.plot(false_positive_rate, true_positive_rate, linewidth=1.8, label=_legend_label(label, f"AUC = {auc:.3f}"))
    return _finish_unit_square(
        ax,
        xlabel="False positive rate (fraction of non-churners flagged)",
        ylabel="True positive rate (fraction of churners flagged)",
        title="ROC curve",
        legend_loc="lower right",
    )


def plot_precision_recall(y_true: ArrayLike, p: ArrayLike, ax: Axes | None = None, label: str | None = None) -> Axes:
    """Precision-recall curve of churn probabilities ``p``, with the base rate a random model would reach.

    The legend entry is ``label`` followed by the average precision of
    :func:`crmscore.evaluation.pr_auc`. Overlays on the same Axes share one base-rate line when the base
    rates agree (same evaluation data) and get one each otherwise. Raises :class:`ValueError` on invalid
    input or a single class.
    """
    y, p_arr = evaluation.validate_binary_predictions(y_true, p)
    average_precision = evaluation.pr_auc(y, p_arr)
    precision, recall, _ = sk_metrics.precision_recall_curve(y, p_arr, drop_intermediate=True)
    base_rate = float(y.mean())
    ax = _axes(ax, (6.0, 5.5))
    _draw_once(
        ax, f"crmscore-base-rate-{base_rate:.9f}", [0, 1], [base_rate, base_rate], f"base rate = {base_rate:.3f}"
    )
    # Steps, not straight segments: average precision is the area under exactly this step function.
    ax.plot(
        recall,
        precision,
        drawstyle="steps-post",
        linewidth=1.8,
        label=_legend_label(label, f"AP = {average_precision:.3f}"),
    )
    return _finish_unit_square(
        ax,
        xlabel="Recall (fraction of churners flagged)",
        ylabel="Precision (fraction of flagged customers who churn)",
        title="Precision-recall curve",
        legend_loc="upper right",
    )


def _calibration_histogram_axes(ax: Axes) -> Axes:
    """The inset that holds the histogram of ``p``, created on the first call and reused by overlays."""
    for child in ax.child_axes:
        if child.get_label() == _CALIBRATION_HIST_LABEL:
            return child
    # Upper left stays clear: a calibrated curve runs along the diagonal and the legend sits lower right.
    inset = ax.inset_axes([0.07, 0.63, 0.34, 0.28], label=_CALIBRATION_HIST_LABEL)
    inset.set_title("distribution of p", fontsize=8)
    inset.set_xlim(0, 1)
    inset.tick_params(labelsize=7)
    inset.set_ylabel("customers", fontsize=7)
    return inset


def plot_calibration(
    y_true: ArrayLike,
    p: ArrayLike,
    ax: Axes | None = None,
    label: str | None = None,
    n_bins: int = 10,
    strategy: evaluation.BinStrategy = "uniform",
) -> Axes:
    """Reliability diagram: observed churn rate against mean predicted probability per bin of ``p``.

    Points come from :func:`crmscore.evaluation.calibration_table` (same bins as the ECE in the legend);
    a calibrated model lies on the diagonal. A small inset shows how many customers have each ``p``,
    since a bin far from the diagonal matters little when it holds few customers. Overlays add one
    curve and one histogram outline in the same colour. Raises :class:`ValueError` on invalid input.
    """
    y, p_arr = evaluation.validate_binary_predictions(y_true, p)
    table = evaluation.calibration_table(y, p_arr, n_bins=n_bins, strategy=strategy)
    ece = evaluation.expected_calibration_error(y, p_arr, n_bins=n_bins, strategy=strategy)
    ax = _axes(ax, (6.0, 5.5))
    _draw_once(ax, _DIAGONAL_GID, [0, 1], [0, 1], "perfectly calibrated")
    (curve,) = ax.plot(
        table["mean_p"],
        table["observed_rate"],
        marker="o",
        markersize=4,
        linewidth=1.8,
        label=_legend_label(label, f"ECE = {ece:.3f}"),
    )
    inset = _calibration_histogram_axes(ax)
    inset.hist(p_arr, bins=np.linspace(0.0, 1.0, n_bins + 1), histtype="step", color=curve.get_color())
    return _finish_unit_square(
        ax,
        xlabel="Mean predicted churn probability in bin",
        ylabel="Observed churn rate in bin (fraction)",
        title="Calibration (reliability diagram)",
        legend_loc="lower right",
    )


def _curve_points(n_customers: int, must_include: Sequence[int]) -> np.ndarray:
    """Indices of the gains curve to draw: all of them for small data, ~1,000 plus ``must_include`` above."""
    if n_customers <= _MAX_CURVE_POINTS:
        return np.arange(n_customers + 1)
    evenly = np.rint(np.linspace(0, n_customers, _MAX_CURVE_POINTS + 1)).astype(np.int64)
    return np.union1d(evenly, np.asarray(must_include, dtype=np.int64))


def plot_gains(y_true: ArrayLike, p: ArrayLike, ax: Axes | None = None, label: str | None = None) -> Axes:
    """Cumulative gains: share of churners captured against share of customers contacted, riskiest first.

    Uses :func:`crmscore.evaluation.cumulative_gains_curve`; the diagonal is a random contact list. The
    points at 10 % and 20 % of customers are marked, and their capture (identical to
    :func:`crmscore.evaluation.capture_at`) is given in the legend. Overlays add one curve each; the
    diagonal and the 10 %/20 % guides are drawn once. Raises :class:`ValueError` when there is no churner.
    """
    y, p_arr = evaluation.validate_binary_predictions(y_true, p)
    share_contacted, share_captured = evaluation.cumulative_gains_curve(y, p_arr)
    marked = [evaluation.top_share_count(len(y), share) for share in _GAINS_MARKED_SHARES]
    shown = _curve_points(len(y), marked)
    headline = ", ".join(
        f"top {share:.0%}: {share_captured[top]:.0%}" for share, top in zip(_GAINS_MARKED_SHARES, marked, strict=True)
    )
    ax = _axes(ax, (6.0, 5.5))
    _draw_once(ax, _DIAGONAL_GID, [0, 1], [0, 1], "random")
    for share in _GAINS_MARKED_SHARES:
        if not _has_gid(ax, f"crmscore-guide-{share}"):
            ax.axvline(share, color="0.8", linestyle=":", linewidth=1.0, gid=f"crmscore-guide-{share}", zorder=0)
    (curve,) = ax.plot(
        share_contacted[shown],
        share_captured[shown],
        linewidth=1.8,
        label=_legend_label(label, f"churners captured, {headline}"),
    )
    ax.scatter(share_contacted[marked], share_captured[marked], color=curve.get_color(), s=30, zorder=3)
    ax.xaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    return _finish_unit_square(
        ax,
        xlabel="Customers contacted (% of all, highest predicted risk first)",
        ylabel="Churners captured (% of all churners)",
        title="Cumulative gains",
        legend_loc="lower right",
        legend_size=8,
    )


def _lift_bar_groups(ax: Axes) -> list:
    """Bar containers drawn by :func:`plot_lift` on this Axes, in drawing order."""
    return [c for c in ax.containers if c.patches and all(b.get_gid() == _LIFT_BAR_GID for b in c.patches)]


def plot_lift(
    y_true: ArrayLike, p: ArrayLike, ax: Axes | None = None, label: str | None = None, n_bins: int = 10
) -> Axes:
    """Lift by decile (or ``n_bins`` bins): each bin's churn rate divided by the overall churn rate, as bars.

    Bins come from :func:`crmscore.evaluation.gains_table` (bin 1 = highest predicted risk); the line at 1
    is a random model. Each overlay adds one set of bars and all sets are re-spaced side by side within
    each bin, so a champion and a challenger can be read bin by bin. Raises :class:`ValueError` when there
    is no churner or fewer customers than bins.
    """
    y, p_arr = evaluation.validate_binary_predictions(y_true, p)
    table = evaluation.gains_table(y, p_arr, n_bins=n_bins)
    ax = _axes(ax, (7.0, 4.5))
    bars = ax.bar(
        table["bin"],
        table["lift"],
        label=_legend_label(label, f"top-bin lift = {table['lift'].iloc[0]:.2f}"),
        zorder=2,
    )
    for bar in bars.patches:
        bar.set_gid(_LIFT_BAR_GID)
    # Re-space every set drawn so far: k sets share 80 % of each bin's width, side by side.
    groups = _lift_bar_groups(ax)
    width = 0.8 / len(groups)
    for position, group in enumerate(groups):
        for bin_number, bar in enumerate(group.patches, start=1):
            bar.set_width(width)
            bar.set_x(bin_number - 0.4 + position * width)
    if not _has_gid(ax, _DIAGONAL_GID):
        ax.axhline(1.0, gid=_DIAGONAL_GID, label="random (lift = 1)", zorder=3, **_REFERENCE_STYLE)
    ax.set_xticks(table["bin"].to_numpy())
    ax.set_xlim(0.4, n_bins + 0.6)
    ax.grid(axis="y", alpha=0.3)
    ax.set_xlabel("Bin of predicted churn risk (1 = highest; equal numbers of customers)")
    ax.set_ylabel("Lift (churn rate in bin / overall churn rate)")
    ax.set_title("Lift by decile" if n_bins == 10 else f"Lift by bin ({n_bins} bins)")
    ax.legend(loc="upper right")
    return ax


def _check_max_display(max_display: int) -> None:
    if isinstance(max_display, bool) or not isinstance(max_display, int | np.integer) or max_display < 1:
        raise ValueError(f"max_display must be a positive integer, got {max_display!r}")


def _shap_matrix(shap_values: np.ndarray, n_features: int) -> np.ndarray:
    """``shap_values`` as a finite 2-D float array with ``n_features`` columns, or a one-line ValueError."""
    values = np.asarray(shap_values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"shap_values must be 2-D (n_samples, n_features), got shape {values.shape}")
    if values.shape[1] != n_features:
        raise ValueError(f"shap_values has {values.shape[1]} columns but there are {n_features} features")
    if values.shape[0] == 0:
        raise ValueError("shap_values has no rows; SHAP plots need at least one sample")
    if not np.isfinite(values).all():
        raise ValueError("shap_values must be finite, found NaN or infinite values")
    return values


def _importance_order(values: np.ndarray, max_display: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices of the ``max_display`` largest mean |SHAP| (largest first; ties keep column order)."""
    _check_max_display(max_display)
    mean_abs = np.abs(values).mean(axis=0)
    order = np.argsort(-mean_abs, kind="stable")[:max_display]
    return order, mean_abs[order]


def _feature_rows(n_shown: int) -> np.ndarray:
    """y position of the i-th most important feature: the most important at the top."""
    return np.arange(n_shown)[::-1].astype(np.float64)


def _set_feature_ticks(ax: Axes, names: Sequence[str]) -> None:
    # Ticks set from the bottom up, so get_yticklabels() reads in screen order like any other axis.
    ax.set_yticks(np.arange(len(names)), labels=list(names)[::-1])
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.set_ylabel("Feature (largest mean |SHAP| on top)")


def _value_colours(column: pd.Series) -> np.ndarray:
    """RGBA per row: the colourmap at the value's rank within its column; grey if non-numeric or missing."""
    grey = np.asarray(to_rgba(_NON_NUMERIC_COLOUR))
    colours = np.tile(grey, (len(column), 1))
    is_numeric = pd.api.types.is_numeric_dtype(column) and not isinstance(column.dtype, pd.CategoricalDtype)
    if not is_numeric:
        return colours
    # Ranks rather than raw values, so one outlier does not wash the rest of the column into one colour.
    as_float = pd.Series(column.to_numpy(dtype="float64", na_value=np.nan))
    ranks = as_float.rank(method="average").to_numpy()
    valid = ~np.isnan(ranks)
    n_valid = int(valid.sum())
    scaled = (ranks[valid] - 1.0) / (n_valid - 1) if n_valid > 1 else np.full(n_valid, 0.5)
    colours[valid] = colormaps[_SHAP_COLOURMAP](scaled)
    return colours


def _density_jitter(values: np.ndarray, rng: np.random.Generator, half_height: float = 0.4) -> np.ndarray:
    """Vertical offsets that spread points most where SHAP values are dense, giving the beeswarm outline."""
    counts, edges = np.histogram(values, bins=50)
    which = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(counts) - 1)
    amplitude = half_height * counts[which] / counts.max()
    return rng.uniform(-1.0, 1.0, size=len(values)) * amplitude


def plot_shap_summary(
    shap_values: np.ndarray,
    X: pd.DataFrame,
    ax: Axes | None = None,
    max_display: int = 15,
    output_unit: str = "log-odds of churn",
) -> Axes:
    """Beeswarm-style SHAP summary: one row per feature, one point per customer, most important feature on top.

    ``shap_values`` is an ``(n_samples, n_features)`` array of contributions and ``X`` the matching
    DataFrame (same rows, same column order). Features are sorted by mean |SHAP| and the top
    ``max_display`` shown; points are jittered vertically in proportion to how dense the SHAP values are
    (a fixed seed, so the figure is reproducible) and coloured by the feature value's rank within its
    column, blue low to red high; non-numeric and categorical columns, and missing values, are grey.
    ``output_unit`` names what the contributions add up to (the x-axis unit). Adds a colour bar beside
    ``ax``. Raises :class:`ValueError` when the shapes disagree.
    """
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"X must be a pandas DataFrame matching shap_values, got {type(X).__name__}")
    values = _shap_matrix(shap_values, X.shape[1])
    if values.shape[0] != len(X):
        raise ValueError(f"shap_values has {values.shape[0]} rows but X has {len(X)}")
    order, _ = _importance_order(values, max_display)
    rows = _feature_rows(len(order))
    rng = np.random.default_rng(0)
    xs, ys, colours = [], [], []
    for row, column_index in zip(rows, order, strict=True):
        column_shap = values[:, column_index]
        xs.append(column_shap)
        ys.append(row + _density_jitter(column_shap, rng))
        colours.append(_value_colours(X.iloc[:, column_index]))

    all_colours = np.concatenate(colours)

    ax = _axes(ax, (8.0, 1.5 + 0.38 * len(order)))
    ax.axvline(0.0, color="0.5", linewidth=0.8, zorder=1)
    # One collection for every point keeps the figure light; rasterised so vector exports stay small.
    ax.scatter(
        np.concatenate(xs),
        np.concatenate(ys),
        c=all_colours,
        s=8,
        linewidths=0,
        alpha=0.8,
        rasterized=True,
        zorder=2,
    )
    names = [str(X.columns[i]) for i in order]
    _set_feature_ticks(ax, names)
    colour_bar = ax.figure.colorbar(
        ScalarMappable(norm=Normalize(0.0, 1.0), cmap=_SHAP_COLOURMAP), ax=ax, ticks=[0.0, 1.0], aspect=30, pad=0.01
    )
    colour_bar.set_ticklabels(["low", "high"])
    colour_bar.set_label("Feature value (rank within column)")
    if np.all(all_colours == to_rgba(_NON_NUMERIC_COLOUR), axis=1).any():
        ax.legend(handles=[Patch(color=_NON_NUMERIC_COLOUR, label="non-numeric or missing")], loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel(f"SHAP value (contribution to {output_unit})")
    shown = f"top {len(order)} of {values.shape[1]} features" if len(order) < values.shape[1] else "all features"
    ax.set_title(f"SHAP summary ({shown})")
    return ax


def plot_shap_importance(
    shap_values: np.ndarray,
    feature_names: Sequence[str],
    ax: Axes | None = None,
    max_display: int = 15,
    output_unit: str = "log-odds of churn",
) -> Axes:
    """Horizontal bars of mean |SHAP| per feature, largest on top, for the ``max_display`` largest.

    ``shap_values`` is an ``(n_samples, n_features)`` array and ``feature_names`` its column names in
    order; the value is printed at the end of each bar in ``output_unit``. Uses the same ordering as
    :func:`plot_shap_summary`, so the two figures list features identically. Raises :class:`ValueError`
    when the number of names and columns disagree.
    """
    names = [str(name) for name in feature_names]
    values = _shap_matrix(shap_values, len(names))
    order, mean_abs = _importance_order(values, max_display)
    ax = _axes(ax, (7.0, 1.5 + 0.35 * len(order)))
    bars = ax.barh(_feature_rows(len(order)), mean_abs, height=0.7, color="tab:blue", zorder=2)
    ax.bar_label(bars, fmt="%.3g", padding=2, fontsize=8)
    _set_feature_ticks(ax, [names[i] for i in order])
    # Room for the printed values; a model with no contributions at all still gets a usable axis.
    largest = float(mean_abs.max())
    ax.set_xlim(0, largest * 1.15 if largest > 0 else 1.0)
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel(f"Mean |SHAP value| ({output_unit})")
    shown = f"top {len(order)} of {values.shape[1]} features" if len(order) < values.shape[1] else "all features"
    ax.set_title(f"Feature importance, mean |SHAP| ({shown})")
    return ax


# ---------------------------------------------------------------------------------------------------
# CLV (customer value) plots
# ---------------------------------------------------------------------------------------------------


def _value_decile_groups(ax: Axes) -> list:
    """Bar containers drawn by :func:`plot_value_deciles` on this Axes, in drawing order."""
    return [c for c in ax.containers if c.patches and all(b.get_gid() == _VALUE_DECILE_BAR_GID for b in c.patches)]


def plot_value_deciles(
    y_true: ArrayLike, y_pred: ArrayLike, ax: Axes | None = None, label: str | None = None, n_bins: int = 10
) -> Axes:
    """Mean actual (bars) and mean predicted value (markers) per decile of predicted value.

    Bins come from :func:`crmscore.evaluation.decile_table`: equal numbers of customers, bin 1 the lowest
    predictions and bin ``n_bins`` the highest, as in Google's decile chart. A model whose markers sit on
    top of its bars predicts the right level in every part of its ranking; the decile MAPE of
    :func:`crmscore.evaluation.decile_mape` is in the legend. Each overlay adds one set of bars with its
    markers, and all sets are re-spaced side by side within each bin. Raises :class:`ValueError` on
    invalid input, fewer customers than bins or no positive actual value.
    """
    y, pred = evaluation.validate_value_predictions(y_true, y_pred)
    table = evaluation.decile_table(y, pred, n_bins=n_bins)
    mape = evaluation.decile_mape(y, pred, n_bins=n_bins)
    ax = _axes(ax, (7.0, 4.5))
    bars = ax.bar(
        table["bin"],
        table["mean_actual"],
        alpha=0.75,
        label=_legend_label(label, f"mean actual, decile MAPE = {mape:.1%}"),
        zorder=2,
    )
    for bar in bars.patches:
        bar.set_gid(_VALUE_DECILE_BAR_GID)
    ax.plot(
        table["bin"],
        table["mean_predicted"],
        linestyle="none",
        marker="D",
        markersize=5,
        markeredgecolor="black",
        color=to_rgba(bars.patches[0].get_facecolor(), alpha=1.0),
        gid=_VALUE_DECILE_MARKER_GID,
        label=f"{label}: mean predicted" if label else "mean predicted",
        zorder=3,
    )
    # Re-space every set drawn so far: k sets share 80 % of each bin's width; markers follow their bars.
    groups = _value_decile_groups(ax)
    markers = [line for line in ax.lines if line.get_gid() == _VALUE_DECILE_MARKER_GID]
    width = 0.8 / len(groups)
    for position, (group, marker_line) in enumerate(zip(groups, markers, strict=True)):
        for bin_number, bar in enumerate(group.patches, start=1):
            bar.set_width(width)
            bar.set_x(bin_number - 0.4 + position * width)
        marker_line.set_xdata([bar.get_x() + width / 2 for bar in group.patches])
    ax.set_xticks(table["bin"].to_numpy())
    ax.set_xlim(0.4, n_bins + 0.6)
    ax.grid(axis="y", alpha=0.3)
    ax.set_xlabel(f"Bin of predicted value (1 = lowest, {n_bins} = highest; equal numbers of customers)")
    ax.set_ylabel("Mean value per customer in bin")
    ax.set_title(
        "Predicted vs actual value by decile" if n_bins == 10 else f"Predicted vs actual value ({n_bins} bins)"
    )
    ax.legend(loc="upper left", fontsize=8)
    return ax


def plot_value_gains(y_true: ArrayLike, y_pred: ArrayLike, ax: Axes | None = None, label: str | None = None) -> Axes:
    """Value gains: share of all actual value held by the top customers by prediction, against their share.

    The curve is :func:`crmscore.evaluation.cumulative_value_curve`; the perfect ranking (customers sorted
    by their actual value) bounds it from above and the diagonal is a random ranking. The legend gives the
    normalised Gini of :func:`crmscore.evaluation.normalized_gini` (the area between the model's curve and
    the diagonal relative to the perfect one's) and the top-10 % capture. Overlays add one curve each; the
    perfect curve and the diagonal are drawn once (once per evaluation set, when the actual values differ).
    Raises :class:`ValueError` on invalid input or no positive actual value.
    """
    y, pred = evaluation.validate_value_predictions(y_true, y_pred)
    share_of_customers, share_of_value = evaluation.cumulative_value_curve(y, pred)
    _, perfect = evaluation.lorenz_curve(y)
    gini = evaluation.normalized_gini(y, pred)
    top = evaluation.top_share_count(len(y), 0.1)
    shown = _curve_points(len(y), [top])
    ax = _axes(ax, (6.0, 5.5))
    _draw_once(ax, _DIAGONAL_GID, [0, 1], [0, 1], "random")
    # Keyed by the curve's area, so a second evaluation set gets its own bound and the same set shares one.
    perfect_gid = f"crmscore-perfect-ranking-{perfect.sum() / len(y):.9f}"
    if not _has_gid(ax, perfect_gid):
        ax.plot(
            share_of_customers[shown],
            perfect[shown],
            gid=perfect_gid,
            label="perfect ranking (Gini = 1)",
            color="0.3",
            linestyle=":",
            linewidth=1.2,
            zorder=1,
        )
    ax.plot(
        share_of_customers[shown],
        share_of_value[shown],
        linewidth=1.8,
        label=_legend_label(label, f"Gini = {gini:.3f}, top 10%: {share_of_value[top]:.0%} of value"),
    )
    ax.xaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    return _finish_unit_square(
        ax,
        xlabel="Customers (% of all, highest predicted value first)",
        ylabel="Actual value captured (% of total)",
        title="Value gains (normalised Gini)",
        legend_loc="lower right",
        legend_size=8,
    )


def plot_lorenz(values: ArrayLike, ax: Axes | None = None, label: str | None = None) -> Axes:
    """Value concentration: share of all value held by the most valuable customers, with the top 20 % marked.

    The curve is :func:`crmscore.evaluation.lorenz_curve` (customers by value, most valuable first) and
    the diagonal is a base where everyone is worth the same. The share held by the top 20 %
    (:func:`crmscore.evaluation.top_share_of_value`) is marked with a point and given in the legend.
    Overlays (another period, another segment) add one curve each; the diagonal is drawn once. Raises
    :class:`ValueError` on negative or non-finite values or when every value is 0.
    """
    share_of_customers, share_of_value = evaluation.lorenz_curve(values)
    n = len(share_of_customers) - 1
    top = evaluation.top_share_count(n, _LORENZ_MARKED_SHARE)
    held = evaluation.top_share_of_value(values, _LORENZ_MARKED_SHARE)
    shown = _curve_points(n, [top])
    ax = _axes(ax, (6.0, 5.5))
    _draw_once(ax, _DIAGONAL_GID, [0, 1], [0, 1], "equal value per customer")
    (curve,) = ax.plot(
        share_of_customers[shown],
        share_of_value[shown],
        linewidth=1.8,
        label=_legend_label(label, f"top {_LORENZ_MARKED_SHARE:.0%} hold {held:.1%} of value"),
    )
    ax.scatter([share_of_customers[top]], [held], color=curve.get_color(), s=30, zorder=3)
    ax.xaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    return _finish_unit_square(
        ax,
        xlabel="Customers (% of all, most valuable first)",
        ylabel="Value held (% of total)",
        title="Value concentration (Lorenz curve)",
        legend_loc="lower right",
        legend_size=8,
    )


def _counts(values: ArrayLike, name: str, length: int, per: str) -> np.ndarray:
    """``values`` as a 1-D float array of ``length`` finite counts >= 0 (one ``per`` period or customer)."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric, found missing or non-numeric values") from None
    if arr.ndim != 1 or len(arr) != length:
        raise ValueError(f"{name} must be 1-D with one value per {per} ({length}), got shape {arr.shape}")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError(f"{name} must be finite and >= 0")
    return arr


def _cumulative_counts(values: ArrayLike, name: str, n_periods: int) -> np.ndarray:
    """A cumulative series of transactions: one value per period, finite, >= 0 and never falling."""
    arr = _counts(values, name, n_periods, "period")
    if (np.diff(arr) < 0).any():
        raise ValueError(f"{name} must be cumulative (never falling); pass np.cumsum of the per-period counts")
    return arr


def plot_cumulative_transactions(
    periods: ArrayLike,
    actual: ArrayLike,
    predicted: ArrayLike,
    calibration_end: object = None,
    ax: Axes | None = None,
    unit: str = "week",
) -> Axes:
    """Cumulative repeat transactions of the whole base per period, actual (solid) and predicted (dashed).

    ``periods`` are the period ends, increasing (numbers of ``unit`` since the start, or dates), and
    ``actual`` and ``predicted`` the *cumulative* repeat transactions up to each of them (predicted
    values may be fractional expectations); both are checked to never fall, which catches per-period
    counts passed by mistake. A vertical line marks ``calibration_end`` when given, so the holdout is the
    part to its right; the legend gives the predicted total at the last period and its error against the
    actual one. Raises :class:`ValueError` on mismatched lengths or non-cumulative series.
    """
    period_index = pd.Index(periods)
    if period_index.empty:
        raise ValueError("periods is empty; the plot needs at least one period")
    if not (period_index.is_monotonic_increasing and period_index.is_unique):
        raise ValueError("periods must be strictly increasing")
    actual_arr = _cumulative_counts(actual, "actual", len(period_index))
    predicted_arr = _cumulative_counts(predicted, "predicted", len(period_index))
    headline = f"end: {predicted_arr[-1]:,.0f}"
    if actual_arr[-1] > 0:
        headline += f", {predicted_arr[-1] / actual_arr[-1] - 1:+.1%} vs actual"
    ax = _axes(ax, (7.0, 4.5))
    ax.plot(period_index, actual_arr, linewidth=1.8, color="tab:blue", label=f"actual (end: {actual_arr[-1]:,.0f})")
    ax.plot(
        period_index, predicted_arr, linewidth=1.8, linestyle="--", color="tab:orange", label=f"predicted ({headline})"
    )
    if calibration_end is not None:
        ax.axvline(calibration_end, color="0.4", linestyle=":", linewidth=1.2, label="end of calibration")
    ax.grid(alpha=0.3)
    ax.set_xlabel(f"Time ({unit}s)")
    ax.set_ylabel("Cumulative repeat transactions")
    ax.set_title(f"Cumulative repeat transactions, per {unit}")
    ax.legend(loc="upper left")
    return ax


def plot_conditional_expectations(
    frequency: ArrayLike,
    actual: ArrayLike,
    predicted: ArrayLike,
    max_frequency: int = 7,
    ax: Axes | None = None,
) -> Axes:
    """Mean actual and predicted holdout purchases by number of repeat purchases in calibration.

    Customers are grouped by ``frequency`` (repeat purchases in the calibration period) from 0 to
    ``max_frequency``, the last group holding everyone with ``max_frequency`` or more (labelled ``"7+"``
    by default); per group the mean of ``actual`` (holdout purchases, solid) and ``predicted`` (the model's
    conditional expectation for the holdout, dashed) are drawn, with the number of customers under each
    tick. The classic BTYD check (Fader, Hardie & Lee 2005): a good model follows the actual means across
    all groups. The legend gives the customer-weighted mean absolute gap between the two. Raises
    :class:`ValueError` on mismatched lengths or negative, non-finite or fractional frequencies.
    """
    if isinstance(max_frequency, bool) or not isinstance(max_frequency, int | np.integer) or max_frequency < 1:
        raise ValueError(f"max_frequency must be a positive integer, got {max_frequency!r}")
    frequency_arr = np.asarray(frequency)
    if frequency_arr.ndim != 1 or len(frequency_arr) == 0:
        raise ValueError(f"frequency must be 1-D with at least one customer, got shape {frequency_arr.shape}")
    frequency_arr = _counts(frequency_arr, "frequency", len(frequency_arr), "customer")
    if (frequency_arr % 1 != 0).any():
        raise ValueError("frequency must hold whole numbers of repeat purchases")
    actual_arr = _counts(actual, "actual", len(frequency_arr), "customer")
    predicted_arr = _counts(predicted, "predicted", len(frequency_arr), "customer")
    group = np.minimum(frequency_arr, max_frequency).astype(np.int64)
    customers = np.bincount(group, minlength=max_frequency + 1)
    filled = customers > 0
    mean_actual = np.bincount(group, weights=actual_arr, minlength=max_frequency + 1)[filled] / customers[filled]
    mean_predicted = np.bincount(group, weights=predicted_arr, minlength=max_frequency + 1)[filled] / customers[filled]
    gap = float(np.average(np.abs(mean_predicted - mean_actual), weights=customers[filled]))
    x = np.arange(max_frequency + 1)[filled]
    ax = _axes(ax, (7.0, 4.5))
    ax.plot(x, mean_actual, marker="o", linewidth=1.8, color="tab:blue", label="actual")
    ax.plot(
        x,
        mean_predicted,
        marker="s",
        linestyle="--",
        linewidth=1.8,
        color="tab:orange",
        label=f"predicted (mean abs. gap = {gap:.3f})",
    )
    names = [str(k) for k in range(max_frequency)] + [f"{max_frequency}+"]
    ax.set_xticks(x, labels=[f"{names[k]}\n(n={customers[k]:,})" for k in x])
    ax.grid(alpha=0.3)
    ax.set_xlabel("Repeat purchases in calibration period")
    ax.set_ylabel("Mean purchases in holdout period")
    ax.set_title("Conditional expectations: holdout purchases by calibration frequency")
    ax.legend(loc="upper left")
    return ax


def _symlog_threshold(values: np.ndarray) -> float:
    """Where the symlog axis turns linear: a power of ten near the small end of the positive values."""
    positive = values[values > 0]
    if len(positive) == 0:
        return 1.0
    return float(10.0 ** np.floor(np.log10(np.quantile(positive, 0.05))))


def plot_predicted_vs_actual(
    y_true: ArrayLike, y_pred: ArrayLike, ax: Axes | None = None, label: str | None = None
) -> Axes:
    """Scatter of predicted against actual value per customer, on symmetric-log axes, with the diagonal.

    Values span orders of magnitude and many customers spend nothing, so both axes are ``symlog`` (linear
    near 0, logarithmic above a threshold set from the data on the first call), which shows the zeros.
    More than 5,000 customers are thinned to a random 5,000 with a fixed seed, so the figure is
    reproducible and light; the MAE (:func:`crmscore.evaluation.mae`, over all customers) and the
    number shown are in the legend. Overlays add one point cloud each; the diagonal is drawn once and
    stretched to cover every cloud. Raises :class:`ValueError` on invalid input.
    """
    y, pred = evaluation.validate_value_predictions(y_true, y_pred)
    error = evaluation.mae(y, pred)
    n = len(y)
    if n > _MAX_SCATTER_POINTS:
        sample = np.sort(np.random.default_rng(0).choice(n, size=_MAX_SCATTER_POINTS, replace=False))
        y, pred = y[sample], pred[sample]
        shown = f"{_MAX_SCATTER_POINTS:,} of {n:,} shown"
    else:
        shown = f"n = {n:,}"
    ax = _axes(ax, (6.0, 5.5))
    ax.scatter(
        y,
        pred,
        s=6,
        alpha=0.4,
        linewidths=0,
        rasterized=True,
        label=_legend_label(label, f"MAE = {error:.3g}, {shown}"),
    )
    largest = max(float(y.max()), float(pred.max()), 1e-9)
    diagonal = [line for line in ax.lines if line.get_gid() == _DIAGONAL_GID]
    if diagonal:
        largest = max(largest, float(np.max(diagonal[0].get_xdata())))
        diagonal[0].set_data([0.0, largest], [0.0, largest])
    else:
        ax.plot(
            [0.0, largest], [0.0, largest], gid=_DIAGONAL_GID, label="predicted = actual", zorder=1, **_REFERENCE_STYLE
        )
    # The first cloud sets the scale; an overlay keeps it, so both clouds are read on the same axes.
    if ax.get_xscale() != "symlog":
        threshold = _symlog_threshold(np.concatenate([y, pred]))
        ax.set_xscale("symlog", linthresh=threshold)
        ax.set_yscale("symlog", linthresh=threshold)
    ax.set_xlim(left=0.0)
    ax.set_ylim(bottom=0.0)
    ax.grid(alpha=0.3)
    ax.set_xlabel("Actual value per customer (symlog scale)")
    ax.set_ylabel("Predicted value per customer (symlog scale)")
    ax.set_title("Predicted vs actual value")
    ax.legend(loc="upper left", fontsize=8)
    return ax


def plot_qini(
    y: ArrayLike,
    treated: ArrayLike,
    uplift: ArrayLike,
    ax: Axes | None = None,
    label: str | None = None,
    true_uplift: ArrayLike | None = None,
) -> Axes:
    """Qini curve of an uplift ranking: incremental retained customers against the share contacted.

    The random line (contact a random share) is drawn once per Axes; with ``true_uplift`` (simulated data)
    the oracle's curve, the ranking by the true effect, is drawn too. The legend gives each Qini coefficient
    (:func:`crmscore.uplift.qini_coefficient`).
    """
    # Imported here: crmscore.uplift brings the model libraries (Optuna, LightGBM) that the other figures do without.
    from crmscore import uplift as uplift_metrics

    ax = _axes(ax, (6.5, 4.5))
    share, gained = uplift_metrics.qini_curve(y, treated, uplift)
    _draw_once(ax, "crmscore-qini-random", [0, 1], [0, gained[-1]], "random")
    qini = uplift_metrics.qini_coefficient(y, treated, uplift)
    ax.plot(share, gained, linewidth=1.8, label=_legend_label(label, f"Qini = {qini:.3f}"))
    if true_uplift is not None:
        o_share, o_gained = uplift_metrics.qini_curve(y, treated, true_uplift)
        oracle = uplift_metrics.qini_coefficient(y, treated, true_uplift)
        ax.plot(o_share, o_gained, color="0.3", linestyle=":", linewidth=1.5, label=f"oracle (Qini = {oracle:.3f})")
    ax.axhline(0, color="0.8", linewidth=0.8)
    ax.set_xlabel("Share of customers contacted, highest predicted uplift first")
    ax.set_ylabel("Incremental retained customers")
    ax.set_title("Qini curve (held-out randomized customers)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    return ax


def plot_profit_curve(curve: pd.DataFrame, ax: Axes | None = None, chosen: int | None = None) -> Axes:
    """Expected profit against the number of customers contacted (a :func:`crmscore.planning.profit_curve`
    frame), with the peak and the plan's ``chosen`` count marked."""
    ax = _axes(ax, (6.5, 4.5))
    ax.plot(curve["contacted"], curve["expected_profit"], linewidth=1.8, label="best expected value first")
    peak = curve.loc[curve["expected_profit"].idxmax()]
    ax.scatter([peak["contacted"]], [peak["expected_profit"]], color="tab:green", zorder=3, label="most profit")
    if chosen is not None:
        at = curve.iloc[(curve["contacted"] - chosen).abs().argsort().iloc[0]]
        ax.axvline(chosen, color="tab:orange", linestyle="--", linewidth=1.2, label=f"plan: {chosen:,} contacts")
        ax.scatter([at["contacted"]], [at["expected_profit"]], color="tab:orange", zorder=3)
    ax.axhline(0, color="0.8", linewidth=0.8)
    ax.set_xlabel("Customers contacted")
    ax.set_ylabel("Expected incremental profit")
    ax.set_title("Retention plan: expected profit by number contacted")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    return ax
