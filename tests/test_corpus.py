"""Every case of the bad-input corpus (tests/corpus/generate.py) through the CLI: the exit code, one line
(no traceback) naming the problem, and for row-level problems rows in = kept + rejected with the reason."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent / "corpus"))

from generate import CASES, SCORING_CASES, Case, generate  # noqa: E402

from conftest import champions  # noqa: E402
from crmscore.cli import app  # noqa: E402

runner = CliRunner()
AREAS = {"contract", "encoding", "plausibility", "scoring"}
CASCADED = {"customer_id: unknown customer", "customer_id: customer rejected in customers"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    return generate(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def scoring_corpus(tmp_path_factory) -> dict[str, Path]:
    """The scoring cases, written from the tables tiny churn, CLV and segments champions were trained on."""
    root = tmp_path_factory.mktemp("scoring_corpus")
    budget = {"trials": 1, "timeout_seconds": 600, "max_trees": 60}
    (root / "workspace").mkdir()
    with champions(root / "workspace", budget, churn_cutoffs=2) as made:
        yield generate(root / "cases", SCORING_CASES, made.tables, made.settings.model_dump(mode="json"))


def test_the_corpus_covers_every_area_with_forty_cases_or_more():
    everything = [*CASES, *SCORING_CASES]
    assert len(everything) >= 40
    assert len({case.name for case in everything}) == len(everything)
    assert {case.area for case in everything} == AREAS
    assert all(case.exit_code in (0, 2) for case in everything)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_corpus_case(case: Case, corpus):
    assert _check(case, corpus[case.name]) == case.exit_code


@pytest.mark.slow
@pytest.mark.parametrize("case", SCORING_CASES, ids=[case.name for case in SCORING_CASES])
def test_scoring_corpus_case(case: Case, scoring_corpus):
    assert _check(case, scoring_corpus[case.name]) == case.exit_code


def _invoke(case: Case, folder: Path):
    out = folder / "out"
    command = [case.command, "--input", str(folder / "in"), "--out", str(out), "--params", str(folder / "params.yaml")]
    if not case.locked:
        return runner.invoke(app, [*command, *case.args])
    # Another process holds the folder's lock while the command runs.
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(out / "as_of=2026-10-31")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        return runner.invoke(app, [*command, *case.args])
    finally:
        holder.communicate("", timeout=60)


_HOLD = """
import sys
from crmscore.locks import folder_lock
with folder_lock(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.read()
"""


def _check(case: Case, folder: Path) -> int:
    """Run ``case`` through the CLI and check its answer (see the module docstring); return its exit code."""
    result = _invoke(case, folder)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert result.exit_code == case.exit_code, result.output
    if case.exit_code:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith("error: ")
        assert re.search(case.message, lines[0]), lines[0]
        return result.exit_code
    if case.message:
        assert any(re.search(case.message, line) for line in result.output.splitlines()), result.output
    if case.command == "score":
        _check_scoring(case, folder / "out" / "as_of=2026-10-31")
    else:
        _check_validation(case, folder / "out", result.output)
    return result.exit_code


def _check_validation(case: Case, out: Path, output: str) -> None:
    """rows in = kept + rejected per table, the rejects carry the case's reason, the flagged rows are counted."""
    summary = json.loads((out / "validation.json").read_text())["tables"]
    for table, report in summary.items():
        assert report["rows_in"] == report["rows_kept"] + report["rows_rejected"], table
        rejects = pd.read_parquet(out / "rejects" / f"{table}.parquet")
        assert len(rejects) == report["rows_rejected"]
        if table in case.rejected:
            assert report["rows_rejected"] > 0
            assert rejects["reason"].str.contains(case.rejected[table], regex=False).all(), rejects["reason"].unique()
        elif "customers" in case.rejected and table != "customers":
            assert set(report["reasons"]) <= CASCADED  # rows of a rejected (or re-identified) customer go with it
        else:
            assert report["rows_rejected"] == 0, (table, report["reasons"])
        if table in case.flagged:
            assert report["warnings"] and all(case.flagged[table] in reason for reason in report["warnings"])
            assert f"kept but flagged: {next(iter(report['warnings']))}" in output
        else:
            assert not report["warnings"], (table, report["warnings"])


def _check_scoring(case: Case, scored: Path) -> None:
    """A scoring that went through: one row per known customer, the rejects counted in the manifest."""
    manifest = json.loads((scored / "manifest.json").read_text())
    scores = pd.read_parquet(scored / "scores.parquet")
    assert len(scores) == manifest["scored"] == manifest["customers_known"]
    inputs = {path.name.removesuffix(".csv"): path for path in (scored.parents[1] / "in").glob("*.csv")}
    assert set(manifest["rows_in"]) == set(manifest["rejected"]) == set(inputs)  # every table counted, none more
    for table, path in inputs.items():  # rows in: every row of the file, kept or rejected
        assert manifest["rows_in"][table] == len(pd.read_csv(path, dtype=str)), table
    for table, rows in manifest["rejected"].items():
        rejects = scored / "rejects" / f"{table}.parquet"
        assert (len(pd.read_parquet(rejects)) if rows else 0) == rows
        if table in case.rejected:
            reasons = pd.read_parquet(rejects)["reason"]
            assert rows > 0 and reasons.str.contains(case.rejected[table], regex=False).all(), reasons.unique()
        else:
            assert rows == 0, (table, rows)
    if not case.message:
        assert manifest["feature_checks"] == [] or all(c["kind"] != "unseen" for c in manifest["feature_checks"])
