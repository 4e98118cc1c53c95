"""Point-in-time features on Spark, computed per bucket of customers by the pandas feature builder.

:func:`build_features_spark` reads (or takes) the input tables as Spark DataFrames, buckets every row by
customer (:mod:`crmscore.spark.tables`), and in each bucket validates the rows and calls
:func:`crmscore.features.build_features` on that bucket's customers with all their rows — so a
customer's features are the same numbers as on one machine, while no machine ever holds more than one
bucket of the transaction tables. The result is a Spark DataFrame, one row per customer known on the
as-of date: ``customer_id``, then the features in the builder's order (numbers as doubles, customer
attributes as text).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from crmscore.config import DataSettings, FeatureSettings
from crmscore.features import build_features
from crmscore.spark.session import require_pyspark, user_errors
from crmscore.spark.tables import (
    BUCKET,
    BucketContext,
    bucket_count,
    bucketed,
    id_kind,
    prepare_bucket,
    read_input,
)

__all__ = ["build_features_spark", "probe_bucket", "schema_of", "spark_type", "to_spark_frame"]

#: Customers of the small sample the driver validates to learn the output columns (and check the models).
PROBE_CUSTOMERS = 200


def build_features_spark(
    spark: Any,
    tables_or_paths: Any,
    as_of: dt.date | str | pd.Timestamp,
    feature_settings: FeatureSettings | None = None,
    *,
    data_settings: DataSettings | None = None,
    buckets: int | None = None,
    chunk_size: int = 50_000,
) -> Any:
    """Features of every customer known on ``as_of`` as a Spark DataFrame, equal to :func:`build_features`.

    Args:
        spark: the Spark session.
        tables_or_paths: a folder with the input tables, or a mapping of table name to a file path or a
            Spark DataFrame (contract column names, or the names ``data_settings`` maps).
        as_of: the cutoff day; rows dated after it are never used.
        feature_settings: windows and trend window (``features`` section of ``params.yaml``).
        data_settings: column mapping, date formats and the future-date limit (``data`` section); rows
            that fail validation are left out, as ``load_tables`` leaves them out on one machine.
        buckets: number of customer buckets (default: ``chunk_size`` customers per bucket, at least one
            per core).

    Returns:
        A DataFrame with ``customer_id`` and the feature columns (row order unspecified: sort by
        ``customer_id`` to line it up with the pandas builder's output). It is lazy: the buckets are
        computed when an action runs.

    The session gets the engine's runtime settings (:func:`crmscore.spark.session.configure`: UTC session
    time zone, nanosecond Parquet timestamps read as numbers).
    """
    require_pyspark()
    feature_settings = feature_settings or FeatureSettings()
    data_settings = data_settings or DataSettings()
    as_of = pd.Timestamp(as_of).normalize()
    with user_errors():
        inp = read_input(spark, tables_or_paths, data_settings)
        ctx = BucketContext.of(inp, data_settings, id_kind(inp))
        n = buckets or bucket_count(inp.frames["customers"].count(), chunk_size, spark.sparkContext.defaultParallelism)
        customers, events = bucketed(inp, n)
        sample = probe_bucket(customers, events, ctx)
        columns = build_features(sample.tables, as_of, feature_settings).reset_index()
        schema = _schema(columns)
    function = functools.partial(_features_of_bucket, ctx=ctx, as_of=as_of, settings=feature_settings, schema=schema)
    return customers.groupBy(BUCKET).cogroup(events.groupBy(BUCKET)).applyInPandas(function, schema)


def _features_of_bucket(
    customers: pd.DataFrame,
    events: pd.DataFrame,
    *,
    ctx: BucketContext,
    as_of: pd.Timestamp,
    settings: FeatureSettings,
    schema: Any,
) -> pd.DataFrame:
    loaded, _ = prepare_bucket(customers, events, ctx)
    X = build_features(loaded.tables, as_of, settings)
    return to_spark_frame(X.reset_index(), schema)


def probe_bucket(customers: Any, events: Any, ctx: BucketContext) -> Any:
    """A few customers validated on the driver as a bucket is, with empty other tables.

    The feature builder gives the same columns for any customers (a table with no rows still yields its
    features), so this sample tells the output columns of every bucket, and lets the engine check that
    the models' features are there before any executor starts.
    """
    sample = customers.limit(PROBE_CUSTOMERS).toPandas()
    empty = events.limit(0).toPandas()
    loaded, _ = prepare_bucket(sample, empty, ctx)
    return loaded


def spark_type(dtype: Any) -> str:
    """The Spark SQL type of a pandas column of the engine's outputs."""
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype) or dtype is object:
        return "string"
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "long"
    if pd.api.types.is_float_dtype(dtype):
        return "double"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "timestamp_ntz"
    raise TypeError(f"no Spark type for pandas dtype {dtype}")


def _schema(frame: pd.DataFrame) -> Any:
    """Output schema of the features: the id as it is, text as text, every other feature a double.

    (Numbers are declared double whatever the probe's dtype: a table without rows gives integer zeros.)
    """
    types = {}
    for column in frame.columns:
        kind = spark_type(frame[column].dtype)
        types[str(column)] = "double" if column != "customer_id" and kind in {"long", "boolean"} else kind
    return schema_of(types)


def schema_of(types: Mapping[str, str]) -> Any:
    """A Spark ``StructType`` from column name → type: string, long, double, boolean or timestamp_ntz."""
    from pyspark.sql import types as T

    known = {
        "string": T.StringType,
        "long": T.LongType,
        "double": T.DoubleType,
        "boolean": T.BooleanType,
        "timestamp_ntz": T.TimestampNTZType,
    }
    return T.StructType([T.StructField(name, known[kind]()) for name, kind in types.items()])


def to_spark_frame(frame: pd.DataFrame, schema: Any) -> pd.DataFrame:
    """``frame`` with exactly the columns of ``schema``, in types Arrow hands to Spark as they are declared.

    Text and categories become Python strings (missing: None), integers nullable ``Int64``, numbers
    float; columns the frame lacks are all missing.
    """
    out = {}
    n = len(frame)
    index = pd.RangeIndex(n)
    for field in schema.fields:
        name, kind = field.name, field.dataType.simpleString()
        if name not in frame.columns:
            empty = {
                "bigint": pd.array([None] * n, dtype="Int64"),
                "double": np.full(n, np.nan),
                "boolean": pd.array([None] * n, dtype="boolean"),
            }
            out[name] = pd.Series(empty.get(kind, np.full(n, None, dtype=object)), index=index)
            continue
        values = frame[name]
        if kind == "string":
            text = values.to_numpy(dtype=object)
            missing = pd.isna(text)
            if missing.any():
                text = text.copy()
                text[missing] = None
            # dtype=object: pandas would infer its Arrow-backed string dtype, which Spark's Arrow path rejects.
            out[name] = pd.Series(text, index=index, dtype=object)
        elif kind == "bigint":
            out[name] = pd.Series(pd.array(values.to_numpy(), dtype="Int64"), index=index)
        elif kind == "double":
            out[name] = pd.Series(values.to_numpy(dtype=float, na_value=np.nan), index=index)
        elif kind == "boolean":
            out[name] = pd.Series(pd.array(values.to_numpy(), dtype="boolean"), index=index)
        else:
            out[name] = pd.Series(values.to_numpy(), index=index)
    return pd.DataFrame(out, index=index)
