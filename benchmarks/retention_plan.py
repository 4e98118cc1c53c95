"""Retention planning: uplift against the oracle, the plan's profit against the truth, and Hillstrom.

Part 1, simulated (the simulator knows each customer's true effect of an offer):

* 20,000 customers with the default past campaigns (two randomized, one targeted with stored
  propensities); `crmscore train churn / clv / uplift` on the whole history, scoring and
  `crmscore plan` as of its last day;
* **Qini against the oracle**: the uplift champion's Qini coefficient on its held-out randomized
  customers, beside the Qini of ranking the same customers by their true uplift (goal ≥ 0.8 ×);
* **profit against the truth**: at the same budget (contacting 10 % of the customers), the realized profit
  of the plan — the true gain in spend over the CLV horizon of each contacted customer × margin − the
  contact cost — against contacting the highest churn risks and the highest value at risk (CLV × P(churn))
  (goals ≥ 1.3 × and ≥ 1.1 ×).

Part 2, Hillstrom's randomized e-mail campaign (64,000 customers; `../shared/data/hillstrom/`, skipped with
a reason when absent): any e-mail against none, outcome visit, five seeded 70/30 customer splits; the T-, X-
and DR-learners' held-out Qini, AUUC and uplift at the top 30 %, beside the average treatment effects.

The last line printed is the JSON summary: ``qini_sim``, ``qini_oracle_sim``, ``profit_vs_risk_targeting``,
``profit_vs_var_targeting``, ``hillstrom_qini_visit``, ``hillstrom_auuc_visit``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _report import finish, machine

from crmscore import planning, uplift
from crmscore.config import Settings
from crmscore.data.public import data_dir
from crmscore.data.simulate import simulate_crm
from crmscore.errors import DataError
from crmscore.io import write_parquet

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "reports" / "benchmarks" / "retention_plan.md"
END = dt.date(2026, 10, 31)
CONTACT_SHARE = 0.10
SEEDS = (0, 1, 2, 3, 4)


# --- part 1: simulated ------------------------------------------------------------------------------------


def _settings(work: Path, quick: bool) -> Settings:
    trials = 3 if quick else 10
    return Settings(
        paths={
            "models_dir": str(work / "models"),
            "reports_dir": str(work / "reports"),
            "simulated_dir": str(work / "sim"),
        },
        churn={"tuning": {"trials": trials, "timeout_seconds": 300}},
        clv={"model": "ml", "tuning": {"trials": trials, "timeout_seconds": 300}},
        uplift={"tuning": {"trials": 4 if quick else 8, "timeout_seconds": 300}},
        scoring={"out_dir": str(work / "scores")},
        plan={"out_dir": str(work / "plans")},
        monitoring={"out_dir": str(work / "monitoring")},
    )


def _realized_profit(truth: pd.DataFrame, ids: np.ndarray, margin: float, cost: float) -> float:
    """What contacting ``ids`` truly earns: their true spend uplift over the horizon × margin − the contacts."""
    gained = truth["uplift_spend"].reindex(ids).fillna(0.0).to_numpy()
    return float(gained.sum() * margin - cost * len(ids))


def _simulated(customers: int, quick: bool, work: Path) -> tuple[dict, list[str]]:
    from crmscore import stages
    from crmscore.tracking import UPLIFT_MODEL_NAME, registered_estimator

    settings = _settings(work, quick)
    cfg_sim = settings.simulate
    horizon = settings.clv.horizon_days
    t0 = time.perf_counter()
    data = simulate_crm(
        customers,
        seed=7,
        start_date=cfg_sim.start_date,
        end_date=END,
        truth_as_of=END,
        horizons_days=(settings.churn.horizon_days, horizon),
        campaigns=cfg_sim.to_campaigns(),
    )
    for name, frame in data.tables().items():
        write_parquet(frame, work / "sim" / f"{name}.parquet")
    write_parquet(data.campaign_truth, work / "sim" / "campaign_truth.parquet")
    simulate_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    trained = [
        train(settings, work / "sim")
        for train in (stages.train_churn_stage, stages.train_clv_stage, stages.train_uplift_stage)
    ]
    train_seconds = time.perf_counter() - t0
    model = registered_estimator(UPLIFT_MODEL_NAME)[0]
    holdout = model.holdout
    truth_rows = data.campaign_truth.set_index(["customer_id", data.campaign_truth["campaign"].astype(str)])
    keys = pd.MultiIndex.from_arrays([holdout.index.to_numpy(), holdout["campaign"].astype(str).to_numpy()])
    true_uplift = truth_rows["expected_uplift_active"].reindex(keys).to_numpy(dtype=float)
    y, t = holdout["retained"].to_numpy(), holdout["treated"].to_numpy()
    qini = uplift.qini_coefficient(y, t, holdout["uplift"].to_numpy())
    oracle = uplift.oracle_qini(y, t, true_uplift)
    # Knowing the hidden dropout too (nobody can): the effect given whether the customer is still alive.
    seer = uplift.oracle_qini(y, t, truth_rows["uplift_active"].reindex(keys).to_numpy(dtype=float))

    t0 = time.perf_counter()
    scoring = stages.score_stage(settings, END, work / "sim", progress=False)
    scores = pd.read_parquet(scoring.out_dir / "scores.parquet")
    cost = model.contact_cost
    budget = round(CONTACT_SHARE * len(scores)) * cost
    plan = stages.plan_stage(settings, END, budget=budget, cost=cost, input_dir=work / "sim")
    plan_seconds = time.perf_counter() - t0
    contacts = pd.read_parquet(plan.out_dir / "plan.parquet")
    count = round(CONTACT_SHARE * len(scores))
    truth = data.truth.loc[data.truth["horizon_days"] == horizon].set_index("customer_id")
    margin = settings.clv.margin
    current = scores.loc[scores["lifecycle_stage"].isin(["new", "active"])].reset_index(drop=True)

    def top(frame: pd.DataFrame, column: str) -> float:
        ids = frame["customer_id"].to_numpy()[planning.targeted_by(frame, column, count)]
        return _realized_profit(truth, ids, margin, cost)

    profits = {
        "plan": _realized_profit(truth, contacts["customer_id"].to_numpy(), margin, cost),
        "highest churn risk": top(scores, "churn_probability"),
        "highest value at risk": top(scores, "value_at_risk"),
        "highest churn risk, active customers": top(current, "churn_probability"),
        "highest value at risk, active customers": top(current, "value_at_risk"),
        "everyone worth it by the truth": float(
            np.clip(truth["uplift_spend"].to_numpy() * margin - cost, 0, None).sum()
        ),
    }

    def ratio(baseline: str) -> float | None:
        return profits["plan"] / profits[baseline] if profits[baseline] > 0 else None

    found = {
        "qini": qini,
        "oracle": oracle,
        "profits": profits,
        "ratio_risk": ratio("highest churn risk, active customers"),
        "ratio_var": ratio("highest value at risk, active customers"),
        "ratio_risk_all": ratio("highest churn risk"),
        "ratio_var_all": ratio("highest value at risk"),
    }
    u = trained[2]
    lines = [
        "## Simulated campaigns",
        "",
        f"{customers:,} customers, history {cfg_sim.start_date} to {END}; campaigns: "
        + ", ".join(
            f"{c.name} ({c.date}, {'targeted' if c.targeted else f'{c.share:.0%} randomized'})"
            for c in cfg_sim.to_campaigns()
        )
        + f". Simulated in {simulate_seconds:.0f} s; churn, CLV and uplift trained in {train_seconds:.0f} s; "
        f"scored and planned in {plan_seconds:.0f} s.",
        "",
        "| learner | held-out Qini | AUUC | uplift top 10 % | top 20 % | top 30 % |",
        "|---|---|---|---|---|---|",
        *(
            f"| {name} | {row.qini:.4f} | {row.auuc:.4f} | {row.uplift_at_10:+.4f} | {row.uplift_at_20:+.4f} | "
            f"{row.uplift_at_30:+.4f} |"
            for name, row in model.comparison.iterrows()
        ),
        "",
        f"- Champion {model.learner_name}-learner ({u.decision}): Qini {qini:.4f} against the oracle's "
        f"{oracle:.4f} on the same {len(holdout):,} held-out customers: {qini / oracle:.2f} × (goal ≥ 0.8 ×). "
        f"Ranking by the effect given the hidden dropout as well, which no one can observe: Qini {seer:.4f}.",
        f"- Plan at a budget of {budget:,.0f} ({count:,} contacts at {cost:g}): "
        f"{len(contacts):,} contacted; expected profit {plan.expected_profit:,.0f}"
        + (
            f" (95 % interval {plan.interval[0]:,.0f} to {plan.interval[1]:,.0f})"
            if plan.interval[0] is not None
            else ""
        )
        + ".",
        "",
        "| contacted | realized profit (truth) |",
        "|---|---|",
        *(f"| {name} | {value:,.0f} |" for name, value in profits.items()),
        "",
        f"- Plan against the highest churn risks among the active customers: {_ratio(found['ratio_risk'])} "
        f"(goal ≥ 1.3 ×); against the highest value at risk among them: {_ratio(found['ratio_var'])} (goal ≥ 1.1 ×). "
        f"Among all customers: {_ratio(found['ratio_risk_all'])} and {_ratio(found['ratio_var_all'])}.",
    ]
    return found, lines


def _ratio(value: float | None) -> str:
    return "n/a (the baseline lost money)" if value is None else f"{value:.2f} ×"


# --- part 2: Hillstrom ------------------------------------------------------------------------------------


def _hillstrom(quick: bool, data_root: Path) -> tuple[dict | None, list[str]]:
    from crmscore.data.public import load_hillstrom

    try:
        data = load_hillstrom(data_root)
    except DataError as exc:
        return None, ["## Hillstrom e-mail campaign", "", f"Skipped: {exc}"]
    X = data["features"]
    t = data["treatment"]["treated"].to_numpy().astype(int)
    segment = data["treatment"]["segment"].astype(str).to_numpy()
    outcomes = data["outcomes"]
    y = outcomes["visit"].to_numpy()
    ates = []
    for arm in ("Mens E-Mail", "Womens E-Mail"):
        row = {"contrast": f"{arm} vs No E-Mail"}
        for outcome in ("visit", "conversion", "spend"):
            values = outcomes[outcome].to_numpy(dtype=float)
            row[outcome] = values[segment == arm].mean() - values[segment == "No E-Mail"].mean()
        ates.append(row)
    seeds = SEEDS[:2] if quick else SEEDS
    rows = []
    started = time.perf_counter()
    for seed in seeds:
        train_rows, test_rows = uplift.customer_holdout(X.index.to_numpy(), np.ones(len(t), bool), 0.3, seed)
        for name in uplift.LEARNERS:
            learner = uplift.make_learner(name, seed=seed, n_jobs=2, n_folds=3)
            learner.fit(X.iloc[train_rows], t[train_rows], y[train_rows])
            predicted = learner.predict(X.iloc[test_rows])
            rows.append({"seed": seed, "learner": name, **uplift.uplift_metrics(y[test_rows], t[test_rows], predicted)})
    seconds = time.perf_counter() - started
    table = pd.DataFrame(rows).groupby("learner", sort=False)[["qini", "auuc", "uplift_at_30"]].agg(["mean", "std"])
    best = table[("qini", "mean")].idxmax()
    lines = [
        "## Hillstrom e-mail campaign",
        "",
        f"64,000 customers randomized to a men's e-mail, a women's e-mail or none; any e-mail against none, outcome "
        f"visit (two weeks); {len(seeds)} seeded 70/30 customer splits, learners with default settings "
        f"({seconds:.0f} s).",
        "",
        "| learner | Qini (mean ± sd) | AUUC | uplift at top 30 % |",
        "|---|---|---|---|",
        *(
            f"| {name} | {r[('qini', 'mean')]:.4f} ± {r[('qini', 'std')]:.4f} | {r[('auuc', 'mean')]:.4f} ± "
            f"{r[('auuc', 'std')]:.4f} | {r[('uplift_at_30', 'mean')]:+.4f} ± {r[('uplift_at_30', 'std')]:.4f} |"
            for name, r in table.iterrows()
        ),
        "",
        "Average treatment effects (treated minus control):",
        "",
        "| contrast | visit | conversion | spend |",
        "|---|---|---|---|",
        *(f"| {a['contrast']} | {a['visit']:+.4f} | {a['conversion']:+.4f} | {a['spend']:+.3f} |" for a in ates),
        "",
        f"- Any e-mail: average effect on visits {y[t == 1].mean() - y[t == 0].mean():+.4f}; the uplift at the "
        f"top 30 % of the best learner ({best}) is {table.loc[best, ('uplift_at_30', 'mean')]:+.4f}.",
    ]
    found = {"qini": float(table.loc[best, ("qini", "mean")]), "auuc": float(table.loc[best, ("auuc", "mean")])}
    return found, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--quick", action="store_true", help="5,000 customers, small tuning budgets, two seeds")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--report", type=Path, default=REPORT)
    args = parser.parse_args()
    customers = 5_000 if args.quick else args.customers
    started = time.perf_counter()
    work = (args.work or Path(tempfile.mkdtemp(prefix="crmscore-retention-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    data_root = data_dir().resolve()  # before leaving the project folder: the default is relative to it
    os.chdir(work)
    sim, sim_lines = _simulated(customers, args.quick, work)
    hill, hill_lines = _hillstrom(args.quick, data_root)
    seconds = time.perf_counter() - started
    lines = [
        "# Retention planning: uplift, profit and a real randomized campaign",
        "",
        f"{machine()} Total {seconds:.0f} s.",
        "",
        *sim_lines,
        "",
        *hill_lines,
    ]
    summary = {
        "qini_sim": round(sim["qini"], 4),
        "qini_oracle_sim": round(sim["oracle"], 4),
        "profit_vs_risk_targeting": None if sim["ratio_risk"] is None else round(sim["ratio_risk"], 3),
        "profit_vs_var_targeting": None if sim["ratio_var"] is None else round(sim["ratio_var"], 3),
        "hillstrom_qini_visit": None if hill is None else round(hill["qini"], 4),
        "hillstrom_auuc_visit": None if hill is None else round(hill["auuc"], 4),
    }
    finish(args.report, lines, summary)


if __name__ == "__main__":
    main()
