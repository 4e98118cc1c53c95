"""Input tables streamed per customer range, so that scoring never holds every customer's rows at once.

:class:`StreamedInput` reads and validates the customers table whole (it is small: one row a
customer), splits the customers known on the as-of date into chunks of consecutive ids, and then gives
the other tables (transactions, invoices, interactions, campaigns) one chunk at a time — each chunk validated
through the same data contract as :func:`crmscore.data.load.load_tables`, its rejected rows kept with
their row number in the file and their reason.

How a table is read per chunk depends on its file:

* **Parquet sorted by customer** (as the simulator and most exports partitioned by customer write it):
  the row-group statistics of ``customer_id`` tell which row groups hold a chunk's customers, and only
  those are read;
* **anything else** (unsorted Parquet, CSV): one pass reads the file in batches and spills each row,
  with its row number, to the part of a temporary Parquet file that belongs to its chunk; each chunk then
  reads its part.

Either way, the values judged over a whole table — the money columns' amount bounds and the rule that
probabilities (the campaigns' ``propensity``) lie strictly between 0 and 1 — are counted in one pass
before any chunk is validated, so they stop or bound the run as they do for the whole-table loader.

Every row of a table belongs to exactly one chunk — rows of unknown customers and rows whose customer
cannot be read go to the last chunk, where validation rejects them — so the rows read, kept and
rejected add up as they do for the whole-table loader, and the kept rows of a chunk are exactly the
rows :func:`crmscore.scoring.customer_chunks` would give it from the whole tables.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crmscore.config import DataSettings, TableSettings
from crmscore.data.load import (
    CustomerOptions,
    OutsideProbabilities,
    TableReport,
    _coerce_date,
    _coerce_id,
    _format_of,
    _harmonise_ids,
    _rejects_frame,
    _Validator,
    check_probabilities,
    find_table_file,
    find_table_files,
    map_columns,
    money_counts,
    outside_probabilities,
    probability_columns,
    read_csv,
    read_table,
    snapshot_date_of,
)
from crmscore.data.plausibility import MONEY_COLUMNS, MagnitudeCounts, Plausibility
from crmscore.data.schemas import known_customers
from crmscore.errors import DataError
from crmscore.io import release_memory

__all__ = [
    "StreamedInput",
    "ChunkTally",
    "customer_rows",
    "last_event_date",
    "latest_date",
    "STREAM_BATCH_ROWS",
    "MAX_SPILL_PARTS",
]

log = logging.getLogger("crmscore")

#: Rows read at a time when a table is spilled.
STREAM_BATCH_ROWS = 500_000
#: At most this many spill files per table (consecutive chunks share one when there are more chunks).
MAX_SPILL_PARTS = 64

_ROW = "__crmscore_row__"
_CHUNK = "__crmscore_chunk__"


def last_event_date(input_dir: str | os.PathLike, settings: DataSettings | None = None) -> pd.Timestamp:
    """The latest valid transaction date in ``input_dir`` (else the latest signup), reading one column.

    What :func:`crmscore.stages.scoring_as_of` gives for tables loaded whole, without loading them:
    dates that validation would reject (unreadable, or after ``data.max_date``) are ignored.
    """
    settings = settings or DataSettings()
    folder = Path(input_dir)
    max_date = pd.Timestamp(settings.max_date or dt.date.today())
    for table, column in (("transactions", "date"), ("customers", "signup_date")):
        cfg = settings.tables.get(table, TableSettings())
        path = find_table_file(folder, table, cfg)
        if path is None:
            continue
        name = dict(cfg.columns or {}).get(column, column)
        if table == "customers" and (cfg.tenure is not None or name not in _column_names(path, settings)):
            return snapshot_date_of(settings, path).normalize()  # snapshot data: its as-of date
        if _format_of(path, settings.format) == "parquet":
            batches = (
                b.column(0).to_pandas() for b in pq.ParquetFile(path).iter_batches(STREAM_BATCH_ROWS, columns=[name])
            )
        else:
            reader = read_csv(
                path,
                settings.csv_separator,
                settings.encoding,
                usecols=lambda c, wanted=name: str(c).strip() == wanted,
                chunksize=STREAM_BATCH_ROWS,
            )
            batches = (frame.iloc[:, 0] for frame in reader)
        latest = latest_date(batches, cfg.date_format, max_date)
        if latest is not None:
            return latest
    raise DataError(f"{folder}: no valid transaction or signup date to score as of; pass the as-of date")


def customer_rows(input_dir: str | os.PathLike, settings: DataSettings | None = None) -> int | None:
    """Rows of the customers table in ``input_dir`` when its file tells without being read (Parquet's
    metadata); None otherwise (no such table, text formats, an unreadable file)."""
    settings = settings or DataSettings()
    path = find_table_file(Path(input_dir), "customers", settings.tables.get("customers", TableSettings()))
    if path is None or _format_of(path, settings.format) != "parquet":
        return None
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except Exception:  # the open reports what is wrong with the file, in its own words
        return None


def latest_date(batches: Iterator[pd.Series], date_format: str | None, max_date: pd.Timestamp) -> pd.Timestamp | None:
    """The latest date in ``batches`` of raw values that validation keeps (readable, not after ``max_date``)."""
    latest = None
    for values in batches:
        dates = _coerce_date(values, date_format)
        dates = dates[dates <= max_date]
        if len(dates) and (latest is None or dates.max() > latest):
            latest = dates.max()
    return None if latest is None else pd.Timestamp(latest).normalize()


def _column_names(path: Path, settings: DataSettings) -> list[str]:
    if _format_of(path, settings.format) == "parquet":
        return list(pq.ParquetFile(path).schema_arrow.names)
    header = read_csv(path, settings.csv_separator, settings.encoding, nrows=0)
    return [str(c).strip() for c in header.columns]


class _RowGroups:
    """A Parquet table sorted by customer: each chunk reads the row groups that can hold its customers."""

    def __init__(self, path: Path, file: pq.ParquetFile, id_column: str, mins: np.ndarray, maxs: np.ndarray):
        self.path = path
        self.file = file
        self.id_column = id_column
        self.mins = mins
        self.maxs = maxs
        sizes = np.array([file.metadata.row_group(i).num_rows for i in range(file.num_row_groups)], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])
        self.rows = int(self.offsets[-1])
        self._cache: dict[int, pa.Table] = {}

    def __getstate__(self) -> dict:
        # Sent to scoring workers: the open file and the cached row group stay behind; reopened on use.
        return {**self.__dict__, "file": None, "_cache": {}}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.file = pq.ParquetFile(self.path)

    @classmethod
    def open(cls, path: Path, id_column: str, integer_ids: bool) -> _RowGroups | None:
        """The reader when the file's row groups are ordered by customer id, else None."""
        if not integer_ids:
            return None
        file = pq.ParquetFile(path)
        schema = file.schema_arrow
        if schema.get_field_index(id_column) < 0 or not pa.types.is_integer(schema.field(id_column).type):
            return None
        names = [file.metadata.schema.column(j).path for j in range(file.metadata.num_columns)]
        if id_column not in names:
            return None
        j = names.index(id_column)
        mins, maxs = [], []
        for i in range(file.num_row_groups):
            stats = file.metadata.row_group(i).column(j).statistics
            if stats is None or not stats.has_min_max or stats.null_count:
                return None
            mins.append(stats.min)
            maxs.append(stats.max)
        mins_a, maxs_a = np.asarray(mins, dtype=np.int64), np.asarray(maxs, dtype=np.int64)
        if len(mins_a) > 1 and np.any(maxs_a[:-1] > mins_a[1:]):
            return None
        return cls(path, file, id_column, mins_a, maxs_a)

    def read_chunk(self, k: int, lo: float, hi: float) -> tuple[pa.Table, np.ndarray]:
        """Chunk ``k``'s rows: those with ``lo < customer_id <= hi`` (see :meth:`read`)."""
        return self.read(lo, hi)

    def read(self, lo: float, hi: float) -> tuple[pa.Table, np.ndarray]:
        """Rows with ``lo < customer_id <= hi`` and their 1-based row numbers, in file order."""
        groups = np.flatnonzero((self.maxs > lo) & (self.mins <= hi)).tolist()
        pieces, numbers = [], []
        cache = {}
        for i in groups:
            table = self._cache.get(i)
            if table is None:
                table = self.file.read_row_group(i)
            cache[i] = table
            ids = table.column(self.id_column)
            mask = pc.is_valid(ids)
            if math.isfinite(lo):
                mask = pc.and_(mask, pc.greater(ids, int(lo)))
            if math.isfinite(hi):
                mask = pc.and_(mask, pc.less_equal(ids, int(hi)))
            mask_np = mask.to_numpy(zero_copy_only=False)
            pieces.append(table.filter(mask))
            numbers.append(self.offsets[i] + 1 + np.flatnonzero(mask_np))
        # Keep only the last group read: the next chunk starts where this one ended.
        self._cache = {groups[-1]: cache[groups[-1]]} if groups else {}
        if not pieces:
            return self.file.schema_arrow.empty_table(), np.empty(0, dtype=np.int64)
        return pa.concat_tables(pieces), np.concatenate(numbers)


@dataclasses.dataclass
class _WholeTable:
    """What is counted over a whole table before its chunks are validated: the money columns' magnitude
    counts (amount bounds) and the probability columns' values outside (0, 1)."""

    money: dict[str, MagnitudeCounts] = dataclasses.field(default_factory=dict)
    outside: dict[str, OutsideProbabilities] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ChunkTally:
    """What reading one chunk counted, per table: rows read and kept, rejected rows, flagged rows by reason.

    :meth:`StreamedInput.read_chunk` returns it and :meth:`StreamedInput.record` adds it up, so a chunk
    can be read in another process (a scoring worker) and counted where the scoring is assembled.
    """

    read: dict[str, int] = dataclasses.field(default_factory=dict)
    kept: dict[str, int] = dataclasses.field(default_factory=dict)
    rejects: dict[str, pd.DataFrame] = dataclasses.field(default_factory=dict)
    warnings: dict[str, Counter] = dataclasses.field(default_factory=dict)


class _Spilled:
    """A table split once into per-chunk parts of temporary Parquet files."""

    def __init__(self, files: dict[int, Path], group: int, rows: int, is_csv: bool):
        self.files = files
        self.group = group
        self.rows = rows
        self.is_csv = is_csv
        self._part: tuple[int, pa.Table] | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_part": None}

    def read_chunk(self, k: int, lo: float, hi: float) -> tuple[pa.Table, np.ndarray]:
        """Chunk ``k``'s rows (its spill part; the id bounds are not needed)."""
        return self.read(k)

    def read(self, chunk: int) -> tuple[pa.Table, np.ndarray]:
        part = chunk // self.group
        if self._part is None or self._part[0] != part:
            path = self.files.get(part)
            self._part = (part, pq.read_table(path) if path is not None else None)
        table = self._part[1]
        if table is None:
            return None, np.empty(0, dtype=np.int64)
        mine = table.filter(pc.equal(table.column(_CHUNK), chunk))
        numbers = mine.column(_ROW).to_numpy()
        return mine.drop_columns([_ROW, _CHUNK]), numbers


class StreamedInput:
    """The input tables of a scoring, validated and handed out one chunk of customers at a time.

    ``StreamedInput(input_dir, settings.data, as_of, chunk_size)`` reads and validates the customers at
    once; iterating gives, per chunk, the validated tables restricted to the chunk's customers — the
    same rows :func:`crmscore.scoring.customer_chunks` takes from tables loaded whole. After the
    iteration, :attr:`rejects` and :attr:`reports` cover every row of every table. Use it as a context
    manager (or call :meth:`close`) to remove the spill files.
    """

    def __init__(
        self,
        input_dir: str | os.PathLike,
        settings: DataSettings | None,
        as_of: pd.Timestamp,
        chunk_size: int,
        spill_dir: str | os.PathLike | None = None,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size {chunk_size}: expected a positive integer")
        started = time.perf_counter()
        self.settings = settings or DataSettings()
        self.as_of = pd.Timestamp(as_of).normalize()
        self.chunk_size = int(chunk_size)
        self._spill_root: Path | None = None
        self._spill_parent = spill_dir
        self._paths = self._locate(input_dir)
        date_formats = {t: self.settings.tables[t].date_format for t in self.settings.tables}
        options = CustomerOptions.from_settings(self.settings, self._snapshot_date())
        self._validator = _Validator(
            self.settings.max_date or dt.date.today(),
            date_formats,
            {t: str(p) for t, p in self._paths.items()},
            options,
            Plausibility(self.settings.checks),
        )
        self._validator.add("customers", self._read_whole("customers"))
        customers = self._validator.tables["customers"]
        known = known_customers(customers, self.as_of).sort_values("customer_id", kind="stable")
        self.customers = known
        self.ids = known["customer_id"].to_numpy()
        self.n_chunks = -(-len(self.ids) // self.chunk_size)
        # Chunk k holds the ids in (upper[k-1], upper[k]]; the last chunk also takes every id above.
        self._upper = self.ids[self.chunk_size - 1 :: self.chunk_size].copy() if len(self.ids) else self.ids
        if len(self.ids) and len(self._upper) < self.n_chunks:
            self._upper = np.append(self._upper, self.ids[-1])
        self._integer_ids = pd.api.types.is_integer_dtype(customers["customer_id"].dtype)
        self._readers: dict[str, _RowGroups | _Spilled] = {}
        self._kept_counts: Counter = Counter()
        self._read_counts: Counter = Counter()
        self._reject_parts: dict[str, list[pd.DataFrame]] = {t: [] for t in self._paths if t != "customers"}
        self._first: dict[str, pd.DataFrame] | None = None
        self._consumed = False
        try:
            for table in self._paths:
                if table != "customers":
                    self._readers[table] = self._open(table)
        except BaseException:
            self.close()
            raise
        #: Seconds spent reading, spilling and validating: on opening, and in total so far.
        self.open_seconds = time.perf_counter() - started
        self.seconds = self.open_seconds

    # --- set-up -----------------------------------------------------------------------------------------

    def _locate(self, input_dir) -> dict[str, Path]:
        """Where each table is (its name in messages): the table files found in ``input_dir``."""
        return find_table_files(input_dir, self.settings)

    def _snapshot_date(self) -> pd.Timestamp:
        return snapshot_date_of(self.settings, self._paths["customers"])

    def _table_settings(self, table: str) -> TableSettings:
        return self.settings.tables.get(table, TableSettings())

    def _read_whole(self, table: str) -> pd.DataFrame:
        cfg = self._table_settings(table)
        return read_table(
            self._paths[table],
            table,
            cfg.columns,
            self.settings.format,
            self.settings.csv_separator,
            row_ids=cfg.id == "row",
            encoding=self.settings.encoding,
        )

    def _kind(self, table: str) -> str:
        return _format_of(self._paths[table], self.settings.format)

    def _mapped_id(self, table: str) -> str:
        return dict(self._table_settings(table).columns or {}).get("customer_id", "customer_id")

    def _check_columns(self, table: str, empty: pd.DataFrame) -> None:
        map_columns(empty, self._paths[table], table, self._table_settings(table).columns)

    def _counted_columns(self, table: str, names: list[str]) -> dict[str, str]:
        """The columns of ``table`` in the file that are counted over the whole table — money columns (their
        amount bounds) and probability columns (their whole-table rule): the file's name → the contract's."""
        mapping = dict(self._table_settings(table).columns or {})
        contract = (*MONEY_COLUMNS.get(table, ()), *probability_columns(table))
        wanted = {mapping.get(c, c): c for c in contract}
        return {name: wanted[name.strip()] for name in names if name.strip() in wanted}

    def _count(self, table: str, batch: pd.DataFrame, first_row: int, tally: _WholeTable) -> None:
        """Add a batch's counted values (the file's column names; its first row is ``first_row``, 1-based)."""
        columns = self._counted_columns(table, list(map(str, batch.columns)))
        part = batch[list(columns)].rename(columns=columns)
        for column, counted in money_counts(table, part).items():
            tally.money.setdefault(column, MagnitudeCounts()).merge(counted)
        rows = np.arange(first_row, first_row + len(part), dtype=np.int64)
        for column, outside in outside_probabilities(table, part, rows).items():
            tally.outside.setdefault(column, OutsideProbabilities()).merge(outside)

    def _counting_pass(self, table: str, file: pq.ParquetFile) -> _WholeTable:
        """One read of a Parquet table's counted columns (see :meth:`_counted_columns`)."""
        tally = _WholeTable()
        columns = list(self._counted_columns(table, file.schema_arrow.names))
        if columns:
            rows = 1
            for batch in file.iter_batches(batch_size=STREAM_BATCH_ROWS, columns=columns):
                self._count(table, batch.to_pandas(), rows, tally)
                rows += batch.num_rows
        return tally

    def _counted(self, table: str, tally: _WholeTable) -> None:
        """The whole table was counted: check its probabilities and set its amount bounds."""
        check_probabilities(str(self._paths[table]), tally.outside)
        self._validator.set_counts(table, tally.money)

    def _open(self, table: str) -> _RowGroups | _Spilled:
        path = self._paths[table]
        kind = self._kind(table)
        try:
            if kind == "parquet":
                file = pq.ParquetFile(path)
                self._check_columns(table, file.schema_arrow.empty_table().to_pandas())
                reader = _RowGroups.open(path, self._mapped_id(table), self._integer_ids)
                if reader is not None:
                    log.debug("%s: row groups ordered by customer; read per chunk", path)
                    self._counted(table, self._counting_pass(table, file))
                    return reader
            else:
                header = read_csv(path, self.settings.csv_separator, self.settings.encoding, nrows=0)
                self._check_columns(table, header)
        except DataError:
            raise
        except Exception as exc:  # any reader failure is a whole-file problem for the user
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"{path}: cannot be read as {kind}: {detail}") from None
        return self._spill(table, kind)

    def chunk_of(self, ids: pd.Series) -> np.ndarray:
        """The chunk of each raw customer id, read as validation reads it (unreadable: the last chunk)."""
        customer_ids = self._validator.tables["customers"]["customer_id"]
        values = _harmonise_ids(customer_ids, _coerce_id(ids.reset_index(drop=True)))
        last = max(self.n_chunks - 1, 0)
        out = np.full(len(values), last, dtype=np.int64)
        present = values.notna().to_numpy(dtype=bool)
        if present.any() and len(self._upper):
            found = values[present].to_numpy(dtype=customer_ids.dtype if self._integer_ids else object)
            out[present] = np.minimum(np.searchsorted(self._upper, found, side="left"), last)
        return out

    def _spill(self, table: str, kind: str) -> _Spilled:
        """One pass over the file: every row, with its row number, to the spill part of its chunk."""
        path = self._paths[table]
        if self._spill_root is None:
            self._spill_root = Path(tempfile.mkdtemp(prefix="crmscore-stream-", dir=self._spill_parent))
        parts = max(1, min(self.n_chunks, MAX_SPILL_PARTS))
        group = max(1, -(-self.n_chunks // parts))
        mapping = dict(self._table_settings(table).columns or {})
        id_column = mapping.get("customer_id", "customer_id")
        writers: dict[int, pq.ParquetWriter] = {}
        files: dict[int, Path] = {}
        tally = _WholeTable()
        rows = 0
        schema = None
        try:
            for batch in self._batches(path, kind):
                if kind == "csv":
                    batch = batch.rename(columns=lambda c: str(c).strip())
                    arrow = pa.Table.from_pandas(
                        batch, schema=pa.schema([(str(c), pa.string()) for c in batch.columns]), preserve_index=False
                    )
                    ids = batch[id_column.strip()]
                    self._count(table, batch, rows + 1, tally)
                else:
                    arrow = pa.Table.from_batches([batch])
                    ids = arrow.column(id_column).to_pandas()
                    counted = list(self._counted_columns(table, arrow.column_names))
                    self._count(table, arrow.select(counted).to_pandas(), rows + 1, tally)
                n = arrow.num_rows
                chunks = self.chunk_of(ids)
                arrow = arrow.append_column(_ROW, pa.array(np.arange(rows + 1, rows + n + 1, dtype=np.int64)))
                arrow = arrow.append_column(_CHUNK, pa.array(chunks))
                if schema is None:
                    schema = arrow.schema
                part_of = chunks // group
                order = np.argsort(part_of, kind="stable")
                bounds = np.searchsorted(part_of[order], np.arange(parts + 1))
                for p in range(parts):
                    if bounds[p] == bounds[p + 1]:
                        continue
                    piece = arrow.take(pa.array(order[bounds[p] : bounds[p + 1]]))
                    if p not in writers:
                        files[p] = self._spill_root / f"{table}-{p:03d}.parquet"
                        writers[p] = pq.ParquetWriter(files[p], schema)
                    writers[p].write_table(piece.cast(schema))
                rows += n
                del arrow, batch
        finally:
            for writer in writers.values():
                writer.close()
        release_memory()
        self._counted(table, tally)
        return _Spilled(files, group, rows, kind == "csv")

    def _batches(self, path: Path, kind: str) -> Iterator:
        if kind == "parquet":
            yield from pq.ParquetFile(path).iter_batches(batch_size=STREAM_BATCH_ROWS)
        else:
            yield from read_csv(path, self.settings.csv_separator, self.settings.encoding, chunksize=STREAM_BATCH_ROWS)

    # --- chunks -----------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.n_chunks

    def _bounds(self, k: int) -> tuple[float, float]:
        lo = -math.inf if k == 0 else self._upper[k - 1]
        hi = math.inf if k == self.n_chunks - 1 else self._upper[k]
        return lo, hi

    def _raw_chunk(self, table: str, k: int) -> tuple[pd.DataFrame, np.ndarray]:
        reader = self._readers[table]
        arrow, numbers = reader.read_chunk(k, *self._bounds(k))
        if arrow is None:
            raw = self._empty(table)
        else:
            raw = arrow.to_pandas()
            if isinstance(reader, _Spilled) and reader.is_csv:
                # CSV cells are text; a blank cell reads as NaN, as the whole-table reader gives it.
                raw = raw.astype(object).where(raw.notna(), np.nan)
        cfg = self._table_settings(table)
        return map_columns(raw, self._paths[table], table, cfg.columns), numbers

    def _empty(self, table: str) -> pd.DataFrame:
        path = self._paths[table]
        if self._kind(table) == "parquet":
            return pq.ParquetFile(path).schema_arrow.empty_table().to_pandas()
        return read_csv(path, self.settings.csv_separator, self.settings.encoding, nrows=0)

    def chunk(self, k: int) -> dict[str, pd.DataFrame]:
        """Chunk ``k``'s validated tables (its customers and their rows); records the chunk's rejects."""
        started = time.perf_counter()
        out, tally = self.read_chunk(k)
        self.record(tally)
        self.seconds += time.perf_counter() - started
        return out

    def read_chunk(self, k: int) -> tuple[dict[str, pd.DataFrame], ChunkTally]:
        """Chunk ``k``'s validated tables and what reading them counted, without recording it.

        What :meth:`chunk` does in two halves, so that a worker process can read and validate a chunk
        and the process assembling the scoring :meth:`record` its tally, in chunk order.
        """
        ids = self.ids[k * self.chunk_size : (k + 1) * self.chunk_size]
        out = {"customers": self.customers.iloc[k * self.chunk_size : (k + 1) * self.chunk_size]}
        tally = ChunkTally()
        counted, self._validator.warnings = self._validator.warnings, {}  # this chunk's flags alone
        try:
            for table in self._readers:
                raw, numbers = self._raw_chunk(table, k)
                kept, rej = self._validator.validate_rows(table, raw, numbers)
                del raw
                tally.kept[table] = len(kept)
                tally.read[table] = len(kept) + len(rej)
                tally.rejects[table] = rej
                mine = kept["customer_id"].isin(ids).to_numpy(dtype=bool)
                if not mine.all():
                    # Rows of customers who signed up after the as-of date are kept but not scored; a row
                    # of another chunk's customer here would be lost, which must never happen.
                    strays = kept.loc[~mine, "customer_id"]
                    if strays.isin(self.ids).any():
                        raise AssertionError(f"{table}: rows of chunk {k} belong to another chunk's customers")
                out[table] = kept.loc[mine] if not mine.all() else kept
        finally:
            tally.warnings, self._validator.warnings = self._validator.warnings, counted
        return out, tally

    def record(self, tally: ChunkTally) -> None:
        """Count a chunk read by :meth:`read_chunk` (here or in a worker) in :attr:`rejects` and :attr:`reports`."""
        for table in self._readers:
            self._kept_counts[table] += tally.kept.get(table, 0)
            self._read_counts[table] += tally.read.get(table, 0)
            rej = tally.rejects.get(table)
            if rej is not None and len(rej):
                self._reject_parts[table].append(rej)
            self._validator.warnings.setdefault(table, Counter()).update(tally.warnings.get(table, Counter()))

    def start(self) -> None:
        """Mark the input as being read (once): by iterating, or chunk by chunk in scoring workers."""
        if self._consumed:
            raise RuntimeError("a StreamedInput is read once; open a new one to read the tables again")
        self._consumed = True

    def __iter__(self) -> Iterator[dict[str, pd.DataFrame]]:
        self.start()
        for k in range(self.n_chunks):
            yield self.chunk(k)
            release_memory()

    # --- results ----------------------------------------------------------------------------------------

    @property
    def rejects(self) -> dict[str, pd.DataFrame]:
        """Rejected rows per table, in file order (complete once every chunk was read)."""
        out = {"customers": self._validator.rejects["customers"]}
        for table, parts in self._reject_parts.items():
            if parts:
                rej = pd.concat(parts, ignore_index=True).sort_values("row_number", kind="stable", ignore_index=True)
            else:
                empty = map_columns(self._empty(table), self._paths[table], table, self._table_settings(table).columns)
                rej = _rejects_frame(empty, np.empty(0, dtype=np.int64), [])
            for column in rej.columns:  # the rows as read: text, as the whole-table loader gives them
                if column != "row_number":
                    rej[column] = rej[column].astype("string")
            out[table] = rej
        return out

    @property
    def reports(self) -> dict[str, TableReport]:
        """Rows in, kept and rejected per table (complete once every chunk was read)."""
        out = {"customers": self._validator.reports["customers"]}
        rejects = self.rejects
        for table, reader in self._readers.items():
            rej = rejects[table]
            reasons = Counter(r for reason in rej["reason"].tolist() for r in reason.split("; "))
            out[table] = TableReport(
                table=table,
                source=str(self._paths[table]),
                rows_in=reader.rows,
                rows_kept=int(self._kept_counts[table]),
                rows_rejected=len(rej),
                reasons=dict(reasons.most_common()),
                warnings=dict(self._validator.warnings.get(table, Counter()).most_common()),
            )
            if self._consumed and reader.rows != out[table].rows_kept + len(rej):
                kept = out[table].rows_kept
                raise AssertionError(f"{table}: {reader.rows} rows in, {kept} kept + {len(rej)} rejected")
        return out

    def reports_so_far(self) -> dict[str, TableReport]:
        """Rows read, kept and rejected per table in the chunks read so far (the customers: all of them), for
        an early look at a table rejected in bulk before every chunk is read."""
        out = {"customers": self._validator.reports["customers"]}
        for table in self._readers:
            parts = self._reject_parts[table]
            reasons = Counter(r for rej in parts for reason in rej["reason"].tolist() for r in reason.split("; "))
            rejected = sum(len(rej) for rej in parts)
            out[table] = TableReport(
                table=table,
                source=str(self._paths[table]),
                rows_in=int(self._read_counts[table]),
                rows_kept=int(self._kept_counts[table]),
                rows_rejected=rejected,
                reasons=dict(reasons.most_common()),
            )
        return out

    def close(self) -> None:
        """Remove the spill files."""
        if self._spill_root is not None:
            shutil.rmtree(self._spill_root, ignore_errors=True)
            self._spill_root = None

    def __enter__(self) -> StreamedInput:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
