"""Input tables on Spark: read, map columns, bucket by customer, and validate bucket by bucket.

The path of a table through the Spark engine:

1. **read** on the executors with ``spark.read`` (Parquet, or CSV with every cell as text, as the
   single-machine loader reads it), never through pandas on the driver; the user's column names are
   mapped onto the contract (``data.tables.<table>.columns``) and whole-file problems (unreadable file,
   missing required column) stop the run on the driver with the loader's one-line messages;
2. **number** the rows in reading order (``_row``, a monotonically increasing id; for one file that is
   the file's order) and **bucket** them by customer: a hash of the customer id (as text, so ``42`` in
   a Parquet file and ``"42"`` in a CSV file meet) modulo the number of buckets, so every row of a
   customer, in every table, lands in the same bucket;
3. per bucket, in the executors, rebuild the pandas tables of that bucket's customers (rows in reading
   order) and **validate** them with :func:`crmscore.data.load.validate_tables` — the same coercion,
   pandera rules and customer check as ``crmscore score`` on one machine (:func:`prepare_bucket`).

What is validated where: every row rule (missing id or date, negative amount, future date, unreadable
value, unknown or rejected customer, duplicate customer id — the first occurrence in reading order is
kept) is checked per bucket, which gives the single-machine result because all rows of one customer id
share a bucket. Whole-column problems ("uncoercible type": no value of a column can be read) are judged
per bucket and stop the run with the same one-line error. Whether ids are numbers or text is decided
once over all customers on the driver (:func:`id_kind`), as the loader decides it over the whole table;
so are the amount bounds (:func:`plausibility`) and the rule that probabilities lie strictly between 0
and 1 (:func:`check_probability_columns`), which count values over whole tables.

Parquet files written by pandas hold nanosecond timestamps, which Spark cannot read as timestamps: the
session reads them as numbers (``spark.sql.legacy.parquet.nanosAsLong``), this module turns them into
microseconds in Spark with exact integer arithmetic, and :func:`prepare_bucket` makes them dates again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crmscore.config import TABLE_NAMES, DataSettings, TableSettings
from crmscore.data.load import (
    CustomerOptions,
    LoadedData,
    OutsideProbabilities,
    _format_of,
    check_probabilities,
    find_table_files,
    missing_table_error,
    money_counts,
    outside_probabilities,
    probability_columns,
    validate_tables,
)
from crmscore.data.plausibility import MONEY_COLUMNS, MagnitudeCounts, Plausibility
from crmscore.data.schemas import CONTRACT, REQUIRED_TABLES
from crmscore.errors import DataError, SettingsError
from crmscore.spark.session import configure

__all__ = [
    "ROW",
    "BUCKET",
    "TABLE",
    "TableSpec",
    "SparkInput",
    "BucketContext",
    "check_probability_columns",
    "read_input",
    "id_kind",
    "bucket_count",
    "bucketed",
    "prepare_bucket",
    "file_row_numbers",
]

#: Helper columns the engine adds: reading order, bucket, and (in the union of the other tables) the table.
ROW = "_row"
BUCKET = "_bucket"
TABLE = "_table"
_PARTITION_BITS = 33  # monotonically_increasing_id: partition id above bit 33, row within the partition below
# Digit-only ids without leading zeros are integers, as the single-machine loader decides (data.load).
_INTEGER_ID = r"^(-?[1-9][0-9]{0,17}|0)$"


@dataclasses.dataclass(frozen=True)
class TableSpec:
    """What the executors need to know about one input table (small and picklable)."""

    name: str
    source: str
    columns: tuple[str, ...]  # contract-named columns in file order (the rejects keep this order)
    micros: tuple[str, ...] = ()  # columns holding microseconds since 1970 (nanosecond timestamps read as numbers)
    categorical: tuple[str, ...] = ()  # Parquet dictionary columns, which pandas reads as categories
    slots: tuple[str, ...] = ()  # the column of each of ``columns`` in the stacked other tables (bucketed)


@dataclasses.dataclass
class SparkInput:
    """The input tables as Spark DataFrames (contract column names and ``_row``) and their specs."""

    frames: dict[str, Any]
    specs: dict[str, TableSpec]

    @property
    def others(self) -> list[str]:
        """The tables besides ``customers``, in contract order."""
        return [t for t in TABLE_NAMES if t in self.frames and t != "customers"]


@dataclasses.dataclass(frozen=True)
class BucketContext:
    """Validation settings shipped to the executors with every bucket function."""

    specs: dict[str, TableSpec]
    id_kind: str  # "int" or "text", decided over all customers
    max_date: dt.date
    date_formats: dict[str, str | None]
    options: CustomerOptions | None = None  # declared attribute types, as the single-machine loader applies them
    checks: Plausibility | None = None  # plausibility checks, amount bounds taken over whole tables

    @classmethod
    def of(cls, inp: SparkInput, settings: DataSettings, kind: str) -> BucketContext:
        """The context of ``inp``, its whole-table values counted first: a probability column outside (0, 1)
        stops here, and the amount bounds are set."""
        customers = settings.tables.get("customers", TableSettings())
        if customers.id == "row" or customers.tenure is not None:
            raise SettingsError(
                "data.tables.customers: id: row and tenure need the whole customers table in file order; "
                "score such a snapshot with --engine local"
            )
        check_probability_columns(inp)
        return cls(
            specs=dict(inp.specs),
            id_kind=kind,
            max_date=settings.max_date or dt.date.today(),
            date_formats={t: settings.tables.get(t, TableSettings()).date_format for t in inp.specs},
            options=CustomerOptions.from_settings(settings),
            checks=plausibility(inp, settings),
        )


def check_probability_columns(inp: SparkInput) -> None:
    """Stop with the loader's one-line error when a probability column (the campaigns' ``propensity``) holds a
    value outside (0, 1) (:func:`crmscore.data.load.check_probabilities`).

    A whole-table rule: the values are counted over the whole table in the executors and the example is the
    first such row in reading order, so the count, the example and its row number are the single-machine
    loader's. Checked on the driver before any bucket is validated (a bucket alone would count its own rows).
    """
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    schema = StructType(
        [
            StructField("column", StringType()),
            StructField("n", LongType()),
            StructField("row", LongType()),
            StructField("value", StringType()),
        ]
    )
    for table, frame in inp.frames.items():
        columns = [c for c in probability_columns(table) if c in frame.columns]
        if not columns:
            continue

        def count(batches, table=table):
            for batch in batches:
                found = outside_probabilities(table, batch, batch[ROW].to_numpy())
                rows = [(c, o.count, o.row, o.value) for c, o in found.items() if o.count]
                if rows:
                    yield pd.DataFrame(rows, columns=["column", "n", "row", "value"])

        found: dict[str, OutsideProbabilities] = {}
        for row in frame.select(ROW, *[f"`{c}`" for c in columns]).mapInPandas(count, schema).collect():
            part = OutsideProbabilities(int(row["n"]), int(row["row"]), row["value"])
            found.setdefault(row["column"], OutsideProbabilities()).merge(part)
        for outside in found.values():  # a _row id → its row number in reading order (one pass, failing runs only)
            ids = frame.sparkSession.createDataFrame([(outside.row,)], "row_number long")
            outside.row = int(file_row_numbers(frame, ids).collect()[0]["row_number"])
        check_probabilities(inp.specs[table].source, found)


def plausibility(inp: SparkInput, settings: DataSettings) -> Plausibility:
    """The plausibility checks with every table's amount bounds, counted over the whole table in the
    executors (magnitude counts add up), as the single-machine loader counts them."""
    from pyspark.sql.types import IntegerType, LongType, StringType, StructField, StructType

    checks = Plausibility(settings.checks)
    schema = StructType(
        [StructField("column", StringType()), StructField("exponent", IntegerType()), StructField("n", LongType())]
    )
    for table, frame in inp.frames.items():
        columns = [c for c in MONEY_COLUMNS.get(table, ()) if c in frame.columns]

        def count(batches, table=table):
            for batch in batches:
                for column, counted in money_counts(table, batch).items():
                    rows = [(column, int(e), int(n)) for e, n in counted.counts.items()]
                    yield pd.DataFrame(rows, columns=["column", "exponent", "n"])

        counts: dict[str, MagnitudeCounts] = {c: MagnitudeCounts() for c in columns}
        if columns:
            totals = frame.select(*[f"`{c}`" for c in columns]).mapInPandas(count, schema)
            for row in totals.groupBy("column", "exponent").sum("n").collect():
                counts[row[0]].counts[int(row[1])] += int(row[2])
        checks = checks.with_counts(table, counts)
    return checks


# --- reading ------------------------------------------------------------------------------------------


def read_input(spark: Any, source: Any, settings: DataSettings | None = None) -> SparkInput:
    """The input tables as Spark DataFrames with contract column names and a ``_row`` reading order.

    ``source`` is a folder (found as the loader finds files: ``data.tables.<t>.file``, else
    ``<table>.parquet`` / ``.csv``; a ``<table>.parquet`` folder of part files works too) or a mapping
    of table name to a file path or a Spark DataFrame. Raises :class:`DataError` for whole-file problems.
    """
    from pyspark.sql import functions as F

    configure(spark)
    settings = settings or DataSettings()
    if isinstance(source, Mapping):
        items = {t: source[t] for t in TABLE_NAMES if source.get(t) is not None}
        unknown = sorted(set(source) - set(TABLE_NAMES))
        if unknown:
            raise DataError(f"{unknown[0]}: not a table of the data contract ({', '.join(TABLE_NAMES)})")
    else:
        items = find_table_files(source, settings)
    missing = [t for t in REQUIRED_TABLES if t not in items]
    if missing:
        raise missing_table_error(missing[0])
    frames, specs = {}, {}
    for table, item in items.items():
        mapping = settings.tables.get(table, TableSettings()).columns
        if isinstance(item, str | os.PathLike):
            frame, footer, name = _read_file(spark, Path(item), table, settings)
        else:
            frame, footer, name = item, {}, table
        frame = _map_columns(frame, table, mapping, name)
        inverse = mapping_inverse(mapping)
        footer = {k: tuple(inverse.get(c.strip(), c.strip()) for c in v) for k, v in footer.items()}
        frame, micros = _to_micros(frame, footer.get("nanoseconds", ()))
        columns = tuple(frame.columns)
        frames[table] = frame.withColumn(ROW, F.monotonically_increasing_id())
        categorical = tuple(c for c in footer.get("dictionary", ()) if c in columns)
        specs[table] = TableSpec(table, name, columns, micros, categorical, _slots(frame))
    return SparkInput(frames, specs)


def _slots(frame: Any) -> tuple[str, ...]:
    """A column name per column, shared by the tables: the k-th column of a Spark type is ``<type>_<k>``.

    Stacking the other tables into these slots instead of one column per table and column keeps the
    rows that travel through the shuffle narrow (each row fills the slots of its own table only).
    """
    seen: dict[str, int] = {}
    slots = []
    for field in frame.schema.fields:
        kind = "".join(ch if ch.isalnum() else "_" for ch in field.dataType.simpleString())
        slots.append(f"{kind}_{seen.get(kind, 0)}")
        seen[kind] = seen.get(kind, 0) + 1
    return tuple(slots)


def mapping_inverse(mapping: Mapping[str, str]) -> dict[str, str]:
    """User column name → contract name."""
    return {user: contract for contract, user in mapping.items()}


def _read_file(spark: Any, path: Path, table: str, settings: DataSettings) -> tuple[Any, dict, str]:
    from pyspark.errors import PySparkException

    kind = _format_of(path, settings.format)
    try:
        if kind == "parquet":
            frame = spark.read.parquet(str(path))
            footer = _parquet_footer(path)
        else:
            frame = (
                spark.read.option("header", True)
                .option("sep", settings.csv_separator)
                .option("encoding", settings.encoding)
                .option("inferSchema", False)  # every cell as text, as the loader reads CSV
                .option("escape", '"')  # "" inside quotes, as pandas reads it
                .option("mode", "PERMISSIVE")
                .csv(str(path))
            )
            footer = {}
        frame = frame.toDF(*[str(c).strip() for c in frame.columns])
    except PySparkException as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot be read as {kind}: {detail}") from None
    return frame, footer, str(path)


def _parquet_footer(path: Path) -> dict[str, tuple[str, ...]]:
    """What the Parquet schema tells beyond Spark's types: nanosecond timestamps and dictionary columns.

    ``nanoseconds``: columns stored as nanosecond timestamps (pandas' default), which Spark reads as
    numbers; ``dictionary``: dictionary-encoded text (pandas categories), which the single-machine
    loader reads as categories. Read from the file footer only (never the data); a path pyarrow cannot
    open (a remote store) is taken to have neither (Spark's own files hold micro- or millisecond
    timestamps, read natively).
    """
    import pyarrow as pa
    import pyarrow.dataset as ds

    try:
        schema = ds.dataset(str(path), format="parquet").schema
    except Exception:  # not reachable from the driver: Spark reads it all the same
        return {}
    return {
        "nanoseconds": tuple(f.name for f in schema if pa.types.is_timestamp(f.type) and f.type.unit == "ns"),
        "dictionary": tuple(f.name for f in schema if pa.types.is_dictionary(f.type)),
    }


def _map_columns(frame: Any, table: str, mapping: Mapping[str, str], source: str) -> Any:
    """Rename the user's columns to the contract's; the loader's one-line errors for missing columns."""
    mapping = dict(mapping or {})
    unknown = sorted(set(mapping) - {c.name for c in CONTRACT[table]})
    if unknown:
        allowed = ", ".join(c.name for c in CONTRACT[table])
        raise DataError(
            f"{source}: data.tables.{table}.columns: '{unknown[0]}' is not a contract column of {table} ({allowed})"
        )
    found = list(frame.columns)
    for contract_name, user_name in mapping.items():
        if user_name not in found:
            raise DataError(
                f"{source}: column '{user_name}' (mapped to {contract_name}): required column is missing; "
                f"columns found: {', '.join(found[:12])}"
            )
    inverse = mapping_inverse(mapping)
    renamed = [inverse.get(c, c) for c in found]
    for spec in CONTRACT[table]:
        if spec.required and spec.name not in renamed:
            raise DataError(
                f"{source}: column '{spec.name}': required column is missing "
                f"(map your column in params.yaml data.tables.{table}.columns); "
                f"columns found: {', '.join(found[:12])}"
            )
    duplicated = sorted({c for c in renamed if renamed.count(c) > 1})
    if duplicated:
        raise DataError(f"{source}: column '{duplicated[0]}': appears twice after mapping")
    reserved = sorted({c for c in renamed if c in (ROW, BUCKET, TABLE)})
    if reserved:
        raise DataError(f"{source}: column '{reserved[0]}': the name is reserved by the Spark engine; rename it")
    return frame.toDF(*renamed)


def _to_micros(frame: Any, micros: tuple[str, ...]) -> tuple[Any, tuple[str, ...]]:
    """Nanosecond timestamps read as numbers → whole microseconds (floor), in exact integer arithmetic.

    Microseconds since 1970 stay below 2**53 until the year 2255, so they survive the float conversion of
    a column with missing values on the way to pandas; nanoseconds would not.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import LongType

    kept = [c for c in micros if c in frame.columns and isinstance(frame.schema[c].dataType, LongType)]
    if kept:
        frame = frame.select(
            *[
                F.expr(f"(`{c}` - pmod(`{c}`, 1000)) div 1000").alias(c) if c in kept else F.col(f"`{c}`")
                for c in frame.columns
            ]
        )
    return frame, tuple(kept)


# --- customers and buckets ------------------------------------------------------------------------------


def _key(frame: Any) -> Any:
    """The customer id as text, the same for 42, 42.0, "42" and " 42 " (the values the loader coerces alike)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import FractionalType, IntegralType

    column = F.col("customer_id")
    dtype = frame.schema["customer_id"].dataType
    if isinstance(dtype, IntegralType):
        return column.cast("string")
    if isinstance(dtype, FractionalType):
        whole = F.floor(column)
        return F.when(column == whole, whole.cast("long").cast("string")).otherwise(column.cast("string"))
    return F.trim(column.cast("string"))


def id_kind(inp: SparkInput) -> str:
    """``"int"`` when every customer id is a whole number (as the loader would coerce them), else ``"text"``."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import FractionalType, IntegralType

    customers = inp.frames["customers"]
    dtype = customers.schema["customer_id"].dataType
    if isinstance(dtype, IntegralType):
        return "int"
    column = F.col("customer_id")
    if isinstance(dtype, FractionalType):
        bad = column.isNotNull() & ~F.isnan(column) & (column != F.floor(column))
    else:
        text = F.trim(column.cast("string"))
        bad = column.isNotNull() & (text != "") & ~text.rlike(_INTEGER_ID)
    return "text" if customers.where(bad).limit(1).count() else "int"


def bucket_count(customers: int, chunk_size: int, parallelism: int) -> int:
    """Buckets of about ``chunk_size`` customers, and at least one per core of the cluster."""
    return max(1, -(-int(customers) // int(chunk_size)), int(parallelism))


def bucketed(inp: SparkInput, buckets: int) -> tuple[Any, Any]:
    """The customers, and the union of the other tables, each row with its ``_bucket``.

    The other tables are stacked into one DataFrame (``_table`` names the table; columns share slots by
    type, see :func:`_slots`), so one cogroup brings a bucket's customers and all their rows together.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    def with_bucket(frame: Any) -> Any:
        return frame.withColumn(BUCKET, F.pmod(F.xxhash64(_key(frame)), F.lit(buckets)))

    customers = with_bucket(inp.frames["customers"])
    stacked = None
    for table in inp.others:
        frame = with_bucket(inp.frames[table])
        spec = inp.specs[table]
        part = frame.select(
            F.lit(table).alias(TABLE),
            F.col(ROW),
            F.col(BUCKET),
            *[F.col(f"`{c}`").alias(slot) for c, slot in zip(spec.columns, spec.slots, strict=True)],
        )
        stacked = part if stacked is None else stacked.unionByName(part, allowMissingColumns=True)
    if stacked is None:  # customers only (e.g. subscription data)
        schema = StructType(
            [StructField(TABLE, StringType()), StructField(ROW, LongType()), StructField(BUCKET, LongType())]
        )
        stacked = customers.sparkSession.createDataFrame([], schema)
    return customers, stacked


# --- one bucket, in an executor -------------------------------------------------------------------------


def prepare_bucket(
    customers: pd.DataFrame, events: pd.DataFrame, ctx: BucketContext
) -> tuple[LoadedData, dict[str, np.ndarray]]:
    """Validate one bucket's tables as the single-machine loader validates a whole input.

    ``customers`` and ``events`` are the bucket's rows as the cogroup hands them over. Returns the
    :class:`~crmscore.data.load.LoadedData` of the bucket (rejects' ``row_number`` replaced by the rows'
    ``_row`` ids; :func:`file_row_numbers` turns those into file row numbers) and each table's ``_row`` ids
    in reading order.
    """
    raw: dict[str, pd.DataFrame] = {}
    rows: dict[str, np.ndarray] = {}
    for table, spec in ctx.specs.items():
        if table == "customers":
            part = customers
        else:
            mine = events[TABLE].to_numpy() == table if len(events) else np.zeros(0, dtype=bool)
            part = events.loc[mine, [ROW, *spec.slots]]
            part.columns = [ROW, *spec.columns]
        part = part.sort_values(ROW, kind="stable")
        rows[table] = part[ROW].to_numpy(dtype=np.int64)
        frame = part.loc[:, list(spec.columns)].reset_index(drop=True)
        for column in spec.micros:
            frame[column] = pd.to_datetime(frame[column], unit="us")
        for column in spec.categorical:
            frame[column] = frame[column].astype("category")
        raw[table] = frame
    loaded = validate_tables(
        raw,
        max_date=ctx.max_date,
        date_formats=ctx.date_formats,
        sources={t: s.source for t, s in ctx.specs.items()},
        options=ctx.options,
        checks=ctx.checks,
    )
    if ctx.id_kind == "text":
        # A bucket whose ids all happen to be digits would make them numbers; the whole input has text ids.
        for table in loaded.tables.values():
            if pd.api.types.is_integer_dtype(table["customer_id"].dtype):
                table["customer_id"] = table["customer_id"].astype("string")
    for table, rejects in loaded.rejects.items():
        if len(rejects):
            rejects["row_number"] = rows[table][rejects["row_number"].to_numpy(dtype=np.int64) - 1]
    return loaded, rows


# --- rejects: reading order → file row numbers ----------------------------------------------------------


def file_row_numbers(frame: Any, ids: Any, column: str = "row_number") -> Any:
    """Replace the ``_row`` ids in ``ids[column]`` by 1-based row numbers in reading order of ``frame``.

    A ``_row`` id holds the Spark partition above bit 33 and the row within it below, so the row number
    is the rows of the earlier partitions plus the position within the partition. Counting rows per
    partition costs one pass over the table; the engine pays it only for tables with rejected rows.
    """
    from pyspark.sql import functions as F

    partition = F.shiftright(F.col(ROW), _PARTITION_BITS)
    counts = sorted(frame.groupBy(partition.alias("p")).count().collect())
    offsets, total = [], 0
    for p, n in counts:
        offsets.append((int(p), total))
        total += int(n)
    spark = frame.sparkSession
    table = spark.createDataFrame(offsets, "p long, offset long")
    within = F.col(column).bitwiseAND(F.lit((1 << _PARTITION_BITS) - 1))
    joined = ids.withColumn("p", F.shiftright(F.col(column), _PARTITION_BITS)).join(F.broadcast(table), "p", "left")
    return joined.withColumn(column, (F.col("offset") + within + F.lit(1)).cast("long")).drop("p", "offset")
