"""CLV training stage and the registry-facing CLV estimators: tracked run, comparison, registry, promotion."""

from __future__ import annotations

import pickle

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.base import clone
from tests.conftest import workspace_settings
from typer.testing import CliRunner

from crmscore import tracking
from crmscore.cli import app
from crmscore.clv import btyd
from crmscore.clv.value import (
    BTYD_FEATURES,
    BtydClv,
    ContractualClv,
    lifetime_value,
    mean_discount_factor,
    summary_from_features,
)
from crmscore.config import Settings
from crmscore.errors import DataError
from crmscore.features import build_features
from crmscore.stages import (
    CHURN_MODEL_NAME,
    CLV_MODEL_NAME,
    simulate_stage,
    train_churn_stage,
    train_clv_stage,
)

AS_OF = pd.Timestamp("2025-10-31")


@pytest.fixture(scope="module")
def features_at(small_sim):
    return build_features(small_sim.tables(), AS_OF)


def test_summary_from_features_equals_rfm_summary(small_sim, features_at):
    for unit in ("W", "D"):
        expected = btyd.rfm_summary(small_sim.transactions, AS_OF, unit)
        got = summary_from_features(features_at, unit)
        assert got.attrs["time_unit"] == unit
        assert list(got.index) == list(expected.index)
        for column in ("frequency", "recency", "T", "monetary_value"):
            np.testing.assert_allclose(got[column], expected[column], rtol=1e-12, atol=1e-9, err_msg=column)


def test_btyd_clv_predicts_spend_and_discounted_value(features_at):
    model = BtydClv(horizon_days=365, annual_discount_rate=0.10, margin=0.3).fit(features_at)
    # A customer who signed up but has not bought yet: outside the BTYD population.
    newcomer = features_at.iloc[[0]].copy()
    newcomer.index = pd.Index([-1], name=features_at.index.name)
    newcomer[list(BTYD_FEATURES)] = np.nan
    features_at = pd.concat([newcomer, features_at])
    spend = model.predict(features_at)
    value = model.clv(features_at)
    never_bought = features_at["repeat_purchase_days"].isna().to_numpy()
    assert never_bought.any() and (~never_bought).any()
    assert np.all(spend[never_bought] == 0) and np.all(spend[~never_bought] > 0)
    # Discounting and margin lower the value, by less than the margin alone would.
    bought = ~never_bought
    ratio = value[bought] / spend[bought]
    assert np.all(ratio < 0.3) and np.all(ratio > 0.3 * (1.1**-1))
    # Spend = expected purchases × expected average spend (no discount, no margin).
    np.testing.assert_allclose(
        spend[bought],
        model.expected_purchases(features_at)[bought] * model.expected_average_spend(features_at)[bought],
        rtol=1e-9,
    )
    p_alive = model.probability_alive(features_at)
    assert np.isnan(p_alive[never_bought]).all() and ((p_alive[bought] > 0) & (p_alive[bought] <= 1)).all()
    table = model.parameter_table()
    assert set(table["parameter"]) == {"r", "alpha", "a", "b", "p", "q", "gamma"}
    assert (table["std_error"] > 0).all() and (table["lower_95"] < table["estimate"]).all()
    # Only parameters are kept: the pickled estimator is tiny whatever the data size.
    assert len(pickle.dumps(model)) < 5_000
    assert clone(model).get_params() == model.get_params()
    with pytest.raises(AttributeError, match="not fitted"):
        BtydClv().predict(features_at)


def test_btyd_clv_needs_transaction_features():
    with pytest.raises(DataError, match="repeat_purchase_days"):
        BtydClv().fit(pd.DataFrame({"tenure_days": [1.0, 2.0]}))


def test_lifetime_value_discounts_plain_spend_evenly():
    class Flat:
        def predict(self, X):
            return np.full(len(X), 100.0)

    X = pd.DataFrame({"a": [1, 2]})
    factor = mean_discount_factor(365, 0.10)
    assert 1 / 1.1 < factor < 1
    np.testing.assert_allclose(lifetime_value(Flat(), X, 365, 0.10, 0.5), 50 * factor)
    assert mean_discount_factor(365, 0.0) == 1.0


def test_contractual_clv_needs_churn_probability():
    X = pd.DataFrame({"monthly_revenue": [50.0, 80.0], "churn_probability": [0.1, 0.5]})
    model = ContractualClv(churn_horizon_days=30, horizon_days=365, annual_discount_rate=0.0).fit(X)
    value = model.predict(X)
    assert value[0] > value[1] > 0 and value[0] < 12 * 50
    with pytest.raises(DataError, match="churn_probability"):
        model.predict(X[["monthly_revenue"]])
    with pytest.raises(DataError, match="monthly_revenue"):
        ContractualClv().fit(X[["churn_probability"]])


def test_tracking_curve_counts_every_repeat_purchase(small_sim):
    model = btyd.BetaGeoModel().fit(btyd.rfm_summary(small_sim.transactions, AS_OF, "W"))
    end = AS_OF + pd.Timedelta(days=365)
    curve = btyd.repeat_transactions_tracking(model, small_sim.transactions, AS_OF, end, "W")
    assert curve["actual"].is_monotonic_increasing and curve["predicted"].is_monotonic_increasing
    assert curve["period_end"].iloc[-1] == end
    holdout = btyd.rfm_summary(small_sim.transactions, AS_OF, "W", holdout_end=end)
    calibration_end = curve.loc[curve["period_end"] <= AS_OF, "actual"].iloc[-1]
    # Up to the last full week before the as-of date; the final point includes every holdout purchase.
    assert calibration_end <= holdout["frequency"].sum()
    assert curve["actual"].iloc[-1] == holdout["frequency"].sum() + holdout["frequency_holdout"].sum()
    # The model tracks the calibration period it was fitted on within a few percent.
    assert curve["predicted"].iloc[-1] == pytest.approx(curve["actual"].iloc[-1], rel=0.25)


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    settings = workspace_settings(tmp_path, clv={"tuning": {"trials": 2, "timeout_seconds": 600, "max_trees": 150}})
    simulate_stage(settings)
    yield settings
    mlflow.set_tracking_uri(None)


@pytest.mark.slow
def test_clv_training_compares_registers_and_promotes(workspace):
    first = train_clv_stage(workspace)
    assert first.promoted and "no champion yet" in first.decision
    for name in ("ml", "btyd"):
        assert 0.5 < first.metrics[f"{name}_test_gini"] <= 1.0
        assert {f"{name}_test_{k}" for k in ("spearman", "decile_mape", "mae", "bias", "top_decile_capture")} <= set(
            first.metrics
        )
    client = tracking.client()
    run = client.get_run(first.run_id)
    proposed = run.data.tags["crmscore.clv_proposed"]
    better = max(("ml", "btyd"), key=lambda k: first.metrics[f"{k}_test_gini"])
    assert proposed == better
    assert run.data.params["clv.horizon_days"] == "365"
    assert run.data.metrics["btyd_r_se"] > 0 and "btyd_holdout_rel_error" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(first.run_id, "plots")}
    assert {
        f"plots/{n}.png"
        for n in (
            "value_gains",
            "value_deciles",
            "predicted_vs_actual",
            "btyd_tracking",
            "btyd_conditional_expectations",
        )
    } <= artifacts
    parameters = pd.read_csv(client.download_artifacts(first.run_id, "btyd/parameters.csv"))
    assert {"parameter", "estimate", "std_error", "lower_95", "upper_95"} <= set(parameters.columns)

    # Both models are registered, tagged by kind; the proposed one carries challenger and champion.
    versions = {
        v.tags.get("crmscore.clv_model"): int(v.version)
        for v in client.search_model_versions(f"name='{CLV_MODEL_NAME}'")
    }
    assert set(versions) == {"ml", "btyd"}
    assert versions[proposed] == first.version
    assert int(tracking.version_by_alias(CLV_MODEL_NAME, "champion").version) == first.version
    assert int(tracking.version_by_alias(CLV_MODEL_NAME, "challenger").version) == first.version

    # The BTYD model is served through pyfunc and holds only fitted parameters.
    served = tracking.load_model(CLV_MODEL_NAME, version=versions["btyd"])
    estimator = served.unwrap_python_model().estimator
    assert isinstance(estimator, BtydClv)
    assert len(pickle.dumps(estimator)) < 5_000

    # Same data and seed: same metrics; no better by the margin, so the champion stays.
    second = train_clv_stage(workspace)
    assert second.metrics == first.metrics
    assert not second.promoted and "kept champion" in second.decision
    assert int(tracking.version_by_alias(CLV_MODEL_NAME, "champion").version) == first.version

    params_file = workspace.paths.models_dir + "/../params.yaml"
    with open(params_file, "w") as handle:
        yaml.safe_dump(workspace.model_dump(mode="json"), handle)
    ok = CliRunner().invoke(app, ["promote", "clv", "--version", str(second.version), "--params", params_file])
    assert ok.exit_code == 0, ok.output
    assert int(tracking.version_by_alias(CLV_MODEL_NAME, "champion").version) == second.version


def _subscription_tables(n: int = 800, seed: int = 0) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    contract = rng.choice(["month-to-month", "one year", "two year"], size=n, p=[0.5, 0.25, 0.25])
    tenure = rng.integers(1, 72, size=n)
    revenue = rng.uniform(20, 110, size=n).round(2)
    logit = -1.0 + 1.5 * (contract == "month-to-month") - 0.03 * tenure + 0.01 * (revenue - 60)
    churned = rng.random(n) < 1 / (1 + np.exp(-logit))
    customers = pd.DataFrame(
        {
            "customer_id": np.arange(1, n + 1, dtype=np.int64),
            "signup_date": pd.Timestamp("2018-01-31") - pd.to_timedelta(tenure * 30, unit="D"),
            "churned": churned,
            "monthly_revenue": revenue,
            "contract": pd.Categorical(contract),
        }
    )
    return customers


@pytest.mark.slow
def test_subscription_data_gets_contractual_clv(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    input_dir = tmp_path / "input"
    input_dir.mkdir()
    _subscription_tables().to_csv(input_dir / "customers.csv", index=False)
    settings = Settings(
        paths={"models_dir": str(tmp_path / "models"), "reports_dir": str(tmp_path / "reports")},
        data={"max_date": "2026-11-23"},
        churn={"tuning": {"trials": 2, "timeout_seconds": 600, "max_trees": 150}},
    )
    with pytest.raises(DataError, match="train churn"):
        train_clv_stage(settings, input_dir)
    train_churn_stage(settings, input_dir)
    result = train_clv_stage(settings, input_dir)
    assert result.promoted and result.metrics["clv_total"] > 0
    assert 0.2 < result.metrics["clv_top20_share"] < 1
    version = tracking.client().get_model_version(CLV_MODEL_NAME, str(result.version))
    assert version.tags["crmscore.clv_model"] == "contractual"
    assert tracking.version_by_alias(CHURN_MODEL_NAME, "champion") is not None
    mlflow.set_tracking_uri(None)
