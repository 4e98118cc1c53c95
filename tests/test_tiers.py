"""Tests for crmscore.tiers: hand-checked scorecard points and tier boundaries, weights and dropped metrics,
chunk invariance of the fitted scorecard and pyramid, risk bands, lifecycle precedence, the action matrix,
the migration and summary reports, and the error messages for bad input."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from crmscore.config import ScorecardSettings, TierSettings
from crmscore.errors import DataError
from crmscore.features import build_features
from crmscore.tiers import (
    LIFECYCLE_DTYPE,
    RISK_BAND_DTYPE,
    TIER_DTYPE,
    Scorecard,
    assign,
    fit_pyramid,
    fit_scorecard,
    lifecycle_stage,
    pyramid_tiers,
    pyramid_tiers_from_thresholds,
    recommended_action,
    risk_band,
    scorecard_points,
    scorecard_tiers,
    tier_migration,
    tier_risk_matrix,
    tier_summary,
    value_at_risk,
)

SALES_ONLY = ScorecardSettings(metrics={"sales": "monetary_365d"}, weights={"sales": 1.0})
DEFAULT_FEATURES = ["monetary_365d", "collection_rate", "frequency_365d", "product_breadth_365d", "contacts_365d"]


def random_features(n: int, seed: int = 0) -> pd.DataFrame:
    """Scorecard features shaped like real ones: zero-inflated spend and contacts, mostly full payers."""
    rng = np.random.default_rng(seed)
    buyer = rng.random(n) < 0.7
    frequency = np.where(buyer, rng.poisson(6, n) + 1, 0).astype(float)
    return pd.DataFrame(
        {
            "monetary_365d": np.where(buyer, rng.lognormal(4, 1, n), 0.0),
            "collection_rate": np.where(rng.random(n) < 0.6, 1.0, rng.random(n)),
            "frequency_365d": frequency,
            "product_breadth_365d": np.minimum(frequency, rng.integers(1, 6, n)),
            "contacts_365d": rng.poisson(0.8, n).astype(float),
            "tenure_days": rng.integers(0, 900, n).astype(float),
            "recency_days": np.where(buyer, rng.integers(0, 800, n), np.nan),
        },
        index=pd.Index(np.arange(1, n + 1) * 7, name="customer_id"),
    )


# ---------------------------------------------------------------------------------------------------
# scorecard points
# ---------------------------------------------------------------------------------------------------


def test_points_are_average_rank_percentiles_with_the_ends_pinned_to_0_and_100():
    features = pd.DataFrame({"monetary_365d": [7.0, 0.0, 9.0, 5.0, 0.0, 7.0]})
    points = scorecard_points(features, SALES_ONLY)
    # Sorted 0, 0, 5, 7, 7, 9: 5 is rank 3 of 6 -> 100 * 2/5; the 7s share ranks 4-5 -> 100 * 3.5/5.
    # The two 0s (no purchase) get 0 points, not their average rank; the single best gets 100.
    assert points["sales"].tolist() == pytest.approx([70.0, 0.0, 100.0, 40.0, 0.0, 70.0])
    assert points["total"].tolist() == pytest.approx(points["sales"].tolist())
    assert list(points.columns) == ["sales", "total"]


def test_a_value_shared_by_the_best_customers_earns_full_points():
    features = pd.DataFrame({"collection_rate": [1.0, 0.2, 1.0, 0.5, np.nan]})
    settings = ScorecardSettings(metrics={"collect": "collection_rate"}, weights={"collect": 1.0})
    points = scorecard_points(features, settings)["collect"]
    # Ranked among the 4 customers with invoices: 0.2 -> 0, 0.5 -> 100 * 1/3, the full payers -> 100.
    # No invoices at all (NaN) earns no points.
    assert points.tolist() == pytest.approx([100.0, 0.0, 100.0, 100 / 3, 0.0])


def test_new_values_are_interpolated_between_the_reference_values_and_clipped_outside():
    scorecard = fit_scorecard(pd.DataFrame({"monetary_365d": [0.0, 0.0, 5.0, 7.0, 7.0, 9.0]}), SALES_ONLY)
    new = pd.DataFrame({"monetary_365d": [6.0, -3.0, 1000.0, 8.0, np.nan]}, index=["a", "b", "c", "d", "e"])
    points = scorecard.points(new)
    assert points["sales"].tolist() == pytest.approx([55.0, 0.0, 100.0, 85.0, 0.0])
    assert list(points.index) == ["a", "b", "c", "d", "e"]


def test_weights_are_applied_to_the_total():
    features = pd.DataFrame({"monetary_365d": [1.0, 2.0, 3.0], "frequency_365d": [30.0, 20.0, 10.0]})
    settings = ScorecardSettings(
        metrics={"sales": "monetary_365d", "frequency": "frequency_365d"}, weights={"sales": 0.75, "frequency": 0.25}
    )
    points = scorecard_points(features, settings)
    assert points["sales"].tolist() == pytest.approx([0.0, 50.0, 100.0])
    assert points["frequency"].tolist() == pytest.approx([100.0, 50.0, 0.0])
    assert points["total"].tolist() == pytest.approx([25.0, 50.0, 75.0])


def test_default_scorecard_gives_the_best_customer_100_and_an_inactive_one_0():
    features = random_features(300)
    best = features.index[0]
    worst = features.index[1]
    features.loc[best, DEFAULT_FEATURES] = [1e6, 1.0, 1000.0, 50.0, 500.0]
    features.loc[worst, DEFAULT_FEATURES] = [0.0, 0.0, 0.0, 0.0, 0.0]
    total = scorecard_points(features, ScorecardSettings())["total"]
    assert total[best] == pytest.approx(100.0)
    assert total[worst] == pytest.approx(0.0)
    assert total.between(0, 100).all()


def test_a_metric_whose_column_is_absent_is_dropped_and_its_weight_spread(caplog):
    features = random_features(200).drop(columns="collection_rate")  # no payments table
    best = features.index[0]
    features.loc[best, ["monetary_365d", "frequency_365d", "product_breadth_365d", "contacts_365d"]] = 1e6
    with caplog.at_level(logging.WARNING, logger="crmscore.tiers"):
        scorecard = fit_scorecard(features, ScorecardSettings())
    assert scorecard.weights == pytest.approx(
        {
            "sales": 0.5 / 0.8,
            "repurchase_frequency": 0.15 / 0.8,
            "product_breadth": 0.1 / 0.8,
            "interactions": 0.05 / 0.8,
        }
    )
    assert dict(scorecard.dropped) == {"payment_collection": "feature column 'collection_rate' is absent"}
    assert "payment_collection" in caplog.text and "collection_rate" in caplog.text
    points = scorecard.points(features)
    assert "payment_collection" not in points.columns
    expected = sum(w * points[name] for name, w in scorecard.weights.items())
    np.testing.assert_allclose(points["total"], expected)
    # The best customer on every remaining metric still reaches 100 (not 80): totals keep the 0-100 scale.
    assert points.loc[best, "total"] == pytest.approx(100.0)


def test_a_metric_that_cannot_rank_anyone_is_dropped_too():
    features = random_features(100)
    features["contacts_365d"] = 0.0  # nobody was in contact
    features["collection_rate"] = np.nan  # no invoice due yet
    scorecard = fit_scorecard(features, ScorecardSettings())
    assert set(dict(scorecard.dropped)) == {"interactions", "payment_collection"}
    assert sum(scorecard.weights.values()) == pytest.approx(1.0)


def test_no_scorable_metric_is_a_data_error():
    features = pd.DataFrame({"tenure_days": [1.0, 2.0]})
    with pytest.raises(DataError, match="no metric with a positive weight can rank the customers"):
        fit_scorecard(features, ScorecardSettings())


def test_points_need_the_columns_the_scorecard_was_fitted_with():
    features = random_features(50)
    scorecard = fit_scorecard(features, ScorecardSettings())
    with pytest.raises(DataError, match=r"feature column 'contacts_365d' \(metric interactions\) is missing"):
        scorecard.points(features.drop(columns="contacts_365d"))
    bad = features.assign(monetary_365d=features["monetary_365d"].astype(str))
    with pytest.raises(DataError, match="column 'monetary_365d' must be numeric"):
        fit_scorecard(bad, ScorecardSettings())
    with pytest.raises(DataError, match="column 'monetary_365d' has infinite values"):
        scorecard.points(features.assign(monetary_365d=np.inf))


# ---------------------------------------------------------------------------------------------------
# scorecard: chunks and JSON
# ---------------------------------------------------------------------------------------------------


def test_points_of_a_chunk_equal_the_points_of_the_whole_for_the_same_customers():
    features = random_features(6000, seed=3)  # > 2002 distinct spend values: the compressed grid
    scorecard = fit_scorecard(features, ScorecardSettings())
    whole = scorecard.points(features)
    rng = np.random.default_rng(1)
    chunks = np.array_split(rng.permutation(len(features)), 7)
    pieces = pd.concat([scorecard.points(features.iloc[rows]) for rows in chunks])
    pd.testing.assert_frame_equal(pieces.sort_index(), whole.sort_index(), check_exact=True)
    # Ranking a chunk only against itself would not give the same points.
    alone = scorecard_points(features.iloc[chunks[0]], ScorecardSettings())
    assert not np.allclose(alone["total"], whole.loc[alone.index, "total"])


def test_the_compressed_grid_stays_within_a_tenth_of_a_point_of_the_exact_percentile():
    rng = np.random.default_rng(5)
    features = pd.DataFrame({"monetary_365d": np.r_[np.zeros(3000), rng.lognormal(3, 1, 20000)]})
    scorecard = fit_scorecard(features, SALES_ONLY)
    assert len(scorecard.metrics[0].values) <= 2004
    points = scorecard.points(features)["sales"]
    positive = features["monetary_365d"] > 0
    exact = 100 * (features["monetary_365d"].rank(method="average") - 1) / (len(features) - 1)
    assert (points[~positive] == 0).all()
    assert np.abs(points[positive] - exact[positive]).max() <= 0.1 + 1e-9
    assert points.max() == 100.0


def test_scorecard_round_trips_through_json():
    features = random_features(3000, seed=2).drop(columns="contacts_365d")
    scorecard = fit_scorecard(features, ScorecardSettings())
    text = json.dumps(scorecard.to_dict())
    restored = Scorecard.from_dict(json.loads(text))
    assert restored == scorecard
    assert restored.reference_customers == 3000
    assert dict(restored.dropped) == {"interactions": "feature column 'contacts_365d' is absent"}
    pd.testing.assert_frame_equal(restored.points(features), scorecard.points(features), check_exact=True)


def test_a_malformed_scorecard_description_is_refused():
    description = fit_scorecard(random_features(100), ScorecardSettings()).to_dict()
    description["metrics"][0]["values"] = description["metrics"][0]["values"][::-1]
    with pytest.raises(ValueError, match="scorecard metric 'sales': values must be finite and strictly increasing"):
        Scorecard.from_dict(description)
    with pytest.raises(ValueError, match="expected a mapping with format 1"):
        Scorecard.from_dict({"metrics": []})


# ---------------------------------------------------------------------------------------------------
# scorecard tiers
# ---------------------------------------------------------------------------------------------------


def test_tier_boundaries_are_inclusive():
    total = pd.Series([100, 90, 89.99, 80, 79.99, 70, 69.99, 60, 59.99, 0], index=list("abcdefghij"))
    tiers = scorecard_tiers(total, ScorecardSettings())
    assert tiers.tolist() == ["A", "A", "B", "B", "C", "C", "D", "D", "E", "E"]
    assert tiers.dtype == TIER_DTYPE
    assert list(tiers.index) == list("abcdefghij")


def test_float_rounding_in_the_total_never_moves_a_customer_down():
    assert scorecard_tiers(pd.Series([90 - 1e-12]), ScorecardSettings()).tolist() == ["A"]
    total = pd.Series([0.7 + 0.1, 0.8, 0.79])  # 0.7999999999999999, 0.8 and a real miss
    settings = ScorecardSettings(cutoffs={"A": 90, "B": 80, "C": 70, "D": 0.8})
    assert scorecard_tiers(total, settings).tolist() == ["D", "D", "E"]


def test_tiers_follow_custom_cutoffs():
    settings = ScorecardSettings(cutoffs={"A": 95, "B": 50, "C": 20, "D": 10})
    assert scorecard_tiers(pd.Series([96, 94, 50, 19, 9]), settings).tolist() == ["A", "B", "B", "D", "E"]


def test_bad_totals_are_refused():
    with pytest.raises(ValueError, match=r"total_points: points must lie in \[0, 100\]"):
        scorecard_tiers(pd.Series([50, 101]))
    with pytest.raises(ValueError, match="total_points: 1 missing value"):
        scorecard_tiers(pd.Series([50, np.nan]))


# ---------------------------------------------------------------------------------------------------
# value pyramid
# ---------------------------------------------------------------------------------------------------


def test_pyramid_shares_are_exact_on_1000_customers():
    rng = np.random.default_rng(0)
    clv = pd.Series(rng.gamma(0.5, 300, 1000), index=rng.permutation(np.arange(1000, 2000)))
    tiers = pyramid_tiers(clv, TierSettings().pyramid_shares)
    assert tiers.value_counts(sort=False).to_dict() == {"A": 10, "B": 40, "C": 150, "D": 300, "E": 500}
    # Higher tiers hold higher CLV.
    by_tier = clv.groupby(tiers, observed=True)
    assert (by_tier.min().to_numpy()[:-1] >= by_tier.max().to_numpy()[1:]).all()
    assert tiers.index.equals(clv.index)


def test_pyramid_ties_are_broken_by_customer_id_whatever_the_row_order():
    clv = pd.Series(5.0, index=np.arange(100, 0, -1))  # everyone equal, ids descending
    tiers = pyramid_tiers(clv, TierSettings().pyramid_shares)
    assert sorted(tiers[tiers == "A"].index) == [1]
    assert sorted(tiers[tiers == "B"].index) == [2, 3, 4, 5]
    shuffled = clv.sample(frac=1.0, random_state=3)
    pd.testing.assert_series_equal(
        pyramid_tiers(shuffled, TierSettings().pyramid_shares).sort_index(), tiers.sort_index()
    )


def test_pyramid_thresholds_give_the_same_tiers_in_chunks_and_survive_json():
    rng = np.random.default_rng(1)
    # Rounded CLV: big tie groups straddle the tier boundaries, so the id tie-break must carry over.
    clv = pd.Series(np.round(rng.gamma(0.5, 3, 5000)), index=rng.permutation(5000) + 10)
    shares = TierSettings().pyramid_shares
    thresholds = json.loads(json.dumps(fit_pyramid(clv, shares)))
    chunks = [pyramid_tiers_from_thresholds(clv.iloc[rows], thresholds) for rows in np.array_split(np.arange(5000), 9)]
    pd.testing.assert_series_equal(pd.concat(chunks), pyramid_tiers(clv, shares))
    assert pd.concat(chunks).value_counts(sort=False).tolist() == [50, 200, 750, 1500, 2500]


def test_pyramid_of_few_customers_fills_the_top_first():
    clv = pd.Series([50.0, 10.0, 30.0], index=["c", "a", "b"])
    thresholds = fit_pyramid(clv, {"A": 0.0, "B": 0.2, "C": 0.2, "D": 0.2})
    assert thresholds["A"] is None  # an empty top
    assert thresholds["B"] == {"clv": 50.0, "customer_id": "c"}
    # Cumulative counts ceil(3 × 0.2) = 1, ceil(3 × 0.4) = 2, ceil(3 × 0.6) = 2: D stays empty, "a" is E.
    assert thresholds["D"] == thresholds["C"] == {"clv": 30.0, "customer_id": "b"}
    assert pyramid_tiers_from_thresholds(clv, thresholds).tolist() == ["B", "E", "C"]


def test_pyramid_refuses_negative_or_missing_clv_and_bad_shares():
    shares = TierSettings().pyramid_shares
    with pytest.raises(ValueError, match="clv: values must be >= 0"):
        pyramid_tiers(pd.Series([1.0, -2.0]), shares)
    with pytest.raises(ValueError, match="clv: 1 missing value"):
        fit_pyramid(pd.Series([1.0, np.nan]), shares)
    with pytest.raises(ValueError, match="clv: customer ids must be unique"):
        fit_pyramid(pd.Series([1.0, 2.0], index=[7, 7]), shares)
    with pytest.raises(ValueError, match="shares: shares of A-D must add up to at most 1"):
        fit_pyramid(pd.Series([1.0]), {"A": 0.5, "B": 0.5, "C": 0.5, "D": 0.0})
    with pytest.raises(ValueError, match="shares: expected the customer shares of A, B, C and D"):
        fit_pyramid(pd.Series([1.0]), {"A": 0.1, "F": 0.1, "C": 0.1, "D": 0.1})


# ---------------------------------------------------------------------------------------------------
# risk bands, lifecycle, value at risk, actions
# ---------------------------------------------------------------------------------------------------


def test_risk_bands_at_their_thresholds():
    p = pd.Series([0.0, 0.1999, 0.2, 0.4999, 0.5, 1.0], index=list("uvwxyz"))
    bands = risk_band(p, {"medium": 0.2, "high": 0.5})
    assert bands.tolist() == ["low", "low", "medium", "medium", "high", "high"]
    assert bands.dtype == RISK_BAND_DTYPE and bands.name == "risk_band"
    assert list(bands.index) == list("uvwxyz")


@pytest.mark.parametrize("bad", [1.01, -0.01])
def test_probabilities_outside_0_1_are_refused(bad):
    with pytest.raises(ValueError, match=r"p_churn: probabilities must lie in \[0, 1\]"):
        risk_band(pd.Series([0.5, bad]), {"medium": 0.2, "high": 0.5})
    with pytest.raises(ValueError, match=r"p_churn: probabilities must lie in \[0, 1\]"):
        value_at_risk(pd.Series([1.0, 1.0]), pd.Series([0.5, bad]))


def test_bad_risk_thresholds_are_refused():
    with pytest.raises(ValueError, match="thresholds: must be 0 < medium < high < 1"):
        risk_band(pd.Series([0.5]), {"medium": 0.6, "high": 0.5})


def test_lifecycle_precedence():
    cases = {  # tenure_days, recency_days -> stage
        "newly signed, bought": (10, 5, "new"),
        "newly signed, not bought": (89, np.nan, "new"),
        "past new, bought at the active limit": (90, 90, "active"),
        "dormant just after active": (400, 91, "dormant"),
        "dormant at its limit": (400, 365, "dormant"),
        "lapsed": (400, 366, "lapsed"),
        "never bought, signed up 200 days ago": (200, np.nan, "dormant"),
        "never bought, signed up over a year ago": (366, np.nan, "lapsed"),
    }
    features = pd.DataFrame(
        {"tenure_days": [c[0] for c in cases.values()], "recency_days": [c[1] for c in cases.values()]},
        index=list(cases),
    )
    stages = lifecycle_stage(features, TierSettings())
    assert stages.to_dict() == {name: c[2] for name, c in cases.items()}
    assert stages.dtype == LIFECYCLE_DTYPE


def test_lifecycle_follows_the_settings_and_data_without_purchases():
    features = pd.DataFrame({"tenure_days": [10.0, 50.0, 400.0], "recency_days": [10.0, 40.0, 200.0]})
    settings = TierSettings(new_days=30, active_days=30, dormant_days=100)
    assert lifecycle_stage(features, settings).tolist() == ["new", "dormant", "lapsed"]
    # Subscription data: no purchases at all, so no recency to lose; tenured customers are active.
    assert lifecycle_stage(features[["tenure_days"]], settings).tolist() == ["new", "active", "active"]
    # No signup dates (a transaction log alone): nobody is known to be new; the purchases decide.
    assert lifecycle_stage(features[["recency_days"]], settings).tolist() == ["active", "dormant", "lapsed"]
    # A snapshot with neither: the stage is unknown, not guessed.
    assert lifecycle_stage(features[[]], settings).isna().all()


def test_value_at_risk_matches_customers_by_id():
    clv = pd.Series([100.0, 200.0, 0.0], index=[1, 2, 3])
    p = pd.Series([0.5, 0.1, 0.9], index=[3, 1, 2])
    var = value_at_risk(clv, p)
    assert var.to_dict() == pytest.approx({1: 10.0, 2: 180.0, 3: 0.0})
    assert var.name == "value_at_risk"
    with pytest.raises(ValueError, match="clv: values must be >= 0"):
        value_at_risk(pd.Series([-1.0]), pd.Series([0.5]))
    with pytest.raises(ValueError, match="must hold the same customers"):
        value_at_risk(clv, p.rename(index={3: 4}))


def test_recommended_action_reads_the_matrix():
    actions = TierSettings().actions
    tier = pd.Series(["A", "E", "C", "B"], index=[1, 2, 3, 4])
    band = pd.Series(["low", "high", "medium", "high"], index=[4, 2, 3, 1])  # other order: matched by id
    chosen = recommended_action(tier, band, actions)
    assert chosen.tolist() == [
        "personal retention plan now",
        "let go: no spend",
        "targeted retention offer",
        "grow: cross-sell",
    ]
    assert list(chosen.dtype.categories)[0] == "grow: loyalty benefits"  # the same categories for any chunk


def test_recommended_action_refuses_unknown_tiers_and_gaps_in_the_matrix():
    actions = TierSettings().actions
    with pytest.raises(ValueError, match="tier: unknown value 'F'"):
        recommended_action(pd.Series(["A", "F"]), pd.Series(["low", "low"]), actions)
    with pytest.raises(ValueError, match="risk_band: unknown value 'severe'"):
        recommended_action(pd.Series(["A"]), pd.Series(["severe"]), actions)
    gap = {t: dict(row) for t, row in actions.items()}
    del gap["C"]["high"]
    with pytest.raises(ValueError, match="actions: tier 'C' has no action for risk band 'high'"):
        recommended_action(pd.Series(["A"]), pd.Series(["low"]), gap)


# ---------------------------------------------------------------------------------------------------
# assign
# ---------------------------------------------------------------------------------------------------


def _inputs(n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    features = random_features(n, seed)
    rng = np.random.default_rng(seed + 100)
    clv = pd.Series(rng.gamma(0.5, 400, n), index=features.index)
    p = pd.Series(rng.uniform(size=n), index=features.index)
    return features, clv, p


@pytest.mark.parametrize("method", ["scorecard", "pyramid"])
def test_assign_gives_every_column_and_is_the_same_in_chunks(method):
    features, clv, p = _inputs(2000)
    settings = TierSettings(method=method)
    scorecard = fit_scorecard(features, settings.scorecard)
    pyramid = fit_pyramid(clv, settings.pyramid_shares)
    whole = assign(features, clv, p, settings, scorecard=scorecard, pyramid=pyramid)
    assert list(whole.columns) == ["points", "tier", "risk_band", "lifecycle_stage", "value_at_risk", "action"]
    assert whole.index.equals(features.index)
    assert whole["tier"].dtype == TIER_DTYPE and whole["risk_band"].dtype == RISK_BAND_DTYPE
    assert whole["lifecycle_stage"].dtype == LIFECYCLE_DTYPE
    np.testing.assert_allclose(whole["value_at_risk"], clv * p)
    expected_tier = (
        scorecard_tiers(whole["points"], settings.scorecard)
        if method == "scorecard"
        else pyramid_tiers(clv, settings.pyramid_shares)
    )
    assert whole["tier"].tolist() == expected_tier.tolist()
    chunks = [
        assign(features.iloc[rows], clv.iloc[rows], p.iloc[rows], settings, scorecard=scorecard, pyramid=pyramid)
        for rows in np.array_split(np.random.default_rng(4).permutation(2000), 6)
    ]
    pd.testing.assert_frame_equal(pd.concat(chunks).loc[whole.index], whole, check_exact=True)
    action = recommended_action(whole["tier"], whole["risk_band"], settings.actions)
    assert whole["action"].tolist() == action.tolist()


def test_assign_without_fitted_scales_ranks_the_customers_among_themselves():
    features, clv, p = _inputs(500, seed=1)
    settings = TierSettings()
    result = assign(features, clv.sample(frac=1.0, random_state=0), p.to_numpy(), settings)
    np.testing.assert_array_equal(result["points"], scorecard_points(features, settings.scorecard)["total"])
    np.testing.assert_allclose(result["value_at_risk"], clv * p)


def test_assign_without_scorecard_features():
    features = pd.DataFrame({"tenure_days": [10.0, 400.0, 500.0]}, index=[1, 2, 3])  # subscription data
    clv, p = pd.Series([10.0, 300.0, 50.0], index=[1, 2, 3]), pd.Series([0.1, 0.9, 0.3], index=[1, 2, 3])
    with pytest.raises(DataError, match="no metric with a positive weight can rank the customers"):
        assign(features, clv, p, TierSettings(method="scorecard"))
    result = assign(features, clv, p, TierSettings(method="pyramid"))
    assert result["points"].isna().all()
    # 3 customers: cumulative counts ceil(0.03) = 1 (A), 1, 1, ceil(1.5) = 2 (D), the rest E.
    assert result["tier"].tolist() == ["E", "A", "D"]
    assert result["lifecycle_stage"].tolist() == ["new", "active", "active"]
    assert result["action"].tolist() == ["automated nurture", "personal retention plan now", "automated low-cost offer"]


def test_assign_refuses_inputs_for_other_customers():
    features, clv, p = _inputs(20)
    with pytest.raises(ValueError, match="assign: clv must hold exactly the customers of features"):
        assign(features, clv.iloc[:-1], p)
    with pytest.raises(ValueError, match=r"assign: p_churn has shape \(3,\), expected \(20,\)"):
        assign(features, clv, np.array([0.1, 0.2, 0.3]))


def test_assign_on_simulated_features(small_sim):
    features = build_features(small_sim.tables(), "2026-06-30")
    n = len(features)
    clv = pd.Series(features["monetary_365d"].to_numpy() * 0.8, index=features.index)
    p = pd.Series(np.clip(features["recency_days"].fillna(900).to_numpy() / 1000, 0, 1), index=features.index)
    result = assign(features, clv, p, TierSettings())
    assert len(result) == n and not result.isna().any().any()
    # Customers who bought nothing in the year rank at the bottom of the biggest metric: never tier A.
    no_sales = features["monetary_365d"] == 0
    assert no_sales.any() and (result.loc[no_sales, "tier"] != "A").all()
    assert set(result["tier"]) == {"A", "B", "C", "D", "E"}


# ---------------------------------------------------------------------------------------------------
# reports
# ---------------------------------------------------------------------------------------------------


def test_tier_migration_counts_moves_new_and_gone_customers():
    previous = pd.Series(["A", "B", "C", "E", "E"], index=[1, 2, 3, 4, 6])
    current = pd.Series(["A", "A", "D", "B", "E"], index=[1, 2, 3, 5, 6])
    migration = tier_migration(previous, current)
    assert list(migration.index) == ["A", "B", "C", "D", "E", "new"]
    assert list(migration.columns) == ["A", "B", "C", "D", "E", "gone"]
    assert migration.index.name == "previous" and migration.columns.name == "current"
    expected = pd.DataFrame(0, index=migration.index, columns=migration.columns)
    expected.loc["A", "A"] = 1  # customer 1 stayed
    expected.loc["B", "A"] = 1  # customer 2 moved up
    expected.loc["C", "D"] = 1  # customer 3 moved down
    expected.loc["E", "gone"] = 1  # customer 4 is no longer scored
    expected.loc["new", "B"] = 1  # customer 5 is new
    expected.loc["E", "E"] = 1  # customer 6 stayed
    pd.testing.assert_frame_equal(migration, expected, check_dtype=False)
    assert migration.to_numpy().sum() == 6  # every customer of either scoring once


def test_tier_migration_refuses_unknown_tiers():
    with pytest.raises(ValueError, match="previous: unknown value 'Z'"):
        tier_migration(pd.Series(["Z"]), pd.Series(["A"]))
    with pytest.raises(ValueError, match="current: 1 missing value"):
        tier_migration(pd.Series(["A"]), pd.Series([None], dtype=object))


def test_tier_summary_by_hand_and_its_sums():
    tiers = pd.Series(["A", "C", "C", "E"], index=[1, 2, 3, 4])
    clv = pd.Series([600.0, 200.0, 100.0, 100.0], index=[1, 2, 3, 4])
    var = pd.Series([60.0, 100.0, 10.0, 90.0], index=[1, 2, 3, 4])
    band = pd.Series(["low", "high", "low", "high"], index=[1, 2, 3, 4])
    summary = tier_summary(tiers, clv, var, band)
    assert list(summary.index) == ["A", "B", "C", "D", "E"]
    assert summary["customers"].tolist() == [1, 0, 2, 0, 1]
    assert summary["customer_share"].tolist() == pytest.approx([0.25, 0, 0.5, 0, 0.25])
    assert summary["clv"].tolist() == pytest.approx([600, 0, 300, 0, 100])
    assert summary["clv_share"].tolist() == pytest.approx([0.6, 0, 0.3, 0, 0.1])
    assert summary["value_at_risk"].tolist() == pytest.approx([60, 0, 110, 0, 90])
    assert summary["high_risk_customers"].tolist() == [0, 0, 1, 0, 1]


def test_tier_summary_and_risk_matrix_add_up_to_the_totals():
    features, clv, p = _inputs(1000, seed=2)
    result = assign(features, clv, p, TierSettings())
    summary = tier_summary(result["tier"], clv, result["value_at_risk"], result["risk_band"])
    assert summary["customers"].sum() == 1000
    assert summary["customer_share"].sum() == pytest.approx(1.0)
    assert summary["clv"].sum() == pytest.approx(clv.sum())
    assert summary["clv_share"].sum() == pytest.approx(1.0)
    assert summary["value_at_risk"].sum() == pytest.approx(result["value_at_risk"].sum())
    assert summary["high_risk_customers"].sum() == (result["risk_band"] == "high").sum()
    matrix = tier_risk_matrix(result["tier"], result["risk_band"], clv, result["value_at_risk"])
    counts = pd.crosstab(result["tier"], result["risk_band"], dropna=False)
    np.testing.assert_array_equal(matrix["customers"].to_numpy(), counts.to_numpy())
    np.testing.assert_allclose(matrix["value_at_risk"].sum(axis=1), summary["value_at_risk"])
    np.testing.assert_allclose(matrix["clv"].sum(axis=1), summary["clv"])
    assert list(matrix.columns.get_level_values(1)[:3]) == ["low", "medium", "high"]


def test_reports_refuse_mismatched_inputs():
    tiers = pd.Series(["A", "B"], index=[1, 2])
    with pytest.raises(ValueError, match="clv: values must be >= 0"):
        tier_summary(tiers, pd.Series([1.0, -1.0], index=[1, 2]), pd.Series([0.0, 0.0], index=[1, 2]), tiers)
    with pytest.raises(ValueError, match="bands: unknown value 'A'"):
        tier_risk_matrix(tiers, tiers, pd.Series([1.0, 1.0], index=[1, 2]), pd.Series([0.0, 0.0], index=[1, 2]))
    with pytest.raises(ValueError, match="must hold the same customers"):
        tier_summary(
            tiers,
            pd.Series([1.0, 1.0], index=[1, 3]),
            pd.Series([0.0, 0.0], index=[1, 2]),
            pd.Series(["low", "low"], index=[1, 2]),
        )
