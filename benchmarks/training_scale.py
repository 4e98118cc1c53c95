"""Benchmark: `crmscore train churn`, `train clv` and `train segments` on 1M simulated customers.

Goals (issue: training at scale), on 2 cores, with the shipped ``params.yaml`` defaults (tuning budgets
included): the three commands together in ≤ 15 minutes, each with a peak resident memory ≤ 8 GB; and the
training sample that makes this possible (``churn.sample_customers``, ``clv.sample_customers``) costs at
most 0.005 of test ROC AUC (churn) and of test Gini (CLV) against training on every customer.

How it runs:

1. **Simulate** ``--customers`` customers (seed ``--seed``) with ``crmscore simulate`` in a subprocess,
   into the workspace (a temporary folder, or ``--workspace DIR``, where the tables are reused).
2. **Train at scale**: ``crmscore train churn``, then ``train clv``, then ``train segments``, each in its
   own subprocess, on that input with the shipped defaults (only the paths point into the workspace; the
   MLflow store starts empty). Wall time and peak RSS of each come from ``os.wait4`` (``ru_maxrss`` of the
   child); the rows trained on are read back from its MLflow run.
3. **Sample against every customer** at ``--compare-customers`` (default 200,000; 0 = skip): the same
   simulation at that size, then ``train churn`` and ``train clv`` twice, with the shipped sample and with
   ``sample_customers: null``. Both pairs of models are scored on one holdout, the full data's test
   customers (churn: every customer known at ``churn.test_as_of``; CLV: those who had bought by
   ``clv.test_as_of``, the population the CLV stage compares its models on), so the difference is the
   sample's alone and not that of two test sets; each run's own test metric is shown as well.

Writes the "Scale" section of ``reports/benchmarks/training.md``; the last line printed is one JSON object
``{"customers", "seconds_total", "peak_rss_gb"}`` of the step-2 run (peak: the largest of the three).

    python benchmarks/training_scale.py [--customers N] [--compare-customers N] [--workspace DIR]
        [--seed S] [--sample-customers N]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import time
from pathlib import Path

import yaml
from _report import machine, write_section
from scoring_scale import benchmark_workspace, crmscore_command, run_child, say

from crmscore.config import Settings, load_settings

REPORT = Path("reports/benchmarks/training.md")
TITLE = "Training benchmarks"
SECTION = "Scale"
DEFAULT_CUSTOMERS = 1_000_000
DEFAULT_COMPARE = 200_000
COMMANDS = ("churn", "clv", "segments")
GOAL_SECONDS = 15 * 60.0
GOAL_PEAK_GB = 8.0
GOAL_LOSS = 0.005
RUN_ID = re.compile(r"\(run ([0-9a-f]{32})\)")


# --- workspace ----------------------------------------------------------------------------------------


def absolute_pythonpath() -> None:
    """Make ``PYTHONPATH`` absolute: the children run in the workspace, where ``src`` would not resolve
    (and the installed package would silently stand in for the checkout being measured)."""
    entries = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if entries:
        os.environ["PYTHONPATH"] = os.pathsep.join(str(Path(p).resolve()) for p in entries)


def write_params(folder: Path, sample: int | None | str) -> Path:
    """The shipped defaults with every path under ``folder``; ``sample`` sets both models'
    ``sample_customers`` (``"default"`` leaves the shipped value)."""
    raw = Settings().model_dump(mode="json")
    raw["paths"] = {
        "models_dir": str(folder / "models"),
        "reports_dir": str(folder / "reports"),
        "simulated_dir": str(folder / "data"),
    }
    raw["scoring"]["out_dir"] = str(folder / "scores")
    if sample != "default":
        raw["churn"]["sample_customers"] = sample
        raw["clv"]["sample_customers"] = sample
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "params.yaml"
    text = f"# training_scale benchmark: shipped defaults, paths here, sample_customers {sample}\n"
    path.write_text(text + yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def simulate(workspace: Path, customers: int, seed: int) -> tuple[Path, dict]:
    """``crmscore simulate`` in a subprocess into the workspace, unless those tables are there already."""
    out = workspace / "data" / f"customers_{customers}_seed{seed}"
    marker = out / "simulated.json"
    if marker.exists():
        say(f"reusing the simulated tables in {out}")
        return out, json.loads(marker.read_text(encoding="utf-8")) | {"reused": True}
    shutil.rmtree(out, ignore_errors=True)
    params = write_params(workspace / "simulate", "default")
    say(f"simulating {customers:,} customers (seed {seed}) into {out} …")
    args = ["simulate", "--customers", str(customers), "--seed", str(seed), "--out", str(out), "--params", str(params)]
    seconds, peak = run_child([*crmscore_command(), *args], workspace / f"simulate_{customers}.log", cwd=workspace)
    (out / "truth.parquet").unlink(missing_ok=True)  # not an input of training
    rows = {}
    for line in (workspace / f"simulate_{customers}.log").read_text(encoding="utf-8").splitlines():
        match = re.match(r"(\w+)\s+([\d,]+) rows", line)
        if match:
            rows[match[1]] = int(match[2].replace(",", ""))
    done = {"seconds": seconds, "peak_rss_gb": peak, "rows": rows}
    marker.write_text(json.dumps(done), encoding="utf-8")
    say(f"simulated in {seconds:.0f} s (subprocess peak RSS {peak:.2f} GB)")
    return out, done | {"reused": False}


# --- training -----------------------------------------------------------------------------------------


def run_record(params: Path, run_id: str) -> dict:
    """Params, metrics and tags of one MLflow run of the workspace that ``params`` points to."""
    from crmscore import tracking

    settings = load_settings(params)
    tracking.configure(settings.paths.models_dir, settings.tracking.experiment)
    run = tracking.client().get_run(run_id)
    return {"params": dict(run.data.params), "metrics": dict(run.data.metrics), "tags": dict(run.data.tags)}


def train(folder: Path, params: Path, input_dir: Path, commands: tuple[str, ...], label: str) -> dict[str, dict]:
    """``crmscore train <command>`` for each command, one subprocess each, on an empty MLflow store."""
    for generated in ("models", "reports"):
        shutil.rmtree(folder / generated, ignore_errors=True)
    results = {}
    for command in commands:
        say(f"{label}: crmscore train {command} …")
        log_path = folder / f"train_{command}.log"
        args = [*crmscore_command(), "-v", "train", command, "--input", str(input_dir), "--params", str(params)]
        seconds, peak = run_child(args, log_path, cwd=folder)
        output = log_path.read_text(encoding="utf-8", errors="replace")
        match = RUN_ID.search(output)
        if match is None:
            raise RuntimeError(f"crmscore train {command}: no run id in its output ({log_path})")
        record = run_record(params, match[1])
        notes = [line.strip()[len("note: ") :] for line in output.splitlines() if line.strip().startswith("note: ")]
        results[command] = {"seconds": seconds, "peak_rss_gb": peak, "run_id": match[1], "notes": notes, **record}
        say(f"  {seconds:.0f} s, peak RSS {peak:.2f} GB, {trained_on(results[command])}")
    return results


def trained_on(result: dict) -> str:
    """The rows a run trained on, in words: train / valid / test rows and the customers sampled."""
    params, metrics = result["params"], result["metrics"]
    if "split.rows" in params:
        train, valid, test = (int(n) for n in params["split.rows"].split("/"))
        text = f"{train:,} / {valid:,} / {test:,} rows (train / valid / test)"
    else:
        text = f"{int(metrics.get('customers', 0)):,} customers"
    if "sample.customers" in params:
        text += f"; {int(params['sample.customers']):,} of {int(params['sample.of_customers']):,} customers sampled"
    return text


# --- the sample against every customer ----------------------------------------------------------------


def registered(params: Path, run_id: str) -> dict[str, object]:
    """The estimators a training run registered, by kind (``churn``, or ``ml`` and ``btyd`` for CLV)."""
    from crmscore import tracking

    settings = load_settings(params)
    tracking.configure(settings.paths.models_dir, settings.tracking.experiment)
    estimators = {}
    for version in tracking.client().search_model_versions(f"run_id='{run_id}'"):
        kind = version.tags.get("crmscore.clv_model", "churn")
        model = tracking.load_model(version.name, version=version.version)
        estimators[kind] = model.unwrap_python_model().estimator
    return estimators


def same_holdout(input_dir: Path, settings: Settings, runs: dict[str, dict], params: dict[str, Path]) -> dict:
    """Test ROC AUC of the churn models and test Gini of the CLV models of ``runs`` (by label), all on the
    full data's holdout: the same customers and dates as training on every customer tests on."""
    from crmscore.data.load import load_tables
    from crmscore.evaluation import classification_metrics, value_metrics
    from crmscore.features import build_features
    from crmscore.labels import future_value, last_labelable_as_of, transaction_churn

    tables = load_tables(input_dir, settings.data).tables
    out: dict[str, dict[str, float]] = {label: {} for label in runs}

    as_of = pd_timestamp(settings.churn.test_as_of) or last_labelable_as_of(tables, settings.churn.horizon_days)
    X = build_features(tables, as_of, settings.features)
    y = transaction_churn(tables["transactions"], X.index, as_of, settings.churn.horizon_days).to_numpy().astype(int)
    for label, run in runs.items():
        churn_model = registered(params[label], run["churn"]["run_id"])["churn"]
        out[label]["churn_auc"] = classification_metrics(y, churn_model.predict_proba(X)[:, 1])["roc_auc"]
    churn_rows = len(X)

    as_of = pd_timestamp(settings.clv.test_as_of) or last_labelable_as_of(tables, settings.clv.horizon_days)
    X = build_features(tables, as_of, settings.features)
    y = future_value(tables["transactions"], X.index, as_of, settings.clv.horizon_days)["future_spend"].to_numpy()
    buyers = X["repeat_purchase_days"].notna().to_numpy()
    X, y = X.loc[buyers], y[buyers]
    for label, run in runs.items():
        models = registered(params[label], run["clv"]["run_id"])
        for kind in ("ml", "btyd"):
            out[label][f"clv_{kind}_gini"] = value_metrics(y, models[kind].predict(X))["gini"]
    return {"metrics": out, "churn_rows": churn_rows, "clv_rows": len(X)}


def pd_timestamp(value):
    import pandas as pd

    return None if value is None else pd.Timestamp(value)


def compare(workspace: Path, customers: int, seed: int, sample: int | None | str) -> dict:
    """Train churn and CLV on ``customers`` with the sample and on every customer; score both on one holdout."""
    input_dir, simulated = simulate(workspace, customers, seed)
    runs, params = {}, {}
    for label, setting in (("sample", sample), ("full", None)):
        folder = workspace / f"compare_{customers}_{label}"
        params[label] = write_params(folder, setting)
        runs[label] = train(folder, params[label], input_dir, ("churn", "clv"), f"{customers:,} customers, {label}")
    say("scoring both pairs of models on the full data's holdout …")
    holdout = same_holdout(input_dir, load_settings(params["full"]), runs, params)
    return {"customers": customers, "simulated": simulated, "runs": runs, "holdout": holdout}


# --- report -------------------------------------------------------------------------------------------


def main() -> None:
    defaults = Settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=DEFAULT_CUSTOMERS, help="customers of the timed run")
    parser.add_argument(
        "--compare-customers",
        type=int,
        default=DEFAULT_COMPARE,
        help="customers of the sample-against-every-customer comparison (0 = skip it)",
    )
    parser.add_argument("--seed", type=int, default=defaults.simulate.seed, help="seed of the simulated customers")
    parser.add_argument(
        "--sample-customers",
        type=int,
        default=None,
        help="churn and clv sample_customers for every run (default: the shipped value; for quick small checks)",
    )
    parser.add_argument("--workspace", type=Path, default=None, help="keep (and reuse) the simulated data here")
    parser.add_argument("--report", type=Path, default=REPORT)
    args = parser.parse_args()
    absolute_pythonpath()
    sample = "default" if args.sample_customers is None else args.sample_customers

    with benchmark_workspace(args.workspace, "crmscore-training-scale-") as workspace:
        load_before = os.getloadavg()
        started = time.perf_counter()
        input_dir, simulated = simulate(workspace, args.customers, args.seed)
        folder = workspace / f"scale_{args.customers}"
        params = write_params(folder, sample)
        settings = load_settings(params)
        results = train(folder, params, input_dir, COMMANDS, f"{args.customers:,} customers")
        comparison = compare(workspace, args.compare_customers, args.seed, sample) if args.compare_customers else None
        load_after = os.getloadavg()
        elapsed = time.perf_counter() - started

    total = sum(r["seconds"] for r in results.values())
    peak = max(r["peak_rss_gb"] for r in results.values())
    lines = report_lines(args, settings, simulated, results, comparison, (load_before, load_after), elapsed)
    write_section(args.report, SECTION, "\n".join(lines), TITLE)
    say(f"report written to {args.report}")
    print(json.dumps({"customers": args.customers, "seconds_total": round(total, 1), "peak_rss_gb": round(peak, 3)}))


def report_lines(args, settings: Settings, simulated: dict, results: dict, comparison, loads, elapsed) -> list[str]:
    total = sum(r["seconds"] for r in results.values())
    peak = max(r["peak_rss_gb"] for r in results.values())
    command = "python benchmarks/training_scale.py"
    command += f" --customers {args.customers}" if args.customers != DEFAULT_CUSTOMERS else ""
    command += f" --compare-customers {args.compare_customers}" if args.compare_customers != DEFAULT_COMPARE else ""
    command += f" --sample-customers {args.sample_customers}" if args.sample_customers is not None else ""
    rows = simulated.get("rows", {})
    data = ", ".join(f"{rows[t]:,} {t}" for t in ("transactions", "payments", "interactions") if t in rows)
    shipped = Settings().churn.sample_customers
    sample_text = (
        f"the shipped `churn.sample_customers` and `clv.sample_customers` ({shipped:,})"
        if args.sample_customers is None
        else f"**`sample_customers: {args.sample_customers:,}`** for churn and CLV (not the shipped {shipped:,})"
    )
    lines = [
        f"`{command}`: `crmscore train churn`, `crmscore train clv` and `crmscore train segments`, one subprocess "
        f"each, on {args.customers:,} simulated customers (seed {args.seed}; {data}), with the shipped "
        f"`params.yaml` defaults — {sample_text}, churn tuning {settings.churn.tuning.trials} trials / "
        f"{settings.churn.tuning.timeout_seconds} s, CLV {settings.clv.tuning.trials} trials / "
        f"{settings.clv.tuning.timeout_seconds} s, {settings.churn.train_cutoffs} churn and "
        f"{settings.clv.train_cutoffs} CLV training cutoffs — on an empty MLflow store. Each command loads and "
        "validates the whole input itself. Seconds are wall time of the subprocess, peak RSS its `ru_maxrss`.",
        "",
        f"{machine()} The machine is shared with other work (2 cores): 1-minute load average "
        f"{loads[0][0]:.1f} when the benchmark started, {loads[1][0]:.1f} at its end (5-minute "
        f"{loads[0][1]:.1f} and {loads[1][1]:.1f}). The whole benchmark took {elapsed / 60:.0f} min"
        f"{' (simulated data reused)' if simulated.get('reused') else ''}.",
        "",
        "| command | seconds | peak RSS (GB) | trained on | test metric |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| `crmscore train {name}` | {r['seconds']:.0f} | {r['peak_rss_gb']:.2f} | {trained_on(r)} | "
            f"{headline(name, r)} |"
        )
    lines += [
        f"| **all three** | **{total:.0f}** ({total / 60:.1f} min) | **{peak:.2f}** (largest) | | |",
        "",
        "| goal | value | target | result |",
        "|---|---|---|---|",
        f"| wall time of the three commands | {total / 60:.1f} min | ≤ {GOAL_SECONDS / 60:.0f} min | "
        f"{'met' if total <= GOAL_SECONDS else 'NOT met'} |",
        f"| peak RSS of any of them | {peak:.2f} GB | ≤ {GOAL_PEAK_GB:.0f} GB | "
        f"{'met' if peak <= GOAL_PEAK_GB else 'NOT met'} |",
    ]
    segments = results["segments"]
    lines += [
        "",
        f"`train segments` takes no sample: it fits one shallow tree on every customer's features as of the "
        f"last day ({int(segments['metrics']['customers']):,} customers) with the churn and CLV champions' "
        f"predictions, in {segments['seconds']:.0f} s with a peak of {segments['peak_rss_gb']:.2f} GB, most of "
        "it the whole input loaded and validated and the features of every customer.",
    ]
    if comparison is not None:
        lines += comparison_lines(comparison, args)
    notes = sorted({n for r in results.values() for n in r["notes"]})
    if notes:
        lines += ["", "Notes the commands printed: " + "; ".join(notes) + "."]
    return lines


def headline(command: str, result: dict) -> str:
    metrics, tags = result["metrics"], result["tags"]
    if command == "churn":
        return f"ROC AUC {metrics['test_roc_auc']:.4f}"
    if command == "clv":
        return (
            f"Gini ML {metrics['ml_test_gini']:.4f}, BTYD {metrics['btyd_test_gini']:.4f} "
            f"({tags.get('crmscore.clv_proposed', '?')} proposed)"
        )
    return f"{metrics['segments']:.0f} segments, R² {metrics['r2']:.3f}"


def signed(value: float) -> str:
    """A difference with its sign, 4 decimals; one that rounds to zero is +0.0000 (never -0.0000)."""
    return f"{value:+.4f}" if round(value, 4) != 0 else "+0.0000"


def comparison_lines(comparison: dict, args) -> list[str]:
    n = comparison["customers"]
    runs, holdout = comparison["runs"], comparison["holdout"]
    metrics = holdout["metrics"]
    sampled = runs["sample"]["churn"]["params"].get("sample.customers")
    lines = [
        "",
        f"**Sample against every customer**, {n:,} simulated customers (seed {args.seed}): `train churn` and "
        f"`train clv` with the sample "
        + (
            f"({int(sampled):,} customers)"
            if sampled
            else "(**not drawn: the data have no more customers than the sample**, so both runs are the same)"
        )
        + " and with `sample_customers: null`. Both are scored on the full data's holdout "
        f"(churn: the {holdout['churn_rows']:,} customers known at the test as-of date; CLV: the "
        f"{holdout['clv_rows']:,} test customers who had bought by then), so the difference is the sample's, "
        "not that of two test sets. The runs' own test figures (the sampled run tests on its sample's "
        "customers) are beside them.",
        "",
        "| model | metric | every customer | sample | difference (sample − full) | own test: full / sample |",
        "|---|---|---|---|---|---|",
    ]
    goals = []
    for key, model, metric, own in (
        ("churn_auc", "churn", "test ROC AUC", ("churn", "test_roc_auc")),
        ("clv_ml_gini", "CLV (ML, LightGBM)", "test Gini", ("clv", "ml_test_gini")),
        ("clv_btyd_gini", "CLV (BG/NBD × Gamma-Gamma)", "test Gini", ("clv", "btyd_test_gini")),
    ):
        full, samp = metrics["full"][key], metrics["sample"][key]
        own_full = runs["full"][own[0]]["metrics"][own[1]]
        own_sample = runs["sample"][own[0]]["metrics"][own[1]]
        lines.append(
            f"| {model} | {metric} | {full:.4f} | {samp:.4f} | {signed(samp - full)} | "
            f"{own_full:.4f} / {own_sample:.4f} |"
        )
        goals.append((f"{model}: {metric} lost to the sample", full - samp))
    lines += [
        "",
        "| command | every customer: seconds, peak RSS, trained on | sample: seconds, peak RSS, trained on |",
        "|---|---|---|",
    ]
    for command in ("churn", "clv"):
        full, samp = runs["full"][command], runs["sample"][command]
        lines.append(
            f"| `crmscore train {command}` | {full['seconds']:.0f} s, {full['peak_rss_gb']:.2f} GB, {trained_on(full)} "
            f"| {samp['seconds']:.0f} s, {samp['peak_rss_gb']:.2f} GB, {trained_on(samp)} |"
        )
    lines += ["", "| goal | value | target | result |", "|---|---|---|---|"]
    lines += [
        f"| {what} | {signed(lost)} | ≤ {GOAL_LOSS} | {'met' if lost <= GOAL_LOSS else 'NOT met'} |"
        for what, lost in goals
    ]
    return lines


if __name__ == "__main__":
    main()
