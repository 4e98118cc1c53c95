"""The track record in the model review report: its figures, and the section in every state it can be in.

The performance table is the real one, :func:`crmscore.monitoring.track_record` on hand-made scorings: 400
customers scored quarterly in 2025 (churn probabilities, risk bands, expected spend, tiers), with
transactions drawn from those probabilities, up to the end of 2025. With a 90-day churn horizon and a
180-day CLV horizon, the first three scorings have their churn outcomes, the first two their spend, the last
is open. At the 2025-07-31 scoring churn runs far above the predictions (a calibration break), the churn model
changes version at the last scoring, and six scored customers are gone from the current data.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # tests never open a window, whatever the machine's default backend

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.container import BarContainer, ErrorbarContainer  # noqa: E402
from tests.plot_helpers import assert_labelled, legend_texts  # noqa: E402

from crmscore import monitoring, tiers  # noqa: E402
from crmscore.config import Settings  # noqa: E402
from crmscore.report import (  # noqa: E402
    REPORT_SECTIONS,
    plot_churn_track_record,
    plot_risk_band_calibration,
    plot_tier_transitions,
    plot_tier_value_track_record,
    track_record_section,
)

AS_OFS = [pd.Timestamp(d) for d in ("2025-01-31", "2025-04-30", "2025-07-31", "2025-10-31")]
DATA_END = pd.Timestamp("2025-12-31")
BROKEN = pd.Timestamp("2025-07-31")  # churn far above the predictions here
CUSTOMERS = 400
GONE = 6  # scored customers no longer in the current data
SETTINGS = Settings(churn={"horizon_days": 90}, clv={"horizon_days": 180}, monitoring={"bootstrap_samples": 50})
CHURN_CLOSED = AS_OFS[:3]
CLV_CLOSED = AS_OFS[:2]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _history() -> tuple[dict[str, pd.DataFrame], list[monitoring.PastScoring]]:
    """The current tables and the four scorings (see the module docstring)."""
    rng = np.random.default_rng(1)
    ids = np.arange(1, CUSTOMERS + 1)
    spend_level = rng.gamma(2.0, 50.0, CUSTOMERS)
    scorings, purchases = [], []
    for k, as_of in enumerate(AS_OFS):
        p = rng.beta(2.0, 5.0, CUSTOMERS)
        truth = np.clip(p + (0.35 if as_of == BROKEN else 0.0), 0.0, 1.0)
        stays = rng.random(CUSTOMERS) >= truth
        # One purchase 45 days on: inside this scoring's churn window, outside every other one.
        purchases.append(
            pd.DataFrame(
                {
                    "customer_id": ids[stays],
                    "date": as_of + pd.Timedelta(days=45),
                    "amount": spend_level[stays] * rng.uniform(0.5, 1.5, int(stays.sum())),
                }
            )
        )
        noisy = spend_level * rng.lognormal(0.0, 0.3, CUSTOMERS)
        scores = pd.DataFrame(
            {
                "customer_id": ids,
                "churn_probability": p,
                "risk_band": tiers.risk_band(pd.Series(p), SETTINGS.tiers.risk_thresholds).astype(object),
                "expected_spend": 2.0 * noisy * (1.0 - p),
                "tier": pd.qcut(-noisy, 5, labels=list(tiers.TIERS)).astype(object),
                "churn_model_version": 2 if k == len(AS_OFS) - 1 else 1,
                "clv_model_version": 1,
            }
        )
        scorings.append(monitoring.PastScoring(as_of, Path(f"as_of={as_of.date()}"), scores, {}))
    purchases.append(pd.DataFrame({"customer_id": [1], "date": [DATA_END], "amount": [10.0]}))
    customers = pd.DataFrame({"customer_id": ids[:-GONE], "signup_date": pd.Timestamp("2024-01-01")})
    return {"customers": customers, "transactions": pd.concat(purchases, ignore_index=True)}, scorings


@pytest.fixture(scope="module")
def history() -> tuple[pd.DataFrame, list[monitoring.PastScoring], dict[str, pd.DataFrame]]:
    tables, scorings = _history()
    return monitoring.track_record(tables, scorings, SETTINGS), scorings, tables


@pytest.fixture(scope="module")
def performance(history) -> pd.DataFrame:
    return history[0]


@pytest.fixture(scope="module")
def scorings(history) -> list[monitoring.PastScoring]:
    return history[1]


def _rows(performance: pd.DataFrame, model: str, metric: str, kind: str) -> pd.DataFrame:
    mine = performance.loc[
        (performance["model"] == model) & (performance["metric"] == metric) & (performance["kind"] == kind)
    ]
    return mine.sort_values("as_of")


def _errorbars(ax) -> list[ErrorbarContainer]:
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def _bars(ax) -> list[BarContainer]:
    return [c for c in ax.containers if isinstance(c, BarContainer)]


def _dates(values) -> list[pd.Timestamp]:
    """A line's x data as dates, whether it kept the dates it was given or holds matplotlib's day numbers."""
    return [
        pd.Timestamp(matplotlib.dates.num2date(v)).tz_localize(None) if isinstance(v, float) else pd.Timestamp(v)
        for v in values
    ]


def _images(body: str) -> list[str]:
    return re.findall(r"<figcaption>(.*?)</figcaption>", body) if body.count("<img ") else []


def test_the_history_has_what_the_tests_rely_on(performance):
    """Closed and open scorings, a calibration break, a new version, missing customers: the other tests'
    premises, checked once so a change to the monitoring shows here rather than as a puzzling failure."""
    churn = _rows(performance, "churn", "roc_auc", "realized")
    assert list(churn["as_of"]) == CHURN_CLOSED
    assert list(_rows(performance, "clv", "total_spend", "realized")["as_of"]) == CLV_CLOSED
    breaks = _rows(performance, "churn", "calibration_gap", "realized")
    assert list(breaks.loc[breaks["flag"], "as_of"]) == [BROKEN]
    assert (_rows(performance, "data", "customers_missing", "realized")["value"] == GONE).all()
    assert _rows(performance, "churn", "roc_auc", "estimated")["version"].tolist() == [1, 1, 1, 2]


# --- the figures ------------------------------------------------------------------------------------------------


def test_churn_auc_draws_every_estimate_the_closed_realized_values_and_rings_the_open_one(performance):
    ax = plot_churn_track_record(performance, "roc_auc")
    assert_labelled(ax)
    assert "ROC AUC" in ax.get_title()
    estimated = _rows(performance, "churn", "roc_auc", "estimated")
    lines = {line.get_label(): line for line in ax.lines}
    dashed = lines["estimated from the probabilities alone"]
    assert dashed.get_linestyle() == "--"
    assert _dates(dashed.get_xdata()) == AS_OFS
    np.testing.assert_allclose(dashed.get_ydata(), estimated["value"])
    ring = lines["horizon still open: estimate only"]
    assert _dates(ring.get_xdata()) == [AS_OFS[-1]]
    (realized,) = _errorbars(ax)
    assert realized.get_label() == "realized (95 % interval)"
    points = realized.lines[0]
    assert _dates(points.get_xdata()) == CHURN_CLOSED
    rows = _rows(performance, "churn", "roc_auc", "realized")
    np.testing.assert_allclose(points.get_ydata(), rows["value"])
    # The interval bars span lower to upper.
    segments = realized.lines[2][0].get_segments()
    np.testing.assert_allclose([s[:, 1].min() for s in segments], rows["lower"])
    np.testing.assert_allclose([s[:, 1].max() for s in segments], rows["upper"])
    assert set(legend_texts(ax)) == {
        "estimated from the probabilities alone",
        "horizon still open: estimate only",
        "realized (95 % interval)",
    }
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == ["2025-01-31\nv1", "2025-04-30\nv1", "2025-07-31\nv1", "2025-10-31\nv2"]


def test_churn_rate_shows_the_break_between_predicted_and_realized(performance):
    ax = plot_churn_track_record(performance, "churn_rate")
    (realized,) = _errorbars(ax)
    ys = dict(zip(_dates(realized.lines[0].get_xdata()), realized.lines[0].get_ydata(), strict=True))
    predicted = _rows(performance, "churn", "churn_rate", "estimated").set_index("as_of")["value"]
    assert ys[BROKEN] - predicted[BROKEN] > 0.2
    assert abs(ys[AS_OFS[0]] - predicted[AS_OFS[0]]) < 0.1
    assert ax.yaxis.get_major_formatter().__class__.__name__ == "PercentFormatter"


def test_churn_track_record_rejects_what_it_cannot_draw(performance):
    with pytest.raises(ValueError, match="expected one of roc_auc, brier, churn_rate"):
        plot_churn_track_record(performance, "gini")
    with pytest.raises(ValueError, match="no churn roc_auc"):
        plot_churn_track_record(performance.loc[performance["model"] != "churn"], "roc_auc")


def test_risk_bands_of_the_latest_closed_scoring_one_group_per_band(performance):
    ax = plot_risk_band_calibration(performance)
    assert_labelled(ax)
    assert "2025-07-31" in ax.get_title()
    latest = performance.loc[performance["as_of"] == CHURN_CLOSED[-1]]
    bands = [b for b in tiers.RISK_BANDS if (latest["metric"] == f"realized_rate[{b}]").any()]
    assert len(bands) == 3
    predicted, realized = _bars(ax)
    assert len(predicted) == len(realized) == len(bands)
    want = {row.metric: row.value for row in latest.itertuples()}
    np.testing.assert_allclose([bar.get_height() for bar in predicted], [want[f"predicted_rate[{b}]"] for b in bands])
    np.testing.assert_allclose([bar.get_height() for bar in realized], [want[f"realized_rate[{b}]"] for b in bands])
    assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == bands
    assert legend_texts(ax) == ["predicted (mean churn probability)", "realized (95 % interval)"]
    first = plot_risk_band_calibration(performance, as_of=AS_OFS[0])
    assert "2025-01-31" in first.get_title()


def test_risk_bands_need_a_closed_scoring(performance):
    open_only = performance.loc[performance["as_of"] == AS_OFS[-1]]
    with pytest.raises(ValueError, match="no closed scoring"):
        plot_risk_band_calibration(open_only)


def test_tier_value_draws_one_line_per_tier_over_the_closed_clv_scorings(performance):
    ax = plot_tier_value_track_record(performance)
    assert_labelled(ax)
    lines = _errorbars(ax)
    assert [c.get_label() for c in lines] == [f"tier {t}" for t in tiers.TIERS]
    for tier, container in zip(tiers.TIERS, lines, strict=True):
        assert _dates(container.lines[0].get_xdata()) == CLV_CLOSED
        rows = _rows(performance, "tiers", f"realized_value[{tier}]", "realized")
        np.testing.assert_allclose(container.lines[0].get_ydata(), rows["value"])
    means = [container.lines[0].get_ydata()[0] for container in lines]
    assert means[0] > means[-1]  # tier A earned more than tier E


def test_tier_transitions_are_the_share_of_each_earlier_tier(scorings):
    earlier, later = scorings[-2].scores, scorings[-1].scores
    before = pd.Series(earlier["tier"].to_numpy(), index=earlier["customer_id"])
    after = pd.Series(later["tier"].to_numpy(), index=later["customer_id"])
    ax = plot_tier_transitions(tiers.tier_migration(before, after), "2025-07-31", "2025-10-31")
    assert_labelled(ax)
    shares = np.asarray(ax.images[0].get_array())
    want = pd.crosstab(before, after.reindex(before.index), normalize="index")
    np.testing.assert_allclose(shares[:, :5], want.to_numpy())
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    assert [t.get_text() for t in ax.get_xticklabels()] == [*tiers.TIERS, "not scored"]
    counts = before.value_counts()
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"{t} ({counts[t]:,})" for t in tiers.TIERS]
    assert f"{want.loc['A', 'A']:.0%}" in [t.get_text() for t in ax.texts]


def test_tier_transitions_count_customers_not_scored_again():
    before = pd.Series(["A", "A", "B", "B"], index=[1, 2, 3, 4])
    after = pd.Series(["A", "B", "B"], index=[1, 3, 4])
    ax = plot_tier_transitions(tiers.tier_migration(before, after))
    shares = np.asarray(ax.images[0].get_array())
    np.testing.assert_allclose(shares[0], [0.5, 0, 0, 0, 0, 0.5])  # A: one kept, one gone
    np.testing.assert_allclose(shares[1], [0, 1, 0, 0, 0, 0])
    np.testing.assert_allclose(shares[2:].sum(), 0.0)  # tiers nobody was in: no share, "–"
    assert "–" in [t.get_text() for t in ax.texts]


# --- the section ------------------------------------------------------------------------------------------------


def test_section_opens_with_the_verdict_and_holds_every_figure(performance, scorings):
    section = track_record_section(performance, scorings, churn_horizon_days=90)
    assert (section.id, section.title) == ("track_record", "Track record")
    assert list(REPORT_SECTIONS)[:2] == ["summary", "track_record"]
    verdict = monitoring.verdict(performance)
    assert "calibration broke at the 2025-07-31 scoring" in verdict
    assert section.body.startswith(f'<p class="verdict">Verdict: {html.escape(verdict)}</p>')
    assert _images(section.body) == [
        "Churn ROC AUC per scoring",
        "Churn rate per scoring",
        "Churn rate by risk band, latest closed scoring",
        "Realized value per tier",
        "Tier migration, 2025-07-31 to 2025-10-31",
    ]
    assert "4 scoring(s) from 2025-01-31 to 2025-10-31" in section.body
    assert "churn outcomes are in for 3 and the CLV outcomes for 2" in section.body
    assert "has closed yet" not in section.body


def test_section_lists_the_flags_with_scoring_value_and_interval(performance, scorings):
    body = track_record_section(performance, scorings).body
    flags = re.search(r"<h3>Flags</h3>(.*?)</table>", body, flags=re.S).group(1)
    gap = _rows(performance, "churn", "calibration_gap", "realized").set_index("as_of").loc[BROKEN]
    assert "<td>2025-07-31</td>" in flags and "<td>churn v1</td>" in flags and "<td>calibration_gap</td>" in flags
    assert "calibration break" in flags
    value = f"{gap['value'] * 100:+.1f} points ({gap['lower'] * 100:+.1f} points to {gap['upper'] * 100:+.1f} points)"
    assert value in flags
    calm = track_record_section(performance.assign(flag=False), scorings).body
    assert "No flag on any scoring" in calm and "calibration break: the realized" not in calm


def test_section_counts_the_customers_missing_from_the_current_data(performance, scorings):
    body = track_record_section(performance, scorings).body
    assert "<h3>Customers missing from the current data</h3>" in body
    assert (
        f"<td>{CUSTOMERS:,}</td>" in body and f"<td>{GONE}</td>" in body and f"<td>{GONE / CUSTOMERS:.1%}</td>" in body
    )
    nobody = performance.copy()
    nobody.loc[nobody["metric"] == "customers_missing", ["value", "flag"]] = [0.0, False]
    assert "Customers missing" not in track_record_section(nobody, scorings).body


def test_section_shows_one_row_per_scoring_with_realized_and_estimated_auc(performance, scorings):
    body = track_record_section(performance, scorings).body
    rows = re.findall(r"<tr>\s*<td>(\d{4}-\d\d-\d\d)</td>\s*<td>(v\d)</td>\s*<td>(closed|open)</td>", body)
    assert rows == [
        ("2025-01-31", "v1", "closed"),
        ("2025-04-30", "v1", "closed"),
        ("2025-07-31", "v1", "closed"),
        ("2025-10-31", "v2", "open"),
    ]
    auc = _rows(performance, "churn", "roc_auc", "realized").iloc[0]
    assert f"{auc['value']:.3f} ({auc['lower']:.3f} to {auc['upper']:.3f})" in body


def test_section_without_a_closed_scoring_says_when_the_first_closes(history):
    _, scorings, tables = history
    latest = scorings[-1:]
    performance = monitoring.track_record(tables, latest, SETTINGS)
    body = track_record_section(performance, latest, churn_horizon_days=90).body
    assert "No scoring&#x27;s horizon has closed yet" in body
    assert "the earliest, as of 2025-10-31, closes when the data reaches 2026-01-29" in body
    assert "Verdict: churn v2: no scoring&#x27;s horizon has closed yet; estimated AUC" in body
    assert _images(body) == ["Churn ROC AUC per scoring", "Churn rate per scoring"]
    assert "No scoring&#x27;s CLV horizon has closed yet" in body
    assert "Tier migration needs two scorings; there is one so far (as of 2025-10-31)." in body


def test_section_without_a_track_record_says_how_to_get_one(scorings):
    body = track_record_section(None, scorings, source="reports/monitoring/performance.parquet").body
    assert "No track record yet (reports/monitoring/performance.parquet does not exist)" in body
    assert "Run `crmscore monitor` to check every past scoring" in body
    assert "Verdict" not in body
    # The scoring folders alone still give the tier migration: the section is never empty.
    assert _images(body) == ["Tier migration, 2025-07-31 to 2025-10-31"]
    bare = track_record_section(None, None).body
    assert "run `crmscore monitor`" in bare.lower() and "could not be read" in bare and "<img" not in bare


def test_section_says_when_the_track_record_is_older_than_the_scoring(performance, scorings):
    later = pd.Timestamp("2026-01-31")
    body = track_record_section(performance, scorings, scoring_as_of=later).body
    assert "ends at the 2025-10-31 scoring, before this report&#x27;s scoring (2026-01-31)" in body
    assert "ends at the" not in track_record_section(performance, scorings, scoring_as_of=AS_OFS[-1]).body


def test_section_names_a_table_it_cannot_read(scorings):
    old = pd.DataFrame({"as_of": [AS_OFS[0]], "metric": ["roc_auc"], "value": [0.8]})
    body = track_record_section(old, scorings, source="perf.parquet").body
    assert "perf.parquet lacks the columns model, version, kind" in body and "Verdict" not in body
    empty = track_record_section(pd.DataFrame(columns=monitoring.COLUMNS), scorings, source="perf.parquet").body
    assert "The track record (perf.parquet) holds no scoring" in empty
