"""Decision-tree segments: a shallow tree whose leaves are named customer segments with readable rules.

:class:`SegmentTree` fits a scikit-learn :class:`~sklearn.tree.DecisionTreeRegressor` (``max_depth``,
``min_samples_leaf = ceil(min_leaf_share × customers)``) to a target chosen in ``params.yaml``
(:func:`target_values`: CLV, churn probability or scorecard points) over a short list of interpretable
features. Each leaf becomes a segment with an id, a readable name and its rule, e.g.
``tenure_days < 365 AND contract = 'month-to-month'``. The rules leave Python three ways, and all
three assign every customer exactly as :meth:`SegmentTree.predict` does (tested row by row, missing
values and unseen categories included):

* :meth:`SegmentTree.to_sql` — a ``CASE WHEN … THEN 1 … END AS segment_id`` expression;
* :meth:`SegmentTree.to_json` — structured conditions (feature, operator, value(s), where missing
  values go) plus the tree itself, read back by :meth:`SegmentTree.from_json`;
* :meth:`SegmentTree.apply_rules` — the JSON conditions evaluated in pandas.

**Segment ids.** Segment 1 has the highest mean target (most valuable for CLV, riskiest for churn);
ties keep the tree's left-to-right order. Names read ``Segment 2: days since the last purchase < 30,
purchases in the last 365 days ≥ 4`` — feature descriptions from :func:`crmscore.features.describe`,
numbers rounded for display only; the id makes every name unique.

**Thresholds.** Any boundary strictly between the largest training value sent left and the smallest
sent right gives the same tree; scikit-learn takes the midpoint (in float32). Here the boundary is
moved to the roundest number in that gap, closest to the midpoint (``tenure_days < 365`` rather than
``<= 364.5``), so every training customer stays in its leaf (checked during ``fit``) while rules read
well. Splits read ``feature < value`` (left) and ``feature >= value`` (right) and are compared in
float64 by :meth:`~SegmentTree.predict`, SQL and pandas alike.

**Missing values** (scikit-learn ≥ 1.3 trees handle NaN natively). At a split where training
customers had missing values, the tree learned which side they go to; where none had, scikit-learn
sends them to the side that held more training customers (ties: right). A split may also separate
missing from known values only. The rules say so: ``(recency_days < 30 OR recency_days IS NULL)``.

**Categorical features** (``category``, ``object`` or string columns) are coded by the rank of their
mean target in training, which lets one threshold on the code find the best two-group partition of
the categories (Breiman's ordering for squared error), so rules read ``contract = 'month-to-month'``
or ``contract IN ('one-year', 'two-year')``. Categories not seen in training (including categories of
the dtype that no training customer had) go where missing values go: the side that receives missing
values is written ``(contract NOT IN (…known values of the other side…) OR contract IS NULL)``.
"""

from __future__ import annotations

import logging
import math
import textwrap
import warnings
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from sklearn.base import BaseEstimator
from sklearn.tree import DecisionTreeRegressor
from sklearn.utils.validation import check_is_fitted

from crmscore.config import SegmentSettings
from crmscore.errors import DataError
from crmscore.features import describe, training_profile

__all__ = [
    "SegmentTree",
    "plot_segment_tree",
    "segment_tree_from_settings",
    "target_values",
    "JSON_FORMAT",
]

log = logging.getLogger("crmscore.segments")

JSON_FORMAT = "crmscore.segments"
JSON_VERSION = 1
TARGET_KINDS = ("clv", "churn", "tier")

_NUMERIC = "numeric"
_CATEGORICAL = "categorical"
_LEAF = -1
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_MISSING_NOTE = (
    "A condition holds for a customer whose feature is missing exactly when its 'missing' field is true. "
    "Numeric bounds: '<' and '>=' compare with 'value'; 'between' holds for values[0] <= x < values[1]. "
    "Categorical: 'in' / 'not in' test the known values; a category never seen in training is not 'in' "
    "any list, so it goes where missing values go."
)


# --- targets and settings ------------------------------------------------------------------------


def target_values(
    kind: str,
    clv: Any = None,
    churn_probability: Any = None,
    points: Any = None,
) -> pd.Series:
    """The values the segment tree explains, chosen by ``segments.target`` in ``params.yaml``.

    ``kind`` is ``clv`` (customer lifetime value), ``churn`` (churn probability) or ``tier``
    (scorecard points, 0-100). Returns that input as a float Series named ``kind`` (an array becomes a
    Series with a RangeIndex). Raises :class:`ValueError` for another ``kind`` and
    :class:`~crmscore.errors.DataError` when the chosen input was not given or holds missing values.
    """
    sources = {"clv": clv, "churn": churn_probability, "tier": points}
    if kind not in sources:
        raise ValueError(f"segments.target: expected one of {', '.join(TARGET_KINDS)}, got {kind!r}")
    values = sources[kind]
    one, what = {
        "clv": ("customer lifetime value", "customer lifetime values"),
        "churn": ("churn probability", "churn probabilities"),
        "tier": ("scorecard points", "scorecard points"),
    }[kind]
    if values is None:
        raise DataError(f"segments.target is {kind!r} but no {what} were given")
    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values))
    try:
        series = series.astype(float)
    except (TypeError, ValueError):
        raise DataError(f"segments.target {kind!r}: {what} must be numbers") from None
    if series.isna().any():
        raise DataError(f"segments.target {kind!r}: {int(series.isna().sum())} customer(s) have no {one}")
    return series.rename(kind)


def segment_tree_from_settings(settings: SegmentSettings) -> SegmentTree:
    """An unfitted :class:`SegmentTree` configured by the ``segments`` section of ``params.yaml``."""
    return SegmentTree(
        features=list(settings.features),
        max_depth=settings.max_depth,
        min_leaf_share=settings.min_leaf_share,
        seed=settings.seed,
        target_name=settings.target,
    )


# --- thresholds and numbers ----------------------------------------------------------------------


def _round_threshold(lo: float, hi: float) -> float:
    """The roundest number ``v`` with ``lo < v <= hi`` (fewest significant digits, nearest the midpoint).

    ``x < v`` then separates every value up to ``lo`` from every value from ``hi`` on, exactly as any
    threshold in the gap does. Falls back to ``hi`` itself, which always qualifies.
    """
    middle = lo / 2 + hi / 2
    span = max(abs(lo), abs(hi))
    top = math.floor(math.log10(span)) + 1 if span > 0 else 0
    for exponent in range(top, -21, -1):
        step = 10.0**exponent
        candidates = []
        for n in range(math.floor(lo / step) - 1, math.ceil(hi / step) + 2):
            value = float(f"{n}e{exponent}")  # the decimal n·10^e, parsed once: no accumulated error
            if lo < value <= hi:
                candidates.append(value)
        if candidates:
            return min(candidates, key=lambda v: (abs(v - middle), v))
    return hi


def _number_text(value: float) -> str:
    """Exact text of a threshold: integers without ``.0``, other numbers as Python's shortest repr."""
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _display_number(value: float) -> str:
    """A threshold rounded for reading (names only; rules keep the exact value)."""
    value = float(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _plain(value: Any) -> Any:
    """A JSON-ready Python scalar (numpy scalars unwrapped)."""
    return value.item() if isinstance(value, np.generic) else value


# --- conditions: one representation for rule text, SQL, JSON, pandas and names --------------------
#
# A condition is a dict: {"feature", "kind", "operator", "value" | "values", "missing"}. It holds for a
# customer with a known value when the operator says so, and for a customer with a missing value
# exactly when "missing" is true. Numeric operators: "<", ">=", "between" (values[0] <= x < values[1]),
# "is null", "is not null"; categorical: "in", "not in".


def _merge_numeric(feature: str, parts: list[dict[str, Any]]) -> dict[str, Any] | None:
    lo, hi = -math.inf, math.inf
    known_allowed = True
    missing = all(p["missing"] for p in parts)
    for part in parts:
        op = part["operator"]
        if op == "<":
            hi = min(hi, part["value"])
        elif op == ">=":
            lo = max(lo, part["value"])
        elif op == "between":
            lo, hi = max(lo, part["values"][0]), min(hi, part["values"][1])
        elif op == "is null":
            known_allowed = False
    base = {"feature": feature, "kind": _NUMERIC}
    if not known_allowed or lo >= hi:
        if not missing:
            raise RuntimeError(f"segments: contradictory conditions on {feature}")  # a leaf holds customers
        return {**base, "operator": "is null", "missing": True}
    if lo == -math.inf and hi == math.inf:
        return None if missing else {**base, "operator": "is not null", "missing": False}
    if lo == -math.inf:
        return {**base, "operator": "<", "value": hi, "missing": missing}
    if hi == math.inf:
        return {**base, "operator": ">=", "value": lo, "missing": missing}
    return {**base, "operator": "between", "values": [lo, hi], "missing": missing}


def _merge_categorical(feature: str, parts: list[dict[str, Any]], order: list[Any]) -> dict[str, Any]:
    inside: set[Any] | None = None
    outside: set[Any] = set()
    for part in parts:
        if part["operator"] == "in":
            inside = set(part["values"]) if inside is None else inside & set(part["values"])
        else:
            outside |= set(part["values"])
    missing = all(p["missing"] for p in parts)
    rank = {value: i for i, value in enumerate(order)}

    def ordered(values: set[Any]) -> list[Any]:
        return sorted(values, key=lambda v: (rank.get(v, len(rank)), str(v)))

    base = {"feature": feature, "kind": _CATEGORICAL}
    if inside is not None:
        return {**base, "operator": "in", "values": ordered(inside - outside), "missing": missing}
    return {**base, "operator": "not in", "values": ordered(outside), "missing": missing}


def _merge(conditions: list[dict[str, Any]], categories: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """One condition per feature (in order of first use along the path), equivalent to their conjunction."""
    by_feature: dict[str, list[dict[str, Any]]] = {}
    for condition in conditions:
        by_feature.setdefault(condition["feature"], []).append(condition)
    merged = []
    for feature, parts in by_feature.items():
        if parts[0]["kind"] == _NUMERIC:
            condition = _merge_numeric(feature, parts)
        else:
            condition = _merge_categorical(feature, parts, categories.get(feature, []))
        if condition is not None:
            merged.append(condition)
    return merged


def _sql_literal(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "1" if value else "0"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return _number_text(value)
    return "'" + str(value).replace("'", "''") + "'"


def _sql_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _render(condition: dict[str, Any], sql: bool) -> str:
    """A condition as SQL (quoted identifiers) or as rule text (bare names); both mean the same."""
    name = _sql_identifier(condition["feature"]) if sql else condition["feature"]
    op, missing = condition["operator"], condition["missing"]
    if op == "is null":
        return f"{name} IS NULL"
    if op == "is not null":
        return f"{name} IS NOT NULL" if not missing else "1 = 1"
    if op in ("<", ">="):
        text = f"{name} {op} {_number_text(condition['value'])}"
    elif op == "between":
        lo, hi = condition["values"]
        text = f"({name} >= {_number_text(lo)} AND {name} < {_number_text(hi)})"
    else:
        values = condition["values"]
        if not values:
            text = "1 = 0" if op == "in" else f"{name} IS NOT NULL"
        elif len(values) == 1:
            equal = "=" if op == "in" else ("<>" if sql else "!=")
            text = f"{name} {equal} {_sql_literal(values[0])}"
        else:
            keyword = "IN" if op == "in" else "NOT IN"
            text = f"{name} {keyword} ({', '.join(_sql_literal(v) for v in values)})"
    return f"({text} OR {name} IS NULL)" if missing else text


def _conjunction(conditions: list[dict[str, Any]], sql: bool) -> str:
    if not conditions:
        return "1 = 1" if sql else "all customers"
    return " AND ".join(_render(c, sql) for c in conditions)


def _listed(values: Sequence[Any]) -> str:
    values = [str(v) for v in values]
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " or " + values[-1]


def _phrase(condition: dict[str, Any], categories: Sequence[Any] = ()) -> str:
    """Short reading of a condition for a segment name (numbers rounded for display only).

    A categorical "not in" reads as the shorter of its two sides: "contract other than one-year or
    two-year" or, with the training categories known, "contract month-to-month, other or unknown".
    """
    what = describe(condition["feature"])
    op = condition["operator"]
    if op == "is null":
        return f"{what} unknown"
    if op == "is not null":
        return f"{what} known"
    if op == "<":
        text = f"{what} < {_display_number(condition['value'])}"
    elif op == ">=":
        text = f"{what} ≥ {_display_number(condition['value'])}"
    elif op == "between":
        lo, hi = condition["values"]
        text = f"{what} ≥ {_display_number(lo)} and < {_display_number(hi)}"
    elif op == "in":
        text = f"{what} {_listed(condition['values'])}"
    else:
        excluded = set(condition["values"])
        rest = [c for c in categories if c not in excluded]
        if not condition["missing"]:
            return f"{what} other than {_listed(condition['values'])} (known)"
        if not rest:
            return f"{what} unknown or new"
        if len(rest) <= len(excluded):
            return f"{what} {', '.join(map(str, rest))}, other or unknown"
        return f"{what} other than {_listed(condition['values'])}"
    return text + (" or unknown" if condition["missing"] else "")


def _question(node: dict[str, Any]) -> str:
    """The question a split asks, for the tree diagram ("yes" is the left branch)."""
    feature = node["feature"]
    if node["kind"] == _NUMERIC:
        if node["threshold"] is None:
            return f"{feature} known?"
        question, unknown = f"{feature} < {_number_text(node['threshold'])}?", "missing"
    else:
        values = ", ".join(str(v) for v in node["left_values"])
        question, unknown = textwrap.fill(f"{feature} in {{{values}}}?", width=36), "missing or new"
    return f"{question}\n{unknown} → {'yes' if node['missing_left'] else 'no'}"


def _condition_holds(condition: dict[str, Any], X: pd.DataFrame) -> np.ndarray:
    """Vectorised truth of one JSON condition on ``X`` (pandas, independent of the tree walk)."""
    column = X[condition["feature"]]
    op = condition["operator"]
    if condition["kind"] == _NUMERIC:
        values = _numeric(column, condition["feature"])
        missing = np.isnan(values)
        with np.errstate(invalid="ignore"):
            if op == "<":
                known = values < condition["value"]
            elif op == ">=":
                known = values >= condition["value"]
            elif op == "between":
                known = (values >= condition["values"][0]) & (values < condition["values"][1])
            elif op == "is null":
                known = np.zeros(len(values), dtype=bool)
            elif op == "is not null":
                known = np.ones(len(values), dtype=bool)
            else:
                raise ValueError(f"segments: unknown numeric operator {op!r} for {condition['feature']}")
    else:
        values = column.astype(object)
        missing = values.isna().to_numpy()
        member = values.isin(list(condition["values"])).to_numpy()
        if op == "in":
            known = member
        elif op == "not in":
            known = ~member
        else:
            raise ValueError(f"segments: unknown categorical operator {op!r} for {condition['feature']}")
    return np.where(missing, bool(condition["missing"]), known)


def _numeric(column: pd.Series, feature: str) -> np.ndarray:
    try:
        return pd.to_numeric(column, errors="raise").to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError):
        raise DataError(f"segments: feature {feature!r} must be numeric, as it was in training") from None


# --- the estimator -------------------------------------------------------------------------------


class SegmentTree(BaseEstimator):
    """Shallow decision tree whose leaves are named customer segments with exportable rules.

    Args:
        features: interpretable features the rules may use; ``None`` = every column of ``X``. Listed
            features absent from ``X`` are skipped with a warning.
        max_depth: depth of the tree: at most ``2 ** max_depth`` segments.
        min_leaf_share: each segment holds at least this share of the training customers.
        seed: random state of the tree (breaks ties between equally good splits).
        target_name: what the target is (``clv``, ``churn``, ``tier`` …), used in labels.

    Fitted attributes: ``tree_`` (the scikit-learn :class:`~sklearn.tree.DecisionTreeRegressor`;
    ``None`` after :meth:`from_json`), ``feature_names_in_``, ``n_features_in_``, ``feature_kinds_``
    (``numeric`` / ``categorical``), ``categories_`` (training categories of each categorical
    feature, in their dtype's order), ``feature_profile_`` (categories, numeric ranges and missing shares
    that scoring checks new customers against: :func:`crmscore.features.training_profile`; ``None``
    after :meth:`from_json`), ``skipped_features_``, ``min_samples_leaf_``, ``nodes_`` (the
    tree with the thresholds the rules use; see :meth:`to_json`), ``conditions_`` (segment id → merged
    conditions) and ``leaves_`` (one row per segment: ``segment_id``, ``name``, ``rule``,
    ``sql_condition``, ``customers``, ``share``, ``mean_target``). Training data is never stored.
    """

    def __init__(
        self,
        features: list[str] | None = None,
        max_depth: int = 3,
        min_leaf_share: float = 0.05,
        seed: int = 42,
        target_name: str = "clv",
    ) -> None:
        self.features = features
        self.max_depth = max_depth
        self.min_leaf_share = min_leaf_share
        self.seed = seed
        self.target_name = target_name

    # -- fitting ----------------------------------------------------------------------------------

    def _check_params(self) -> None:
        if isinstance(self.max_depth, bool) or not isinstance(self.max_depth, (int, np.integer)) or self.max_depth < 1:
            raise ValueError(f"segments.max_depth: expected a positive integer, got {self.max_depth!r}")
        share = self.min_leaf_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
            raise ValueError(f"segments.min_leaf_share: expected a number between 0 and 1, got {share!r}")

    def _select_features(self, X: pd.DataFrame) -> list[str]:
        wanted = list(dict.fromkeys(self.features)) if self.features is not None else list(X.columns)
        absent = [f for f in wanted if f not in X.columns]
        if absent:
            warnings.warn(
                f"segments: skipping feature(s) not in the data: {', '.join(absent)}", UserWarning, stacklevel=3
            )
        self.skipped_features_ = absent
        used = [f for f in wanted if f in X.columns]
        if not used:
            shown = ", ".join(map(str, list(X.columns)[:10])) + (" …" if X.shape[1] > 10 else "")
            raise DataError(
                f"segments: none of the segment features ({', '.join(wanted) or 'none listed'}) is in the data; "
                f"its columns are: {shown or 'none'} (check segments.features in params.yaml)"
            )
        return used

    @staticmethod
    def _kind(column: pd.Series, feature: str) -> str:
        dtype = column.dtype
        if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_object_dtype(dtype):
            return _CATEGORICAL
        if pd.api.types.is_string_dtype(dtype):
            return _CATEGORICAL
        if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
            return _NUMERIC
        raise DataError(
            f"segments: feature {feature!r} has type {dtype}, which a rule cannot use (numbers or categories)"
        )

    @staticmethod
    def _target(X: pd.DataFrame, y: Any) -> np.ndarray:
        if isinstance(y, pd.Series) and not y.index.equals(X.index):
            if len(y) != len(X) or not y.index.is_unique or not X.index.isin(y.index).all():
                raise ValueError("segments: the target's index does not match the customers of X")
            y = y.reindex(X.index)
        values = np.asarray(y)
        if values.ndim != 1 or len(values) != len(X):
            raise ValueError(
                f"segments: the target must be one value per customer ({len(X)}), got shape {values.shape}"
            )
        try:
            values = values.astype(float)
        except (TypeError, ValueError):
            raise ValueError("segments: the target must be numeric") from None
        if not np.isfinite(values).all():
            raise ValueError(
                f"segments: the target has {int((~np.isfinite(values)).sum())} missing or infinite value(s)"
            )
        return values

    def fit(self, X: pd.DataFrame, y: Any) -> SegmentTree:
        """Grow the tree on features ``X`` (one row per customer) and target ``y``, then name the leaves.

        Raises :class:`~crmscore.errors.DataError` when no listed feature is in ``X``, a feature is
        neither numeric nor categorical, or a numeric feature holds an infinite value; :class:`ValueError`
        for invalid parameters or a target that is not one finite number per customer.
        """
        self._check_params()
        if not isinstance(X, pd.DataFrame):
            raise TypeError("SegmentTree expects a pandas DataFrame of features (one row per customer)")
        if len(X) == 0:
            raise DataError("segments: no customers to segment")
        used = self._select_features(X)
        target = self._target(X, y)
        n = len(X)

        kinds = {f: self._kind(X[f], f) for f in used}
        categories: dict[str, list[Any]] = {}
        codes: dict[str, dict[Any, int]] = {}
        columns = []
        for feature in used:
            if kinds[feature] == _NUMERIC:
                values = _numeric(X[feature], feature)
                if (np.abs(values[~np.isnan(values)]) > _FLOAT32_MAX).any():
                    raise DataError(f"segments: feature {feature!r} has infinite or huge values; a rule needs numbers")
                columns.append(values)
            else:
                categories[feature], codes[feature] = _category_codes(X[feature], target)
                mapped = X[feature].astype(object).map(codes[feature])
                columns.append(pd.to_numeric(mapped, errors="coerce").to_numpy(dtype=float, na_value=np.nan))
        matrix = np.column_stack(columns)

        min_samples_leaf = max(1, math.ceil(self.min_leaf_share * n))
        tree = DecisionTreeRegressor(
            max_depth=int(self.max_depth), min_samples_leaf=min_samples_leaf, random_state=self.seed
        )
        tree.fit(matrix, target)

        self.tree_ = tree
        self.feature_names_in_ = np.array(used, dtype=object)
        self.n_features_in_ = len(used)
        self.feature_kinds_ = kinds
        self.categories_ = categories
        self.feature_profile_ = training_profile(X[used], categories)
        self.min_samples_leaf_ = min_samples_leaf
        self.nodes_ = _nodes_from_tree(tree, matrix, used, kinds, categories, codes)
        self._describe_leaves()

        # The rules were derived from the tree with rounder thresholds: prove they send every training
        # customer to the leaf the tree does (a mismatch would be a bug here, never a data problem).
        segment_of_node = np.zeros(len(self.nodes_), dtype=np.int64)
        for node in self.nodes_:
            if node["segment_id"] is not None:
                segment_of_node[node["node"]] = node["segment_id"]
        if not np.array_equal(self._walk(X), segment_of_node[tree.apply(matrix)]):
            raise RuntimeError("segments: rule thresholds disagree with the fitted tree on training customers")
        return self

    def _describe_leaves(self) -> None:
        """Number the leaves (highest mean target first) and write their conditions, names and rules."""
        nodes = {node["node"]: node for node in self.nodes_}
        leaves = [node for node in self.nodes_ if node["left"] == _LEAF]
        leaves.sort(key=lambda node: (-node["mean_target"], node["node"]))
        total = sum(node["customers"] for node in leaves)
        parent = {}
        for node in self.nodes_:
            if node["left"] != _LEAF:
                parent[node["left"]] = (node["node"], True)
                parent[node["right"]] = (node["node"], False)
        rows, self.conditions_ = [], {}
        for segment_id, leaf in enumerate(leaves, start=1):
            leaf["segment_id"] = segment_id
            path, at = [], leaf["node"]
            while at in parent:
                above, went_left = parent[at]
                path.append(_split_condition(nodes[above], went_left))
                at = above
            conditions = _merge(path[::-1], self.categories_)
            self.conditions_[segment_id] = conditions
            phrases = ", ".join(_phrase(c, self.categories_.get(c["feature"], ())) for c in conditions)
            phrases = phrases or "all customers"
            rows.append(
                {
                    "segment_id": segment_id,
                    "name": f"Segment {segment_id}: {phrases}",
                    "rule": _conjunction(conditions, sql=False),
                    "sql_condition": _conjunction(conditions, sql=True),
                    "customers": leaf["customers"],
                    "share": leaf["customers"] / total if total else math.nan,
                    "mean_target": leaf["mean_target"],
                }
            )
        self.leaves_ = pd.DataFrame(rows).astype({"segment_id": "int64", "customers": "int64"})

    # -- prediction -------------------------------------------------------------------------------

    def _checked(self, X: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "nodes_")
        if not isinstance(X, pd.DataFrame):
            raise TypeError("SegmentTree expects a pandas DataFrame of features (one row per customer)")
        absent = [f for f in self.feature_names_in_ if f not in X.columns]
        if absent:
            raise DataError(f"segments: the data lacks feature column(s) the segment rules use: {', '.join(absent)}")
        return X

    def _walk(self, X: pd.DataFrame) -> np.ndarray:
        """Segment id of each row by walking the tree (children always have larger node ids)."""
        at = np.zeros(len(X), dtype=np.int64)
        segment = np.zeros(len(X), dtype=np.int64)
        for node in sorted(self.nodes_, key=lambda node: node["node"]):
            here = at == node["node"]
            if not here.any():
                continue
            if node["left"] == _LEAF:
                segment[here] = node["segment_id"]
                continue
            column = X[node["feature"]][here]
            if node["kind"] == _NUMERIC:
                values = _numeric(column, node["feature"])
                missing = np.isnan(values)
                if node["threshold"] is None:  # a split of missing from known values
                    known_left = np.ones(len(values), dtype=bool)
                else:
                    with np.errstate(invalid="ignore"):
                        known_left = values < node["threshold"]
            else:
                values = column.astype(object)
                left = values.isin(node["left_values"]).to_numpy()
                right = values.isin(node["right_values"]).to_numpy()
                missing = ~(left | right)  # missing, or a category never seen in training
                known_left = left
            go_left = np.where(missing, node["missing_left"], known_left)
            at[here] = np.where(go_left, node["left"], node["right"])
        return segment

    def predict(self, X: pd.DataFrame) -> pd.Series:
        """Segment id of every customer in ``X`` (a Series named ``segment_id`` on ``X``'s index).

        Raises :class:`~crmscore.errors.DataError` when ``X`` lacks a feature the rules use. Unseen
        categories go where missing values go (their count is logged at info level; scoring reports them).
        """
        X = self._checked(X)
        for feature, known in self.categories_.items():
            values = X[feature].astype(object)
            unseen = int((values.notna() & ~values.isin(known)).sum())
            if unseen:  # scoring reports them once per feature (crmscore.feature_checks)
                log.info(
                    "segments: %s: %d value(s) never seen in training; they go where missing ones go", feature, unseen
                )
        return pd.Series(self._walk(X), index=X.index, name="segment_id", dtype="int64")

    def apply_rules(self, X: pd.DataFrame) -> pd.Series:
        """Segment id of every customer from the exported JSON conditions, evaluated in pandas.

        Independent of the tree walk in :meth:`predict` and always equal to it; a customer matched by
        no rule or by two would be a bug and raises :class:`RuntimeError`.
        """
        X = self._checked(X)
        segment = np.zeros(len(X), dtype=np.int64)
        matched = np.zeros(len(X), dtype=np.int64)
        for segment_id, conditions in self.conditions_.items():
            holds = np.ones(len(X), dtype=bool)
            for condition in conditions:
                holds &= _condition_holds(condition, X)
            segment[holds] = segment_id
            matched += holds
        if (matched != 1).any():
            raise RuntimeError(f"segments: {int((matched != 1).sum())} customer(s) match no rule or several rules")
        return pd.Series(segment, index=X.index, name="segment_id", dtype="int64")

    # -- export -----------------------------------------------------------------------------------

    def to_sql(self, column_name: str = "segment_id") -> str:
        """The segments as one SQL expression: ``CASE WHEN <rule> THEN 1 … END AS segment_id``.

        Column names are double-quoted, text values single-quoted (quotes doubled), thresholds exact;
        missing values appear as ``IS NULL`` where the tree sends them. The rules are mutually
        exclusive and cover every customer, so no ``ELSE`` is needed.
        """
        check_is_fitted(self, "nodes_")
        lines = ["CASE"]
        for row in self.leaves_.itertuples(index=False):
            lines.append(f"  WHEN {row.sql_condition} THEN {row.segment_id}")
        lines.append(f"END AS {_sql_identifier(column_name)}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The segments as a JSON-ready dict: parameters, features, the tree and each segment's conditions.

        ``segments[i].conditions`` are structured (``feature``, ``kind``, ``operator``, ``value`` or
        ``values``, ``missing``: whether a customer with a missing value satisfies it); ``nodes`` hold
        the tree (a numeric split sends ``x < threshold`` left, ``threshold`` null means known values
        left; a categorical split sends ``left_values`` left, ``right_values`` right, anything else
        where ``missing_left`` says). :meth:`from_json` reads it back.
        """
        check_is_fitted(self, "nodes_")
        return {
            "format": JSON_FORMAT,
            "version": JSON_VERSION,
            "params": self.get_params(),
            "target": self.target_name,
            "missing_values": _MISSING_NOTE,
            "features": [
                {
                    "name": f,
                    "kind": self.feature_kinds_[f],
                    **({"categories": self.categories_[f]} if f in self.categories_ else {}),
                }
                for f in self.feature_names_in_
            ],
            "skipped_features": list(self.skipped_features_),
            "min_samples_leaf": self.min_samples_leaf_,
            "nodes": [dict(node) for node in self.nodes_],
            "segments": [
                {**{k: _plain(v) for k, v in row.items()}, "conditions": self.conditions_[int(row["segment_id"])]}
                for row in self.leaves_.to_dict("records")
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SegmentTree:
        """A fitted :class:`SegmentTree` from :meth:`to_json` output (``tree_`` is ``None``: not exported)."""
        if not isinstance(data, dict) or data.get("format") != JSON_FORMAT:
            raise ValueError(f"segments: not a {JSON_FORMAT} document")
        if data.get("version") != JSON_VERSION:
            raise ValueError(f"segments: unsupported version {data.get('version')!r} (expected {JSON_VERSION})")
        model = cls(**data["params"])
        model.tree_ = None
        model.feature_names_in_ = np.array([f["name"] for f in data["features"]], dtype=object)
        model.n_features_in_ = len(model.feature_names_in_)
        model.feature_kinds_ = {f["name"]: f["kind"] for f in data["features"]}
        model.categories_ = {f["name"]: list(f["categories"]) for f in data["features"] if "categories" in f}
        model.feature_profile_ = None  # not exported: scoring skips the feature checks of this model
        model.skipped_features_ = list(data.get("skipped_features", []))
        model.min_samples_leaf_ = data.get("min_samples_leaf")
        model.nodes_ = [dict(node) for node in data["nodes"]]
        segments = data["segments"]
        model.conditions_ = {int(s["segment_id"]): [dict(c) for c in s["conditions"]] for s in segments}
        columns = ["segment_id", "name", "rule", "sql_condition", "customers", "share", "mean_target"]
        model.leaves_ = pd.DataFrame([{c: s[c] for c in columns} for s in segments], columns=columns).astype(
            {"segment_id": "int64", "customers": "int64", "share": float, "mean_target": float}
        )
        return model

    # -- profile ----------------------------------------------------------------------------------

    def profile(
        self,
        X: pd.DataFrame | None,
        segments: pd.Series | None,
        clv: Any,
        churn: Any = None,
    ) -> pd.DataFrame:
        """Profile of each segment: customers, share of customers, share of value, mean CLV, churn rate.

        Args:
            X: features, used to assign segments when ``segments`` is None.
            segments: segment id per customer (from :meth:`predict`), or None.
            clv: customer lifetime value per customer (Series aligned by index, or positional array); None
                without a CLV model (``share_value`` and ``mean_clv`` are then NaN).
            churn: churn probability or 0/1 churn flag per customer; ``churn_rate`` is its mean.

        Returns:
            One row per segment (all segments, empty ones with zero customers): ``segment_id``,
            ``name``, ``rule``, ``customers``, ``share_customers``, ``share_value``, ``mean_clv``,
            ``churn_rate`` (NaN without ``churn``). Shares of customers add up to 1.
        """
        check_is_fitted(self, "nodes_")
        if segments is None:
            if X is None:
                raise ValueError("segments.profile: pass X or segments")
            segments = self.predict(X)
        segments = pd.Series(segments) if not isinstance(segments, pd.Series) else segments
        unknown = set(pd.unique(segments)) - set(self.leaves_["segment_id"])
        if unknown:
            raise ValueError(f"segments.profile: unknown segment id(s) {sorted(unknown)[:5]}")
        value = _aligned(clv, segments, "clv") if clv is not None else np.full(len(segments), np.nan)
        frame = pd.DataFrame({"segment_id": segments.to_numpy(), "clv": value})
        frame["churn"] = _aligned(churn, segments, "churn") if churn is not None else np.nan
        grouped = frame.groupby("segment_id")
        stats = pd.DataFrame(
            {
                "customers": grouped.size(),
                "value": grouped["clv"].sum(),
                "mean_clv": grouped["clv"].mean(),
                "churn_rate": grouped["churn"].mean(),
            }
        )
        out = self.leaves_[["segment_id", "name", "rule"]].merge(
            stats, left_on="segment_id", right_index=True, how="left"
        )
        out["customers"] = out["customers"].fillna(0).astype("int64")
        n, total = len(frame), frame["clv"].sum()
        out["share_customers"] = out["customers"] / n if n else math.nan
        has_value = clv is not None
        out["share_value"] = out["value"].fillna(0.0) / total if total and has_value else math.nan
        if not has_value:
            out["mean_clv"] = math.nan
        columns = [
            "segment_id",
            "name",
            "rule",
            "customers",
            "share_customers",
            "share_value",
            "mean_clv",
            "churn_rate",
        ]
        return out[columns].reset_index(drop=True)


def _aligned(values: Any, segments: pd.Series, what: str) -> np.ndarray:
    """``values`` as floats in the order of ``segments`` (by index for a Series, else by position)."""
    if isinstance(values, pd.Series) and not values.index.equals(segments.index):
        if not segments.index.isin(values.index).all():
            raise ValueError(f"segments.profile: {what} lacks some customers of the segments")
        values = values.reindex(segments.index)
    array = np.asarray(values, dtype=float)
    if array.shape != (len(segments),):
        raise ValueError(f"segments.profile: {what} must have one value per customer ({len(segments)})")
    if np.isnan(array).any():
        raise ValueError(f"segments.profile: {what} has {int(np.isnan(array).sum())} missing value(s)")
    return array


# --- building the node list from the fitted tree -----------------------------------------------


def _category_codes(column: pd.Series, target: np.ndarray) -> tuple[list[Any], dict[Any, int]]:
    """Training categories (in the dtype's order) and codes ranking them by mean target."""
    values = column.astype(object)
    seen = values.notna().to_numpy()
    if isinstance(column.dtype, pd.CategoricalDtype):
        present = set(values[seen])
        order = [_plain(c) for c in column.cat.categories if c in present]
    else:
        order = sorted({_plain(v) for v in values[seen]}, key=str)
    means = pd.Series(target[seen]).groupby(values[seen].map(_plain).to_numpy()).mean()
    position = {c: i for i, c in enumerate(order)}
    ranked = sorted(order, key=lambda c: (means[c], position[c]))
    return order, {c: code for code, c in enumerate(ranked)}


def _nodes_from_tree(
    tree: DecisionTreeRegressor,
    matrix: np.ndarray,
    features: list[str],
    kinds: dict[str, str],
    categories: dict[str, list[Any]],
    codes: dict[str, dict[Any, int]],
) -> list[dict[str, Any]]:
    """The fitted tree as plain dicts, numeric thresholds moved to round numbers in the training gap."""
    inner = tree.tree_
    reaches = tree.decision_path(matrix).tocsc()
    depth = np.zeros(inner.node_count, dtype=int)
    nodes = []
    for i in range(inner.node_count):
        left, right = int(inner.children_left[i]), int(inner.children_right[i])
        node: dict[str, Any] = {
            "node": i,
            "depth": int(depth[i]),
            "left": left if left != -1 else _LEAF,
            "right": right if right != -1 else _LEAF,
            "customers": int(inner.n_node_samples[i]),
            "mean_target": float(inner.value[i].ravel()[0]),
            "feature": None,
            "kind": None,
            "missing_left": None,
            "segment_id": None,
        }
        if left != -1:
            depth[left] = depth[right] = depth[i] + 1
            feature = features[int(inner.feature[i])]
            node.update(feature=feature, kind=kinds[feature], missing_left=bool(inner.missing_go_to_left[i]))
            threshold = float(inner.threshold[i])
            if kinds[feature] == _NUMERIC:
                column = matrix[:, int(inner.feature[i])]
                node["threshold"] = _rule_threshold(column, reaches, left, right, threshold)
            else:
                node["left_values"] = [c for c in categories[feature] if codes[feature][c] <= threshold]
                node["right_values"] = [c for c in categories[feature] if codes[feature][c] > threshold]
        nodes.append(node)
    return nodes


def _rule_threshold(column: np.ndarray, reaches: Any, left: int, right: int, threshold: float) -> float | None:
    """The round boundary between the training values the tree sent left and right (None: missing-only split)."""
    if math.isinf(threshold):
        return None  # scikit-learn's split of known values (left) from missing ones (right)

    def values_at(node: int) -> np.ndarray:
        rows = reaches.indices[reaches.indptr[node] : reaches.indptr[node + 1]]
        values = column[rows]
        return values[~np.isnan(values)]

    left_values, right_values = values_at(left), values_at(right)
    lo = (
        float(left_values.max())
        if left_values.size
        else min(threshold, float(np.nextafter(right_values.min(), -np.inf)))
    )
    hi = float(right_values.min()) if right_values.size else max(threshold, float(np.nextafter(lo, np.inf)))
    return _round_threshold(lo, hi)


def _split_condition(node: dict[str, Any], went_left: bool) -> dict[str, Any]:
    """The condition a customer meets by taking one branch of a split."""
    feature, kind = node["feature"], node["kind"]
    missing = node["missing_left"] == went_left
    base = {"feature": feature, "kind": kind, "missing": missing}
    if kind == _NUMERIC:
        if node["threshold"] is None:
            return {**base, "operator": "is not null" if went_left else "is null"}
        return {**base, "operator": "<" if went_left else ">=", "value": node["threshold"]}
    own, other = (
        (node["left_values"], node["right_values"]) if went_left else (node["right_values"], node["left_values"])
    )
    if missing:  # the side with missing values also takes unseen categories: everything but the other side
        return {**base, "operator": "not in", "values": list(other)}
    return {**base, "operator": "in", "values": list(own)}


# --- plot ----------------------------------------------------------------------------------------


def plot_segment_tree(model: SegmentTree, ax: Axes | None = None, colormap: str = "viridis") -> Axes:
    """The segment tree as a diagram: each split shows its question ("yes" branch to the left, missing
    values included where they go), each leaf its segment id, customers (share) and mean target,
    coloured by mean target.

    Draws on ``ax`` (a new figure sized to the tree when None) and returns the Axes; nothing is shown
    or saved. Works on a model read back by :meth:`SegmentTree.from_json` too.
    """
    check_is_fitted(model, "nodes_")
    nodes = {node["node"]: node for node in model.nodes_}
    leaves_in_order: list[int] = []

    def collect(i: int) -> None:
        if nodes[i]["left"] == _LEAF:
            leaves_in_order.append(i)
        else:
            collect(nodes[i]["left"])
            collect(nodes[i]["right"])

    collect(0)
    depth = max(node["depth"] for node in model.nodes_)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, 2.6 * len(leaves_in_order)), 1.2 + 1.9 * (depth + 1)))
    x: dict[int, float] = {leaf: float(k) for k, leaf in enumerate(leaves_in_order)}

    def place(i: int) -> float:
        if i not in x:
            x[i] = (place(nodes[i]["left"]) + place(nodes[i]["right"])) / 2
        return x[i]

    place(0)
    total = nodes[0]["customers"] or 1
    means = [nodes[i]["mean_target"] for i in leaves_in_order]
    norm = Normalize(min(means), max(means) if max(means) > min(means) else min(means) + 1)
    cmap = colormaps[colormap]
    target = model.target_name
    for i, node in nodes.items():
        y = -node["depth"]
        if node["left"] != _LEAF:
            for child, answer in ((node["left"], "yes"), (node["right"], "no")):
                ax.plot([x[i], x[child]], [y, y + -1], color="0.5", linewidth=1.0, zorder=1)
                ax.text(
                    (x[i] + x[child]) / 2,
                    y - 0.5,
                    answer,
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="0.3",
                    bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none"},
                )
            text = f"{_question(node)}\nn = {node['customers']:,}, mean {target} {_display_number(node['mean_target'])}"
            ax.text(
                x[i],
                y,
                text,
                ha="center",
                va="center",
                fontsize=8,
                zorder=2,
                bbox={"boxstyle": "round,pad=0.4", "facecolor": "0.95", "edgecolor": "0.6"},
            )
        else:
            colour = cmap(norm(node["mean_target"]))
            dark = sum(colour[:3]) / 3 < 0.5
            text = (
                f"Segment {node['segment_id']}\n{node['customers']:,} ({node['customers'] / total:.0%})\n"
                f"mean {target} {_display_number(node['mean_target'])}"
            )
            ax.text(
                x[i],
                y,
                text,
                ha="center",
                va="center",
                fontsize=8,
                zorder=2,
                color="white" if dark else "black",
                bbox={"boxstyle": "round,pad=0.4", "facecolor": colour, "edgecolor": "0.3"},
            )
    ax.set_xlim(-0.7, len(leaves_in_order) - 0.3)
    ax.set_ylim(-depth - 0.6, 0.6)
    ax.set_axis_off()
    ax.set_title(f"Segments by {target}: {len(leaves_in_order)} leaves, depth {depth}")
    return ax
