"""The campaigns table: its contract on load, the propensity rule, streaming, and `crmscore.campaigns`."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from tests.conftest import MAX_DATE, write_layout
from typer.testing import CliRunner

from crmscore.campaigns import SUMMARY_COLUMNS, campaign_summary, check_campaign_arms
from crmscore.cli import app
from crmscore.config import DataSettings
from crmscore.data import load
from crmscore.data.load import load_tables, validate_tables, write_rejects, write_tables
from crmscore.data.schemas import contract_columns
from crmscore.data.stream import StreamedInput
from crmscore.errors import DataError
from crmscore.features import build_features
from crmscore.scoring import customer_chunks

SETTINGS = DataSettings(max_date=str(MAX_DATE))
AS_OF = pd.Timestamp("2026-03-31")
FOUR = ["customers", "transactions", "payments", "interactions"]
PROPENSITY_ERROR = (
    r"column 'propensity': {n} values? outside \(0, 1\) \(e\.g\. '{value}' in row {row}\); propensities are "
    r"probabilities of being treated, strictly between 0 and 1 \({fix}"
)


def _campaigns(customers: pd.DataFrame, n: int = 400) -> pd.DataFrame:
    """``n`` customers in two campaigns (the first half in March, the rest in September), every other one
    treated at a cost of 4.5, the controls without cost, all with propensity 0.5; sorted by customer."""
    ids = np.sort(customers["customer_id"].to_numpy()[:: max(1, len(customers) // n)][:n])
    spring = np.arange(len(ids)) < len(ids) // 2
    treated = np.arange(len(ids)) % 2 == 0
    return pd.DataFrame(
        {
            "customer_id": ids,
            "date": pd.to_datetime(np.where(spring, "2025-03-01", "2025-09-01")),
            "campaign": np.where(spring, "winback-2025-03", "winback-2025-09"),
            "treated": treated,
            "cost": np.where(treated, 4.5, np.nan),
            "propensity": 0.5,
        }
    )


def _with_bad_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Three bad rows (an unknown customer, a negative cost, a future date), then sorted by customer."""
    frame = frame.copy()
    frame.loc[5, "cost"] = -4.5
    frame.loc[9, "date"] = pd.Timestamp("2031-01-01")
    unknown = frame.iloc[[0]].assign(customer_id=99_999_999)
    return pd.concat([frame, unknown], ignore_index=True).sort_values("customer_id", kind="stable", ignore_index=True)


# --- the contract on load ----------------------------------------------------------------------------------


def test_campaigns_csv_with_mapped_columns_and_a_date_format_loads(sim_tables, tmp_path):
    frame = _campaigns(sim_tables["customers"])
    written = frame.assign(
        date=frame["date"].dt.strftime("%d.%m.%Y"), treated=np.where(frame["treated"], "yes", "no")
    ).rename(columns={"customer_id": "client", "date": "contacted", "treated": "group", "cost": "eur"})
    write_tables({**sim_tables, "campaigns": written}, tmp_path, "csv")
    mapping = {"customer_id": "client", "date": "contacted", "treated": "group", "cost": "eur"}
    settings = DataSettings(
        max_date=str(MAX_DATE), tables={"campaigns": {"columns": mapping, "date_format": "%d.%m.%Y"}}
    )
    loaded = load_tables(tmp_path, settings)
    kept = loaded.tables["campaigns"]
    report = loaded.reports["campaigns"]
    assert (report.rows_in, report.rows_kept, report.rows_rejected) == (len(frame), len(frame), 0)
    assert list(kept.columns) == contract_columns("campaigns")
    assert kept["customer_id"].tolist() == frame["customer_id"].tolist()
    assert kept["date"].tolist() == frame["date"].tolist()
    assert kept["treated"].tolist() == frame["treated"].tolist()
    np.testing.assert_array_equal(kept["cost"].to_numpy(dtype=float), frame["cost"].to_numpy(dtype=float))
    assert kept["propensity"].tolist() == frame["propensity"].tolist()
    # The summary of the loaded table (categorical campaign, nullable booleans) is that of the frame written.
    pd.testing.assert_frame_equal(campaign_summary(kept), campaign_summary(frame))
    # Without the date format, no date can be read: one line naming the file, column and setting.
    settings = DataSettings(max_date=str(MAX_DATE), tables={"campaigns": {"columns": mapping}})
    with pytest.raises(DataError, match=r"campaigns\.csv: column 'date': uncoercible type: not a date in format "):
        load_tables(tmp_path, settings)


def test_each_campaign_row_rule_rejects_with_its_reason(sim_tables):
    frame = _campaigns(sim_tables["customers"]).astype(object)
    customers = sim_tables["customers"].astype({"signup_date": object})
    gone = customers.index[~customers["customer_id"].isin(frame["customer_id"])][0]
    customers.loc[gone, "signup_date"] = "2027-01-05"  # a future signup: the customer is rejected
    frame.loc[0, "customer_id"] = 10_000_000
    frame.loc[1, "date"] = "2031-02-01"
    frame.loc[2, "cost"] = -1.0
    frame.loc[3, "treated"] = None
    frame.loc[4, "treated"] = "maybe"
    frame.loc[5, "campaign"] = None
    frame.loc[6, "cost"] = "five"
    frame.loc[7, "date"] = "1900-01-01"
    frame.loc[8, "cost"] = 5e13
    frame.loc[10, "propensity"] = "half"
    frame.loc[11, "customer_id"] = customers.loc[gone, "customer_id"]  # their row goes with them
    frame.loc[12, ["cost", "date"]] = [-2.0, "2040-01-01"]  # two rules on one row
    frame.loc[13, "propensity"] = None  # allowed: a randomized campaign needs none
    frame.loc[14, "cost"] = None  # allowed: a treated customer without a known cost (the controls have none)
    loaded = validate_tables({**sim_tables, "customers": customers, "campaigns": frame}, max_date=MAX_DATE)
    reasons = loaded.rejects["campaigns"].set_index("row_number")["reason"].to_dict()
    assert set(reasons.pop(13).split("; ")) == {"cost: negative", "date: after 2026-11-23 (future date)"}
    assert reasons == {
        1: "customer_id: unknown customer",
        2: "date: after 2026-11-23 (future date)",
        3: "cost: negative",
        4: "treated: missing value",
        5: "treated: not a yes/no value",
        6: "campaign: missing value",
        7: "cost: not a number",
        8: "date: before 1970-01-02 (data.checks.date.earliest)",
        9: "cost: implausibly large, above 800 (data.checks.amount)",  # 100 × the costs' 99.9th percentile
        11: "propensity: not a number",
        12: "customer_id: customer rejected in customers",
    }
    report = loaded.reports["campaigns"]
    assert report.rows_in == len(frame) == report.rows_kept + report.rows_rejected
    assert report.rows_rejected == len(reasons) + 1 == 12
    assert loaded.rejects["campaigns"].set_index("row_number").loc[7, "cost"] == "five"  # as the file held it
    kept = loaded.tables["campaigns"]
    unrejected = frame.drop(index=[row - 1 for row in [*reasons, 13]])
    assert kept["cost"].isna().sum() == unrejected["cost"].isna().sum() > len(frame) // 3  # empty costs kept
    assert kept["propensity"].isna().sum() == 1


@pytest.mark.parametrize(
    ("value", "shown", "fix"),
    [
        (1.0, "1.0", "a customer sure to be treated \\(1\\) or left out \\(0\\)"),
        (0.0, "0.0", "a customer sure to be treated"),
        (-0.2, "-0.2", "a customer sure to be treated"),
        (1.5, "1.5", "percentages\\? write 0\\.25 for 25 %"),
        (40, "40", "percentages\\? write 0\\.25 for 25 %"),
    ],
)
def test_a_propensity_outside_zero_and_one_stops_with_one_line(sim_tables, value, shown, fix, monkeypatch):
    frame = _campaigns(sim_tables["customers"]).astype({"propensity": object})
    frame.loc[[20, 3, 150], "propensity"] = value
    frame.loc[[0, 1, 2], "propensity"] = [1e-9, 0.999999, None]  # strictly inside, or not given: fine
    expected = "^campaigns: " + PROPENSITY_ERROR.format(n=3, value=shown, row=4, fix=fix)
    tables = {"customers": sim_tables["customers"], "campaigns": frame}
    with pytest.raises(DataError, match=expected) as error:
        validate_tables(tables, max_date=MAX_DATE)
    assert "\n" not in str(error.value)
    # Counted over the whole table, however it is validated in slices.
    with monkeypatch.context() as patched:
        patched.setattr(load, "VALIDATION_SLICE_ROWS", 7)
        with pytest.raises(DataError, match=expected):
            validate_tables(tables, max_date=MAX_DATE)
    frame.loc[[20, 3, 150], "propensity"] = 0.3
    assert validate_tables(tables, max_date=MAX_DATE).reports["campaigns"].rows_kept == 400


def test_validate_command_shows_campaigns_and_stops_on_propensities_with_exit_2(sim_tables, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"data": {"max_date": str(MAX_DATE)}}))
    frame = _with_bad_rows(_campaigns(sim_tables["customers"]))
    write_tables({**sim_tables, "campaigns": frame}, tmp_path / "in", "csv")
    args = ["validate", "--input", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--params", str(params)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    row = next(line.split() for line in result.output.splitlines() if line.startswith("campaigns "))
    assert row[:4] == ["campaigns", "401", "398", "3"]
    summary = json.loads((tmp_path / "out" / "validation.json").read_text())["tables"]["campaigns"]
    assert summary["reasons"] == {
        "cost: negative": 1,
        "customer_id: unknown customer": 1,
        "date: after 2026-11-23 (future date)": 1,
    }
    assert len(pd.read_parquet(tmp_path / "out" / "rejects" / "campaigns.parquet")) == 3
    frame["propensity"] = 25.0
    write_tables({"campaigns": frame}, tmp_path / "in", "csv")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert lines[0].startswith(f"error: {tmp_path / 'in' / 'campaigns.csv'}: column 'propensity': 401 values outside")


# --- streamed input ----------------------------------------------------------------------------------------


LAYOUTS = [("sorted parquet", "_RowGroups"), ("shuffled parquet", "_Spilled"), ("csv", "_Spilled")]


@pytest.mark.parametrize(("layout", "reader"), LAYOUTS)
def test_streamed_campaigns_equal_the_whole_table_loader(sim_tables, tmp_path, layout, reader):
    frame = _with_bad_rows(_campaigns(sim_tables["customers"]))
    write_layout({**sim_tables, "campaigns": frame}, tmp_path / "in", layout, row_group_size=50)
    whole = load_tables(tmp_path / "in", SETTINGS)
    assert whole.reports["campaigns"].rows_rejected == 3
    expected = list(customer_chunks(whole.tables, AS_OF, 137))
    with StreamedInput(tmp_path / "in", SETTINGS, AS_OF, 137, spill_dir=tmp_path) as streamed:
        assert type(streamed._readers["campaigns"]).__name__ == reader
        got = list(streamed)
        assert len(got) == len(expected) > 1
        for mine, theirs in zip(got, expected, strict=True):
            assert set(mine) == set(theirs) == {*FOUR, "campaigns"}
            pd.testing.assert_frame_equal(
                mine["campaigns"].reset_index(drop=True),
                theirs["campaigns"].reset_index(drop=True),
                check_categorical=False,
            )
        pd.testing.assert_frame_equal(streamed.rejects["campaigns"], whole.rejects["campaigns"])
        assert streamed.reports["campaigns"].as_dict() == whole.reports["campaigns"].as_dict()
        report = streamed.reports["campaigns"]
        assert report.rows_in == len(frame) == report.rows_kept + report.rows_rejected


@pytest.mark.parametrize(("layout", "reader"), LAYOUTS)
def test_streamed_input_stops_on_propensities_as_the_whole_table_loader(sim_tables, tmp_path, layout, reader):
    frame = _campaigns(sim_tables["customers"])
    frame.loc[[350, 120], "propensity"] = [0.0, 1.0]
    write_layout({**sim_tables, "campaigns": frame}, tmp_path / "in", layout, row_group_size=50)
    with pytest.raises(DataError) as whole:
        load_tables(tmp_path / "in", SETTINGS)
    with pytest.raises(DataError) as streamed:
        StreamedInput(tmp_path / "in", SETTINGS, AS_OF, 137, spill_dir=tmp_path)
    assert str(streamed.value) == str(whole.value)
    # The first of them in the file, wherever the layout put the rows.
    first = 121 if layout != "shuffled parquet" else None
    pattern = PROPENSITY_ERROR.format(n=2, value=r"[01]\.0", row=first or r"\d+", fix="a customer sure")
    assert re.search(pattern, str(whole.value)), whole.value
    assert not list(tmp_path.glob("crmscore-stream-*"))  # no spill files left behind


def test_an_input_folder_without_campaigns_is_unchanged(sim_tables, tmp_path):
    write_tables(sim_tables, tmp_path / "plain", "csv")
    write_tables({**sim_tables, "campaigns": _campaigns(sim_tables["customers"])}, tmp_path / "with", "csv")
    plain = load_tables(tmp_path / "plain", SETTINGS)
    assert list(plain.tables) == list(plain.rejects) == list(plain.reports) == FOUR
    write_rejects(plain, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out" / "rejects").iterdir()) == sorted(f"{t}.parquet" for t in FOUR)
    assert set(json.loads((tmp_path / "out" / "validation.json").read_text())["tables"]) == set(FOUR)
    with StreamedInput(tmp_path / "plain", SETTINGS, AS_OF, 500) as streamed:
        assert all(list(chunk) == FOUR for chunk in streamed)
        assert list(streamed.reports) == list(streamed.rejects) == FOUR
    # A campaigns table beside the others changes neither them nor the features.
    both = load_tables(tmp_path / "with", SETTINGS)
    assert list(both.tables) == [*FOUR, "campaigns"]
    for table in FOUR:
        pd.testing.assert_frame_equal(both.tables[table], plain.tables[table])
        assert {**both.reports[table].as_dict(), "source": ""} == {**plain.reports[table].as_dict(), "source": ""}
    pd.testing.assert_frame_equal(build_features(both.tables, AS_OF), build_features(plain.tables, AS_OF))


# --- crmscore.campaigns ----------------------------------------------------------------------------------------


def _arms(groups: dict[str, tuple[int, int]], repeat: int = 1) -> pd.DataFrame:
    """Campaigns with (treated, controls) customers each, dated a month apart in the given order; every
    customer's row ``repeat`` times (several contacts of one customer count once)."""
    rows = []
    next_id = 1
    for k, (name, (treated, controls)) in enumerate(groups.items()):
        for is_treated, count in ((True, treated), (False, controls)):
            for _ in range(count):
                rows += [(next_id, pd.Timestamp("2025-01-01") + pd.DateOffset(months=k), name, is_treated)] * repeat
                next_id += 1
    frame = pd.DataFrame(rows, columns=["customer_id", "date", "campaign", "treated"])
    return frame.assign(cost=np.where(frame["treated"], 2.0, np.nan))


@pytest.mark.parametrize(
    ("groups", "min_per_arm", "message"),
    [
        (
            {"winback-2025-03": (1200, 0)},
            50,
            "campaigns: campaign 'winback-2025-03' has no control group (all 1,200 customers treated); "
            "uplift needs randomized controls",
        ),
        (
            {"ok": (60, 60), "holdout-only": (0, 300)},
            50,
            "campaigns: campaign 'holdout-only' has no treated customers (all 300 in the control group); "
            "uplift needs treated customers",
        ),
        (
            {"small-controls": (200, 49)},
            50,
            "campaigns: campaign 'small-controls' has 49 customers in the control group, fewer than 50; "
            "uplift needs a larger control group",
        ),
        (
            {"one-treated": (1, 80)},
            50,
            "campaigns: campaign 'one-treated' has 1 customer treated, fewer than 50; "
            "uplift needs more treated customers",
        ),
        (
            {"z-first": (10, 0), "a-second": (0, 10), "m-third": (3, 3), "fine": (5, 5)},
            5,
            "campaigns: campaign 'z-first' has no control group (all 10 customers treated); "
            "uplift needs randomized controls (2 other campaigns too)",
        ),
    ],
)
def test_check_campaign_arms_names_what_is_missing(groups, min_per_arm, message):
    frame = _arms(groups, repeat=2)
    with pytest.raises(DataError) as error:
        check_campaign_arms(frame, min_per_arm)
    assert str(error.value) == message


def test_check_campaign_arms_passes_both_arms_and_judges_pooled_campaigns_together():
    assert check_campaign_arms(_arms({"a": (50, 50), "b": (70, 400)})) is None
    split = _arms({"all-treated": (100, 0), "all-controls": (0, 100)})
    with pytest.raises(DataError, match="'all-treated' has no control group"):
        check_campaign_arms(split)
    assert check_campaign_arms(split, pooled=True) is None
    with pytest.raises(DataError) as error:
        check_campaign_arms(_arms({"a": (100, 0), "b": (120, 0)}), pooled=True)
    assert str(error.value) == (
        "campaigns: the 2 campaigns together have no control group (all 220 customers treated); "
        "uplift needs randomized controls"
    )
    with pytest.raises(DataError, match="together have 30 customers in the control group, fewer than 50"):
        check_campaign_arms(_arms({"a": (100, 10), "b": (120, 20)}), pooled=True)


def test_check_campaign_arms_without_a_table_or_rows():
    with pytest.raises(DataError, match=r"^campaigns: no campaigns table \(campaigns\.parquet or campaigns\.csv"):
        check_campaign_arms(None)
    with pytest.raises(DataError, match=r"^campaigns: the table has no rows \(none in the file, or every row rejected"):
        check_campaign_arms(_arms({}))
    with pytest.raises(DataError, match=r"^campaigns: column 'treated': required column is missing$"):
        check_campaign_arms(_arms({"a": (60, 60)}).drop(columns="treated"))
    with pytest.raises(ValueError, match="min_per_arm 0"):
        check_campaign_arms(_arms({"a": (60, 60)}), min_per_arm=0)


def test_campaign_summary_counts_customers_once_per_campaign_and_group():
    frame = pd.DataFrame(
        {
            "customer_id": [1, 2, 3, 4, 1, 1, 5, 6],
            "date": pd.to_datetime(
                ["2025-09-01", "2025-09-02", "2025-09-03", "2025-09-01"]
                + ["2025-03-01", "2025-03-08", "2025-03-01", "2025-03-02"]
            ),
            "campaign": ["a-autumn"] * 4 + ["z-spring"] * 4,
            "treated": [1, 1, 1, 0, 1, 1, 0, 0],
            "cost": [5.0, 5.0, None, None, 2.0, 3.0, 0.0, None],
            "propensity": [0.4, 0.4, 0.4, 0.4, 0.2, 0.2, None, 0.2],
        }
    )
    expected = pd.DataFrame(
        {
            "first_date": pd.to_datetime(["2025-03-01", "2025-09-01"]).astype("datetime64[ns]"),
            "last_date": pd.to_datetime(["2025-03-08", "2025-09-03"]).astype("datetime64[ns]"),
            "treated": [1, 3],
            "controls": [2, 1],
            "treated_share": [1 / 3, 3 / 4],
            "total_cost": [5.0, 10.0],
            "propensity_given": [False, True],
        },
        index=pd.Index(["z-spring", "a-autumn"], name="campaign", dtype="string"),
    )
    got = campaign_summary(frame)
    assert list(got.columns) == SUMMARY_COLUMNS
    pd.testing.assert_frame_equal(got, expected, check_index_type=False)
    assert campaign_summary(frame.drop(columns="propensity"))["propensity_given"].tolist() == [False, False]
    assert len(campaign_summary(frame.iloc[:0])) == 0
