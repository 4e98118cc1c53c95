"""Benchmark: scoring 1M simulated customers end to end, top-3 reasons for churn and CLV, on 1 and 2 cores.

Goals (issues: fast at scale; use every core), on 2 cores, with the models as ``crmscore train`` makes them
on simulated data (never shrunk for speed):

* explanations (exact TreeSHAP, :class:`crmscore.explain.TreeShap`) at ≥ 4× the throughput of
  LightGBM's own ``pred_contrib`` on the same boosters in the same run, values equal to 1e-9;
* the whole scoring at ≥ 8,000 customers/s with 2 workers (end to end: load the champions, read and
  validate the tables, score, write), and ≥ 1.8× the throughput of 1 worker on 1 core;
* peak resident memory of all the scoring's processes together ≤ 3 GB;
* the same scores, reasons and rejects for every number of workers.

How it runs:

1. **Train** in a workspace (a temporary folder, or ``--workspace DIR``, reused when already trained):
   ``crmscore run`` in a *subprocess* with the shipped defaults except the paths (under the workspace)
   and ``clv.model: ml`` (so the CLV champion is the LightGBM model, which has TreeSHAP reasons; the
   BG/NBD model ``auto`` may pick has none).
2. **Simulate** ``--customers`` new customers (seed ``--seed``, by default the training seed + 1) with
   ``crmscore simulate`` in another subprocess.
3. **Score** each time with ``crmscore score --as-of DATE --input DIR --workers N`` in a subprocess: 1 worker
   pinned to one core, then each of ``--workers`` (default: the cores and twice the cores) on every core.
   Customers per second come from the manifest's total (loading the champions, reading and validating,
   scoring, writing); the resident memory of the command and its workers is summed every 0.25 s (shared
   pages counted in each process, so the sum errs high). The outputs of every run are compared.
4. **Explanations against pred_contrib**: on the first ``--explain-rows`` customers' features, each
   churn booster and the CLV spend booster are explained with ``Booster.predict(pred_contrib=True,
   num_threads=2)`` and with ``TreeShap(booster, n_jobs=2).contrib``; rows/s, speed-up and the largest
   absolute difference are reported.

Writes the "Scale" section of ``reports/benchmarks/scoring.md``; the last line printed is one JSON object
``{"customers", "customers_per_s", "scaling_1_to_2", "explain_speedup_vs_pred_contrib",
"explain_max_abs_diff", "peak_rss_gb"}`` (customers/s and peak of the run with one worker per core;
scaling: that run's customers/s over 1 worker's on 1 core).

    python benchmarks/scoring_scale.py [--customers N] [--seed S] [--workspace DIR] [--workers N ...]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from _report import machine, write_section

from crmscore.config import Settings, load_settings

REPORT = Path("reports/benchmarks/scoring.md")
TITLE = "Scoring benchmarks"
SECTION = "Scale"
DEFAULT_CUSTOMERS = 1_000_000
DEFAULT_EXPLAIN_ROWS = 20_000
THREADS = 2
GOAL_EXPLAIN_SPEEDUP = 4.0
GOAL_EXPLAIN_DIFF = 1e-9
GOAL_CUSTOMERS_PER_S = 8_000.0
GOAL_SCALING = 1.8
GOAL_PEAK_GB = 3.0


def say(message: str) -> None:
    print(message, flush=True)


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


# --- subprocesses -------------------------------------------------------------------------------------


@contextlib.contextmanager
def benchmark_workspace(folder: Path | None, prefix: str) -> Iterator[Path]:
    """The benchmark's working folder: ``folder`` (kept, and reused by later runs) or a temporary one
    (removed afterwards). MLflow stays in the workspace's own registry, never a shared server."""
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    temporary = folder is None
    workspace = (Path(tempfile.mkdtemp(prefix=prefix)) if temporary else folder).resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    try:
        yield workspace
    finally:
        if temporary:
            shutil.rmtree(workspace, ignore_errors=True)


def crmscore_command() -> list[str]:
    """The ``crmscore`` CLI of this interpreter's environment."""
    script = Path(sys.executable).with_name("crmscore")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from crmscore.cli import app; app()"]


def run_child(args: list[str], log_path: Path, cwd: Path) -> tuple[float, float]:
    """Run a command with its output to ``log_path``; return (seconds, the child's peak RSS in GB)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # the workspace's own store
    started = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log_file:
        child = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if child.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-30:]
        raise RuntimeError(f"{' '.join(args)} failed with code {child.returncode}:\n" + "\n".join(tail))
    return seconds, usage.ru_maxrss * 1024 / 1e9


def workspace_params(workspace: Path) -> Path:
    """The shipped defaults with the paths under ``workspace`` and the LightGBM CLV model forced."""
    raw = Settings().model_dump(mode="json")
    raw["paths"] = {
        "models_dir": str(workspace / "models"),
        "reports_dir": str(workspace / "reports"),
        "simulated_dir": str(workspace / "data" / "training"),
    }
    raw["clv"]["model"] = "ml"
    raw["scoring"]["out_dir"] = str(workspace / "scores")
    path = workspace / "params.yaml"
    text = "# scoring_scale benchmark workspace: shipped defaults, paths here, clv.model: ml\n"
    text += yaml.safe_dump(raw, sort_keys=False)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return path


def train(workspace: Path, params: Path, settings: Settings) -> dict:
    """``crmscore run`` in a subprocess, unless this workspace already holds models from these settings."""
    marker = workspace / "trained.json"
    if marker.exists():
        done = json.loads(marker.read_text(encoding="utf-8"))
        if done.get("fingerprint") == settings.fingerprint():
            say(f"reusing the models trained in {workspace} ({done['seconds']:.0f} s when trained)")
            return done | {"reused": True}
    say(f"training the models (`crmscore run`, {settings.simulate.customers:,} customers) in {workspace} …")
    seconds, peak = run_child(
        [*crmscore_command(), "run", "--params", str(params)], workspace / "train.log", cwd=workspace
    )
    done = {"fingerprint": settings.fingerprint(), "seconds": seconds, "peak_rss_gb": peak}
    marker.write_text(json.dumps(done), encoding="utf-8")
    say(f"trained in {seconds:.0f} s (subprocess peak RSS {peak:.2f} GB)")
    return done | {"reused": False}


def simulate(workspace: Path, params: Path, customers: int, seed: int) -> tuple[Path, dict]:
    """``crmscore simulate`` in a subprocess into the workspace, unless those tables are there already."""
    out = workspace / "data" / f"scoring_{customers}_seed{seed}"
    marker = out / "simulated.json"
    if marker.exists():
        say(f"reusing the simulated tables in {out}")
        return out, json.loads(marker.read_text(encoding="utf-8")) | {"reused": True}
    shutil.rmtree(out, ignore_errors=True)
    say(f"simulating {customers:,} customers (seed {seed}) into {out} …")
    seconds, peak = run_child(
        [
            *crmscore_command(),
            "simulate",
            "--customers",
            str(customers),
            "--seed",
            str(seed),
            "--out",
            str(out),
            "--params",
            str(params),
        ],
        workspace / f"simulate_{customers}.log",
        cwd=workspace,
    )
    (out / "truth.parquet").unlink(missing_ok=True)  # not an input of scoring
    done = {"seconds": seconds, "peak_rss_gb": peak}
    marker.write_text(json.dumps(done), encoding="utf-8")
    say(f"simulated in {seconds:.0f} s (subprocess peak RSS {peak:.2f} GB)")
    return out, done | {"reused": False}


# --- scorings in subprocesses ------------------------------------------------------------------------------


def _parents() -> dict[int, int]:
    """Every process's parent, read from /proc."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        out[int(stat.parent.name)] = int(fields[1])
    return out


def tree_rss_gb(root: int) -> float:
    """Resident memory of ``root`` and all its descendants together, in GB (shared pages counted in each)."""
    parents = _parents()
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    total = 0
    for pid in tree:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total / 1e9


def run_scoring(args: list[str], cores: set[int] | None, log_path: Path, cwd: Path) -> tuple[float, float]:
    """A ``crmscore score`` subprocess pinned to ``cores`` (None: all), its process tree's memory sampled.

    Returns (wall seconds, peak resident memory of all its processes together in GB).
    """
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    pin = None if cores is None else (lambda: os.sched_setaffinity(0, cores))
    peak = 0.0
    started = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log_file:
        child = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, cwd=cwd, env=env, preexec_fn=pin)
        while child.poll() is None:
            peak = max(peak, tree_rss_gb(child.pid))
            time.sleep(0.25)
    seconds = time.perf_counter() - started
    if child.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-30:]
        raise RuntimeError(f"{' '.join(args)} failed with code {child.returncode}:\n" + "\n".join(tail))
    return seconds, peak


# --- explanation comparison -----------------------------------------------------------------------------


def booster_shape(booster, num_iteration: int | None) -> dict:
    """Trees, leaves and features of the part of ``booster`` that is used."""
    rounds = num_iteration or booster.best_iteration or booster.current_iteration()
    dumped = booster.dump_model(num_iteration=rounds)
    leaves = [tree["num_leaves"] for tree in dumped["tree_info"]]
    return {
        "trees": len(leaves),
        "leaves": int(np.sum(leaves)),
        "max_leaves": int(np.max(leaves)) if leaves else 0,
        "features": booster.num_feature(),
    }


def best_time(run, repeats: int) -> tuple[float, object]:
    """Shortest wall time of ``repeats`` runs (the machine is shared) and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return best, result


def first_customers(tables, as_of, rows: int) -> dict[str, pd.DataFrame]:
    """The rows of the first ``rows`` customers (by id) known on ``as_of``: the scoring's first chunk."""
    customers = tables["customers"]
    known = customers.loc[customers["signup_date"] <= as_of].sort_values("customer_id", kind="stable")
    ids = known["customer_id"].to_numpy()[:rows]
    chunk = {"customers": known.iloc[:rows]}
    for name, table in tables.items():
        if name != "customers" and table is not None:
            chunk[name] = table.loc[table["customer_id"].isin(ids)].sort_values("customer_id", kind="stable")
    return chunk


def compare_explanations(
    models, chunk: dict[str, pd.DataFrame], as_of, settings: Settings, repeats: int
) -> tuple[list[dict], dict[str, float]]:
    """pred_contrib against TreeShap on each booster the scoring explains, on the customers of ``chunk``.

    Also times the scoring's own explain step on them (the models' ``shap_values``, then ``top_reasons``).
    """
    from crmscore.explain import TreeShap, top_reasons
    from crmscore.features import build_features
    from crmscore.scoring import _explain

    X = build_features(chunk, as_of, settings.features)
    churn_model, clv_model = models.churn.estimator, models.clv.estimator
    targets = []
    if hasattr(churn_model, "boosters_"):
        prepared = churn_model._prepare(X)
        for i, booster in enumerate(churn_model.boosters_):
            name = "churn" if len(churn_model.boosters_) == 1 else f"churn[{i}]"
            targets.append((name, booster, booster.best_iteration or None, prepared))
    if hasattr(clv_model, "boosters_") and "spend" in clv_model.boosters_:
        prepared = clv_model._prepare(X.assign(churn_probability=churn_model.predict_proba(X)[:, 1]))
        targets.append(("clv spend", clv_model.boosters_["spend"], clv_model.n_trees_["spend"], prepared))

    # The scoring's own explain step on these customers: the models' shap_values, then the reason rows.
    X_clv = X.assign(churn_probability=churn_model.predict_proba(X)[:, 1])
    step = {"rows": len(X), "shap_values_s": 0.0, "top_reasons_s": 0.0}
    for name, estimator, kind in (("churn", churn_model, "log_odds"), ("clv", clv_model, "log_spend")):
        started = time.perf_counter()
        explained = _explain(estimator, X_clv if name == "clv" else X)
        step["shap_values_s"] += time.perf_counter() - started
        if explained is None:
            continue
        values, base, names = explained
        started = time.perf_counter()
        top_reasons(
            values,
            X[names] if set(names) <= set(X.columns) else X,
            feature_names=names,
            k=settings.scoring.top_reasons,
            model=name,
            base=base,
            kind=kind,
            trend_window_days=settings.features.trend_window_days,
        )
        step["top_reasons_s"] += time.perf_counter() - started
    say(
        f"  the scoring's explain step on them: shap_values {step['shap_values_s']:.1f} s, top_reasons "
        f"{step['top_reasons_s']:.1f} s"
    )
    results = []
    for name, booster, num_iteration, prepared in targets:
        shape = booster_shape(booster, num_iteration)
        lgb_seconds, expected = best_time(
            lambda b=booster, n=num_iteration, p=prepared: b.predict(
                p, num_iteration=n, pred_contrib=True, num_threads=THREADS
            ),
            repeats,
        )
        started = time.perf_counter()
        explainer = TreeShap(booster, num_iteration=num_iteration, n_jobs=THREADS)
        build_seconds = time.perf_counter() - started
        started = time.perf_counter()
        explainer.contrib(prepared.iloc[:256])  # first call: numba compiles (or loads its cache)
        first_seconds = time.perf_counter() - started
        shap_seconds, got = best_time(lambda e=explainer, p=prepared: e.contrib(p), repeats)
        expected, got = np.asarray(expected), np.asarray(got)
        if got.shape != expected.shape:
            raise RuntimeError(f"{name}: TreeShap shape {got.shape} != pred_contrib shape {expected.shape}")
        results.append(
            {
                "model": name,
                **shape,
                "rows": len(prepared),
                "pred_contrib_s": lgb_seconds,
                "treeshap_s": shap_seconds,
                "treeshap_build_s": build_seconds,
                "treeshap_first_call_s": first_seconds,
                "tabled_leaf_share": explainer.tabled_leaf_share_,
                "max_abs_diff": float(np.max(np.abs(got - expected))) if got.size else 0.0,
            }
        )
        r = results[-1]
        say(
            f"  {name}: {r['trees']} trees, {r['leaves']:,} leaves, {r['features']} features; pred_contrib "
            f"{r['rows'] / lgb_seconds:,.0f} rows/s, TreeShap {r['rows'] / shap_seconds:,.0f} rows/s "
            f"(×{lgb_seconds / shap_seconds:.1f}), max |diff| {r['max_abs_diff']:.2e}"
        )
    return results, step


def scoring_backends(models) -> dict[str, str]:
    """Which SHAP backend each model's ``shap_values`` uses: our TreeShap for the models that cache one
    per booster (:class:`~crmscore.explain.TreeShapCache`), else what the method's source names."""
    from crmscore.explain import TreeShapCache

    backends = {}
    for role, ref in (("churn", models.churn), ("clv", models.clv)):
        method = getattr(type(ref.estimator), "shap_values", None)
        if method is None:
            backends[role] = "none (no SHAP reasons)"
        elif isinstance(ref.estimator, TreeShapCache):
            backends[role] = "crmscore TreeShap"
        elif "pred_contrib" in inspect.getsource(method):
            backends[role] = "LightGBM pred_contrib"
        else:
            backends[role] = "not identified"
    return backends


# --- main ---------------------------------------------------------------------------------------------


def main() -> None:
    defaults = Settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=DEFAULT_CUSTOMERS, help="customers to score")
    parser.add_argument(
        "--seed", type=int, default=defaults.simulate.seed + 1, help="seed of the scored customers' simulation"
    )
    parser.add_argument("--workspace", type=Path, default=None, help="keep (and reuse) models and data here")
    parser.add_argument("--explain-rows", type=int, default=DEFAULT_EXPLAIN_ROWS)
    parser.add_argument("--repeats", type=int, default=2, help="timings of the comparison (best kept)")
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=sorted({os.cpu_count() or 1, 2 * (os.cpu_count() or 1)}),
        help="worker counts scored on all cores, after 1 worker on 1 core (default: cores, 2 × cores)",
    )
    parser.add_argument("--report", type=Path, default=REPORT)
    args = parser.parse_args()

    with benchmark_workspace(args.workspace, "crmscore-scoring-scale-") as workspace:
        summary, lines = run_benchmark(args, workspace)
    write_section(args.report, SECTION, "\n".join(lines), TITLE)
    say(f"report written to {args.report}")
    print(json.dumps(summary))


def score_with(workspace: Path, params: Path, input_dir: Path, as_of, workers: int, cores: set[int] | None) -> dict:
    """``crmscore score --workers N`` in a subprocess on ``cores``: its manifest, wall time, process-tree peak."""
    out = workspace / "scores" / f"workers{workers}_cores{len(cores) if cores else os.cpu_count()}"
    shutil.rmtree(out, ignore_errors=True)
    where = f"{len(cores)} core(s)" if cores else f"all {os.cpu_count()} cores"
    say(f"  crmscore score --workers {workers} on {where} …")
    command = [*crmscore_command(), "score", "--as-of", str(as_of.date()), "--input", str(input_dir)]
    command += ["--out", str(out), "--workers", str(workers), "--params", str(params)]
    load_before = os.getloadavg()[0]
    wall, peak = run_scoring(command, cores, workspace / f"score_workers{workers}.log", cwd=workspace)
    folder = next(out.glob("as_of=*"))
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    total = manifest["seconds"]["total"]
    say(
        f"    {manifest['scored']:,} customers in {total:.1f} s ({manifest['scored'] / total:,.0f}/s; wall with "
        f"interpreter start {wall:.1f} s), all processes' peak RSS {peak:.2f} GB"
    )
    return {
        "workers": workers,
        "cores": len(cores) if cores else os.cpu_count(),
        "folder": folder,
        "manifest": manifest,
        "total_s": total,
        "wall_s": wall,
        "per_s": manifest["scored"] / total,
        "peak_gb": peak,
        "load": (load_before, os.getloadavg()[0]),
    }


def same_outputs(a: Path, b: Path) -> bool:
    """Whether two scoring folders hold identical scores, reasons and rejects."""
    for name in ("scores.parquet", "explanations.parquet"):
        left, right = pd.read_parquet(a / name), pd.read_parquet(b / name)
        if not left.equals(right):
            return False
    rejects = sorted(p.name for p in (a / "rejects").glob("*.parquet")) if (a / "rejects").exists() else []
    return all(pd.read_parquet(a / "rejects" / r).equals(pd.read_parquet(b / "rejects" / r)) for r in rejects)


def run_benchmark(args, workspace: Path) -> tuple[dict, list[str]]:
    params = workspace_params(workspace)
    settings = load_settings(params)
    trained = train(workspace, params, settings)
    input_dir, simulated = simulate(workspace, params, args.customers, args.seed)

    from crmscore.data.stream import StreamedInput, last_event_date
    from crmscore.stages import load_scoring_models

    started = time.perf_counter()
    as_of = last_event_date(input_dir, settings.data)
    as_of_seconds = time.perf_counter() - started
    say(
        f"scoring as of {as_of.date()} (the last transaction date, {as_of_seconds:.1f} s) in chunks of "
        f"{settings.scoring.chunk_size:,}, input streamed, each scoring a `crmscore score` subprocess …"
    )
    # What a scheduled job runs: champions from the registry, the input read and validated one chunk of
    # customers at a time (in the workers), features, predictions, reasons, tiers, atomic write.
    first_core = {min(os.sched_getaffinity(0))}
    one = score_with(workspace, params, input_dir, as_of, 1, first_core)
    runs = [one] + [score_with(workspace, params, input_dir, as_of, n, None) for n in args.workers]
    default = next(r for r in runs if r["workers"] == os.cpu_count() and r["cores"] == os.cpu_count())
    identical = all(same_outputs(one["folder"], r["folder"]) for r in runs[1:])
    say(f"  outputs identical across the runs: {identical}")
    scaling = default["per_s"] / one["per_s"]
    manifest = default["manifest"]
    rows_in = manifest["rows_in"]
    rejected_rows = sum(manifest["rejected"].values())
    models = load_scoring_models(settings)
    clv_kind = type(models.clv.estimator).__name__
    clv_objective = getattr(models.clv.estimator, "objective", None)
    backends = scoring_backends(models)
    scored = manifest["scored"]
    explanation_rows = manifest["explanations"]
    per_s_end_to_end = default["per_s"]
    out_mb = sum(f.stat().st_size for f in default["folder"].rglob("*") if f.is_file()) / 1e6
    load_before = one["load"][0]

    say(f"explanations on {args.explain_rows:,} customers: pred_contrib vs TreeShap ({THREADS} threads) …")
    with StreamedInput(input_dir, settings.data, as_of, args.explain_rows) as first:
        chunk = first.chunk(0)
    gc.collect()
    comparison, step = compare_explanations(models, chunk, as_of, settings, args.repeats)
    peak = default["peak_gb"]
    load_after = os.getloadavg()[0]

    lgb_total = sum(r["pred_contrib_s"] for r in comparison)
    shap_total = sum(r["treeshap_s"] for r in comparison)
    speedup = lgb_total / shap_total if shap_total > 0 else float("nan")
    max_diff = max((r["max_abs_diff"] for r in comparison), default=float("nan"))
    rows = comparison[0]["rows"] if comparison else 0

    goals = [
        (
            "explanations: TreeShap throughput / pred_contrib",
            f"{speedup:.2f}×",
            f"≥ {GOAL_EXPLAIN_SPEEDUP:.0f}×",
            speedup >= GOAL_EXPLAIN_SPEEDUP,
        ),
        (
            "explanations: max abs difference to pred_contrib",
            f"{max_diff:.1e}",
            f"≤ {GOAL_EXPLAIN_DIFF:.0e}",
            max_diff <= GOAL_EXPLAIN_DIFF,
        ),
        (
            f"customers/s, end to end (load + models + score), {default['workers']} workers",
            f"{per_s_end_to_end:,.0f}",
            f"≥ {GOAL_CUSTOMERS_PER_S:,.0f}",
            per_s_end_to_end >= GOAL_CUSTOMERS_PER_S,
        ),
        (
            "scaling from 1 worker on 1 core to 2 workers on 2 cores",
            f"{scaling:.2f}×",
            f"≥ {GOAL_SCALING:.1f}×",
            scaling >= GOAL_SCALING,
        ),
        (
            f"peak RSS of all scoring processes together (GB), {default['workers']} workers",
            f"{peak:.2f}",
            f"≤ {GOAL_PEAK_GB:.0f}",
            peak <= GOAL_PEAK_GB,
        ),
        ("same scores, reasons and rejects for every number of workers", str(identical), "True", identical),
    ]

    command = "python benchmarks/scoring_scale.py"
    command += f" --customers {args.customers}" if args.customers != DEFAULT_CUSTOMERS else ""
    command += f" --seed {args.seed}" if args.seed != Settings().simulate.seed + 1 else ""
    command += f" --explain-rows {args.explain_rows}" if args.explain_rows != DEFAULT_EXPLAIN_ROWS else ""
    churn_model = models.churn.estimator
    full = (
        scored
        * settings.scoring.top_reasons
        * sum(backend != "none (no SHAP reasons)" for backend in backends.values())
    )
    shortfall = (
        f" ({full - explanation_rows:,} short of {settings.scoring.top_reasons} per customer and model: churn "
        "reasons are only features that raise the risk, and a customer may have fewer of those)"
        if explanation_rows < full
        else ""
    )
    steps = [
        ("load the champions from the registry", "load_models"),
        ("read and validate the input (streamed, per chunk) ¹", "read_and_validate"),
        ("features (`build_features`, per chunk) ¹", "features"),
        ("predict churn, CLV, segment ¹", "predict"),
        ("explain: SHAP values + top-3 reasons, churn and CLV ¹", "explain"),
        ("tiers, risk bands, actions; write scores", "tiers_and_write"),
        ("**end to end** (manifest total: champions + streamed input + scoring)", "total"),
    ]
    header = " | ".join(f"{r['workers']} worker(s), {r['cores']} core(s)" for r in runs)
    lines = [
        f"`{command}`: {scored:,} simulated customers (seed {args.seed}; {rows_in.get('transactions', 0):,} "
        f"transactions, {rows_in.get('payments', 0):,} payments, {rows_in.get('interactions', 0):,} interactions) "
        f"scored as of {as_of.date()} with the top {settings.scoring.top_reasons} reasons for churn and CLV, "
        f"in chunks of {settings.scoring.chunk_size:,}. Each scoring is `crmscore score --workers N` in its own "
        "subprocess, pinned to the cores shown; its memory is the resident memory of the command and all its "
        "worker processes together, sampled every 0.25 s (shared pages counted in each process, so it errs high).",
        "",
        f"Models: trained by `crmscore run` in a subprocess on the default {settings.simulate.customers:,} "
        f"simulated customers (seed {settings.simulate.seed}) with the shipped `params.yaml` defaults and the "
        f"default tuning budgets, except **`clv.model: ml`** (forced so that the CLV champion is the LightGBM "
        f"model, which has TreeSHAP reasons; `auto` may choose BG/NBD, which has none). Churn "
        f"`{type(churn_model).__name__}` v{models.churn.version} ({len(getattr(churn_model, 'boosters_', []))} "
        f"booster(s), blend weight of the trees {getattr(churn_model, 'blend_weight_', float('nan')):.2f}), CLV "
        f"`{clv_kind}` v{models.clv.version} (objective {clv_objective}), segments "
        f"{'v' + str(models.segments.version) if models.segments is not None else 'none'}. Training "
        f"took {trained['seconds']:.0f} s (subprocess peak RSS {trained['peak_rss_gb']:.2f} GB"
        f"{'; reused from an earlier run of this benchmark' if trained['reused'] else ''}); the simulation of the "
        f"scored customers took {simulated['seconds']:.0f} s (subprocess peak RSS {simulated['peak_rss_gb']:.2f} GB"
        f"{'; reused' if simulated['reused'] else ''}).",
        "",
        f"{machine()} The machine is shared: 1-minute load average {load_before:.1f} when the first scoring "
        f"started, {load_after:.1f} at the end (on {os.cpu_count()} cores). No 16-core machine was available to "
        "this run: the efficiency curve at 4–16 workers is unmeasured.",
        "",
        "| workers | cores | end to end s | customers/s | × 1 worker on 1 core | peak RSS, all processes (GB) | "
        "wall s (with interpreter start) |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {r['workers']} | {r['cores']} | {r['total_s']:.1f} | {r['per_s']:,.0f} | "
            f"{r['per_s'] / one['per_s']:.2f}× | {r['peak_gb']:.2f} | {r['wall_s']:.1f} |"
            for r in runs
        ),
        "",
        f"| stage, seconds | {header} |",
        "|---|" + "---|" * len(runs),
        *(
            f"| {what} | " + " | ".join(f"{r['manifest']['seconds'].get(key, 0.0):.1f}" for r in runs) + " |"
            for what, key in steps
        ),
        "",
        "¹ Summed over the workers (processor seconds, not wall time): these steps run in the workers side by "
        "side, the command being one of them. The command reads and scores the first chunk itself while the "
        "other workers start, so that a table rejected in bulk or an input missing a model's feature stops the "
        "run before any work is spread.",
        "",
        f"Output: {scored:,} scores and {explanation_rows:,} reason rows{shortfall}, {out_mb:,.0f} MB on disk; "
        f"{rejected_rows:,} input rows rejected by validation. SHAP backend the scoring used (the models' "
        f"`shap_values`): churn {backends['churn']}, CLV {backends['clv']}. The explain stage also builds the "
        "reason rows (`top_reasons`), not only the SHAP values.",
        "",
        f"Explanations on the first {rows:,} scored customers' features, same boosters, {THREADS} threads each "
        f"(best of {args.repeats}); the one-off TreeShap set-up (leaf tables) and its first call (numba "
        "compilation or cache load) are shown apart and not in the throughput:",
        "",
        "| booster | trees | leaves | features | pred_contrib rows/s | TreeShap rows/s | speed-up | "
        "max abs diff | TreeShap set-up s | first call s |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {r['model']} | {r['trees']} | {r['leaves']:,} | {r['features']} | "
            f"{r['rows'] / r['pred_contrib_s']:,.0f} | {r['rows'] / r['treeshap_s']:,.0f} | "
            f"{r['pred_contrib_s'] / r['treeshap_s']:.2f}× | {r['max_abs_diff']:.1e} | "
            f"{r['treeshap_build_s']:.2f} | {r['treeshap_first_call_s']:.2f} |"
            for r in comparison
        ),
        f"| **both models** | | | | {rows / lgb_total:,.0f} | {rows / shap_total:,.0f} | **{speedup:.2f}×** | "
        f"{max_diff:.1e} | | |",
        "",
        f"The scoring's explain step on the same {step['rows']:,} customers: the models' `shap_values` "
        f"({backends['churn']} / {backends['clv']}) {step['shap_values_s']:.1f} s, `top_reasons` "
        f"{step['top_reasons_s']:.1f} s ({step['rows'] / step['top_reasons_s']:,.0f} customers/s for the reason "
        "rows of both models)."
        if step["top_reasons_s"] > 0
        else "",
        "",
        "| goal | value | target | result |",
        "|---|---|---|---|",
        *(f"| {what} | {value} | {target} | {'met' if ok else 'NOT met'} |" for what, value, target, ok in goals),
    ]
    lines += [
        "",
        "Memory follows the chunk, not the customer base: the customers table is read whole (one row a "
        "customer), the other tables one chunk of customers at a time — Parquet sorted by customer through "
        "its row-group statistics, anything else through one spill pass to per-chunk temporary files "
        "(`crmscore.data.stream.StreamedInput`); what stays for the whole run is one small row per customer "
        "for the tier scale and the scores.",
    ]
    summary = {
        "customers": scored,
        "customers_per_s": round(per_s_end_to_end, 1),
        "scaling_1_to_2": round(scaling, 3),
        "explain_speedup_vs_pred_contrib": round(speedup, 2),
        "explain_max_abs_diff": float(f"{max_diff:.3e}"),
        "peak_rss_gb": round(peak, 3),
    }
    return summary, lines


if __name__ == "__main__":
    main()
