"""ML customer lifetime value: LightGBM predicting spend in the next ``horizon_days`` from point-in-time features.

* **Datasets** (:func:`clv_datasets`). The label is the spend in ``(as_of, as_of + horizon_days]``
  (:func:`crmscore.labels.future_value`); features are :func:`crmscore.features.build_features` at the
  as-of date. ``test`` is at ``clv.test_as_of`` (default: the last as-of date whose horizon is fully
  observed). The ``train_cutoffs`` training dates are ``test_as_of − horizon − k·cutoff_step_days``, so
  every training label window closes on or before the test as-of date and no test outcome is ever seen
  in training. The training cutoffs are stacked (one row per customer and cutoff); the validation split
  takes *whole customers* out of that stack (``valid_share``, seeded), because with a one-year horizon
  and cutoffs 60 days apart a customer's rows share most of their label window: splitting rows would let
  early stopping and tuning peek at labels the model was trained on.
* **Model** (:class:`ClvModel`, scikit-learn conventions, never stores the training data).
  ``objective="tweedie"``: one LightGBM model with a log link and the Tweedie loss (a point mass at
  zero plus a continuous positive part, the shape of future spend); its raw score is the log of the
  expected spend, so exact TreeSHAP values add up to it. ``objective="two_part"``: a binary classifier of
  P(any purchase) times a regressor of E[spend | purchase] fitted with the gamma deviance (log link)
  on buyers only. The gamma deviance, like every Tweedie deviance, is a Bregman divergence, so it is
  minimised by the *conditional mean* whatever the true distribution of the amounts; a regression on
  log spend would instead estimate the conditional geometric mean and need a retransformation
  (smearing) correction that depends on the unknown residual variance. The product of a mean-consistent
  probability and a mean-consistent conditional amount is the expected spend.
* **Balance correction.** With a log link, the Tweedie (power > 1) and gamma losses weight each residual
  by ``μ^(1 − power)``, so a fitted model need not reproduce the total spend of the rows it was fitted on:
  the *balance property* holds only for canonical links (Poisson, logistic), and early stopping leaves
  even those short of it. On the simulated data the mean prediction came out 20–30 % low. ``fit``
  therefore multiplies the predictions by ``Σ y / Σ ŷ`` over the training rows (the bias correction of
  Wüthrich, "Bias regularization in neural network models for general insurance pricing", European
  Actuarial Journal 10, 2020). A constant factor changes no ranking, and its log joins the SHAP base
  value, so SHAP values stay exact.
* **Tuning** (:func:`tune_clv`). Optuna (seeded TPE, median pruning on the validation loss), the first
  trial the defaults; trials are ranked by ``clv.selection_metric`` on the validation customers
  (:func:`crmscore.evaluation.value_metrics`).

Unseen categories at prediction time are treated as missing (LightGBM routes missing values along the
branch learned for them) and their count is logged (scoring reports them per feature,
:mod:`crmscore.feature_checks`); features entirely missing in training are dropped with a warning.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import lightgbm as lgb
import numpy as np
import optuna
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.model_selection import GroupShuffleSplit
from sklearn.utils.validation import check_is_fitted

from crmscore.churn import DEFAULT_LGBM_PARAMS, TuningResult, lightgbm_run_params, lightgbm_search_space
from crmscore.config import ClvSettings, FeatureSettings
from crmscore.errors import DataError, SettingsError
from crmscore.evaluation import LOWER_IS_BETTER, value_metrics
from crmscore.explain import TreeShapCache
from crmscore.features import FeatureEncoder, build_features, stack_frames
from crmscore.labels import data_start, future_value, last_labelable_as_of

__all__ = [
    "ClvData",
    "clv_datasets",
    "ClvModel",
    "tune_clv",
    "model_from_settings",
    "DEFAULT_CLV_PARAMS",
    "OBJECTIVES",
]

log = logging.getLogger("crmscore.clv.ml")

# Sensible starting point, also the first tuning trial. ``tweedie_variance_power`` is used by the
# tweedie objective only (1 = Poisson-like, 2 = gamma-like; spend with many zeros sits in between).
DEFAULT_CLV_PARAMS: dict[str, Any] = {**DEFAULT_LGBM_PARAMS, "min_child_samples": 20, "tweedie_variance_power": 1.5}

# The LightGBM models behind each objective: part name → (LightGBM objective, validation loss).
OBJECTIVES: dict[str, dict[str, tuple[str, str]]] = {
    "tweedie": {"spend": ("tweedie", "tweedie")},
    "two_part": {"purchase": ("binary", "binary_logloss"), "amount": ("gamma", "gamma_deviance")},
}

# No feature pre-filtering: one Dataset then serves every tuning trial (pre-filtering would fix
# min_data_in_leaf to the first trial's value), and fit grows the same trees as the trial it repeats.
_DATASET_PARAMS: dict[str, Any] = {"feature_pre_filter": False}

# Share of whole customers held out for early stopping when ``fit`` gets no validation set.
_HOLDOUT_SHARE = 0.2


# --- datasets ------------------------------------------------------------------------------------


@dataclasses.dataclass
class ClvData:
    """Features, future spend over the horizon and the as-of date of each row (stacked cutoffs share one frame)."""

    X: pd.DataFrame
    y: pd.Series
    as_of: pd.Series

    def __len__(self) -> int:
        return len(self.y)


def _frame(
    tables: Mapping[str, pd.DataFrame], as_of: pd.Timestamp, horizon_days: int, features: FeatureSettings
) -> ClvData:
    X = build_features(tables, as_of, features)
    y = future_value(tables["transactions"], X.index, as_of, horizon_days)["future_spend"]
    return ClvData(X=X, y=y, as_of=pd.Series(as_of, index=X.index, name="as_of"))


def _stack(parts: list[ClvData]) -> ClvData:
    X = stack_frames([p.X for p in parts])
    return ClvData(X=X, y=pd.concat([p.y for p in parts]), as_of=pd.concat([p.as_of for p in parts]))


def _take(data: ClvData, rows: np.ndarray) -> ClvData:
    return ClvData(X=data.X.iloc[rows], y=data.y.iloc[rows], as_of=data.as_of.iloc[rows])


def _customer_split(ids: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row positions (keep, held out) with whole customers held out: no customer on both sides."""
    splitter = GroupShuffleSplit(n_splits=1, test_size=share, random_state=seed)
    keep, held = next(splitter.split(np.zeros(len(ids)), groups=ids))
    return keep, held


def clv_datasets(
    tables: Mapping[str, pd.DataFrame], settings: ClvSettings, features: FeatureSettings | None = None
) -> dict[str, ClvData]:
    """Train (stacked past cutoffs), validation (whole customers out of train) and test sets for ML CLV.

    ``test`` is at ``clv.test_as_of`` (default: the last as-of date whose ``horizon_days`` are fully
    observed). Training as-of dates are ``test_as_of − horizon_days − k × cutoff_step_days`` for
    ``k < train_cutoffs``, keeping those after the first signup, so every training label window closes on
    or before the test as-of date. ``valid`` holds a seeded ``valid_share`` of the training *customers*
    with all their cutoffs, for early stopping and tuning. Raises :class:`DataError` without
    transactions, with too short a history, too few customers or no spend at all.
    """
    features = features or FeatureSettings()
    if "transactions" not in tables or tables["transactions"].empty:
        raise DataError(
            "clv: the ML model needs a transactions table with rows (future spend is its label); "
            "for subscription data use crmscore.clv.contractual"
        )
    if not 0 < settings.valid_share < 1:
        raise SettingsError(
            f"clv.valid_share: expected a share strictly between 0 and 1 for the ML model's validation "
            f"customers, got {settings.valid_share}"
        )
    horizon = settings.horizon_days
    h = pd.Timedelta(days=horizon)
    latest = last_labelable_as_of(tables, horizon)
    test_as_of = pd.Timestamp(settings.test_as_of) if settings.test_as_of else latest
    if test_as_of > latest:
        raise DataError(
            f"clv.test_as_of: {test_as_of.date()} leaves its {horizon}-day horizon unobserved "
            f"(history ends {(latest + h).date()})"
        )
    candidates = [
        test_as_of - h - pd.Timedelta(days=k * settings.cutoff_step_days) for k in range(settings.train_cutoffs)
    ]
    first_signup = data_start(tables)
    train_dates = sorted(d for d in candidates if d > first_signup)
    if not train_dates:
        have = (test_as_of + h - first_signup).days
        raise DataError(
            f"clv: no training as-of date after the first signup ({first_signup.date()}): a training date needs "
            f"its {horizon}-day label window to close by the test as-of date ({test_as_of.date()}), so the history "
            f"must span more than 2 × horizon_days = {2 * horizon} days from the first signup (it spans {have}); "
            "shorten clv.horizon_days or give a longer history"
        )
    test = _frame(tables, test_as_of, horizon, features)
    stacked = _stack([_frame(tables, d, horizon, features) for d in train_dates])
    n_customers = stacked.X.index.nunique()
    if n_customers < settings.min_customers:
        raise DataError(
            f"clv: {n_customers} customers known at the training as-of dates ({train_dates[0].date()} to "
            f"{train_dates[-1].date()}); at least clv.min_customers = {settings.min_customers} are needed"
        )
    test_minimum = max(20, settings.min_customers // 4)
    if len(test) < test_minimum:
        raise DataError(
            f"clv: {len(test)} customers at the test as-of date {test_as_of.date()}; at least {test_minimum} "
            f"are needed (a quarter of clv.min_customers = {settings.min_customers})"
        )
    keep, held = _customer_split(stacked.X.index.to_numpy(), settings.valid_share, settings.seed)
    splits = {"train": _take(stacked, keep), "valid": _take(stacked, held), "test": test}
    for name, split in splits.items():
        if not (split.y > 0).any():
            dates = ", ".join(sorted({str(d.date()) for d in split.as_of.unique()}))
            raise DataError(
                f"clv: no customer in the {name} split ({dates}) spends anything in the following {horizon} days; "
                "all labels are 0, so there is nothing to learn or rank — check clv.horizon_days and the dates"
            )
    return splits


# --- model ---------------------------------------------------------------------------------------


class ClvModel(FeatureEncoder, TreeShapCache, RegressorMixin, BaseEstimator):
    """LightGBM model of the spend expected over the horizon (scikit-learn conventions, no training data kept).

    Args:
        params: LightGBM parameters (tree shape, regularisation, ``tweedie_variance_power``);
            defaults :data:`DEFAULT_CLV_PARAMS`.
        objective: ``tweedie`` (one model, log link; exact SHAP values) or ``two_part``
            (P(purchase) × E[spend | purchase], the latter with the gamma deviance).
        learning_rate: boosting learning rate.
        max_trees: upper bound on boosting rounds; early stopping picks the number.
        early_stopping_rounds: rounds without improvement of the validation loss before stopping.
        seed: random seed (LightGBM runs deterministically on a fixed number of threads).
        n_jobs: threads.

    Fitted attributes: ``boosters_`` (part name → booster), ``n_trees_`` (part name → trees used),
    ``balance_factor_`` (the multiplier that balances the training spend, see the module docstring),
    ``feature_names_in_``, ``categories_`` (training categories per categorical column),
    ``dropped_features_``.
    """

    _label = "clv model"

    def __init__(
        self,
        params: dict[str, Any] | None = None,
        objective: str = "tweedie",
        learning_rate: float = 0.05,
        max_trees: int = 2000,
        early_stopping_rounds: int = 50,
        seed: int = 42,
        n_jobs: int = 2,
    ) -> None:
        self.params = params
        self.objective = objective
        self.learning_rate = learning_rate
        self.max_trees = max_trees
        self.early_stopping_rounds = early_stopping_rounds
        self.seed = seed
        self.n_jobs = n_jobs

    # -- helpers ----------------------------------------------------------------------------------

    def _parts(self) -> dict[str, tuple[str, str]]:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown CLV objective {self.objective!r} (tweedie or two_part)")
        return OBJECTIVES[self.objective]

    def _lgb_params(self, part: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        lgb_objective, metric = self._parts()[part]
        merged = {**DEFAULT_CLV_PARAMS, **(self.params or {}), **(params or {})}
        if lgb_objective != "tweedie":
            merged.pop("tweedie_variance_power", None)
        merged.update(
            objective=lgb_objective, metric=metric, **lightgbm_run_params(self.learning_rate, self.seed, self.n_jobs)
        )
        return merged

    def _categorical(self) -> list[str] | str:
        return list(self.categories_) or "auto"

    # -- estimator API ----------------------------------------------------------------------------

    def fit(self, X: pd.DataFrame, y: Any, X_valid: pd.DataFrame | None = None, y_valid: Any = None) -> ClvModel:
        """Fit with early stopping on the validation loss.

        With a validation set (customers held out of training by :func:`clv_datasets`), each part is
        trained on ``X`` and early-stopped on ``X_valid``, and that booster is kept. Without one, a
        seeded 20 % of the *customers* (the index of ``X``; rows of one customer stay together) is held
        out to find the number of trees, and each part is then refitted on every row with that number:
        the final model uses all the data and stays a single booster per part (so SHAP values are exact).
        Last, ``balance_factor_`` is set so that the predictions on ``X`` add up to ``y``.
        """
        parts = self._parts()
        y_arr = _check_spend(y, "y")
        if len(y_arr) != len(X):
            raise ValueError(f"X and y must have the same length, got {len(X)} and {len(y_arr)}")
        X_train = self._prepare(X, fitting=True)
        self.boosters_: dict[str, lgb.Booster] = {}
        self.n_trees_: dict[str, int] = {}
        if X_valid is not None:
            y_val = _check_spend(y_valid, "y_valid")
            X_val = self._prepare(X_valid)
            for part in parts:
                booster = self._train_part(part, X_train, y_arr, X_val, y_val)
                self.boosters_[part] = booster
                self.n_trees_[part] = int(booster.best_iteration or booster.current_iteration())
        else:
            keep, held = _customer_split(X_train.index.to_numpy(), _HOLDOUT_SHARE, self.seed)
            for part in parts:
                probe = self._train_part(part, X_train.iloc[keep], y_arr[keep], X_train.iloc[held], y_arr[held])
                trees = int(probe.best_iteration or probe.current_iteration())
                self.boosters_[part] = self._train_part(part, X_train, y_arr, n_trees=trees)
                self.n_trees_[part] = trees
        self.balance_factor_ = _balance_factor(y_arr, _expected_spend(self._booster_scores(X_train)))
        return self

    def _train_part(
        self,
        part: str,
        X_train: pd.DataFrame,
        y_train: np.ndarray,
        X_hold: pd.DataFrame | None = None,
        y_hold: np.ndarray | None = None,
        n_trees: int | None = None,
    ) -> lgb.Booster:
        """One part's booster: early-stopped on the hold-out, or exactly ``n_trees`` trees without one."""
        X_part, y_part = _part_rows(part, X_train, y_train)
        train_set = lgb.Dataset(X_part, y_part, categorical_feature=self._categorical(), params=_DATASET_PARAMS)
        if X_hold is None:
            return lgb.train(self._lgb_params(part), train_set, num_boost_round=n_trees or self.max_trees)
        X_hold_part, y_hold_part = _part_rows(part, X_hold, y_hold)
        if not len(y_hold_part):
            raise DataError(f"clv model: no buyer among the held-out customers to early-stop the {part} model on")
        hold_set = lgb.Dataset(X_hold_part, y_hold_part, reference=train_set, params=_DATASET_PARAMS)
        return lgb.train(
            self._lgb_params(part),
            train_set,
            num_boost_round=self.max_trees,
            valid_sets=[hold_set],
            callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
        )

    def _booster_scores(self, prepared: pd.DataFrame) -> dict[str, np.ndarray]:
        """Raw score of each part's booster on prepared features (before the balance factor)."""
        return {
            part: booster.predict(prepared, num_iteration=self.n_trees_[part], raw_score=True)
            for part, booster in self.boosters_.items()
        }

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Expected spend of each customer over the horizon (≥ 0, in the currency of ``amount``)."""
        check_is_fitted(self, "boosters_")
        return self.balance_factor_ * _expected_spend(self._booster_scores(self._prepare(X)))

    def shap_values(self, X: pd.DataFrame) -> tuple[np.ndarray, float]:
        """Exact TreeSHAP contributions to the log of the expected spend (n × features) and the base value.

        ``base + values.sum(axis=1)`` equals ``log(predict(X))``. Only the ``tweedie`` objective has them:
        the two-part model multiplies two models, and a product has no exact additive decomposition.
        """
        check_is_fitted(self, "boosters_")
        if self.objective != "tweedie":
            raise ValueError(
                f"SHAP reasons need clv.objective: tweedie; the {self.objective} model multiplies two models "
                "(P(purchase) × E[spend | purchase]), so its contributions cannot add up exactly"
            )
        prepared = self._prepare(X)
        contrib = self._tree_shap("spend", self.boosters_["spend"], self.n_trees_["spend"]).contrib(prepared)
        values = np.asarray(contrib)[:, :-1]
        # The balance factor multiplies the spend, so its log joins the (constant) base value.
        base = (float(contrib[0, -1]) if len(contrib) else 0.0) + float(np.log(self.balance_factor_))
        return values, base

    def feature_importance(self) -> pd.Series:
        """Share of the total split gain per feature (averaged over the parts of a two-part model), largest first."""
        check_is_fitted(self, "boosters_")
        shares = []
        for part, booster in self.boosters_.items():
            gain = booster.feature_importance("gain", iteration=self.n_trees_[part])
            total = gain.sum()
            shares.append(gain / total if total > 0 else gain)
        names = next(iter(self.boosters_.values())).feature_name()
        return pd.Series(np.mean(shares, axis=0), index=names, name="gain_share").sort_values(ascending=False)


def _check_spend(y: Any, name: str) -> np.ndarray:
    y_arr = np.asarray(y, dtype=float).ravel()
    if not np.isfinite(y_arr).all():
        raise DataError(
            f"clv model: {name} holds {int((~np.isfinite(y_arr)).sum())} missing or infinite spend value(s)"
        )
    if (y_arr < 0).any():
        raise DataError(f"clv model: {name} holds {int((y_arr < 0).sum())} negative spend value(s); spend must be ≥ 0")
    if not (y_arr > 0).any():
        raise DataError(f"clv model: every {name} value is 0; a spend model needs customers who spend something")
    return y_arr


def _part_rows(part: str, X: pd.DataFrame, y: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows and label of one part: buy or not (all rows), spend of buyers (buyers only), or spend."""
    if part == "purchase":
        return X, (y > 0).astype(float)
    if part == "amount":
        buyers = y > 0
        return X.loc[buyers], y[buyers]
    return X, y


def _balance_factor(y: np.ndarray, predicted: np.ndarray) -> float:
    """The factor that makes the predictions on the fitted rows add up to their actual spend."""
    total = float(predicted.sum())
    return float(y.sum()) / total if total > 0 else 1.0


def _expected_spend(raw: Mapping[str, np.ndarray]) -> np.ndarray:
    if "spend" in raw:
        return np.exp(raw["spend"])
    return np.exp(raw["amount"]) / (1.0 + np.exp(-raw["purchase"]))


# --- tuning ----------------------------------------------------------------------------------------


def _search_space(trial: optuna.Trial, objective: str) -> dict[str, Any]:
    space = lightgbm_search_space(trial, min_child_samples_low=5)
    if objective == "tweedie":
        space["tweedie_variance_power"] = trial.suggest_float("tweedie_variance_power", 1.05, 1.95)
    return space


def _pruning_callback(trial: optuna.Trial, sign: float) -> Callable[[lgb.callback.CallbackEnv], None]:
    # The pruner compares intermediate values in the study's direction; the validation loss is reported
    # with the sign that makes "better" point the same way as the selection metric.
    def report(env: lgb.callback.CallbackEnv) -> None:
        if env.iteration % 25 == 0 and env.evaluation_result_list:
            trial.report(sign * env.evaluation_result_list[0][2], env.iteration)
            if trial.should_prune():
                raise optuna.TrialPruned()

    return report


def tune_clv(train: ClvData, valid: ClvData, settings: ClvSettings, n_jobs: int = 2) -> TuningResult:
    """Search LightGBM hyper-parameters of the CLV model on the validation customers (seeded TPE, median pruning).

    Each trial early-stops on the validation loss and is scored by ``clv.selection_metric`` of its
    predictions on ``valid`` (:func:`crmscore.evaluation.value_metrics`; minimised for metrics in
    :data:`~crmscore.evaluation.LOWER_IS_BETTER`, else maximised). The first trial is
    :data:`DEFAULT_CLV_PARAMS`, so the search never ends worse than the default. It stops after
    ``clv.tuning.trials`` trials or ``clv.tuning.timeout_seconds``, whichever comes first.
    """
    started = time.perf_counter()
    tuning = settings.tuning
    metric = settings.selection_metric
    minimise = metric in LOWER_IS_BETTER
    probe = model_from_settings(settings, n_jobs=n_jobs)
    parts = probe._parts()
    X_train = probe._prepare(train.X, fitting=True)
    X_valid = probe._prepare(valid.X)
    y_train = _check_spend(train.y, "train.y")
    y_valid = _check_spend(valid.y, "valid.y")
    # One Dataset per part serves every trial (see _DATASET_PARAMS).
    datasets = {}
    for part in parts:
        X_part, y_part = _part_rows(part, X_train, y_train)
        X_hold, y_hold = _part_rows(part, X_valid, y_valid)
        train_set = lgb.Dataset(
            X_part,
            y_part,
            categorical_feature=probe._categorical(),
            free_raw_data=False,
            params=_DATASET_PARAMS,
        )
        valid_set = lgb.Dataset(X_hold, y_hold, reference=train_set, free_raw_data=False, params=_DATASET_PARAMS)
        datasets[part] = (train_set, valid_set)

    def objective(trial: optuna.Trial) -> float:
        space = _search_space(trial, settings.objective)
        raw_train, raw_valid = {}, {}
        for i, part in enumerate(parts):
            callbacks = [lgb.early_stopping(tuning.early_stopping_rounds, verbose=False)]
            if i == 0:  # pruning follows the first part's loss (the only part of tweedie)
                callbacks.append(_pruning_callback(trial, 1.0 if minimise else -1.0))
            train_set, valid_set = datasets[part]
            booster = lgb.train(
                probe._lgb_params(part, space),
                train_set,
                num_boost_round=tuning.max_trees,
                valid_sets=[valid_set],
                callbacks=callbacks,
            )
            trial.set_user_attr(f"trees_{part}", int(booster.best_iteration))
            raw_train[part] = booster.predict(X_train, num_iteration=booster.best_iteration, raw_score=True)
            raw_valid[part] = booster.predict(X_valid, num_iteration=booster.best_iteration, raw_score=True)
        # Scored exactly as ClvModel.fit would leave the model, balance factor included.
        predicted = _balance_factor(y_train, _expected_spend(raw_train)) * _expected_spend(raw_valid)
        if np.ptp(predicted) == 0:  # no split at all: a constant ranks nobody and has no Spearman
            raise optuna.TrialPruned()
        return float(value_metrics(y_valid, predicted)[metric])

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize" if minimise else "maximize",
        sampler=optuna.samplers.TPESampler(seed=settings.seed, n_startup_trials=min(10, tuning.trials)),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=50),
    )
    defaults = {k: v for k, v in DEFAULT_CLV_PARAMS.items() if k not in {"bagging_freq", "max_cat_to_onehot"}}
    if settings.objective != "tweedie":
        defaults.pop("tweedie_variance_power")
    study.enqueue_trial(defaults)
    study.optimize(objective, n_trials=tuning.trials, timeout=tuning.timeout_seconds, gc_after_trial=False)
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        raise DataError("clv tuning: no trial completed; raise clv.tuning.timeout_seconds")
    table = study.trials_dataframe(attrs=("number", "value", "state", "params", "duration", "user_attrs"))
    return TuningResult(
        best_params={**DEFAULT_CLV_PARAMS, **study.best_params},
        best_value=float(study.best_value),
        trials=len(study.trials),
        pruned=sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
        seconds=time.perf_counter() - started,
        trials_table=table,
    )


def model_from_settings(settings: ClvSettings, params: dict[str, Any] | None = None, n_jobs: int = 2) -> ClvModel:
    """A :class:`ClvModel` configured from the ``clv`` section (and tuned ``params``)."""
    return ClvModel(
        params=params,
        objective=settings.objective,
        learning_rate=settings.tuning.learning_rate,
        max_trees=settings.tuning.max_trees,
        early_stopping_rounds=settings.tuning.early_stopping_rounds,
        seed=settings.seed,
        n_jobs=n_jobs,
    )
