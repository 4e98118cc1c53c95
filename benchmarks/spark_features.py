"""Benchmark: point-in-time features on Spark (SQL aggregations, and buckets of the pandas builder) against pandas.

Goal (issue: scale-out scoring, "input at scale"): the features of transaction tables too large for one
machine's memory, computed in Spark, equal to the pandas feature builder on the same data. This run
measures, on ``--customers`` simulated customers (seed ``--seed``, Parquet as ``crmscore simulate``
writes it) as of their last transaction day, each in its own subprocess:

* ``pandas``: read the four tables whole and call :func:`crmscore.features.build_features` (the
  single-machine builder; its peak memory is what "too large for one machine" grows out of);
* ``spark-sql``: :func:`crmscore.spark.build_features_sql` (Spark SQL aggregations and one window, no
  Python workers) on ``--master`` with ``--driver-memory`` (local mode: the executors live in the
  driver's JVM, so that is the memory the whole computation gets), written to Parquet by Spark;
* ``spark-buckets``: :func:`crmscore.spark.build_features_spark` (per bucket of customers: the data
  contract's validation, then the pandas builder), same master and memory.

Then each Spark result is compared with pandas: the same customers once each, the largest absolute
difference over every numeric feature (missing values in the same places), equal text attributes.
Seconds are each child's wall time from start to the features on disk (interpreter and, for Spark, JVM
start included); peak RSS is the child's own (for Spark the Python driver; the JVM is capped by
``--driver-memory``).

Writes the section "Features, <N> customers" of ``reports/benchmarks/spark.md``; the last line printed is
one JSON object ``{"customers", "pandas_seconds", "sql_seconds", "buckets_seconds", "sql_max_abs_diff",
"buckets_max_abs_diff", "rows_equal"}``.

    python benchmarks/spark_features.py [--customers N] [--workspace DIR] [--master local[2]] [--driver-memory 2g]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _report import machine, write_section
from scoring_scale import benchmark_workspace, run_child, say, simulate, workspace_params
from spark_scoring import REPORT, TABLES, TITLE, input_rows, last_day, spark_environment

DEFAULT_CUSTOMERS = 1_000_000
RUNS = ("pandas", "spark-sql", "spark-buckets")


# --- the children ---------------------------------------------------------------------------------------


def child(run: str, input_dir: Path, as_of: str, out: Path, master: str) -> None:
    """One measured run: the features of ``input_dir`` as of ``as_of`` written to ``out`` (Parquet)."""
    from crmscore.config import DataSettings, FeatureSettings

    started = time.perf_counter()
    if run == "pandas":
        from crmscore.features import build_features

        tables = {t: pd.read_parquet(input_dir / f"{t}.parquet") for t in TABLES}
        build_features(tables, as_of, FeatureSettings()).reset_index().to_parquet(out)
    else:
        from crmscore.spark import build_features_spark, build_features_sql, spark_session

        spark = spark_session(master)
        build = build_features_sql if run == "spark-sql" else build_features_spark
        frame = build(spark, input_dir, as_of, FeatureSettings(), data_settings=DataSettings(max_date=as_of))
        frame.write.mode("overwrite").parquet(str(out))
        spark.stop()
    (out.parent / f"{run}.json").write_text(json.dumps({"seconds": time.perf_counter() - started}))


def run_one(run: str, workspace: Path, input_dir: Path, as_of: pd.Timestamp, args) -> dict:
    out = workspace / "bench-features" / run
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, __file__, "--child", run, "--input", str(input_dir), "--as-of", str(as_of.date())]
    command += ["--out", str(out), "--master", args.master]
    say(f"{run} …")
    load = os.getloadavg()[0]
    with spark_environment(args.driver_memory):
        wall, peak = run_child(command, workspace / f"features-{run}.log", cwd=workspace)
    inner = json.loads((out.parent / f"{run}.json").read_text())["seconds"]
    say(f"{run}: {wall:.1f} s wall ({inner:.1f} s inside; peak RSS {peak:.2f} GB)")
    return {"run": run, "wall": wall, "inner": inner, "peak_rss_gb": peak, "out": out, "load": load}


def compare(expected: Path, got: Path) -> tuple[bool, float]:
    """(same customers and text, largest absolute difference of the numbers) of two feature files."""
    a = pd.read_parquet(expected).set_index("customer_id").sort_index()
    b = pd.read_parquet(got).set_index("customer_id").sort_index()
    same = list(a.columns) == list(b.columns) and a.index.equals(b.index)
    diff = 0.0
    if not same:
        return False, float("nan")
    for column in a.columns:
        if isinstance(a[column].dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(a[column].dtype):
            left = a[column].astype(object).where(a[column].notna(), None).tolist()
            same = same and left == b[column].astype(object).where(b[column].notna(), None).tolist()
        else:
            x, y = a[column].to_numpy(dtype=float), b[column].to_numpy(dtype=float)
            same = same and bool(np.array_equal(np.isnan(x), np.isnan(y)))
            both = ~np.isnan(x) & ~np.isnan(y)
            if both.any():
                diff = max(diff, float(np.max(np.abs(x[both] - y[both]))))
    return same, diff


# --- the benchmark --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=DEFAULT_CUSTOMERS)
    parser.add_argument("--seed", type=int, default=43, help="seed of the simulated customers")
    parser.add_argument("--workspace", type=Path, default=None, help="keep (and reuse) the simulated data here")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="2g")
    parser.add_argument("--report", type=Path, default=REPORT)
    parser.add_argument("--child", choices=RUNS, help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--as-of", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.input, args.as_of, args.out, args.master)
        return

    with benchmark_workspace(args.workspace, "crmscore-features-") as workspace:
        params = workspace_params(workspace)
        input_dir, simulated = simulate(workspace, params, args.customers, args.seed)
        rows, as_of = input_rows(input_dir), last_day(input_dir)
        say(f"input {rows}; features as of {as_of.date()}")
        runs = {run: run_one(run, workspace, input_dir, as_of, args) for run in RUNS}
        checks = {run: compare(runs["pandas"]["out"], runs[run]["out"]) for run in RUNS[1:]}
        say(f"comparison with pandas: {checks}")

    summary = {
        "customers": args.customers,
        "pandas_seconds": round(runs["pandas"]["wall"], 1),
        "sql_seconds": round(runs["spark-sql"]["wall"], 1),
        "buckets_seconds": round(runs["spark-buckets"]["wall"], 1),
        "sql_max_abs_diff": checks["spark-sql"][1],
        "buckets_max_abs_diff": checks["spark-buckets"][1],
        "rows_equal": all(same for same, _ in checks.values()),
    }
    lines = [
        f"`python benchmarks/spark_features.py --customers {args.customers}`: the point-in-time features of "
        f"{args.customers:,} simulated customers (seed {args.seed}; "
        + ", ".join(f"{n:,} {t}" for t, n in rows.items() if t != "customers")
        + f"; Parquet) as of {as_of.date()}, each run in its own subprocess, written to Parquet.",
        "",
        f"{machine()} Spark runs: `--master {args.master}`, driver memory {args.driver_memory} (local mode: "
        "the whole computation's JVM memory). The machine is shared; the 1-minute load average at each start "
        "is shown.",
        "",
        "| run | what | wall s (start to file) | of which inside | peak RSS GB (Python) | same rows and text | "
        "max abs diff vs pandas | load at start |",
        "|---|---|---|---|---|---|---|---|",
    ]
    what = {
        "pandas": "`build_features` on the tables read whole",
        "spark-sql": "`build_features_sql`: Spark SQL only",
        "spark-buckets": "`build_features_spark`: validation + pandas builder per bucket",
    }
    for run in RUNS:
        r = runs[run]
        same, diff = checks.get(run, (True, 0.0))
        lines.append(
            f"| {run} | {what[run]} | {r['wall']:.1f} | {r['inner']:.1f} | {r['peak_rss_gb']:.2f} | "
            f"{'yes' if same else 'NO'} | {'—' if run == 'pandas' else f'{diff:.1e}'} | {r['load']:.1f} |"
        )
    lines += [
        "",
        "The pandas builder needs every row of every table in one process at once (its peak RSS above grows "
        "with the tables); the Spark SQL builder's memory is the JVM's, fixed by the driver memory, "
        "because Spark's aggregations, sort and window spill to disk — so the same code runs on tables of any "
        "size, on more executors when there are more. "
        f"Simulating the input took {simulated['seconds']:.0f} s" + (" (reused)." if simulated.get("reused") else "."),
        "",
        "```json",
        json.dumps(summary),
        "```",
    ]
    write_section(args.report, f"Features, {args.customers:,} customers", "\n".join(lines), TITLE)
    say(f"report written to {args.report}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
