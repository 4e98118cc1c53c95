"""Batch scoring on Apache Spark: ``crmscore score --engine spark``, the same scoring as on one machine.

:func:`score_spark` writes what :func:`crmscore.scoring.score` writes, computed on a Spark cluster (or
local mode), in three passes:

1. **per bucket of customers** (:mod:`crmscore.spark.tables`: every row of a customer, in every table,
   hashed into the same bucket; ``groupBy(bucket).cogroup(...).applyInPandas``): validate the rows as the
   loader does, then :func:`crmscore.scoring.score_chunk` — the single-machine code path itself: point-in-
   time features, churn probability, CLV, segment, and the top SHAP reasons with our TreeSHAP — with
   the models broadcast to the executors. Scores, reasons, rejected rows and per-bucket counts go to a
   staging folder (Parquet, one sub-folder per kind of row);
2. **the tier scale**, which ranks customers against each other: only the columns it needs (customer
   id, CLV and the scorecard metrics' features: 8 bytes per customer per column, e.g. 7 columns × 100M
   customers = 5.6 GB on the driver) are collected, and :func:`crmscore.scoring.fit_tier_scale` fits
   the scale exactly as on one machine;
3. **per partition of scored customers** (``mapInPandas``): :func:`crmscore.scoring.score_rows`, the
   single-machine engine's own row builder, gives tier, risk band, lifecycle stage, value at risk and
   action against that scale.

Outputs, in ``<out>/as_of=YYYY-MM-DD/`` (written into a temporary folder beside it and renamed when
complete, :func:`crmscore.scoring.atomic_dir`, so the output folder must be a local or shared POSIX file
system path): ``scores.parquet`` and ``explanations.parquet`` as folders of Parquet part files (sorted by
customer, and by customer, model and rank; pandas and pyarrow read a folder as one table), ``rejects/``
(``<table>.parquet`` for each table with rejected rows: the row as read, its row number in reading order
and the reason), ``tier_migration.csv`` against the latest earlier scoring (either engine's) and
``manifest.json`` (the single-machine manifest's keys, ``feature_checks`` summed from every bucket's
counts included, plus ``engine`` and ``spark``: master, buckets and the executors' seconds per step
summed over tasks).

Every per-customer value is computed by the same functions from the same rows in the same order, and the
tier scale from the same values, so the scores equal the single-machine engine's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crmscore import scoring, tiers
from crmscore.config import Settings
from crmscore.data.plausibility import check_reject_shares
from crmscore.data.schemas import known_customers
from crmscore.errors import DataError
from crmscore.explain import REASON_COLUMNS
from crmscore.feature_checks import FeatureCounts
from crmscore.features import build_features
from crmscore.scoring import ScoreResult, ScoringModels, atomic_dir, previous_scoring, scoring_dir
from crmscore.spark.features import probe_bucket, schema_of, to_spark_frame
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
_VALUES = ["churn_probability", "expected_spend", "clv", "segment_id", "uplift"]
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
    "risk_band": "string",
    "expected_spend": "double",
    "clv": "double",
    "points": "double",
    "tier": "string",
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

    Like :func:`crmscore.stages.score_stage`, but the input is read and validated by Spark and the
    scoring runs on ``master`` (or the given ``spark`` session). ``buckets`` sets the number of customer
    buckets (default: ``scoring.chunk_size`` customers per bucket, at least one per core); ``conf`` adds
    Spark settings to a session started here.
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
) -> ScoreResult:
    """Score every customer known on ``as_of`` on Spark and write the scoring folder atomically.

    ``source`` is the input folder, or a mapping of table name to a path or a Spark DataFrame (see
    :func:`crmscore.spark.tables.read_input`). See the module docstring for the passes and outputs.
    """
    from crmscore.stages import check_model_inputs

    started = time.perf_counter()
    as_of = pd.Timestamp(as_of).normalize()
    seconds = dict(extra_seconds or {})
    before = sum(seconds.values())
    sc = spark.sparkContext
    with user_errors():
        t0 = time.perf_counter()
        inp = read_input(spark, source, settings.data)
        kind = id_kind(inp)
        ctx = BucketContext.of(inp, settings.data, kind)
        n_buckets = buckets or bucket_count(
            inp.frames["customers"].count(), settings.scoring.chunk_size, sc.defaultParallelism
        )
        customers, events = bucketed(inp, n_buckets)
        sample = probe_bucket(customers, events, ctx)
        if len(sample.tables["customers"]):
            check_model_inputs(models, sample.tables, settings.features)
        present = build_features(sample.tables, as_of, settings.features).columns
        tier_columns = [c for c in scoring.tier_features(settings) if c in present]
        seconds["prepare"] = time.perf_counter() - t0

        id_type = "long" if kind == "int" else "string"
        first = _first_pass_schema(id_type, tier_columns)
        shipped = sc.broadcast(models)  # pickled once, shipped to each executor once
        function = functools.partial(
            _score_bucket, ctx=ctx, as_of=as_of, models=shipped, settings=settings, schema=first
        )
        rows = customers.groupBy(BUCKET).cogroup(events.groupBy(BUCKET)).applyInPandas(function, first)

        target = scoring_dir(out_dir, as_of)
        previous = previous_scoring(out_dir, as_of)
        with contextlib.ExitStack() as done:
            done.callback(shipped.unpersist)  # however the scoring ends
            tmp = done.enter_context(atomic_dir(target))
            staging = tmp / "_staging"
            t0 = time.perf_counter()
            rows.write.partitionBy("kind").parquet(str(staging))
            seconds["score_partitions"] = time.perf_counter() - t0
            stats = [json.loads(r.stats) for r in spark.read.parquet(str(staging / f"kind={_STATS}")).collect()]
            rows_in = _add(s["rows_in"] for s in stats)
            rejected = {t: 0 for t in rows_in} | _add(s["rejected"] for s in stats)
            reasons = {t: _add(s["reasons"].get(t, {}) for s in stats) for t in rows_in}
            warnings = {t: _add(s["warnings"].get(t, {}) for s in stats) for t in rows_in}
            check_reject_shares(
                {t: _Counted(t, inp.specs[t].source, rows_in[t], rejected[t], reasons[t]) for t in rows_in},
                settings.data.checks,
            )
            known = sum(s["known"] for s in stats)
            explanation_rows = sum(s["explanations"] for s in stats)
            task_seconds = _add(s["seconds"] for s in stats)
            if known == 0:
                raise DataError(
                    f"customers: nobody signed up on or before the as-of date {as_of.date()}; nothing to score"
                )
            counts = sum((FeatureCounts.from_dict(s["feature_counts"]) for s in stats), FeatureCounts())
            checks = scoring.summarize_feature_checks(counts, models, settings)  # raising here leaves nothing

            # The tier scale: a few columns of every customer, on the driver.
            t0 = time.perf_counter()
            scored = spark.read.parquet(str(staging / f"kind={_SCORE}")).select("customer_id", *tier_columns, *_VALUES)
            cfg = settings.tiers
            metrics = [c for c in dict.fromkeys(cfg.scorecard.metrics.values()) if c in tier_columns]
            reference = scored.select("customer_id", "clv", *metrics).toArrow().to_pandas()
            reference = reference.set_index("customer_id")
            scale = scoring.fit_tier_scale(reference, settings, models)
            del reference
            seconds["tiers_fit"] = time.perf_counter() - t0

            t0 = time.perf_counter()
            score_schema = schema_of({"customer_id": id_type, **_SCORE_TYPES})
            assign = functools.partial(
                _assign_batches,
                settings=settings,
                scale=scale,
                as_of=as_of,
                segment_names=scoring.segment_name_map(models.segments),
                versions=models.versions(),
                contact_cost=models.contact_cost(settings),
                schema=score_schema,
            )
            scores = scored.mapInPandas(assign, score_schema)
            scores.orderBy("customer_id").write.parquet(str(tmp / "scores.parquet"))
            _write_explanations(spark, staging, tmp / "explanations.parquet", id_type)
            (tmp / "rejects").mkdir()
            for table, count in rejected.items():
                if count:
                    _write_rejects(spark, inp, staging, table, tmp / "rejects" / f"{table}.parquet")
            migration = _migration(spark, previous, tmp / "scores.parquet")
            migration.to_csv(tmp / "tier_migration.csv")
            shutil.rmtree(staging)
            seconds["tiers_and_write"] = time.perf_counter() - t0
            seconds["scoring"] = time.perf_counter() - started
            seconds["total"] = seconds["scoring"] + before
            manifest = {
                "as_of": str(as_of.date()),
                "params_hash": settings.fingerprint(),
                "models": scoring.manifest_models(models),
                "rows_in": rows_in,
                "customers_known": known,
                "scored": known,
                "rejected": rejected,
                "warnings": {t: _ranked(w) for t, w in warnings.items() if w},
                "explanations": explanation_rows,
                "chunk_size": settings.scoring.chunk_size,
                "chunks": n_buckets,
                "previous_scoring": None if previous is None else previous.name,
                "models_missing": dict(models.missing),
                "feature_checks": checks,
                "tiers": scale.to_dict(),
                "seconds": {k: round(v, 3) for k, v in seconds.items()},
                "customers_per_second": round(known / seconds["total"], 1) if seconds["total"] > 0 else None,
                "engine": "spark",
                "spark": {
                    "master": sc.master,
                    "version": spark.version,
                    "default_parallelism": sc.defaultParallelism,
                    "buckets": n_buckets,
                    "customer_ids": kind,
                    # Executor seconds per step, summed over the buckets (several run at once).
                    "task_seconds": {k: round(v, 3) for k, v in task_seconds.items()},
                },
            }
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    return ScoreResult(target, known, known, rejected, seconds, manifest)


# --- pass 1: one bucket of customers, in an executor ----------------------------------------------------------


def _first_pass_schema(id_type: str, tier_columns: list[str]) -> Any:
    types = {
        "kind": "string",
        "customer_id": id_type,
        **dict.fromkeys(tier_columns, "double"),
        "churn_probability": "double",
        "expected_spend": "double",
        "clv": "double",
        "segment_id": "long",
        "uplift": "double",
        **{c: t for c, t in _REASON_TYPES.items() if c != "customer_id"},
        "table": "string",
        "row_number": "long",
        "reason": "string",
        "raw": "string",
        "stats": "string",
    }
    return schema_of(types)


def _score_bucket(
    customers: pd.DataFrame,
    events: pd.DataFrame,
    *,
    ctx: BucketContext,
    as_of: pd.Timestamp,
    models: Any,
    settings: Settings,
    schema: Any,
) -> pd.DataFrame:
    """Validate one bucket and score its known customers with :func:`crmscore.scoring.score_chunk`."""
    t0 = time.perf_counter()
    loaded, rows = prepare_bucket(customers, events, ctx)
    spent = {"validate": time.perf_counter() - t0}
    tables = loaded.tables
    parts = []
    known = len(known_customers(tables["customers"], as_of))
    explanation_rows = 0
    counts = FeatureCounts()
    if known:
        frame, explanations, chunk_seconds, counts = scoring.score_chunk(tables, as_of, models.value, settings)
        spent.update(chunk_seconds)
        t0 = time.perf_counter()
        parts.append(to_spark_frame(frame.reset_index().assign(kind=_SCORE), schema))
        reasons = scoring.reason_frame(explanations, ctx.id_kind == "int")
        explanation_rows = len(reasons)
        parts.append(to_spark_frame(reasons.assign(kind=_REASON), schema))
        spent["output"] = time.perf_counter() - t0
    rejected, reasons = {}, {}
    for table, rejects in loaded.rejects.items():
        rejected[table] = len(rejects)
        reasons[table] = dict(Counter(r for reason in rejects["reason"].tolist() for r in reason.split("; ")))
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
    stats = {
        "rows_in": {t: int(len(r)) for t, r in rows.items()},
        "rejected": rejected,
        "reasons": reasons,
        "warnings": {t: r.warnings for t, r in loaded.reports.items()},
        "known": known,
        "explanations": explanation_rows,
        "feature_counts": counts.to_dict(),
        "seconds": spent,
    }
    parts.append(to_spark_frame(pd.DataFrame({"kind": [_STATS], "stats": [json.dumps(stats)]}), schema))
    out = pd.concat(parts, ignore_index=True)
    return out


@dataclasses.dataclass(frozen=True)
class _Counted:
    """A table's row counts summed over the buckets, as :func:`check_reject_shares` reads them."""

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


# --- pass 3: tiers, bands, stages and actions, per partition --------------------------------------------------


def _assign_batches(
    batches: Iterator[pd.DataFrame],
    *,
    settings: Settings,
    scale: tiers.TierScale,
    as_of: pd.Timestamp,
    segment_names: dict[int, str],
    versions: dict[str, int],
    contact_cost: float,
    schema: Any,
) -> Iterator[pd.DataFrame]:
    for batch in batches:
        frame = batch.set_index("customer_id")
        scores = scoring.score_rows(frame, as_of, settings, scale, segment_names, versions, contact_cost)
        for column in ("risk_band", "tier", "lifecycle_stage", "action"):
            scores[column] = scores[column].astype(object)
        yield to_spark_frame(scores, schema)


# --- outputs -------------------------------------------------------------------------------------------------


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
