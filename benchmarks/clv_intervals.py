"""Benchmark: how sure are the scores — coverage of the CLV and churn intervals, tier confidence, the cost at scale.

Measured, not assumed (:mod:`crmscore.intervals`, level ``intervals.level`` = 80 %):

* **Simulated** (``--customers``, default 50,000, ``truth_as_of`` = the test date): the ML CLV model as
  ``crmscore train clv`` trains it (``--trials`` Optuna trials), its split-conformal intervals calibrated on
  a seeded half of the test customers (measured on the other half), and BG/NBD × Gamma-Gamma fitted on the
  history to the test date; each test customer's interval against the spend the simulation realized over
  the next 365 days, overall and per decile of predicted spend. The churn model (default parameters, 50
  bootstrapped calibrators and the spread boosters; and without them, and cross-fitted) on ``--churn-seeds``
  more simulated worlds too: the interval of each group's churn rate against the simulator's true rate, and
  of its realized rate against the realized churn, per predicted decile and per 2 % group. Tier confidence
  against the tiers the same customers reach one year later on the same scale.
* **CDNOW** (whole 1997-Q1 cohort): calibration to 1997-09-30, holdout weeks 40–78 (273 days). BG/NBD ×
  Gamma-Gamma as published, and the ML model cross-fitted over customers (5 folds, each calibrating its
  conformal intervals on a quarter of its training customers). The published BG/NBD under-predicts this
  holdout; its coverage is reported as it is, not widened.
* **MAPIE** (the ``bench`` extra): its split-conformal (absolute and gamma scores) and CQR intervals on the
  same simulated customers as the ML CLV model's, per decile of predicted spend (``_mapie_compare.py``).
* **pymc-marketing** (where ``--pymc-python`` names an interpreter with it, the ``bench-pymc`` extra): its BG/NBD
  (NUTS) on the CDNOW sample (2,357 customers) in the same run; its per-customer 80 % credible intervals of
  expected holdout purchases against ours (predictive, and parameter-only), coverage of the actual holdout
  purchases, width and time.
* **Scale** (``--workspace`` with a 1M-customer scoring input and trained models, or ``--skip-scale``):
  ``crmscore score`` on every customer with intervals off and on (the ML CLV champion, then the BTYD
  version pinned), 2 workers, under ``flock /tmp/crmscore-bench.lock`` for the caller to add.

Writes ``reports/benchmarks/clv_intervals.md``; the last line printed is one JSON object
``{"coverage_sim", "worst_decile_gap_sim", "coverage_cdnow_ml", "coverage_cdnow_btyd", "mean_rel_width_sim",
"seconds_1m"}`` (simulated figures of the ML CLV model, the champion the shipped configuration proposes
on that data; ``worst_decile_gap_sim`` the largest |decile coverage − 80 %| over the deciles where an
interval can hold 80 %, see the report; ``mean_rel_width_sim`` mean width / mean predicted spend;
``seconds_1m`` the scoring seconds with intervals, 1M customers, null with ``--skip-scale``), followed by
``coverage_sim_randomized``, ``worst_decile_gap_sim_randomized`` (over every decile) and
``coverage_cdnow_ml_randomized``: the same coverage with the tie at spend 0 broken at random, which holds the
level where more customers than the level spend nothing and no deterministic interval can.

    python benchmarks/clv_intervals.py [--customers N] [--seed S] [--trials N] [--pymc-python PATH]
        [--workspace DIR] [--skip-scale]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _mapie_compare
import numpy as np
import pandas as pd
import yaml
from _report import machine, peak_rss_gb

from crmscore import churn, intervals
from crmscore.clv import btyd
from crmscore.clv import ml as clv_ml
from crmscore.clv.value import BtydClv
from crmscore.config import Settings
from crmscore.data import public
from crmscore.data.simulate import simulate_crm
from crmscore.features import build_features
from crmscore.labels import future_value
from crmscore.tiers import fit_tier_scale

REPORT = Path("reports/benchmarks/clv_intervals.md")
SIM_TEST_AS_OF = pd.Timestamp("2025-10-31")
CDNOW_AS_OF = pd.Timestamp("1997-09-30")
CDNOW_HOLDOUT_END = pd.Timestamp("1998-06-30")
CDNOW_HOLDOUT_DAYS = 273


RANDOMIZED = (
    "*Randomized coverage* breaks the tie at spend 0 at random, as a smoothed conformal predictor does: a "
    "customer who spent 0 counts the probability that the interval keeps 0 "
    "(`ConformalSpend.zero_inclusion`, `zero_inclusion_from_draws`), 1 − (what the interval holds − the level) / "
    "its mass at 0. No deterministic interval can hold less than the mass at 0 it contains, so this is the "
    "check of calibration where that mass exceeds the level (the randomized PIT of count forecasts)"
)


def _decile_lines(table: pd.DataFrame, level: float, floor: np.ndarray | None = None) -> list[str]:
    """Markdown rows of :func:`crmscore.intervals.coverage_by_decile` (with the attainable coverage, if given)."""
    randomized = "randomized" in table.columns
    head = "| decile | customers | mean predicted | coverage | mean width |" + (
        " attainable |" if floor is not None else ""
    )
    head += " randomized coverage |" if randomized else ""
    rows = [head, "|---" * (5 + (floor is not None) + randomized) + "|"]
    for i, (decile, row) in enumerate(table.iterrows()):
        cells = [str(decile), f"{int(row['customers']):,}", f"{row['mean_predicted']:.2f}", f"{row['coverage']:.3f}"]
        cells.append(f"{row['mean_width']:.2f}")
        if floor is not None:
            cells.append(f"{floor[i]:.3f}")
        if randomized:
            cells.append(f"{row['randomized']:.3f}")
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def _attainable(table: pd.DataFrame, zero_share: np.ndarray, level: float) -> np.ndarray:
    """Per decile, the coverage an interval can hold: the level, or the share buying nothing where higher
    ([0, 0] is then the shortest interval holding the level, and it holds that share); overall last."""
    per_decile = np.maximum(level, zero_share)
    weights = table.drop("overall")["customers"].to_numpy()
    return np.append(per_decile, np.average(per_decile, weights=weights))


def _zero_share(predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
    rank = pd.Series(predicted).rank(method="first").to_numpy()
    decile = np.minimum(((rank - 1) * 10 / len(rank)).astype(int), 9)
    return pd.Series(actual == 0).groupby(decile).mean().to_numpy()


def _summary(table: pd.DataFrame, attainable: np.ndarray, level: float) -> dict[str, float]:
    deciles = table.drop("overall")
    holdable = attainable[:-1] <= level + 1e-9
    gaps = (deciles["coverage"] - level).abs()
    randomized = {}
    if "randomized" in table.columns:
        randomized = {
            "randomized": float(table.loc["overall", "randomized"]),
            "worst_gap_randomized": float((deciles["randomized"] - level).abs().max()),
        }
    return randomized | {
        "coverage": float(table.loc["overall", "coverage"]),
        "attainable": float(attainable[-1]),
        "worst_gap_holdable": float(gaps[holdable].max()) if holdable.any() else float("nan"),
        "worst_gap_vs_attainable": float((deciles["coverage"] - attainable[:-1]).abs().max()),
        "mean_width": float(table.loc["overall", "mean_width"]),
        "rel_width": float(table.loc["overall", "mean_width"] / table.loc["overall", "mean_predicted"]),
    }


def _btyd_coverage(model: BtydClv, X: pd.DataFrame, y: np.ndarray, settings: Settings, seed: int):
    """The BTYD spend intervals' coverage table, attainable coverage and seconds on customers ``X``."""
    level = settings.intervals.level
    predicted = model.predict(X)
    t0 = time.perf_counter()
    low, high = intervals.btyd_spend_interval(model, X, level, settings.intervals.draws, seed)
    seconds = time.perf_counter() - t0
    keep = intervals.btyd_spend_interval(model, X, level, settings.intervals.draws, seed, zero_inclusion=True)[2]
    table = intervals.coverage_by_decile(predicted, y, low, high, zero_inclusion=keep)
    return table, _attainable(table, _zero_share(predicted, y), level), seconds


# --- simulated ---------------------------------------------------------------------------------------------------


def simulated_clv(args, settings: Settings, sim) -> tuple[dict, list[str], dict]:
    cfg = settings.clv.model_copy(deep=True)
    cfg.tuning.trials = args.trials
    cfg.test_as_of = SIM_TEST_AS_OF.date()
    level = settings.intervals.level
    splits = clv_ml.clv_datasets(sim.tables(), cfg, settings.features)
    train, valid, test = splits["train"], splits["valid"], splits["test"]
    t0 = time.perf_counter()
    tuning = clv_ml.tune_clv(train, valid, cfg)
    ml = clv_ml.model_from_settings(cfg, tuning.best_params).fit(train.X, train.y, valid.X, valid.y)
    # As crmscore train clv: calibrated on a seeded half of the test customers, measured on the other half.
    calibrate = intervals.calibration_half(len(test.y), settings.intervals.seed)
    intervals.calibrate_ml_clv(ml, test.X[calibrate], test.y[calibrate], settings.intervals.conformal_bins)
    ml_seconds = time.perf_counter() - t0
    y = test.y.to_numpy()[~calibrate]
    predicted = ml.predict(test.X[~calibrate])
    t0 = time.perf_counter()
    low, high = ml.conformal_.interval(predicted, level)
    ml_interval_seconds = time.perf_counter() - t0
    ml_table = intervals.coverage_by_decile(
        predicted, y, low, high, zero_inclusion=ml.conformal_.zero_inclusion(predicted, level)
    )
    ml_floor = _attainable(ml_table, _zero_share(predicted, y), level)
    against_mapie, mapie_lines = _mapie_compare.compare(
        ml, train, test.X[calibrate], test.y[calibrate], test.X[~calibrate], y, level, args.seed
    )
    # The alternative: calibrated on the validation customers (earlier as-of dates, stacked).
    earlier = intervals.fit_conformal_spend(ml.predict(valid.X), valid.y.to_numpy(), settings.intervals.conformal_bins)
    earlier_table = intervals.coverage_by_decile(predicted, y, *earlier.interval(predicted, level))
    earlier_sum = _summary(earlier_table, ml_floor, level)

    btyd_model = BtydClv(penalizer=cfg.penalizer, time_unit=cfg.time_unit, horizon_days=cfg.horizon_days).fit(test.X)
    buyers = test.X["repeat_purchase_days"].notna().to_numpy()
    X_b = test.X.loc[buyers]
    y_b = test.y.to_numpy()[buyers]
    b_table, b_floor, btyd_interval_seconds = _btyd_coverage(btyd_model, X_b, y_b, settings, args.seed)
    ml_sum, b_sum = _summary(ml_table, ml_floor, level), _summary(b_table, b_floor, level)
    lines = [
        f"### Simulated: {args.customers:,} customers (seed {args.seed}), CLV",
        "",
        f"Test as of {SIM_TEST_AS_OF.date()}: {len(test):,} customers, interval of the spend each realized in the "
        f"next {cfg.horizon_days} days (the simulated future). ML: tuned with {tuning.trials} trials and fitted as "
        f"`crmscore train clv` does, its conformal intervals calibrated on a seeded half of the test customers "
        f"({int(calibrate.sum()):,}) and measured on the other {len(y):,} ({ml_seconds:.0f} s; intervals "
        f"{ml_interval_seconds:.2f} s). Where more than {level:.0%} of a decile's customers buy nothing, the "
        "shortest interval holding the level is [0, 0], which holds their whole share: *attainable* is that "
        "coverage (the level elsewhere).",
        "",
        f"**LightGBM + split-conformal by predicted decile**: coverage {ml_sum['coverage']:.3f} (attainable "
        f"{ml_sum['attainable']:.3f}), worst |decile − {level:.0%}| where an interval can hold {level:.0%}: "
        f"{ml_sum['worst_gap_holdable']:.3f}; worst |decile − attainable| {ml_sum['worst_gap_vs_attainable']:.3f}; "
        f"mean width {ml_sum['mean_width']:.1f} = {ml_sum['rel_width']:.2f} × mean predicted spend. "
        f"{RANDOMIZED} here: {ml_sum['randomized']:.3f} overall, worst |decile − {level:.0%}| "
        f"{ml_sum['worst_gap_randomized']:.3f}.",
        "",
        *_decile_lines(ml_table, level, ml_floor),
        "",
        *mapie_lines,
        "",
        f"Calibrated instead on the {len(valid):,} validation rows (held-out customers at the earlier training "
        f"as-of dates): coverage {earlier_sum['coverage']:.3f}, worst gap where holdable "
        f"{earlier_sum['worst_gap_holdable']:.3f} (by decile: "
        + ", ".join(f"{c:.3f}" for c in earlier_table["coverage"].drop("overall"))
        + "): the spread of spend around the prediction moves between as-of dates, so the latest window "
        "calibrates the intervals the scoring will use.",
        "",
        f"**BG/NBD × Gamma-Gamma** ({len(X_b):,} buyers, {settings.intervals.draws} draws, "
        f"{btyd_interval_seconds:.1f} s): coverage {b_sum['coverage']:.3f} (attainable {b_sum['attainable']:.3f}), "
        f"worst gap where holdable {b_sum['worst_gap_holdable']:.3f}, worst |decile − attainable| "
        f"{b_sum['worst_gap_vs_attainable']:.3f}, mean width {b_sum['mean_width']:.1f} "
        f"({b_sum['rel_width']:.2f} × mean predicted); randomized coverage {b_sum['randomized']:.3f}, worst "
        f"|decile − {level:.0%}| {b_sum['worst_gap_randomized']:.3f}. The simulator is not a BG/NBD process, so "
        "this is the model's honest miss, not a calibration.",
        "",
        *_decile_lines(b_table, level, b_floor),
    ]
    per_customer = {
        "seconds_ml_interval_per_1k": 1000 * ml_interval_seconds / len(test),
        "seconds_btyd_interval_per_1k": 1000 * btyd_interval_seconds / len(X_b),
    }
    return {"ml": ml_sum, "btyd": b_sum, "mapie": against_mapie, **per_customer}, lines, {"test": test, "ml": ml}


def _simulation(settings: Settings, customers: int, seed: int):
    sim_cfg = settings.simulate
    return simulate_crm(
        customers=customers,
        seed=seed,
        start_date=sim_cfg.start_date,
        end_date=sim_cfg.end_date,
        truth_as_of=SIM_TEST_AS_OF.date(),
        horizons_days=(settings.clv.horizon_days, settings.churn.horizon_days),
    )


def simulated_churn(args, settings: Settings, sim) -> tuple[dict, list[str]]:
    cfg = settings.churn.model_copy(deep=True)
    cfg.test_as_of = SIM_TEST_AS_OF.date()
    level, iv = settings.intervals.level, settings.intervals
    variants = {
        f"default: calibrators + {iv.churn_spread_folds} spread boosters": (iv.churn_spread_folds, True),
        "calibrators only (`churn_spread_folds: 0`)": (0, True),
        f"cross-fitted ({cfg.cv_folds} fold models, calibrated out of fold)": (0, False),
    }
    per_seed: dict[str, list[dict]] = {name: [] for name in variants}
    default_table: list[str] = []
    seeds = [args.seed] + [s for s in args.churn_seeds if s != args.seed]
    for seed in seeds:
        world = sim if seed == args.seed else _simulation(settings, args.customers, seed)
        _, splits = churn.churn_datasets(world.tables(), cfg, settings.features)
        train, valid, test = splits["train"], splits["valid"], splits["test"]
        truth = world.truth.loc[world.truth["horizon_days"] == cfg.horizon_days].set_index("customer_id")
        true_p = truth["p_no_purchase"].reindex(test.X.index).to_numpy()
        for name, (spread, with_valid) in variants.items():
            t0 = time.perf_counter()
            model = churn.model_from_settings(
                cfg, calibration_bootstraps=iv.calibration_bootstraps, spread_folds=spread
            )
            model.fit(train.X, train.y, *((valid.X, valid.y) if with_valid else ()))
            fit_seconds = time.perf_counter() - t0
            p, low, high = intervals.churn_interval(model, test.X, level)
            rows, table = _churn_groups(p, low, high, test.y.to_numpy(), true_p, 10, level)
            fifty, _ = _churn_groups(p, low, high, test.y.to_numpy(), true_p, 50, level)
            per_seed[name].append(
                {
                    "fit_seconds": fit_seconds,
                    "width": float(np.mean(high - low)),
                    "deciles_realized_inside": int(rows["realized_in"].sum()),
                    "deciles_true_inside": int(rows["true_in"].sum()),
                    "groups50_realized_inside": float(fifty["realized_in"].mean()),
                    "groups50_true_inside": float(fifty["true_in"].mean()),
                }
            )
            default_table = default_table or table
        print(json.dumps({"churn_seed": seed, "so_far": per_seed}), flush=True)
    # Counts of deciles add up over the worlds; seconds, widths and shares of groups are their means.
    results = {
        name: {key: (sum if key.startswith("deciles") else np.mean)([r[key] for r in runs]) for key in runs[0]}
        for name, runs in per_seed.items()
    }
    deciles = 10 * len(seeds)
    lines = [
        "### Simulated: churn probability intervals",
        "",
        f"Churn model (default parameters, {iv.calibration_bootstraps} bootstrapped calibrators) trained on the "
        "training rows and calibrated on the rows of the later validation as-of date, as `crmscore train churn` "
        f"does; test as of {SIM_TEST_AS_OF.date()}; {len(seeds)} simulated worlds of {args.customers:,} customers "
        f"(seeds {', '.join(map(str, seeds))}; the decile table below is seed {args.seed}'s). Customers "
        "are grouped by predicted probability (10 deciles, and 50 groups of 2 %). Per group "
        "(`intervals.churn_rate_interval`, from the scored columns only): the *rate* interval (the mean of the "
        "customers' bounds) is held against the simulator's true mean churn probability, and the *realized* "
        "interval (the rate's uncertainty plus the outcome's own noise, Σp(1 − p)/n²) against the share that "
        f"actually churned. At {level:.0%} about {level:.0%} of groups should be inside, not all: a check that "
        "every decile is inside asks for intervals too wide.",
        "",
        "| intervals | fit s (mean) | mean width | realized inside, deciles | true inside, deciles | "
        "realized inside, 50 groups | true inside, 50 groups |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {n} | {r['fit_seconds']:.1f} | {r['width']:.4f} | {r['deciles_realized_inside']} of {deciles} | "
            f"{r['deciles_true_inside']} of {deciles} | {r['groups50_realized_inside']:.0%} | "
            f"{r['groups50_true_inside']:.0%} |"
            for n, r in results.items()
        ],
        "",
        "The default model by decile:",
        "",
        *default_table,
    ]
    return results, lines


def _churn_groups(p, low, high, y, true_p, groups: int, level: float) -> tuple[pd.DataFrame, list[str]]:
    """Per group of predicted probability: :func:`crmscore.intervals.churn_rate_interval`, the realized and the
    true churn rate, and whether each is inside its interval."""
    group = pd.qcut(pd.Series(p).rank(method="first"), groups, labels=False).to_numpy() + 1
    rows = intervals.churn_rate_interval(p, low, high, group, level)
    rows["realized"] = pd.Series(y).groupby(group).mean()
    rows["true"] = pd.Series(true_p).groupby(group).mean()
    rows["realized_in"] = (rows["realized"] >= rows["realized_low"]) & (rows["realized"] <= rows["realized_high"])
    rows["true_in"] = (rows["true"] >= rows["rate_low"]) & (rows["true"] <= rows["rate_high"])
    table = [
        "| decile | mean p | rate low | rate high | true | true inside | realized low | realized high | realized | "
        "realized inside |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *[
            f"| {d} | {r.rate:.4f} | {r.rate_low:.4f} | {r.rate_high:.4f} | {r.true:.4f} | "
            f"{'yes' if r.true_in else 'no'} | {r.realized_low:.4f} | {r.realized_high:.4f} | {r.realized:.4f} | "
            f"{'yes' if r.realized_in else 'no'} |"
            for d, r in rows.iterrows()
        ],
    ]
    return rows, table


def simulated_tiers(settings: Settings, sim, clv_parts: dict) -> tuple[dict, list[str]]:
    test, ml = clv_parts["test"], clv_parts["ml"]
    X = test.X
    scale = fit_tier_scale(X, None, settings.tiers)
    iv = settings.intervals
    t0 = time.perf_counter()
    confidence = intervals.tier_confidence(X, scale, settings.tiers.scorecard.cutoffs, draws=iv.draws, seed=iv.seed)
    seconds = time.perf_counter() - t0
    _, tier = scale.tiers(X, pd.Series(np.nan, index=X.index), settings.tiers)
    later = build_features(sim.tables(), SIM_TEST_AS_OF + pd.Timedelta(days=365), settings.features).reindex(X.index)
    _, tier_later = scale.tiers(later, pd.Series(np.nan, index=X.index), settings.tiers)
    stayed = tier.astype(str).to_numpy() == tier_later.astype(str).to_numpy()
    bins = pd.cut(confidence, [0, 0.4, 0.6, 0.8, 0.95, 1.0], include_lowest=True)
    check = (
        pd.DataFrame({"bin": bins, "confidence": confidence, "stayed": stayed})
        .groupby("bin", observed=True)
        .agg(customers=("stayed", "size"), mean_confidence=("confidence", "mean"), stayed=("stayed", "mean"))
    )
    borderline = pd.Series(confidence < iv.borderline_below, index=X.index)
    table = intervals.borderline_summary(tier, borderline, pd.Series(ml.predict(X), index=X.index))
    lines = [
        "### Simulated: tier confidence",
        "",
        f"Scorecard tiers of the {len(X):,} test customers; confidence from {iv.draws} redrawn years "
        f"({seconds:.1f} s). "
        f"Borderline (confidence < {iv.borderline_below}): {int(borderline.sum()):,} customers "
        f"({borderline.mean():.1%}). Check: the same customers' tiers one year later on the same scale — the "
        "confidence assumes unchanged rates, while real customers also drift and drop out, so the realized "
        "share staying should be at or below it, and rise with it.",
        "",
        "| confidence | customers | mean confidence | share in the same tier a year later |",
        "|---|---|---|---|",
        *[f"| {b} | {int(r.customers):,} | {r.mean_confidence:.3f} | {r.stayed:.3f} |" for b, r in check.iterrows()],
        "",
        "| tier | customers | borderline | borderline share | their share of the tier's CLV | of all CLV |",
        "|---|---|---|---|---|---|",
        *[
            f"| {t} | {int(r.customers):,} | {int(r.borderline):,} | {r.borderline_share:.1%} | "
            f"{r.borderline_clv_share:.1%} | {r.share_of_all_clv:.1%} |"
            for t, r in table.iterrows()
        ],
    ]
    return {"borderline_share": float(borderline.mean()), "seconds": seconds}, lines


# --- CDNOW -----------------------------------------------------------------------------------------------------------


def cdnow(args, settings: Settings) -> tuple[dict, list[str]]:
    from sklearn.model_selection import KFold

    level = settings.intervals.level
    tables = public.load_cdnow()
    X = build_features(tables, CDNOW_AS_OF, settings.features)
    X = X.loc[X["repeat_purchase_days"].notna()]
    y = future_value(tables["transactions"], X.index, CDNOW_AS_OF, CDNOW_HOLDOUT_DAYS)["future_spend"].to_numpy()
    btyd_model = BtydClv(penalizer=settings.clv.penalizer, time_unit="W", horizon_days=CDNOW_HOLDOUT_DAYS).fit(X)
    b_pred = btyd_model.predict(X)
    b_table, b_floor, b_seconds = _btyd_coverage(btyd_model, X, y, settings, args.seed)

    ml_pred, ml_low, ml_high, ml_keep = (np.zeros(len(X)) for _ in range(4))
    rng = np.random.default_rng(args.seed)
    for train_idx, test_idx in KFold(5, shuffle=True, random_state=args.seed).split(X):
        calibrate = rng.random(len(train_idx)) < 0.25
        fit_idx, cal_idx = train_idx[~calibrate], train_idx[calibrate]
        model = clv_ml.ClvModel(seed=args.seed).fit(X.iloc[fit_idx], y[fit_idx])
        intervals.calibrate_ml_clv(model, X.iloc[cal_idx], y[cal_idx], settings.intervals.conformal_bins)
        ml_pred[test_idx] = model.predict(X.iloc[test_idx])
        ml_low[test_idx], ml_high[test_idx] = model.conformal_.interval(ml_pred[test_idx], level)
        ml_keep[test_idx] = model.conformal_.zero_inclusion(ml_pred[test_idx], level)
    ml_table = intervals.coverage_by_decile(ml_pred, y, ml_low, ml_high, zero_inclusion=ml_keep)
    ml_floor = _attainable(ml_table, _zero_share(ml_pred, y), level)
    b_sum, ml_sum = _summary(b_table, b_floor, level), _summary(ml_table, ml_floor, level)
    under = b_pred.sum() / y.sum() - 1
    lines = [
        f"### CDNOW: the whole cohort ({len(X):,} customers with a purchase by {CDNOW_AS_OF.date()})",
        "",
        f"Holdout spend in the next {CDNOW_HOLDOUT_DAYS} days (weeks 40–78). BG/NBD × Gamma-Gamma predicts "
        f"{under:+.1%} of the realized holdout spend in total.",
        "",
        f"**BG/NBD × Gamma-Gamma** ({settings.intervals.draws} draws, {b_seconds:.1f} s): coverage "
        f"{b_sum['coverage']:.3f} (attainable {b_sum['attainable']:.3f}), worst gap where holdable "
        f"{b_sum['worst_gap_holdable']:.3f}, mean width {b_sum['mean_width']:.1f}, randomized coverage "
        f"{b_sum['randomized']:.3f} (worst decile gap {b_sum['worst_gap_randomized']:.3f}). Reported as the "
        "model gives it: the published model misses this holdout, and its intervals are not widened to hide that.",
        "",
        *_decile_lines(b_table, level, b_floor),
        "",
        f"**LightGBM + split-conformal**, cross-fitted over customers (5 folds; each fold's conformal "
        f"calibration on a quarter of its training customers): coverage {ml_sum['coverage']:.3f} (attainable "
        f"{ml_sum['attainable']:.3f}), worst gap where holdable {ml_sum['worst_gap_holdable']:.3f}, mean width "
        f"{ml_sum['mean_width']:.1f}, randomized coverage {ml_sum['randomized']:.3f} (worst decile gap "
        f"{ml_sum['worst_gap_randomized']:.3f}). Calibrated on customers of the same window, so it knows the "
        "holdout's level; the simulated figures above are the out-of-time test.",
        "",
        *_decile_lines(ml_table, level, ml_floor),
    ]
    return {"btyd": b_sum, "ml": ml_sum}, lines


def _parameter_only_purchases(model: BtydClv, summary: pd.DataFrame, t: float, draws: int, seed: int, level: float):
    """Per customer, quantiles of E[purchases in t] over parameter draws (what a posterior of the mean gives)."""
    from scipy import special

    tx = model.transaction_model_
    z = special.ndtri(intervals._uniforms(draws, 4, seed))
    theta = intervals._parameter_draws(tx, z)
    values = np.empty((len(summary), draws))
    saved = dict(tx.params_)
    try:
        for d in range(draws):
            tx.params_ = {name: float(theta[name][d]) for name in tx._names}
            values[:, d] = tx.conditional_expected_purchases(t, summary)
    finally:
        tx.params_ = saved
    alpha = 1 - level
    return np.quantile(values, alpha / 2, axis=1), np.quantile(values, 1 - alpha / 2, axis=1)


def pymc_comparison(args, settings: Settings) -> tuple[dict, list[str]]:
    level = settings.intervals.level
    tables = public.load_cdnow(sample=True)
    summary = btyd.rfm_summary(tables["transactions"], CDNOW_AS_OF, "W", holdout_end=CDNOW_HOLDOUT_END)
    actual = summary["frequency_holdout"].to_numpy(dtype=float)
    weeks = float(summary["duration_holdout"].iloc[0])
    X = build_features(tables, CDNOW_AS_OF, settings.features).reindex(summary.index)
    t0 = time.perf_counter()
    ours = BtydClv(time_unit="W", horizon_days=int(round(weeks * 7))).fit(X)
    fit_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    low, high = intervals.btyd_spend_interval(ours, X, level, settings.intervals.draws, args.seed, purchases=True)
    interval_seconds = time.perf_counter() - t0
    p_low, p_high = _parameter_only_purchases(ours, summary, weeks, settings.intervals.draws, args.seed, level)
    # What the model itself gives its predictive intervals (counts are whole numbers: at least the level).
    draws = np.concatenate(
        list(intervals._btyd_futures(ours, summary, weeks, settings.intervals.draws, args.seed, count_only=True))
    )
    promised = float(np.mean((draws >= low[:, None]) & (draws <= high[:, None])))
    rows = [
        ("crmscore BG/NBD: predictive (parameters + purchase process)", low, high, fit_seconds, interval_seconds),
        ("crmscore BG/NBD: parameter draws only (interval of the mean)", p_low, p_high, fit_seconds, None),
    ]
    note = ""
    pymc = _run_pymc(args, summary, weeks, level)
    if isinstance(pymc, str):
        note = pymc
    else:
        frame, info = pymc
        frame = frame.set_index("customer_id").reindex(summary.index)
        rows.append(
            (
                f"pymc-marketing {info['version']} BG/NBD: posterior of expected purchases (NUTS)",
                frame["low"].to_numpy(),
                frame["high"].to_numpy(),
                info["fit_seconds"],
                info["predict_seconds"],
            )
        )
        note = (
            f"pymc-marketing posterior means r = {info['params'].get('r', float('nan')):.3f}, alpha = "
            f"{info['params'].get('alpha', float('nan')):.2f}, a = {info['params'].get('a', float('nan')):.3f}, "
            f"b = {info['params'].get('b', float('nan')):.3f}; ours (maximum likelihood) "
            + ", ".join(f"{k} = {v:.3f}" for k, v in ours.transaction_model_.params_.items())
            + "."
        )
    table = [
        "| intervals of holdout purchases | coverage | mean width | fit s | intervals s |",
        "|---|---|---|---|---|",
    ]
    result = {}
    for name, lo, hi, fit_s, int_s in rows:
        coverage = float(np.mean((actual >= lo) & (actual <= hi)))
        result[name] = coverage
        table.append(
            f"| {name} | {coverage:.3f} | {np.mean(hi - lo):.3f} | {fit_s:.2f} | "
            f"{'' if int_s is None else f'{int_s:.2f}'} |"
        )
    lines = [
        f"### pymc-marketing on the CDNOW sample ({len(summary):,} customers)",
        "",
        f"Per-customer {level:.0%} intervals of the number of purchases in holdout weeks 40–78 ({weeks:.0f} weeks), "
        "against the actual number. pymc-marketing's `expected_purchases` gives the posterior of each customer's "
        "*expected* purchases — parameter uncertainty only — which is an interval for a mean, not for what the "
        "customer does; our parameter-only row is the like-for-like one, the predictive row adds the purchase "
        f"process and is the one meant to cover (the model's own probability of its predictive intervals: "
        f"{promised:.3f}; purchases are whole numbers, so an interval holds at least the level).",
        "",
        *table,
        "",
        note,
    ]
    return result, lines


def _run_pymc(args, summary: pd.DataFrame, weeks: float, level: float):
    """pymc-marketing's intervals from a subprocess in ``--pymc-python``; a sentence saying why not, on failure."""
    python = args.pymc_python
    if not python:
        return "pymc-marketing not compared: no --pymc-python interpreter given."
    with tempfile.TemporaryDirectory() as folder:
        data, out = Path(folder) / "summary.csv", Path(folder) / "out.csv"
        summary.reset_index()[["customer_id", "frequency", "recency", "T"]].to_csv(data, index=False)
        script = Path(__file__).parent / "pymc" / "bgnbd_intervals.py"
        command = [
            python,
            str(script),
            str(data),
            str(weeks),
            str(out),
            "--level",
            str(level),
            "--seed",
            str(args.seed),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            return f"pymc-marketing not compared: its run failed ({done.stderr.strip().splitlines()[-1:]})."
        info = json.loads(done.stdout.strip().splitlines()[-1])
        return pd.read_csv(out), info


# --- scale ----------------------------------------------------------------------------------------------------


def _children_cpu() -> float:
    """User + system CPU seconds of this process's finished children and theirs (the scoring's workers)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def scale(args) -> tuple[dict, list[str]]:
    """``crmscore score`` at 1M customers, intervals off and on, in a workspace trained with this code."""
    workspace = Path(args.workspace)
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    input_dir = Path(args.scoring_input)
    as_of = args.as_of
    runs = {}
    for name, enabled, pin in (("off", False, None), ("on", True, None), ("on, BTYD CLV", True, args.btyd_version)):
        if name == "on, BTYD CLV" and pin is None:
            continue
        params.setdefault("intervals", {})["enabled"] = enabled
        file = workspace / f"params_intervals_{'on' if enabled else 'off'}.yaml"
        file.write_text(yaml.safe_dump(params, sort_keys=False))
        out = workspace / f"scores_intervals_{name.replace(' ', '_').replace(',', '')}"
        shutil.rmtree(out, ignore_errors=True)
        command = [
            sys.executable,
            "-m",
            "crmscore.cli",
            "score",
            "--as-of",
            as_of,
            "--input",
            str(input_dir),
            "--out",
            str(out),
            "--workers",
            "2",
            "--params",
            str(file),
        ]
        if pin is not None:
            command += ["--model-version", f"clv={pin}"]
        started, cpu_before = time.perf_counter(), _children_cpu()
        subprocess.run(command, check=True, cwd=workspace, env=os.environ.copy(), stdout=subprocess.DEVNULL)
        wall, cpu = time.perf_counter() - started, _children_cpu() - cpu_before
        manifest = json.loads(next(out.glob("as_of=*")).joinpath("manifest.json").read_text())
        runs[name] = {
            "cpu": cpu,
            "wall": wall,
            "scoring": manifest["seconds"]["scoring"],
            "customers": manifest["scored"],
            "intervals_in_workers": manifest["seconds"].get("intervals", 0.0),
            "tiers": manifest["seconds"]["tiers_and_write"],
        }
    base, base_cpu = runs["off"]["scoring"], runs["off"]["cpu"]
    lines = [
        f"### Scale: {runs['off']['customers']:,} customers, 2 workers",
        "",
        "`crmscore score` in a workspace whose churn and CLV models were trained with this code (so they carry "
        "the bootstrapped calibrators, the churn spread boosters and the conformal calibration); the same input "
        "scored with `intervals.enabled` false and true. *scoring s* is the manifest's scoring time (wall), "
        "*CPU s* the user + system "
        "seconds of the command and its workers — on a machine shared with other work the CPU seconds are the "
        "steadier measure of what the intervals add. *tiers and write s* holds the tier confidence, computed "
        "after all chunks; *CLV intervals in workers s* sums the CLV-interval seconds over the chunks.",
        "",
        "| intervals | scoring s | added | CPU s | CPU added | tiers and write s | CLV intervals in workers s |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {n} | {r['scoring']:.1f} | {r['scoring'] / base - 1:+.1%} | {r['cpu']:.1f} | "
            f"{r['cpu'] / base_cpu - 1:+.1%} | {r['tiers']:.1f} | {r['intervals_in_workers']:.1f} |"
            for n, r in runs.items()
        ],
    ]
    result = {
        "seconds_1m": runs["on"]["scoring"],
        "added": runs["on"]["scoring"] / base - 1,
        "cpu_added": runs["on"]["cpu"] / base_cpu - 1,
        "runs": runs,
    }
    return result, lines


def main() -> None:
    settings = Settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=settings.simulate.seed)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument(
        "--churn-seeds",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[7, 3],
        help="more simulated worlds for the churn intervals, comma-separated (besides --seed)",
    )
    parser.add_argument(
        "--pymc-python",
        default=os.environ.get("CRMSCORE_PYMC_PYTHON"),
        help="an interpreter with pymc-marketing (the bench-pymc extra); default $CRMSCORE_PYMC_PYTHON",
    )
    parser.add_argument("--workspace", default=None, help="trained workspace with params.yaml (scale part)")
    parser.add_argument("--scoring-input", default=None)
    parser.add_argument("--as-of", default=None)
    parser.add_argument("--btyd-version", default=None, help="registered BTYD CLV version to score with as well")
    parser.add_argument("--skip-scale", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    sim = _simulation(settings, args.customers, args.seed)
    clv_sim, clv_lines, parts = simulated_clv(args, settings, sim)
    print(json.dumps({"simulated_clv": clv_sim}), flush=True)
    churn_sim, churn_lines = simulated_churn(args, settings, sim)
    print(json.dumps({"simulated_churn": churn_sim}), flush=True)
    tier_sim, tier_lines = simulated_tiers(settings, sim, parts)
    cdnow_result, cdnow_lines = cdnow(args, settings)
    print(json.dumps({"cdnow": cdnow_result}), flush=True)
    pymc_result, pymc_lines = pymc_comparison(args, settings)
    print(json.dumps({"pymc": pymc_result}), flush=True)
    scale_result, scale_lines = ({"seconds_1m": None}, ["### Scale", "", "Not run (--skip-scale)."])
    if not args.skip_scale and args.workspace:
        scale_result, scale_lines = scale(args)
    command = "python benchmarks/clv_intervals.py " + " ".join(sys.argv[1:])
    body = [
        "# CLV, churn and tier intervals",
        "",
        f"`{command.strip()}` — {time.perf_counter() - started:.0f} s, peak memory {peak_rss_gb():.2f} GB. {machine()}",
        "",
        *clv_lines,
        "",
        *churn_lines,
        "",
        *tier_lines,
        "",
        *cdnow_lines,
        "",
        *pymc_lines,
        "",
        *scale_lines,
        "",
    ]
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text("\n".join(body))
    print(f"report written to {REPORT}")
    ml = clv_sim["ml"]
    print(
        json.dumps(
            {
                "coverage_sim": round(ml["coverage"], 4),
                "worst_decile_gap_sim": round(ml["worst_gap_holdable"], 4),
                "coverage_cdnow_ml": round(cdnow_result["ml"]["coverage"], 4),
                "coverage_cdnow_btyd": round(cdnow_result["btyd"]["coverage"], 4),
                "mean_rel_width_sim": round(ml["rel_width"], 4),
                "seconds_1m": None if scale_result["seconds_1m"] is None else round(scale_result["seconds_1m"], 1),
                "coverage_sim_randomized": round(ml["randomized"], 4),
                "worst_decile_gap_sim_randomized": round(ml["worst_gap_randomized"], 4),
                "coverage_cdnow_ml_randomized": round(cdnow_result["ml"]["randomized"], 4),
            }
        )
    )


if __name__ == "__main__":
    main()
