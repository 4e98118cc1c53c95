"""Settings: ``params.yaml`` turned into typed, validated objects.

``params.yaml`` is the one source of configuration. :func:`load_settings` reads it into
:class:`Settings` (pydantic models, one per section). Anything a user can get wrong there (an unknown
key, a wrong type, an impossible value) stops with one line such as
``params.yaml: churn.horizon_days: expected a positive integer, got 'abc'`` raised as
:class:`~crmscore.errors.SettingsError`; the CLI prints it and exits with code 2.

Every section has defaults equal to the shipped ``params.yaml``, so ``Settings()`` works in a notebook
without any file. Time units are in key names (``horizon_days``), never implied. Relative paths are
relative to the working directory, never to this file.
"""

from __future__ import annotations

import codecs
import contextlib
import datetime as dt
import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from crmscore.errors import SettingsError

if TYPE_CHECKING:
    from crmscore.data.simulate import Campaign, Shift, Shock

DEFAULT_PARAMS_PATH = Path("params.yaml")
TABLE_NAMES = ("customers", "transactions", "payments", "interactions", "campaigns")


# --- value types with messages a user can act on -------------------------------------------------


def _positive_int(value: Any) -> int:
    # bool is an int in Python; `horizon_days: true` is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise PydanticCustomError("positive_int", "expected a positive integer, got {got}", {"got": repr(value)})
    return value


def _non_negative_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PydanticCustomError("non_negative_int", "expected an integer ≥ 0, got {got}", {"got": repr(value)})
    return value


def _fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise PydanticCustomError("fraction", "expected a number between 0 and 1, got {got}", {"got": repr(value)})
    return float(value)


def _optional_fraction(value: Any) -> float | None:
    return None if value is None else _fraction(value)


def _open_fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise PydanticCustomError(
            "open_fraction", "expected a number strictly between 0 and 1, got {got}", {"got": repr(value)}
        )
    return float(value)


def _at_least(value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PydanticCustomError(
            "at_least", "expected an integer ≥ {minimum}, got {got}", {"minimum": minimum, "got": repr(value)}
        )
    return value


def _non_negative_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise PydanticCustomError("non_negative", "expected a number ≥ 0, got {got}", {"got": repr(value)})
    return float(value)


def _optional_non_negative_float(value: Any) -> float | None:
    return None if value is None else _non_negative_float(value)


def _date(value: Any) -> dt.date:
    # YAML already turns 2026-10-31 into a date; strings are accepted for CLI overrides.
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise PydanticCustomError("date", "expected a date as YYYY-MM-DD, got {got}", {"got": repr(value)})


def _optional_date(value: Any) -> dt.date | None:
    return None if value is None else _date(value)


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PydanticCustomError("text", "expected a non-empty text, got {got}", {"got": repr(value)})
    return value


def _encoding(value: Any) -> str:
    text = _text(value)
    try:
        codecs.lookup(text)
    except LookupError:
        raise PydanticCustomError(
            "encoding", "unknown text encoding {got} (e.g. utf-8, latin-1, cp1252)", {"got": repr(value)}
        ) from None
    return text


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


PositiveInt = Annotated[int, BeforeValidator(_positive_int)]
NonNegativeInt = Annotated[int, BeforeValidator(_non_negative_int)]
Fraction = Annotated[float, BeforeValidator(_fraction)]
OptionalFraction = Annotated[float | None, BeforeValidator(_optional_fraction)]
Date = Annotated[dt.date, BeforeValidator(_date)]
OptionalDate = Annotated[dt.date | None, BeforeValidator(_optional_date)]
Text = Annotated[str, BeforeValidator(_text)]
OptionalText = Annotated[str | None, BeforeValidator(_optional_text)]


class _Section(BaseModel):
    """Base of every section: unknown keys are errors, values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


# --- sections ------------------------------------------------------------------------------------


class PathSettings(_Section):
    """Where generated content goes; relative paths are relative to the working directory."""

    models_dir: Text = "models"
    reports_dir: Text = "reports"
    simulated_dir: Text = "data/simulated"


class TrackingSettings(_Section):
    """MLflow experiment used by every training run."""

    experiment: Text = "crmscore"


class TenureSettings(_Section):
    """A column that counts how long each customer has been with the company (snapshot data)."""

    column: Text
    unit: Literal["days", "weeks", "months", "years"] = "months"


class TableSettings(_Section):
    """How one input table is found, mapped onto the data contract and typed.

    ``id``, ``tenure``, ``types``, ``exclude`` and ``protected`` apply to the customers table: ``id: row``
    numbers the rows (1, 2, … in file order) when a table has no customer id; ``tenure`` derives the signup
    date of snapshot data from a tenure column; ``types`` declares attribute columns ``categorical`` or
    ``numeric`` (otherwise inferred: numbers stay numbers, text becomes a category); ``exclude`` and
    ``protected`` list attribute columns that never become features (``protected`` ones are sensitive
    attributes such as gender, kept out of the models and so out of every reason).
    """

    file: OptionalText = None
    columns: dict[str, str] = Field(default_factory=dict)
    date_format: OptionalText = None
    id: Literal["column", "row"] = "column"
    tenure: TenureSettings | None = None
    types: dict[str, Literal["categorical", "numeric"]] = Field(default_factory=dict)
    exclude: list[Text] = Field(default_factory=list)
    protected: list[Text] = Field(default_factory=list)

    @model_validator(mode="after")
    def _disjoint(self) -> TableSettings:
        both = sorted(set(self.exclude) & set(self.protected))
        if both:
            raise PydanticCustomError(
                "columns", "a column is either excluded or protected, not both: {got}", {"got": ", ".join(both)}
            )
        return self


Action = Literal["reject", "flag", "off"]


def _number_above_zero(value: Any, allowed: str) -> float:
    if isinstance(value, str):  # YAML reads 1e12 (no dot, no sign) as text
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise PydanticCustomError("positive", "expected {allowed}, got {got}", {"allowed": allowed, "got": repr(value)})
    return float(value)


def _positive_float(value: Any) -> float:
    return _number_above_zero(value, "a number > 0")


def _optional_positive_float(value: Any) -> float | None:
    return None if value is None else _number_above_zero(value, "a number > 0 or null")


PositiveFloat = Annotated[float, BeforeValidator(_positive_float)]
OptionalPositiveFloat = Annotated[float | None, BeforeValidator(_optional_positive_float)]


class AmountCheck(_Section):
    """Money values (amount, amount_due, amount_paid, monthly_revenue, campaign cost) beyond a plausible bound.

    A value is implausible above ``max`` (an absolute cap) or above ``multiple`` × the column's 99.9th
    percentile (rounded up to a power of two, never counting the column's largest value; only for columns
    with at least 100 positive values). Either bound may be null to switch it off.
    """

    action: Action = "reject"
    max: OptionalPositiveFloat = 1.0e12
    multiple: OptionalPositiveFloat = 100.0


class DateCheck(_Section):
    """Dates before ``earliest`` (placeholders such as 1900-01-01 or 1970-01-01, two-digit years)."""

    action: Action = "reject"
    earliest: Date = dt.date(1970, 1, 2)


class QuantityCheck(_Section):
    """Transaction quantities of zero or below."""

    action: Action = "reject"


class OverpaymentCheck(_Section):
    """Payments larger than their invoice by more than ``tolerance`` (a share of the invoice)."""

    action: Action = "flag"
    tolerance: Annotated[float, BeforeValidator(_non_negative_float)] = 0.01


class ActivityCheck(_Section):
    """Customers with more than ``max_per_day`` transaction rows on one day (test accounts, duplicated loads)."""

    action: Action = "flag"
    max_per_day: PositiveInt = 50


class CheckSettings(_Section):
    """Plausibility checks of values that parse but cannot be right (``data.checks``).

    Each check rejects the row (``reject``, with its reason), flags it (``flag``: kept, counted as a warning
    in the validation summary) or is ``off``. A table with more than ``max_reject_share`` of its rows rejected
    stops the run: a wrong date format, separator or column mapping rejects rows in bulk.
    """

    max_reject_share: Fraction = 0.05
    amount: AmountCheck = Field(default_factory=AmountCheck)
    date: DateCheck = Field(default_factory=DateCheck)
    quantity: QuantityCheck = Field(default_factory=QuantityCheck)
    overpayment: OverpaymentCheck = Field(default_factory=OverpaymentCheck)
    activity: ActivityCheck = Field(default_factory=ActivityCheck)


_SQL_NAME = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?"


def _database_url(value: Any) -> str | None:
    """A database URL without a password (the password comes from an environment variable, never a file)."""
    if value is None:
        return None
    text = _text(value).strip()
    scheme, sep, rest = text.partition("://")
    if not sep or not scheme or scheme.split("+")[0] not in {"duckdb", "postgresql", "postgres"}:
        raise PydanticCustomError(
            "url",
            "expected a database URL such as duckdb:///warehouse.duckdb or postgresql://user@host:5432/db, got {got}",
            {"got": repr(text.split("@")[-1] if sep else text)},
        )
    credentials = rest.split("/", 1)[0].rpartition("@")[0]
    if ":" in credentials:
        raise PydanticCustomError(
            "password_in_url",
            "the URL holds a password; remove it and put it in the environment variable named by password_env",
            {},
        )
    return text


OptionalDatabaseUrl = Annotated[str | None, BeforeValidator(_database_url)]


class SqlSettings(_Section):
    """A database as the input (``data.source: sql``): its URL, the environment variable holding its password
    (never the password itself), how long to wait for the server, and per contract table a table name
    (``sales.orders``) or a query (any text with a space, e.g. ``SELECT … FROM …``); a table not listed is
    read from the table of its contract name when the database has one (customers must exist)."""

    url: OptionalDatabaseUrl = None
    password_env: Text = "CRMSCORE_DB_PASSWORD"
    connect_timeout_seconds: PositiveInt = 10
    tables: dict[str, Text] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_tables(self) -> SqlSettings:
        for table, source in self.tables.items():
            if table not in TABLE_NAMES:
                raise PydanticCustomError(
                    "unknown_table",
                    "tables: unknown table {got} (tables: {allowed})",
                    {"got": repr(table), "allowed": ", ".join(TABLE_NAMES)},
                )
            if not any(c.isspace() for c in source.strip()) and not re.fullmatch(_SQL_NAME, source.strip()):
                raise PydanticCustomError(
                    "table_name",
                    "tables.{table}: {got} is neither a table name (name or schema.name) nor a query",
                    {"table": table, "got": repr(source)},
                )
        return self


class DataSettings(_Section):
    """Input tables, their column mapping and the validation rules that depend on settings."""

    source: Literal["files", "sql"] = "files"
    input_dir: OptionalText = None
    sql: SqlSettings = Field(default_factory=SqlSettings)
    format: Literal["auto", "csv", "parquet"] = "auto"
    max_date: OptionalDate = None
    snapshot_date: OptionalDate = None
    csv_separator: Text = ","
    encoding: Annotated[str, BeforeValidator(_encoding)] = "utf-8"
    checks: CheckSettings = Field(default_factory=CheckSettings)
    tables: dict[str, TableSettings] = Field(default_factory=lambda: {t: TableSettings() for t in TABLE_NAMES})

    @model_validator(mode="after")
    def _known_tables(self) -> DataSettings:
        unknown = sorted(set(self.tables) - set(TABLE_NAMES))
        if unknown:
            raise PydanticCustomError(
                "unknown_table",
                "unknown table {got} (tables: {allowed})",
                {"got": repr(unknown[0]), "allowed": ", ".join(TABLE_NAMES)},
            )
        for name in TABLE_NAMES:
            self.tables.setdefault(name, TableSettings())
        if self.source == "sql" and self.sql.url is None:
            raise PydanticCustomError("sql_url", "source is sql but sql.url is not set", {})
        for name in TABLE_NAMES[1:]:
            table = self.tables[name]
            if table.id != "column" or table.tenure or table.types or table.exclude or table.protected:
                raise PydanticCustomError(
                    "customers_only",
                    "tables.{table}: id, tenure, types, exclude and protected apply to the customers table only",
                    {"table": name},
                )
        return self

    def not_features(self) -> list[str]:
        """Customer columns that never become features: the excluded, the protected, and the tenure column
        (it becomes ``signup_date`` and so ``tenure_days``)."""
        customers = self.tables["customers"]
        tenure = [customers.tenure.column] if customers.tenure else []
        return [*customers.exclude, *customers.protected, *tenure]


class ShockSettings(_Section):
    """A drift scenario: from ``date`` on, the weekly dropout probability of the customers of ``region`` (or
    of a random ``share`` of all customers) × ``hazard_multiplier``; off while ``date`` is null. The rules
    are :class:`crmscore.data.simulate.Shock`'s."""

    date: OptionalDate = None
    region: OptionalText = None
    share: OptionalFraction = None
    hazard_multiplier: PositiveFloat = 1.0

    def to_shock(self) -> Shock | None:
        """The simulator's :class:`~crmscore.data.simulate.Shock`, or None while off (``ValueError`` if invalid)."""
        from crmscore.data.simulate import Shock  # not at the top: crmscore.data imports this module

        if self.date is None:
            return None
        return Shock(date=self.date, hazard_multiplier=self.hazard_multiplier, region=self.region, share=self.share)


class ShiftSettings(_Section):
    """A slow covariate shift: customers acquired after ``start`` take month-to-month contracts more (or less)
    often, their share moving linearly to ``month_to_month_share`` by ``end_date``; off while ``start`` is null."""

    start: OptionalDate = None
    month_to_month_share: OptionalFraction = None

    def to_shift(self) -> Shift | None:
        """The simulator's :class:`~crmscore.data.simulate.Shift`, or None while off (``ValueError`` if invalid)."""
        from crmscore.data.simulate import Shift

        if self.start is None:
            return None
        if self.month_to_month_share is None:
            raise ValueError("shift.month_to_month_share is needed with shift.start")
        return Shift(start=self.start, month_to_month_share=self.month_to_month_share)


class CampaignSettings(_Section):
    """A past retention campaign of the simulated data: on ``date`` a random ``share`` of the customers known
    then (or, ``targeted``, a share rising with their dropout risk) is offered at ``cost`` each, the rest held
    back as controls. The rules are :class:`crmscore.data.simulate.Campaign`'s."""

    date: Date
    name: Text
    share: OptionalFraction = 0.3
    targeted: bool = False
    cost: Annotated[float, BeforeValidator(_non_negative_float)] = 5.0

    @model_validator(mode="after")
    def _campaign(self) -> CampaignSettings:
        if self.targeted:
            if "share" in self.model_fields_set and self.share is not None:
                raise PydanticCustomError(
                    "campaign", "a targeted campaign takes no share (its propensities decide who is offered)", {}
                )
            self.__dict__["share"] = None  # so that the settings written out read back the same
        elif self.share is None:
            raise PydanticCustomError(
                "campaign", "a randomized campaign needs its share, in (0, 1); or set targeted: true", {}
            )
        try:
            self.to_campaign()
        except ValueError as exc:
            raise PydanticCustomError("campaign", "{problem}", {"problem": str(exc)}) from None
        return self

    def to_campaign(self) -> Campaign:
        """The simulator's :class:`~crmscore.data.simulate.Campaign` (``ValueError`` if invalid)."""
        from crmscore.data.simulate import Campaign

        return Campaign(
            date=self.date,
            name=self.name,
            share=None if self.targeted else self.share,
            targeted=self.targeted,
            cost=self.cost,
        )


def _default_campaigns() -> list[CampaignSettings]:
    return [
        CampaignSettings(date=dt.date(2025, 6, 2), name="spring-offer", share=0.4, cost=5.0),
        CampaignSettings(date=dt.date(2025, 10, 1), name="autumn-offer", share=0.4, cost=5.0),
        CampaignSettings(date=dt.date(2026, 2, 2), name="winter-targeted", targeted=True, cost=5.0),
    ]


class SimulateSettings(_Section):
    """The embedded synthetic CRM data: size, seed, calendar, past retention campaigns and an optional drift
    scenario."""

    customers: PositiveInt = 20_000
    seed: NonNegativeInt = 42
    start_date: Date = dt.date(2023, 11, 1)
    end_date: Date = dt.date(2026, 10, 31)
    truth_as_of: Date = dt.date(2026, 7, 31)
    format: Literal["parquet", "csv"] = "parquet"
    shock: ShockSettings = Field(default_factory=ShockSettings)
    shift: ShiftSettings = Field(default_factory=ShiftSettings)
    campaigns: list[CampaignSettings] = Field(default_factory=_default_campaigns)

    @model_validator(mode="after")
    def _calendar(self) -> SimulateSettings:
        if not self.start_date < self.truth_as_of <= self.end_date:
            raise PydanticCustomError(
                "calendar",
                "expected start_date < truth_as_of <= end_date, got {got}",
                {"got": f"{self.start_date} / {self.truth_as_of} / {self.end_date}"},
            )
        if (self.end_date - self.start_date).days < 365:
            raise PydanticCustomError(
                "calendar",
                "expected at least one year between start_date and end_date, got {got} days",
                {"got": (self.end_date - self.start_date).days},
            )
        from crmscore.data.simulate import check_campaigns, check_scenario

        try:
            check_scenario(self.shock.to_shock(), self.shift.to_shift(), self.start_date, self.end_date)
            check_campaigns(self.to_campaigns(), self.start_date, self.end_date)
        except ValueError as exc:
            raise PydanticCustomError("scenario", "{problem}", {"problem": str(exc)}) from None
        return self

    def to_campaigns(self) -> list[Campaign]:
        """The simulator's campaigns (:class:`~crmscore.data.simulate.Campaign`), in the order given."""
        return [campaign.to_campaign() for campaign in self.campaigns]


class FeatureSettings(_Section):
    """Point-in-time customer features."""

    windows_days: list[PositiveInt] = Field(default_factory=lambda: [30, 90, 365])
    trend_window_days: PositiveInt = 90
    season: bool = True
    exclude: list[Text] = Field(default_factory=list)

    @model_validator(mode="after")
    def _sorted_windows(self) -> FeatureSettings:
        if not self.windows_days:
            raise PydanticCustomError("windows", "expected at least one window, got {got}", {"got": "[]"})
        self.__dict__["windows_days"] = sorted(set(self.windows_days))
        return self


class TuningSettings(_Section):
    """Optuna search of the LightGBM hyper-parameters."""

    trials: PositiveInt = 30
    timeout_seconds: PositiveInt = 120
    early_stopping_rounds: PositiveInt = 50
    max_trees: PositiveInt = 2000
    learning_rate: Annotated[float, BeforeValidator(_fraction)] = 0.05


class EmpcSettings(_Section):
    """Retention campaign behind the EMPC metric (Verbraken et al. 2013): amounts in currency units."""

    clv: PositiveFloat = 200.0
    incentive: Annotated[float, BeforeValidator(_non_negative_float)] = 10.0
    contact_cost: Annotated[float, BeforeValidator(_non_negative_float)] = 1.0
    alpha: PositiveFloat = 6.0
    beta: PositiveFloat = 14.0


def _sample_size(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise PydanticCustomError(
            "sample_size",
            "expected a positive number of customers, or null for every customer, got {got}",
            {"got": repr(value)},
        )
    return value


#: A number of customers to train on, drawn with the model's seed (``crmscore.data.sample``); None = all.
SampleSize = Annotated[int | None, BeforeValidator(_sample_size)]


def _sample_above_minimum(section: ChurnSettings | ClvSettings) -> None:
    size = section.sample_customers
    if size is not None and size < section.min_customers:
        raise PydanticCustomError(
            "sample_size",
            "sample_customers ({size}) is below min_customers ({minimum}): training could never start",
            {"size": size, "minimum": section.min_customers},
        )


class ChurnSettings(_Section):
    """Churn label, temporal validation, model, calibration, promotion and the EMPC campaign.

    ``sample_customers`` trains (and tests) on that many customers drawn with ``seed`` before any
    cutoff is stacked or feature built (see :mod:`crmscore.data.sample`); null = every customer.
    """

    horizon_days: PositiveInt = 90
    label: Literal["auto", "transaction", "subscription"] = "auto"
    train_cutoffs: PositiveInt = 6
    cutoff_step_days: PositiveInt = 60
    test_as_of: OptionalDate = None
    valid_share: Fraction = 0.2
    test_share: Fraction = 0.2
    cv_folds: PositiveInt = 5
    cv_repeats: NonNegativeInt = 5
    seed: NonNegativeInt = 42
    calibration: Literal["auto", "isotonic", "sigmoid", "none"] = "auto"
    class_weight: Literal["balanced", "none"] = "none"
    tuning: TuningSettings = Field(default_factory=TuningSettings)
    promotion_metric: Literal["roc_auc", "pr_auc", "log_loss", "brier"] = "roc_auc"
    promotion_margin: Annotated[float, BeforeValidator(_non_negative_float)] = 0.002
    min_customers: PositiveInt = 200
    sample_customers: SampleSize = 100_000
    empc: EmpcSettings = Field(default_factory=EmpcSettings)

    @model_validator(mode="after")
    def _sample(self) -> ChurnSettings:
        _sample_above_minimum(self)
        return self


class ClvTuningSettings(TuningSettings):
    """Optuna search of the ML CLV model (a smaller default budget than churn)."""

    trials: PositiveInt = 20
    timeout_seconds: PositiveInt = 120


class ClvSettings(_Section):
    """Customer lifetime value: horizon, BTYD and ML models, comparison and promotion.

    ``sample_customers``: as in :class:`ChurnSettings`, for the ML and BTYD models of transaction data.
    """

    horizon_days: PositiveInt = 365
    time_unit: Literal["D", "W"] = "W"
    discount_rate: Fraction = 0.10
    margin: Fraction = 1.0
    penalizer: Annotated[float, BeforeValidator(_non_negative_float)] = 0.0
    model: Literal["auto", "ml", "btyd"] = "auto"
    objective: Literal["tweedie", "two_part"] = "tweedie"
    selection_metric: Literal["gini", "spearman", "mae", "decile_mape", "top_decile_capture"] = "gini"
    train_cutoffs: PositiveInt = 4
    cutoff_step_days: PositiveInt = 60
    test_as_of: OptionalDate = None
    valid_share: Fraction = 0.2
    seed: NonNegativeInt = 42
    tuning: ClvTuningSettings = Field(default_factory=ClvTuningSettings)
    promotion_margin: Annotated[float, BeforeValidator(_non_negative_float)] = 0.002
    min_customers: PositiveInt = 200
    sample_customers: SampleSize = 100_000
    subscription_churn_horizon_days: PositiveInt = 30

    @model_validator(mode="after")
    def _sample(self) -> ClvSettings:
        _sample_above_minimum(self)
        return self


class SegmentSettings(_Section):
    """Decision-tree segments: target, interpretable features and tree size."""

    target: Literal["clv", "churn", "tier"] = "clv"
    features: list[Text] = Field(
        default_factory=lambda: [
            "tenure_days",
            "recency_days",
            "frequency_365d",
            "monetary_365d",
            "product_breadth",
            "collection_rate",
            "complaints_365d",
            "contacts_365d",
        ]
    )
    max_depth: PositiveInt = 3
    min_leaf_share: Fraction = 0.05
    seed: NonNegativeInt = 42


_TIERS = ("A", "B", "C", "D", "E")
_BANDS = ("low", "medium", "high")


class ScorecardSettings(_Section):
    """Weighted scorecard: which feature measures each metric, its weight, and the tier cut-offs."""

    metrics: dict[str, Text] = Field(
        default_factory=lambda: {
            "sales": "monetary_365d",
            "payment_collection": "collection_rate",
            "repurchase_frequency": "frequency_365d",
            "product_breadth": "product_breadth_365d",
            "interactions": "contacts_365d",
        }
    )
    weights: dict[str, Fraction] = Field(
        default_factory=lambda: {
            "sales": 0.50,
            "payment_collection": 0.20,
            "repurchase_frequency": 0.15,
            "product_breadth": 0.10,
            "interactions": 0.05,
        }
    )
    cutoffs: dict[str, Annotated[float, BeforeValidator(_non_negative_float)]] = Field(
        default_factory=lambda: {"A": 90.0, "B": 80.0, "C": 70.0, "D": 60.0}
    )

    @model_validator(mode="after")
    def _consistent(self) -> ScorecardSettings:
        if set(self.weights) != set(self.metrics):
            raise PydanticCustomError(
                "scorecard",
                "weights and metrics must name the same metrics, got {got}",
                {"got": f"{sorted(self.weights)} vs {sorted(self.metrics)}"},
            )
        total = sum(self.weights.values())
        if abs(total - 1) > 1e-6:
            raise PydanticCustomError("scorecard", "weights must add up to 1, got {got}", {"got": round(total, 6)})
        if set(self.cutoffs) != set(_TIERS[:-1]):
            raise PydanticCustomError(
                "scorecard", "cutoffs must give A, B, C and D (E is the rest), got {got}", {"got": sorted(self.cutoffs)}
            )
        values = [self.cutoffs[t] for t in _TIERS[:-1]]
        if any(a <= b for a, b in zip(values[:-1], values[1:], strict=True)) or values[0] > 100:
            raise PydanticCustomError(
                "scorecard", "cutoffs must fall strictly from A to D within 0-100, got {got}", {"got": values}
            )
        return self


class TierSettings(_Section):
    """Value tiers A-E, churn risk bands, lifecycle stages and the action matrix."""

    method: Literal["auto", "scorecard", "pyramid"] = "auto"
    scorecard: ScorecardSettings = Field(default_factory=ScorecardSettings)
    pyramid_shares: dict[str, Fraction] = Field(default_factory=lambda: {"A": 0.01, "B": 0.04, "C": 0.15, "D": 0.30})
    risk_thresholds: dict[str, Fraction] = Field(default_factory=lambda: {"medium": 0.2, "high": 0.5})
    new_days: PositiveInt = 90
    active_days: PositiveInt = 90
    dormant_days: PositiveInt = 365
    actions: dict[str, dict[str, Text]] = Field(
        default_factory=lambda: {
            "A": {
                "low": "grow: loyalty benefits",
                "medium": "personal check-in",
                "high": "personal retention plan now",
            },
            "B": {"low": "grow: cross-sell", "medium": "personal check-in", "high": "personal retention plan now"},
            "C": {
                "low": "cross-sell campaign",
                "medium": "targeted retention offer",
                "high": "targeted retention offer",
            },
            "D": {"low": "automated nurture", "medium": "automated low-cost offer", "high": "automated low-cost offer"},
            "E": {"low": "automated nurture", "medium": "automated low-cost offer", "high": "let go: no spend"},
        }
    )

    @model_validator(mode="after")
    def _consistent(self) -> TierSettings:
        if set(self.pyramid_shares) != set(_TIERS[:-1]) or sum(self.pyramid_shares.values()) >= 1:
            raise PydanticCustomError(
                "pyramid",
                "pyramid_shares must give the customer shares of A, B, C and D, adding up to less than 1, got {got}",
                {"got": dict(self.pyramid_shares)},
            )
        if set(self.risk_thresholds) != {"medium", "high"} or not (
            0 < self.risk_thresholds["medium"] < self.risk_thresholds["high"] < 1
        ):
            raise PydanticCustomError(
                "risk", "risk_thresholds must be 0 < medium < high < 1, got {got}", {"got": dict(self.risk_thresholds)}
            )
        if not self.active_days <= self.dormant_days:
            raise PydanticCustomError(
                "stages",
                "expected active_days <= dormant_days, got {got}",
                {"got": f"{self.active_days} / {self.dormant_days}"},
            )
        missing = [f"{t}.{b}" for t in _TIERS for b in _BANDS if b not in self.actions.get(t, {})]
        if missing:
            raise PydanticCustomError(
                "actions", "the action matrix needs every tier × risk band, missing {got}", {"got": ", ".join(missing)}
            )
        return self


class SinkSettings(_Section):
    """Where ``crmscore score`` also writes its scores: a database URL (null: files only), the scores table
    (its reasons go to ``<table>_reasons``, each run to ``crmscore_runs``) and the password's environment
    variable."""

    url: OptionalDatabaseUrl = None
    table: Text = "crmscore_scores"
    password_env: Text = "CRMSCORE_DB_PASSWORD"

    @field_validator("table")
    @classmethod
    def _table_name(cls, value: str) -> str:
        if not re.fullmatch(_SQL_NAME, value):
            raise PydanticCustomError(
                "table_name", "expected a table name (name or schema.name), got {got}", {"got": repr(value)}
            )
        return value


class IntervalSettings(_Section):
    """How sure the scores are (:mod:`crmscore.intervals`): CLV and churn intervals, tier confidence.

    ``level`` is the coverage the CLV and churn intervals aim at (0.8: the realized value lies inside for
    80 % of customers); ``draws`` the simulated futures per customer behind the BTYD intervals and the
    tier confidence; ``calibration_bootstraps`` the resampled churn calibrators (0: no churn intervals);
    ``churn_spread_folds`` the boosters cross-fitted beside the churn model whose spread joins its interval
    (0: the calibrators' spread only);
    ``conformal_bins`` the predicted-value bins of the ML CLV model's split-conformal intervals;
    ``borderline_below`` the tier confidence under which a customer is flagged ``borderline``;
    ``enabled: false`` leaves the interval and confidence columns null (and scoring as fast as before).
    """

    enabled: bool = True
    level: Annotated[float, BeforeValidator(_open_fraction)] = 0.8
    draws: Annotated[int, BeforeValidator(lambda v: _at_least(v, 20))] = 200
    calibration_bootstraps: NonNegativeInt = 50
    churn_spread_folds: NonNegativeInt = 3
    conformal_bins: PositiveInt = 10
    borderline_below: Fraction = 0.6
    seed: NonNegativeInt = 42


class ScoringSettings(_Section):
    """Batch scoring: chunking, worker processes, reasons, where the scores go, and the checks of the scored features.

    ``workers`` processes score the chunks side by side, the calling one included (null: one per core
    the process may use; 1: no worker process, everything in the calling process); the results are
    identical for any number.

    The feature checks (:mod:`crmscore.feature_checks`) report every category unseen in training, a
    share of numbers outside the training range above ``out_of_range_warn_share`` and a missing share
    above training's by more than ``missing_warn_increase``; ``unseen_error_share`` (off when null)
    stops the scoring when a feature's unseen share exceeds it.
    """

    chunk_size: PositiveInt = 50_000
    workers: Annotated[int | None, BeforeValidator(lambda v: None if v is None else _positive_int(v))] = None
    top_reasons: PositiveInt = 3
    out_dir: Text = "reports/scores"
    unseen_error_share: OptionalFraction = None
    out_of_range_warn_share: Fraction = 0.05
    missing_warn_increase: Fraction = 0.10
    sink: SinkSettings = Field(default_factory=SinkSettings)


class MonitoringSettings(_Section):
    """The track record of past scorings (``crmscore monitor``): intervals and the thresholds of its flags."""

    out_dir: Text = "reports/monitoring"
    bootstrap_samples: NonNegativeInt = 200
    seed: NonNegativeInt = 42
    calibration_tolerance: Fraction = 0.03
    psi_threshold: Annotated[float, BeforeValidator(_non_negative_float)] = 0.2


class UpliftTuningSettings(TuningSettings):
    """Optuna search of each uplift learner's LightGBM parameters (every trial fits a whole learner)."""

    trials: PositiveInt = 8
    timeout_seconds: PositiveInt = 60
    early_stopping_rounds: PositiveInt = 30
    max_trees: PositiveInt = 500


class UpliftSettings(_Section):
    """The uplift model of past retention campaigns (``crmscore train uplift``) and its promotion."""

    horizon_days: Annotated[int | None, BeforeValidator(lambda v: None if v is None else _positive_int(v))] = None
    active_days: PositiveInt = 30
    learners: list[Literal["T", "X", "DR"]] = Field(default_factory=lambda: ["T", "X", "DR"])
    test_share: Fraction = 0.3
    min_per_arm: PositiveInt = 50
    cross_fit_folds: PositiveInt = 3
    seed: NonNegativeInt = 42
    tuning: UpliftTuningSettings = Field(default_factory=UpliftTuningSettings)
    promotion_metric: Literal["qini", "auuc"] = "qini"
    promotion_margin: Annotated[float, BeforeValidator(_non_negative_float)] = 0.005

    @field_validator("learners")
    @classmethod
    def _some_learner(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one learner: T, X or DR")
        return list(dict.fromkeys(value))


class PlanSettings(_Section):
    """The retention plan (``crmscore plan``): whom to contact within a budget, by expected incremental value."""

    budget: Annotated[float | None, BeforeValidator(_optional_non_negative_float)] = None
    contact_cost: Annotated[float | None, BeforeValidator(_optional_non_negative_float)] = None
    replace_actions: bool = False
    out_dir: Text = "reports/plans"
    bootstrap_samples: NonNegativeInt = 200
    seed: NonNegativeInt = 42


class Settings(_Section):
    """All of ``params.yaml``."""

    paths: PathSettings = Field(default_factory=PathSettings)
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)
    data: DataSettings = Field(default_factory=DataSettings)
    simulate: SimulateSettings = Field(default_factory=SimulateSettings)
    features: FeatureSettings = Field(default_factory=FeatureSettings)
    churn: ChurnSettings = Field(default_factory=ChurnSettings)
    clv: ClvSettings = Field(default_factory=ClvSettings)
    segments: SegmentSettings = Field(default_factory=SegmentSettings)
    tiers: TierSettings = Field(default_factory=TierSettings)
    scoring: ScoringSettings = Field(default_factory=ScoringSettings)
    intervals: IntervalSettings = Field(default_factory=IntervalSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    uplift: UpliftSettings = Field(default_factory=UpliftSettings)
    plan: PlanSettings = Field(default_factory=PlanSettings)

    @model_validator(mode="after")
    def _features_exclude(self) -> Settings:
        # Columns the data section keeps out of the models are never features, whoever builds them.
        wanted = [*self.features.exclude, *self.data.not_features()]
        self.features.__dict__["exclude"] = list(dict.fromkeys(wanted))
        return self

    def fingerprint(self) -> str:
        """A short hash of every setting that can change a result, for manifests and run tags.

        ``scoring.workers`` is left out: how the work is spread over processes never changes it.
        """
        settings = self.model_dump(mode="json")
        settings["scoring"].pop("workers", None)
        payload = json.dumps(settings, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


# --- loading -------------------------------------------------------------------------------------


def _location(loc: tuple[Any, ...]) -> str:
    # pydantic puts the validator name into the location for Annotated/union types; drop it.
    parts = [str(p) for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))]
    return ".".join(parts)


def _describe(error: dict[str, Any], source: str) -> str:
    """One line for one pydantic error: ``<file>: <key path>: <what was expected, what was found>``."""
    where = _location(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        message = "unknown key"
    elif kind == "missing":
        message = "required key is missing"
    elif kind in {"literal_error", "enum"}:
        message = f"expected one of {error['ctx'].get('expected', '')}, got {error['input']!r}"
    elif kind in {"dict_type", "model_type", "model_attributes_type"}:
        message = f"expected a mapping of keys, got {error['input']!r}"
    elif kind == "string_type":
        message = f"expected a text, got {error['input']!r}"
    else:
        message = error["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
    return f"{source}: {where}: {message}" if where else f"{source}: {message}"


def settings_from_dict(raw: dict[str, Any] | None, source: str = "params.yaml") -> Settings:
    """Validate a parameter mapping (as read from YAML) into :class:`Settings`.

    Raises :class:`SettingsError` with one line naming ``source``, the key path and the rule for the
    first problem found (pydantic reports them in key order, so the first is the topmost).
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SettingsError(f"{source}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise SettingsError(_describe(exc.errors()[0], source)) from None


def load_settings(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Read ``params.yaml`` (or ``path``) into validated :class:`Settings`.

    ``overrides`` is a nested mapping merged over the file (how CLI options such as ``--seed``
    reach the settings). A missing or unparseable file, an unknown key, a wrong type or an impossible
    value raises :class:`SettingsError` with a one-line message.
    """
    path = Path(path) if path is not None else DEFAULT_PARAMS_PATH
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(f"{source}: file not found (pass --params PATH)") from None
    except OSError as exc:
        raise SettingsError(f"{source}: cannot read file: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SettingsError(f"{source}: {where}not valid YAML: {problem}") from None
    if overrides:
        raw = _merge(raw or {}, overrides)
    return settings_from_dict(raw, source)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
