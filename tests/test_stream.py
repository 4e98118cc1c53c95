"""Streamed input (`crmscore.data.stream`): the chunks, rejects and counts equal those of tables loaded whole."""

from __future__ import annotations

import pandas as pd
import pytest
from tests.conftest import MAX_DATE, write_layout

from crmscore.config import DataSettings
from crmscore.data.load import load_tables, write_tables
from crmscore.data.stream import StreamedInput, last_event_date
from crmscore.errors import DataError
from crmscore.scoring import customer_chunks
from crmscore.stages import scoring_as_of

SETTINGS = DataSettings(max_date=str(MAX_DATE))
AS_OF = pd.Timestamp("2026-03-31")


def _corrupted(small_sim) -> dict[str, pd.DataFrame]:
    tables = {name: df.copy() for name, df in small_sim.tables().items()}
    tx = tables["transactions"]
    tx.loc[5, "amount"] = -3.0
    tx.loc[9, "date"] = pd.Timestamp("2031-01-01")
    tables["transactions"] = pd.concat([tx, tx.iloc[[0]].assign(customer_id=99_999_999)], ignore_index=True)
    return tables


@pytest.mark.parametrize(
    ("layout", "reader"), [("sorted parquet", "_RowGroups"), ("shuffled parquet", "_Spilled"), ("csv", "_Spilled")]
)
@pytest.mark.parametrize("chunk_size", [137, 10**6])
def test_chunks_rejects_and_counts_equal_the_whole_table_loader(small_sim, tmp_path, layout, reader, chunk_size):
    write_layout(_corrupted(small_sim), tmp_path / "in", layout)
    whole = load_tables(tmp_path / "in", SETTINGS)
    expected = list(customer_chunks(whole.tables, AS_OF, chunk_size))
    with StreamedInput(tmp_path / "in", SETTINGS, AS_OF, chunk_size, spill_dir=tmp_path) as streamed:
        assert type(streamed._readers["transactions"]).__name__ == reader
        got = list(streamed)
        assert len(got) == len(streamed) == len(expected) >= 1
        for mine, theirs in zip(got, expected, strict=True):
            assert set(mine) == set(theirs)
            for name in theirs:
                # Categorical columns hold only the chunk's categories when streamed; the values are equal.
                pd.testing.assert_frame_equal(
                    mine[name].reset_index(drop=True), theirs[name].reset_index(drop=True), check_categorical=False
                )
        for name, rejects in whole.rejects.items():
            pd.testing.assert_frame_equal(streamed.rejects[name], rejects.reset_index(drop=True))
        reports = {name: report.as_dict() for name, report in streamed.reports.items()}
        assert reports == {name: report.as_dict() for name, report in whole.reports.items()}
        assert streamed.reports["transactions"].rows_rejected == 3
        with pytest.raises(RuntimeError, match="read once"):
            next(iter(streamed))
    assert not list(tmp_path.glob("crmscore-stream-*"))


def test_mapped_csv_columns_stream_like_the_whole_table_loader(small_sim, tmp_path):
    tables = _corrupted(small_sim)
    tables["transactions"] = tables["transactions"].rename(columns={"customer_id": "client", "amount": "total"})
    write_tables(tables, tmp_path / "in", "csv")
    settings = DataSettings(
        max_date=str(MAX_DATE), tables={"transactions": {"columns": {"customer_id": "client", "amount": "total"}}}
    )
    whole = load_tables(tmp_path / "in", settings)
    with StreamedInput(tmp_path / "in", settings, AS_OF, 250) as streamed:
        kept = pd.concat([chunk["transactions"] for chunk in streamed], ignore_index=True)
        rejects = streamed.rejects["transactions"]
    known = whole.tables["customers"].loc[whole.tables["customers"]["signup_date"] <= AS_OF, "customer_id"]
    expected = whole.tables["transactions"].loc[whole.tables["transactions"]["customer_id"].isin(known)]
    pd.testing.assert_frame_equal(
        kept.sort_values(["customer_id", "date"], kind="stable", ignore_index=True),
        expected.sort_values(["customer_id", "date"], kind="stable", ignore_index=True),
        check_categorical=False,
    )
    pd.testing.assert_frame_equal(rejects, whole.rejects["transactions"])


def test_missing_column_is_one_line_naming_file_and_column(small_sim, tmp_path):
    tables = small_sim.tables()
    tables["payments"] = tables["payments"].drop(columns=["amount_paid"])
    write_tables(tables, tmp_path / "in", "csv")
    with pytest.raises(DataError, match=r"payments\.csv: column 'amount_paid': required column is missing"):
        StreamedInput(tmp_path / "in", SETTINGS, AS_OF, 100)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_last_event_date_is_the_whole_table_scoring_date(small_sim, tmp_path, fmt):
    tables = _corrupted(small_sim)  # holds a future date, which validation rejects and the date ignores
    write_tables(tables, tmp_path / "in", fmt)
    expected = scoring_as_of(load_tables(tmp_path / "in", SETTINGS).tables)
    assert last_event_date(tmp_path / "in", SETTINGS) == expected
    assert expected < pd.Timestamp("2031-01-01")
