"""The ``crmscore`` command: thin wrappers around :mod:`crmscore.stages`.

Every command that reads settings takes ``--params PATH`` (default ``./params.yaml``). A problem the
user can fix (bad parameter, unreadable file, missing column, unreachable tracking server) prints one
line ``error: …`` to stderr and exits with code 2, without a traceback.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from crmscore import __version__
from crmscore.config import DEFAULT_PARAMS_PATH, Settings, load_settings, settings_from_dict
from crmscore.errors import CrmscoreError

app = typer.Typer(
    name="crmscore",
    help="Churn, customer-lifetime-value and segment models for CRM data, tracked in MLflow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

F = TypeVar("F", bound=Callable[..., Any])

ParamsOption = Annotated[
    Path,
    typer.Option("--params", help="Parameter file (every knob of the project).", show_default=True),
]


def _friendly(func: F) -> F:
    """Turn a :class:`CrmscoreError` into one line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except CrmscoreError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


def _settings(params: Path, overrides: dict[str, Any] | None = None) -> Settings:
    # Without a params.yaml in the working directory the built-in defaults (equal to the shipped
    # file) apply, so `crmscore simulate` works anywhere; an explicit --params must exist.
    if params == DEFAULT_PARAMS_PATH and not params.exists():
        return settings_from_dict(overrides or {}, source="built-in defaults")
    return load_settings(params, overrides)


def _print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) if rows else len(c) for c in columns}
    typer.echo("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        typer.echo("  ".join(str(r[c]).ljust(widths[c]) for c in columns))


#: Feature checks of a scoring printed as warning lines; the rest are counted and left to the manifest.
_SHOWN_CHECKS = 5


def _print_feature_checks(manifest: dict[str, Any], folder: Path) -> None:
    """One ``warning: …`` line (stderr) per feature the scoring's checks report, most severe first."""
    from crmscore.feature_checks import check_message

    checks = manifest.get("feature_checks") or []
    for entry in checks[:_SHOWN_CHECKS]:
        typer.echo(f"warning: {check_message(entry)}", err=True)
    if len(checks) > _SHOWN_CHECKS:
        typer.echo(f"warning: … and {len(checks) - _SHOWN_CHECKS} more in {folder / 'manifest.json'}", err=True)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"crmscore {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", help="Show the version and exit.", is_eager=True, callback=_show_version)
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress to stderr.")] = False,
) -> None:
    """crmscore: CRM churn, CLV and segment models, tracked in MLflow, with batch scoring."""
    # Plots are written to files, never shown: no window, whatever display the shell has. (The stages
    # themselves leave the backend alone, so a notebook keeps showing its figures inline.)
    os.environ.setdefault("MPLBACKEND", "Agg")
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
    )


@app.command()
@_friendly
def simulate(
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for the tables and truth.parquet (default paths.simulated_dir)."),
    ] = None,
    customers: Annotated[
        int | None, typer.Option("--customers", min=1, help="Customers (default simulate.customers).")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="Random seed (default simulate.seed).")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="parquet or csv (default simulate.format).")] = None,
    truth_as_of: Annotated[
        str | None, typer.Option("--truth-as-of", help="As-of date of truth.parquet, YYYY-MM-DD.")
    ] = None,
    params: ParamsOption = DEFAULT_PARAMS_PATH,
) -> None:
    """Write the embedded synthetic CRM data: customers, transactions, payments, interactions, campaigns, truth."""
    from crmscore.stages import simulate_stage

    overrides: dict[str, Any] = {}
    if fmt is not None:
        overrides["format"] = fmt
    if truth_as_of is not None:
        overrides["truth_as_of"] = truth_as_of
    settings = _settings(params, {"simulate": overrides} if overrides else None)
    result = simulate_stage(settings, out_dir=out, customers=customers, seed=seed)
    for name, path in result.paths.items():
        typer.echo(f"{name:<14} {result.rows[name]:>12,} rows  {path}")
    typer.echo(f"simulated in {result.seconds:.1f} s")


@app.command()
@_friendly
def validate(
    input_dir: Annotated[
        str,
        typer.Option("--input", help="Folder with the input tables, or a database URL (duckdb:///…, postgresql://…)."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder for rejects/ and validation.json.")],
    max_date: Annotated[
        str | None,
        typer.Option("--max-date", help="Reject rows dated after this day (default data.max_date or today)."),
    ] = None,
    params: ParamsOption = DEFAULT_PARAMS_PATH,
) -> None:
    """Check the input tables against the data contract; write rejected rows with their reason."""
    from crmscore.data.plausibility import check_reject_shares
    from crmscore.stages import validate_stage

    settings = _settings(params, {"data": {"max_date": max_date}} if max_date else None)
    loaded = validate_stage(settings, input_dir, out, check=False)
    _print_validation(loaded)
    typer.echo(f"rejects written to {out / 'rejects'}")
    check_reject_shares(loaded.reports, settings.data.checks)  # after the summary, so the counts are shown


def _print_validation(loaded: Any) -> None:
    rows = [
        {"table": r.table, "in": f"{r.rows_in:,}", "kept": f"{r.rows_kept:,}", "rejected": f"{r.rows_rejected:,}"}
        for r in loaded.reports.values()
    ]
    rows = [
        {**row, "warnings": f"{sum(r.warnings.values()):,}"}
        for row, r in zip(rows, loaded.reports.values(), strict=True)
    ]
    _print_table(rows, ["table", "in", "kept", "rejected", "warnings"])
    for r in loaded.reports.values():
        for reason, count in r.reasons.items():
            typer.echo(f"  {r.table}: {count:,} × {reason}")
        for reason, count in r.warnings.items():
            typer.echo(f"  {r.table}: {count:,} kept but flagged: {reason}")
    if loaded.snapshot_date is not None:
        typer.echo(f"snapshot data as of {loaded.snapshot_date.date()} (data.snapshot_date)")
    if loaded.attributes:
        typer.echo("customer attributes (what the models see):")
        rows = [
            {
                "column": a["column"],
                "type": a["type"] + (" (declared)" if a["declared"] else ""),
                "distinct": f"{a['distinct']:,}",
                "missing": f"{a['missing_share']:.1%}",
                "role": a["role"],
                "note": a["note"],
            }
            for a in loaded.attributes
        ]
        _print_table(rows, ["column", "type", "distinct", "missing", "role", "note"])


@app.command()
@_friendly
def run(
    input_dir: Annotated[
        str | None,
        typer.Option(
            "--input",
            help="Folder with your tables or a database URL (default data.input_dir or data.sql.url; none = simulate).",
        ),
    ] = None,
    params: ParamsOption = DEFAULT_PARAMS_PATH,
) -> None:
    """Run the main job: simulate when no input is given, validate, train and register all models, score."""
    from crmscore.stages import run_main_job

    settings = _settings(params)
    result = run_main_job(settings, input_dir)
    if result.simulated is not None:
        typer.echo(
            f"simulated {result.simulated.rows['customers']:,} customers into {result.simulated.out_dir} "
            f"({result.simulated.seconds:.1f} s)"
        )
    _print_validation(result.loaded)
    typer.echo(f"validation results: {result.validation_dir}")
    for trained in (result.churn, result.clv, result.segments, result.uplift):
        if trained is not None:
            _print_training(trained)
    for role, why in result.failures.items():
        typer.echo(f"{role} model not trained: {why}")
    if result.scores is not None:
        typer.echo(f"scored {result.scores.scored:,} customers: {result.scores.out_dir / 'scores.parquet'}")
        _print_feature_checks(result.scores.manifest, result.scores.out_dir)
    if result.plan is not None:
        typer.echo(
            f"retention plan: contact {result.plan.contacted:,} customers for an expected incremental profit of "
            f"{result.plan.expected_profit:,.0f} ({result.plan.out_dir / 'plan.csv'})"
        )
    if result.monitoring is not None:
        typer.echo(f"track record: {result.monitoring.verdict} ({result.monitoring.out_dir / 'performance.parquet'})")
    if result.report is not None:
        typer.echo(f"review report: {result.report.path} (open it in a browser)")
    from crmscore.tracking import tracking_uri

    typer.echo(f"MLflow runs and models: {tracking_uri(settings.paths.models_dir)} (open the UI: `crmscore ui`)")


train_app = typer.Typer(help="Train a model, track it in MLflow and register it.", no_args_is_help=True)
promote_app = typer.Typer(help="Make a registered model version the champion by hand.", no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(promote_app, name="promote")

InputOption = Annotated[
    str | None,
    typer.Option(
        "--input",
        help="Folder with the input tables, or a database URL such as duckdb:///warehouse.duckdb or "
        "postgresql://user@host:5432/db (password from data.sql.password_env) (default data.input_dir or "
        "data.sql.url, else the simulated data).",
    ),
]


def _print_training(result) -> None:
    typer.echo(f"{result.model_name} version {result.version} (run {result.run_id}) in {result.seconds:.0f} s")
    shown = [
        "cv_roc_auc",
        "cv_roc_auc_se",
        "test_roc_auc",
        "test_empc",
        "test_empc_fraction",
        "test_pr_auc",
        "test_brier",
        "test_ece",
        "test_lift_10",
        "baseline_test_roc_auc",
        "baseline_test_empc",
        "ml_test_gini",
        "btyd_test_gini",
        "ml_test_spearman",
        "btyd_test_spearman",
        "ml_test_bias",
        "btyd_test_bias",
        "ml_test_top_decile_capture",
        "btyd_test_top_decile_capture",
        "clv_total",
        "clv_mean",
        "segments",
        "r2",
        "test_qini",
        "test_auuc",
        "test_uplift_at_10",
        "test_uplift_at_20",
        "test_uplift_at_30",
        "test_ate",
        "test_mean_predicted_uplift",
    ]
    for key in shown:
        if key in result.metrics:
            typer.echo(f"  {key:<30} {result.metrics[key]:.4f}")
    for note in result.notes:
        typer.echo(f"  note: {note}")
    typer.echo(f"  {result.decision}")


@train_app.command("churn")
@_friendly
def train_churn(input_dir: InputOption = None, params: ParamsOption = DEFAULT_PARAMS_PATH) -> None:
    """Train the churn model (baseline + tuned, calibrated LightGBM) and register it as crmscore-churn."""
    from crmscore.stages import train_churn_stage

    _print_training(train_churn_stage(_settings(params), input_dir))


@train_app.command("clv")
@_friendly
def train_clv(input_dir: InputOption = None, params: ParamsOption = DEFAULT_PARAMS_PATH) -> None:
    """Train the CLV models (LightGBM and BG/NBD × Gamma-Gamma, compared on a holdout), register as crmscore-clv."""
    from crmscore.stages import train_clv_stage

    _print_training(train_clv_stage(_settings(params), input_dir))


@train_app.command("segments")
@_friendly
def train_segments(input_dir: InputOption = None, params: ParamsOption = DEFAULT_PARAMS_PATH) -> None:
    """Fit the decision-tree segments on the champions' CLV / churn and register them as crmscore-segments."""
    from crmscore.stages import train_segments_stage

    _print_training(train_segments_stage(_settings(params), input_dir))


@train_app.command("uplift")
@_friendly
def train_uplift(input_dir: InputOption = None, params: ParamsOption = DEFAULT_PARAMS_PATH) -> None:
    """Learn who stays because of a retention offer (T, X, DR learners on past campaigns); register crmscore-uplift."""
    from crmscore.stages import train_uplift_stage

    _print_training(train_uplift_stage(_settings(params), input_dir))


VersionOption = Annotated[int, typer.Option("--version", min=1, help="Registered version to make champion.")]


def _promote(model_name: str, version: int, params: Path) -> None:
    from crmscore import tracking

    settings = _settings(params)
    tracking.configure(settings.paths.models_dir, settings.tracking.experiment)
    tracking.promote(model_name, version)
    typer.echo(f"{model_name} version {version} is now the champion")


@promote_app.command("churn")
@_friendly
def promote_churn(version: VersionOption, params: ParamsOption = DEFAULT_PARAMS_PATH) -> None:
    """Point the champion alias of crmscore-churn at --version."""
    from crmscore.tracking import CHURN_MODEL_NAME

    _promote(CHURN_MODEL_NAME, version, params)


@promote_app.command("clv")
@_friendly
def promote_clv(version: VersionOption, params: ParamsOption = DEFAULT_PARAMS_PATH) -> None:
    """Point the champion alias of crmscore-clv at --version."""
    from crmscore.tracking import CLV_MODEL_NAME

    _promote(CLV_MODEL_NAME, version, params)


@promote_app.command("segments")
@_friendly
def promote_segments(version: VersionOption, params: ParamsOption = DEFAULT_PARAMS_PATH) -> None:
    """Point the champion alias of crmscore-segments at --version."""
    from crmscore.tracking import SEGMENTS_MODEL_NAME

    _promote(SEGMENTS_MODEL_NAME, version, params)


@promote_app.command("uplift")
@_friendly
def promote_uplift(version: VersionOption, params: ParamsOption = DEFAULT_PARAMS_PATH) -> None:
    """Point the champion alias of crmscore-uplift at --version."""
    from crmscore.tracking import UPLIFT_MODEL_NAME

    _promote(UPLIFT_MODEL_NAME, version, params)


def _as_of_date(as_of: str | None) -> dt.date | None:
    """``--as-of`` as a date (None when not given); a one-line error when it is not YYYY-MM-DD."""
    from crmscore.errors import SettingsError

    if as_of is None:
        return None
    try:
        return dt.date.fromisoformat(as_of)
    except ValueError:
        raise SettingsError(f"--as-of: expected a date as YYYY-MM-DD, got {as_of!r}") from None


@app.command()
@_friendly
def plan(
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Plan on the scoring of this date (YYYY-MM-DD); default the data's last day."),
    ] = None,
    budget: Annotated[
        float | None,
        typer.Option("--budget", min=0, help="Total contact cost to spend (default plan.budget; none: no limit)."),
    ] = None,
    cost: Annotated[
        float | None,
        typer.Option(
            "--cost", min=0, help="Cost of one contact (default plan.contact_cost, else the campaigns' mean)."
        ),
    ] = None,
    input_dir: InputOption = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default plan.out_dir); one as_of=DATE folder a run.")
    ] = None,
    params: ParamsOption = DEFAULT_PARAMS_PATH,
) -> None:
    """Whom to contact: customers ranked by expected incremental value (uplift × CLV − cost), within the budget."""
    from crmscore.stages import input_last_day, plan_stage

    settings = _settings(params)
    when = _as_of_date(as_of)
    if when is None:
        when = input_last_day(input_dir, settings)
    result = plan_stage(settings, when, budget, cost, input_dir, out_dir)
    m = result.manifest
    low, high = result.interval
    interval = f" (95 % interval {low:,.0f} to {high:,.0f})" if low is not None and high is not None else ""
    typer.echo(
        f"plan as of {m['as_of']}: contact {result.contacted:,} of {m['customers_scored']:,} customers "
        f"at {m['contact_cost']:,.2f} each, spending {result.spent:,.0f}"
        + (f" of {m['budget']:,.0f}" if m["budget"] is not None else "")
    )
    typer.echo(f"  expected incremental profit {result.expected_profit:,.0f}{interval}")
    best = m["best_unconstrained"]
    typer.echo(
        f"  {m['customers_worth_contacting']:,} customers are worth contacting; without a budget the most "
        f"profit is {best['expected_profit']:,.0f} from {best['contacted']:,} contacts"
    )
    typer.echo(f"plan: {result.out_dir / 'plan.csv'}")


@app.command()
@_friendly
def score(
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Score the customers as of this date (YYYY-MM-DD); default the data's last day (the last "
            "transaction, or the snapshot date of customers-only data).",
        ),
    ] = None,
    input_dir: InputOption = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default scoring.out_dir); one as_of=DATE folder a run.")
    ] = None,
    model_version: Annotated[
        list[str] | None,
        typer.Option("--model-version", help="Pin a version instead of the champion, e.g. churn=3 (repeatable)."),
    ] = None,
    engine: Annotated[
        str, typer.Option("--engine", help="local (this machine) or spark (needs pip install 'crmscore[spark]').")
    ] = "local",
    master: Annotated[
        str | None, typer.Option("--master", help="Spark master URL with --engine spark (default local[*]).")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Processes scoring chunks side by side, this one included (default scoring.workers; unset: one "
            "per core the process may use; 1: this one alone). Same results for any number.",
        ),
    ] = None,
    output_url: Annotated[
        str | None,
        typer.Option(
            "--output-url",
            help="Also write the scores into this database (duckdb:///…, postgresql://user@host/db; password from "
            "scoring.sink.password_env), atomically: staging tables swapped in one transaction "
            "(default scoring.sink.url).",
        ),
    ] = None,
    table: Annotated[
        str | None,
        typer.Option(
            "--table",
            help="Scores table in that database (default scoring.sink.table); reasons go to <table>_reasons, "
            "each run to crmscore_runs.",
        ),
    ] = None,
    params: ParamsOption = DEFAULT_PARAMS_PATH,
) -> None:
    """Score every customer: churn risk, CLV, tier, segment, stage, action and top reasons, written atomically."""
    from crmscore.errors import SettingsError
    from crmscore.stages import score_stage

    if engine not in {"local", "spark"}:
        raise SettingsError(f"--engine: expected local or spark, got {engine!r}")
    if master is not None and engine != "spark":
        raise SettingsError("--master: only with --engine spark")
    if workers is not None and engine != "local":
        raise SettingsError("--workers: only with --engine local (Spark's cores come from --master)")

    when = _as_of_date(as_of)
    versions: dict[str, int] = {}
    for item in model_version or []:
        role, _, number = item.partition("=")
        if role not in {"churn", "clv", "segments", "uplift"} or not number.isdigit():
            raise SettingsError(f"--model-version: expected churn=N, clv=N, segments=N or uplift=N, got {item!r}")
        versions[role] = int(number)
    if engine == "spark":
        from crmscore.data.sql import is_database_url
        from crmscore.spark import DEFAULT_MASTER, require_pyspark

        if is_database_url(input_dir) or output_url is not None:
            raise SettingsError("--engine spark: reads and writes files; use --engine local with a database")

        require_pyspark()  # a one-line error when pyspark is missing, before any model loads
        from crmscore.data.stream import last_event_date
        from crmscore.spark import score_stage_spark

        settings = _settings(params)
        if when is None:
            when = last_event_date(input_dir or settings.data.input_dir or settings.paths.simulated_dir, settings.data)
        result = score_stage_spark(settings, when, input_dir, out_dir, versions, master or DEFAULT_MASTER)
    else:
        settings = _settings(params)
        if workers is not None:
            scoring = settings.scoring.model_copy(update={"workers": workers})
            settings = settings.model_copy(update={"scoring": scoring})
        result = score_stage(settings, when, input_dir, out_dir, versions, output_url=output_url, output_table=table)
    manifest = result.manifest
    typer.echo(
        f"scored {result.scored:,} customers as of {manifest['as_of']} in {manifest['seconds']['total']:.1f} s "
        f"({manifest['customers_per_second']:,.0f} customers/s)"
    )
    for role, model in manifest["models"].items():
        typer.echo(f"  {role:<9} {model['name']} v{model['version']}")
    for role, why in manifest.get("models_missing", {}).items():
        if role not in ("segments", "uplift"):
            typer.echo(f"  {role:<9} not scored (its columns are empty): {why}")
    rejected = sum(result.rejected.values())
    typer.echo(f"  rejected rows: {rejected:,}" + (f" (see {result.out_dir / 'rejects'})" if rejected else ""))
    typer.echo(f"scores: {result.out_dir / 'scores.parquet'}")
    if result.warehouse is not None:
        w = result.warehouse
        typer.echo(
            f"scores in {w.database}: {w.table} ({w.rows:,} rows as of {w.as_of}), {w.reasons_table} "
            f"({w.reasons:,} rows), crmscore_runs"
        )
    _print_feature_checks(manifest, result.out_dir)


@app.command()
@_friendly
def evaluate(
    input_dir: Annotated[
        str, typer.Option("--input", help="Folder (or database URL) with the labelled tables to evaluate on.")
    ],
    model: Annotated[str, typer.Option("--model", help="churn or clv.")] = "churn",
    version: Annotated[
        int | None, typer.Option("--version", min=1, help="Registered version (default the champion).")
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default <paths.reports_dir>/evaluation).")
    ] = None,
    params: ParamsOption = DEFAULT_PARAMS_PATH,
) -> None:
    """Evaluate a registered model on a labelled file of your own: the training run's metrics and plots."""
    from crmscore.stages import evaluate_stage

    result = evaluate_stage(_settings(params), input_dir, model=model, version=version, out_dir=out_dir)
    typer.echo(
        f"{result.model_name} v{result.version} on {result.customers:,} customers as of {result.as_of.date()} "
        f"(MLflow run {result.run_id})"
    )
    for key, value in result.metrics.items():
        if key not in ("eval_customers", "eval_n"):
            typer.echo(f"  {key.removeprefix('eval_'):<22} {value:.4f}")
    typer.echo(f"evaluation: {result.out_dir}")


@app.command()
@_friendly
def report(
    compare: Annotated[
        tuple[str, str],
        typer.Option(
            "--compare",
            help="Two model versions to compare: aliases or version numbers (e.g. champion challenger, or 3 4).",
        ),
    ] = ("champion", "challenger"),
    input_dir: InputOption = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for the HTML file (default <paths.reports_dir>/review)."),
    ] = None,
    params: ParamsOption = DEFAULT_PARAMS_PATH,
) -> None:
    """Write the model review report of the latest scoring (one self-contained HTML file) and log it to MLflow."""
    from crmscore.report import report_stage

    result = report_stage(_settings(params), compare=compare, input_dir=input_dir, out_dir=out_dir)
    if result.drifted:
        typer.echo(f"drifted features (PSI > 0.2): {', '.join(result.drifted)}")
    typer.echo(f"logged to MLflow run {result.run_id}")
    typer.echo(str(result.path))


@app.command()
@_friendly
def monitor(
    input_dir: InputOption = None,
    scores: Annotated[
        Path | None,
        typer.Option("--scores", help="Folder of the past scorings, as_of=DATE/ (default scoring.out_dir)."),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Folder for performance.parquet and track_record.json (default monitoring.out_dir)."
        ),
    ] = None,
    params: ParamsOption = DEFAULT_PARAMS_PATH,
) -> None:
    """The track record: did past scorings come true, and what do the open ones promise?"""
    import pandas as pd

    from crmscore.stages import monitor_stage

    result = monitor_stage(_settings(params), input_dir, scores, out_dir)
    perf = result.performance
    rows = []
    for item in result.scorings:
        mine = perf.loc[perf["as_of"] == pd.Timestamp(item["as_of"])]
        rows.append(
            {
                "as_of": item["as_of"],
                "churn": item["status"].get("churn", "-"),
                "AUC": _metric(mine, "churn", "roc_auc", "realized"),
                "AUC est.": _metric(mine, "churn", "roc_auc", "estimated"),
                "churn rate": _metric(mine, "churn", "churn_rate", "realized"),
                "predicted": _metric(mine, "churn", "churn_rate", "estimated"),
                "clv": item["status"].get("clv", "-"),
                "gini": _metric(mine, "clv", "gini", "realized"),
                "flags": ", ".join(item["flags"]) or "-",
            }
        )
    _print_table(rows, list(rows[0]) if rows else ["as_of"])
    for item in result.scorings:
        if item["customers_missing"]:
            typer.echo(
                f"warning: {item['as_of']}: {item['customers_missing']:,} scored customers are missing from the "
                "current data (counted, not evaluated)",
                err=True,
            )
    typer.echo(result.verdict)
    if result.mlflow_runs:
        typer.echo("logged to MLflow: " + ", ".join(f"{m} run {r}" for m, r in result.mlflow_runs.items()))
    typer.echo(f"track record: {result.out_dir / 'performance.parquet'}")


def _metric(rows: Any, model: str, metric: str, kind: str) -> str:
    hit = rows.loc[(rows["model"] == model) & (rows["metric"] == metric) & (rows["kind"] == kind), "value"]
    return f"{hit.iloc[0]:.3f}" if len(hit) and hit.iloc[0] == hit.iloc[0] else "-"


@app.command()
@_friendly
def ui(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port of the MLflow UI.")] = 5000,
    params: ParamsOption = DEFAULT_PARAMS_PATH,
) -> None:
    """Start the MLflow UI on the project's tracking store (Ctrl+C stops it)."""
    from crmscore.tracking import tracking_uri, ui_command

    settings = _settings(params)
    models_dir = Path(settings.paths.models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    typer.echo(f"MLflow UI for {tracking_uri(models_dir)} at http://{host}:{port}")
    sys.stdout.flush()
    # Become the MLflow UI process, so stopping this command (Ctrl+C, a signal) stops the server.
    command = ui_command(models_dir, host=host, port=port)
    os.execv(command[0], command)


@app.command("params")
@_friendly
def show_params(params: ParamsOption = DEFAULT_PARAMS_PATH) -> None:
    """Validate the parameter file and print the settings in effect (with defaults filled in)."""
    import yaml

    settings = _settings(params)
    typer.echo(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False).rstrip())
    typer.echo(f"# fingerprint {settings.fingerprint()}, checked {dt.date.today().isoformat()}")


if __name__ == "__main__":  # pragma: no cover
    app()
