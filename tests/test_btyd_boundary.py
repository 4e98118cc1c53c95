"""Fits on a boundary of the parameter space (``crmscore.clv.btyd``, ``crmscore.clv.value.BtydClv``).

Customers who never drop out push the BG/NBD to a → 0 (or b → ∞) and the Pareto/NBD to s → 0: the
maximum lies on the boundary, which is the NBD. The CLV estimator then uses the NBD and says so; where
parameters run off for other reasons it refits with a small penalizer. Populations are simulated with
fixed seeds: an NBD transaction log (Poisson purchasing at gamma-distributed rates, nobody drops out,
observed for one to two years and a year of holdout) and BG/NBD customers who do drop out.
"""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pandas as pd
import pytest
from scipy.special import gamma as gamma_fn
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from tests.test_btyd import degenerate, simulate_bgnbd, simulate_gamma_gamma, summary, with_params

from crmscore.clv import btyd
from crmscore.clv.btyd import BetaGeoModel, GammaGammaModel, NBDModel, NoMaximumError, ParetoNBDModel
from crmscore.clv.value import BtydClv, summary_from_features
from crmscore.errors import DataError, FitError
from crmscore.features import build_features

AS_OF = pd.Timestamp("2024-12-31")
HOLDOUT_DAYS = 364
NBD = {"r": 2.0, "alpha": 20.0}  # weekly purchase rates: mean 0.1, coefficient of variation 0.71
BG = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}


# ---------------------------------------------------------------------------------------------------
# simulated populations
# ---------------------------------------------------------------------------------------------------


def nbd_tables(n: int, r: float, alpha: float, seed: int = 0) -> dict[str, pd.DataFrame]:
    """A transaction log of customers who never drop out, up to a year after ``AS_OF``.

    Each customer makes a first purchase 52 to 104 weeks before ``AS_OF`` (her signup day) and then buys
    as a Poisson process with weekly rate λ ~ Gamma(r, α); purchase values are Gamma(3, ν) with
    ν ~ Gamma(4, 100) per customer.
    """
    rng = np.random.default_rng(seed)
    rate = rng.gamma(r, 1 / alpha, n)
    start_days = np.floor(rng.uniform(52, 104, n) * 7)
    first = (AS_OF - pd.to_timedelta(start_days, unit="D")).to_numpy()
    span = start_days + HOLDOUT_DAYS
    owner = np.repeat(np.arange(n), rng.poisson(rate * span / 7))
    offset = pd.to_timedelta(np.floor(rng.uniform(0, span[owner])), unit="D").to_numpy()
    who = np.concatenate([np.arange(n), owner])
    nu = rng.gamma(4.0, 1 / 100.0, n)
    transactions = pd.DataFrame(
        {
            "customer_id": who + 1,
            "date": np.concatenate([first, first[owner] + offset]),
            "amount": rng.gamma(3.0, 1 / nu[who]).round(2),
        }
    )
    customers = pd.DataFrame({"customer_id": np.arange(1, n + 1), "signup_date": first})
    return {"customers": customers, "transactions": transactions}


def features_from_summary(calibration: pd.DataFrame, monetary: np.ndarray) -> pd.DataFrame:
    """The BTYD features of a weekly calibration summary (the inverse of ``summary_from_features``)."""
    x = calibration["frequency"].to_numpy()
    return pd.DataFrame(
        {
            "repeat_purchase_days": x,
            "first_purchase_days": calibration["T"].to_numpy() * 7,
            "recency_days": (calibration["T"] - calibration["recency"]).to_numpy() * 7,
            "repeat_spend_mean": np.where(x > 0, monetary, np.nan),
        },
        index=pd.Index(np.arange(1, len(x) + 1), name="customer_id"),
    )


def dropout_features(n: int = 4000, seed: int = 0, **params: float) -> pd.DataFrame:
    """Features of BG/NBD customers (who drop out) with Gamma-Gamma purchase values."""
    calibration, _, _ = simulate_bgnbd(n, **(params or BG), seed=seed)
    values = simulate_gamma_gamma(n, 4.0, 3.0, 20.0, seed=seed)["monetary_value"].to_numpy()
    return features_from_summary(calibration, values)


def nbd_summary(n: int, seed: int = 0) -> pd.DataFrame:
    """Weekly calibration summary of NBD customers observed for 52 to 104 weeks."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(NBD["r"], 1 / NBD["alpha"], n)
    T = rng.uniform(52, 104, n)
    x = rng.poisson(rate * T)
    t_x = np.where(x > 0, T * rng.beta(np.maximum(x, 1), 1), 0.0)
    return summary(x, t_x, T)


@pytest.fixture(scope="module")
def no_dropout() -> dict[str, pd.DataFrame]:
    return nbd_tables(3000, **NBD, seed=1)


@pytest.fixture(scope="module")
def no_dropout_features(no_dropout) -> pd.DataFrame:
    calibration = {
        "customers": no_dropout["customers"],
        "transactions": no_dropout["transactions"].loc[lambda t: t["date"] <= AS_OF],
    }
    return build_features(calibration, AS_OF)


@pytest.fixture(scope="module")
def no_dropout_model(no_dropout_features) -> BtydClv:
    return BtydClv(horizon_days=HOLDOUT_DAYS).fit(no_dropout_features)


# ---------------------------------------------------------------------------------------------------
# the NBD model
# ---------------------------------------------------------------------------------------------------


def test_nbd_log_likelihood_is_the_formula_and_the_limit_of_both_dropout_models():
    x, t_x, T = np.array([0.0, 1.0, 4.0, 12.0]), np.array([0.0, 3.0, 20.0, 50.0]), np.array([10.0, 30.0, 40.0, 60.0])
    r, alpha = 1.7, 14.0
    direct = np.log(gamma_fn(r + x) / gamma_fn(r) * alpha**r / (alpha + T) ** (r + x))
    nbd = with_params(NBDModel, r=r, alpha=alpha)
    np.testing.assert_allclose(nbd.log_likelihood_individual(summary(x, t_x, T)), direct, rtol=1e-12)
    # As the dropout vanishes, BG/NBD (a -> 0) and Pareto/NBD (s -> 0) give the NBD's likelihood.
    bg = with_params(BetaGeoModel, r=r, alpha=alpha, a=1e-12, b=2.0)
    pnbd = with_params(ParetoNBDModel, r=r, alpha=alpha, s=1e-12, beta=5.0)
    for limit in (bg, pnbd):
        np.testing.assert_allclose(limit.log_likelihood_individual(summary(x, t_x, T)), direct, rtol=1e-9)


def test_nbd_predictions():
    model = with_params(NBDModel, r=2.0, alpha=20.0)
    history = summary([0, 3, 10], [0.0, 20.0, 30.0], [40.0, 40.0, 80.0])
    np.testing.assert_allclose(model.expected_purchases(np.array([0.0, 10.0, 52.0])), [0.0, 1.0, 5.2])
    np.testing.assert_allclose(
        model.conditional_expected_purchases(52, history), [2 * 52 / 60, 5 * 52 / 60, 12 * 52 / 100]
    )
    np.testing.assert_array_equal(model.probability_alive(history), [1.0, 1.0, 1.0])
    # Against a simulation: the posterior mean rate predicts each customer's next year.
    rng = np.random.default_rng(4)
    rate = rng.gamma(2.0, 1 / 20.0, 20_000)
    T = rng.uniform(20, 80, 20_000)
    x = rng.poisson(rate * T)
    future = rng.poisson(rate * 52)
    expected = model.conditional_expected_purchases(52, summary(x, np.where(x > 0, T, 0.0), T))
    for group in (x == 0, (x > 0) & (x <= 5), x > 5):
        assert expected[group].mean() == pytest.approx(future[group].mean(), rel=0.05)


def test_nbd_recovers_parameters_with_standard_errors():
    model = NBDModel().fit(nbd_summary(5000, seed=2))
    for name, true in NBD.items():
        se = model.standard_errors_[name]
        assert 0 < se < 0.1 * true
        assert abs(model.params_[name] - true) < 3 * se, (name, model.params_[name], se)
    table = model.summary_table()
    assert list(table.index) == ["r", "alpha"] and (table["lower_95"] < table["upper_95"]).all()


def test_nbd_analytic_gradient_matches_finite_differences():
    calibration = nbd_summary(500, seed=3)
    x, _, T = btyd._arrays(calibration)
    (x, T), w = btyd._compress(x, T)
    levels = btyd._Levels(x)
    theta = np.array([1.3, 11.0])
    _, grad = NBDModel._value_and_grad(theta, x, T, w, levels)
    u = np.log(theta)

    def f(v):
        return btyd._wsum(w, NBDModel._loglik(np.exp(v), x, T, levels))

    numeric = [(f(u + e) - f(u - e)) / 2e-6 for e in np.eye(2) * 1e-6]
    np.testing.assert_allclose(grad, numeric, rtol=1e-5)


def test_nbd_sklearn_conventions():
    assert NBDModel().get_params() == {"penalizer": 0.0, "time_unit": "W"}
    with pytest.raises(NotFittedError, match="NBDModel is not fitted yet"):
        NBDModel().conditional_expected_purchases(10, nbd_summary(5))
    model = NBDModel().fit(nbd_summary(1000))
    assert not hasattr(clone(model), "params_")
    twin = pickle.loads(pickle.dumps(model))
    assert twin.params_ == model.params_ and twin.time_unit_ == "W"
    with pytest.raises(DataError, match="time unit 'D'"):
        model.probability_alive(summary([1], [2.0], [3.0], unit="D"))


# ---------------------------------------------------------------------------------------------------
# no dropout: the NBD replaces the dropout model
# ---------------------------------------------------------------------------------------------------


def test_plain_bgnbd_has_no_interior_maximum_without_dropout():
    calibration = nbd_summary(3000, seed=1)
    try:
        fitted = BetaGeoModel().fit(calibration)
        estimates, loglik = fitted.params_, fitted.log_likelihood_
    except NoMaximumError as exc:
        assert isinstance(exc, FitError) and "clv.penalizer" in str(exc)
        estimates, loglik = exc.estimates, exc.log_likelihood
    assert estimates["a"] / (estimates["a"] + estimates["b"]) < 1e-4
    # The boundary is the NBD: same likelihood, two parameters fewer.
    nbd = NBDModel().fit(calibration)
    assert nbd.log_likelihood_ == pytest.approx(loglik, abs=1.0)
    assert nbd.params_["r"] == pytest.approx(estimates["r"], rel=0.05)


def test_btyd_clv_uses_the_nbd_where_nobody_drops_out(no_dropout, no_dropout_features, no_dropout_model):
    model = no_dropout_model
    assert model.boundary_ == "no_dropout"
    assert isinstance(model.transaction_model_, NBDModel)
    assert model.fit_note_.startswith("BG/NBD: no dropout in this data (a = ")
    assert "the NBD, its no-dropout limit, is used instead" in model.fit_note_
    assert "\n" not in model.fit_note_
    # The NBD fits as well as the BG/NBD at its boundary: the note gives both log-likelihoods.
    nbd_ll = model.transaction_model_.log_likelihood_
    assert f"(log-likelihood {nbd_ll:.1f} against " in model.fit_note_
    bg_ll = float(model.fit_note_.split(" against ")[1].split(" for the BG/NBD")[0])
    assert abs(nbd_ll - bg_ll) < 1.92
    params = model.transaction_model_.params_
    assert params["r"] == pytest.approx(NBD["r"], rel=0.1) and params["alpha"] == pytest.approx(NBD["alpha"], rel=0.1)
    table = model.parameter_table()
    assert list(table["parameter"]) == ["r", "alpha", "p", "q", "gamma"]
    assert table["model"].iloc[0] == "transactions (NBD)"
    assert np.isfinite(table["std_error"]).all() and (table["std_error"] > 0).all()
    assert np.isfinite(model.transaction_model_.log_likelihood_)

    # The holdout year: predicted purchases and spend against what the customers did.
    end = AS_OF + pd.Timedelta(days=HOLDOUT_DAYS)
    holdout = btyd.rfm_summary(no_dropout["transactions"], AS_OF, "W", holdout_end=end)
    actual = holdout["frequency_holdout"].sum()
    purchases = model.expected_purchases(no_dropout_features)
    assert purchases.sum() == pytest.approx(actual, rel=0.1)
    conditional = model.transaction_model_.conditional_expected_purchases(holdout["duration_holdout"].iloc[0], holdout)
    assert conditional.sum() == pytest.approx(actual, rel=0.1)
    spend = model.predict(no_dropout_features)
    assert np.isfinite(spend).all() and spend.sum() == pytest.approx(holdout["monetary_holdout"].sum(), rel=0.1)
    value = model.clv(no_dropout_features)
    assert np.isfinite(value).all() and (value > 0).all()
    np.testing.assert_array_equal(model.probability_alive(no_dropout_features), 1.0)
    curve = btyd.repeat_transactions_tracking(model.transaction_model_, no_dropout["transactions"], AS_OF, end, "W")
    assert curve["predicted"].iloc[-1] == pytest.approx(curve["actual"].iloc[-1], rel=0.1)

    served = pickle.loads(pickle.dumps(model))
    assert len(pickle.dumps(model)) < 5_000 and served.boundary_ == "no_dropout"
    np.testing.assert_array_equal(served.predict(no_dropout_features), spend)


def test_the_boundary_is_logged_once(no_dropout_features, caplog):
    with caplog.at_level(logging.WARNING, logger="crmscore"):
        model = BtydClv().fit(no_dropout_features)
    notes = [r.getMessage() for r in caplog.records if r.name == "crmscore"]
    assert notes == [f"CLV: {model.fit_note_}"]


def test_pareto_nbd_without_dropout_uses_the_nbd():
    calibration = nbd_summary(3000, seed=3)
    fitted = btyd.fit_transaction_model(calibration, "pnbd")
    assert fitted.boundary == "no_dropout" and isinstance(fitted.model, NBDModel)
    assert fitted.note.startswith("Pareto/NBD: no dropout in this data (s = ")
    assert fitted.model.params_ == NBDModel().fit(calibration).params_


def test_nbd_that_runs_off_too_is_penalized():
    # Everyone bought 200 times and last on the last day: no dropout, and the same rate for all.
    fitted = btyd.fit_transaction_model(degenerate())
    assert fitted.boundary == "no_dropout" and isinstance(fitted.model, NBDModel)
    assert fitted.model.penalizer == btyd.FALLBACK_PENALIZER
    assert "purchase rates hardly differ between customers" in fitted.note and "penalizer 0.001" in fitted.note
    rate = fitted.model.params_["r"] / fitted.model.params_["alpha"]
    assert rate == pytest.approx(200 / 30, rel=0.01)


# ---------------------------------------------------------------------------------------------------
# dropout: the BG/NBD stays; parameters that run off: a penalizer
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "seed"),
    [(BG, 0), ({"r": 2.0, "alpha": 20.0, "a": 1.0, "b": 50.0, "T_range": (52.0, 104.0)}, 0)],
    ids=["cdnow-like", "rare-dropout"],
)
def test_btyd_clv_keeps_the_bgnbd_where_customers_drop_out(params, seed, caplog):
    with caplog.at_level(logging.WARNING, logger="crmscore"):
        model = BtydClv().fit(dropout_features(seed=seed, **params))
    assert model.boundary_ is None and model.fit_note_ is None and not caplog.records
    assert isinstance(model.transaction_model_, BetaGeoModel) and model.transaction_model_.penalizer == 0.0
    a, b = model.transaction_model_.params_["a"], model.transaction_model_.params_["b"]
    assert 0.005 < a / (a + b) < 0.5
    assert set(model.parameter_table()["parameter"]) == {"r", "alpha", "a", "b", "p", "q", "gamma"}


def test_unidentified_spend_is_refitted_with_a_penalizer():
    features = dropout_features(seed=0)
    # Every customer's purchases are worth exactly 9 or 18: nothing varies within a customer (p -> inf).
    features["repeat_spend_mean"] = np.where(np.arange(len(features)) % 3 == 0, 18.0, 9.0)
    features.loc[features["repeat_purchase_days"] == 0, "repeat_spend_mean"] = np.nan
    with pytest.raises(NoMaximumError):
        GammaGammaModel().fit(summary_from_features(features))
    model = BtydClv().fit(features)
    assert model.boundary_ == "penalized" and isinstance(model.transaction_model_, BetaGeoModel)
    assert model.spend_model_.penalizer == btyd.FALLBACK_PENALIZER
    assert model.fit_note_.startswith("Gamma-Gamma: the log-likelihood has no proper maximum")
    assert "hardly vary around her own mean" in model.fit_note_ and "penalizer 0.001" in model.fit_note_
    spend = model.expected_average_spend(features)
    bought = features["repeat_purchase_days"].to_numpy() > 0
    assert np.allclose(spend[bought], features["repeat_spend_mean"].to_numpy()[bought], rtol=0.05)


def test_runaway_transaction_parameters_are_refitted_with_a_penalizer():
    nobody_returns = summary(np.zeros(200), np.zeros(200), np.linspace(10, 40, 200))
    with pytest.raises(NoMaximumError) as exc:
        BetaGeoModel().fit(nobody_returns)
    assert set(exc.value.estimates) == {"r", "alpha", "a", "b"} and exc.value.estimates["r"] < 1e-4
    fitted = btyd.fit_transaction_model(nobody_returns)
    assert fitted.boundary == "penalized" and isinstance(fitted.model, BetaGeoModel)
    assert fitted.model.penalizer == btyd.FALLBACK_PENALIZER
    assert "few customers buy again" in fitted.note
    # Nothing identifies a: the penalty puts it at 1, where eq. 9 and 10 are 0/0 (a removable singularity).
    assert fitted.model.params_["a"] == pytest.approx(1.0, abs=1e-6)
    expected = fitted.model.conditional_expected_purchases(52, nobody_returns)
    assert np.isfinite(expected).all() and (expected > 0).all()
    assert np.isfinite(fitted.model.expected_purchases(np.array([1.0, 52.0]))).all()


def test_bgnbd_expectations_are_continuous_at_a_equal_to_one():
    history = summary([0, 2, 10], [0.0, 5.0, 30.0], [20.0, 30.0, 40.0])

    def both(a):
        model = with_params(BetaGeoModel, r=0.5, alpha=5.0, a=a, b=2.0)
        return np.concatenate(
            [model.expected_purchases(np.array([10.0, 52.0])), model.conditional_expected_purchases(52, history)]
        )

    at_one, near = both(1.0), (both(1 - 1e-3) + both(1 + 1e-3)) / 2
    assert np.isfinite(at_one).all()
    np.testing.assert_allclose(at_one, near, rtol=1e-5)
    np.testing.assert_allclose(both(1 + 2e-5), at_one, rtol=1e-4)


def test_a_fit_that_fails_with_the_fallback_penalizer_already_set_is_raised(monkeypatch):
    failure = NoMaximumError(
        "BG/NBD: the optimiser did not converge", {"r": 1.0, "alpha": 1.0, "a": 1.0, "b": 1.0}, -1.0
    )

    def fail(self, summary, y=None):
        raise failure

    monkeypatch.setattr(BetaGeoModel, "fit", fail)
    calibration = nbd_summary(200)
    with pytest.raises(NoMaximumError) as exc:
        btyd.fit_transaction_model(calibration, penalizer=btyd.FALLBACK_PENALIZER)
    assert exc.value is failure
    # Without a penalizer, the refit (with the fallback penalizer) fails the same way: both are reported.
    with pytest.raises(FitError, match="a refit with penalizer 0.001 failed too"):
        btyd.fit_transaction_model(calibration)


def test_a_mean_spend_that_does_not_exist_is_still_an_error():
    with pytest.raises(FitError, match="q = "):
        btyd.fit_spend_model(simulate_gamma_gamma(3000, 3.0, 0.6, 5.0, seed=1))
