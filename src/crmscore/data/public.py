"""Loaders for the public datasets in ``../shared/data``, in the crmscore data contract.

The data folder is found through :func:`data_dir`: an explicit path, else ``$CRMSCORE_DATA_DIR``,
else ``../shared/data`` relative to the working directory. The files are never copied into the
repository. Before a file is read its sha256 is checked against :data:`SHA256` (the hashes in the
data folder's README), because many public copies of both datasets have been edited; a mismatch,
a missing file or a broken value raises :class:`~crmscore.errors.DataError` with one line naming the
file and the rule.

Telco Customer Churn (IBM sample data) is a snapshot without dates. Two documented choices turn it
into the contract:

* ``signup_date`` is a *nominal* date: :data:`TELCO_SNAPSHOT_DATE` minus ``tenure`` months. It keeps
  the tenure ordering but is not an observed date, so no point-in-time split can rest on it.
* ``TotalCharges`` is a single space in 11 rows, exactly the 11 customers with ``tenure == 0``. They
  get ``total_charges = 0.0``: they have not completed a billing month, so nothing has been billed
  yet. A blank for a customer with ``tenure > 0`` is not covered by that reasoning and is an error.

CDNOW (Fader & Hardie) is a transaction log of the 1997-Q1 cohort. Rows of one customer on one day
are merged into one transaction by default, as the published buy-till-you-die analyses do; the
sample file is keyed by its 4-digit *sample* id, the ``ID`` of the published summary CSVs.

Hillstrom's MineThatData e-mail campaign (2008) is a randomized experiment, read for uplift models
(:mod:`crmscore.uplift`) as features, treatment and outcomes rather than as contract tables.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd

from crmscore.errors import DataError

__all__ = [
    "CDNOW_MASTER",
    "CDNOW_SAMPLE",
    "CDNOW_SUMMARY",
    "CDNOW_SUMMARY_WITH_TRANSACTIONS",
    "DATA_DIR_ENV",
    "HILLSTROM_FILE",
    "HILLSTROM_SEGMENTS",
    "DEFAULT_DATA_DIR",
    "SHA256",
    "TELCO_FILE",
    "TELCO_SNAPSHOT_DATE",
    "data_dir",
    "load_cdnow",
    "load_cdnow_summary",
    "load_hillstrom",
    "load_telco",
    "sha256_of",
    "verify_file",
]

DATA_DIR_ENV = "CRMSCORE_DATA_DIR"
DEFAULT_DATA_DIR = Path("../shared/data")

TELCO_FILE = "telco_churn/WA_Fn-UseC_-Telco-Customer-Churn.csv"
CDNOW_MASTER = "cdnow/CDNOW_master.txt"
CDNOW_SAMPLE = "cdnow/CDNOW_sample.txt"
CDNOW_SUMMARY = "cdnow/cdnow_customers_summary.csv"
CDNOW_SUMMARY_WITH_TRANSACTIONS = "cdnow/cdnow_customers_summary_with_transactions.csv"
HILLSTROM_FILE = "hillstrom/hillstrom.csv"

#: Expected sha256 of each file, keyed by its path relative to the data folder (from its README).
SHA256: dict[str, str] = {
    TELCO_FILE: "88be4b93fbe0cc83421af1c503794c97c342eca914c1576db7c276e61d61358a",
    CDNOW_MASTER: "eff6889ed364c5199d6eacbbeb7a6d559971df4406ac876f322c373f00a072ef",
    CDNOW_SAMPLE: "6fae10155c0b0ba363c2c386e30f77990d22328220efd862a5edd1443420d94a",
    CDNOW_SUMMARY: "09d92ca80daaabe8be0f997d4c539f9c9606106baa5b199081fe01cbce5fa9f6",
    CDNOW_SUMMARY_WITH_TRANSACTIONS: ("7ddd11b55be3227edfc1d58675154e96971b0de3ad37ddd9280d1dba154b8b2f"),
    HILLSTROM_FILE: "0e5893329d8b93cefecc571777672028290ab69865718020c78c7284f291aece",
}

#: Nominal snapshot date of the Telco data; the dataset itself carries no date at all.
TELCO_SNAPSHOT_DATE = pd.Timestamp("2018-01-31")

_README_HINT = "see ../shared/data/README.md"

# Raw Telco column -> contract name, for the attributes that are passed through.
_TELCO_CATEGORIES = {
    "gender": "gender",
    "PhoneService": "phone_service",
    "MultipleLines": "multiple_lines",
    "InternetService": "internet_service",
    "OnlineSecurity": "online_security",
    "OnlineBackup": "online_backup",
    "DeviceProtection": "device_protection",
    "TechSupport": "tech_support",
    "StreamingTV": "streaming_tv",
    "StreamingMovies": "streaming_movies",
    "Contract": "contract",
    "PaperlessBilling": "paperless_billing",
    "PaymentMethod": "payment_method",
}
_TELCO_YES_NO_FLAGS = {"Partner": "partner", "Dependents": "dependents"}
_TELCO_COLUMNS = [
    "customerID",
    "SeniorCitizen",
    "tenure",
    "MonthlyCharges",
    "TotalCharges",
    "Churn",
    *_TELCO_YES_NO_FLAGS,
    *_TELCO_CATEGORIES,
]
_TELCO_ORDER = [
    "customer_id",
    "signup_date",
    "churned",
    "monthly_revenue",
    "tenure_months",
    "total_charges",
    "gender",
    "senior_citizen",
    "partner",
    "dependents",
    "phone_service",
    "multiple_lines",
    "internet_service",
    "online_security",
    "online_backup",
    "device_protection",
    "tech_support",
    "streaming_tv",
    "streaming_movies",
    "contract",
    "paperless_billing",
    "payment_method",
]

#: Hillstrom's randomized arms, the control first.
HILLSTROM_SEGMENTS = ["No E-Mail", "Mens E-Mail", "Womens E-Mail"]
_HILLSTROM_FLAGS = ["mens", "womens", "newbie"]
_HILLSTROM_OUTCOMES = ["visit", "conversion", "spend"]
_HILLSTROM_COLUMNS = [
    "recency",
    "history_segment",
    "history",
    *_HILLSTROM_FLAGS,
    "zip_code",
    "channel",
    "segment",
    *_HILLSTROM_OUTCOMES,
]

_CDNOW_MASTER_COLUMNS = ["customer_id", "date", "number_of_cds", "dollar_value"]
_CDNOW_SAMPLE_COLUMNS = ["master_id", "customer_id", "date", "number_of_cds", "dollar_value"]


def data_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """Return the folder that holds the public datasets.

    The explicit ``path`` wins; otherwise the environment variable ``CRMSCORE_DATA_DIR`` is used
    when it is set and non-empty; otherwise ``../shared/data``. A relative result stays relative to
    the current working directory (never to this file), so the tests, run from the project root,
    find ``/work/shared/data``. The folder is not checked here; the loaders report a missing file.
    """
    if path is not None:
        return Path(path)
    env = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(env) if env else DEFAULT_DATA_DIR


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Return the hex sha256 of the file at ``path``, read in 1 MiB chunks.

    The chunked read keeps memory flat whatever the file size; an unreadable file raises
    :class:`~crmscore.errors.DataError` naming it.
    """
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc.strerror or exc})") from exc
    return digest.hexdigest()


def verify_file(path: str | os.PathLike[str], expected: str) -> None:
    """Raise :class:`~crmscore.errors.DataError` unless ``path`` has the sha256 ``expected``.

    A mismatch means an edited copy of a public dataset (filled-in blanks, renamed headers and Excel
    re-saves all circulate), and results computed on it would silently differ from the published
    ones, so it is refused rather than warned about.
    """
    got = sha256_of(path)
    if got != expected:
        raise DataError(
            f"{path}: sha256 mismatch, expected {expected}, got {got}; this is an edited copy, {_README_HINT}"
        )


def _resolve(root: str | os.PathLike[str] | None, relpath: str, verify: bool) -> Path:
    # One place for "file exists, then hash matches", so every loader reports both the same way.
    path = data_dir(root) / relpath
    if not path.is_file():
        raise DataError(f"{path}: file not found; set {DATA_DIR_ENV} to the public data folder, {_README_HINT}")
    if verify:
        verify_file(path, SHA256[relpath])
    return path


def _require_columns(path: Path, df: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing required column(s) {', '.join(missing)}")


def _yes_no(path: Path, column: str, values: pd.Series) -> pd.Series:
    # Map explicitly instead of comparing to "Yes", so a third value is reported, not read as False.
    out = values.map({"Yes": True, "No": False})
    bad = out.isna()
    if bad.any():
        raise DataError(
            f"{path}: column {column}: expected Yes/No, got {values[bad].iloc[0]!r} in {int(bad.sum())} row(s)"
        )
    return out.astype(bool)


def _parse_yyyymmdd(path: Path, values: pd.Series) -> pd.Series:
    try:
        dates = pd.to_datetime(values.astype(str), format="%Y%m%d")
    except (ValueError, TypeError) as exc:
        raise DataError(f"{path}: column date: expected integer yyyymmdd dates ({exc})") from exc
    # pandas 3 infers a coarser unit; the contract fixes nanoseconds.
    return dates.astype("datetime64[ns]")


def load_telco(data_dir: str | os.PathLike[str] | None = None, verify: bool = True) -> dict[str, pd.DataFrame]:
    """Load IBM's Telco Customer Churn data as ``{"customers": df}`` in the crmscore contract.

    One row per customer: ``customer_id`` (from ``customerID``), ``signup_date``, ``churned`` (bool,
    from ``Churn``), ``monthly_revenue`` (``MonthlyCharges``), ``tenure_months`` (int),
    ``total_charges`` (float), then the attributes in snake_case: ``senior_citizen``, ``partner``
    and ``dependents`` as bool, the text attributes (``gender``, ``phone_service``,
    ``multiple_lines``, ``internet_service``, the six add-on services, ``contract``,
    ``paperless_billing``, ``payment_method``) as ``category``. The dataset is a snapshot without
    dates, so ``signup_date`` is a NOMINAL date, :data:`TELCO_SNAPSHOT_DATE` (2018-01-31) minus
    ``tenure`` months via ``pd.DateOffset`` (month ends clamp, e.g. 2017-11-30), useful for ordering
    only. The 11 blank (single space) ``TotalCharges`` are exactly the customers with tenure 0 and
    are set to 0.0, because nothing has been billed yet; a blank or non-number anywhere else raises
    :class:`~crmscore.errors.DataError`. With ``verify=True`` the file's sha256 must match
    :data:`SHA256`.
    """
    path = _resolve(data_dir, TELCO_FILE, verify)
    try:
        raw = pd.read_csv(path, dtype={"customerID": str, "TotalCharges": str})
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot parse as CSV ({exc})") from exc
    _require_columns(path, raw, _TELCO_COLUMNS)

    ids = raw["customerID"]
    if ids.isna().any() or ids.duplicated().any():
        raise DataError(f"{path}: column customerID: ids must be present and unique")

    numeric = {}
    for column in ("tenure", "MonthlyCharges", "SeniorCitizen"):
        values = pd.to_numeric(raw[column], errors="coerce")
        if values.isna().any():
            raise DataError(f"{path}: column {column}: expected numbers, found blanks or text")
        numeric[column] = values
    tenure = numeric["tenure"]
    if (tenure < 0).any() or (tenure != tenure.round()).any():
        raise DataError(f"{path}: column tenure: expected whole months >= 0")
    tenure = tenure.astype("int64")
    senior = numeric["SeniorCitizen"]
    if not senior.isin([0, 1]).all():
        raise DataError(f"{path}: column SeniorCitizen: expected 0/1")

    total = pd.to_numeric(raw["TotalCharges"].str.strip(), errors="coerce")
    unbilled = total.isna() & (tenure == 0)
    if (total.isna() & ~unbilled).any():
        n = int((total.isna() & ~unbilled).sum())
        raise DataError(f"{path}: column TotalCharges: blank or non-numeric for {n} customer(s) with tenure > 0")
    # Tenure 0 means no completed billing month, so the honest amount billed so far is zero.
    total = total.where(~unbilled, 0.0).astype("float64")

    # 73 distinct tenures at most, so DateOffset per distinct value is exact and cheap.
    signup = tenure.map({m: TELCO_SNAPSHOT_DATE - pd.DateOffset(months=int(m)) for m in tenure.unique()}).astype(
        "datetime64[ns]"
    )

    out = pd.DataFrame(
        {
            "customer_id": ids,
            "signup_date": signup,
            "churned": _yes_no(path, "Churn", raw["Churn"]),
            "monthly_revenue": numeric["MonthlyCharges"].astype("float64"),
            "tenure_months": tenure,
            "total_charges": total,
            "senior_citizen": senior.astype(bool),
        }
    )
    for src, dst in _TELCO_YES_NO_FLAGS.items():
        out[dst] = _yes_no(path, src, raw[src])
    for src, dst in _TELCO_CATEGORIES.items():
        out[dst] = raw[src].astype("category")
    return {"customers": out[_TELCO_ORDER]}


def _read_cdnow(path: Path, sample: bool) -> pd.DataFrame:
    # The master copy has a header line with leading spaces; the sample has none and two id columns.
    try:
        if sample:
            raw = pd.read_csv(path, sep=r"\s+", header=None, names=_CDNOW_SAMPLE_COLUMNS)
        else:
            raw = pd.read_csv(path, sep=r"\s+", dtype={"customer_id": str})
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot parse as whitespace-separated text ({exc})") from exc
    _require_columns(path, raw, _CDNOW_SAMPLE_COLUMNS if sample else _CDNOW_MASTER_COLUMNS)
    return raw


def load_cdnow(
    data_dir: str | os.PathLike[str] | None = None,
    sample: bool = False,
    merge_same_day: bool = True,
    verify: bool = True,
) -> dict[str, pd.DataFrame]:
    """Load the CDNOW purchase log as ``{"customers": df, "transactions": df}``.

    ``sample=False`` reads the whole 1997-Q1 cohort (``CDNOW_master.txt``, 23,570 customers) keyed
    by the 5-digit master id as int; ``sample=True`` reads the 1/10 sample (``CDNOW_sample.txt``,
    2,357 customers) keyed by its 4-digit *sample* id as int, because that is the ``ID`` of the
    published summary CSVs (see :func:`load_cdnow_summary`). ``transactions`` has ``customer_id``
    (int64), ``date`` (datetime64[ns]), ``amount`` (float, ``dollar_value``) and ``quantity`` (int,
    ``number_of_cds``), sorted by customer and date. With ``merge_same_day=True`` the rows of one
    customer on one day become one transaction with summed amount (rounded to cents) and quantity,
    as in the published buy-till-you-die analyses. ``customers`` has one row per customer:
    ``customer_id``, ``signup_date`` (first purchase date) and ``cohort`` (the calendar quarter of
    the first purchase, ``"1997Q1"`` for all, as ``category``). With ``verify=True`` the file's
    sha256 must match :data:`SHA256`.
    """
    relpath = CDNOW_SAMPLE if sample else CDNOW_MASTER
    path = _resolve(data_dir, relpath, verify)
    raw = _read_cdnow(path, sample)

    ids = pd.to_numeric(raw["customer_id"], errors="coerce")
    quantity = pd.to_numeric(raw["number_of_cds"], errors="coerce")
    amount = pd.to_numeric(raw["dollar_value"], errors="coerce")
    for column, values in (("customer_id", ids), ("number_of_cds", quantity)):
        if values.isna().any() or (values != values.round()).any():
            raise DataError(f"{path}: column {column}: expected integers")
    if amount.isna().any():
        raise DataError(f"{path}: column dollar_value: expected numbers")

    tx = pd.DataFrame(
        {
            "customer_id": ids.astype("int64"),
            "date": _parse_yyyymmdd(path, raw["date"]),
            "amount": amount.astype("float64"),
            "quantity": quantity.astype("int64"),
        }
    )
    if merge_same_day:
        tx = tx.groupby(["customer_id", "date"], as_index=False, sort=True).agg(
            amount=("amount", "sum"), quantity=("quantity", "sum")
        )
        # Float sums of cents pick up noise like 29.330000000000002; the data is in whole cents.
        tx["amount"] = tx["amount"].round(2)
    else:
        # Stable sort keeps same-day rows in file order.
        tx = tx.sort_values(["customer_id", "date"], kind="stable", ignore_index=True)

    first = tx.groupby("customer_id", sort=True)["date"].min()
    customers = pd.DataFrame(
        {
            "customer_id": first.index.to_numpy(dtype="int64"),
            "signup_date": first.to_numpy().astype("datetime64[ns]"),
            "cohort": pd.Categorical(first.dt.to_period("Q").astype(str).to_numpy()),
        }
    )
    return {"customers": customers, "transactions": tx.reset_index(drop=True)}


def load_cdnow_summary(
    data_dir: str | os.PathLike[str] | None = None,
    with_transactions: bool = True,
    verify: bool = True,
) -> pd.DataFrame:
    """Load the published 39-week calibration summary of the CDNOW sample (time unit: weeks).

    ``with_transactions=True`` reads ``cdnow_customers_summary_with_transactions.csv`` (columns
    ``x, t_x, T, zbar``: repeat purchases, recency, age, mean repeat spend), otherwise
    ``cdnow_customers_summary.csv`` (``frequency, recency, T``). Column names are kept as in the
    file except ``ID``, which becomes ``customer_id`` (int64, the sample id of
    :func:`load_cdnow` with ``sample=True``). Read the age column as ``df["T"]``, never ``df.T``
    (the transpose). With ``verify=True`` the file's sha256 must match :data:`SHA256`.
    """
    relpath = CDNOW_SUMMARY_WITH_TRANSACTIONS if with_transactions else CDNOW_SUMMARY
    path = _resolve(data_dir, relpath, verify)
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot parse as CSV ({exc})") from exc
    expected = ["ID", "x", "t_x", "T", "zbar"] if with_transactions else ["ID", "frequency", "recency", "T"]
    _require_columns(path, df, expected)
    ids = pd.to_numeric(df["ID"], errors="coerce")
    if ids.isna().any() or (ids != ids.round()).any() or ids.duplicated().any():
        raise DataError(f"{path}: column ID: expected unique integer ids")
    df = df.rename(columns={"ID": "customer_id"})
    df["customer_id"] = ids.astype("int64")
    return df


def load_hillstrom(data_dir: str | os.PathLike[str] | None = None, verify: bool = True) -> dict[str, pd.DataFrame]:
    """Load Hillstrom's e-mail experiment as ``{"features": df, "treatment": df, "outcomes": df}``.

    64,000 customers, one row each in file order, indexed by ``customer_id`` (the row number, 0-based;
    the file has no id). ``features``: ``recency`` (months since the last purchase, int), ``history``
    (dollars spent last year), ``history_segment`` (ordered category of that spend), ``mens``,
    ``womens``, ``newbie`` (bool), ``zip_code`` and ``channel`` (category; the file's ``Surburban``
    spelling is kept). ``treatment``: ``treated`` (bool, any e-mail) and ``segment`` (category,
    :data:`HILLSTROM_SEGMENTS`, the randomized arm). ``outcomes`` over the two weeks after the
    campaign: ``visit`` and ``conversion`` (0/1 int) and ``spend`` (dollars). With ``verify=True`` the
    file's sha256 must match :data:`SHA256`.
    """
    path = _resolve(data_dir, HILLSTROM_FILE, verify)
    try:
        raw = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot parse as CSV ({exc})") from exc
    _require_columns(path, raw, _HILLSTROM_COLUMNS)
    if raw[_HILLSTROM_COLUMNS].isna().any().any():
        raise DataError(f"{path}: missing values in {', '.join(raw.columns[raw.isna().any()])}")
    unknown = sorted(set(raw["segment"]) - set(HILLSTROM_SEGMENTS))
    if unknown:
        raise DataError(f"{path}: column segment: expected {HILLSTROM_SEGMENTS}, found {unknown[:3]}")
    for column in [*_HILLSTROM_FLAGS, "visit", "conversion"]:
        if not raw[column].isin([0, 1]).all():
            raise DataError(f"{path}: column {column}: expected 0/1")
    if not (pd.to_numeric(raw["spend"], errors="coerce") >= 0).all():
        raise DataError(f"{path}: column spend: expected amounts >= 0")
    index = pd.RangeIndex(len(raw), name="customer_id")
    # The labels start "1) ", "2) " …, so sorting them orders the spend buckets.
    buckets = sorted(raw["history_segment"].unique())
    features = pd.DataFrame(
        {
            "recency": raw["recency"].astype("int64"),
            "history": raw["history"].astype("float64"),
            "history_segment": pd.Categorical(raw["history_segment"], categories=buckets, ordered=True),
            **{flag: raw[flag].astype(bool) for flag in _HILLSTROM_FLAGS},
            "zip_code": raw["zip_code"].astype("category"),
            "channel": raw["channel"].astype("category"),
        }
    ).set_index(index)
    treatment = pd.DataFrame(
        {
            "treated": raw["segment"] != HILLSTROM_SEGMENTS[0],
            "segment": pd.Categorical(raw["segment"], categories=HILLSTROM_SEGMENTS),
        }
    ).set_index(index)
    outcomes = raw[_HILLSTROM_OUTCOMES].astype({"visit": "int64", "conversion": "int64", "spend": "float64"})
    return {"features": features, "treatment": treatment, "outcomes": outcomes.set_index(index)}
