"""CSV files as exports write them: other encodings, a byte-order mark, other separators, CRLF line ends and
quoted fields holding the separator; a wrong setting says which setting, in one line."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import MAX_DATE
from crmscore.config import DataSettings, settings_from_dict
from crmscore.data.load import load_tables
from crmscore.data.stream import StreamedInput
from crmscore.errors import DataError, SettingsError

CUSTOMERS = (
    'customer_id,signup_date,city\r\n1,2024-01-05,München\r\n2,2024-02-01,"Paris, 11e"\r\n3,2024-03-01,Zürich\r\n'
)
TRANSACTIONS = "customer_id;date;amount;product;quantity\n1;2024-02-01;10.5;books;1\n2;2024-03-01;20;toys;2\n"


def _settings(**data) -> DataSettings:
    return DataSettings(max_date=MAX_DATE, **data)


def _write(folder, name, text, encoding):
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(text.encode(encoding))


def test_latin1_fails_with_the_line_and_the_setting_then_loads_with_it(tmp_path):
    _write(tmp_path, "customers.csv", CUSTOMERS, "latin-1")
    with pytest.raises(DataError) as caught:
        load_tables(tmp_path, _settings())
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'customers.csv'}: line 2: byte 0xfc is not utf-8 text; set data.encoding")
    assert "\n" not in message
    loaded = load_tables(tmp_path, _settings(encoding="latin-1"))
    assert loaded.tables["customers"]["city"].tolist() == ["München", "Paris, 11e", "Zürich"]  # quoted separator


def test_a_byte_order_mark_and_crlf_line_ends_are_read_as_plain_utf8(tmp_path):
    _write(tmp_path, "customers.csv", CUSTOMERS, "utf-8-sig")
    assert (tmp_path / "customers.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    customers = load_tables(tmp_path, _settings()).tables["customers"]
    assert list(customers.columns[:2]) == ["customer_id", "signup_date"]  # no BOM glued to the first name
    assert customers["customer_id"].tolist() == [1, 2, 3] and customers["city"].iloc[2] == "Zürich"


def test_another_separator_is_named_with_the_setting_that_fixes_it(tmp_path):
    _write(tmp_path, "customers.csv", CUSTOMERS, "utf-8")
    _write(tmp_path, "transactions.csv", TRANSACTIONS, "utf-8")
    with pytest.raises(
        DataError,
        match=r"transactions.csv: column 'customer_id': required column is missing \(looks like "
        r"';'-separated: set data.csv_separator: ';'\); columns found: customer_id;date;amount",
    ):
        load_tables(tmp_path, _settings())
    semicolons = tmp_path / "semi"
    _write(semicolons, "customers.csv", CUSTOMERS.replace(",", ";").replace('"Paris; 11e"', '"Paris, 11e"'), "utf-8")
    _write(semicolons, "transactions.csv", TRANSACTIONS, "utf-8")
    loaded = load_tables(semicolons, _settings(csv_separator=";"))
    assert loaded.tables["transactions"]["amount"].tolist() == [10.5, 20.0]
    assert loaded.tables["customers"]["city"].iloc[1] == "Paris, 11e"


def test_scoring_input_streams_other_encodings_too(tmp_path):
    _write(tmp_path, "customers.csv", CUSTOMERS, "cp1252")
    _write(tmp_path, "transactions.csv", TRANSACTIONS.replace(";", ","), "cp1252")
    with StreamedInput(tmp_path, _settings(encoding="cp1252"), pd.Timestamp("2024-06-30"), 2) as streamed:
        chunks = list(streamed)
    assert sum(len(c["customers"]) for c in chunks) == 3
    assert sum(len(c["transactions"]) for c in chunks) == 2
    with pytest.raises(DataError, match="line 2: byte 0xfc is not utf-8 text"):
        StreamedInput(tmp_path, _settings(), pd.Timestamp("2024-06-30"), 2)


def test_an_unknown_encoding_is_a_settings_error():
    with pytest.raises(SettingsError, match=r"data.encoding: unknown text encoding 'latin-11'"):
        settings_from_dict({"data": {"encoding": "latin-11"}})
