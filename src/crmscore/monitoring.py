"""Track record: did past scorings come true, and can the current ones be trusted before the outcomes are in?

Every scoring folder (``<scores>/as_of=D/scores.parquet``) is a set of predictions about the future: who
stops buying within ``churn.horizon_days``, what each customer spends within ``clv.horizon_days``, which
tier each customer is in. :func:`track_record` checks them against the current data:

* **realized** — for a scoring whose horizon has closed by the data's last day, the outcomes are computed
  with the training label code (:mod:`crmscore.labels`: no purchase in ``(D, D + horizon]``; spend in the
  CLV horizon; for snapshot data the ``churned`` flag of a later table) and every prediction is scored:
  churn ROC AUC, PR AUC, Brier, expected calibration error, the churn rate predicted and realized per risk
  band; CLV normalised Gini, bias, decile MAPE, top-decile capture and the total; the realized value per
  tier and the share of A/B customers still A/B one scoring later. Each metric carries a seeded bootstrap
  95 % interval (customers resampled).
* **estimated** — for every scoring, open or closed, the churn model's AUC, Brier and churn rate are
  estimated from its probabilities alone (confidence-based performance estimation, CBPE: the expected
  confusion matrix at every threshold, assuming calibration holds on the scored population), and the
  CLV total from the predicted spend. As NannyML's CBPE calibrates on a reference period, the
  probabilities first go through the calibration map (isotonic) of the latest scoring whose outcomes were
  known on the scoring's date, when there is one: an estimate uses only what was known when it could
  have been made. Once the outcomes are in, the estimate stays beside the realized value, so the gap
  shows how good the estimates were.
* **flags** — a calibration break (the realized churn rate's whole interval lies more than
  ``monitoring.calibration_tolerance`` from the estimated rate, overall or within one value of a customer
  attribute such as a region: a break in one segment hides in the overall rate), a ranking break (the
  realized AUC's interval wholly below the estimated AUC) and feature drift (PSI of a model feature
  against the first scoring above ``monitoring.psi_threshold``).

The result is one row per scoring × model × version × metric × kind (:data:`COLUMNS`), identical on
rerun; :func:`verdict` words the headline for the review report.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crmscore import labels
from crmscore.config import Settings
from crmscore.errors import DataError
from crmscore.evaluation import (
    aggregate_bias,
    decile_mape,
    expected_calibration_error,
    normalized_gini,
    pr_auc,
    top_decile_capture,
)

__all__ = [
    "COLUMNS",
    "PastScoring",
    "past_scorings",
    "expected_churn_metrics",
    "bootstrap_interval",
    "realized_outcomes",
    "track_record",
    "verdict",
]

#: Columns of ``performance.parquet``.
COLUMNS = ["as_of", "model", "version", "metric", "kind", "value", "lower", "upper", "n", "status", "flag"]
_SCORE_COLUMNS = ["customer_id", "churn_probability", "risk_band", "expected_spend", "tier"]
_TOP_TIERS = ("A", "B")


@dataclasses.dataclass
class PastScoring:
    """One scoring folder: its as-of date, scores and manifest."""

    as_of: pd.Timestamp
    folder: Path
    scores: pd.DataFrame
    manifest: dict[str, Any]

    def version(self, role: str) -> int:
        """The model version that made the ``role`` scores (0: none)."""
        column = f"{role}_model_version"
        if column in self.scores.columns and len(self.scores):
            return int(self.scores[column].iloc[0])
        return int(self.manifest.get("models", {}).get(role, {}).get("version", 0) or 0)


def past_scorings(scores_dir: str | Path) -> list[PastScoring]:
    """Every complete scoring folder (``as_of=YYYY-MM-DD`` with ``scores.parquet``) in ``scores_dir``, oldest first."""
    folder = Path(scores_dir)
    if not folder.is_dir():
        raise DataError(f"{folder}: no scoring folder (run `crmscore score` first, or pass --scores DIR)")
    found = []
    for child in sorted(folder.glob("as_of=*")):
        if not (child / "scores.parquet").exists() or child.name.startswith("."):
            continue
        try:
            as_of = pd.Timestamp(child.name.removeprefix("as_of="))
        except ValueError:
            continue
        scores = pd.read_parquet(child / "scores.parquet")
        manifest_path = child / "manifest.json"
        manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
        found.append(PastScoring(as_of.normalize(), child, scores, manifest))
    if not found:
        raise DataError(f"{folder}: no scoring folder (as_of=YYYY-MM-DD/scores.parquet); run `crmscore score` first")
    return sorted(found, key=lambda s: s.as_of)


# --- estimates from the probabilities alone ------------------------------------------------------------------


def expected_churn_metrics(p: np.ndarray) -> dict[str, float]:
    """CBPE: the AUC, Brier score and churn rate a calibrated model expects on the customers it scored.

    With calibrated ``p``, customer ``i`` is a churner with probability ``p_i``; the expected true and
    false positives above each threshold are the sums of ``p`` and ``1 - p`` over the customers above it,
    which trace the expected ROC curve (tied probabilities form one step). The expected Brier score is
    ``mean p (1 - p)``.
    """
    p = np.asarray(p, dtype=float)
    p = p[np.isfinite(p)]
    if len(p) == 0:
        return {"roc_auc": np.nan, "brier": np.nan, "churn_rate": np.nan}
    values, inverse = np.unique(-p, return_inverse=True)  # descending probability, ties pooled
    tp = np.bincount(inverse, weights=p)
    fp = np.bincount(inverse, weights=1.0 - p)
    positives, negatives = tp.sum(), fp.sum()
    if positives <= 0 or negatives <= 0:
        auc = np.nan
    else:
        tpr = np.concatenate([[0.0], np.cumsum(tp) / positives])
        fpr = np.concatenate([[0.0], np.cumsum(fp) / negatives])
        auc = float(np.trapezoid(tpr, fpr))
    return {"roc_auc": auc, "brier": float(np.mean(p * (1.0 - p))), "churn_rate": float(p.mean())}


# --- the bootstrap ----------------------------------------------------------------------------------------------


def bootstrap_interval(
    metric: Callable[..., float], arrays: tuple[np.ndarray, ...], samples: int, rng: np.random.Generator
) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of ``metric(*arrays)`` over ``samples`` resamples of the rows.

    Resamples where the metric is undefined (e.g. one class only) are left out; NaN when none is defined.
    """
    n = len(arrays[0])
    if n == 0 or samples == 0:
        return np.nan, np.nan
    values = []
    for _ in range(samples):
        rows = rng.integers(0, n, n)
        try:
            value = metric(*(a[rows] for a in arrays))
        except ValueError:
            continue
        if np.isfinite(value):
            values.append(value)
    if not values:
        return np.nan, np.nan
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def _fast_auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC by ranks (ties averaged): the Mann-Whitney statistic, as sklearn's roc_auc_score gives it."""
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        raise ValueError("one class only")
    ranks = pd.Series(p).rank(method="average").to_numpy()
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((p - y) ** 2))


def _rate(y: np.ndarray) -> float:
    return float(np.mean(y)) if len(y) else np.nan


def _total(values: np.ndarray) -> float:
    return float(np.sum(values))


# --- outcomes ------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Outcomes:
    """What happened after a scoring, per scored customer found in the current data."""

    churned: pd.Series | None  # 0/1; None while the churn horizon is open
    spend: pd.Series | None  # spend in the CLV horizon; None while it is open
    missing: int  # scored customers the current data no longer holds


def realized_outcomes(
    tables: Mapping[str, pd.DataFrame],
    scoring: PastScoring,
    settings: Settings,
    data_end: pd.Timestamp | None,
    snapshot_date: pd.Timestamp | None = None,
) -> Outcomes:
    """The realized churn and spend of ``scoring``'s customers, with the training label code.

    Transaction data: churn is no purchase in ``(as_of, as_of + churn.horizon_days]`` once ``data_end`` has
    passed it; spend is the spend in the CLV horizon once that has passed. Snapshot data: the ``churned``
    flag of the current (later) customers table, once its snapshot date has passed the churn horizon.
    """
    customers = tables["customers"]
    ids = pd.Index(scoring.scores["customer_id"])
    present = ids.isin(customers["customer_id"])
    known = ids[present]
    churn_end = scoring.as_of + pd.Timedelta(days=settings.churn.horizon_days)
    clv_end = scoring.as_of + pd.Timedelta(days=settings.clv.horizon_days)
    churned = spend = None
    transactions = tables.get("transactions")
    if transactions is not None and len(transactions) and data_end is not None:
        if churn_end <= data_end:
            churned = labels.transaction_churn(transactions, known, scoring.as_of, settings.churn.horizon_days)
        if clv_end <= data_end:
            spend = labels.future_value(transactions, known, scoring.as_of, settings.clv.horizon_days)["future_spend"]
    elif "churned" in customers.columns and snapshot_date is not None and churn_end <= snapshot_date:
        flags = customers.set_index("customer_id")["churned"].reindex(known)
        churned = flags.dropna().astype(np.int8)
    return Outcomes(churned, spend, int((~present).sum()))


# --- rows ----------------------------------------------------------------------------------------------------------


class _Rows:
    """Collects the rows of one scoring and model; ``samples`` and ``rng`` drive the bootstrap intervals."""

    def __init__(self, as_of: pd.Timestamp, model: str, version: int, status: str, samples: int = 0, rng=None) -> None:
        self.as_of, self.model, self.version, self.status = as_of, model, version, status
        self.samples, self.rng = samples, rng
        self.rows: list[dict[str, Any]] = []

    def realized(self, metric: str, fn: Callable[..., float], *arrays: np.ndarray, flag: bool = False) -> None:
        """A realized metric ``fn(*arrays)`` with its bootstrap interval."""
        interval = bootstrap_interval(fn, arrays, self.samples, self.rng)
        self.add(metric, "realized", fn(*arrays), interval, len(arrays[0]), flag)

    def add(
        self,
        metric: str,
        kind: str,
        value: float,
        interval: tuple[float, float] = (np.nan, np.nan),
        n: int = 0,
        flag: bool = False,
    ) -> None:
        self.rows.append(
            {
                "as_of": self.as_of,
                "model": self.model,
                "version": self.version,
                "metric": metric,
                "kind": kind,
                "value": float(value),
                "lower": float(interval[0]),
                "upper": float(interval[1]),
                "n": int(n),
                "status": self.status,
                "flag": bool(flag),
            }
        )


def _churn_rows(
    out: _Rows, scoring: PastScoring, outcome: Outcomes, tolerance: float, calibrator: Any = None
) -> np.ndarray | None:
    """The churn rows of one scoring; returns the estimated probabilities of its customers with outcomes."""
    scores = scoring.scores.set_index("customer_id")
    p_all = scores["churn_probability"].to_numpy(dtype=float)
    estimate = expected_churn_metrics(_recalibrated(p_all, calibrator))
    for metric, value in estimate.items():
        out.add(metric, "estimated", value, n=int(np.isfinite(p_all).sum()))
    if outcome.churned is None:
        return None
    y = outcome.churned.to_numpy(dtype=np.int8)
    p = scores.loc[outcome.churned.index, "churn_probability"].to_numpy(dtype=float)
    keep = np.isfinite(p)
    y, p = y[keep], p[keep]
    n = len(y)
    if 0 < y.sum() < n:
        out.realized("roc_auc", _fast_auc, y, p)
        auc = out.rows[-1]
        out.realized("pr_auc", pr_auc, y, p)
        # Ranking break: the realized AUC's whole interval lies below the AUC the probabilities promised.
        gap = auc["lower"] - estimate["roc_auc"], auc["upper"] - estimate["roc_auc"]
        out.add("auc_gap", "realized", auc["value"] - estimate["roc_auc"], gap, n, flag=gap[1] < 0)
    out.realized("brier", _brier, y, p)
    out.realized("ece", expected_calibration_error, y, p)
    expected = _recalibrated(p, calibrator)
    _calibration_gap(out, "calibration_gap", y, expected, tolerance)
    bands = scores.loc[outcome.churned.index, "risk_band"].to_numpy(dtype=object)[keep]
    for band in sorted({b for b in bands if isinstance(b, str) and b}):
        mine = bands == band
        out.add(f"predicted_rate[{band}]", "estimated", float(p[mine].mean()), n=int(mine.sum()))
        out.realized(f"realized_rate[{band}]", _rate, y[mine])
    return expected


def _calibration_gap(out: _Rows, metric: str, y: np.ndarray, expected: np.ndarray, tolerance: float) -> None:
    """Realized churn rate, and its gap to the estimated rate; a break where the realized rate's whole
    interval lies more than ``tolerance`` from the estimate (evidence that the gap exceeds the tolerance,
    not only that there is one: with many segments, chance gaps would flag otherwise)."""
    suffix = metric.removeprefix("calibration_gap")
    out.realized(f"churn_rate{suffix}", _rate, y)
    rate, estimate = out.rows[-1], float(expected.mean())
    gap = rate["lower"] - estimate, rate["upper"] - estimate
    broken = gap[0] > tolerance or gap[1] < -tolerance
    out.add(metric, "realized", rate["value"] - estimate, gap, len(y), flag=broken)


#: Attribute values (segments) need this many customers with outcomes before their calibration is judged.
MIN_SEGMENT_CUSTOMERS = 30
_MAX_SEGMENT_VALUES = 20


def _segment_rows(
    out: _Rows, customers: pd.DataFrame, outcome: Outcomes, expected: np.ndarray, tolerance: float
) -> None:
    """Calibration per value of each categorical customer attribute (a break in one region or contract
    type hides in the overall rate)."""
    from crmscore.data.schemas import CONTRACT

    contract = {c.name for c in CONTRACT["customers"]}
    ids = outcome.churned.index
    y = outcome.churned.to_numpy(dtype=np.int8)
    keep = np.isfinite(expected) if len(expected) == len(y) else None
    if keep is None:
        return
    attributes = customers.set_index("customer_id").reindex(ids)
    for column in attributes.columns:
        values = attributes[column]
        if (
            column in contract
            or pd.api.types.is_numeric_dtype(values.dtype)
            or pd.api.types.is_bool_dtype(values.dtype)
        ):
            continue
        levels = values.dropna().astype(str)
        if not 2 <= levels.nunique() <= _MAX_SEGMENT_VALUES:
            continue
        text = values.astype(object).where(values.notna(), None).to_numpy()
        for level in sorted(levels.unique()):
            mine = (text == level) & keep
            if mine.sum() >= MIN_SEGMENT_CUSTOMERS:
                _calibration_gap(out, f"calibration_gap[{column}={level}]", y[mine], expected[mine], tolerance)


def _recalibrated(p: np.ndarray, calibrator: Any) -> np.ndarray:
    """``p`` through the reference calibration map, where there is one (missing values stay missing)."""
    if calibrator is None:
        return p
    out = np.full(len(p), np.nan)
    finite = np.isfinite(p)
    out[finite] = calibrator.predict(p[finite])
    return out


def _reference_calibrator(scorings: list[PastScoring], outcomes: list[Outcomes], k: int, horizon_days: int) -> Any:
    """The calibration map of the latest scoring whose outcomes were known on scoring ``k``'s date (its
    horizon closed by then): isotonic, from its probabilities to its realized churn. None without one."""
    from sklearn.isotonic import IsotonicRegression

    as_of = scorings[k].as_of
    for j in range(k - 1, -1, -1):
        known = outcomes[j].churned
        if known is None or scorings[j].as_of + pd.Timedelta(days=horizon_days) > as_of:
            continue
        p = scorings[j].scores.set_index("customer_id").loc[known.index, "churn_probability"].to_numpy(dtype=float)
        finite = np.isfinite(p)
        if finite.sum() < MIN_SEGMENT_CUSTOMERS or len(np.unique(known.to_numpy()[finite])) < 2:
            return None
        model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        return model.fit(p[finite], known.to_numpy(dtype=float)[finite])
    return None


def _clv_rows(out: _Rows, scoring: PastScoring, outcome: Outcomes) -> None:
    scores = scoring.scores.set_index("customer_id")
    predicted_all = scores["expected_spend"].to_numpy(dtype=float)
    finite = predicted_all[np.isfinite(predicted_all)]
    out.add("total_spend", "estimated", float(finite.sum()), n=len(finite))
    out.add("mean_spend", "estimated", _rate(finite), n=len(finite))
    if outcome.spend is None:
        return
    actual = outcome.spend.to_numpy(dtype=float)
    predicted = scores.loc[outcome.spend.index, "expected_spend"].to_numpy(dtype=float)
    keep = np.isfinite(predicted)
    actual, predicted = actual[keep], predicted[keep]
    out.realized("total_spend", _total, actual)
    out.realized("mean_spend", _rate, actual)
    if actual.sum() <= 0:
        return
    for name, metric in (
        ("gini", normalized_gini),
        ("bias", aggregate_bias),
        ("decile_mape", decile_mape),
        ("top_decile_capture", top_decile_capture),
    ):
        out.realized(name, metric, actual, predicted)


def _tier_rows(out: _Rows, scoring: PastScoring, later: PastScoring | None, outcome: Outcomes) -> None:
    scores = scoring.scores.set_index("customer_id")
    if "tier" not in scores.columns or not scores["tier"].replace("", np.nan).notna().any():
        return
    if outcome.spend is not None:
        tiers = scores.loc[outcome.spend.index, "tier"].to_numpy(dtype=object)
        actual = outcome.spend.to_numpy(dtype=float)
        for tier in sorted({t for t in tiers if isinstance(t, str) and t}):
            out.realized(f"realized_value[{tier}]", _rate, actual[tiers == tier])
    if later is not None and "tier" in later.scores.columns:
        top = scores.index[scores["tier"].isin(_TOP_TIERS).to_numpy()]
        next_tier = later.scores.set_index("customer_id")["tier"].reindex(top)
        stayed = next_tier.isin(_TOP_TIERS).to_numpy(dtype=float)[next_tier.notna().to_numpy()]
        if len(stayed):
            out.realized("tier_stability_ab", _rate, stayed)


# --- the whole track record ------------------------------------------------------------------------------------


def track_record(
    tables: Mapping[str, pd.DataFrame],
    scorings: list[PastScoring],
    settings: Settings,
    snapshot_date: pd.Timestamp | None = None,
    drift: Mapping[pd.Timestamp, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """The performance table of every scoring against the current ``tables`` (see the module docstring).

    ``drift`` (optional) holds, per scoring date, the feature drift against the first scoring
    (:func:`crmscore.drift.feature_drift`); each feature's PSI becomes a ``psi[feature]`` row, flagged above
    ``monitoring.psi_threshold``. Rows are sorted by as-of date, model, metric and kind; the bootstrap is
    seeded per scoring from ``monitoring.seed``, so a rerun gives an identical table.
    """
    transactions = tables.get("transactions")
    data_end = labels.data_end(tables) if transactions is not None and len(transactions) else None
    rows: list[dict[str, Any]] = []
    cfg = settings.monitoring
    outcomes = [realized_outcomes(tables, scoring, settings, data_end, snapshot_date) for scoring in scorings]
    for k, scoring in enumerate(scorings):
        outcome = outcomes[k]
        rng = np.random.default_rng([cfg.seed, int(scoring.as_of.strftime("%Y%m%d"))])
        later = scorings[k + 1] if k + 1 < len(scorings) else None
        churn_status = "closed" if outcome.churned is not None else "open"
        clv_status = "closed" if outcome.spend is not None else "open"

        def rows_of(model: str, role: str | None, status: str, scoring=scoring, rng=rng) -> _Rows:
            version = scoring.version(role) if role else 0
            return _Rows(scoring.as_of, model, version, status, cfg.bootstrap_samples, rng)

        data = rows_of("data", None, churn_status)
        data.add("customers_scored", "realized", len(scoring.scores), n=len(scoring.scores))
        data.add("customers_missing", "realized", outcome.missing, n=len(scoring.scores), flag=outcome.missing > 0)
        churn, clv, tier = (
            rows_of("churn", "churn", churn_status),
            rows_of("clv", "clv", clv_status),
            rows_of("tiers", "clv", clv_status),
        )
        if _has(scoring.scores, "churn_probability"):
            calibrator = _reference_calibrator(scorings, outcomes, k, settings.churn.horizon_days)
            expected = _churn_rows(churn, scoring, outcome, cfg.calibration_tolerance, calibrator)
            if expected is not None:
                _segment_rows(churn, tables["customers"], outcome, expected, cfg.calibration_tolerance)
        if _has(scoring.scores, "expected_spend"):
            _clv_rows(clv, scoring, outcome)
        _tier_rows(tier, scoring, later, outcome)
        for row in (drift or {}).get(scoring.as_of, pd.DataFrame(columns=["feature", "psi"])).itertuples():
            churn.add(
                f"psi[{row.feature}]", "realized", row.psi, n=len(scoring.scores), flag=row.psi > cfg.psi_threshold
            )
        rows += data.rows + churn.rows + clv.rows + tier.rows
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["as_of"] = pd.to_datetime(frame["as_of"]).astype("datetime64[ns]")
    frame = frame.sort_values(["as_of", "model", "metric", "kind"], kind="stable", ignore_index=True)
    return frame


# --- the verdict --------------------------------------------------------------------------------------------------


def _has(scores: pd.DataFrame, column: str) -> bool:
    return column in scores.columns and bool(scores[column].notna().any())


def _value(frame: pd.DataFrame, as_of, model: str, metric: str, kind: str) -> float | None:
    hit = frame.loc[
        (frame["as_of"] == as_of) & (frame["model"] == model) & (frame["metric"] == metric) & (frame["kind"] == kind),
        "value",
    ]
    return float(hit.iloc[0]) if len(hit) and np.isfinite(hit.iloc[0]) else None


def verdict(performance: pd.DataFrame) -> str:
    """One line for the top of the review report, e.g. ``churn v3: realized AUC 0.81 on the 2026-05-31
    scoring, estimated 0.80 for the current one (2026-10-31); calibration holds``."""
    churn = performance.loc[performance["model"] == "churn"]
    if churn.empty:
        return "no churn scoring to judge yet"
    latest = churn["as_of"].max()
    version = int(churn.loc[churn["as_of"] == latest, "version"].iloc[0])
    estimated = _value(performance, latest, "churn", "roc_auc", "estimated")
    closed = churn.loc[(churn["status"] == "closed") & (churn["metric"] == "roc_auc") & (churn["kind"] == "realized")]
    current = f"estimated AUC {estimated:.2f} for the current one ({latest.date()})" if estimated is not None else ""
    if closed.empty:
        return f"churn v{version}: no scoring's horizon has closed yet; {current}".rstrip("; ")
    last_closed = closed["as_of"].max()
    realized = _value(performance, last_closed, "churn", "roc_auc", "realized")
    breaks = churn.loc[churn["metric"].str.startswith("calibration_gap") & churn["flag"]]
    if breaks.empty:
        calibration = "calibration holds"
    else:
        first = breaks.loc[breaks["as_of"] == breaks["as_of"].min()]
        worst = first.loc[first["value"].abs().idxmax()]
        where = worst["metric"].removeprefix("calibration_gap").strip("[]")
        calibration = (
            f"calibration broke at the {worst['as_of'].date()} scoring ({where + ': ' if where else ''}realized churn "
            f"{worst['value'] * 100:+.1f} points against the estimate)"
        )
    return (
        f"churn v{version}: realized AUC {realized:.2f} on the {last_closed.date()} scoring, {current}; {calibration}"
    )
