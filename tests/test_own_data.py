"""Own data as it comes: attribute types, snapshot tables without dates or ids, excluded and protected
columns, tiers from what the data can measure, and scores from the models that exist."""

from __future__ import annotations

import datetime as dt

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from conftest import MAX_DATE
from crmscore import churn, tiers
from crmscore.config import DataSettings, Settings, TierSettings, settings_from_dict
from crmscore.data.load import load_tables
from crmscore.errors import DataError, SettingsError
from crmscore.evaluation import roc_auc
from crmscore.features import build_features
from crmscore.scoring import score_rows


def _data(**customers) -> DataSettings:
    return DataSettings(max_date=MAX_DATE, tables={"customers": customers})


def _attributes(loaded) -> dict[str, dict]:
    return {a["column"]: a for a in loaded.attributes}


# --- types ------------------------------------------------------------------------------------------------


def test_csv_attributes_keep_the_type_their_values_have(tmp_path):
    pd.DataFrame(
        {
            "customer_id": ["1", "2", "3", "4", "5"],
            "signup_date": ["2024-01-01"] * 5,
            "minutes": ["12.5", " 310.25", "", "7", "NA"],  # numbers, with blanks and a missing marker
            "calls": ["1", "4", "", "0", "2"],  # integers with a missing value
            "area_code": ["408", "415", "510", "408", "415"],  # integer-looking codes
            "zip": ["02134", "10001", "94105", "02134", "60601"],  # leading zeros: a code
            "plan": ["gold", "basic", "basic", "gold", "silver"],
            "roaming": ["Yes", "No", "No", "Yes", "No"],
        }
    ).to_csv(tmp_path / "customers.csv", index=False)
    loaded = load_tables(tmp_path, _data())
    customers = loaded.tables["customers"]
    assert customers["minutes"].dtype == np.float64
    assert customers["minutes"].isna().tolist() == [False, False, True, False, True]
    assert customers["minutes"].iloc[1] == pytest.approx(310.25)
    assert str(customers["calls"].dtype) == "Int64" and customers["calls"].isna().sum() == 1
    assert pd.api.types.is_integer_dtype(customers["area_code"].dtype)  # inferred numeric unless declared
    for column in ("zip", "plan", "roaming"):
        assert isinstance(customers[column].dtype, pd.CategoricalDtype), column
    assert customers["zip"].iloc[0] == "02134"
    summary = _attributes(loaded)
    assert summary["minutes"]["type"] == "number" and summary["minutes"]["distinct"] == 3
    assert summary["calls"]["type"] == "integer" and summary["calls"]["missing_share"] == pytest.approx(0.2)
    assert summary["zip"]["type"] == "category" and summary["plan"]["distinct"] == 3
    # What the models see: numbers as numbers, text as categories.
    X = build_features(loaded.tables, "2024-06-30")
    assert X["minutes"].dtype == np.float64 and X["calls"].dtype == np.float64
    assert isinstance(X["plan"].dtype, pd.CategoricalDtype)

    # Declared types win: the area code is a label; a declared number that is text rejects its row.
    declared = load_tables(tmp_path, _data(types={"area_code": "categorical"}))
    assert isinstance(declared.tables["customers"]["area_code"].dtype, pd.CategoricalDtype)
    assert _attributes(declared)["area_code"]["declared"] == "categorical"
    with pytest.raises(DataError, match=r"column 'plan': uncoercible type: not a number \(declared numeric"):
        load_tables(tmp_path, _data(types={"plan": "numeric"}))  # no value at all is a number: whole column


def test_a_declared_number_rejects_only_the_rows_that_are_not(tmp_path):
    pd.DataFrame({"customer_id": [1, 2, 3], "signup_date": ["2024-01-01"] * 3, "balance": ["10", "ten", "30"]}).to_csv(
        tmp_path / "customers.csv", index=False
    )
    loaded = load_tables(tmp_path, _data(types={"balance": "numeric"}))
    assert loaded.tables["customers"]["balance"].tolist() == [10, 30]
    rejects = loaded.rejects["customers"]
    assert rejects["row_number"].tolist() == [2]
    assert rejects["reason"].iloc[0].startswith("balance: not a number (declared numeric")
    # Undeclared, the same column is text: a category, nothing rejected.
    loaded = load_tables(tmp_path, _data())
    assert isinstance(loaded.tables["customers"]["balance"].dtype, pd.CategoricalDtype)
    assert len(loaded.rejects["customers"]) == 0


def test_parquet_and_csv_give_the_same_types(tmp_path):
    frame = pd.DataFrame(
        {
            "customer_id": [1, 2, 3, 4],
            "signup_date": pd.to_datetime(["2024-01-01"] * 4),
            "usage": [1.5, 2.0, np.nan, 4.25],
            "children": pd.array([0, 2, None, 1], dtype="Int64"),
            "segment": ["a", "b", "a", "c"],
        }
    )
    (tmp_path / "csv").mkdir()
    (tmp_path / "pq").mkdir()
    frame.to_csv(tmp_path / "csv" / "customers.csv", index=False)
    frame.to_parquet(tmp_path / "pq" / "customers.parquet", index=False)
    from_csv = load_tables(tmp_path / "csv", _data()).tables["customers"]
    from_parquet = load_tables(tmp_path / "pq", _data()).tables["customers"]
    for column in ("usage", "children", "segment"):
        assert str(from_csv[column].dtype) == str(from_parquet[column].dtype), column
    pd.testing.assert_series_equal(from_csv["usage"], from_parquet["usage"])


def test_numeric_attributes_from_csv_train_like_a_plain_lightgbm(tmp_path):
    """A snapshot whose churn depends on continuous usage, read from CSV, trains as well as a plain
    LightGBM on the same columns (categories would lose most of the signal)."""
    rng = np.random.default_rng(11)
    n = 5000
    minutes = rng.gamma(4.0, 45.0, n)
    calls = rng.poisson(1.5, n)
    plan = rng.choice(["basic", "plus", "pro"], n)
    logit = -3.0 + 0.012 * minutes + 0.55 * calls - 0.6 * (plan == "pro")
    churned = rng.random(n) < 1 / (1 + np.exp(-logit))
    frame = pd.DataFrame(
        {
            "Phone": [f"{i:07d}" for i in range(n)],
            "Churn": np.where(churned, "Yes", "No"),
            "DayMinutes": np.round(minutes, 1),
            "ServiceCalls": calls,
            "Plan": plan,
        }
    )
    frame.to_csv(tmp_path / "customers.csv", index=False)
    data = DataSettings(
        max_date=MAX_DATE,
        snapshot_date="2026-06-30",
        tables={"customers": {"columns": {"customer_id": "Phone", "churned": "Churn"}}},
    )
    loaded = load_tables(tmp_path, data)
    assert loaded.tables["customers"]["DayMinutes"].dtype == np.float64
    settings = Settings(churn={"calibration": "sigmoid"})
    splits = churn.snapshot_datasets(loaded.tables, settings.churn, settings.features, as_of=loaded.snapshot_date)
    train, test = splits["train"], splits["test"]
    ours = churn.model_from_settings(settings.churn).fit(train.X, train.y, splits["valid"].X, splits["valid"].y)
    auc_ours = roc_auc(test.y, ours.predict_proba(test.X)[:, 1])

    plain_X = frame.set_index("Phone")[["DayMinutes", "ServiceCalls", "Plan"]].astype({"Plan": "category"})
    label = pd.Series(churned.astype(int), index=plain_X.index)
    plain = lgb.LGBMClassifier(n_estimators=200, learning_rate=0.05, num_leaves=15, verbose=-1, random_state=0)
    train_ids = train.X.index.astype(str).str.zfill(7)
    test_ids = test.X.index.astype(str).str.zfill(7)
    plain.fit(plain_X.loc[train_ids], label.loc[train_ids])
    auc_plain = roc_auc(label.loc[test_ids], plain.predict_proba(plain_X.loc[test_ids])[:, 1])
    assert auc_plain > 0.75  # the signal is there
    assert auc_ours >= auc_plain - 0.01, (auc_ours, auc_plain)


# --- snapshot tables --------------------------------------------------------------------------------------


def _bank(path, n=60):
    rng = np.random.default_rng(5)
    pd.DataFrame(
        {
            "RowNumber": np.arange(1, n + 1),
            "Surname": [f"name{i}" for i in range(n)],
            "Gender": rng.choice(["Female", "Male"], n),
            "Tenure": rng.integers(0, 11, n).astype(str),
            "Balance": np.round(rng.gamma(2.0, 40_000.0, n), 2),
            "Exited": rng.integers(0, 2, n),
        }
    ).to_csv(path / "customers.csv", index=False)


def test_a_snapshot_without_dates_or_ids_validates_with_row_ids(tmp_path):
    _bank(tmp_path)
    data = _data(id="row", columns={"churned": "Exited"}, exclude=["RowNumber", "Surname"], protected=["Gender"])
    loaded = load_tables(tmp_path, data)
    customers = loaded.tables["customers"]
    assert customers["customer_id"].tolist() == list(range(1, 61))  # 1-based rows of the file
    assert "signup_date" not in customers.columns
    file_day = pd.Timestamp(dt.date.fromtimestamp((tmp_path / "customers.csv").stat().st_mtime))
    assert loaded.snapshot_date == file_day  # no data.snapshot_date: the file's date
    roles = {a["column"]: a["role"] for a in loaded.attributes}
    assert roles == {
        "RowNumber": "excluded",
        "Surname": "excluded",
        "Gender": "protected",
        "Tenure": "feature",
        "Balance": "feature",
    }
    settings = Settings(data=data)
    X = build_features(loaded.tables, loaded.snapshot_date, settings.features)
    assert len(X) == 60 and "tenure_days" not in X.columns  # no signup dates: left out
    assert set(X.columns) == {"Tenure", "Balance"}  # never the excluded or protected columns


def test_tenure_in_months_gives_signup_dates_and_bad_tenures_are_rejected(tmp_path):
    pd.DataFrame({"id": ["a", "b", "c", "d"], "tenure": ["0", "2", "-1", "x"]}).to_csv(
        tmp_path / "customers.csv", index=False
    )
    data = DataSettings(
        max_date=MAX_DATE,
        snapshot_date="2026-03-31",
        tables={"customers": {"columns": {"customer_id": "id"}, "tenure": {"column": "tenure", "unit": "months"}}},
    )
    loaded = load_tables(tmp_path, data)
    customers = loaded.tables["customers"]
    assert customers["signup_date"].tolist() == [pd.Timestamp("2026-03-31"), pd.Timestamp("2026-01-31")]
    assert loaded.snapshot_date == pd.Timestamp("2026-03-31")
    assert loaded.rejects["customers"]["reason"].tolist() == ["tenure: not a number of months >= 0"] * 2
    X = build_features(loaded.tables, loaded.snapshot_date, Settings(data=data).features)
    assert X["tenure_days"].tolist() == [0.0, 59.0]
    assert "tenure" not in X.columns  # it became tenure_days


def test_customer_settings_are_checked():
    with pytest.raises(SettingsError, match="either excluded or protected, not both: Gender"):
        settings_from_dict({"data": {"tables": {"customers": {"exclude": ["Gender"], "protected": ["Gender"]}}}})
    with pytest.raises(SettingsError, match="tables.transactions: id, tenure, types, exclude and protected apply"):
        settings_from_dict({"data": {"tables": {"transactions": {"exclude": ["x"]}}}})
    with pytest.raises(SettingsError, match=r"tenure.unit: expected one of"):
        settings_from_dict({"data": {"tables": {"customers": {"tenure": {"column": "t", "unit": "decades"}}}}})
    settings = settings_from_dict({"data": {"tables": {"customers": {"exclude": ["a"], "protected": ["b"]}}}})
    assert settings.features.exclude == ["a", "b"]


def test_row_ids_refuse_a_file_with_its_own_id_column(tmp_path):
    pd.DataFrame({"customer_id": [7, 8], "x": [1, 2]}).to_csv(tmp_path / "customers.csv", index=False)
    with pytest.raises(DataError, match="id is 'row' but the file has a customer id column"):
        load_tables(tmp_path, _data(id="row"))
    with pytest.raises(DataError, match=r"column 'Gender' \(named in data.tables.customers\): no such column"):
        load_tables(tmp_path, _data(protected=["Gender"]))


# --- tiers and partial scores ------------------------------------------------------------------------------


def _customers_only(n=200):
    rng = np.random.default_rng(3)
    index = pd.Index(np.arange(1, n + 1), name="customer_id")
    return pd.DataFrame({"Balance": rng.gamma(2.0, 100.0, n), "Plan": pd.Categorical(rng.choice(["a", "b"], n))}, index)


def test_tiers_for_customers_only_data_use_what_the_data_has():
    X = _customers_only()
    clv = pd.Series(np.linspace(1, 200, len(X)), index=X.index)
    nothing = tiers.fit_tier_scale(X, None, TierSettings())  # auto never stops a scoring: no tiers, and why
    assert nothing.method == "none" and nothing.to_dict()["note"].startswith(
        "no tiers: no scorecard metric can rank these customers and there is no CLV; map numeric attributes"
    )
    by_clv = tiers.fit_tier_scale(X, clv, TierSettings())
    assert by_clv.method == "pyramid" and by_clv.scorecard is None and by_clv.pyramid["A"] is not None
    mapped = TierSettings(scorecard={"metrics": {"sales": "Balance"}, "weights": {"sales": 1.0}})
    by_balance = tiers.fit_tier_scale(X, None, mapped)
    assert by_balance.method == "scorecard" and [m.feature for m in by_balance.scorecard.metrics] == ["Balance"]
    with pytest.raises(DataError, match="tiers.method pyramid ranks customers by CLV, and no CLV model was scored"):
        tiers.fit_tier_scale(X, None, TierSettings(method="pyramid"))
    with pytest.raises(DataError, match="tiers.method scorecard: scorecard: no metric"):
        tiers.fit_tier_scale(X, clv, TierSettings(method="scorecard"))


def test_scores_without_a_model_leave_its_columns_empty():
    X = _customers_only()
    frame = X.assign(churn_probability=np.linspace(0.01, 0.9, len(X)), expected_spend=np.nan, clv=np.nan, segment_id=0)
    settings = Settings(tiers={"scorecard": {"metrics": {"sales": "Balance"}, "weights": {"sales": 1.0}}})
    scale = tiers.fit_tier_scale(frame, None, settings.tiers)
    versions = {"churn": 3, "clv": 0, "segments": 0}
    scores = score_rows(frame, pd.Timestamp("2026-06-30"), settings, scale, {}, versions)
    assert scores["clv"].isna().all() and scores["value_at_risk"].isna().all()
    assert scores["tier"].notna().all() and set(scores["risk_band"]) == {"low", "medium", "high"}
    assert scores["action"].notna().all() and (scores["clv_model_version"] == 0).all()
    assert scores["lifecycle_stage"].isna().all()  # no signup dates, no purchases: unknown, not guessed

    untiered = score_rows(frame, pd.Timestamp("2026-06-30"), Settings(), tiers.fit_tier_scale(X, None), {}, versions)
    assert untiered["tier"].isna().all() and untiered["action"].isna().all()
    assert untiered["risk_band"].notna().all()  # the churn risk is there without tiers

    no_churn = frame.assign(churn_probability=np.nan, clv=np.linspace(1, 50, len(X)))
    scale = tiers.fit_tier_scale(no_churn, no_churn["clv"], settings.tiers)
    scores = score_rows(no_churn, pd.Timestamp("2026-06-30"), settings, scale, {}, versions)
    for column in ("churn_probability", "risk_band", "value_at_risk", "action"):
        assert scores[column].isna().all(), column
    assert scores["tier"].notna().all() and scores["clv"].notna().all()
