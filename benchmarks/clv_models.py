"""Benchmark: ML CLV against BG/NBD × Gamma-Gamma on the same holdout, on CDNOW and on simulated data.

Both models predict each customer's spend in a holdout window; they are judged with the value metrics of
:mod:`crmscore.evaluation` (normalized Gini, Spearman, decile MAPE, MAE, aggregate bias, top-decile
value capture) on the same customers, and the better on ``clv.selection_metric`` is the one the
training stage would propose.

* **Simulated** (``--customers``, default 50,000): the shipped configuration exactly as
  ``crmscore train clv`` runs it — ``clv_datasets`` (training cutoffs whose label windows close before the
  test date, whole validation customers), ``tune_clv`` with the default budget, ``BtydClv`` fitted on the
  history up to the test date. The test date is the simulator's ``truth_as_of``, so the **oracle** (the
  simulator's true expected spend of each customer) scores the same customers: the best reachable score.
* **CDNOW** (the whole 1997-Q1 cohort, 23,570 customers): calibration to 1997-09-30, holdout the next 39
  weeks. The 18-month history leaves no earlier window whose 39-week outcome closes before the holdout,
  so the ML model is **cross-fitted over customers** (5 folds: each customer is predicted by a model
  trained on the other customers' outcomes in the same window). That gives the ML model knowledge of the
  holdout period's overall level that BG/NBD never has, so the comparison favours it; the simulated
  comparison is the fair one.

Writes the "Model comparison" section of ``reports/benchmarks/clv.md``; the last line printed is one
JSON object ``{"simulated": {"ml_gini", "btyd_gini", "oracle_gini", "proposed"}, "cdnow": {"ml_gini",
"btyd_gini", "proposed"}}``.

    python benchmarks/clv_models.py [--customers N] [--seed S] [--trials N]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _report import machine, peak_rss_gb, write_section
from sklearn.model_selection import KFold

from crmscore.clv import ml as clv_ml
from crmscore.clv.value import BtydClv
from crmscore.config import Settings
from crmscore.data import public
from crmscore.data.simulate import simulate_crm
from crmscore.evaluation import LOWER_IS_BETTER, value_metrics
from crmscore.features import build_features
from crmscore.labels import future_value

REPORT = Path("reports/benchmarks/clv.md")
TITLE = "CLV model benchmarks"
SIM_TEST_AS_OF = pd.Timestamp("2025-10-31")
CDNOW_AS_OF = pd.Timestamp("1997-09-30")
CDNOW_HOLDOUT_DAYS = 273  # weeks 40-78


def _proposed(scores: dict[str, dict[str, float]], metric: str) -> str:
    pick = min if metric in LOWER_IS_BETTER else max
    return pick(("ml", "btyd"), key=lambda k: scores[k][metric])


def simulated(args: argparse.Namespace, settings: Settings) -> tuple[dict, list[str]]:
    cfg = settings.clv.model_copy(deep=True)
    cfg.tuning.trials = args.trials
    cfg.test_as_of = SIM_TEST_AS_OF.date()
    sim_cfg = settings.simulate
    started = time.perf_counter()
    sim = simulate_crm(
        customers=args.customers,
        seed=args.seed,
        start_date=sim_cfg.start_date,
        end_date=sim_cfg.end_date,
        truth_as_of=SIM_TEST_AS_OF.date(),
        horizons_days=(cfg.horizon_days,),
    )
    splits = clv_ml.clv_datasets(sim.tables(), cfg, settings.features)
    train, valid, test = splits["train"], splits["valid"], splits["test"]
    prepared = time.perf_counter() - started

    t0 = time.perf_counter()
    tuning = clv_ml.tune_clv(train, valid, cfg)
    ml_model = clv_ml.model_from_settings(cfg, tuning.best_params).fit(train.X, train.y, valid.X, valid.y)
    ml_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    btyd_model = BtydClv(penalizer=cfg.penalizer, time_unit=cfg.time_unit, horizon_days=cfg.horizon_days).fit(test.X)
    btyd_seconds = time.perf_counter() - t0

    buyers = test.X["repeat_purchase_days"].notna().to_numpy()
    X, y = test.X.loc[buyers], test.y.to_numpy()[buyers]
    truth = sim.truth.loc[sim.truth["horizon_days"] == cfg.horizon_days].set_index("customer_id")
    oracle = truth["expected_spend"].reindex(X.index)
    if oracle.isna().any():
        raise RuntimeError(f"{int(oracle.isna().sum())} holdout customers have no truth row")
    scores = {
        "ml": value_metrics(y, ml_model.predict(X)),
        "btyd": value_metrics(y, btyd_model.predict(X)),
        "oracle": value_metrics(y, oracle.to_numpy()),
    }
    proposed = _proposed(scores, cfg.selection_metric)
    train_dates = ", ".join(str(d.date()) for d in sorted(train.as_of.unique()))
    lines = [
        f"### Simulated: {args.customers:,} customers (seed {args.seed})",
        "",
        f"Shipped configuration. ML trained on as-of {train_dates} ({len(train):,} rows; {len(valid):,} validation "
        f"rows of whole held-out customers), tuned with {tuning.trials} trials ({tuning.pruned} pruned) in "
        f"{tuning.seconds:.0f} s; BG/NBD × Gamma-Gamma fitted on the history to {SIM_TEST_AS_OF.date()} "
        f"({btyd_model.n_buyers_:,} buyers) in {btyd_seconds:.1f} s. Holdout: spend in the "
        f"{cfg.horizon_days} days after {SIM_TEST_AS_OF.date()} of the {int(buyers.sum()):,} test customers who "
        f"had bought (the BTYD population); oracle = the simulator's true expected spend.",
        "",
        *_table(scores, ("ml", "btyd", "oracle")),
        "",
        f"Proposed on `{cfg.selection_metric}`: **{proposed}**. ML Gini = "
        f"{scores['ml']['gini'] / scores['oracle']['gini']:.3f} × oracle, BTYD = "
        f"{scores['btyd']['gini'] / scores['oracle']['gini']:.3f} × oracle. Seconds: data and features "
        f"{prepared:.0f}, ML tuning + fit {ml_seconds:.0f}, BTYD fit {btyd_seconds:.1f}.",
    ]
    summary = {
        "ml_gini": round(scores["ml"]["gini"], 4),
        "btyd_gini": round(scores["btyd"]["gini"], 4),
        "oracle_gini": round(scores["oracle"]["gini"], 4),
        "proposed": proposed,
    }
    return summary, lines


def cdnow(args: argparse.Namespace, settings: Settings) -> tuple[dict, list[str]]:
    cfg = settings.clv
    tables = public.load_cdnow()
    X = build_features(tables, CDNOW_AS_OF, settings.features)
    X = X.loc[X["repeat_purchase_days"].notna()]
    y = future_value(tables["transactions"], X.index, CDNOW_AS_OF, CDNOW_HOLDOUT_DAYS)["future_spend"].to_numpy()

    t0 = time.perf_counter()
    ml_pred = np.zeros(len(X))
    for train_idx, test_idx in KFold(5, shuffle=True, random_state=args.seed).split(X):
        model = clv_ml.ClvModel(seed=args.seed).fit(X.iloc[train_idx], y[train_idx])
        ml_pred[test_idx] = model.predict(X.iloc[test_idx])
    ml_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    btyd_model = BtydClv(penalizer=cfg.penalizer, time_unit="W", horizon_days=CDNOW_HOLDOUT_DAYS).fit(X)
    btyd_pred = btyd_model.predict(X)
    btyd_seconds = time.perf_counter() - t0
    scores = {"ml": value_metrics(y, ml_pred), "btyd": value_metrics(y, btyd_pred)}
    proposed = _proposed(scores, cfg.selection_metric)
    lines = [
        f"### CDNOW: the whole cohort ({len(X):,} customers)",
        "",
        f"Calibration to {CDNOW_AS_OF.date()}, holdout spend in the next {CDNOW_HOLDOUT_DAYS} days (weeks 40–78). "
        f"ML (default LightGBM parameters, no tuning) cross-fitted over customers in 5 folds ({ml_seconds:.0f} s; "
        f"this favours ML, see above); BG/NBD × Gamma-Gamma fitted on the calibration history ({btyd_seconds:.1f} s).",
        "",
        *_table(scores, ("ml", "btyd")),
        "",
        f"Proposed on `{cfg.selection_metric}`: **{proposed}**.",
    ]
    summary = {"ml_gini": round(scores["ml"]["gini"], 4), "btyd_gini": round(scores["btyd"]["gini"], 4)}
    summary["proposed"] = proposed
    return summary, lines


def _table(scores: dict[str, dict[str, float]], names: tuple[str, ...]) -> list[str]:
    label = {"ml": "LightGBM (Tweedie)", "btyd": "BG/NBD × Gamma-Gamma", "oracle": "Oracle (true expected spend)"}
    keys = ("gini", "spearman", "decile_mape", "mae", "bias", "top_decile_capture", "mean_predicted")
    rows = [
        "| model | Gini | Spearman | decile MAPE | MAE | bias | top-decile capture | mean predicted |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        s = scores[name]
        rows.append(f"| {label[name]} | " + " | ".join(f"{s[k]:.4f}" for k in keys) + " |")
    rows.append(f"| actual | | | | | | | {scores[names[0]]['mean_actual']:.4f} |")
    return rows


def main() -> None:
    settings = Settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=settings.simulate.seed)
    parser.add_argument("--trials", type=int, default=settings.clv.tuning.trials)
    args = parser.parse_args()
    started = time.perf_counter()
    sim_summary, sim_lines = simulated(args, settings)
    print(json.dumps({"simulated": sim_summary}))
    cdnow_summary, cdnow_lines = cdnow(args, settings)
    command = "python benchmarks/clv_models.py" + (f" --customers {args.customers}" if args.customers != 50_000 else "")
    body = "\n".join(
        [
            f"`{command}` — {time.perf_counter() - started:.0f} s, peak memory {peak_rss_gb():.2f} GB. {machine()}",
            "",
            *sim_lines,
            "",
            *cdnow_lines,
        ]
    )
    write_section(REPORT, "Model comparison", body, TITLE)
    print(f"report written to {REPORT}")
    print(json.dumps({"simulated": sim_summary, "cdnow": cdnow_summary}))


if __name__ == "__main__":
    main()
