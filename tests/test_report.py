"""The model review report (`crmscore report`): sections, embedded figures, no outside references, MLflow,
one-line errors, and the page as a browser renders it.

One small workspace is built per module: 1,500 simulated customers, churn, CLV and segments trained with
tiny budgets, two scorings (so tier migration has a previous one), then one report written through the
command line with ``--compare champion 2``. The CLV model is pinned to BG/NBD × Gamma-Gamma, so the CLV
champion is version 1 and version 2 (the LightGBM model of the same run) is a real second version to
compare, while the churn model has no version 2: one page shows both the comparison and the plain
statement that there is nothing to compare. The page is then opened in headless Chromium (skipped, with
the reason, only when no Chromium binary exists).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from tests.conftest import mlflow_workspace, workspace_settings, write_params
from typer.testing import CliRunner

from crmscore import monitoring, tracking
from crmscore.churn import ChurnData
from crmscore.cli import app
from crmscore.config import EmpcSettings, Settings
from crmscore.drift import feature_drift
from crmscore.empc import empc, empc_fraction
from crmscore.report import (
    REPORT_SECTIONS,
    Comparison,
    ModelVersion,
    btyd_model_of_run,
    churn_section,
    compare_versions,
    drift_section,
    report_stage,
    run_link,
)
from crmscore.stages import (
    CHURN_MODEL_NAME,
    CLV_MODEL_NAME,
    SEGMENTS_MODEL_NAME,
    score_stage,
    simulate_stage,
    train_churn_stage,
    train_clv_stage,
    train_segments_stage,
)

runner = CliRunner()
LATEST = "2026-10-31"
EARLIER = "2026-07-31"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SCREEN = (1280, 4000)


# --- the shared workspace and its report -------------------------------------------------------------------


class _Page(HTMLParser):
    """Headings, section ids, images, links and every other attribute that could load something."""

    def __init__(self) -> None:
        super().__init__()
        self.h2: list[str] = []
        self.section_ids: list[str] = []
        self.images: list[str] = []
        self.references: list[tuple[str, str, str]] = []
        self.tags: list[str] = []
        self.styles: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        values = dict(attrs)
        if tag == "section":
            self.section_ids.append(values.get("id", ""))
        if tag == "img":
            self.images.append(values.get("src", ""))
        for name, value in attrs:
            if name in ("src", "href", "srcset", "poster", "data", "action", "background") and value is not None:
                self.references.append((tag, name, value))
            if name == "style" and value:
                self.styles.append(value)
        self._in = tag

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        if self._in == "h2":
            self.h2.append(data.strip())
        if self._in == "style":
            self.styles.append(data)


@dataclasses.dataclass
class Workspace:
    root: Path
    settings: Settings
    params: Path
    html_path: Path
    html: str
    page: _Page
    cli_output: str


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    with mlflow_workspace(root) as mp:
        # Logging a model loads it again in a subprocess to list its pip requirements (~5 s a model on a
        # busy machine); the report never reads them, so the workspace takes MLflow's default list.
        mp.setattr(mlflow.models, "infer_pip_requirements", lambda *args, fallback=None, **kwargs: fallback or [])
        budget = {"trials": 1, "timeout_seconds": 600, "max_trees": 60}
        settings = workspace_settings(
            root,
            churn={"train_cutoffs": 1, "tuning": budget},
            clv={"model": "btyd", "train_cutoffs": 1, "tuning": budget},
            scoring={"out_dir": str(root / "reports" / "scores")},
        )
        simulate_stage(settings)
        trained = [train_churn_stage(settings), train_clv_stage(settings), train_segments_stage(settings)]
        assert all(t.promoted for t in trained)
        for as_of in (EARLIER, LATEST):
            score_stage(settings, as_of, progress=False)
        params = write_params(settings, root / "params.yaml")
        result = runner.invoke(app, ["report", "--params", str(params), "--compare", "champion", "2"])
        assert result.exit_code == 0, result.output
        html_path = Path(result.output.strip().splitlines()[-1])
        text = html_path.read_text(encoding="utf-8")
        page = _Page()
        page.feed(text)
        yield Workspace(root, settings, params, html_path, text, page, result.output)


def _one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def _section(ws: Workspace, section_id: str) -> str:
    match = re.search(rf'<section id="{section_id}">(.*?)</section>', ws.html, flags=re.S)
    assert match, f"no section {section_id}"
    return match.group(1)


# --- the page as a file ---------------------------------------------------------------------------------------


def test_cli_writes_one_html_file_under_reports_review_and_prints_its_path(ws):
    assert ws.html_path == ws.root / "reports" / "review" / f"model_review_{LATEST}.html"
    assert sorted(p.name for p in ws.html_path.parent.iterdir()) == [ws.html_path.name]  # no temporary left
    assert ws.cli_output.strip().splitlines()[-1] == str(ws.html_path)
    assert ws.html.startswith("<!DOCTYPE html>")


def test_every_section_has_its_heading_in_order(ws):
    assert ws.page.section_ids == list(REPORT_SECTIONS)
    assert ws.page.h2 == list(REPORT_SECTIONS.values())


def test_every_image_is_an_embedded_png_that_decodes(ws):
    assert len(ws.page.images) >= 15  # churn curves and SHAP, CLV, tree, tiers, drift
    for src in ws.page.images:
        assert src.startswith("data:image/png;base64,"), src[:60]
        data = base64.b64decode(src.removeprefix("data:image/png;base64,"), validate=True)
        assert data.startswith(PNG_SIGNATURE)
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            assert width >= 300 and height >= 200
            pixels = np.asarray(image.convert("L"), dtype=float)
            assert pixels.std() > 5, "a figure should not be a blank image"


def test_nothing_is_loaded_from_outside_the_file(ws):
    for tag, attribute, value in ws.page.references:
        if tag == "a" and attribute == "href":
            assert value.startswith("#"), f"only in-page links with a local tracking store, got {value}"
        else:
            assert value.startswith("data:"), f"<{tag} {attribute}={value[:60]}> is not embedded"
    assert "link" not in ws.page.tags and "script" not in ws.page.tags and "iframe" not in ws.page.tags
    for style in ws.page.styles:
        assert "url(" not in style and "@import" not in style
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", ws.html)


def test_summary_names_the_data_the_scoring_and_the_models_with_their_runs(ws):
    summary = _section(ws, "summary")
    assert "1,500, signed up" in summary
    assert f"as of {LATEST}" in summary and "Previous scoring</th><td>2026-07-31" in summary
    client = tracking.client()
    for name in (CHURN_MODEL_NAME, CLV_MODEL_NAME, SEGMENTS_MODEL_NAME):
        champion = tracking.version_by_alias(name, tracking.CHAMPION)
        assert f"<code>{champion.run_id}</code>" in summary  # a local store: run ids, not links
    assert client.get_model_version(CLV_MODEL_NAME, "2").run_id in summary
    # Every model trained and scored: no line for missing ones, and no section replaced by a note.
    assert "Models not trained" not in summary and "Not scored" not in summary
    assert "No churn model" not in ws.html and "No CLV model" not in ws.html


def test_churn_section_says_plainly_there_is_no_second_version(ws):
    churn = _section(ws, "churn")
    assert "crmscore-churn has no version &#x27;2&#x27;: champion v1 is shown on its own." in churn
    assert "<th>champion v1</th>" in churn and "ROC AUC" in churn and "expected calibration error" in churn
    assert "better" not in churn  # one version: no verdicts
    for caption in ("ROC curve", "Precision-recall curve", "Calibration", "Cumulative gains", "Lift by decile"):
        assert f"<figcaption>{caption}</figcaption>" in churn
    assert "SHAP summary of champion v1" in churn
    assert churn.count("<figcaption>SHAP dependence: ") == 3


def test_churn_section_shows_the_empc_the_training_run_logged(ws):
    # The report scores the champion on the test split training used, with the same churn.empc campaign.
    rows = _table_rows(_section(ws, "churn"))
    names = [row[0] for row in rows]
    assert names[names.index("ROC AUC") + 1] == "EMPC (expected maximum profit per customer)"
    run = tracking.client().get_run(tracking.version_by_alias(CHURN_MODEL_NAME, "champion").run_id)
    shown = dict((row[0], row[1]) for row in rows)
    assert shown["EMPC (expected maximum profit per customer)"] == f"{run.data.metrics['test_empc']:.4f}"
    assert shown["share contacted at the EMPC optimum"] == f"{run.data.metrics['test_empc_fraction']:.4f}"
    assert "EMPC: expected maximum profit per customer of a retention campaign" in _section(ws, "churn")


def test_clv_section_compares_both_versions_and_shows_the_btyd_fit(ws):
    clv = _section(ws, "clv")
    assert "<th>champion v1</th>" in clv and "<th>v2</th>" in clv and "<th>better</th>" in clv
    assert "normalised Gini" in clv and "difference (v2 − champion v1)" in clv
    assert "Predicted against actual value by decile" in clv and "Holdout tracking" in clv
    # BG/NBD (r, alpha, a, b) and Gamma-Gamma (p, q, gamma) with standard errors.
    assert "std_error" in clv
    for parameter in ("<td>r</td>", "<td>alpha</td>", "<td>a</td>", "<td>b</td>", "<td>p</td>", "<td>q</td>"):
        assert parameter in clv


def test_segments_tiers_and_drift_sections_hold_their_figures_and_tables(ws):
    segments = _section(ws, "segments")
    assert "<figcaption>Segment tree</figcaption>" in segments and "share_value" in segments
    tiers = _section(ws, "tiers")
    assert re.search(r"The top 20 % of customers by CLV hold \d+\.\d% of all predicted value", tiers)
    for caption in ("Tier distribution", "Value concentration (Lorenz curve)", "Tier migration"):
        assert f"<figcaption>{caption}</figcaption>" in tiers
    assert "value at risk (high)" in tiers and "Against the previous scoring (2026-07-31)" in tiers
    drift = _section(ws, "drift")
    assert "Population stability index" in drift and "<figcaption>Feature drift (PSI)</figcaption>" in drift
    assert "recency_days" in drift
    # The scoring manifest's feature checks, beside the PSI (the simulated data scores within training's categories).
    assert "Values the models never saw in training" in drift and "unseen in training</td>" not in drift


def test_without_a_track_record_the_section_says_how_to_get_one_and_still_shows_tier_migration(ws):
    track = _section(ws, "track_record")
    assert "No track record yet" in track and "Run `crmscore monitor` to check every past scoring" in track
    assert f"<figcaption>Tier migration, {EARLIER} to {LATEST}</figcaption>" in track
    assert "<th>Track record</th><td>none yet: run `crmscore monitor`" in _section(ws, "summary")


def test_the_report_shows_the_track_record_monitor_wrote_as_it_is(ws, tmp_path):
    scorings = monitoring.past_scorings(ws.settings.scoring.out_dir)
    tables = {name: pd.read_parquet(ws.root / "sim" / f"{name}.parquet") for name in ("customers", "transactions")}
    settings = ws.settings.model_copy(
        update={
            "monitoring": ws.settings.monitoring.model_copy(
                update={"out_dir": str(tmp_path / "monitoring"), "bootstrap_samples": 20}
            ),
            # A report run of its own experiment, so the workspace's report stays the only one in its experiment.
            "tracking": ws.settings.tracking.model_copy(update={"experiment": "crmscore-track-record"}),
        }
    )
    performance = monitoring.track_record(tables, scorings, settings)
    # An estimate no recomputation would give: the page must show the table as written.
    latest = (
        (performance["as_of"] == LATEST) & (performance["metric"] == "roc_auc") & (performance["kind"] == "estimated")
    )
    performance.loc[latest & (performance["model"] == "churn"), "value"] = 0.5
    (tmp_path / "monitoring").mkdir()
    performance.to_parquet(tmp_path / "monitoring" / "performance.parquet", index=False)
    result = report_stage(settings, out_dir=tmp_path / "review")
    page = result.path.read_text(encoding="utf-8")
    verdict = monitoring.verdict(performance)
    assert f"estimated AUC 0.50 for the current one ({LATEST})" in verdict
    assert re.findall(r'<section id="(\w+)">', page) == list(REPORT_SECTIONS)
    assert f"<th>Track record</th><td>{html.escape(verdict)}</td>" in page
    track = re.search(r'<section id="track_record">(.*?)</section>', page, flags=re.S).group(1)
    assert f'<p class="verdict">Verdict: {html.escape(verdict)}</p>' in track
    assert f"2 scoring(s) from {EARLIER} to {LATEST}" in track
    assert "<figcaption>Churn ROC AUC per scoring</figcaption>" in track
    assert tracking.client().get_run(result.run_id).data.tags["crmscore.track_record"] == verdict


def _table_rows(body: str) -> list[list[str]]:
    """The cells of every body row of the HTML tables in ``body``, unescaped."""
    return [
        [html.unescape(cell) for cell in re.findall(r"<td>(.*?)</td>", row, flags=re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", body, flags=re.S)
        if "<td>" in row
    ]


class _FixedScores:
    """A stand-in churn model whose churn probability of row i of X is ``p[X["row"][i]]``."""

    def __init__(self, p: np.ndarray) -> None:
        self.p = p

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = self.p[X["row"].to_numpy()]
        return np.column_stack([1 - p, p])


def test_churn_section_puts_empc_beside_roc_auc_and_judges_it_higher_is_better():
    rng = np.random.default_rng(4)
    y = rng.binomial(1, 0.3, 400)
    weak = np.clip(rng.normal(0.4 + 0.1 * y, 0.2), 0, 1)
    strong = np.clip(weak + 0.3 * y, 0, 1) / 1.3
    test = ChurnData(
        X=pd.DataFrame({"row": np.arange(len(y))}),
        y=pd.Series(y),
        as_of=pd.Series(pd.Timestamp("2026-07-31"), index=range(len(y))),
    )
    comparison = Comparison(
        ModelVersion(CHURN_MODEL_NAME, "1", 1, "run-1", _FixedScores(weak)),
        ModelVersion(CHURN_MODEL_NAME, "2", 2, "run-2", _FixedScores(strong)),
    )
    campaign = EmpcSettings(clv=300, incentive=20, contact_cost=2, alpha=2, beta=5)
    section = churn_section(comparison, test, "transaction", campaign)
    rows = {row[0]: row[1:] for row in _table_rows(section.body)}
    names = list(rows)
    assert names[names.index("ROC AUC") + 1] == "EMPC (expected maximum profit per customer)"
    profits = [empc(y, p, 300, 20, 2, 2, 5) for p in (weak, strong)]
    assert profits[1] > profits[0] > 0
    assert rows["EMPC (expected maximum profit per customer)"] == [
        f"{profits[0]:.4f}",
        f"{profits[1]:.4f}",
        f"{profits[1] - profits[0]:+.4f}",
        "v2",
    ]
    shares = rows["share contacted at the EMPC optimum"]
    assert shares[:2] == [f"{empc_fraction(y, p, 300, 20, 2, 2, 5):.4f}" for p in (weak, strong)]
    assert shares[-1] == "–"  # how many to contact is a consequence, not a quality
    assert "a retained churner is worth 300, the offer costs 20 when taken and a contact 2" in html.unescape(
        section.body
    )
    assert "Beta(2, 5)" in section.body


def test_drift_section_lists_the_scoring_feature_checks():
    drift_table = feature_drift(
        pd.DataFrame({"tenure_days": np.arange(50.0)}), pd.DataFrame({"tenure_days": np.arange(50.0) + 3})
    )
    checks = [
        {"feature": "region", "kind": "unseen", "models": ["churn", "clv"], "count": 40, "share": 1.0,
         "examples": ["mars", "venus"]},
        {"feature": "monetary_total", "kind": "out_of_range", "models": ["clv"], "count": 12, "share": 0.3,
         "training_range": [0.0, 5432.1]},
        {"feature": "collection_rate", "kind": "missing", "models": ["churn"], "count": 8, "share": 0.2,
         "training_share": 0.01},
    ]  # fmt: skip
    day = pd.Timestamp("2026-10-31")
    body = drift_section(drift_table, day, day, "test", 0.2, checks).body
    assert "3 check(s) to look at; values unseen in training: region." in body
    for cell in ("region", "unseen in training", "churn, clv", "100.0%", "mars, venus"):
        assert f"<td>{cell}</td>" in body, cell
    assert "<td>0 to 5,432.1</td>" in body and "<td>1.0% missing</td>" in body
    assert "outside the training range" in body and "<td>missing</td>" in body
    assert "holds no feature checks" in drift_section(drift_table, day, day, "test", 0.2, None).body
    assert "Nothing to report" in drift_section(drift_table, day, day, "test", 0.2, []).body


# --- MLflow --------------------------------------------------------------------------------------------------


def test_report_is_logged_to_mlflow_in_its_own_run(ws, tmp_path):
    client = tracking.client()
    experiment = client.get_experiment_by_name(ws.settings.tracking.experiment)
    runs = client.search_runs([experiment.experiment_id], "tags.`crmscore.stage` = 'report'")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_id in ws.cli_output
    assert run.data.tags["crmscore.scoring_as_of"] == LATEST
    assert run.data.params["compare.second"] == "2" and run.data.params["clv.second"] == "2"
    assert "max_psi" in run.data.metrics and 0 < run.data.metrics["top20_value_share"] <= 1
    logged = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path=f"review/{ws.html_path.name}", dst_path=str(tmp_path)
    )
    assert Path(logged).read_bytes() == ws.html_path.read_bytes()


def test_versions_are_compared_by_alias_or_number_and_sameness_is_said_in_words(ws):
    same = compare_versions(CHURN_MODEL_NAME, "champion", "challenger")
    assert same.second is None and same.first.version == 1
    assert same.note == (
        "crmscore-churn: challenger is the same version as champion (v1), so there is nothing to compare; "
        "champion v1 is shown on its own."
    )
    pair = compare_versions(CLV_MODEL_NAME, "1", "2")
    assert [v.version for v in pair.versions] == [1, 2] and pair.note is None
    assert [v.label for v in pair.versions] == ["v1", "v2"]
    # The LightGBM version's BG/NBD fit is the version registered from the same training run.
    fitted, source = btyd_model_of_run(pair.second)
    assert source == "crmscore-clv v1, trained in the same run as v2"
    assert fitted.parameter_table()["std_error"].gt(0).all()
    missing = compare_versions(SEGMENTS_MODEL_NAME, "champion", "challenger-of-2020")
    assert missing.second is None and "has no version 'challenger-of-2020'" in missing.note
    assert compare_versions(SEGMENTS_MODEL_NAME, "7", "champion", required=False) is None


def test_run_links_only_for_an_http_tracking_server():
    assert run_link("sqlite:////tmp/models/mlflow.db", "1", "abc") is None
    assert (
        run_link("http://mlflow.example:5000/", "4", "abc123")
        == "http://mlflow.example:5000/#/experiments/4/runs/abc123"
    )
    assert run_link("https://mlflow.example", "4", "x").startswith("https://mlflow.example/#/experiments/4/")


# --- errors: one line, exit code 2 -------------------------------------------------------------------------


def test_no_scoring_yet_exits_2_with_one_line(ws, tmp_path):
    settings = ws.settings.model_copy(
        update={"scoring": ws.settings.scoring.model_copy(update={"out_dir": str(tmp_path / "none")})}
    )
    params = write_params(settings, tmp_path / "params.yaml")
    line = _one_error_line(runner.invoke(app, ["report", "--params", str(params)]))
    assert line == (
        f"error: {tmp_path / 'none'}: no scoring found (no as_of=YYYY-MM-DD folder with scores.parquet); "
        "run `crmscore score` first"
    )


def test_unknown_alias_exits_2_with_one_line(ws):
    line = _one_error_line(runner.invoke(app, ["report", "--params", str(ws.params), "--compare", "champion", "bogus"]))
    assert line.startswith("error: --compare: 'bogus' is neither an alias nor a version number of crmscore-churn")
    assert "aliases set: challenger, champion" in line


# --- seen as a person sees it: the page in a browser ------------------------------------------------------------


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> str:
    found = _chromium()
    if found is None:
        pytest.skip(
            "no chromium, chromium-browser or google-chrome on PATH to render the report (apt-get install chromium)"
        )
    return found


def _run_browser(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_page_renders_in_a_browser_to_a_full_non_blank_screenshot(ws, browser, tmp_path):
    shot = tmp_path / "report.png"
    done = _run_browser(
        browser,
        tmp_path / "profile",
        f"--screenshot={shot}",
        f"--window-size={SCREEN[0]},{SCREEN[1]}",
        ws.html_path.as_uri(),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.exists() and shot.read_bytes().startswith(PNG_SIGNATURE)
    with Image.open(shot) as image:
        assert image.size == SCREEN
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.std() > 20, "the rendered page is (nearly) blank"
    rows_with_content = (pixels < 200).any(axis=1).mean()
    assert rows_with_content > 0.5, "the report should fill most of the first 4,000 pixels"


_IMAGE_PROBE = """
<script>
window.addEventListener("load", function () {
  var loaded = [];
  document.querySelectorAll("img").forEach(function (img) {
    loaded.push(img.complete && img.naturalWidth > 0 ? 1 : 0);
  });
  var out = document.createElement("pre");
  out.id = "image-probe";
  out.textContent = JSON.stringify(loaded);
  document.body.appendChild(out);
});
</script>
"""


def test_browser_decodes_every_image(ws, browser, tmp_path):
    """Every <img> has a natural width after the load event; a deliberately broken image proves the probe."""
    probed = tmp_path / "probed.html"
    broken = '<img src="data:image/png;base64,AAAA" alt="broken on purpose">'
    probed.write_text(ws.html.replace("</body>", broken + _IMAGE_PROBE + "</body>"), encoding="utf-8")
    done = _run_browser(browser, tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom", probed.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    match = re.search(r'<pre id="image-probe">(\[[01,]*\])</pre>', done.stdout)
    assert match, "the probe did not run after the load event"
    loaded = json.loads(match.group(1))
    assert len(loaded) == len(ws.page.images) + 1
    assert loaded[-1] == 0, "the probe must see a broken image as broken"
    broken_in_report = [i for i, ok in enumerate(loaded[:-1]) if not ok]
    assert broken_in_report == [], f"images {broken_in_report} did not decode in the browser"
