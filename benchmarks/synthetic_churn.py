"""Benchmark: the shipped churn model on simulated customers, against the oracle that knows the truth.

Simulates ``--customers`` customers with the ``params.yaml`` calendar and sets the test as-of date to
the simulator's ``truth_as_of`` (2026-07-31), so the test customers are exactly those the truth covers.
Temporal datasets (stacked training cutoffs, a validation date one horizon earlier), hyper-parameters
tuned with ``tune_lightgbm`` on train / validation (default trial budget), the final model fitted on
train with early stopping and calibration on validation, and evaluated on test. The oracle AUC is the
AUC of the true probability of no purchase in the horizon (``truth.p_no_purchase``) on the same
customers: the best ranking any model could reach.

Goals (issue: churn model): AUC ≥ 0.97 × oracle AUC, ECE ≤ 0.02. Writes the "Synthetic" section of
``reports/benchmarks/churn.md``; the last line printed is one JSON object
``{"auc", "oracle_auc", "ece", "brier"}``.

    python benchmarks/synthetic_churn.py [--customers N] [--seed S] [--trials N]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
from _report import machine, write_section

from crmscore import churn
from crmscore.config import Settings
from crmscore.data.simulate import simulate_crm
from crmscore.evaluation import classification_metrics

REPORT = Path("reports/benchmarks/churn.md")
TITLE = "Churn model benchmarks"
GOAL_AUC_SHARE = 0.97
GOAL_ECE = 0.02


def main() -> None:
    settings = Settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=settings.simulate.seed, help="simulation seed")
    parser.add_argument("--trials", type=int, default=settings.churn.tuning.trials, help="Optuna trials")
    parser.add_argument("--report", type=Path, default=REPORT)
    args = parser.parse_args()

    started = time.perf_counter()
    sim_settings = settings.simulate
    churn_settings = settings.churn.model_copy(deep=True)
    churn_settings.tuning.trials = args.trials
    # Test at the truth's as-of date, so the oracle and the model judge the same customers and window.
    churn_settings.test_as_of = sim_settings.truth_as_of
    horizon = churn_settings.horizon_days

    sim = simulate_crm(
        customers=args.customers,
        seed=args.seed,
        start_date=sim_settings.start_date,
        end_date=sim_settings.end_date,
        truth_as_of=sim_settings.truth_as_of,
        horizons_days=(horizon,),
    )
    data = churn.temporal_datasets(sim.tables(), churn_settings, settings.features)
    train, valid, test = data["train"], data["valid"], data["test"]
    test_as_of = test.as_of.iloc[0]
    assert test_as_of == pd.Timestamp(sim_settings.truth_as_of), (test_as_of, sim_settings.truth_as_of)
    prepared_seconds = time.perf_counter() - started

    train_started = time.perf_counter()
    tuning = churn.tune_lightgbm(
        train, valid, churn_settings.tuning, seed=churn_settings.seed, class_weight=churn_settings.class_weight
    )
    model = churn.model_from_settings(churn_settings, tuning.best_params).fit(train.X, train.y, valid.X, valid.y)
    train_seconds = time.perf_counter() - train_started
    baseline = churn.fit_baseline(train, seed=churn_settings.seed)

    truth = sim.truth.loc[sim.truth["horizon_days"] == horizon].set_index("customer_id")
    p_oracle = truth["p_no_purchase"].reindex(test.X.index)
    if p_oracle.isna().any():
        raise RuntimeError(f"{int(p_oracle.isna().sum())} test customers have no truth row")
    y_test = test.y.to_numpy().astype(int)
    results = {
        "LightGBM (tuned, calibrated, blended)": churn.evaluate(model, test),
        "LogisticBaseline": churn.evaluate(baseline, test),
        "Oracle (truth p_no_purchase)": classification_metrics(y_test, p_oracle.to_numpy()),
    }
    shipped = results["LightGBM (tuned, calibrated, blended)"]
    oracle = results["Oracle (truth p_no_purchase)"]
    seconds = time.perf_counter() - started

    goals = [
        (
            "AUC / oracle AUC",
            f"{shipped['roc_auc'] / oracle['roc_auc']:.4f}",
            f"≥ {GOAL_AUC_SHARE:.2f}",
            shipped["roc_auc"] >= GOAL_AUC_SHARE * oracle["roc_auc"],
        ),
        ("ECE", f"{shipped['ece']:.4f}", f"≤ {GOAL_ECE:.2f}", shipped["ece"] <= GOAL_ECE),
    ]
    best_params = {k: round(v, 4) if isinstance(v, float) else v for k, v in tuning.best_params.items()}
    command = "python benchmarks/synthetic_churn.py"
    command += f" --customers {args.customers}" if args.customers != 50_000 else ""
    command += f" --seed {args.seed}" if args.seed != settings.simulate.seed else ""
    command += f" --trials {args.trials}" if args.trials != settings.churn.tuning.trials else ""
    train_dates = ", ".join(str(d.date()) for d in sorted(train.as_of.unique()))
    lines = [
        f"`{command}`: {args.customers:,} simulated customers (seed {args.seed}), transaction churn = no "
        f"purchase in the next {horizon} days. Train as-of {train_dates} ({len(train):,} rows, churn rate "
        f"{train.y.mean():.1%}); validation {valid.as_of.iloc[0].date()} ({len(valid):,}); test "
        f"{test_as_of.date()} = the simulator's truth as-of date ({len(test):,} customers, churn rate "
        f"{test.y.mean():.1%}).",
        "",
        machine(),
        "",
        "| model (test set) | AUC | Brier | ECE | log loss | lift@10 |",
        "|---|---|---|---|---|---|",
        *(
            f"| {name} | {r['roc_auc']:.4f} | {r['brier']:.4f} | {r['ece']:.4f} | {r['log_loss']:.4f} | "
            f"{r['lift_10']:.2f} |"
            for name, r in results.items()
        ),
        "",
        "| goal | value | target | result |",
        "|---|---|---|---|",
        *(f"| {what} | {value} | {target} | {'met' if ok else 'NOT met'} |" for what, value, target, ok in goals),
        "",
        f"- Tuning: {tuning.trials} trials ({tuning.pruned} pruned) in {tuning.seconds:.1f} s, best validation "
        f"AUC {tuning.best_value:.4f}; best parameters `{json.dumps(best_params)}`.",
        f"- Final model: blend weight of the trees {model.blend_weight_:.1f}, calibration "
        f"{model.calibration_method_} (on the validation set), best iteration {model.best_iterations_}.",
        f"- Seconds: simulation and features {prepared_seconds:.1f}, tuning + training {train_seconds:.1f}, "
        f"total {seconds:.1f}.",
    ]
    write_section(args.report, "Synthetic", "\n".join(lines), TITLE)
    print(f"report written to {args.report}")
    summary = {
        "auc": round(shipped["roc_auc"], 4),
        "oracle_auc": round(oracle["roc_auc"], 4),
        "ece": round(shipped["ece"], 4),
        "brier": round(shipped["brier"], 4),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
