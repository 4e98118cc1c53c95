"""Profile one Spark scoring: the manifest's seconds per step and Spark's own stage and task timings.

Where does ``crmscore score --engine spark`` spend its time? This runs one scoring in this process (a
workspace trained by ``spark_scoring.py`` or ``scoring_scale.py``, its params and models; the input folder
given) on ``--master`` with Spark's event log on, then prints:

* the manifest's ``seconds`` (loading the models, starting Spark, preparing, the scoring pass, the tier
  scale, the tier pass and writes) and the executors' ``task_seconds`` summed over the tasks (read,
  validate, features, predict, explain, output);
* every Spark stage with its tasks and seconds, and each task's start and duration (from the event log),
  which shows the fixed costs (the first task of each Python worker imports the packages and unpickles
  the models) apart from the work that grows with the customers.

``--buckets`` forces the bucketed path (Spark's reader and the cogroup) on input the ranges would take,
to compare both on the same files. The last line printed is one JSON object with the seconds.

    python benchmarks/spark_profile.py --workspace DIR --input DIR [--master local[2]] [--buckets]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from crmscore.config import load_settings


def stage_timings(folder: Path) -> tuple[list[dict], dict[int, list[tuple[float, float]]]]:
    """Stages (id, name, tasks, seconds) and, per stage, each task's (start, seconds) from an event log."""
    stages, tasks, start = [], {}, None
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            event = json.loads(line)
            kind = event["Event"]
            if kind == "SparkListenerJobStart" and start is None:
                start = event["Submission Time"]
            elif kind == "SparkListenerStageCompleted":
                info = event["Stage Info"]
                seconds = (info["Completion Time"] - info["Submission Time"]) / 1000
                stages.append(
                    {"id": info["Stage ID"], "name": info["Stage Name"], "tasks": info["Number of Tasks"], "s": seconds}
                )
            elif kind == "SparkListenerTaskEnd":
                info = event["Task Info"]
                times = (info["Launch Time"], (info["Finish Time"] - info["Launch Time"]) / 1000)
                tasks.setdefault(event["Stage ID"], []).append(times)
    start = start or 0
    return stages, {s: sorted(((t - start) / 1000, d) for t, d in ts) for s, ts in tasks.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, required=True, help="trained benchmark workspace (params.yaml)")
    parser.add_argument("--input", type=Path, required=True, help="input folder to score")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--buckets", action="store_true", help="force the bucketed path (Spark reader + cogroup)")
    parser.add_argument("--driver-memory", default="6g")
    args = parser.parse_args()

    from crmscore.spark.engine import score_spark
    from crmscore.spark.session import spark_session
    from crmscore.stages import load_scoring_models

    os.environ.pop("MLFLOW_TRACKING_URI", None)  # the workspace's own registry
    workspace, source = args.workspace.resolve(), args.input.resolve()
    os.chdir(workspace)
    settings = load_settings(workspace / "params.yaml")
    dates = pq.read_table(source / "transactions.parquet", columns=["date"]).column("date")
    as_of = pd.Timestamp(dates.to_numpy().max()).normalize()
    events = Path(tempfile.mkdtemp(prefix="crmscore-spark-events-"))
    out = Path(tempfile.mkdtemp(prefix="crmscore-spark-profile-"))
    conf = {
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": str(events),
        "spark.eventLog.compress": "false",
        "spark.driver.memory": args.driver_memory,
    }
    try:
        models = load_scoring_models(settings)
        spark = spark_session(args.master, conf)
        result = score_spark(spark, source, as_of, models, settings, out, ranges=not args.buckets)
        spark.stop()
        stages, tasks = stage_timings(events)
    finally:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(events, ignore_errors=True)
    manifest = result.manifest
    print(f"{manifest['scored']:,} customers, input through {manifest['spark']['input']} ({manifest['chunks']})")
    print("seconds:", json.dumps(manifest["seconds"]))
    print("task seconds:", json.dumps(manifest["spark"]["task_seconds"]))
    for stage in stages:
        print(f"stage {stage['id']:3d} {stage['s']:7.2f} s {stage['tasks']:4d} tasks  {stage['name'][:80]}")
        print("    tasks (start+seconds):", " ".join(f"{a:.1f}+{d:.1f}" for a, d in tasks.get(stage["id"], [])))
    summary = {"input": manifest["spark"]["input"], "seconds": manifest["seconds"], "stages": stages}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
