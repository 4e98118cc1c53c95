"""Checks of the public-data loaders against the counts published in ../shared/data/README.md."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from crmscore.data import public
from crmscore.errors import DataError

DATA = public.data_dir()
# Hillstrom's file is checked by tests/test_uplift.py, which skips alone when it is missing.
FILES = [rel for rel in public.SHA256 if rel != public.HILLSTROM_FILE]
if not all((DATA / rel).is_file() for rel in FILES):
    pytest.skip(f"public data not found at {DATA}; set CRMSCORE_DATA_DIR", allow_module_level=True)

pytestmark = pytest.mark.public_data

CALIBRATION_END = pd.Timestamp("1997-09-30")


# Loading the CDNOW master takes about a second; share the four variants across tests.
@pytest.fixture(scope="module")
def telco() -> pd.DataFrame:
    return public.load_telco()["customers"]


@pytest.fixture(scope="module")
def telco_raw() -> pd.DataFrame:
    return pd.read_csv(DATA / public.TELCO_FILE, dtype=str)


@pytest.fixture(scope="module")
def master_raw() -> dict[str, pd.DataFrame]:
    return public.load_cdnow(merge_same_day=False)


@pytest.fixture(scope="module")
def master() -> dict[str, pd.DataFrame]:
    return public.load_cdnow()


@pytest.fixture(scope="module")
def sample_raw() -> dict[str, pd.DataFrame]:
    return public.load_cdnow(sample=True, merge_same_day=False)


@pytest.fixture(scope="module")
def sample() -> dict[str, pd.DataFrame]:
    return public.load_cdnow(sample=True)


# --- data_dir and hashes --------------------------------------------------------------------------


def test_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv(public.DATA_DIR_ENV, raising=False)
    assert public.data_dir() == public.DEFAULT_DATA_DIR
    monkeypatch.setenv(public.DATA_DIR_ENV, str(tmp_path))
    assert public.data_dir() == tmp_path
    assert public.data_dir("elsewhere") == public.Path("elsewhere")


def test_sha256_table_matches_files():
    for rel in FILES:
        assert public.sha256_of(DATA / rel) == public.SHA256[rel], rel


# --- Telco ----------------------------------------------------------------------------------------


def test_telco_counts_and_ids(telco):
    assert len(telco) == 7043
    assert int(telco["churned"].sum()) == 1869
    assert telco["customer_id"].is_unique
    assert telco["customer_id"].notna().all()


def test_telco_dtypes(telco):
    assert telco["signup_date"].dtype == "datetime64[ns]"
    for col in ("churned", "senior_citizen", "partner", "dependents"):
        assert telco[col].dtype == bool, col
    assert telco["tenure_months"].dtype == np.int64
    assert telco["monthly_revenue"].dtype == np.float64
    assert telco["total_charges"].dtype == np.float64
    for col in ("gender", "contract", "payment_method", "internet_service", "multiple_lines"):
        assert isinstance(telco[col].dtype, pd.CategoricalDtype), col
    assert list(telco.columns[:6]) == [
        "customer_id",
        "signup_date",
        "churned",
        "monthly_revenue",
        "tenure_months",
        "total_charges",
    ]


def test_telco_blank_total_charges_are_tenure_zero(telco, telco_raw):
    blank = telco_raw["TotalCharges"].str.strip() == ""
    assert int(blank.sum()) == 11
    assert (telco_raw.loc[blank, "tenure"] == "0").all()
    assert int((telco_raw["tenure"] == "0").sum()) == 11
    # Rows keep file order, so the raw mask selects the same customers.
    assert list(telco.loc[blank.to_numpy(), "customer_id"]) == list(telco_raw.loc[blank, "customerID"])
    assert (telco.loc[blank.to_numpy(), "total_charges"] == 0.0).all()
    assert telco["total_charges"].notna().all()
    assert (telco.loc[~blank.to_numpy(), "total_charges"] > 0).all()


def test_telco_values_match_raw(telco, telco_raw):
    assert (telco["monthly_revenue"] == telco_raw["MonthlyCharges"].astype(float)).all()
    assert (telco["tenure_months"] == telco_raw["tenure"].astype(int)).all()
    assert (telco["churned"] == (telco_raw["Churn"] == "Yes")).all()
    assert (telco["senior_citizen"] == (telco_raw["SeniorCitizen"] == "1")).all()
    assert (telco["partner"] == (telco_raw["Partner"] == "Yes")).all()


def test_telco_contract_categories(telco):
    assert set(telco["contract"].cat.categories) == {"Month-to-month", "One year", "Two year"}
    counts = telco["contract"].value_counts()
    assert counts["Month-to-month"] == 3875
    assert counts["One year"] == 1473
    assert counts["Two year"] == 1695


def test_telco_nominal_signup_date(telco):
    expected = [public.TELCO_SNAPSHOT_DATE - pd.DateOffset(months=int(m)) for m in telco["tenure_months"]]
    assert (telco["signup_date"] == pd.Series(expected, index=telco.index)).all()
    assert (telco["signup_date"] <= public.TELCO_SNAPSHOT_DATE).all()
    new = telco["tenure_months"] == 0
    assert (telco.loc[new, "signup_date"] == public.TELCO_SNAPSHOT_DATE).all()


# --- CDNOW master ---------------------------------------------------------------------------------


def test_cdnow_master_raw_counts(master_raw):
    tx, customers = master_raw["transactions"], master_raw["customers"]
    assert len(tx) == 69659
    assert tx["customer_id"].nunique() == 23570
    assert len(customers) == 23570
    assert customers["customer_id"].is_unique
    assert tx["amount"].sum() == pytest.approx(2_500_315.63, abs=0.01)
    assert int(tx["quantity"].sum()) == 167881


def test_cdnow_master_dtypes(master):
    tx, customers = master["transactions"], master["customers"]
    assert list(tx.columns) == ["customer_id", "date", "amount", "quantity"]
    assert tx["customer_id"].dtype == np.int64
    assert tx["date"].dtype == "datetime64[ns]"
    assert tx["amount"].dtype == np.float64
    assert tx["quantity"].dtype == np.int64
    assert list(customers.columns) == ["customer_id", "signup_date", "cohort"]
    assert customers["signup_date"].dtype == "datetime64[ns]"
    assert isinstance(customers["cohort"].dtype, pd.CategoricalDtype)
    assert set(customers["cohort"]) == {"1997Q1"}
    assert customers["customer_id"].min() == 1 and customers["customer_id"].max() == 23570


def test_cdnow_master_merge_same_day(master, master_raw):
    raw, merged = master_raw["transactions"], master["transactions"]
    repeats = int(raw.duplicated(["customer_id", "date"]).sum())
    assert repeats == 2068
    assert len(merged) == 69659 - 2068
    assert not merged.duplicated(["customer_id", "date"]).any()
    assert merged["amount"].sum() == pytest.approx(raw["amount"].sum(), abs=0.01)
    assert merged["amount"].sum() == pytest.approx(2_500_315.63, abs=0.01)
    assert merged["quantity"].sum() == raw["quantity"].sum()
    assert len(master["customers"]) == 23570


def test_cdnow_master_dates(master):
    tx, customers = master["transactions"], master["customers"]
    assert tx["date"].min() >= pd.Timestamp("1997-01-01")
    assert tx["date"].max() <= pd.Timestamp("1998-06-30")
    assert customers["signup_date"].min() >= pd.Timestamp("1997-01-01")
    assert customers["signup_date"].max() <= pd.Timestamp("1997-03-25")
    first = tx.groupby("customer_id")["date"].min()
    assert (customers.set_index("customer_id")["signup_date"] == first).all()


# --- CDNOW sample and summaries -------------------------------------------------------------------


def test_cdnow_sample_counts(sample_raw, sample):
    raw, merged = sample_raw["transactions"], sample["transactions"]
    assert len(raw) == 6919
    assert raw["customer_id"].nunique() == 2357
    assert len(sample["customers"]) == 2357
    assert int(raw.duplicated(["customer_id", "date"]).sum()) == 223
    assert len(merged) == 6919 - 223
    assert merged["amount"].sum() == pytest.approx(raw["amount"].sum(), abs=0.01)
    # Sample ids, not master ids: 4-digit 1..2357.
    assert sample["customers"]["customer_id"].min() == 1
    assert sample["customers"]["customer_id"].max() == 2357


def test_cdnow_sample_rows_are_in_master(sample_raw, master_raw):
    keys = ["date", "amount", "quantity"]
    raw = pd.read_csv(
        DATA / public.CDNOW_SAMPLE,
        sep=r"\s+",
        header=None,
        names=["master_id", "customer_id", "date", "number_of_cds", "dollar_value"],
    )
    tx = sample_raw["transactions"].assign(master_id=raw["master_id"].to_numpy())
    # load_cdnow sorts stably by (sample id, date); the file is in that order already.
    assert (tx["customer_id"].to_numpy() == raw["customer_id"].to_numpy()).all()
    master_tx = master_raw["transactions"].rename(columns={"customer_id": "master_id"})
    joined = tx.merge(master_tx.drop_duplicates(["master_id", *keys]), on=["master_id", *keys])
    assert len(joined) == len(tx)


@pytest.mark.parametrize(
    ("with_transactions", "freq_col", "columns"),
    [
        (True, "x", ["customer_id", "x", "t_x", "T", "zbar"]),
        (False, "frequency", ["customer_id", "frequency", "recency", "T"]),
    ],
)
def test_cdnow_summary(with_transactions, freq_col, columns):
    df = public.load_cdnow_summary(with_transactions=with_transactions)
    assert list(df.columns) == columns
    assert len(df) == 2357
    assert df["customer_id"].dtype == np.int64
    assert df["customer_id"].is_unique
    assert int((df[freq_col] == 0).sum()) == 1411
    assert (df["T"] > 0).all()


def test_summary_frequency_rederived_from_sample(sample):
    summary = public.load_cdnow_summary().set_index("customer_id")
    tx = sample["transactions"]
    calib = tx[tx["date"] <= CALIBRATION_END]
    repeats = calib.groupby("customer_id").size() - 1
    assert (repeats.reindex(summary.index) == summary["x"]).all()
    # zbar: mean of the repeat (non-first) calibration purchases, to 2-decimal rounding.
    first = calib.groupby("customer_id")["date"].transform("min")
    zbar = calib[calib["date"] > first].groupby("customer_id")["amount"].mean()
    zbar = zbar.reindex(summary.index, fill_value=0.0)
    assert np.allclose(zbar, summary["zbar"], atol=0.006)


# --- errors ---------------------------------------------------------------------------------------


@pytest.fixture()
def data_copy(tmp_path):
    for rel in public.SHA256:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DATA / rel, tmp_path / rel)
    return tmp_path


def _edit_one_byte(path, offset=-10):
    data = bytearray(path.read_bytes())
    data[offset] = ord("9") if data[offset] != ord("9") else ord("8")
    path.write_bytes(bytes(data))


def test_sha256_mismatch_names_the_file(data_copy):
    telco_path = data_copy / public.TELCO_FILE
    _edit_one_byte(telco_path)
    with pytest.raises(DataError) as excinfo:
        public.load_telco(data_copy)
    msg = str(excinfo.value)
    assert str(telco_path) in msg
    assert "sha256 mismatch" in msg
    assert public.SHA256[public.TELCO_FILE] in msg
    assert "\n" not in msg
    # The untouched copies still load from the same folder.
    assert len(public.load_cdnow(data_copy, sample=True)["customers"]) == 2357
    # verify=False reads the edited copy anyway.
    assert len(public.load_telco(data_copy, verify=False)["customers"]) == 7043


def test_sha256_mismatch_cdnow(data_copy):
    sample_path = data_copy / public.CDNOW_SAMPLE
    _edit_one_byte(sample_path, offset=5)
    with pytest.raises(DataError, match="CDNOW_sample.txt: sha256 mismatch"):
        public.load_cdnow(data_copy, sample=True)


def test_missing_file_names_the_file(data_copy):
    (data_copy / public.CDNOW_SUMMARY).unlink()
    with pytest.raises(DataError, match="cdnow_customers_summary.csv: file not found"):
        public.load_cdnow_summary(data_copy, with_transactions=False)


def test_env_var_locates_data(monkeypatch, data_copy):
    monkeypatch.setenv(public.DATA_DIR_ENV, str(data_copy))
    (data_copy / public.CDNOW_SUMMARY_WITH_TRANSACTIONS).unlink()
    with pytest.raises(DataError, match=str(data_copy)):
        public.load_cdnow_summary()


def test_unbilled_rule_refuses_blank_with_tenure(data_copy):
    # An edited copy (verify=False) with a blank TotalCharges for a billed customer is refused.
    path = data_copy / public.TELCO_FILE
    text = path.read_bytes().replace(b",1889.5,No", b", ,No", 1)
    path.write_bytes(text)
    with pytest.raises(DataError, match="TotalCharges"):
        public.load_telco(data_copy, verify=False)
