"""Tests for crmscore.segments: the tree finds known rules, and predict, JSON rules and SQL agree row by row."""

from __future__ import annotations

import json
import math
import sqlite3

import matplotlib

matplotlib.use("Agg")  # tests never open a window, whatever the machine's default backend

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402

from crmscore.config import SegmentSettings  # noqa: E402
from crmscore.errors import DataError  # noqa: E402
from crmscore.features import build_features  # noqa: E402
from crmscore.segments import (  # noqa: E402
    SegmentTree,
    _round_threshold,
    plot_segment_tree,
    segment_tree_from_settings,
    target_values,
)

CONTRACTS = ["month-to-month", "one year", "two year"]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def known_rule_frame(n: int = 2_000, seed: int = 1) -> tuple[pd.DataFrame, np.ndarray]:
    """Target 100 exactly when tenure < 12 and month-to-month, else 10; plus a noise column."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "tenure_months": rng.integers(0, 48, n).astype(float),
            "contract": pd.Categorical(rng.choice(CONTRACTS, n, p=[0.3, 0.4, 0.3]), categories=CONTRACTS),
            "noise": rng.normal(size=n),
        },
        index=pd.Index(np.arange(1000, 1000 + n), name="customer_id"),
    )
    y = np.where((X["tenure_months"] < 12) & (X["contract"] == "month-to-month"), 100.0, 10.0)
    return X, y


def messy_frame(n: int = 3_000, seed: int = 3) -> tuple[pd.DataFrame, np.ndarray]:
    """Missing numbers and categories, continuous values, a quote in a category and in a column name."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "recency_days": rng.integers(0, 400, n).astype(float),
            "spend": rng.gamma(2.0, 120.0, n).round(2),
            "collection_rate": rng.beta(5, 1, n),
            "contract": pd.Categorical(rng.choice(CONTRACTS, n), categories=CONTRACTS),
            "region's name": rng.choice(["north", "south", "king's lynn", "east"], n),
        }
    )
    X.loc[rng.random(n) < 0.15, "recency_days"] = np.nan
    X.loc[rng.random(n) < 0.10, "collection_rate"] = np.nan
    X.loc[rng.random(n) < 0.10, "contract"] = np.nan
    X.loc[rng.random(n) < 0.05, "region's name"] = None
    recency = X["recency_days"].fillna(20)
    y = (
        200 * (recency < 60)
        + X["spend"].to_numpy()
        + 80 * (X["contract"] == "two year").to_numpy()
        + 60 * (X["region's name"] == "king's lynn").to_numpy()
        - 150 * X["collection_rate"].fillna(0.5).to_numpy()
        + rng.normal(0, 20, n)
    )
    return X, np.asarray(y, dtype=float)


def unseen_rows(X: pd.DataFrame) -> pd.DataFrame:
    """New customers: unseen categories, every feature missing in turn, extremes and in-between values."""
    rows = X.head(40).copy()
    rows["contract"] = rows["contract"].astype(object)
    rows.iloc[0:5, rows.columns.get_loc("contract")] = "three year"
    rows.iloc[5:10, rows.columns.get_loc("region's name")] = "atlantis"
    for k, column in enumerate(X.columns):
        rows.iloc[10 + k, rows.columns.get_loc(column)] = np.nan if X[column].dtype.kind == "f" else None
    rows.iloc[20, rows.columns.get_loc("spend")] = 1e9
    rows.iloc[21, rows.columns.get_loc("spend")] = -5.0
    rows.iloc[22:40, rows.columns.get_loc("recency_days")] = np.linspace(0.25, 399.75, 18)
    return rows


def sql_segments(model: SegmentTree, X: pd.DataFrame) -> np.ndarray:
    """Segment ids from the model's SQL CASE expression, evaluated by SQLite on ``X``."""
    frame = X.reset_index(drop=True)
    frame.insert(0, "row_number", np.arange(len(frame)))
    with sqlite3.connect(":memory:") as connection:
        frame.to_sql("customers", connection, index=False)
        result = pd.read_sql(f"SELECT row_number, {model.to_sql()} FROM customers ORDER BY row_number", connection)
    assert result["segment_id"].notna().all(), "every row must match one WHEN"
    return result["segment_id"].to_numpy(dtype=np.int64)


def tree_segments(model: SegmentTree, X: pd.DataFrame) -> np.ndarray:
    """Segment ids from scikit-learn's own tree walk (numeric features only: no coding to redo)."""
    assert all(kind == "numeric" for kind in model.feature_kinds_.values())
    matrix = X[list(model.feature_names_in_)].to_numpy(dtype=float)
    leaf_to_segment = {node["node"]: node["segment_id"] for node in model.nodes_ if node["segment_id"] is not None}
    return np.array([leaf_to_segment[i] for i in model.tree_.apply(matrix)])


# --- the tree finds what is there --------------------------------------------------------------


def test_finds_the_known_rule():
    X, y = known_rule_frame()
    model = SegmentTree(max_depth=3, min_leaf_share=0.02).fit(X, y)
    top = model.leaves_.iloc[0]
    assert top["segment_id"] == 1
    assert top["mean_target"] == pytest.approx(100.0)
    assert set(top["rule"].split(" AND ")) == {"tenure_months < 12", "contract = 'month-to-month'"}
    assert set(top["sql_condition"].split(" AND ")) == {'"tenure_months" < 12', "\"contract\" = 'month-to-month'"}
    assert top["customers"] == int(((X["tenure_months"] < 12) & (X["contract"] == "month-to-month")).sum())
    # Pure leaves are not split further: the rule needs exactly three segments.
    assert len(model.leaves_) == 3
    assert "noise" not in " ".join(model.leaves_["rule"])


def test_leaf_count_and_minimum_share():
    X, y = messy_frame()
    for max_depth, share in [(2, 0.05), (3, 0.05), (3, 0.12), (4, 0.02)]:
        model = SegmentTree(max_depth=max_depth, min_leaf_share=share).fit(X, y)
        leaves = model.leaves_
        assert 2 <= len(leaves) <= 2**max_depth
        assert (leaves["customers"] >= share * len(X)).all()
        assert leaves["customers"].sum() == len(X)
        assert leaves["share"].sum() == pytest.approx(1.0)
        assert max(node["depth"] for node in model.nodes_) <= max_depth
        assert model.min_samples_leaf_ == math.ceil(share * len(X))
        counts = model.predict(X).value_counts()
        assert counts.sort_index().tolist() == leaves.sort_values("segment_id")["customers"].tolist()


def test_segment_one_has_the_highest_mean_target():
    X, y = messy_frame()
    model = SegmentTree(max_depth=3).fit(X, y)
    means = model.leaves_["mean_target"].to_numpy()
    assert (np.diff(means) <= 0).all()
    assert model.leaves_["segment_id"].tolist() == list(range(1, len(means) + 1))
    actual = pd.Series(y).groupby(model.predict(X).to_numpy()).mean()
    np.testing.assert_allclose(actual.sort_index().to_numpy(), means)


# --- predict, JSON rules, SQL and scikit-learn agree ---------------------------------------------


def test_predict_apply_rules_and_sql_agree_on_training_and_new_rows():
    X, y = messy_frame()
    model = SegmentTree(max_depth=4, min_leaf_share=0.02).fit(X, y)
    for frame in (X, unseen_rows(X)):
        predicted = model.predict(frame)
        assert predicted.index.equals(frame.index)
        assert predicted.dtype == np.int64
        np.testing.assert_array_equal(model.apply_rules(frame).to_numpy(), predicted.to_numpy())
        np.testing.assert_array_equal(sql_segments(model, frame), predicted.to_numpy())
    # Rows with missing values exist in both directions of some split, so the check covers NaN routing.
    assert X.isna().any(axis=1).sum() > 500


def test_rules_reproduce_scikit_learn_on_training_customers():
    X, y = messy_frame()
    numeric = X[["recency_days", "spend", "collection_rate"]]
    model = SegmentTree(max_depth=4, min_leaf_share=0.02).fit(numeric, y)
    # scikit-learn splits at float32 midpoints; the rules use round numbers in the same gaps.
    np.testing.assert_array_equal(model.predict(numeric).to_numpy(), tree_segments(model, numeric))
    sklearn_thresholds = model.tree_.tree_.threshold[model.tree_.tree_.children_left != -1]
    rule_thresholds = [node["threshold"] for node in model.nodes_ if node["left"] != -1]
    assert any(not math.isclose(a, b) for a, b in zip(sklearn_thresholds, rule_thresholds, strict=True) if b)


def test_missing_values_go_where_the_tree_learned_and_the_rule_says_so():
    rng = np.random.default_rng(5)
    n = 1_000
    recency = rng.integers(0, 365, n).astype(float)
    recency[rng.random(n) < 0.2] = np.nan
    X = pd.DataFrame({"recency_days": recency})
    y = np.where(np.isnan(recency) | (recency < 30), 100.0, 10.0)  # missing behaves like recent
    model = SegmentTree(max_depth=1, min_leaf_share=0.01).fit(X, y)
    assert model.leaves_["rule"].tolist() == ["(recency_days < 30 OR recency_days IS NULL)", "recency_days >= 30"]
    assert model.predict(pd.DataFrame({"recency_days": [np.nan, 29.5, 30.0]})).tolist() == [1, 1, 2]


def test_missing_values_unseen_in_training_go_to_the_larger_side():
    rng = np.random.default_rng(6)
    recency = rng.integers(0, 365, 1_000).astype(float)
    X = pd.DataFrame({"recency_days": recency})
    y = np.where(recency < 60, 100.0, 10.0)  # the right side (>= 60) holds most customers
    model = SegmentTree(max_depth=1).fit(X, y)
    assert model.leaves_["rule"].tolist() == ["recency_days < 60", "(recency_days >= 60 OR recency_days IS NULL)"]
    assert model.predict(pd.DataFrame({"recency_days": [np.nan]})).tolist() == [2]


def test_split_of_missing_from_known_values():
    rng = np.random.default_rng(8)
    recency = rng.integers(0, 365, 1_000).astype(float)
    recency[rng.random(1_000) < 0.3] = np.nan
    X = pd.DataFrame({"recency_days": recency})
    model = SegmentTree(max_depth=2).fit(X, np.where(np.isnan(recency), 50.0, 10.0))
    assert model.leaves_["rule"].tolist() == ["recency_days IS NULL", "recency_days IS NOT NULL"]
    assert model.leaves_["name"].tolist() == [
        "Segment 1: days since the last purchase unknown",
        "Segment 2: days since the last purchase known",
    ]
    new = pd.DataFrame({"recency_days": [np.nan, 0.0, 1e9]})
    assert (
        model.predict(new).tolist() == model.apply_rules(new).tolist() == sql_segments(model, new).tolist() == [1, 2, 2]
    )


def test_integer_categories_and_boolean_features():
    rng = np.random.default_rng(9)
    n = 1_200
    X = pd.DataFrame({"plan": pd.Categorical(rng.choice([1, 2, 3], n)), "paperless": rng.random(n) < 0.5})
    y = 100.0 * (X["plan"] == 3).to_numpy() + 10.0 * X["paperless"].to_numpy()
    model = SegmentTree(max_depth=2, min_leaf_share=0.01).fit(X, y)
    assert model.feature_kinds_ == {"plan": "categorical", "paperless": "numeric"}
    top = model.leaves_["rule"].iloc[0]
    assert "plan = 3" in top and "paperless >= 1" in top  # integer categories unquoted, booleans as 0 / 1
    document = json.loads(json.dumps(model.to_json()))
    assert SegmentTree.from_json(document).predict(X).equals(model.predict(X))
    np.testing.assert_array_equal(sql_segments(model, X), model.predict(X).to_numpy())
    np.testing.assert_array_equal(model.apply_rules(X).to_numpy(), model.predict(X).to_numpy())


def test_unseen_categories_go_where_missing_ones_go():
    X, y = messy_frame()
    model = SegmentTree(features=["contract"], max_depth=2, min_leaf_share=0.02).fit(X, y)
    new = pd.DataFrame({"contract": [None, "three year", "two year"]})
    segments = model.predict(new).tolist()
    assert segments[0] == segments[1]
    assert segments == model.apply_rules(new).tolist() == sql_segments(model, new).tolist()
    missing_side = model.leaves_.loc[model.leaves_["segment_id"] == segments[0], "rule"].item()
    assert "contract IS NULL" in missing_side
    assert "contract != " in missing_side or "contract NOT IN " in missing_side


def test_sql_quotes_text_and_names():
    X, y = messy_frame()
    model = SegmentTree(features=["region's name"], max_depth=2, min_leaf_share=0.02).fit(X, y)
    sql = model.to_sql()
    assert "'king''s lynn'" in sql
    assert '"region\'s name"' in sql
    assert sql.startswith("CASE\n  WHEN ") and sql.endswith('END AS "segment_id"')
    assert model.to_sql("segment").endswith('END AS "segment"')
    np.testing.assert_array_equal(sql_segments(model, X), model.predict(X).to_numpy())


def test_round_thresholds_stay_inside_the_gap():
    assert _round_threshold(364.0, 365.0) == 365
    assert _round_threshold(3.0, 17.0) == 10
    assert _round_threshold(0.8123, 0.9541) == pytest.approx(0.9)
    assert _round_threshold(-0.5, 0.2) == 0
    assert _round_threshold(100.0, 5000.0) == 3000  # of 1000 … 5000, the one nearest the midpoint 2550
    tight = float(np.nextafter(0.1, 1.0))
    assert _round_threshold(0.1, tight) == tight
    rng = np.random.default_rng(0)
    for _ in range(2_000):
        lo, hi = sorted(rng.normal(0, 10.0 ** rng.integers(-4, 7), 2))
        if lo < hi:
            assert lo < _round_threshold(lo, hi) <= hi


# --- names, JSON, profile, plot --------------------------------------------------------------------


def test_names_are_unique_readable_and_use_feature_descriptions():
    X, y = messy_frame()
    X = X.rename(columns={"spend": "monetary_365d"})
    model = SegmentTree(max_depth=3).fit(X, y)
    names = model.leaves_["name"]
    assert names.is_unique
    for segment_id, name in zip(model.leaves_["segment_id"], names, strict=True):
        assert name.startswith(f"Segment {segment_id}: ")
    assert "spend in the last 365 days" in " ".join(names)
    assert "monetary_365d" not in " ".join(names)
    assert model.leaves_["rule"].str.contains("monetary_365d").any()


def test_json_round_trip():
    X, y = messy_frame()
    model = SegmentTree(max_depth=3, target_name="churn").fit(X, y)
    document = json.loads(json.dumps(model.to_json()))  # plain JSON types only
    restored = SegmentTree.from_json(document)
    assert restored.tree_ is None
    assert restored.get_params() == model.get_params()
    assert restored.to_json() == document
    assert restored.to_sql() == model.to_sql()
    pd.testing.assert_frame_equal(restored.leaves_, model.leaves_)
    new = unseen_rows(X)
    pd.testing.assert_series_equal(restored.predict(new), model.predict(new))
    pd.testing.assert_series_equal(restored.apply_rules(new), model.predict(new))
    condition = document["segments"][0]["conditions"][0]
    assert set(condition) >= {"feature", "kind", "operator", "missing"}
    with pytest.raises(ValueError, match="not a crmscore.segments document"):
        SegmentTree.from_json({"format": "other"})
    with pytest.raises(ValueError, match="unsupported version"):
        SegmentTree.from_json({**document, "version": 99})


def test_profile_adds_up():
    X, y = messy_frame()
    model = SegmentTree(max_depth=3).fit(X, y)
    rng = np.random.default_rng(2)
    clv = pd.Series(rng.gamma(2.0, 100.0, len(X)), index=X.index)
    churned = pd.Series(rng.integers(0, 2, len(X)), index=X.index)
    table = model.profile(X, None, clv, churned)
    assert list(table.columns) == [
        "segment_id",
        "name",
        "rule",
        "customers",
        "share_customers",
        "share_value",
        "mean_clv",
        "churn_rate",
    ]
    assert table["customers"].sum() == len(X)
    assert table["share_customers"].sum() == pytest.approx(1.0)
    assert table["share_value"].sum() == pytest.approx(1.0)
    segments = model.predict(X)
    expected = clv.groupby(segments).mean()
    np.testing.assert_allclose(table.set_index("segment_id")["mean_clv"], expected.sort_index())
    np.testing.assert_allclose(table.set_index("segment_id")["churn_rate"], churned.groupby(segments).mean())
    # Shuffled Series align by customer; a subset leaves some segments empty but listed.
    subset = segments[segments != 1]
    partial = model.profile(None, subset, clv.sample(frac=1.0, random_state=0))
    assert partial.loc[partial["segment_id"] == 1, "customers"].item() == 0
    assert partial["share_customers"].sum() == pytest.approx(1.0)
    assert partial["churn_rate"].isna().all()


def test_profile_errors():
    X, y = messy_frame()
    model = SegmentTree(max_depth=2).fit(X, y)
    with pytest.raises(ValueError, match="pass X or segments"):
        model.profile(None, None, y)
    with pytest.raises(ValueError, match="one value per customer"):
        model.profile(X, None, y[:10])
    with pytest.raises(ValueError, match="unknown segment id"):
        model.profile(None, pd.Series([99] * len(X)), y)


def test_plot_segment_tree():
    X, y = messy_frame()
    model = SegmentTree(max_depth=2).fit(X, y)
    ax = plot_segment_tree(model)
    assert isinstance(ax, Axes)
    texts = [t.get_text() for t in ax.texts]
    assert sum(t.startswith("Segment ") for t in texts) == len(model.leaves_)
    assert sum("?" in t for t in texts) == len(model.nodes_) - len(model.leaves_)
    _, given = plt.subplots()
    assert plot_segment_tree(SegmentTree.from_json(model.to_json()), ax=given) is given


# --- conventions, settings and errors -------------------------------------------------------------


def test_deterministic_and_cloneable():
    X, y = messy_frame()
    first = SegmentTree(max_depth=3, seed=7).fit(X, y)
    second = clone(first).fit(X, y)
    assert first.to_json() == second.to_json()
    assert clone(first).get_params() == {
        "features": None,
        "max_depth": 3,
        "min_leaf_share": 0.05,
        "seed": 7,
        "target_name": "clv",
    }


def test_absent_features_are_skipped_with_a_warning():
    X, y = known_rule_frame()
    with pytest.warns(UserWarning, match="not_a_column"):
        model = SegmentTree(features=["tenure_months", "not_a_column", "contract"]).fit(X, y)
    assert model.skipped_features_ == ["not_a_column"]
    assert list(model.feature_names_in_) == ["tenure_months", "contract"]
    with pytest.raises(DataError, match="none of the segment features .*nothing, missing"):
        with pytest.warns(UserWarning):
            SegmentTree(features=["nothing", "missing"]).fit(X, y)


def test_error_messages():
    X, y = known_rule_frame()
    with pytest.raises(NotFittedError):
        SegmentTree().predict(X)
    model = SegmentTree().fit(X, y)
    with pytest.raises(DataError, match="lacks feature column.*contract"):
        model.predict(X.drop(columns="contract"))
    with pytest.raises(DataError, match="'tenure_months' must be numeric"):
        model.predict(X.assign(tenure_months="long"))
    with pytest.raises(TypeError, match="pandas DataFrame"):
        SegmentTree().fit(X.to_numpy(), y)
    with pytest.raises(ValueError, match="1 missing or infinite"):
        SegmentTree().fit(X, np.r_[y[:-1], np.nan])
    with pytest.raises(ValueError, match="one value per customer"):
        SegmentTree().fit(X, y[:-1])
    with pytest.raises(DataError, match="'noise' has infinite"):
        SegmentTree().fit(X.assign(noise=np.inf), y)
    with pytest.raises(DataError, match="'signup' has type datetime64"):
        SegmentTree().fit(X.assign(signup=pd.Timestamp("2026-01-01")), y)
    with pytest.raises(ValueError, match="min_leaf_share"):
        SegmentTree(min_leaf_share=1.5).fit(X, y)
    with pytest.raises(ValueError, match="max_depth"):
        SegmentTree(max_depth=0).fit(X, y)
    with pytest.raises(DataError, match="no customers"):
        SegmentTree().fit(X.head(0), y[:0])


def test_target_aligned_by_customer_id():
    X, y = known_rule_frame()
    target = pd.Series(y, index=X.index)
    shuffled = target.sample(frac=1.0, random_state=1)
    a = SegmentTree().fit(X, target)
    b = SegmentTree().fit(X, shuffled)
    assert a.to_json() == b.to_json()
    with pytest.raises(ValueError, match="index does not match"):
        SegmentTree().fit(X, pd.Series(y))


def test_target_values_choose_by_kind():
    clv, churn, points = [100.0, 5.0], np.array([0.1, 0.9]), pd.Series([95, 40], index=[7, 8])
    assert target_values("clv", clv, churn, points).tolist() == [100.0, 5.0]
    assert target_values("churn", clv, churn, points).tolist() == [0.1, 0.9]
    tier = target_values("tier", clv, churn, points)
    assert tier.name == "tier" and tier.index.tolist() == [7, 8] and tier.dtype == float
    with pytest.raises(ValueError, match="expected one of clv, churn, tier, got 'value'"):
        target_values("value", clv)
    with pytest.raises(DataError, match="'churn' but no churn probabilities"):
        target_values("churn", clv)
    with pytest.raises(DataError, match="1 customer"):
        target_values("clv", [1.0, np.nan])


def test_segment_tree_from_settings():
    settings = SegmentSettings(target="churn", features=["recency_days"], max_depth=2, min_leaf_share=0.1, seed=3)
    model = segment_tree_from_settings(settings)
    assert model.get_params() == {
        "features": ["recency_days"],
        "max_depth": 2,
        "min_leaf_share": 0.1,
        "seed": 3,
        "target_name": "churn",
    }


# --- real features ------------------------------------------------------------------------------


def test_runs_on_simulated_features(small_sim):
    features = build_features(small_sim.tables(), pd.Timestamp("2026-07-31"))
    target = features["monetary_365d"]
    listed = [f for f in SegmentSettings().features if f != "monetary_365d"] + ["contract", "age_band", "industry"]
    model = SegmentTree(features=listed, max_depth=3, min_leaf_share=0.05).fit(features, target)
    assert model.skipped_features_ == []
    leaves = model.leaves_
    assert 2 <= len(leaves) <= 8
    assert (leaves["customers"] >= 0.05 * len(features)).all()
    predicted = model.predict(features)
    np.testing.assert_array_equal(model.apply_rules(features).to_numpy(), predicted.to_numpy())
    np.testing.assert_array_equal(sql_segments(model, features[list(model.feature_names_in_)]), predicted.to_numpy())
    table = model.profile(features, predicted, target)
    assert table["customers"].sum() == len(features)
    assert table["share_value"].sum() == pytest.approx(1.0)
    assert table["mean_clv"].iloc[0] == pytest.approx(leaves["mean_target"].iloc[0])
    assert isinstance(plot_segment_tree(model), Axes)


def test_constant_target_gives_one_segment_for_everyone():
    X = pd.DataFrame({"a": np.arange(100.0), "c": pd.Categorical([None] * 100, categories=["x"])})
    model = SegmentTree().fit(X, np.ones(100))
    assert model.leaves_[["segment_id", "name", "rule", "sql_condition"]].to_dict("records") == [
        {"segment_id": 1, "name": "Segment 1: all customers", "rule": "all customers", "sql_condition": "1 = 1"}
    ]
    assert set(sql_segments(model, X)) == set(model.apply_rules(X)) == set(model.predict(X)) == {1}
    assert isinstance(plot_segment_tree(model), Axes)
