"""Plausibility checks: values that parse but cannot be right are rejected or flagged as params say; tables
rejected in bulk stop the run with the likely setting; whatever validates trains and scores to finite values."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from conftest import MAX_DATE
from crmscore.config import CheckSettings, DataSettings, Settings
from crmscore.data import load
from crmscore.data.load import load_tables, validate_tables, write_tables
from crmscore.data.plausibility import MagnitudeCounts, Plausibility, busy_rows, check_reject_shares
from crmscore.data.stream import StreamedInput
from crmscore.errors import DataError


def _checks(**sections) -> Plausibility:
    return Plausibility(CheckSettings.model_validate(sections))


def _validated(tables, **sections):
    return validate_tables(tables, max_date=MAX_DATE, checks=_checks(**sections))


# --- the amount bound ---------------------------------------------------------------------------------------


def test_the_percentile_bound_brackets_the_robust_percentile_within_a_factor_two():
    rng = np.random.default_rng(0)
    values = rng.lognormal(3, 1.2, 20_000)
    values[:3] = [1e300, 999_999_999.0, 5e7]  # outliers do not move it
    bound = MagnitudeCounts().add(values).percentile_bound()
    clean = np.sort(values)[: len(values) - len(values) // 1000]
    assert clean[-1] <= bound < 2 * clean[-1]
    assert bound < 5e7


def test_magnitude_counts_add_up_whatever_the_split():
    rng = np.random.default_rng(1)
    values = rng.lognormal(2, 2, 5_001)
    whole = MagnitudeCounts().add(values)
    parts = MagnitudeCounts()
    for piece in np.array_split(values, 7):
        parts.merge(MagnitudeCounts().add(piece))
    assert parts.counts == whole.counts
    assert parts.percentile_bound() == whole.percentile_bound()


def test_too_few_values_give_no_percentile_bound_but_the_cap_holds():
    counts = MagnitudeCounts().add([10.0] * 20 + [1e13])
    assert counts.percentile_bound() is None
    checks = _checks().with_counts("transactions", {"amount": counts})
    assert checks.bounds[("transactions", "amount")] == 1e12


def test_a_huge_amount_is_rejected_and_cannot_move_the_clv_total(sim_tables):
    tx = sim_tables["transactions"]
    tx.loc[5, "amount"] = 1e300
    tx.loc[9, "amount"] = 999_999_999.0
    loaded = _validated(sim_tables)
    rejects = loaded.rejects["transactions"]
    assert sorted(rejects["row_number"].tolist()) == [6, 10]
    assert rejects["reason"].str.startswith("amount: implausibly large").all()
    kept = loaded.tables["transactions"]["amount"]
    assert np.isfinite(kept.std())
    # No kept row is worth more than a sliver of all spend.
    assert kept.max() < 0.01 * kept.sum()


def test_amount_checks_can_flag_instead_or_be_off(sim_tables):
    sim_tables["transactions"].loc[5, "amount"] = 999_999_999.0
    flagged = _validated({k: v.copy() for k, v in sim_tables.items()}, amount={"action": "flag"})
    report = flagged.reports["transactions"]
    assert report.rows_rejected == 0
    assert sum(report.warnings.values()) == 1
    assert next(iter(report.warnings)).startswith("amount: implausibly large")
    off = _validated({k: v.copy() for k, v in sim_tables.items()}, amount={"action": "off"})
    assert off.reports["transactions"].rows_rejected == off.reports["transactions"].warnings.get("x", 0) == 0


def test_a_declared_cap_rejects_above_it(sim_tables):
    loaded = _validated(sim_tables, amount={"max": 200.0, "multiple": None})
    tx = sim_tables["transactions"]
    assert loaded.reports["transactions"].rows_rejected == int((tx["amount"] > 200).sum()) > 0


# --- dates, quantities, payments, activity --------------------------------------------------------------------


def test_placeholder_dates_are_rejected_before_the_earliest_date(sim_tables):
    sim_tables["transactions"].loc[3, "date"] = pd.Timestamp("1900-01-01")
    sim_tables["customers"].loc[4, "signup_date"] = pd.Timestamp("1970-01-01")
    loaded = _validated(sim_tables)
    tx = loaded.rejects["transactions"]
    assert "date: before 1970-01-02 (data.checks.date.earliest)" in tx["reason"].tolist()
    assert loaded.rejects["customers"]["reason"].tolist() == [
        "signup_date: before 1970-01-02 (data.checks.date.earliest)"
    ]
    later = _validated(sim_tables, date={"earliest": "1800-01-01"})
    assert later.reports["transactions"].reasons.get("date: before 1800-01-01 (data.checks.date.earliest)") is None


def test_quantities_of_zero_or_below_are_rejected(sim_tables):
    tx = sim_tables["transactions"]
    tx["quantity"] = 1
    tx.loc[[2, 7], "quantity"] = [0, -3]
    loaded = _validated(sim_tables)
    assert loaded.rejects["transactions"]["reason"].tolist() == ["quantity: not positive (data.checks.quantity)"] * 2
    kept = _validated(sim_tables, quantity={"action": "off"})
    assert kept.reports["transactions"].rows_rejected == 0


def test_overpayments_are_flagged_by_default_and_rejected_on_request(sim_tables):
    pay = sim_tables["payments"]
    paid = pay["amount_paid"].notna() & (pay["amount_due"] > 10)
    rows = pay.index[paid][:3]
    pay.loc[rows, "amount_paid"] = pay.loc[rows, "amount_due"] * 1.5
    pay.loc[pay.index[paid][3], "amount_paid"] = pay.loc[pay.index[paid][3], "amount_due"] * 1.005  # within 1 %
    loaded = _validated({k: v.copy() for k, v in sim_tables.items()})
    assert loaded.reports["payments"].warnings == {
        "amount_paid: more than amount_due + 1% (data.checks.overpayment)": 3
    }
    assert loaded.reports["payments"].rows_rejected == 0
    strict = _validated(sim_tables, overpayment={"action": "reject"})
    assert strict.reports["payments"].rows_rejected == 3


def test_absurd_activity_is_flagged(sim_tables):
    tx = sim_tables["transactions"]
    burst = pd.DataFrame(
        {"customer_id": tx["customer_id"].iloc[0], "date": pd.Timestamp("2025-03-03"), "amount": 1.0}, index=range(60)
    )
    sim_tables["transactions"] = pd.concat([tx, burst], ignore_index=True)
    loaded = _validated(sim_tables)
    ((reason, count),) = loaded.reports["transactions"].warnings.items()
    assert reason == "customer_id: more than 50 transactions on one day (data.checks.activity)"
    assert count >= 60


def test_busy_rows_ignore_the_time_of_day_and_unreadable_rows():
    ids = pd.Series([1, 1, 1, 2, None])
    dates = pd.Series(
        pd.to_datetime(
            ["2025-01-01 08:00", "2025-01-01 17:00", "2025-01-02", "2025-01-01", "2025-01-01"], format="ISO8601"
        )
    )
    assert busy_rows(ids, dates, 1).tolist() == [True, True, False, False, False]


def test_slices_and_streamed_chunks_find_what_the_whole_table_finds(sim_tables, tmp_path, monkeypatch):
    tx = sim_tables["transactions"]
    tx.loc[11, "amount"] = 1e15
    burst = pd.DataFrame(
        {"customer_id": tx["customer_id"].iloc[-1], "date": pd.Timestamp("2025-03-03"), "amount": 2.0}, index=range(55)
    )
    sim_tables["transactions"] = pd.concat([tx, burst], ignore_index=True)
    write_tables(sim_tables, tmp_path / "in", fmt="csv")
    settings = DataSettings(max_date=MAX_DATE)
    whole = load_tables(tmp_path / "in", settings)
    monkeypatch.setattr(load, "VALIDATION_SLICE_ROWS", 7_000)
    sliced = load_tables(tmp_path / "in", settings)
    as_of = pd.Timestamp(MAX_DATE)
    with StreamedInput(tmp_path / "in", settings, as_of, chunk_size=300) as streamed:
        for _ in streamed:
            pass
        streamed_reports = streamed.reports
    for table in ("transactions", "payments"):
        for other in (sliced.reports[table], streamed_reports[table]):
            assert other.reasons == whole.reports[table].reasons
            assert other.warnings == whole.reports[table].warnings
    assert whole.reports["transactions"].warnings
    assert any(r.startswith("amount: implausibly large") for r in whole.reports["transactions"].reasons)


# --- tables rejected in bulk --------------------------------------------------------------------------------


def test_a_bulk_reject_stops_with_the_top_reason_and_the_setting():
    report = load.TableReport(
        "transactions", "in/transactions.csv", 1000, 390, 610, {"date: not a date in format %d/%m/%Y": 610}
    )
    with pytest.raises(DataError) as caught:
        check_reject_shares({"transactions": report})
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("in/transactions.csv: 61.0% of 1,000 rows rejected")
    assert "data.tables.transactions.date_format" in message
    check_reject_shares({"transactions": report}, CheckSettings(max_reject_share=0.7))  # a higher limit passes


def test_future_dates_in_bulk_point_at_the_date_format():
    report = load.TableReport("transactions", "t.csv", 100, 80, 20, {"date: after 2026-11-23 (future date)": 20})
    with pytest.raises(DataError, match="day and month swapped"):
        check_reject_shares({"transactions": report})


def _month_first(tables, folder):
    """The transactions written with M/D/YYYY dates, as a US export writes them."""
    write_tables(tables, folder, fmt="csv")
    tx = pd.read_csv(folder / "transactions.csv", dtype=str)
    tx["date"] = pd.to_datetime(tx["date"]).dt.strftime("%-m/%-d/%Y")
    tx.to_csv(folder / "transactions.csv", index=False)


def test_a_wrong_date_format_stops_the_cli_with_one_line(sim_tables, tmp_path):
    _month_first(sim_tables, tmp_path / "in")
    params = tmp_path / "params.yaml"
    params.write_text(
        f"data:\n  max_date: {MAX_DATE}\n  tables:\n    transactions:\n      date_format: '%d/%m/%Y'\n"
        f"paths:\n  reports_dir: {tmp_path / 'reports'}\n"
    )
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "crmscore"),
            "validate",
            "--params",
            str(params),
            "--input",
            str(tmp_path / "in"),
            "--out",
            str(tmp_path / "reports" / "validation"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.strip().splitlines() if line.startswith("error")]
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "rows rejected, above data.checks.max_reject_share (5%)" in lines[0]
    assert "likely setting: data.tables.transactions.date_format" in lines[0]
    # The rejects are written for a look before the run stops.
    assert (tmp_path / "reports" / "validation" / "rejects" / "transactions.parquet").exists()


# --- whatever validates trains and scores to finite values ------------------------------------------------------

_BASE: dict[str, pd.DataFrame] = {}


def _base_tables() -> dict[str, pd.DataFrame]:
    if not _BASE:
        from crmscore.data.simulate import simulate_crm

        _BASE.update(simulate_crm(customers=400, seed=11).tables())
    return {name: df.copy() for name, df in _BASE.items()}


_extreme_amounts = st.sampled_from([0.0, 1e-300, 5e-5, 1e6, 9.99e11, 1e12, 1e13, 1e300, np.inf, np.nan, -1.0])
_extreme_dates = st.sampled_from(["1900-01-01", "1970-01-01", "1970-01-02", "2000-02-29", str(MAX_DATE), "2099-01-01"])


@settings(
    max_examples=6,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # shrinking model fits would take minutes
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    amounts=st.lists(st.tuples(st.integers(0, 5_000), _extreme_amounts), max_size=12),
    dates=st.lists(st.tuples(st.integers(0, 5_000), _extreme_dates), max_size=6),
    attribute=st.sampled_from([None, 1e308, -1e308, 0.0]),
    burst=st.integers(0, 80),
)
def test_any_table_that_validates_trains_and_scores_to_finite_values(amounts, dates, attribute, burst):
    from crmscore import churn
    from crmscore.clv import ml
    from crmscore.clv.value import BtydClv
    from crmscore.features import build_features

    tables = _base_tables()
    tx = tables["transactions"]
    for row, value in amounts:
        tx.loc[row % len(tx), "amount"] = value
    for row, value in dates:
        tx.loc[row % len(tx), "date"] = pd.Timestamp(value)
    if burst:
        one = pd.DataFrame(
            {"customer_id": tx["customer_id"].iloc[0], "date": tx["date"].iloc[0], "amount": 3.0}, index=range(burst)
        )
        tables["transactions"] = pd.concat([tx, one], ignore_index=True)
    if attribute is not None:
        tables["customers"]["score_a"] = np.where(np.arange(len(tables["customers"])) % 2 == 0, attribute, 1.0)
    loaded = validate_tables(tables, max_date=MAX_DATE, checks=Plausibility(CheckSettings(max_reject_share=1.0)))
    valid = loaded.tables
    cfg = Settings(
        churn={"train_cutoffs": 2, "cv_repeats": 0, "min_customers": 50},
        clv={"train_cutoffs": 2, "min_customers": 50},
    )
    as_of = valid["transactions"]["date"].max().normalize()
    X = build_features(valid, as_of, cfg.features)
    numbers = X.select_dtypes("number").to_numpy(dtype=float)
    assert not np.isinf(numbers).any()

    _, sets = churn.churn_datasets(valid, cfg.churn, cfg.features)
    model = churn.ChurnModel(
        params={"num_leaves": 7, "min_child_samples": 10}, max_trees=30, n_folds=2, seed=0, n_jobs=1
    )
    model.fit(sets["train"].X, sets["train"].y)
    p = model.predict_proba(X)[:, 1]
    assert np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()

    clv_sets = ml.clv_datasets(valid, cfg.clv, cfg.features)
    spend = ml.ClvModel(params={"num_leaves": 7, "min_child_samples": 10}, max_trees=30, seed=0, n_jobs=1)
    spend.fit(clv_sets["train"].X, clv_sets["train"].y, clv_sets["valid"].X, clv_sets["valid"].y)
    predicted = spend.predict(X.assign(churn_probability=p))
    assert np.isfinite(predicted).all() and (predicted >= 0).all()
    btyd = BtydClv(horizon_days=365, annual_discount_rate=0.1).fit(X)
    assert np.isfinite(btyd.predict(X)).all()


def test_the_hypothesis_base_is_plausible_so_examples_start_clean():
    loaded = validate_tables(_base_tables(), max_date=MAX_DATE, checks=Plausibility())
    assert all(r.rows_rejected == 0 and not r.warnings for r in loaded.reports.values())
    assert dt.date(1970, 1, 2) == CheckSettings().date.earliest
