"""Feature checks at scoring: unseen categories, numbers outside the training range, newly missing values.

The behaviour tests share one trained workspace (module scope, as in ``test_scoring.py``): 1,500
simulated customers, churn, CLV (LightGBM) and segments registered in a SQLite MLflow store under a
temporary folder. Each scoring then reads a changed copy of the simulated input: every customer in an
unseen region and contract, or every amount a thousand times larger.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.conftest import Champions, champions, write_params
from typer.testing import CliRunner

from crmscore import scoring
from crmscore.cli import app
from crmscore.config import Settings
from crmscore.data.load import write_tables
from crmscore.errors import DataError
from crmscore.feature_checks import FeatureCounts, check_message, count_features, feature_checks
from crmscore.features import build_features, training_profile
from crmscore.scoring import scoring_dir
from crmscore.stages import load_scoring_models, score_stage

runner = CliRunner()
AS_OF = "2026-09-30"
PROFILED = ("churn", "clv", "segments")


def _input_dir(ws: Champions, name: str, **tables: pd.DataFrame) -> Path:
    """The simulated tables with ``tables`` replaced, written as Parquet into a folder of their own."""
    folder = ws.root / "inputs" / name
    write_tables({**ws.tables, **tables}, folder, "parquet")
    return folder


def _known(ws: Champions) -> int:
    customers = ws.tables["customers"]
    return int((customers["signup_date"] <= pd.Timestamp(AS_OF)).sum())


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """Simulated input and registered churn, CLV and segments champions, every path in a temporary folder."""
    root = tmp_path_factory.mktemp("checks")
    budget = {"trials": 1, "timeout_seconds": 600, "max_trees": 80}
    with champions(root, budget, churn_cutoffs=2, scoring={"out_dir": str(root / "scores")}) as made:
        yield made


@pytest.fixture(scope="module")
def mars(ws) -> Path:
    """Every customer in region 'mars' on a 'lifetime' contract: values no model saw in training."""
    return _input_dir(ws, "mars", customers=ws.tables["customers"].assign(region="mars", contract="lifetime"))


@pytest.fixture(scope="module")
def big_spenders(ws) -> Path:
    """Every transaction a thousand times larger: spend far outside the training range."""
    tx = ws.tables["transactions"]
    return _input_dir(ws, "big", transactions=tx.assign(amount=tx["amount"] * 1000))


def _score_cli(ws: Champions, input_dir: Path, out: Path, params: Path | None = None):
    args = ["score", "--as-of", AS_OF, "--input", str(input_dir), "--out", str(out)]
    return runner.invoke(app, [*args, "--params", str(params or ws.params)])


def _stopping_at(settings: Settings, share: float) -> Settings:
    return settings.model_copy(update={"scoring": settings.scoring.model_copy(update={"unseen_error_share": share})})


def _checks(out: Path) -> list[dict]:
    return json.loads((scoring_dir(out, pd.Timestamp(AS_OF)) / "manifest.json").read_text())["feature_checks"]


def _entry(checks: list[dict], feature: str, kind: str) -> dict:
    found = [e for e in checks if e["feature"] == feature and e["kind"] == kind]
    assert len(found) == 1, checks
    return found[0]


# --- the profile recorded at fit time ----------------------------------------------------------------


def test_training_profile_holds_categories_finite_range_and_missing_share():
    X = pd.DataFrame(
        {
            "region": pd.Categorical(["north", "south", None, "north"]),
            "spend": [1.5, np.inf, np.nan, -2.0],
            "empty_range": [np.nan, np.inf, np.nan, np.nan],
        }
    )
    profile = training_profile(X, {"region": ["north", "south"]})
    assert profile["region"] == {"kind": "categorical", "categories": ["north", "south"], "missing_share": 0.25}
    assert profile["spend"] == {"kind": "numeric", "min": -2.0, "max": 1.5, "missing_share": 0.25}
    assert profile["empty_range"] == {"kind": "numeric", "min": None, "max": None, "missing_share": 0.75}


@pytest.mark.slow
def test_registered_models_carry_their_training_profile(ws):
    models = load_scoring_models(ws.settings)
    for role in PROFILED:
        estimator = getattr(models, role).estimator
        profile = estimator.feature_profile_
        assert set(profile) == {str(f) for f in estimator.feature_names_in_}, role
    churn_profile = models.churn.estimator.feature_profile_
    regions = ws.tables["customers"]["region"].astype(str).unique()
    assert sorted(churn_profile["region"]["categories"]) == sorted(regions)
    assert churn_profile["monetary_total"]["kind"] == "numeric"
    assert 0 <= churn_profile["monetary_total"]["min"] < churn_profile["monetary_total"]["max"]


# --- counting and summing ----------------------------------------------------------------------------------

PROFILES = {
    "churn": {
        "region": {"kind": "categorical", "categories": ["north", "south"], "missing_share": 0.0},
        "spend": {"kind": "numeric", "min": 0.0, "max": 10.0, "missing_share": 0.0},
    },
    "clv": {"region": {"kind": "categorical", "categories": ["north", "south"], "missing_share": 0.0}},
}


def _frame(n: int = 40) -> pd.DataFrame:
    regions = np.array(["north", "mars", "venus", "south", None, "pluto"], dtype=object)
    return pd.DataFrame(
        {
            "region": pd.Categorical(regions[np.arange(n) % len(regions)]),
            "spend": np.where(np.arange(n) % 4 == 0, 50.0, np.where(np.arange(n) % 5 == 0, np.nan, 5.0)),
        }
    )


def test_counts_add_up_to_the_same_total_for_any_split():
    X = _frame()
    whole = count_features(X, PROFILES)
    for size in (1, 3, 7):
        parts = [count_features(X.iloc[i : i + size], PROFILES) for i in range(0, len(X), size)]
        assert sum(parts, FeatureCounts()) == whole, size
    churn = whole.models["churn"]
    assert churn["region"]["unseen"] == 20 and churn["region"]["missing"] == 6  # mars, venus, pluto; None
    assert churn["region"]["examples"] == ["mars", "pluto", "venus"]
    assert churn["spend"]["out_of_range"] == 10 and churn["spend"]["missing"] == 6
    assert FeatureCounts.from_dict(json.loads(json.dumps(whole.to_dict()))) == whole


def test_feature_checks_merge_models_sort_by_severity_and_apply_thresholds():
    counts = count_features(_frame(), PROFILES)
    checks = feature_checks(counts, PROFILES, out_of_range_share=0.05, missing_increase=0.1)
    assert [(e["feature"], e["kind"]) for e in checks] == [
        ("region", "unseen"),  # 50 %
        ("spend", "out_of_range"),  # 25 %
        ("region", "missing"),  # 15 % against 0 %
        ("spend", "missing"),
    ]
    unseen = checks[0]
    assert unseen["models"] == ["churn", "clv"] and unseen["count"] == 20 and unseen["share"] == 0.5
    assert unseen["examples"] == ["mars", "pluto", "venus"]
    assert checks[1]["training_range"] == [0.0, 10.0] and checks[1]["models"] == ["churn"]
    assert checks[2]["training_share"] == 0.0 and checks[2]["share"] == 0.15
    assert check_message(unseen) == (
        "region: 50.0 % of scored customers have values unseen in training (e.g. 'mars', 'pluto', 'venus'); "
        "their churn and CLV scores use the models' unseen-category handling (as if missing)"
    )
    # Above the thresholds only; unseen values are always reported.
    quiet = feature_checks(counts, PROFILES, out_of_range_share=0.3, missing_increase=0.2)
    assert [(e["feature"], e["kind"]) for e in quiet] == [("region", "unseen")]
    # A model without a profile (registered before profiles existed) is not checked.
    assert feature_checks(counts, {"churn": PROFILES["churn"]}, 0.05, 0.1)[0]["models"] == ["churn"]


# --- scoring -------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_unseen_categories_are_reported_with_their_share_and_one_warning_line(ws, mars, tmp_path):
    result = _score_cli(ws, mars, tmp_path)
    assert result.exit_code == 0, result.output
    checks = _checks(tmp_path)
    for feature, value in (("region", "mars"), ("contract", "lifetime")):
        entry = _entry(checks, feature, "unseen")
        assert entry["share"] == 1.0 and entry["count"] == _known(ws)
        assert entry["examples"] == [value]
        assert entry["models"] == ["churn", "clv"]
    assert [e["kind"] for e in checks[:2]] == ["unseen", "unseen"]  # the most severe first
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert (
        "warning: region: 100.0 % of scored customers have values unseen in training (e.g. 'mars'); "
        "their churn and CLV scores use the models' unseen-category handling (as if missing)"
    ) in warnings
    assert len(warnings) == min(len(checks), 5) + (len(checks) > 5)
    # One line per reported feature: the models' own per-chunk log lines stay out of the console.
    assert sum("region" in line for line in result.output.splitlines()) == 1
    assert "never seen in training" not in result.output


@pytest.mark.slow
def test_more_than_five_checks_print_five_lines_and_point_at_the_manifest(ws, tmp_path):
    customers = ws.tables["customers"]
    attributes = ["customer_type", "region", "age_band", "industry", "acquisition_channel", "contract"]
    renamed = customers.assign(**{c: "unknown-" + customers[c].astype(str) for c in attributes})
    result = _score_cli(ws, _input_dir(ws, "renamed", customers=renamed), tmp_path)
    assert result.exit_code == 0, result.output
    checks = _checks(tmp_path)
    assert {e["feature"] for e in checks if e["kind"] == "unseen"} == set(attributes)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    folder = scoring_dir(tmp_path, pd.Timestamp(AS_OF))
    assert len(warnings) == 6
    assert warnings[-1] == f"warning: … and {len(checks) - 5} more in {folder / 'manifest.json'}"


@pytest.mark.slow
def test_spend_far_outside_the_training_range_counts_as_out_of_range(ws, big_spenders, tmp_path):
    result = score_stage(ws.settings, AS_OF, input_dir=big_spenders, out_dir=tmp_path, progress=False)
    entry = _entry(result.manifest["feature_checks"], "monetary_total", "out_of_range")
    models = load_scoring_models(ws.settings)
    # Counted independently: the features of the changed input against the churn model's training range.
    profile = models.churn.estimator.feature_profile_["monetary_total"]
    X = build_features(
        {**ws.tables, "transactions": pd.read_parquet(big_spenders / "transactions.parquet")},
        AS_OF,
        ws.settings.features,
    )
    outside = int(((X["monetary_total"] < profile["min"]) | (X["monetary_total"] > profile["max"])).sum())
    assert entry["by_model"]["churn"]["count"] == outside
    assert entry["by_model"]["churn"]["training_range"] == [profile["min"], profile["max"]]
    assert entry["share"] > 0.5 and "churn" in entry["models"]
    assert not [e for e in result.manifest["feature_checks"] if e["kind"] == "unseen"]


@pytest.mark.slow
def test_feature_checks_are_identical_for_any_chunk_size(ws, mars, big_spenders, tmp_path):
    tables = {
        **ws.tables,
        "customers": pd.read_parquet(mars / "customers.parquet"),
        "transactions": pd.read_parquet(big_spenders / "transactions.parquet"),
    }
    models = load_scoring_models(ws.settings)
    as_of = pd.Timestamp(AS_OF)
    results = [
        scoring.score(tables, as_of, models, ws.settings, tmp_path / str(n), chunk_size=n, progress=False)
        for n in (50_000, 97)
    ]
    whole, chunked = (r.manifest for r in results)
    assert whole["chunks"] == 1 and chunked["chunks"] > 10
    assert chunked["feature_checks"] == whole["feature_checks"]
    assert {e["kind"] for e in whole["feature_checks"]} >= {"unseen", "out_of_range"}


@pytest.mark.slow
def test_unseen_error_share_stops_the_scoring_with_one_line_and_writes_nothing(ws, mars, tmp_path):
    settings = _stopping_at(ws.settings, 0.5)
    params = write_params(settings, tmp_path / "params.yaml")
    out = tmp_path / "scores"
    result = _score_cli(ws, mars, out, params)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith("error: ") and "100.0 % of scored customers" in lines[0]
    assert "scoring.unseen_error_share = 0.5" in lines[0]
    assert "contract" in lines[0] or "region" in lines[0]
    # Stopped before the scoring began: not even a temporary folder (the folder lock, taken first, is gone).
    assert not out.exists()


@pytest.mark.slow
def test_unseen_error_share_counted_over_the_chunks_leaves_no_folder(ws, mars, tmp_path, monkeypatch):
    """The check on the summed counts (the Spark engine's only one) raises inside the atomic folder."""
    settings = _stopping_at(ws.settings, 0.5)
    monkeypatch.setattr(scoring, "_check_attributes_first", lambda *args: None)
    tables = {**ws.tables, "customers": pd.read_parquet(mars / "customers.parquet")}
    models = load_scoring_models(ws.settings)
    out = tmp_path / "scores"
    with pytest.raises(DataError, match=r"100\.0 % of scored customers .* scoring\.unseen_error_share = 0\.5"):
        scoring.score(tables, pd.Timestamp(AS_OF), models, settings, out, chunk_size=500, progress=False)
    assert not out.exists()  # nothing written: not even the folder the lock created


@pytest.mark.slow
def test_scoring_the_training_data_reports_no_unseen_value(ws, tmp_path):
    result = _score_cli(ws, ws.root / "sim", tmp_path)
    assert result.exit_code == 0, result.output
    checks = _checks(tmp_path)
    assert isinstance(checks, list)
    assert not [e for e in checks if e["kind"] == "unseen"], checks
    assert "unseen in training" not in result.output


@pytest.mark.slow
def test_models_without_a_profile_are_not_checked(ws, mars, tmp_path):
    """Models registered before profiles existed: the scoring goes on without checks, quietly."""
    models = load_scoring_models(ws.settings)
    for role in PROFILED:
        ref = getattr(models, role)
        estimator = copy.deepcopy(ref.estimator)
        del estimator.feature_profile_
        setattr(models, role, dataclasses.replace(ref, estimator=estimator))
    tables = {**ws.tables, "customers": pd.read_parquet(mars / "customers.parquet")}
    result = scoring.score(tables, pd.Timestamp(AS_OF), models, ws.settings, tmp_path, progress=False)
    assert result.manifest["feature_checks"] == []
    assert result.scored == _known(ws)
