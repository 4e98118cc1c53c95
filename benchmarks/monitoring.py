"""Track record on a drift scenario: two years of quarterly scorings with a shock in the middle.

The simulator writes four years of history (20,000 customers) in which, from 2025-10-31 on, a competitor
raises the weekly dropout probability of the north region × 8, while newly acquired customers drift
toward month-to-month contracts from 2024-11-01 on. The churn, CLV and segment models are trained on the
history as it stood on 2024-10-31 and score every quarter from then to the end (9 scorings). Then
``crmscore monitor`` judges every scoring against the data, and the benchmark checks it against the
simulator's own record of what happened (``SimulatedData.outcomes``):

* the realized AUC and churn rate of each closed scoring against the same figures computed directly from
  the simulator's outcomes: each must lie inside the monitor's bootstrap interval;
* the estimated (CBPE) AUC against the realized AUC on the scorings whose horizon closed before the
  shock (goal: within 0.02);
* the calibration flag at the first scoring whose horizon closes after the shock, and the drifted features;
* where ``nannyml`` installs (in a virtual environment of its own: it pins LightGBM below 4.6, under the
  project's version), its CBPE estimate of the same scorings beside ours.

The last line printed is the JSON summary: ``scorings``, ``estimate_abs_error_auc_before_shock``,
``shock_flagged_at_first_closed_scoring``, ``seconds``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _report import finish, machine
from sklearn.metrics import roc_auc_score

from crmscore.config import Settings
from crmscore.data.simulate import Shift, Shock, simulate_crm
from crmscore.io import write_parquet

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "reports" / "benchmarks" / "monitoring.md"
NANNYML_VENV = ROOT / ".venv-nannyml"
T0 = pd.Timestamp("2024-10-31")
SHOCK = dt.date(2025, 10, 31)
MULTIPLIER = 8.0  # a competitor's entry: the north region's weekly dropout probability × 8
END = dt.date(2026, 10, 31)


def _truncated(tables: dict[str, pd.DataFrame], day: pd.Timestamp, folder: Path) -> None:
    """The tables as they stood on ``day``: what a model trained then could know."""
    folder.mkdir(parents=True, exist_ok=True)
    customers = tables["customers"]
    write_parquet(customers.loc[customers["signup_date"] <= day], folder / "customers.parquet")
    for name in ("transactions", "interactions"):
        write_parquet(tables[name].loc[tables[name]["date"] <= day], folder / f"{name}.parquet")
    payments = tables["payments"].loc[tables["payments"]["due_date"] <= day].copy()
    later = payments["paid_date"] > day
    payments.loc[later, ["paid_date", "amount_paid"]] = [pd.NaT, np.nan]
    write_parquet(payments, folder / "payments.parquet")


def _settings(work: Path, quick: bool) -> Settings:
    trials = 3 if quick else 10
    return Settings(
        paths={
            "models_dir": str(work / "models"),
            "reports_dir": str(work / "reports"),
            "simulated_dir": str(work / "sim"),
        },
        churn={"tuning": {"trials": trials, "timeout_seconds": 300}},
        clv={"model": "ml", "horizon_days": 180, "tuning": {"trials": trials, "timeout_seconds": 300}},
        scoring={"out_dir": str(work / "scores")},
        monitoring={"out_dir": str(work / "monitoring")},
    )


def _rows(perf: pd.DataFrame, metric: str, kind: str) -> pd.DataFrame:
    mine = perf.loc[(perf["model"] == "churn") & (perf["metric"] == metric) & (perf["kind"] == kind)]
    return mine.set_index("as_of")


def _truth_check(perf: pd.DataFrame, data, scores_dir: Path, horizon: int) -> pd.DataFrame:
    """Per closed scoring: AUC and churn rate from the simulator's outcomes against the monitor's intervals."""
    realized_auc, realized_rate = _rows(perf, "roc_auc", "realized"), _rows(perf, "churn_rate", "realized")
    rows = []
    for as_of, auc in realized_auc.iterrows():
        scores = pd.read_parquet(
            scores_dir / f"as_of={as_of.date()}" / "scores.parquet", columns=["customer_id", "churn_probability"]
        )
        truth = data.outcomes(as_of, horizon).set_index("customer_id").reindex(scores["customer_id"])
        y, p = truth["no_purchase"].to_numpy(), scores["churn_probability"].to_numpy()
        truth_auc, truth_rate = roc_auc_score(y, p), float(y.mean())
        rate = realized_rate.loc[as_of]
        rows.append(
            {
                "as_of": as_of.date(),
                "truth_auc": truth_auc,
                "monitor_auc": auc["value"],
                "auc_interval": (auc["lower"], auc["upper"]),
                "auc_inside": auc["lower"] <= truth_auc <= auc["upper"],
                "truth_rate": truth_rate,
                "monitor_rate": rate["value"],
                "rate_inside": rate["lower"] <= truth_rate <= rate["upper"],
            }
        )
    return pd.DataFrame(rows)


_NANNYML_SCRIPT = """
import json, sys, warnings
warnings.filterwarnings("ignore")
import pandas as pd, nannyml as nml
frames = pd.read_parquet(sys.argv[1])
reference = frames.loc[frames["role"] == "reference"]
out = {}
for as_of, part in frames.loc[frames["role"] == "analysis"].groupby("as_of"):
    est = nml.CBPE(y_pred_proba="p", y_pred="pred", y_true="y", problem_type="classification_binary",
                   metrics=["roc_auc"], chunk_number=1)
    est.fit(reference)
    result = est.estimate(part.drop(columns=["y"])).to_df()
    out[str(pd.Timestamp(as_of).date())] = float(result[("roc_auc", "value")].iloc[-1])
print(json.dumps(out))
"""


def _nannyml(perf: pd.DataFrame, scores_dir: Path, data, horizon: int) -> tuple[dict[str, float] | None, str]:
    """NannyML's CBPE AUC per scoring (reference: the first scoring with its outcomes), or why there is none."""
    python = NANNYML_VENV / "bin" / "python"
    if not python.exists():
        made = subprocess.run([sys.executable, "-m", "venv", str(NANNYML_VENV)], capture_output=True, text=True)
        pip = [str(NANNYML_VENV / "bin" / "pip"), "install", "--quiet", "nannyml", "statsmodels"]
        done = subprocess.run(pip, capture_output=True, text=True) if made.returncode == 0 else made
        if done.returncode != 0:
            shutil.rmtree(NANNYML_VENV, ignore_errors=True)
            return None, "nannyml did not install: " + (done.stderr.strip().splitlines() or ["?"])[-1]
    dates = sorted(perf["as_of"].unique())
    parts = []
    for k, as_of in enumerate(dates):
        scores = pd.read_parquet(scores_dir / f"as_of={pd.Timestamp(as_of).date()}" / "scores.parquet")
        p = scores["churn_probability"].to_numpy()
        y = np.full(len(p), np.nan)
        if k == 0:
            truth = data.outcomes(as_of, horizon).set_index("customer_id").reindex(scores["customer_id"])
            y = truth["no_purchase"].to_numpy(dtype=float)
        role = "reference" if k == 0 else "analysis"
        parts.append(pd.DataFrame({"as_of": as_of, "p": p, "pred": (p >= 0.5).astype(int), "y": y, "role": role}))
        if k == 0:  # the first scoring is also analysed, as every scoring is
            parts.append(parts[-1].assign(role="analysis"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scorings.parquet"
        pd.concat(parts, ignore_index=True).to_parquet(path)
        done = subprocess.run([str(python), "-c", _NANNYML_SCRIPT, str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        return None, "nannyml failed: " + (done.stderr.strip().splitlines() or ["?"])[-1]
    version = subprocess.run(
        [str(python), "-c", "import nannyml; print(nannyml.__version__)"], capture_output=True, text=True
    )
    return json.loads(
        done.stdout.strip().splitlines()[-1]
    ), f"nannyml {version.stdout.strip()} (own virtual environment)"


def _findings(perf: pd.DataFrame, horizon: int) -> dict:
    """The estimate's error before the shock, the calibration flags at the first scoring after it and before,
    and the first scoring flagging each drifted feature."""
    estimated, realized = _rows(perf, "roc_auc", "estimated"), _rows(perf, "roc_auc", "realized")
    shock = pd.Timestamp(SHOCK)
    before = [d for d in realized.index if d + pd.Timedelta(days=horizon) <= shock]
    after = [d for d in realized.index if d + pd.Timedelta(days=horizon) > shock]
    churn = perf.loc[(perf["model"] == "churn") & perf["metric"].str.startswith("calibration_gap")]
    flags = churn.loc[churn["flag"]]
    first_after = after[0] if after else None
    drifted = perf.loc[perf["metric"].str.startswith("psi[") & perf["flag"]]
    return {
        "before": before,
        "errors": (realized.loc[before, "value"] - estimated.loc[before, "value"]).abs(),
        "first_after": first_after.date() if first_after is not None else "-",
        "flags_after": flags.loc[flags["as_of"] == first_after, "metric"].tolist(),
        "false_alarms": int(flags.loc[flags["as_of"].isin(before), "as_of"].nunique()),
        "drift": drifted.groupby("metric")["as_of"].min().sort_values(),
        "north": _rows(perf, "calibration_gap[region=north]", "realized"),
    }


def _table(perf: pd.DataFrame, theirs: dict[str, float] | None) -> list[str]:
    estimated, realized = _rows(perf, "roc_auc", "estimated"), _rows(perf, "roc_auc", "realized")
    rates, predicted = _rows(perf, "churn_rate", "realized"), _rows(perf, "churn_rate", "estimated")
    churn = perf.loc[(perf["model"] == "churn") & perf["metric"].str.startswith("calibration_gap") & perf["flag"]]
    lines = [
        "| scoring | AUC realized [95 % interval] | AUC estimated | NannyML CBPE | churn rate realized | estimated "
        "| calibration breaks flagged |",
        "|---|---|---|---|---|---|---|",
    ]
    for day in estimated.index:
        closed = day in realized.index
        auc = "open"
        if closed:
            auc = (
                f"{realized.loc[day, 'value']:.3f} [{realized.loc[day, 'lower']:.3f}, {realized.loc[day, 'upper']:.3f}]"
            )
        rate = f"{rates.loc[day, 'value']:.3f}" if closed else "open"
        flags = ", ".join(
            m.removeprefix("calibration_gap").strip("[]") or "overall"
            for m in churn.loc[churn["as_of"] == day, "metric"]
        )
        nml = f"{theirs[str(day.date())]:.3f}" if theirs and str(day.date()) in theirs else "-"
        lines.append(
            f"| {day.date()} | {auc} | {estimated.loc[day, 'value']:.3f} | {nml} | {rate} | "
            f"{predicted.loc[day, 'value']:.3f} | {flags or ('-' if closed else 'open')} |"
        )
    return lines


def _nannyml_line(note: str, theirs: dict[str, float] | None, perf: pd.DataFrame, found: dict) -> str:
    if not theirs:
        return note
    realized = _rows(perf, "roc_auc", "realized")
    errors = [abs(theirs[str(d.date())] - realized.loc[d, "value"]) for d in found["before"] if str(d.date()) in theirs]
    return (
        f"{note}: mean absolute error of its AUC estimate before the shock {np.mean(errors):.4f} against ours "
        f"{found['errors'].mean():.4f} (its reference: the first scoring with its outcomes)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="1,500 customers and small tuning budgets")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--report", type=Path, default=REPORT)
    args = parser.parse_args()
    customers = 1_500 if args.quick else args.customers
    started = time.perf_counter()
    work = args.work or Path(tempfile.mkdtemp(prefix="crmscore-monitoring-"))
    os.chdir(work)
    from crmscore import stages

    data = simulate_crm(
        customers,
        seed=11,
        start_date=dt.date(2022, 11, 1),
        end_date=END,
        truth_as_of=dt.date(2024, 10, 31),
        shock=Shock(SHOCK, MULTIPLIER, region="north"),
        shift=Shift(dt.date(2024, 11, 1), 0.8),
    )
    tables = data.tables()
    for name, frame in tables.items():
        write_parquet(frame, work / "sim" / f"{name}.parquet")
    _truncated(tables, T0, work / "then")
    settings = _settings(work, args.quick)
    t0 = time.perf_counter()
    trained = [
        train(settings, work / "then")
        for train in (stages.train_churn_stage, stages.train_clv_stage, stages.train_segments_stage)
    ]
    train_seconds = time.perf_counter() - t0
    days = pd.date_range(T0, pd.Timestamp(END), freq="3ME")  # every quarter from the training date on
    t0 = time.perf_counter()
    for day in days:
        stages.score_stage(settings, day, work / "sim", progress=False)
    score_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = stages.monitor_stage(settings, work / "sim")
    monitor_seconds = time.perf_counter() - t0
    perf = result.performance
    horizon = settings.churn.horizon_days

    truth = _truth_check(perf, data, work / "scores", horizon)
    found = _findings(perf, horizon)
    theirs, nannyml_note = _nannyml(perf, work / "scores", data, horizon)
    seconds = time.perf_counter() - started
    lines = [
        "# Monitoring: the track record on a drift scenario",
        "",
        f"{machine()} {customers:,} simulated customers, history 2022-11-01 to {END}; the north region's weekly "
        f"dropout probability × {MULTIPLIER:g} from {SHOCK}; new customers drift to month-to-month contracts "
        "from 2024-11-01. "
        f"Models trained on the history up to {T0.date()} (churn, CLV with a 180-day horizon, segments), "
        f"then {len(days)} quarterly scorings to {END}; `crmscore monitor` with 200 bootstrap resamples.",
        "",
        *_table(perf, theirs),
        "",
        f"- Realized figures against the simulator's own outcomes: AUC inside the monitor's 95 % interval at "
        f"{int(truth['auc_inside'].sum())} of {len(truth)} closed scorings, churn rate at "
        f"{int(truth['rate_inside'].sum())} of {len(truth)} (largest AUC difference "
        f"{np.max(np.abs(truth['truth_auc'] - truth['monitor_auc'])):.2e}).",
        f"- Estimated against realized AUC before the shock ({len(found['before'])} scorings): largest error "
        f"{found['errors'].max():.4f}, mean {found['errors'].mean():.4f} (goal: within 0.02).",
        f"- First scoring whose horizon closes after the shock: {found['first_after']}; calibration breaks flagged "
        f"there: {', '.join(found['flags_after']) or 'none'}; scorings before the shock with a calibration flag: "
        f"{found['false_alarms']} of {len(found['before'])}.",
        "- Calibration gap of the north region (realized − estimated churn rate [95 % interval]) per closed scoring: "
        + "; ".join(f"{d.date()} {r.value:+.3f} [{r.lower:+.3f}, {r.upper:+.3f}]" for d, r in found["north"].iterrows())
        + f" (flagged when the whole interval lies beyond ±{settings.monitoring.calibration_tolerance:g}).",
        "- Drifted features (PSI > 0.2 against the first scoring), with the first scoring flagging each: "
        + (", ".join(f"{m[4:-1]} ({pd.Timestamp(d).date()})" for m, d in found["drift"].items()) or "none")
        + ".",
        f"- {_nannyml_line(nannyml_note, theirs, perf, found)}",
        f"- Verdict: {result.verdict}",
        f"- Time: training {train_seconds:.0f} s ("
        + ", ".join(f"{t.model_name} v{t.version}" for t in trained)
        + f"), {len(days)} scorings {score_seconds:.0f} s, monitor {monitor_seconds:.0f} s, total {seconds:.0f} s.",
    ]
    summary = {
        "scorings": len(days),
        "estimate_abs_error_auc_before_shock": round(float(found["errors"].max()), 4) if len(found["errors"]) else None,
        "shock_flagged_at_first_closed_scoring": bool(found["flags_after"]),
        "seconds": round(seconds, 1),
    }
    finish(args.report, lines, summary)


if __name__ == "__main__":
    main()
