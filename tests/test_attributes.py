"""Attribute typing (`crmscore.data.attributes.coerce_attribute`): a column Parquet gives as categories is typed
exactly as the same column given as text, and text is parsed per distinct value with the same result."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crmscore.data.attributes import coerce_attribute

COLUMNS = {
    "labels": ["basic", "premium", None, "basic"],
    "integers": ["1", "2", None, "3"],
    "one_bad_number": ["1", "x", None, "3"],
    "codes_with_leading_zeros": ["01", "02", "3", "02"],
    "decimals_and_markers": ["1.5", "2", " NA ", "?"],
    "infinite": ["1", "inf", "2", "3"],
    "empty": [None, None, None, None],
}


def _plain(series: pd.Series) -> list:
    return [None if pd.isna(v) else v for v in series.astype(object)]


@pytest.mark.parametrize("declared", [None, "numeric"])
@pytest.mark.parametrize("name", sorted(COLUMNS))
def test_categories_are_typed_as_the_same_text(name, declared):
    text = pd.Series(COLUMNS[name], dtype=object)
    as_text = coerce_attribute(text, declared)
    as_categories = coerce_attribute(text.astype("category"), declared)
    assert np.array_equal(as_categories[1], as_text[1]) and as_categories[2] == as_text[2]
    if isinstance(as_text[0].dtype, pd.CategoricalDtype):
        assert isinstance(as_categories[0].dtype, pd.CategoricalDtype)
        assert _plain(as_categories[0].astype(object).str.strip()) == _plain(as_text[0])
    else:
        assert as_categories[0].dtype == as_text[0].dtype and _plain(as_categories[0]) == _plain(as_text[0])


def test_text_is_parsed_per_distinct_value_with_the_rule_per_cell():
    numbers, bad, rule = coerce_attribute(pd.Series(["7", " 7 ", "x", "", "NA", "x", None] * 3), "numeric")
    assert _plain(numbers) == [7.0, 7.0, None, None, None, None, None] * 3
    assert bad.tolist() == [False, False, True, False, False, True, False] * 3
    assert "not a number" in rule
    typed, bad, _ = coerce_attribute(pd.Series(["3", "4", None, "n/a"] * 1000))
    assert str(typed.dtype) == "Int64" and not bad.any() and typed.sum() == 7000
