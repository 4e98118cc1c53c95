"""Each stage of the main job as one function: read inputs, call the pure code, write outputs.

Stages are what the CLI (``crmscore …``), the thin scripts in ``pipelines/`` and notebooks call.
They take a :class:`~crmscore.config.Settings` and explicit paths, do their file input/output here
(atomically), and return what they produced so callers can report it. The pure computations live in
the modules they call (``data.simulate``, ``data.load``, …).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from crmscore.config import Settings
from crmscore.data.load import LoadedData, write_rejects, write_tables
from crmscore.data.plausibility import check_reject_shares
from crmscore.data.sample import sample_customers
from crmscore.data.simulate import SimulatedData, simulate_crm
from crmscore.data.sql import is_database_url, load_input, resolve_input
from crmscore.io import write_json, write_parquet
from crmscore.tracking import CHURN_MODEL_NAME, CLV_MODEL_NAME, SEGMENTS_MODEL_NAME, registered_estimator

__all__ = [
    "SimulateResult",
    "simulate_stage",
    "validate_stage",
    "RunResult",
    "run_main_job",
    "TrainResult",
    "train_churn_stage",
    "train_clv_stage",
    "train_segments_stage",
    "train_uplift_stage",
    "PlanResult",
    "plan_stage",
    "load_scoring_models",
    "registered_estimator",
    "check_model_inputs",
    "score_stage",
    "input_last_day",
    "EvaluationResult",
    "evaluate_stage",
    "scoring_as_of",
    "data_as_of",
    "CHURN_MODEL_NAME",
    "CLV_MODEL_NAME",
    "SEGMENTS_MODEL_NAME",
]

log = logging.getLogger("crmscore")


@dataclasses.dataclass
class SimulateResult:
    """Where the simulated tables went and how many rows each has."""

    out_dir: Path
    paths: dict[str, Path]
    rows: dict[str, int]
    seconds: float


def simulate_stage(
    settings: Settings,
    out_dir: str | os.PathLike | None = None,
    customers: int | None = None,
    seed: int | None = None,
) -> SimulateResult:
    """Simulate the embedded CRM data and write its tables and ``truth.parquet``.

    ``customers`` and ``seed`` override ``simulate.customers`` / ``simulate.seed``; ``out_dir``
    defaults to ``paths.simulated_dir``. Truth is computed at ``simulate.truth_as_of`` for the churn
    and CLV horizons. ``simulate.campaigns`` add the ``campaigns`` table and, beside ``truth.parquet``,
    ``campaign_truth.parquet`` (each participant's true effect over the churn horizon).
    ``simulate.shock`` and ``simulate.shift`` add a drift scenario when set.
    """
    sim = settings.simulate
    out = Path(out_dir or settings.paths.simulated_dir)
    started = time.perf_counter()
    data: SimulatedData = simulate_crm(
        customers=customers or sim.customers,
        seed=sim.seed if seed is None else seed,
        start_date=sim.start_date,
        end_date=sim.end_date,
        truth_as_of=sim.truth_as_of,
        horizons_days=(settings.churn.horizon_days, settings.clv.horizon_days),
        shock=sim.shock.to_shock(),
        shift=sim.shift.to_shift(),
        campaigns=sim.to_campaigns(),
        campaign_horizon_days=settings.uplift.horizon_days or settings.churn.horizon_days,
        active_days=settings.uplift.active_days,
    )
    paths = write_tables(data.tables(), out, sim.format)
    paths["truth"] = write_parquet(data.truth, out / "truth.parquet")
    rows = {name: len(df) for name, df in data.tables().items()} | {"truth": len(data.truth)}
    if len(data.campaigns):
        paths["campaign_truth"] = write_parquet(data.campaign_truth, out / "campaign_truth.parquet")
        rows["campaign_truth"] = len(data.campaign_truth)
    else:  # campaigns of an earlier run would otherwise be read back as this data's
        for stale in ("campaigns.parquet", "campaigns.csv", "campaign_truth.parquet"):
            (out / stale).unlink(missing_ok=True)
    seconds = time.perf_counter() - started
    log.info("simulated %s customers into %s in %.1f s", f"{rows['customers']:,}", out, seconds)
    if data.scenario.shock or data.scenario.shift:
        log.info("simulated with a drift scenario: %s", data.scenario)
    return SimulateResult(out_dir=out, paths=paths, rows=rows, seconds=seconds)


def validate_stage(
    settings: Settings, input_dir: str | os.PathLike, out_dir: str | os.PathLike, check: bool = True
) -> LoadedData:
    """Load and validate the tables in ``input_dir``; write rejects and ``validation.json`` to ``out_dir``.

    With ``check`` (the default), a table with more than ``data.checks.max_reject_share`` of its rows
    rejected then stops with a one-line :class:`~crmscore.errors.DataError` (the rejects are written first).
    """
    loaded = load_input(input_dir, settings.data)
    write_rejects(loaded, out_dir)
    for report in loaded.reports.values():
        log.info(
            "%s: %s in, %s kept, %s rejected", report.table, report.rows_in, report.rows_kept, report.rows_rejected
        )
        for reason, count in report.warnings.items():
            log.warning("%s: %s rows kept but flagged: %s", report.table, f"{count:,}", reason)
    if check:
        check_reject_shares(loaded.reports, settings.data.checks)
    return loaded


@dataclasses.dataclass
class RunResult:
    """What the main job produced, and which models did not train and why (``failures``: role → reason)."""

    input_dir: Path | str
    validation_dir: Path
    simulated: SimulateResult | None
    loaded: LoadedData
    churn: TrainResult | None = None
    clv: TrainResult | None = None
    segments: TrainResult | None = None
    uplift: TrainResult | None = None
    scores: object | None = None
    plan: object | None = None
    report: object | None = None
    monitoring: object | None = None
    failures: dict[str, str] = dataclasses.field(default_factory=dict)


def _attempt(role: str, failures: dict[str, str], stage, *args, **kwargs):
    """Run one training stage of the main job; a model the data cannot give is recorded, not fatal.

    A problem with the data or the fit (:class:`~crmscore.errors.DataError`, ``FitError``) stops that model
    only: its reason goes to ``failures`` and the job goes on with the others. An unreachable tracking
    store or a wrong setting still stops the job.
    """
    from crmscore.errors import DataError, FitError

    try:
        return stage(*args, **kwargs)
    except (DataError, FitError) as exc:
        failures[role] = str(exc)
        log.warning("%s model not trained: %s", role, exc)
        return None


def run_main_job(settings: Settings, input_dir: str | os.PathLike | None = None) -> RunResult:
    """The main job: simulate when no input is given, validate, train and register the churn, CLV and segment
    models (and the uplift model where the input has a campaigns table; promoting by the rules of
    ``params.yaml``), score every customer as of the data's last day, write the retention plan (with an
    uplift and a CLV champion), and write the model review report (champion against challenger).

    ``input_dir`` (or ``data.input_dir``) points at the user's tables; without either, the embedded
    synthetic data is simulated into ``paths.simulated_dir`` first. Validation results go to
    ``<reports_dir>/validation``. A model the data cannot give (no label, no revenue, a fit the data
    cannot identify) is reported in ``RunResult.failures``; the job goes on with the models that trained
    and scores with them (it stops when neither churn nor CLV trained).
    """
    from crmscore import tracking
    from crmscore.report import report_stage

    tracking.configure(settings.paths.models_dir, settings.tracking.experiment)  # fail fast when unreachable
    simulated = None
    if input_dir is None and settings.data.source == "files" and settings.data.input_dir is None:
        simulated = simulate_stage(settings)
    source = resolve_input(input_dir, settings.data, settings.paths.simulated_dir)
    validation_dir = Path(settings.paths.reports_dir) / "validation"
    loaded = validate_stage(settings, source, validation_dir)
    failures: dict[str, str] = {}
    churn = _attempt("churn", failures, train_churn_stage, settings, source, loaded=loaded)
    clv = _attempt("clv", failures, train_clv_stage, settings, source, loaded=loaded)
    segments = _attempt("segments", failures, train_segments_stage, settings, source, loaded=loaded)
    uplift = None
    if "campaigns" in loaded.tables:  # past campaigns with control groups: learn whom an offer keeps
        uplift = _attempt("uplift", failures, train_uplift_stage, settings, source, loaded=loaded)
    if churn is None and clv is None:
        from crmscore.errors import DataError

        raise DataError("no model trained: " + "; ".join(f"{role}: {why}" for role, why in failures.items()))
    scores = score_stage(settings, data_as_of(loaded), loaded=loaded)
    plan = None
    if scores.manifest["models"].get("uplift") and scores.manifest["models"].get("clv"):
        plan = plan_stage(settings, data_as_of(loaded), input_dir=source, loaded=loaded)
    monitored = monitor_stage(settings, source, loaded=loaded)  # the track record of every scoring so far
    report = report_stage(settings, input_dir=source, not_trained=failures)
    return RunResult(
        input_dir=source,
        validation_dir=validation_dir,
        simulated=simulated,
        loaded=loaded,
        churn=churn,
        clv=clv,
        segments=segments,
        uplift=uplift,
        scores=scores,
        plan=plan,
        report=report,
        failures=failures,
        monitoring=monitored,
    )


# --- churn -------------------------------------------------------------------------------------------


@dataclasses.dataclass
class TrainResult:
    """What a training stage produced and decided."""

    model_name: str
    version: int
    run_id: str
    metrics: dict[str, float]
    promoted: bool
    champion_version: int | None
    decision: str
    seconds: float
    notes: list[str] = dataclasses.field(default_factory=list)


def _input_tables(settings: Settings, input_dir: str | os.PathLike | None) -> tuple[Path | str, LoadedData]:
    source = resolve_input(input_dir, settings.data, settings.paths.simulated_dir)
    defaulted = input_dir is None and settings.data.source == "files" and settings.data.input_dir is None
    if defaulted and not source.exists():
        from crmscore.errors import DataError

        raise DataError(f"{source}: no input tables; run `crmscore simulate` first or pass --input DIR")
    loaded = validate_stage(settings, source, Path(settings.paths.reports_dir) / "validation")
    return source, loaded


def train_churn_stage(
    settings: Settings, input_dir: str | os.PathLike | None = None, loaded: LoadedData | None = None
) -> TrainResult:
    """Train, evaluate, track and register the churn model; promote it when it beats the champion.

    One MLflow run holds the flattened settings, validation and test metrics of the model and the
    logistic baseline, the plots, the feature list with descriptions, a data fingerprint, the git
    commit and the Optuna study. The model is registered as ``crmscore-churn`` with alias
    ``challenger``; it becomes ``champion`` when there is none or when it beats the champion on this
    run's test holdout by ``churn.promotion_margin`` on ``churn.promotion_metric``. ``loaded``
    passes tables already validated (the main job validates once).
    """
    import matplotlib.pyplot as plt
    import mlflow

    from crmscore import churn, plots, tracking
    from crmscore.empc import empc_detail
    from crmscore.evaluation import classification_metrics
    from crmscore.features import describe

    started = time.perf_counter()
    cfg = settings.churn
    # The tracking store first: an unreachable server fails now, not after minutes of tuning.
    tracking.configure(settings.paths.models_dir, settings.tracking.experiment)
    if loaded is None:
        _, loaded = _input_tables(settings, input_dir)
    # Large customer bases: a seeded sample of whole customers, drawn before any feature is built.
    tables, sample = sample_customers(loaded.tables, cfg.sample_customers, cfg.seed, "churn.sample_customers")
    kind, splits = churn.churn_datasets(tables, cfg, settings.features, snapshot_date=loaded.snapshot_date)
    train, valid, test = splits["train"], splits["valid"], splits["test"]
    log.info("churn (%s label): %d train / %d valid / %d test rows", kind, len(train), len(valid), len(test))
    notes = _feature_notes(loaded) + ([sample.note()] if sample else [])

    tuning = churn.tune_lightgbm(train, valid, cfg.tuning, seed=cfg.seed, class_weight=cfg.class_weight)
    iv = settings.intervals
    model = churn.model_from_settings(
        cfg, tuning.best_params, calibration_bootstraps=iv.calibration_bootstraps, spread_folds=iv.churn_spread_folds
    )
    model.fit(train.X, train.y, valid.X, valid.y)
    baseline = churn.fit_baseline(train, seed=cfg.seed)
    # Predict each split once; the metrics and the plots share these probabilities.
    metrics: dict[str, float] = {}
    predictions: dict[tuple[str, str], np.ndarray] = {}
    for split_name, split in (("valid", valid), ("test", test)):
        for prefix, estimator in (("", model), ("baseline_", baseline)):
            p = predictions[(split_name, prefix)] = estimator.predict_proba(split.X)[:, 1]
            for key, value in classification_metrics(split.y.to_numpy().astype(int), p).items():
                metrics[f"{prefix}{split_name}_{key}"] = value
            campaign = empc_detail(split.y.to_numpy().astype(int), p, **cfg.empc.model_dump())
            metrics[f"{prefix}{split_name}_empc"] = campaign.empc
            metrics[f"{prefix}{split_name}_empc_fraction"] = campaign.fraction
    metrics |= _churn_interval_metrics(settings, model, test.X, test.y)
    if kind == "subscription" and cfg.cv_repeats > 0:
        # One test split of a snapshot is a noisy figure; repeated k-fold gives the one to compare.
        cv_started = time.perf_counter()
        folds = churn.snapshot_cv_folds(
            tables, cfg, settings.features, tuning.best_params, snapshot_date=loaded.snapshot_date
        )
        metrics |= churn.cv_summary(folds, cfg.cv_folds)
        notes.append(
            f"{cfg.cv_repeats}×{cfg.cv_folds}-fold cross-validated ROC AUC {metrics['cv_roc_auc']:.4f} "
            f"± {metrics['cv_roc_auc_se']:.4f} (standard error) in {time.perf_counter() - cv_started:.0f} s"
        )

    tracking.configure(settings.paths.models_dir, settings.tracking.experiment)
    y_test = test.y.to_numpy().astype(int)
    p_test, p_base = predictions[("test", "")], predictions[("test", "baseline_")]
    with tracking.start_run(f"churn-{kind}") as run:
        mlflow.set_tags(
            {
                "crmscore.stage": "train_churn",
                "crmscore.label": kind,
                "mlflow.source.git.commit": tracking.git_commit(),
                "crmscore.params_fingerprint": settings.fingerprint(),
                "crmscore.notes": " | ".join(notes)[:4000],
                "crmscore.sample": sample.note() if sample else "none",
            }
        )
        params = tracking.flatten_params(
            {"churn": cfg.model_dump(mode="json"), "features": settings.features.model_dump(mode="json")}
        )
        params |= sample.params() if sample else {}
        params |= {f"lgbm.{k}": str(v) for k, v in tuning.best_params.items()}
        params |= {
            "model.blend_weight": str(model.blend_weight_),
            "model.calibration": model.calibration_method_,
            "model.best_iterations": str(model.best_iterations_),
            "split.train_as_of": ",".join(sorted({str(d.date()) for d in train.as_of})),
            "split.valid_as_of": str(valid.as_of.iloc[0].date()),
            "split.test_as_of": str(test.as_of.iloc[0].date()),
            "split.rows": f"{len(train)}/{len(valid)}/{len(test)}",
        }
        params |= {f"data.{k}": str(v) for k, v in tracking.data_fingerprint(loaded.tables).items()}
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.log_metrics(
            {
                "optuna_best_valid_auc": tuning.best_value,
                "optuna_search_best_valid_auc": tuning.search_best_value,
                "optuna_valid_auc_standard_error": tuning.standard_error,
                "optuna_kept_default": float(tuning.kept_default),
                "optuna_trials": tuning.trials,
                "optuna_pruned": tuning.pruned,
            }
        )
        mlflow.log_text(tuning.trials_table.to_csv(index=False), "optuna/trials.csv")
        mlflow.log_dict(
            {
                "features": [
                    {"name": f, "description": describe(f, settings.features.trend_window_days)}
                    for f in model.feature_names_in_
                ],
                "dropped": list(model.dropped_features_),
            },
            "features.json",
        )
        for file_name, draw in (
            ("roc", plots.plot_roc),
            ("precision_recall", plots.plot_precision_recall),
            ("calibration", plots.plot_calibration),
            ("gains", plots.plot_gains),
            ("lift", plots.plot_lift),
        ):
            fig, ax = plt.subplots(figsize=(6, 4.5))
            draw(y_test, p_base, ax=ax, label="logistic baseline")
            draw(y_test, p_test, ax=ax, label="LightGBM (calibrated)")
            mlflow.log_figure(fig, f"plots/{file_name}.png")
            plt.close(fig)
        sample = test.X.iloc[: min(len(test.X), 2000)]
        shap_values, _ = model.shap_values(sample)
        ax = plots.plot_shap_summary(shap_values, sample[list(model.feature_names_in_)])
        mlflow.log_figure(ax.figure, "plots/shap_summary.png")
        plt.close(ax.figure)

        version = tracking.log_estimator(model, CHURN_MODEL_NAME, test.X.head(5), output="churn_probability")
        y_holdout = test.y.to_numpy().astype(int)
        promoted, champion_version, decision = _promotion(
            CHURN_MODEL_NAME,
            version,
            lambda champion: classification_metrics(y_holdout, champion.predict_proba(test.X)[:, 1])[
                cfg.promotion_metric
            ],
            metrics[f"test_{cfg.promotion_metric}"],
            cfg.promotion_metric,
            cfg.promotion_margin,
        )
        mlflow.set_tags({"crmscore.promoted": str(promoted), "crmscore.decision": decision})
        run_id = run.info.run_id
    seconds = time.perf_counter() - started
    log.info("churn model version %s: %s (%.0f s)", version, decision, seconds)
    return TrainResult(CHURN_MODEL_NAME, version, run_id, metrics, promoted, champion_version, decision, seconds, notes)


def _feature_notes(loaded: LoadedData) -> list[str]:
    """What the data leaves out of the features, and the attributes kept out on purpose, in words."""
    notes = []
    customers = loaded.tables["customers"]
    if "signup_date" not in customers.columns:
        notes.append(
            "tenure_days left out: the customers have no signup dates (map a tenure column with its unit in "
            "data.tables.customers.tenure, or a signup date in data.tables.customers.columns)"
        )
    held_out = [a for a in loaded.attributes if a["role"] in ("excluded", "protected")]
    if held_out:
        notes.append("never features: " + ", ".join(f"{a['column']} ({a['role']})" for a in held_out))
    return notes


def _promotion(
    name: str, version: int, champion_score, challenger_score: float, metric: str, margin: float
) -> tuple[bool, int | None, str]:
    """Make the new version the challenger, and the champion when it beats the current one on the same holdout.

    ``champion_score(estimator)`` scores the current champion's estimator on the holdout the challenger
    was scored on; lower is better for the metrics in :data:`crmscore.evaluation.LOWER_IS_BETTER`.
    Returns whether it was promoted, the champion it was judged against and the decision in words.
    """
    from crmscore import tracking

    tracking.set_alias(name, tracking.CHALLENGER, version)
    promoted, champion_version, decision = _judge(name, champion_score, challenger_score, metric, margin)
    if promoted:
        tracking.set_alias(name, tracking.CHAMPION, version)
    return promoted, champion_version, decision


def _judge(
    name: str, champion_score, challenger_score: float, metric: str, margin: float
) -> tuple[bool, int | None, str]:
    """Whether the challenger's score beats the current champion's by ``margin`` (see :func:`_promotion`)."""
    from crmscore import tracking
    from crmscore.evaluation import LOWER_IS_BETTER

    current = tracking.version_by_alias(name, tracking.CHAMPION)
    if current is None:
        return True, None, "promoted: no champion yet"
    try:
        estimator = tracking.load_model(name, version=current.version).unwrap_python_model().estimator
        champion = champion_score(estimator)
    except Exception as exc:  # a champion of another kind or on other features cannot be judged here
        return False, int(current.version), f"kept champion v{current.version}: it cannot score this holdout ({exc})"
    gain = (champion - challenger_score) if metric in LOWER_IS_BETTER else (challenger_score - champion)
    verdict = f"{metric} {challenger_score:.4f} vs champion v{current.version} {champion:.4f} (margin {margin})"
    if gain >= margin:
        return True, int(current.version), f"promoted: {verdict}"
    return False, int(current.version), f"kept champion: {verdict}"


# --- CLV ---------------------------------------------------------------------------------------------


def train_clv_stage(
    settings: Settings, input_dir: str | os.PathLike | None = None, loaded: LoadedData | None = None
) -> TrainResult:
    """Train, compare, track and register the CLV models; promote by the rules of ``params.yaml``.

    Transaction data: the ML model (LightGBM on the point-in-time features, tuned with Optuna on
    whole validation customers) and BG/NBD × Gamma-Gamma (fitted on the history up to the test as-of
    date) predict spend in the test horizon; both are compared on the same holdout — the test
    customers who had bought by then, the population of the BTYD models — and both are registered as
    versions of ``crmscore-clv``. The better on ``clv.selection_metric`` (or the one ``clv.model``
    names) gets the ``challenger`` alias and becomes ``champion`` when there is none or when it beats the
    champion on the same holdout by ``clv.promotion_margin``. Subscription data without transactions
    gets contractual CLV from the churn champion's retention (see :mod:`crmscore.clv.contractual`).
    """
    from crmscore import tracking

    # The tracking store first: an unreachable server fails now, not after minutes of fitting.
    tracking.configure(settings.paths.models_dir, settings.tracking.experiment)
    if loaded is None:
        _, loaded = _input_tables(settings, input_dir)
    tables = loaded.tables
    if "transactions" not in tables or tables["transactions"].empty:
        return _train_contractual_clv(settings, loaded)
    return _train_transaction_clv(settings, loaded)


def _train_transaction_clv(settings: Settings, loaded: LoadedData) -> TrainResult:
    import matplotlib.pyplot as plt
    import mlflow
    import pandas as pd

    from crmscore import intervals, plots, tracking
    from crmscore.clv import btyd
    from crmscore.clv import ml as clv_ml
    from crmscore.clv.value import BtydClv
    from crmscore.evaluation import LOWER_IS_BETTER, value_metrics
    from crmscore.features import describe

    started = time.perf_counter()
    cfg = settings.clv
    # Large customer bases: a seeded sample of whole customers, drawn before any feature is built.
    tables, sample = sample_customers(loaded.tables, cfg.sample_customers, cfg.seed, "clv.sample_customers")
    splits = clv_ml.clv_datasets(tables, cfg, settings.features)
    train, valid, test = splits["train"], splits["valid"], splits["test"]
    test_as_of = test.as_of.iloc[0]
    log.info(
        "CLV: %d train / %d valid / %d test rows (test as of %s)", len(train), len(valid), len(test), test_as_of.date()
    )

    tuning = clv_ml.tune_clv(train, valid, cfg)
    ml_model = clv_ml.model_from_settings(cfg, tuning.best_params).fit(train.X, train.y, valid.X, valid.y)
    # Split-conformal intervals, saved with the model, from the latest fully observed window: a seeded half of
    # the test customers (never trained on); the other half measures their coverage. The validation rows'
    # earlier windows miss it (benchmarks/clv_intervals.py).
    calibrate = intervals.calibration_half(len(test.y), settings.intervals.seed)
    intervals.calibrate_ml_clv(ml_model, test.X[calibrate], test.y[calibrate], settings.intervals.conformal_bins)
    btyd_model = BtydClv(
        transaction_model="bgnbd",
        penalizer=cfg.penalizer,
        time_unit=cfg.time_unit,
        horizon_days=cfg.horizon_days,
        annual_discount_rate=cfg.discount_rate,
        margin=cfg.margin,
    ).fit(test.X)

    btyd_label = f"{btyd_model.transaction_model_._label} × Gamma-Gamma"
    notes = ([sample.note()] if sample else []) + ([btyd_model.fit_note_] if btyd_model.fit_note_ else [])
    buyers = test.X["repeat_purchase_days"].notna().to_numpy()
    X_hold, y_hold = test.X.loc[buyers], test.y.to_numpy()[buyers]
    predictions = {"ml": ml_model.predict(X_hold), "btyd": btyd_model.predict(X_hold)}
    metrics: dict[str, float] = {}
    for name, p in predictions.items():
        metrics |= {f"{name}_test_{k}": v for k, v in value_metrics(y_hold, p).items()}
    metrics |= {f"ml_test_all_{k}": v for k, v in value_metrics(test.y.to_numpy(), ml_model.predict(test.X)).items()}
    metrics |= _interval_metrics(settings, "ml", ml_model, test.X[~calibrate], test.y.to_numpy()[~calibrate])
    metrics |= _interval_metrics(settings, "btyd", btyd_model, X_hold, y_hold)
    metric = cfg.selection_metric
    lower = metric in LOWER_IS_BETTER
    if cfg.model == "auto":
        scores = {name: metrics[f"{name}_test_{metric}"] for name in predictions}
        chosen = min(scores, key=scores.get) if lower else max(scores, key=scores.get)
    else:
        chosen = cfg.model
    log.info(
        "CLV holdout %s: ML %.4f, BTYD %.4f → %s proposed",
        metric,
        metrics[f"ml_test_{metric}"],
        metrics[f"btyd_test_{metric}"],
        chosen,
    )

    end = test_as_of + pd.Timedelta(days=cfg.horizon_days)
    holdout_summary = btyd.rfm_summary(tables["transactions"], test_as_of, cfg.time_unit, holdout_end=end)
    tracking.configure(settings.paths.models_dir, settings.tracking.experiment)
    with tracking.start_run("clv") as run:
        mlflow.set_tags(
            {
                "crmscore.stage": "train_clv",
                "mlflow.source.git.commit": tracking.git_commit(),
                "crmscore.params_fingerprint": settings.fingerprint(),
                "crmscore.clv_proposed": chosen,
                "crmscore.btyd_transaction_model": btyd_model.transaction_model_._label,
                "crmscore.btyd_boundary": btyd_model.boundary_ or "none",
                "crmscore.sample": sample.note() if sample else "none",
            }
        )
        if btyd_model.fit_note_:
            mlflow.log_text(btyd_model.fit_note_ + "\n", "btyd/fit_note.txt")
        params = tracking.flatten_params(
            {"clv": cfg.model_dump(mode="json"), "features": settings.features.model_dump(mode="json")}
        )
        params |= {f"lgbm.{k}": str(v) for k, v in tuning.best_params.items()}
        params |= {
            "split.train_as_of": ",".join(sorted({str(d.date()) for d in train.as_of})),
            "split.test_as_of": str(test_as_of.date()),
            "split.rows": f"{len(train)}/{len(valid)}/{len(test)}",
            "split.holdout_buyers": str(int(buyers.sum())),
        }
        params |= sample.params() if sample else {}
        params |= {f"data.{k}": str(v) for k, v in tracking.data_fingerprint(loaded.tables).items()}
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        table = btyd_model.parameter_table()
        mlflow.log_metrics(
            {f"btyd_{row.parameter}": row.estimate for row in table.itertuples()}
            | {f"btyd_{row.parameter}_se": row.std_error for row in table.itertuples()}
            | {
                "btyd_loglik": btyd_model.transaction_model_.log_likelihood_,
                "optuna_best_valid": tuning.best_value,
                "optuna_trials": tuning.trials,
                "optuna_pruned": tuning.pruned,
            }
        )
        mlflow.log_text(table.to_csv(index=False), "btyd/parameters.csv")
        mlflow.log_text(tuning.trials_table.to_csv(index=False), "optuna/trials.csv")
        mlflow.log_dict(
            {
                "features": [
                    {"name": f, "description": describe(f, settings.features.trend_window_days)}
                    for f in ml_model.feature_names_in_
                ]
            },
            "features.json",
        )
        for file_name, draw in (
            ("value_gains", plots.plot_value_gains),
            ("value_deciles", plots.plot_value_deciles),
            ("predicted_vs_actual", plots.plot_predicted_vs_actual),
        ):
            fig, ax = plt.subplots(figsize=(6, 4.5))
            draw(y_hold, predictions["btyd"], ax=ax, label=btyd_label)
            draw(y_hold, predictions["ml"], ax=ax, label="LightGBM")
            mlflow.log_figure(fig, f"plots/{file_name}.png")
            plt.close(fig)
        curve = btyd.repeat_transactions_tracking(
            btyd_model.transaction_model_, tables["transactions"], test_as_of, end, cfg.time_unit
        )
        ax = plots.plot_cumulative_transactions(
            curve["period"].to_numpy(),
            curve["actual"].to_numpy(),
            curve["predicted"].to_numpy(),
            calibration_end=float(curve.loc[curve["period_end"] <= test_as_of, "period"].max()),
            unit={"W": "week", "D": "day"}[cfg.time_unit],
        )
        mlflow.log_figure(ax.figure, "plots/btyd_tracking.png")
        plt.close(ax.figure)
        conditional = btyd_model.transaction_model_.conditional_expected_purchases(
            holdout_summary["duration_holdout"].iloc[0], holdout_summary
        )
        ax = plots.plot_conditional_expectations(
            holdout_summary["frequency"].to_numpy(), holdout_summary["frequency_holdout"].to_numpy(), conditional
        )
        mlflow.log_figure(ax.figure, "plots/btyd_conditional_expectations.png")
        plt.close(ax.figure)
        holdout_actual = float(holdout_summary["frequency_holdout"].sum())
        mlflow.log_metrics(
            {
                "btyd_holdout_purchases_actual": holdout_actual,
                "btyd_holdout_purchases_predicted": float(conditional.sum()),
                "btyd_holdout_rel_error": float(conditional.sum()) / holdout_actual - 1 if holdout_actual else 0.0,
            }
        )
        sample = X_hold.iloc[: min(len(X_hold), 2000)]
        shap_values, _ = ml_model.shap_values(sample) if cfg.objective == "tweedie" else (None, None)
        if shap_values is not None:
            ax = plots.plot_shap_summary(shap_values, sample[list(ml_model.feature_names_in_)])
            mlflow.log_figure(ax.figure, "plots/shap_summary.png")
            plt.close(ax.figure)

        versions = {
            "btyd": tracking.log_estimator(
                btyd_model, CLV_MODEL_NAME, X_hold.head(5), output="expected_spend", kind="value", name="btyd_model"
            ),
            "ml": tracking.log_estimator(
                ml_model, CLV_MODEL_NAME, X_hold.head(5), output="expected_spend", kind="value", name="ml_model"
            ),
        }
        client = tracking.client()
        for kind_name, number in versions.items():
            client.set_model_version_tag(CLV_MODEL_NAME, str(number), "crmscore.clv_model", kind_name)
        version = versions[chosen]
        promoted, champion_version, decision = _promotion(
            CLV_MODEL_NAME,
            version,
            lambda champion: value_metrics(y_hold, champion.predict(X_hold))[metric],
            metrics[f"{chosen}_test_{metric}"],
            metric,
            cfg.promotion_margin,
        )
        decision = f"{chosen} proposed; {decision}"
        mlflow.set_tags({"crmscore.promoted": str(promoted), "crmscore.decision": decision})
        run_id = run.info.run_id
    seconds = time.perf_counter() - started
    log.info("CLV model version %s: %s (%.0f s)", version, decision, seconds)
    return TrainResult(CLV_MODEL_NAME, version, run_id, metrics, promoted, champion_version, decision, seconds, notes)


def _interval_metrics(settings: Settings, name: str, model, X, y) -> dict[str, float]:
    """Coverage of a CLV model's intervals of holdout spend (overall and worst predicted decile) and mean width."""
    from crmscore import intervals

    cfg = settings.intervals
    spend = np.asarray(model.predict(X), dtype=float)
    low, high, keep = intervals.clv_interval(
        model, X, spend, spend, cfg.level, cfg.draws, cfg.seed, zero_inclusion=True
    )
    if np.isnan(low).all():
        return {}
    table = intervals.coverage_by_decile(spend, y, low, high, zero_inclusion=keep)
    deciles = table.drop("overall")
    # Deciles where more customers than the level spend nothing cover that share: no interval holds the level.
    # Broken at random, the tie at 0 holds it there too: the randomized coverage checks the calibration.
    holdable = deciles["zero_share"] <= cfg.level
    gap = (deciles["coverage"] - cfg.level).abs()[holdable].max() if holdable.any() else np.nan
    return {
        f"{name}_test_interval_coverage": float(table.loc["overall", "coverage"]),
        f"{name}_test_interval_worst_decile_gap": float(gap),
        f"{name}_test_interval_randomized_coverage": float(table.loc["overall", "randomized"]),
        f"{name}_test_interval_randomized_worst_decile_gap": float((deciles["randomized"] - cfg.level).abs().max()),
        f"{name}_test_interval_mean_width": float(table.loc["overall", "mean_width"]),
    }


def _churn_interval_metrics(settings: Settings, model, X, y) -> dict[str, float]:
    """Predicted deciles of the test customers whose realized churn rate lies in its interval
    (:func:`crmscore.intervals.churn_rate_interval`; about ``level`` × 10 when calibrated), and the mean width."""
    from crmscore import intervals

    level = settings.intervals.level
    p, low, high = intervals.churn_interval(model, X, level)
    if np.isnan(low).all() or len(p) < 10:
        return {}
    decile = pd.qcut(pd.Series(p).rank(method="first"), 10, labels=False).to_numpy()
    rows = intervals.churn_rate_interval(p, low, high, decile, level)
    realized = pd.Series(np.asarray(y, dtype=float)).groupby(decile).mean()
    inside = (realized >= rows["realized_low"]) & (realized <= rows["realized_high"])
    return {
        "test_interval_deciles_inside": float(inside.sum()),
        "test_interval_mean_width": float(np.mean(high - low)),
    }


def _train_contractual_clv(settings: Settings, loaded: LoadedData) -> TrainResult:
    import mlflow
    import numpy as np

    from crmscore import tracking
    from crmscore.clv.value import ContractualClv
    from crmscore.errors import DataError
    from crmscore.evaluation import top_share_of_value
    from crmscore.features import build_features

    started = time.perf_counter()
    cfg = settings.clv
    tables = loaded.tables
    customers = tables["customers"]
    if "monthly_revenue" not in customers.columns:
        raise DataError("customers: column 'monthly_revenue': contractual CLV (data without transactions) needs it")
    tracking.configure(settings.paths.models_dir, settings.tracking.experiment)
    champion = tracking.version_by_alias(CHURN_MODEL_NAME, tracking.CHAMPION)
    if champion is None:
        raise DataError(
            f"contractual CLV needs the retention of a churn model: no {CHURN_MODEL_NAME} champion yet "
            "(run `crmscore train churn` first)"
        )
    churn_model = tracking.load_model(CHURN_MODEL_NAME, version=champion.version).unwrap_python_model().estimator
    as_of = data_as_of(loaded)
    X = build_features(tables, as_of, settings.features)
    X = X.assign(churn_probability=churn_model.predict_proba(X)[:, 1])
    model = ContractualClv(
        churn_horizon_days=cfg.subscription_churn_horizon_days,
        horizon_days=cfg.horizon_days,
        annual_discount_rate=cfg.discount_rate,
        margin=cfg.margin,
    ).fit(X)
    clv = model.clv(X)
    metrics = {
        "clv_total": float(np.sum(clv)),
        "clv_mean": float(np.mean(clv)),
        "clv_top20_share": float(top_share_of_value(clv, 0.2)),
        "customers": float(len(clv)),
    }
    with tracking.start_run("clv-contractual") as run:
        mlflow.set_tags(
            {
                "crmscore.stage": "train_clv",
                "crmscore.clv_proposed": "contractual",
                "mlflow.source.git.commit": tracking.git_commit(),
                "crmscore.params_fingerprint": settings.fingerprint(),
                "crmscore.churn_version": str(champion.version),
            }
        )
        mlflow.log_params(tracking.flatten_params({"clv": cfg.model_dump(mode="json")}))
        mlflow.log_metrics(metrics)
        version = tracking.log_estimator(
            model, CLV_MODEL_NAME, X.head(5), output="expected_spend", kind="value", name="contractual_model"
        )
        tracking.client().set_model_version_tag(CLV_MODEL_NAME, str(version), "crmscore.clv_model", "contractual")
        tracking.set_alias(CLV_MODEL_NAME, tracking.CHALLENGER, version)
        current = tracking.version_by_alias(CLV_MODEL_NAME, tracking.CHAMPION)
        promoted = current is None
        decision = (
            "promoted: no champion yet"
            if promoted
            else f"kept champion v{current.version}: contractual CLV has no holdout to compare on; promote by hand"
        )
        if promoted:
            tracking.set_alias(CLV_MODEL_NAME, tracking.CHAMPION, version)
        mlflow.set_tags({"crmscore.promoted": str(promoted), "crmscore.decision": decision})
        run_id = run.info.run_id
    seconds = time.perf_counter() - started
    return TrainResult(
        CLV_MODEL_NAME,
        version,
        run_id,
        metrics,
        promoted,
        None if current is None else int(current.version),
        decision,
        seconds,
    )


# --- segments ----------------------------------------------------------------------------------------


def _current_values(settings: Settings, tables, as_of):
    """Features at ``as_of`` with the champions' churn probability and CLV (for segments and tiers).

    A model without a champion gives None in its place; at least one of the two must exist.
    """
    from crmscore.clv.value import lifetime_value
    from crmscore.errors import DataError
    from crmscore.features import build_features

    X = build_features(tables, as_of, settings.features)
    found, missing = _registered_models({"churn": CHURN_MODEL_NAME, "clv": CLV_MODEL_NAME})
    for role, why in missing.items():
        log.warning("segments without %s: %s", role, why)
    if found["churn"] is None and found["clv"] is None:
        raise DataError("segments: neither a churn nor a CLV champion is registered; train one first")
    p = found["churn"][0].predict_proba(X)[:, 1] if found["churn"] else None
    clv = None
    if found["clv"]:
        cfg = settings.clv
        X_clv = X.assign(churn_probability=p if p is not None else np.nan)
        clv = lifetime_value(found["clv"][0], X_clv, cfg.horizon_days, cfg.discount_rate, cfg.margin)
    used = {role: ref[1] if ref else 0 for role, ref in found.items()}
    return X, p, clv, used


def _segment_target(settings: Settings, X: pd.DataFrame, p, clv) -> tuple[str, pd.Series]:
    """The target of the segment tree: ``segments.target``, or the one the models give when it is missing."""
    from crmscore import segments, tiers

    target = settings.segments.target
    available = {"clv": clv is not None, "churn": p is not None, "tier": True}
    if not available[target]:
        fallback = "churn" if p is not None else "clv"
        log.warning("segments.target %s: no such model; the segments explain %s instead", target, fallback)
        target = fallback
    points = tiers.scorecard_points(X, settings.tiers.scorecard)["total"] if target == "tier" else None
    y = segments.target_values(
        target,
        clv=None if clv is None else pd.Series(clv, index=X.index),
        churn_probability=None if p is None else pd.Series(p, index=X.index),
        points=points,
    )
    return target, y


def _segment_features(settings: Settings, X: pd.DataFrame) -> list[str]:
    """``segments.features`` present in the data; with fewer than three (a snapshot), every feature."""
    present = [f for f in settings.segments.features if f in X.columns]
    if len(present) >= 3:
        return list(settings.segments.features)
    return [*present, *(c for c in X.columns if c not in present)]


def scoring_as_of(tables, snapshot_date=None) -> pd.Timestamp:
    """The latest date the data covers: the last transaction, else the snapshot date of customers-only data
    (``LoadedData.snapshot_date``), else the last signup, else today."""
    if "transactions" in tables and not tables["transactions"].empty:
        return pd.Timestamp(tables["transactions"]["date"].max()).normalize()
    if snapshot_date is not None:
        return pd.Timestamp(snapshot_date).normalize()
    if "signup_date" in tables["customers"].columns:
        return pd.Timestamp(tables["customers"]["signup_date"].max()).normalize()
    return pd.Timestamp.today().normalize()


def data_as_of(loaded: LoadedData) -> pd.Timestamp:
    """The as-of date of validated input: :func:`scoring_as_of` of its tables and snapshot date."""
    return scoring_as_of(loaded.tables, loaded.snapshot_date)


def train_segments_stage(
    settings: Settings, input_dir: str | os.PathLike | None = None, loaded: LoadedData | None = None
) -> TrainResult:
    """Fit the segment tree on the current customers, track it and register it as ``crmscore-segments``.

    The target (``segments.target``: CLV, churn probability or scorecard points) comes from the churn
    and CLV champions at the latest date of the data. The run logs the profile table, the rules as SQL
    and JSON, and the tree plot. The new version is ``challenger``; it becomes ``champion`` when there is
    none or when its segments explain at least as much of the target's variance (R²) as the champion's
    on the same customers.
    """
    import matplotlib.pyplot as plt
    import mlflow
    import numpy as np
    import pandas as pd

    from crmscore import segments, tracking

    started = time.perf_counter()
    tracking.configure(settings.paths.models_dir, settings.tracking.experiment)
    if loaded is None:
        _, loaded = _input_tables(settings, input_dir)
    tables = loaded.tables
    as_of = data_as_of(loaded)
    X, p, clv, used = _current_values(settings, tables, as_of)
    cfg = settings.segments
    target, y = _segment_target(settings, X, p, clv)
    cfg = cfg.model_copy(update={"target": target, "features": _segment_features(settings, X)})
    model = segments.segment_tree_from_settings(cfg).fit(X, y)
    ids = model.predict(X)
    profile = model.profile(
        X,
        ids,
        None if clv is None else pd.Series(clv, index=X.index),
        None if p is None else pd.Series(p, index=X.index),
    )

    def r_squared(assigned: pd.Series) -> float:
        means = y.groupby(assigned.to_numpy()).transform("mean")
        total = float(((y - y.mean()) ** 2).sum())
        return 1.0 - float(((y - means) ** 2).sum()) / total if total > 0 else 0.0

    score = r_squared(ids)
    metrics = {"segments": float(len(model.leaves_)), "r2": score, "customers": float(len(X))}
    with tracking.start_run("segments") as run:
        mlflow.set_tags(
            {
                "crmscore.stage": "train_segments",
                "mlflow.source.git.commit": tracking.git_commit(),
                "crmscore.params_fingerprint": settings.fingerprint(),
                "crmscore.as_of": str(as_of.date()),
                "crmscore.churn_version": str(used["churn"]),
                "crmscore.clv_version": str(used["clv"]),
            }
        )
        mlflow.log_params(tracking.flatten_params({"segments": cfg.model_dump(mode="json")}))
        mlflow.log_metrics(metrics)
        mlflow.log_text(profile.to_csv(index=False), "segments/profile.csv")
        mlflow.log_text(model.to_sql() + "\n", "segments/rules.sql")
        mlflow.log_dict(model.to_json(), "segments/rules.json")
        ax = segments.plot_segment_tree(model)
        mlflow.log_figure(ax.figure, "plots/segment_tree.png")
        plt.close(ax.figure)
        version = tracking.log_estimator(model, SEGMENTS_MODEL_NAME, X.head(5), output="segment_id", kind="value")
        tracking.set_alias(SEGMENTS_MODEL_NAME, tracking.CHALLENGER, version)
        current = tracking.version_by_alias(SEGMENTS_MODEL_NAME, tracking.CHAMPION)
        if current is None:
            promoted, decision = True, "promoted: no champion yet"
        else:
            try:
                champion = tracking.load_model(SEGMENTS_MODEL_NAME, version=current.version).unwrap_python_model()
                champion_score = r_squared(champion.estimator.predict(X))
            except Exception as exc:  # a champion on other features cannot be judged here
                champion_score = -np.inf
                log.warning("segments champion v%s cannot segment these customers: %s", current.version, exc)
            promoted = score >= champion_score
            verdict = f"R² {score:.4f} vs champion v{current.version} {champion_score:.4f}"
            decision = f"promoted: {verdict}" if promoted else f"kept champion: {verdict}"
        if promoted:
            tracking.set_alias(SEGMENTS_MODEL_NAME, tracking.CHAMPION, version)
        mlflow.set_tags({"crmscore.promoted": str(promoted), "crmscore.decision": decision})
        run_id = run.info.run_id
    seconds = time.perf_counter() - started
    champion_version = None if current is None else int(current.version)
    log.info("segments version %s: %s (%.0f s)", version, decision, seconds)
    return TrainResult(SEGMENTS_MODEL_NAME, version, run_id, metrics, promoted, champion_version, decision, seconds)


# --- scoring -----------------------------------------------------------------------------------------


def _registered_models(names: dict[str, str], versions: dict[str, int] | None = None):
    """``registered_estimator`` of each role's model (its champion, or the version pinned in ``versions``),
    None where none is registered, and the reason per missing role. A pinned version must exist."""
    from crmscore.errors import DataError

    versions = versions or {}
    found: dict[str, tuple | None] = {}
    missing: dict[str, str] = {}
    for role, name in names.items():
        try:
            found[role] = registered_estimator(name, versions.get(role))
        except DataError as exc:
            if role in versions:
                raise
            found[role], missing[role] = None, str(exc)
    return found, missing


def load_scoring_models(settings: Settings, versions: dict[str, int] | None = None):
    """The champions (or the given versions) of the churn, CLV and segments models that exist.

    A role without a champion is left out with its reason (``ScoringModels.missing``; logged): scoring
    then writes null in that model's columns. At least one of churn and CLV must exist; a pinned version
    (``versions``) must exist.
    """
    from crmscore import tracking
    from crmscore.errors import DataError
    from crmscore.scoring import ModelRef, ScoringModels

    versions = versions or {}
    tracking.configure(settings.paths.models_dir, settings.tracking.experiment)
    names = {
        "churn": CHURN_MODEL_NAME,
        "clv": CLV_MODEL_NAME,
        "segments": SEGMENTS_MODEL_NAME,
        "uplift": tracking.UPLIFT_MODEL_NAME,
    }
    found, missing = _registered_models(names, versions)
    for role, why in missing.items():
        log.info("scoring without %s: %s", role, why)
    missing.pop("uplift", None)  # optional: without past campaigns there is none, and nothing is amiss
    refs = {role: None if ref is None else ModelRef(names[role], ref[1], ref[2], ref[0]) for role, ref in found.items()}
    if refs["churn"] is None and refs["clv"] is None:
        raise DataError(missing["churn"])  # nothing to score with: how to train the first model
    return ScoringModels(
        churn=refs["churn"], clv=refs["clv"], segments=refs["segments"], missing=missing, uplift=refs["uplift"]
    )


def score_stage(
    settings: Settings,
    as_of,
    input_dir: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    versions: dict[str, int] | None = None,
    loaded: LoadedData | None = None,
    progress: bool = True,
    output_url: str | None = None,
    output_table: str | None = None,
):
    """Batch scoring as of a date: load the champions, read and validate the input, score, write atomically.

    ``as_of`` None scores as of the data's last day: the last transaction, or the snapshot date of
    customers-only data (``data.snapshot_date``, default the day the file was saved).

    Without ``loaded`` tables, the input (``input_dir``, else ``data.input_dir``, else the simulated
    data) is streamed: the customers are read whole, the other tables one chunk of customers at a time
    (:class:`crmscore.data.stream.StreamedInput`), so memory follows ``scoring.chunk_size``, not the
    size of the customer base.

    Writes ``<out_dir>/as_of=YYYY-MM-DD/`` (``out_dir`` defaults to ``scoring.out_dir``) with
    ``scores.parquet``, ``explanations.parquet``, ``rejects/``, ``tier_migration.csv`` and
    ``manifest.json`` (see :mod:`crmscore.scoring`). ``versions`` pins model versions by role
    (``{"churn": 3}``) instead of the champions.

    The input may be a database URL (``input_dir``, or ``data.sql.url`` with ``data.source: sql``): its
    tables are then read per customer range (:class:`crmscore.data.sql.SqlStreamedInput`). With
    ``output_url`` (default ``scoring.sink.url``) the scoring is also written into that database's
    ``output_table`` (default ``scoring.sink.table``), its reasons and ``crmscore_runs``, in one
    transaction (:func:`crmscore.warehouse.write_scoring`); ``result.warehouse`` says what was written.
    """
    from crmscore.locks import folder_lock
    from crmscore.scoring import scoring_dir

    source = resolve_input(input_dir, settings.data, settings.paths.simulated_dir)
    sink = _sink(settings, output_url, output_table)
    if sink is not None:
        sink[0].connect(read_only=False).close()  # an unreachable sink stops the job before the scoring, not after
    if as_of is None:
        as_of = data_as_of(loaded) if loaded is not None else input_last_day(source, settings)
    as_of = pd.Timestamp(as_of).normalize()
    out_dir = out_dir or settings.scoring.out_dir
    # Held from before the models and the input are read until the folder is in place: a second run for
    # the same folder fails at once with one line, and nobody sees a folder mixed from two runs.
    with folder_lock(scoring_dir(out_dir, as_of)):
        result = _score_locked(settings, as_of, source, out_dir, versions, loaded, progress)
        if sink is not None:
            from crmscore.warehouse import write_scoring

            database, table = sink
            shown = str(source) if loaded is None else None
            result.warehouse = write_scoring(database, table, result.out_dir, result.manifest, shown)
    log.info("scored %d customers as of %s into %s", result.scored, pd.Timestamp(as_of).date(), result.out_dir)
    return result


def _sink(settings: Settings, output_url: str | None, output_table: str | None):
    """The database and table the scores also go to (``--output-url``/``--table`` or ``scoring.sink``), or None."""
    from crmscore.config import SinkSettings
    from crmscore.data.sql import Database
    from crmscore.errors import SettingsError

    cfg = settings.scoring.sink
    url, table = output_url or cfg.url, output_table or cfg.table
    if url is None:
        if output_table is not None:
            raise SettingsError("--table: only with --output-url (or scoring.sink.url)")
        return None
    try:
        checked = SinkSettings(url=url, table=table, password_env=cfg.password_env)
    except Exception as exc:  # pydantic: one line naming the option
        first = exc.errors()[0] if hasattr(exc, "errors") else {"loc": (), "msg": str(exc)}
        option = {"url": "--output-url", "table": "--table"}.get(str(first["loc"][0]) if first["loc"] else "", "")
        raise SettingsError(f"{option or 'scoring.sink'}: {first['msg']}") from None
    return Database(checked.url, checked.password_env, settings.data.sql.connect_timeout_seconds), checked.table


def input_last_day(source, settings: Settings) -> pd.Timestamp:
    """The data's last day (the scoring date by default) in ``source`` (a database URL or a folder; None: the
    default input): the last valid transaction date, or the snapshot date of customers-only data."""
    from crmscore.data.sql import database_of, sql_last_event_date
    from crmscore.data.stream import last_event_date

    source = resolve_input(source, settings.data, settings.paths.simulated_dir)
    if is_database_url(str(source)):
        return sql_last_event_date(database_of(str(source), settings.data), settings.data)
    return last_event_date(source, settings.data)


def _score_locked(settings: Settings, as_of: pd.Timestamp, source, out_dir, versions, loaded, progress: bool):
    """The body of :func:`score_stage` once the scoring folder is locked: load the models, score, write."""
    with _early_workers(settings, source if loaded is None else None) as pool:
        t0 = time.perf_counter()
        models = load_scoring_models(settings, versions)
        extra_seconds = {"load_models": time.perf_counter() - t0}
        return _score_loaded_models(settings, as_of, source, out_dir, models, extra_seconds, loaded, progress, pool)


def _early_workers(settings: Settings, source: Path | None):
    """Scoring workers started before the models load, so that they start up meanwhile — when a streamed
    input's customers table tells its size (Parquet) and it spans more than one chunk."""
    import contextlib

    from crmscore.data.stream import customer_rows
    from crmscore.parallel import LATER, WorkerPool, resolve_workers

    rows = customer_rows(source, settings.data) if source is not None and not is_database_url(str(source)) else None
    chunks = -(-rows // settings.scoring.chunk_size) if rows else 1
    workers = resolve_workers(settings.scoring.workers, chunks)
    if workers < 2:
        return contextlib.nullcontext()
    return WorkerPool(LATER, workers, caller_works=True, preload=("crmscore.scoring",))


def _score_loaded_models(settings, as_of, source, out_dir, models, extra_seconds, loaded, progress, pool):
    """:func:`_score_locked` once the models are loaded: score tables loaded whole, or the streamed input."""
    from crmscore.data.stream import StreamedInput
    from crmscore.scoring import score

    chunk_size = settings.scoring.chunk_size

    def check(tables) -> None:
        check_model_inputs(models, tables, settings.features)

    if loaded is not None:
        rows_in = {name: report.rows_in for name, report in loaded.reports.items()}
        warnings = {name: report.warnings for name, report in loaded.reports.items()}
        result = score(
            loaded.tables,
            as_of,
            models,
            settings,
            out_dir,
            rejects=loaded.rejects,
            rows_in=rows_in,
            progress=progress,
            extra_seconds=extra_seconds,
            check_chunk=check,
            warnings=warnings,
        )
    else:
        if is_database_url(str(source)):
            from crmscore.data.sql import SqlStreamedInput, database_of

            opened = SqlStreamedInput(database_of(str(source), settings.data), settings.data, as_of, chunk_size)
        else:
            opened = StreamedInput(source, settings.data, as_of, chunk_size)
        with opened as streamed:
            result = score(
                streamed,
                as_of,
                models,
                settings,
                out_dir,
                progress=progress,
                extra_seconds=extra_seconds,
                check_chunk=check,
                pool=pool,
            )
    return result


def check_model_inputs(models, tables, features=None) -> None:
    """Fail with one line when the input cannot give the features a model was trained on."""
    from crmscore.errors import DataError
    from crmscore.features import build_features

    customers = tables["customers"]
    probe_as_of = (
        pd.Timestamp(customers["signup_date"].max()) if "signup_date" in customers.columns else scoring_as_of(tables)
    )
    ids = tables["customers"]["customer_id"].head(200)
    sample = {name: df.loc[df["customer_id"].isin(ids)] for name, df in tables.items()}
    columns = set(build_features(sample, probe_as_of, features).columns)
    for ref in (models.churn, models.clv, models.segments):
        if ref is None:
            continue
        needed = getattr(ref.estimator, "feature_names_in_", None)
        if needed is None:
            continue
        missing = [str(f) for f in needed if f not in columns and f != "churn_probability"]
        if missing:
            raise DataError(
                f"{ref.name} v{ref.version} needs feature(s) {', '.join(missing[:5])} that the input tables do not "
                "give (a table or column is missing); score with data like the training data or retrain"
            )


# --- evaluation on a labelled file of your own ----------------------------------------------------------------


@dataclasses.dataclass
class EvaluationResult:
    """Where an evaluation went and what it measured."""

    model_name: str
    version: int
    out_dir: Path
    run_id: str
    metrics: dict[str, float]
    customers: int
    as_of: pd.Timestamp


_CHURN_PLOTS = ("roc", "precision_recall", "calibration", "gains", "lift")
_CLV_PLOTS = ("value_gains", "value_deciles", "predicted_vs_actual")


def evaluate_stage(
    settings: Settings,
    input_dir: str | os.PathLike,
    model: str = "churn",
    version: int | None = None,
    out_dir: str | os.PathLike | None = None,
) -> EvaluationResult:
    """Score a labelled file of your own with a registered model and measure it as training does.

    The tables in ``input_dir`` are validated like any input (rejects go to the output folder); the
    champion of ``crmscore-<model>`` (or ``version``) predicts the customers of
    :func:`crmscore.holdout.churn_holdout` / :func:`~crmscore.holdout.clv_holdout`, and the same metrics
    and plots as the training run's test set are written atomically to
    ``<out_dir>/<model>_v<N>_as_of=<date>/`` (``out_dir`` default ``<reports_dir>/evaluation``:
    ``metrics.json``, ``predictions.parquet``, ``calibration.csv`` for churn, the plots as PNG) and logged
    to MLflow as an evaluation run tagged with the model version, which gets the run's id as its tag
    ``crmscore.last_evaluation_run``. Train on one file and evaluate on the other to reproduce a
    published train / test split.
    """
    import matplotlib.pyplot as plt
    import mlflow

    from crmscore import holdout, tracking
    from crmscore.errors import SettingsError
    from crmscore.evaluation import classification_metrics, value_metrics

    names = {"churn": CHURN_MODEL_NAME, "clv": CLV_MODEL_NAME}
    if model not in names:
        raise SettingsError(f"--model: expected churn or clv, got {model!r}")
    started = time.perf_counter()
    tracking.configure(settings.paths.models_dir, settings.tracking.experiment)
    estimator, version, train_run = registered_estimator(names[model], version)
    target = Path(out_dir or Path(settings.paths.reports_dir) / "evaluation")
    loaded = load_input(input_dir, settings.data)
    check_reject_shares(loaded.reports, settings.data.checks)
    if model == "churn":
        data = holdout.churn_holdout(loaded.tables, settings, loaded.snapshot_date)
        prediction = estimator.predict_proba(data.X)[:, 1]
        metrics = classification_metrics(data.y.to_numpy().astype(int), prediction)
    else:
        data = holdout.clv_holdout(loaded.tables, settings)
        prediction = np.asarray(estimator.predict(data.X), dtype=float)
        metrics = value_metrics(data.y.to_numpy(), prediction)
    metrics = {f"eval_{k}": float(v) for k, v in metrics.items()} | {"eval_customers": float(len(data))}
    folder = target / f"{model}_v{version}_as_of={data.as_of.date()}"
    figures = _evaluation_figures(model, data.y.to_numpy(), prediction, f"{names[model]} v{version}")
    summary = {
        "model": names[model],
        "version": version,
        "training_run": train_run,
        "input": str(input_dir),
        "as_of": str(data.as_of.date()),
        "label": data.kind,
        "metrics": metrics,
    }
    _write_evaluation(folder, loaded, data, prediction, figures, summary)
    with tracking.start_run(f"evaluate-{model}-v{version}") as run:
        mlflow.set_tags(
            {
                "crmscore.stage": "evaluate",
                "crmscore.model_name": names[model],
                "crmscore.model_version": str(version),
                "crmscore.training_run": train_run,
                "crmscore.as_of": str(data.as_of.date()),
                "mlflow.source.git.commit": tracking.git_commit(),
                "crmscore.params_fingerprint": settings.fingerprint(),
            }
        )
        mlflow.log_params({"input": str(input_dir), "as_of": str(data.as_of.date()), "label": data.kind})
        mlflow.log_metrics(metrics)
        for name, fig in figures.items():
            mlflow.log_figure(fig, f"plots/{name}.png")
        mlflow.log_artifact(str(folder / "metrics.json"), artifact_path="evaluation")
        run_id = run.info.run_id
    for fig in figures.values():
        plt.close(fig)
    tracking.client().set_model_version_tag(names[model], str(version), "crmscore.last_evaluation_run", run_id)
    seconds = time.perf_counter() - started
    log.info("evaluated %s v%s on %d customers in %.1f s", names[model], version, len(data), seconds)
    return EvaluationResult(names[model], version, folder, run_id, metrics, len(data), data.as_of)


def _write_evaluation(folder: Path, loaded: LoadedData, data, prediction: np.ndarray, figures: dict, summary: dict):
    """The evaluation folder, written atomically: rejects, predictions, calibration, plots, metrics.json."""
    from crmscore.evaluation import calibration_table
    from crmscore.scoring import atomic_dir

    with atomic_dir(folder) as tmp:
        write_rejects(loaded, tmp)
        predictions = pd.DataFrame(
            {"customer_id": data.X.index.to_numpy(), "actual": data.y.to_numpy(), "predicted": prediction}
        )
        write_parquet(predictions, tmp / "predictions.parquet")
        if data.kind != "value":
            calibration_table(data.y.to_numpy().astype(int), prediction).to_csv(tmp / "calibration.csv", index=False)
        for name, fig in figures.items():
            fig.savefig(tmp / f"{name}.png", dpi=110, bbox_inches="tight")
        (tmp / "metrics.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")


def _evaluation_figures(model: str, y: np.ndarray, prediction: np.ndarray, label: str) -> dict:
    """The training run's test-set plots for one model: churn curves or value plots, by name."""
    import matplotlib.pyplot as plt

    from crmscore import plots

    draws = {
        "roc": plots.plot_roc,
        "precision_recall": plots.plot_precision_recall,
        "calibration": plots.plot_calibration,
        "gains": plots.plot_gains,
        "lift": plots.plot_lift,
        "value_gains": plots.plot_value_gains,
        "value_deciles": plots.plot_value_deciles,
        "predicted_vs_actual": plots.plot_predicted_vs_actual,
    }
    figures = {}
    for name in _CHURN_PLOTS if model == "churn" else _CLV_PLOTS:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        draws[name](y.astype(int) if model == "churn" else y, prediction, ax=ax, label=label)
        figures[name] = fig
    return figures


# --- monitoring ------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class MonitorResult:
    """What ``crmscore monitor`` found: the performance table, its headline and where it was written."""

    performance: pd.DataFrame
    verdict: str
    out_dir: Path
    scorings: list[dict]
    mlflow_runs: dict[str, str]


def monitor_stage(
    settings: Settings,
    input_dir: str | os.PathLike | None = None,
    scores_dir: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    loaded: LoadedData | None = None,
) -> MonitorResult:
    """The track record of every past scoring in ``scores_dir`` (default ``scoring.out_dir``) against the
    current input (``input_dir``, else ``data.input_dir``, else the simulated data).

    Writes ``<out_dir>/performance.parquet`` (one row per scoring × model × version × metric × kind, see
    :mod:`crmscore.monitoring`) and ``track_record.json`` (the verdict, each scoring's status and flags)
    atomically, and logs each model's track record to MLflow under its champion's training run. ``loaded``
    are the current tables when already validated (the main job passes its own).
    """
    from crmscore import monitoring, tracking

    started = time.perf_counter()
    source = resolve_input(input_dir, settings.data, settings.paths.simulated_dir)
    out = Path(out_dir or settings.monitoring.out_dir)
    scorings = monitoring.past_scorings(scores_dir or settings.scoring.out_dir)
    if loaded is None:
        loaded = validate_stage(settings, source, out / "validation")
    drift = _scoring_drift(loaded, [s.as_of for s in scorings], settings)
    performance = monitoring.track_record(loaded.tables, scorings, settings, loaded.snapshot_date, drift)
    headline = monitoring.verdict(performance)
    summary = _scoring_summary(performance)
    write_parquet(performance, out / "performance.parquet")
    write_json({"verdict": headline, "scorings": summary}, out / "track_record.json")
    runs = {}
    tracking.configure(settings.paths.models_dir, settings.tracking.experiment)
    for model, name in (("churn", CHURN_MODEL_NAME), ("clv", CLV_MODEL_NAME)):
        run_id = tracking.log_track_record(name, performance, model)
        if run_id is not None:
            runs[model] = run_id
    log.info("track record of %d scorings in %s (%.1f s)", len(scorings), out, time.perf_counter() - started)
    return MonitorResult(performance, headline, out, summary, runs)


def _scoring_drift(loaded: LoadedData, dates: list[pd.Timestamp], settings: Settings) -> dict:
    """PSI of every feature at each scoring date against the first, from the current data (features of the
    date itself and a customer's age, which move by construction, left out)."""
    from crmscore.drift import feature_drift
    from crmscore.features import AGE_FEATURES, DATE_FEATURES, build_features

    if len(dates) < 2:
        return {}
    frames = {d: build_features(loaded.tables, d, settings.features) for d in dates}
    skip = set(DATE_FEATURES) | set(AGE_FEATURES)
    reference = frames[dates[0]].drop(columns=[c for c in frames[dates[0]].columns if c in skip])
    return {
        d: feature_drift(reference, frame.drop(columns=[c for c in frame.columns if c in skip]))
        for d, frame in frames.items()
    }


def _scoring_summary(performance: pd.DataFrame) -> list[dict]:
    """Per scoring: its date, whether its churn and CLV horizons have closed, the customers missing, the flags."""
    out = []
    for as_of, rows in performance.groupby("as_of", sort=True):
        status = {
            m: rows.loc[rows["model"] == m, "status"].iloc[0] for m in ("churn", "clv") if (rows["model"] == m).any()
        }
        missing = rows.loc[rows["metric"] == "customers_missing", "value"]
        flags = rows.loc[rows["flag"] & (rows["model"] != "data"), "metric"].tolist()
        out.append(
            {
                "as_of": str(pd.Timestamp(as_of).date()),
                "status": status,
                "customers_missing": int(missing.iloc[0]) if len(missing) else 0,
                "flags": flags,
            }
        )
    return out


# --- uplift and the retention plan ---------------------------------------------------------------------


def _contact_cost(campaigns: pd.DataFrame) -> float:
    """Mean cost of a treated customer in the campaigns table (0 without costs)."""
    if "cost" not in campaigns.columns:
        return 0.0
    treated = campaigns.loc[campaigns["treated"].astype("boolean").fillna(False).to_numpy(dtype=bool), "cost"]
    cost = pd.to_numeric(treated, errors="coerce").mean()
    return 0.0 if pd.isna(cost) else float(cost)


def train_uplift_stage(
    settings: Settings, input_dir: str | os.PathLike | None = None, loaded: LoadedData | None = None
) -> TrainResult:
    """Train, compare, track and register the uplift model of past retention campaigns.

    Every campaign whose outcome window has closed gives one row per participant (features on its first
    day, treated or not, retained = a purchase within ``uplift.horizon_days``; :func:`crmscore.campaigns.
    campaign_datasets`). A seeded ``uplift.test_share`` of the randomized campaigns' customers is held
    out whole; each learner of ``uplift.learners`` is tuned and fitted on the rest and judged on them by
    the Qini coefficient, AUUC and uplift at the top 10/20/30 %. The best is registered as
    ``crmscore-uplift`` (alias ``challenger``) and promoted when there is no champion or it beats the
    champion on the same held-out customers by ``uplift.promotion_margin``.
    """
    import matplotlib.pyplot as plt
    import mlflow

    from crmscore import plots, tracking
    from crmscore.campaigns import campaign_datasets, campaign_summary
    from crmscore.errors import DataError
    from crmscore.tracking import UPLIFT_MODEL_NAME
    from crmscore.uplift import customer_holdout, select_uplift_learner, uplift_metrics

    started = time.perf_counter()
    cfg = settings.uplift
    horizon = cfg.horizon_days or settings.churn.horizon_days
    tracking.configure(settings.paths.models_dir, settings.tracking.experiment)
    if loaded is None:
        _, loaded = _input_tables(settings, input_dir)
    data = campaign_datasets(loaded.tables, horizon, settings.features, cfg.min_per_arm, cfg.active_days)
    train_rows, test_rows = customer_holdout(data.customer_id, data.randomized, cfg.test_share, cfg.seed)
    t_test, y_test = data.treated[test_rows], data.retained[test_rows]
    for arm, name in ((1, "treated"), (0, "control")):
        if int((t_test == arm).sum()) < cfg.min_per_arm // 2:
            raise DataError(
                f"campaigns: {int((t_test == arm).sum())} {name} customer(s) held out from the randomized "
                f"campaigns, too few to compare uplift models (raise uplift.test_share or add campaigns)"
            )
    cost = _contact_cost(loaded.tables["campaigns"])
    log.info("uplift: %d training rows, %d held-out randomized rows", len(train_rows), len(test_rows))
    selection = select_uplift_learner(
        data.X,
        data.treated,
        data.retained,
        data.propensity,
        train_rows,
        test_rows,
        cfg,
        horizon,
        contact_cost=cost,
        campaign=data.campaign,
    )
    model, table = selection.model, selection.table
    predicted = model.holdout["uplift"].to_numpy()
    metrics = {f"test_{k}": float(v) for k, v in table.loc[model.learner_name].items() if k != "seconds"}
    for learner, row in table.iterrows():
        metrics |= {f"{learner}_test_{k}": float(v) for k, v in row.items()}
    metrics |= {
        "test_ate": float(y_test[t_test == 1].mean() - y_test[t_test == 0].mean()),
        "test_mean_predicted_uplift": float(predicted.mean()),
        "contact_cost": cost,
    }
    X_test = data.X.iloc[test_rows]
    with tracking.start_run("uplift") as run:
        mlflow.set_tags(
            {
                "crmscore.stage": "train_uplift",
                "crmscore.learner": model.learner_name,
                "mlflow.source.git.commit": tracking.git_commit(),
                "crmscore.params_fingerprint": settings.fingerprint(),
                "crmscore.notes": " | ".join(data.notes)[:4000],
            }
        )
        params = tracking.flatten_params({"uplift": cfg.model_dump(mode="json")})
        params |= {f"lgbm.{k}": str(v) for k, v in selection.tuning[model.learner_name].best_params.items()}
        params |= {
            "data.campaigns": ",".join(sorted(set(data.campaign))),
            "split.rows": f"{len(train_rows)}/{len(test_rows)}",
            "uplift.horizon_days_used": str(horizon),
        }
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.log_text(table.to_csv(), "uplift/learners.csv")
        mlflow.log_text(campaign_summary(loaded.tables["campaigns"]).to_csv(), "uplift/campaigns.csv")
        ax = plots.plot_qini(y_test, t_test, predicted, label=f"{model.learner_name}-learner")
        mlflow.log_figure(ax.figure, "plots/qini.png")
        plt.close(ax.figure)
        version = tracking.log_estimator(model, UPLIFT_MODEL_NAME, X_test.head(5), output="uplift", kind="value")
        promoted, champion_version, decision = _promotion(
            UPLIFT_MODEL_NAME,
            version,
            lambda champion: uplift_metrics(y_test, t_test, champion.predict(X_test))[cfg.promotion_metric],
            metrics[f"test_{cfg.promotion_metric}"],
            cfg.promotion_metric,
            cfg.promotion_margin,
        )
        mlflow.set_tags({"crmscore.promoted": str(promoted), "crmscore.decision": decision})
        run_id = run.info.run_id
    seconds = time.perf_counter() - started
    log.info("uplift model version %s (%s-learner): %s (%.0f s)", version, model.learner_name, decision, seconds)
    notes = [*data.notes, f"learner {model.learner_name}: held-out Qini {metrics['test_qini']:.4f}"]
    return TrainResult(
        UPLIFT_MODEL_NAME, version, run_id, metrics, promoted, champion_version, decision, seconds, notes
    )


@dataclasses.dataclass
class PlanResult:
    """What ``crmscore plan`` wrote and decided."""

    out_dir: Path
    contacted: int
    spent: float
    expected_profit: float
    interval: tuple[float | None, float | None]
    manifest: dict


def _reason_texts(scoring: Path) -> pd.Series:
    """Per customer, the churn model's top reasons as one text (``; ``-joined), from explanations.parquet."""
    path = scoring / "explanations.parquet"
    if not path.exists():
        return pd.Series(dtype=object)
    reasons = pd.read_parquet(path, columns=["customer_id", "model", "rank", "text"])
    reasons = reasons.loc[reasons["model"] == "churn"].sort_values(["customer_id", "rank"], kind="stable")
    return reasons.groupby("customer_id", sort=False)["text"].agg("; ".join)


def plan_stage(
    settings: Settings,
    as_of,
    budget: float | None = None,
    cost: float | None = None,
    input_dir: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    loaded: LoadedData | None = None,
    progress: bool = True,
) -> PlanResult:
    """The retention plan as of a date: whom to contact within ``budget`` at ``cost`` per contact.

    Reads the scoring of ``as_of`` (``scoring.out_dir``; scores it first when there is none), which holds
    each customer's uplift and CLV, and writes ``<out_dir>/as_of=YYYY-MM-DD/`` (``out_dir`` defaults to
    ``plan.out_dir``) atomically: ``plan.parquet`` and ``plan.csv`` (the ranked contact list,
    :data:`crmscore.planning.PLAN_COLUMNS`), ``profit_curve.csv`` and ``manifest.json`` (budget, cost,
    contacts, expected profit with its 95 % interval from the uplift model's held-out customers, the
    scoring and model versions it used). ``budget`` and ``cost`` default to ``plan.budget`` and
    ``plan.contact_cost`` (else the uplift model's campaigns' mean cost).
    """
    from crmscore import planning
    from crmscore.locks import folder_lock
    from crmscore.scoring import atomic_dir, scoring_dir
    from crmscore.tracking import UPLIFT_MODEL_NAME

    started = time.perf_counter()
    as_of = pd.Timestamp(as_of).normalize()
    scoring = scoring_dir(settings.scoring.out_dir, as_of)
    if not (scoring / "scores.parquet").exists():
        score_stage(settings, as_of, input_dir=input_dir, loaded=loaded, progress=progress)
    scores = pd.read_parquet(scoring / "scores.parquet")
    versions = scores["uplift_model_version"] if "uplift_model_version" in scores.columns else pd.Series([0])
    version = int(versions.iloc[0]) if len(versions) else 0
    model = registered_estimator(UPLIFT_MODEL_NAME, version)[0] if version else None
    cost = planning.contact_cost(cost, settings.plan.contact_cost, model)
    budget = settings.plan.budget if budget is None else budget
    plan = planning.plan_contacts(scores, budget, cost, _reason_texts(scoring))
    curve = planning.profit_curve(scores, cost)
    interval = planning.profit_interval(
        plan, len(scores), cost, getattr(model, "holdout", None), settings.plan.bootstrap_samples, settings.plan.seed
    )
    target = Path(out_dir or settings.plan.out_dir) / f"as_of={as_of.date()}"
    manifest = _plan_manifest(settings, as_of, scores, plan, curve, interval, budget, cost, scoring, version)
    with folder_lock(target), atomic_dir(target) as tmp:
        plan.to_parquet(tmp / "plan.parquet", index=False)
        plan.to_csv(tmp / "plan.csv", index=False)
        curve.to_csv(tmp / "profit_curve.csv", index=False)
        manifest["seconds"] = round(time.perf_counter() - started, 3)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    log.info(
        "plan as of %s: %d contacts, expected profit %.0f, in %s", as_of.date(), len(plan), interval.expected, target
    )
    return PlanResult(target, len(plan), len(plan) * cost, interval.expected, (interval.low, interval.high), manifest)


def _plan_manifest(settings, as_of, scores, plan, curve, interval, budget, cost, scoring: Path, version: int) -> dict:
    peak = curve.loc[curve["expected_profit"].idxmax()]
    positive = int((scores["uplift"] * scores["clv"] - cost > 0).sum())
    return {
        "as_of": str(as_of.date()),
        "params_hash": settings.fingerprint(),
        "scoring": str(scoring),
        "uplift_model_version": version,
        "budget": budget,
        "contact_cost": cost,
        "customers_scored": int(len(scores)),
        "customers_worth_contacting": positive,
        "contacted": int(len(plan)),
        "spent": float(len(plan) * cost),
        "expected_profit": interval.expected,
        "expected_profit_calibrated": interval.calibrated,
        "expected_profit_interval_95": [interval.low, interval.high],
        "holdout_realized_to_predicted_uplift": interval.ratio,
        "holdout_customers": interval.holdout_customers,
        "best_unconstrained": {"contacted": int(peak["contacted"]), "expected_profit": float(peak["expected_profit"])},
        "by_tier": plan.groupby("tier", dropna=False).size().rename(lambda t: str(t)).to_dict(),
        "by_risk_band": plan.groupby("risk_band", dropna=False).size().rename(lambda t: str(t)).to_dict(),
    }
