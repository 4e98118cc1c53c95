"""`crmscore train uplift` and `crmscore plan`: what the campaigns must hold (one line, exit 2 otherwise), and
the learning rows the campaigns give."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from tests.conftest import MAX_DATE
from typer.testing import CliRunner

from crmscore.campaigns import campaign_datasets
from crmscore.cli import app
from crmscore.config import FeatureSettings
from crmscore.data.load import write_tables
from crmscore.errors import DataError
from crmscore.labels import future_value


def _campaign(customers: pd.DataFrame, date: str, name: str, treated_share: float, seed: int = 0, **extra):
    known = customers.loc[customers["signup_date"] <= date, "customer_id"].to_numpy()
    treated = np.random.default_rng(seed).random(len(known)) < treated_share
    return pd.DataFrame(
        {
            "customer_id": known,
            "date": pd.Timestamp(date),
            "campaign": name,
            "treated": treated.astype(int),
            "cost": np.where(treated, 5.0, 0.0),
            **extra,
        }
    )


def _invoke(tmp_path, tables: dict, *command: str):
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "paths": {"models_dir": str(tmp_path / "models"), "reports_dir": str(tmp_path / "reports")},
                "data": {"max_date": str(MAX_DATE)},
            }
        )
    )
    write_tables(tables, tmp_path / "in", "parquet")
    return CliRunner().invoke(app, [*command, "--input", str(tmp_path / "in"), "--params", str(params)])


def _one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_train_uplift_without_campaigns_says_what_is_missing(sim_tables, tmp_path):
    line = _one_line_error(_invoke(tmp_path, sim_tables, "train", "uplift"))
    assert line.startswith("error: campaigns: no campaigns table")


def test_train_uplift_on_a_campaign_without_controls_exits_2(sim_tables, tmp_path):
    everyone = _campaign(sim_tables["customers"], "2025-06-02", "all-in", 1.0)
    line = _one_line_error(_invoke(tmp_path, {**sim_tables, "campaigns": everyone}, "train", "uplift"))
    assert "no control group" in line and "uplift needs randomized controls" in line


def test_train_uplift_on_too_few_treated_exits_2(sim_tables, tmp_path):
    few = _campaign(sim_tables["customers"], "2025-06-02", "tiny", 0.01)
    line = _one_line_error(_invoke(tmp_path, {**sim_tables, "campaigns": few}, "train", "uplift"))
    assert "treated, fewer than 50" in line


def test_train_uplift_on_targeted_campaigns_only_exits_2(sim_tables, tmp_path):
    customers = sim_tables["customers"]
    targeted = _campaign(customers, "2025-06-02", "targeted", 0.4)
    targeted["propensity"] = np.where(targeted["treated"] == 1, 0.6, 0.3)
    line = _one_line_error(_invoke(tmp_path, {**sim_tables, "campaigns": targeted}, "train", "uplift"))
    assert "no randomized campaign" in line


def test_train_uplift_on_a_campaign_whose_outcome_is_not_observed_exits_2(sim_tables, tmp_path):
    late = _campaign(sim_tables["customers"], "2026-10-01", "too-recent", 0.4)
    line = _one_line_error(_invoke(tmp_path, {**sim_tables, "campaigns": late}, "train", "uplift"))
    assert "'too-recent'" in line and "not observed yet" in line


def test_plan_without_an_uplift_champion_exits_2(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"paths": {"models_dir": str(tmp_path / "models")}}))
    result = CliRunner().invoke(app, ["plan", "--as-of", "2026-13-01", "--params", str(params)])
    assert _one_line_error(result) == "error: --as-of: expected a date as YYYY-MM-DD, got '2026-13-01'"


def test_campaign_rows_are_point_in_time_with_outcomes_after_the_date(sim_tables):
    customers = sim_tables["customers"]
    spring = _campaign(customers, "2025-06-02", "spring", 0.4, seed=1)
    autumn = _campaign(customers, "2025-10-01", "autumn", 0.5, seed=2)
    targeted = _campaign(customers, "2026-01-05", "targeted", 0.3, seed=3)
    targeted["propensity"] = 0.3 + 0.2 * (targeted["customer_id"] % 2)
    spring["propensity"] = autumn["propensity"] = np.nan
    tables = {**sim_tables, "campaigns": pd.concat([spring, autumn, targeted], ignore_index=True)}
    data = campaign_datasets(tables, 90, FeatureSettings(), min_per_arm=20)
    assert len(data) == len(spring) + len(autumn) + len(targeted)
    rows = data.campaign == "autumn"
    # Features as of the campaign's day: nobody's recency reaches past it, and outcomes are the next 90 days.
    assert (data.as_of[rows] == np.datetime64("2025-10-01")).all()
    ids = data.customer_id[rows]
    expected = future_value(sim_tables["transactions"], pd.Index(ids), "2025-10-01", 90)
    np.testing.assert_array_equal(data.retained[rows], (expected["future_purchases"] > 0).to_numpy().astype(int))
    np.testing.assert_allclose(data.spend[rows], expected["future_spend"].to_numpy())
    tenure = data.X["tenure_days"].to_numpy()[rows]
    assert tenure.max() <= (pd.Timestamp("2025-10-01") - customers["signup_date"].min()).days
    # Randomized campaigns take their treated share as the propensity; the targeted one keeps its own.
    assert data.randomized[rows].all() and not data.randomized[data.campaign == "targeted"].any()
    np.testing.assert_allclose(data.propensity[rows], autumn["treated"].mean())
    np.testing.assert_allclose(
        np.sort(data.propensity[data.campaign == "targeted"]), np.sort(targeted["propensity"].to_numpy())
    )


def test_campaign_rows_need_a_transactions_table(sim_tables):
    campaigns = _campaign(sim_tables["customers"], "2025-06-02", "spring", 0.4)
    with pytest.raises(DataError, match="needs a transactions table"):
        campaign_datasets({"customers": sim_tables["customers"], "campaigns": campaigns}, 90, FeatureSettings())
