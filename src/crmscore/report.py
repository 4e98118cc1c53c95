"""The model review report: one self-contained HTML page for the meeting that decides what changes.

:func:`report_stage` (``crmscore report``) reads the latest scoring folder (``<scoring.out_dir>/as_of=…``),
the input tables and the MLflow registry, and writes ``<reports_dir>/review/model_review_<as-of>.html``: a
single file whose figures are embedded PNG data URIs and whose style is inline, so it opens offline, can
be mailed, and shows the same thing in ten years. The file is also logged to MLflow in a run of its own
(tag ``crmscore.stage=report``). Sections, each built by a public ``*_section`` function:

* **summary** — the track record's verdict first, then data period, customers, the scoring, and the compared
  model versions with their training runs (links into the MLflow UI when the tracking server is http(s),
  run ids otherwise);
* **track record** — did past scorings come true: the performance table ``crmscore monitor`` last wrote
  (``<monitoring.out_dir>/performance.parquet``, read as it is, never recomputed here; :mod:`crmscore.monitoring`)
  with its verdict, the flags, the customers missing from the current data, the churn AUC and churn rate per
  scoring (realized with 95 % intervals against the estimates, open scorings marked), predicted against
  realized churn per risk band and the realized value per tier; and the share of each tier's customers in
  each tier at the next scoring, from the last two scoring folders. Without a track record it says how to get
  one;
* **churn** — the two compared versions (``--compare A B``, default champion and challenger) on the same
  evaluation data: the test split ``crmscore train churn`` would use with these settings and data. Metric
  table (:func:`crmscore.evaluation.classification_metrics` and the EMPC of :mod:`crmscore.empc`), ROC,
  precision-recall, calibration, gains and lift overlays, and the SHAP summary and dependence plots of the
  first version's top features;
* **CLV** — both versions on the CLV holdout (repeat buyers at the test as-of, as in training): value
  metrics with the normalised Gini, predicted against actual by decile, value gains; for the BG/NBD ×
  Gamma-Gamma model of the first version's training run its parameters with standard errors and the
  holdout tracking plot (cumulative repeat purchases, actual against predicted);
* **segments** — the tree diagram and the profile of the scored customers;
* **tiers** — from the scoring: tier distribution, value concentration (Lorenz curve, share of value in the
  top 20 %), tier × risk band matrix with counts and value at risk, tier migration against the previous
  scoring;
* **drift** — population stability index (:mod:`crmscore.drift`) per model feature between the reference
  population and the scored one, flagged above 0.2. The reference is the customers at the **test as-of
  date of the churn model's training run** (param ``split.test_as_of``; the CLV model's when there is no
  churn model): the population on which its reported metrics were measured, one date like the scoring (the
  training split stacks several dates and would mix seasons), and for the latest training the most recent
  population the model was judged on. A drifted feature says the reported quality may not hold for today's
  customers.

When the second version is missing or is the first version itself, the report says so in plain words
instead of failing. The report is written whenever churn or CLV has a version: the data may allow only one
of them (a customer snapshot without revenue gives no CLV; a transaction log may give CLV while churn
fails), and the scoring then leaves that model's columns null. A missing churn or CLV model has its section
replaced by a note with the reason (``not_trained`` from the main job, ``models_missing`` of the scoring's
manifest, else the registry), the summary lists the models not trained and not scored, the drift uses the
features of the model there is, and the tiers section shows what null values leave to show. Problems the
user can fix (no scoring yet, an unknown alias, neither churn nor CLV registered) raise a one-line
:class:`~crmscore.errors.DataError`.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import html
import io
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from crmscore.config import EmpcSettings, Settings
from crmscore.errors import DataError
from crmscore.features import DATE_FEATURES

__all__ = [
    "ReportResult",
    "ModelVersion",
    "Comparison",
    "Section",
    "REPORT_SECTIONS",
    "report_stage",
    "latest_scoring",
    "resolve_reference",
    "compare_versions",
    "btyd_model_of_run",
    "run_link",
    "figure_data_uri",
    "render_report",
    "summary_section",
    "churn_section",
    "clv_section",
    "segments_section",
    "tiers_section",
    "campaigns_section",
    "drift_section",
    "track_record_section",
    "plot_tier_distribution",
    "plot_tier_risk_matrix",
    "plot_tier_migration",
    "plot_feature_drift",
    "plot_shap_dependence",
    "plot_churn_track_record",
    "plot_risk_band_calibration",
    "plot_tier_value_track_record",
    "plot_tier_transitions",
]

log = logging.getLogger("crmscore")

#: Section ids and headings, in the order of the page.
REPORT_SECTIONS: dict[str, str] = {
    "summary": "Summary",
    "track_record": "Track record",
    "churn": "Churn model",
    "clv": "Customer lifetime value (CLV)",
    "segments": "Segments",
    "tiers": "Tiers and value at risk",
    "campaigns": "Retention campaigns and plan",
    "drift": "Drift",
}

# SHAP values of this many test customers are enough for a stable picture and take a second.
_SHAP_SAMPLE = 1_000
_DEPENDENCE_FEATURES = 3
_FIGURE_DPI = 100


# --- results and model versions ---------------------------------------------------------------------


@dataclasses.dataclass
class ReportResult:
    """Where the report went and what it found."""

    path: Path
    run_id: str
    scoring_dir: Path
    as_of: str
    drifted: list[str]
    seconds: float


@dataclasses.dataclass
class ModelVersion:
    """A registered model version shown in the report, as the user named it (alias or number)."""

    name: str
    reference: str
    version: int
    run_id: str
    estimator: Any

    @property
    def label(self) -> str:
        """``champion v3`` for an alias, ``v3`` for a version asked by number."""
        return f"v{self.version}" if self.reference.isdigit() else f"{self.reference} v{self.version}"


@dataclasses.dataclass
class Comparison:
    """The two versions of one registered model the report compares; ``second`` is None when there is
    nothing to compare, and ``note`` then says why in words for the page."""

    first: ModelVersion
    second: ModelVersion | None
    note: str | None = None

    @property
    def versions(self) -> list[ModelVersion]:
        return [self.first] if self.second is None else [self.first, self.second]


@dataclasses.dataclass
class Section:
    """One section of the page: its anchor id, heading and HTML body."""

    id: str
    title: str
    body: str


# --- registry lookups ---------------------------------------------------------------------------------


def resolve_reference(name: str, reference: str) -> int | None:
    """The version of registered model ``name`` that ``reference`` names, or None when it names none.

    A reference of digits is a version number (it must exist); anything else is an alias
    (``champion``, ``challenger`` or one set by hand). Call :func:`crmscore.tracking.configure` first.
    """
    from mlflow.exceptions import MlflowException

    from crmscore import tracking

    if reference.isdigit():
        try:
            return int(tracking.client().get_model_version(name, str(int(reference))).version)
        except MlflowException:
            return None
    found = tracking.version_by_alias(name, reference)
    return None if found is None else int(found.version)


def _aliases(name: str) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    from crmscore import tracking

    try:
        return dict(tracking.client().get_registered_model(name).aliases)
    except MlflowException:
        return {}


def _load_version(name: str, reference: str, version: int) -> ModelVersion:
    from crmscore.tracking import registered_estimator

    estimator, version, run_id = registered_estimator(name, version)
    return ModelVersion(name, reference, version, run_id, estimator)


def compare_versions(name: str, first_ref: str, second_ref: str, required: bool = True) -> Comparison | None:
    """Load the two versions of registered model ``name`` that the references (aliases or numbers) name.

    The first must exist when ``required`` (a one-line :class:`DataError` names the aliases that are set
    and the training to run); otherwise a missing first gives None. A missing second, or a second that is
    the first version itself, gives a :class:`Comparison` of one version with a note that says so.
    """
    kind = name.removeprefix("crmscore-")
    first_version = resolve_reference(name, first_ref)
    if first_version is None:
        if not required:
            return None
        aliases = _aliases(name)
        known = ", ".join(f"{a} (v{v})" for a, v in sorted(aliases.items())) or "none"
        raise DataError(
            f"{name} has no version {first_ref!r} (aliases set: {known}); run `crmscore train {kind}` or name "
            "another alias or version number with --compare"
        )
    first = _load_version(name, first_ref, first_version)
    second_version = resolve_reference(name, second_ref)
    if second_version is None:
        what = "no challenger" if second_ref == "challenger" else f"no version {second_ref!r}"
        return Comparison(first, None, f"{name} has {what}: {first.label} is shown on its own.")
    if second_version == first_version:
        return Comparison(
            first,
            None,
            f"{name}: {second_ref} is the same version as {first_ref} (v{first_version}), so there is nothing to "
            f"compare; {first.label} is shown on its own.",
        )
    return Comparison(first, _load_version(name, second_ref, second_version))


def run_link(tracking_uri: str, experiment_id: str, run_id: str) -> str | None:
    """The MLflow UI address of a run when the tracking store is an http(s) server, else None.

    The UI serves runs at ``<server>/#/experiments/<experiment id>/runs/<run id>``; a local store
    (SQLite, files) has no address a reader of the report could open, so the run id is shown instead.
    """
    from crmscore.tracking import is_remote_uri

    if not is_remote_uri(tracking_uri):
        return None
    return f"{tracking_uri.rstrip('/')}/#/experiments/{quote(str(experiment_id))}/runs/{quote(str(run_id))}"


# --- the scoring folder -----------------------------------------------------------------------------------


def latest_scoring(out_dir: str | os.PathLike) -> Path:
    """The latest finished scoring folder (``as_of=YYYY-MM-DD`` with ``scores.parquet``) in ``out_dir``.

    Raises a one-line :class:`DataError` telling the user to score first when there is none.
    """
    from crmscore.scoring import previous_scoring

    found = previous_scoring(out_dir, pd.Timestamp.max)
    if found is None:
        raise DataError(
            f"{out_dir}: no scoring found (no as_of=YYYY-MM-DD folder with scores.parquet); run `crmscore score` first"
        )
    return found


# --- figures and HTML pieces -------------------------------------------------------------------------------


def figure_data_uri(fig) -> str:
    """The figure as a ``data:image/png;base64,…`` URI (the figure is closed afterwards)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        # bbox_inches="tight" keeps colour bars and long tick labels inside the image.
        fig.savefig(buffer, format="png", dpi=_FIGURE_DPI, bbox_inches="tight", facecolor="white")
    finally:
        plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(ax_or_fig, caption: str, wide: bool = False) -> str:
    """An embedded figure with its caption; ``wide`` ones take a whole row of the grid."""
    fig = getattr(ax_or_fig, "figure", ax_or_fig)
    uri = figure_data_uri(fig)
    text = html.escape(caption)
    cls = ' class="wide"' if wide else ""
    return f'<figure{cls}><img src="{uri}" alt="{text}"><figcaption>{text}</figcaption></figure>'


def _overlaid(y, predictions: Mapping[str, np.ndarray], *plots_: tuple) -> str:
    """One figure per ``(plot function, caption)``, each with every model's predictions drawn on the same axes."""
    figures = []
    for draw, caption in plots_:
        ax = None
        for label, pred in predictions.items():
            ax = draw(y, pred, ax=ax, label=label)
        figures.append(_figure(ax, caption))
    return _figures(*figures)


def _figures(*figures: str) -> str:
    return '<div class="figures">' + "".join(figures) + "</div>"


def _p(text: str, cls: str | None = None) -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<p{attr}>{html.escape(text)}</p>"


def _note(text: str) -> str:
    return _p(text, "note")


def _h3(text: str) -> str:
    return f"<h3>{html.escape(text)}</h3>"


def _table(frame: pd.DataFrame, formats: Mapping[str, Callable[[Any], str]] | None = None, index: bool = False) -> str:
    """A DataFrame as an escaped HTML table, columns formatted by ``formats`` (column → function)."""
    shown = frame.copy()
    for column, fmt in (formats or {}).items():
        if column in shown.columns:
            shown[column] = [("–" if _missing(v) else fmt(v)) for v in shown[column]]
    return shown.to_html(index=index, escape=True, border=0, classes="data", na_rep="–")


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _one_line(text: Any) -> str:
    """``text`` with its line breaks and runs of blanks folded into single spaces."""
    return " ".join(str(text).split())


def _sentence(text: Any) -> str:
    """``text`` on one line, ending with a full stop."""
    line = _one_line(text)
    return line if line.endswith((".", "!", "?")) else line + "."


def _number(value: Any) -> str:
    return f"{value:,.0f}"


def _decimal(value: Any) -> str:
    return f"{value:.4f}"


def _percent(value: Any) -> str:
    return f"{value:.1%}"


def _date(value: Any) -> str:
    return str(pd.Timestamp(value).date())


# --- small figures the report needs (same conventions as crmscore.plots: ax=None, return the Axes) ----------


def _new_axes(ax, figsize: tuple[float, float]):
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax
    _, new = plt.subplots(figsize=figsize)
    return new


def plot_tier_distribution(summary: pd.DataFrame, ax=None):
    """Share of customers and share of CLV per tier, side by side (the value pyramid at a glance).

    ``summary`` is :func:`crmscore.tiers.tier_summary` (index tiers A-E, columns ``customer_share`` and
    ``clv_share``); each bar is labelled with its percentage. Without a ``clv_share`` column (a scoring
    without CLV) only the customers are drawn.
    """
    from matplotlib.ticker import PercentFormatter

    ax = _new_axes(ax, (7.0, 4.5))
    x = np.arange(len(summary))
    series = [
        ("customer_share", "customers", "tab:blue"),
        ("clv_share", "CLV", "tab:orange"),
    ]
    series = [s for s in series if s[0] in summary.columns]
    width = 0.38 if len(series) > 1 else 0.6
    for i, (column, label, colour) in enumerate(series):
        offset = (i - (len(series) - 1) / 2) * width
        values = summary[column].fillna(0.0).to_numpy()
        bars = ax.bar(x + offset, values, width=width, label=f"share of {label}", color=colour, zorder=2)
        ax.bar_label(bars, labels=[f"{v:.0%}" for v in values], fontsize=8, padding=2)
    ax.set_xticks(x, labels=[str(t) for t in summary.index])
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    shown = summary[[column for column, _, _ in series]]
    ax.set_ylim(0, max(1e-9, float(shown.max().max() if len(shown) else 0.0)) * 1.15)
    ax.grid(axis="y", alpha=0.3)
    ax.set_xlabel("Tier (A = best)")
    if len(series) > 1:
        ax.set_ylabel("Share of all customers / of all CLV")
        ax.set_title("Tier distribution: customers and value")
    else:
        ax.set_ylabel("Share of all tiered customers")
        ax.set_title("Tier distribution: customers")
    ax.legend(loc="upper left")
    return ax


def _heatmap(
    ax,
    counts: np.ndarray,
    rows: Sequence[str],
    columns: Sequence[str],
    texts: np.ndarray,
    colour_label: str = "customers",
) -> None:
    image = ax.imshow(counts, cmap="Blues", aspect="auto", vmin=0, vmax=max(1.0, float(counts.max())))
    ax.set_xticks(np.arange(len(columns)), labels=list(columns))
    ax.set_yticks(np.arange(len(rows)), labels=list(rows))
    limit = 0.6 * float(counts.max()) if counts.max() > 0 else 1.0
    for i in range(len(rows)):
        for j in range(len(columns)):
            colour = "white" if counts[i, j] > limit else "black"
            ax.text(j, i, texts[i, j], ha="center", va="center", color=colour, fontsize=8)
    ax.figure.colorbar(image, ax=ax, label=colour_label, fraction=0.05, pad=0.02)


def plot_tier_risk_matrix(matrix: pd.DataFrame, ax=None):
    """Tier × churn risk band heatmap of customers; each cell gives its customers and value at risk.

    ``matrix`` is :func:`crmscore.tiers.tier_risk_matrix` (rows tiers, columns ``(measure, band)``).
    High-value customers at high risk (top right) are where retention effort pays most. Without a
    ``value_at_risk`` measure (a scoring without CLV) the cells give the customers only.
    """
    counts = matrix["customers"].to_numpy(dtype=float)
    with_value = "value_at_risk" in matrix.columns.get_level_values(0)
    if with_value:
        at_risk = matrix["value_at_risk"].to_numpy(dtype=float)
        texts = np.array(
            [
                [f"{int(c):,}\nVaR {v:,.0f}" for c, v in zip(cr, vr, strict=True)]
                for cr, vr in zip(counts, at_risk, strict=True)
            ]
        )
    else:
        texts = np.array([[f"{int(c):,}" for c in row] for row in counts])
    ax = _new_axes(ax, (6.5, 4.8))
    _heatmap(ax, counts, [str(t) for t in matrix.index], [str(b) for b in matrix["customers"].columns], texts)
    ax.set_xlabel("Churn risk band")
    ax.set_ylabel("Tier (A = best)")
    ax.set_title(
        "Customers and value at risk (VaR) by tier and risk band" if with_value else "Customers by tier and risk band"
    )
    return ax


def plot_tier_migration(migration: pd.DataFrame, ax=None):
    """Heatmap of customers moving from their previous tier (rows, ``new`` = not scored before) to their
    current tier (columns, ``gone`` = not scored now); the diagonal holds customers who kept their tier."""
    counts = migration.to_numpy(dtype=float)
    texts = np.array([[f"{int(c):,}" for c in row] for row in counts])
    ax = _new_axes(ax, (6.5, 4.8))
    _heatmap(ax, counts, [str(r) for r in migration.index], [str(c) for c in migration.columns], texts)
    ax.set_xlabel("Current tier")
    ax.set_ylabel("Previous tier")
    ax.set_title("Tier migration since the previous scoring")
    return ax


def plot_feature_drift(drift: pd.DataFrame, threshold: float = 0.2, ax=None, max_display: int = 20):
    """Horizontal bars of the PSI per feature (largest on top), drifted ones in red, with the threshold.

    ``drift`` is :func:`crmscore.drift.feature_drift`; the ``max_display`` largest are shown.
    """
    shown = drift.sort_values("psi", ascending=False, kind="stable").head(max_display)
    ax = _new_axes(ax, (7.5, 1.2 + 0.32 * max(len(shown), 1)))
    rows = np.arange(len(shown))[::-1]
    colours = ["tab:red" if psi > threshold else "tab:blue" for psi in shown["psi"]]
    bars = ax.barh(rows, shown["psi"].to_numpy(), color=colours, height=0.7, zorder=2)
    ax.bar_label(bars, fmt="%.3f", fontsize=8, padding=2)
    ax.axvline(threshold, color="0.3", linestyle="--", linewidth=1.0, label=f"drift threshold (PSI = {threshold:g})")
    ax.set_yticks(rows, labels=[str(f) for f in shown["feature"]])
    largest = float(shown["psi"].max()) if len(shown) else 0.0
    ax.set_xlim(0, max(largest, threshold) * 1.2)
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel("Population stability index (reference → scoring)")
    ax.set_ylabel("Feature")
    ax.set_title("Feature drift (PSI)")
    ax.legend(loc="lower right", fontsize=8)
    return ax


def plot_shap_dependence(
    shap_values: np.ndarray, X: pd.DataFrame, feature: str, ax=None, output_unit: str = "log-odds of churn"
):
    """SHAP dependence of one feature: its value (x) against its contribution (y), one point per customer.

    Non-numeric features are drawn per category (jittered); missing values are left out and counted in
    the title. ``shap_values`` and ``X`` have the same rows and columns.
    """
    column = list(X.columns).index(feature)
    contribution = np.asarray(shap_values, dtype=float)[:, column]
    values = X[feature]
    ax = _new_axes(ax, (6.0, 4.2))
    numeric = pd.api.types.is_numeric_dtype(values) and not isinstance(values.dtype, pd.CategoricalDtype)
    present = values.notna().to_numpy()
    if numeric:
        ax.scatter(values.to_numpy(dtype=float)[present], contribution[present], s=8, alpha=0.5, linewidths=0)
        ax.set_xlabel(f"{feature} (feature value)")
    else:
        labels = values.astype(object)[present].map(str)
        categories = sorted(pd.unique(labels))
        codes = pd.Index(categories).get_indexer(labels)
        jitter = np.random.default_rng(0).uniform(-0.2, 0.2, size=len(codes))
        ax.scatter(codes + jitter, contribution[present], s=8, alpha=0.5, linewidths=0)
        ax.set_xticks(np.arange(len(categories)), labels=categories, rotation=30, ha="right")
        ax.set_xlabel(f"{feature} (category)")
    ax.axhline(0.0, color="0.5", linewidth=0.8)
    ax.grid(alpha=0.3)
    ax.set_ylabel(f"SHAP value ({output_unit})")
    missing = int((~present).sum())
    ax.set_title(f"SHAP dependence: {feature}" + (f" ({missing:,} missing not shown)" if missing else ""))
    return ax


# --- track record figures (the performance table of crmscore.monitoring.track_record) -------------------------

_TRACK_CHURN_METRICS = {"roc_auc": "Churn ROC AUC", "brier": "Churn Brier score", "churn_rate": "Churn rate"}
_REALIZED_COLOUR, _ESTIMATED_COLOUR = "tab:blue", "tab:orange"


def _track_rows(performance: pd.DataFrame, model: str, metric: str, kind: str) -> pd.DataFrame:
    """The rows of one model, metric and kind, oldest scoring first."""
    mine = performance.loc[
        (performance["model"] == model) & (performance["metric"] == metric) & (performance["kind"] == kind)
    ]
    return mine.sort_values("as_of", kind="stable")


def _interval_errors(rows: pd.DataFrame) -> np.ndarray:
    """``errorbar``'s ``yerr`` for the rows' 95 % intervals; a missing interval draws no bar."""
    values = rows["value"].to_numpy(dtype=float)
    below = np.nan_to_num(values - rows["lower"].to_numpy(dtype=float), nan=0.0)
    above = np.nan_to_num(rows["upper"].to_numpy(dtype=float) - values, nan=0.0)
    # A percentile interval may exclude the value itself (a skewed bootstrap): the bar then starts at the value.
    return np.clip(np.vstack([below, above]), 0.0, None)


def _scoring_ticks(ax, rows: pd.DataFrame, with_version: bool = False) -> None:
    """One tick per scoring date (with the model version under it when asked)."""
    rows = rows.drop_duplicates("as_of").sort_values("as_of")
    labels = [
        f"{_date(d)}\nv{int(v)}" if with_version else _date(d)
        for d, v in zip(rows["as_of"], rows["version"], strict=True)
    ]
    crowded = len(labels) > 6
    ax.set_xticks(
        list(rows["as_of"]), labels=labels, rotation=30 if crowded else 0, ha="right" if crowded else "center"
    )


def _finish_track_axes(ax, xlabel: str, ylabel: str, heading: str, **legend: Any):
    """Grid, labels, title (``heading``) and legend (``legend``: its keywords) shared by the track record figures."""
    ax.grid(axis=legend.pop("grid_axis", "both"), alpha=0.3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(heading)
    ax.legend(fontsize=8, **legend)
    return ax


def plot_churn_track_record(performance: pd.DataFrame, metric: str = "roc_auc", ax=None):
    """A churn metric per scoring date: realized (with its 95 % interval) against estimated (dashed).

    ``performance`` is :func:`crmscore.monitoring.track_record`; ``metric`` one of ``roc_auc``, ``brier``
    and ``churn_rate``. The estimate, from the probabilities alone, is drawn for every scoring; the scorings
    whose churn horizon is still open are ringed (estimate only), and the realized value is drawn for the
    closed ones. Each tick names the scoring date and the churn model version that made it. Raises
    :class:`ValueError` for another metric or when no scoring has churn probabilities.
    """
    if metric not in _TRACK_CHURN_METRICS:
        raise ValueError(f"metric: expected one of {', '.join(_TRACK_CHURN_METRICS)}, got {metric!r}")
    estimated = _track_rows(performance, "churn", metric, "estimated")
    realized = _track_rows(performance, "churn", metric, "realized")
    if estimated.empty and realized.empty:
        raise ValueError(f"no churn {metric} in the track record (no scoring has churn probabilities)")
    name = _TRACK_CHURN_METRICS[metric]
    ax = _new_axes(ax, (7.5, 4.5))
    estimates = (
        (estimated, {"linestyle": "--", "markersize": 4, "label": "estimated from the probabilities alone"}),
        (
            estimated.loc[estimated["status"] == "open"],
            {"linestyle": "none", "markersize": 12, "markerfacecolor": "none", "markeredgewidth": 1.5}
            | {"label": "horizon still open: estimate only"},
        ),
    )
    for rows, style in estimates:
        if len(rows):
            x, y = rows["as_of"].to_numpy(), rows["value"].to_numpy(dtype=float)
            ax.plot(x, y, marker="o", color=_ESTIMATED_COLOUR, markeredgecolor=_ESTIMATED_COLOUR, **style)
    if len(realized):
        ax.errorbar(
            realized["as_of"].to_numpy(),
            realized["value"].to_numpy(dtype=float),
            yerr=_interval_errors(realized),
            fmt="o-",
            color=_REALIZED_COLOUR,
            capsize=4,
            label="realized (95 % interval)",
        )
    if metric == "churn_rate":
        from matplotlib.ticker import PercentFormatter

        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    _scoring_ticks(ax, pd.concat([estimated, realized]), with_version=True)
    return _finish_track_axes(
        ax, "Scoring (as of) and churn model version", name, f"{name} per scoring: realized against estimated"
    )


def _band_order(bands: Sequence[str]) -> list[str]:
    from crmscore.tiers import RISK_BANDS

    known = [b for b in RISK_BANDS if b in bands]
    return known + sorted(b for b in bands if b not in RISK_BANDS)


def _bracketed(metric: pd.Series, prefix: str) -> pd.Series:
    """``low`` of ``realized_rate[low]``: the band or tier a bracketed metric name holds."""
    return metric.str.slice(len(prefix) + 1, -1)


def _bar_percent(value: float) -> str:
    return "" if _missing(value) else f"{value:.0%}"


def plot_risk_band_calibration(performance: pd.DataFrame, as_of: Any = None, ax=None):
    """Predicted against realized churn rate per risk band of one closed scoring (default: the latest).

    ``performance`` is :func:`crmscore.monitoring.track_record`. One group of two bars per band (low to
    high): the predicted rate (the mean churn probability of the band's customers) and the realized rate
    with its 95 % interval; each tick gives the band's customers. Raises :class:`ValueError` when no closed
    scoring (or not ``as_of``) has realized rates per band.
    """
    from matplotlib.ticker import PercentFormatter

    churn = performance.loc[(performance["model"] == "churn") & (performance["status"] == "closed")]
    realized = churn.loc[churn["metric"].str.startswith("realized_rate[") & (churn["kind"] == "realized")]
    if realized.empty:
        raise ValueError("no closed scoring with realized churn rates per risk band")
    day = realized["as_of"].max() if as_of is None else pd.Timestamp(as_of)
    realized = realized.loc[realized["as_of"] == day]
    if realized.empty:
        raise ValueError(f"the {_date(day)} scoring has no realized churn rates per risk band")
    realized = realized.set_index(_bracketed(realized["metric"], "realized_rate"))
    predicted = churn.loc[(churn["as_of"] == day) & churn["metric"].str.startswith("predicted_rate[")]
    predicted = predicted.set_index(_bracketed(predicted["metric"], "predicted_rate"))
    bands = _band_order(list(realized.index))
    realized = realized.loc[bands]
    predicted_rate = predicted["value"].reindex(bands).to_numpy(dtype=float)
    ax = _new_axes(ax, (7.0, 4.5))
    x = np.arange(len(bands))
    width = 0.38
    bars = ax.bar(
        x - width / 2, predicted_rate, width, color=_ESTIMATED_COLOUR, label="predicted (mean churn probability)"
    )
    # Inside the bars, so the realized bar's interval stays readable above it.
    ax.bar_label(bars, labels=[_bar_percent(v) for v in predicted_rate], fontsize=8, label_type="center", color="white")
    bars = ax.bar(
        x + width / 2,
        realized["value"].to_numpy(dtype=float),
        width,
        yerr=_interval_errors(realized),
        capsize=4,
        color=_REALIZED_COLOUR,
        label="realized (95 % interval)",
    )
    ax.bar_label(
        bars, labels=[_bar_percent(v) for v in realized["value"]], fontsize=8, label_type="center", color="white"
    )
    ax.set_xticks(x, labels=[f"{b}\n{int(n):,} customers" for b, n in zip(bands, realized["n"], strict=True)])
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    top = np.nanmax(np.r_[predicted_rate, realized["upper"].to_numpy(dtype=float), realized["value"], 0.01])
    ax.set_ylim(0, min(1.05, float(top) * 1.2))
    return _finish_track_axes(
        ax,
        "Churn risk band",
        "Churn rate within the horizon",
        f"Predicted against realized churn by risk band (scoring as of {_date(day)})",
        loc="upper left",
        grid_axis="y",
    )


def plot_tier_value_track_record(performance: pd.DataFrame, ax=None):
    """Mean realized spend per customer of each tier, per scoring whose CLV horizon has closed.

    ``performance`` is :func:`crmscore.monitoring.track_record`; one line per tier (A = best) with 95 %
    intervals. Tiers that earn what they promise stay apart and in order. Raises :class:`ValueError` when
    no scoring has realized value per tier.
    """
    rows = performance.loc[
        (performance["model"] == "tiers")
        & performance["metric"].str.startswith("realized_value[")
        & (performance["kind"] == "realized")
    ]
    if rows.empty:
        raise ValueError("no scoring with realized value per tier (no CLV horizon has closed)")
    rows = rows.assign(tier=_bracketed(rows["metric"], "realized_value")).sort_values(["tier", "as_of"])
    ax = _new_axes(ax, (7.5, 4.5))
    for tier, mine in rows.groupby("tier", sort=True):
        ax.errorbar(
            mine["as_of"].to_numpy(),
            mine["value"].to_numpy(dtype=float),
            yerr=_interval_errors(mine),
            fmt="o-",
            capsize=3,
            label=f"tier {tier}",
        )
    _scoring_ticks(ax, rows)
    ax.margins(x=0.08)
    ax.set_ylim(bottom=0)
    return _finish_track_axes(
        ax,
        "Scoring (as of)",
        "Mean realized spend per customer\nin the CLV horizon",
        "Realized value per tier",
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        title="95 % intervals",
    )


def plot_tier_transitions(migration: pd.DataFrame, earlier: str = "earlier", later: str = "later", ax=None):
    """Heatmap of the share of each earlier tier's customers in each tier at the later scoring.

    ``migration`` is :func:`crmscore.tiers.tier_migration` (counts; the ``new`` row is left out, ``gone``
    becomes ``not scored``), so each row sums to 100 %; ``earlier`` and ``later`` name the two scorings.
    The diagonal is the share that kept its tier; each row's tick gives its customers.
    """
    counts = migration.drop(index="new", errors="ignore").rename(columns={"gone": "not scored"})
    counts = counts.apply(pd.to_numeric, errors="coerce").fillna(0).to_numpy(dtype=float)
    totals = counts.sum(axis=1)
    shares = np.divide(counts, totals[:, None], out=np.zeros_like(counts), where=totals[:, None] > 0)
    texts = np.array(
        [[f"{s:.0%}" if t > 0 else "–" for s in row] for row, t in zip(shares, totals, strict=True)], dtype=object
    )
    rows = [f"{r} ({int(t):,})" for r, t in zip(migration.index.drop("new", errors="ignore"), totals, strict=True)]
    columns = ["not scored" if c == "gone" else str(c) for c in migration.columns]
    ax = _new_axes(ax, (6.5, 4.8))
    _heatmap(ax, shares, rows, columns, texts, colour_label="share of the earlier tier's customers")
    ax.set_xlabel(f"Tier at the {later} scoring")
    ax.set_ylabel(f"Tier at the {earlier} scoring (customers)")
    ax.set_title(f"Tier migration from {earlier} to {later}")
    return ax


# --- sections ------------------------------------------------------------------------------------------------


def _run_cell(run_id: str, link: str | None) -> str:
    if link is None:
        return f"<code>{html.escape(run_id)}</code>"
    return f'<a href="{html.escape(link, quote=True)}">{html.escape(run_id)}</a>'


def summary_section(
    tables: Mapping[str, pd.DataFrame],
    manifest: Mapping[str, Any],
    comparisons: Mapping[str, Comparison | None],
    runs: Mapping[str, Any],
    tracking_uri: str,
    settings: Settings,
    highlights: Sequence[tuple[str, str]] = (),
    not_trained: Mapping[str, str] | None = None,
) -> Section:
    """Data period, customers, the scoring, and the compared model versions with links to their runs.

    ``runs`` maps run ids to MLflow ``Run`` objects (training time, decision, experiment id);
    ``highlights`` are (label, text) lines shown first, the findings of the other sections.
    ``not_trained`` (role → reason) names the models the run could not train; with the manifest's
    ``models_missing`` (role → reason, the models the scoring went without) each gets a line of its own.
    """
    customers = tables["customers"]
    facts: list[tuple[str, str]] = list(highlights)
    for label, missing in (
        ("Models not trained", not_trained or {}),
        ("Not scored", manifest.get("models_missing") or {}),
    ):
        if missing:
            facts.append((label, "; ".join(f"{role}: {_one_line(reason)}" for role, reason in missing.items())))
    if "transactions" in tables and not tables["transactions"].empty:
        dates = tables["transactions"]["date"]
        facts.append(("Transactions", f"{len(dates):,}, from {_date(dates.min())} to {_date(dates.max())}"))
    if "signup_date" in customers.columns:
        signup = customers["signup_date"]
        facts.append(
            ("Customers in the data", f"{len(customers):,}, signed up {_date(signup.min())} to {_date(signup.max())}")
        )
    else:
        facts.append(("Customers in the data", f"{len(customers):,} (a snapshot without signup dates)"))
    facts.append(("Scoring", f"as of {manifest.get('as_of')}: {int(manifest.get('scored', 0)):,} customers scored"))
    previous = manifest.get("previous_scoring")
    facts.append(("Previous scoring", str(previous).removeprefix("as_of=") if previous else "none"))
    used_tiers = manifest.get("tiers")
    method = used_tiers.get("method") if isinstance(used_tiers, Mapping) else None
    facts.append(("Tier method", str(method or settings.tiers.method)))
    facts.append(("Parameters fingerprint", str(manifest.get("params_hash", settings.fingerprint()))))
    facts.append(("Tracking store", tracking_uri))
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts)
    body = [f'<table class="facts">{rows}</table>', _h3("Models")]

    used = {role: model.get("version") for role, model in manifest.get("models", {}).items()}
    model_rows = []
    for role, comparison in comparisons.items():
        if comparison is None:
            model_rows.append(
                f"<tr><td>{html.escape(role)}</td><td colspan=6>no such version registered (see the "
                f'<a href="#{html.escape(role)}">{html.escape(role)} section</a>)</td></tr>'
            )
            continue
        for position, version in enumerate(comparison.versions):
            run = runs.get(version.run_id)
            link = run_link(tracking_uri, run.info.experiment_id, version.run_id) if run is not None else None
            started = (
                dt.datetime.fromtimestamp(run.info.start_time / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
                if run is not None and run.info.start_time
                else "–"
            )
            decision = run.data.tags.get("crmscore.decision", "–") if run is not None else "–"
            scored_with = "yes" if used.get(role) == version.version else "no"
            model_rows.append(
                "<tr>"
                + "".join(
                    f"<td>{cell}</td>"
                    for cell in (
                        html.escape(role if position == 0 else ""),
                        html.escape(version.name),
                        html.escape(version.label),
                        scored_with,
                        _run_cell(version.run_id, link),
                        html.escape(started),
                        html.escape(decision),
                    )
                )
                + "</tr>"
            )
    header = "".join(
        f"<th>{h}</th>"
        for h in ("model", "registered name", "version", "used by the scoring", "training run", "trained", "decision")
    )
    body.append(f'<table class="data"><thead><tr>{header}</tr></thead><tbody>{"".join(model_rows)}</tbody></table>')
    notes = [c.note for c in comparisons.values() if c is not None and c.note]
    body.extend(_note(n) for n in notes)
    return Section("summary", REPORT_SECTIONS["summary"], "".join(body))


_FLAG_CHECKS = {
    "calibration_gap": "calibration break: the realized churn rate misses the predicted one beyond the tolerance",
    "auc_gap": "ranking break: the realized AUC's interval lies wholly below the estimated AUC",
}
_TOP_TIERS = ("A", "B")


def _flag_check(metric: str) -> str:
    if metric.startswith("psi["):
        return f"feature drift: {metric[4:-1]} against the first scoring"
    return _FLAG_CHECKS.get(metric, metric)


def _track_number(metric: str, value: float) -> str:
    """A track record value in the unit a reader expects: rate gaps in points, rates in %, the rest plain."""
    if metric == "calibration_gap":
        return f"{value * 100:+.1f} points"
    if metric == "churn_rate" or metric.startswith(("realized_rate[", "predicted_rate[")):
        return f"{value:.1%}"
    if metric == "auc_gap":
        return f"{value:+.3f}"
    return f"{value:.3f}"


def _with_interval(row: Mapping[str, Any] | None, metric: str) -> str:
    """``0.812 (0.790 to 0.833)``; without an interval the value alone, without a row ``–``."""
    if row is None or _missing(row["value"]):
        return "–"
    value = _track_number(metric, row["value"])
    if _missing(row["lower"]) or _missing(row["upper"]):
        return value
    return f"{value} ({_track_number(metric, row['lower'])} to {_track_number(metric, row['upper'])})"


def _track_row(rows: pd.DataFrame, metric: str, kind: str) -> pd.Series | None:
    hit = rows.loc[(rows["metric"] == metric) & (rows["kind"] == kind)]
    return hit.iloc[0] if len(hit) else None


def _scorings_table(performance: pd.DataFrame) -> str:
    """One line per scoring: model version, whether its outcomes are in, AUC and churn rate both ways."""
    lines = []
    for as_of, rows in performance.groupby("as_of", sort=True):
        churn, clv = rows.loc[rows["model"] == "churn"], rows.loc[rows["model"] == "clv"]
        lines.append(
            {
                "scoring": _date(as_of),
                "churn model": f"v{int(churn['version'].iloc[0])}" if len(churn) else "–",
                "churn outcomes": churn["status"].iloc[0] if len(churn) else "–",
                "CLV outcomes": clv["status"].iloc[0] if len(clv) else "–",
                "ROC AUC estimated": _with_interval(_track_row(churn, "roc_auc", "estimated"), "roc_auc"),
                "ROC AUC realized (95 % interval)": _with_interval(_track_row(churn, "roc_auc", "realized"), "roc_auc"),
                "churn rate predicted": _with_interval(_track_row(churn, "churn_rate", "estimated"), "churn_rate"),
                "churn rate realized (95 % interval)": _with_interval(
                    _track_row(churn, "churn_rate", "realized"), "churn_rate"
                ),
            }
        )
    return _table(pd.DataFrame(lines))


def _flags_part(performance: pd.DataFrame) -> list[str]:
    """The flags set on any scoring (calibration, ranking, drift), one line each; missing customers apart."""
    flagged = performance.loc[performance["flag"].astype(bool) & (performance["model"] != "data")]
    body = [_h3("Flags")]
    if flagged.empty:
        return [*body, _p("No flag on any scoring: no calibration break, no ranking break, no drifted feature.")]
    table = pd.DataFrame(
        {
            "scoring": [_date(d) for d in flagged["as_of"]],
            "model": [f"{m} v{int(v)}" for m, v in zip(flagged["model"], flagged["version"], strict=True)],
            "check": [_flag_check(m) for m in flagged["metric"]],
            "metric": flagged["metric"].to_numpy(),
            "value (95 % interval)": [_with_interval(row, row["metric"]) for _, row in flagged.iterrows()],
        }
    )
    lead = f"{len(flagged)} flag(s) on {flagged['as_of'].nunique()} scoring(s) to look at."
    return [*body, _p(lead, "warning"), _table(table)]


def _missing_customers_part(performance: pd.DataFrame) -> list[str]:
    """Customers a scoring scored that the current data no longer holds (left out of its realized metrics)."""
    data = performance.loc[performance["model"] == "data"]
    missing = data.loc[(data["metric"] == "customers_missing") & (data["value"] > 0)]
    if missing.empty:
        return []
    table = pd.DataFrame(
        {
            "scoring": [_date(d) for d in missing["as_of"]],
            "customers scored": missing["n"].to_numpy(),
            "missing from the current data": missing["value"].to_numpy(),
            "share": (missing["value"] / missing["n"].where(missing["n"] > 0)).to_numpy(),
        }
    )
    return [
        _h3("Customers missing from the current data"),
        _p(
            "These scored customers are no longer in the input tables (deleted, merged or filtered out): their "
            "outcomes are unknown, so the realized metrics leave them out."
        ),
        _table(table, {"customers scored": _number, "missing from the current data": _number, "share": _percent}),
    ]


def _no_closed_note(performance: pd.DataFrame, churn_horizon_days: int | None) -> str:
    first = performance["as_of"].min()
    when = ""
    if churn_horizon_days is not None:
        closes = first + pd.Timedelta(days=churn_horizon_days)
        when = (
            f" ({churn_horizon_days} days): the earliest, as of {_date(first)}, closes when the data reaches "
            f"{_date(closes)}"
        )
    return _note(
        "No scoring's horizon has closed yet: a scoring's churn outcomes are known once the data reaches its "
        f"as-of date plus churn.horizon_days{when}. Until then the figures show the estimates from the "
        "probabilities alone, which assume the model's calibration holds on the scored customers."
    )


def _track_figures(performance: pd.DataFrame, churn_horizon_days: int | None) -> list[str]:
    """The churn metrics over time, the risk bands of the latest closed scoring and the value per tier."""
    churn = performance.loc[performance["model"] == "churn"]
    body = [_h3("Churn: realized against estimated")]
    if churn.empty:
        body.append(_note("No scoring has churn probabilities: there is no churn track record."))
    else:
        if not (churn["status"] == "closed").any():
            body.append(_no_closed_note(performance, churn_horizon_days))
        figures = [
            _figure(plot_churn_track_record(performance, metric), f"{_TRACK_CHURN_METRICS[metric]} per scoring")
            for metric in ("roc_auc", "churn_rate")
            if len(churn.loc[churn["metric"] == metric])
        ]
        if churn["metric"].str.startswith("realized_rate[").any():
            figures.append(
                _figure(plot_risk_band_calibration(performance), "Churn rate by risk band, latest closed scoring")
            )
        body.append(_figures(*figures))
        body.append(_scorings_table(performance))
    body.append(_h3("Realized value per tier"))
    if performance["metric"].str.startswith("realized_value[").any():
        body.append(_figures(_figure(plot_tier_value_track_record(performance), "Realized value per tier")))
    else:
        body.append(
            _note(
                "No scoring's CLV horizon has closed yet (or the scorings had no tiers): the realized value per "
                "tier shows once the data covers a scoring's as-of date plus clv.horizon_days."
            )
        )
    return body


def _tier_series(scores: pd.DataFrame) -> pd.Series:
    """A scoring's tiers by customer id; customers without a tier are left out."""
    tier = pd.Series(scores["tier"].astype(object).to_numpy(), index=scores["customer_id"].to_numpy())
    return tier.replace("", np.nan).dropna()


def _tier_transitions_part(scorings: Sequence[Any] | None) -> list[str]:
    """The share of each tier's customers in each tier one scoring later, for the latest two scorings."""
    from crmscore import tiers

    body = [_h3("Tier migration between the last two scorings")]
    if scorings is None:
        return [*body, _note("The scoring folders could not be read: no tier migration to show.")]
    if len(scorings) < 2:
        only = f" (as of {_date(scorings[0].as_of)})" if scorings else ""
        return [*body, _note(f"Tier migration needs two scorings; there is one so far{only}.")]
    earlier, later = scorings[-2], scorings[-1]
    before, after = (_tier_series(s.scores) if "tier" in s.scores.columns else pd.Series() for s in (earlier, later))
    if before.empty or after.empty:
        return [*body, _note(f"The {_date((earlier if before.empty else later).as_of)} scoring has no tiers.")]
    migration = tiers.tier_migration(before, after)
    counts = migration.drop(index="new")
    total = int(counts.to_numpy().sum())
    kept = int(np.trace(counts[list(tiers.TIERS)].to_numpy()))
    top = counts.loc[list(_TOP_TIERS)]
    top_total = int(top.to_numpy().sum())
    stayed = int(top[list(_TOP_TIERS)].to_numpy().sum())
    gone = int(counts["gone"].sum())
    facts = (
        f"Of the {total:,} customers with a tier on {_date(earlier.as_of)}, {kept / total:.0%} have the same tier "
        f"on {_date(later.as_of)}"
    )
    if top_total:
        facts += f"; of the {top_total:,} in tier A or B, {stayed / top_total:.0%} are still in A or B"
    facts += f"; {gone:,} were not scored again."
    names = (_date(earlier.as_of), _date(later.as_of))
    return [
        *body,
        _p(facts),
        _figures(_figure(plot_tier_transitions(migration, *names), f"Tier migration, {names[0]} to {names[1]}")),
    ]


def _track_record_problem(performance: pd.DataFrame | None, source: str) -> str | None:
    """Why ``performance`` cannot be shown, in words for the page; None when it can."""
    from crmscore import monitoring

    if performance is None:
        return (
            f"No track record yet ({source} does not exist). Run `crmscore monitor` to check every past scoring "
            "against what happened since: realized churn and value with 95 % intervals, estimates for the "
            "scorings whose horizon is still open, and calibration, ranking and drift flags. The next report "
            "shows them here."
        )
    if not set(monitoring.COLUMNS) <= set(performance.columns):
        lacking = ", ".join(c for c in monitoring.COLUMNS if c not in performance.columns)
        return f"{source} lacks the columns {lacking} (written by another crmscore): run `crmscore monitor` again."
    if performance.empty:
        return f"The track record ({source}) holds no scoring: run `crmscore monitor` again after scoring."
    return None


def track_record_section(
    performance: pd.DataFrame | None,
    scorings: Sequence[Any] | None = None,
    *,
    scoring_as_of: Any = None,
    churn_horizon_days: int | None = None,
    source: str = "performance.parquet",
) -> Section:
    """Did past scorings come true: the verdict, realized against estimated metrics, flags, tier migration.

    ``performance`` is the table of :func:`crmscore.monitoring.track_record` (``crmscore monitor`` writes it
    to ``source``), None when there is none yet: the section then says how to get it. ``scorings`` are the
    scoring folders (:func:`crmscore.monitoring.past_scorings`, oldest first; None when unread), whose latest
    two give the tier migration. ``scoring_as_of`` (the report's scoring) shows when the track record is
    older than it; ``churn_horizon_days`` says when the first horizon closes while none has.
    """
    from crmscore import monitoring

    body: list[str] = []
    problem = _track_record_problem(performance, source)
    if problem is not None:
        body.append(_note(problem))
    else:
        performance = performance.assign(as_of=pd.to_datetime(performance["as_of"]))
        body.append(_p(f"Verdict: {monitoring.verdict(performance)}", "verdict"))
        last = performance["as_of"].max()
        if scoring_as_of is not None and last < pd.Timestamp(scoring_as_of):
            body.append(
                _note(
                    f"The track record ends at the {_date(last)} scoring, before this report's scoring "
                    f"({_date(scoring_as_of)}): run `crmscore monitor` to bring it up to date."
                )
            )
        dates = performance["as_of"].drop_duplicates()
        closed = {
            model: performance.loc[
                (performance["model"] == model) & (performance["status"] == "closed"), "as_of"
            ].nunique()
            for model in ("churn", "clv")
        }
        body.append(
            _p(
                f"{len(dates)} scoring(s) from {_date(dates.min())} to {_date(last)}, checked against the current "
                f"data: the churn outcomes are in for {closed['churn']} and the CLV outcomes for {closed['clv']}. "
                "Realized metrics carry a bootstrap 95 % interval (customers resampled); estimates come from the "
                "predicted probabilities and spend alone and stay beside the realized value once it is known."
            )
        )
        body.extend(_flags_part(performance))
        body.extend(_missing_customers_part(performance))
        body.extend(_track_figures(performance, churn_horizon_days))
    body.extend(_tier_transitions_part(scorings))
    return Section("track_record", REPORT_SECTIONS["track_record"], "".join(body))


_CLASSIFICATION_NAMES = {
    "roc_auc": "ROC AUC",
    "empc": "EMPC (expected maximum profit per customer)",
    "empc_fraction": "share contacted at the EMPC optimum",
    "pr_auc": "PR AUC (average precision)",
    "log_loss": "log loss",
    "brier": "Brier score",
    "ece": "expected calibration error",
    "lift_10": "lift, top 10 %",
    "capture_10": "churners captured, top 10 %",
    "lift_20": "lift, top 20 %",
    "capture_20": "churners captured, top 20 %",
    "base_rate": "churn rate",
    "n": "customers",
}

_VALUE_NAMES = {
    "gini": "normalised Gini",
    "spearman": "Spearman rank correlation",
    "top_decile_capture": "value captured, top 10 %",
    "decile_mape": "decile MAPE",
    "mae": "mean absolute error",
    "bias": "aggregate bias",
    "mean_actual": "mean actual value",
    "mean_predicted": "mean predicted value",
    "n": "customers",
}

# Metrics that describe the data or a level rather than quality: no "better" verdict.
_DESCRIPTIVE = {"base_rate", "n", "mean_actual", "mean_predicted", "empc_fraction"}
# Metrics where 0 is best and the sign only says which way a model errs.
_CLOSEST_TO_ZERO = {"bias"}


def _metric_table(metrics: Mapping[str, Mapping[str, float]], names: Mapping[str, str]) -> str:
    """Metrics of one or two versions side by side (label → metric dict); with two, the difference and
    which version is better on each metric."""
    from crmscore.evaluation import LOWER_IS_BETTER

    labels = list(metrics)
    rows = []
    for key, title in names.items():
        values = [metrics[label].get(key, np.nan) for label in labels]
        row: dict[str, Any] = {"metric": title}
        for label, value in zip(labels, values, strict=True):
            row[label] = _number(value) if key == "n" else f"{value:.4f}"
        if len(labels) == 2:
            first, second = values
            row[f"difference ({labels[1]} − {labels[0]})"] = "" if key == "n" else f"{second - first:+.4f}"
            if key in _DESCRIPTIVE:
                verdict = "–"
            elif first == second or (key in _CLOSEST_TO_ZERO and abs(first) == abs(second)):
                verdict = "equal"
            elif key in _CLOSEST_TO_ZERO:
                verdict = labels[1] if abs(second) < abs(first) else labels[0]
            elif key in LOWER_IS_BETTER:
                verdict = labels[1] if second < first else labels[0]
            else:
                verdict = labels[1] if second > first else labels[0]
            row["better"] = verdict
        rows.append(row)
    return _table(pd.DataFrame(rows))


def _predict_or_note(
    version: ModelVersion, predict: Callable[[Any], np.ndarray]
) -> tuple[np.ndarray | None, str | None]:
    """A version's predictions on the evaluation data, or a note when it cannot predict on it."""
    try:
        return predict(version.estimator), None
    except Exception as exc:  # a version trained on other features or of another kind
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"{version.name} {version.label} cannot be evaluated on this data: {first_line}"


def churn_section(comparison: Comparison, test, kind: str, campaign: EmpcSettings | None = None) -> Section:
    """Churn versions on the same test split: metrics, ROC / PR / calibration / gains / lift, SHAP.

    ``test`` is the test :class:`~crmscore.churn.ChurnData` of :func:`crmscore.churn.churn_datasets`;
    ``kind`` the label kind (transaction or subscription); ``campaign`` the retention campaign behind
    EMPC (``churn.empc``, its defaults when None).
    """
    from crmscore import plots
    from crmscore.empc import empc_detail
    from crmscore.evaluation import classification_metrics

    y = test.y.to_numpy().astype(int)
    as_of = test.as_of.iloc[0]
    body = [
        _p(
            f"Evaluated on the test split of the current data ({kind} churn label, as of {_date(as_of)}: "
            f"{len(y):,} customers, {int(y.sum()):,} churned). Every version is scored on the same customers. "
            "For a version trained on older data, this holdout may overlap its training history."
        )
    ]
    if comparison.note:
        body.append(_note(comparison.note))
    predictions: dict[str, np.ndarray] = {}
    for version in comparison.versions:
        p, problem = _predict_or_note(version, lambda model: model.predict_proba(test.X)[:, 1])
        if problem:
            body.append(_note(problem))
        else:
            predictions[version.label] = p
    if not predictions:
        return Section("churn", REPORT_SECTIONS["churn"], "".join(body))
    campaign = campaign or EmpcSettings()
    metrics = {}
    for label, p in predictions.items():
        profit = empc_detail(y, p, **campaign.model_dump())
        metrics[label] = classification_metrics(y, p) | {"empc": profit.empc, "empc_fraction": profit.fraction}
    body.append(_h3("Metrics"))
    body.append(_metric_table(metrics, _CLASSIFICATION_NAMES))
    body.append(
        _p(
            "EMPC: expected maximum profit per customer of a retention campaign chosen with the model "
            f"(Verbraken et al. 2013), in currency units: a retained churner is worth {campaign.clv:g}, the offer "
            f"costs {campaign.incentive:g} when taken and a contact {campaign.contact_cost:g}, and contacted "
            f"churners accept with a Beta({campaign.alpha:g}, {campaign.beta:g}) rate (churn.empc in params.yaml)."
        )
    )
    body.append(_h3("Ranking and calibration"))
    body.append(
        _overlaid(
            y,
            predictions,
            (plots.plot_roc, "ROC curve"),
            (plots.plot_precision_recall, "Precision-recall curve"),
            (plots.plot_calibration, "Calibration"),
            (plots.plot_gains, "Cumulative gains"),
            (plots.plot_lift, "Lift by decile"),
        )
    )
    body.append(_shap_part(comparison.first, test.X))
    return Section("churn", REPORT_SECTIONS["churn"], "".join(body))


def _shap_part(version: ModelVersion, X: pd.DataFrame) -> str:
    from crmscore import plots

    model = version.estimator
    if not hasattr(model, "shap_values"):
        return _note(f"{version.name} {version.label} gives no SHAP values.")
    sample = X.iloc[: min(len(X), _SHAP_SAMPLE)]
    values, _ = model.shap_values(sample)
    frame = sample[list(model.feature_names_in_)]
    order = np.argsort(-np.abs(values).mean(axis=0), kind="stable")[:_DEPENDENCE_FEATURES]
    figures = [_figure(plots.plot_shap_summary(values, frame), f"SHAP summary of {version.label}", wide=True)]
    for i in order:
        feature = str(frame.columns[i])
        figures.append(_figure(plot_shap_dependence(values, frame, feature), f"SHAP dependence: {feature}"))
    return (
        _h3(f"Why: SHAP values of {version.label}")
        + _p(
            f"{len(sample):,} test customers. Each point is a customer; right of 0 pushes the churn probability "
            "up. The dependence plots show the three features with the largest mean |SHAP|."
        )
        + _figures(*figures)
    )


def clv_section(
    comparison: Comparison,
    test,
    tables: Mapping[str, pd.DataFrame],
    settings: Settings,
    btyd_model: Any | None,
    btyd_as_of: pd.Timestamp | None,
    btyd_source: str,
) -> Section:
    """CLV versions on the holdout of repeat buyers: value metrics and Gini, deciles, gains; BTYD fit.

    ``test`` is the test :class:`~crmscore.clv.ml.ClvData` (None when there is no transaction history to
    hold out); ``btyd_model`` the BG/NBD × Gamma-Gamma model (:class:`~crmscore.clv.value.BtydClv`) of
    the first version's training run, calibrated up to ``btyd_as_of``, with ``btyd_source`` saying which
    registered version it is.
    """
    from crmscore import plots
    from crmscore.clv import btyd
    from crmscore.evaluation import value_metrics

    body = []
    if comparison.note:
        body.append(_note(comparison.note))
    if test is None:
        body.append(
            _note("No transaction history to hold out (contractual CLV): there is no predicted-against-actual check.")
        )
    else:
        buyers = test.X["repeat_purchase_days"].notna().to_numpy()
        X_hold, y_hold = test.X.loc[buyers], test.y.to_numpy()[buyers]
        horizon = settings.clv.horizon_days
        body.append(
            _p(
                f"Holdout: the {len(y_hold):,} customers with a purchase by {_date(test.as_of.iloc[0])}, and what "
                f"they actually spent in the following {horizon} days. Every version is scored on the same customers."
            )
        )
        predictions: dict[str, np.ndarray] = {}
        for version in comparison.versions:
            pred, problem = _predict_or_note(version, lambda model: np.asarray(model.predict(X_hold), dtype=float))
            if problem:
                body.append(_note(problem))
            else:
                predictions[version.label] = np.clip(pred, 0.0, None)
        if predictions and y_hold.sum() > 0 and len(y_hold) >= 10:
            body.append(_h3("Metrics"))
            body.append(_metric_table({k: value_metrics(y_hold, p) for k, p in predictions.items()}, _VALUE_NAMES))
            body.append(
                _overlaid(
                    y_hold,
                    predictions,
                    (plots.plot_value_deciles, "Predicted against actual value by decile"),
                    (plots.plot_value_gains, "Value gains and normalised Gini"),
                )
            )
        elif predictions:
            body.append(_note("The holdout has too few customers or no spend at all: no value metrics."))
    body.append(_h3("Buy-till-you-die model (BG/NBD × Gamma-Gamma)"))
    if btyd_model is None:
        body.append(_note(f"No BG/NBD × Gamma-Gamma model: {btyd_source}."))
    else:
        table = btyd_model.parameter_table()
        fit_note = getattr(btyd_model, "fit_note_", None)  # models registered before fit notes have none
        if fit_note:
            body.append(_note(fit_note))
        label = f"{btyd_model.transaction_model_._label} × Gamma-Gamma"
        body.append(_p(f"{btyd_source} ({label}). Parameters with standard errors and 95 % intervals:"))
        body.append(
            _table(
                table,
                {c: (lambda v: f"{v:.4g}") for c in ("estimate", "std_error", "lower_95", "upper_95")},
            )
        )
        if "transactions" in tables and btyd_as_of is not None:
            end = btyd_as_of + pd.Timedelta(days=settings.clv.horizon_days)
            unit = btyd_model.time_unit
            curve = btyd.repeat_transactions_tracking(
                btyd_model.transaction_model_, tables["transactions"], btyd_as_of, end, unit
            )
            calibration = curve.loc[curve["period_end"] <= btyd_as_of, "period"]
            ax = plots.plot_cumulative_transactions(
                curve["period"].to_numpy(),
                curve["actual"].to_numpy(),
                curve["predicted"].to_numpy(),
                calibration_end=float(calibration.max()) if len(calibration) else None,
                unit={"W": "week", "D": "day"}.get(unit, "week"),
            )
            body.append(
                _figures(
                    _figure(ax, f"Holdout tracking: calibrated up to {_date(btyd_as_of)}, holdout to {_date(end)}")
                )
            )
    return Section("clv", REPORT_SECTIONS["clv"], "".join(body))


def segments_section(
    model: ModelVersion | None, X: pd.DataFrame, scores: pd.DataFrame, note: str | None = None
) -> Section:
    """The segment tree diagram and the profile of the scored customers under it.

    ``X`` holds the features at the scoring as-of (indexed by customer id) and ``scores`` the scoring's
    rows (``customer_id``, ``clv``, ``churn_probability``); segments are assigned by ``model``.
    """
    from crmscore import segments

    body = []
    if note:
        body.append(_note(note))
    if model is None:
        if not note:
            body.append(_note("No segments model is registered: every customer was scored in segment 0."))
        return Section("segments", REPORT_SECTIONS["segments"], "".join(body))
    tree = model.estimator
    by_id = scores.set_index("customer_id")
    scored = X.loc[X.index.isin(by_id.index)]
    ids = tree.predict(scored)
    clv = by_id["clv"].reindex(scored.index)
    churn_probability = by_id["churn_probability"].reindex(scored.index)
    profile = tree.profile(  # a scoring without a CLV or churn model has no such column to profile
        None,
        pd.Series(ids.to_numpy(), index=scored.index),
        clv if clv.notna().all() else None,
        churn_probability if churn_probability.notna().all() else None,
    )
    body.append(
        _p(
            f"{model.name} {model.label}: {len(tree.leaves_)} segments, target {tree.target_name}; profile of the "
            f"{len(scored):,} scored customers (churn rate = mean churn probability)."
        )
    )
    body.append(_figures(_figure(segments.plot_segment_tree(tree), "Segment tree", wide=True)))
    body.append(
        _table(
            profile,
            {
                "customers": _number,
                "share_customers": _percent,
                "share_value": _percent,
                "mean_clv": lambda v: f"{v:,.1f}",
                "churn_rate": _percent,
            },
        )
    )
    return Section("segments", REPORT_SECTIONS["segments"], "".join(body))


def tiers_section(scores: pd.DataFrame, migration: pd.DataFrame, manifest: Mapping[str, Any]) -> Section:
    """Tier distribution, value concentration, tier × risk matrix and tier migration of one scoring.

    Null values are what a scoring without some model leaves: customers without a tier are left out of
    the tier tables (and counted in a note), a null ``clv`` leaves out value, value concentration and value
    at risk, a null ``risk_band`` the tier × risk band matrix. ``migration`` may be empty (none written).
    """
    from crmscore import tiers

    ids = scores["customer_id"].to_numpy()
    tier = pd.Series(scores["tier"].astype(object).to_numpy(), index=ids)
    band = pd.Series(scores["risk_band"].astype(object).to_numpy(), index=ids)
    clv = pd.Series(_floats(scores["clv"]), index=ids)
    at_risk = pd.Series(_floats(scores["value_at_risk"]), index=ids)
    tiered = tier.notna().to_numpy()
    has_clv = bool(clv.notna().any())
    has_bands = bool(band.notna().any())
    has_at_risk = bool(at_risk.notna().any())

    body = [_h3("Distribution and value concentration")]
    if not has_clv:
        body.append(
            _note(
                "The scoring has no CLV (it used no CLV model): tiers are shown by their customers; value, value "
                "concentration and value at risk are not available."
            )
        )
    untiered = int((~tiered).sum())
    if untiered and tiered.any():
        body.append(
            _note(
                f"{untiered:,} of {len(tier):,} scored customers have no tier (the tier method could not rank them): "
                "they are left out of the tier tables."
            )
        )
    elif untiered:
        body.append(
            _note("No scored customer has a tier (the tier method could not rank them): there are no tiers to show.")
        )
    summary = None
    figures = []
    if tiered.any():
        labels = tier[tiered].astype(str)
        bands = band[tiered]
        summary = tiers.tier_summary(
            labels, clv[tiered].fillna(0.0), at_risk[tiered].fillna(0.0), bands.where(bands.notna(), "low").astype(str)
        )
        dropped = [
            *(["clv", "clv_share"] if not has_clv else []),
            *(["value_at_risk"] if not has_at_risk else []),
            *(["high_risk_customers"] if not has_bands else []),
        ]
        summary = summary.drop(columns=dropped)
        figures.append(_figure(plot_tier_distribution(summary), "Tier distribution"))
    body.extend(_value_concentration(clv, at_risk, has_at_risk, figures))
    if figures:
        body.append(_figures(*figures))
    if summary is not None:
        body.append(
            _table(
                summary.reset_index(),
                {
                    "customers": _number,
                    "customer_share": _percent,
                    "clv": _number,
                    "clv_share": _percent,
                    "value_at_risk": _number,
                    "high_risk_customers": _number,
                },
            )
        )
    body.extend(_borderline_part(scores, tier, clv))
    body.extend(_expected_churners_part(scores, tier))
    body.append(_h3("Tier × risk band"))
    if not has_bands:
        body.append(
            _note("The scoring has no churn risk bands (it used no churn model): there is no tier × risk band matrix.")
        )
    elif tiered.any():
        body.extend(_tier_risk_part(tier, band, clv, at_risk, has_at_risk))
    body.append(_h3("Tier migration"))
    body.extend(_migration_part(migration, manifest, bool(tiered.any())))
    return Section("tiers", REPORT_SECTIONS["tiers"], "".join(body))


def _borderline_part(scores: pd.DataFrame, tier: pd.Series, clv: pd.Series) -> list[str]:
    """How sure the tiers and values are: borderline customers per tier and their share of value, interval widths.

    Scorings written before intervals existed, or with ``intervals.enabled: false``, have no such columns
    (or only nulls): the part then says so in one note.
    """
    from crmscore.intervals import borderline_summary

    body = [_h3("How sure: borderline customers")]
    confidence = (
        pd.Series(_floats(scores["tier_confidence"]), index=tier.index) if "tier_confidence" in scores else None
    )
    if confidence is None or not confidence.notna().any():
        body.append(
            _note("The scoring has no tier confidence (scored without intervals): borderline customers are not known.")
        )
        return body
    borderline = pd.Series(scores["borderline"].astype("boolean").to_numpy(), index=tier.index)
    summary = borderline_summary(tier, borderline, clv.fillna(0.0))
    total = int(summary["borderline"].sum())
    text = (
        f"{total:,} of {int(summary['customers'].sum()):,} tiered customers are borderline (tier confidence below "
        "the threshold): another year's measurement of the same customer would put them in another tier about as "
        "often as not, so their tier moves are noise rather than news."
    )
    widths = []
    for low, high, label, fmt in (
        ("clv_low", "clv_high", "CLV", _number),
        ("churn_low", "churn_high", "churn", _decimal),
    ):
        if low in scores and pd.notna(scores[low]).any():
            widths.append(
                f"mean {label} interval width {fmt(np.nanmean(_floats(scores[high]) - _floats(scores[low])))}"
            )
    body.append(_p(text + (f" ({'; '.join(widths)}.)" if widths else "")))
    formats = {
        "customers": _number,
        "borderline": _number,
        "borderline_share": _percent,
        "borderline_clv_share": _percent,
        "share_of_all_clv": _percent,
    }
    body.append(_table(summary.reset_index(), formats))
    return body


def _expected_churners_part(scores: pd.DataFrame, tier: pd.Series) -> list[str]:
    """Per tier: the churn rate the model expects with its interval, and how many customers will actually leave.

    Nothing where the scoring has no churn intervals (no churn model, or scored without intervals).
    """
    from crmscore.intervals import churn_rate_interval

    columns = ("churn_probability", "churn_low", "churn_high")
    if not all(c in scores for c in columns):
        return []
    p, low, high = (pd.Series(_floats(scores[c]), index=tier.index) for c in columns)
    known = tier.notna() & p.notna() & low.notna() & high.notna()
    if not known.any():
        return []
    rows = churn_rate_interval(p[known], low[known], high[known], tier[known].astype(str))
    n = rows["customers"]
    table = pd.DataFrame(
        {
            "tier": rows.index,
            "customers": n.to_numpy(),
            "expected_churn_rate": rows["rate"].to_numpy(),
            "rate_interval": [f"{a:.1%} – {b:.1%}" for a, b in zip(rows["rate_low"], rows["rate_high"], strict=True)],
            "expected_churners": rows["expected_churners"].to_numpy(),
            "churners_interval": [
                f"{a:,.0f} – {b:,.0f}" for a, b in zip(rows["realized_low"] * n, rows["realized_high"] * n, strict=True)
            ],
        }
    )
    text = (
        "How many customers of each tier the churn model expects to lose over its horizon. The rate interval is "
        "how sure the model is of the tier's churn rate; the churners interval adds chance (who of the customers "
        "actually leaves), so it is the range to hold next period's count against: a count outside it is news."
    )
    return [
        _h3("Expected churners per tier"),
        _p(text),
        _table(table, {"customers": _number, "expected_churn_rate": _percent, "expected_churners": _number}),
    ]


def _floats(values: pd.Series) -> np.ndarray:
    """A score column as floats, null values as NaN (nullable and Arrow dtypes included)."""
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _value_concentration(clv: pd.Series, at_risk: pd.Series, has_at_risk: bool, figures: list[str]) -> list[str]:
    """The value concentration sentence (and the Lorenz curve, appended to ``figures``) of the known CLVs."""
    from crmscore import plots
    from crmscore.evaluation import top_share_of_value

    known = clv.dropna().to_numpy()
    if not len(known):
        return []
    total = float(known.sum())
    if total <= 0:
        return [_note("Every customer's CLV is 0: value concentration is undefined.")]
    top = top_share_of_value(known, 0.2)
    risk = ""
    if has_at_risk:
        var = float(at_risk.sum())
        risk = f"; value at risk {var:,.0f}, {var / total:.1%} of it"
    figures.append(_figure(plots.plot_lorenz(known, label="CLV"), "Value concentration (Lorenz curve)"))
    return [
        _p(f"The top 20 % of customers by CLV hold {top:.1%} of all predicted value (total CLV {total:,.0f}{risk}).")
    ]


def _tier_risk_part(
    tier: pd.Series, band: pd.Series, clv: pd.Series, at_risk: pd.Series, has_at_risk: bool
) -> list[str]:
    """The tier × risk band heatmap and table of the customers with both a tier and a risk band."""
    from crmscore import tiers

    rows = (tier.notna() & band.notna()).to_numpy()
    matrix = tiers.tier_risk_matrix(
        tier[rows].astype(str), band[rows].astype(str), clv[rows].fillna(0.0), at_risk[rows].fillna(0.0)
    )
    if not has_at_risk:
        matrix = matrix.drop(columns=["clv", "value_at_risk"], level="measure")
    caption = "Tier × risk band: customers and value at risk" if has_at_risk else "Tier × risk band: customers"
    bands = matrix["customers"].columns
    flat = pd.DataFrame(
        {
            "tier": matrix.index,
            **{f"customers ({b})": matrix[("customers", b)].to_numpy() for b in bands},
            **({f"value at risk ({b})": matrix[("value_at_risk", b)].to_numpy() for b in bands} if has_at_risk else {}),
        }
    )
    return [
        _figures(_figure(plot_tier_risk_matrix(matrix), caption)),
        _table(flat, {c: _number for c in flat.columns if c != "tier"}),
    ]


def _migration_part(migration: pd.DataFrame, manifest: Mapping[str, Any], tiered: bool) -> list[str]:
    """Kept / up / down / new / gone counts against the previous scoring, with the heatmap and table."""
    from crmscore import tiers

    if not tiered or migration is None or migration.empty:
        why = "no scored customer has a tier" if not tiered else "the scoring wrote no tier migration"
        return [_note(f"No tier migration: {why}.")]
    migration = migration.apply(pd.to_numeric, errors="coerce").fillna(0).astype(np.int64)
    body = []
    previous = manifest.get("previous_scoring")
    if previous:
        counts = migration.reindex(index=list(tiers.TIERS), columns=list(tiers.TIERS), fill_value=0).to_numpy()
        ranks = np.arange(len(tiers.TIERS))
        up = int(sum(counts[i, j] for i in ranks for j in ranks if j < i))
        down = int(sum(counts[i, j] for i in ranks for j in ranks if j > i))
        kept = int(np.trace(counts))
        new = int(migration.loc["new"].sum()) if "new" in migration.index else 0
        gone = int(migration["gone"].sum()) if "gone" in migration.columns else 0
        body.append(
            _p(
                f"Against the previous scoring ({str(previous).removeprefix('as_of=')}): {kept:,} customers kept their "
                f"tier, {up:,} moved up, {down:,} moved down; {new:,} are new and {gone:,} were not scored again."
            )
        )
    else:
        body.append(
            _note(
                "There is no previous scoring: every customer counts as new. Score again next quarter to see migration."
            )
        )
    body.append(_figures(_figure(plot_tier_migration(migration), "Tier migration")))
    body.append(_table(migration.reset_index(), {c: _number for c in migration.columns}))
    return body


def drift_section(
    drift: pd.DataFrame,
    reference_as_of: pd.Timestamp,
    scoring_as_of: pd.Timestamp,
    reference_source: str,
    threshold: float,
    feature_checks: Sequence[Mapping[str, Any]] | None = None,
) -> Section:
    """PSI per feature between the reference population and the scored one, drifted features flagged, and
    the scoring's ``feature_checks`` (its manifest's: values unseen in training, out of the training range or
    newly missing); ``None`` for a scoring whose manifest has none (scored before the checks existed)."""
    from crmscore.features import describe

    drifted = drift.loc[drift["drifted"], "feature"].tolist()
    body = [
        _p(
            f"Population stability index of each model feature: customers as of {_date(reference_as_of)} "
            f"({reference_source}) against the customers scored as of {_date(scoring_as_of)}. Quantile bins of the "
            f"reference, missing values in a bin of their own. Below 0.1 little change, 0.1–0.25 a moderate shift, "
            f"above 0.25 a major one; features above {threshold:g} are flagged. Features of the date itself "
            f"({', '.join(DATE_FEATURES)}) are left out: they differ between any two dates."
        )
    ]
    if pd.Timestamp(reference_as_of) == pd.Timestamp(scoring_as_of):
        body.append(_note("The reference and the scoring are the same date, so no drift can show."))
    if drifted:
        body.append(_p(f"{len(drifted)} feature(s) drifted: {', '.join(drifted)}.", "warning"))
    else:
        body.append(_p(f"No feature has a PSI above {threshold:g}."))
    body.append(_figures(_figure(plot_feature_drift(drift, threshold), "Feature drift (PSI)")))
    shown = drift.assign(description=[describe(f) for f in drift["feature"]])
    shown["drifted"] = np.where(shown["drifted"], "DRIFT", "")
    columns = ["feature", "description", "kind", "psi", "drifted", "missing_expected", "missing_actual"]
    body.append(
        _table(
            shown[columns].rename(
                columns={"missing_expected": "missing (reference)", "missing_actual": "missing (scoring)"}
            ),
            {"psi": _decimal, "missing (reference)": _percent, "missing (scoring)": _percent},
        )
    )
    body.extend(_feature_checks_part(feature_checks))
    return Section("drift", REPORT_SECTIONS["drift"], "".join(body))


_CHECK_KINDS = {"unseen": "unseen in training", "out_of_range": "outside the training range", "missing": "missing"}


def _feature_checks_part(checks: Sequence[Mapping[str, Any]] | None) -> list[str]:
    """The scoring's feature checks as a table beside the PSI: what the models met that training never showed."""
    body = [_h3("Values the models never saw in training")]
    if checks is None:
        return [*body, _note("The scoring manifest holds no feature checks (scored before crmscore recorded them).")]
    intro = (
        "Counted while scoring, per model feature, against the training profile the model was registered "
        "with: categories never seen in training (the model treats them as missing), numbers outside the "
        "training range (above scoring.out_of_range_warn_share of the customers) and missing values (above "
        "the training share by more than scoring.missing_warn_increase). Models registered before these "
        "profiles existed are not checked."
    )
    if not checks:
        return [*body, _p(intro), _p("Nothing to report: no scored value was unseen, out of range or newly missing.")]

    def training(entry: Mapping[str, Any]) -> str:
        if entry["kind"] == "missing":
            return f"{_percent(entry['training_share'])} missing"
        if entry["kind"] == "out_of_range":
            low, high = entry["training_range"]
            return f"{low:,.6g} to {high:,.6g}"
        return ""

    table = pd.DataFrame(
        {
            "feature": [e["feature"] for e in checks],
            "check": [_CHECK_KINDS.get(e["kind"], e["kind"]) for e in checks],
            "models": [", ".join(e["models"]) for e in checks],
            "customers": [e["count"] for e in checks],
            "share": [e["share"] for e in checks],
            "training": [training(e) for e in checks],
            "examples": [", ".join(e.get("examples", [])) for e in checks],
        }
    )
    unseen = [e["feature"] for e in checks if e["kind"] == "unseen"]
    lead = f"{len(checks)} check(s) to look at"
    if unseen:
        lead += f"; values unseen in training: {', '.join(unseen)}"
    return [*body, _p(intro), _p(lead + ".", "warning"), _table(table, {"customers": _number, "share": _percent})]


# --- retention campaigns: uplift and the plan -----------------------------------------------------------


def _true_uplift(holdout: pd.DataFrame, truth: pd.DataFrame | None) -> np.ndarray | None:
    """The simulator's true uplift of the held-out rows (customer and campaign), or None where unknown."""
    if truth is None or "campaign" not in holdout.columns or "expected_uplift_active" not in truth.columns:
        return None
    keys = pd.MultiIndex.from_arrays([holdout.index.to_numpy(), holdout["campaign"].astype(str).to_numpy()])
    known = truth.set_index(["customer_id", truth["campaign"].astype(str)])["expected_uplift_active"]
    values = known.reindex(keys).to_numpy(dtype=float)
    return None if np.isnan(values).any() else values


def _uplift_part(comparison: Comparison, truth: pd.DataFrame | None) -> list[str]:
    """Held-out metrics of the versions, the learners compared, and the Qini curves."""
    from crmscore import plots
    from crmscore.uplift import uplift_metrics

    body, figures, metrics = [], [], {}
    for version in comparison.versions:
        holdout = getattr(version.estimator, "holdout", None)
        if holdout is None or not len(holdout):
            body.append(_note(f"{version.name} {version.label} keeps no held-out customers to show."))
            continue
        y, t, u = holdout["retained"].to_numpy(), holdout["treated"].to_numpy(), holdout["uplift"].to_numpy()
        metrics[version.label] = uplift_metrics(y, t, u)
        oracle = _true_uplift(holdout, truth)
        name = getattr(version.estimator, "learner_name", "?")
        ax = plots.plot_qini(y, t, u, label=f"{version.label} ({name}-learner)", true_uplift=oracle)
        figures.append(_figure(ax, f"Qini curve of {version.label} on its {len(holdout):,} held-out customers"))
    if metrics:
        names = {"qini": "Qini coefficient", "auuc": "AUUC"} | {
            f"uplift_at_{k}": f"uplift in retention, top {k} %" for k in (10, 20, 30)
        }
        body.append(_h3("Uplift model on held-out randomized customers"))
        body.append(_metric_table(metrics, names))
        body.append(_figures(*figures))
    table = getattr(comparison.first.estimator, "comparison", None)
    if table is not None:
        body.append(_h3(f"Learners compared when {comparison.first.label} was trained"))
        names = {"qini": "Qini", "auuc": "AUUC"} | {f"uplift_at_{k}": f"uplift, top {k} %" for k in (10, 20, 30)}
        shown = table.drop(columns=[c for c in ("seconds",) if c in table.columns]).rename(columns=names)
        shown = shown.reset_index()
        body.append(_table(shown, {c: _decimal for c in shown.columns if c != "learner"}))
    return body


def _plan_part(plan_dir: Path | None) -> list[str]:
    """The latest plan: its expected profit with the interval, and profit against the number contacted."""
    from crmscore import plots

    if plan_dir is None or not (plan_dir / "manifest.json").exists():
        return [_note("No retention plan yet: run `crmscore plan --as-of DATE --budget B`.")]
    manifest = json.loads((plan_dir / "manifest.json").read_text())
    low, high = manifest.get("expected_profit_interval_95") or [None, None]
    interval = "" if low is None or high is None else f" (95 % interval {low:,.0f} to {high:,.0f})"
    budget = manifest.get("budget")
    body = [
        _h3(f"Plan as of {manifest['as_of']}"),
        _p(
            f"Contact {manifest['contacted']:,} of {manifest['customers_scored']:,} customers at "
            f"{manifest['contact_cost']:,.2f} each"
            + (f" (budget {budget:,.0f})" if budget is not None else " (no budget limit)")
            + f": expected incremental profit {manifest['expected_profit']:,.0f}{interval}. "
            "The interval scales the predicted uplift by the realized uplift of the held-out randomized "
            "customers in the same top share (bootstrapped)."
        ),
    ]
    curve_path = plan_dir / "profit_curve.csv"
    if curve_path.exists():
        curve = pd.read_csv(curve_path)
        ax = plots.plot_profit_curve(curve, chosen=int(manifest["contacted"]))
        body.append(_figures(_figure(ax, "Expected incremental profit against the number contacted", wide=True)))
    return body


def campaigns_section(comparison: Comparison | None, plan_dir: Path | None, truth: pd.DataFrame | None) -> Section:
    """Uplift versions on their held-out randomized customers (Qini curves against random, and the oracle
    where the simulator's truth is known), the learners compared, and the latest retention plan."""
    body = [
        _p(
            "Who stays because of a retention offer: the uplift model's change in the probability of buying "
            "again, learned from past campaigns with control groups. The plan contacts customers by expected "
            "incremental value = uplift × CLV − contact cost."
        )
    ]
    if comparison is None:
        body.append(
            _note(
                "No uplift model: it learns from a campaigns table with treated and control customers "
                "(`crmscore train uplift`); until then the action matrix stands in for a plan."
            )
        )
    else:
        if comparison.note:
            body.append(_note(comparison.note))
        body.extend(_uplift_part(comparison, truth))
    body.extend(_plan_part(plan_dir))
    return Section("campaigns", REPORT_SECTIONS["campaigns"], "".join(body))


def _latest_plan(settings: Settings, as_of: pd.Timestamp) -> Path | None:
    folder = Path(settings.plan.out_dir) / f"as_of={as_of.date()}"
    return folder if folder.is_dir() else None


def _campaign_truth(source: Path | str) -> pd.DataFrame | None:
    if not isinstance(source, Path):  # a database holds no simulated truth
        return None
    path = source / "campaign_truth.parquet"
    return pd.read_parquet(path) if path.exists() else None


# --- the page -------------------------------------------------------------------------------------------------

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #1f2328;
       margin: 0; background: #ffffff; line-height: 1.45; }
header, main, footer { max-width: 1180px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 24px; border-bottom: 1px solid #d0d7de; }
h1 { font-size: 26px; margin: 0 0 4px 0; }
h2 { font-size: 21px; margin-top: 36px; padding-bottom: 4px; border-bottom: 2px solid #0969da; }
h3 { font-size: 16px; margin-top: 22px; }
nav ol { display: flex; flex-wrap: wrap; gap: 18px; padding: 0; list-style: none; }
nav a { color: #0969da; text-decoration: none; }
.meta { color: #57606a; margin: 0; }
.note { background: #fff8c5; border-left: 4px solid #d4a72c; padding: 8px 12px; }
.warning { background: #ffebe9; border-left: 4px solid #cf222e; padding: 8px 12px; }
.verdict { background: #ddf4ff; border-left: 4px solid #0969da; padding: 8px 12px; font-weight: 600; }
table { border-collapse: collapse; margin: 10px 0; font-size: 13px; }
table.data th, table.data td, table.facts th, table.facts td { border: 1px solid #d0d7de; padding: 4px 8px;
       text-align: left; vertical-align: top; }
table.data th, table.facts th { background: #f6f8fa; }
table.data td { font-variant-numeric: tabular-nums; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 16px; }
figure { margin: 0; }
.figures figure.wide { grid-column: 1 / -1; }
figure img { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
figcaption { font-size: 12px; color: #57606a; }
code { font-size: 12px; }
footer { color: #57606a; font-size: 12px; padding: 24px; }
"""


def render_report(title: str, subtitle: str, sections: Sequence[Section], footer: str) -> str:
    """The whole page as one HTML document: inline style, a contents line, the sections in order.

    Nothing is loaded from elsewhere (no stylesheet, script, font or remote image), so the file opens
    offline; figures must already be data URIs.
    """
    contents = "".join(f'<li><a href="#{s.id}">{html.escape(s.title)}</a></li>' for s in sections)
    parts = "".join(f'<section id="{s.id}"><h2>{html.escape(s.title)}</h2>{s.body}</section>' for s in sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f'<header><h1>{html.escape(title)}</h1><p class="meta">{html.escape(subtitle)}</p>'
        f"<nav><ol>{contents}</ol></nav></header>"
        f"<main>{parts}</main><footer>{html.escape(footer)}</footer></body></html>\n"
    )


# --- the stage ------------------------------------------------------------------------------------------------


def _check_references(compare: Sequence[str]) -> tuple[str, str]:
    refs = [str(r).strip() for r in compare]
    if len(refs) != 2 or not all(refs):
        raise DataError(
            f"--compare: expected two aliases or version numbers (e.g. champion challenger), got {list(compare)!r}"
        )
    return refs[0], refs[1]


def _unknown_reference(reference: str, names: Sequence[str]) -> DataError:
    aliases = sorted({a for name in names for a in _aliases(name)})
    known = ", ".join(aliases) or "none"
    return DataError(
        f"--compare: {reference!r} is neither an alias nor a version number of {', '.join(names)} "
        f"(aliases set: {known})"
    )


def btyd_model_of_run(version: ModelVersion) -> tuple[Any | None, str]:
    """The BG/NBD × Gamma-Gamma model of ``version``'s training run and a sentence saying which it is.

    ``version`` itself when it is that model; otherwise the version registered from the same MLflow run
    with tag ``crmscore.clv_model = btyd`` (the CLV training registers both of its models); ``(None,
    reason)`` when the run registered none (e.g. contractual CLV).
    """
    from mlflow.exceptions import MlflowException

    from crmscore import tracking

    if hasattr(version.estimator, "parameter_table"):
        return version.estimator, f"{version.name} {version.label} is itself this model"
    try:
        found = tracking.client().search_model_versions(f"name='{version.name}' and run_id='{version.run_id}'")
    except MlflowException:
        found = []
    for candidate in sorted(found, key=lambda v: int(v.version)):
        if candidate.tags.get("crmscore.clv_model") == "btyd":
            loaded = _load_version(version.name, candidate.version, int(candidate.version))
            return loaded.estimator, f"{version.name} v{loaded.version}, trained in the same run as {version.label}"
    return None, f"the training run of {version.name} {version.label} registered none"


def _run_param_date(run: Any, key: str) -> pd.Timestamp | None:
    value = run.data.params.get(key) if run is not None else None
    try:
        return pd.Timestamp(value) if value else None
    except ValueError:
        return None


def _registry_reason(name: str, reference: str) -> str:
    """Why the registry gives no model: ``name`` has no version ``reference``, with the aliases it has."""
    known = ", ".join(f"{a} (v{v})" for a, v in sorted(_aliases(name).items())) or "none"
    return f"{name} has no version {reference!r} (aliases set: {known})"


def _no_model(reference: str, names: Sequence[str], reasons: Mapping[str, str]) -> DataError:
    """The one-line error when neither churn nor CLV has a version to report on."""
    registry = "; ".join(_registry_reason(name, reference) for name in names)
    why = "; ".join(f"{role}: {reason}" for role, reason in reasons.items())
    kinds = " or ".join(f"`crmscore train {name.removeprefix('crmscore-')}`" for name in names)
    return DataError(
        f"no churn or CLV model to report on{f' ({why})' if why else ''}: {registry}; run {kinds}, or name another "
        "alias or version number with --compare"
    )


def _missing_model_section(
    role: str,
    what: str,
    name: str,
    reference: str,
    not_trained: Mapping[str, str],
    not_scored: Mapping[str, str],
) -> Section:
    """The section of a churn or CLV model without the version ``reference``: a note with the reason (why
    the run did not train it, else why the scoring went without it, else what the registry holds)."""
    registry = _registry_reason(name, reference)
    reason = not_trained.get(role) or not_scored.get(role)
    if reason:
        body = [
            _note(f"No {what} model: {_sentence(reason)}"),
            _p(f"{_sentence(registry)} There is nothing to evaluate."),
        ]
    else:
        body = [
            _note(f"No {what} model: {_sentence(registry)}"),
            _p(f"There is nothing to evaluate; run `crmscore train {role}` when the data allows."),
        ]
    return Section(role, REPORT_SECTIONS[role], "".join(body))


def _prepend_run_notes(
    section: Section, role: str, what: str, not_trained: Mapping[str, str], not_scored: Mapping[str, str]
) -> None:
    """Say at the top of a model's section that this run did not train it, or the scoring went without it."""
    notes = []
    if role in not_trained:
        notes.append(
            _note(
                f"This run trained no new {what} model: {_sentence(not_trained[role])} "
                "The versions shown were trained earlier."
            )
        )
    if role in not_scored:
        notes.append(_note(f"The scoring used no {what} model: {_sentence(not_scored[role])}"))
    section.body = "".join(notes) + section.body


def report_stage(
    settings: Settings,
    compare: Sequence[str] = ("champion", "challenger"),
    input_dir: str | os.PathLike | None = None,
    scores_dir: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    not_trained: Mapping[str, str] | None = None,
) -> ReportResult:
    """Write the model review report of the latest scoring and log it to MLflow; return where it went.

    ``compare`` names the two versions to set side by side, each an alias (``champion``, ``challenger``)
    or a version number, applied to the churn and CLV models (segments show the first). The first must
    exist for churn or CLV (a one-line :class:`DataError` when it exists for neither); a model without it
    has its section replaced by a note giving the reason, and a second that is missing, or is the first
    itself, is reported in words. A reference that names no version of any crmscore model is an error.
    ``not_trained`` (role → reason, e.g. ``{"clv": "BG/NBD: …"}``) names the models this run could not
    train; with the scoring manifest's ``models_missing`` it gives the reasons shown for missing models.
    ``input_dir`` (default ``data.input_dir``, else the simulated data) gives the tables for the
    evaluation data and the drift; ``scores_dir`` (default ``scoring.out_dir``) holds the scorings; the
    page goes to ``out_dir`` (default ``<reports_dir>/review``) as ``model_review_<as-of>.html``, written
    atomically. The track record is ``<monitoring.out_dir>/performance.parquet`` as ``crmscore monitor`` last
    wrote it (the section says how to get one when there is none).
    """
    import mlflow

    from crmscore import __version__, churn, drift, monitoring, tracking
    from crmscore.clv import ml as clv_ml
    from crmscore.data.sql import load_input, resolve_input
    from crmscore.evaluation import top_share_of_value
    from crmscore.features import build_features
    from crmscore.io import write_text
    from crmscore.tracking import CHURN_MODEL_NAME, CLV_MODEL_NAME, SEGMENTS_MODEL_NAME, UPLIFT_MODEL_NAME

    started = time.perf_counter()
    first_ref, second_ref = _check_references(compare)
    folder = latest_scoring(scores_dir or settings.scoring.out_dir)
    scores = pd.read_parquet(folder / "scores.parquet")
    manifest_path = folder / "manifest.json"
    manifest = {"as_of": folder.name.removeprefix("as_of=")}
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
    migration_path = folder / "tier_migration.csv"
    migration = pd.read_csv(migration_path, index_col=0) if migration_path.exists() else pd.DataFrame()
    as_of = pd.Timestamp(manifest["as_of"])
    not_trained = {str(role): _one_line(reason) for role, reason in (not_trained or {}).items()}
    not_scored = {str(role): _one_line(reason) for role, reason in (manifest.get("models_missing") or {}).items()}

    tracking.configure(settings.paths.models_dir, settings.tracking.experiment)
    uri = tracking.tracking_uri(settings.paths.models_dir)
    names = (CHURN_MODEL_NAME, CLV_MODEL_NAME, SEGMENTS_MODEL_NAME)
    for reference in (first_ref, second_ref):
        # Without a champion or challenger the sections say so (or compare_versions names the training to run).
        if reference not in (tracking.CHAMPION, tracking.CHALLENGER) and all(
            resolve_reference(n, reference) is None for n in names
        ):
            raise _unknown_reference(reference, names)
    comparisons: dict[str, Comparison | None] = {
        "churn": compare_versions(CHURN_MODEL_NAME, first_ref, second_ref, required=False),
        "clv": compare_versions(CLV_MODEL_NAME, first_ref, second_ref, required=False),
        "segments": compare_versions(SEGMENTS_MODEL_NAME, first_ref, second_ref, required=False),
    }
    if comparisons["churn"] is None and comparisons["clv"] is None:
        reasons = {role: not_trained.get(role) or not_scored.get(role) for role in ("churn", "clv")}
        raise _no_model(first_ref, (CHURN_MODEL_NAME, CLV_MODEL_NAME), {r: w for r, w in reasons.items() if w})
    client = tracking.client()
    runs = {v.run_id: client.get_run(v.run_id) for c in comparisons.values() if c is not None for v in c.versions}

    source = resolve_input(input_dir, settings.data, settings.paths.simulated_dir)
    if isinstance(source, Path) and not source.is_dir():
        raise DataError(f"{source}: no input tables; pass --input DIR (the tables the scoring read)")
    tables = load_input(source, settings.data).tables

    sections: list[Section] = []
    churn_pair = comparisons["churn"]
    churn_test = None
    if churn_pair is None:
        sections.append(_missing_model_section("churn", "churn", CHURN_MODEL_NAME, first_ref, not_trained, not_scored))
    else:
        try:
            kind, splits = churn.churn_datasets(tables, settings.churn, settings.features)
            churn_test = splits["test"]
            sections.append(churn_section(churn_pair, churn_test, kind, settings.churn.empc))
        except DataError as exc:
            sections.append(Section("churn", REPORT_SECTIONS["churn"], _note(f"No churn evaluation data: {exc}")))
        _prepend_run_notes(sections[-1], "churn", "churn", not_trained, not_scored)

    clv_pair = comparisons["clv"]
    clv_test = None
    if clv_pair is None:
        clv = _missing_model_section("clv", "CLV", CLV_MODEL_NAME, first_ref, not_trained, not_scored)
    else:
        clv_note = None
        if "transactions" in tables and not tables["transactions"].empty:
            try:
                clv_test = clv_ml.clv_datasets(tables, settings.clv, settings.features)["test"]
            except DataError as exc:
                clv_note = f"No CLV holdout: {exc}"
        btyd_model, btyd_source = btyd_model_of_run(clv_pair.first)
        btyd_as_of = _run_param_date(runs.get(clv_pair.first.run_id), "split.test_as_of")
        if btyd_as_of is None and clv_test is not None:
            btyd_as_of = clv_test.as_of.iloc[0]
        clv = clv_section(clv_pair, clv_test, tables, settings, btyd_model, btyd_as_of, btyd_source)
        if clv_note:
            clv.body = _note(clv_note) + clv.body
        _prepend_run_notes(clv, "clv", "CLV", not_trained, not_scored)

    score_X = build_features(tables, as_of, settings.features)
    sections.append(clv)
    segments_pair = comparisons["segments"]
    if segments_pair is None:
        missing = f"{SEGMENTS_MODEL_NAME} has no version {first_ref!r}: there is no segment tree to show."
        if "segments" not in manifest.get("models", {}):
            missing += " The scoring used none either: every customer was scored in segment 0."
        sections.append(segments_section(None, score_X, scores, missing))
    else:
        sections.append(segments_section(segments_pair.first, score_X, scores, segments_pair.note))
    sections.append(tiers_section(scores, migration, manifest))
    uplift_pair = compare_versions(UPLIFT_MODEL_NAME, first_ref, second_ref, required=False)
    sections.append(campaigns_section(uplift_pair, _latest_plan(settings, as_of), _campaign_truth(source)))

    # Drift: the churn version's test population (logged by its training run) against the scored customers;
    # without a churn model, the CLV version's.
    primary = churn_pair or clv_pair
    reference_as_of = _run_param_date(runs.get(primary.first.run_id), "split.test_as_of")
    reference_source = f"the test as-of date of {primary.first.name} {primary.first.label}'s training run"
    if reference_as_of is None:
        fallback = churn_test if churn_pair is not None else clv_test
        reference_as_of = fallback.as_of.iloc[0] if fallback is not None else as_of
        reference_source = "the test as-of date of the current data (the training run logged none)"
    if churn_test is not None and churn_test.as_of.iloc[0] == reference_as_of and churn_test.X.index.is_unique:
        reference_X = churn_test.X
    else:
        reference_X = build_features(tables, reference_as_of, settings.features)
    used = [
        str(f)
        for c in (churn_pair, clv_pair)
        if c is not None
        for f in getattr(c.first.estimator, "feature_names_in_", [])
        if f in score_X.columns
    ]
    columns = [c for c in dict.fromkeys(used or score_X.columns) if c not in DATE_FEATURES]
    drift_table = drift.feature_drift(reference_X[[c for c in columns if c in reference_X.columns]], score_X[columns])
    sections.append(
        drift_section(
            drift_table,
            reference_as_of,
            as_of,
            reference_source,
            drift.DRIFT_THRESHOLD,
            manifest.get("feature_checks"),
        )
    )

    # The track record as `crmscore monitor` last wrote it (never recomputed here), and the two latest
    # scorings for the tier migration between them.
    performance_path = Path(settings.monitoring.out_dir) / "performance.parquet"
    performance = pd.read_parquet(performance_path) if performance_path.exists() else None
    try:
        past = monitoring.past_scorings(scores_dir or settings.scoring.out_dir)[-2:]
    except DataError:
        past = None
    sections.insert(
        0,
        track_record_section(
            performance,
            past,
            scoring_as_of=as_of,
            churn_horizon_days=settings.churn.horizon_days,
            source=str(performance_path),
        ),
    )
    usable = _track_record_problem(performance, str(performance_path)) is None
    headline = monitoring.verdict(performance) if usable else None

    drifted = drift_table.loc[drift_table["drifted"], "feature"].tolist()
    clv_values = _floats(scores["clv"])
    clv_values = clv_values[~np.isnan(clv_values)]
    top20 = top_share_of_value(clv_values, 0.2) if len(clv_values) and clv_values.sum() > 0 else None
    highlights = [
        ("Track record", headline or "none yet: run `crmscore monitor` (see the track record section)"),
        ("Value concentration", "–" if top20 is None else f"the top 20 % of customers hold {top20:.1%} of the CLV"),
        (f"Drifted features (PSI > {drift.DRIFT_THRESHOLD:g})", ", ".join(drifted) or "none"),
    ]
    sections.insert(0, summary_section(tables, manifest, comparisons, runs, uri, settings, highlights, not_trained))
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = render_report(
        f"crmscore model review: scoring as of {as_of.date()}",
        f"Compared: {first_ref} against {second_ref}. Generated {generated} from {folder}.",
        sections,
        f"crmscore {__version__} · a self-contained file: every figure is embedded, nothing is loaded from elsewhere.",
    )
    target = Path(out_dir or Path(settings.paths.reports_dir) / "review") / f"model_review_{as_of.date()}.html"
    write_text(page, target)

    with mlflow.start_run(run_name=f"report-{as_of.date()}") as run:
        mlflow.set_tags(
            {
                "crmscore.stage": "report",
                "crmscore.scoring_as_of": str(as_of.date()),
                "crmscore.compare": f"{first_ref} {second_ref}",
                "mlflow.source.git.commit": tracking.git_commit(),
                "crmscore.params_fingerprint": settings.fingerprint(),
            }
            | ({"crmscore.track_record": headline} if headline else {})
        )
        params = {
            f"{role}.{position}": str(v.version)
            for role, c in comparisons.items()
            if c is not None
            for position, v in zip(("first", "second"), c.versions, strict=False)
        }
        mlflow.log_params(
            params | {"compare.first": first_ref, "compare.second": second_ref, "scoring.dir": str(folder)}
        )
        metrics = {"drifted_features": float(len(drifted)), "max_psi": float(drift_table["psi"].max())}
        if top20 is not None:
            metrics["top20_value_share"] = top20
        mlflow.log_metrics(metrics)
        mlflow.log_text(drift_table.to_csv(index=False), "review/drift.csv")
        mlflow.log_artifact(str(target), artifact_path="review")
        run_id = run.info.run_id
    seconds = time.perf_counter() - started
    log.info("model review report %s (%.1f s)", target, seconds)
    return ReportResult(target, run_id, folder, str(as_of.date()), drifted, seconds)
