"""Each stage of the main job as one function: read inputs, call the pure code, write outputs.

Stages are what the CLI (``crmscore …``), the thin scripts in ``pipelines/`` and notebooks call.
They take a :class:`~crmscore.config.Settings` and explicit paths, do their file input/output here
(atomically), and return what they produced so callers can report it. The pure computations live in
the modules they call (``data.simulate``, ``data.load``, …).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path

import numpy as np

from crmscore.config import Settings
from crmscore.data.load import LoadedData, load_tables, write_rejects, write_tables
from crmscore.data.simulate import SimulatedData, simulate_crm
from crmscore.io import write_parquet

__all__ = ["SimulateResult", "simulate_stage", "validate_stage", "RunResult", "run_main_job"]

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
    """Simulate the embedded CRM data and write the four tables and ``truth.parquet``.

    ``customers`` and ``seed`` override ``simulate.customers`` / ``simulate.seed``; ``out_dir``
    defaults to ``paths.simulated_dir``. Truth is computed at ``simulate.truth_as_of`` for the churn
    and CLV horizons.
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
    )
    paths = write_tables(data.tables(), out, sim.format)
    paths["truth"] = write_parquet(data.truth, out / "truth.parquet")
    rows = {name: len(df) for name, df in data.tables().items()} | {"truth": len(data.truth)}
    seconds = time.perf_counter() - started
    log.info("simulated %s customers into %s in %.1f s", f"{rows['customers']:,}", out, seconds)
    return SimulateResult(out_dir=out, paths=paths, rows=rows, seconds=seconds)


def validate_stage(settings: Settings, input_dir: str | os.PathLike, out_dir: str | os.PathLike) -> LoadedData:
    """Load and validate the tables in ``input_dir``; write rejects and ``validation.json`` to ``out_dir``."""
    loaded = load_tables(input_dir, settings.data)
    write_rejects(loaded, out_dir)
    for report in loaded.reports.values():
        log.info(
            "%s: %s in, %s kept, %s rejected", report.table, report.rows_in, report.rows_kept, report.rows_rejected
        )
    return loaded


@dataclasses.dataclass
class RunResult:
    """What the main job produced."""

    input_dir: Path
    validation_dir: Path
    simulated: SimulateResult | None
    loaded: LoadedData
    churn: TrainResult | None = None


def run_main_job(settings: Settings, input_dir: str | os.PathLike | None = None) -> RunResult:
    """The main job: simulate when no input is given, validate, then train and register the churn model.

    ``input_dir`` (or ``data.input_dir``) points at the user's tables; without either, the embedded
    synthetic data is simulated into ``paths.simulated_dir`` first. Validation results go to
    ``<reports_dir>/validation``.
    """
    source = input_dir or settings.data.input_dir
    simulated = None
    if source is None:
        simulated = simulate_stage(settings)
        source = simulated.out_dir
    validation_dir = Path(settings.paths.reports_dir) / "validation"
    loaded = validate_stage(settings, source, validation_dir)
    churn = train_churn_stage(settings, source, loaded=loaded)
    return RunResult(
        input_dir=Path(source), validation_dir=validation_dir, simulated=simulated, loaded=loaded, churn=churn
    )


# --- churn -------------------------------------------------------------------------------------------

CHURN_MODEL_NAME = "crmscore-churn"


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


def _input_tables(settings: Settings, input_dir: str | os.PathLike | None) -> tuple[Path, LoadedData]:
    source = Path(input_dir or settings.data.input_dir or settings.paths.simulated_dir)
    if input_dir is None and settings.data.input_dir is None and not source.exists():
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow

    from crmscore import churn, plots, tracking
    from crmscore.evaluation import classification_metrics
    from crmscore.features import describe

    started = time.perf_counter()
    cfg = settings.churn
    if loaded is None:
        _, loaded = _input_tables(settings, input_dir)
    kind, splits = churn.churn_datasets(loaded.tables, cfg, settings.features)
    train, valid, test = splits["train"], splits["valid"], splits["test"]
    log.info("churn (%s label): %d train / %d valid / %d test rows", kind, len(train), len(valid), len(test))

    tuning = churn.tune_lightgbm(train, valid, cfg.tuning, seed=cfg.seed, class_weight=cfg.class_weight)
    model = churn.model_from_settings(cfg, tuning.best_params).fit(train.X, train.y, valid.X, valid.y)
    baseline = churn.fit_baseline(train, seed=cfg.seed)
    # Predict each split once; the metrics and the plots share these probabilities.
    metrics: dict[str, float] = {}
    predictions: dict[tuple[str, str], np.ndarray] = {}
    for split_name, split in (("valid", valid), ("test", test)):
        for prefix, estimator in (("", model), ("baseline_", baseline)):
            p = predictions[(split_name, prefix)] = estimator.predict_proba(split.X)[:, 1]
            for key, value in classification_metrics(split.y.to_numpy().astype(int), p).items():
                metrics[f"{prefix}{split_name}_{key}"] = value

    tracking.configure(settings.paths.models_dir, settings.tracking.experiment)
    y_test = test.y.to_numpy().astype(int)
    p_test, p_base = predictions[("test", "")], predictions[("test", "baseline_")]
    with mlflow.start_run(run_name=f"churn-{kind}") as run:
        mlflow.set_tags(
            {
                "crmscore.stage": "train_churn",
                "crmscore.label": kind,
                "mlflow.source.git.commit": tracking.git_commit(),
                "crmscore.params_fingerprint": settings.fingerprint(),
            }
        )
        params = tracking.flatten_params(
            {"churn": cfg.model_dump(mode="json"), "features": settings.features.model_dump(mode="json")}
        )
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
            {"optuna_best_valid_auc": tuning.best_value, "optuna_trials": tuning.trials, "optuna_pruned": tuning.pruned}
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
        tracking.set_alias(CHURN_MODEL_NAME, tracking.CHALLENGER, version)
        promoted, champion_version, decision = _promotion(
            CHURN_MODEL_NAME,
            version,
            test,
            metrics[f"test_{cfg.promotion_metric}"],
            cfg.promotion_metric,
            cfg.promotion_margin,
        )
        if promoted:
            tracking.set_alias(CHURN_MODEL_NAME, tracking.CHAMPION, version)
        mlflow.set_tags({"crmscore.promoted": str(promoted), "crmscore.decision": decision})
        run_id = run.info.run_id
    seconds = time.perf_counter() - started
    log.info("churn model version %s: %s (%.0f s)", version, decision, seconds)
    return TrainResult(CHURN_MODEL_NAME, version, run_id, metrics, promoted, champion_version, decision, seconds)


def _promotion(
    name: str, version: int, holdout, challenger_score: float, metric: str, margin: float
) -> tuple[bool, int | None, str]:
    """Decide whether the new version replaces the champion, judged on the same holdout."""
    from crmscore import tracking
    from crmscore.evaluation import classification_metrics

    current = tracking.version_by_alias(name, tracking.CHAMPION)
    if current is None:
        return True, None, "promoted: no champion yet"
    try:
        estimator = tracking.load_model(name, version=current.version).unwrap_python_model().estimator
        p = estimator.predict_proba(holdout.X)[:, 1]
        champion_score = classification_metrics(holdout.y.to_numpy().astype(int), p)[metric]
    except Exception as exc:  # a champion built on other features cannot be judged here
        return False, int(current.version), f"kept champion v{current.version}: it cannot score this holdout ({exc})"
    lower_is_better = metric in {"log_loss", "brier"}
    gain = (champion_score - challenger_score) if lower_is_better else (challenger_score - champion_score)
    verdict = f"{metric} {challenger_score:.4f} vs champion v{current.version} {champion_score:.4f} (margin {margin})"
    if gain >= margin:
        return True, int(current.version), f"promoted: {verdict}"
    return False, int(current.version), f"kept champion: {verdict}"
