"""Plausibility checks: values that parse but cannot be right, and tables rejected in bulk.

The contract (:mod:`crmscore.data.schemas`) checks types and hard rules; these checks catch what a
warehouse export gets wrong while still parsing (``data.checks`` in ``params.yaml``):

* **amount** — money values (``amount``, ``amount_due``, ``amount_paid``, ``monthly_revenue``, the
  campaigns' ``cost``) above an absolute cap (default 1e12) or above ``multiple`` (default 100) × the
  column's 99.9th percentile: a typo, a placeholder such as 999999999 or an overflowed export cannot move
  a CLV total by orders of magnitude. The percentile is taken over the whole table, rounded up to a power
  of two and never counts the column's largest value (:class:`MagnitudeCounts`), so it is the same
  whether the table is validated whole, in slices, per chunk of customers or per Spark bucket;
* **date** — dates before ``earliest`` (default 1970-01-02: placeholders such as 1900-01-01 and the
  Unix epoch);
* **quantity** — quantities of zero or below;
* **overpayment** — a payment larger than its invoice by more than ``tolerance``;
* **activity** — a customer with more than ``max_per_day`` transactions dated the same day.

Each check rejects the row (``reject``, with its reason), keeps it and counts it as a warning (``flag``),
or is ``off``. :func:`check_reject_shares` stops a run whose table lost more than
``max_reject_share`` of its rows, naming the top reason and the setting that most likely fixes it.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from crmscore.config import CheckSettings
from crmscore.errors import DataError

__all__ = [
    "MONEY_COLUMNS",
    "MIN_VALUES_FOR_BOUND",
    "Finding",
    "MagnitudeCounts",
    "Plausibility",
    "busy_rows",
    "check_reject_shares",
    "likely_setting",
]

#: The money columns of each table, checked against the amount bound.
MONEY_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("monthly_revenue",),
    "transactions": ("amount",),
    "payments": ("amount_due", "amount_paid"),
    "campaigns": ("cost",),
}
#: A column needs this many positive values before its percentile bound applies (the cap always does).
MIN_VALUES_FOR_BOUND = 100


class MagnitudeCounts:
    """Positive finite values of one column counted per power-of-two bin (``2**(e-1) <= v < 2**e``).

    Counts add up over slices, chunks and buckets, so the bound they give does not depend on how the
    table was split; the bin of an order statistic locates it to within a factor of two.
    """

    def __init__(self, counts: Mapping[int, int] | None = None) -> None:
        self.counts: Counter[int] = Counter(dict(counts or {}))

    def add(self, values: Iterable[float] | np.ndarray | pd.Series) -> MagnitudeCounts:
        """Count ``values`` (missing, non-finite and non-positive ones are not counted); returns self."""
        v = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        v = v[np.isfinite(v) & (v > 0)]
        exponents, counts = np.unique(np.frexp(v)[1], return_counts=True)
        self.counts.update(dict(zip(exponents.tolist(), counts.tolist(), strict=True)))
        return self

    def merge(self, other: MagnitudeCounts) -> MagnitudeCounts:
        """Add another part's counts; returns self."""
        self.counts.update(other.counts)
        return self

    @property
    def n(self) -> int:
        return int(sum(self.counts.values()))

    def percentile_bound(self) -> float | None:
        """An upper bound (a power of two) of the 99.9th percentile without the largest value, or None when
        the column has fewer than :data:`MIN_VALUES_FOR_BOUND` positive values."""
        n = self.n
        if n < MIN_VALUES_FOR_BOUND:
            return None
        rank = n - max(1, n // 1000)  # 1-based rank from the smallest: the top 0.1 % (at least one) left out
        seen = 0
        for exponent in sorted(self.counts):
            seen += self.counts[exponent]
            if seen >= rank:
                return math.ldexp(1.0, exponent)
        raise AssertionError("rank beyond the counted values")  # pragma: no cover - rank <= n


@dataclasses.dataclass(frozen=True)
class Finding:
    """Rows (positions in the table) that broke one check, the reason and what the check does with them."""

    positions: np.ndarray
    reason: str
    action: str  # "reject" or "flag"
    column: str


@dataclasses.dataclass(frozen=True)
class Plausibility:
    """The checks of ``data.checks`` with the amount bounds of the tables seen so far (small, picklable)."""

    settings: CheckSettings = dataclasses.field(default_factory=CheckSettings)
    #: (table, column) → the largest plausible value.
    bounds: Mapping[tuple[str, str], float] = dataclasses.field(default_factory=dict)
    #: Tables whose bounds are set (a table may have no bound at all: few values, checks off).
    fitted: frozenset[str] = frozenset()

    def with_counts(self, table: str, counts: Mapping[str, MagnitudeCounts]) -> Plausibility:
        """These checks with ``table``'s amount bounds set from its columns' magnitude counts."""
        amount = self.settings.amount
        bounds = dict(self.bounds)
        for column, counted in counts.items():
            candidates = [amount.max] if amount.max is not None else []
            percentile = counted.percentile_bound() if amount.multiple is not None else None
            if percentile is not None:
                candidates.append(amount.multiple * percentile)
            if candidates:
                bounds[(table, column)] = float(min(candidates))
        return dataclasses.replace(self, bounds=bounds, fitted=self.fitted | {table})

    def findings(self, table: str, df: pd.DataFrame, busy: np.ndarray | None = None) -> list[Finding]:
        """What the checks find in ``df`` (one table's rows, coerced to the contract's types).

        ``busy`` marks the rows of over-active customer-days when they were counted over more rows than
        ``df`` holds (a table validated in slices); otherwise they are counted in ``df``.
        """
        s = self.settings
        out: list[Finding] = []

        def found(mask: np.ndarray, reason: str, action: str, column: str) -> None:
            if action != "off" and mask.any():
                out.append(Finding(np.flatnonzero(mask), reason, action, column))

        for column in MONEY_COLUMNS.get(table, ()):
            bound = self.bounds.get((table, column))
            if bound is not None and column in df.columns:
                values = df[column].to_numpy(dtype=float, na_value=np.nan)
                found(
                    values > bound,
                    f"{column}: implausibly large, above {bound:.6g} (data.checks.amount)",
                    s.amount.action,
                    column,
                )
        earliest = pd.Timestamp(s.date.earliest)
        for column in df.columns:
            if pd.api.types.is_datetime64_any_dtype(df[column].dtype):
                found(
                    (df[column] < earliest).fillna(False).to_numpy(dtype=bool),
                    f"{column}: before {s.date.earliest.isoformat()} (data.checks.date.earliest)",
                    s.date.action,
                    column,
                )
        if table == "transactions" and "quantity" in df.columns:
            quantity = df["quantity"].to_numpy(dtype=float, na_value=np.nan)
            found(quantity <= 0, "quantity: not positive (data.checks.quantity)", s.quantity.action, "quantity")
        if table == "payments" and {"amount_due", "amount_paid"} <= set(df.columns):
            due = df["amount_due"].to_numpy(dtype=float, na_value=np.nan)
            paid = df["amount_paid"].to_numpy(dtype=float, na_value=np.nan)
            tolerance = s.overpayment.tolerance
            found(
                paid > due * (1 + tolerance) + 1e-9,
                f"amount_paid: more than amount_due + {tolerance:.0%} (data.checks.overpayment)",
                s.overpayment.action,
                "amount_paid",
            )
        if table == "transactions" and s.activity.action != "off" and {"customer_id", "date"} <= set(df.columns):
            mask = busy if busy is not None else busy_rows(df["customer_id"], df["date"], s.activity.max_per_day)
            found(
                np.asarray(mask, dtype=bool),
                f"customer_id: more than {s.activity.max_per_day} transactions on one day (data.checks.activity)",
                s.activity.action,
                "customer_id",
            )
        return out


def busy_rows(ids: pd.Series, dates: pd.Series, max_per_day: int) -> np.ndarray:
    """True for the rows of a customer-day with more than ``max_per_day`` rows (rows with a readable id and
    date; the time of day does not matter)."""
    ids = pd.Series(ids).reset_index(drop=True)
    days = pd.to_datetime(pd.Series(dates).reset_index(drop=True), errors="coerce").dt.normalize()
    readable = (ids.notna() & days.notna()).to_numpy(dtype=bool)
    out = np.zeros(len(ids), dtype=bool)
    if not readable.any():
        return out
    id_codes = pd.factorize(ids[readable], sort=False)[0].astype(np.int64)
    day_codes = pd.factorize(days[readable], sort=False)[0].astype(np.int64)
    keys = id_codes * (int(day_codes.max()) + 1) + day_codes
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    out[readable] = counts[inverse] > max_per_day
    return out


# --- tables rejected in bulk ------------------------------------------------------------------------------

_HINTS = (
    ("not a date in format", "data.tables.{table}.date_format"),
    ("(future date)", "data.tables.{table}.date_format (day and month swapped?) or data.max_date"),
    ("data.checks.date", "data.tables.{table}.date_format (two-digit years?) or data.checks.date.earliest"),
    ("unknown customer", "data.tables.{table}.columns (map customer_id to the column the customers table uses)"),
    ("customer rejected in customers", "the customers table: its rejected rows take their customers' rows along"),
    ("not a number", "data.csv_separator or data.tables.{table}.columns (decimal commas? a text column mapped?)"),
    ("not an integer", "data.tables.{table}.columns (a text or decimal column mapped?)"),
    ("not an id", "data.tables.{table}.columns (map customer_id)"),
    ("implausibly large", "data.checks.amount (amounts in cents? placeholder values?)"),
    ("duplicate", "data.tables.{table}.columns (customer_id must identify one row per customer)"),
    ("missing value", "data.tables.{table}.columns or data.csv_separator"),
    ("cost: negative", "data.tables.{table}.columns (map the cost of the contact, not a margin or a credit)"),
    ("negative", "data.tables.{table}.columns (map the purchase value, not a balance)"),
    ("not positive", "data.checks.quantity"),
    ("not a yes/no value", "data.tables.{table}.columns (a yes/no column holds 1/0, yes/no or true/false)"),
    ("data.checks.overpayment", "data.checks.overpayment"),
    ("data.checks.activity", "data.checks.activity"),
)


def likely_setting(table: str, reason: str) -> str:
    """The setting that most likely fixes a table whose rows are rejected in bulk for ``reason``."""
    for needle, hint in _HINTS:
        if needle in reason:
            return hint.format(table=table)
    return f"data.tables.{table}"


def check_reject_shares(reports: Mapping[str, object], settings: CheckSettings | None = None) -> None:
    """Raise :class:`DataError` (one line) when a table lost more than ``max_reject_share`` of its rows.

    ``reports`` are :class:`crmscore.data.load.TableReport`\\ s (anything with ``table``, ``source``,
    ``rows_in``, ``rows_rejected`` and ``reasons``).
    """
    limit = (settings or CheckSettings()).max_reject_share
    for report in reports.values():
        rows_in, rejected = int(report.rows_in), int(report.rows_rejected)
        if rows_in == 0 or rejected / rows_in <= limit:
            continue
        reason, count = max(report.reasons.items(), key=lambda item: item[1]) if report.reasons else ("?", 0)
        raise DataError(
            f"{report.source}: {rejected / rows_in:.1%} of {rows_in:,} rows rejected, above "
            f"data.checks.max_reject_share ({limit:.0%}); top reason: {reason} ({count:,} rows); "
            f"likely setting: {likely_setting(report.table, reason)}"
        )
