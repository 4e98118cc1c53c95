"""Input sorted by customer on Spark: one task per range of customer ids, each reading its own rows.

When every input table is a Parquet file whose row groups are ordered by customer id (as the simulator
writes them, and as the single-machine engine exploits them per chunk, :mod:`crmscore.data.stream`),
the Spark engine needs neither a shuffle nor the JVM to read the input:

1. the driver cuts the customer ids into ranges ``(lo, hi]`` of about ``scoring.chunk_size`` customers
   (:func:`plan_ranges`: it reads the customers' id column, nothing else);
2. one Spark job counts, over whole tables, what validation needs to know before any range is validated
   — the money columns' magnitudes (the amount bounds) and the probabilities outside (0, 1) — one task
   per row group (:func:`whole_table_checks`), as the single-machine engine counts them in one pass;
3. each scoring task reads its range of every table with pyarrow from the shared files — only the row
   groups whose ``customer_id`` statistics overlap the range, the rows in file order with their row
   numbers in the file — and validates them with :func:`crmscore.data.load.validate_tables`
   (:func:`read_range`), exactly the rows and rules of the single-machine engine's chunk.

Every row of a table lies in exactly one range (the first range starts at minus infinity, the last ends
at plus infinity; rows of unknown customers are rejected in the range of their id), so the rows read,
kept and rejected add up as on one machine. Any other input (CSV, unsorted Parquet, text ids, tables
given as Spark DataFrames, a path pyarrow cannot open) takes the bucketed path of
:mod:`crmscore.spark.tables`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crmscore.config import TABLE_NAMES, DataSettings, TableSettings
from crmscore.data.load import (
    CustomerOptions,
    LoadedData,
    OutsideProbabilities,
    _format_of,
    _Validator,
    check_probabilities,
    find_table_files,
    map_columns,
    money_counts,
    outside_probabilities,
    probability_columns,
    snapshot_date_of,
    validate_tables,
)
from crmscore.data.plausibility import MONEY_COLUMNS, MagnitudeCounts, Plausibility
from crmscore.data.stream import _RowGroups
from crmscore.errors import DataError

__all__ = [
    "RangeTable",
    "RangePlan",
    "RangeContext",
    "plan_ranges",
    "whole_table_checks",
    "probe",
    "read_range",
    "RangeRows",
]

#: Customers of the sample the driver validates to learn the output columns (and check the models).
PROBE_CUSTOMERS = 200


@dataclasses.dataclass(frozen=True)
class RangeTable:
    """One input table as the tasks read it: its file, its id column's name there and the column mapping."""

    name: str
    path: str
    id_column: str
    columns: dict[str, str]  # contract name → the file's name (data.tables.<table>.columns)
    sorted: bool = True  # row groups ordered by customer id (else the table is spilled per range first)

    def counted(self, names: list[str]) -> dict[str, str]:
        """The file's columns counted over the whole table (money and probability columns): file → contract."""
        wanted = {
            self.columns.get(c, c): c for c in (*MONEY_COLUMNS.get(self.name, ()), *probability_columns(self.name))
        }
        return {n: wanted[n.strip()] for n in names if n.strip() in wanted}


@dataclasses.dataclass(frozen=True)
class RangePlan:
    """The tables and the customer id ranges ``(lo, hi]`` of a scoring, one range per task, in id order."""

    tables: dict[str, RangeTable]
    bounds: tuple[tuple[float, float], ...]
    customers: int  # rows of the customers file

    def __len__(self) -> int:
        return len(self.bounds)


@dataclasses.dataclass(frozen=True)
class RangeContext:
    """Validation settings shipped to the tasks, the whole-table amount bounds included."""

    max_date: dt.date
    date_formats: dict[str, str | None]
    sources: dict[str, str]
    options: CustomerOptions
    checks: Plausibility


# --- the plan, on the driver ----------------------------------------------------------------------------


def plan_ranges(
    source: Any, settings: DataSettings, chunk_size: int, parallelism: int, count: int | None = None
) -> RangePlan | None:
    """The range plan of ``source`` when every table is a Parquet file with integer customer ids, else None.

    ``count`` ranges (default: ``chunk_size`` customers per range, at least ``parallelism``). A missing
    required column raises the single-machine loader's one-line :class:`DataError`.
    """
    paths = _table_paths(source, settings)
    if paths is None:
        return None
    customers = settings.tables.get("customers", TableSettings())
    if customers.id == "row" or customers.tenure is not None:
        return None  # needs the whole table in file order: the bucketed path says so
    tables = {}
    for table, path in paths.items():
        spec = _range_table(table, path, settings)
        if spec is None:
            return None
        tables[table] = spec
    ids = _customer_ids(tables["customers"])
    n = max(1, -(-len(ids) // int(chunk_size)), int(parallelism)) if count is None else max(1, int(count))
    return RangePlan(tables, _bounds(np.unique(ids), n), len(ids))


def _table_paths(source: Any, settings: DataSettings) -> dict[str, Path] | None:
    """Every table's file when all are local Parquet files (the tables given as paths), else None."""
    if isinstance(source, Mapping):
        if not all(isinstance(source[t], str | os.PathLike) for t in source if source[t] is not None):
            return None
        if set(source) - set(TABLE_NAMES) or "customers" not in source:
            return None  # the bucketed path gives the one-line error
        paths = {t: Path(source[t]) for t in TABLE_NAMES if source.get(t) is not None}
    else:
        paths = find_table_files(source, settings)
    if all(p.is_file() and _format_of(p, settings.format) == "parquet" for p in paths.values()):
        return paths
    return None


def _range_table(table: str, path: Path, settings: DataSettings) -> RangeTable | None:
    """The table's spec when its customer ids are integers; ``sorted`` when its row groups are in id order."""
    mapping = dict(settings.tables.get(table, TableSettings()).columns or {})
    try:
        schema = pq.ParquetFile(path).schema_arrow
    except Exception:  # unreadable here: the bucketed path reports it
        return None
    map_columns(schema.empty_table().to_pandas(), path, table, mapping)  # missing columns: one line
    id_column = mapping.get("customer_id", "customer_id")
    if not pa.types.is_integer(schema.field(id_column).type):
        return None
    ordered = _RowGroups.open(path, id_column, integer_ids=True) is not None
    return RangeTable(table, str(path), id_column, mapping, ordered)


def _customer_ids(customers: RangeTable) -> np.ndarray:
    column = pq.read_table(customers.path, columns=[customers.id_column]).column(0)
    return pc.drop_null(column).to_numpy()


def _bounds(ids: np.ndarray, n: int) -> tuple[tuple[float, float], ...]:
    """``n`` ranges (fewer when there are fewer ids) of about equally many of the sorted unique ``ids``."""
    if len(ids) == 0:
        return ((-math.inf, math.inf),)
    size = -(-len(ids) // n)
    ranges = -(-len(ids) // size)
    uppers = [int(v) for v in ids[size - 1 :: size][: ranges - 1]]
    return tuple(zip([-math.inf, *uppers], [*uppers, math.inf], strict=True))


# --- whole-table counts, one task per row group ---------------------------------------------------------


def whole_table_checks(spark: Any, plan: RangePlan, settings: DataSettings) -> RangeContext:
    """Count the money and probability columns of every table on the executors; the validation context.

    A probability outside (0, 1) stops here with the single-machine loader's one-line error (the count,
    the first such row in the file and its value); the money columns' magnitude counts give the amount
    bounds, as :class:`crmscore.data.stream.StreamedInput` takes them.
    """
    units = []
    for spec in plan.tables.values():
        file = pq.ParquetFile(spec.path)
        if spec.counted(file.schema_arrow.names):
            units += [(spec, i) for i in range(file.num_row_groups)]
    found = spark.sparkContext.parallelize(units, max(1, len(units))).map(_count_row_group).collect() if units else []
    checks = Plausibility(settings.checks)
    for table, spec in plan.tables.items():
        columns = spec.counted(pq.ParquetFile(spec.path).schema_arrow.names).values()
        money = {c: MagnitudeCounts() for c in columns if c in MONEY_COLUMNS.get(table, ())}
        outside: dict[str, OutsideProbabilities] = {}
        for name, counts, probabilities in found:
            if name == table:
                for column, part in counts.items():
                    money[column].merge(MagnitudeCounts(part))
                for column, (n, row, value) in probabilities.items():
                    outside.setdefault(column, OutsideProbabilities()).merge(OutsideProbabilities(n, row, value))
        check_probabilities(spec.path, outside)
        checks = checks.with_counts(table, money)
    return RangeContext(
        max_date=settings.max_date or dt.date.today(),
        date_formats={t: settings.tables.get(t, TableSettings()).date_format for t in plan.tables},
        sources={t: spec.path for t, spec in plan.tables.items()},
        options=CustomerOptions.from_settings(settings, snapshot_date_of(settings, plan.tables["customers"].path)),
        checks=checks,
    )


def _count_row_group(unit: tuple[RangeTable, int]) -> tuple[str, dict, dict]:
    """One row group's money magnitude counts and probabilities outside (0, 1) (rows numbered in the file)."""
    spec, i = unit
    file = pq.ParquetFile(spec.path)
    counted = spec.counted(file.schema_arrow.names)
    part = file.read_row_group(i, columns=list(counted)).to_pandas().rename(columns=counted)
    first = 1 + sum(file.metadata.row_group(j).num_rows for j in range(i))
    rows = np.arange(first, first + len(part), dtype=np.int64)
    money = {c: dict(m.counts) for c, m in money_counts(spec.name, part).items()}
    outside = {c: (o.count, o.row, o.value) for c, o in outside_probabilities(spec.name, part, rows).items() if o.count}
    return spec.name, money, outside


# --- tables not sorted by customer: spilled per range, one task per row group --------------------------------

# Columns a spill file adds: the row's range and its row number in the table's file.
_RANGE = "__crmscore_range__"
_ROW = "__crmscore_row__"

#: Per table, where one range's rows of the spilled tables are: (spill file, row group), in file order.
Spilled = dict[str, list[tuple[str, int]]]


def spill(spark: Any, plan: RangePlan, folder: Path) -> list[Spilled]:
    """Split the tables not sorted by customer into per-range pieces; per range, where its pieces are.

    One task per row group of such a table writes ``folder/<table>/part-<row group>.parquet`` with one
    row group per range its rows belong to (each row once, with its row number in the file; rows without
    a customer id go to the last range, where validation rejects them), as the single-machine engine
    spills such a table per chunk.
    """
    units = [
        (spec, i)
        for spec in plan.tables.values()
        if not spec.sorted
        for i in range(pq.ParquetFile(spec.path).num_row_groups)
    ]
    out: list[Spilled] = [{} for _ in plan.bounds]
    if not units:
        return out
    uppers = np.array([hi for _, hi in plan.bounds[:-1]], dtype=np.int64)
    function = functools.partial(_spill_row_group, uppers=uppers, folder=str(folder))
    for table, path, pieces in spark.sparkContext.parallelize(units, len(units)).map(function).collect():
        for k, group in pieces:
            out[k].setdefault(table, []).append((path, group))
    for pieces_of_range in out:
        for pieces in pieces_of_range.values():
            pieces.sort()  # the parts are named after the row groups: file order
    return out


def _spill_row_group(
    unit: tuple[RangeTable, int], *, uppers: np.ndarray, folder: str
) -> tuple[str, str, list[tuple[int, int]]]:
    """One row group of an unsorted table to its spill file; the (range, row group) pieces written."""
    spec, i = unit
    file = pq.ParquetFile(spec.path)
    table = file.read_row_group(i)
    first = 1 + sum(file.metadata.row_group(j).num_rows for j in range(i))
    ids = table.column(spec.id_column)
    ranges = np.searchsorted(uppers, pc.fill_null(ids, 0).to_numpy(), side="left").astype(np.int32)
    ranges[~pc.is_valid(ids).to_numpy(zero_copy_only=False)] = len(uppers)
    order = np.argsort(ranges, kind="stable")
    table = table.append_column(_ROW, pa.array(np.arange(first, first + table.num_rows, dtype=np.int64)))
    table = table.append_column(_RANGE, pa.array(ranges)).take(pa.array(order))
    ranges = ranges[order]
    starts = [0, *(np.flatnonzero(np.diff(ranges)) + 1).tolist()]
    path = Path(folder) / spec.name / f"part-{i:05d}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    pieces = []
    if table.num_rows:
        with pq.ParquetWriter(partial, table.schema) as writer:
            for group, (start, end) in enumerate(zip(starts, [*starts[1:], table.num_rows], strict=True)):
                writer.write_table(table.slice(start, end - start), row_group_size=end - start)
                pieces.append((int(ranges[start]), group))
        os.replace(partial, path)  # whole or not at all: a task run again replaces it
    return spec.name, str(path), pieces


# --- one range, in a task -------------------------------------------------------------------------------


def _read(spec: RangeTable, lo: float, hi: float, pieces: list[tuple[str, int]]) -> tuple[pd.DataFrame, np.ndarray]:
    """The table's rows with ``lo < customer_id <= hi`` in file order (contract names), and their row numbers:
    through the row-group statistics of a sorted table, else from the table's spilled ``pieces``."""
    if spec.sorted:
        reader = _RowGroups.open(Path(spec.path), spec.id_column, integer_ids=True)
        if reader is None:
            raise DataError(f"{spec.path}: the file changed during the scoring (no longer sorted by customer)")
        arrow, numbers = reader.read(lo, hi)
    elif pieces:
        arrow = pa.concat_tables([pq.ParquetFile(path).read_row_group(group) for path, group in pieces])
        numbers = arrow.column(_ROW).to_numpy()
        arrow = arrow.drop_columns([_ROW, _RANGE])
    else:
        arrow, numbers = pq.ParquetFile(spec.path).schema_arrow.empty_table(), np.empty(0, dtype=np.int64)
    return map_columns(arrow.to_pandas(), spec.path, spec.name, spec.columns), numbers


def _validate(raw: Mapping[str, pd.DataFrame], ctx: RangeContext) -> LoadedData:
    return validate_tables(
        raw,
        max_date=ctx.max_date,
        date_formats=ctx.date_formats,
        sources=ctx.sources,
        options=ctx.options,
        checks=ctx.checks,
    )


@dataclasses.dataclass
class RangeRows:
    """One range's validated tables, rejected rows (with their row numbers in the file) and counts."""

    tables: dict[str, pd.DataFrame]
    rejects: dict[str, pd.DataFrame]
    warnings: dict[str, dict[str, int]]
    rows_in: dict[str, int]
    seconds: dict[str, float]


def read_range(plan: RangePlan, k: int, ctx: RangeContext, spilled: Spilled | None = None) -> RangeRows:
    """Range ``k``'s rows of every table, validated as :class:`crmscore.data.stream.StreamedInput` validates
    a chunk: the customers first, then each other table's rows against them. ``spilled``: where the range's
    rows of the unsorted tables are (:func:`spill`)."""
    t0 = time.perf_counter()
    lo, hi = plan.bounds[k]
    raw, numbers = {}, {}
    for table, spec in plan.tables.items():
        raw[table], numbers[table] = _read(spec, lo, hi, (spilled or {}).get(table, []))
    rows_in = {table: len(frame) for table, frame in raw.items()}
    t1 = time.perf_counter()
    validator = _Validator(ctx.max_date, ctx.date_formats, ctx.sources, ctx.options, ctx.checks)
    validator.add("customers", raw.pop("customers"))
    tables = {"customers": validator.tables["customers"]}
    rejects = {"customers": validator.rejects["customers"]}
    if len(rejects["customers"]):
        rows = rejects["customers"]["row_number"].to_numpy(dtype=np.int64)
        rejects["customers"]["row_number"] = numbers["customers"][rows - 1]
    for table, frame in raw.items():
        tables[table], rejects[table] = validator.validate_rows(table, frame, numbers[table])
    warnings = {table: dict(validator.warnings.get(table, {})) for table in plan.tables}
    seconds = {"read": t1 - t0, "validate": time.perf_counter() - t1}
    return RangeRows(tables, rejects, warnings, rows_in, seconds)


def probe(plan: RangePlan, ctx: RangeContext) -> LoadedData:
    """The first few customers of the customers file validated with empty other tables, on the driver.

    The feature builder gives the same columns for any customers, so this sample tells the columns of
    every range and lets the engine check the models' features before any task starts.
    """
    raw = {}
    for table, spec in plan.tables.items():
        file = pq.ParquetFile(spec.path)
        if table == "customers":
            batch = next(file.iter_batches(batch_size=PROBE_CUSTOMERS), None)
            arrow = file.schema_arrow.empty_table() if batch is None else batch
        else:
            arrow = file.schema_arrow.empty_table()
        raw[table] = map_columns(arrow.to_pandas(), spec.path, table, spec.columns)
    return _validate(raw, ctx)
