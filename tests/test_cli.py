"""The `crmscore` command: help everywhere, the main job, and one-line errors with exit code 2."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from crmscore.cli import app

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
CRMSCORE = [sys.executable, "-m", "crmscore.cli"]


def _small_params(folder: Path, customers: int = 400) -> Path:
    text = (REPO / "params.yaml").read_text()
    text = text.replace("customers: 20000", f"customers: {customers}")
    text = text.replace("max_date: null ", "max_date: 2026-11-23")
    text = text.replace("trials: 30 ", "trials: 2  ").replace("trials: 20 ", "trials: 2  ")
    text = text.replace("max_trees: 2000 ", "max_trees: 200  ")
    path = folder / "params.yaml"
    path.write_text(text)
    return path


def _run(args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run(CRMSCORE + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_every_command_has_help():
    names = [c.name or c.callback.__name__ for c in app.registered_commands]
    assert {"simulate", "validate", "run", "ui", "params"} <= set(names)
    for name in names:
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, name
        assert "Usage" in result.output
        assert "--params" in result.output, name


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("crmscore ")


def test_simulate_then_validate(tmp_path):
    params = _small_params(tmp_path)
    sim = runner.invoke(
        app, ["simulate", "--customers", "300", "--seed", "5", "--out", str(tmp_path / "sim"), "--params", str(params)]
    )
    assert sim.exit_code == 0, sim.output
    assert "truth" in sim.output
    tx = pd.read_parquet(tmp_path / "sim" / "transactions.parquet")
    tx.loc[0, "amount"] = -1.0
    tx.to_parquet(tmp_path / "sim" / "transactions.parquet")

    val = runner.invoke(
        app, ["validate", "--input", str(tmp_path / "sim"), "--out", str(tmp_path / "val"), "--params", str(params)]
    )
    assert val.exit_code == 0, val.output
    assert "transactions: 1 × amount: negative" in val.output
    rejects = pd.read_parquet(tmp_path / "val" / "rejects" / "transactions.parquet")
    assert rejects["reason"].tolist() == ["amount: negative"]
    assert len(pd.read_parquet(tmp_path / "val" / "rejects" / "customers.parquet")) == 0


def test_run_simulates_validates_trains_and_scores(tmp_path):
    params = _small_params(tmp_path, customers=1200)
    result = _run(["run", "--params", str(params)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "simulated" / "customers.parquet").exists()
    assert (tmp_path / "reports" / "validation" / "validation.json").exists()
    assert "simulated 1,200 customers" in result.stdout
    for name in ("crmscore-churn", "crmscore-clv", "crmscore-segments", "crmscore-uplift"):
        assert f"{name} version" in result.stdout
    assert result.stdout.count("promoted: no champion yet") == 4  # churn, CLV, segments, uplift
    assert "retention plan: contact" in result.stdout and "plan.csv" in result.stdout
    assert (tmp_path / "models" / "mlflow.db").exists()
    scores = pd.read_parquet(tmp_path / "reports" / "scores" / "as_of=2026-10-31" / "scores.parquet")
    assert scores["customer_id"].is_unique and len(scores) > 1000
    assert "scored" in result.stdout and "scores.parquet" in result.stdout
    # One scoring, its horizon open: the track record says so and what the probabilities promise.
    assert "track record: churn v1: no scoring's horizon has closed yet; estimated AUC" in result.stdout
    assert (tmp_path / "reports" / "monitoring" / "performance.parquet").exists()


def test_bad_params_exit_2_with_one_line(tmp_path):
    params = _small_params(tmp_path)
    params.write_text(params.read_text().replace("horizon_days: 90 ", "horizon_days: abc"))
    result = _run(["run", "--params", str(params)], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {params}: churn.horizon_days: expected a positive integer, got 'abc'"
    assert "Traceback" not in result.stderr + result.stdout


def test_missing_column_exit_2_with_one_line(tmp_path):
    (tmp_path / "in").mkdir()
    pd.DataFrame({"CustID": [1], "signup_date": ["2024-01-01"]}).to_csv(tmp_path / "in" / "customers.csv", index=False)
    result = _run(["validate", "--input", "in", "--out", "out"], cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: in/customers.csv: column 'customer_id': required column is missing")
    assert "data.tables.customers.columns" in lines[0]  # says which setting maps it


def test_unknown_explicit_params_file_exit_2(tmp_path):
    result = _run(["params", "--params", "missing.yaml"], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: missing.yaml: file not found (pass --params PATH)"


def test_params_prints_the_settings_in_effect(tmp_path):
    params = _small_params(tmp_path)
    result = runner.invoke(app, ["params", "--params", str(params)])
    assert result.exit_code == 0
    assert "customers: 400" in result.output and "fingerprint" in result.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ui_serves_the_tracking_store(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen(
        CRMSCORE + ["ui", "--port", str(port)],
        start_new_session=True,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        body = None
        while time.monotonic() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    body = response.read().decode()
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.5)
        assert body is not None and "OK" in body.upper(), proc.stdout.read() if proc.poll() is not None else ""
        assert (tmp_path / "models" / "mlflow.db").exists()
    finally:
        # The UI serves from worker processes; stop the whole process group.
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
