"""Benchmark: batch scoring of 1M simulated customers end to end, with top-3 reasons for churn and CLV.

Goals (issue: fast at scale), on 2 cores, with the models as ``crmscore train`` makes them on simulated
data (never shrunk for speed):

* explanations (exact TreeSHAP, :class:`crmscore.explain.TreeShap`) at ≥ 4× the throughput of
  LightGBM's own ``pred_contrib`` on the same boosters in the same run, values equal to 1e-9;
* the whole scoring at ≥ 5,000 customers/s (end to end: load and validate the tables, load the
  champions, score, write);
* peak resident memory ≤ 3 GB.

How it runs:

1. **Train** in a workspace (a temporary folder, or ``--workspace DIR``, reused when already trained):
   ``crmscore run`` in a *subprocess* with the shipped defaults except the paths (under the workspace)
   and ``clv.model: ml`` (so the CLV champion is the LightGBM model, which has TreeSHAP reasons; the
   BG/NBD model ``auto`` may pick has none). That simulates the default 20,000 customers, tunes with
   the default Optuna budgets, and registers the churn, CLV and segments champions. A subprocess, so
   the training memory does not count in the scoring's peak.
2. **Simulate** ``--customers`` new customers (seed ``--seed``, by default the training seed + 1) with
   ``crmscore simulate`` in another subprocess (its own peak is several GB at 1M and must not count).
3. **Score** in this process, as ``crmscore score --as-of DATE --input DIR`` does
   (:func:`crmscore.stages.score_stage`): the champions from the MLflow registry, the input streamed
   (customers whole, the other tables one chunk of customers at a time, validated per chunk), then
   features, predictions, reasons, tiers and the atomic write, with the default chunk size. The as-of
   date is the last transaction date (read from one column). Seconds per stage come from the manifest.
4. **Explanations against pred_contrib**: on the first ``--explain-rows`` customers' features, each
   churn booster and the CLV spend booster are explained with ``Booster.predict(pred_contrib=True,
   num_threads=2)`` and with ``TreeShap(booster, n_jobs=2).contrib``; rows/s, speed-up and the largest
   absolute difference are reported.

Peak RSS is this process's high-water mark (``ru_maxrss`` of ``RUSAGE_SELF``, which excludes the
subprocesses; theirs are reported apart). Writes the "Scale" section of
``reports/benchmarks/scoring.md``; the last line printed is one JSON object ``{"customers",
"customers_per_s", "explain_speedup_vs_pred_contrib", "explain_max_abs_diff", "peak_rss_gb"}``.

    python benchmarks/scoring_scale.py [--customers N] [--seed S] [--workspace DIR] [--explain-rows N]
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
from _report import machine, peak_rss_gb, write_section

from crmscore.config import Settings, load_settings

REPORT = Path("reports/benchmarks/scoring.md")
TITLE = "Scoring benchmarks"
SECTION = "Scale"
DEFAULT_CUSTOMERS = 1_000_000
DEFAULT_EXPLAIN_ROWS = 20_000
THREADS = 2
GOAL_EXPLAIN_SPEEDUP = 4.0
GOAL_EXPLAIN_DIFF = 1e-9
GOAL_CUSTOMERS_PER_S = 5_000.0
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
    parser.add_argument("--report", type=Path, default=REPORT)
    args = parser.parse_args()

    with benchmark_workspace(args.workspace, "crmscore-scoring-scale-") as workspace:
        summary, lines = run_benchmark(args, workspace)
    write_section(args.report, SECTION, "\n".join(lines), TITLE)
    say(f"report written to {args.report}")
    print(json.dumps(summary))


def run_benchmark(args, workspace: Path) -> tuple[dict, list[str]]:
    params = workspace_params(workspace)
    settings = load_settings(params)
    trained = train(workspace, params, settings)
    input_dir, simulated = simulate(workspace, params, args.customers, args.seed)

    # Everything from here runs in this process and counts in its peak RSS.
    from crmscore.data.stream import StreamedInput, last_event_date
    from crmscore.stages import load_scoring_models, score_stage

    imports_gb = peak_rss_gb()
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    as_of = last_event_date(input_dir, settings.data)
    as_of_seconds = time.perf_counter() - started
    say(
        f"scoring as of {as_of.date()} (the last transaction date, {as_of_seconds:.1f} s) in chunks of "
        f"{settings.scoring.chunk_size:,}, input streamed …"
    )
    # What `crmscore score --as-of DATE --input DIR` runs: champions from the registry, the input read and
    # validated one chunk of customers at a time, features, predictions, reasons, tiers, atomic write.
    started = time.perf_counter()
    result = score_stage(settings, as_of, input_dir=input_dir, progress=False)
    end_to_end = time.perf_counter() - started
    after_score_gb = peak_rss_gb()
    manifest = result.manifest
    seconds = dict(manifest["seconds"])
    rows_in = manifest["rows_in"]
    rejected_rows = sum(manifest["rejected"].values())
    models = load_scoring_models(settings)
    clv_kind = type(models.clv.estimator).__name__
    clv_objective = getattr(models.clv.estimator, "objective", None)
    backends = scoring_backends(models)
    scored = result.scored
    explanation_rows = manifest["explanations"]
    score_seconds = seconds["scoring"]
    load_seconds = seconds.get("read_and_validate", 0.0)
    models_seconds = seconds.get("load_models", 0.0)
    per_s_scoring = scored / score_seconds
    per_s_end_to_end = scored / end_to_end
    out_mb = sum(f.stat().st_size for f in result.out_dir.rglob("*") if f.is_file()) / 1e6
    say(
        f"scored {scored:,} customers in {end_to_end:.1f} s end to end ({per_s_end_to_end:,.0f}/s); "
        f"{explanation_rows:,} reasons; {rejected_rows:,} rows rejected; seconds {seconds}; SHAP backends {backends}"
    )

    say(f"explanations on {args.explain_rows:,} customers: pred_contrib vs TreeShap ({THREADS} threads) …")
    with StreamedInput(input_dir, settings.data, as_of, args.explain_rows) as first:
        chunk = first.chunk(0)
    gc.collect()
    comparison, step = compare_explanations(models, chunk, as_of, settings, args.repeats)
    peak = peak_rss_gb()
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
            "customers/s, end to end (load + models + score)",
            f"{per_s_end_to_end:,.0f}",
            f"≥ {GOAL_CUSTOMERS_PER_S:,.0f}",
            per_s_end_to_end >= GOAL_CUSTOMERS_PER_S,
        ),
        ("peak RSS of the scoring process (GB)", f"{peak:.2f}", f"≤ {GOAL_PEAK_GB:.0f}", peak <= GOAL_PEAK_GB),
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
    stage_rows = [
        ("load the champions from the registry", models_seconds),
        ("read and validate the input (streamed, per chunk)", load_seconds),
        ("features (`build_features`, per chunk)", seconds["features"]),
        ("predict churn, CLV, segment", seconds["predict"]),
        ("explain: SHAP values + top-3 reasons, churn and CLV", seconds["explain"]),
        ("tiers, risk bands, actions; write scores", seconds["tiers_and_write"]),
    ]
    counted = sum(s for _, s in stage_rows)
    stage_rows.append(("other (writing reasons, progress, clean-up)", end_to_end - counted))
    lines = [
        f"`{command}`: {scored:,} simulated customers (seed {args.seed}; {rows_in.get('transactions', 0):,} "
        f"transactions, {rows_in.get('payments', 0):,} payments, {rows_in.get('interactions', 0):,} interactions) "
        f"scored as of {as_of.date()} with the top {settings.scoring.top_reasons} reasons for churn and CLV, "
        f"in chunks of {settings.scoring.chunk_size:,} (`crmscore.scoring.score`, what `crmscore score` runs).",
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
        f"{'; reused' if simulated['reused'] else ''}). Neither counts in the peak below.",
        "",
        f"{machine()} The machine is shared: 1-minute load average {load_before:.1f} when the scoring "
        f"started, {load_after:.1f} at the end (on {os.cpu_count()} cores).",
        "",
        "| stage | seconds | customers/s |",
        "|---|---|---|",
        *(
            f"| {what} | {s:.1f} | {scored / s:,.0f} |" if s > 0 else f"| {what} | {s:.1f} | |"
            for what, s in stage_rows
        ),
        f"| **scoring (`score`, total)** | **{score_seconds:.1f}** | **{per_s_scoring:,.0f}** |",
        f"| **end to end (`score_stage`: champions + streamed input + scoring)** | **{end_to_end:.1f}** | "
        f"**{per_s_end_to_end:,.0f}** |",
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
        "| memory (this process) | GB |",
        "|---|---|",
        f"| peak RSS after imports and subprocesses | {imports_gb:.2f} |",
        f"| peak RSS after scoring (streamed input) | {after_score_gb:.2f} |",
        f"| peak RSS at the end (after the explanation comparison) | {peak:.2f} |",
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
        "explain_speedup_vs_pred_contrib": round(speedup, 2),
        "explain_max_abs_diff": float(f"{max_diff:.3e}"),
        "peak_rss_gb": round(peak, 3),
    }
    return summary, lines


if __name__ == "__main__":
    main()
