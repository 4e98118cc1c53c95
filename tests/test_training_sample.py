"""The training sample (``churn.sample_customers``, ``clv.sample_customers``): seeded, exact, skipped on
smaller data, recorded in MLflow and printed, and a bad value is a one-line settings error."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
import yaml
from tests.conftest import mlflow_workspace, workspace_settings
from typer.testing import CliRunner

from crmscore import churn as churn_module
from crmscore import simulate_crm, tracking
from crmscore.cli import app
from crmscore.config import Settings, load_settings, settings_from_dict
from crmscore.data.sample import sample_customers
from crmscore.errors import SettingsError
from crmscore.stages import simulate_stage, train_churn_stage, train_clv_stage

BUDGET = {"trials": 2, "timeout_seconds": 600, "max_trees": 150}


@pytest.fixture(scope="module")
def tables() -> dict:
    return simulate_crm(customers=3000, seed=1).tables()


def ids_of(tables: dict) -> set:
    return set(tables["customers"]["customer_id"])


# --- the draw -----------------------------------------------------------------------------------------


def test_sample_keeps_exactly_the_drawn_customers_and_all_their_rows(tables):
    sampled, sample = sample_customers(tables, 700, seed=5, setting="churn.sample_customers")
    chosen = ids_of(sampled)
    assert len(sampled["customers"]) == 700 and len(chosen) == 700
    assert chosen < ids_of(tables)
    for name, table in tables.items():
        if "customer_id" not in table.columns:
            continue
        expected = table.loc[table["customer_id"].isin(chosen)].reset_index(drop=True)
        assert sampled[name].equals(expected), name  # every row of theirs, in order, and no other
    assert sample.customers == 700 and sample.of_customers == 3000 and sample.seed == 5
    assert sample.note() == "trained on a sample of 700 of 3,000 customers (churn.sample_customers, seed 5)"
    assert sample.params()["sample.customers"] == "700"


def test_sample_is_seeded_and_independent_of_row_order(tables):
    first = ids_of(sample_customers(tables, 500, seed=11)[0])
    again = ids_of(sample_customers(tables, 500, seed=11)[0])
    other = ids_of(sample_customers(tables, 500, seed=12)[0])
    shuffled = {name: df.sample(frac=1.0, random_state=0) for name, df in tables.items()}
    reordered = sample_customers(shuffled, 500, seed=11)
    assert first == again
    assert first != other
    assert ids_of(reordered[0]) == first
    assert reordered[1].ids_hash == sample_customers(tables, 500, seed=11)[1].ids_hash


def test_no_sample_when_the_data_are_not_larger(tables):
    for size in (None, 3000, 10_000):
        same, sample = sample_customers(tables, size, seed=1)
        assert sample is None
        assert all(same[name] is tables[name] for name in tables)


@pytest.mark.parametrize("section", ["churn", "clv"])
@pytest.mark.parametrize("value", [0, -5, True, 2.5, "many"])
def test_a_bad_sample_size_is_a_one_line_settings_error(section, value):
    with pytest.raises(SettingsError) as raised:
        settings_from_dict({section: {"sample_customers": value}})
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"params.yaml: {section}.sample_customers: expected a positive number of customers")


def test_sample_size_below_min_customers_and_null(tmp_path):
    with pytest.raises(SettingsError, match=r"churn: sample_customers \(100\) is below min_customers \(200\)"):
        settings_from_dict({"churn": {"sample_customers": 100}})
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"churn": {"sample_customers": None}, "clv": {"sample_customers": 5000}}))
    settings = load_settings(path)
    assert settings.churn.sample_customers is None and settings.clv.sample_customers == 5000
    assert Settings().churn.sample_customers == Settings().clv.sample_customers  # one default for both


# --- training -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """1,500 simulated customers; churn and CLV sample 1,000 of them with tiny tuning budgets."""
    root = tmp_path_factory.mktemp("training-sample")
    with mlflow_workspace(root):
        settings = workspace_settings(
            root,
            churn={"train_cutoffs": 2, "tuning": BUDGET, "sample_customers": 1000},
            clv={"model": "ml", "train_cutoffs": 2, "tuning": BUDGET, "sample_customers": 1000},
        )
        simulate_stage(settings)
        yield settings
    mlflow.set_tracking_uri(None)


def run_of(result):
    return tracking.client().get_run(result.run_id)


@pytest.mark.slow
def test_churn_trains_on_the_sample_and_records_it(workspace, monkeypatch):
    seen = []
    real = churn_module.churn_datasets

    def recording(tables, *args, **kwargs):
        seen.append({name: df.copy() for name, df in tables.items()})
        return real(tables, *args, **kwargs)

    monkeypatch.setattr(churn_module, "churn_datasets", recording)
    first = train_churn_stage(workspace)
    second = train_churn_stage(workspace)

    # Exactly 1,000 customers reach the datasets, with their rows only; the same ones both times.
    customers = seen[0]["customers"]
    assert len(customers) == 1000 and customers["customer_id"].is_unique
    assert set(seen[0]["transactions"]["customer_id"]) <= set(customers["customer_id"])
    assert ids_of(seen[1]) == ids_of(seen[0])

    note = "trained on a sample of 1,000 of 1,500 customers (churn.sample_customers, seed 42)"
    assert note in first.notes
    run = run_of(first)
    assert run.data.params["churn.sample_customers"] == "1000"
    assert run.data.params["sample.customers"] == "1000"
    assert run.data.params["sample.of_customers"] == "1500"
    assert run.data.tags["crmscore.sample"] == note
    assert note in run.data.tags["crmscore.notes"]
    assert run.data.params["data.rows_customers"] == "1500"  # the fingerprint names the whole input
    # Same data, params and seed: the same sample and the same model.
    assert run_of(second).data.params["sample.ids_hash"] == run.data.params["sample.ids_hash"]
    assert second.metrics == first.metrics

    # Another seed draws other customers.
    reseeded = workspace.model_copy(deep=True)
    reseeded.churn.seed = 7
    other = train_churn_stage(reseeded)
    assert run_of(other).data.params["sample.ids_hash"] != run.data.params["sample.ids_hash"]
    assert ids_of(seen[2]) != ids_of(seen[0])


@pytest.mark.slow
def test_no_sample_below_the_size(workspace):
    larger = workspace.model_copy(deep=True)
    larger.churn.sample_customers = 1500
    result = train_churn_stage(larger)
    run = run_of(result)
    assert not any("sample" in note for note in result.notes)
    assert run.data.tags["crmscore.sample"] == "none"
    assert not any(key.startswith("sample.") for key in run.data.params)
    assert run.data.params["churn.sample_customers"] == "1500"


@pytest.mark.slow
def test_clv_trains_on_the_sample_and_prints_it(workspace, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(workspace.model_dump(mode="json"), sort_keys=False))
    result = CliRunner().invoke(app, ["train", "clv", "--params", str(params)])
    assert result.exit_code == 0, result.output
    note = "trained on a sample of 1,000 of 1,500 customers (clv.sample_customers, seed 42)"
    assert f"note: {note}" in result.output

    direct = train_clv_stage(workspace)
    run = run_of(direct)
    assert note in direct.notes
    assert run.data.params["sample.customers"] == "1000"
    assert run.data.tags["crmscore.sample"] == note
    # Train and validation hold whole customers of the sample only: at most 1,000 distinct ones.
    train_rows, valid_rows, test_rows = (int(n) for n in run.data.params["split.rows"].split("/"))
    assert test_rows <= 1000
    unsampled = workspace.model_copy(deep=True)
    unsampled.clv.sample_customers = None
    full = run_of(train_clv_stage(unsampled))
    assert "sample.customers" not in full.data.params
    full_rows = np.array([int(n) for n in full.data.params["split.rows"].split("/")])
    assert (full_rows > np.array([train_rows, valid_rows, test_rows])).all()
