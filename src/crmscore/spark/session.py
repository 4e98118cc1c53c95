"""The Spark session of the Spark engine, and the one-line error when pyspark is not installed.

pyspark is imported here only inside functions, so ``crmscore.spark`` imports without it. The session
is configured for the engine's needs (see :data:`SESSION_CONF`); a session the caller already made is
used as it is, except for the runtime SQL settings of :func:`configure`, which the engine needs to read
the input exactly as the single-machine loader does.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from crmscore.errors import CrmscoreError, DataError

__all__ = ["DEFAULT_MASTER", "SESSION_CONF", "SparkMissingError", "require_pyspark", "spark_session", "configure"]

#: ``--master`` when none is given: every core of this machine.
DEFAULT_MASTER = "local[*]"

#: Settings of a session started by :func:`spark_session` (``conf`` overrides them).
SESSION_CONF: dict[str, str] = {
    "spark.app.name": "crmscore",
    # No console progress bars between the engine's own messages.
    "spark.ui.showConsoleProgress": "false",
    # Timestamps without a time zone stay wall-clock times, as pandas reads them on one machine.
    "spark.sql.session.timeZone": "UTC",
    # pandas writes nanosecond timestamps, which Spark cannot read as timestamps: read them as numbers
    # (the engine turns them back into dates exactly, see crmscore.spark.tables).
    "spark.sql.legacy.parquet.nanosAsLong": "true",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # Larger Arrow batches between the JVM and the Python workers: fewer round trips per bucket.
    "spark.sql.execution.arrow.maxRecordsPerBatch": "100000",
}

# Runtime SQL settings the engine relies on, applied to any session it is given.
_RUNTIME_CONF = ("spark.sql.session.timeZone", "spark.sql.legacy.parquet.nanosAsLong")


class SparkMissingError(CrmscoreError):
    """The Spark engine was asked for but pyspark is not installed."""


def require_pyspark() -> None:
    """Raise :class:`SparkMissingError` (one line, exit code 2) when pyspark cannot be imported."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise SparkMissingError(
            "the Spark engine needs pyspark, which is not installed: pip install 'crmscore[spark]'"
        ) from None


def configure(spark: Any) -> Any:
    """Apply the engine's runtime SQL settings to ``spark`` (the session's time zone and Parquet reading)."""
    for key in _RUNTIME_CONF:
        spark.conf.set(key, SESSION_CONF[key])
    return spark


def spark_session(master: str = DEFAULT_MASTER, conf: Mapping[str, str] | None = None) -> Any:
    """A Spark session on ``master`` with :data:`SESSION_CONF` (and ``conf``), logging only errors.

    In local mode the executors run this interpreter (``PYSPARK_PYTHON``, unless set already) with this
    process's crmscore first on their path (:func:`_local_python_path`), so they import the same crmscore
    and libraries; on a cluster every executor needs crmscore installed.
    """
    require_pyspark()
    from pyspark.sql import SparkSession

    if master.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    settings = dict(SESSION_CONF)
    if master.startswith("local"):
        settings.setdefault("spark.ui.enabled", "false")
        settings.setdefault("spark.executorEnv.PYTHONPATH", _local_python_path())
    settings.update(conf or {})
    # Quiet from the start: the JVM reads its logging configuration once, when the first session starts.
    settings.setdefault("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={_log_config()}")
    builder = SparkSession.builder.master(master)
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return configure(spark)


def _local_python_path() -> str:
    """The Python path of local executors: this process's crmscore, then ``PYTHONPATH`` made absolute.

    The Python workers start in the JVM's working folder, where a relative ``PYTHONPATH`` entry (``src``)
    would name another folder, and an installed crmscore elsewhere would be imported instead of this one.
    """
    import crmscore

    entries = [str(Path(crmscore.__file__).resolve().parent.parent)]
    entries += [str(Path(p).resolve()) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys(entries))


def _log_config() -> str:
    """A log4j2 configuration that logs errors only (no start-up banner, no warnings), as a file URI."""
    path = Path(tempfile.gettempdir()) / "crmscore-spark-log4j2.properties"
    if not path.exists() or path.read_text(encoding="utf-8") != _LOG4J2:
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(_LOG4J2, encoding="utf-8")
        os.replace(partial, path)  # whole or not at all, whichever process writes it
    return path.as_uri()


_LOG4J2 = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
"""


# --- errors raised inside executors ---------------------------------------------------------------------

_EXECUTOR_ERROR = re.compile(r"crmscore\.errors\.(\w+Error): (.+)")


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn a crmscore error raised in an executor (e.g. a bucket's column that cannot be read) into the
    same one-line :class:`~crmscore.errors.CrmscoreError` the single-machine engine raises."""
    try:
        yield
    except Exception as exc:
        if isinstance(exc, CrmscoreError):
            raise
        found = _EXECUTOR_ERROR.findall(str(exc))
        if not found:
            raise
        kind, message = found[-1]
        error = DataError if kind == "DataError" else CrmscoreError
        raise error(message.strip()) from None
