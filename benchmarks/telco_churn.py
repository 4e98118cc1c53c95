"""Benchmark: the shipped churn model on IBM's Telco Customer Churn data, by repeated stratified k-fold.

The data takes the user's path: the published CSV, read through the data contract with the worked
example's ``examples/telco/params.yaml`` (column mapping, tenure in months, ``gender`` protected) exactly as
``crmscore train churn --input … --params examples/telco/params.yaml`` reads it, whose printed
cross-validated AUC is the figure below (same features, folds, seed and tuned parameters).

Runs the configuration ``params.yaml`` ships: hyper-parameters tuned once with ``tune_lightgbm`` on the
snapshot train / validation split (the default trial budget and its one-standard-error rule), then
``cv_repeats`` × ``cv_folds`` stratified cross-validation of ``model_from_settings(churn, tuned_params)``
on all 7,043 customers, and the same cross-validation of the logistic baseline for reference. The
default training path (tuning plus fitting the final model on the train split) is timed too.

Goals (issue: churn model): CV AUC ≥ 0.850, Brier ≤ 0.135, training ≤ 180 s on 2 cores. Writes the
"Telco" section of ``reports/benchmarks/churn.md``; the last line printed is one JSON object
``{"cv_auc", "cv_auc_std", "brier", "seconds"}``.

    python benchmarks/telco_churn.py [--repeats N] [--trials N] [--data-dir PATH]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
from _report import machine, write_section

from crmscore import churn
from crmscore.config import load_settings
from crmscore.data.load import load_tables
from crmscore.data.public import SHA256, TELCO_FILE, data_dir, verify_file

REPORT = Path("reports/benchmarks/churn.md")
EXAMPLE_PARAMS = Path("examples/telco/params.yaml")
TITLE = "Churn model benchmarks"
GOAL_CV_AUC = 0.850
GOAL_BRIER = 0.135
GOAL_TRAIN_SECONDS = 180.0


def summarise(folds: pd.DataFrame, seconds: float) -> dict[str, float]:
    """Mean (and AUC spread) of the per-fold metrics of one model."""
    return {
        "cv_auc": float(folds["roc_auc"].mean()),
        "cv_auc_std": float(folds["roc_auc"].std(ddof=1)) if len(folds) > 1 else 0.0,
        "brier": float(folds["brier"].mean()),
        "ece": float(folds["ece"].mean()),
        "lift_10": float(folds["lift_10"].mean()),
        "seconds": seconds,
    }


def main() -> None:
    settings = load_settings(EXAMPLE_PARAMS)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=settings.churn.cv_repeats, help="repeats of the k-fold")
    parser.add_argument("--trials", type=int, default=settings.churn.tuning.trials, help="Optuna trials")
    parser.add_argument("--data-dir", default=None, help="public data folder (default: $CRMSCORE_DATA_DIR)")
    parser.add_argument("--report", type=Path, default=REPORT)
    args = parser.parse_args()

    started = time.perf_counter()
    churn_settings = settings.churn.model_copy(deep=True)
    churn_settings.tuning.trials = args.trials
    churn_settings.cv_repeats = args.repeats
    folds, repeats, seed = churn_settings.cv_folds, churn_settings.cv_repeats, churn_settings.seed

    csv = data_dir(args.data_dir) / TELCO_FILE
    verify_file(csv, SHA256[TELCO_FILE])
    loaded = load_tables(csv.parent, settings.data)
    tables, snapshot = loaded.tables, loaded.snapshot_date
    # The same features and label as snapshot_datasets builds, for all customers (the CV population).
    X, y, _ = churn.snapshot_frame(tables, settings.features, snapshot)
    data = churn.snapshot_datasets(tables, churn_settings, settings.features, as_of=snapshot)
    train, valid, test = data["train"], data["valid"], data["test"]

    # The default training path: tune once on train / valid, then fit the final model on train.
    train_started = time.perf_counter()
    tuning = churn.tune_lightgbm(
        train, valid, churn_settings.tuning, seed=seed, class_weight=churn_settings.class_weight
    )
    final = churn.model_from_settings(churn_settings, tuning.best_params).fit(train.X, train.y)
    train_seconds = time.perf_counter() - train_started
    holdout = churn.evaluate(final, test)
    print(
        f"tuned in {tuning.seconds:.1f} s ({tuning.trials} trials, {tuning.pruned} pruned, valid AUC "
        f"{tuning.best_value:.4f}); trained in {train_seconds:.1f} s; holdout AUC {holdout['roc_auc']:.4f}",
        flush=True,
    )

    cv_models: list[churn.ChurnModel] = []

    def make_lightgbm() -> churn.ChurnModel:
        cv_models.append(churn.model_from_settings(churn_settings, tuning.best_params))
        return cv_models[-1]

    results = {}
    for name, make_model in (
        ("LightGBM (tuned, calibrated, blended)", make_lightgbm),
        ("LogisticBaseline", lambda: churn.LogisticBaseline(seed=seed)),
    ):
        cv_started = time.perf_counter()
        fold_metrics = churn.cross_validate(X, y, make_model, folds=folds, repeats=repeats, seed=seed)
        results[name] = summarise(fold_metrics, time.perf_counter() - cv_started)
        results[name]["cv_auc_se"] = churn.cv_summary(fold_metrics, folds)["cv_roc_auc_se"]
        print(f"{name}: CV AUC {results[name]['cv_auc']:.4f} ± {results[name]['cv_auc_std']:.4f}", flush=True)
    seconds = time.perf_counter() - started

    shipped = results["LightGBM (tuned, calibrated, blended)"]
    goals = [
        ("CV AUC", f"{shipped['cv_auc']:.4f}", f"≥ {GOAL_CV_AUC:.3f}", shipped["cv_auc"] >= GOAL_CV_AUC),
        ("CV Brier", f"{shipped['brier']:.4f}", f"≤ {GOAL_BRIER:.3f}", shipped["brier"] <= GOAL_BRIER),
        ("train_seconds", f"{train_seconds:.1f}", f"≤ {GOAL_TRAIN_SECONDS:.0f}", train_seconds <= GOAL_TRAIN_SECONDS),
    ]
    weights = pd.Series([m.blend_weight_ for m in cv_models]).value_counts().sort_index()
    methods = pd.Series([m.calibration_method_ for m in cv_models]).value_counts()
    best_params = {k: round(v, 4) if isinstance(v, float) else v for k, v in tuning.best_params.items()}
    default_value = float(tuning.trials_table.loc[tuning.trials_table["number"] == 0, "value"].iloc[0])
    command = "python benchmarks/telco_churn.py"
    command += f" --repeats {args.repeats}" if args.repeats != settings.churn.cv_repeats else ""
    command += f" --trials {args.trials}" if args.trials != settings.churn.tuning.trials else ""
    lines = [
        f"`{command}`: IBM Telco Customer Churn read through the data contract with "
        f"`{EXAMPLE_PARAMS}` (the user's path: `crmscore train churn` prints the same cross-validated AUC), "
        f"{len(y):,} customers, churn rate {y.mean():.1%}; "
        f"{repeats}× repeated stratified {folds}-fold cross-validation (seed {seed}) of the shipped "
        "configuration.",
        "",
        machine(),
        "",
        "| model | CV AUC (mean ± std) | Brier | ECE | lift@10 | seconds |",
        "|---|---|---|---|---|---|",
        *(
            f"| {name} | {r['cv_auc']:.4f} ± {r['cv_auc_std']:.4f} | {r['brier']:.4f} | {r['ece']:.4f} | "
            f"{r['lift_10']:.2f} | {r['seconds']:.1f} |"
            for name, r in results.items()
        ),
        "",
        "| goal | value | target | result |",
        "|---|---|---|---|",
        *(f"| {what} | {value} | {target} | {'met' if ok else 'NOT met'} |" for what, value, target, ok in goals),
        "",
        "Hyper-parameters were tuned once, on the stratified train / validation split of "
        f"`snapshot_datasets` ({len(train):,} / {len(valid):,} customers), and then held fixed in every fold: "
        "the tuning saw customers that the folds later test on, so this cross-validation is not nested "
        "and its figure may be slightly optimistic.",
        "",
        f"- Tuning: {tuning.trials} trials ({tuning.pruned} pruned) in {tuning.seconds:.1f} s, best validation "
        f"AUC {tuning.search_best_value:.4f} (standard error {tuning.standard_error:.4f}), default configuration "
        f"{default_value:.4f}; "
        + (
            "the best trial does not beat the default by one standard error, so the default is kept "
            if tuning.kept_default
            else "the best trial beats the default by more than one standard error and is used "
        )
        + f"(one-standard-error rule): parameters `{json.dumps(best_params)}`.",
        f"- Default training path (tuning + fitting the final model on the train split, cross-fitted): "
        f"{train_seconds:.1f} s; on the {len(test):,} test customers AUC {holdout['roc_auc']:.4f}, "
        f"Brier {holdout['brier']:.4f}, ECE {holdout['ece']:.4f}; blend weight of the trees "
        f"{final.blend_weight_:.1f}, calibration {final.calibration_method_}, best iterations "
        f"{final.best_iterations_}.",
        "- Blend weight of the trees across the CV fits: "
        + ", ".join(f"{w:.1f} × {n}" for w, n in weights.items())
        + "; calibration: "
        + ", ".join(f"{m} × {n}" for m, n in methods.items())
        + " (isotonic is centred, so it keeps the ranking of the blended scores).",
        f"- Total benchmark time {seconds:.1f} s.",
    ]
    write_section(args.report, "Telco", "\n".join(lines), TITLE)
    print(f"report written to {args.report}")
    summary = {
        "cv_auc": round(shipped["cv_auc"], 4),
        "cv_auc_std": round(shipped["cv_auc_std"], 4),
        "cv_auc_se": round(shipped["cv_auc_se"], 4),
        "brier": round(shipped["brier"], 4),
        "seconds": round(seconds, 1),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
