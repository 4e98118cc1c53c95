"""Every case of the bad-input corpus (tests/corpus/generate.py) through the CLI: the exit code, one line
(no traceback) naming the problem, and for row-level problems rows in = kept + rejected with the reason."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent / "corpus"))

from generate import CASES, Case, generate  # noqa: E402

from crmscore.cli import app  # noqa: E402

runner = CliRunner()
AREAS = {"contract", "encoding", "plausibility", "scoring"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    return generate(tmp_path_factory.mktemp("corpus"))


def test_the_corpus_covers_every_area_with_forty_cases_or_more():
    assert len(CASES) >= 40
    assert len({case.name for case in CASES}) == len(CASES)
    assert {case.area for case in CASES} >= {"contract", "encoding", "plausibility"}
    assert {case.area for case in CASES} <= AREAS
    assert all(case.exit_code in (0, 2) for case in CASES)


def _invoke(case: Case, folder: Path):
    out = folder / "out"
    return runner.invoke(
        app, [case.command, "--input", str(folder / "in"), "--out", str(out), "--params", str(folder / "params.yaml")]
    )


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_corpus_case(case: Case, corpus):
    folder = corpus[case.name]
    result = _invoke(case, folder)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert result.exit_code == case.exit_code, result.output
    if case.exit_code:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith("error: ")
        assert re.search(case.message, lines[0]), lines[0]
        return
    if case.message:
        assert any(re.search(case.message, line) for line in result.output.splitlines()), result.output
    summary = json.loads((folder / "out" / "validation.json").read_text())["tables"]
    for table, report in summary.items():
        assert report["rows_in"] == report["rows_kept"] + report["rows_rejected"], table
        rejects = pd.read_parquet(folder / "out" / "rejects" / f"{table}.parquet")
        assert len(rejects) == report["rows_rejected"]
        if table in case.rejected:
            assert report["rows_rejected"] > 0
            assert rejects["reason"].str.contains(case.rejected[table], regex=False).all(), rejects["reason"].unique()
        elif "customers" in case.rejected and table != "customers":
            # Rows of a rejected (or re-identified) customer go with it.
            assert set(report["reasons"]) <= {
                "customer_id: unknown customer",
                "customer_id: customer rejected in customers",
            }
        else:
            assert report["rows_rejected"] == 0, (table, report["reasons"])
        if table in case.flagged:
            assert report["warnings"] and all(case.flagged[table] in reason for reason in report["warnings"])
            assert f"kept but flagged: {next(iter(report['warnings']))}" in result.output
        else:
            assert not report["warnings"], (table, report["warnings"])
