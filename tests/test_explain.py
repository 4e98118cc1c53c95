"""Exact TreeSHAP (equal to LightGBM's ``pred_contrib``) and the top reasons per customer."""

from __future__ import annotations

import re

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from crmscore import explain
from crmscore.churn import ChurnModel
from crmscore.clv.ml import ClvModel
from crmscore.explain import REASON_COLUMNS, TreeShap, top_reasons, tree_shap

EXACT = 1e-9
ADDITIVE = 1e-6


def _features(n: int, seed: int = 0) -> pd.DataFrame:
    """Numbers with NaN, exact zeros and a heavy tail, plus a categorical with missing values."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "recency_days": rng.exponential(60, n).round(),
            "frequency_total": rng.poisson(3, n).astype(float),
            "monetary_total": rng.lognormal(4, 1, n),
            "complaints_90d": rng.poisson(0.4, n).astype(float),
            "tenure_days": rng.uniform(0, 1000, n),
            "noise": rng.normal(size=n),
        }
    )
    X.loc[rng.random(n) < 0.15, "recency_days"] = np.nan
    X.loc[rng.random(n) < 0.10, "monetary_total"] = np.nan
    X["region"] = pd.Categorical(rng.choice([f"r{i}" for i in range(12)], n))
    X.loc[rng.random(n) < 0.08, "region"] = np.nan
    X.index = pd.Index([f"c{i:05d}" for i in range(n)], name="customer_id")
    return X


def _churn_label(X: pd.DataFrame, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    region_effect = X["region"].cat.codes.map(lambda c: 0.8 if c in (1, 4, 7, 10) else -0.3 if c >= 0 else 0.5)
    logit = (
        0.02 * X["recency_days"].fillna(200)
        - 0.4 * X["frequency_total"]
        + 0.7 * X["complaints_90d"]
        + region_effect.to_numpy()
        - 0.002 * X["tenure_days"]
        - 0.5
    )
    return (rng.random(len(X)) < 1 / (1 + np.exp(-logit))).astype(int)


def _spend_label(X: pd.DataFrame, seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mean = np.exp(1 + 0.3 * X["frequency_total"] - 0.01 * X["recency_days"].fillna(100))
    buys = rng.random(len(X)) < 1 / (1 + np.exp(0.02 * X["recency_days"].fillna(100) - 1))
    return np.where(buys, rng.gamma(2.0, mean / 2.0), 0.0)


def _train(X: pd.DataFrame, y: np.ndarray, rounds: int = 30, **params) -> lgb.Booster:
    base = {
        "objective": "binary",
        "num_leaves": 15,
        "learning_rate": 0.1,
        "min_data_in_leaf": 10,
        "min_data_per_group": 10,
        "cat_smooth": 1.0,
        "max_cat_to_onehot": 4,
        "seed": 3,
        "deterministic": True,
        "num_threads": 1,  # several OpenMP threads crawl on a loaded machine
        "verbosity": -1,
    }
    return lgb.train({**base, **params}, lgb.Dataset(X, y), num_boost_round=rounds)


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray]:
    X = _features(1500)
    return X, _churn_label(X)


def _max_diff(booster: lgb.Booster, X, **kwargs) -> float:
    expected = booster.predict(X, pred_contrib=True, **kwargs)
    return float(np.abs(TreeShap(booster, **kwargs).contrib(X) - expected).max())


# --- equality with pred_contrib -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({}, id="nan-missing"),
        pytest.param({"zero_as_missing": True}, id="zero-missing"),
        pytest.param({"use_missing": False}, id="no-missing-handling"),
        pytest.param({"max_depth": 3, "num_leaves": 8}, id="depth-limited"),
        pytest.param({"num_leaves": 63, "min_data_in_leaf": 2, "min_data_per_group": 2}, id="deep"),
        pytest.param({"max_cat_to_onehot": 32}, id="one-hot-categorical"),
        pytest.param({"bagging_fraction": 0.7, "bagging_freq": 1, "feature_fraction": 0.6}, id="bagged"),
    ],
)
def test_binary_values_equal_pred_contrib(data, params):
    X, y = data
    booster = _train(X, y, **params)
    assert _max_diff(booster, X) <= EXACT


def test_categorical_splits_are_used_and_matched(data):
    X, y = data
    booster = _train(X, y)
    kinds = {node["decision_type"] for tree in booster.dump_model()["tree_info"] for node in _nodes(tree)}
    assert kinds == {"<=", "=="}
    assert _max_diff(booster, X) <= EXACT


def _nodes(tree: dict) -> list[dict]:
    out, stack = [], [tree["tree_structure"]]
    while stack:
        node = stack.pop()
        if "split_index" in node:
            out.append(node)
            stack += [node["left_child"], node["right_child"]]
    return out


def test_unseen_and_missing_categories_route_like_lightgbm(data):
    X, y = data
    booster = _train(X, y)
    X_new = _features(400, seed=9)
    regions = X_new["region"].astype(object)
    regions[:50] = "never-seen"  # a category the model has never seen: LightGBM treats it as missing
    regions[50:80] = np.nan
    # Categories in another order than in training: LightGBM recodes them with the training order.
    X_new["region"] = pd.Categorical(regions, categories=["never-seen", *reversed(X["region"].cat.categories)])
    assert _max_diff(booster, X_new) <= EXACT


def test_raw_codes_out_of_range_route_like_lightgbm(data):
    X, y = data
    booster = _train(X, y, zero_as_missing=True)
    matrix = TreeShap(booster)._matrix(X.iloc[:64]).copy()
    region = X.columns.get_loc("region")
    matrix[:8, region] = [-1.0, -0.5, 0.7, 2.0**31, 1e12, np.inf, -np.inf, 500.0]
    amount = X.columns.get_loc("monetary_total")
    matrix[8:16, amount] = [0.0, -0.0, 1e-36, -1e-36, 1e-30, np.inf, -np.inf, np.nan]
    assert _max_diff(booster, matrix) <= EXACT


@pytest.mark.parametrize("num_iteration", [None, 7, 0, -1])
def test_early_stopped_booster_and_num_iteration(data, num_iteration):
    X, y = data
    valid = _features(600, seed=5)
    train_set = lgb.Dataset(X, y)
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 31, "learning_rate": 0.3, "verbosity": -1, "seed": 3, "num_threads": 1},
        train_set,
        num_boost_round=300,
        valid_sets=[lgb.Dataset(valid, _churn_label(valid), reference=train_set)],
        callbacks=[lgb.early_stopping(5, verbose=False)],
        keep_training_booster=True,  # keeps the rounds after the best one
    )
    assert 0 < booster.best_iteration < booster.current_iteration()
    shap = TreeShap(booster, num_iteration=num_iteration)
    expected_trees = {None: booster.best_iteration, 7: 7}.get(num_iteration, booster.current_iteration())
    assert shap.n_trees_ == expected_trees
    expected = booster.predict(X, pred_contrib=True, num_iteration=num_iteration)
    assert np.abs(shap.contrib(X) - expected).max() <= EXACT


def test_tweedie_regression_adds_up_to_the_raw_score():
    X = _features(1500, seed=3)
    booster = _train(X, _spend_label(X), objective="tweedie", tweedie_variance_power=1.5, rounds=40)
    values, base = TreeShap(booster).shap_values(X)
    assert np.abs(np.column_stack([values, np.full(len(X), base)]) - booster.predict(X, pred_contrib=True)).max() <= (
        EXACT
    )
    raw = booster.predict(X, raw_score=True)
    assert np.abs(base + values.sum(axis=1) - raw).max() <= ADDITIVE
    assert np.allclose(np.exp(base + values.sum(axis=1)), booster.predict(X), rtol=1e-9)


def test_binary_base_plus_contributions_is_the_log_odds(data):
    X, y = data
    booster = _train(X, y)
    values, base = TreeShap(booster).shap_values(X)
    assert base == pytest.approx(booster.predict(X.iloc[:1], pred_contrib=True)[0, -1], abs=1e-12)
    assert np.abs(base + values.sum(axis=1) - booster.predict(X, raw_score=True)).max() <= ADDITIVE


def test_single_leaf_trees():
    X = _features(300, seed=4)
    y = _spend_label(X)
    params = {"objective": "regression", "verbosity": -1, "num_leaves": 7, "min_data_in_leaf": 5, "num_threads": 1}
    stump = lgb.train({**params, "min_data_in_leaf": 1000}, lgb.Dataset(X, y), num_boost_round=3)
    assert stump.num_trees() == 1 and stump.dump_model()["tree_info"][0]["num_leaves"] == 1
    values, base = TreeShap(stump).shap_values(X)
    assert not values.any() and base == pytest.approx(stump.predict(X.iloc[:1])[0], abs=1e-12)
    grown = lgb.train(params, lgb.Dataset(X, y), num_boost_round=4, init_model=stump)
    assert [t["num_leaves"] for t in grown.dump_model()["tree_info"]][:2] == [1, 7]
    assert _max_diff(grown, X) <= EXACT


def test_leaves_without_tables_give_the_same_values(data, monkeypatch):
    X, y = data
    booster = _train(X, y, num_leaves=31, min_data_in_leaf=3)
    expected = booster.predict(X, pred_contrib=True)
    no_tables = TreeShap(booster, max_table_bits=0)
    assert no_tables.tabled_leaf_share_ == 0.0
    assert np.abs(no_tables.contrib(X) - expected).max() <= EXACT
    capped = TreeShap(booster, max_table_mb=0.01)
    assert 0.0 < capped.tabled_leaf_share_ < 1.0
    assert np.abs(capped.contrib(X) - expected).max() <= EXACT
    # Paths with more distinct features than a 64-bit mask holds are routed step by step.
    monkeypatch.setattr(explain, "_MAX_MASK_SLOTS", 2)
    stepwise = TreeShap(booster)
    assert not stepwise._ensemble.tree_masked.all()
    assert np.abs(stepwise.contrib(X) - expected).max() <= EXACT


def test_threads_do_not_change_the_values(data):
    X, y = data
    booster = _train(X, y)
    one = TreeShap(booster, n_jobs=1).contrib(X)
    assert np.array_equal(one, TreeShap(booster, n_jobs=2).contrib(X))
    assert np.array_equal(one, tree_shap(booster, X))


def test_columns_are_matched_by_name(data):
    X, y = data
    booster = _train(X, y)
    shap = TreeShap(booster)
    assert np.array_equal(shap.contrib(X[list(reversed(X.columns))]), shap.contrib(X))
    with pytest.raises(ValueError, match="lacks the booster's feature"):
        shap.shap_values(X.drop(columns="noise"))
    with pytest.raises(ValueError, match="expected a 2-d array with 7 columns"):
        shap.shap_values(np.zeros((3, 5)))
    assert shap.shap_values(X.iloc[:0])[0].shape == (0, 7)


def test_matches_the_models_own_shap_values(data):
    # The churn and CLV models explain their boosters on their prepared frames (training categories).
    X, y = data
    valid = _features(600, seed=5)
    churn_model = ChurnModel(max_trees=40, early_stopping_rounds=5, linear_blend=False, n_jobs=1)
    churn_model.fit(X, y, valid, _churn_label(valid))
    booster = churn_model.boosters_[0]
    values, base = TreeShap(booster).shap_values(churn_model._prepare(valid))
    expected_values, expected_base = churn_model.shap_values(valid)
    assert np.abs(values - expected_values).max() <= EXACT and base == pytest.approx(expected_base, abs=EXACT)

    clv_model = ClvModel(max_trees=40, early_stopping_rounds=5, n_jobs=1).fit(X, _spend_label(X))
    values, base = TreeShap(clv_model.boosters_["spend"], num_iteration=clv_model.n_trees_["spend"]).shap_values(
        clv_model._prepare(valid)
    )
    expected_values, expected_base = clv_model.shap_values(valid)
    assert np.abs(values - expected_values).max() <= EXACT
    assert base + np.log(clv_model.balance_factor_) == pytest.approx(expected_base, abs=EXACT)


def test_multiclass_is_refused(data):
    X, y = data
    booster = _train(X, (y + (X["noise"] > 1)).to_numpy(), objective="multiclass", num_class=3, rounds=3)
    with pytest.raises(ValueError, match="multiclass"):
        TreeShap(booster)


# --- top reasons ----------------------------------------------------------------------------------------

POINTS = re.compile(r": (raises|lowers) churn risk by (< 0\.1|\d+\.\d) points(?: \(base rate (< 0\.1|\d+\.\d) %\))?$")


def _sigmoid(x):
    return 1 / (1 + np.exp(-np.asarray(x, dtype=float)))


@pytest.fixture
def small() -> tuple[np.ndarray, pd.DataFrame]:
    X = pd.DataFrame(
        {
            "recency_days": [210.0, 3.0, np.nan],
            "frequency_total": [1.0, 12.0, 0.0],
            "region": pd.Categorical(["north", "south", None]),
        },
        index=pd.Index([101, 102, 103], name="customer_id"),
    )
    values = np.array(
        [
            [0.9, 0.3, -0.5],  # above the base value: two reasons raise risk
            [-0.7, -0.2, 0.2],  # below it: two reasons lower risk; one raises it
            [0.4, 0.4, 0.0],  # a tie, and a zero that is never a reason
        ]
    )
    return values, X


def test_top_reasons_layout_and_text(small):
    values, X = small
    reasons = top_reasons(values, X, k=2, base=-1.0)
    assert list(reasons.columns) == REASON_COLUMNS
    assert reasons["customer_id"].tolist() == [101, 101, 102, 102, 103, 103]
    assert reasons["rank"].tolist() == [1, 2, 1, 2, 1, 2]
    assert reasons["feature"].tolist() == [
        "recency_days",
        "frequency_total",
        "recency_days",  # 102 is below the base rate: what keeps the risk low, strongest first
        "frequency_total",
        "recency_days",  # the tie goes to the earlier feature
        "frequency_total",
    ]
    assert reasons["value"].tolist() == ["210", "1", "3", "12", "missing", "0"]
    assert reasons["contribution"].tolist() == [0.9, 0.3, -0.7, -0.2, 0.4, 0.4]
    assert (reasons["model"] == "churn").all() and reasons["relative_spend_change"].isna().all()
    # 101: raw −0.3, sigmoid(−0.3) − sigmoid(−1.2) = 0.1941; base rate sigmoid(−1) = 0.2689.
    assert reasons["text"].iloc[0] == (
        "days since the last purchase = 210: raises churn risk by 19.4 points (base rate 26.9 %)"
    )
    # 102: raw −1.7, sigmoid(−1.7) − sigmoid(−1.0) = −0.1143.
    assert reasons["text"].iloc[2] == (
        "days since the last purchase = 3: lowers churn risk by 11.4 points (base rate 26.9 %)"
    )
    raw = -1.0 + values.sum(axis=1)
    first = _sigmoid(raw[0]) - _sigmoid(raw[0] - 0.9)
    assert reasons["probability_change"].iloc[0] == pytest.approx(first, abs=1e-12)
    assert reasons.equals(top_reasons(values, X, k=2, base=-1.0, rank_by="direction"))  # the log_odds default
    # A model's own churn rate (its training share of churners) is the base rate quoted when given.
    quoted = top_reasons(values, X, k=2, base=-1.0, base_rate=0.265)
    assert quoted["text"].iloc[0].endswith("raises churn risk by 19.4 points (base rate 26.5 %)")
    assert quoted.drop(columns="text").equals(reasons.drop(columns="text"))


def test_top_reasons_by_increase_as_before(small):
    values, X = small
    reasons = top_reasons(values, X, k=2, base=-1.0, rank_by="increase")
    assert reasons["customer_id"].tolist() == [101, 101, 102, 103, 103]
    assert reasons["feature"].tolist() == [
        "recency_days",
        "frequency_total",
        "region",  # 102 is below the base rate, yet gets its one feature that raises the risk
        "recency_days",
        "frequency_total",
    ]
    assert reasons["contribution"].tolist() == [0.9, 0.3, 0.2, 0.4, 0.4]
    assert reasons["text"].iloc[2] == "region = south: raises churn risk by 2.4 points (base rate 26.9 %)"


def test_top_reasons_by_absolute_contribution(small):
    values, X = small
    reasons = top_reasons(values, X, k=1, raw=np.zeros(3), rank_by="absolute")
    assert reasons["feature"].tolist() == ["recency_days", "recency_days", "recency_days"]
    assert reasons["contribution"].tolist() == [0.9, -0.7, 0.4]
    # Only raw is known: no base rate; sigmoid(0) − sigmoid(0.7) = −0.1682.
    assert reasons["text"].iloc[1] == "days since the last purchase = 3: lowers churn risk by 16.8 points"
    assert reasons["probability_change"].iloc[1] < 0


def test_top_reasons_direction_follows_raw_against_base(small):
    values, X = small
    # raw and base given: the side is raw − base, not the sum of the contributions (102 is now above).
    reasons = top_reasons(values, X, k=3, base=-1.0, raw=np.array([-2.0, 0.0, -1.0]))
    assert reasons["contribution"].tolist() == [-0.5, 0.2, 0.4, 0.4]
    assert reasons["text"].str.contains("lowers").tolist() == [True, False, False, False]
    # Only raw: the sum of the contributions says (raw − that sum is the base value).
    reasons = top_reasons(values, X, k=3, raw=np.array([-2.0, 0.0, -1.0]))
    assert reasons["contribution"].tolist() == [0.9, 0.3, -0.7, -0.2, 0.4, 0.4]
    # A customer exactly at the base value counts as above.
    at_base = top_reasons(np.array([[0.3, -0.3, 0.0]]), X.iloc[:1], base=0.0)
    assert at_base["contribution"].tolist() == [0.3]


def test_top_reasons_for_spend(small):
    values, X = small
    reasons = top_reasons(values, X, k=3, model="clv")
    assert reasons.groupby("customer_id").size().tolist() == [3, 3, 2]  # ranked by |contribution|
    assert reasons["probability_change"].isna().all()
    assert reasons["relative_spend_change"].iloc[0] == pytest.approx(np.expm1(0.9))
    assert reasons["text"].iloc[0] == "days since the last purchase = 210: raises expected spend by 146 %"
    assert reasons["text"].iloc[1] == "region = north: lowers expected spend by 39 %"  # exp(−0.5) − 1 = −0.393


def test_spend_change_formats():
    X = pd.DataFrame({"noise": np.arange(6.0)})
    changes = np.array([0.05, 0.25, 14.0, -0.4, -0.0005, 0.0999])
    reasons = top_reasons(np.log1p(changes)[:, None], X, model="clv")
    assert [text.split(": ", 1)[1] for text in reasons["text"]] == [
        "raises expected spend by 5.0 %",  # one decimal below 10 %
        "raises expected spend by 25 %",  # whole numbers from 10 %
        "raises expected spend by 1,400 %",
        "lowers expected spend by 40 %",
        "lowers expected spend by < 0.1 %",
        "raises expected spend by 10 %",  # 9.99 %
    ]
    assert np.allclose(reasons["relative_spend_change"], changes)


def test_reason_points_and_base_rate_match_the_numbers(data):
    X, y = data
    booster = _train(X, y)
    values, base = TreeShap(booster).shap_values(X)
    values[:50, 0] = np.where(values[:50, 0] >= 0, 1e-5, -1e-5)  # tiny contributions: "< 0.1 points"
    reasons = top_reasons(values, X, k=len(X.columns), base=base, rank_by="absolute")
    parts = reasons["text"].str.extract(POINTS)
    assert parts.notna().all().all(), reasons["text"][parts.isna().any(axis=1)].head().tolist()
    # The base rate is the model's expected uncalibrated probability, sigmoid(base).
    assert 0.05 < _sigmoid(base) < 0.95
    assert set(parts[2]) == {f"{100 * _sigmoid(base):.1f}"}
    # Raises / lowers follow the contribution; the points are 100 × |probability_change|, one decimal.
    assert ((parts[0] == "raises") == (reasons["contribution"] > 0)).all()
    points = 100 * reasons["probability_change"].abs()
    tiny = parts[1] == "< 0.1"
    assert tiny.sum() >= 50 and (points[tiny] < 0.05).all()
    assert np.abs(parts[1][~tiny].astype(float) - points[~tiny]).max() <= 0.05 + 1e-9
    assert (parts[1][~tiny].astype(float) == points[~tiny].round(1)).mean() > 0.99  # rounding, not truncation
    rows = X.index.get_indexer(reasons["customer_id"])
    raw = base + values.sum(axis=1)
    expected = _sigmoid(raw[rows]) - _sigmoid(raw[rows] - reasons["contribution"].to_numpy())
    assert np.abs(reasons["probability_change"].to_numpy() - expected).max() <= 1e-12


def test_top_reasons_from_tree_shap(data):
    X, y = data
    booster = _train(X, y)
    values, base = TreeShap(booster).shap_values(X)
    raw = base + values.sum(axis=1)
    above = raw >= base
    assert 0.1 < above.mean() < 0.9  # both kinds of customer are there

    reasons = top_reasons(values, X, k=3, base=base)
    assert reasons.groupby("customer_id")["rank"].max().le(3).all()
    side = pd.Series(above, index=X.index)[reasons["customer_id"]].to_numpy()
    # High risk: what raises it; low risk: what keeps it low.
    assert (reasons["contribution"][side] > 0).all() and (reasons["contribution"][~side] < 0).all()
    assert reasons["text"][side].str.contains(": raises churn risk by ").all()
    assert reasons["text"][~side].str.contains(": lowers churn risk by ").all()
    assert (reasons["probability_change"][~side] < 0).all()
    strongest = reasons[reasons["rank"] == 1].set_index("customer_id")["contribution"]
    expected = pd.Series(np.where(above, values.max(axis=1), values.min(axis=1)), index=X.index)
    assert np.allclose(strongest.to_numpy(), expected[strongest.index].to_numpy())

    # rank_by="increase": every customer's reasons raise the risk, as before.
    increase = top_reasons(values, X, k=3, base=base, rank_by="increase")
    assert (increase["contribution"] > 0).all() and increase["text"].str.contains("raises churn risk").all()
    strongest = increase[increase["rank"] == 1].set_index("customer_id")["contribution"]
    assert np.allclose(strongest.to_numpy(), values.max(axis=1)[values.max(axis=1) > 0])


def test_top_reasons_errors(small):
    values, X = small
    with pytest.raises(ValueError, match="need base or raw"):
        top_reasons(values, X)
    with pytest.raises(ValueError, match=r"values have shape \(3, 2\)"):
        top_reasons(values[:, :2], X, base=0.0)
    with pytest.raises(ValueError, match="unknown kind"):
        top_reasons(values, X, kind="probability")
    with pytest.raises(ValueError, match="unknown rank_by 'signed' \\(direction, increase or absolute\\)"):
        top_reasons(values, X, base=0.0, rank_by="signed")
    with pytest.raises(ValueError, match="lacks the feature column"):
        top_reasons(values, X, feature_names=["a", "b", "c"], base=0.0)
    with pytest.raises(ValueError, match="raw has 2 values for 3 customers"):
        top_reasons(values, X, raw=np.zeros(2))
    assert list(top_reasons(values[:0], X.iloc[:0], base=0.0).columns) == REASON_COLUMNS
