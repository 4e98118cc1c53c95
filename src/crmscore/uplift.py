"""Uplift: who responds *because* of a campaign, learners that estimate it and metrics that judge them.

A churn or response model ranks customers by how likely they are to act; an uplift model ranks them by
how much a treatment (an e-mail, an offer) *changes* that: the individual effect
``tau(x) = E[Y | x, treated] - E[Y | x, control]``. ``Y`` is a 0/1 response (a visit, a stay) or a
non-negative amount such as spend. No customer is seen both ways, so learners combine models of the two
arms and metrics compare the treated and control customers a ranking puts on top.

* **Metrics** (numpy in, float out; inputs checked with one-line :class:`ValueError`):
  :func:`qini_curve` (Radcliffe's Qini: at the top ``k`` customers, ``Y_t(k) - Y_c(k) * N_t(k) / N_c(k)``
  incremental outcomes), :func:`uplift_curve` (``(Y_t(k)/N_t(k) - Y_c(k)/N_c(k)) * k``),
  :func:`qini_coefficient` and :func:`auuc` (the area between a curve and the random line, divided by the
  same area of the best possible ranking), :func:`uplift_at_k` (treated minus control response rate in
  the top share) and :func:`oracle_qini` (the Qini coefficient of ranking by the true effect, for
  simulated data). The curves are evaluated at the end of each group of tied scores, so no value depends
  on the order of the input rows. For 0/1 outcomes the definitions are scikit-uplift's
  (``qini_curve``, ``uplift_curve``, ``qini_auc_score`` with ``negative_effect=True``,
  ``uplift_auc_score``, ``uplift_at_k(strategy="overall")``; ``tests/test_uplift.py`` checks the
  agreement) with two deliberate differences in :func:`uplift_at_k`: the top share holds
  ``ceil(k * n)`` customers (:func:`crmscore.evaluation.top_share_count`, as ``lift_at``; scikit-uplift
  takes ``int(k * n)``), and customers tied at the cut count with the share of their group that fits
  (scikit-uplift's order among ties follows the input order). For amounts, the best ranking that
  normalises both areas puts treated customers first by descending outcome and control customers last
  by ascending outcome (scikit-uplift accepts 0/1 outcomes only).
* **Learners** (scikit-learn estimators over LightGBM, ``fit(X, treated, y, propensity=None)`` and
  ``predict(X)`` → individual uplift): :class:`TLearner` (one outcome model per arm, the difference),
  :class:`XLearner` (Künzel et al., 2019: each arm's outcomes against the other arm's model, regressed
  and mixed by the propensity), :class:`DRLearner` (Kennedy, 2023: the doubly robust AIPW pseudo-outcome
  ``mu1 - mu0 + t (y - mu1) / e - (1 - t) (y - mu0) / (1 - e)`` regressed on the features). Nuisance
  models behind a pseudo-outcome are cross-fitted (``n_folds`` seeded folds), so no row's pseudo-outcome
  comes from a model that saw the row. Propensities: given ones are clipped to [0.01, 0.99] (inverse
  weights at most 100; a warning counts the clipped rows); without them, randomized data use the
  observed treated share and ``randomized=False`` fits a cross-fitted LightGBM propensity model.
* **Tuning and comparison**: :func:`tune_uplift` (Optuna over :func:`crmscore.churn.lightgbm_search_space`,
  trials ranked by the Qini coefficient on a held-out split) and :func:`compare_learners` (T, X and DR on
  the same held-out customers: Qini, AUUC, uplift at 10/20/30 %, and the best learner).

Metrics on held-out rows are unbiased only where treatment was assigned at random: with a targeted
campaign the treated and control customers on top differ by more than the treatment.

Libraries (checked on 2026-12-04 in the project venv: Python 3.11, numpy 2.4.6, pandas 3.1.1,
scikit-learn 1.9.1; evidence in ``reports/benchmarks/uplift_libraries.md``): ``pip install --dry-run
scikit-uplift`` would install scikit-uplift 0.5.1 alone (pure Python, every dependency already
satisfied, no installed version changed), so it is in the ``dev`` extra and the tests compare these
metrics with it (skipped without it). Its metrics call scikit-learn's ``stable_cumsum``, deprecated in
1.8 and due to go in 1.10, so it is a cross-check, not a dependency. causalml 0.18.0 would add 19
packages (xgboost 3.2.0 with a 351 MB nvidia-nccl-cu12 wheel, statsmodels, seaborn, black, pathos …)
without changing an installed version: too heavy for a cross-check, so it is not used. The learners
here are short, set LightGBM up as the churn model does (categories, seeds, threads), and keep no
training data.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
import optuna
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.utils.validation import check_is_fitted

from crmscore.churn import DEFAULT_LGBM_PARAMS, TuningResult, lightgbm_run_params, lightgbm_search_space
from crmscore.errors import DataError
from crmscore.evaluation import _as_amounts, top_share_count
from crmscore.features import FeatureEncoder

__all__ = [
    "qini_curve",
    "uplift_curve",
    "qini_coefficient",
    "auuc",
    "uplift_at_k",
    "oracle_qini",
    "uplift_metrics",
    "UPLIFT_METRIC_KEYS",
    "PROPENSITY_CLIP",
    "TLearner",
    "XLearner",
    "DRLearner",
    "LEARNERS",
    "make_learner",
    "tune_uplift",
    "LearnerComparison",
    "compare_learners",
    "UpliftModel",
    "customer_holdout",
    "UpliftSelection",
    "select_uplift_learner",
]

log = logging.getLogger("crmscore.uplift")

ArrayLike = Sequence[float] | np.ndarray | pd.Series

#: Bounds propensities are clipped to: an inverse weight is then at most 100.
PROPENSITY_CLIP: tuple[float, float] = (0.01, 0.99)

#: The second configuration every uplift search tries (after the defaults): few leaves, many customers per
#: leaf and a strong L2 penalty, for effects that are small beside the noise of the outcomes.
SMOOTH_LGBM_PARAMS: dict[str, Any] = {"num_leaves": 7, "min_child_samples": 200, "lambda_l2": 10.0}

#: Keys of :func:`uplift_metrics` with the default shares, in order.
UPLIFT_METRIC_KEYS: tuple[str, ...] = ("qini", "auuc", "uplift_at_10", "uplift_at_20", "uplift_at_30")

# Share of a model's training rows held out to choose its number of trees (early stopping).
_EARLY_STOPPING_SHARE = 0.2
# Fewer customers in an arm leave folds and early-stopping splits without that arm.
_MIN_ARM_ROWS = 20


# --- input checks -----------------------------------------------------------------------------------


def _outcomes(y: ArrayLike) -> np.ndarray:
    """``y`` as 1-D finite non-negative float64 (0/1 responses or amounts)."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"y must be 1-D, got shape {arr.shape}")
    return _as_amounts(arr, "y", "outcomes (0/1 responses or amounts such as spend)")


def _numbers(values: ArrayLike, name: str, what: str) -> np.ndarray:
    """``values`` as 1-D float64, refusing other shapes and non-numeric dtypes (strings, objects)."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be {what}, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def _treatment(treated: ArrayLike) -> np.ndarray:
    """``treated`` as 1-D int64 0/1 holding both arms."""
    as_float = _numbers(treated, "treated", "0/1 (or bool)")
    bad = ~np.isin(as_float, (0.0, 1.0))
    if bad.any():
        example = f"{as_float[bad][0]:g}"
        raise ValueError(f"treated must be 0/1 (or bool), found {int(bad.sum())} other value(s) such as {example}")
    t = as_float.astype(np.int64)
    for arm, name in ((1, "treated"), (0, "control")):
        if not (t == arm).any():
            raise ValueError(f"treated: no {name} customer (treated == {arm}) among {len(t)}; uplift needs both arms")
    return t


def _scores(score: ArrayLike, name: str = "score") -> np.ndarray:
    """``score`` as 1-D finite float64 (uplift scores may be negative)."""
    as_float = _numbers(score, name, "numeric")
    non_finite = int((~np.isfinite(as_float)).sum())
    if non_finite:
        raise ValueError(f"{name} must be finite, found {non_finite} NaN or infinite value(s)")
    return as_float


def _same_length(**arrays: Any) -> None:
    lengths = {name: len(values) for name, values in arrays.items()}
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{name} {n}" for name, n in lengths.items())
        raise ValueError(f"inputs must have the same length, got {described}")
    if not next(iter(lengths.values())):
        raise ValueError("inputs are empty; uplift needs customers in both arms")


def _experiment(y: ArrayLike, treated: ArrayLike, score: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked ``(y, treated, score)`` arrays of one experiment."""
    _same_length(y=np.atleast_1d(y), treated=np.atleast_1d(treated), score=np.atleast_1d(score))
    return _outcomes(y), _treatment(treated), _scores(score)


# --- metrics ------------------------------------------------------------------------------------------


def _cumulative_by_arm(y: np.ndarray, t: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, ...]:
    """Counts and outcome sums per arm among the top ``k``, at the last ``k`` of each tie group of ``score``.

    Returns ``(k, n_treated, n_control, y_treated, y_control)``. Evaluating only where the score changes
    makes tied customers enter together, so the order of the input rows never matters.
    """
    order = np.argsort(-score, kind="stable")
    ranked, y_ranked, t_ranked = score[order], y[order], t[order]
    ends = np.r_[np.flatnonzero(ranked[1:] != ranked[:-1]), len(ranked) - 1]
    k = ends + 1
    n_treated = np.cumsum(t_ranked)[ends]
    y_treated = np.cumsum(y_ranked * t_ranked)[ends]
    y_control = np.cumsum(y_ranked * (1 - t_ranked))[ends]
    return k, n_treated, k - n_treated, y_treated, y_control


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise ratio, 0 where the denominator is 0 (an arm not reached yet; scikit-uplift's rule)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator != 0)


def _qini_points(y: np.ndarray, t: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k, n_t, n_c, y_t, y_c = _cumulative_by_arm(y, t, score)
    return np.r_[0.0, k / len(y)], np.r_[0.0, y_t - y_c * _ratio(n_t, n_c)]


def _uplift_points(y: np.ndarray, t: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k, n_t, n_c, y_t, y_c = _cumulative_by_arm(y, t, score)
    return np.r_[0.0, k / len(y)], np.r_[0.0, (_ratio(y_t, n_t) - _ratio(y_c, n_c)) * k]


def qini_curve(y: ArrayLike, treated: ArrayLike, score: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Radcliffe's Qini curve: incremental outcomes gained by targeting the top share by ``score``.

    At the top ``k`` customers the value is ``Y_t(k) - Y_c(k) * N_t(k) / N_c(k)``: the outcomes of the
    treated among them minus the control outcomes scaled to the number treated (0 control customers
    so far count as no control outcome). Returns ``(share_targeted, incremental)``, starting at
    ``(0, 0)`` and with one point at the end of each group of tied scores, so tied customers enter
    together and the input order never matters; ``incremental`` is in outcome units (responders, or
    money for spend), not normalised.
    """
    return _qini_points(*_experiment(y, treated, score))


def uplift_curve(y: ArrayLike, treated: ArrayLike, score: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Uplift curve: the response-rate difference among the top ``k`` by ``score``, times ``k``.

    The value at the top ``k`` is ``(Y_t(k) / N_t(k) - Y_c(k) / N_c(k)) * k`` (an arm not reached yet
    counts with rate 0). Returns ``(share_targeted, incremental)`` at the ends of the tie groups like
    :func:`qini_curve`.
    """
    return _uplift_points(*_experiment(y, treated, score))


def _best_score(y: np.ndarray, t: np.ndarray, curve: str) -> np.ndarray:
    """The ranking whose curve normalises :func:`qini_coefficient` (``qini``) or :func:`auuc` (``uplift``)."""
    is_binary = bool(np.isin(y, (0.0, 1.0)).all())
    if curve == "uplift" and is_binary:
        # scikit-uplift's perfect uplift curve: treated responders, control non-responders, then the
        # larger of the two remaining groups (control responders or treated non-responders) last.
        control_responders = int(((y == 1) & (t == 0)).sum())
        treated_silent = int(((y == 0) & (t == 1)).sum())
        return 2.0 * (y == t) + (y if control_responders > treated_silent else t)
    # Treated customers by outcome, high first; control customers by outcome, high last.
    return y * (2 * t - 1)


def _normalised_area(y: np.ndarray, t: np.ndarray, score: np.ndarray, curve: str, metric: str) -> float:
    points = _qini_points if curve == "qini" else _uplift_points
    x, values = points(y, t, score)
    x_best, values_best = points(y, t, _best_score(y, t, curve))
    random_line = 0.5 * x_best[-1] * values_best[-1]  # the straight line to the same end point
    best_gain = float(np.trapezoid(values_best, x_best)) - random_line
    if not best_gain > 1e-12 * max(1.0, abs(random_line)):
        raise ValueError(
            f"{metric} is undefined here: even the best ranking gains no area over random targeting "
            f"(total outcome {y.sum():.6g} over {len(y)} customers)"
        )
    return float((np.trapezoid(values, x) - random_line) / best_gain)


def qini_coefficient(y: ArrayLike, treated: ArrayLike, score: ArrayLike) -> float:
    """Area between the Qini curve and the random line, over the same area of the best ranking.

    1 is the best ranking possible on these outcomes (treated responders first, control responders
    last), 0 random targeting, negative a ranking worse than random. Equals scikit-uplift's
    ``qini_auc_score(y, score, treated, negative_effect=True)`` for 0/1 outcomes; amounts use the
    analogous best ranking (see the module notes). Any strictly increasing transform of ``score``
    gives the same value. Raises :class:`ValueError` where the best ranking gains nothing (no outcome
    at all).
    """
    return _normalised_area(*_experiment(y, treated, score), curve="qini", metric="qini_coefficient")


def auuc(y: ArrayLike, treated: ArrayLike, score: ArrayLike) -> float:
    """Area between the uplift curve and the random line, over the same area of the best ranking.

    Equals scikit-uplift's ``uplift_auc_score(y, score, treated)`` for 0/1 outcomes (its perfect uplift
    curve); amounts use the best ranking of :func:`qini_coefficient`. 0 is random targeting.
    """
    return _normalised_area(*_experiment(y, treated, score), curve="uplift", metric="auuc")


def _top_weights(score: np.ndarray, count: int) -> np.ndarray:
    """Weight 1 for customers above the cut of the top ``count``; the tied group at the cut shares the rest."""
    cut = np.sort(score)[::-1][count - 1]
    above = score > cut
    tied = score == cut
    weights = above.astype(np.float64)
    weights[tied] = (count - int(above.sum())) / int(tied.sum())
    return weights


def _uplift_at(y: np.ndarray, t: np.ndarray, score: np.ndarray, k: float) -> float:
    if isinstance(k, bool) or not isinstance(k, int | float | np.integer | np.floating) or not 0 < k <= 1:
        raise ValueError(f"k must be a share in (0, 1], got {k!r}")
    count = top_share_count(len(y), float(k))
    weights = _top_weights(score, count)
    in_arm = {"treated": weights * t, "control": weights * (1 - t)}
    for arm, w in in_arm.items():
        if not w.sum() > 0:
            raise ValueError(f"uplift_at_k: the top {k:.0%} ({count} customers) holds no {arm} customer")
    return float(in_arm["treated"] @ y / in_arm["treated"].sum() - in_arm["control"] @ y / in_arm["control"].sum())


def uplift_at_k(y: ArrayLike, treated: ArrayLike, score: ArrayLike, k: float) -> float:
    """Treated minus control mean outcome among the top share ``k`` of all customers by ``score``.

    The top share is ``ceil(k * n)`` customers (:func:`crmscore.evaluation.top_share_count`); customers
    tied at the cut count with the fraction of their group that fits, so the value does not depend on
    the input order. scikit-uplift's ``uplift_at_k(..., strategy="overall")`` gives the same value
    wherever ``k * n`` is whole and no tie crosses the cut. Raises :class:`ValueError` when the top
    share holds no customer of one arm.
    """
    return _uplift_at(*_experiment(y, treated, score), k)


def oracle_qini(y: ArrayLike, treated: ArrayLike, true_uplift: ArrayLike) -> float:
    """The Qini coefficient of ranking by the true individual effect (simulated data).

    The yardstick for a learner on the same rows: a perfect model of ``tau(x)`` still scores below 1,
    because the observed outcomes are noisy draws around it.
    """
    return qini_coefficient(y, treated, true_uplift)


def uplift_metrics(
    y: ArrayLike, treated: ArrayLike, score: ArrayLike, shares: Sequence[float] = (0.1, 0.2, 0.3)
) -> dict[str, float]:
    """Qini coefficient, AUUC and uplift at each top share (keys ``uplift_at_10`` …), checked once."""
    y_arr, t, s = _experiment(y, treated, score)
    out = {
        "qini": _normalised_area(y_arr, t, s, "qini", "qini_coefficient"),
        "auuc": _normalised_area(y_arr, t, s, "uplift", "auuc"),
    }
    for share in shares:
        out[f"uplift_at_{round(100 * share)}"] = _uplift_at(y_arr, t, s, share)
    return out


# --- learners -----------------------------------------------------------------------------------------


def _check_propensity(propensity: ArrayLike | None, n: int) -> np.ndarray | None:
    """Given propensities, checked to lie strictly in (0, 1) and clipped to :data:`PROPENSITY_CLIP`."""
    if propensity is None:
        return None
    e = _scores(propensity, "propensity")
    if len(e) != n:
        raise ValueError(f"propensity must have one value per customer, got {len(e)} for {n}")
    outside = (e <= 0) | (e >= 1)
    if outside.any():
        raise ValueError(
            f"propensity must lie strictly between 0 and 1 (0 or 1 leaves no comparable customer), found "
            f"{int(outside.sum())} value(s) from {e.min():.6g} to {e.max():.6g}"
        )
    low, high = PROPENSITY_CLIP
    clipped = int(((e < low) | (e > high)).sum())
    if clipped:
        log.warning("propensity: %d value(s) clipped to [%s, %s] (inverse weights at most 100)", clipped, low, high)
    return np.clip(e, low, high)


def _early_stopping_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rows = np.arange(n)
    keep, stop = train_test_split(rows, test_size=_EARLY_STOPPING_SHARE, random_state=seed)
    return np.sort(keep), np.sort(stop)


class _UpliftLearner(FeatureEncoder, BaseEstimator):
    """Shared settings, input checks and LightGBM fitting of the uplift learners.

    Args:
        params: LightGBM parameters (tree shape, regularisation); defaults
            :data:`crmscore.churn.DEFAULT_LGBM_PARAMS`, shared by every model of the learner.
        learning_rate: boosting learning rate.
        max_trees: upper bound on boosting rounds; each model early-stops on a seeded 20 % of its rows.
        early_stopping_rounds: rounds without improvement of that hold-out's loss before stopping.
        n_folds: folds of the cross-fitted nuisance models.
        outcome: ``binary`` (0/1 response; effects on the probability), ``continuous`` (a non-negative
            amount; effects on its expected value, squared-error models) or ``auto`` (binary when ``y``
            holds only 0 and 1).
        randomized: without given propensities, ``True`` takes the observed treated share as every
            customer's propensity (a randomized experiment); ``False`` fits a cross-fitted LightGBM
            propensity model.
        seed: seeds the folds, the early-stopping splits and LightGBM (deterministic on a fixed
            ``n_jobs``).
        n_jobs: LightGBM threads.

    Fitted attributes: ``outcome_``, ``treated_share_``, ``clipped_propensities_``,
    ``feature_names_in_``, ``categories_`` and the learner's boosters; never the training data.
    """

    _label = "uplift model"

    def __init__(
        self,
        params: dict[str, Any] | None = None,
        learning_rate: float = 0.05,
        max_trees: int = 500,
        early_stopping_rounds: int = 30,
        n_folds: int = 5,
        outcome: str = "auto",
        randomized: bool = True,
        seed: int = 42,
        n_jobs: int = 2,
    ) -> None:
        self.params = params
        self.learning_rate = learning_rate
        self.max_trees = max_trees
        self.early_stopping_rounds = early_stopping_rounds
        self.n_folds = n_folds
        self.outcome = outcome
        self.randomized = randomized
        self.seed = seed
        self.n_jobs = n_jobs

    # -- inputs ------------------------------------------------------------------------------------

    def _check_fit(
        self, X: pd.DataFrame, treated: ArrayLike, y: ArrayLike, propensity: ArrayLike | None
    ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray | None]:
        """Prepared features, treatment, outcomes and clipped given propensities; sets ``outcome_``."""
        if not isinstance(X, pd.DataFrame):
            raise TypeError(f"{type(self).__name__} expects a pandas DataFrame of features")
        _same_length(X=X, treated=np.atleast_1d(treated), y=np.atleast_1d(y))
        t, y_arr = _treatment(treated), _outcomes(y)
        for arm, name in ((1, "treated"), (0, "control")):
            count = int((t == arm).sum())
            if count < _MIN_ARM_ROWS:
                raise ValueError(f"{self._label}: {count} {name} customer(s); each arm needs at least {_MIN_ARM_ROWS}")
        is_binary = bool(np.isin(y_arr, (0.0, 1.0)).all())
        if self.outcome not in {"auto", "binary", "continuous"}:
            raise ValueError(f"outcome must be auto, binary or continuous, got {self.outcome!r}")
        if self.outcome == "binary" and not is_binary:
            raise ValueError("outcome='binary' needs y of 0 and 1 only; use outcome='continuous' for amounts")
        self.outcome_ = "binary" if self.outcome == "binary" or (self.outcome == "auto" and is_binary) else "continuous"
        e = _check_propensity(propensity, len(t))
        self.treated_share_ = float(t.mean())
        self.clipped_propensities_ = 0 if e is None else int(np.sum(e != np.asarray(propensity, dtype=float)))
        return self._prepare(X, fitting=True), t, y_arr, e

    # -- LightGBM ----------------------------------------------------------------------------------

    def _lgb_params(self, objective: str) -> dict[str, Any]:
        run = lightgbm_run_params(self.learning_rate, self.seed, self.n_jobs)
        return {**DEFAULT_LGBM_PARAMS, **(self.params or {}), "objective": objective, **run}

    def _fit_booster(
        self, X: pd.DataFrame, target: np.ndarray, objective: str, weight: np.ndarray | None = None
    ) -> lgb.Booster:
        """One LightGBM model, early-stopped on a seeded 20 % of its rows (its own loss)."""
        keep, stop = _early_stopping_split(len(target), self.seed)

        def part(rows: np.ndarray, **kwargs: Any) -> lgb.Dataset:
            w = None if weight is None else weight[rows]
            return lgb.Dataset(X.iloc[rows], target[rows], weight=w, **kwargs)

        train_set = part(keep, categorical_feature=list(self.categories_) or "auto")
        return lgb.train(
            self._lgb_params(objective),
            train_set,
            num_boost_round=self.max_trees,
            valid_sets=[part(stop, reference=train_set)],
            callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
        )

    @staticmethod
    def _predict_booster(booster: lgb.Booster, X: pd.DataFrame) -> np.ndarray:
        """Response-scale predictions: a probability (binary, cross-entropy) or an expected value."""
        return booster.predict(X, num_iteration=booster.best_iteration or None)

    def _outcome_objective(self) -> str:
        return "binary" if self.outcome_ == "binary" else "regression"

    def _folds(self, t: np.ndarray, y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Seeded folds stratified by arm (and response, for 0/1 outcomes), so every fold has both arms."""
        strata = 2 * t + (y.astype(np.int64) if self.outcome_ == "binary" else 0)
        splitter = StratifiedKFold(n_splits=self.n_folds, shuffle=True, random_state=self.seed)
        return list(splitter.split(np.zeros(len(t)), strata))

    def _arm_models(
        self, X: pd.DataFrame, t: np.ndarray, y: np.ndarray, weight: np.ndarray | None
    ) -> tuple[lgb.Booster, lgb.Booster]:
        """Outcome models of the control and the treated customers (weighted by ``weight`` if given)."""
        models = []
        for arm in (0, 1):
            rows = np.flatnonzero(t == arm)
            w = None if weight is None else weight[rows]
            models.append(self._fit_booster(X.iloc[rows], y[rows], self._outcome_objective(), w))
        return models[0], models[1]

    def _out_of_fold_propensity(self, X: pd.DataFrame, t: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Cross-fitted LightGBM propensities, clipped to :data:`PROPENSITY_CLIP`."""
        e = np.zeros(len(t))
        for train_idx, hold_idx in self._folds(t, y):
            booster = self._fit_booster(X.iloc[train_idx], t[train_idx].astype(float), "binary")
            e[hold_idx] = self._predict_booster(booster, X.iloc[hold_idx])
        return np.clip(e, *PROPENSITY_CLIP)

    def _finish(self, uplift: np.ndarray) -> np.ndarray:
        # An effect on a probability lies in [-1, 1]; pseudo-outcome regressions can overshoot it.
        return np.clip(uplift, -1.0, 1.0) if self.outcome_ == "binary" else uplift


def _inverse_propensity_weights(t: np.ndarray, e: np.ndarray | None) -> np.ndarray | None:
    """``1 / e`` for treated and ``1 / (1 - e)`` for control customers; ``None`` without propensities."""
    return None if e is None else np.where(t == 1, 1.0 / e, 1.0 / (1.0 - e))


class TLearner(_UpliftLearner):
    """Two-model learner: an outcome model per arm; the uplift is their difference.

    With given propensities each arm's model is weighted by the inverse propensity of its arm (clipped,
    see :data:`PROPENSITY_CLIP`), so both models describe the whole customer base rather than the
    customers their arm happened to get. No pseudo-outcome is formed, so nothing needs cross-fitting,
    and ``randomized`` changes nothing. Fitted attributes (besides the common ones): ``control_model_``,
    ``treated_model_``.
    """

    def fit(self, X: pd.DataFrame, treated: ArrayLike, y: ArrayLike, propensity: ArrayLike | None = None) -> TLearner:
        """Fit the two outcome models."""
        Xp, t, y_arr, e = self._check_fit(X, treated, y, propensity)
        self.control_model_, self.treated_model_ = self._arm_models(Xp, t, y_arr, _inverse_propensity_weights(t, e))
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Individual uplift: treated minus control prediction (probability or expected amount)."""
        check_is_fitted(self, "treated_model_")
        Xp = self._prepare(X)
        return self._predict_booster(self.treated_model_, Xp) - self._predict_booster(self.control_model_, Xp)


class XLearner(_UpliftLearner):
    """X-learner (Künzel, Sekhon, Bickel & Yu, PNAS 2019).

    Stage 1 fits an outcome model per arm (inverse-propensity weighted when propensities are given).
    Stage 2 imputes each customer's effect against the *other* arm's model, ``y - mu0(x)`` for treated
    and ``mu1(x) - y`` for control customers, and regresses it on the features per arm. The imputed
    effects are out-of-sample by construction (each arm's model never saw the other arm's rows), so
    stage 1 needs no folds. The two effect models are mixed as ``e(x) tau0(x) + (1 - e(x)) tau1(x)``,
    with ``e`` the propensity: the treated share for randomized data, else a LightGBM model of the
    given propensities (cross-entropy) or of the treatment itself (``randomized=False``), fitted on all
    rows because it only weighs the mix. Fitted attributes: ``control_effect_model_``,
    ``treated_effect_model_``, ``propensity_model_`` (``None`` when the treated share is used).
    """

    def fit(self, X: pd.DataFrame, treated: ArrayLike, y: ArrayLike, propensity: ArrayLike | None = None) -> XLearner:
        """Fit the arm models, the two effect models and the propensity that mixes them."""
        Xp, t, y_arr, e = self._check_fit(X, treated, y, propensity)
        mu0, mu1 = self._arm_models(Xp, t, y_arr, _inverse_propensity_weights(t, e))
        treated_rows, control_rows = np.flatnonzero(t == 1), np.flatnonzero(t == 0)
        effect_treated = y_arr[treated_rows] - self._predict_booster(mu0, Xp.iloc[treated_rows])
        effect_control = self._predict_booster(mu1, Xp.iloc[control_rows]) - y_arr[control_rows]
        self.treated_effect_model_ = self._fit_booster(Xp.iloc[treated_rows], effect_treated, "regression")
        self.control_effect_model_ = self._fit_booster(Xp.iloc[control_rows], effect_control, "regression")
        if e is not None:
            self.propensity_model_ = self._fit_booster(Xp, e, "cross_entropy")
        elif not self.randomized:
            self.propensity_model_ = self._fit_booster(Xp, t.astype(float), "binary")
        else:
            self.propensity_model_ = None
        return self

    def predict(self, X: pd.DataFrame, propensity: ArrayLike | None = None) -> np.ndarray:
        """Individual uplift; ``propensity`` (if known for these customers) replaces the fitted mix weight."""
        check_is_fitted(self, "treated_effect_model_")
        Xp = self._prepare(X)
        if propensity is not None:
            e = _check_propensity(propensity, len(Xp))
        elif self.propensity_model_ is not None:
            e = np.clip(self._predict_booster(self.propensity_model_, Xp), *PROPENSITY_CLIP)
        else:
            e = np.full(len(Xp), self.treated_share_)
        tau0 = self._predict_booster(self.control_effect_model_, Xp)
        tau1 = self._predict_booster(self.treated_effect_model_, Xp)
        return self._finish(e * tau0 + (1.0 - e) * tau1)


class DRLearner(_UpliftLearner):
    """Doubly robust learner (Kennedy, 2023): AIPW pseudo-outcomes regressed on the features.

    For each of ``n_folds`` seeded folds, outcome models per arm (and, with ``randomized=False`` and no
    given propensities, a propensity model) are fitted on the other folds and predict the fold:
    ``phi = mu1 - mu0 + t (y - mu1) / e - (1 - t) (y - mu0) / (1 - e)``. Its mean given ``x`` is the
    effect when either the outcome models or the propensities are right, and no row's ``phi`` uses a
    model that saw the row. One squared-error model of ``phi`` is the learner. Fitted attributes:
    ``effect_model_`` and ``pseudo_outcome_std_`` (the spread of ``phi``: large values mean extreme
    propensities dominate).
    """

    def fit(self, X: pd.DataFrame, treated: ArrayLike, y: ArrayLike, propensity: ArrayLike | None = None) -> DRLearner:
        """Cross-fit the nuisance models, form the pseudo-outcomes and regress them."""
        Xp, t, y_arr, e = self._check_fit(X, treated, y, propensity)
        mu0, mu1 = np.zeros(len(t)), np.zeros(len(t))
        for train_idx, hold_idx in self._folds(t, y_arr):
            control_model, treated_model = self._arm_models(Xp.iloc[train_idx], t[train_idx], y_arr[train_idx], None)
            mu0[hold_idx] = self._predict_booster(control_model, Xp.iloc[hold_idx])
            mu1[hold_idx] = self._predict_booster(treated_model, Xp.iloc[hold_idx])
        if e is None:
            e = np.full(len(t), self.treated_share_) if self.randomized else self._out_of_fold_propensity(Xp, t, y_arr)
        phi = mu1 - mu0 + t * (y_arr - mu1) / e - (1 - t) * (y_arr - mu0) / (1 - e)
        self.pseudo_outcome_std_ = float(phi.std())
        self.effect_model_ = self._fit_booster(Xp, phi, "regression")
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Individual uplift: the regression of the pseudo-outcomes."""
        check_is_fitted(self, "effect_model_")
        return self._finish(self._predict_booster(self.effect_model_, self._prepare(X)))


#: Learner name (as :func:`make_learner`, :func:`tune_uplift` and :func:`compare_learners` take it) → class.
LEARNERS: dict[str, type[_UpliftLearner]] = {"T": TLearner, "X": XLearner, "DR": DRLearner}


def make_learner(name: str, **options: Any) -> _UpliftLearner:
    """An unfitted learner by name (``T``, ``X`` or ``DR``, any case) with constructor ``options``."""
    key = str(name).upper()
    if key not in LEARNERS:
        raise ValueError(f"unknown uplift learner {name!r}; choose one of {', '.join(LEARNERS)}")
    return LEARNERS[key](**options)


# --- tuning and comparison --------------------------------------------------------------------------


def _holdout_split(t: np.ndarray, y: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of the customers, stratified by arm (and response for 0/1 outcomes)."""
    if not 0 < share < 1:
        raise ValueError(f"the held-out share must be in (0, 1), got {share!r}")
    strata = 2 * t + (y.astype(np.int64) if np.isin(y, (0.0, 1.0)).all() else 0)
    train_idx, hold_idx = train_test_split(np.arange(len(t)), test_size=share, stratify=strata, random_state=seed)
    return np.sort(train_idx), np.sort(hold_idx)


def _subset(values: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    return None if values is None else values[rows]


def tune_uplift(
    learner_name: str,
    X: pd.DataFrame,
    treated: ArrayLike,
    y: ArrayLike,
    propensity: ArrayLike | None = None,
    *,
    valid_share: float = 0.3,
    trials: int = 20,
    timeout_seconds: float = 600.0,
    seed: int = 42,
    n_jobs: int = 2,
    learner_options: Mapping[str, Any] | None = None,
) -> TuningResult:
    """Search the LightGBM parameters of one learner on the Qini coefficient of held-out customers.

    ``valid_share`` of the customers (seeded, stratified by arm and response) are held out; each Optuna
    trial (seeded TPE over :func:`crmscore.churn.lightgbm_search_space`; the first trial the defaults, so
    the result is never worse than them on these customers, the second :data:`SMOOTH_LGBM_PARAMS`) fits
    the learner on the rest and is scored by :func:`qini_coefficient` of its predictions on them. The
    held-out customers must have been assigned at random for that score to mean anything.
    ``learner_options`` are further constructor arguments (``outcome``, ``n_folds``, ``max_trees`` …).
    Stops after ``trials`` trials or ``timeout_seconds``. Returns a :class:`crmscore.churn.TuningResult`
    whose ``best_params`` go to the learner's ``params``.
    """
    started = time.perf_counter()
    t, y_arr = _treatment(treated), _outcomes(y)
    _same_length(X=X, treated=t, y=y_arr)
    e = None if propensity is None else np.asarray(propensity, dtype=float)
    train_idx, valid_idx = _holdout_split(t, y_arr, valid_share, seed)
    options = {"seed": seed, "n_jobs": n_jobs, **(learner_options or {})}
    make_learner(learner_name, **options)  # fail on a bad name before the first trial

    def objective(trial: optuna.Trial) -> float:
        learner = make_learner(learner_name, **options, params=lightgbm_search_space(trial))
        learner.fit(X.iloc[train_idx], t[train_idx], y_arr[train_idx], _subset(e, train_idx))
        return qini_coefficient(y_arr[valid_idx], t[valid_idx], learner.predict(X.iloc[valid_idx]))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, trials))
    )
    searched = {k: v for k, v in DEFAULT_LGBM_PARAMS.items() if k not in {"bagging_freq", "max_cat_to_onehot"}}
    study.enqueue_trial(searched)
    if trials > 1:  # effects are small beside the outcomes' noise: a smooth model is the second guess
        study.enqueue_trial(searched | SMOOTH_LGBM_PARAMS)
    study.optimize(objective, n_trials=trials, timeout=timeout_seconds, gc_after_trial=False)
    if not any(trial.state == optuna.trial.TrialState.COMPLETE for trial in study.trials):
        raise DataError("uplift tuning: no trial completed; raise timeout_seconds")
    return TuningResult(
        best_params={**DEFAULT_LGBM_PARAMS, **study.best_params},
        best_value=float(study.best_value),
        trials=len(study.trials),
        pruned=0,
        seconds=time.perf_counter() - started,
        trials_table=study.trials_dataframe(attrs=("number", "value", "state", "params", "duration")),
        search_best_value=float(study.best_value),
    )


@dataclasses.dataclass
class LearnerComparison:
    """Held-out metrics per learner (one row each, columns of :func:`uplift_metrics`), the learner with the
    highest Qini coefficient, and the fitted learners."""

    table: pd.DataFrame
    best: str
    models: dict[str, _UpliftLearner]


def compare_learners(
    X: pd.DataFrame,
    treated: ArrayLike,
    y: ArrayLike,
    propensity: ArrayLike | None = None,
    *,
    test_share: float = 0.3,
    learners: Mapping[str, _UpliftLearner] | None = None,
    shares: Sequence[float] = (0.1, 0.2, 0.3),
    seed: int = 42,
    n_jobs: int = 2,
) -> LearnerComparison:
    """Fit T, X and DR learners on the same customers and compare them on the same held-out ones.

    ``test_share`` of the customers (seeded, stratified by arm and response) are held out; each learner
    (``learners``: name → unfitted learner, cloned before fitting; default the three with ``seed`` and
    ``n_jobs``) is fitted on the rest and scored there by :func:`uplift_metrics` (Qini coefficient, AUUC,
    uplift at each of ``shares``). ``best`` is the highest Qini coefficient (ties: the first listed).
    The held-out customers must have been assigned at random for the metrics to be unbiased.
    """
    t, y_arr = _treatment(treated), _outcomes(y)
    _same_length(X=X, treated=t, y=y_arr)
    e = None if propensity is None else np.asarray(propensity, dtype=float)
    train_idx, test_idx = _holdout_split(t, y_arr, test_share, seed)
    if learners is None:
        learners = {name: make_learner(name, seed=seed, n_jobs=n_jobs) for name in LEARNERS}
    rows, models = {}, {}
    for name, learner in learners.items():
        model = clone(learner).fit(X.iloc[train_idx], t[train_idx], y_arr[train_idx], _subset(e, train_idx))
        rows[name] = uplift_metrics(y_arr[test_idx], t[test_idx], model.predict(X.iloc[test_idx]), shares)
        models[name] = model
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "learner"
    best = str(table["qini"].idxmax()) if table["qini"].notna().any() else next(iter(rows))
    return LearnerComparison(table=table, best=best, models=models)


# --- the registered model ------------------------------------------------------------------------------


class UpliftModel(BaseEstimator):
    """The registered uplift model: the chosen learner, what it predicts, and its held-out evidence.

    ``predict(X)`` is the learner's individual effect of the retention offer on the probability of buying
    again within ``horizon_days`` (a change of probability, in [-1, 1]). ``holdout`` keeps, per held-out
    randomized customer, the predicted ``uplift``, ``treated`` and the outcome ``retained`` (no features):
    the Qini curves of the review report and the interval of a plan's expected profit come from it.
    ``comparison`` is the learners' held-out metrics table; ``contact_cost`` the mean cost of a treated
    customer in the campaigns it learned from (a plan's default cost per contact).
    """

    def __init__(
        self,
        learner: _UpliftLearner,
        learner_name: str,
        horizon_days: int,
        holdout: pd.DataFrame | None = None,
        comparison: pd.DataFrame | None = None,
        contact_cost: float = 0.0,
    ) -> None:
        self.learner = learner
        self.learner_name = learner_name
        self.horizon_days = horizon_days
        self.holdout = holdout
        self.comparison = comparison
        self.contact_cost = contact_cost

    @property
    def feature_names_in_(self) -> np.ndarray:
        return self.learner.feature_names_in_

    @property
    def feature_profile_(self) -> dict[str, Any] | None:
        return getattr(self.learner, "feature_profile_", None)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Individual uplift in P(retained) of each customer in ``X``."""
        return np.asarray(self.learner.predict(X), dtype=float)


def customer_holdout(
    customer_id: ArrayLike, eligible: ArrayLike, share: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Training and held-out row positions, split by whole customers.

    A seeded ``share`` of the customers with an ``eligible`` row (a randomized campaign's) is held out:
    their eligible rows are the test rows, and none of their rows is trained on, so no customer is both
    learned and judged. Returns ``(train_rows, test_rows)``, each sorted.
    """
    if not 0 < share < 1:
        raise ValueError(f"the held-out share must be in (0, 1), got {share!r}")
    ids = pd.Series(np.asarray(customer_id))
    ok = np.asarray(eligible, dtype=bool)
    candidates = np.unique(ids[ok].to_numpy())
    rng = np.random.default_rng(seed)
    chosen = candidates[rng.random(len(candidates)) < share]
    held = ids.isin(chosen).to_numpy()
    return np.flatnonzero(~held), np.flatnonzero(held & ok)


@dataclasses.dataclass
class UpliftSelection:
    """The learners compared on the same held-out customers, the best one and its tuning."""

    model: UpliftModel
    table: pd.DataFrame  # one row per learner: uplift_metrics on the held-out rows, seconds
    tuning: dict[str, TuningResult]


def select_uplift_learner(
    X: pd.DataFrame,
    treated: np.ndarray,
    y: np.ndarray,
    propensity: np.ndarray,
    train_rows: np.ndarray,
    test_rows: np.ndarray,
    settings: Any,
    horizon_days: int,
    contact_cost: float = 0.0,
    campaign: np.ndarray | None = None,
    n_jobs: int = 2,
) -> UpliftSelection:
    """Tune each learner of ``settings.learners`` on the training rows (Optuna on the Qini of an inner
    split), fit it there, score it on the held-out rows, and wrap the best Qini as an :class:`UpliftModel`.

    ``settings`` is the ``uplift`` section of ``params.yaml``; ``propensity`` holds every row's probability
    of treatment (a randomized campaign's treated share, or the given one); ``campaign`` (per row) is kept
    with the held-out predictions.
    """
    cfg, tune = settings, settings.tuning
    X_train, t_train, y_train, e_train = X.iloc[train_rows], treated[train_rows], y[train_rows], propensity[train_rows]
    X_test, t_test, y_test = X.iloc[test_rows], treated[test_rows], y[test_rows]
    options = {
        "n_folds": cfg.cross_fit_folds,
        "max_trees": tune.max_trees,
        "early_stopping_rounds": tune.early_stopping_rounds,
        "learning_rate": tune.learning_rate,
        "outcome": "binary",
    }
    rows, fitted, tuning = {}, {}, {}
    for name in cfg.learners:
        started = time.perf_counter()
        tuning[name] = tune_uplift(
            name,
            X_train,
            t_train,
            y_train,
            e_train,
            trials=tune.trials,
            timeout_seconds=tune.timeout_seconds,
            seed=cfg.seed,
            n_jobs=n_jobs,
            learner_options=options,
        )
        learner = make_learner(name, **options, params=tuning[name].best_params, seed=cfg.seed, n_jobs=n_jobs)
        fitted[name] = learner.fit(X_train, t_train, y_train, e_train)
        predicted = fitted[name].predict(X_test)
        rows[name] = {**uplift_metrics(y_test, t_test, predicted), "seconds": time.perf_counter() - started}
        log.info("uplift %s learner: held-out Qini %.4f", name, rows[name]["qini"])
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "learner"
    best = str(table["qini"].idxmax())
    holdout = pd.DataFrame(
        {"uplift": fitted[best].predict(X_test), "treated": t_test.astype(np.int8), "retained": y_test.astype(np.int8)},
        index=X_test.index,
    )
    if campaign is not None:
        holdout["campaign"] = np.asarray(campaign, dtype=object)[test_rows]
    model = UpliftModel(fitted[best], best, horizon_days, holdout, table, contact_cost)
    return UpliftSelection(model=model, table=table, tuning=tuning)
