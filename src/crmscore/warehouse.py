"""Scores into a database: staging tables swapped in with one transaction, and a row per run.

:func:`write_scoring` takes a scoring folder written by :func:`crmscore.scoring.score` and puts it into
DuckDB or PostgreSQL:

* ``<table>`` — one row per customer and ``as_of`` (the columns of ``scores.parquet``: tier, risk band,
  CLV, value at risk, action, … and the model versions);
* ``<table>_reasons`` — the top SHAP reasons, one row per customer, model and rank, with ``as_of``;
* ``crmscore_runs`` — one row per scoring written: its table, as-of date, counts, model versions, the
  input (URL without password) and the whole manifest as JSON text.

The rows are first loaded into staging tables (``crmscore_staging_<token>_…``, committed, so a kill
during the load leaves them behind and nothing else); then **one transaction** deletes the scoring of the
same as-of date, inserts the staged rows, records the run and drops the staging tables. A reader sees the
previous scoring or the new one, never a mix; a rerun for the same as-of date replaces that scoring, so
reruns are idempotent. Only one writer at a time: PostgreSQL's advisory lock (DuckDB locks its file), and
the writer first drops what killed runs staged.

:func:`copy_tables` does the reverse for input: it loads table files (the simulated data, say) into a
database, with an index on each table's customer id for the range reads of scoring.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import secrets
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from crmscore.data.sql import Connection, Database, quote_name
from crmscore.errors import DataError, LockedError

__all__ = ["RUNS_TABLE", "STAGING_PREFIX", "WarehouseWrite", "write_scoring", "staging_tables", "copy_tables"]

log = logging.getLogger("crmscore")

RUNS_TABLE = "crmscore_runs"
STAGING_PREFIX = "crmscore_staging_"
_BATCH_ROWS = 200_000
_RUNS_COLUMNS = (
    ("scores_table", "VARCHAR"),
    ("as_of", "DATE"),
    ("written_at", "TIMESTAMP"),
    ("scored", "BIGINT"),
    ("customers_known", "BIGINT"),
    ("reasons", "BIGINT"),
    ("params_hash", "VARCHAR"),
    ("churn_model_version", "BIGINT"),
    ("clv_model_version", "BIGINT"),
    ("segments_model_version", "BIGINT"),
    ("uplift_model_version", "BIGINT"),
    ("input", "VARCHAR"),
    ("manifest", "VARCHAR"),
)


@dataclasses.dataclass
class WarehouseWrite:
    """What :func:`write_scoring` wrote: tables, rows and seconds."""

    database: str
    table: str
    reasons_table: str
    as_of: str
    rows: int
    reasons: int
    seconds: float


def _schema_of(table: str) -> str:
    return table.rpartition(".")[0]


def _in_schema(table: str, name: str) -> str:
    schema = _schema_of(table)
    return f"{schema}.{name}" if schema else name


def staging_tables(con: Connection, schema: str = "") -> list[str]:
    """Staging tables left in ``schema`` (default: the connection's) by runs that did not finish."""
    where = "table_schema = coalesce(nullif($1, ''), current_schema())"
    rows = con.arrow(
        f"SELECT table_name FROM information_schema.tables WHERE {where} AND table_name LIKE '{STAGING_PREFIX}%'",
        (schema,),
    )
    names = rows.column(0).to_pylist()
    return [f"{schema}.{n}" if schema else n for n in names]


def _lock(con: Connection, table: str) -> None:
    """One writer of ``table`` at a time (PostgreSQL: a session advisory lock, gone with the connection)."""
    if con.duck:
        return  # DuckDB: one process has the file open for writing
    got = con.arrow("SELECT pg_try_advisory_lock(hashtext($1)) AS got", (f"crmscore:{table}",)).column(0)[0].as_py()
    con.commit()
    if not got:
        raise LockedError(f"{con.database.url}: another crmscore run is writing {table}; run again when it is done")


def _batches(path: Path, as_of: dt.date, with_as_of: bool) -> pa.RecordBatchReader:
    """A scoring file's rows in batches, ``as_of`` a DATE column (added to the reasons)."""
    file = pq.ParquetFile(path)
    schema = file.schema_arrow
    if "as_of" in schema.names:
        schema = schema.set(schema.get_field_index("as_of"), pa.field("as_of", pa.date32()))
    elif with_as_of:
        schema = pa.schema([pa.field("as_of", pa.date32()), *schema])

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in file.iter_batches(batch_size=_BATCH_ROWS):
            table = pa.Table.from_batches([batch])
            if "as_of" in table.column_names:
                table = table.set_column(
                    table.column_names.index("as_of"), "as_of", table.column("as_of").cast(pa.date32())
                )
            else:
                table = table.add_column(0, "as_of", pa.array([as_of] * table.num_rows, pa.date32()))
            yield from table.cast(schema).to_batches()

    return pa.RecordBatchReader.from_batches(schema, batches())


def _create_like(con: Connection, target: str, staged: str) -> None:
    """Create ``target`` with the staged table's columns when it does not exist yet."""
    if con.duck:
        con.execute(f"CREATE TABLE IF NOT EXISTS {quote_name(target)} AS SELECT * FROM {quote_name(staged)} LIMIT 0")
    else:
        con.execute(f"CREATE TABLE IF NOT EXISTS {quote_name(target)} (LIKE {quote_name(staged)})")


def _columns(con: Connection, table: str) -> list[str]:
    return con.probe(quote_name(table)).names


def _replace(con: Connection, target: str, staged: str, as_of: dt.date, table_kind: str) -> None:
    """Inside the swap transaction: the scoring of ``as_of`` in ``target`` becomes the staged rows."""
    _create_like(con, target, staged)
    have, new = _columns(con, target), _columns(con, staged)
    missing = [c for c in new if c not in have]
    if missing:
        raise DataError(
            f"{con.database.url}: {target}: column {missing[0]!r} is missing from the existing {table_kind} table "
            f"(written by an older crmscore?); add it or write to a new --table"
        )
    names = ", ".join(quote_name(c) for c in new)
    con.execute(f"DELETE FROM {quote_name(target)} WHERE as_of = $1", (as_of,))
    con.execute(f"INSERT INTO {quote_name(target)} ({names}) SELECT {names} FROM {quote_name(staged)}")


def _run_row(manifest: Mapping, table: str, source: str | None, reasons: int) -> tuple:
    models = manifest.get("models", {})
    return (
        table,
        dt.date.fromisoformat(manifest["as_of"]),
        dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0),
        int(manifest.get("scored", 0)),
        int(manifest.get("customers_known", 0)),
        reasons,
        str(manifest.get("params_hash", "")),
        *(int(models.get(role, {}).get("version", 0)) for role in ("churn", "clv", "segments", "uplift")),
        source or "",
        json.dumps(manifest, sort_keys=True, default=str),
    )


def _record_run(con: Connection, table: str, row: tuple) -> None:
    runs = _in_schema(table, RUNS_TABLE)
    columns = ", ".join(f"{name} {kind}" for name, kind in _RUNS_COLUMNS)
    con.execute(f"CREATE TABLE IF NOT EXISTS {quote_name(runs)} ({columns})")
    con.execute(f"DELETE FROM {quote_name(runs)} WHERE scores_table = $1 AND as_of = $2", (row[0], row[1]))
    marks = ", ".join(f"${i}" for i in range(1, len(row) + 1))
    names = ", ".join(name for name, _ in _RUNS_COLUMNS)
    con.execute(f"INSERT INTO {quote_name(runs)} ({names}) VALUES ({marks})", row)


def write_scoring(
    database: Database, table: str, scoring: str | os.PathLike, manifest: Mapping, source: str | None = None
) -> WarehouseWrite:
    """Write the scoring folder ``scoring`` (its ``scores.parquet`` and ``explanations.parquet``) into
    ``table`` and ``<table>_reasons`` of ``database`` and record the run in ``crmscore_runs``, atomically
    (see the module docstring). ``source`` is the input, as the runs table shows it (no password)."""
    started = time.perf_counter()
    folder = Path(scoring)
    as_of = dt.date.fromisoformat(manifest["as_of"])
    reasons_table = f"{table}_reasons"
    token = f"{STAGING_PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
    staged = {table: _in_schema(table, f"{token}_scores"), reasons_table: _in_schema(table, f"{token}_reasons")}
    with database.connect(read_only=False) as con:
        _lock(con, table)
        _drop_left_staging(con, _schema_of(table))
        con.ingest(staged[table], _batches(folder / "scores.parquet", as_of, with_as_of=False))
        reasons_path = folder / "explanations.parquet"
        if reasons_path.exists():
            con.ingest(staged[reasons_table], _batches(reasons_path, as_of, with_as_of=True))
        else:
            staged.pop(reasons_table)
        con.commit()  # the staged rows are in; a kill now leaves only them
        rows = _count(con, staged[table])
        reasons = _count(con, staged[reasons_table]) if reasons_table in staged else 0
        con.begin()
        try:
            for target, stage in staged.items():
                _replace(con, target, stage, as_of, "reasons" if target == reasons_table else "scores")
                con.execute(f"DROP TABLE {quote_name(stage)}")
            _record_run(con, table, _run_row(manifest, table, source, reasons))
            _before_commit()
            con.commit()
        except BaseException:
            con.rollback()
            _drop(con, list(staged.values()))
            raise
    seconds = time.perf_counter() - started
    log.info("wrote %d scores as of %s into %s (%s) in %.1f s", rows, as_of, table, database.url, seconds)
    return WarehouseWrite(database.url, table, reasons_table, str(as_of), rows, reasons, seconds)


def _before_commit() -> None:
    """The point between the staged writes and the commit (tests stop a run here)."""


def _count(con: Connection, table: str) -> int:
    return int(con.arrow(f"SELECT count(*) AS n FROM {quote_name(table)}").column(0)[0].as_py())


def _drop(con: Connection, tables: list[str]) -> None:
    for name in tables:
        try:
            con.execute(f"DROP TABLE IF EXISTS {quote_name(name)}")
            con.commit()
        except Exception:  # best effort: the next run drops what is left
            con.rollback()


def _drop_left_staging(con: Connection, schema: str) -> None:
    """Drop the staging tables of runs that were killed (we hold the writer's lock: nobody else stages now)."""
    left = staging_tables(con, schema)
    if left:
        log.info("dropping %d staging tables left by an interrupted run", len(left))
        _drop(con, left)


def copy_tables(
    folder: str | os.PathLike, database: Database, tables: Mapping[str, str] | None = None, replace: bool = True
) -> dict[str, int]:
    """Load table files of ``folder`` (``<name>.parquet``; ``tables`` maps table → file name, default the
    contract tables found) into ``database`` as tables of the same names, each with an index on
    ``customer_id``; returns the rows per table. For demos, tests and benchmarks."""
    from crmscore.config import TABLE_NAMES

    folder = Path(folder)
    files = dict(tables or {t: f"{t}.parquet" for t in TABLE_NAMES if (folder / f"{t}.parquet").exists()})
    rows = {}
    with database.connect(read_only=False) as con:
        for name, file in files.items():
            if replace:
                con.execute(f"DROP TABLE IF EXISTS {quote_name(name)}")
            parquet = pq.ParquetFile(folder / file)
            reader = pa.RecordBatchReader.from_batches(
                parquet.schema_arrow, parquet.iter_batches(batch_size=_BATCH_ROWS)
            )
            con.ingest(name, reader)
            if "customer_id" in parquet.schema_arrow.names:
                con.execute(f"CREATE INDEX {quote_name(name + '_customer_id')} ON {quote_name(name)} (customer_id)")
            if not con.duck:
                con.execute(f"ANALYZE {quote_name(name)}")
            con.commit()
            rows[name] = parquet.metadata.num_rows
    return rows
