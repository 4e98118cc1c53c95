"""Benchmark: simulate 1M customers (about 20M transactions) and write them; time and peak memory.

Goal (issue: foundation): ≤ 90 s and ≤ 6 GB peak resident memory on 2 cores. The time covers the
whole `crmscore simulate` stage (simulation and atomic Parquet writes of the four tables and truth).
Writes ``reports/benchmarks/simulate.md``; the last line printed is one JSON object
``{"customers", "transactions", "seconds", "peak_rss_gb"}``.

    python benchmarks/simulate_scale.py [--customers N] [--seed S]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from _report import finish, machine, peak_rss_gb

from crmscore.config import Settings
from crmscore.stages import simulate_stage

REPORT = Path("reports/benchmarks/simulate.md")
GOAL_SECONDS = 90.0
GOAL_PEAK_GB = 6.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--report", type=Path, default=REPORT)
    args = parser.parse_args()

    baseline_gb = peak_rss_gb()
    out = Path(tempfile.mkdtemp(prefix="crmscore-bench-sim-"))
    try:
        started = time.perf_counter()
        result = simulate_stage(Settings(), out, customers=args.customers, seed=args.seed)
        seconds = time.perf_counter() - started
        sizes_mb = {name: path.stat().st_size / 1e6 for name, path in result.paths.items()}
    finally:
        shutil.rmtree(out, ignore_errors=True)
    peak = peak_rss_gb()

    summary = {
        "customers": result.rows["customers"],
        "transactions": result.rows["transactions"],
        "seconds": round(seconds, 2),
        "peak_rss_gb": round(peak, 3),
    }
    meets = seconds <= GOAL_SECONDS and peak <= GOAL_PEAK_GB
    lines = [
        "# Simulation at scale",
        "",
        "`python benchmarks/simulate_scale.py"
        + (f" --customers {args.customers}" if args.customers != 1_000_000 else "")
        + "`: the whole `crmscore simulate` stage (simulate, then write Parquet atomically).",
        "",
        machine(),
        "",
        "| measure | value | goal |",
        "|---|---|---|",
        f"| customers | {summary['customers']:,} | 1,000,000 |",
        f"| transactions | {summary['transactions']:,} | about 20M |",
        f"| payments (invoices) | {result.rows['payments']:,} | |",
        f"| interactions | {result.rows['interactions']:,} | |",
        f"| truth rows (2 horizons) | {result.rows['truth']:,} | |",
        f"| seconds | {seconds:.1f} | ≤ {GOAL_SECONDS:.0f} |",
        f"| peak RSS (GB, incl. {baseline_gb:.2f} GB of imports) | {peak:.2f} | ≤ {GOAL_PEAK_GB:.0f} |",
        f"| Parquet written (MB) | {sum(sizes_mb.values()):,.0f} | |",
        "",
        f"Result: {'meets' if meets else 'MISSES'} the goal.",
    ]
    finish(args.report, lines, summary)


if __name__ == "__main__":
    main()
