"""ML CLV (``crmscore.clv.ml``): leakage-free datasets, the LightGBM spend model, SHAP and tuning.

Runs on the session's 1,500 simulated customers with small tree and trial budgets and one thread
(LightGBM is deterministic for a fixed thread count, and one thread is fastest on data this small).
"""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from crmscore.churn import TuningResult
from crmscore.clv import ml
from crmscore.config import ClvSettings, ClvTuningSettings
from crmscore.errors import DataError, SettingsError
from crmscore.evaluation import value_metrics
from crmscore.features import build_features
from crmscore.labels import future_value

SETTINGS = ClvSettings(tuning=ClvTuningSettings(trials=3, timeout_seconds=600, max_trees=200))


def settings_with(**change) -> ClvSettings:
    """SETTINGS with some keys changed, validated like params.yaml."""
    return ClvSettings.model_validate(SETTINGS.model_dump() | change)


def small_model(**params) -> ml.ClvModel:
    return ml.ClvModel(max_trees=200, early_stopping_rounds=20, n_jobs=1, **params)


@pytest.fixture(scope="module")
def tables(small_sim) -> dict[str, pd.DataFrame]:
    return small_sim.tables()


@pytest.fixture(scope="module")
def data(tables) -> dict[str, ml.ClvData]:
    return ml.clv_datasets(tables, SETTINGS)


@pytest.fixture(scope="module")
def fitted(data) -> ml.ClvModel:
    return small_model().fit(data["train"].X, data["train"].y, data["valid"].X, data["valid"].y)


@pytest.fixture(scope="module")
def two_part(data) -> ml.ClvModel:
    return small_model(objective="two_part").fit(data["train"].X, data["train"].y, data["valid"].X, data["valid"].y)


def gini(data: ml.ClvData, predicted) -> float:
    return value_metrics(data.y, predicted)["gini"]


# --- datasets --------------------------------------------------------------------------------------


def test_no_training_label_window_overlaps_the_test_window(tables, data):
    horizon = pd.Timedelta(days=SETTINGS.horizon_days)
    test_as_of = data["test"].as_of.iloc[0]
    train_dates = sorted(data["train"].as_of.unique())

    assert data["test"].as_of.nunique() == 1
    # The default test date is the last one whose whole horizon is observed.
    assert test_as_of == tables["transactions"]["date"].max().normalize() - horizon
    for split in ("train", "valid"):
        assert (data[split].as_of + horizon <= test_as_of).all()
    # The latest training window closes exactly on the test date; the others are cutoff_step_days apart.
    assert train_dates[-1] + horizon == test_as_of
    assert len(train_dates) == SETTINGS.train_cutoffs
    assert set(np.diff(train_dates)) == {pd.Timedelta(days=SETTINGS.cutoff_step_days)}


def test_validation_takes_whole_customers_out_of_the_stacked_training_cutoffs(tables, data):
    train, valid = data["train"], data["valid"]
    train_ids, valid_ids = set(train.X.index), set(valid.X.index)

    assert not train_ids & valid_ids
    assert len(valid_ids) / len(train_ids | valid_ids) == pytest.approx(SETTINGS.valid_share, abs=0.02)
    # Together they hold every customer known at every training cutoff, once per cutoff.
    rows = pd.concat([train.as_of.reset_index(), valid.as_of.reset_index()])
    assert not rows.duplicated().any()
    for as_of, group in rows.groupby("as_of"):
        known = tables["customers"].loc[tables["customers"]["signup_date"] <= as_of, "customer_id"]
        assert set(group["customer_id"]) == set(known)
    assert set(valid.as_of.unique()) <= set(train.as_of.unique())


def test_labels_are_the_spend_in_the_horizon_after_each_as_of(tables, data):
    for split in data.values():
        as_of = split.as_of.iloc[-1]
        rows = split.as_of == as_of
        expected = future_value(tables["transactions"], split.X.index[rows], as_of, SETTINGS.horizon_days)
        np.testing.assert_allclose(split.y[rows].to_numpy(), expected["future_spend"].to_numpy())
        assert (split.y >= 0).all() and (split.y > 0).any()
        assert len(split) == len(split.X) == len(split.as_of)


def test_datasets_are_reproducible_and_the_seed_moves_the_validation_customers(tables, data):
    again = ml.clv_datasets(tables, SETTINGS)
    other = ml.clv_datasets(tables, settings_with(seed=1))

    assert again["valid"].X.index.equals(data["valid"].X.index)
    assert set(other["valid"].X.index) != set(data["valid"].X.index)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"min_customers": 5000}, r"customers known at the training as-of dates .* clv.min_customers = 5000"),
        ({"horizon_days": 600}, r"no training as-of date after the first signup .* 2 × horizon_days = 1200 days"),
        ({"test_as_of": "2026-06-01"}, "clv.test_as_of: 2026-06-01 leaves its 365-day horizon unobserved"),
    ],
)
def test_datasets_explain_what_is_missing(tables, change, message):
    with pytest.raises(DataError, match=message):
        ml.clv_datasets(tables, settings_with(**change))


def test_datasets_need_transactions_and_some_spend(tables):
    with pytest.raises(DataError, match=r"needs a transactions table with rows .*crmscore\.clv\.contractual"):
        ml.clv_datasets({"customers": tables["customers"]}, SETTINGS)
    no_spend = dict(tables, transactions=tables["transactions"].assign(amount=0.0))
    with pytest.raises(DataError, match="all labels are 0"):
        ml.clv_datasets(no_spend, SETTINGS)
    with pytest.raises(SettingsError, match="clv.valid_share: expected a share strictly between 0 and 1"):
        ml.clv_datasets(tables, settings_with(valid_share=0.0))


# --- model ---------------------------------------------------------------------------------------------


def test_fit_predict_gives_non_negative_spend_per_customer(data, fitted):
    predicted = fitted.predict(data["test"].X)

    assert predicted.shape == (len(data["test"]),)
    assert np.isfinite(predicted).all() and (predicted >= 0).all()
    assert 1 <= fitted.n_trees_["spend"] < 200
    importance = fitted.feature_importance()
    assert importance.sum() == pytest.approx(1.0)
    assert set(importance.index) == set(fitted.feature_names_in_)


@pytest.mark.parametrize("objective", ["tweedie", "two_part"])
def test_predictions_add_up_to_the_training_spend(data, fitted, two_part, objective):
    model = fitted if objective == "tweedie" else two_part
    train = data["train"]

    # The balance correction: log-link Tweedie / gamma fits alone come out 20-30 % low here.
    assert model.predict(train.X).sum() == pytest.approx(train.y.sum(), rel=1e-9)
    assert value_metrics(data["test"].y, model.predict(data["test"].X))["bias"] == pytest.approx(0.0, abs=0.15)


def test_shap_values_add_up_to_the_log_of_the_prediction(data, fitted):
    X = data["test"].X

    values, base = fitted.shap_values(X)

    assert values.shape == (len(X), len(fitted.feature_names_in_))
    assert isinstance(base, float)
    np.testing.assert_allclose(base + values.sum(axis=1), np.log(fitted.predict(X)), rtol=0, atol=1e-6)


def test_same_seed_gives_identical_predictions(data, fitted):
    train, valid, test = data["train"], data["valid"], data["test"]
    again = small_model().fit(train.X, train.y, valid.X, valid.y)
    other_seed = small_model(seed=7).fit(train.X, train.y, valid.X, valid.y)

    np.testing.assert_array_equal(again.predict(test.X), fitted.predict(test.X))
    assert not np.array_equal(other_seed.predict(test.X), fitted.predict(test.X))


def test_model_ranks_future_spend_better_than_past_spend(data, fitted):
    test = data["test"]
    model_gini = gini(test, fitted.predict(test.X))
    # Naive rankings by past spend; the last 90 days is the strongest single one on this data (about 0.915).
    naive = {w: gini(test, test.X[f"monetary_{w}d"].to_numpy()) for w in (30, 90, 365)}

    assert model_gini > 0.9
    assert model_gini > naive[365] + 0.05
    assert model_gini > max(naive.values())


def test_model_follows_the_true_expected_spend(small_sim, tables, fitted):
    truth = small_sim.truth.loc[small_sim.truth["horizon_days"] == SETTINGS.horizon_days]
    X = build_features(tables, truth["as_of"].iloc[0])
    expected = truth.set_index("customer_id")["expected_spend"].reindex(X.index)

    predicted = fitted.predict(X)

    assert stats.spearmanr(predicted, expected).statistic > 0.85
    assert stats.pearsonr(predicted, expected).statistic > 0.75


def test_fit_without_a_validation_set_holds_out_customers_then_refits(data):
    train, test = data["train"], data["test"]

    model = small_model().fit(train.X, train.y)

    assert 1 <= model.n_trees_["spend"] <= 200
    assert gini(test, model.predict(test.X)) > 0.9
    values, base = model.shap_values(test.X)
    np.testing.assert_allclose(base + values.sum(axis=1), np.log(model.predict(test.X)), atol=1e-6)


def test_two_part_model_predicts_spend_but_has_no_exact_shap_values(data, two_part):
    test = data["test"]
    predicted = two_part.predict(test.X)

    assert set(two_part.boosters_) == {"purchase", "amount"}
    assert (predicted >= 0).all() and np.isfinite(predicted).all()
    assert gini(test, predicted) > 0.9
    assert two_part.feature_importance().sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="SHAP reasons need clv.objective: tweedie"):
        two_part.shap_values(test.X)


def test_model_is_a_cloneable_estimator_that_keeps_no_training_data(data, fitted):
    copy = clone(fitted)

    assert copy.get_params() == fitted.get_params()
    assert not hasattr(copy, "boosters_")
    with pytest.raises(NotFittedError):
        copy.predict(data["test"].X)
    assert clone(ml.ClvModel(objective="two_part", params={"num_leaves": 7})).get_params()["params"] == {
        "num_leaves": 7
    }
    # Nothing the size of the training data is kept (the model is logged to MLflow).
    for value in vars(fitted).values():
        assert not isinstance(value, pd.DataFrame | pd.Series)
        assert np.size(value) < len(data["train"])
    assert all(getattr(b, "train_set", None) is None for b in fitted.boosters_.values())
    assert len(pickle.dumps(fitted)) < 200_000


def test_unseen_categories_become_missing_and_empty_features_are_dropped(data, fitted, caplog):
    X = data["test"].X.copy()
    X["region"] = X["region"].cat.add_categories("atlantis")
    X.iloc[:5, X.columns.get_loc("region")] = "atlantis"

    with caplog.at_level(logging.INFO, logger="crmscore"):  # scoring reports them; the model logs the count
        predicted = fitted.predict(X)
    assert "region: 5 value(s) never seen in training" in caplog.text
    assert (predicted >= 0).all()

    train = data["train"]
    with pytest.warns(UserWarning, match="dropping features with no value at all: empty"):
        model = small_model().fit(train.X.assign(empty=np.nan), train.y)
    assert "empty" not in model.feature_names_in_ and model.dropped_features_ == ["empty"]
    assert model.predict(data["test"].X).shape == (len(data["test"]),)


def test_model_rejects_bad_input_with_a_clear_message(data):
    train = data["train"]
    with pytest.raises(DataError, match="every y value is 0"):
        small_model().fit(train.X, np.zeros(len(train)))
    with pytest.raises(DataError, match=r"1 negative spend value\(s\)"):
        small_model().fit(train.X, np.r_[-1.0, train.y.to_numpy()[1:]])
    with pytest.raises(TypeError, match="expects a pandas DataFrame"):
        small_model().fit(train.X.to_numpy(), train.y)
    with pytest.raises(ValueError, match="unknown CLV objective 'poisson'"):
        small_model(objective="poisson").fit(train.X, train.y)
    with pytest.raises(DataError, match="input lacks feature column"):
        small_model().fit(train.X, train.y).predict(train.X.drop(columns="recency_days"))


# --- tuning --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["gini", "mae"])
def test_tuning_starts_from_the_defaults_and_its_best_model_is_reproduced_by_fit(data, metric):
    settings = settings_with(selection_metric=metric)
    train, valid = data["train"], data["valid"]

    result = ml.tune_clv(train, valid, settings, n_jobs=1)

    assert isinstance(result, TuningResult)
    assert result.trials == 3 and len(result.trials_table) == 3
    first = result.trials_table["value"].iloc[0]
    assert result.best_value <= first if metric == "mae" else result.best_value >= first
    assert result.trials_table["params_num_leaves"].iloc[0] == ml.DEFAULT_CLV_PARAMS["num_leaves"]
    assert "tweedie_variance_power" in result.best_params
    # Fitting with the best parameters gives the model the search scored.
    model = ml.model_from_settings(settings, result.best_params, n_jobs=1).fit(train.X, train.y, valid.X, valid.y)
    assert value_metrics(valid.y, model.predict(valid.X))[metric] == pytest.approx(result.best_value, rel=1e-9)


def test_tuning_the_two_part_model(data):
    settings = settings_with(objective="two_part")

    result = ml.tune_clv(data["train"], data["valid"], settings, n_jobs=1)

    assert result.trials == 3
    assert "params_tweedie_variance_power" not in result.trials_table.columns
    model = ml.model_from_settings(settings, result.best_params, n_jobs=1)
    assert model.objective == "two_part" and model.max_trees == 200 and model.seed == SETTINGS.seed
