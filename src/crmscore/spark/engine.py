"""Batch scoring on Apache Spark: ``crmscore score --engine spark``, the same scoring as on one machine.

:func:`score_spark` writes what :func:`crmscore.scoring.score` writes, computed on a Spark cluster (or
local mode), in three passes, by one of two jobs:

1. **per group of customers**, validate the rows as the loader does, then
   :func:`crmscore.scoring.score_chunk` — the single-machine code path itself: point-in-time features,
   churn probability, CLV, segment, and the top SHAP reasons with our TreeSHAP — with the models
   broadcast to the executors:

   * **ranges** (input of Parquet files with integer customer ids, :mod:`crmscore.spark.ranges`): one
     task per range of customer ids reads its own rows with pyarrow from the shared files — through the
     row-group statistics of a table sorted by customer (as the simulator and most exports write it),
     else from a spill of the table per range written first by one task per row group — and writes its
     own Parquet part files: the reasons straight into ``explanations.parquet`` (ranges in id order, so
     the parts are the sorted table), the per-customer values and rejects into a staging folder. No
     JVM read of the input, no shuffle;
   * **buckets** (any other input: CSV, text ids, tables given as Spark DataFrames;
     :mod:`crmscore.spark.tables`): Spark reads the tables, hashes every row of a customer into the same
     bucket (``groupBy(bucket).cogroup(...).applyInPandas``) and writes each kind of row to staging;

2. **the tier scale**, which ranks customers against each other: only the columns it needs (customer
   id, CLV and the scorecard metrics' features: 8 bytes per customer per column, e.g. 7 columns × 100M
   customers = 5.6 GB on the driver) are read, and :func:`crmscore.scoring.fit_tier_scale` fits the
   scale exactly as on one machine;
3. **tier, risk band, lifecycle stage, value at risk and action** against that scale, with
   :func:`crmscore.scoring.score_rows`, the single-machine engine's own row builder: per range (a few
   ranges a task; each writes its ``scores.parquet`` part and counts its customers' tier moves against
   the previous scoring), or per partition (``mapInPandas``) sorted by Spark for the buckets.

Outputs, in ``<out>/as_of=YYYY-MM-DD/`` (written into a temporary folder beside it and renamed when
complete, :func:`crmscore.scoring.atomic_dir`, so the output folder must be a local or shared POSIX file
system path): ``scores.parquet`` and ``explanations.parquet`` as folders of Parquet part files (sorted by
customer, and by customer, model and rank; pandas and pyarrow read a folder as one table, the parts in
name order), ``rejects/`` (``<table>.parquet`` for each table with rejected rows: the row as read, its
row number in the file and the reason), ``tier_migration.csv`` against the latest earlier scoring
(either engine's) and ``manifest.json`` (the single-machine manifest's keys, ``feature_checks`` summed
from every task's counts included, plus ``engine`` and ``spark``: master, the number of ranges or
buckets, which job read the input, and the executors' seconds per step summed over tasks).

Every per-customer value is computed by the same functions from the same rows in the same order, and the
tier scale from the same values, so the scores equal the single-machine engine's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import os
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from crmscore import scoring, tiers
from crmscore.config import Settings
from crmscore.data.plausibility import check_reject_shares
from crmscore.data.schemas import known_customers
from crmscore.errors import DataError
from crmscore.explain import REASON_COLUMNS
from crmscore.feature_checks import FeatureCounts
from crmscore.features import build_features
from crmscore.parallel import limited_threads
from crmscore.scoring import ScoreResult, ScoringModels, atomic_dir, previous_scoring, scoring_dir
from crmscore.spark.features import probe_bucket, schema_of, to_spark_frame
from crmscore.spark.ranges import (
    RangeContext,
    RangePlan,
    Spilled,
    plan_ranges,
    probe,
    read_range,
    spill,
    whole_table_checks,
)
from crmscore.spark.session import DEFAULT_MASTER, require_pyspark, spark_session, user_errors
from crmscore.spark.tables import (
    BUCKET,
    BucketContext,
    bucket_count,
    bucketed,
    file_row_numbers,
    id_kind,
    prepare_bucket,
    read_input,
)

__all__ = ["score_spark", "score_stage_spark"]

log = logging.getLogger("crmscore")

# Kinds of rows of the first pass, each written to its own staging folder.
_SCORE, _REASON, _REJECT, _STATS = "score", "reason", "reject", "stats"
# Per-customer values of score_chunk besides the tier features.
_VALUES = [
    "churn_probability",
    "churn_low",
    "churn_high",
    "expected_spend",
    "clv",
    "clv_low",
    "clv_high",
    "segment_id",
    "uplift",
]
_REASON_TYPES = {
    "customer_id": "long",
    "model": "string",
    "rank": "long",
    "feature": "string",
    "value": "string",
    "contribution": "double",
    "probability_change": "double",
    "relative_spend_change": "double",
    "text": "string",
}
_SCORE_TYPES = {
    "as_of": "timestamp_ntz",
    "churn_probability": "double",
    "churn_low": "double",
    "churn_high": "double",
    "risk_band": "string",
    "expected_spend": "double",
    "clv": "double",
    "clv_low": "double",
    "clv_high": "double",
    "points": "double",
    "tier": "string",
    "tier_confidence": "double",
    "borderline": "boolean",
    "segment_id": "long",
    "segment": "string",
    "lifecycle_stage": "string",
    "value_at_risk": "double",
    "action": "string",
    "uplift": "double",
    "expected_incremental_value": "double",
    "recommended": "boolean",
    "churn_model_version": "long",
    "clv_model_version": "long",
    "segments_model_version": "long",
    "uplift_model_version": "long",
}


def score_stage_spark(
    settings: Settings,
    as_of: Any,
    input_dir: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    versions: dict[str, int] | None = None,
    master: str = DEFAULT_MASTER,
    spark: Any = None,
    buckets: int | None = None,
    conf: Mapping[str, str] | None = None,
) -> ScoreResult:
    """``crmscore score --engine spark``: load the champions (or ``versions``), start Spark, score.

    Like :func:`crmscore.stages.score_stage`, but the scoring runs on ``master`` (or the given ``spark``
    session). ``buckets`` sets the number of customer buckets or ranges (default: ``scoring.chunk_size``
    customers each, at least one per core); ``conf`` adds Spark settings to a session started here.
    """
    from crmscore.locks import folder_lock
    from crmscore.stages import load_scoring_models

    require_pyspark()
    out_dir = out_dir or settings.scoring.out_dir
    # One run at a time writes the folder: the lock is held from before the input is read.
    with folder_lock(scoring_dir(out_dir, pd.Timestamp(as_of).normalize())):
        t0 = time.perf_counter()
        models = load_scoring_models(settings, versions)
        load_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        session = spark if spark is not None else spark_session(master, conf)
        start_seconds = time.perf_counter() - t0
        source = Path(input_dir or settings.data.input_dir or settings.paths.simulated_dir)
        result = score_spark(
            session,
            source,
            as_of,
            models,
            settings,
            out_dir,
            buckets=buckets,
            extra_seconds={"load_models": load_seconds, "start_spark": start_seconds},
        )
    log.info("scored %d customers as of %s on Spark into %s", result.scored, pd.Timestamp(as_of).date(), result.out_dir)
    return result


def score_spark(
    spark: Any,
    source: Any,
    as_of: Any,
    models: ScoringModels,
    settings: Settings,
    out_dir: str | os.PathLike,
    buckets: int | None = None,
    extra_seconds: Mapping[str, float] | None = None,
    ranges: bool = True,
) -> ScoreResult:
    """Score every customer known on ``as_of`` on Spark and write the scoring folder atomically.

    ``source`` is the input folder, or a mapping of table name to a path or a Spark DataFrame (see
    :func:`crmscore.spark.tables.read_input`). See the module docstring for the passes and outputs.
    ``ranges=False`` takes the bucketed path whatever the input (the same results, more slowly).
    """
    from crmscore.stages import check_model_inputs

    started = time.perf_counter()
    as_of = pd.Timestamp(as_of).normalize()
    seconds = dict(extra_seconds or {})
    before = sum(seconds.values())
    sc = spark.sparkContext
    with user_errors():
        t0 = time.perf_counter()
        job = _open_job(spark, source, settings, buckets, ranges)
        sample = job.probe()
        if len(sample.tables["customers"]):
            check_model_inputs(models, sample.tables, settings.features)
        present = build_features(sample.tables, as_of, settings.features).columns
        tier_columns = [c for c in scoring.tier_features(settings) if c in present]
        seconds["prepare"] = time.perf_counter() - t0

        target = scoring_dir(out_dir, as_of)
        previous = previous_scoring(out_dir, as_of)
        shipped = sc.broadcast(models)  # pickled once, shipped to each executor once
        with contextlib.ExitStack() as done:
            done.callback(shipped.unpersist)  # however the scoring ends
            tmp = done.enter_context(atomic_dir(target))
            staging = tmp / "_staging"
            t0 = time.perf_counter()
            task_cpus = int(sc.getConf().get("spark.task.cpus", "1"))
            stats = job.score(_FirstPass(as_of, shipped, settings, tier_columns, task_cpus), staging, tmp)
            seconds["score_partitions"] = time.perf_counter() - t0
            totals = _Totals.of(stats)
            check_reject_shares(totals.counted(job.sources()), settings.data.checks)
            if totals.known == 0:
                raise DataError(
                    f"customers: nobody signed up on or before the as-of date {as_of.date()}; nothing to score"
                )
            checks = scoring.summarize_feature_checks(totals.counts, models, settings)  # raising here leaves nothing

            # The tier scale: a few columns of every customer, on the driver.
            t0 = time.perf_counter()
            metrics = [c for c in dict.fromkeys(settings.tiers.scorecard.metrics.values()) if c in tier_columns]
            reference = job.tier_reference(staging, ["customer_id", "clv", *metrics]).set_index("customer_id")
            scale = scoring.fit_tier_scale(reference, settings, models)
            del reference
            seconds["tiers_fit"] = time.perf_counter() - t0

            t0 = time.perf_counter()
            assign = _Assign.of(scale, as_of, models, settings)
            migration = job.write(assign, tier_columns, staging, tmp, previous, totals.rejected)
            migration.to_csv(tmp / "tier_migration.csv")
            shutil.rmtree(staging, ignore_errors=True)
            seconds["tiers_and_write"] = time.perf_counter() - t0
            seconds["scoring"] = time.perf_counter() - started
            seconds["total"] = seconds["scoring"] + before
            manifest = _manifest(spark, job, totals, checks, scale, models, settings, as_of, previous, seconds)
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    return ScoreResult(target, totals.known, totals.known, totals.rejected, seconds, manifest)


def _open_job(spark: Any, source: Any, settings: Settings, buckets: int | None, ranges: bool) -> _Ranges | _Buckets:
    """The range job when the input is Parquet files with integer customer ids, else the bucketed one."""
    parallelism = spark.sparkContext.defaultParallelism
    plan = plan_ranges(source, settings.data, settings.scoring.chunk_size, parallelism, buckets) if ranges else None
    if plan is not None:
        return _Ranges(spark, plan, whole_table_checks(spark, plan, settings.data))
    return _Buckets(spark, source, settings, buckets)


def _manifest(
    spark: Any,
    job: _Ranges | _Buckets,
    totals: _Totals,
    checks: list[dict[str, Any]],
    scale: tiers.TierScale,
    models: ScoringModels,
    settings: Settings,
    as_of: pd.Timestamp,
    previous: Path | None,
    seconds: Mapping[str, float],
) -> dict[str, Any]:
    """The single-machine manifest's keys, plus ``engine`` and ``spark``."""
    sc = spark.sparkContext
    counts = scoring.ScoringCounts(
        totals.rows_in,
        totals.known,
        totals.known,
        totals.rejected,
        {t: _ranked(w) for t, w in totals.warnings.items()},
        totals.explanations,
        settings.scoring.chunk_size,
        job.count,
    )
    return scoring.scoring_manifest(
        as_of,
        settings,
        models,
        counts,
        previous,
        checks,
        scale,
        seconds,
        engine="spark",
        spark={
            "master": sc.master,
            "version": spark.version,
            "default_parallelism": sc.defaultParallelism,
            "buckets": job.count,
            "input": job.input,
            "customer_ids": job.kind,
            # Executor seconds per step, summed over the buckets (several run at once).
            "task_seconds": {k: round(v, 3) for k, v in totals.task_seconds.items()},
        },
    )


@dataclasses.dataclass(frozen=True)
class _FirstPass:
    """What every task of the first pass needs besides its rows (small and picklable; models broadcast)."""

    as_of: pd.Timestamp
    models: Any  # the broadcast ScoringModels
    settings: Settings
    tier_columns: list[str]
    #: Threads a task's LightGBM and TreeSHAP use: the cores Spark gives a task (``spark.task.cpus``), as
    #: the executor runs as many tasks side by side as it has cores.
    threads: int = 1

    def score(self, tables: Mapping[str, pd.DataFrame]):
        """:func:`crmscore.scoring.score_chunk` of one task's validated tables, within the task's threads."""
        with limited_threads(self.threads):
            return scoring.score_chunk(tables, self.as_of, self.models.value, self.settings)


@dataclasses.dataclass
class _Totals:
    """The first pass's counts, summed over the tasks."""

    rows_in: dict[str, int]
    rejected: dict[str, int]
    reasons: dict[str, dict[str, int]]
    warnings: dict[str, dict[str, int]]
    known: int
    explanations: int
    task_seconds: dict[str, float]
    counts: FeatureCounts

    @classmethod
    def of(cls, stats: list[dict[str, Any]]) -> _Totals:
        rows_in = _add(s["rows_in"] for s in stats)
        return cls(
            rows_in=rows_in,
            rejected={t: 0 for t in rows_in} | _add(s["rejected"] for s in stats),
            reasons={t: _add(s["reasons"].get(t, {}) for s in stats) for t in rows_in},
            warnings={t: _add(s["warnings"].get(t, {}) for s in stats) for t in rows_in},
            known=sum(s["known"] for s in stats),
            explanations=sum(s["explanations"] for s in stats),
            task_seconds=_add(s["seconds"] for s in stats),
            counts=sum((FeatureCounts.from_dict(s["feature_counts"]) for s in stats), FeatureCounts()),
        )

    def counted(self, sources: Mapping[str, str]) -> dict[str, _Counted]:
        """Per table, the counts :func:`check_reject_shares` reads."""
        return {t: _Counted(t, sources[t], self.rows_in[t], self.rejected[t], self.reasons[t]) for t in self.rows_in}


def _task_stats(
    rejects: Mapping[str, pd.DataFrame],
    warnings: Mapping[str, Mapping[str, int]],
    rows_in: Mapping[str, int],
    known: int,
    explanations: int,
    counts: FeatureCounts,
    spent: Mapping[str, float],
) -> dict[str, Any]:
    """One task's counts, as :class:`_Totals` adds them up (plain JSON values)."""
    rejected = {table: len(rows) for table, rows in rejects.items()}
    reasons = {
        table: dict(Counter(r for reason in rows["reason"].tolist() for r in reason.split("; ")))
        for table, rows in rejects.items()
    }
    return {
        "rows_in": {t: int(n) for t, n in rows_in.items()},
        "rejected": rejected,
        "reasons": reasons,
        "warnings": {t: dict(w) for t, w in warnings.items()},
        "known": known,
        "explanations": explanations,
        "feature_counts": counts.to_dict(),
        "seconds": dict(spent),
    }


@dataclasses.dataclass(frozen=True)
class _Assign:
    """Pass 3 of a customer's row: tier, risk band, stage and action against the fitted scale."""

    scale: tiers.TierScale
    as_of: pd.Timestamp
    settings: Settings
    segment_names: dict[int, str]
    versions: dict[str, int]
    contact_cost: float

    @classmethod
    def of(cls, scale: tiers.TierScale, as_of: pd.Timestamp, models: ScoringModels, settings: Settings) -> _Assign:
        names = scoring.segment_name_map(models.segments)
        return cls(scale, as_of, settings, names, models.versions(), models.contact_cost(settings))

    def rows(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``scores.parquet`` for ``frame`` (first-pass values indexed by customer id)."""
        scores = scoring.score_rows(
            frame, self.as_of, self.settings, self.scale, self.segment_names, self.versions, self.contact_cost
        )
        for column in ("risk_band", "tier", "lifecycle_stage", "action"):
            scores[column] = scores[column].astype(object)
        return scores


@dataclasses.dataclass(frozen=True)
class _Counted:
    """A table's row counts summed over the tasks, as :func:`check_reject_shares` reads them."""

    table: str
    source: str
    rows_in: int
    rows_rejected: int
    reasons: dict[str, int]


def _ranked(counts: Mapping[str, int]) -> dict[str, int]:
    """Counts by reason, the largest first (ties by reason), as the single-machine manifest orders them."""
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _add(dicts: Iterator[Mapping[str, float]]) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for d in dicts:
        for key, value in d.items():
            total[key] = total.get(key, 0) + value
    return total


# --- input sorted by customer id: one task per range of ids, no shuffle ----------------------------------------


class _Ranges:
    """The scoring of Parquet input sorted by customer id (:mod:`crmscore.spark.ranges`).

    Pass 1 runs one task per customer id range: it reads and validates the range's rows with pyarrow,
    scores them with :func:`crmscore.scoring.score_chunk` and writes its own Parquet part files — the
    first-pass values and rejects to the staging folder, the reasons straight to
    ``explanations.parquet/part-<range>.parquet`` (a range's reasons are in customer, model and rank
    order, and the ranges in id order, so the parts read in name order are the sorted table). Pass 3 runs
    one task per range again: the range's ``scores.parquet`` part and its tier moves against the previous
    scoring. No shuffle, no sort, no JVM read of the input.
    """

    input = "ranges"
    kind = "int"

    def __init__(self, spark: Any, plan: RangePlan, ctx: RangeContext) -> None:
        self.spark = spark
        self.plan = plan
        self.ctx = ctx
        self.count = len(plan)

    def sources(self) -> dict[str, str]:
        return dict(self.ctx.sources)

    def probe(self) -> Any:
        return probe(self.plan, self.ctx)

    def _run(self, function: Any, items: list[Any]) -> list[Any]:
        """``function(item)`` for every item, one Spark task each; the results in the items' order."""
        return self.spark.sparkContext.parallelize(items, len(items)).map(function).collect()

    def score(self, first: _FirstPass, staging: Path, out: Path) -> list[dict[str, Any]]:
        (out / "explanations.parquet").mkdir()
        spilled = spill(self.spark, self.plan, staging / "spill")
        function = functools.partial(
            _score_range, plan=self.plan, ctx=self.ctx, first=first, staging=str(staging), out=str(out)
        )
        return self._run(function, list(enumerate(spilled)))

    def tier_reference(self, staging: Path, columns: list[str]) -> pd.DataFrame:
        return pq.read_table(staging / "values", columns=columns).to_pandas()

    def write(
        self,
        assign: _Assign,
        tier_columns: list[str],
        staging: Path,
        out: Path,
        previous: Path | None,
        rejected: Mapping[str, int],
    ) -> pd.DataFrame:
        """``scores.parquet`` (per range), the reasons' folder completed, ``rejects/``; the tier migration."""
        (out / "scores.parquet").mkdir()
        integer_previous = previous is None or _integer_ids(previous / "scores.parquet")
        function = functools.partial(
            _assign_ranges,
            bounds=self.plan.bounds,
            assign=assign,
            staging=str(staging),
            out=str(out),
            previous=None if previous is None or not integer_previous else str(previous / "scores.parquet"),
        )
        # A light pass: a few consecutive ranges a task (two tasks a core), so the tasks' own costs stay small.
        groups = np.array_split(np.arange(self.count), min(self.count, 2 * self.spark.sparkContext.defaultParallelism))
        moves = self._run(function, [g.tolist() for g in groups])
        if not any((out / "explanations.parquet").iterdir()):  # no model with SHAP reasons: an empty table
            _write_part(_REASON_SCHEMA.empty_table(), out / "explanations.parquet", 0)
        (out / "rejects").mkdir()
        for table, count in rejected.items():
            if count:
                _gather_rejects(staging / "rejects" / table, out / "rejects" / f"{table}.parquet")
        if not integer_previous:  # text ids before: the previous scoring joined in Spark
            return _migration(self.spark, previous, out / "scores.parquet")
        return _migration_frame(np.sum(moves, axis=0))


def _score_range(
    item: tuple[int, Spilled], *, plan: RangePlan, ctx: RangeContext, first: _FirstPass, staging: str, out: str
) -> dict[str, Any]:
    """Pass 1 of a range, in a task: read, validate and score; write its part files; return its counts.

    ``item``: the range's number and where its rows of the unsorted tables were spilled."""
    k, spilled = item
    rows = read_range(plan, k, ctx, spilled)
    tables, spent = rows.tables, rows.seconds
    known = len(known_customers(tables["customers"], first.as_of))
    explanation_rows = 0
    counts = FeatureCounts()
    if known:
        frame, explanations, chunk_seconds, counts = first.score(tables)
        spent.update(chunk_seconds)
        t0 = time.perf_counter()
        schema = _values_schema(first.tier_columns)
        values = frame.reset_index().astype({c: float for c in first.tier_columns})
        _write_part(
            pa.Table.from_pandas(values[schema.names], schema=schema, preserve_index=False), Path(staging) / "values", k
        )
        reasons = scoring.reason_frame(explanations, integer_ids=True)
        explanation_rows = len(reasons)
        if explanation_rows:
            table = pa.Table.from_pandas(reasons, schema=_REASON_SCHEMA, preserve_index=False)
            _write_part(table, Path(out) / "explanations.parquet", k)
        spent["output"] = time.perf_counter() - t0
    for table, rejects in rows.rejects.items():
        if len(rejects):
            schema = _rejects_schema(rejects.columns)
            _write_part(
                pa.Table.from_pandas(rejects, schema=schema, preserve_index=False), Path(staging) / "rejects" / table, k
            )
    return _task_stats(rows.rejects, rows.warnings, rows.rows_in, known, explanation_rows, counts, spent)


def _assign_ranges(
    ks: list[int],
    *,
    bounds: tuple[tuple[float, float], ...],
    assign: _Assign,
    staging: str,
    out: str,
    previous: str | None,
) -> np.ndarray:
    """Pass 3 of ranges ``ks``, in a task: their ``scores.parquet`` parts; their tier moves since ``previous``."""
    return np.sum([_assign_range(k, bounds[k], assign, staging, out, previous) for k in ks], axis=0)


def _assign_range(
    k: int, bounds: tuple[float, float], assign: _Assign, staging: str, out: str, previous: str | None
) -> np.ndarray:
    """Range ``k``'s ``scores.parquet`` part; its customers' tier moves (a previous scoring's too)."""
    path = Path(staging) / "values" / _part_name(k)
    current = pd.Series([], dtype=object)
    if path.exists():
        scores = assign.rows(pq.read_table(path).to_pandas().set_index("customer_id"))
        table = pa.Table.from_pandas(scores, schema=_score_schema(), preserve_index=False)
        _write_part(table, Path(out) / "scores.parquet", k)
        current = pd.Series(scores["tier"].to_numpy(), index=scores["customer_id"].to_numpy()).dropna()
    before = pd.Series([], dtype=object)
    if previous is not None:
        old = _previous_range(previous, *bounds)
        before = pd.Series(old["tier"].to_numpy(), index=old["customer_id"].to_numpy()).dropna()
    return tiers.tier_migration(before, current).to_numpy()


def _previous_range(path: str, lo: float, hi: float) -> pd.DataFrame:
    """Customer id and tier of the previous scoring's customers with ``lo < customer_id <= hi``."""
    import pyarrow.dataset as ds

    condition = None
    if math.isfinite(lo):
        condition = ds.field("customer_id") > int(lo)
    if math.isfinite(hi):
        upper = ds.field("customer_id") <= int(hi)
        condition = upper if condition is None else condition & upper
    return ds.dataset(path, format="parquet").to_table(columns=["customer_id", "tier"], filter=condition).to_pandas()


def _integer_ids(path: Path) -> bool:
    """Whether the scores at ``path`` (a file or a folder of parts) hold integer customer ids."""
    import pyarrow.dataset as ds

    schema = ds.dataset(path, format="parquet").schema
    return schema.get_field_index("customer_id") >= 0 and pa.types.is_integer(schema.field("customer_id").type)


def _migration_frame(counts: np.ndarray) -> pd.DataFrame:
    """Tier moves summed over the ranges, in :func:`crmscore.tiers.tier_migration`'s form."""
    out = tiers.tier_migration(pd.Series([], dtype=object), pd.Series([], dtype=object))  # every cell, all zero
    return out + np.asarray(counts, dtype=np.int64).reshape(out.shape)


def _gather_rejects(parts: Path, path: Path) -> None:
    """One table's rejected rows from every range, in file order, as the single-machine engine writes them."""
    rejects = pq.read_table(parts).to_pandas().sort_values("row_number", kind="stable", ignore_index=True)
    for column in rejects.columns:
        if column != "row_number":
            rejects[column] = rejects[column].astype("string")
    rejects.to_parquet(path, index=False)


# --- output part files ---------------------------------------------------------------------------------------

_TEXT = pa.large_string()  # text as pandas writes it (Parquet stores either string type alike)
_REASON_SCHEMA = pa.schema(
    [
        ("customer_id", pa.int64()),
        ("model", _TEXT),
        ("rank", pa.int64()),
        ("feature", _TEXT),
        ("value", _TEXT),
        ("contribution", pa.float64()),
        ("probability_change", pa.float64()),
        ("relative_spend_change", pa.float64()),
        ("text", _TEXT),
    ]
)
_ARROW_TYPES = {
    "string": _TEXT,
    "double": pa.float64(),
    "long": pa.int64(),
    "boolean": pa.bool_(),
    "timestamp_ntz": pa.timestamp("ns"),
}


def _score_schema() -> pa.Schema:
    """The columns of ``scores.parquet`` with the single-machine engine's types (integer customer ids)."""
    return pa.schema([("customer_id", pa.int64()), *[(c, _ARROW_TYPES[t]) for c, t in _SCORE_TYPES.items()]])


def _values_schema(tier_columns: list[str]) -> pa.Schema:
    """The first pass's per-customer values: id, the tier features, then :data:`_VALUES`."""
    values = {c: pa.int64() if c == "segment_id" else pa.float64() for c in _VALUES}
    return pa.schema([("customer_id", pa.int64()), *[(c, pa.float64()) for c in tier_columns], *values.items()])


def _rejects_schema(columns: Any) -> pa.Schema:
    return pa.schema([(c, pa.int64() if c == "row_number" else _TEXT) for c in columns])


def _part_name(k: int) -> str:
    return f"part-{k:05d}.parquet"


def _write_part(table: pa.Table, folder: Path, k: int) -> None:
    """``table`` as ``folder/part-<k>.parquet``, whole or not at all (a task run again replaces it)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / _part_name(k)
    partial = folder / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    pq.write_table(table, partial)
    os.replace(partial, path)


# --- any other input: buckets of hashed customer ids, a cogroup -----------------------------------------------


class _Buckets:
    """The scoring of any input through Spark's reader and a shuffle (:mod:`crmscore.spark.tables`).

    Pass 1 hashes every row into a bucket of customers (``groupBy(bucket).cogroup(...).applyInPandas``)
    and writes one staging folder per kind of row; pass 3 runs per partition of scored customers
    (``mapInPandas``); the outputs are sorted by Spark.
    """

    input = "buckets"

    def __init__(self, spark: Any, source: Any, settings: Settings, buckets: int | None) -> None:
        self.spark = spark
        self.inp = read_input(spark, source, settings.data)
        self.kind = id_kind(self.inp)
        self.ctx = BucketContext.of(self.inp, settings.data, self.kind)
        customers = self.inp.frames["customers"].count()
        self.count = buckets or bucket_count(
            customers, settings.scoring.chunk_size, spark.sparkContext.defaultParallelism
        )
        self.customers, self.events = bucketed(self.inp, self.count)
        self.id_type = "long" if self.kind == "int" else "string"

    def sources(self) -> dict[str, str]:
        return {t: spec.source for t, spec in self.inp.specs.items()}

    def probe(self) -> Any:
        return probe_bucket(self.customers, self.events, self.ctx)

    def score(self, first: _FirstPass, staging: Path, out: Path) -> list[dict[str, Any]]:
        schema = _first_pass_schema(self.id_type, first.tier_columns)
        function = functools.partial(_score_bucket, ctx=self.ctx, first=first, schema=schema)
        rows = self.customers.groupBy(BUCKET).cogroup(self.events.groupBy(BUCKET)).applyInPandas(function, schema)
        rows.write.partitionBy("kind").parquet(str(staging))
        return [json.loads(r.stats) for r in self.spark.read.parquet(str(staging / f"kind={_STATS}")).collect()]

    def _scored(self, staging: Path) -> Any:
        return self.spark.read.parquet(str(staging / f"kind={_SCORE}"))

    def tier_reference(self, staging: Path, columns: list[str]) -> pd.DataFrame:
        return self._scored(staging).select(*columns).toArrow().to_pandas()

    def write(
        self,
        assign: _Assign,
        tier_columns: list[str],
        staging: Path,
        out: Path,
        previous: Path | None,
        rejected: Mapping[str, int],
    ) -> pd.DataFrame:
        """``scores.parquet`` and ``explanations.parquet`` sorted by Spark, ``rejects/``; the tier migration."""
        score_schema = schema_of({"customer_id": self.id_type, **_SCORE_TYPES})
        scored = self._scored(staging).select("customer_id", *tier_columns, *_VALUES)
        function = functools.partial(_assign_batches, assign=assign, schema=score_schema)
        scored.mapInPandas(function, score_schema).orderBy("customer_id").write.parquet(str(out / "scores.parquet"))
        _write_explanations(self.spark, staging, out / "explanations.parquet", self.id_type)
        (out / "rejects").mkdir()
        for table, count in rejected.items():
            if count:
                _write_rejects(self.spark, self.inp, staging, table, out / "rejects" / f"{table}.parquet")
        return _migration(self.spark, previous, out / "scores.parquet")


def _first_pass_schema(id_type: str, tier_columns: list[str]) -> Any:
    types = {
        "kind": "string",
        "customer_id": id_type,
        **dict.fromkeys(tier_columns, "double"),
        **{c: "long" if c == "segment_id" else "double" for c in _VALUES},
        **{c: t for c, t in _REASON_TYPES.items() if c != "customer_id"},
        "table": "string",
        "row_number": "long",
        "reason": "string",
        "raw": "string",
        "stats": "string",
    }
    return schema_of(types)


def _score_bucket(
    customers: pd.DataFrame, events: pd.DataFrame, *, ctx: BucketContext, first: _FirstPass, schema: Any
) -> pd.DataFrame:
    """Validate one bucket and score its known customers with :func:`crmscore.scoring.score_chunk`."""
    t0 = time.perf_counter()
    loaded, rows = prepare_bucket(customers, events, ctx)
    spent = {"validate": time.perf_counter() - t0}
    tables = loaded.tables
    parts = []
    known = len(known_customers(tables["customers"], first.as_of))
    explanation_rows = 0
    counts = FeatureCounts()
    if known:
        frame, explanations, chunk_seconds, counts = first.score(tables)
        spent.update(chunk_seconds)
        t0 = time.perf_counter()
        parts.append(to_spark_frame(frame.reset_index().assign(kind=_SCORE), schema))
        reasons = scoring.reason_frame(explanations, ctx.id_kind == "int")
        explanation_rows = len(reasons)
        parts.append(to_spark_frame(reasons.assign(kind=_REASON), schema))
        spent["output"] = time.perf_counter() - t0
    for table, rejects in loaded.rejects.items():
        if len(rejects):
            raw = rejects.drop(columns=["row_number", "reason"]).astype(object)
            raw = raw.where(raw.notna(), None)
            reject_rows = pd.DataFrame(
                {
                    "kind": _REJECT,
                    "table": table,
                    "row_number": rejects["row_number"].to_numpy(dtype=np.int64),
                    "reason": rejects["reason"].astype(object).to_numpy(),
                    "raw": [json.dumps(r) for r in raw.to_dict("records")],
                }
            )
            parts.append(to_spark_frame(reject_rows, schema))
    rows_in = {t: len(r) for t, r in rows.items()}
    warnings = {t: r.warnings for t, r in loaded.reports.items()}
    stats = _task_stats(loaded.rejects, warnings, rows_in, known, explanation_rows, counts, spent)
    parts.append(to_spark_frame(pd.DataFrame({"kind": [_STATS], "stats": [json.dumps(stats)]}), schema))
    return pd.concat(parts, ignore_index=True)


def _assign_batches(batches: Iterator[pd.DataFrame], *, assign: _Assign, schema: Any) -> Iterator[pd.DataFrame]:
    for batch in batches:
        yield to_spark_frame(assign.rows(batch.set_index("customer_id")), schema)


def _write_explanations(spark: Any, staging: Path, path: Path, id_type: str) -> None:
    folder = staging / f"kind={_REASON}"
    if folder.exists():
        reasons = spark.read.parquet(str(folder)).select(*REASON_COLUMNS)
    else:  # no model with SHAP reasons: an empty table, as on one machine
        reasons = spark.createDataFrame([], schema_of({**_REASON_TYPES, "customer_id": id_type}))
    reasons.orderBy("customer_id", "model", "rank").write.parquet(str(path))


def _write_rejects(spark: Any, inp: Any, staging: Path, table: str, path: Path) -> None:
    """The rejected rows of ``table`` as read, with their row number in reading order and the reason."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    columns = list(inp.specs[table].columns)
    rows = (
        spark.read.parquet(str(staging / f"kind={_REJECT}"))
        .where(F.col("table") == table)
        .select("row_number", "raw", "reason")
    )
    rows = file_row_numbers(inp.frames[table], rows)
    raw = StructType([StructField(c, StringType()) for c in columns])
    parsed = rows.select("row_number", F.from_json("raw", raw).alias("raw"), "reason")
    parsed = parsed.select("row_number", *[F.col("raw").getField(c).alias(c) for c in columns], "reason")
    parsed.orderBy("row_number").write.parquet(str(path))


def _migration(spark: Any, previous: Path | None, scores: Path) -> pd.DataFrame:
    """Tier moves against the previous scoring, counted in Spark, in :func:`crmscore.tiers.tier_migration`'s form."""
    from pyspark.sql import functions as F

    # Customers without a tier (no method could rank them) are left out, as on one machine.
    current = (
        spark.read.parquet(str(scores))
        .where(F.col("tier").isNotNull())
        .select("customer_id", F.col("tier").alias("current"))
    )
    out = tiers.tier_migration(pd.Series([], dtype=object), pd.Series([], dtype=object))  # every cell, all zero
    if previous is None:
        counts = current.groupBy("current").count().collect()
        cells = [("new", r["current"], r["count"]) for r in counts]
    else:
        before = (
            spark.read.parquet(str(previous / "scores.parquet"))
            .where(F.col("tier").isNotNull())
            .select("customer_id", F.col("tier").cast("string").alias("previous"))
        )
        joined = before.join(current, "customer_id", "full_outer").select(
            F.coalesce("previous", F.lit("new")).alias("previous"),
            F.coalesce("current", F.lit("gone")).alias("current"),
        )
        counts = joined.groupBy("previous", "current").count().collect()
        cells = [(r["previous"], r["current"], r["count"]) for r in counts]
    for row, column, count in cells:
        if row not in out.index or column not in out.columns:
            raise ValueError(f"tier migration: unknown tier {row if row not in out.index else column!r}")
        out.loc[row, column] += int(count)
    return out
