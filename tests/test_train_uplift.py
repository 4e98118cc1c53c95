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


def test_a_campaign_stating_one_propensity_for_everyone_is_randomized(sim_tables):
    customers = sim_tables["customers"]
    stated = _campaign(customers, "2025-06-02", "stated", 0.4, seed=1, propensity=0.4)
    data = campaign_datasets({**sim_tables, "campaigns": stated}, 90, FeatureSettings(), min_per_arm=20)
    assert data.randomized.all()
    np.testing.assert_allclose(data.propensity, 0.4)


def test_retained_is_still_buying_at_the_window_end(sim_tables):
    campaigns = _campaign(sim_tables["customers"], "2025-06-02", "spring", 0.4)
    data = campaign_datasets({**sim_tables, "campaigns": campaigns}, 90, FeatureSettings(), active_days=30)
    tail = future_value(sim_tables["transactions"], pd.Index(data.customer_id), "2025-08-01", 30)
    np.testing.assert_array_equal(data.retained, (tail["future_purchases"] > 0).to_numpy().astype(int))
    window = future_value(sim_tables["transactions"], pd.Index(data.customer_id), "2025-06-02", 90)
    np.testing.assert_allclose(data.spend, window["future_spend"].to_numpy())  # spend over the whole window
    assert data.retained.mean() < (window["future_purchases"] > 0).mean()


def test_campaign_rows_need_a_transactions_table(sim_tables):
    campaigns = _campaign(sim_tables["customers"], "2025-06-02", "spring", 0.4)
    with pytest.raises(DataError, match="needs a transactions table"):
        campaign_datasets({"customers": sim_tables["customers"], "campaigns": campaigns}, 90, FeatureSettings())


# --- end to end on the simulated campaigns ------------------------------------------------------------------


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """Churn, CLV and segments champions on 1,500 simulated customers with the default campaigns, then the
    uplift model, a scoring as of the data's last day and a plan of 50 contacts' worth."""
    from tests.conftest import champions

    from crmscore.stages import plan_stage, score_stage, train_uplift_stage

    root = tmp_path_factory.mktemp("uplift")
    budget = {"trials": 2, "timeout_seconds": 600, "max_trees": 150}
    sections = {
        "scoring": {"out_dir": str(root / "scores")},
        "plan": {"out_dir": str(root / "plans")},
        "uplift": {"tuning": {"trials": 2, "max_trees": 150}},
    }
    with champions(root, budget, churn_cutoffs=2, **sections) as made:
        trained = train_uplift_stage(made.settings)
        scoring = score_stage(made.settings, "2026-10-31", progress=False)
        plan = plan_stage(made.settings, "2026-10-31", budget=50.0, cost=5.0)
        yield made, trained, scoring, plan


def test_uplift_model_is_registered_with_its_held_out_comparison(planned):
    from crmscore.tracking import UPLIFT_MODEL_NAME, client, registered_estimator

    made, trained, _, _ = planned
    assert trained.model_name == UPLIFT_MODEL_NAME and trained.promoted and trained.version == 1
    for learner in ("T", "X", "DR"):
        assert -1 <= trained.metrics[f"{learner}_test_qini"] <= 1
    model, version, run_id = registered_estimator(UPLIFT_MODEL_NAME)
    assert version == 1 and model.learner_name in ("T", "X", "DR")
    assert trained.metrics["test_qini"] == pytest.approx(trained.metrics[f"{model.learner_name}_test_qini"])
    assert trained.metrics["test_qini"] == max(trained.metrics[f"{k}_test_qini"] for k in ("T", "X", "DR"))
    holdout = model.holdout
    assert set(holdout["treated"]) == {0, 1} and holdout["uplift"].between(-1, 1).all()
    assert model.contact_cost == pytest.approx(5.0)  # the simulated campaigns' cost per offer
    artifacts = {a.path for a in client().list_artifacts(run_id, "plots")}
    assert "plots/qini.png" in artifacts


def test_scores_carry_uplift_and_expected_incremental_value(planned):
    made, _, scoring, _ = planned
    scores = pd.read_parquet(scoring.out_dir / "scores.parquet")
    assert scoring.manifest["models"]["uplift"]["version"] == 1
    assert (scores["uplift_model_version"] == 1).all()
    assert scores["uplift"].notna().all() and scores["uplift"].between(-1, 1).all()
    expected = scores["uplift"] * scores["clv"] - 5.0
    np.testing.assert_allclose(scores["expected_incremental_value"], expected)
    assert (scores["recommended"].astype(bool) == (expected > 0)).all()


def test_plan_spends_the_budget_on_the_best_expected_values(planned):
    from crmscore.planning import PLAN_COLUMNS

    made, _, scoring, plan = planned
    scores = pd.read_parquet(scoring.out_dir / "scores.parquet")
    contacts = pd.read_parquet(plan.out_dir / "plan.parquet")
    assert list(contacts.columns) == PLAN_COLUMNS
    value = scores["uplift"] * scores["clv"] - 5.0
    best = value.sort_values(ascending=False).head(10)
    assert len(contacts) == min(10, int((value > 0).sum())) and plan.spent <= 50.0
    np.testing.assert_allclose(contacts["expected_incremental_value"], best[best > 0].to_numpy())
    assert (contacts["reasons"].str.len() > 0).all()  # the churn model's reasons travel with each contact
    assert pd.read_csv(plan.out_dir / "plan.csv")["customer_id"].tolist() == contacts["customer_id"].tolist()
    manifest = plan.manifest
    assert manifest["contacted"] == len(contacts) and manifest["budget"] == 50.0
    assert manifest["expected_profit"] == pytest.approx(contacts["expected_incremental_value"].sum())
    curve = pd.read_csv(plan.out_dir / "profit_curve.csv")
    assert curve["contacted"].iloc[0] == 0 and curve["contacted"].iloc[-1] == len(scores)


def test_plan_command_reruns_to_the_same_list_and_prints_the_profit(planned):
    made, _, _, plan = planned
    before = pd.read_parquet(plan.out_dir / "plan.parquet")
    result = CliRunner().invoke(
        app, ["plan", "--as-of", "2026-10-31", "--budget", "50", "--cost", "5", "--params", str(made.params)]
    )
    assert result.exit_code == 0, result.output
    assert "contact" in result.output and "expected incremental profit" in result.output
    pd.testing.assert_frame_equal(pd.read_parquet(plan.out_dir / "plan.parquet"), before)


def test_plan_can_replace_the_action_matrix(planned):
    from crmscore import tiers
    from crmscore.scoring import score_rows

    made, _, scoring, _ = planned
    frame = pd.read_parquet(scoring.out_dir / "scores.parquet").set_index("customer_id").head(50)
    frame["segment_id"] = 0
    settings = made.settings.model_copy(deep=True)
    settings.plan.replace_actions = True
    scale = tiers.fit_tier_scale(frame, frame["clv"], settings.tiers)
    versions = {"churn": 1, "clv": 1, "segments": 1, "uplift": 1}
    rows = score_rows(frame, pd.Timestamp("2026-10-31"), settings, scale, {}, versions, 5.0)
    recommended = rows["recommended"].astype(bool).to_numpy()
    assert set(rows["action"]) <= {"retention offer", "no retention offer"}
    assert (rows["action"].to_numpy() == np.where(recommended, "retention offer", "no retention offer")).all()


def test_retraining_on_the_same_data_gives_the_same_model_and_keeps_the_champion(planned):
    from crmscore.stages import train_uplift_stage
    from crmscore.tracking import UPLIFT_MODEL_NAME, registered_estimator

    made, first, _, _ = planned
    again = train_uplift_stage(made.settings)
    assert again.version == 2 and not again.promoted and again.decision.startswith("kept champion")
    one, _, _ = registered_estimator(UPLIFT_MODEL_NAME, 1)
    two, _, _ = registered_estimator(UPLIFT_MODEL_NAME, 2)
    pd.testing.assert_frame_equal(one.holdout, two.holdout)
    assert again.metrics["test_qini"] == first.metrics["test_qini"]
