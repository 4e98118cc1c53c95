"""Training stage for churn: one tracked MLflow run, registry aliases, champion rules, reproducibility."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import yaml
from tests.conftest import workspace_settings
from typer.testing import CliRunner

from crmscore import tracking
from crmscore.cli import app
from crmscore.config import Settings
from crmscore.stages import CHURN_MODEL_NAME, simulate_stage, train_churn_stage


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """Settings whose every path lies in tmp_path, with simulated input and a tiny trial budget."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    settings = workspace_settings(tmp_path, churn={"tuning": {"trials": 2, "timeout_seconds": 600, "max_trees": 150}})
    simulate_stage(settings)
    yield settings
    mlflow.set_tracking_uri(None)


@pytest.mark.slow
def test_training_logs_registers_and_promotes(workspace):
    first = train_churn_stage(workspace)
    assert first.promoted and first.decision == "promoted: no champion yet"
    assert 0.5 < first.metrics["test_roc_auc"] <= 1.0
    assert {
        "valid_roc_auc",
        "test_brier",
        "test_ece",
        "test_lift_10",
        "test_capture_20",
        "baseline_test_roc_auc",
        "test_empc",
        "test_empc_fraction",
        "baseline_test_empc",
        "valid_empc",
    } <= set(first.metrics)
    assert first.metrics["test_empc"] > 0 and 0 < first.metrics["test_empc_fraction"] < 1

    client = tracking.client()
    run = client.get_run(first.run_id)
    assert run.data.params["churn.horizon_days"] == "90"
    assert run.data.params["churn.tuning.trials"] == "2"
    assert "data.hash" in run.data.params and "lgbm.num_leaves" in run.data.params
    assert run.data.tags["crmscore.promoted"] == "True"
    assert run.data.tags["mlflow.source.git.commit"]
    assert run.data.metrics["test_roc_auc"] == pytest.approx(first.metrics["test_roc_auc"])
    assert run.data.metrics["test_empc"] == pytest.approx(first.metrics["test_empc"])
    assert run.data.params["churn.empc.clv"] == "200.0"
    artifacts = {a.path for a in client.list_artifacts(first.run_id, "plots")}
    assert {
        f"plots/{n}.png" for n in ("roc", "precision_recall", "calibration", "gains", "lift", "shap_summary")
    } <= artifacts
    features = json.loads(Path(client.download_artifacts(first.run_id, "features.json")).read_text())
    assert all(f["description"] for f in features["features"])
    assert client.list_artifacts(first.run_id, "optuna")

    assert int(tracking.version_by_alias(CHURN_MODEL_NAME, "champion").version) == first.version
    assert int(tracking.version_by_alias(CHURN_MODEL_NAME, "challenger").version) == first.version

    # Same data, params and seed: the same metrics; not better by the margin, so the champion stays.
    second = train_churn_stage(workspace)
    assert second.metrics == first.metrics
    assert not second.promoted and second.decision.startswith("kept champion")
    assert int(tracking.version_by_alias(CHURN_MODEL_NAME, "champion").version) == first.version
    assert int(tracking.version_by_alias(CHURN_MODEL_NAME, "challenger").version) == second.version

    # The registered model scores through pyfunc and holds no training data.
    loaded = tracking.load_model(CHURN_MODEL_NAME)
    estimator = loaded.unwrap_python_model().estimator
    assert not any(hasattr(estimator, name) for name in ("X_", "X_train_", "training_data_"))

    # Promotion by hand, and a clear error for a version that does not exist.
    runner = CliRunner()
    workspace_file = Path("params.yaml")
    workspace_file.write_text(yaml.safe_dump(workspace.model_dump(mode="json")))
    ok = runner.invoke(app, ["promote", "churn", "--version", str(second.version), "--params", str(workspace_file)])
    assert ok.exit_code == 0, ok.output
    assert int(tracking.version_by_alias(CHURN_MODEL_NAME, "champion").version) == second.version
    bad = runner.invoke(app, ["promote", "churn", "--version", "99", "--params", str(workspace_file)])
    assert bad.exit_code == 2
    assert "version 99 does not exist" in bad.output


def test_training_without_input_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings(paths={"simulated_dir": str(tmp_path / "none")})
    from crmscore.errors import DataError

    with pytest.raises(DataError, match="run `crmscore simulate` first"):
        train_churn_stage(settings)
