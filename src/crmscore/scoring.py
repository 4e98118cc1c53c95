"""Batch scoring: every customer's churn risk, CLV, tier, segment, stage, action and reasons, as of a date.

:func:`score` is the whole step; :mod:`crmscore.stages` and the CLI call it. It

1. takes the champion models (:class:`ScoringModels`, loaded from the MLflow registry by the stage),
2. splits the customers known on the as-of date into chunks of ``scoring.chunk_size`` (with a progress
   bar) and, per chunk, builds the point-in-time features from that chunk's rows only, predicts churn
   probability and CLV, explains both models with exact TreeSHAP (top ``scoring.top_reasons`` reasons
   each), assigns the segment, and counts the feature values the models never saw in training
   (:mod:`crmscore.feature_checks`: unseen categories, numbers outside the training range, missing
   values). The input is either tables already loaded, or — as ``crmscore score`` runs it — a
   :class:`~crmscore.data.stream.StreamedInput` that reads and validates each chunk's rows from disk
   when the chunk comes, so memory follows the chunk, not the customer base. With ``scoring.workers``
   above one (the default: one per core) the chunks are scored side by side in worker processes
   (:mod:`crmscore.parallel`), each reading and validating its own chunks, and handed back in order;
3. then, over all customers, fits the tier scale (scorecard percentiles or pyramid thresholds) and
   assigns tier, risk band, lifecycle stage, value at risk and action, because tiers rank customers
   against each other;
4. writes ``scores.parquet``, ``explanations.parquet``, ``rejects/``, ``tier_migration.csv`` and
   ``manifest.json`` (with the ``feature_checks`` worth a look; too many unseen values for
   ``scoring.unseen_error_share`` stop the run before anything is written) into a temporary folder that
   is renamed onto ``<out>/as_of=YYYY-MM-DD`` only when everything is written: a killed run leaves no
   partial output, and a rerun replaces the folder whole.

Every per-customer quantity depends only on that customer's rows and the models, and the tier scale on
all customers, and the feature checks are sums of per-chunk counts, so the results are identical for any
chunk size and any number of workers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from crmscore import intervals, tiers
from crmscore.clv.value import lifetime_value
from crmscore.config import Settings
from crmscore.data.plausibility import check_reject_shares
from crmscore.data.schemas import known_customers
from crmscore.data.stream import ChunkTally, StreamedInput
from crmscore.errors import DataError
from crmscore.explain import REASON_COLUMNS, top_reasons
from crmscore.feature_checks import FeatureCounts, check_unseen_share, count_features, feature_checks
from crmscore.features import build_features
from crmscore.io import frozen_heap, release_memory
from crmscore.locks import folder_lock
from crmscore.parallel import WorkerPool, resolve_workers, worker_state
from crmscore.planning import contact_cost, expected_incremental_value

__all__ = [
    "ModelRef",
    "ScoringModels",
    "ScoreResult",
    "customer_chunks",
    "score",
    "score_chunk",
    "atomic_dir",
    "scoring_dir",
    "previous_scoring",
    "manifest_models",
    "reason_frame",
    "segment_names",
    "segment_name_map",
    "fit_tier_scale",
    "score_rows",
    "summarize_feature_checks",
    "tier_features",
    "SCORE_COLUMNS",
]

log = logging.getLogger("crmscore")

#: Columns of scores.parquet, in order.
SCORE_COLUMNS = [
    "customer_id",
    "as_of",
    "churn_probability",
    "churn_low",
    "churn_high",
    "risk_band",
    "expected_spend",
    "clv",
    "clv_low",
    "clv_high",
    "points",
    "tier",
    "tier_confidence",
    "borderline",
    "segment_id",
    "segment",
    "lifecycle_stage",
    "value_at_risk",
    "action",
    "uplift",
    "expected_incremental_value",
    "recommended",
    "churn_model_version",
    "clv_model_version",
    "segments_model_version",
    "uplift_model_version",
]


@dataclasses.dataclass
class ModelRef:
    """A registered model version as scoring uses it."""

    name: str
    version: int
    run_id: str
    estimator: Any


@dataclasses.dataclass
class ScoringModels:
    """The models of a scoring: churn and CLV (at least one of them), segments and uplift optional.

    ``missing`` says, per role without a model, why (written to the manifest as ``models_missing``); the
    columns of a missing model are left null in the scores.
    """

    churn: ModelRef | None
    clv: ModelRef | None
    segments: ModelRef | None = None
    missing: dict[str, str] = dataclasses.field(default_factory=dict)
    uplift: ModelRef | None = None

    def __post_init__(self) -> None:
        if self.churn is None and self.clv is None:
            reasons = "; ".join(f"{role}: {why}" for role, why in self.missing.items())
            raise DataError(f"scoring needs a churn or a CLV model, and there is neither ({reasons or 'none given'})")

    def versions(self) -> dict[str, int]:
        """Version per role, 0 where there is no model (the scores' ``*_model_version`` columns)."""
        refs = {"churn": self.churn, "clv": self.clv, "segments": self.segments, "uplift": self.uplift}
        return {role: ref.version if ref is not None else 0 for role, ref in refs.items()}

    def contact_cost(self, settings: Settings) -> float:
        """Cost of one retention contact: ``plan.contact_cost``, else the uplift model's campaigns' mean."""
        return contact_cost(None, settings.plan.contact_cost, self.uplift.estimator if self.uplift else None)


@dataclasses.dataclass
class ScoreResult:
    """Where a scoring went and what it counted."""

    out_dir: Path
    customers_in: int
    scored: int
    rejected: dict[str, int]
    seconds: dict[str, float]
    manifest: dict[str, Any]
    #: What went into a database as well (:class:`crmscore.warehouse.WarehouseWrite`), when asked.
    warehouse: Any = None


def customer_chunks(
    tables: Mapping[str, pd.DataFrame], as_of: pd.Timestamp, chunk_size: int
) -> Iterator[dict[str, pd.DataFrame]]:
    """The tables restricted to consecutive chunks of the customers signed up by ``as_of``.

    Customers are taken in id order. Every other table is ordered by customer once — through an index of
    row positions, never a sorted copy of the table (input already in customer order, as the simulator
    writes it, needs not even that) — and each chunk gets the rows of its customers (all dates: the
    feature builder itself ignores later rows), in their original order.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size {chunk_size}: expected a positive integer")
    customers = tables["customers"]
    known = known_customers(customers, as_of).sort_values("customer_id", kind="stable")
    ids = known["customer_id"].to_numpy()
    others: dict[str, tuple[pd.DataFrame, np.ndarray, np.ndarray | None]] = {}
    for name, table in tables.items():
        if name == "customers" or table is None:
            continue
        keys = table["customer_id"].to_numpy()
        if table["customer_id"].is_monotonic_increasing:
            others[name] = (table, keys, None)
        else:
            order = np.argsort(keys, kind="stable")
            others[name] = (table, keys[order], order)
    for start in range(0, len(ids), chunk_size):
        chunk_ids = ids[start : start + chunk_size]
        lo_id, hi_id = chunk_ids[0], chunk_ids[-1]
        chunk = {"customers": known.iloc[start : start + chunk_size]}
        for name, (table, keys, order) in others.items():
            lo = np.searchsorted(keys, lo_id, side="left")
            hi = np.searchsorted(keys, hi_id, side="right")
            rows = np.arange(lo, hi) if order is None else np.sort(order[lo:hi])
            # Ids are contiguous in the sorted customers, but another table may hold ids of customers who
            # signed up after as_of; keep only this chunk's customers.
            mine = np.isin(table["customer_id"].to_numpy()[rows], chunk_ids)
            chunk[name] = table.iloc[rows[mine]]
        yield chunk


class _TablesInMemory:
    """Tables loaded whole, handed out per chunk like :class:`crmscore.data.stream.StreamedInput`."""

    def __init__(
        self,
        tables: Mapping[str, pd.DataFrame],
        as_of: pd.Timestamp,
        chunk_size: int,
        rejects: Mapping[str, pd.DataFrame] | None,
        rows_in: Mapping[str, int] | None,
    ) -> None:
        self.tables = tables
        self.as_of = as_of
        self.chunk_size = chunk_size
        customers = tables["customers"]
        self.ids = np.sort(known_customers(customers, as_of)["customer_id"].to_numpy(), kind="stable")
        self.known = len(self.ids)
        self.n_chunks = -(-self.known // chunk_size)
        self.rejects = dict(rejects or {})
        self.rows_in = dict(rows_in or {})
        self.seconds = 0.0

    def __iter__(self) -> Iterator[dict[str, pd.DataFrame]]:
        return customer_chunks(self.tables, self.as_of, self.chunk_size)


def manifest_models(models: ScoringModels) -> dict[str, dict[str, Any]]:
    """The models of a scoring as its manifest records them: name, version and run id per role."""
    return {
        role: {"name": ref.name, "version": ref.version, "run_id": ref.run_id}
        for role, ref in (
            ("churn", models.churn),
            ("clv", models.clv),
            ("segments", models.segments),
            ("uplift", models.uplift),
        )
        if ref is not None
    }


def scoring_dir(out_dir: str | os.PathLike, as_of: pd.Timestamp) -> Path:
    """The folder of one scoring: ``<out>/as_of=YYYY-MM-DD``."""
    return Path(out_dir) / f"as_of={pd.Timestamp(as_of).date()}"


def previous_scoring(out_dir: str | os.PathLike, as_of: pd.Timestamp) -> Path | None:
    """The latest earlier scoring in ``out_dir`` (by as-of date), if any."""
    out = Path(out_dir)
    if not out.is_dir():
        return None
    earlier = []
    for child in out.iterdir():
        if child.is_dir() and child.name.startswith("as_of=") and (child / "scores.parquet").exists():
            with contextlib.suppress(ValueError):
                when = pd.Timestamp(child.name.removeprefix("as_of="))
                if when < pd.Timestamp(as_of):
                    earlier.append((when, child))
    return max(earlier)[1] if earlier else None


def _recover(target: Path) -> None:
    """Put back a replaced folder that a kill between the two renames of :func:`atomic_dir` left hidden."""
    if target.exists():
        return
    for old in sorted(target.parent.glob(f".{target.name}.*.old")):
        os.replace(old, target)
        return


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target``; on success it replaces ``target`` whole.

    On an exception (or a kill) the temporary folder is removed (or left as a hidden ``.tmp`` folder
    that the next run removes) and ``target`` is untouched. The folder's lock
    (:func:`crmscore.locks.folder_lock`) is held throughout: another run writing ``target`` fails with
    :class:`~crmscore.errors.LockedError` instead of mixing its files in.
    """
    target = Path(target)
    with folder_lock(target) as locked:
        target.parent.mkdir(parents=True, exist_ok=True)
        _recover(target)
        if locked:  # nobody else writes target now: what a killed run left beside it is garbage
            for pattern in (f".{target.name}.*.tmp", f".{target.name}.*.old"):
                for left in target.parent.glob(pattern):
                    shutil.rmtree(left, ignore_errors=True)
        # Not tempfile.mkdtemp: its folders are private (0700); a scoring folder gets the usual permissions.
        tmp = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        tmp.mkdir()
        try:
            yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.{os.getpid()}.old")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


# --- one chunk --------------------------------------------------------------------------------------


def _explain(estimator: Any, X: pd.DataFrame) -> tuple[np.ndarray, float, list[str]] | None:
    """SHAP values of a model's raw output, or None when it has none (e.g. a BTYD or contractual model)."""
    if not hasattr(estimator, "shap_values"):
        return None
    try:
        values, base = estimator.shap_values(X)
    except ValueError as exc:  # e.g. a two-part CLV model: no additive decomposition
        log.debug("no SHAP reasons: %s", exc)
        return None
    return values, base, list(estimator.feature_names_in_)


def _profiles(models: ScoringModels) -> dict[str, dict[str, Any]]:
    """Training profile per model role; models registered before profiles existed have none and are skipped."""
    refs = (("churn", models.churn), ("clv", models.clv), ("segments", models.segments), ("uplift", models.uplift))
    profiles = {role: getattr(ref.estimator, "feature_profile_", None) for role, ref in refs if ref is not None}
    return {role: profile for role, profile in profiles.items() if profile}


def summarize_feature_checks(counts: FeatureCounts, models: ScoringModels, settings: Settings) -> list[dict[str, Any]]:
    """The manifest's ``feature_checks`` from the counts summed over every chunk (or Spark bucket).

    :func:`crmscore.feature_checks.feature_checks` with the ``scoring`` thresholds; raises a one-line
    :class:`DataError` when a feature's unseen share exceeds ``scoring.unseen_error_share``.
    """
    cfg = settings.scoring
    checks = feature_checks(counts, _profiles(models), cfg.out_of_range_warn_share, cfg.missing_warn_increase)
    check_unseen_share(checks, cfg.unseen_error_share)
    return checks


def _check_attributes_first(
    customers: pd.DataFrame, as_of: pd.Timestamp, models: ScoringModels, settings: Settings
) -> None:
    """Stop before any chunk is scored when an attribute's unseen share exceeds ``scoring.unseen_error_share``.

    The categorical features are the customers table's attributes, and that table is at hand whole (even
    when the other tables are streamed), so their unseen shares over every customer are known before
    scoring — the same shares the chunks count: a run that must stop costs seconds, not a whole scoring,
    and prints its one line without a progress bar.
    """
    if settings.scoring.unseen_error_share is None:
        return
    profiles = {
        role: {feature: info for feature, info in profile.items() if info["kind"] == "categorical"}
        for role, profile in _profiles(models).items()
    }
    attributes = build_features({"customers": customers}, as_of, settings.features)
    checks = feature_checks(count_features(attributes, profiles), profiles, out_of_range_share=1, missing_increase=1)
    check_unseen_share(checks, settings.scoring.unseen_error_share)


def score_chunk(
    tables: Mapping[str, pd.DataFrame], as_of: pd.Timestamp, models: ScoringModels, settings: Settings
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float], FeatureCounts]:
    """Features, churn probability, CLV, segment and top reasons of one chunk of customers.

    Returns the per-customer frame (with the features the tiers need), the reasons (long format), seconds
    per step and the feature counts against the models' training profiles (added up over chunks by
    :func:`score`).
    """
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    X = build_features(tables, as_of, settings.features)
    counts = count_features(X, _profiles(models))
    seconds["features"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    n = len(X)
    nan = np.full(n, np.nan)
    iv = settings.intervals
    churn_low = churn_high = clv_low = clv_high = nan
    if models.churn is None:
        p = nan
    elif iv.enabled:  # the probabilities and their draws in one pass over the boosters
        p, churn_low, churn_high = intervals.churn_interval(models.churn.estimator, X, iv.level)
    else:
        p = models.churn.estimator.predict_proba(X)[:, 1]
    X_clv = X.assign(churn_probability=p)
    cfg = settings.clv
    if models.clv is not None:
        spend = np.asarray(models.clv.estimator.predict(X_clv), dtype=float)
        value = lifetime_value(models.clv.estimator, X_clv, cfg.horizon_days, cfg.discount_rate, cfg.margin)
    else:
        spend = value = nan
    segment_ids = models.segments.estimator.predict(X).to_numpy() if models.segments is not None else np.zeros(n, int)
    uplift = models.uplift.estimator.predict(X) if models.uplift is not None else nan
    seconds["predict"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if models.clv is not None and iv.enabled:
        clv_low, clv_high = intervals.clv_interval(
            models.clv.estimator, X_clv, spend, value, iv.level, iv.draws, iv.seed
        )
    seconds["intervals"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    reasons = []
    k = settings.scoring.top_reasons
    for name, ref, kind in (("churn", models.churn, "log_odds"), ("clv", models.clv, "log_spend")):
        if ref is None:
            continue
        inputs = X_clv if name == "clv" else X
        explained = _explain(ref.estimator, inputs)
        if explained is None:
            continue
        values, base, names = explained
        reasons.append(
            top_reasons(
                values,
                inputs[names],
                feature_names=names,
                k=k,
                model=name,
                base=base,
                kind=kind,
                trend_window_days=settings.features.trend_window_days,
                base_rate=getattr(ref.estimator, "base_rate_", None),  # models trained before have none
            )
        )
    explanations = pd.concat(reasons, ignore_index=True) if reasons else pd.DataFrame(columns=REASON_COLUMNS)
    # One order whatever the chunking: customers (chunks follow customer id), then model, then rank.
    explanations = explanations.sort_values(["customer_id", "model", "rank"], kind="stable", ignore_index=True)
    seconds["explain"] = time.perf_counter() - t0

    keep = [c for c in tier_features(settings) if c in X.columns]
    frame = X[keep].copy()
    frame["churn_probability"] = p
    frame["churn_low"] = churn_low
    frame["churn_high"] = churn_high
    frame["expected_spend"] = spend
    frame["clv"] = value
    frame["clv_low"] = clv_low
    frame["clv_high"] = clv_high
    frame["segment_id"] = segment_ids.astype(np.int64)
    frame["uplift"] = np.asarray(uplift, dtype=float)
    return frame, explanations, seconds, counts


@dataclasses.dataclass
class _ChunkScored:
    """One chunk scored (here or in a worker): what :func:`score` assembles, in chunk order."""

    frame: pd.DataFrame
    reasons: pa.Table
    seconds: dict[str, float]
    counts: FeatureCounts
    tally: ChunkTally | None
    read_seconds: float


@dataclasses.dataclass
class _WorkerState:
    """What every scoring worker gets once: the streamed input (None for tables loaded whole), the models."""

    source: StreamedInput | None
    models: ScoringModels
    settings: Settings
    as_of: pd.Timestamp
    integer_ids: bool


def _score_one(task: tuple[int, Mapping[str, pd.DataFrame] | None], state: _WorkerState) -> _ChunkScored:
    """Score chunk ``k`` of ``task`` — its tables as given, or read and validated from the streamed input."""
    k, tables = task
    tally, read_seconds = None, 0.0
    if tables is None:
        started = time.perf_counter()
        tables, tally = state.source.read_chunk(k)
        read_seconds = time.perf_counter() - started
    frame, explanations, seconds, counts = score_chunk(tables, state.as_of, state.models, state.settings)
    reasons = pa.Table.from_pandas(reason_frame(explanations, state.integer_ids), preserve_index=False)
    return _ChunkScored(frame, reasons, seconds, counts, tally, read_seconds)


def _score_in_worker(task: tuple[int, Mapping[str, pd.DataFrame] | None]) -> _ChunkScored:
    """:func:`_score_one` in a worker process, with the state :func:`crmscore.parallel.ordered_map` gave it;
    the chunk's working memory goes back to the system before the next chunk."""
    try:
        return _score_one(task, worker_state())
    finally:
        release_memory()


_Task = tuple[int, Mapping[str, pd.DataFrame] | None]

#: Reason columns with few distinct values, dictionary-encoded in ``explanations.parquet``; the reason
#: texts are nearly all distinct, and trying a dictionary on them only slows the writing.
REASON_DICTIONARY = ["model", "feature", "value"]


def _first_chunk(
    source: StreamedInput | _TablesInMemory,
    settings: Settings,
    check_chunk: Callable[[Mapping[str, pd.DataFrame]], None] | None,
) -> tuple[Mapping[str, pd.DataFrame], Iterator[_Task]]:
    """The first chunk's tables, checked, and the tasks of the other chunks.

    The first chunk is read here, before the progress bar and before any work is spread: a table
    rejected in bulk shows in it already, and ``check_chunk`` runs on it, so a failed check is the only
    line printed. A streamed input's other chunks are read and validated by whoever scores them.
    """
    if isinstance(source, StreamedInput):
        source.start()
        started = time.perf_counter()
        first, tally = source.read_chunk(0)
        source.record(tally)
        source.seconds += time.perf_counter() - started
        check_reject_shares(source.reports_so_far(), settings.data.checks)
        later: Iterator[_Task] = ((k, None) for k in range(1, source.n_chunks))
    else:
        chunks = iter(source)
        first = next(chunks)
        later = enumerate(chunks, start=1)
    if check_chunk is not None:
        check_chunk(first)
    return first, later


def _scored_chunks(
    source: StreamedInput | _TablesInMemory,
    first: Mapping[str, pd.DataFrame],
    later: Iterator[_Task],
    state: _WorkerState,
    pool: WorkerPool | None,
) -> Iterator[_ChunkScored]:
    """Every chunk scored, in customer order: in this process (no pool), or in the pool's workers and this
    process, which scores the first chunk (already read) while the workers start."""
    tasks = itertools.chain([(0, first)], later)
    del first
    if pool is None:
        yield from (_score_one(task, state) for task in tasks)
        return
    ids, size, n = source.ids, source.chunk_size, source.n_chunks

    def describe(task: _Task) -> str:
        part = ids[task[0] * size : (task[0] + 1) * size]
        return f"scoring chunk {task[0] + 1} of {n} (customers {part[0]} to {part[-1]})"

    yield from pool.map(_score_in_worker, tasks, describe, here=lambda task: _score_one(task, state))


def tier_features(settings: Settings) -> list[str]:
    """The features the tier scale and lifecycle stages need, kept per customer until all are scored."""
    metrics = list(settings.tiers.scorecard.metrics.values())
    counts = [intervals.SHARE_OF[m] for m in metrics if m in intervals.SHARE_OF]  # behind the tier confidence
    return [*dict.fromkeys([*metrics, *counts, "tenure_days", "recency_days"])]


# --- the whole scoring ----------------------------------------------------------------------------


def score(
    tables: Mapping[str, pd.DataFrame] | StreamedInput,
    as_of: pd.Timestamp,
    models: ScoringModels,
    settings: Settings,
    out_dir: str | os.PathLike,
    rejects: Mapping[str, pd.DataFrame] | None = None,
    rows_in: Mapping[str, int] | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
    extra_seconds: Mapping[str, float] | None = None,
    check_chunk: Callable[[Mapping[str, pd.DataFrame]], None] | None = None,
    warnings: Mapping[str, Mapping[str, int]] | None = None,
    workers: int | None = None,
    pool: WorkerPool | None = None,
) -> ScoreResult:
    """Score every customer known on ``as_of`` and write the scoring folder atomically.

    ``tables`` are validated tables loaded whole, or a :class:`~crmscore.data.stream.StreamedInput`
    that reads and validates them one chunk at a time (its chunk size and rejects then apply). For
    tables loaded whole, ``rejects`` are the rows validation refused (written to ``rejects/`` and counted
    in the manifest), ``rows_in`` the row counts read per table and ``warnings`` the rows flagged by the
    plausibility checks (table → reason → rows). A streamed input is checked as it is read: a table
    with more than ``data.checks.max_reject_share`` of its rows rejected stops the scoring before
    anything is written. ``extra_seconds`` are the times of
    steps done before (loading models, reading and validating input), reported in the manifest and
    counted in its total. ``check_chunk`` is called with the first chunk's tables before it is scored
    (e.g. to check the input gives the features the models need). ``workers`` processes (default
    ``scoring.workers``; None there: one per core) score the chunks side by side, each reading and
    validating its chunks itself when the input is streamed; the results are the same for any number.
    ``pool``: workers the caller started early (``WorkerPool(LATER, n, caller_works=True)``, e.g. before
    loading the models); they get their state here and replace ``workers``.
    See the module docstring for the outputs.
    """
    started = time.perf_counter()
    as_of = pd.Timestamp(as_of).normalize()
    source = _source_of(tables, as_of, chunk_size or settings.scoring.chunk_size, rejects, rows_in)
    customers = source.customers if isinstance(source, StreamedInput) else tables["customers"]
    integer_ids = pd.api.types.is_integer_dtype(customers["customer_id"].dtype)
    if len(source.ids) == 0:
        raise DataError(f"customers: nobody signed up on or before the as-of date {as_of.date()}; nothing to score")
    streamed = source if isinstance(source, StreamedInput) else None
    state = _WorkerState(streamed, models, settings, as_of, integer_ids)
    pool = _workers_for(state, source.n_chunks, settings.scoring.workers if workers is None else workers, pool)
    with frozen_heap(), pool or contextlib.nullcontext():
        _check_attributes_first(customers, as_of, models, settings)
        target = scoring_dir(out_dir, as_of)
        previous = previous_scoring(out_dir, as_of)
        seconds = {**dict(extra_seconds or {}), "features": 0.0, "predict": 0.0, "intervals": 0.0, "explain": 0.0}
        # Time spent before this call: the given steps, and opening a streamed input.
        before = sum(seconds.values()) + (source.open_seconds if isinstance(source, StreamedInput) else 0.0)
        with atomic_dir(target) as tmp:
            first, later = _first_chunk(source, settings, check_chunk)
            chunks = _scored_chunks(source, first, later, state, pool)
            del first
            assembled = _assemble(chunks, source, tmp, seconds, progress)
            checks = summarize_feature_checks(assembled.counts, models, settings)  # raising here leaves nothing

            t0 = time.perf_counter()
            scores, scale = _write_tiers(tmp, assembled.frames, state, previous, pool)
            del assembled.frames
            if pool is not None:
                pool.close()
            rows_in, warnings = _input_counts(source, settings, rows_in, warnings)
            rejected = _write_rejects(tmp, source.rejects)
            if source.seconds:
                seconds["read_and_validate"] = seconds.get("read_and_validate", 0.0) + source.seconds
            seconds["tiers_and_write"] = time.perf_counter() - t0
            seconds["scoring"] = time.perf_counter() - started
            seconds["total"] = seconds["scoring"] + before
            counts = ScoringCounts(
                rows_in,
                len(source.ids),
                len(scores),
                rejected,
                warnings,
                assembled.explanations,
                source.chunk_size,
                source.n_chunks,
            )
            manifest = scoring_manifest(
                as_of, settings, models, counts, previous, checks, scale, seconds, workers=pool.workers if pool else 1
            )
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
        return ScoreResult(target, len(source.ids), int(len(scores)), rejected, seconds, manifest)


def _source_of(
    tables: Mapping[str, pd.DataFrame] | StreamedInput,
    as_of: pd.Timestamp,
    chunk_size: int,
    rejects: Mapping[str, pd.DataFrame] | None,
    rows_in: Mapping[str, int] | None,
) -> StreamedInput | _TablesInMemory:
    """What :func:`score` reads its chunks from: the streamed input as given, or the tables loaded whole."""
    if isinstance(tables, StreamedInput):
        if tables.as_of != as_of:
            raise ValueError(f"the streamed input was opened for {tables.as_of.date()}, not {as_of.date()}")
        return tables
    return _TablesInMemory(tables, as_of, chunk_size, rejects, rows_in)


def _workers_for(state: _WorkerState, n_chunks: int, workers: int | None, pool: WorkerPool | None) -> WorkerPool | None:
    """The pool scoring the chunks with this process: the one the caller started (given its state now), or
    one started here — none for a single chunk or a single worker."""
    if pool is not None and n_chunks > 1:
        pool.share(state)
        return pool
    if pool is not None:  # one chunk: nothing to share
        pool.close()
    workers = resolve_workers(workers, n_chunks)
    # The workers start now and load the models and the input while this process checks the customers.
    return WorkerPool(state, workers, caller_works=True) if workers > 1 else None


@dataclasses.dataclass
class _Assembled:
    """The chunks of a scoring put together: per-customer frames for the tiers, feature counts, reasons."""

    frames: list[pd.DataFrame]
    counts: FeatureCounts
    explanations: int


def _assemble(
    chunks: Iterator[_ChunkScored],
    source: StreamedInput | _TablesInMemory,
    tmp: Path,
    seconds: dict[str, float],
    progress: bool,
) -> _Assembled:
    """Take the scored chunks in customer order: their reasons go to ``explanations.parquet`` at once, their
    counts and seconds are added up, their per-customer frames kept for the tier scale."""
    from tqdm.auto import tqdm

    out = _Assembled([], FeatureCounts(), 0)
    writer: pq.ParquetWriter | None = None
    for chunk in tqdm(chunks, total=source.n_chunks, desc="scoring", unit="chunk", disable=not progress):
        if chunk.tally is not None:
            source.record(chunk.tally)
        source.seconds += chunk.read_seconds
        for key, value in chunk.seconds.items():
            seconds[key] += value
        out.frames.append(chunk.frame)
        out.counts += chunk.counts
        if writer is None:
            path = tmp / "explanations.parquet"
            writer = pq.ParquetWriter(path, chunk.reasons.schema, use_dictionary=REASON_DICTIONARY)
        writer.write_table(chunk.reasons)
        out.explanations += chunk.reasons.num_rows
        del chunk
        release_memory()
    if writer is not None:
        writer.close()
    return out


def _write_tiers(
    tmp: Path, frames: list[pd.DataFrame], state: _WorkerState, previous: Path | None, pool: WorkerPool | None
) -> tuple[pd.DataFrame, tiers.TierScale]:
    """The tier scale fitted over everyone, ``scores.parquet`` and ``tier_migration.csv`` against ``previous``.

    The rows are worked out per part of the customers, side by side in the pool's workers and here."""
    everyone = pd.concat(frames)
    frames.clear()
    models, settings = state.models, state.settings
    scale = fit_tier_scale(everyone, settings, models)
    fitted = _Fitted(scale, segment_name_map(models.segments), models.versions(), models.contact_cost(settings))
    if pool is None:
        scores = fitted.rows(everyone, state)
    else:
        parts = [everyone.iloc[rows] for rows in np.array_split(np.arange(len(everyone)), 2 * pool.workers)]
        del everyone
        tasks = ((part, fitted) for part in parts)
        scores = pd.concat(pool.map(_rows_in_worker, tasks, here=lambda task: task[1].rows(task[0], state)))
        scores = scores.reset_index(drop=True)
    # The Parquet writing mostly runs outside the interpreter lock: the migration is worked out meanwhile.
    with ThreadPoolExecutor(max_workers=1) as background:
        written = background.submit(scores.to_parquet, tmp / "scores.parquet", index=False)
        _migration(previous, scores).to_csv(tmp / "tier_migration.csv")
        written.result()
    return scores, scale


@dataclasses.dataclass(frozen=True)
class _Fitted:
    """What assigning tiers needs besides a customer's own values: the fitted scale, segment names, model
    versions, the cost of a contact."""

    scale: tiers.TierScale
    segment_names: dict[int, str]
    versions: dict[str, int]
    contact_cost: float

    def rows(self, frame: pd.DataFrame, state: _WorkerState) -> pd.DataFrame:
        """:func:`score_rows` of ``frame``."""
        return score_rows(
            frame, state.as_of, state.settings, self.scale, self.segment_names, self.versions, self.contact_cost
        )


def _rows_in_worker(task: tuple[pd.DataFrame, _Fitted]) -> pd.DataFrame:
    """:meth:`_Fitted.rows` of one part of the customers in a worker process."""
    frame, fitted = task
    return fitted.rows(frame, worker_state())


def _input_counts(
    source: StreamedInput | _TablesInMemory,
    settings: Settings,
    rows_in: Mapping[str, int] | None,
    warnings: Mapping[str, Mapping[str, int]] | None,
) -> tuple[dict[str, int], dict[str, Mapping[str, int]]]:
    """Rows read and rows flagged per table; a streamed input's reject shares are checked once more here."""
    if isinstance(source, StreamedInput):
        reports = source.reports
        check_reject_shares(reports, settings.data.checks)
        return (
            {name: report.rows_in for name, report in reports.items()},
            {name: report.warnings for name, report in reports.items()},
        )
    return dict(source.rows_in or {}), dict(warnings or {})


def _write_rejects(tmp: Path, rejects: Mapping[str, pd.DataFrame | None]) -> dict[str, int]:
    """``rejects/<table>.parquet`` for each table with rejected rows; the rejected count per table."""
    rejected = {}
    if rejects:
        (tmp / "rejects").mkdir()
        for name, frame in rejects.items():
            if frame is not None and len(frame):
                frame.to_parquet(tmp / "rejects" / f"{name}.parquet", index=False)
            rejected[name] = 0 if frame is None else int(len(frame))
    return rejected


@dataclasses.dataclass(frozen=True)
class ScoringCounts:
    """What a scoring counted, as its manifest records it (any engine)."""

    rows_in: Mapping[str, int]
    known: int
    scored: int
    rejected: Mapping[str, int]
    warnings: Mapping[str, Mapping[str, int]]
    explanations: int
    chunk_size: int
    chunks: int


def scoring_manifest(
    as_of: pd.Timestamp,
    settings: Settings,
    models: ScoringModels,
    counts: ScoringCounts,
    previous: Path | None,
    checks: list[dict[str, Any]],
    scale: tiers.TierScale,
    seconds: Mapping[str, float],
    **extra: Any,
) -> dict[str, Any]:
    """The ``manifest.json`` of a scoring, whichever engine ran it; ``extra`` keys are the engine's own."""
    total = seconds["total"]
    return {
        "as_of": str(as_of.date()),
        "params_hash": settings.fingerprint(),
        "models": manifest_models(models),
        "rows_in": dict(counts.rows_in),
        "customers_known": counts.known,
        "scored": int(counts.scored),
        "rejected": dict(counts.rejected),
        "warnings": {name: dict(found) for name, found in counts.warnings.items() if found},
        "explanations": counts.explanations,
        "chunk_size": counts.chunk_size,
        "chunks": counts.chunks,
        "previous_scoring": None if previous is None else previous.name,
        "models_missing": dict(models.missing),
        "feature_checks": checks,
        "tiers": scale.to_dict(),
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "customers_per_second": round(counts.scored / total, 1) if total > 0 else None,
        **extra,
    }


def reason_frame(explanations: pd.DataFrame, integer_ids: bool) -> pd.DataFrame:
    """Stable column types, so every chunk writes the same Parquet schema (ids as the customers hold them)."""
    out = explanations.reindex(columns=REASON_COLUMNS)
    out["customer_id"] = out["customer_id"].astype(np.int64) if integer_ids else out["customer_id"].astype(str)
    for column in ("model", "feature", "value", "text"):
        out[column] = out[column].astype(str)
    out["rank"] = out["rank"].astype(np.int64)
    for column in ("contribution", "probability_change", "relative_spend_change"):
        out[column] = out[column].astype(float)
    return out


def fit_tier_scale(everyone: pd.DataFrame, settings: Settings, models: ScoringModels) -> tiers.TierScale:
    """The tier scale fitted on every scored customer (``everyone``: the frames of :func:`score_chunk`)."""
    clv = everyone["clv"] if models.clv is not None else None
    return tiers.fit_tier_scale(everyone, clv, settings.tiers)


def score_rows(
    frame: pd.DataFrame,
    as_of: pd.Timestamp,
    settings: Settings,
    scale: tiers.TierScale,
    segment_names: Mapping[int, str],
    versions: Mapping[str, int],
    contact_cost: float = 0.0,
) -> pd.DataFrame:
    """The rows of ``scores.parquet`` (:data:`SCORE_COLUMNS`) for customers scored by :func:`score_chunk`.

    ``frame`` is indexed by customer id; a model that was not scored left its columns NaN, and so are
    the columns derived from it (risk band, value at risk, action; the tier under the pyramid method;
    expected incremental value and recommended without an uplift or a CLV model). With an uplift model,
    ``expected_incremental_value`` = uplift × CLV − ``contact_cost`` and ``recommended`` says it is
    positive; ``plan.replace_actions`` makes the action follow it.
    """
    index = frame.index
    p = pd.Series(frame["churn_probability"].to_numpy(dtype=float), index=index)
    clv = pd.Series(frame["clv"].to_numpy(dtype=float), index=index)
    has_p, has_clv = bool(p.notna().any()), bool(clv.notna().any())
    cfg = settings.tiers
    points, tier = scale.tiers(frame, clv, cfg)
    n = len(frame)
    bounds = {c: _column(frame, c) for c in ("churn_low", "churn_high", "clv_low", "clv_high")}
    confidence, borderline = _tier_confidence(frame, scale, settings, clv.to_numpy(), bounds, tier)
    band = tiers.risk_band(p, cfg.risk_thresholds) if has_p else None
    at_risk = tiers.value_at_risk(clv, p) if has_p and has_clv else None
    action = tiers.recommended_action(tier, band, cfg.actions) if band is not None and scale.method != "none" else None
    segment_ids = frame["segment_id"].to_numpy(dtype=np.int64)
    uplift = frame["uplift"].to_numpy(dtype=float) if "uplift" in frame.columns else np.full(n, np.nan)
    gain = expected_incremental_value(uplift, clv.to_numpy(), contact_cost)
    recommended = pd.array(np.where(np.isnan(gain), None, gain > 0), dtype="boolean")
    if settings.plan.replace_actions and not np.isnan(gain).all():
        action = pd.Series(np.where(recommended.fillna(False), "retention offer", "no retention offer"), index=index)

    def text(values: pd.Series | None) -> np.ndarray:
        if values is None:
            return np.full(n, None, dtype=object)
        out = values.astype(object).to_numpy()
        return np.where(pd.isna(out), None, out)

    scores = pd.DataFrame(
        {
            "customer_id": index.to_numpy(),
            "as_of": np.full(n, pd.Timestamp(as_of).to_datetime64()),
            "churn_probability": p.to_numpy(),
            "churn_low": bounds["churn_low"],
            "churn_high": bounds["churn_high"],
            "risk_band": text(band),
            "expected_spend": frame["expected_spend"].to_numpy(dtype=float),
            "clv": clv.to_numpy(),
            "clv_low": bounds["clv_low"],
            "clv_high": bounds["clv_high"],
            "points": points.to_numpy(dtype=float),
            "tier": text(tier),
            "tier_confidence": confidence,
            "borderline": borderline,
            "segment_id": segment_ids,
            "segment": pd.Series(segment_ids).map(dict(segment_names)).astype(object).fillna("").to_numpy(dtype=object),
            "lifecycle_stage": text(tiers.lifecycle_stage(frame, cfg)),
            "value_at_risk": np.full(n, np.nan) if at_risk is None else at_risk.to_numpy(dtype=float),
            "action": text(action),
            "uplift": uplift,
            "expected_incremental_value": gain,
            "recommended": recommended,
            **{
                f"{role}_model_version": np.full(n, versions.get(role, 0), dtype=np.int64)
                for role in ("churn", "clv", "segments", "uplift")
            },
        }
    )
    return scores[SCORE_COLUMNS]


def _column(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A per-customer float column of the first pass; NaN where an older caller left it out."""
    return frame[column].to_numpy(dtype=float) if column in frame.columns else np.full(len(frame), np.nan)


def _tier_confidence(
    frame: pd.DataFrame,
    scale: tiers.TierScale,
    settings: Settings,
    clv: np.ndarray,
    bounds: Mapping[str, np.ndarray],
    tier: pd.Series,
) -> tuple[np.ndarray, pd.arrays.BooleanArray]:
    """Tier confidence (:func:`crmscore.intervals.tier_confidence`) and the ``borderline`` flag (null without one)."""
    iv = settings.intervals
    if not iv.enabled or scale.method == "none":
        confidence = np.full(len(frame), np.nan)
    else:
        confidence = intervals.tier_confidence(
            frame,
            scale,
            settings.tiers.scorecard.cutoffs,
            clv,
            bounds["clv_low"],
            bounds["clv_high"],
            iv.level,
            iv.draws,
            iv.seed,
        )
        confidence = np.where(tier.isna().to_numpy(), np.nan, confidence)
    borderline = pd.array(np.where(np.isnan(confidence), None, confidence < iv.borderline_below), dtype="boolean")
    return confidence, borderline


def segment_name_map(segments: ModelRef | None) -> dict[int, str]:
    """Segment id → readable name (empty without a segments model)."""
    if segments is None:
        return {}
    ids = segments.estimator.leaves_["segment_id"].to_numpy(dtype=np.int64)
    return dict(zip(ids.tolist(), segment_names(segments, ids).tolist(), strict=True))


def segment_names(segments: ModelRef | None, ids: np.ndarray) -> np.ndarray:
    """The readable name of each segment id (empty text without a segments model)."""
    if segments is None:
        return np.full(len(ids), "", dtype=object)
    names = segments.estimator.leaves_.set_index("segment_id")["name"]
    return names.reindex(ids).fillna("").to_numpy(dtype=object)


def _migration(previous: Path | None, scores: pd.DataFrame) -> pd.DataFrame:
    """Tier moves since the previous scoring; customers without a tier (no method could rank them) are left out."""
    current = pd.Series(scores["tier"].to_numpy(), index=scores["customer_id"].to_numpy()).dropna()
    if previous is None:
        before = pd.Series([], dtype=current.dtype)
    else:
        old = pd.read_parquet(previous / "scores.parquet", columns=["customer_id", "tier"])
        before = pd.Series(old["tier"].to_numpy(), index=old["customer_id"].to_numpy()).dropna()
    return tiers.tier_migration(before, current)
