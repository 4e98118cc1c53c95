"""Scale-out scoring on Apache Spark (``crmscore score --engine spark``).

The same scoring as :mod:`crmscore.scoring`, run per bucket of customers on Spark executors with the
same code (:func:`crmscore.scoring.score_chunk`), for customer bases beyond one machine:

* :func:`score_stage_spark` — what ``crmscore score --engine spark [--master URL]`` runs;
* :func:`score_spark` — the scoring itself, on a session and models the caller has;
* :func:`build_features_spark` — point-in-time features of tables too large for one machine, as a
  Spark DataFrame equal to :func:`crmscore.features.build_features`;
* :func:`build_features_sql` — the same features with Spark SQL aggregations alone (no Python
  workers), for tables that already follow the data contract;
* :func:`spark_session` — a session configured for the engine (quiet logs, local executors on this
  interpreter).

pyspark is optional (``pip install 'crmscore[spark]'``) and imported only when one of these runs, so
this package imports without it; :func:`require_pyspark` gives the one-line error when it is missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crmscore.spark.session import DEFAULT_MASTER, SparkMissingError, require_pyspark, spark_session

if TYPE_CHECKING:  # pragma: no cover
    from crmscore.spark.engine import score_spark, score_stage_spark
    from crmscore.spark.features import build_features_spark
    from crmscore.spark.sql_features import build_features_sql

__all__ = [
    "DEFAULT_MASTER",
    "SparkMissingError",
    "require_pyspark",
    "spark_session",
    "score_spark",
    "score_stage_spark",
    "build_features_spark",
    "build_features_sql",
]

_LAZY = {
    "score_spark": "crmscore.spark.engine",
    "score_stage_spark": "crmscore.spark.engine",
    "build_features_spark": "crmscore.spark.features",
    "build_features_sql": "crmscore.spark.sql_features",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'crmscore.spark' has no attribute {name!r}")
