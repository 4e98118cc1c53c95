"""Tests for crmscore.empc: the exact hull integral against brute force, closed forms, invariances, errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from crmscore import empc as empc_module
from crmscore.empc import EmpcResult, empc, empc_detail, empc_fraction, mpc
from crmscore.evaluation import roc_auc

CLV, INCENTIVE, CONTACT_COST, ALPHA, BETA = 200.0, 10.0, 1.0, 6.0, 14.0
DELTA, PHI = INCENTIVE / CLV, CONTACT_COST / CLV


def scored_customers(n: int, seed: int, decimals: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` customers, about 25 % churners, scores with some signal; rounded to ``decimals`` for ties."""
    rng = np.random.default_rng(seed)
    y = rng.binomial(1, 0.25, n)
    p = np.clip(rng.normal(0.35 + 0.2 * y, 0.15), 0.0, 1.0)
    return y, (np.round(p, decimals) if decimals is not None else p)


def every_threshold_profit(y: np.ndarray, p: np.ndarray, gamma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Profit P(t; γ) at every threshold (contact all with p >= t, plus nobody) and the share contacted.

    Rows are the ``gamma`` values, columns the thresholds; no hull, so the maximum is over every ROC point.
    """
    thresholds = np.unique(p)[::-1]
    churners, stayers = np.sort(p[y == 1]), np.sort(p[y == 0])
    f0 = np.r_[0.0, 1.0 - np.searchsorted(churners, thresholds, side="left") / len(churners)]
    f1 = np.r_[0.0, 1.0 - np.searchsorted(stayers, thresholds, side="left") / len(stayers)]
    pi0 = y.mean()
    profit = CLV * (gamma[:, None] * (1 - DELTA) - PHI) * pi0 * f0 - CLV * (DELTA + PHI) * (1 - pi0) * f1
    return profit, pi0 * f0 + (1 - pi0) * f1


def brute_force_empc(y: np.ndarray, p: np.ndarray, points: int = 20_001) -> tuple[float, float]:
    """EMPC and share contacted by the trapezoidal rule over a fine γ grid of the best of every threshold."""
    gamma = np.linspace(0.0, 1.0, points)
    best, contacted = np.empty(points), np.empty(points)
    for chunk in np.array_split(np.arange(points), 20):
        profit, share = every_threshold_profit(y, p, gamma[chunk])
        best[chunk] = profit.max(axis=1)
        contacted[chunk] = share[profit.argmax(axis=1)]
    density = stats.beta.pdf(gamma, ALPHA, BETA)
    return float(np.trapezoid(best * density, gamma)), float(np.trapezoid(contacted * density, gamma))


# --- the exact integral ------------------------------------------------------------------------------


@pytest.mark.parametrize("decimals", [None, 2, 1], ids=["distinct scores", "ties (2 decimals)", "ties (1 decimal)"])
def test_empc_equals_brute_force_over_every_threshold(decimals):
    y, p = scored_customers(500, seed=7, decimals=decimals)
    expected, expected_fraction = brute_force_empc(y, p)
    result = empc_detail(y, p, CLV, INCENTIVE, CONTACT_COST, ALPHA, BETA)
    assert expected > 1.0  # a campaign pays here, so the comparison is not 0 against 0
    assert result.empc == pytest.approx(expected, rel=1e-4)
    assert result.fraction == pytest.approx(expected_fraction, abs=1e-4)


@pytest.mark.parametrize("gamma", [0.0, 0.05, 0.2, 0.3, 0.55, 1.0])
def test_mpc_is_the_best_profit_over_every_threshold(gamma):
    y, p = scored_customers(400, seed=11, decimals=2)
    profit, _ = every_threshold_profit(y, p, np.array([gamma]))
    assert mpc(y, p, CLV, INCENTIVE, CONTACT_COST, gamma) == pytest.approx(profit.max(), rel=1e-12, abs=1e-12)


def test_empc_and_empc_fraction_are_the_parts_of_empc_detail():
    y, p = scored_customers(300, seed=3)
    detail = empc_detail(y, p, clv=150.0, incentive=5.0, contact_cost=2.0, alpha=2.0, beta=3.0)
    assert isinstance(detail, EmpcResult)
    assert empc(y, p, 150.0, 5.0, 2.0, 2.0, 3.0) == detail.empc
    assert empc_fraction(y, p, 150.0, 5.0, 2.0, 2.0, 3.0) == detail.fraction
    assert 0.0 < detail.fraction < 1.0


# --- closed forms ---------------------------------------------------------------------------------------


def test_perfect_ranking_earns_the_closed_form():
    # Hull (0,0), (0,1), (1,1): contact exactly the churners whenever γ(1 − δ) > φ, i.e. γ > γ*.
    y = np.r_[np.ones(30, dtype=int), np.zeros(170, dtype=int)]
    p = np.linspace(0.99, 0.01, len(y))
    pi0 = y.mean()
    gamma_star = PHI / (1 - DELTA)
    mean = ALPHA / (ALPHA + BETA)
    above = stats.beta.sf(gamma_star, ALPHA, BETA)
    mean_above = mean * stats.beta.sf(gamma_star, ALPHA + 1, BETA)
    closed_form = CLV * pi0 * ((1 - DELTA) * mean_above - PHI * above)
    result = empc_detail(y, p)
    assert result.empc == pytest.approx(closed_form, rel=1e-12)
    assert result.empc == pytest.approx(200 * 0.15 * (0.95 * 0.3 - 0.005), rel=1e-6)  # P(γ < γ*) is ~1e-10
    assert result.fraction == pytest.approx(pi0 * above, rel=1e-12)


@pytest.mark.parametrize("churners", [60, 4], ids=["contact-all pays sometimes", "contact-all never pays"])
def test_constant_scores_earn_the_better_of_everyone_or_nobody(churners):
    y = np.r_[np.ones(churners, dtype=int), np.zeros(200 - churners, dtype=int)]
    p = np.full(len(y), 0.4)
    pi0 = y.mean()

    def contact_all(gamma: float) -> float:
        return CLV * (gamma * (1 - DELTA) - PHI) * pi0 - CLV * (DELTA + PHI) * (1 - pi0)

    # Contacting everyone pays from this acceptance rate on (above 1: never).
    breakeven = (PHI * pi0 + (DELTA + PHI) * (1 - pi0)) / ((1 - DELTA) * pi0)
    expected, _ = integrate.quad(
        lambda g: max(contact_all(g), 0.0) * stats.beta.pdf(g, ALPHA, BETA),
        0,
        1,
        points=[min(breakeven, 0.5)],
        epsabs=1e-13,
    )
    result = empc_detail(y, p)
    assert result.empc == pytest.approx(expected, rel=1e-7, abs=1e-12)
    assert result.fraction == pytest.approx(stats.beta.sf(breakeven, ALPHA, BETA), rel=1e-12, abs=1e-15)
    if churners == 60:
        assert result.empc > 0.1
    else:
        assert result.empc == 0.0 and result.fraction == 0.0


def test_no_campaign_pays_when_the_incentive_is_worth_the_whole_clv():
    y, p = scored_customers(300, seed=5)
    assert empc(y, p, clv=50.0, incentive=50.0) == 0.0
    assert empc_fraction(y, p, clv=50.0, incentive=80.0) == 0.0
    assert empc(y, p, clv=50.0, incentive=5.0) > 0.0


def test_free_contacts_and_offers_contact_every_churner_a_perfect_model_finds():
    # With δ = φ = 0 contacting a churner never loses, contacting a non-churner costs nothing either:
    # the perfect model earns CLV · π0 · E[γ] and contacts just the churners.
    y = np.r_[np.ones(20, dtype=int), np.zeros(80, dtype=int)]
    p = np.r_[np.full(20, 0.9), np.full(80, 0.1)]
    result = empc_detail(y, p, clv=100.0, incentive=0.0, contact_cost=0.0)
    assert result.empc == pytest.approx(100.0 * 0.2 * ALPHA / (ALPHA + BETA), rel=1e-12)
    assert result.fraction == pytest.approx(0.2, rel=1e-12)


# --- invariances and ordering ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "transform",
    [np.sqrt, lambda x: x**3, lambda x: (np.exp(x) - 1) / (np.e - 1), lambda x: 0.2 + 0.5 * x],
    ids=["sqrt", "cube", "exp", "affine"],
)
def test_empc_is_invariant_to_strictly_increasing_transforms(transform):
    y, p = scored_customers(600, seed=13, decimals=3)  # a grid of scores: ties that every transform keeps
    before = empc_detail(y, p)
    after = empc_detail(y, transform(p))
    assert after.empc == pytest.approx(before.empc, rel=1e-12)
    assert after.fraction == pytest.approx(before.fraction, rel=1e-12)
    assert empc(y, 1 - p) < before.empc  # a reversed ranking is not invariant: the check can fail


def test_row_order_does_not_change_empc_with_ties():
    y, p = scored_customers(500, seed=17, decimals=1)
    order = np.random.default_rng(0).permutation(len(y))
    assert empc_detail(y[order], p[order]) == empc_detail(y, p)


def test_a_dominating_model_earns_at_least_as_much():
    # Raising every churner's score leaves the non-churners' ranks among themselves and lifts the ROC
    # curve everywhere: at every γ the better model's best campaign earns at least as much.
    y, weak = scored_customers(800, seed=19)
    strong = (weak + 0.25 * y) / 1.25
    assert roc_auc(y, strong) > roc_auc(y, weak)
    for gamma in np.linspace(0.0, 1.0, 41):
        assert mpc(y, strong, gamma=gamma) >= mpc(y, weak, gamma=gamma) - 1e-12
    assert empc(y, strong) > empc(y, weak)


# --- errors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"clv": 0.0}, "clv must be a positive number, got 0.0"),
        ({"clv": -5}, "clv must be a positive number, got -5"),
        ({"clv": float("nan")}, "clv must be a positive number, got nan"),
        ({"incentive": -1.0}, "incentive must be a number >= 0, got -1.0"),
        ({"contact_cost": -0.5}, "contact_cost must be a number >= 0, got -0.5"),
        ({"contact_cost": True}, "contact_cost must be a number >= 0, got True"),
        ({"alpha": 0.0}, "alpha of the acceptance-rate Beta distribution must be positive, got 0.0"),
        ({"beta": -2}, "beta of the acceptance-rate Beta distribution must be positive, got -2"),
    ],
)
def test_bad_parameters_raise_one_line(kwargs, message):
    y, p = scored_customers(50, seed=1)
    with pytest.raises(ValueError, match=f"^{message.replace('.', '[.]')}$"):
        empc(y, p, **kwargs)


@pytest.mark.parametrize("only", [0, 1])
def test_a_single_class_raises(only):
    y = np.full(10, only)
    with pytest.raises(ValueError, match=rf"^empc needs both classes in y_true, got only class {only} in 10 customer"):
        empc(y, np.linspace(0, 1, 10))
    with pytest.raises(ValueError, match=rf"^mpc needs both classes in y_true, got only class {only}"):
        mpc(y, np.linspace(0, 1, 10), gamma=0.3)


def test_bad_predictions_raise_the_shared_validation_message():
    with pytest.raises(ValueError, match=r"^p must lie in \[0, 1\]"):
        empc([0, 1, 1], [0.2, 1.5, 0.3])
    with pytest.raises(ValueError, match=r"^y_true and p must have the same length, got 3 and 2$"):
        empc_fraction([0, 1, 1], [0.2, 0.3])


@pytest.mark.parametrize("gamma", [-0.1, 1.2, float("nan"), "0.3"])
def test_mpc_rejects_gamma_outside_the_unit_interval(gamma):
    with pytest.raises(ValueError, match=r"^gamma must be a number in \[0, 1\], got "):
        mpc([0, 1, 1, 0], [0.1, 0.8, 0.6, 0.3], gamma=gamma)


def test_module_imports_nothing_else_from_crmscore():
    # The metric stays usable on its own: numpy / scipy / pandas and the shared input validation only.
    source = empc_module.__file__
    imports = [ln for ln in open(source, encoding="utf-8") if ln.startswith(("import ", "from "))]
    crmscore_imports = [ln.strip() for ln in imports if "crmscore" in ln]
    assert crmscore_imports == ["from crmscore.evaluation import validate_binary_predictions"]
