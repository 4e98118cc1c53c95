"""Batch scoring (`crmscore score`): outputs, registry versions, chunking, atomic writes, tier migration, bad input.

Most tests share one trained workspace (module scope): 1,500 simulated customers, then churn, CLV and
segments trained with tiny budgets and registered in a SQLite MLflow store under a temporary folder.
The CLV model is pinned to the ML model (``clv.model: ml``) so that both models give SHAP reasons; the
BG/NBD version is still registered (as version 1), which lets a test pin a non-champion version.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from tests.conftest import champions, visible, write_layout, write_params
from typer.testing import CliRunner

from crmscore import scoring, tiers, tracking
from crmscore.cli import app
from crmscore.config import Settings, load_settings
from crmscore.data.load import load_tables, write_tables
from crmscore.errors import DataError
from crmscore.explain import REASON_COLUMNS
from crmscore.scoring import SCORE_COLUMNS, atomic_dir, customer_chunks, previous_scoring, scoring_dir
from crmscore.stages import (
    CHURN_MODEL_NAME,
    CLV_MODEL_NAME,
    SEGMENTS_MODEL_NAME,
    TrainResult,
    score_stage,
    simulate_stage,
)

runner = CliRunner()
CRMSCORE = [sys.executable, "-m", "crmscore.cli"]
TABLES = ("customers", "transactions", "payments", "interactions")
MAX_DATE = "2026-11-23"  # the simulated history ends 2026-10-31; nothing is future-dated whatever the calendar
AS_OF = "2026-09-30"  # some customers sign up later, so "known on the as-of date" is a real filter
EARLIER = "2026-06-30"
MODEL_NAMES = {"churn": CHURN_MODEL_NAME, "clv": CLV_MODEL_NAME, "segments": SEGMENTS_MODEL_NAME}


# --- the shared trained workspace ---------------------------------------------------------------------


@dataclasses.dataclass
class Workspace:
    root: Path
    settings: Settings
    params: Path
    trained: dict[str, TrainResult]
    tables: dict[str, pd.DataFrame]

    def known(self, as_of: str) -> set[int]:
        customers = self.tables["customers"]
        return set(customers.loc[customers["signup_date"] <= pd.Timestamp(as_of), "customer_id"].tolist())


@dataclasses.dataclass
class Scoring:
    folder: Path
    scores: pd.DataFrame
    explanations: pd.DataFrame
    manifest: dict
    migration: pd.DataFrame


def _read(folder: Path) -> Scoring:
    return Scoring(
        folder=folder,
        scores=pd.read_parquet(folder / "scores.parquet"),
        explanations=pd.read_parquet(folder / "explanations.parquet"),
        manifest=json.loads((folder / "manifest.json").read_text()),
        migration=pd.read_csv(folder / "tier_migration.csv", index_col=0),
    )


def _with_scoring(settings: Settings, **changes) -> Settings:
    return settings.model_copy(update={"scoring": settings.scoring.model_copy(update=changes)})


def _score(settings: Settings, out: Path, as_of: str = AS_OF, **kwargs) -> Scoring:
    result = score_stage(settings, as_of, out_dir=out, progress=False, **kwargs)
    assert result.out_dir == scoring_dir(out, pd.Timestamp(as_of))
    return _read(result.out_dir)


def _invoke(ws: Workspace, *args: str):
    return runner.invoke(app, ["score", *args, "--params", str(ws.params)])


def _one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """Simulated input and registered churn, CLV and segments champions, every path in a temporary folder."""
    root = tmp_path_factory.mktemp("scoring")
    budget = {"trials": 2, "timeout_seconds": 600, "max_trees": 150}
    with champions(root, budget, scoring={"out_dir": str(root / "reports" / "scores")}) as made:
        yield Workspace(root, made.settings, made.params, made.trained, made.tables)


@pytest.fixture(scope="module")
def scored(ws, tmp_path_factory) -> Scoring:
    """One scoring with the champions as of AS_OF (read into memory)."""
    return _score(ws.settings, tmp_path_factory.mktemp("scored"))


# --- pure helpers (no models) ------------------------------------------------------------------------------


def test_customer_chunks_cover_each_known_customer_once_with_all_their_rows(small_sim):
    tables = small_sim.tables()
    as_of = pd.Timestamp("2025-06-30")
    customers = tables["customers"]
    known = np.sort(customers.loc[customers["signup_date"] <= as_of, "customer_id"].to_numpy())
    assert 0 < len(known) < len(customers)
    chunks = list(customer_chunks(tables, as_of, 137))
    assert [len(c["customers"]) for c in chunks[:-1]] == [137] * (len(chunks) - 1)
    assert len(chunks) == -(-len(known) // 137)
    ids = np.concatenate([c["customers"]["customer_id"].to_numpy() for c in chunks])
    np.testing.assert_array_equal(ids, known)
    for name in ("transactions", "payments", "interactions"):
        table = tables[name]
        for chunk in chunks:
            mine = set(chunk["customers"]["customer_id"])
            assert set(chunk[name]["customer_id"]) <= mine
        got = sum(len(c[name]) for c in chunks)
        assert got == int(table["customer_id"].isin(known).sum()), name
    with pytest.raises(ValueError, match="chunk_size 0"):
        next(customer_chunks(tables, as_of, 0))


def test_atomic_dir_replaces_whole_or_leaves_target_untouched(tmp_path):
    target = tmp_path / "out" / "as_of=2026-01-31"
    with atomic_dir(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".") and not target.exists()
        (tmp / "a.txt").write_text("first")
        (tmp / "stale.txt").write_text("only in the first run")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt", "stale.txt"]

    with pytest.raises(RuntimeError, match="killed"), atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("partial")
        raise RuntimeError("killed")
    assert (target / "a.txt").read_text() == "first"
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no temporary folder left

    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("second")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]  # replaced whole: nothing stale survives
    assert (target / "a.txt").read_text() == "second"
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_atomic_dir_gives_the_folder_the_usual_permissions(tmp_path):
    """The scoring folder is readable like any folder the user creates (umask), not private like a temp dir."""
    target = tmp_path / "out" / "as_of=2026-01-31"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("x")
    (tmp_path / "plain").mkdir()
    assert target.stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777


def test_previous_scoring_is_the_latest_earlier_complete_one(tmp_path):
    assert previous_scoring(tmp_path / "missing", pd.Timestamp("2026-01-31")) is None
    for name in ("as_of=2025-12-31", "as_of=2025-11-30", "as_of=2026-03-31"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "scores.parquet").write_bytes(b"")
    (tmp_path / "as_of=2026-01-15").mkdir()  # no scores.parquet: not a finished scoring
    (tmp_path / ".as_of=2026-01-20.abc.tmp").mkdir()  # left by a killed run
    (tmp_path / "as_of=not-a-date").mkdir()
    (tmp_path / "as_of=not-a-date" / "scores.parquet").write_bytes(b"")
    assert previous_scoring(tmp_path, pd.Timestamp("2026-01-31")) == tmp_path / "as_of=2025-12-31"
    assert previous_scoring(tmp_path, pd.Timestamp("2025-12-31")) == tmp_path / "as_of=2025-11-30"
    assert previous_scoring(tmp_path, pd.Timestamp("2025-11-30")) is None


# --- command-line errors that need no models -----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--as-of", "2026-13-01"], "error: --as-of: expected a date as YYYY-MM-DD, got '2026-13-01'"),
        (["--as-of", "yesterday"], "error: --as-of: expected a date as YYYY-MM-DD, got 'yesterday'"),
        (
            ["--as-of", AS_OF, "--model-version", "churn=x"],
            "error: --model-version: expected churn=N, clv=N, segments=N or uplift=N, got 'churn=x'",
        ),
        (
            ["--as-of", AS_OF, "--model-version", "price=1"],
            "error: --model-version: expected churn=N, clv=N, segments=N or uplift=N, got 'price=1'",
        ),
        (
            ["--as-of", AS_OF, "--model-version", "churn"],
            "error: --model-version: expected churn=N, clv=N, segments=N or uplift=N, got 'churn'",
        ),
    ],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["score", *args, "--out", str(tmp_path / "out")])
    assert _one_error_line(result) == message
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_no_champion_exit_2_says_how_to_train_or_promote(tmp_path):
    """A fresh model store: one line on stderr naming the commands, no traceback (a real process)."""
    settings = Settings(
        paths={
            "models_dir": str(tmp_path / "models"),
            "reports_dir": str(tmp_path / "reports"),
            "simulated_dir": str(tmp_path / "sim"),
        },
        data={"max_date": MAX_DATE},
        simulate={"customers": 200, "seed": 1},
    )
    simulate_stage(settings)
    params = write_params(settings, tmp_path / "params.yaml")
    env = {k: v for k, v in os.environ.items() if k not in {"MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"}}
    result = subprocess.run(
        CRMSCORE + ["score", "--as-of", AS_OF, "--out", "out", "--params", str(params)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.strip() == (
        "error: no champion of crmscore-churn is registered: run `crmscore train churn` (or `crmscore run`), "
        "or `crmscore promote churn --version N`"
    )
    assert not (tmp_path / "out").exists() or visible(tmp_path / "out") == []


# --- the scoring itself --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_scoring_writes_every_output_one_row_per_known_customer(ws, scored):
    assert visible(scored.folder) == [
        "explanations.parquet",
        "manifest.json",
        "rejects",
        "scores.parquet",
        "tier_migration.csv",
    ]
    assert visible(scored.folder.parent) == [f"as_of={AS_OF}"]
    scores = scored.scores
    assert list(scores.columns) == SCORE_COLUMNS
    known = ws.known(AS_OF)
    assert len(known) < len(ws.tables["customers"])  # later signups are not scored
    assert scores["customer_id"].is_unique and set(scores["customer_id"]) == known
    assert (scores["as_of"] == pd.Timestamp(AS_OF)).all()
    assert scores["churn_probability"].between(0, 1).all()
    assert (scores["expected_spend"] >= 0).all() and (scores["clv"] >= 0).all()
    assert scores[["churn_probability", "clv", "points", "value_at_risk"]].notna().all().all()
    assert set(scores["tier"]) <= set(tiers.TIERS) and scores["tier"].nunique() > 1
    assert set(scores["risk_band"]) <= set(tiers.RISK_BANDS)
    assert set(scores["lifecycle_stage"]) <= set(tiers.LIFECYCLE_STAGES)
    assert (scores["action"].str.len() > 0).all()
    assert (scores["segment"].str.len() > 0).all() and scores["segment_id"].nunique() > 1
    # Value at risk is the CLV that churn would lose: CLV × P(churn).
    np.testing.assert_allclose(scores["value_at_risk"], scores["clv"] * scores["churn_probability"], rtol=1e-12)
    # No earlier scoring in this folder: every customer is new.
    migration = scored.migration
    assert list(migration.index) == [*tiers.TIERS, "new"] and list(migration.columns) == [*tiers.TIERS, "gone"]
    assert migration.loc[list(tiers.TIERS)].to_numpy().sum() == 0
    assert migration.loc["new", list(tiers.TIERS)].tolist() == [int((scores["tier"] == t).sum()) for t in tiers.TIERS]


@pytest.mark.slow
def test_manifest_and_scores_name_the_registered_champions(ws, scored):
    manifest = scored.manifest
    assert manifest["as_of"] == AS_OF
    assert manifest["params_hash"] == ws.settings.fingerprint()
    assert manifest["previous_scoring"] is None
    tracking.configure(ws.settings.paths.models_dir, ws.settings.tracking.experiment)
    for role, name in MODEL_NAMES.items():
        champion = tracking.version_by_alias(name, tracking.CHAMPION)
        expected = {"name": name, "version": int(champion.version), "run_id": champion.run_id}
        assert manifest["models"][role] == expected, role
        assert expected["version"] == ws.trained[role].version and expected["run_id"] == ws.trained[role].run_id
        assert (scored.scores[f"{role}_model_version"] == expected["version"]).all(), role
    assert manifest["models"]["clv"]["version"] == 2  # the ML model, registered after BG/NBD
    n = len(scored.scores)
    assert manifest["customers_known"] == manifest["scored"] == n == len(ws.known(AS_OF))
    # The simulated input has the shipped past campaigns too: read, checked, not scored on.
    campaigns = pd.read_parquet(ws.root / "sim" / "campaigns.parquet")
    assert manifest["rows_in"] == {name: len(ws.tables[name]) for name in TABLES} | {"campaigns": len(campaigns)}
    assert manifest["rejected"] == dict.fromkeys([*TABLES, "campaigns"], 0)
    assert not any((scored.folder / "rejects").iterdir())
    assert manifest["explanations"] == len(scored.explanations)
    assert manifest["chunk_size"] == ws.settings.scoring.chunk_size and manifest["chunks"] == 1
    assert {"features", "predict", "explain", "tiers_and_write", "total"} <= set(manifest["seconds"])
    assert all(v >= 0 for v in manifest["seconds"].values())


@pytest.mark.slow
def test_explanations_hold_at_most_top_reasons_per_customer_and_model(ws, scored):
    explanations = scored.explanations
    assert list(explanations.columns) == REASON_COLUMNS
    assert {"customer_id", "model", "rank", "feature", "value", "contribution"} <= set(explanations.columns)
    assert set(explanations["model"]) == {"churn", "clv"}
    assert set(explanations["customer_id"]) <= set(scored.scores["customer_id"])
    k = ws.settings.scoring.top_reasons
    for (_, _), group in explanations.groupby(["customer_id", "model"]):
        assert group["rank"].tolist() == list(range(1, len(group) + 1))
        assert len(group) <= k
    assert explanations.groupby(["customer_id", "model"]).size().max() == k
    # Churn reasons follow the customer: above the base rate what raises the risk, below it what keeps it
    # low (one sign per customer, both kinds present); CLV reasons the strongest effects either way.
    churn = explanations[explanations["model"] == "churn"]
    assert churn["probability_change"].notna().all()
    raises = churn["contribution"] > 0
    assert raises.groupby(churn["customer_id"]).nunique().eq(1).all() and 0 < raises.mean() < 1
    assert (churn["text"].str.contains(": raises churn risk by ") == raises).all()
    clv = explanations[explanations["model"] == "clv"]
    assert (clv["contribution"] != 0).all() and clv["relative_spend_change"].notna().all()
    # Every reason names a feature of its model.
    tracking.configure(ws.settings.paths.models_dir, ws.settings.tracking.experiment)
    for model, name in (("churn", CHURN_MODEL_NAME), ("clv", CLV_MODEL_NAME)):
        estimator = tracking.load_model(name).unwrap_python_model().estimator
        used = set(explanations.loc[explanations["model"] == model, "feature"])
        assert used <= set(estimator.feature_names_in_), model
    assert (explanations["text"].str.len() > 0).all()


@pytest.mark.slow
def test_results_are_identical_for_any_chunk_size(ws, tmp_path):
    whole = _score(_with_scoring(ws.settings, chunk_size=10**6, top_reasons=2), tmp_path / "whole")
    chunked = _score(_with_scoring(ws.settings, chunk_size=137, top_reasons=2), tmp_path / "chunked")
    n = len(ws.known(AS_OF))
    assert whole.manifest["chunks"] == 1 and chunked.manifest["chunks"] == -(-n // 137) > 1
    pd.testing.assert_frame_equal(whole.scores, chunked.scores, check_exact=True)
    pd.testing.assert_frame_equal(whole.migration, chunked.migration)
    assert whole.explanations.groupby(["customer_id", "model"]).size().max() == 2  # scoring.top_reasons applies
    # The same reasons ...
    key = ["customer_id", "model", "rank"]
    pd.testing.assert_frame_equal(
        whole.explanations.sort_values(key, ignore_index=True),
        chunked.explanations.sort_values(key, ignore_index=True),
        check_exact=True,
    )
    # ... in the same rows of the file: by customer, model and rank, whatever the chunks.
    pd.testing.assert_frame_equal(whole.explanations, chunked.explanations, check_exact=True)
    assert whole.explanations[key].equals(whole.explanations[key].sort_values(key, ignore_index=True))


@pytest.mark.slow
def test_rerun_writes_identical_scores(ws, scored):
    out = scored.folder.parent
    again = _score(ws.settings, out)
    pd.testing.assert_frame_equal(again.scores, scored.scores, check_exact=True)
    pd.testing.assert_frame_equal(again.explanations, scored.explanations, check_exact=True)
    assert again.manifest["previous_scoring"] is None  # a scoring of the same date is not its own previous
    assert sorted(p.name for p in out.iterdir()) == [f"as_of={AS_OF}"]  # no temporary or old folder left


@pytest.mark.slow
def test_failed_run_leaves_no_partial_output(ws, scored, tmp_path, monkeypatch):
    settings = _with_scoring(ws.settings, chunk_size=500, workers=1)  # three chunks, scored in this process
    original = scoring.score_chunk
    calls = []

    def dies_on_second_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("killed while scoring")
        return original(*args, **kwargs)

    # No earlier scoring: the target folder does not appear.
    fresh = tmp_path / "fresh"
    monkeypatch.setattr(scoring, "score_chunk", dies_on_second_chunk)
    with pytest.raises(RuntimeError, match="killed while scoring"):
        score_stage(settings, AS_OF, out_dir=fresh, progress=False)
    assert len(calls) == 2
    assert not scoring_dir(fresh, pd.Timestamp(AS_OF)).exists()
    assert not fresh.exists()  # not even the output folder the run's lock created

    # An earlier scoring of the same date stays exactly as it was.
    out = tmp_path / "out"
    monkeypatch.setattr(scoring, "score_chunk", original)
    uninterrupted = _score(settings, out)
    target = scoring_dir(out, pd.Timestamp(AS_OF))
    before = {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()}
    calls.clear()
    monkeypatch.setattr(scoring, "score_chunk", dies_on_second_chunk)
    with pytest.raises(RuntimeError, match="killed while scoring"):
        score_stage(settings, AS_OF, out_dir=out, progress=False)
    assert {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in out.iterdir()) == [target.name]

    # The rerun writes the same scores as the uninterrupted run (and as the scoring in one chunk).
    monkeypatch.setattr(scoring, "score_chunk", original)
    again = _score(settings, out)
    pd.testing.assert_frame_equal(again.scores, uninterrupted.scores, check_exact=True)
    pd.testing.assert_frame_equal(again.explanations, uninterrupted.explanations, check_exact=True)
    pd.testing.assert_frame_equal(again.scores, scored.scores, check_exact=True)
    assert sorted(p.name for p in out.iterdir()) == [target.name]


@pytest.mark.slow
def test_tier_migration_counts_against_the_previous_scoring(ws, tmp_path):
    out = tmp_path / "scores"
    earlier = _score(ws.settings, out, EARLIER)
    later = _score(ws.settings, out, AS_OF)
    assert later.manifest["previous_scoring"] == f"as_of={EARLIER}"
    migration = later.migration
    assert list(migration.index) == [*tiers.TIERS, "new"] and list(migration.columns) == [*tiers.TIERS, "gone"]
    before = earlier.scores.set_index("customer_id")["tier"]
    after = later.scores.set_index("customer_id")["tier"]
    assert set(before.index) < set(after.index)  # customers who signed up in between
    assert int(migration.to_numpy().sum()) == len(before.index.union(after.index))
    assert migration.loc[list(tiers.TIERS)].sum(axis=1).tolist() == [int((before == t).sum()) for t in tiers.TIERS]
    assert migration[list(tiers.TIERS)].sum(axis=0).tolist() == [int((after == t).sum()) for t in tiers.TIERS]
    assert int(migration.loc["new"].sum()) == len(after.index.difference(before.index))
    assert int(migration["gone"].sum()) == 0
    # Cell by cell: the crosstab of the two scorings.
    ids = before.index.union(after.index)
    expected = pd.crosstab(
        pd.Categorical(before.reindex(ids).fillna("new"), categories=[*tiers.TIERS, "new"]),
        pd.Categorical(after.reindex(ids).fillna("gone"), categories=[*tiers.TIERS, "gone"]),
        dropna=False,
    )
    np.testing.assert_array_equal(migration.to_numpy(), expected.to_numpy())
    assert np.trace(migration.loc[list(tiers.TIERS), list(tiers.TIERS)].to_numpy()) > 0

    # The previous scoring is the latest *earlier* one, whatever the order the scorings ran in.
    first = _score(ws.settings, out, "2026-03-31")
    assert first.manifest["previous_scoring"] is None
    assert first.migration.loc[list(tiers.TIERS)].to_numpy().sum() == 0
    assert visible(out) == ["as_of=2026-03-31", f"as_of={EARLIER}", f"as_of={AS_OF}"]


@pytest.mark.slow
def test_rejected_rows_are_written_and_counted(ws, tmp_path):
    tables = {name: df.copy() for name, df in ws.tables.items()}
    tx = tables["transactions"]
    tx.loc[5, "amount"] = -3.0
    corrupted_customer = int(tx.loc[5, "customer_id"])
    tables["transactions"] = pd.concat([tx, tx.iloc[[0]].assign(customer_id=999_999)], ignore_index=True)
    write_tables(tables, tmp_path / "in", "csv")

    out = tmp_path / "out"
    result = _invoke(ws, "--as-of", AS_OF, "--input", str(tmp_path / "in"), "--out", str(out))
    assert result.exit_code == 0, result.output
    folder = scoring_dir(out, pd.Timestamp(AS_OF))
    assert result.stdout.startswith(f"scored {len(ws.known(AS_OF)):,} customers as of {AS_OF}")
    assert f"rejected rows: 2 (see {folder / 'rejects'})" in result.stdout
    assert "scoring: 100%" in result.stderr  # the progress bar, on stderr
    rejects = pd.read_parquet(folder / "rejects" / "transactions.parquet")
    assert rejects["reason"].tolist() == ["amount: negative", "customer_id: unknown customer"]
    assert rejects["row_number"].tolist() == [6, len(tables["transactions"])]
    assert visible(folder / "rejects") == ["transactions.parquet"]  # tables without rejects write no file
    got = _read(folder)
    assert got.manifest["rejected"] == {"customers": 0, "transactions": 2, "payments": 0, "interactions": 0}
    assert got.manifest["rows_in"] == {name: len(tables[name]) for name in TABLES}
    # The customers are still scored (only the bad rows are dropped); the unknown one is not.
    assert set(got.scores["customer_id"]) == ws.known(AS_OF)
    assert corrupted_customer in set(got.scores["customer_id"]) and 999_999 not in set(got.scores["customer_id"])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("layout", "reader"), [("sorted parquet", "_RowGroups"), ("shuffled parquet", "_Spilled"), ("csv", "_Spilled")]
)
def test_streamed_input_scores_exactly_as_tables_loaded_whole(ws, tmp_path, layout, reader):
    from crmscore.data.load import load_tables
    from crmscore.data.stream import StreamedInput

    tables = {name: df.copy() for name, df in ws.tables.items()}
    tx = tables["transactions"]
    tx.loc[5, "amount"] = -3.0
    tx.loc[len(tx) - 3, "date"] = pd.Timestamp("2031-01-01")  # future: rejected
    tables["transactions"] = pd.concat([tx, tx.iloc[[0]].assign(customer_id=999_999)], ignore_index=True)
    folder = tmp_path / "in"
    write_layout(tables, folder, layout, row_group_size=2_000, seed=5)
    settings = _with_scoring(ws.settings, chunk_size=300)
    with StreamedInput(folder, settings.data, pd.Timestamp(AS_OF), 300, spill_dir=tmp_path) as probe:
        assert type(probe._readers["transactions"]).__name__ == reader  # the path this layout takes
        spilled = list(tmp_path.glob("crmscore-stream-*/*.parquet"))
        assert bool(spilled) == (reader == "_Spilled")
    assert not list(tmp_path.glob("crmscore-stream-*"))  # spill files go when the input is closed

    streamed = _score(settings, tmp_path / "streamed", input_dir=folder)
    whole = _score(settings, tmp_path / "whole", loaded=load_tables(folder, settings.data))
    assert len(streamed.scores) == len(ws.known(AS_OF)) and streamed.manifest["chunks"] > 3
    pd.testing.assert_frame_equal(streamed.scores, whole.scores, check_exact=True)
    pd.testing.assert_frame_equal(streamed.explanations, whole.explanations, check_exact=True)
    for key in ("rows_in", "rejected", "scored", "customers_known"):
        assert streamed.manifest[key] == whole.manifest[key], key
    assert streamed.manifest["rejected"]["transactions"] == 3
    assert visible(streamed.folder / "rejects") == visible(whole.folder / "rejects") == ["transactions.parquet"]
    rejects = pd.read_parquet(streamed.folder / "rejects" / "transactions.parquet")
    pd.testing.assert_frame_equal(rejects, pd.read_parquet(whole.folder / "rejects" / "transactions.parquet"))
    assert rejects["row_number"].tolist() == sorted(rejects["row_number"])
    assert set(rejects["reason"].str.split(":").str[0]) == {"amount", "date", "customer_id"}
    assert "read_and_validate" in streamed.manifest["seconds"]


@pytest.mark.slow
def test_text_customer_ids_score_like_numbers(ws, scored, tmp_path):
    """The data contract allows text ids (``C00042``); scores and reasons carry them as text."""
    as_text = {name: df.assign(customer_id=df["customer_id"].map("C{:05d}".format)) for name, df in ws.tables.items()}
    write_tables(as_text, tmp_path / "in", "csv")
    got = _score(_with_scoring(ws.settings, chunk_size=400), tmp_path / "out", input_dir=tmp_path / "in")
    assert got.scores["customer_id"].tolist() == [f"C{i:05d}" for i in scored.scores["customer_id"]]
    pd.testing.assert_frame_equal(
        got.scores.drop(columns="customer_id"), scored.scores.drop(columns="customer_id"), check_exact=True
    )
    expected = scored.explanations.assign(customer_id=scored.explanations["customer_id"].map("C{:05d}".format))
    pd.testing.assert_frame_equal(got.explanations, expected, check_exact=True)


@pytest.mark.slow
def test_model_version_pins_a_registered_version(ws, scored, tmp_path):
    out = tmp_path / "out"
    result = _invoke(ws, "--as-of", AS_OF, "--out", str(out), "--model-version", "churn=1", "--model-version", "clv=1")
    assert result.exit_code == 0, result.output
    assert "crmscore-churn v1" in result.output and "crmscore-clv v1" in result.output
    got = _read(scoring_dir(out, pd.Timestamp(AS_OF)))
    tracking.configure(ws.settings.paths.models_dir, ws.settings.tracking.experiment)
    client = tracking.client()
    for role, version in (("churn", 1), ("clv", 1)):
        info = client.get_model_version(MODEL_NAMES[role], str(version))
        assert got.manifest["models"][role] == {"name": MODEL_NAMES[role], "version": version, "run_id": info.run_id}
        assert (got.scores[f"{role}_model_version"] == version).all()
    assert got.manifest["models"]["segments"] == scored.manifest["models"]["segments"]  # still the champion
    assert got.manifest["params_hash"] == load_settings(ws.params).fingerprint()
    # Version 1 of crmscore-clv is BG/NBD × Gamma-Gamma, not the ML champion: other values, no SHAP reasons.
    assert client.get_model_version(CLV_MODEL_NAME, "1").tags["crmscore.clv_model"] == "btyd"
    pd.testing.assert_series_equal(got.scores["churn_probability"], scored.scores["churn_probability"])
    assert not np.allclose(got.scores["clv"], scored.scores["clv"])
    assert set(got.explanations["model"]) == {"churn"}

    unknown = _invoke(ws, "--as-of", AS_OF, "--out", str(out), "--model-version", "churn=99")
    line = _one_error_line(unknown)
    assert "models:/crmscore-churn/99" in line and "cannot load model" in line


# --- bad input at scoring ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_input_without_a_table_the_models_need_exit_2_naming_features(ws, tmp_path):
    write_tables({k: v for k, v in ws.tables.items() if k != "transactions"}, tmp_path / "in")
    result = _invoke(ws, "--as-of", AS_OF, "--input", str(tmp_path / "in"), "--out", str(tmp_path / "out"))
    line = _one_error_line(result)
    assert line.startswith("error: crmscore-churn v1 needs feature(s) recency_days")
    assert "a table or column is missing" in line
    assert not scoring_dir(tmp_path / "out", pd.Timestamp(AS_OF)).exists()


@pytest.mark.slow
def test_input_without_a_column_exit_2_naming_it(ws, tmp_path):
    tables = dict(ws.tables, payments=ws.tables["payments"].drop(columns=["amount_paid"]))
    write_tables(tables, tmp_path / "in", "csv")
    result = _invoke(ws, "--as-of", AS_OF, "--input", str(tmp_path / "in"), "--out", str(tmp_path / "out"))
    line = _one_error_line(result)
    assert line.startswith(f"error: {tmp_path / 'in' / 'payments.csv'}: column 'amount_paid': required column")
    assert not scoring_dir(tmp_path / "out", pd.Timestamp(AS_OF)).exists()


@pytest.mark.slow
def test_as_of_before_any_signup_exit_2(ws, tmp_path):
    result = _invoke(ws, "--as-of", "2020-01-01", "--out", str(tmp_path / "out"))
    line = _one_error_line(result)
    assert "nobody signed up on or before the as-of date 2020-01-01" in line
    assert not scoring_dir(tmp_path / "out", pd.Timestamp("2020-01-01")).exists()


@pytest.mark.slow
def test_registered_model_not_matching_the_features_exit_2(ws, tmp_path):
    """A churn version whose signature asks for a feature the feature builder does not make."""
    from sklearn.linear_model import LogisticRegression

    X = pd.DataFrame({"recency_days": [1.0, 50.0, 200.0, 400.0], "no_such_feature": [0.0, 1.0, 0.0, 1.0]})
    estimator = LogisticRegression().fit(X, [0, 0, 1, 1])
    tracking.configure(ws.settings.paths.models_dir, ws.settings.tracking.experiment)
    with mlflow.start_run(run_name="mismatched-churn"):
        version = tracking.log_estimator(estimator, CHURN_MODEL_NAME, X.head(2), output="churn_probability")
    assert int(tracking.version_by_alias(CHURN_MODEL_NAME, tracking.CHAMPION).version) == 1  # not promoted

    result = _invoke(ws, "--as-of", AS_OF, "--out", str(tmp_path / "out"), "--model-version", f"churn={version}")
    line = _one_error_line(result)
    assert line.startswith(f"error: {CHURN_MODEL_NAME} v{version} needs feature(s) no_such_feature that")
    assert "recency_days" not in line
    assert not scoring_dir(tmp_path / "out", pd.Timestamp(AS_OF)).exists()

    # The stage raises the same error for callers that are not the command line.
    with pytest.raises(DataError, match="needs feature\\(s\\) no_such_feature"):
        score_stage(ws.settings, AS_OF, out_dir=tmp_path / "out", versions={"churn": version}, progress=False)


# --- worker processes (scoring.workers, crmscore score --workers) --------------------------------------------


@pytest.mark.slow
def test_any_number_of_workers_gives_the_same_scores_reasons_rejects_and_counts(ws, tmp_path):
    """Streamed input with rejected rows, in chunks read and validated by the workers themselves."""
    tables = {name: df.copy() for name, df in ws.tables.items()}
    tx = tables["transactions"]
    tx.loc[5, "amount"] = -3.0
    tx.loc[len(tx) - 3, "date"] = pd.Timestamp("2031-01-01")
    tables["transactions"] = pd.concat([tx, tx.iloc[[0]].assign(customer_id=999_999)], ignore_index=True)
    folder = tmp_path / "in"
    write_layout(tables, folder, "sorted parquet", row_group_size=2_000)
    runs = {
        (workers, size): _score(
            _with_scoring(ws.settings, chunk_size=size, workers=workers),
            tmp_path / f"w{workers}_{size}",
            input_dir=folder,
        )
        for workers, size in ((1, 137), (2, 137), (3, 137), (2, 500))
    }
    one = runs[(1, 137)]
    assert one.manifest["workers"] == 1 and one.manifest["rejected"]["transactions"] == 3
    for (workers, size), run in runs.items():
        assert run.manifest["workers"] == workers and run.manifest["chunks"] == -(-len(ws.known(AS_OF)) // size)
        pd.testing.assert_frame_equal(run.scores, one.scores, check_exact=True)
        pd.testing.assert_frame_equal(run.explanations, one.explanations, check_exact=True)
        for key in ("rows_in", "rejected", "warnings", "scored", "customers_known", "feature_checks", "tiers"):
            assert run.manifest[key] == one.manifest[key], (workers, size, key)
        if size == 137:  # the chunk size is a setting of its own; the number of workers changes no result
            assert run.manifest["params_hash"] == one.manifest["params_hash"]
        pd.testing.assert_frame_equal(
            pd.read_parquet(run.folder / "rejects" / "transactions.parquet"),
            pd.read_parquet(one.folder / "rejects" / "transactions.parquet"),
        )


@pytest.mark.slow
def test_tables_loaded_whole_score_alike_in_workers(ws, scored, tmp_path):
    settings = _with_scoring(ws.settings, chunk_size=400, workers=2)
    loaded = _score(
        settings, tmp_path / "loaded", loaded=load_tables(ws.settings.paths.simulated_dir, ws.settings.data)
    )
    assert loaded.manifest["workers"] == 2 and loaded.manifest["chunks"] > 2
    pd.testing.assert_frame_equal(loaded.scores, scored.scores, check_exact=True)
    pd.testing.assert_frame_equal(loaded.explanations, scored.explanations, check_exact=True)


def _spawned_workers(pid: int) -> list[int]:
    """Worker processes a process spawned (its children running multiprocessing's spawn_main)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            cmdline = (stat.parent / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if int(text[text.rindex(")") + 2 :].split()[1]) == pid and "spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker processes through /proc")
def test_a_killed_worker_fails_the_run_with_one_line_naming_the_chunk_and_writes_nothing(ws, tmp_path):
    settings = _with_scoring(ws.settings, chunk_size=40, workers=2)
    params = write_params(settings, tmp_path / "params.yaml")
    out = tmp_path / "out"
    run = subprocess.Popen(
        [*CRMSCORE, "score", "--as-of", AS_OF, "--out", str(out), "--params", str(params)],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k not in {"MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"}},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (workers := _spawned_workers(run.pid)):
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline, "no worker process appeared"
            time.sleep(0.02)
        os.kill(workers[0], signal.SIGKILL)
    finally:
        stdout, stderr = run.communicate(timeout=300)
    assert run.returncode == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("scoring:")]  # no bar
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert re.fullmatch(
        r"error: a worker process died \(killed, or out of memory\) (while|before) scoring chunk \d+ of \d+ "
        r"\(customers \d+ to \d+\); nothing was written",
        lines[0],
    ), lines[0]
    assert not out.exists()  # no scoring folder, no temporary folder, and the lock gone with the run
    assert not _spawned_workers(run.pid)
