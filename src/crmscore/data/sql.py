"""Databases as input: DuckDB (embedded, a file) and PostgreSQL (a server), read through the data contract.

A database URL (``duckdb:///warehouse.duckdb``, ``postgresql://user@host:5432/db``) takes the place of the
input folder: ``data.source: sql`` with ``data.sql.url``, or ``--input URL``. Each contract table is read
from a table of the database (its contract name, or the name in ``data.sql.tables``) or from a query
(``data.sql.tables.<table>: "SELECT …"``), then mapped (``data.tables.<table>.columns``) and validated
exactly as a file's rows are (:mod:`crmscore.data.load`), so rejects, counts and scores are the same.

* **Rows in key order.** A table is read ordered by its customer id (NULLs last), one customer's rows in
  the order the table holds them (``rowid`` / ``ctid``: a table loaded from a file keeps the file's order,
  so sums over a customer's rows add up exactly as from the file); a rejected row's ``row_number`` is its
  position in that order, and the reject carries every column of the row as read, its key columns
  (customer id, date, invoice or order ids) among them.
* **Streaming.** :class:`SqlStreamedInput` reads the customers whole and every other table one customer
  range at a time (``WHERE customer_id > lo AND customer_id <= hi ORDER BY customer_id``: keyset paging by
  customer id), in the scoring workers too — its readers hold the URL and the query, never a connection,
  and connect when they read. An index on each table's customer id keeps each range one index scan.
* **Passwords** come only from the environment variable named by ``data.sql.password_env``; a URL holding
  one is refused, so no URL crmscore prints, logs, writes to a manifest or to MLflow can carry it.
* **Errors** are one line naming the database (URL without password), the table and the column: an
  unreachable server (after ``connect_timeout_seconds``, host and database named), a failed login, a
  missing table, a missing column.

Drivers: ``duckdb`` for DuckDB and the ADBC PostgreSQL driver (``adbc-driver-postgresql``: Arrow batches
in and out over PostgreSQL's binary COPY protocol), both in the ``warehouse`` extra.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from crmscore.config import TABLE_NAMES, DataSettings, TableSettings
from crmscore.data.load import CustomerOptions, LoadedData, _Validator, map_columns
from crmscore.data.plausibility import Plausibility
from crmscore.data.schemas import REQUIRED_TABLES
from crmscore.data.stream import StreamedInput, _WholeTable, latest_date
from crmscore.errors import DataError, SettingsError

__all__ = [
    "Database",
    "Connection",
    "SqlTable",
    "is_database_url",
    "database_of",
    "table_sources",
    "load_sql_tables",
    "sql_last_event_date",
    "SqlStreamedInput",
    "quote_name",
    "resolve_input",
    "load_input",
]

#: Rows fetched at a time when a table is read in batches (the counting pass, the latest date).
BATCH_ROWS = 500_000
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+]*://")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def is_database_url(value: object) -> bool:
    """Whether ``value`` is a database URL (``scheme://…``) rather than a folder."""
    return isinstance(value, str) and bool(_URL.match(value))


def quote_name(name: str) -> str:
    """A column or table name quoted for SQL (``schema.table`` quoted part by part)."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


@dataclasses.dataclass(frozen=True)
class Database:
    """A database to read or write: its URL (never with a password), the environment variable holding the
    password, and how long to wait for a server. Holds no connection, so it travels to worker processes."""

    url: str
    password_env: str = "CRMSCORE_DB_PASSWORD"
    connect_timeout_seconds: int = 10

    @property
    def kind(self) -> str:
        """``duckdb`` or ``postgresql``."""
        scheme = self.url.split("://", 1)[0].split("+")[0].lower()
        return "postgresql" if scheme in {"postgresql", "postgres"} else scheme

    def __str__(self) -> str:
        return self.url

    def duckdb_path(self) -> str:
        path = urlsplit(self.url).path
        return path[1:] if path.startswith("/") else path

    def describe_server(self) -> str:
        parts = urlsplit(self.url)
        return f"host {parts.hostname or 'localhost'} port {parts.port or 5432}, database {parts.path.lstrip('/')!r}"

    def _password(self) -> str | None:
        return os.environ.get(self.password_env) or None

    def _postgres_uri(self, password: str | None) -> str:
        parts = urlsplit(self.url)
        auth = quote(parts.username or "", safe="") + (":" + quote(password, safe="") if password else "")
        host = parts.hostname or "localhost"
        netloc = f"{auth + '@' if auth else ''}{host}{':' + str(parts.port) if parts.port else ''}"
        query = "&".join(q for q in (parts.query, f"connect_timeout={self.connect_timeout_seconds}") if q)
        return f"postgresql://{netloc}{parts.path}?{query}"

    def connect(self, read_only: bool = True) -> Connection:
        """Open a connection; a one-line :class:`DataError` naming the database when that fails."""
        if self.kind == "duckdb":
            duckdb = _driver("duckdb")
            path = self.duckdb_path()
            # A reader runs in each scoring worker (one per core): one DuckDB thread each, not a pool per worker.
            config = {"threads": 1} if read_only else {}
            try:
                return Connection(self, duckdb.connect(path, read_only=read_only and path != ":memory:", config=config))
            except Exception as exc:
                raise DataError(f"{self.url}: cannot open the DuckDB database: {_detail(exc)}") from None
        if self.kind != "postgresql":
            raise SettingsError(f"{self.url}: unsupported database (duckdb:// or postgresql://)")
        dbapi = _driver("adbc_driver_postgresql.dbapi")
        password = self._password()
        try:
            raw = dbapi.connect(self._postgres_uri(password))
        except Exception as exc:
            detail = _detail(exc, password).removeprefix("Failed to connect: ")
            hint = "" if password else f" (no password: the environment variable {self.password_env} is not set)"
            raise DataError(f"{self.url}: cannot connect to {self.describe_server()}: {detail}{hint}") from None
        return Connection(self, raw)


def _driver(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise DataError(
            f"{module.split('.')[0]} is not installed: pip install 'crmscore[warehouse]' to read and write databases"
        ) from None


def _detail(exc: BaseException, secret: str | None = None) -> str:
    """The first line of a driver's message, without its codes and never with the password."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"^[A-Z_]+: (\[libpq\] )?", "", text)
    text = re.sub(r"^Failed to prepare query: ", "", text)
    text = re.sub(r"\s+", " ", text.replace("ERROR: ", "")).strip()
    return text.replace(secret, "***") if secret else text


class Connection:
    """One connection to a :class:`Database`: Arrow out, Arrow in, statements, transactions."""

    def __init__(self, database: Database, raw) -> None:
        self.database = database
        self.raw = raw
        self.duck = database.kind == "duckdb"
        self._open_transaction = False

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.raw.close()

    def arrow(self, sql: str, params: tuple = ()) -> pa.Table:
        """The rows of a query as an Arrow table (decimals as floats, text as plain strings)."""
        if self.duck:
            return _plain(self.raw.sql(sql, params=list(params) or None).to_arrow_table())
        with contextlib.closing(self.raw.cursor()) as cur:
            cur.execute(sql, params or None)
            return _plain(cur.fetch_arrow_table())

    def batches(self, sql: str, params: tuple = ()) -> Iterator[pa.RecordBatch]:
        """The rows of a query in Arrow batches, without holding the whole result."""
        if self.duck:
            reader = self.raw.sql(sql, params=list(params) or None).to_arrow_reader(BATCH_ROWS)
            for batch in reader:
                yield _plain(pa.Table.from_batches([batch]))
            return
        with contextlib.closing(self.raw.cursor()) as cur:
            cur.execute(sql, params or None)
            for batch in cur.fetch_record_batch():
                yield _plain(pa.Table.from_batches([batch]))

    def execute(self, sql: str, params: tuple = ()) -> None:
        if self.duck:
            self.raw.execute(sql, list(params) or None)
            return
        with contextlib.closing(self.raw.cursor()) as cur:
            cur.execute(sql, params or None)

    def begin(self) -> None:
        """Start a transaction (PostgreSQL's connection is always in one until commit; DuckDB autocommits
        each statement outside one)."""
        if self.duck:
            self.raw.execute("BEGIN TRANSACTION")
            self._open_transaction = True

    def commit(self) -> None:
        """Commit what was done since the last commit."""
        if not self.duck:
            self.raw.commit()
        elif self._open_transaction:
            self.raw.execute("COMMIT")
            self._open_transaction = False

    def rollback(self) -> None:
        """Undo what was done since the last commit (never raises)."""
        with contextlib.suppress(Exception):
            if not self.duck:
                self.raw.rollback()
            elif self._open_transaction:
                self._open_transaction = False
                self.raw.execute("ROLLBACK")

    def ingest(self, name: str, data: pa.RecordBatchReader) -> None:
        """Create table ``name`` (``schema.table`` allowed) from Arrow batches: DuckDB scans them, PostgreSQL
        takes them by binary COPY."""
        if self.duck:
            view = f"crmscore_ingest_{os.getpid()}"
            self.raw.register(view, data)
            try:
                self.raw.execute(f"CREATE TABLE {quote_name(name)} AS SELECT * FROM {view}")
            finally:
                self.raw.unregister(view)
            return
        schema, _, table = name.rpartition(".")
        with contextlib.closing(self.raw.cursor()) as cur:
            cur.adbc_ingest(table, data, mode="create", db_schema_name=schema or None)

    def probe(self, source: str) -> pa.Schema:
        """The columns of ``SELECT * FROM source`` (no rows read); raises the driver's error."""
        try:
            return self.arrow(f"SELECT * FROM {source} WHERE 1 = 0").schema
        except Exception:
            self.rollback()  # PostgreSQL aborts the transaction on an error
            raise


def _plain(table: pa.Table) -> pa.Table:
    """Arrow types pandas reads as a file's: decimals as float64, string views and large strings as strings."""
    fields = []
    for field in table.schema:
        kind = field.type
        if pa.types.is_decimal(kind):
            kind = pa.float64()
        elif pa.types.is_string_view(kind) or pa.types.is_large_string(kind):
            kind = pa.string()
        fields.append(pa.field(field.name, kind))
    target = pa.schema(fields)
    return table if target.equals(table.schema) else table.cast(target)


def _dictionary_text(table: pa.Table) -> pa.Table:
    """Text columns dictionary-encoded (pandas categoricals, as Parquet written from pandas gives them): a few
    distinct values (products, channels, kinds) in millions of rows convert and validate many times faster."""
    for i, field in enumerate(table.schema):
        if pa.types.is_string(field.type):
            table = table.set_column(i, field.name, pc.dictionary_encode(table.column(i)))
    return table


def database_of(url: str, settings: DataSettings) -> Database:
    """The :class:`Database` of an input URL (``--input`` or ``data.sql.url``), checked like params.yaml's."""
    from crmscore.config import _database_url

    try:
        _database_url(url)
    except Exception as exc:
        text = exc.message() if hasattr(exc, "message") else str(exc)
        raise SettingsError(f"--input: {text}") from None
    cfg = settings.sql
    return Database(url.strip(), cfg.password_env, cfg.connect_timeout_seconds)


@dataclasses.dataclass(frozen=True)
class SqlTable:
    """Where one contract table is read from: ``source`` (a table name or a parenthesised query) and its
    name in messages."""

    table: str
    source: str
    label: str
    columns: tuple[str, ...]
    #: The row's place in its table (DuckDB ``rowid``, PostgreSQL ``ctid``: the load order of a table filled
    #: by one load), ordering the rows of one customer; None for a query.
    position: str | None = None

    def order_by(self, id_sql: str) -> str:
        """``ORDER BY`` customer id (NULLs last), then the row's place in the table: each customer's rows in
        the order they were loaded, so sums over them add in the file's order and give the file's figures."""
        return f"ORDER BY {id_sql} NULLS LAST" + (f", {self.position}" if self.position else "")


def table_sources(database: Database, settings: DataSettings, con: Connection | None = None) -> dict[str, SqlTable]:
    """The contract tables the database gives, in contract order; customers is required.

    A table configured in ``data.sql.tables`` must be readable (else a one-line error naming it); an
    unconfigured one is read from the table of its contract name when there is one.
    """
    if settings.tables["customers"].id == "row":
        raise SettingsError("data.tables.customers.id: row needs a file; a database table needs its customer id column")
    found: dict[str, SqlTable] = {}
    with contextlib.ExitStack() as stack:
        con = con or stack.enter_context(database.connect())
        for table in TABLE_NAMES:
            configured = settings.sql.tables.get(table)
            spec = (configured or table).strip()
            query = any(c.isspace() for c in spec)
            source = f"({spec}) AS crmscore_src" if query else spec
            label = f"{database.url}: {table}" + ("" if spec == table else f" ({'query' if query else spec})")
            try:
                schema = con.probe(source)
            except Exception as exc:
                if configured:
                    what = "the query failed" if query else f"table {spec!r} not found or not readable"
                    raise DataError(f"{database.url}: data.sql.tables.{table}: {what}: {_detail(exc)}") from None
                if table in REQUIRED_TABLES:
                    raise DataError(
                        f"{database.url}: table '{table}' not found (create it, or set data.sql.tables.{table} to "
                        f"your table's name or a query)"
                    ) from None
                continue
            found[table] = SqlTable(table, source, label, tuple(schema.names), None if query else _position(con, spec))
    return found


def _position(con: Connection, table: str) -> str | None:
    """The pseudo-column giving a row's place in a base table (``rowid`` / ``ctid``), or None (e.g. a view)."""
    column = "rowid" if con.duck else "ctid"
    try:
        con.probe(f"(SELECT {column} FROM {table}) AS crmscore_position")
    except Exception:
        return None
    return column


def _id_column(settings: DataSettings, table: str) -> str:
    return dict(settings.tables.get(table, TableSettings()).columns or {}).get("customer_id", "customer_id")


def _empty(source: SqlTable, settings: DataSettings) -> pd.DataFrame:
    """The table's columns, no rows, mapped onto the contract (a missing column stops here, one line)."""
    frame = pd.DataFrame({name: pd.Series(dtype=object) for name in source.columns})
    return map_columns(frame, source.label, source.table, settings.tables[source.table].columns)


def read_sql_table(con: Connection, source: SqlTable, settings: DataSettings) -> pd.DataFrame:
    """One whole table in customer-id order (NULL ids last), its columns mapped onto the contract."""
    _empty(source, settings)
    order = quote_name(_id_column(settings, source.table))
    try:
        arrow = con.arrow(f"SELECT * FROM {source.source} {source.order_by(order)}")
    except Exception as exc:
        raise DataError(f"{source.label}: cannot be read: {_detail(exc)}") from None
    raw = arrow.to_pandas(self_destruct=True, split_blocks=True)
    return map_columns(raw, source.label, source.table, settings.tables[source.table].columns).reset_index(drop=True)


def sql_snapshot_date(settings: DataSettings) -> pd.Timestamp:
    """The as-of date of snapshot data read from a database: ``data.snapshot_date``, else today."""
    return pd.Timestamp(settings.snapshot_date or dt.date.today())


def load_sql_tables(database: Database, settings: DataSettings | None = None) -> LoadedData:
    """Read and validate every contract table the database gives, as :func:`crmscore.data.load.load_tables`
    does for a folder: the same mapping, rules, rejects and reports."""
    settings = settings or DataSettings()
    date_formats = {t: settings.tables[t].date_format for t in settings.tables}
    with database.connect() as con:
        sources = table_sources(database, settings, con)
        options = CustomerOptions.from_settings(settings, sql_snapshot_date(settings))
        validator = _Validator(
            settings.max_date or dt.date.today(),
            date_formats,
            {t: s.label for t, s in sources.items()},
            options,
            Plausibility(settings.checks),
        )
        for table, source in sources.items():
            validator.add(table, read_sql_table(con, source, settings))
    return validator.result()


def sql_last_event_date(database: Database, settings: DataSettings | None = None) -> pd.Timestamp:
    """The latest valid transaction date in the database (else the latest signup), as
    :func:`crmscore.data.stream.last_event_date` finds it in a folder."""
    settings = settings or DataSettings()
    max_date = pd.Timestamp(settings.max_date or dt.date.today())
    with database.connect() as con:
        sources = table_sources(database, settings, con)
        for table, column in (("transactions", "date"), ("customers", "signup_date")):
            if table not in sources:
                continue
            cfg = settings.tables[table]
            name = dict(cfg.columns or {}).get(column, column)
            if table == "customers" and (cfg.tenure is not None or name not in sources[table].columns):
                return sql_snapshot_date(settings).normalize()
            if name not in sources[table].columns:
                continue
            batches = con.batches(f"SELECT {quote_name(name)} FROM {sources[table].source}")
            latest = latest_date((b.column(0).to_pandas() for b in batches), cfg.date_format, max_date)
            if latest is not None:
                return latest
    raise DataError(f"{database.url}: no valid transaction or signup date to score as of; pass the as-of date")


class _SqlRanges:
    """A table read one customer range at a time (keyset by customer id); picklable, connects on each read.

    ``offsets[k]`` is the number of rows before chunk ``k`` in customer-id order, so a row's number is its
    position in that order, in whichever process reads it.
    """

    def __init__(self, database: Database, source: SqlTable, id_column: str, text_ids: bool) -> None:
        self.database = database
        self.source = source
        self.id_column = id_column
        self.text_ids = text_ids
        self.offsets = np.zeros(1, dtype=np.int64)
        self.rows = 0

    def read_chunk(self, k: int, lo: float, hi: float) -> tuple[pa.Table, np.ndarray]:
        """Chunk ``k``'s rows: ``lo < customer_id <= hi`` (NULL ids in the last chunk), in customer-id order."""
        column = quote_name(self.id_column)
        compared = column + (' COLLATE "C"' if self.text_ids and self.database.kind == "postgresql" else "")
        where, params = [], []
        for bound, op in ((lo, ">"), (hi, "<=")):
            if isinstance(bound, float) and not np.isfinite(bound):
                continue
            params.append(bound.item() if hasattr(bound, "item") else bound)
            where.append(f"{compared} {op} ${len(params)}")
        condition = " AND ".join(where) or "TRUE"
        if isinstance(hi, float) and np.isinf(hi):
            condition = f"({condition}) OR {column} IS NULL"
        sql = f"SELECT * FROM {self.source.source} WHERE {condition} {self.source.order_by(compared)}"
        with self.database.connect() as con:
            try:
                arrow = con.arrow(sql, tuple(params))
            except Exception as exc:
                raise DataError(f"{self.source.label}: cannot be read: {_detail(exc)}") from None
        numbers = self.offsets[k] + 1 + np.arange(arrow.num_rows, dtype=np.int64)
        return _dictionary_text(arrow), numbers


class SqlStreamedInput(StreamedInput):
    """:class:`~crmscore.data.stream.StreamedInput` over a database: the customers read whole, every other
    table per customer range (:class:`_SqlRanges`), with the same chunks, validation, rejects and counts."""

    def __init__(self, database: Database, settings: DataSettings | None, as_of: pd.Timestamp, chunk_size: int) -> None:
        self.database = database
        self._sources: dict[str, SqlTable] = {}
        super().__init__(database, settings, as_of, chunk_size)

    def _locate(self, database) -> dict[str, str]:
        self._sources = table_sources(self.database, self.settings)
        return {table: source.label for table, source in self._sources.items()}

    def _snapshot_date(self) -> pd.Timestamp:
        return sql_snapshot_date(self.settings)

    def _read_whole(self, table: str) -> pd.DataFrame:
        with self.database.connect() as con:
            return read_sql_table(con, self._sources[table], self.settings)

    def _kind(self, table: str) -> str:
        return "sql"

    def _empty(self, table: str) -> pd.DataFrame:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in self._sources[table].columns})

    def _open(self, table: str) -> _SqlRanges:
        """Check the columns, then one pass over the ids and the counted columns: whole-table counts (amount
        bounds, probabilities) and the rows of each chunk (their numbers)."""
        source = self._sources[table]
        _empty(source, self.settings)
        id_column = self._mapped_id(table)
        text_ids = not self._integer_ids
        reader = _SqlRanges(self.database, source, id_column, text_ids)
        counted = list(self._counted_columns(table, list(source.columns)))
        columns = ", ".join(quote_name(c) for c in dict.fromkeys([id_column, *counted]))
        tally, per_chunk, rows = _WholeTable(), Counter(), 0
        with self.database.connect() as con:
            try:
                for batch in con.batches(f"SELECT {columns} FROM {source.source}"):
                    frame = batch.to_pandas()
                    self._count(table, frame[counted], rows + 1, tally)
                    per_chunk.update(self.chunk_of(frame[id_column]).tolist())
                    rows += len(frame)
            except DataError:
                raise
            except Exception as exc:
                raise DataError(f"{source.label}: cannot be read: {_detail(exc)}") from None
        counts = np.array([per_chunk.get(k, 0) for k in range(max(self.n_chunks, 1))], dtype=np.int64)
        reader.offsets = np.concatenate([[0], np.cumsum(counts)])
        reader.rows = rows
        self._counted(table, tally)
        return reader


def resolve_input(given, settings: DataSettings, default_dir: str | os.PathLike) -> str | Path:
    """The input of a stage: ``given`` (``--input``: a database URL or a folder), else ``data.sql.url`` when
    ``data.source`` is ``sql``, else ``data.input_dir``, else ``default_dir``. A URL stays text (a path would
    fold its ``//``); a folder becomes a :class:`~pathlib.Path`."""
    if given is None:
        given = settings.sql.url if settings.source == "sql" else (settings.input_dir or default_dir)
    return str(given).strip() if is_database_url(str(given)) else Path(given)


def load_input(source: str | os.PathLike, settings: DataSettings | None = None) -> LoadedData:
    """Read and validate the tables of ``source``: a database URL (:func:`load_sql_tables`) or a folder
    (:func:`crmscore.data.load.load_tables`)."""
    from crmscore.data.load import load_tables

    settings = settings or DataSettings()
    if is_database_url(str(source)):
        return load_sql_tables(database_of(str(source), settings), settings)
    return load_tables(source, settings)
