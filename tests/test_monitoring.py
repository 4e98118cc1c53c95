"""The track record: past scorings checked against what happened, estimates before the outcomes are in."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from conftest import mlflow_workspace, workspace_settings, write_params
from crmscore import monitoring
from crmscore.cli import app
from crmscore.io import write_parquet

runner = CliRunner()
T0 = pd.Timestamp("2025-01-31")  # the models know the history up to here
SCORINGS = ["2025-01-31", "2025-07-31", "2026-01-31", "2026-07-31", "2026-10-31"]
END = pd.Timestamp("2026-10-31")


# --- estimates and intervals ------------------------------------------------------------------------------------


def test_the_expected_auc_is_what_calibrated_probabilities_give_on_average():
    rng = np.random.default_rng(0)
    p = rng.beta(0.8, 2.0, 3_000)
    estimate = monitoring.expected_churn_metrics(p)
    draws = [rng.random(len(p)) < p for _ in range(300)]
    aucs = [roc_auc_score(y, p) for y in draws]
    briers = [np.mean((p - y) ** 2) for y in draws]
    assert abs(estimate["roc_auc"] - np.mean(aucs)) < 0.004
    assert abs(estimate["brier"] - np.mean(briers)) < 0.002
    assert estimate["churn_rate"] == pytest.approx(p.mean())


def test_ties_and_certainty_give_the_textbook_values():
    assert monitoring.expected_churn_metrics(np.full(100, 0.3))["roc_auc"] == pytest.approx(0.5)
    certain = monitoring.expected_churn_metrics(np.r_[np.zeros(50), np.ones(50)])
    assert certain["roc_auc"] == pytest.approx(1.0) and certain["brier"] == 0.0
    assert np.isnan(monitoring.expected_churn_metrics(np.ones(10))["roc_auc"])  # nobody stays: undefined


def test_the_bootstrap_is_seeded_and_covers_the_mean():
    values = np.random.default_rng(1).normal(10, 2, 2_000)
    first = monitoring.bootstrap_interval(np.mean, (values,), 300, np.random.default_rng(5))
    again = monitoring.bootstrap_interval(np.mean, (values,), 300, np.random.default_rng(5))
    assert first == again
    assert first[0] < values.mean() < first[1]
    assert first[1] - first[0] == pytest.approx(2 * 1.96 * 2 / np.sqrt(2_000), rel=0.2)


# --- a history scored every half year ----------------------------------------------------------------------------


def _truncated(source: Path, target: Path, day: pd.Timestamp) -> None:
    """The tables as they stood on ``day``: what a model trained then could know."""
    target.mkdir(parents=True, exist_ok=True)
    customers = pd.read_parquet(source / "customers.parquet")
    write_parquet(customers.loc[customers["signup_date"] <= day], target / "customers.parquet")
    for name, column in (("transactions", "date"), ("interactions", "date")):
        frame = pd.read_parquet(source / f"{name}.parquet")
        write_parquet(frame.loc[frame[column] <= day], target / f"{name}.parquet")
    payments = pd.read_parquet(source / "payments.parquet")
    payments = payments.loc[payments["due_date"] <= day].copy()
    later = payments["paid_date"] > day
    payments.loc[later, ["paid_date", "amount_paid"]] = [pd.NaT, np.nan]
    write_parquet(payments, target / "payments.parquet")


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """Models trained on the history up to T0, then scored every half year up to the data's end."""
    from crmscore import stages

    root = tmp_path_factory.mktemp("monitoring")
    budget = {"trials": 1, "timeout_seconds": 600, "max_trees": 80}
    with mlflow_workspace(root):
        settings = workspace_settings(
            root,
            churn={"train_cutoffs": 2, "tuning": budget},
            clv={"model": "ml", "horizon_days": 180, "train_cutoffs": 2, "tuning": budget},
            scoring={"out_dir": str(root / "scores")},
            monitoring={"bootstrap_samples": 50, "out_dir": str(root / "monitoring")},
        )
        settings.simulate = settings.simulate.model_copy(update={"start_date": dt.date(2022, 11, 1)})
        stages.simulate_stage(settings)
        _truncated(root / "sim", root / "then", T0)
        for train in (stages.train_churn_stage, stages.train_clv_stage, stages.train_segments_stage):
            train(settings, root / "then")
        for day in SCORINGS:
            stages.score_stage(settings, pd.Timestamp(day), root / "sim", progress=False)
        result = stages.monitor_stage(settings, root / "sim")
        params = write_params(settings, root / "params.yaml")
        yield root, settings, result, params


def _rows(performance, model, metric, kind):
    mine = performance.loc[(performance["model"] == model) & (performance["metric"] == metric)]
    return mine.loc[mine["kind"] == kind].set_index("as_of")


def test_horizons_close_by_the_data_end(history):
    _, settings, result, _ = history
    for item in result.scorings:
        day = pd.Timestamp(item["as_of"])
        churn_closed = day + pd.Timedelta(days=settings.churn.horizon_days) <= END
        clv_closed = day + pd.Timedelta(days=settings.clv.horizon_days) <= END
        assert item["status"] == {
            "churn": "closed" if churn_closed else "open",
            "clv": "closed" if clv_closed else "open",
        }
    assert [s["as_of"] for s in result.scorings] == SCORINGS


def test_realized_auc_is_the_auc_of_what_happened(history):
    root, _, result, _ = history
    tx = pd.read_parquet(root / "sim" / "transactions.parquet")
    realized = _rows(result.performance, "churn", "roc_auc", "realized")
    assert len(realized) == 4  # every scoring but the last has a closed churn horizon
    for day, row in realized.iterrows():
        scores = pd.read_parquet(root / "scores" / f"as_of={day.date()}" / "scores.parquet")
        window = tx.loc[(tx["date"] > day) & (tx["date"] <= day + pd.Timedelta(days=90)), "customer_id"]
        churned = ~scores["customer_id"].isin(window)
        assert row["value"] == pytest.approx(roc_auc_score(churned, scores["churn_probability"]))
        assert row["lower"] < row["value"] < row["upper"]
        assert row["n"] == len(scores)


def test_every_scoring_has_estimates_and_closed_ones_keep_them_beside_the_outcome(history):
    _, _, result, _ = history
    perf = result.performance
    estimated = _rows(perf, "churn", "roc_auc", "estimated")
    assert list(estimated.index.strftime("%Y-%m-%d")) == SCORINGS
    realized = _rows(perf, "churn", "roc_auc", "realized")
    gaps = (realized["value"] - estimated.loc[realized.index, "value"]).abs()
    assert (gaps < 0.05).all(), gaps  # the estimate is close where calibration holds
    spend = _rows(perf, "clv", "total_spend", "estimated")
    assert len(spend) == len(SCORINGS) and (spend["value"] > 0).all()
    assert {"gini", "bias", "decile_mape", "top_decile_capture"} <= set(perf.loc[perf["model"] == "clv", "metric"])
    assert perf.loc[perf["model"] == "tiers", "metric"].str.startswith("realized_value[").any()
    assert perf["metric"].str.startswith("psi[").any()


def test_the_track_record_is_written_and_identical_on_rerun(history):
    from crmscore import stages

    root, settings, result, _ = history
    written = pd.read_parquet(root / "monitoring" / "performance.parquet")
    assert list(written.columns) == monitoring.COLUMNS
    pd.testing.assert_frame_equal(written, result.performance)
    with mlflow_workspace(root):
        again = stages.monitor_stage(settings, root / "sim")
    pd.testing.assert_frame_equal(again.performance, result.performance)
    summary = json.loads((root / "monitoring" / "track_record.json").read_text())
    assert summary["verdict"] == result.verdict and len(summary["scorings"]) == len(SCORINGS)


def test_the_track_record_is_logged_under_the_champion_run(history):
    import mlflow

    from crmscore import tracking

    root, settings, result, _ = history
    with mlflow_workspace(root):
        tracking.configure(settings.paths.models_dir, settings.tracking.experiment)
        client = tracking.client()
        run = client.get_run(result.mlflow_runs["churn"])
        champion = tracking.version_by_alias(tracking.CHURN_MODEL_NAME, tracking.CHAMPION)
        assert run.data.tags["mlflow.parentRunId"] == champion.run_id
        history_ = client.get_metric_history(run.info.run_id, "realized_roc_auc")
        assert len(history_) == 4
        assert len(client.get_metric_history(run.info.run_id, "estimated_roc_auc")) == len(SCORINGS)
        mlflow.set_tracking_uri(None)


def test_the_cli_prints_the_table_and_the_verdict(history):
    root, _, result, params = history
    with mlflow_workspace(root):
        done = runner.invoke(app, ["monitor", "--input", str(root / "sim"), "--params", str(params)])
    assert done.exit_code == 0, done.output
    assert result.verdict in done.output and result.verdict.startswith("churn v1: realized AUC")
    assert all(day in done.output for day in SCORINGS)


def test_missing_customers_are_counted_and_a_lost_version_still_evaluated(history, tmp_path):
    root, settings, _, _ = history
    current = tmp_path / "current"
    shutil.copytree(root / "sim", current)
    customers = pd.read_parquet(current / "customers.parquet")
    gone = customers["customer_id"].iloc[:10]
    write_parquet(customers.iloc[10:], current / "customers.parquet")
    for name in ("transactions", "payments", "interactions"):
        frame = pd.read_parquet(current / f"{name}.parquet")
        write_parquet(frame.loc[~frame["customer_id"].isin(gone)], current / f"{name}.parquet")
    scores = tmp_path / "scores"
    shutil.copytree(root / "scores" / "as_of=2025-07-31", scores / "as_of=2025-07-31")
    frame = pd.read_parquet(scores / "as_of=2025-07-31" / "scores.parquet")
    frame["churn_model_version"] = 99  # a version the registry never held
    write_parquet(frame, scores / "as_of=2025-07-31" / "scores.parquet")
    tables = {n: pd.read_parquet(current / f"{n}.parquet") for n in ("customers", "transactions")}
    perf = monitoring.track_record(tables, monitoring.past_scorings(scores), settings)
    missing = _rows(perf, "data", "customers_missing", "realized")
    assert missing["value"].iloc[0] == int(frame["customer_id"].isin(gone).sum()) > 0
    auc = _rows(perf, "churn", "roc_auc", "realized")
    assert auc["version"].iloc[0] == 99 and auc["n"].iloc[0] == len(frame) - missing["value"].iloc[0]


def test_no_closed_scoring_says_so(history, tmp_path):
    root, settings, _, params = history
    shutil.copytree(root / "scores" / "as_of=2026-10-31", tmp_path / "scores" / "as_of=2026-10-31")
    with mlflow_workspace(root):
        done = runner.invoke(
            app,
            [
                "monitor",
                "--input",
                str(root / "sim"),
                "--scores",
                str(tmp_path / "scores"),
                "--out",
                str(tmp_path / "m"),
            ]
            + ["--params", str(params)],
        )
    assert done.exit_code == 0, done.output
    assert "churn v1: no scoring's horizon has closed yet; estimated AUC" in done.output


def test_no_scoring_folder_is_one_line(history, tmp_path):
    root, _, _, params = history
    (tmp_path / "empty").mkdir()
    with mlflow_workspace(root):
        done = runner.invoke(app, ["monitor", "--scores", str(tmp_path / "empty"), "--params", str(params)])
    assert done.exit_code == 2
    assert done.stderr.strip().startswith("error: ") and "no scoring folder" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


# --- segments and the reference calibration, on hand-made scorings ----------------------------------------------

SEGMENT_DATES = [pd.Timestamp(d) for d in ("2025-01-31", "2025-05-31", "2025-09-30")]


def _segment_history(lift: float = 0.3, shift_last: float = 0.0):
    """3,000 customers in regions a, b and c scored three times; each stays (buys 45 days on) with probability
    1 - p, except region a at the last scoring, whose churn runs ``lift`` above the predictions."""
    from crmscore.config import Settings

    rng = np.random.default_rng(4)
    n = 3_000
    ids = np.arange(1, n + 1)
    region = np.array(["a", "b", "c"])[ids % 3]
    customers = pd.DataFrame({"customer_id": ids, "signup_date": pd.Timestamp("2024-01-01"), "region": region})
    customers["region"] = customers["region"].astype("category")
    scorings, purchases = [], []
    for k, as_of in enumerate(SEGMENT_DATES):
        p = rng.beta(2.0, 3.0, n)
        truth = p.copy()
        if k == len(SEGMENT_DATES) - 1:
            truth = np.clip(truth + shift_last + np.where(region == "a", lift, 0.0), 0, 1)
        stays = rng.random(n) >= truth
        purchases.append(
            pd.DataFrame({"customer_id": ids[stays], "date": as_of + pd.Timedelta(days=45), "amount": 10.0})
        )
        scores = pd.DataFrame(
            {"customer_id": ids, "churn_probability": p, "risk_band": "low", "churn_model_version": 1}
        )
        scorings.append(monitoring.PastScoring(as_of, Path(f"as_of={as_of.date()}"), scores, {}))
    # Customer 1 also buys on each scoring date (outside every window) and once after the last horizon closed,
    # so the history reaches each scoring date and closes the last scoring's churn horizon.
    days = [*SEGMENT_DATES, pd.Timestamp("2026-01-31")]
    purchases.append(pd.DataFrame({"customer_id": 1, "date": days, "amount": 10.0}))
    tables = {"customers": customers, "transactions": pd.concat(purchases, ignore_index=True)}
    settings = Settings(monitoring={"bootstrap_samples": 100})
    return tables, scorings, settings


def test_a_break_in_one_segment_is_flagged_where_it_happens():
    tables, scorings, settings = _segment_history()
    perf = monitoring.track_record(tables, scorings, settings)
    flags = perf.loc[perf["flag"] & perf["metric"].str.startswith("calibration_gap[")]
    assert set(zip(flags["as_of"], flags["metric"], strict=True)) == {(SEGMENT_DATES[-1], "calibration_gap[region=a]")}
    gap = _rows(perf, "churn", "calibration_gap[region=a]", "realized").loc[SEGMENT_DATES[-1], "value"]
    assert 0.2 < gap < 0.4
    assert "calibration broke at the 2025-09-30 scoring (region=a: realized churn +" in monitoring.verdict(perf)
    calm, scorings, settings = _segment_history(lift=0.0)
    quiet = monitoring.track_record(calm, scorings, settings)
    assert not quiet.loc[quiet["metric"].str.startswith("calibration_gap"), "flag"].any()
    assert monitoring.verdict(quiet).endswith("calibration holds")


def test_estimates_use_only_outcomes_known_on_the_scoring_date():
    tables, scorings, settings = _segment_history()
    tx = tables["transactions"]
    perf = monitoring.track_record(tables, scorings, settings)
    estimated = _rows(perf, "churn", "churn_rate", "estimated")["value"]
    # Whatever happened after the last scoring cannot change any estimate…
    until_last = monitoring.track_record(
        {**tables, "transactions": tx.loc[tx["date"] <= SEGMENT_DATES[-1]]}, scorings, settings
    )
    pd.testing.assert_series_equal(_rows(until_last, "churn", "churn_rate", "estimated")["value"], estimated)
    # …while the outcomes of earlier scorings, closed by a scoring's date, calibrate it: without any, it is raw.
    early = monitoring.track_record({**tables, "transactions": tx.loc[tx["date"] <= "2025-04-30"]}, scorings, settings)
    raw = _rows(early, "churn", "churn_rate", "estimated")["value"]
    assert list(raw) == pytest.approx([s.scores["churn_probability"].mean() for s in scorings])
    assert estimated.iloc[0] == pytest.approx(raw.iloc[0])  # nothing was known before the first scoring
    assert abs(estimated.iloc[-1] - raw.iloc[-1]) > 1e-4


def test_snapshot_scorings_are_judged_by_the_churned_flag_of_a_later_table():
    from crmscore.config import Settings

    rng = np.random.default_rng(8)
    n = 800
    ids = np.arange(1, n + 1)
    p = rng.beta(2.0, 4.0, n)
    later = pd.DataFrame({"customer_id": ids[5:], "churned": (rng.random(n) < p)[5:]})  # five customers gone
    scores = pd.DataFrame({"customer_id": ids, "churn_probability": p, "risk_band": "low"})
    scoring = monitoring.PastScoring(pd.Timestamp("2026-01-31"), Path("as_of=2026-01-31"), scores, {})
    settings = Settings(monitoring={"bootstrap_samples": 20})
    tables = {"customers": later}
    too_soon = monitoring.track_record(tables, [scoring], settings, snapshot_date=pd.Timestamp("2026-03-31"))
    assert set(too_soon.loc[too_soon["model"] == "churn", "status"]) == {"open"}
    perf = monitoring.track_record(tables, [scoring], settings, snapshot_date=pd.Timestamp("2026-05-31"))
    auc = _rows(perf, "churn", "roc_auc", "realized")
    assert auc["value"].iloc[0] == pytest.approx(roc_auc_score(later["churned"], p[5:]))
    assert _rows(perf, "data", "customers_missing", "realized")["value"].iloc[0] == 5
