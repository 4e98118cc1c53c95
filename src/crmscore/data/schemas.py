"""The data contract: which columns each table has, and the pandera schemas that check its rows.

Five tables (DESIGN.md): ``customers`` (always required), ``transactions``, ``payments``,
``interactions`` and ``campaigns`` (past retention offers with their control groups, for uplift). Each
column is declared once in :data:`CONTRACT` with its kind (id, date, number, integer, probability, text,
flag), whether the file must have it, whether it may be empty and, for numbers, its lower bound. From
that declaration come the pandera schemas used on load (:func:`table_schema`) and the coercion rules of
the loader. Columns a file has beyond the contract are kept as they are (for
``customers`` they are the customer attributes).

Row-level rules checked by the schemas (a failing row is rejected with the rule as its reason):
missing id, missing or future date, negative amount, and duplicate customer id (the first
occurrence is kept). Due dates are the exception to the future rule: an open invoice is due ahead.

A ``probability`` column (the campaigns' ``propensity``) is a number strictly between 0 and 1, and that
rule is a whole-table one: a value outside stops the run (:func:`crmscore.data.load.check_probabilities`
says why), whatever the number of rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Literal

import pandas as pd
import pandera.pandas as pa

__all__ = [
    "ColumnSpec",
    "CONTRACT",
    "NUMERIC_KINDS",
    "REQUIRED_TABLES",
    "table_schema",
    "contract_columns",
    "known_customers",
]

Kind = Literal["id", "date", "number", "integer", "probability", "text", "flag"]
#: Kinds read as numbers.
NUMERIC_KINDS = frozenset({"number", "integer", "probability"})


@dataclasses.dataclass(frozen=True)
class ColumnSpec:
    """One contract column: its kind and the rules its values follow."""

    name: str
    kind: Kind
    required: bool = True  # the file must have the column
    nullable: bool = False  # a row may leave it empty
    min_value: float | None = None  # numbers: lower bound (inclusive)
    future_allowed: bool = False  # dates: may lie after the maximum date
    description: str = ""


CONTRACT: dict[str, tuple[ColumnSpec, ...]] = {
    "customers": (
        ColumnSpec("customer_id", "id", description="customer identifier, unique"),
        ColumnSpec(
            "signup_date",
            "date",
            required=False,
            description="day the customer was acquired; snapshot data may derive it from a tenure column or go without",
        ),
        ColumnSpec("churned", "flag", required=False, nullable=True, description="subscription churn label"),
        ColumnSpec(
            "monthly_revenue",
            "number",
            required=False,
            nullable=True,
            min_value=0.0,
            description="current recurring revenue per month (subscription data)",
        ),
    ),
    "transactions": (
        ColumnSpec("customer_id", "id", description="customer identifier"),
        ColumnSpec("date", "date", description="purchase day"),
        ColumnSpec("amount", "number", min_value=0.0, description="purchase value; returns are separate rows"),
        ColumnSpec("product", "text", required=False, nullable=True, description="product or category"),
        ColumnSpec(
            "quantity",
            "integer",
            required=False,
            nullable=True,
            description="units bought (data.checks.quantity: above zero)",
        ),
    ),
    "payments": (
        ColumnSpec("customer_id", "id", description="customer identifier"),
        ColumnSpec("due_date", "date", future_allowed=True, description="day the invoice is due"),
        ColumnSpec("amount_due", "number", min_value=0.0, description="invoiced amount"),
        ColumnSpec("paid_date", "date", nullable=True, description="day paid; empty while unpaid"),
        ColumnSpec("amount_paid", "number", nullable=True, min_value=0.0, description="amount paid so far"),
        ColumnSpec("invoice_date", "date", required=False, nullable=True, description="day the invoice was issued"),
    ),
    "interactions": (
        ColumnSpec("customer_id", "id", description="customer identifier"),
        ColumnSpec("date", "date", description="day of the contact"),
        ColumnSpec("channel", "text", description="phone, email, chat, store, …"),
        ColumnSpec("kind", "text", description="inquiry, complaint, visit, …"),
    ),
    "campaigns": (
        ColumnSpec("customer_id", "id", description="customer identifier"),
        ColumnSpec("date", "date", description="day of the contact (or of the control group's assignment)"),
        ColumnSpec("campaign", "text", description="campaign name or id"),
        ColumnSpec("treated", "flag", description="1/yes: offered the retention action; 0/no: control group"),
        ColumnSpec(
            "cost",
            "number",
            nullable=True,
            min_value=0.0,
            description="cost of the contact; 0 or empty for the control group",
        ),
        ColumnSpec(
            "propensity",
            "probability",
            required=False,
            nullable=True,
            description="known probability of being treated (targeted campaigns), strictly between 0 and 1",
        ),
    ),
}

REQUIRED_TABLES = ("customers",)


def contract_columns(table: str, required_only: bool = False) -> list[str]:
    """Names of the contract columns of ``table`` (all, or only those a file must have)."""
    return [c.name for c in CONTRACT[table] if c.required or not required_only]


def known_customers(customers: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """The customers signed up on or before ``as_of`` (all of them when the table has no signup dates)."""
    if "signup_date" not in customers.columns:
        return customers
    return customers.loc[customers["signup_date"] <= as_of]


def _rule_missing(column: str) -> str:
    return f"{column}: missing value"


def table_schema(table: str, max_date: dt.date, present: list[str] | None = None) -> pa.DataFrameSchema:
    """The pandera schema of ``table`` for rows already coerced to the contract's types.

    Each check is named after the rule a user reads in the rejects file (``amount: negative``,
    ``date: after 2026-11-23``). ``present`` lists the contract columns the file has, so optional
    columns it lacks are not checked. Columns outside the contract pass unchecked.
    """
    limit = pd.Timestamp(max_date) + pd.Timedelta(days=1)  # a whole day is allowed, whatever its time
    columns: dict[str, pa.Column] = {}
    for spec in CONTRACT[table]:
        if present is not None and spec.name not in present:
            continue
        checks: list[pa.Check] = []
        if spec.kind in NUMERIC_KINDS and spec.min_value is not None:
            checks.append(
                pa.Check(
                    lambda s, lo=spec.min_value: s.isna() | (s >= lo),
                    name=f"{spec.name}: negative" if spec.min_value == 0 else f"{spec.name}: below {spec.min_value}",
                )
            )
        if spec.kind == "date" and not spec.future_allowed:
            checks.append(
                pa.Check(
                    lambda s: s.isna() | (s < limit), name=f"{spec.name}: after {max_date.isoformat()} (future date)"
                )
            )
        unique = table == "customers" and spec.name == "customer_id"
        columns[spec.name] = pa.Column(
            checks=checks,
            nullable=spec.nullable,
            unique=unique,
            report_duplicates="exclude_first",
            required=False,
            description=spec.description,
        )
    return pa.DataFrameSchema(columns, name=table, strict=False, coerce=False)
