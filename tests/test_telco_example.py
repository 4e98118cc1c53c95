"""The Telco worked example: the published CSV through the data contract exactly as a user reads it.

``examples/telco/params.yaml`` maps IBM's Telco Customer Churn file (a snapshot: no dates, a Yes/No label,
tenure in months); ``benchmarks/telco_churn.py`` reads the data the same way, so its cross-validated
figure is what ``crmscore train churn --params examples/telco/params.yaml`` prints.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crmscore import churn
from crmscore.config import load_settings
from crmscore.data import public
from crmscore.data.load import load_tables

pytestmark = pytest.mark.public_data

ROOT = Path(__file__).resolve().parents[1]
DATA = public.data_dir()
CSV = DATA / public.TELCO_FILE
if not CSV.is_file():
    pytest.skip(f"public data not found at {DATA}; set CRMSCORE_DATA_DIR", allow_module_level=True)


@pytest.fixture(scope="module")
def telco():
    settings = load_settings(ROOT / "examples" / "telco" / "params.yaml")
    return settings, load_tables(CSV.parent, settings.data)


def test_the_csv_keeps_its_numbers_and_derives_tenure(telco):
    settings, loaded = telco
    customers = loaded.tables["customers"]
    assert len(customers) == 7043 and len(loaded.rejects["customers"]) == 0
    assert customers["churned"].sum() == 1869
    assert customers["TotalCharges"].dtype == np.float64 and customers["TotalCharges"].isna().sum() == 11
    assert pd.api.types.is_integer_dtype(customers["SeniorCitizen"].dtype)
    assert isinstance(customers["Contract"].dtype, pd.CategoricalDtype)
    assert loaded.snapshot_date == pd.Timestamp("2018-01-31")
    X, y, when = churn.snapshot_frame(loaded.tables, settings.features, loaded.snapshot_date)
    months = customers.set_index("customer_id")["tenure"].reindex(X.index)
    expected = [(when - (when - pd.DateOffset(months=int(m)))).days for m in months]  # calendar months back
    assert X["tenure_days"].tolist() == expected
    assert "gender" not in X.columns and "tenure" not in X.columns
    assert X["monthly_revenue"].dtype == np.float64  # MonthlyCharges, mapped onto the contract
    roles = {a["column"]: a["role"] for a in loaded.attributes}
    assert roles["gender"] == "protected" and roles["tenure"] == "tenure" and roles["TotalCharges"] == "feature"


def test_the_user_path_reaches_the_published_reference(telco):
    """One repeat of the 5-fold CV with the default LightGBM configuration (the benchmark runs 5 × 5 tuned)."""
    settings, loaded = telco
    cfg = settings.churn.model_copy(update={"cv_repeats": 1})
    folds = churn.snapshot_cv_folds(loaded.tables, cfg, settings.features, snapshot_date=loaded.snapshot_date)
    summary = churn.cv_summary(folds, cfg.cv_folds)
    assert summary["cv_folds"] == 5
    assert summary["cv_roc_auc"] >= 0.84, summary  # logistic regression reference on this file: 0.845
    assert 0 < summary["cv_roc_auc_se"] < 0.02
