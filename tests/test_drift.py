"""Population stability index (``crmscore.drift``): known values, binning rules, categorical data, the table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from crmscore.drift import PSI_EPSILON, feature_drift, population_stability_index, psi_bins


def _binned_normal_psi(shift: float, bins: int = 10) -> float:
    """Exact PSI of N(shift, 1) against N(0, 1) over the N(0, 1) decile bins."""
    edges = np.r_[-np.inf, stats.norm.ppf(np.arange(1, bins) / bins), np.inf]
    expected = np.full(bins, 1.0 / bins)
    actual = np.diff(stats.norm.cdf(edges - shift))
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def test_identical_distributions_give_zero():
    values = np.random.default_rng(0).normal(size=5_000)
    assert population_stability_index(values, values) == pytest.approx(0.0, abs=1e-12)
    # Two independent samples of the same distribution: only sampling noise (about bins / n).
    other = np.random.default_rng(1).normal(size=50_000)
    assert population_stability_index(np.random.default_rng(2).normal(size=50_000), other) < 0.002


@pytest.mark.parametrize("shift", [0.25, 0.5, 1.0])
def test_shifted_normal_matches_the_exact_binned_value(shift):
    rng = np.random.default_rng(3)
    expected = rng.normal(size=200_000)
    actual = rng.normal(loc=shift, size=200_000)
    exact = _binned_normal_psi(shift)
    psi = population_stability_index(expected, actual)
    assert psi == pytest.approx(exact, rel=0.03)
    # Binning loses information: below the unbinned Jeffreys divergence of the two normals, shift ** 2.
    assert exact < shift**2
    assert psi == pytest.approx(shift**2, rel=0.25)


def test_psi_is_the_symmetrised_kl_divergence_of_the_binned_shares():
    expected = np.repeat([1.0, 2.0, 3.0], [50, 30, 20])
    actual = np.repeat([1.0, 2.0, 3.0], [20, 30, 50])
    e, a = np.array([0.5, 0.3, 0.2]), np.array([0.2, 0.3, 0.5])
    kl = np.sum(a * np.log(a / e)) + np.sum(e * np.log(e / a))
    assert population_stability_index(expected, actual, bins=3) == pytest.approx(kl)
    assert population_stability_index(expected, actual, bins=3) == pytest.approx(2 * 0.3 * np.log(2.5))


def test_categorical_shares_by_hand_and_new_categories_use_the_epsilon():
    expected = pd.Series(["a"] * 50 + ["b"] * 50)
    actual = pd.Series(["a"] * 25 + ["b"] * 75)
    by_hand = (0.25 - 0.5) * np.log(0.25 / 0.5) + (0.75 - 0.5) * np.log(0.75 / 0.5)
    assert population_stability_index(expected, actual) == pytest.approx(by_hand)
    assert population_stability_index(expected.astype("category"), actual.astype("category")) == pytest.approx(by_hand)

    with_new = pd.Series(["a"] * 50 + ["c"] * 50)  # "b" vanished, "c" is new
    psi = population_stability_index(expected, with_new)
    term = (0.5 - PSI_EPSILON) * np.log(0.5 / PSI_EPSILON)
    assert psi == pytest.approx(2 * term)
    assert np.isfinite(psi)


def test_missing_values_get_a_bin_of_their_own():
    values = np.arange(1_000, dtype=float)
    half_missing = values.copy()
    half_missing[::2] = np.nan
    psi = population_stability_index(values, half_missing)
    # Half of the actual customers moved into the missing bin, empty in the reference.
    assert psi > 2.0
    assert population_stability_index(half_missing, half_missing) == pytest.approx(0.0)
    labels = pd.Series(["x", None, "y", None])
    assert population_stability_index(labels, pd.Series(["x", "y", "x", "y"])) > 1.0


def test_bins_are_reference_quantiles_closed_on_the_right_with_ties_merged():
    np.testing.assert_allclose(psi_bins(np.arange(1, 11, dtype=float), bins=5), [2.8, 4.6, 6.4, 8.2])
    mostly_zero = np.r_[np.zeros(90), np.arange(1, 11)]
    edges = psi_bins(mostly_zero, bins=10)
    assert edges[0] == 0.0 and len(edges) == len(np.unique(edges))
    # A constant reference: bins below, at and above its value, so moving off it is a shift.
    np.testing.assert_array_equal(psi_bins(np.ones(10)), [np.nextafter(1.0, 0.0), 1.0])
    assert population_stability_index(np.ones(10), np.ones(5)) == pytest.approx(0.0)
    everyone_moved = 2 * (1 - PSI_EPSILON) * np.log(1 / PSI_EPSILON)
    assert population_stability_index(np.ones(10), np.full(5, 2.0)) == pytest.approx(everyone_moved)
    assert population_stability_index(np.ones(10), np.full(5, 0.5)) == pytest.approx(everyone_moved)
    assert psi_bins(np.full(4, np.nan)).size == 0
    # Values beyond the reference range land in the outer bins rather than being dropped.
    assert population_stability_index(np.arange(100.0), np.arange(100.0) + 1_000) > 5


def test_psi_grows_with_the_shift_and_rejects_bad_input():
    rng = np.random.default_rng(4)
    base = rng.normal(size=20_000)
    values = [population_stability_index(base, rng.normal(loc=s, size=20_000)) for s in (0.1, 0.3, 0.6)]
    assert values == sorted(values)
    with pytest.raises(ValueError, match="both samples"):
        population_stability_index([], [1.0])
    with pytest.raises(ValueError, match="bins"):
        population_stability_index([1.0, 2.0], [1.0], bins=1)
    with pytest.raises(ValueError, match="infinite"):
        population_stability_index([1.0, np.inf], [1.0])


def test_feature_drift_flags_features_above_the_threshold():
    rng = np.random.default_rng(5)
    train = pd.DataFrame(
        {
            "recency_days": rng.exponential(30, 4_000),
            "frequency_total": rng.poisson(5, 4_000).astype(float),
            "contract": rng.choice(["monthly", "yearly"], 4_000, p=[0.7, 0.3]),
            "only_in_training": rng.normal(size=4_000),
        }
    )
    score = pd.DataFrame(
        {
            "recency_days": rng.exponential(60, 3_000),  # customers come back half as often
            "frequency_total": rng.poisson(5, 3_000).astype(float),
            "contract": rng.choice(["monthly", "yearly"], 3_000, p=[0.7, 0.3]),
        }
    )
    table = feature_drift(train, score, threshold=0.2)
    assert list(table.columns) == ["feature", "kind", "psi", "drifted", "missing_expected", "missing_actual"]
    assert table["feature"].tolist()[0] == "recency_days"
    assert set(table["feature"]) == {"recency_days", "frequency_total", "contract"}
    flags = table.set_index("feature")["drifted"].to_dict()
    assert flags == {"recency_days": True, "frequency_total": False, "contract": False}
    assert table.set_index("feature").loc["contract", "kind"] == "categorical"
    assert table["psi"].is_monotonic_decreasing
    with pytest.raises(ValueError, match="share no column"):
        feature_drift(train[["contract"]], score[["recency_days"]])
