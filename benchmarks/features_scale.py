"""Benchmark: point-in-time features for 1M simulated customers (about 20M transactions); time and memory.

Goal (issue: features): ``build_features`` at as-of 2026-07-31 in ≤ 60 s and ≤ 6 GB peak resident
memory on 2 cores. The simulation that produces the tables is not timed; the peak RSS (a high-water
mark, so it includes the simulation) is reported both right after the simulation and at the end.
Writes ``reports/benchmarks/features.md``; the last line printed is one JSON object
``{"customers", "transactions", "features", "seconds", "peak_rss_gb"}``.

    python benchmarks/features_scale.py [--customers N] [--seed S] [--as-of YYYY-MM-DD]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import time
from pathlib import Path

from _report import finish, machine, peak_rss_gb

from crmscore.config import Settings
from crmscore.data.simulate import simulate_crm
from crmscore.features import build_features

REPORT = Path("reports/benchmarks/features.md")
GOAL_SECONDS = 60.0
GOAL_PEAK_GB = 6.0
DEFAULT_CUSTOMERS = 1_000_000
DEFAULT_AS_OF = dt.date(2026, 7, 31)


def current_rss_gb() -> float | None:
    """Resident set size now, in GB (Linux only; None elsewhere)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=DEFAULT_CUSTOMERS)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--as-of", type=dt.date.fromisoformat, default=DEFAULT_AS_OF)
    parser.add_argument("--report", type=Path, default=REPORT)
    args = parser.parse_args()

    baseline_gb = peak_rss_gb()
    started = time.perf_counter()
    tables = simulate_crm(customers=args.customers, seed=args.seed).tables()  # truth is dropped here
    gc.collect()
    simulate_seconds = time.perf_counter() - started
    after_simulation_gb = peak_rss_gb()
    tables_gb = current_rss_gb()
    rows = {name: len(df) for name, df in tables.items()}
    print(f"simulated {rows} in {simulate_seconds:.1f} s (not timed)", flush=True)

    settings = Settings().features
    started = time.perf_counter()
    features = build_features(tables, args.as_of, settings)
    seconds = time.perf_counter() - started
    peak = peak_rss_gb()

    summary = {
        "customers": rows["customers"],
        "transactions": rows["transactions"],
        "features": features.shape[1],
        "seconds": round(seconds, 2),
        "peak_rss_gb": round(peak, 3),
    }
    meets = seconds <= GOAL_SECONDS and peak <= GOAL_PEAK_GB
    command = "`python benchmarks/features_scale.py" + (
        f" --customers {args.customers}`" if args.customers != DEFAULT_CUSTOMERS else "`"
    )
    resident = f"{tables_gb:.2f}" if tables_gb is not None else "n/a"
    lines = [
        "# Features at scale",
        "",
        f"{command}: `build_features` at as-of {args.as_of.isoformat()} on simulated tables (seed {args.seed}),"
        f" windows {settings.windows_days} days, trend window {settings.trend_window_days} days."
        " The simulation is not timed; peak RSS is the process high-water mark, simulation included.",
        "",
        machine(),
        "",
        "| measure | value | goal |",
        "|---|---|---|",
        f"| customers (known on as-of) | {rows['customers']:,} ({len(features):,}) | 1,000,000 |",
        f"| transactions | {rows['transactions']:,} | about 20M |",
        f"| payments, interactions | {rows['payments']:,}, {rows['interactions']:,} | |",
        f"| features (columns) | {features.shape[1]} | |",
        f"| seconds (build_features) | {seconds:.1f} | ≤ {GOAL_SECONDS:.0f} |",
        f"| peak RSS after simulation (GB) | {after_simulation_gb:.2f} | |",
        f"| RSS holding the tables, before features (GB) | {resident} | |",
        f"| peak RSS at the end (GB, incl. {baseline_gb:.2f} GB of imports) | {peak:.2f} | ≤ {GOAL_PEAK_GB:.0f} |",
        "",
        f"Result: {'meets' if meets else 'MISSES'} the goal.",
    ]
    finish(args.report, lines, summary)


if __name__ == "__main__":
    main()
