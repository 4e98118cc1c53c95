"""Customer attributes as the data says: their types, derived signup dates, and what the models will see.

The columns of a customers table beyond the contract are its *attributes* (plan, region, balance,
usage totals, …). They reach the models as they are typed here:

* **declared** in ``data.tables.customers.types``: ``numeric`` (a cell that is not a number rejects its
  row) or ``categorical`` (every value a label, e.g. area or zip codes);
* otherwise **inferred**: a column whose values are all numbers (blanks and the usual missing markers
  such as ``NA`` or ``?`` aside) is numeric — integers with missing values included — unless its numbers
  are written with leading zeros (``02134``: a code, kept as text); Parquet keeps its own types; any
  other text becomes a category;
* yes/no flags stay categories (LightGBM splits them exactly), dates are never features.

:func:`derive_signup` turns a tenure column (``data.tables.customers.tenure``) into signup dates as of
the snapshot date, and :func:`attribute_summary` lists every column with its type, distinct count and
role (feature, excluded, protected, …) for the validation summary.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["MISSING_MARKERS", "coerce_attribute", "derive_signup", "attribute_summary", "type_name"]

#: Text that means "no value" in a numeric column (compared after trimming, case-insensitive).
MISSING_MARKERS = frozenset({"", "na", "n/a", "nan", "null", "none", "?", "-"})

_LEADING_ZERO = r"[+-]?0[0-9]+(\.[0-9]*)?"


def _numbers(text: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Numbers of a text column and the mask of cells that hold a value but not a number.

    Each distinct text is parsed once (a column of a million labels holds a handful of them).
    """
    codes, distinct = pd.factorize(text)  # missing cells: code -1
    distinct = pd.Series(distinct, dtype="string")
    blank = distinct.str.lower().isin(MISSING_MARKERS).to_numpy(dtype=bool)
    parsed = pd.to_numeric(distinct.where(~blank), errors="coerce")
    parsed = parsed.to_numpy(dtype="float64", na_value=np.nan, copy=True)
    parsed[~np.isfinite(parsed)] = np.nan
    given = codes >= 0
    numbers = np.full(len(text), np.nan)
    numbers[given] = parsed[codes[given]]
    bad = np.zeros(len(text), dtype=bool)
    bad[given] = ~blank[codes[given]] & np.isnan(parsed[codes[given]])
    return pd.Series(numbers, index=text.index), bad


def _integral(numbers: pd.Series) -> pd.Series:
    """Whole numbers as integers (``Int64`` where some are missing), others as float."""
    present = numbers.dropna()
    if len(present) and np.all(present.to_numpy() == np.round(present.to_numpy())) and present.abs().max() < 2**53:
        return numbers.astype("Int64") if numbers.isna().any() else numbers.astype(np.int64)
    return numbers


def _category(series: pd.Series) -> pd.Series:
    if isinstance(series.dtype, pd.CategoricalDtype):
        return series
    text = series.astype("string").str.strip()
    return text.mask(text == "").astype(object).astype("category")


def coerce_attribute(series: pd.Series, declared: str | None = None) -> tuple[pd.Series, np.ndarray, str]:
    """One attribute column typed as declared (``numeric`` / ``categorical``) or as its values say.

    Returns the typed column, a mask of cells that break the declared type (their rows are rejected)
    and the rule broken there.
    """
    no_problem = np.zeros(len(series), dtype=bool)
    if declared == "categorical":
        if pd.api.types.is_float_dtype(series.dtype):  # 408.0 read by Parquet is the code 408
            series = pd.Series(_integral(series.astype("float64")), index=series.index)
        return _category(series), no_problem, "not a label"
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_datetime64_any_dtype(series.dtype):
        return series, no_problem, ""
    if pd.api.types.is_numeric_dtype(series.dtype):
        return series, no_problem, ""
    if isinstance(series.dtype, pd.CategoricalDtype):
        return _coerce_labels(series, declared)
    text = series.astype("string").str.strip()
    numbers, bad = _numbers(text)
    if declared == "numeric":
        return _integral(numbers), bad, "not a number (declared numeric in data.tables.customers.types)"
    present = text[~(text.isna() | text.str.lower().isin(MISSING_MARKERS))]
    codes = present.str.fullmatch(_LEADING_ZERO).fillna(False).any()
    if len(present) and not bad.any() and not codes:
        return _integral(numbers), no_problem, ""
    return _category(series), no_problem, ""


def _coerce_labels(series: pd.Series, declared: str | None) -> tuple[pd.Series, np.ndarray, str]:
    """:func:`coerce_attribute` of a categorical column (as Parquet gives text): its labels are typed once
    each, and the column is numeric only where they are."""
    used = series.cat.remove_unused_categories()
    labels = pd.Series(used.cat.categories.astype(str), dtype="string")
    typed, bad_label, rule = coerce_attribute(labels, declared)
    if isinstance(typed.dtype, pd.CategoricalDtype):
        return series, np.zeros(len(series), dtype=bool), rule
    codes = used.cat.codes.to_numpy()
    given = codes >= 0
    numbers = np.full(len(series), np.nan)
    numbers[given] = typed.to_numpy(dtype="float64", na_value=np.nan)[codes[given]]
    bad = np.zeros(len(series), dtype=bool)
    bad[given] = bad_label[codes[given]]
    return _integral(pd.Series(numbers, index=series.index)), bad, rule


_UNIT_DAYS = {"days": 1.0, "weeks": 7.0}


def derive_signup(tenure: pd.Series, unit: str, snapshot_date: pd.Timestamp) -> tuple[pd.Series, np.ndarray, str]:
    """Signup dates ``snapshot_date − tenure`` and the mask of tenures that are not numbers ≥ 0.

    Months and years step back in calendar months (``DateOffset``: 31 March − 1 month = 28/29 February),
    as tenure in months is counted; fractional months are counted as 30.4375 days each.
    """
    numbers = pd.to_numeric(
        tenure if pd.api.types.is_numeric_dtype(tenure.dtype) else tenure.astype("string").str.strip(),
        errors="coerce",
    ).astype("float64")
    given = tenure.notna().to_numpy() & ~(tenure.astype("string").str.strip() == "").fillna(True).to_numpy(bool)
    bad = (numbers.isna() | (numbers < 0) | ~np.isfinite(numbers)).to_numpy(dtype=bool) & given
    values = numbers.where(~pd.Series(bad, index=numbers.index))
    snapshot = pd.Timestamp(snapshot_date).normalize()
    if unit in _UNIT_DAYS:
        signup = snapshot - pd.to_timedelta(np.round(values * _UNIT_DAYS[unit]), unit="D")
    else:
        months = values * (12 if unit == "years" else 1)
        whole = months.notna() & (months == np.round(months))
        by_value = {m: snapshot - pd.DateOffset(months=int(m)) for m in months[whole].unique()}
        signup = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
        signup[whole] = months[whole].map(by_value).astype("datetime64[ns]")
        fractional = months.notna() & ~whole
        signup[fractional] = snapshot - pd.to_timedelta(np.round(months[fractional] * 30.4375), unit="D")
    return signup.astype("datetime64[ns]"), bad, "not a number of " + unit + " >= 0"


def type_name(series: pd.Series) -> str:
    """Short name of an attribute's type as the models see it."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if pd.api.types.is_bool_dtype(dtype):
        return "flag"
    if pd.api.types.is_integer_dtype(dtype):
        return "integer"
    if pd.api.types.is_numeric_dtype(dtype):
        return "number"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "date"
    return "text"


def attribute_summary(
    customers: pd.DataFrame,
    contract: set[str],
    exclude: list[str] | tuple[str, ...] = (),
    protected: list[str] | tuple[str, ...] = (),
    declared: dict[str, str] | None = None,
    tenure_column: str | None = None,
) -> list[dict[str, object]]:
    """One entry per attribute column: name, type, distinct values, missing share, role and a note."""
    declared = declared or {}
    rows = []
    n = max(len(customers), 1)
    for column in customers.columns:
        if column in contract:
            continue
        series = customers[column]
        distinct = int(series.nunique(dropna=True))
        role = "feature"
        note = ""
        if column in protected:
            role, note = "protected", "sensitive: never a feature, never a reason"
        elif column in exclude:
            role, note = "excluded", "kept in the data, never a feature"
        elif column == tenure_column:
            role, note = "tenure", "gives signup_date (and tenure_days)"
        elif type_name(series) == "date":
            role, note = "not used", "dates are not features"
        elif distinct <= 1:
            note = "one value only: cannot inform a model"
        elif type_name(series) == "category" and distinct > 0.5 * n and distinct > 50:
            note = "nearly unique text (a name or an id?): consider data.tables.customers.exclude"
        elif type_name(series) == "integer" and distinct == len(customers) and len(customers) > 50:
            note = "unique whole numbers (a row number or an id?): consider data.tables.customers.exclude"
        rows.append(
            {
                "column": column,
                "type": type_name(series),
                "declared": declared.get(column, ""),
                "distinct": distinct,
                "missing_share": round(float(series.isna().mean()), 4),
                "role": role,
                "note": note,
            }
        )
    return rows
