"""Scoring and features on Apache Spark (`crmscore score --engine spark`), against the single-machine engine.

One trained workspace for the module (1,500 simulated customers; churn, CLV and segments trained with
tiny budgets, the CLV model pinned to the LightGBM one so that both models give SHAP reasons) and one
Spark session in local mode on two cores. The input of the scorings is the simulated data written as
CSV with two bad transaction rows (a negative amount, an unknown customer), so validation, rejects and
row numbers are compared too. Skipped without pyspark (CI installs it with ``.[dev,spark]``).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.conftest import champions, visible, write_layout
from typer.testing import CliRunner

pytest.importorskip("pyspark")

from crmscore import tiers  # noqa: E402
from crmscore.cli import app  # noqa: E402
from crmscore.config import DataSettings, Settings  # noqa: E402
from crmscore.data.load import write_tables  # noqa: E402
from crmscore.errors import DataError  # noqa: E402
from crmscore.explain import REASON_COLUMNS  # noqa: E402
from crmscore.features import build_features  # noqa: E402
from crmscore.scoring import SCORE_COLUMNS, scoring_dir  # noqa: E402
from crmscore.spark import build_features_spark, build_features_sql, spark_session  # noqa: E402
from crmscore.spark.ranges import plan_ranges  # noqa: E402
from crmscore.stages import (  # noqa: E402
    score_stage,
)

runner = CliRunner()
TABLES = ("customers", "transactions", "payments", "interactions")
MAX_DATE = "2026-11-23"  # the simulated history ends 2026-10-31
AS_OF = "2026-09-30"  # some customers sign up later: "known on the as-of date" is a real filter
EARLIER = "2026-06-30"
MASTER = "local[2]"
TEXT_COLUMNS = ["risk_band", "tier", "segment", "lifecycle_stage", "action"]
NUMBER_COLUMNS = ["churn_probability", "expected_spend", "clv", "points", "value_at_risk"]


@dataclasses.dataclass
class Workspace:
    root: Path
    settings: Settings
    params: Path
    tables: dict[str, pd.DataFrame]
    bad_input: Path  # the simulated tables as CSV, with two bad transaction rows
    bad_rows: list[int]  # their 1-based row numbers in transactions.csv
    bad_tables: dict[str, pd.DataFrame]  # the tables written there (and campaigns)


@dataclasses.dataclass
class Scoring:
    folder: Path
    scores: pd.DataFrame
    explanations: pd.DataFrame
    manifest: dict
    migration: pd.DataFrame
    rejects: dict[str, pd.DataFrame]


def _read(folder: Path) -> Scoring:
    return Scoring(
        folder=folder,
        scores=pd.read_parquet(folder / "scores.parquet"),
        explanations=pd.read_parquet(folder / "explanations.parquet"),
        manifest=json.loads((folder / "manifest.json").read_text()),
        migration=pd.read_csv(folder / "tier_migration.csv", index_col=0),
        rejects={p.name.removesuffix(".parquet"): pd.read_parquet(p) for p in (folder / "rejects").iterdir()},
    )


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """Simulated input, registered champions and a corrupted CSV copy of the input, all in a temporary folder."""
    root = tmp_path_factory.mktemp("spark")
    budget = {"trials": 1, "timeout_seconds": 600, "max_trees": 60}
    with champions(root, budget, churn_cutoffs=2, scoring={"out_dir": str(root / "scores")}) as made:
        settings, params, tables = made.settings, made.params, made.tables
        bad = {name: df.copy() for name, df in tables.items()}
        tx = bad["transactions"]
        tx.loc[5, "amount"] = -3.0
        bad["transactions"] = pd.concat([tx, tx.iloc[[0]].assign(customer_id=999_999)], ignore_index=True)
        campaigns = _campaigns(tables["customers"])
        campaigns.loc[3, "cost"] = -4.5
        campaigns.loc[7, "customer_id"] = 999_999
        bad["campaigns"] = campaigns  # validated and counted, never scored
        write_tables(bad, root / "bad", "csv")
        yield Workspace(root, settings, params, tables, root / "bad", [6, len(bad["transactions"])], bad)


def _campaigns(customers: pd.DataFrame) -> pd.DataFrame:
    """Every third customer in a campaign in March 2026, every other one of them treated."""
    ids = customers["customer_id"].to_numpy()[::3]
    treated = np.arange(len(ids)) % 2 == 0
    return pd.DataFrame(
        {
            "customer_id": ids,
            "date": "2026-03-01",
            "campaign": "winback-2026-03",
            "treated": treated.astype(int),
            "cost": np.where(treated, 4.5, np.nan),
            "propensity": 0.5,
        }
    )


@pytest.fixture(scope="module")
def spark():
    """One local Spark session (two cores) for the module; executors run this interpreter."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYSPARK_PYTHON", sys.executable)
        mp.setenv("PYSPARK_DRIVER_PYTHON", sys.executable)
        session = spark_session(MASTER, {"spark.sql.shuffle.partitions": "4", "spark.default.parallelism": "2"})
        try:
            yield session
        finally:
            session.stop()


@pytest.fixture(scope="module")
def scorings(ws, spark, tmp_path_factory) -> tuple[Scoring, Scoring, object]:
    """The same input scored as of AS_OF by both engines, each after the same earlier (local) scoring.

    The Spark scoring runs through the command line (`crmscore score --engine spark --master local[2]`).
    """
    earlier = score_stage(ws.settings, EARLIER, input_dir=ws.bad_input, out_dir=ws.root / "earlier", progress=False)
    outs = {}
    for engine in ("local", "spark"):
        outs[engine] = tmp_path_factory.mktemp(engine)
        shutil.copytree(earlier.out_dir, outs[engine] / earlier.out_dir.name)
    local = score_stage(ws.settings, AS_OF, input_dir=ws.bad_input, out_dir=outs["local"], progress=False)
    args = ["score", "--as-of", AS_OF, "--input", str(ws.bad_input), "--out", str(outs["spark"])]
    result = runner.invoke(app, [*args, "--engine", "spark", "--master", MASTER, "--params", str(ws.params)])
    assert result.exit_code == 0, result.output
    return _read(local.out_dir), _read(scoring_dir(outs["spark"], pd.Timestamp(AS_OF))), result


# --- the scoring ---------------------------------------------------------------------------------------


def test_cli_spark_engine_writes_the_scoring_folder(ws, scorings):
    local, spark_scoring, result = scorings
    folder = spark_scoring.folder
    expected = ["explanations.parquet", "manifest.json", "rejects", "scores.parquet", "tier_migration.csv"]
    assert visible(folder) == expected
    assert (folder / "scores.parquet").is_dir() and any((folder / "scores.parquet").glob("part-*.parquet"))
    assert visible(folder.parent) == [f"as_of={EARLIER}", f"as_of={AS_OF}"]  # no temporary folder left
    assert not (folder / "_staging").exists()
    n = len(local.scores)
    assert result.stdout.startswith(f"scored {n:,} customers as of {AS_OF} in ")
    assert f"rejected rows: 4 (see {folder / 'rejects'})" in result.stdout
    assert f"scores: {folder / 'scores.parquet'}" in result.stdout
    manifest = spark_scoring.manifest
    assert manifest["engine"] == "spark" and manifest["spark"]["master"] == MASTER
    assert manifest["spark"]["input"] == "buckets"  # CSV input: Spark's reader and the cogroup
    assert manifest["spark"]["buckets"] == manifest["chunks"] >= 2
    assert {"features", "predict", "explain", "validate"} <= set(manifest["spark"]["task_seconds"])


def test_spark_scores_equal_the_local_engine(scorings):
    local, spark_scoring, _ = scorings
    a, b = local.scores, spark_scoring.scores
    assert list(b.columns) == SCORE_COLUMNS
    assert len(a) > 1000 and b["customer_id"].tolist() == a["customer_id"].tolist()  # same rows, same order
    for column in NUMBER_COLUMNS:
        np.testing.assert_allclose(b[column], a[column], rtol=0, atol=1e-9, err_msg=column)
    for column in TEXT_COLUMNS:
        assert b[column].astype(str).tolist() == a[column].astype(str).tolist(), column
    for column in ["segment_id", "churn_model_version", "clv_model_version", "segments_model_version"]:
        assert b[column].tolist() == a[column].tolist(), column
    assert (pd.to_datetime(b["as_of"]) == pd.Timestamp(AS_OF)).all()
    assert a["tier"].nunique() > 1 and a["segment"].nunique() > 1 and a["action"].nunique() > 1  # a real comparison


def test_spark_explanations_equal_the_local_engine(scorings):
    local, spark_scoring, _ = scorings
    a, b = local.explanations, spark_scoring.explanations
    assert list(b.columns) == REASON_COLUMNS
    assert len(a) > 1000 and len(b) == len(a)
    for column in ["customer_id", "model", "rank", "feature", "value", "text"]:
        assert b[column].tolist() == a[column].tolist(), column
    for column in ["contribution", "probability_change", "relative_spend_change"]:
        np.testing.assert_allclose(b[column], a[column], rtol=0, atol=1e-9, err_msg=column)


def test_spark_manifest_tiers_migration_and_rejects_equal_the_local_engine(ws, scorings):
    local, spark_scoring, _ = scorings
    m, s = local.manifest, spark_scoring.manifest
    keys = ["as_of", "params_hash", "models", "rows_in", "customers_known", "scored", "rejected", "explanations"]
    for key in [*keys, "feature_checks"]:
        assert s[key] == m[key], key
    assert m["feature_checks"]  # summed over the buckets: customers older than the training ones lie out of range
    assert s["rejected"] == {"customers": 0, "transactions": 2, "payments": 0, "interactions": 0, "campaigns": 2}
    assert s["rows_in"]["campaigns"] == len(pd.read_csv(ws.bad_input / "campaigns.csv"))
    assert s["tiers"] == m["tiers"]  # the same scorecard knots and pyramid boundaries, to the last bit
    assert s["previous_scoring"] == m["previous_scoring"] == f"as_of={EARLIER}"
    # Migration against the earlier scoring (written by the local engine).
    pd.testing.assert_frame_equal(spark_scoring.migration, local.migration)
    assert np.trace(local.migration.loc[list(tiers.TIERS), list(tiers.TIERS)].to_numpy()) > 0
    # Rejected rows: the row as read, its row number in the file, the reason.
    assert sorted(spark_scoring.rejects) == sorted(local.rejects) == ["campaigns", "transactions"]
    got, expected = spark_scoring.rejects["transactions"], local.rejects["transactions"]
    assert list(got.columns) == list(expected.columns)
    assert got["row_number"].tolist() == expected["row_number"].tolist() == ws.bad_rows
    assert got["reason"].tolist() == ["amount: negative", "customer_id: unknown customer"]
    pd.testing.assert_frame_equal(got.astype(str), expected.astype(str))
    got, expected = spark_scoring.rejects["campaigns"], local.rejects["campaigns"]
    assert got["row_number"].tolist() == expected["row_number"].tolist() == [4, 8]
    assert got["reason"].tolist() == ["cost: negative", "customer_id: unknown customer"]
    pd.testing.assert_frame_equal(got.astype(str), expected.astype(str))


# --- Parquet input: ranges of customer ids (no shuffle) against the local engine and the buckets -------------

UNSORTED = ("transactions", "campaigns")  # shuffled, in several row groups: spilled per range first


@pytest.fixture(scope="module")
def parquet_scorings(ws, spark, tmp_path_factory) -> dict[str, Scoring]:
    """The bad tables as Parquet — customers, payments and interactions sorted by customer as the simulator
    writes them, transactions and campaigns shuffled — scored as of AS_OF by the local engine and by Spark
    through ranges of customer ids and through buckets, each after the same earlier (local) scoring."""
    from crmscore.spark.engine import score_spark
    from crmscore.stages import load_scoring_models

    folder = tmp_path_factory.mktemp("parquet-input")
    for name, df in ws.bad_tables.items():
        if name in UNSORTED:
            df = df.sample(frac=1.0, random_state=5).reset_index(drop=True)
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), folder / f"{name}.parquet", row_group_size=700)
    earlier = score_stage(ws.settings, EARLIER, input_dir=folder, out_dir=ws.root / "earlier-parquet", progress=False)
    outs = {}
    for engine in ("local", "ranges", "buckets"):
        outs[engine] = tmp_path_factory.mktemp(f"parquet-{engine}")
        shutil.copytree(earlier.out_dir, outs[engine] / earlier.out_dir.name)
    done = {"local": score_stage(ws.settings, AS_OF, input_dir=folder, out_dir=outs["local"], progress=False)}
    models = load_scoring_models(ws.settings)
    for engine in ("ranges", "buckets"):
        args = (spark, folder, AS_OF, models, ws.settings, outs[engine])
        done[engine] = score_spark(*args, ranges=engine == "ranges")
    return {engine: _read(result.out_dir) for engine, result in done.items()}


def _assert_same_scoring(got: Scoring, expected: Scoring, raw_rejects: bool = True) -> None:
    """Scores, reasons, manifest counts, tier scale, migration and rejects of two scorings are equal
    (without ``raw_rejects``, the rejected rows' numbers and reasons only, not their cells as text)."""
    for name in ("scores", "explanations"):
        a, b = getattr(expected, name), getattr(got, name)
        assert list(b.columns) == list(a.columns) and len(b) == len(a), name
        for column in a.columns:
            if pd.api.types.is_float_dtype(a[column]):
                np.testing.assert_allclose(b[column], a[column], rtol=0, atol=1e-9, err_msg=column)
            else:
                assert b[column].astype(str).tolist() == a[column].astype(str).tolist(), (name, column)
    keys = ["rows_in", "customers_known", "scored", "rejected", "warnings", "explanations", "feature_checks", "tiers"]
    for key in keys:
        assert got.manifest[key] == expected.manifest[key], key
    pd.testing.assert_frame_equal(got.migration, expected.migration)
    assert sorted(got.rejects) == sorted(expected.rejects)
    for table, rejects in expected.rejects.items():
        columns = list(rejects.columns) if raw_rejects else ["row_number", "reason"]
        pd.testing.assert_frame_equal(got.rejects[table][columns].astype(str), rejects[columns].astype(str))


def test_sorted_parquet_scores_through_ranges_equal_to_the_local_engine(parquet_scorings):
    """One task per range of customer ids reads its rows with pyarrow (the unsorted tables spilled per range
    first): the local engine's scoring, row for row, with the rejects' row numbers in the files."""
    local, ranges = parquet_scorings["local"], parquet_scorings["ranges"]
    assert ranges.manifest["spark"]["input"] == "ranges" and ranges.manifest["chunks"] >= 2
    assert {"read", "validate", "features", "explain"} <= set(ranges.manifest["spark"]["task_seconds"])
    assert len(local.scores) > 1000 and local.scores["tier"].nunique() > 1
    assert np.trace(local.migration.loc[list(tiers.TIERS), list(tiers.TIERS)].to_numpy()) > 0
    assert local.manifest["rejected"] == {
        "customers": 0,
        "transactions": 2,
        "payments": 0,
        "interactions": 0,
        "campaigns": 2,
    }
    _assert_same_scoring(ranges, local)
    parts = sorted(p.name for p in (ranges.folder / "scores.parquet").iterdir())
    assert parts == [f"part-{k:05d}.parquet" for k in range(len(parts))] and len(parts) >= 2
    assert not (ranges.folder / "_staging").exists()


def test_parquet_through_buckets_equals_the_local_engine(parquet_scorings):
    """The bucketed path (``ranges=False``) on the same files: the same scoring. (Its rejects show integer
    cells of Parquet files through Spark as decimals, ``1.0`` for ``1``: only their numbers and reasons
    are compared.)"""
    assert parquet_scorings["buckets"].manifest["spark"]["input"] == "buckets"
    _assert_same_scoring(parquet_scorings["buckets"], parquet_scorings["local"], raw_rejects=False)


def test_range_plan_takes_parquet_with_integer_ids_only(ws, tmp_path):
    """Sorted tables are read by row-group statistics, others spilled; CSV, text ids and Spark DataFrames take
    the buckets. The ranges cover every id once, in order."""
    ids = ws.tables["customers"]["customer_id"].head(300)
    tables = {name: df.loc[df["customer_id"].isin(ids)].copy() for name, df in ws.tables.items()}
    settings = ws.settings.data
    write_layout(tables, tmp_path / "sorted", "sorted parquet", row_group_size=500)
    plan = plan_ranges(tmp_path / "sorted", settings, chunk_size=100, parallelism=2)
    assert plan is not None and all(spec.sorted for spec in plan.tables.values())
    assert len(plan) == 3 and plan.bounds[0][0] == -np.inf and plan.bounds[-1][1] == np.inf
    assert all(a[1] == b[0] for a, b in zip(plan.bounds, plan.bounds[1:], strict=False))
    inside = [sum(lo < i <= hi for lo, hi in plan.bounds) for i in ids]
    assert inside == [1] * len(ids)
    assert len(plan_ranges(tmp_path / "sorted", settings, chunk_size=100, parallelism=2, count=7)) == 7
    write_layout(tables, tmp_path / "shuffled", "shuffled parquet", row_group_size=500)
    plan = plan_ranges(tmp_path / "shuffled", settings, chunk_size=100, parallelism=2)
    assert plan is not None and plan.tables["customers"].sorted and not plan.tables["transactions"].sorted
    write_layout(tables, tmp_path / "csv", "csv")
    assert plan_ranges(tmp_path / "csv", settings, chunk_size=100, parallelism=2) is None
    text = {**tables, "customers": tables["customers"].assign(customer_id=lambda d: "c" + d["customer_id"].astype(str))}
    write_layout(text, tmp_path / "text", "sorted parquet")
    assert plan_ranges(tmp_path / "text", settings, chunk_size=100, parallelism=2) is None
    assert plan_ranges({"customers": tables["customers"]}, settings, chunk_size=100, parallelism=2) is None


def _failed_line(ws, tables: dict[str, pd.DataFrame], folder: Path) -> str:
    """The one line both engines print when scoring ``tables`` (written as CSV) fails: exit 2, no output."""
    write_tables(tables, folder / "in", "csv")
    lines = {}
    for engine in ("local", "spark"):
        out = folder / f"out-{engine}"
        args = ["score", "--as-of", AS_OF, "--input", str(folder / "in"), "--out", str(out), "--engine", engine]
        result = runner.invoke(app, [*args, "--params", str(ws.params)])
        assert result.exit_code == 2, result.output
        lines[engine] = result.output.strip().splitlines()
        assert not out.exists() or visible(out) == []
    assert lines["spark"] == lines["local"]
    assert len(lines["spark"]) == 1
    return lines["spark"][0]


def test_unreadable_column_is_the_local_engines_one_line_error(ws, spark, tmp_path):
    """A column with no readable value, met by the executors in a bucket: exit 2, the same line, no output."""
    ids = ws.tables["customers"]["customer_id"].head(40)
    tables = {name: df.loc[df["customer_id"].isin(ids)].copy() for name, df in ws.tables.items()}
    tables["transactions"] = tables["transactions"].astype({"amount": object}).assign(amount="abc")
    assert "column 'amount': uncoercible type: not a number" in _failed_line(ws, tables, tmp_path)


def test_propensity_outside_zero_and_one_is_the_local_engines_one_line_error(ws, spark, tmp_path):
    """A whole-table rule, counted over all buckets (two or more: one per core): the same count, first row and
    line as on one machine."""
    ids = ws.tables["customers"]["customer_id"].head(300)
    tables = {name: df.loc[df["customer_id"].isin(ids)].copy() for name, df in ws.tables.items()}
    campaigns = _campaigns(tables["customers"])
    campaigns.loc[[70, 12, 40], "propensity"] = [0.0, 1.0, 1.0]
    line = _failed_line(ws, {**tables, "campaigns": campaigns}, tmp_path)
    assert "campaigns.csv: column 'propensity': 3 values outside (0, 1) (e.g. '1.0' in row 13)" in line


# --- features --------------------------------------------------------------------------------------------


def _feature_mismatches(got: pd.DataFrame, X: pd.DataFrame) -> list[str]:
    """Columns of a Spark feature frame (``customer_id`` + features) that differ from the pandas builder's ``X``.

    Numbers must agree to 1e-9 with missing values in the same places; text (customer attributes) exactly.
    """
    if list(got.columns) != ["customer_id", *X.columns]:
        return [f"columns {list(got.columns)}"]
    got = got.set_index("customer_id").sort_index()
    if got.index.tolist() != X.index.tolist():  # the same customers, once each
        return ["customer_id"]
    wrong = []
    for column in X.columns:
        if isinstance(X[column].dtype, pd.CategoricalDtype):
            expected = X[column].astype(object).where(X[column].notna(), "<missing>").tolist()
            if got[column].astype(object).where(got[column].notna(), "<missing>").tolist() != expected:
                wrong.append(column)
        else:
            a, b = got[column].to_numpy(dtype=float), X[column].to_numpy(dtype=float)
            if not np.allclose(a, b, rtol=0, atol=1e-9, equal_nan=True):
                wrong.append(column)
    return wrong


def test_spark_features_equal_the_pandas_builder(ws, spark):
    """Parquet input as the simulator writes it (nanosecond timestamps), several buckets."""
    X = build_features(ws.tables, AS_OF, ws.settings.features)
    numeric = [c for c in X.columns if not isinstance(X[c].dtype, pd.CategoricalDtype)]
    assert {"monetary_365d", "collection_rate", "days_since_contact", "ipt_std_days"} <= set(numeric)
    frame = build_features_spark(
        spark, ws.root / "sim", AS_OF, ws.settings.features, data_settings=ws.settings.data, buckets=3
    )
    assert _feature_mismatches(frame.toPandas(), X) == []


def test_sql_features_equal_the_pandas_builder_without_python_workers(ws, spark):
    """Spark SQL aggregations only (no pandas UDF in the plan), same numbers as the pandas builder."""
    X = build_features(ws.tables, AS_OF, ws.settings.features)
    frame = build_features_sql(spark, ws.root / "sim", AS_OF, ws.settings.features, data_settings=ws.settings.data)
    plan = frame._jdf.queryExecution().executedPlan().toString()
    assert "HashAggregate" in plan and "Window" in plan
    assert not any(node in plan for node in ("Pandas", "ArrowEvalPython", "BatchEvalPython", "PythonUDF"))
    assert _feature_mismatches(frame.toPandas(), X) == []
    # Another as-of date: the windows, trends and the known-customer filter move with it.
    X = build_features(ws.tables, EARLIER, ws.settings.features)
    frame = build_features_sql(spark, ws.root / "sim", EARLIER, ws.settings.features, data_settings=ws.settings.data)
    assert len(X) < len(ws.tables["customers"]) and _feature_mismatches(frame.toPandas(), X) == []


def test_sql_features_from_dataframes_with_timestamps_and_dates(ws, spark):
    """Tables handed over as Spark DataFrames: timestamps with a time of day, dates, renamed columns."""
    tables = {}
    for name, df in ws.tables.items():
        df = df.copy()
        for column in df.columns:
            if isinstance(df[column].dtype, pd.CategoricalDtype):
                df[column] = df[column].astype(object)
        tables[name] = df
    # Purchases at 09:30: day counts round down as the pandas builder's do (09:30 the day before the
    # as-of date is 0 days before it; 09:30 on the as-of day lies after the cutoff at midnight).
    tables["transactions"]["date"] = tables["transactions"]["date"] + pd.Timedelta(hours=9, minutes=30)
    X = build_features(tables, AS_OF, ws.settings.features)
    frames = {name: spark.createDataFrame(df) for name, df in tables.items()}
    frames["interactions"] = frames["interactions"].withColumn("date", frames["interactions"]["date"].cast("date"))
    frames["payments"] = frames["payments"].withColumnRenamed("amount_due", "invoiced")
    settings = DataSettings(max_date=MAX_DATE, tables={"payments": {"columns": {"amount_due": "invoiced"}}})
    frame = build_features_sql(spark, frames, AS_OF, ws.settings.features, data_settings=settings)
    assert _feature_mismatches(frame.toPandas(), X) == []


def test_sql_features_stop_on_rows_the_contract_rejects(ws, spark):
    """One-line errors naming the table, column and rule: negative amounts, duplicate ids, text dates."""
    tx = ws.tables["transactions"].head(200).copy()
    tx.loc[tx.index[3], "amount"] = -3.0
    customers = ws.tables["customers"].astype({c: object for c in ws.tables["customers"].select_dtypes("category")})
    frames = {"customers": spark.createDataFrame(customers), "transactions": spark.createDataFrame(tx)}
    with pytest.raises(DataError, match=r"column 'amount': 1 rows break the rule 'below the minimum 0'"):
        build_features_sql(spark, frames, AS_OF)
    frames["transactions"] = spark.createDataFrame(tx.drop(index=tx.index[3]))
    frames["customers"] = spark.createDataFrame(pd.concat([customers, customers.head(2)], ignore_index=True))
    with pytest.raises(DataError, match=r"column 'customer_id': 2 rows break the rule 'duplicate customer id'"):
        build_features_sql(spark, frames, AS_OF)
    with pytest.raises(DataError) as error:
        build_features_sql(spark, ws.bad_input, AS_OF)  # CSV: dates as text
    message = str(error.value)
    assert "\n" not in message and "needs dates or timestamps, found string" in message
    assert "build_features_spark" in message


# --- command line without pyspark --------------------------------------------------------------------------


def test_engine_spark_without_pyspark_is_one_line_exit_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "pyspark", None)  # `import pyspark` now raises ImportError
    result = runner.invoke(app, ["score", "--as-of", AS_OF, "--engine", "spark", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        "error: the Spark engine needs pyspark, which is not installed: pip install 'crmscore[spark]'"
    ]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--engine", "dask"], "error: --engine: expected local or spark, got 'dask'"),
        (["--master", "local[2]"], "error: --master: only with --engine spark"),
    ],
)
def test_bad_engine_arguments_are_one_line_exit_2(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["score", "--as-of", AS_OF, *args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [message]


def test_spark_package_imports_without_pyspark():
    code = (
        "import sys; sys.modules['pyspark'] = None\n"
        "import crmscore.spark, crmscore.spark.engine, crmscore.spark.features, crmscore.spark.tables\n"
        "from crmscore.spark import SparkMissingError, require_pyspark\n"
        "try:\n    require_pyspark()\nexcept SparkMissingError as exc:\n    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("pip install 'crmscore[spark]'")
