"""Warehouse in, warehouse out: DuckDB and PostgreSQL as sources and sinks, against real databases.

DuckDB is a file database built from the simulated tables; PostgreSQL is a real server from Debian's
``postgresql`` package, started for this module in a temporary folder on a free port of 127.0.0.1, with a
password login (SCRAM), and stopped afterwards (the PostgreSQL tests skip, naming why, where it cannot run).
One trained workspace (1,500 simulated customers, tiny tuning budgets) serves every test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from tests.conftest import champions, hooked_crmscore, write_params
from tests.postgres_server import PASSWORD, postgres_server, unavailable
from typer.testing import CliRunner

from crmscore.cli import app
from crmscore.config import load_settings, settings_from_dict
from crmscore.data.load import load_tables, write_tables
from crmscore.data.sql import Database, load_input, quote_name
from crmscore.errors import DataError, SettingsError
from crmscore.stages import score_stage
from crmscore.warehouse import RUNS_TABLE, copy_tables, staging_tables

pytest.importorskip("duckdb", reason="duckdb is not installed (pip install 'crmscore[warehouse]')")
runner = CliRunner()
AS_OF = "2026-09-30"
EARLIER = "2026-06-30"
TABLES = ("customers", "transactions", "payments", "interactions")
BACKENDS = ("duckdb", "postgresql")


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """Champions trained on simulated files, in a temporary folder; its tables copied into databases lazily."""
    root = tmp_path_factory.mktemp("warehouse")
    budget = {"trials": 1, "timeout_seconds": 600, "max_trees": 80}
    scoring = {"out_dir": str(root / "reports" / "scores"), "chunk_size": 400, "workers": 1}
    with champions(root, budget, churn_cutoffs=2, scoring=scoring) as made:
        yield made


@pytest.fixture(scope="module")
def pg():
    """A PostgreSQL server for this module (skipped with the reason where none can start)."""
    why = unavailable()
    if why:
        pytest.skip(why)
    with postgres_server() as server, pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRMSCORE_DB_PASSWORD", server.password)
        yield server


def _database_url(request, ws, backend: str, name: str = "crm") -> str:
    """A database holding the workspace's simulated tables (four of them: no campaigns, so no uplift)."""
    if backend == "duckdb":
        return f"duckdb:///{ws.root / (name + '.duckdb')}"
    server = request.getfixturevalue("pg")
    return server.url()


@pytest.fixture(scope="module")
def databases(request, ws):
    """Per backend, the URL of a database with the simulated tables (PostgreSQL only where it runs)."""
    urls = {}
    for backend in BACKENDS:
        if backend == "postgresql" and unavailable():
            continue
        url = _database_url(request, ws, backend)
        copy_tables(ws.root / "sim", Database(url), {t: f"{t}.parquet" for t in TABLES})
        urls[backend] = url
    return urls


def _url(databases, backend: str) -> str:
    if backend not in databases:
        pytest.skip(f"PostgreSQL cannot run here: {unavailable()}")
    return databases[backend]


def _one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output and PASSWORD not in result.output
    return lines[0]


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    keys = [c for c in ("customer_id", "model", "rank") if c in frame.columns]
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


# --- sources ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def files_loaded(ws):
    return load_tables(ws.root / "sim", ws.settings.data)


@pytest.mark.parametrize("backend", BACKENDS)
def test_tables_from_a_database_validate_like_the_files(ws, databases, files_loaded, backend):
    loaded = load_input(_url(databases, backend), ws.settings.data)
    files = files_loaded
    assert set(loaded.tables) == set(TABLES)
    for table in TABLES:
        a, b = files.reports[table], loaded.reports[table]
        assert (a.rows_in, a.rows_kept, a.rows_rejected) == (b.rows_in, b.rows_kept, b.rows_rejected), table
        assert b.source.startswith(databases[backend]) and PASSWORD not in b.source
        x, y = _sorted(files.tables[table]), _sorted(loaded.tables[table])
        key = [c for c in x.columns if not isinstance(x[c].dtype, pd.CategoricalDtype)]
        x = x.sort_values(key, kind="stable").reset_index(drop=True)
        y = y.sort_values(key, kind="stable").reset_index(drop=True)
        pd.testing.assert_frame_equal(x, y, check_categorical=False, check_dtype=False)


def test_validate_takes_a_database_url(ws, databases, tmp_path):
    url = _url(databases, "duckdb")
    result = runner.invoke(app, ["validate", "--input", url, "--out", str(tmp_path), "--params", str(ws.params)])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "validation.json").read_text())
    assert {t: r["rows_in"] for t, r in summary["tables"].items()} == {t: len(ws.tables[t]) for t in TABLES}
    assert summary["tables"]["transactions"]["source"] == f"{url}: transactions"
    assert sorted(p.name for p in (tmp_path / "rejects").iterdir()) == sorted(f"{t}.parquet" for t in TABLES)


def test_bad_rows_in_a_database_are_rejected_with_their_key(ws, tmp_path):
    tables = {t: ws.tables[t].copy() for t in TABLES}
    tx = tables["transactions"]
    tx.loc[5, "amount"] = -3.0
    tx.loc[9, "customer_id"] = 99_999_999
    folder = tmp_path / "bad"
    write_tables(tables, folder)
    database = Database(f"duckdb:///{tmp_path / 'bad.duckdb'}")
    copy_tables(folder, database)
    files = load_tables(folder, ws.settings.data)
    loaded = load_input(database.url, ws.settings.data)
    want = files.rejects["transactions"].drop(columns="row_number").sort_values("customer_id", ignore_index=True)
    got = loaded.rejects["transactions"]
    assert list(got["reason"].sort_values()) == sorted(want["reason"])
    assert set(got["customer_id"]) == {str(tx.loc[5, "customer_id"]), "99999999"}
    assert {"date", "amount", "product", "row_number"} <= set(got.columns)  # the row as read, its key with it
    assert loaded.reports["transactions"].rows_in == len(tx)


# --- scoring from a database --------------------------------------------------------------------------------


def _scoring_settings(ws, workers: int):
    return ws.settings.model_copy(
        update={"scoring": ws.settings.scoring.model_copy(update={"workers": workers, "chunk_size": 300})}
    )


@pytest.fixture(scope="module")
def file_scoring(ws, tmp_path_factory):
    """The scoring of the files as of AS_OF, in chunks of 300 customers."""
    out = tmp_path_factory.mktemp("files")
    return score_stage(_scoring_settings(ws, 1), AS_OF, input_dir=ws.root / "sim", out_dir=out, progress=False)


@pytest.mark.parametrize(("backend", "workers"), [("duckdb", 1), ("postgresql", 2)])
def test_scores_from_a_database_equal_the_files(ws, databases, file_scoring, backend, workers, tmp_path):
    url = _url(databases, backend)
    from_db = score_stage(_scoring_settings(ws, workers), AS_OF, input_dir=url, out_dir=tmp_path, progress=False)
    for name in ("scores.parquet", "explanations.parquet"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(file_scoring.out_dir / name), pd.read_parquet(from_db.out_dir / name), obj=name
        )
    rows_in = file_scoring.manifest["rows_in"]
    assert from_db.manifest["rows_in"] == {t: rows_in[t] for t in TABLES}  # the database has no campaigns table
    assert from_db.manifest["chunks"] > 1 and from_db.manifest["workers"] == workers


# --- sinks ------------------------------------------------------------------------------------------------


def _read_table(url: str, sql: str) -> pd.DataFrame:
    with Database(url).connect() as con:
        return con.arrow(sql).to_pandas()


@pytest.fixture(scope="module")
def sunk(ws, databases, tmp_path_factory):
    """Per backend: two scorings (EARLIER, then AS_OF) written into the table ``scores_<backend>``."""
    out = {}
    for backend, url in databases.items():
        folder = tmp_path_factory.mktemp(f"sunk_{backend}")
        table = f"scores_{backend}"
        runs = [
            score_stage(ws.settings, when, out_dir=folder, progress=False, output_url=url, output_table=table)
            for when in (EARLIER, AS_OF)
        ]
        out[backend] = (url, table, folder, runs)
    return out


def _sunk(sunk, backend: str):
    if backend not in sunk:
        pytest.skip(f"PostgreSQL cannot run here: {unavailable()}")
    return sunk[backend]


@pytest.mark.parametrize("backend", BACKENDS)
def test_scores_go_into_tables_with_their_run(ws, sunk, backend):
    url, table, _, (first, result) = _sunk(sunk, backend)
    assert result.warehouse.table == table and result.warehouse.rows == result.scored
    scores = _read_table(url, f"SELECT * FROM {table} ORDER BY as_of, customer_id")
    counts = scores.groupby(scores["as_of"].astype(str)).size().to_dict()
    assert counts == {EARLIER: first.scored, AS_OF: result.scored}
    files = pd.read_parquet(result.out_dir / "scores.parquet")
    mine = scores[scores["as_of"].astype(str) == AS_OF].reset_index(drop=True)
    assert list(mine.columns) == list(files.columns)
    assert mine["customer_id"].tolist() == files["customer_id"].tolist()
    for column in ("churn_probability", "clv", "value_at_risk", "points"):
        pd.testing.assert_series_equal(mine[column], files[column], check_names=False)
    for column in ("tier", "risk_band", "segment", "action", "lifecycle_stage"):
        assert mine[column].tolist() == files[column].tolist(), column
    assert (mine["churn_model_version"] == ws.trained["churn"].version).all()
    reasons = _read_table(url, f"SELECT as_of, count(*) AS n FROM {table}_reasons GROUP BY as_of ORDER BY as_of")
    assert reasons["n"].tolist() == [first.manifest["explanations"], result.manifest["explanations"]]
    runs = _read_table(url, f"SELECT * FROM {RUNS_TABLE} WHERE scores_table = '{table}' ORDER BY as_of")
    assert runs["as_of"].astype(str).tolist() == [EARLIER, AS_OF]
    assert runs["scored"].tolist() == [first.scored, result.scored]
    assert runs["churn_model_version"].tolist() == [ws.trained["churn"].version] * 2
    manifest = json.loads(runs["manifest"].iloc[-1])
    assert manifest == json.loads((result.out_dir / "manifest.json").read_text())
    assert all(PASSWORD not in str(v) for v in runs.to_numpy().ravel())
    with Database(url).connect() as con:
        assert staging_tables(con) == []


def _scored_rows(url: str, table: str) -> dict[str, int]:
    frame = _read_table(url, f"SELECT as_of, count(*) AS n FROM {quote_name(table)} GROUP BY as_of")
    return dict(zip(frame["as_of"].astype(str), frame["n"], strict=True))


@pytest.mark.parametrize(
    ("backend", "function", "body"),
    [
        ("duckdb", "_before_commit", "os.kill(os.getpid(), signal.SIGKILL)"),
        # Mid-transaction: the scores already replaced (uncommitted) when the reasons are about to be.
        ("postgresql", "_replace", "if args[1].endswith('_reasons'):\n    os.kill(os.getpid(), signal.SIGKILL)"),
    ],
)
def test_a_killed_rerun_leaves_the_previous_scoring_and_the_next_replaces_it(ws, sunk, backend, function, body):
    url, table, folder, (first, result) = _sunk(sunk, backend)
    before = _scored_rows(url, table)
    reasons_before = _scored_rows(url, f"{table}_reasons")
    args = ["score", "--as-of", AS_OF, "--out", str(folder), "--params", str(ws.params)]
    args += ["--output-url", url, "--table", table]
    killed = subprocess.run(
        [*hooked_crmscore(folder, "warehouse", function, body), *args],
        capture_output=True,
        text=True,
        cwd=ws.root,
        env={**os.environ, "CRMSCORE_DB_PASSWORD": PASSWORD},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert _scored_rows(url, table) == before  # the previous scoring, whole
    assert _scored_rows(url, f"{table}_reasons") == reasons_before
    with Database(url).connect() as con:
        assert staging_tables(con), "the kill came after the staging tables were loaded"
    again = runner.invoke(app, args)  # the same as-of again: replaced, not added; the staged leftovers dropped
    assert again.exit_code == 0, again.output
    assert _scored_rows(url, table) == before and _scored_rows(url, f"{table}_reasons") == reasons_before
    runs = _read_table(url, f"SELECT as_of FROM {RUNS_TABLE} WHERE scores_table = '{table}'")
    assert sorted(runs["as_of"].astype(str)) == [EARLIER, AS_OF]
    with Database(url).connect() as con:
        assert staging_tables(con) == []


# --- one-line errors -----------------------------------------------------------------------------------------


def test_wrong_password_is_one_line(ws, databases, monkeypatch, tmp_path):
    url = _url(databases, "postgresql")
    monkeypatch.setenv("CRMSCORE_DB_PASSWORD", "not-the-password")
    line = _one_error_line(runner.invoke(app, ["validate", "--input", url, "--out", str(tmp_path)]))
    assert "password authentication failed" in line and "127.0.0.1" in line and "'crm'" in line
    assert "not-the-password" not in line


def test_closed_port_is_one_line_naming_host_and_database(ws, tmp_path):
    url = "postgresql://crmscore@127.0.0.1:1/sales"
    line = _one_error_line(runner.invoke(app, ["validate", "--input", url, "--out", str(tmp_path)]))
    assert "host 127.0.0.1 port 1, database 'sales'" in line and "refused" in line


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_table_and_column_are_one_line(ws, databases, backend, tmp_path):
    url = _url(databases, backend)
    params = tmp_path / "params.yaml"
    settings = ws.settings.model_copy(deep=True)
    settings.data.sql.tables["payments"] = "billing.invoices"
    write_params(settings, params)
    line = _one_error_line(
        runner.invoke(app, ["validate", "--input", url, "--out", str(tmp_path), "--params", str(params)])
    )
    assert "data.sql.tables.payments" in line and "billing.invoices" in line and "not found" in line
    settings.data.sql.tables["payments"] = "SELECT customer_id, due_date FROM payments"
    write_params(settings, params)
    line = _one_error_line(
        runner.invoke(app, ["validate", "--input", url, "--out", str(tmp_path), "--params", str(params)])
    )
    assert "payments" in line and "column 'amount_due': required column is missing" in line


def test_a_password_in_the_url_is_refused_without_echoing_it(ws, tmp_path):
    url = "postgresql://crmscore:hunter2@127.0.0.1:5432/crm"
    line = _one_error_line(runner.invoke(app, ["validate", "--input", url, "--out", str(tmp_path)]))
    assert "password" in line and "hunter2" not in line
    with pytest.raises(SettingsError, match="password") as raised:
        settings_from_dict({"data": {"source": "sql", "sql": {"url": url}}})
    assert "hunter2" not in str(raised.value)


def test_missing_duckdb_file_is_one_line(ws, tmp_path):
    with pytest.raises(DataError, match="cannot open the DuckDB database"):
        load_input(f"duckdb:///{tmp_path / 'nothing.duckdb'}", ws.settings.data)


# --- end to end ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_run_reads_postgresql_and_score_writes_it(ws, databases, tmp_path):
    """`crmscore run` on PostgreSQL trains the models the files train, and `crmscore score` from PostgreSQL
    into PostgreSQL gives the scores of the files."""
    url = _url(databases, "postgresql")
    settings = ws.settings.model_copy(deep=True)
    settings.paths.models_dir = str(tmp_path / "models")
    settings.paths.reports_dir = str(tmp_path / "reports")
    settings.scoring.out_dir = str(tmp_path / "scores")
    settings.data.sql.url = url
    settings.data.source = "sql"
    params = write_params(settings, tmp_path / "params.yaml")
    assert load_settings(params).data.sql.url == url
    run = runner.invoke(app, ["run", "--params", str(params)])
    assert run.exit_code == 0, run.output
    assert PASSWORD not in run.output
    mlflow_db = Path(settings.paths.models_dir) / "mlflow.db"
    assert PASSWORD.encode() not in mlflow_db.read_bytes()
    validation = json.loads((tmp_path / "reports" / "validation" / "validation.json").read_text())
    assert {t: r["rows_in"] for t, r in validation["tables"].items()} == {t: len(ws.tables[t]) for t in TABLES}
    for role in ("churn", "clv"):
        assert f"crmscore-{role}" in run.output
    scored = runner.invoke(
        app, ["score", "--as-of", AS_OF, "--params", str(params), "--output-url", url, "--table", "e2e_scores"]
    )
    assert scored.exit_code == 0, scored.output
    assert "e2e_scores" in scored.output
    from_files = score_stage(load_settings(params), AS_OF, input_dir=ws.root / "sim", out_dir=tmp_path / "f")
    in_db = _read_table(url, f"SELECT * FROM e2e_scores WHERE as_of = DATE '{AS_OF}' ORDER BY customer_id")
    files = pd.read_parquet(from_files.out_dir / "scores.parquet")
    assert in_db["customer_id"].tolist() == files["customer_id"].tolist()
    for column in ("churn_probability", "clv", "value_at_risk", "points"):
        pd.testing.assert_series_equal(in_db[column], files[column], check_names=False)
    for column in ("tier", "risk_band", "segment", "action"):
        assert in_db[column].tolist() == files[column].tolist(), column


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_readme_dashboard_sql_runs_on_the_scores_table(sunk, backend):
    """The dashboard queries of the README, on the scores written here: one row per tier × band, and the
    value at risk by segment adds up to the table's."""
    import re

    url, table, _, (_, result) = _sunk(sunk, backend)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("What a dashboard runs on the scores table", 1)[1].split("```sql", 1)[1].split("```", 1)[0]
    queries = [q for q in block.split(";") if q.strip() and "SELECT" in q]
    assert len(queries) == 3
    replaced = [
        re.sub(r"'analytics\.crm_scores'", f"'{table}'", q).replace("analytics.crmscore_runs", RUNS_TABLE)
        for q in queries
    ]
    replaced = [q.replace("analytics.crm_scores", table) for q in replaced]
    by_tier, by_segment, runs = (_read_table(url, q) for q in replaced)
    scores = pd.read_parquet(result.out_dir / "scores.parquet")
    assert by_tier["customers"].sum() == len(scores)
    assert len(by_tier) == len(scores.groupby(["tier", "risk_band"], dropna=False))
    assert by_segment["value_at_risk"].sum() == pytest.approx(scores["value_at_risk"].sum())
    assert by_segment["share_of_value_at_risk"].sum() == pytest.approx(1.0)
    assert str(runs["as_of"].iloc[0]) == AS_OF
