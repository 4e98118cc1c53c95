"""Load input tables through the data contract: read, map columns, coerce, validate, reject.

The path of a table through the loader:

1. **find and read** the file (CSV or Parquet) — an unreadable file stops the run;
2. **map** the user's column names onto the contract (``data.tables.<table>.columns`` in
   ``params.yaml``) — a missing required column stops the run;
3. **coerce** each contract column to its kind — a column with no value of the right type stops
   the run (``uncoercible type``); single values that cannot be read reject their row;
4. **validate** rows with the pandera schema of :mod:`crmscore.data.schemas`, then check that every
   row of the other tables belongs to a known customer.

Whole-file problems raise :class:`~crmscore.errors.DataError` with one line naming the file, the
column and the rule. Row problems never vanish: the row goes to the rejects with its row number in the
file and a ``reason``, and ``rows in = rows kept + rows rejected`` holds for every table.
"""

from __future__ import annotations

import codecs
import dataclasses
import datetime as dt
import os
import re
import warnings
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

# pandera imports pyspark.pandas when pyspark is installed (the Spark extra) — on import and again when
# it validates — and pyspark then warns about the pandas version. That warning concerns pandas-on-Spark,
# which crmscore never uses, so it is silenced rather than printed on every command.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support", category=FutureWarning)
    import pandera.pandas as pa
import pyarrow.parquet as pq

from crmscore.config import TABLE_NAMES, DataSettings, TableSettings
from crmscore.data.attributes import attribute_summary, coerce_attribute, derive_signup
from crmscore.data.plausibility import MONEY_COLUMNS, MagnitudeCounts, Plausibility, busy_rows
from crmscore.data.schemas import CONTRACT, NUMERIC_KINDS, REQUIRED_TABLES, ColumnSpec, table_schema
from crmscore.errors import DataError
from crmscore.io import release_memory, write_csv, write_json, write_parquet

warnings.filterwarnings("ignore", message="PySpark does not yet fully support", category=FutureWarning)

__all__ = [
    "TableReport",
    "LoadedData",
    "CustomerOptions",
    "snapshot_date_of",
    "find_table_file",
    "find_table_files",
    "read_csv",
    "read_table",
    "validate_table",
    "validate_tables",
    "load_tables",
    "money_counts",
    "OutsideProbabilities",
    "probability_columns",
    "outside_probabilities",
    "check_probabilities",
    "write_rejects",
    "write_tables",
]

_CSV_SUFFIXES = (".csv", ".csv.gz", ".txt", ".tsv")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_TRUE = {"1", "true", "t", "yes", "y"}
_FALSE = {"0", "false", "f", "no", "n"}


@dataclasses.dataclass
class TableReport:
    """What happened to one table on load."""

    table: str
    source: str
    rows_in: int
    rows_kept: int
    rows_rejected: int
    reasons: dict[str, int]
    #: Kept rows flagged by a plausibility check (``data.checks``), by reason.
    warnings: dict[str, int] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """The report as plain values (for JSON and manifests)."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class LoadedData:
    """Validated tables, their rejected rows, and a report per table."""

    tables: dict[str, pd.DataFrame]
    rejects: dict[str, pd.DataFrame]
    reports: dict[str, TableReport]
    #: As-of date of customers-only (snapshot) data without signup dates of its own; None otherwise.
    snapshot_date: pd.Timestamp | None = None
    #: The customer attributes: type, distinct values, missing share and role (see ``attribute_summary``).
    attributes: list[dict[str, object]] = dataclasses.field(default_factory=list)

    def summary(self) -> pd.DataFrame:
        """One row per table: rows in, kept, rejected, the rejections by reason and the warnings (kept rows a
        plausibility check flagged) by reason."""
        columns = ["table", "rows_in", "rows_kept", "rows_rejected", "rejected_by_reason", "warnings_by_reason"]
        rows = []
        for r in self.reports.values():
            rows.append(
                {
                    "table": r.table,
                    "rows_in": r.rows_in,
                    "rows_kept": r.rows_kept,
                    "rows_rejected": r.rows_rejected,
                    "rejected_by_reason": "; ".join(f"{reason} ×{count}" for reason, count in r.reasons.items()),
                    "warnings_by_reason": "; ".join(f"{reason} ×{count}" for reason, count in r.warnings.items()),
                }
            )
        return pd.DataFrame(rows, columns=columns)


@dataclasses.dataclass(frozen=True)
class CustomerOptions:
    """How the customers table is completed and typed (``data.tables.customers`` and ``data.snapshot_date``)."""

    types: Mapping[str, str] = dataclasses.field(default_factory=dict)
    tenure_column: str | None = None
    tenure_unit: str = "months"
    snapshot_date: pd.Timestamp | None = None
    exclude: tuple[str, ...] = ()
    protected: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: DataSettings, snapshot_date: pd.Timestamp | None = None) -> CustomerOptions:
        table = settings.tables.get("customers", TableSettings())
        return cls(
            types=dict(table.types),
            tenure_column=table.tenure.column if table.tenure else None,
            tenure_unit=table.tenure.unit if table.tenure else "months",
            snapshot_date=snapshot_date,
            exclude=tuple(table.exclude),
            protected=tuple(table.protected),
        )


def snapshot_date_of(settings: DataSettings, customers_path: str | os.PathLike | None) -> pd.Timestamp:
    """The as-of date of snapshot data: ``data.snapshot_date``, else the day the customers file was saved."""
    if settings.snapshot_date is not None:
        return pd.Timestamp(settings.snapshot_date)
    if customers_path is not None and Path(customers_path).exists():
        return pd.Timestamp(dt.date.fromtimestamp(Path(customers_path).stat().st_mtime))
    return pd.Timestamp(dt.date.today())


# --- reading ----------------------------------------------------------------------------------------


def _format_of(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    name = path.name.lower()
    if name.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(_CSV_SUFFIXES):
        return "csv"
    raise DataError(f"{path}: unknown file type (expected .csv or .parquet, or set data.format)")


def read_csv(path: str | os.PathLike, separator: str = ",", encoding: str = "utf-8", **kwargs):
    """``pandas.read_csv`` of an input file: every cell as text, ``encoding`` (UTF-8 with or without a
    byte-order mark by default), and a one-line :class:`DataError` naming the line when the bytes are not
    that encoding. With ``chunksize`` the error comes while iterating."""
    options = {"dtype": str, "keep_default_na": False, "na_values": [""], **kwargs}
    reader = pd.read_csv(path, sep=separator, encoding=_python_encoding(encoding), **options)
    if "chunksize" not in kwargs:
        return reader
    return _decoded_chunks(reader, path, encoding)


def _decoded_chunks(reader, path: str | os.PathLike, encoding: str):
    try:
        yield from reader
    except UnicodeDecodeError:
        raise decode_error(path, encoding) from None


def _python_encoding(encoding: str) -> str:
    # "utf-8-sig" reads UTF-8 and drops a byte-order mark (Excel's "CSV UTF-8") when there is one.
    return "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding


def decode_error(path: str | os.PathLike, encoding: str) -> DataError:
    """The one-line error for a file that is not ``encoding`` text: the first bad line and byte, the setting."""
    decoder = codecs.getincrementaldecoder(_python_encoding(encoding))()
    where = ""
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                decoder.decode(line)
            except UnicodeDecodeError as exc:
                where = f"line {number}: byte 0x{line[exc.start]:02x} "
                break
    return DataError(
        f"{path}: {where or ''}is not {encoding} text; set data.encoding to the file's encoding "
        "(e.g. latin-1 or cp1252 for many Western European exports)"
    )


def separator_hint(columns, separator: str) -> str:
    """`` (looks like ';'-separated: …)`` when the header read holds another common separator."""
    header = " ".join(map(str, columns))
    for candidate, name in ((";", "';'"), ("\t", "tab"), ("|", "'|'"), (",", "','")):
        if candidate != separator and candidate in header:
            return f" (looks like {name}-separated: set data.csv_separator: {candidate!r})"
    return ""


def find_table_file(input_dir: str | os.PathLike, table: str, settings: TableSettings | None = None) -> Path | None:
    """The file of ``table`` in ``input_dir``: the configured name, else ``<table>.parquet`` / ``.csv``."""
    folder = Path(input_dir)
    if settings is not None and settings.file:
        path = folder / settings.file
        if not path.exists():
            raise DataError(f"{path}: file not found (data.tables.{table}.file)")
        return path
    for suffix in (".parquet", ".pq", ".csv", ".csv.gz"):
        path = folder / f"{table}{suffix}"
        if path.exists():
            return path
    return None


def missing_table_error(table: str, where: str = "") -> DataError:
    """The one-line error for a required table that is not there (``where``: the folder, if any)."""
    return DataError(
        f"{where + ': ' if where else ''}table '{table}' not found (expected {table}.parquet or {table}.csv, "
        f"or set data.tables.{table}.file)"
    )


def find_table_files(input_dir: str | os.PathLike, settings: DataSettings | None = None) -> dict[str, Path]:
    """The file of every contract table found in ``input_dir``, in contract order.

    Raises :class:`DataError` when the folder or a required table (``customers``) is missing, or a
    configured file name (``data.tables.<table>.file``) does not exist.
    """
    settings = settings or DataSettings()
    folder = Path(input_dir)
    if not folder.is_dir():
        raise DataError(f"{folder}: input folder not found")
    found = {}
    for table in TABLE_NAMES:
        path = find_table_file(folder, table, settings.tables.get(table, TableSettings()))
        if path is not None:
            found[table] = path
        elif table in REQUIRED_TABLES:
            raise missing_table_error(table, str(folder))
    return found


def read_table(
    path: str | os.PathLike,
    table: str,
    columns: Mapping[str, str] | None = None,
    fmt: str = "auto",
    csv_separator: str = ",",
    row_ids: bool = False,
    encoding: str = "utf-8",
) -> pd.DataFrame:
    """Read one table file and rename the user's columns to the contract's names.

    CSV cells are read as text (so a rejected row shows exactly what the file held); Parquet keeps its
    types. ``columns`` maps contract names to the file's names; ``row_ids`` numbers the rows of a table
    without customer ids (``data.tables.customers.id: row``). Raises :class:`DataError` when the file
    cannot be read or lacks a required column.
    """
    path = Path(path)
    kind = _format_of(path, fmt)
    try:
        if kind == "parquet":
            # Convert column by column, releasing each Arrow buffer as it goes: a large table is then
            # never held twice (Arrow and pandas) in memory.
            raw = pq.read_table(path).to_pandas(self_destruct=True, split_blocks=True)
        else:
            raw = read_csv(path, csv_separator, encoding)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError:
        raise decode_error(path, encoding) from None
    except Exception as exc:  # any reader failure is a whole-file problem for the user
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot be read as {kind}: {detail}") from None
    return map_columns(
        raw, path, table, columns, row_ids=row_ids, separator=csv_separator if kind == "csv" else None
    ).reset_index(drop=True)


def map_columns(
    raw: pd.DataFrame,
    path: str | os.PathLike,
    table: str,
    columns: Mapping[str, str] | None,
    row_ids: bool = False,
    separator: str | None = None,
) -> pd.DataFrame:
    """Rename the user's columns of ``raw`` (read from ``path``) to the contract's names and check that
    every required column is there; raises :class:`DataError` naming the file and column otherwise.

    With ``row_ids`` the table gets ``customer_id`` = its 1-based row number (the rejects' ``row_number``
    too), so scores join back to the file's rows. ``separator`` (CSV files) lets a missing-column error
    say when the header looks split by another separator.
    """
    hint = separator_hint(raw.columns, separator) if separator is not None else ""
    raw.columns = [str(c).strip() for c in raw.columns]
    mapping = dict(columns or {})
    if row_ids:
        if "customer_id" in mapping or "customer_id" in raw.columns:
            raise DataError(
                f"{path}: column 'customer_id': data.tables.{table}.id is 'row' but the file has a customer id "
                "column; set id: column to use it"
            )
        raw.insert(0, "customer_id", np.arange(1, len(raw) + 1, dtype=np.int64))
    unknown = sorted(set(mapping) - {c.name for c in CONTRACT[table]})
    if unknown:
        allowed = ", ".join(c.name for c in CONTRACT[table])
        raise DataError(
            f"{path}: data.tables.{table}.columns: '{unknown[0]}' is not a contract column of {table} ({allowed})"
        )
    for contract_name, user_name in mapping.items():
        if user_name not in raw.columns:
            raise DataError(
                f"{path}: column '{user_name}' (mapped to {contract_name}): required column is missing{hint}; "
                f"columns found: {', '.join(raw.columns[:12])}"
            )
    raw = raw.rename(columns={user: contract for contract, user in mapping.items()})
    for spec in CONTRACT[table]:
        if spec.required and spec.name not in raw.columns:
            fix = hint or f" (map your column in params.yaml data.tables.{table}.columns)"
            raise DataError(
                f"{path}: column '{spec.name}': required column is missing{fix}; "
                f"columns found: {', '.join(raw.columns[:12])}"
            )
    if raw.columns.duplicated().any():
        dup = raw.columns[raw.columns.duplicated()][0]
        raise DataError(f"{path}: column '{dup}': appears twice after mapping")
    return raw


# --- coercion -----------------------------------------------------------------------------------------


class _Rejections:
    """Reasons collected per row position; a row may break several rules."""

    def __init__(self) -> None:
        self.reasons: dict[int, list[str]] = {}
        self.coerced_cells: set[tuple[int, str]] = set()

    def add(self, positions: np.ndarray, reason: str, column: str | None = None) -> None:
        for pos in np.asarray(positions, dtype=np.int64).tolist():
            if column is not None:
                self.coerced_cells.add((pos, column))
            bucket = self.reasons.setdefault(pos, [])
            if reason not in bucket:
                bucket.append(reason)


def _blank(series: pd.Series) -> np.ndarray:
    """True where a value is missing or only whitespace."""
    missing = series.isna().to_numpy()
    if series.dtype == object or pd.api.types.is_string_dtype(series.dtype):
        text = series.astype("string").str.strip()
        missing = missing | (text == "").fillna(True).to_numpy(dtype=bool)
    return missing


def _example(series: pd.Series, bad: np.ndarray) -> str:
    return repr(str(series[bad].iloc[0]))


def _fail_whole_column(
    source: str, column: str, rule: str, series: pd.Series, bad: np.ndarray, given: np.ndarray
) -> None:
    # A column where *nothing* can be read is a whole-file problem (wrong column mapped, wrong
    # format), not a thousand bad rows.
    if given.any() and bad[given].all():
        example = str(series[bad].iloc[0])
        hint = ""
        if rule.startswith("not a number") and re.fullmatch(r"\s*-?[\d.]*\d,\d+\s*", example):
            hint = "; looks like decimal commas: export numbers with a '.' decimal point"
        raise DataError(f"{source}: column '{column}': uncoercible type: {rule} (e.g. {example!r}){hint}")


def _coerce_id(series: pd.Series) -> pd.Series:
    if pd.api.types.is_integer_dtype(series.dtype):
        return series.astype("Int64") if series.isna().any() else series.astype(np.int64)
    if pd.api.types.is_float_dtype(series.dtype):
        values = series.to_numpy(dtype=float)
        finite = np.isfinite(values)
        if np.all(values[finite] == np.round(values[finite])):
            ints = pd.Series(np.where(finite, values, 0).astype(np.int64), index=series.index, dtype="Int64")
            return ints.where(pd.Series(finite, index=series.index))
        return series.astype("string")
    text = series.astype("string").str.strip()
    text = text.mask(text == "")
    # Digit-only ids written without leading zeros are integers in disguise; keep other ids as text
    # so that "00042" stays "00042".
    present = text.dropna()
    if len(present) and present.str.fullmatch(r"-?[1-9][0-9]{0,17}|0").all():
        return pd.to_numeric(text).astype("Int64" if text.isna().any() else np.int64)
    return text


def _coerce_date(series: pd.Series, date_format: str | None) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        out = series
        if getattr(out.dt, "tz", None) is not None:
            out = out.dt.tz_localize(None)
    else:
        values = (
            series.astype("string").str.strip()
            if not pd.api.types.is_numeric_dtype(series.dtype)
            else series.astype("Int64").astype("string")
        )
        out = pd.to_datetime(values, format=date_format or "ISO8601", errors="coerce")
    # Dates outside pandas' nanosecond range cannot be real CRM events; treat them as unreadable.
    out = out.astype("datetime64[us]")
    in_range = out.isna() | ((out >= pd.Timestamp.min) & (out <= pd.Timestamp.max))
    return out.where(in_range).astype("datetime64[ns]")


def _coerce_flag(series: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.astype("boolean")
    if pd.api.types.is_numeric_dtype(series.dtype):
        # 1/0 stored as numbers (a float column once a missing value joins it): 1.0 is yes, 0.0 no
        number = pd.to_numeric(series, errors="coerce")
        out = pd.Series(pd.NA, index=series.index, dtype="boolean")
        out[(number == 1).fillna(False).to_numpy(dtype=bool)] = True
        out[(number == 0).fillna(False).to_numpy(dtype=bool)] = False
        return out
    text = series.astype("string").str.strip().str.lower()
    out = pd.Series(pd.NA, index=series.index, dtype="boolean")
    out[text.isin(_TRUE).fillna(False).to_numpy(dtype=bool)] = True
    out[text.isin(_FALSE).fillna(False).to_numpy(dtype=bool)] = False
    return out


def _coerce(
    raw: pd.DataFrame,
    table: str,
    source: str,
    date_format: str | None,
    rejections: _Rejections,
    options: CustomerOptions | None = None,
) -> pd.DataFrame:
    """Convert contract columns to their kinds; record unreadable cells as row rejections."""
    df = raw.copy()
    for spec in CONTRACT[table]:
        if spec.name not in df.columns:
            continue
        series = raw[spec.name]
        given = ~_blank(series)
        coerced, rule = _coerce_column(spec, series, date_format)
        bad = given & coerced.isna().to_numpy()
        if spec.kind == "date":
            rule = f"not a date in format {date_format or 'YYYY-MM-DD'}"
            if date_format is None and given.any() and bad[given].all():
                rule += f" (set data.tables.{table}.date_format)"
        _fail_whole_column(source, spec.name, rule, series, bad, given)
        if bad.any():
            rejections.add(np.flatnonzero(bad), f"{spec.name}: {rule}", column=spec.name)
        df[spec.name] = coerced
    if table == "customers":
        _coerce_attributes(df, source, options or CustomerOptions(), rejections)
    return df


def _coerce_attributes(df: pd.DataFrame, source: str, options: CustomerOptions, rejections: _Rejections) -> None:
    """Customer attributes typed as declared or as their values say; signup dates from a tenure column."""
    found = ", ".join(map(str, df.columns[:12]))
    for column in [*options.types, *options.exclude, *options.protected]:
        if column not in df.columns:
            raise DataError(
                f"{source}: column '{column}' (named in data.tables.customers): no such column; columns found: {found}"
            )
    if options.tenure_column is not None:
        column = options.tenure_column
        if column not in df.columns:
            raise DataError(
                f"{source}: column '{column}' (data.tables.customers.tenure): required column is missing; "
                f"columns found: {found}"
            )
        if "signup_date" in df.columns:
            raise DataError(
                f"{source}: column '{column}': data.tables.customers.tenure derives signup_date, but the table "
                "has a signup_date too; map one of them"
            )
        snapshot = options.snapshot_date if options.snapshot_date is not None else pd.Timestamp(dt.date.today())
        signup, bad, rule = derive_signup(df[column], options.tenure_unit, snapshot)
        _fail_whole_column(source, column, rule, df[column], bad, ~_blank(df[column]))
        if bad.any():
            rejections.add(np.flatnonzero(bad), f"{column}: {rule}", column="signup_date")
        df.insert(1, "signup_date", signup.to_numpy())
    contract = {c.name for c in CONTRACT["customers"]}
    for column in [c for c in df.columns if c not in contract]:
        typed, bad, rule = coerce_attribute(df[column], options.types.get(column))
        if bad.any():
            _fail_whole_column(source, column, rule, df[column], bad, ~_blank(df[column]))
            rejections.add(np.flatnonzero(bad), f"{column}: {rule}", column=column)
        df[column] = typed


def _coerce_number(series: pd.Series) -> pd.Series:
    """Numbers as floats; unreadable and non-finite values missing."""
    numbers = pd.to_numeric(
        series if pd.api.types.is_numeric_dtype(series.dtype) else series.astype("string").str.strip(),
        errors="coerce",
    ).astype("float64")
    return numbers.where(np.isfinite(numbers.to_numpy()))


def _coerce_column(spec: ColumnSpec, series: pd.Series, date_format: str | None) -> tuple[pd.Series, str]:
    if spec.kind == "id":
        return _coerce_id(series), "not an id"
    if spec.kind == "date":
        return _coerce_date(series, date_format), "not a date"
    if spec.kind in NUMERIC_KINDS:
        numbers = _coerce_number(series)
        if spec.kind == "integer":
            integral = numbers.isna() | (numbers == np.round(numbers))
            numbers = numbers.where(integral)
            out = numbers.astype("Int64") if numbers.isna().any() else numbers.astype(np.int64)
            return out, "not an integer"
        return numbers, "not a number"
    if spec.kind == "flag":
        return _coerce_flag(series), "not a yes/no value"
    if isinstance(series.dtype, pd.CategoricalDtype):
        return series, "not a text"
    text = series.astype(str).str.strip()
    return text.mask(text == "").astype("category"), "not a text"


# --- validation -----------------------------------------------------------------------------------------


def _reason_of(check: str, column: str | None) -> str:
    if check == "not_nullable":
        return f"{column}: missing value"
    if check == "field_uniqueness":
        return f"{column}: duplicate (first occurrence kept)"
    return check


def validate_table(
    raw: pd.DataFrame,
    table: str,
    source: str,
    max_date: dt.date,
    date_format: str | None = None,
    options: CustomerOptions | None = None,
    checks: Plausibility | None = None,
    busy: np.ndarray | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, Counter]:
    """Coerce and validate one table already renamed to the contract; return ``(kept, rejects, warnings)``.

    ``rejects`` holds the rejected rows as read (text), their 1-based ``row_number`` in the file and a
    ``reason`` listing every rule the row broke. ``options`` complete and type the customers table.
    ``checks`` are the plausibility checks (default: none); ``warnings`` counts the kept rows they flagged
    by reason, and ``busy`` marks over-active customer-days counted over a larger table than ``raw``.
    Raises :class:`DataError` for whole-column problems.
    """
    raw = raw.reset_index(drop=True)
    rejections = _Rejections()
    df = _coerce(raw, table, source, date_format, rejections, options)
    present = [c.name for c in CONTRACT[table] if c.name in df.columns]
    schema = table_schema(table, max_date, present)
    try:
        schema.validate(df, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        cases = cases[cases["index"].notna()]
        for (check, column), group in cases.groupby(["check", "column"], sort=False, dropna=False):
            positions = group["index"].astype(np.int64).to_numpy()
            if check == "not_nullable":
                # A cell already rejected as unreadable is not also "missing".
                positions = np.array(
                    [p for p in positions if (p, column) not in rejections.coerced_cells], dtype=np.int64
                )
            if positions.size:
                rejections.add(positions, _reason_of(str(check), column))
    flagged = _apply_checks(checks, table, df, busy, rejections) if checks is not None else []
    kept, rejects = _split(raw, df, rejections)
    warnings = Counter()
    for finding in flagged:
        kept_rows = sum(1 for p in finding.positions.tolist() if p not in rejections.reasons)
        if kept_rows:
            warnings[finding.reason] += kept_rows
    return kept, rejects, warnings


def _apply_checks(checks: Plausibility, table: str, df: pd.DataFrame, busy, rejections: _Rejections) -> list:
    """Reject the rows the plausibility checks reject; return the findings that only flag."""
    flagged = []
    for finding in checks.findings(table, df, busy):
        if finding.action == "reject":
            rejections.add(finding.positions, finding.reason)
        else:
            flagged.append(finding)
    return flagged


def money_counts(table: str, raw: pd.DataFrame) -> dict[str, MagnitudeCounts]:
    """The magnitude counts of ``table``'s money columns in ``raw`` (contract names, values as read)."""
    specs = {c.name: c for c in CONTRACT[table]}
    out = {}
    for column in MONEY_COLUMNS.get(table, ()):
        if column in raw.columns:
            out[column] = MagnitudeCounts().add(_coerce_column(specs[column], raw[column], None)[0])
    return out


# --- whole-table rule: probabilities strictly between 0 and 1 ------------------------------------------------


def probability_columns(table: str) -> tuple[str, ...]:
    """The contract columns of ``table`` of kind ``probability`` (the campaigns' ``propensity``)."""
    return tuple(c.name for c in CONTRACT[table] if c.kind == "probability")


@dataclasses.dataclass
class OutsideProbabilities:
    """Readable values of one probability column outside (0, 1), counted over a whole table.

    Parts of a table (slices, chunks, batches, Spark partitions) add up with :meth:`merge`, and the
    example kept is the one with the smallest row key, so the count and the example do not depend on how
    the table was split. ``row`` is a 1-based row number in the file (or, on Spark, a ``_row`` id until
    the engine turns it into one).
    """

    count: int = 0
    row: int | None = None
    value: str | None = None

    def add(self, raw: pd.Series, rows: np.ndarray) -> OutsideProbabilities:
        """Count the values of ``raw`` (as read) outside (0, 1); ``rows`` are their row keys. Returns self."""
        values = _coerce_number(raw.reset_index(drop=True)).to_numpy(dtype=float, na_value=np.nan)
        outside = np.flatnonzero(~np.isnan(values) & ~((values > 0.0) & (values < 1.0)))
        if outside.size:
            rows = np.asarray(rows, dtype=np.int64)
            first = outside[np.argmin(rows[outside])]
            self.merge(OutsideProbabilities(int(outside.size), int(rows[first]), str(raw.iloc[first]).strip()))
        return self

    def merge(self, other: OutsideProbabilities) -> OutsideProbabilities:
        """Add another part's count; the example with the smaller row key wins. Returns self."""
        self.count += other.count
        if other.row is not None and (self.row is None or other.row < self.row):
            self.row, self.value = other.row, other.value
        return self


def outside_probabilities(
    table: str, raw: pd.DataFrame, rows: np.ndarray | None = None
) -> dict[str, OutsideProbabilities]:
    """The values outside (0, 1) of ``table``'s probability columns in ``raw`` (contract names, values as
    read); ``rows`` are the rows' keys (default: 1-based positions in ``raw``)."""
    keys = np.arange(1, len(raw) + 1, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    return {c: OutsideProbabilities().add(raw[c], keys) for c in probability_columns(table) if c in raw.columns}


def check_probabilities(source: str, found: Mapping[str, OutsideProbabilities]) -> None:
    """Raise a one-line :class:`DataError` when a probability column holds a value outside (0, 1).

    A whole-table rule rather than a row rule, although a value outside breaks it row by row: a
    propensity is the probability that the campaign treated the customer, and one of 0 or 1, or above 1,
    says the column means something else — percentages (``25`` for 25 %), a targeting score, or a
    deterministic targeting rule (1 for everyone the rule picked) — so the values that happen to lie
    inside are as wrong as the others. A propensity of exactly 0 or 1 also leaves no counterfactual: such
    a customer could not have been in the other group, and the inverse-propensity weights of uplift
    (1/p, 1/(1 − p)) are infinite. Rejecting those rows would quietly change the population the uplift is
    estimated for (precisely the customers the targeting rule was sure of), and only a table rejected in
    bulk (``data.checks.max_reject_share``) would stop. So one such value stops the run, and the line says
    how many there are, the first of them with its row number, and the likely fix. ``found`` holds the
    counts of the whole table (:func:`outside_probabilities`, merged over its parts).
    """
    for column, outside in found.items():
        if not outside.count:
            continue
        if _coerce_number(pd.Series([outside.value])).iloc[0] > 1:
            fix = "percentages? write 0.25 for 25 %"
        else:
            fix = (
                "a customer sure to be treated (1) or left out (0) tells nothing about uplift: leave such rows "
                "out, or leave propensity empty for a randomized campaign"
            )
        raise DataError(
            f"{source}: column '{column}': {outside.count:,} value{'s' if outside.count != 1 else ''} outside "
            f"(0, 1) (e.g. {outside.value!r} in row {outside.row}); propensities are probabilities of being "
            f"treated, strictly between 0 and 1 ({fix})"
        )


def _split(raw: pd.DataFrame, df: pd.DataFrame, rejections: _Rejections) -> tuple[pd.DataFrame, pd.DataFrame]:
    bad = np.zeros(len(df), dtype=bool)
    positions = np.fromiter(rejections.reasons.keys(), dtype=np.int64, count=len(rejections.reasons))
    positions.sort()
    bad[positions] = True
    kept = df.loc[~bad].reset_index(drop=True)
    rejects = _rejects_frame(raw, positions, ["; ".join(rejections.reasons[p]) for p in positions.tolist()])
    return kept, rejects


def _rejects_frame(
    raw: pd.DataFrame, positions: np.ndarray, reasons: list[str], row_numbers: np.ndarray | None = None
) -> pd.DataFrame:
    rows = raw.iloc[positions]
    out = pd.DataFrame({c: rows[c].astype("string").to_numpy() for c in rows.columns}, index=range(len(rows)))
    out.insert(0, "row_number", (positions + 1 if row_numbers is None else row_numbers).astype(np.int64))
    out["reason"] = pd.array(reasons, dtype="string")
    return out


def _harmonise_ids(customers: pd.Series, other: pd.Series) -> pd.Series:
    """Give another table's ids the dtype of the customer ids so that they can be matched."""
    if pd.api.types.is_integer_dtype(customers.dtype) and not pd.api.types.is_integer_dtype(other.dtype):
        numbers = pd.to_numeric(other, errors="coerce")
        return numbers.where(numbers == np.round(numbers)).astype("Int64")
    if not pd.api.types.is_integer_dtype(customers.dtype) and pd.api.types.is_integer_dtype(other.dtype):
        return other.astype("string")
    return other


def validate_tables(
    raw_tables: Mapping[str, pd.DataFrame],
    max_date: dt.date | None = None,
    date_formats: Mapping[str, str | None] | None = None,
    sources: Mapping[str, str] | None = None,
    options: CustomerOptions | None = None,
    checks: Plausibility | None = None,
) -> LoadedData:
    """Validate contract tables (already renamed) and check every row's customer is known.

    Pure function: DataFrames in, :class:`LoadedData` out. ``max_date`` (default today) is the last
    allowed event date; ``date_formats`` and ``sources`` (file names for messages) are per table;
    ``options`` complete and type the customers table (declared types, tenure, snapshot date);
    ``checks`` are the plausibility checks (default: those of ``data.checks`` defaults), their amount
    bounds taken from the given tables unless already set.
    """
    max_date = max_date or dt.date.today()
    date_formats = dict(date_formats or {})
    sources = dict(sources or {})
    missing = [t for t in REQUIRED_TABLES if t not in raw_tables]
    if missing:
        raise DataError(f"{missing[0]}: table is required but was not given")
    validator = _Validator(max_date, date_formats, sources, options, checks)
    for table in TABLE_NAMES:
        if table in raw_tables:
            validator.add(table, raw_tables[table])
    return validator.result()


#: Rows validated at a time: large tables are validated in slices, so the temporary copies of
#: coercion and schema checks stay bounded whatever the table size (rules are per row).
VALIDATION_SLICE_ROWS = 1_000_000


class _Validator:
    """Validates tables one at a time (customers first), so a caller can free each raw table after it."""

    def __init__(
        self,
        max_date: dt.date,
        date_formats: Mapping[str, str | None],
        sources: Mapping[str, str],
        options: CustomerOptions | None = None,
        checks: Plausibility | None = None,
    ) -> None:
        self.max_date = max_date
        self.date_formats = date_formats
        self.sources = sources
        self.options = options or CustomerOptions()
        self.checks = checks if checks is not None else Plausibility()
        self.tables: dict[str, pd.DataFrame] = {}
        self.rejects: dict[str, pd.DataFrame] = {}
        self.reports: dict[str, TableReport] = {}
        self.warnings: dict[str, Counter] = {}

    def set_counts(self, table: str, counts: Mapping[str, MagnitudeCounts]) -> None:
        """Set ``table``'s amount bounds from magnitude counts taken over the whole table."""
        self.checks = self.checks.with_counts(table, counts)

    def add(self, table: str, raw: pd.DataFrame) -> None:
        source = self.sources.get(table, table)
        if table != "customers" and "customers" not in self.tables:
            raise DataError(f"{table}: the customers table must be validated first")
        n = len(raw)
        step = n if table == "customers" else VALIDATION_SLICE_ROWS
        if table not in self.checks.fitted:
            self.set_counts(table, money_counts(table, raw))
        check_probabilities(source, outside_probabilities(table, raw))
        busy = self._busy(table, raw) if n > step else None
        kept_parts, rejected_parts = [], []
        for start in range(0, max(n, 1), max(step, 1)):
            part = raw.iloc[start : start + step].reset_index(drop=True)
            part_busy = None if busy is None else busy[start : start + step]
            kept, rej = self.validate_rows(table, part, busy=part_busy)
            if start and len(rej):
                rej["row_number"] = rej["row_number"] + start
            kept_parts.append(kept)
            rejected_parts.append(rej)
        # Let go of the raw rows before concatenating: a caller that passed its table without keeping
        # a reference (as load_tables does) frees it here, so raw and kept rows never coexist twice.
        del raw, part
        kept = _concat_parts(kept_parts)
        del kept_parts
        release_memory()
        found = [r for r in rejected_parts if len(r)] or rejected_parts[:1]
        rej = pd.concat(found, ignore_index=True) if len(found) > 1 else found[0].reset_index(drop=True)
        for column in rej.columns:  # rejects hold the rows as read: text, whichever slice they came from
            if column != "row_number":
                rej[column] = rej[column].astype("string")
        self.tables[table] = kept
        self.rejects[table] = rej
        reasons = Counter(r for reason in rej["reason"].tolist() for r in reason.split("; "))
        self.reports[table] = TableReport(
            table=table,
            source=source,
            rows_in=n,
            rows_kept=len(kept),
            rows_rejected=len(rej),
            reasons=dict(reasons.most_common()),
            warnings=dict(self.warnings.get(table, Counter()).most_common()),
        )
        if n != len(kept) + len(rej):  # the contract's promise; never silently lose a row
            raise AssertionError(f"{table}: {n} rows in, {len(kept)} kept + {len(rej)} rejected")

    def _busy(self, table: str, raw: pd.DataFrame) -> np.ndarray | None:
        """Over-active customer-days counted over the whole table (validated in slices)."""
        if table != "transactions" or self.checks.settings.activity.action == "off":
            return None
        if not {"customer_id", "date"} <= set(raw.columns):
            return None
        dates = _coerce_date(raw["date"], self.date_formats.get(table))
        return busy_rows(_coerce_id(raw["customer_id"]), dates, self.checks.settings.activity.max_per_day)

    def validate_rows(
        self,
        table: str,
        raw: pd.DataFrame,
        row_numbers: np.ndarray | None = None,
        busy: np.ndarray | None = None,
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Validate some rows of ``table`` (after the customers): ``(kept, rejects)``; the flagged rows are
        counted in :attr:`warnings`.

        ``row_numbers`` are the rows' 1-based numbers in the file (default: their positions in ``raw``);
        the rejects carry them. ``busy`` marks over-active customer-days when ``raw`` does not hold every
        row of its customers.
        """
        raw = raw.reset_index(drop=True)
        source = self.sources.get(table, table)
        options = self.options if table == "customers" else None
        kept, rej, warnings = validate_table(
            raw, table, source, self.max_date, self.date_formats.get(table), options, self.checks, busy
        )
        self.warnings.setdefault(table, Counter()).update(warnings)
        if table != "customers":
            kept, rej = _check_customers(raw, kept, rej, self.tables["customers"], self.rejects["customers"])
        if row_numbers is not None and len(rej):
            rej["row_number"] = np.asarray(row_numbers, dtype=np.int64)[rej["row_number"].to_numpy() - 1]
        return kept, rej

    @property
    def snapshot_date(self) -> pd.Timestamp | None:
        """The snapshot date when the customers carry no signup dates of their own (derived or absent)."""
        customers = self.tables.get("customers")
        derived = self.options.tenure_column is not None
        transactions = self.tables.get("transactions")
        if transactions is not None and len(transactions):
            return None  # dated by its transactions, not a snapshot
        if customers is not None and ("signup_date" not in customers.columns or derived):
            return self.options.snapshot_date if self.options.snapshot_date is not None else pd.Timestamp.today()
        return None

    def attributes(self) -> list[dict[str, object]]:
        customers = self.tables.get("customers")
        if customers is None:
            return []
        return attribute_summary(
            customers,
            {c.name for c in CONTRACT["customers"]},
            exclude=self.options.exclude,
            protected=self.options.protected,
            declared=dict(self.options.types),
            tenure_column=self.options.tenure_column,
        )

    def result(self) -> LoadedData:
        return LoadedData(
            tables=self.tables,
            rejects=self.rejects,
            reports=self.reports,
            snapshot_date=None if self.snapshot_date is None else self.snapshot_date.normalize(),
            attributes=self.attributes(),
        )


def _concat_parts(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate validated slices, keeping categorical columns categorical (categories united)."""
    if len(parts) == 1:
        return parts[0]
    out = pd.concat(parts, ignore_index=True)
    for column in parts[0].columns:
        if isinstance(parts[0][column].dtype, pd.CategoricalDtype) and not isinstance(
            out[column].dtype, pd.CategoricalDtype
        ):
            out[column] = out[column].astype("category")
    return out


def _check_customers(
    raw: pd.DataFrame, kept: pd.DataFrame, rej: pd.DataFrame, customers: pd.DataFrame, customer_rejects: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reject rows whose customer is not among the kept customers."""
    ids = _harmonise_ids(customers["customer_id"], kept["customer_id"])
    known = ids.isin(customers["customer_id"]).fillna(False).to_numpy(dtype=bool)
    if known.all():
        kept["customer_id"] = ids.astype(customers["customer_id"].dtype)
        return kept, rej
    rejected_ids = set(customer_rejects["customer_id"].dropna().astype(str)) if len(customer_rejects) else set()
    unknown_rows = kept.loc[~known]
    reasons = [
        "customer_id: customer rejected in customers" if str(cid) in rejected_ids else "customer_id: unknown customer"
        for cid in unknown_rows["customer_id"].astype("string").fillna("").tolist()
    ]
    # Rejected rows are reported as the file held them; recover their positions in the raw table.
    positions = _raw_positions(raw, kept, rej, ~known)
    extra = _rejects_frame(raw, positions, reasons)
    kept = kept.loc[known].reset_index(drop=True)
    kept["customer_id"] = ids[known].to_numpy()
    kept["customer_id"] = kept["customer_id"].astype(customers["customer_id"].dtype)
    rej = pd.concat([rej, extra], ignore_index=True).sort_values("row_number", kind="stable").reset_index(drop=True)
    return kept, rej


def _raw_positions(raw: pd.DataFrame, kept: pd.DataFrame, rej: pd.DataFrame, mask: np.ndarray) -> np.ndarray:
    rejected_positions = rej["row_number"].to_numpy(dtype=np.int64) - 1 if len(rej) else np.empty(0, np.int64)
    keep_positions = np.setdiff1d(np.arange(len(raw)), rejected_positions, assume_unique=True)
    return keep_positions[np.asarray(mask)]


def load_tables(input_dir: str | os.PathLike, settings: DataSettings | None = None) -> LoadedData:
    """Read and validate every contract table found in ``input_dir`` (``customers`` is required).

    File names, column mapping, date formats and the future-date limit come from ``settings``
    (the ``data`` section of ``params.yaml``). Raises :class:`DataError` for whole-file problems.
    """
    settings = settings or DataSettings()
    paths = find_table_files(input_dir, settings)
    sources: dict[str, str] = {}
    date_formats = {t: settings.tables[t].date_format for t in settings.tables}
    # Read and validate one table at a time and let go of its raw copy before the next.
    options = CustomerOptions.from_settings(settings, snapshot_date_of(settings, paths["customers"]))
    checks = Plausibility(settings.checks)
    validator = _Validator(settings.max_date or dt.date.today(), date_formats, sources, options, checks)
    for table, path in paths.items():
        table_settings = settings.tables.get(table, TableSettings())
        sources[table] = str(path)
        # The raw table is passed without keeping a reference, so the validator can free it.
        validator.add(
            table,
            read_table(
                path,
                table,
                table_settings.columns,
                settings.format,
                settings.csv_separator,
                row_ids=table_settings.id == "row",
                encoding=settings.encoding,
            ),
        )
    return validator.result()


# --- writing ----------------------------------------------------------------------------------------------


def write_rejects(loaded: LoadedData, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``<out_dir>/rejects/<table>.parquet`` for every table (empty files too, so no stale
    rejects survive from an earlier run) and ``<out_dir>/validation.json``; return the paths."""
    out = Path(out_dir)
    paths = {table: write_parquet(rej, out / "rejects" / f"{table}.parquet") for table, rej in loaded.rejects.items()}
    summary = {
        "tables": {t: r.as_dict() for t, r in loaded.reports.items()},
        "snapshot_date": None if loaded.snapshot_date is None else str(loaded.snapshot_date.date()),
        "attributes": loaded.attributes,
    }
    write_json(summary, out / "validation.json")
    return paths


def write_tables(
    tables: Mapping[str, pd.DataFrame], out_dir: str | os.PathLike, fmt: str = "parquet"
) -> dict[str, Path]:
    """Write tables as ``<out_dir>/<name>.parquet`` (or ``.csv``), each file atomically."""
    out = Path(out_dir)
    paths = {}
    for name, df in tables.items():
        if fmt == "csv":
            paths[name] = write_csv(df, out / f"{name}.csv")
        else:
            paths[name] = write_parquet(df, out / f"{name}.parquet")
    return paths
