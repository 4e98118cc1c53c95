"""The main job on data a user brings: a snapshot churn table without dates, ids or revenue, and a
transaction log whose customers never drop out.

Both run the real command line (`crmscore run`, `score`, `evaluate`) on a small workspace: the job goes
on with every model the data can give, says which it cannot and why, and scores with what it has.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import mlflow_workspace, workspace_settings, write_params
from crmscore.cli import app

runner = CliRunner()

SMALL = {
    "churn": {"tuning": {"trials": 2, "timeout_seconds": 30}, "cv_folds": 3, "cv_repeats": 1},
    "clv": {"tuning": {"trials": 2, "timeout_seconds": 30}, "train_cutoffs": 2},
}


def _bank_snapshot(n: int, seed: int) -> pd.DataFrame:
    """A bank's churn table: no id, no dates, no revenue; churn driven by age, balance and activity."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, n)
    balance = np.where(rng.random(n) < 0.35, 0.0, np.round(rng.gamma(3.0, 35_000.0, n), 2))
    active = rng.integers(0, 2, n)
    products = rng.choice([1, 2, 3], n, p=[0.5, 0.4, 0.1])
    logit = -4.2 + 0.07 * age - 1.0 * active + 0.000004 * balance + 1.2 * (products == 3)
    return pd.DataFrame(
        {
            "RowNumber": np.arange(1, n + 1),
            "Surname": [f"S{i % 997}" for i in range(n)],
            "Geography": rng.choice(["France", "Spain", "Germany"], n),
            "Gender": rng.choice(["Female", "Male"], n),
            "Age": age,
            "Tenure": rng.integers(0, 11, n),
            "Balance": balance,
            "NumOfProducts": products,
            "IsActiveMember": active,
            "Exited": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int),
        }
    )


@pytest.fixture(scope="module")
def bank_job(tmp_path_factory):
    root = tmp_path_factory.mktemp("bank")
    (root / "train").mkdir()
    (root / "test").mkdir()
    table = _bank_snapshot(2500, seed=21)
    table.iloc[:2000].to_csv(root / "train" / "customers.csv", index=False)
    table.iloc[2000:].to_csv(root / "test" / "customers.csv", index=False)
    settings = workspace_settings(
        root,
        data={
            "snapshot_date": "2026-06-30",
            "tables": {
                "customers": {
                    "id": "row",
                    "columns": {"churned": "Exited"},
                    "tenure": {"column": "Tenure", "unit": "years"},
                    "exclude": ["RowNumber", "Surname"],
                    "protected": ["Gender"],
                }
            },
        },
        **SMALL,
    )
    params = write_params(settings, root / "params.yaml")
    with mlflow_workspace(root):
        result = runner.invoke(app, ["run", "--input", "train", "--params", str(params)])
        yield root, params, result


def test_snapshot_job_trains_churn_and_says_why_there_is_no_clv(bank_job):
    root, _, result = bank_job
    assert result.exit_code == 0, result.output
    out = result.output
    assert "crmscore-churn version 1" in out and "cv_roc_auc" in out
    assert "note: never features: RowNumber (excluded), Surname (excluded), Gender (protected)" in out
    assert "clv model not trained: customers: column 'monthly_revenue'" in out
    assert "review report:" in out
    scores = pd.read_parquet(root / "reports" / "scores" / "as_of=2026-06-30" / "scores.parquet")
    assert scores["customer_id"].tolist() == list(range(1, 2001))  # the file's rows: joins back to the source
    assert scores["churn_probability"].between(0, 1).all() and scores["clv"].isna().all()
    assert scores["tier"].isna().all()  # nothing ranks these customers: no tiers rather than made-up ones
    assert set(scores["lifecycle_stage"]) == {"new", "active"}  # tenure in years gives signup dates
    manifest = json.loads((root / "reports" / "scores" / "as_of=2026-06-30" / "manifest.json").read_text())
    assert set(manifest["models"]) == {"churn", "segments"} and "clv" in manifest["models_missing"]
    assert manifest["tiers"]["method"] == "none" and "map numeric attributes" in manifest["tiers"]["note"]
    reasons = pd.read_parquet(root / "reports" / "scores" / "as_of=2026-06-30" / "explanations.parquet")
    assert not reasons["feature"].isin(["Gender", "RowNumber", "Surname", "Tenure"]).any()
    assert reasons["text"].str.contains("lowers churn risk by").any()
    assert reasons["text"].str.contains("raises churn risk by").any()
    page = (root / "reports" / "review" / "model_review_2026-06-30.html").read_text()
    assert "Models not trained" in page and "monthly_revenue" in page


def test_churn_model_learns_from_numeric_attributes(bank_job):
    import mlflow

    runs = mlflow.search_runs(experiment_names=["crmscore"], filter_string="tags.`crmscore.stage` = 'train_churn'")
    run = runs.iloc[0]
    assert run["metrics.cv_roc_auc"] > 0.7 and run["metrics.test_roc_auc"] > 0.7
    assert 0 < run["metrics.cv_roc_auc_se"] < 0.05
    features = mlflow.artifacts.load_dict(f"runs:/{run['run_id']}/features.json")
    names = {f["name"] for f in features["features"]}
    assert {"Age", "Balance", "tenure_days", "Geography"} <= names
    assert not names & {"Gender", "Surname", "RowNumber", "Tenure"}


def test_score_without_as_of_uses_the_snapshot_date_and_evaluate_reads_the_other_file(bank_job):
    root, params, _ = bank_job
    result = runner.invoke(app, ["score", "--input", "train", "--out", "again", "--params", str(params)])
    assert result.exit_code == 0, result.output
    assert "as of 2026-06-30" in result.output
    assert "clv       not scored (its columns are empty)" in result.output

    result = runner.invoke(app, ["evaluate", "--input", "test", "--model", "churn", "--params", str(params)])
    assert result.exit_code == 0, result.output
    folder = root / "reports" / "evaluation" / "churn_v1_as_of=2026-06-30"
    summary = json.loads((folder / "metrics.json").read_text())
    assert summary["metrics"]["eval_customers"] == 500 and summary["metrics"]["eval_roc_auc"] > 0.7
    assert (folder / "roc.png").stat().st_size > 5_000 and (folder / "calibration.csv").exists()
    from crmscore import tracking

    version = tracking.client().get_model_version("crmscore-churn", "1")
    run = tracking.client().get_run(version.tags["crmscore.last_evaluation_run"])
    assert run.data.tags["crmscore.stage"] == "evaluate" and run.data.metrics["eval_roc_auc"] > 0.7

    result = runner.invoke(app, ["evaluate", "--input", "test", "--model", "clv", "--params", str(params)])
    assert result.exit_code == 2 and "no champion of crmscore-clv is registered" in result.output


def _no_dropout_log(n: int, seed: int) -> dict[str, pd.DataFrame]:
    """Customers who keep buying at their own Poisson rate for three years: nobody drops out."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2023-11-01")
    signup = start + pd.to_timedelta(rng.integers(0, 180, n), unit="D")
    rate = rng.gamma(2.0, 1 / 40.0, n)  # purchases per day
    rows = []
    for i in range(n):
        days = (pd.Timestamp("2026-10-31") - signup[i]).days
        count = rng.poisson(rate[i] * days)
        when = np.sort(rng.integers(0, days, count))
        rows.append(pd.DataFrame({"customer_id": i + 1, "date": signup[i] + pd.to_timedelta(when, unit="D")}))
    tx = pd.concat(rows, ignore_index=True)
    tx["amount"] = np.round(rng.gamma(4.0, 12.0, len(tx)), 2)
    customers = pd.DataFrame({"customer_id": np.arange(1, n + 1), "signup_date": signup})
    return {"customers": customers, "transactions": tx}


def test_clv_on_customers_who_never_drop_out_is_a_finding_not_a_crash(tmp_path):
    from crmscore.data.load import write_tables
    from crmscore.stages import train_clv_stage

    write_tables(_no_dropout_log(900, seed=4), tmp_path / "log")
    settings = workspace_settings(tmp_path, **SMALL)
    with mlflow_workspace(tmp_path):
        result = train_clv_stage(settings, tmp_path / "log")
        import mlflow

        run = mlflow.get_run(result.run_id)
    assert run.data.tags["crmscore.btyd_boundary"] == "no_dropout"
    assert run.data.tags["crmscore.btyd_transaction_model"] == "NBD"
    assert any("no dropout" in note for note in result.notes)
    assert np.isfinite(result.metrics["btyd_test_gini"]) and np.isfinite(result.metrics["ml_test_gini"])
    assert result.decision.startswith(("ml proposed", "btyd proposed"))
