"""The bad-input corpus: inputs as a new user brings them, each with what ``crmscore`` must answer.

Every case is generated here from a small simulated data set (nothing is hand-kept): a folder with the
input tables (``in/``) and a ``params.yaml``, and the :class:`Case` that says which command runs on it,
the exit code, the one line it must print and, for row-level problems, which reasons the rejected or
flagged rows carry. ``tests/test_corpus.py`` runs every case through the CLI. To look at the cases::

    python tests/corpus/generate.py /tmp/corpus    # writes /tmp/corpus/<case>/{in/,params.yaml}

Areas: ``contract`` (what does not parse), ``encoding`` (encodings and separators), ``plausibility``
(what parses but cannot be right), ``scoring`` (unseen values and drift, locks; these need trained models).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

MAX_DATE = dt.date(2026, 11, 23)


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad input and what the CLI must answer."""

    name: str
    area: str
    build: Callable[[Path, dict[str, pd.DataFrame]], dict | None]  # writes in/, returns params overrides
    exit_code: int = 0
    #: A regular expression the error line (exit 2) or an output line (exit 0) must match.
    message: str | None = None
    command: str = "validate"
    #: Reasons (substrings) that rejected rows must carry, per table; row counts must add up.
    rejected: dict[str, str] = dataclasses.field(default_factory=dict)
    #: Reasons (substrings) of kept rows flagged as warnings, per table.
    flagged: dict[str, str] = dataclasses.field(default_factory=dict)
    #: Further arguments of the command (e.g. the as-of date of a scoring).
    args: tuple[str, ...] = ()
    #: The output folder is locked by another run while the command runs.
    locked: bool = False


def base_tables(customers: int = 300, seed: int = 5) -> dict[str, pd.DataFrame]:
    """The simulated tables every case starts from (without the simulator's ground truth)."""
    from crmscore.data.simulate import simulate_crm

    return dict(simulate_crm(customers=customers, seed=seed).tables())


def _csv(folder: Path, tables: dict[str, pd.DataFrame], **options) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.to_csv(folder / f"{name}.csv", index=False, date_format="%Y-%m-%d", **options)


def _text(folder: Path, name: str, text: str, encoding: str = "utf-8") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(text.encode(encoding))


def _with(tables, **changed) -> dict[str, pd.DataFrame]:
    out = {k: v.copy() for k, v in tables.items()}
    out.update(changed)
    return out


def _edit(table: str, edit: Callable[[pd.DataFrame], None], params: dict | None = None, **csv):
    """A case builder: the base tables with ``edit`` applied to a copy of ``table``, written as CSV."""

    def build(folder: Path, tables: dict[str, pd.DataFrame]) -> dict | None:
        frame = tables[table].copy()
        edit(frame)
        _csv(folder, _with(tables, **{table: frame}), **csv)
        return params

    return build


def _set(column: str, rows, value) -> Callable[[pd.DataFrame], None]:
    def edit(frame: pd.DataFrame) -> None:
        frame[column] = frame[column].astype(object)
        frame.loc[frame.index[rows], column] = value

    return edit


# --- contract: what does not parse -----------------------------------------------------------------------


def _empty_file(folder, tables):
    _csv(folder, {"customers": tables["customers"]})
    (folder / "transactions.csv").write_bytes(b"")


def _header_only(folder, tables):
    _csv(folder, {"customers": tables["customers"], "transactions": tables["transactions"].iloc[:0]})


def _no_customers(folder, tables):
    _csv(folder, {"transactions": tables["transactions"]})


def _drop(table: str, column: str):
    def build(folder, tables):
        _csv(folder, _with(tables, **{table: tables[table].drop(columns=column)}))

    return build


def _renamed(folder, tables):
    _csv(folder, _with(tables, customers=tables["customers"].rename(columns={"customer_id": "CustID"})))
    return {"data": {"tables": {"customers": {"columns": {"customer_id": "CustomerNo"}}}}}


def _mapped_unknown(folder, tables):
    _csv(folder, tables)
    return {"data": {"tables": {"transactions": {"columns": {"price": "amount"}}}}}


def _not_parquet(folder, tables):
    _csv(folder, {"customers": tables["customers"]})
    (folder / "transactions.parquet").write_bytes(b"PAR1 this is not a parquet file")


def _unknown_type(folder, tables):
    _csv(folder, tables)
    (folder / "customers.csv").rename(folder / "customers.xlsx")
    return {"data": {"tables": {"customers": {"file": "customers.xlsx"}}}}


def _unknown_params_key(folder, tables):
    _csv(folder, tables)
    return {"data": {"checkz": {}}}


def _bad_share(folder, tables):
    _csv(folder, tables)
    return {"data": {"checks": {"max_reject_share": 2}}}


def _bad_action(folder, tables):
    _csv(folder, tables)
    return {"data": {"checks": {"amount": {"action": "drop"}}}}


def _duplicates(frame):
    frame.loc[frame.index[1:4], "customer_id"] = frame["customer_id"].iloc[0]


def _unknown_customers(frame):
    frame.loc[frame.index[:5], "customer_id"] = 99_999_999


def _unknown_attribute_type(folder, tables):
    customers = tables["customers"].assign(score="lots")
    _csv(folder, _with(tables, customers=customers))
    return {"data": {"tables": {"customers": {"types": {"score": "numeric"}}}}}


CONTRACT_CASES = [
    Case("empty_file", "contract", _empty_file, 2, r"transactions\.csv: cannot be read as csv"),
    Case("header_only", "contract", _header_only, 0, None),
    Case("no_customers_table", "contract", _no_customers, 2, r"table 'customers' not found"),
    Case(
        "missing_amount_column",
        "contract",
        _drop("transactions", "amount"),
        2,
        r"column 'amount': required column is missing",
    ),
    Case(
        "missing_id_column",
        "contract",
        _renamed,
        2,
        r"column 'CustomerNo' \(mapped to customer_id\): required column is missing",
    ),
    Case(
        "mapping_names_no_contract_column",
        "contract",
        _mapped_unknown,
        2,
        r"'price' is not a contract column of transactions",
    ),
    Case("corrupt_parquet", "contract", _not_parquet, 2, r"transactions\.parquet: cannot be read as parquet"),
    Case("unknown_file_type", "contract", _unknown_type, 2, r"customers\.xlsx: unknown file type"),
    Case("unknown_params_key", "contract", _unknown_params_key, 2, r"data\.checkz"),
    Case(
        "reject_share_above_one",
        "contract",
        _bad_share,
        2,
        r"data\.checks\.max_reject_share: expected a number between 0 and 1",
    ),
    Case("unknown_check_action", "contract", _bad_action, 2, r"data\.checks\.amount\.action"),
    Case(
        "amount_all_text",
        "contract",
        _edit("transactions", _set("amount", slice(None), "ten")),
        2,
        r"column 'amount': uncoercible type: not a number",
    ),
    Case(
        "dates_all_unreadable",
        "contract",
        _edit("transactions", _set("date", slice(None), "soon")),
        2,
        r"column 'date': uncoercible type: not a date",
    ),
    Case("declared_number_holds_text", "contract", _unknown_attribute_type, 2, r"column 'score': uncoercible type"),
    Case(
        "duplicate_customer_ids",
        "contract",
        _edit("customers", _duplicates),
        rejected={"customers": "customer_id: duplicate"},
    ),
    Case(
        "unknown_customers",
        "contract",
        _edit("transactions", _unknown_customers),
        rejected={"transactions": "customer_id: unknown customer"},
    ),
    Case(
        "few_negative_amounts",
        "contract",
        _edit("transactions", _set("amount", slice(0, 3), -5.0)),
        rejected={"transactions": "amount: negative"},
    ),
    Case(
        "few_future_dates",
        "contract",
        _edit("transactions", _set("date", slice(0, 3), "2030-01-01")),
        rejected={"transactions": "(future date)"},
    ),
    Case(
        "few_unreadable_dates",
        "contract",
        _edit("transactions", _set("date", slice(0, 3), "31/02/2025")),
        rejected={"transactions": "date: not a date"},
    ),
    Case(
        "few_missing_ids",
        "contract",
        _edit("transactions", _set("customer_id", slice(0, 3), None)),
        rejected={"transactions": "customer_id: missing value"},
    ),
]


# --- campaigns: the optional table of past retention offers -------------------------------------------------


def campaigns_of(customers: pd.DataFrame, seed: int = 11) -> pd.DataFrame:
    """A campaigns table for ``customers``: 40 % of them, on two campaign dates, half of each campaign treated
    (cost 4.5), the others its control group (no cost), all with a propensity of 0.5 (randomized)."""
    rng = np.random.default_rng(seed)
    ids = rng.choice(customers["customer_id"].to_numpy(), size=int(0.4 * len(customers)), replace=False)
    first = np.arange(len(ids)) < len(ids) // 2
    treated = rng.permutation(np.arange(len(ids)) % 2)
    return pd.DataFrame(
        {
            "customer_id": ids,
            "date": np.where(first, "2025-03-01", "2025-09-01"),
            "campaign": np.where(first, "winback-2025-03", "winback-2025-09"),
            "treated": treated,
            "cost": np.where(treated == 1, 4.5, np.nan),
            "propensity": 0.5,
        }
    )


def _campaigns(edit: Callable[[pd.DataFrame], None] | None = None, params: dict | None = None):
    """A case builder: the base tables and a campaigns table (:func:`campaigns_of`) with ``edit`` applied."""

    def build(folder: Path, tables: dict[str, pd.DataFrame]) -> dict | None:
        frame = campaigns_of(tables["customers"])
        if edit is not None:
            edit(frame)
        _csv(folder, _with(tables, campaigns=frame))
        return params

    return build


def _campaigns_in_their_own_words(frame: pd.DataFrame) -> None:
    frame["date"] = pd.to_datetime(frame["date"]).dt.strftime("%d/%m/%Y")
    frame["treated"] = np.where(frame["treated"] == 1, "yes", "no")
    names = {"customer_id": "Kunde", "treated": "Offer", "campaign": "Aktion"}
    frame.columns = [names.get(c, c) for c in frame.columns]


CAMPAIGN_CASES = [
    Case("campaigns_valid", "contract", _campaigns()),
    Case(
        "campaigns_mapped_with_date_format",
        "contract",
        _campaigns(
            _campaigns_in_their_own_words,
            {
                "data": {
                    "tables": {
                        "campaigns": {
                            "columns": {"customer_id": "Kunde", "treated": "Offer", "campaign": "Aktion"},
                            "date_format": "%d/%m/%Y",
                        }
                    }
                }
            },
        ),
    ),
    Case(
        "campaigns_propensity_zero_or_one",
        "contract",
        _campaigns(_set("propensity", [4, 9, 30], 1.0)),
        2,
        r"campaigns\.csv: column 'propensity': 3 values outside \(0, 1\) \(e\.g\. '1\.0' in row 5\); propensities "
        r"are probabilities of being treated, strictly between 0 and 1 \(a customer sure to be treated",
    ),
    Case(
        "campaigns_propensity_in_percent",
        "contract",
        _campaigns(_set("propensity", slice(None), 50)),
        2,
        r"column 'propensity': 120 values outside \(0, 1\) \(e\.g\. '50' in row 1\).*percentages\? write 0\.25",
    ),
    Case(
        "campaigns_of_unknown_customers",
        "contract",
        _campaigns(_set("customer_id", slice(0, 4), 99_999_999)),
        rejected={"campaigns": "customer_id: unknown customer"},
    ),
    Case(
        "campaigns_negative_cost",
        "contract",
        _campaigns(_set("cost", slice(0, 3), -4.5)),
        rejected={"campaigns": "cost: negative"},
    ),
    Case(
        "campaigns_treated_unreadable",
        "contract",
        _campaigns(_set("treated", slice(0, 2), "maybe")),
        rejected={"campaigns": "treated: not a yes/no value"},
    ),
    Case(
        "campaigns_missing_treated_column",
        "contract",
        _campaigns(lambda frame: frame.pop("treated")),
        2,
        r"campaigns\.csv: column 'treated': required column is missing",
    ),
    Case(
        "campaigns_cost_placeholder",
        "plausibility",
        _campaigns(_set("cost", slice(0, 1), 9e15)),
        rejected={"campaigns": "cost: implausibly large"},
    ),
    Case(
        "campaigns_bulk_negative_costs_stop",
        "plausibility",
        _campaigns(_set("cost", slice(0, 12), -4.5)),
        2,
        r"campaigns\.csv: 10\.0% of 120 rows rejected.*top reason: cost: negative \(12 rows\); likely setting: "
        r"data\.tables\.campaigns\.columns \(map the cost of the contact",
    ),
]


# --- encodings and separators -------------------------------------------------------------------------------


def _latin1_customers(tables) -> str:
    customers = tables["customers"].copy()
    customers["city"] = np.where(np.arange(len(customers)) % 3 == 0, "München", "Köln")
    return customers.to_csv(index=False, date_format="%Y-%m-%d")


def _encoded(encoding: str, params: dict | None = None):
    def build(folder, tables):
        _csv(folder, {k: v for k, v in tables.items() if k != "customers"})
        _text(folder, "customers.csv", _latin1_customers(tables), encoding)
        return params

    return build


def _separated(sep: str, params: dict | None = None):
    def build(folder, tables):
        _csv(folder, tables, sep=sep)
        return params

    return build


def _crlf(folder, tables):
    _csv(folder, tables, lineterminator="\r\n")


def _quoted(folder, tables):
    customers = tables["customers"].assign(
        city=np.where(np.arange(len(tables["customers"])) % 2 == 0, "Paris, 11e", "Lyon")
    )
    _csv(folder, _with(tables, customers=customers))


def _decimal_commas(folder, tables):
    tx = tables["transactions"].copy()
    tx["amount"] = tx["amount"].map(lambda v: f"{v:.2f}".replace(".", ","))
    _csv(folder, _with(tables, transactions=tx), sep=";")
    return {"data": {"csv_separator": ";"}}


ENCODING_CASES = [
    Case(
        "latin1_without_setting",
        "encoding",
        _encoded("latin-1"),
        2,
        r"customers\.csv: line \d+: byte 0x[0-9a-f]{2} is not utf-8 text; set data\.encoding",
    ),
    Case("latin1_with_setting", "encoding", _encoded("latin-1", {"data": {"encoding": "latin-1"}}), 0),
    Case("cp1252_with_setting", "encoding", _encoded("cp1252", {"data": {"encoding": "cp1252"}}), 0),
    Case("utf8_byte_order_mark", "encoding", _encoded("utf-8-sig"), 0),
    Case("crlf_line_ends", "encoding", _crlf, 0),
    Case("quoted_separators", "encoding", _quoted, 0),
    Case(
        "semicolons_without_setting",
        "encoding",
        _separated(";"),
        2,
        r"looks like ';'-separated: set data\.csv_separator: ';'",
    ),
    Case(
        "tabs_without_setting",
        "encoding",
        _separated("\t"),
        2,
        r"looks like tab-separated: set data\.csv_separator: '\\t'",
    ),
    Case(
        "pipes_without_setting",
        "encoding",
        _separated("|"),
        2,
        r"looks like '\|'-separated: set data\.csv_separator: '\|'",
    ),
    Case("semicolons_with_setting", "encoding", _separated(";", {"data": {"csv_separator": ";"}}), 0),
    Case(
        "unknown_encoding_setting",
        "encoding",
        _separated(",", {"data": {"encoding": "latin-11"}}),
        2,
        r"data\.encoding: unknown text encoding 'latin-11'",
    ),
    Case(
        "decimal_commas",
        "encoding",
        _decimal_commas,
        2,
        r"column 'amount': uncoercible type: not a number \(e\.g\. '\d+,\d+'\); looks like decimal commas",
    ),
]


# --- plausibility: what parses but cannot be right ------------------------------------------------------------


def _month_first(folder, tables):
    tx = tables["transactions"].copy()
    tx["date"] = pd.to_datetime(tx["date"]).dt.strftime("%-m/%-d/%Y")
    _csv(folder, _with(tables, transactions=tx))
    return {"data": {"tables": {"transactions": {"date_format": "%d/%m/%Y"}}}}


def _day_first_as_iso(folder, tables):
    """Dates written year/day/month and read as year/month/day: many land after the data's end."""
    end = pd.Timestamp("2026-06-30")
    customers = tables["customers"].loc[pd.to_datetime(tables["customers"]["signup_date"]) <= end]
    tx = tables["transactions"]
    dates = pd.to_datetime(tx["date"])
    tx = tx.loc[(dates <= end) & (dates.dt.day <= 12)].assign(date=dates.dt.strftime("%Y/%d/%m"))
    tx = tx.loc[tx["customer_id"].isin(customers["customer_id"])]
    _csv(folder, {"customers": customers, "transactions": tx})
    return {"data": {"tables": {"transactions": {"date_format": "%Y/%m/%d"}}, "max_date": str(end.date())}}


def _unmapped_ids(folder, tables):
    tx = tables["transactions"].copy()
    tx["customer_id"] = tx["customer_id"] + 1_000_000  # another id scheme than the customers table's
    _csv(folder, _with(tables, transactions=tx))


def _activity(folder, tables):
    tx = tables["transactions"]
    burst = tx.iloc[[0] * 60].assign(date=pd.Timestamp("2025-05-05"))
    _csv(folder, _with(tables, transactions=pd.concat([tx, burst], ignore_index=True)))


def _overpaid(frame):
    rows = frame.index[frame["amount_paid"].notna() & (frame["amount_due"] > 5)][:4]
    frame.loc[rows, "amount_paid"] = frame.loc[rows, "amount_due"] * 3


def _every_tenth_negative(frame):
    frame["amount"] = np.where(np.arange(len(frame)) % 10 == 0, -1.0, frame["amount"])


def _quantity(value):
    def edit(frame):
        frame["quantity"] = 1
        frame.loc[frame.index[:4], "quantity"] = value

    return edit


PLAUSIBILITY_CASES = [
    Case(
        "amount_1e300",
        "plausibility",
        _edit("transactions", _set("amount", slice(0, 1), "1e300")),
        rejected={"transactions": "amount: implausibly large"},
    ),
    Case(
        "amount_placeholder_999999999",
        "plausibility",
        _edit("transactions", _set("amount", slice(0, 2), 999999999)),
        rejected={"transactions": "amount: implausibly large"},
    ),
    Case(
        "amount_flagged_not_rejected",
        "plausibility",
        _edit(
            "transactions", _set("amount", slice(0, 2), 999999999), {"data": {"checks": {"amount": {"action": "flag"}}}}
        ),
        flagged={"transactions": "amount: implausibly large"},
    ),
    Case(
        "amount_cap_in_params",
        "plausibility",
        _edit("transactions", _set("amount", slice(0, 2), 5000.0), {"data": {"checks": {"amount": {"max": 1000}}}}),
        rejected={"transactions": "above 1000", "payments": "above 1000"},
    ),
    Case(
        "invoice_1e300",
        "plausibility",
        _edit("payments", _set("amount_due", slice(0, 1), 1e300)),
        rejected={"payments": "amount_due: implausibly large"},
    ),
    Case(
        "placeholder_date_1900",
        "plausibility",
        _edit("transactions", _set("date", slice(0, 2), "1900-01-01")),
        rejected={"transactions": "date: before 1970-01-02"},
    ),
    Case(
        "epoch_signup_dates",
        "plausibility",
        _edit("customers", _set("signup_date", slice(0, 2), "1970-01-01")),
        rejected={"customers": "signup_date: before 1970-01-02"},
    ),
    Case(
        "zero_quantities",
        "plausibility",
        _edit("transactions", _quantity(0)),
        rejected={"transactions": "quantity: not positive"},
    ),
    Case(
        "negative_quantities_flagged",
        "plausibility",
        _edit("transactions", _quantity(-2), {"data": {"checks": {"quantity": {"action": "flag"}}}}),
        flagged={"transactions": "quantity: not positive"},
    ),
    Case(
        "overpayments",
        "plausibility",
        _edit("payments", _overpaid),
        flagged={"payments": "amount_paid: more than amount_due"},
    ),
    Case(
        "absurd_activity", "plausibility", _activity, flagged={"transactions": "more than 50 transactions on one day"}
    ),
    Case(
        "wrong_date_format",
        "plausibility",
        _month_first,
        2,
        r"transactions\.csv: \d+\.\d% of [\d,]+ rows rejected.*top reason: date: not a date in format %d/%m/%Y"
        r".*likely setting: data\.tables\.transactions\.date_format",
    ),
    Case(
        "swapped_dates_in_the_future",
        "plausibility",
        _day_first_as_iso,
        2,
        r"top reason: date: after 2026-06-30 \(future date\).*day and month swapped",
    ),
    Case(
        "ids_of_another_scheme",
        "plausibility",
        _unmapped_ids,
        2,
        r"top reason: customer_id: unknown customer.*likely setting: data\.tables\.transactions\.columns",
    ),
    Case(
        "bulk_rejects_allowed_by_params",
        "plausibility",
        _edit("transactions", _every_tenth_negative, {"data": {"checks": {"max_reject_share": 0.2}}}),
        rejected={"transactions": "amount: negative"},
    ),
    Case(
        "bulk_negative_amounts_stop",
        "plausibility",
        _edit("transactions", _every_tenth_negative),
        2,
        r"10\.\d% of [\d,]+ rows rejected.*top reason: amount: negative",
    ),
]


# --- scoring: values the models never saw, locks, bad rows at scoring time ---------------------------------------
# These cases start from the tables the models were trained on and score them with the trained champions.

SCORING_AS_OF = ("--as-of", "2026-10-31")


def _customers(edit: Callable[[pd.DataFrame], None], params: dict | None = None):
    return _edit("customers", edit, params)


def _unseen(frame: pd.DataFrame) -> None:
    frame["region"] = "mars"
    frame["contract"] = "lifetime"


def _blank_region(frame: pd.DataFrame) -> None:
    frame["region"] = None


def _rich(frame: pd.DataFrame) -> None:
    frame["amount"] = frame["amount"] * 1000


def _scoring(name, build, exit_code=0, message=None, **fields) -> Case:
    return Case(name, "scoring", build, exit_code, message, command="score", args=SCORING_AS_OF, **fields)


SCORING_CASES = [
    _scoring("as_trained", _edit("customers", lambda frame: None)),
    _scoring(
        "unseen_categories",
        _customers(_unseen),
        message=r"warning: (region|contract): 100\.0 % of scored customers have values unseen in training "
        r"\(e\.g\. '(mars|lifetime)'\)",
    ),
    _scoring(
        "unseen_above_the_error_share",
        _customers(_unseen, {"scoring": {"unseen_error_share": 0.5}}),
        2,
        r"100\.0 % of scored customers have values unseen in training .*more than scoring\.unseen_error_share = 0\.5",
    ),
    _scoring(
        "spend_a_thousand_times_training",
        _edit("transactions", _rich),
        message=r"warning: monetary_\w+: [\d.]+ % of scored customers have values outside the training range",
    ),
    _scoring(
        "attribute_missing_at_scoring",
        _customers(_blank_region),
        message=r"warning: region: 100\.0 % of scored customers have no value, against 0\.0 % in training",
    ),
    _scoring(
        "amount_1e300_at_scoring",
        _edit("transactions", _set("amount", slice(0, 1), "1e300")),
        rejected={"transactions": "amount: implausibly large"},
    ),
    _scoring(
        "campaigns_at_scoring",
        _campaigns(_set("customer_id", slice(0, 4), 99_999_999)),
        rejected={"campaigns": "customer_id: unknown customer"},
    ),
    _scoring(
        "wrong_date_format_at_scoring",
        _month_first,
        2,
        r"transactions\.csv: [\d.]+% of [\d,]+ rows rejected.*likely setting: data\.tables\.transactions\.date_format",
    ),
    _scoring(
        "scoring_folder_locked",
        _edit("customers", lambda frame: None),
        2,
        r"as_of=2026-10-31: another crmscore run \(pid \d+ .*\) is writing this folder",
        locked=True,
    ),
    Case(
        "as_of_before_any_customer",
        "scoring",
        _edit("customers", lambda frame: None),
        2,
        r"nobody signed up on or before the as-of date 2001-01-01",
        command="score",
        args=("--as-of", "2001-01-01"),
    ),
]

CASES: list[Case] = [*CONTRACT_CASES, *CAMPAIGN_CASES, *ENCODING_CASES, *PLAUSIBILITY_CASES]


def params_for(case_dir: Path, overrides: dict | None, base: dict | None = None) -> dict:
    """The case's params: ``base`` (default: the future-date rule pinned and the reports and models inside the
    case folder) with the case's overrides merged in at every level."""
    params: dict = base or {
        "data": {"max_date": str(MAX_DATE)},
        "paths": {"reports_dir": str(case_dir / "reports"), "models_dir": str(case_dir / "models")},
    }
    return _merged(params, overrides or {})


def _merged(base: dict, overrides: dict) -> dict:
    """``base`` with ``overrides`` merged in at every level (a copy)."""
    out = dict(base)
    for key, value in overrides.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def generate(
    root: Path,
    cases: list[Case] | None = None,
    tables: dict[str, pd.DataFrame] | None = None,
    base_params: dict | None = None,
) -> dict[str, Path]:
    """Write every case's ``in/`` and ``params.yaml`` under ``root``; return the case folders by name.

    ``tables`` are the tables the cases start from (default :func:`base_tables`) and ``base_params`` the
    params they change (default: see :func:`params_for`); scoring cases take the trained models' own.
    """
    tables = tables or base_tables()
    out = {}
    for case in cases or CASES:
        folder = Path(root) / case.name
        overrides = case.build(folder / "in", {k: v.copy() for k, v in tables.items()})
        params = params_for(folder, overrides, base_params)
        (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        out[case.name] = folder
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "corpus")
    for name, folder in generate(target).items():
        print(f"{name:40s} {folder}")
    print(f"(the {len(SCORING_CASES)} scoring cases need trained models: tests/test_corpus.py trains them)")
