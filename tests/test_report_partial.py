"""The model review report of a partial model set: churn without CLV, CLV without churn, neither.

The data may allow only some models (a customer snapshot without revenue gives no CLV; a transaction log
may give CLV while churn fails), and the scoring then leaves the missing model's columns null and names it
under ``models_missing`` in its manifest. One small workspace is built per module, quickly: 1,500 simulated
customers, a churn model of 40 trees (untuned) and a BG/NBD × Gamma-Gamma CLV model registered straight from their
datasets (no tuning), and scoring folders written by hand with the columns a partial scoring leaves null.
Which model is missing is chosen by taking its ``champion`` alias away for the report.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from tests.conftest import mlflow_workspace, workspace_settings

from crmscore import churn, tiers, tracking
from crmscore.clv import ml as clv_ml
from crmscore.clv.value import BtydClv
from crmscore.config import Settings
from crmscore.data.load import load_tables
from crmscore.errors import DataError
from crmscore.report import REPORT_SECTIONS, plot_tier_distribution, report_stage, tiers_section
from crmscore.stages import simulate_stage
from crmscore.tracking import CHURN_MODEL_NAME, CLV_MODEL_NAME

AS_OF = "2026-10-31"
CLV_NOT_TRAINED = "BG/NBD: the fit did not converge (too few repeat buyers)"
CLV_NOT_SCORED = "no champion of crmscore-clv is registered: run `crmscore train clv`"
CHURN_NOT_TRAINED = "LightGBM: the validation split holds no churner"
CHURN_NOT_SCORED = "no churn label: the customers table has neither status nor transactions"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclasses.dataclass
class Partial:
    root: Path
    settings: Settings
    run_ids: dict[str, str]
    test_as_of: dict[str, str]
    without_clv: str
    without_churn: str


def _register(model, name: str, example: pd.DataFrame, test_as_of: pd.Timestamp, kind: str, output: str) -> str:
    """Log ``model`` as version 1 of ``name`` in a run of its own, make it champion; return the run id."""
    with mlflow.start_run(run_name=name) as run:
        mlflow.log_params({"split.test_as_of": str(test_as_of.date())})
        version = tracking.log_estimator(model, name, example, output=output, kind=kind)
        run_id = run.info.run_id
    if name == CLV_MODEL_NAME:
        tracking.client().set_model_version_tag(name, str(version), "crmscore.clv_model", "btyd")
    tracking.set_alias(name, tracking.CHAMPION, version)
    return run_id


def _write_scoring(
    out_dir: Path,
    customers: pd.DataFrame,
    *,
    churn_version: int,
    clv_version: int,
    run_ids: dict[str, str],
    missing: dict[str, str],
    untiered: int = 0,
) -> Path:
    """A scoring folder as the scoring writes it when a model is missing: its columns null, its version 0,
    and the manifest's ``models_missing`` saying why."""
    folder = out_dir / f"as_of={AS_OF}"
    folder.mkdir(parents=True)
    ids = customers.loc[customers["signup_date"] <= pd.Timestamp(AS_OF), "customer_id"].to_numpy()
    n = len(ids)
    rng = np.random.default_rng(5)
    p = rng.uniform(0.0, 1.0, n) if churn_version else np.full(n, np.nan)
    band = (
        pd.cut(p, [-0.1, 0.3, 0.6, 1.1], labels=list(tiers.RISK_BANDS)).astype(object)
        if churn_version
        else np.full(n, None, dtype=object)
    )
    spend = rng.gamma(0.6, 400.0, n) if clv_version else np.full(n, np.nan)
    tier = rng.choice(list(tiers.TIERS), size=n).astype(object)
    tier[:untiered] = None
    scores = pd.DataFrame(
        {
            "customer_id": ids,
            "as_of": pd.Timestamp(AS_OF),
            "churn_probability": p,
            "risk_band": band,
            "expected_spend": spend,
            "clv": spend * 0.3,
            "points": rng.integers(0, 100, n).astype(float),
            "tier": tier,
            "segment_id": 0,
            "segment": "",
            "lifecycle_stage": "active",
            "value_at_risk": spend * 0.3 * p,
            "action": np.where(pd.isna(band), None, "keep in touch").astype(object),
            "churn_model_version": churn_version,
            "clv_model_version": clv_version,
            "segments_model_version": 0,
        }
    )
    scores.to_parquet(folder / "scores.parquet", index=False)
    tiered = scores.dropna(subset=["tier"])
    current = pd.Series(tiered["tier"].to_numpy(), index=tiered["customer_id"].to_numpy())
    tiers.tier_migration(pd.Series([], dtype=object), current).to_csv(folder / "tier_migration.csv")
    versions = {"churn": (CHURN_MODEL_NAME, churn_version), "clv": (CLV_MODEL_NAME, clv_version)}
    manifest = {
        "as_of": AS_OF,
        "models": {
            role: {"name": name, "version": version, "run_id": run_ids[role]}
            for role, (name, version) in versions.items()
            if version
        },
        "models_missing": missing,
        "scored": n,
        "previous_scoring": None,
        "tiers": {"method": "scorecard"},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out_dir


@contextlib.contextmanager
def _without_champion(*names: str) -> Iterator[None]:
    """The registered models ``names`` without their champion alias while inside."""
    client = tracking.client()
    for name in names:
        client.delete_registered_model_alias(name, tracking.CHAMPION)
    try:
        yield
    finally:
        for name in names:
            tracking.set_alias(name, tracking.CHAMPION, 1)


@pytest.fixture(scope="module")
def partial(tmp_path_factory) -> Iterator[Partial]:
    root = tmp_path_factory.mktemp("report_partial")
    with mlflow_workspace(root):
        settings = workspace_settings(
            root,
            churn={"train_cutoffs": 1, "cv_folds": 2, "tuning": {"max_trees": 40}},
            clv={"train_cutoffs": 1},
            scoring={"out_dir": str(root / "scores")},
        )
        simulate_stage(settings)
        tables = load_tables(settings.paths.simulated_dir, settings.data).tables
        tracking.configure(settings.paths.models_dir, settings.tracking.experiment)

        _, splits = churn.churn_datasets(tables, settings.churn, settings.features)
        churn_test = splits["test"]
        train, valid = splits["train"], splits["valid"]
        churn_model = churn.model_from_settings(settings.churn).fit(train.X, train.y, valid.X, valid.y)
        churn_run = _register(
            churn_model,
            CHURN_MODEL_NAME,
            churn_test.X.head(5),
            churn_test.as_of.iloc[0],
            "proba",
            "churn_probability",
        )
        clv_test = clv_ml.clv_datasets(tables, settings.clv, settings.features)["test"]
        btyd_model = BtydClv(transaction_model="bgnbd", time_unit=settings.clv.time_unit).fit(clv_test.X)
        buyers = clv_test.X.loc[clv_test.X["repeat_purchase_days"].notna()]
        clv_run = _register(
            btyd_model, CLV_MODEL_NAME, buyers.head(5), clv_test.as_of.iloc[0], "value", "expected_spend"
        )
        run_ids = {"churn": churn_run, "clv": clv_run}
        test_as_of = {"churn": str(churn_test.as_of.iloc[0].date()), "clv": str(clv_test.as_of.iloc[0].date())}

        customers = tables["customers"]
        no_clv = _write_scoring(
            root / "scores_without_clv",
            customers,
            churn_version=1,
            clv_version=0,
            run_ids=run_ids,
            missing={"clv": CLV_NOT_SCORED},
        )
        with _without_champion(CLV_MODEL_NAME):
            without_clv = report_stage(
                settings,
                scores_dir=no_clv,
                out_dir=root / "review_without_clv",
                not_trained={"clv": CLV_NOT_TRAINED, "churn": CHURN_NOT_TRAINED},
            )
        no_churn = _write_scoring(
            root / "scores_without_churn",
            customers,
            churn_version=0,
            clv_version=1,
            run_ids=run_ids,
            missing={"churn": CHURN_NOT_SCORED},
            untiered=40,
        )
        with _without_champion(CHURN_MODEL_NAME):
            without_churn = report_stage(settings, scores_dir=no_churn, out_dir=root / "review_without_churn")
        yield Partial(
            root,
            settings,
            run_ids,
            test_as_of,
            without_clv.path.read_text(encoding="utf-8"),
            without_churn.path.read_text(encoding="utf-8"),
        )


def _section(page: str, section_id: str) -> str:
    match = re.search(rf'<section id="{section_id}"><h2>[^<]*</h2>(.*?)</section>', page, flags=re.S)
    assert match, f"no section {section_id}"
    return match.group(1)


def _fact(page: str, label: str) -> str | None:
    match = re.search(rf"<tr><th>{re.escape(label)}</th><td>(.*?)</td></tr>", _section(page, "summary"))
    return None if match is None else match.group(1)


def _images_decode(page: str) -> int:
    images = re.findall(r'<img src="([^"]*)"', page)
    for src in images:
        assert src.startswith("data:image/png;base64,"), src[:60]
        data = base64.b64decode(src.removeprefix("data:image/png;base64,"), validate=True)
        assert data.startswith(PNG_SIGNATURE)
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    return len(images)


# --- churn without CLV ----------------------------------------------------------------------------------------


def test_without_clv_every_section_is_there_and_the_page_is_whole(partial):
    page = partial.without_clv
    assert re.findall(r'<section id="(\w+)">', page) == list(REPORT_SECTIONS)
    assert "Traceback" not in page and page.rstrip().endswith("</html>")
    assert _images_decode(page) >= 8  # churn curves, tier distribution and matrix, migration, drift
    # No `crmscore monitor` yet and one scoring: the track record says so in words instead of staying empty.
    track = _section(page, "track_record")
    assert "No track record yet" in track and f"there is one so far (as of {AS_OF})" in track


def test_without_clv_the_clv_section_is_a_note_with_the_reason(partial):
    clv = _section(partial.without_clv, "clv")
    assert clv.startswith(f'<p class="note">No CLV model: {CLV_NOT_TRAINED}.</p>')
    assert "crmscore-clv has no version &#x27;champion&#x27; (aliases set: none). There is nothing to evaluate." in clv
    assert "<img" not in clv and "<table" not in clv


def test_without_clv_the_summary_lists_the_model_not_trained_and_not_scored(partial):
    page = partial.without_clv
    assert _fact(page, "Models not trained") == f"clv: {CLV_NOT_TRAINED}; churn: {CHURN_NOT_TRAINED}"
    assert _fact(page, "Not scored") == "clv: no champion of crmscore-clv is registered: run `crmscore train clv`"
    assert _fact(page, "Value concentration") == "–"
    assert _fact(page, "Tier method") == "scorecard"
    summary = _section(page, "summary")
    assert f"<code>{partial.run_ids['churn']}</code>" in summary and partial.run_ids["clv"] not in summary


def test_without_clv_churn_tiers_and_drift_show_what_there_is(partial):
    churn_part = _section(partial.without_clv, "churn")
    # Not trained by this run, yet registered before: the section shows that version and says so first.
    assert churn_part.startswith(
        f'<p class="note">This run trained no new churn model: {CHURN_NOT_TRAINED}. '
        "The versions shown were trained earlier.</p>"
    )
    assert "<figcaption>ROC curve</figcaption>" in churn_part and "ROC AUC" in churn_part
    tiers_part = _section(partial.without_clv, "tiers")
    assert "The scoring has no CLV (it used no CLV model)" in tiers_part
    assert "<figcaption>Tier distribution</figcaption>" in tiers_part
    assert "<figcaption>Tier × risk band: customers</figcaption>" in tiers_part and "customers (high)" in tiers_part
    assert "value at risk (" not in tiers_part and "clv_share" not in tiers_part and "Lorenz" not in tiers_part
    assert "high_risk_customers" in tiers_part
    drift = _section(partial.without_clv, "drift")
    assert f"customers as of {partial.test_as_of['churn']} (the test as-of date of crmscore-churn champion v1" in drift


# --- CLV without churn ---------------------------------------------------------------------------------------------


def test_without_churn_the_churn_section_gives_the_reason_of_the_manifest(partial):
    page = partial.without_churn
    assert re.findall(r'<section id="(\w+)">', page) == list(REPORT_SECTIONS)
    assert "Traceback" not in page
    churn_part = _section(page, "churn")
    assert churn_part.startswith(f'<p class="note">No churn model: {CHURN_NOT_SCORED}.</p>')
    assert "<img" not in churn_part
    assert _fact(page, "Not scored") == f"churn: {CHURN_NOT_SCORED}"
    assert _fact(page, "Models not trained") is None  # the main job passed none
    assert _images_decode(page) >= 5


def test_without_churn_clv_tiers_and_drift_show_what_there_is(partial):
    page = partial.without_churn
    clv = _section(page, "clv")
    assert "normalised Gini" in clv and "<td>alpha</td>" in clv and "Holdout tracking" in clv
    assert re.match(r"the top 20 % of customers hold \d+\.\d% of the CLV", _fact(page, "Value concentration"))
    tiers_part = _section(page, "tiers")
    assert "40 of 1,500 scored customers have no tier (the tier method could not rank them)" in tiers_part
    assert re.search(
        r"The top 20 % of customers by CLV hold \d+\.\d% of all predicted value \(total CLV [\d,]+\)\.", tiers_part
    )
    assert "The scoring has no churn risk bands (it used no churn model)" in tiers_part
    assert "Tier × risk band: customers" not in tiers_part and "high_risk_customers" not in tiers_part
    assert "<figcaption>Value concentration (Lorenz curve)</figcaption>" in tiers_part
    drift = _section(page, "drift")
    assert f"customers as of {partial.test_as_of['clv']} (the test as-of date of crmscore-clv champion v1" in drift


# --- neither --------------------------------------------------------------------------------------------------------


def test_neither_churn_nor_clv_is_a_one_line_error(partial):
    with _without_champion(CHURN_MODEL_NAME, CLV_MODEL_NAME), pytest.raises(DataError) as raised:
        report_stage(
            partial.settings,
            scores_dir=partial.root / "scores_without_clv",
            out_dir=partial.root / "review_neither",
            not_trained={"churn": "no churn label\nat all", "clv": CLV_NOT_TRAINED},
        )
    message = str(raised.value)
    assert "\n" not in message
    assert message == (
        f"no churn or CLV model to report on (churn: no churn label at all; clv: {CLV_NOT_TRAINED}): "
        "crmscore-churn has no version 'champion' (aliases set: none); crmscore-clv has no version 'champion' "
        "(aliases set: none); run `crmscore train churn` or `crmscore train clv`, or name another alias or "
        "version number with --compare"
    )
    assert not (partial.root / "review_neither").exists()


# --- the tiers section on its own ------------------------------------------------------------------------------------


def _scores(n: int = 60, **columns) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(n),
            "tier": rng.choice(list(tiers.TIERS), size=n).astype(object),
            "risk_band": rng.choice(list(tiers.RISK_BANDS), size=n).astype(object),
            "clv": rng.gamma(1.0, 100.0, n),
            "churn_probability": rng.uniform(size=n),
        }
    )
    frame["value_at_risk"] = frame["clv"] * frame["churn_probability"]
    for name, value in columns.items():
        frame[name] = value
    return frame


def test_tiers_section_without_any_tier_says_so_and_draws_nothing():
    scores = _scores(tier=pd.Series([None] * 60, dtype=object), clv=np.nan, value_at_risk=np.nan)
    section = tiers_section(scores, pd.DataFrame(), {"previous_scoring": None})
    assert "No scored customer has a tier" in section.body
    assert "No tier migration: no scored customer has a tier." in section.body
    assert "<img" not in section.body


def test_tiers_section_takes_nullable_and_categorical_columns():
    scores = _scores(
        clv=pd.array([None] * 60, dtype="Float64"),
        value_at_risk=pd.array([None] * 60, dtype="Float64"),
    )
    scores["tier"] = pd.Categorical(scores["tier"].where(scores.index >= 6), categories=list(tiers.TIERS))
    migration = tiers.tier_migration(pd.Series([], dtype=object), scores["tier"].dropna().astype(str))
    section = tiers_section(scores, migration, {"previous_scoring": "as_of=2026-07-31"})
    assert "6 of 60 scored customers have no tier" in section.body
    assert "Against the previous scoring (2026-07-31): 0 customers kept their tier" in section.body
    assert "54 are new" in section.body
    assert "customers (medium)" in section.body and "value at risk (" not in section.body


def test_tier_distribution_without_clv_draws_customers_only():
    summary = pd.DataFrame(
        {"customers": [1, 2, 3, 4, 5], "customer_share": [0.1, 0.1, 0.2, 0.2, 0.4]},
        index=pd.Index(list(tiers.TIERS), name="tier"),
    )
    ax = plot_tier_distribution(summary)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["share of customers"]
    assert ax.get_title() == "Tier distribution: customers"
    import matplotlib.pyplot as plt

    plt.close(ax.figure)
