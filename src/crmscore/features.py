"""Point-in-time customer features: everything known about each customer on the as-of date.

:func:`build_features` turns the contract tables into one row per customer known on ``as_of``
(signed up on or before it). Only rows dated on or before ``as_of`` are read — transactions and
interactions by their date, invoices by their due date, payments by the day they were paid — so the
same features come out whatever happened afterwards (tested by changing and deleting every later row).

Families, each built from whichever of :data:`FEATURE_TABLES` a dataset has (Telco has only ``customers``;
CDNOW only ``transactions``; past campaigns are for uplift, never a feature):

* **customer**: tenure and the static attributes (categoricals stay pandas ``category`` for LightGBM);
* **RFM**: recency, frequency and monetary value overall and per window (``windows_days``);
* **rhythm**: inter-purchase time statistics and how overdue the next purchase is;
* **trend**: purchases and spend in the last ``trend_window_days`` against the window before;
* **breadth**: distinct products, overall and in the longest window;
* **payments**: collection rate, days late, share of late invoices, overdue amount;
* **contacts**: complaints and all contacts per window, days since the last contact;
* **season**: the as-of date's time of year (dated data), so that models trained on cutoffs spread
  over a year tell seasonal quiet from risk.

Every feature has a short human description in :data:`FEATURES` (windowed names are resolved by
:func:`describe`), used by reports and by the SHAP reason texts.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from crmscore.config import FeatureSettings
from crmscore.data.schemas import CONTRACT, known_customers
from crmscore.errors import DataError

__all__ = [
    "DATE_FEATURES",
    "AGE_FEATURES",
    "FEATURES",
    "FEATURE_TABLES",
    "LABEL_COLUMNS",
    "FeatureEncoder",
    "build_features",
    "describe",
    "feature_columns",
    "stack_frames",
    "training_profile",
]

log = logging.getLogger("crmscore")

#: The contract tables features are built from; the others (``campaigns``) are ignored.
FEATURE_TABLES = ("customers", "transactions", "payments", "interactions")

# Descriptions; "{w}" stands for a window length in days.
FEATURES: dict[str, str] = {
    "tenure_days": "days since the customer signed up",
    "recency_days": "days since the last purchase",
    "first_purchase_days": "days since the first purchase",
    "frequency_total": "purchases so far",
    "monetary_total": "total spend so far",
    "avg_order_value": "average value of a purchase",
    "repeat_purchase_days": "days with a purchase after the first purchase day (repeat purchases)",
    "repeat_spend_mean": "average spend per repeat purchase day",
    "frequency_{w}d": "purchases in the last {w} days",
    "monetary_{w}d": "spend in the last {w} days",
    "ipt_mean_days": "average days between purchases",
    "ipt_std_days": "variation of the days between purchases",
    "last_gap_days": "days between the last two purchases",
    "overdue_ratio": "days since the last purchase relative to the usual gap between purchases",
    "frequency_trend": "change in purchases, last {t} days against the {t} days before (log ratio)",
    "monetary_trend": "change in spend, last {t} days against the {t} days before (log ratio)",
    "product_breadth": "distinct products bought so far",
    "product_breadth_{w}d": "distinct products bought in the last {w} days",
    "invoices_due": "invoices due so far",
    "collection_rate": "share of the invoiced amount paid by the as-of date",
    "days_late_mean": "average days invoices were paid late (unpaid ones count until the as-of date)",
    "late_share": "share of invoices paid late or still unpaid after their due date",
    "overdue_amount": "amount past its due date and still unpaid",
    "complaints_{w}d": "complaints in the last {w} days",
    "contacts_{w}d": "contacts of any kind in the last {w} days",
    "complaint_trend": "change in complaints, last {t} days against the {t} days before (log ratio)",
    "days_since_contact": "days since the last contact",
    "season_sin": "time of year of the as-of date (sine)",
    "season_cos": "time of year of the as-of date (cosine)",
}

# Columns that hold outcomes, never inputs: using them as features would leak the label.
LABEL_COLUMNS = frozenset({"churned"})

#: Features of the as-of date itself (time of year): they differ between any two dates, so drift and range
#: checks leave them out.
DATE_FEATURES = ("season_sin", "season_cos")
#: Features that grow with the as-of date for every customer (their age with the company): a scoring after
#: training sees older customers than training did by construction, so only their lower end is range-checked.
AGE_FEATURES = ("tenure_days", "first_purchase_days")

_WINDOWED = re.compile(r"^(?P<stem>[a-z_]+)_(?P<w>\d+)d$")


def describe(feature: str, trend_window_days: int = 90) -> str:
    """Human description of ``feature`` (windowed and attribute names included)."""
    if feature in FEATURES:
        return FEATURES[feature].format(t=trend_window_days)
    match = _WINDOWED.match(feature)
    if match and f"{match['stem']}_{{w}}d" in FEATURES:
        return FEATURES[f"{match['stem']}_{{w}}d"].format(w=match["w"])
    return feature.replace("_", " ")  # customer attributes describe themselves


def _days_before(dates: pd.Series, as_of: pd.Timestamp) -> np.ndarray:
    """Whole days from each date to ``as_of`` (0 on the as-of day; negative after it)."""
    values = dates.to_numpy(dtype="datetime64[ns]")
    return (np.datetime64(as_of.to_datetime64(), "ns") - values).astype("timedelta64[D]").astype(np.int64)


def _codes(ids: pd.Series, index: pd.Index) -> np.ndarray:
    return index.get_indexer(ids)


def _log_ratio(recent: np.ndarray, before: np.ndarray) -> np.ndarray:
    return np.log1p(recent) - np.log1p(before)


def build_features(
    tables: Mapping[str, pd.DataFrame],
    as_of: dt.date | str | pd.Timestamp,
    settings: FeatureSettings | None = None,
) -> pd.DataFrame:
    """Features of every customer known on ``as_of``, from rows dated on or before it.

    Args:
        tables: contract tables (validated; ``customers`` required, the others optional; tables outside
            :data:`FEATURE_TABLES`, such as ``campaigns``, are ignored).
        as_of: the cutoff day; rows dated after it are never read.
        settings: windows and trend window (``features`` section of ``params.yaml``).

    Returns:
        DataFrame indexed by ``customer_id`` (sorted), one row per customer with
        ``signup_date <= as_of`` (every customer when the table has no signup dates: snapshot data, which
        then has no ``tenure_days``); numeric attributes as float, text attributes as ``category``; the
        columns in ``settings.exclude`` are left out.
    """
    settings = settings or FeatureSettings()
    if "customers" not in tables:
        raise DataError("features: the customers table is required")
    as_of = pd.Timestamp(as_of).normalize()
    known = known_customers(tables["customers"], as_of).sort_values("customer_id")
    index = pd.Index(known["customer_id"].to_numpy(), name="customer_id")
    n = len(index)
    out: dict[str, np.ndarray | pd.Series] = {}
    if "signup_date" in known.columns:
        out["tenure_days"] = _days_before(known["signup_date"], as_of).astype(float)
    if "transactions" in tables:
        out.update(_transaction_features(tables["transactions"], index, as_of, settings))
        if settings.season:
            # Purchases are seasonal: the same recency means less at the end of a quiet summer than in
            # December. The calendar is known on the as-of date, so this is point-in-time information.
            angle = 2 * np.pi * as_of.day_of_year / 365.25
            out["season_sin"] = np.full(n, np.sin(angle))
            out["season_cos"] = np.full(n, np.cos(angle))
    if "payments" in tables:
        out.update(_payment_features(tables["payments"], index, as_of))
    if "interactions" in tables:
        out.update(_interaction_features(tables["interactions"], index, as_of, settings))
    features = pd.DataFrame(out, index=index)
    attributes = _attributes(known.drop(columns=[c for c in settings.exclude if c in known.columns]), index)
    # An attribute named like a computed feature must not shadow it.
    attributes = attributes.rename(columns={c: f"customer_{c}" for c in attributes.columns if c in out})
    features = pd.concat([features, attributes], axis=1) if attributes.shape[1] else features
    assert len(features) == n
    return features


def _attributes(known: pd.DataFrame, index: pd.Index) -> pd.DataFrame:
    contract = {c.name for c in CONTRACT["customers"]} - {"monthly_revenue"}
    columns = [c for c in known.columns if c not in contract and c not in LABEL_COLUMNS]
    attrs = known[columns].copy()
    attrs.index = index
    for column in columns:
        series = attrs[column]
        if pd.api.types.is_bool_dtype(series.dtype):
            attrs[column] = series.astype(float)
        elif pd.api.types.is_numeric_dtype(series.dtype):
            attrs[column] = series.astype(float)
        elif pd.api.types.is_datetime64_any_dtype(series.dtype):
            attrs = attrs.drop(columns=column)  # dates are not features; their meaning is in tenure etc.
        elif not isinstance(series.dtype, pd.CategoricalDtype):
            attrs[column] = series.astype("category")
        else:
            # Categories seen only among later customers say nothing about this as-of date.
            attrs[column] = series.cat.remove_unused_categories()
    return attrs


def _transaction_features(
    tx: pd.DataFrame, index: pd.Index, as_of: pd.Timestamp, settings: FeatureSettings
) -> dict[str, np.ndarray]:
    n = len(index)
    days = _days_before(tx["date"], as_of)
    code = _codes(tx["customer_id"], index)
    seen = (days >= 0) & (code >= 0)
    days, code = days[seen], code[seen]
    amount = tx["amount"].to_numpy(dtype=float)[seen]

    out: dict[str, np.ndarray] = {}
    count = np.bincount(code, minlength=n).astype(float)
    spend = np.bincount(code, weights=amount, minlength=n)
    has = count > 0

    # Sort once by customer then date: first/last purchase and the gaps between purchases.
    order = np.lexsort((-days, code))  # ascending date = descending days-before
    code_s, days_s = code[order], days[order]
    starts = np.flatnonzero(np.r_[True, code_s[1:] != code_s[:-1]]) if code_s.size else np.empty(0, np.int64)
    ends = np.r_[starts[1:], code_s.size] - 1 if code_s.size else np.empty(0, np.int64)
    group = code_s[starts] if code_s.size else np.empty(0, np.int64)
    recency = np.full(n, np.nan)
    first = np.full(n, np.nan)
    recency[group] = days_s[ends]
    first[group] = days_s[starts]
    gaps = -np.diff(days_s).astype(float)  # days from one purchase to the next, same customer only
    same = code_s[1:] == code_s[:-1]
    gap_code = code_s[1:][same]
    gap = gaps[same]
    n_gaps = np.bincount(gap_code, minlength=n).astype(float)
    gap_sum = np.bincount(gap_code, weights=gap, minlength=n)
    gap_sq = np.bincount(gap_code, weights=gap * gap, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        ipt_mean = np.where(n_gaps > 0, gap_sum / n_gaps, np.nan)
        ipt_var = np.where(n_gaps > 1, (gap_sq - n_gaps * ipt_mean**2) / np.maximum(n_gaps - 1, 1), np.nan)
    last_gap = np.full(n, np.nan)
    multi = ends > starts
    last_gap[group[multi]] = days_s[ends[multi] - 1] - days_s[ends[multi]]

    out["recency_days"] = recency
    out["first_purchase_days"] = first
    out["frequency_total"] = count
    out["monetary_total"] = spend
    with np.errstate(invalid="ignore", divide="ignore"):
        out["avg_order_value"] = np.where(has, spend / np.maximum(count, 1), np.nan)
    # Repeat purchasing counted in purchase days, as the buy-till-you-die models count it.
    day_key = code.astype(np.int64) * (int(days.max()) + 1 if days.size else 1) + days
    purchase_days = np.bincount(np.unique(day_key) // (int(days.max()) + 1 if days.size else 1), minlength=n)
    first_day_spend = np.bincount(
        code, weights=np.where(days == first[code], amount, 0.0) if days.size else amount, minlength=n
    )
    repeat_days = np.maximum(purchase_days - 1, 0).astype(float)
    out["repeat_purchase_days"] = np.where(has, repeat_days, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["repeat_spend_mean"] = np.where(repeat_days > 0, (spend - first_day_spend) / repeat_days, np.nan)
    for w in settings.windows_days:
        in_window = days < w
        out[f"frequency_{w}d"] = np.bincount(code[in_window], minlength=n).astype(float)
        out[f"monetary_{w}d"] = np.bincount(code[in_window], weights=amount[in_window], minlength=n)
    out["ipt_mean_days"] = ipt_mean
    out["ipt_std_days"] = np.sqrt(np.maximum(ipt_var, 0))
    out["last_gap_days"] = last_gap
    with np.errstate(invalid="ignore", divide="ignore"):
        out["overdue_ratio"] = recency / np.maximum(ipt_mean, 1.0)

    t = settings.trend_window_days
    recent = days < t
    before = (days >= t) & (days < 2 * t)
    out["frequency_trend"] = _log_ratio(
        np.bincount(code[recent], minlength=n), np.bincount(code[before], minlength=n)
    ).astype(float)
    out["monetary_trend"] = _log_ratio(
        np.bincount(code[recent], weights=amount[recent], minlength=n),
        np.bincount(code[before], weights=amount[before], minlength=n),
    )

    if "product" in tx.columns:
        product = pd.Series(tx["product"].to_numpy()[seen])
        product_code, _ = pd.factorize(product, use_na_sentinel=True)
        valid = product_code >= 0
        stride = int(product_code.max()) + 2 if product_code.size else 2
        longest = max(settings.windows_days)
        for name, mask in (("product_breadth", valid), (f"product_breadth_{longest}d", valid & (days < longest))):
            pairs = np.unique(code[mask].astype(np.int64) * stride + product_code[mask])
            owner = pairs // stride
            out[name] = np.bincount(owner, minlength=n).astype(float)
    return out


def _payment_features(payments: pd.DataFrame, index: pd.Index, as_of: pd.Timestamp) -> dict[str, np.ndarray]:
    n = len(index)
    due_days = _days_before(payments["due_date"], as_of)
    code = _codes(payments["customer_id"], index)
    due = (due_days >= 0) & (code >= 0)  # invoices due on or before the as-of date
    code, due_days = code[due], due_days[due]
    amount_due = payments["amount_due"].to_numpy(dtype=float)[due]
    paid_date = payments["paid_date"][due]
    paid_days = _days_before(paid_date.fillna(as_of + pd.Timedelta(days=1)), as_of)
    paid_by_as_of = paid_date.notna().to_numpy() & (paid_days >= 0)
    amount_paid = np.where(paid_by_as_of, np.nan_to_num(payments["amount_paid"].to_numpy(dtype=float)[due]), 0.0)
    # Days late: paid ones by their payment day, unpaid ones until the as-of date.
    settled_days = np.where(paid_by_as_of, paid_days, 0)
    late_days = np.maximum(due_days - settled_days, 0).astype(float)
    is_late = (late_days > 0) | (~paid_by_as_of & (due_days > 0))

    invoices = np.bincount(code, minlength=n).astype(float)
    total_due = np.bincount(code, weights=amount_due, minlength=n)
    total_paid = np.bincount(code, weights=np.minimum(amount_paid, amount_due), minlength=n)
    has = invoices > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "invoices_due": invoices,
            "collection_rate": np.where(total_due > 0, total_paid / total_due, np.where(has, 1.0, np.nan)),
            "days_late_mean": np.where(has, np.bincount(code, weights=late_days, minlength=n) / invoices, np.nan),
            "late_share": np.where(
                has, np.bincount(code, weights=is_late.astype(float), minlength=n) / invoices, np.nan
            ),
            # Only invoices strictly past their due date are overdue (as late_share counts them).
            "overdue_amount": np.bincount(
                code, weights=np.where(due_days > 0, amount_due - np.minimum(amount_paid, amount_due), 0.0), minlength=n
            ),
        }


def _interaction_features(
    interactions: pd.DataFrame, index: pd.Index, as_of: pd.Timestamp, settings: FeatureSettings
) -> dict[str, np.ndarray]:
    n = len(index)
    days = _days_before(interactions["date"], as_of)
    code = _codes(interactions["customer_id"], index)
    seen = (days >= 0) & (code >= 0)
    days, code = days[seen], code[seen]
    kind = interactions["kind"].astype("string").str.lower().to_numpy()[seen]
    complaint = kind == "complaint"
    out: dict[str, np.ndarray] = {}
    for w in settings.windows_days:
        in_window = days < w
        out[f"complaints_{w}d"] = np.bincount(code[in_window & complaint], minlength=n).astype(float)
        out[f"contacts_{w}d"] = np.bincount(code[in_window], minlength=n).astype(float)
    t = settings.trend_window_days
    out["complaint_trend"] = _log_ratio(
        np.bincount(code[complaint & (days < t)], minlength=n),
        np.bincount(code[complaint & (days >= t) & (days < 2 * t)], minlength=n),
    ).astype(float)
    last = np.full(n, np.inf)
    np.minimum.at(last, code, days.astype(float))
    out["days_since_contact"] = np.where(np.isfinite(last), last, np.nan)
    return out


def feature_columns(features: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Split feature columns into (numeric, categorical) names."""
    categorical = [c for c in features.columns if isinstance(features[c].dtype, pd.CategoricalDtype)]
    numeric = [c for c in features.columns if c not in categorical]
    return numeric, categorical


def training_profile(X: pd.DataFrame, categories: Mapping[str, Iterable[Any]]) -> dict[str, dict[str, Any]]:
    """The training profile of every column of ``X``: what scoring compares new customers with.

    Args:
        X: the training features (one row per training example), as the model sees them.
        categories: the categories the model knows, per categorical column; every other column is numeric.

    Returns:
        Column → ``{"kind": "categorical", "categories": [...], "missing_share": s}`` or
        ``{"kind": "numeric", "min": a, "max": b, "missing_share": s}`` (``min``/``max`` of the finite
        values, ``None`` when there is none). Plain Python values: a few hundred bytes per feature.
    """
    profile: dict[str, dict[str, Any]] = {}
    n = len(X)
    for column in X.columns:
        values = X[column]
        missing = float(values.isna().sum() / n) if n else 0.0
        if column in categories:
            known = [c.item() if isinstance(c, np.generic) else c for c in categories[column]]
            profile[column] = {"kind": "categorical", "categories": known, "missing_share": missing}
            continue
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        finite = numbers[np.isfinite(numbers)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (None, None)
        profile[column] = {"kind": "numeric", "min": low, "max": high, "missing_share": missing}
    return profile


class FeatureEncoder:
    """Mixin of the models: remembers the training features and categories and encodes frames alike.

    ``_prepare(X, fitting=True)`` records ``feature_names_in_``, ``categories_`` (training categories per
    categorical column), ``dropped_features_`` (features with no value at all, dropped with a
    warning) and ``feature_profile_`` (:func:`training_profile`: categories, numeric ranges and missing
    shares, which scoring checks new customers against); at prediction it selects those columns, codes
    categories against the training ones (an unseen value becomes missing, its count logged at info level:
    scoring reports them once per feature, :mod:`crmscore.feature_checks`) and makes every other column
    float.
    """

    _label = "model"

    def _prepare(self, X: pd.DataFrame, fitting: bool = False) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame):
            raise TypeError(f"{type(self).__name__} expects a pandas DataFrame of features")
        if fitting:
            _, categorical = feature_columns(X)
            all_missing = [c for c in X.columns if X[c].isna().all()]
            if all_missing:
                warnings.warn(
                    f"dropping features with no value at all: {', '.join(all_missing)}", UserWarning, stacklevel=3
                )
            self.dropped_features_ = all_missing
            self.feature_names_in_ = np.array([c for c in X.columns if c not in all_missing], dtype=object)
            self.categories_ = {
                c: list(X[c].cat.categories)
                if isinstance(X[c].dtype, pd.CategoricalDtype)
                else sorted(X[c].dropna().unique())
                for c in categorical
                if c not in all_missing
            }
        missing = [c for c in self.feature_names_in_ if c not in X.columns]
        if missing:
            raise DataError(f"{self._label}: input lacks feature column(s) {', '.join(missing[:5])}")
        X = X.loc[:, list(self.feature_names_in_)].copy()
        for column, categories in self.categories_.items():
            values = X[column].astype(object) if isinstance(X[column].dtype, pd.CategoricalDtype) else X[column]
            values = pd.Series(values, index=X.index)
            coded = pd.Categorical(values.where(values.isin(categories)), categories=categories)
            unseen = int((pd.isna(coded) & pd.notna(values)).sum())
            if unseen and not fitting:
                log.info("%s: %d value(s) never seen in training; treated as missing", column, unseen)
            X[column] = coded
        for column in X.columns:
            if column not in self.categories_:
                X[column] = pd.to_numeric(X[column], errors="coerce").astype(float)
        if fitting:
            self.feature_profile_ = training_profile(X, self.categories_)
        return X


def stack_frames(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Feature frames of several as-of dates, one under the other, with categoricals kept categorical.

    Categories can differ between dates (a region first seen later); they are united.
    """
    X = pd.concat(frames)
    for column in X.columns:
        if any(isinstance(f[column].dtype, pd.CategoricalDtype) for f in frames):
            X[column] = X[column].astype("category")
    return X
