"""Churn datasets, the calibrated LightGBM model, tuning and cross-validation (``crmscore.churn``).

Small simulated data (3,000 customers) and tiny tuning budgets keep the file fast; the full-size
checks of ranking and calibration are the benchmarks in ``benchmarks/*_churn.py``.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score

from crmscore import churn
from crmscore.config import ChurnSettings, TuningSettings
from crmscore.data.simulate import simulate_crm
from crmscore.errors import DataError
from crmscore.evaluation import CLASSIFICATION_METRIC_KEYS, expected_calibration_error
from crmscore.labels import transaction_churn

TUNING = TuningSettings(trials=3, timeout_seconds=600, max_trees=200)
SETTINGS = ChurnSettings(tuning=TUNING)


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    """3,000 simulated customers; treat as read-only."""
    return simulate_crm(customers=3_000, seed=11).tables()


@pytest.fixture(scope="module")
def data(tables) -> dict[str, churn.ChurnData]:
    return churn.temporal_datasets(tables, SETTINGS)


@pytest.fixture(scope="module")
def snapshot_tables(tables) -> dict[str, pd.DataFrame]:
    """A ``customers`` table with a ``churned`` flag that depends on the contract (Telco-like)."""
    customers = tables["customers"].copy()
    rng = np.random.default_rng(3)
    p = np.where(customers["contract"].astype(str).str.contains("month", case=False), 0.45, 0.12)
    customers["churned"] = rng.random(len(customers)) < p
    return {"customers": customers}


def fit_small(data: dict[str, churn.ChurnData], **params) -> churn.ChurnModel:
    """A ChurnModel early-stopped and calibrated on the validation split (the fast path)."""
    model = churn.ChurnModel(max_trees=200, early_stopping_rounds=20, **params)
    return model.fit(data["train"].X, data["train"].y, data["valid"].X, data["valid"].y)


@pytest.fixture(scope="module")
def fitted(data) -> churn.ChurnModel:
    return fit_small(data)


# --- datasets --------------------------------------------------------------------------------------


def test_temporal_datasets_order_splits_so_every_label_window_closes_before_the_next_split(tables, data):
    horizon = pd.Timedelta(days=SETTINGS.horizon_days)
    train_dates = sorted(data["train"].as_of.unique())
    valid_as_of = data["valid"].as_of.iloc[0]
    test_as_of = data["test"].as_of.iloc[0]

    assert data["valid"].as_of.nunique() == 1 and data["test"].as_of.nunique() == 1
    assert train_dates[-1] < valid_as_of < test_as_of
    assert train_dates[-1] + horizon <= valid_as_of  # every train label window ends before valid begins
    assert valid_as_of + horizon <= test_as_of
    assert test_as_of + horizon <= tables["transactions"]["date"].max()
    # The default test date is the last one whose horizon is fully observed.
    assert test_as_of == tables["transactions"]["date"].max().normalize() - horizon

    # Stacked training set: rows from every cutoff, cutoff_step_days apart.
    assert len(train_dates) == SETTINGS.train_cutoffs
    assert set(np.diff(train_dates)) == {pd.Timedelta(days=SETTINGS.cutoff_step_days)}
    counts = data["train"].as_of.value_counts()
    assert (counts > 0).all() and counts.sum() == len(data["train"])

    for split in data.values():
        assert split.X.index.equals(split.y.index)
        assert set(split.y.unique()) == {0, 1}
    # Labels are transaction churn in (as_of, as_of + horizon], per cutoff.
    first = data["train"].as_of == train_dates[0]
    expected = transaction_churn(
        tables["transactions"], data["train"].X.index[first], train_dates[0], SETTINGS.horizon_days
    )
    np.testing.assert_array_equal(data["train"].y[first].to_numpy(), expected.to_numpy())


def test_temporal_datasets_reject_a_test_date_whose_horizon_is_not_observed(tables):
    late = tables["transactions"]["date"].max().date()
    with pytest.raises(DataError, match="test_as_of.*horizon unobserved"):
        churn.temporal_datasets(tables, ChurnSettings(test_as_of=late))


def test_snapshot_datasets_are_stratified_disjoint_and_reproducible(snapshot_tables):
    settings = ChurnSettings(valid_share=0.2, test_share=0.25, seed=5)
    splits = churn.snapshot_datasets(snapshot_tables, settings)
    n = len(snapshot_tables["customers"])
    rate = snapshot_tables["customers"]["churned"].mean()

    ids = {name: set(split.X.index) for name, split in splits.items()}
    assert not (ids["train"] & ids["valid"]) and not (ids["train"] & ids["test"]) and not (ids["valid"] & ids["test"])
    assert sum(len(s) for s in ids.values()) == n
    assert len(splits["test"]) == pytest.approx(0.25 * n, abs=1)
    assert len(splits["valid"]) == pytest.approx(0.2 * n, abs=1)
    for split in splits.values():
        assert split.y.mean() == pytest.approx(rate, abs=0.01)  # stratified
        assert "churned" not in split.X.columns  # the label never leaks into the features

    again = churn.snapshot_datasets(snapshot_tables, settings)
    for name in splits:
        assert splits[name].X.index.equals(again[name].X.index)
        pd.testing.assert_frame_equal(splits[name].X, again[name].X)
    other_seed = churn.snapshot_datasets(snapshot_tables, settings.model_copy(update={"seed": 6}))
    assert not splits["test"].X.index.equals(other_seed["test"].X.index)


def test_churn_datasets_picks_the_label_kind_from_the_tables(tables, snapshot_tables):
    kind, splits = churn.churn_datasets(tables, SETTINGS)
    assert kind == "transaction" and set(splits) == {"train", "valid", "test"}
    kind, splits = churn.churn_datasets(snapshot_tables, SETTINGS)
    assert kind == "subscription" and set(splits) == {"train", "valid", "test"}


# --- estimator contract ------------------------------------------------------------------------------


def test_churn_model_follows_scikit_learn_conventions(data, fitted):
    model = churn.ChurnModel(params={"num_leaves": 7}, max_trees=200, blend_weight=0.3, seed=3)
    params = model.get_params()
    assert params["params"] == {"num_leaves": 7} and params["blend_weight"] == 0.3 and params["seed"] == 3
    copy = clone(model)
    assert copy is not model and copy.get_params() == params
    assert copy.set_params(seed=9).seed == 9
    assert not any(key.endswith("_") for key in vars(model))  # __init__ only stores hyper-parameters

    X = data["test"].X
    learned = set(vars(fitted)) - set(fitted.get_params())
    assert learned and all(name.endswith("_") for name in learned)
    # The fitted model keeps no training data.
    assert not any(isinstance(value, pd.DataFrame | pd.Series) for value in vars(fitted).values())
    np.testing.assert_array_equal(fitted.classes_, [0, 1])

    proba = fitted.predict_proba(X)
    assert proba.shape == (len(X), 2)
    assert ((proba >= 0) & (proba <= 1)).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert set(np.unique(fitted.predict(X))) <= {0, 1}
    assert fitted.feature_importance().index.isin(fitted.feature_names_in_).all()


@pytest.mark.parametrize("method", ["predict_proba", "predict", "decision_function", "shap_values"])
def test_an_unfitted_model_raises_not_fitted_error(data, method):
    with pytest.raises(NotFittedError):
        getattr(churn.ChurnModel(), method)(data["test"].X)


def test_feature_importance_of_an_unfitted_model_raises_not_fitted_error():
    with pytest.raises(NotFittedError):
        churn.ChurnModel().feature_importance()


def test_model_from_settings_carries_the_churn_section():
    settings = ChurnSettings(
        calibration="sigmoid",
        class_weight="balanced",
        cv_folds=3,
        seed=7,
        tuning=TuningSettings(learning_rate=0.1, max_trees=300, early_stopping_rounds=25),
    )
    model = churn.model_from_settings(settings, {"num_leaves": 31}, n_jobs=1)
    expected = {
        "params": {"num_leaves": 31},
        "learning_rate": 0.1,
        "max_trees": 300,
        "early_stopping_rounds": 25,
        "calibration": "sigmoid",
        "class_weight": "balanced",
        "n_folds": 3,
        "seed": 7,
        "n_jobs": 1,
    }
    assert {k: model.get_params()[k] for k in expected} == expected


# --- SHAP ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("blend_weight", [0.5, 1.0, 0.0])
def test_shap_values_add_up_to_the_decision_function(data, blend_weight):
    model = fit_small(data, blend_weight=blend_weight)
    assert model.blend_weight_ == blend_weight
    X = data["test"].X
    values, base = model.shap_values(X)
    assert values.shape == (len(X), len(model.feature_names_in_))
    assert isinstance(base, float)
    np.testing.assert_allclose(base + values.sum(axis=1), model.decision_function(X), rtol=0, atol=1e-6)


def test_shap_values_of_a_cross_fitted_blend_are_exact(data):
    # Without a validation set the model averages one booster (and one logistic model) per fold.
    model = churn.ChurnModel(max_trees=60, early_stopping_rounds=10, n_folds=3, blend_weight=0.5)
    model.fit(data["valid"].X, data["valid"].y)
    assert len(model.boosters_) == 3 and len(model.linear_models_) == 3
    X = data["test"].X.iloc[:500]
    values, base = model.shap_values(X)
    np.testing.assert_allclose(base + values.sum(axis=1), model.decision_function(X), rtol=0, atol=1e-6)


# --- calibration and reproducibility -------------------------------------------------------------------


def test_calibrated_probabilities_match_observed_churn_on_held_out_customers(data, fitted):
    test = data["test"]
    uncalibrated = fit_small(data, calibration="none")
    y = test.y.to_numpy()
    ece = expected_calibration_error(y, fitted.predict_proba(test.X)[:, 1])
    ece_raw = expected_calibration_error(y, uncalibrated.predict_proba(test.X)[:, 1])
    assert fitted.calibration_method_ in {"isotonic", "sigmoid"}
    assert ece < 0.05
    assert ece <= ece_raw + 0.01

    # A class-weighted booster is biased by design; calibration must undo that.
    weighted_raw = fit_small(data, calibration="none", class_weight="balanced", linear_blend=False)
    weighted = fit_small(data, calibration="sigmoid", class_weight="balanced", linear_blend=False)
    ece_weighted = expected_calibration_error(y, weighted.predict_proba(test.X)[:, 1])
    assert ece_weighted < 0.05
    assert ece_weighted <= expected_calibration_error(y, weighted_raw.predict_proba(test.X)[:, 1]) + 0.01


def test_isotonic_calibration_keeps_the_ranking():
    # Plain isotonic regression ties customers inside each step; the centred version must not.
    rng = np.random.default_rng(5)
    raw = rng.normal(size=6_000)
    y = (rng.random(6_000) < 1 / (1 + np.exp(-(1.5 * raw - 1.0)))).astype(int)
    calibrator = churn.CenteredIsotonic().fit(raw, y)
    new = rng.normal(size=2_000)
    p = calibrator.predict(new)
    inside = (new > calibrator.centres_[0]) & (new < calibrator.centres_[-1])
    assert inside.mean() > 0.95
    order = np.argsort(new[inside])
    assert np.all(np.diff(p[inside][order]) > 0)  # strictly increasing: no ties, the ranking survives
    assert np.all((p >= 0) & (p <= 1))
    # Calibrated like the isotonic fit it is built on.
    y_new = (rng.random(2_000) < 1 / (1 + np.exp(-(1.5 * new - 1.0)))).astype(int)
    assert expected_calibration_error(y_new, p) < 0.04
    assert abs(calibrator.predict(raw).mean() - y.mean()) < 0.005


def test_cross_fitted_model_is_reproducible(data):
    def fit() -> churn.ChurnModel:
        model = churn.ChurnModel(max_trees=60, early_stopping_rounds=10, n_folds=3)
        return model.fit(data["valid"].X, data["valid"].y)

    first, second = fit(), fit()
    assert first.best_iterations_ == second.best_iterations_
    assert first.blend_weight_ == second.blend_weight_
    np.testing.assert_array_equal(first.predict_proba(data["test"].X), second.predict_proba(data["test"].X))


def test_tuning_and_fitting_twice_give_identical_results(data):
    def run() -> tuple[churn.TuningResult, dict[str, float], np.ndarray]:
        tuning = churn.tune_lightgbm(data["train"], data["valid"], TUNING, seed=SETTINGS.seed)
        model = churn.model_from_settings(SETTINGS, tuning.best_params)
        model.fit(data["train"].X, data["train"].y, data["valid"].X, data["valid"].y)
        return tuning, churn.evaluate(model, data["test"]), model.predict_proba(data["test"].X)

    first, second = run(), run()
    assert first[0].trials == second[0].trials == TUNING.trials
    assert first[0].best_params == second[0].best_params
    assert first[0].best_value == second[0].best_value
    assert first[1] == second[1]
    np.testing.assert_array_equal(first[2], second[2])


def test_auc_standard_error_matches_the_spread_of_the_auc_across_samples():
    rng = np.random.default_rng(0)
    positives, negatives = 120, 360
    aucs = []
    for _ in range(400):
        y = np.r_[np.ones(positives), np.zeros(negatives)].astype(int)
        score = rng.normal(size=len(y)) + 1.3 * y
        aucs.append(roc_auc_score(y, score))
    expected = churn.auc_standard_error(float(np.mean(aucs)), positives, negatives)
    assert expected == pytest.approx(np.std(aucs, ddof=1), rel=0.2)
    # More customers, a smaller error.
    assert churn.auc_standard_error(0.8, 1_200, 3_600) < expected / 3


def test_tuning_keeps_the_default_unless_the_best_trial_beats_it_by_one_standard_error(data):
    tuning = churn.tune_lightgbm(data["train"], data["valid"], TUNING, seed=SETTINGS.seed)
    default_value = float(tuning.trials_table.loc[tuning.trials_table["number"] == 0, "value"].iloc[0])
    assert tuning.search_best_value == tuning.trials_table["value"].max()
    assert tuning.standard_error > 0
    gain = tuning.search_best_value - default_value
    assert tuning.kept_default == (gain < tuning.standard_error)
    if tuning.kept_default:
        assert tuning.best_params == churn.DEFAULT_LGBM_PARAMS
        assert tuning.best_value == default_value
    else:
        assert tuning.best_value == tuning.search_best_value


# --- bad input -------------------------------------------------------------------------------------------


def test_a_label_with_one_class_is_a_data_error(tables, snapshot_tables, data):
    # Nobody buys after mid-2025 except one late purchase that fixes the end of the history:
    # everyone churns in the training windows.
    tx = tables["transactions"]
    quiet = pd.concat([tx.loc[tx["date"] <= "2025-06-30"], tx.loc[[tx["date"].idxmax()]]])
    with pytest.raises(DataError, match="only one class"):
        churn.temporal_datasets({**tables, "transactions": quiet}, SETTINGS)

    nobody = {"customers": snapshot_tables["customers"].assign(churned=False)}
    with pytest.raises(DataError, match=r"snapshot: only one class \(all churned = 0\)"):
        churn.snapshot_datasets(nobody, SETTINGS)

    with pytest.raises(DataError, match="only one class"):
        churn.ChurnModel().fit(data["valid"].X, np.zeros(len(data["valid"])))


def test_too_few_customers_is_a_data_error(tables, snapshot_tables):
    with pytest.raises(DataError, match="churn.min_customers = 50000"):
        churn.temporal_datasets(tables, ChurnSettings(min_customers=50_000))
    with pytest.raises(DataError, match="history is too short for horizon_days=400"):
        churn.temporal_datasets(tables, ChurnSettings(horizon_days=400))
    few = {"customers": snapshot_tables["customers"].iloc[:150]}
    with pytest.raises(DataError, match="150 labelled customers; at least churn.min_customers = 200"):
        churn.snapshot_datasets(few, SETTINGS)


def with_empty_feature(split: churn.ChurnData, kind: str) -> churn.ChurnData:
    """``split`` with an extra ``kind`` (numeric or category) feature that has no value at all."""
    column = np.full(len(split), np.nan)
    if kind == "category":
        column = pd.Categorical(column, categories=["a", "b"])
    return churn.ChurnData(X=split.X.assign(empty_feature=column), y=split.y, as_of=split.as_of)


@pytest.mark.parametrize("kind", ["numeric", "category"])
def test_a_feature_missing_in_all_training_rows_is_dropped_with_a_warning(data, kind):
    splits = {name: with_empty_feature(split, kind) for name, split in data.items()}
    with pytest.warns(UserWarning, match="dropping features with no value at all: empty_feature"):
        model = fit_small(splits)
    assert model.dropped_features_ == ["empty_feature"]
    assert "empty_feature" not in model.feature_names_in_
    p = model.predict_proba(splits["test"].X)[:, 1]
    assert np.isfinite(p).all()
    # The column is ignored at prediction time, so predictions do not need it.
    np.testing.assert_array_equal(p, model.predict_proba(data["test"].X)[:, 1])
    values, _ = model.shap_values(splits["test"].X)
    assert values.shape[1] == len(model.feature_names_in_)


def test_a_category_never_seen_in_training_is_treated_as_missing(data, fitted, caplog):
    X = data["test"].X.copy()
    rows = X.index[:25]
    unseen = X.copy()
    unseen["region"] = unseen["region"].cat.add_categories(["atlantis"])
    unseen.loc[rows, "region"] = "atlantis"
    missing = X.copy()
    missing.loc[rows, "region"] = np.nan

    with caplog.at_level(logging.INFO, logger="crmscore"):  # scoring reports them; the model logs the count
        p_unseen = fitted.predict_proba(unseen)[:, 1]
    assert any("region: 25 value(s) never seen in training" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(p_unseen, fitted.predict_proba(missing)[:, 1])

    # The same as plain text (an object column), as a scoring file would bring it.
    as_text = unseen.assign(region=unseen["region"].astype(object))
    np.testing.assert_array_equal(fitted.predict_proba(as_text)[:, 1], p_unseen)


def test_prediction_input_must_hold_the_training_features(data, fitted):
    with pytest.raises(DataError, match="input lacks feature column.*recency_days"):
        fitted.predict_proba(data["test"].X.drop(columns="recency_days"))
    with pytest.raises(TypeError, match="pandas DataFrame"):
        fitted.predict_proba(data["test"].X.to_numpy())


# --- cross-validation and the baseline ---------------------------------------------------------------------


def test_cross_validate_returns_one_row_per_fold_and_repeat(data):
    valid = data["valid"]
    folds = churn.cross_validate(valid.X, valid.y, lambda: churn.LogisticBaseline(), folds=3, repeats=2, seed=1)
    assert len(folds) == 6
    assert list(folds.columns) == ["fold", *CLASSIFICATION_METRIC_KEYS]
    assert folds["fold"].tolist() == list(range(6))
    assert folds["n"].sum() == 2 * len(valid)  # each repeat tests every customer once
    assert folds["roc_auc"].between(0.8, 1.0).all()

    def small_model() -> churn.ChurnModel:
        return churn.ChurnModel(max_trees=40, early_stopping_rounds=10, n_folds=2, linear_blend=False)

    trees = churn.cross_validate(valid.X, valid.y, small_model, folds=2, repeats=2, seed=1)
    assert len(trees) == 4 and trees["roc_auc"].between(0.8, 1.0).all()


def test_baseline_ranks_and_explains_exactly(data):
    baseline = churn.fit_baseline(data["train"], seed=0)
    metrics = churn.evaluate(baseline, data["test"])
    assert list(metrics) == list(CLASSIFICATION_METRIC_KEYS)
    assert metrics["roc_auc"] > 0.85
    X = data["test"].X
    features = list(X.columns)
    values, base = baseline.shap_values(X, features)
    np.testing.assert_allclose(base + values.sum(axis=1), baseline.decision_function(X), rtol=0, atol=1e-6)
