"""Point-in-time features in Spark SQL: the feature builder as DataFrame aggregations, no Python workers.

:func:`build_features_sql` computes the same features as :func:`crmscore.features.build_features`
with Spark's own operators — a day count per row, ``groupBy(customer_id)`` aggregations, one window
per customer for the gaps between purchases, joins of one row per customer — so it runs wherever Spark
runs, on transaction tables of any size, with nothing collected to the driver and no pandas anywhere.

It differs from :func:`crmscore.spark.build_features_spark` in what it takes for granted:

* ``build_features_spark`` validates every row with the data contract per bucket of customers (the
  single-machine loader's code) and then calls the pandas builder per bucket: raw files welcome;
* ``build_features_sql`` takes tables that already follow the contract (a warehouse's cleaned tables,
  or files ``crmscore validate`` accepted) with typed columns: dates as Spark dates or timestamps (or
  the nanosecond timestamps pandas writes to Parquet), numbers as numbers. Before building, it checks
  the rules that would change a feature — missing ids, dates and amounts, negative amounts, duplicate
  customer ids — in one aggregation per table and stops with a one-line :class:`DataError` naming the
  table, column, rule and row count (``check=False`` skips that pass). Text dates (CSV) are refused
  with the same kind of message: read those through ``build_features_spark``.

Every formula mirrors the pandas builder's (``features.py``), down to the order of floating-point
operations where it matters; sums of many amounts may differ in the last bits because Spark adds them
in another order (tested equal to 1e-9).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd

from crmscore.config import DataSettings, FeatureSettings
from crmscore.data.schemas import CONTRACT
from crmscore.errors import DataError
from crmscore.features import FEATURE_TABLES, LABEL_COLUMNS
from crmscore.spark.session import require_pyspark, user_errors
from crmscore.spark.tables import ROW, SparkInput, read_input

__all__ = ["build_features_sql", "check_contract_sql"]

ID = "customer_id"
_DAY_US = 86_400_000_000  # microseconds per day


def build_features_sql(
    spark: Any,
    tables_or_paths: Any,
    as_of: dt.date | str | pd.Timestamp,
    feature_settings: FeatureSettings | None = None,
    *,
    data_settings: DataSettings | None = None,
    check: bool = True,
) -> Any:
    """Features of every customer known on ``as_of`` as a Spark DataFrame, built with Spark SQL only.

    Args:
        spark: the Spark session.
        tables_or_paths: a folder with the input tables (Parquet), or a mapping of table name to a file
            path or a Spark DataFrame (contract column names, or the names ``data_settings`` maps).
        as_of: the cutoff day; rows dated after it are never used.
        feature_settings: windows and trend window (``features`` section of ``params.yaml``).
        data_settings: column mapping and file names (``data`` section).
        check: first check the contract rules that would change a feature (:func:`check_contract_sql`).

    Returns:
        A lazy DataFrame with ``customer_id`` and the feature columns in the pandas builder's order
        (numbers as doubles, missing values as nulls, customer attributes as text or doubles), one row per
        customer with ``signup_date <= as_of``; row order unspecified.
    """
    require_pyspark()
    from pyspark.sql import functions as F

    settings = feature_settings or FeatureSettings()
    as_of = pd.Timestamp(as_of).normalize()
    as_of_us = int(as_of.value // 1000)
    with user_errors():
        inp = read_input(spark, tables_or_paths, data_settings or DataSettings())
        # Only the tables features come from are checked and used (past campaigns are not a feature).
        inp = SparkInput(
            {t: f for t, f in inp.frames.items() if t in FEATURE_TABLES},
            {t: s for t, s in inp.specs.items() if t in FEATURE_TABLES},
        )
        for table in inp.frames:  # typed dates first: the checks compare typed values
            for spec in CONTRACT[table]:
                if spec.kind == "date" and spec.name in inp.frames[table].columns:
                    _micros(inp, table, spec.name)
        if check:
            check_contract_sql(inp)
        frames = {t: f.drop(ROW) for t, f in inp.frames.items()}
        customers = frames["customers"]
        signup = _micros(inp, "customers", "signup_date")
        known = customers.where(signup <= F.lit(as_of_us))
        out = known.select(F.col(ID), _days_before(signup, as_of_us).cast("double").alias("tenure_days"))
        names = ["tenure_days"]
        ids = known.select(ID)

        parts: list[tuple[Any, list[tuple[str, Any]]]] = []
        if "transactions" in frames:
            parts.append(_transactions(inp, frames["transactions"], ids, as_of_us, settings))
            if settings.season:
                angle = 2 * np.pi * as_of.day_of_year / 365.25
                parts.append(
                    (None, [("season_sin", F.lit(float(np.sin(angle)))), ("season_cos", F.lit(float(np.cos(angle))))])
                )
        if "payments" in frames:
            parts.append(_payments(inp, frames["payments"], ids, as_of_us))
        if "interactions" in frames:
            parts.append(_interactions(inp, frames["interactions"], ids, as_of_us, settings))

        for aggregated, columns in parts:
            if aggregated is not None:
                out = out.join(aggregated, on=ID, how="left")
            out = out.select(*[F.col(c) for c in [ID, *names]], *[expr.alias(name) for name, expr in columns])
            names += [name for name, _ in columns]

        attributes = _attributes(inp, known, set(names))
        out = out.join(known.select(ID, *[expr.alias(name) for name, expr in attributes]), on=ID, how="left")
        return out.select(ID, *names, *[name for name, _ in attributes])


def check_contract_sql(inp: SparkInput) -> None:
    """Stop on the first contract rule the tables break that would change a feature (one aggregation per table).

    Checked: missing values in the required columns that may not be empty, numbers below their lower
    bound (negative amounts), and duplicate customer ids. Raises :class:`DataError` naming the file (or
    table), column, rule and number of rows.
    """
    from pyspark.sql import functions as F

    for table, frame in inp.frames.items():
        rules: list[tuple[str, str, Any]] = []
        for spec in CONTRACT[table]:
            if spec.name not in frame.columns:
                continue
            column = F.col(spec.name)
            if not spec.nullable:
                rules.append((spec.name, "missing value", column.isNull()))
            if spec.min_value is not None:
                rules.append((spec.name, f"below the minimum {spec.min_value:g}", column < F.lit(spec.min_value)))
        if not rules:
            continue
        counts = frame.agg(*[_count_if(cond).alias(f"r{k}") for k, (_, _, cond) in enumerate(rules)])
        row = counts.first()
        for k, (column, rule, _) in enumerate(rules):
            if row[f"r{k}"]:
                raise DataError(_broken(inp, table, column, rule, row[f"r{k}"]))
        if table == "customers":
            total = frame.agg(F.count(F.lit(1)).alias("rows"), F.countDistinct(ID).alias("ids")).first()
            if total["rows"] != total["ids"]:
                raise DataError(_broken(inp, table, ID, "duplicate customer id", total["rows"] - total["ids"]))


def _broken(inp: SparkInput, table: str, column: str, rule: str, rows: int) -> str:
    return (
        f"{inp.specs[table].source}: column '{column}': {rows:,} rows break the rule '{rule}'; "
        "build_features_sql takes valid rows (run `crmscore validate` first, or use build_features_spark, "
        "which rejects them)"
    )


# --- days -----------------------------------------------------------------------------------------------


def _micros(inp: SparkInput, table: str, column: str) -> Any:
    """Microseconds since 1970 of a date column, whatever its Spark type; text dates are refused."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import DateType, IntegralType, TimestampNTZType, TimestampType

    spec = inp.specs[table]
    kind = inp.frames[table].schema[column].dataType
    if column in spec.micros and isinstance(kind, IntegralType):
        return F.col(column)
    if isinstance(kind, TimestampType | TimestampNTZType | DateType):
        return F.unix_micros(F.col(column).cast("timestamp"))  # the engine's session time zone is UTC
    raise DataError(
        f"{spec.source}: column '{column}': build_features_sql needs dates or timestamps, found "
        f"{kind.simpleString()} (read text dates through build_features_spark, which parses and validates them)"
    )


def _days_before(micros: Any, as_of_us: int) -> Any:
    """Whole days from the moment to ``as_of`` rounded down (0 on the as-of day; negative after), as numpy does."""
    from pyspark.sql import functions as F

    diff = F.lit(as_of_us) - micros
    return ((diff - F.pmod(diff, F.lit(_DAY_US))) / F.lit(_DAY_US)).cast("long")


def _log_ratio(recent: Any, before: Any) -> Any:
    from pyspark.sql import functions as F

    return F.log1p(recent.cast("double")) - F.log1p(before.cast("double"))


def _count_if(condition: Any) -> Any:
    """Aggregate: rows where ``condition`` holds (0 when none)."""
    from pyspark.sql import functions as F

    return F.sum(F.when(condition, 1).otherwise(0))


def _spend_if(amount: Any, condition: Any) -> Any:
    """Aggregate: the sum of ``amount`` over the rows where ``condition`` holds (0.0 when none)."""
    from pyspark.sql import functions as F

    return F.sum(F.when(condition, amount).otherwise(0.0))


def _zero(name: str) -> Any:
    from pyspark.sql import functions as F

    return F.coalesce(F.col(name), F.lit(0)).cast("double")


# --- the families ---------------------------------------------------------------------------------------


def _transactions(inp: SparkInput, tx: Any, ids: Any, as_of_us: int, settings: FeatureSettings):
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    d, a = F.col("d"), F.col("a")
    has_product = "product" in tx.columns
    rows = tx.select(
        ID,
        _days_before(_micros(inp, "transactions", "date"), as_of_us).alias("d"),
        F.col("amount").cast("double").alias("a"),
        *([F.col("product").cast("string").alias("p")] if has_product else []),
    ).where(d >= 0)
    rows = base = rows.join(ids, on=ID, how="left_semi")
    # Purchases in date order (most days before first), one sort per customer: the first purchase day,
    # the gap from the previous purchase (a new purchase day where it is positive), and the position, so
    # the last purchase's gap is the one between the last two purchases. (No distinct counts: Spark
    # expands the rows once per distinct aggregate.)
    ordered = Window.partitionBy(ID).orderBy(d.desc())
    rows = (
        rows.withColumn("first_d", F.first(d).over(ordered))
        .withColumn("gap", F.lag(d).over(ordered) - d)
        .withColumn("pos", F.row_number().over(ordered))
    )
    t, longest = settings.trend_window_days, max(settings.windows_days)
    aggs = [
        F.count(F.lit(1)).alias("n"),
        F.sum(a).alias("spend"),
        F.min(d).alias("recency"),
        F.max(d).alias("first"),
        _count_if(F.col("gap").isNull() | (F.col("gap") > 0)).alias("purchase_days"),
        _spend_if(a, d == F.col("first_d")).alias("first_day_spend"),
        F.count("gap").alias("n_gaps"),
        F.sum(F.col("gap").cast("double")).alias("gap_sum"),
        F.sum((F.col("gap") * F.col("gap")).cast("double")).alias("gap_sq"),
        F.max_by("gap", "pos").alias("last_gap"),
        _count_if(d < t).alias("recent_n"),
        _count_if((d >= t) & (d < 2 * t)).alias("before_n"),
        _spend_if(a, d < t).alias("recent_spend"),
        _spend_if(a, (d >= t) & (d < 2 * t)).alias("before_spend"),
    ]
    for w in settings.windows_days:
        aggs += [_count_if(d < w).alias(f"n_{w}"), _spend_if(a, d < w).alias(f"spend_{w}")]
    aggregated = rows.groupBy(ID).agg(*aggs)
    if has_product:
        # Distinct products: one row per customer and product with its latest purchase, then counted.
        products = base.where(F.col("p").isNotNull()).groupBy(ID, "p").agg(F.min(d).alias("latest"))
        breadth = products.groupBy(ID).agg(
            F.count(F.lit(1)).alias("breadth"), _count_if(F.col("latest") < longest).alias("breadth_w")
        )
        aggregated = aggregated.join(breadth, on=ID, how="left")

    n, total = _zero("n"), _zero("spend")
    has = n > 0
    repeat_days = F.greatest(_zero("purchase_days") - 1, F.lit(0.0))
    n_gaps = F.col("n_gaps").cast("double")
    mean = F.when(n_gaps > 0, F.col("gap_sum") / n_gaps)
    var = F.when(n_gaps > 1, (F.col("gap_sq") - n_gaps * (mean * mean)) / F.greatest(n_gaps - 1, F.lit(1.0)))
    recency = F.col("recency").cast("double")
    columns = [
        ("recency_days", recency),
        ("first_purchase_days", F.col("first").cast("double")),
        ("frequency_total", n),
        ("monetary_total", total),
        ("avg_order_value", F.when(has, total / F.greatest(n, F.lit(1.0)))),
        ("repeat_purchase_days", F.when(has, repeat_days)),
        ("repeat_spend_mean", F.when(repeat_days > 0, (total - _zero("first_day_spend")) / repeat_days)),
    ]
    for w in settings.windows_days:
        columns += [(f"frequency_{w}d", _zero(f"n_{w}")), (f"monetary_{w}d", _zero(f"spend_{w}"))]
    columns += [
        ("ipt_mean_days", mean),
        ("ipt_std_days", F.when(var.isNotNull(), F.sqrt(F.greatest(var, F.lit(0.0))))),
        ("last_gap_days", F.col("last_gap").cast("double")),
        ("overdue_ratio", F.when(mean.isNotNull(), recency / F.greatest(mean, F.lit(1.0)))),
        ("frequency_trend", _log_ratio(_zero("recent_n"), _zero("before_n"))),
        ("monetary_trend", _log_ratio(_zero("recent_spend"), _zero("before_spend"))),
    ]
    if has_product:
        columns += [("product_breadth", _zero("breadth")), (f"product_breadth_{longest}d", _zero("breadth_w"))]
    return aggregated, columns


def _payments(inp: SparkInput, payments: Any, ids: Any, as_of_us: int):
    from pyspark.sql import functions as F

    due_d = F.col("due_d")
    paid_us = _micros(inp, "payments", "paid_date")
    rows = payments.select(
        ID,
        _days_before(_micros(inp, "payments", "due_date"), as_of_us).alias("due_d"),
        F.col("amount_due").cast("double").alias("due"),
        F.col("amount_paid").cast("double").alias("paid"),
        paid_us.isNotNull().alias("has_paid_date"),
        _days_before(paid_us, as_of_us).alias("paid_d"),
    ).where(due_d >= 0)  # invoices due on or before the as-of date
    rows = rows.join(ids, on=ID, how="left_semi")
    paid_by = F.col("has_paid_date") & (F.col("paid_d") >= 0)  # paid by the as-of date
    paid = F.when(paid_by, F.coalesce(F.col("paid"), F.lit(0.0))).otherwise(F.lit(0.0))
    settled_d = F.when(paid_by, F.col("paid_d")).otherwise(F.lit(0))
    late_d = F.greatest(due_d - settled_d, F.lit(0)).cast("double")
    is_late = (late_d > 0) | (~paid_by & (due_d > 0))
    covered = F.least(paid, F.col("due"))
    aggregated = rows.groupBy(ID).agg(
        F.count(F.lit(1)).alias("invoices"),
        F.sum("due").alias("total_due"),
        F.sum(covered).alias("total_paid"),
        F.sum(late_d).alias("late_days"),
        F.sum(F.when(is_late, 1.0).otherwise(0.0)).alias("late_n"),
        F.sum(F.when(due_d > 0, F.col("due") - covered).otherwise(0.0)).alias("overdue"),
    )
    invoices = _zero("invoices")
    has = invoices > 0
    columns = [
        ("invoices_due", invoices),
        (
            "collection_rate",
            F.when(F.col("total_due") > 0, F.col("total_paid") / F.col("total_due")).when(has, F.lit(1.0)),
        ),
        ("days_late_mean", F.when(has, F.col("late_days") / invoices)),
        ("late_share", F.when(has, F.col("late_n") / invoices)),
        ("overdue_amount", _zero("overdue")),
    ]
    return aggregated, columns


def _interactions(inp: SparkInput, interactions: Any, ids: Any, as_of_us: int, settings: FeatureSettings):
    from pyspark.sql import functions as F

    d = F.col("d")
    rows = interactions.select(
        ID,
        _days_before(_micros(inp, "interactions", "date"), as_of_us).alias("d"),
        F.coalesce(F.lower(F.col("kind").cast("string")) == F.lit("complaint"), F.lit(False)).alias("complaint"),
    ).where(d >= 0)
    rows = rows.join(ids, on=ID, how="left_semi")
    complaint, t = F.col("complaint"), settings.trend_window_days
    aggs = [
        F.min(d).alias("last"),
        _count_if(complaint & (d < t)).alias("recent"),
        _count_if(complaint & (d >= t) & (d < 2 * t)).alias("before"),
    ]
    for w in settings.windows_days:
        aggs += [_count_if(complaint & (d < w)).alias(f"complaints_{w}"), _count_if(d < w).alias(f"contacts_{w}")]
    aggregated = rows.groupBy(ID).agg(*aggs)
    columns = []
    for w in settings.windows_days:
        columns += [(f"complaints_{w}d", _zero(f"complaints_{w}")), (f"contacts_{w}d", _zero(f"contacts_{w}"))]
    columns += [
        ("complaint_trend", _log_ratio(_zero("recent"), _zero("before"))),
        ("days_since_contact", F.col("last").cast("double")),
    ]
    return aggregated, columns


def _attributes(inp: SparkInput, known: Any, computed: set[str]) -> list[tuple[str, Any]]:
    """The customers' own columns beyond the contract, as the pandas builder keeps them.

    Numbers and flags become doubles, text stays text; dates are dropped (their meaning is in tenure and
    the other features); an attribute named like a computed feature is renamed ``customer_<name>``.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import BooleanType, DateType, NumericType, StringType, TimestampNTZType, TimestampType

    contract = {c.name for c in CONTRACT["customers"]} - {"monthly_revenue"}
    spec = inp.specs["customers"]
    out = []
    for field in known.schema.fields:
        name, kind = field.name, field.dataType
        if name in contract or name in LABEL_COLUMNS or name in spec.micros:
            continue
        if isinstance(kind, TimestampType | TimestampNTZType | DateType):
            continue
        if isinstance(kind, NumericType | BooleanType):
            expr = F.col(name).cast("double")
        elif isinstance(kind, StringType):
            expr = F.col(name)
        else:
            expr = F.col(name).cast("string")
        out.append((f"customer_{name}" if name in computed else name, expr))
    return out
