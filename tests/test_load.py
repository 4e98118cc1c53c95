"""The data contract on load: coercion, row rejects with reasons, whole-file errors, mapping."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tests.conftest import MAX_DATE

from crmscore.config import DataSettings, TableSettings
from crmscore.data.load import load_tables, read_table, validate_tables, write_rejects, write_tables
from crmscore.data.schemas import CONTRACT, table_schema
from crmscore.errors import DataError


def _balanced(loaded, raw_tables):
    for table, raw in raw_tables.items():
        report = loaded.reports[table]
        assert report.rows_in == len(raw)
        assert report.rows_in == report.rows_kept + report.rows_rejected
        assert len(loaded.tables[table]) == report.rows_kept
        assert len(loaded.rejects[table]) == report.rows_rejected
        assert sum(report.reasons.values()) >= report.rows_rejected


def test_clean_simulated_tables_pass_unchanged(sim_tables):
    loaded = validate_tables(sim_tables, max_date=MAX_DATE)
    _balanced(loaded, sim_tables)
    for table, df in sim_tables.items():
        assert loaded.reports[table].rows_rejected == 0
        pd.testing.assert_frame_equal(loaded.tables[table], df.reset_index(drop=True), check_dtype=False)


def test_each_row_rule_rejects_with_its_reason(sim_tables):
    customers = sim_tables["customers"]
    customers = pd.concat([customers, customers.iloc[[10]]], ignore_index=True)  # duplicate id
    customers["signup_date"] = customers["signup_date"].astype(object)
    customers.loc[3, "signup_date"] = "2027-01-05"  # future signup
    sim_tables["customers"] = customers

    tx = sim_tables["transactions"].astype({"amount": object, "date": object, "customer_id": object})
    tx.loc[0, "amount"] = -1.5
    tx.loc[1, "customer_id"] = None
    tx.loc[2, "date"] = "not a date"
    tx.loc[3, "date"] = "2031-02-01"
    tx.loc[4, "customer_id"] = 10_000_000
    tx.loc[5, "amount"] = "twelve"
    tx.loc[6, ["amount", "date"]] = [-2.0, "2040-01-01"]  # two rules on one row
    sim_tables["transactions"] = tx

    loaded = validate_tables(sim_tables, max_date=MAX_DATE)
    _balanced(loaded, sim_tables)

    c_rej = loaded.rejects["customers"].set_index("row_number")["reason"]
    assert c_rej[4] == "signup_date: after 2026-11-23 (future date)"
    assert c_rej[len(customers)] == "customer_id: duplicate (first occurrence kept)"
    assert loaded.tables["customers"]["customer_id"].is_unique

    t_rej = loaded.rejects["transactions"].set_index("row_number")["reason"]
    assert t_rej[1] == "amount: negative"
    assert t_rej[2] == "customer_id: missing value"
    assert t_rej[3] == "date: not a date in format YYYY-MM-DD"
    assert t_rej[4] == "date: after 2026-11-23 (future date)"
    assert t_rej[5] == "customer_id: unknown customer"
    assert t_rej[6] == "amount: not a number"
    assert set(t_rej[7].split("; ")) == {"amount: negative", "date: after 2026-11-23 (future date)"}
    # Rows of the customer whose signup was rejected follow it, with their own reason.
    rejected_customer = customers.loc[3, "customer_id"]
    own_rows = (sim_tables["transactions"]["customer_id"] == rejected_customer).sum()
    assert (t_rej == "customer_id: customer rejected in customers").sum() == own_rows
    assert loaded.reports["transactions"].reasons["amount: negative"] == 2

    # The rejected rows are shown as the file held them.
    row = loaded.rejects["transactions"].set_index("row_number").loc[6]
    assert row["amount"] == "twelve"


@pytest.mark.parametrize("seed", range(5))
def test_rows_in_equal_kept_plus_rejected_under_random_corruption(sim_tables, seed):
    rng = np.random.default_rng(seed)
    raw = {}
    for table, df in sim_tables.items():
        df = df.astype({c: object for c in df.columns if c != "customer_id" or table != "customers"})
        n = len(df)
        for spec in CONTRACT[table]:
            if spec.name not in df.columns:
                continue
            hit = rng.random(n) < 0.02
            if spec.kind == "date":
                df.loc[hit, spec.name] = rng.choice(["", "2099-01-01", "31/12/2020", None], hit.sum())
            elif spec.kind in {"number", "integer"}:
                df.loc[hit, spec.name] = rng.choice([-1, "x", None, 1e9], hit.sum())
            elif spec.kind == "id" and table != "customers":
                df.loc[hit, spec.name] = rng.choice([None, -99, 123456789], hit.sum())
        if table == "customers":
            df = pd.concat([df, df.sample(20, random_state=seed)], ignore_index=True)
        raw[table] = df
    loaded = validate_tables(raw, max_date=MAX_DATE)
    _balanced(loaded, raw)
    assert all(loaded.reports[t].rows_rejected > 0 for t in raw)
    # Nothing that was kept breaks a rule.
    for table, kept in loaded.tables.items():
        table_schema(table, MAX_DATE, [c for c in kept.columns if c in {s.name for s in CONTRACT[table]}]).validate(
            kept
        )
        if table != "customers":
            assert kept["customer_id"].isin(loaded.tables["customers"]["customer_id"]).all()


def test_csv_and_parquet_load_the_same(small_sim, tmp_path):
    write_tables(small_sim.tables(), tmp_path / "pq", "parquet")
    write_tables(small_sim.tables(), tmp_path / "csv", "csv")
    settings = DataSettings(max_date=MAX_DATE)
    from_parquet = load_tables(tmp_path / "pq", settings)
    from_csv = load_tables(tmp_path / "csv", settings)
    for table in small_sim.tables():
        a, b = from_parquet.tables[table], from_csv.tables[table]
        assert list(a.columns) == list(b.columns)
        for column in a.columns:
            left, right = a[column], b[column]
            if isinstance(left.dtype, pd.CategoricalDtype):
                left, right = left.astype("string"), right.astype("string")
            pd.testing.assert_series_equal(left, right, check_dtype=False, check_names=False)


def test_column_mapping_and_date_format(small_sim, tmp_path):
    tx = small_sim.transactions.rename(columns={"customer_id": "CustID", "date": "OrderDate", "amount": "Revenue"})
    tx["OrderDate"] = tx["OrderDate"].dt.strftime("%d/%m/%Y")
    customers = small_sim.customers.rename(columns={"customer_id": "CustID", "signup_date": "Created"})
    customers.to_csv(tmp_path / "clients.csv", index=False)
    tx.to_csv(tmp_path / "transactions.csv", index=False)
    settings = DataSettings(
        max_date=MAX_DATE,
        tables={
            "customers": TableSettings(file="clients.csv", columns={"customer_id": "CustID", "signup_date": "Created"}),
            "transactions": TableSettings(
                columns={"customer_id": "CustID", "date": "OrderDate", "amount": "Revenue"}, date_format="%d/%m/%Y"
            ),
        },
    )
    loaded = load_tables(tmp_path, settings)
    assert loaded.reports["transactions"].rows_rejected == 0
    assert set(loaded.tables) == {"customers", "transactions"}
    got = loaded.tables["transactions"]
    assert list(got.columns[:3]) == ["customer_id", "date", "amount"]
    pd.testing.assert_series_equal(got["date"], small_sim.transactions["date"], check_names=False)


def test_string_ids_keep_leading_zeros_and_match_across_tables(small_sim):
    customers = small_sim.customers.copy()
    customers["customer_id"] = customers["customer_id"].map(lambda i: f"{i:07d}")
    tx = small_sim.transactions.copy()
    tx["customer_id"] = tx["customer_id"].map(lambda i: f"{i:07d}")
    loaded = validate_tables({"customers": customers, "transactions": tx}, max_date=MAX_DATE)
    assert loaded.reports["transactions"].rows_rejected == 0
    assert loaded.tables["customers"]["customer_id"].iloc[0] == "0000001"


def test_flags_and_optional_columns_are_coerced():
    customers = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "signup_date": ["2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01"],
            "churned": ["Yes", "no", "maybe", "1"],
            "monthly_revenue": ["10.5", "-3", "7", ""],
            "plan": ["gold", "silver", "gold", "bronze"],
        }
    )
    loaded = validate_tables({"customers": customers}, max_date=MAX_DATE)
    kept = loaded.tables["customers"].set_index("customer_id")
    assert kept["churned"].tolist() == [True, True]  # "Yes", "1"; the others are rejected
    assert kept.loc["d", "monthly_revenue"] != kept.loc["d", "monthly_revenue"]  # empty stays missing
    assert isinstance(kept["plan"].dtype, pd.CategoricalDtype)
    reasons = dict(zip(loaded.rejects["customers"]["customer_id"], loaded.rejects["customers"]["reason"], strict=True))
    assert reasons == {"b": "monthly_revenue: negative", "c": "churned: not a yes/no value"}


# --- whole-file problems ---------------------------------------------------------------------------


def _write_minimal(tmp_path, **tx_columns):
    pd.DataFrame({"customer_id": [1, 2], "signup_date": ["2024-01-01", "2024-01-02"]}).to_csv(
        tmp_path / "customers.csv", index=False
    )
    pd.DataFrame(tx_columns).to_csv(tmp_path / "transactions.csv", index=False)


def test_missing_required_column_stops_with_one_line(tmp_path):
    _write_minimal(tmp_path, customer_id=[1, 2], date=["2024-02-01", "2024-02-02"])
    with pytest.raises(DataError) as err:
        load_tables(tmp_path, DataSettings(max_date=MAX_DATE))
    message = str(err.value)
    assert "transactions.csv: column 'amount': required column is missing" in message
    assert "\n" not in message


def test_mapped_column_absent_names_the_users_column(tmp_path):
    _write_minimal(tmp_path, customer_id=[1], date=["2024-02-01"], amount=[3.0])
    settings = DataSettings(tables={"transactions": TableSettings(columns={"amount": "Revenue"})})
    with pytest.raises(
        DataError, match=r"transactions\.csv: column 'Revenue' \(mapped to amount\): required column is missing"
    ):
        load_tables(tmp_path, settings)


def test_uncoercible_column_stops_with_one_line(tmp_path):
    _write_minimal(tmp_path, customer_id=[1, 2], date=["2024-02-01", "2024-02-02"], amount=["ten", "eleven"])
    with pytest.raises(
        DataError, match=r"transactions\.csv: column 'amount': uncoercible type: not a number \(e\.g\. 'ten'\)"
    ):
        load_tables(tmp_path, DataSettings(max_date=MAX_DATE))


def test_dates_in_another_format_point_at_the_setting(tmp_path):
    _write_minimal(tmp_path, customer_id=[1, 2], date=["01/02/2024", "02/02/2024"], amount=[1, 2])
    with pytest.raises(
        DataError, match=r"column 'date': uncoercible type: .*set data\.tables\.transactions\.date_format"
    ):
        load_tables(tmp_path, DataSettings(max_date=MAX_DATE))
    settings = DataSettings(max_date=MAX_DATE, tables={"transactions": TableSettings(date_format="%d/%m/%Y")})
    loaded = load_tables(tmp_path, settings)
    assert loaded.reports["transactions"].rows_kept == 2
    assert loaded.tables["transactions"]["date"].tolist() == [pd.Timestamp("2024-02-01"), pd.Timestamp("2024-02-02")]


def test_unreadable_file_stops_with_one_line(tmp_path):
    _write_minimal(tmp_path, customer_id=[1], date=["2024-02-01"], amount=[1.0])
    (tmp_path / "transactions.csv").unlink()
    (tmp_path / "transactions.parquet").write_bytes(b"this is not parquet")
    with pytest.raises(DataError, match=r"transactions\.parquet: cannot be read as parquet"):
        load_tables(tmp_path, DataSettings(max_date=MAX_DATE))


def test_customers_table_is_required(tmp_path):
    with pytest.raises(DataError, match="table 'customers' not found"):
        load_tables(tmp_path)


def test_unknown_mapping_key_is_named(tmp_path):
    _write_minimal(tmp_path, customer_id=[1], date=["2024-02-01"], amount=[1.0])
    with pytest.raises(DataError, match="'revenue' is not a contract column of transactions"):
        read_table(tmp_path / "transactions.csv", "transactions", {"revenue": "amount"})


# --- outputs ---------------------------------------------------------------------------------------


def test_rejects_are_written_per_table_with_reasons(sim_tables, tmp_path):
    sim_tables["transactions"].loc[0, "amount"] = -3.0
    loaded = validate_tables(sim_tables, max_date=MAX_DATE)
    (tmp_path / "rejects").mkdir()
    stale = tmp_path / "rejects" / "payments.parquet"
    loaded.rejects["transactions"].to_parquet(stale)  # left over from an earlier run
    paths = write_rejects(loaded, tmp_path)
    assert set(paths) == set(sim_tables)
    tx_rejects = pd.read_parquet(paths["transactions"])
    assert tx_rejects["reason"].tolist() == ["amount: negative"]
    assert tx_rejects["row_number"].tolist() == [1]
    assert len(pd.read_parquet(stale)) == 0  # replaced, not left stale
    assert (tmp_path / "validation.json").exists()
    assert not list(tmp_path.rglob("*.tmp"))


def test_large_tables_are_validated_in_slices_with_file_row_numbers(sim_tables, monkeypatch):
    """Slicing bounds memory; it must change nothing: same rows kept, same rejects, file row numbers."""
    from crmscore.data import load

    tx = sim_tables["transactions"]
    tx.loc[[3, 2500, 7001], "amount"] = -1.0
    tx.loc[5002, "customer_id"] = 10**9
    whole = load.validate_tables(sim_tables, MAX_DATE)
    monkeypatch.setattr(load, "VALIDATION_SLICE_ROWS", 1000)
    sliced = load.validate_tables(sim_tables, MAX_DATE)
    for name in sim_tables:
        pd.testing.assert_frame_equal(sliced.tables[name], whole.tables[name])
        pd.testing.assert_frame_equal(sliced.rejects[name], whole.rejects[name])
    assert sliced.rejects["transactions"]["row_number"].tolist() == [4, 2501, 5003, 7002]
    assert isinstance(sliced.tables["transactions"]["product"].dtype, pd.CategoricalDtype)
