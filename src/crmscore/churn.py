"""Churn models: datasets with leakage-free validation, a logistic baseline, tuned and calibrated LightGBM.

* **Datasets.** Transaction data: features at several past as-of dates are stacked for training,
  validation and test use later as-of dates, and every label window ends before the next split's
  as-of date (:func:`temporal_datasets`). Snapshot data (a ``churned`` flag, e.g. Telco): a
  stratified train / validation / test split with a fixed seed (:func:`snapshot_datasets`), and
  repeated stratified k-fold for the reported figure (:func:`cross_validate`).
* **Baseline.** Logistic regression in a scikit-learn pipeline (median imputation with missing
  indicators, signed log of heavy-tailed numbers, scaling, one-hot categories).
* **LightGBM.** :func:`tune_lightgbm` searches hyper-parameters with Optuna (seeded TPE, median
  pruning on the validation AUC, early stopping, trial and time budgets from ``params.yaml``).
  :class:`ChurnModel` is a scikit-learn classifier: it fits the booster with early stopping and then
  calibrates its scores (centred isotonic or sigmoid, both keep the ranking) on data it did not train
  on, so that a 30 % churn probability means 30 % of such customers leave.

Unseen categories at prediction time are treated as missing (LightGBM routes missing values along the
branch learned for them) and their count is logged (scoring reports them per feature,
:mod:`crmscore.feature_checks`); features that are entirely missing in training are dropped with a
warning.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from typing import Any

import lightgbm as lgb
import numpy as np
import optuna
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted

from crmscore.config import ChurnSettings, FeatureSettings, TuningSettings
from crmscore.errors import DataError
from crmscore.evaluation import classification_metrics, roc_auc
from crmscore.explain import TreeShapCache
from crmscore.features import FeatureEncoder, build_features, feature_columns, stack_frames
from crmscore.labels import data_start, label_kind, last_labelable_as_of, subscription_churn, transaction_churn

__all__ = [
    "ChurnData",
    "temporal_datasets",
    "snapshot_datasets",
    "churn_datasets",
    "snapshot_frame",
    "make_baseline",
    "LogisticBaseline",
    "fit_baseline",
    "evaluate",
    "model_from_settings",
    "ChurnModel",
    "CenteredIsotonic",
    "TuningResult",
    "auc_standard_error",
    "tune_lightgbm",
    "cross_validate",
    "snapshot_cv_folds",
    "cv_summary",
    "DEFAULT_LGBM_PARAMS",
    "lightgbm_run_params",
]

log = logging.getLogger("crmscore.churn")

# Sensible starting point, also used when tuning is switched off (trials: 1 runs only this point).
DEFAULT_LGBM_PARAMS: dict[str, Any] = {
    "num_leaves": 15,
    "min_child_samples": 40,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l1": 0.001,
    "lambda_l2": 1.0,
    "min_split_gain": 0.0,
    "cat_smooth": 10.0,
    "max_cat_to_onehot": 8,
}


def lightgbm_run_params(learning_rate: float, seed: int, n_jobs: int) -> dict[str, Any]:
    """Settings every LightGBM model here trains with: the same trees for a seed and thread count, no logging."""
    return {
        "learning_rate": learning_rate,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": n_jobs,
        "verbosity": -1,
    }


# --- datasets ------------------------------------------------------------------------------------


@dataclasses.dataclass
class ChurnData:
    """Features and labels of one split; ``as_of`` per row (stacked cutoffs share one frame)."""

    X: pd.DataFrame
    y: pd.Series
    as_of: pd.Series

    def __len__(self) -> int:
        return len(self.y)


def _check_labels(y: pd.Series, where: str, hint: str = "check churn.horizon_days and the as-of dates") -> None:
    counts = y.value_counts()
    if len(counts) < 2:
        only = int(counts.index[0]) if len(counts) else "none"
        raise DataError(
            f"churn label at {where}: only one class (all churned = {only}); a model needs churners and "
            f"non-churners — {hint}"
        )


def _frame(
    tables: Mapping[str, pd.DataFrame], as_of: pd.Timestamp, settings: ChurnSettings, features: FeatureSettings
) -> ChurnData:
    X = build_features(tables, as_of, features)
    y = transaction_churn(tables["transactions"], X.index, as_of, settings.horizon_days)
    return ChurnData(X=X, y=y, as_of=pd.Series(as_of, index=X.index, name="as_of"))


def _stack(parts: list[ChurnData]) -> ChurnData:
    X = stack_frames([p.X for p in parts])
    return ChurnData(X=X, y=pd.concat([p.y for p in parts]), as_of=pd.concat([p.as_of for p in parts]))


def temporal_datasets(
    tables: Mapping[str, pd.DataFrame], settings: ChurnSettings, features: FeatureSettings | None = None
) -> dict[str, ChurnData]:
    """Train (stacked past cutoffs), validation and test sets for transaction churn.

    ``test`` is at ``churn.test_as_of`` (default: the last as-of date whose horizon is fully observed),
    ``valid`` one horizon earlier, and the ``train_cutoffs`` training dates ``cutoff_step_days`` apart
    end one horizon before ``valid``: every label window closes before the next split begins.
    """
    features = features or FeatureSettings()
    h = pd.Timedelta(days=settings.horizon_days)
    latest = last_labelable_as_of(tables, settings.horizon_days)
    test_as_of = pd.Timestamp(settings.test_as_of) if settings.test_as_of else latest
    if test_as_of > latest:
        raise DataError(
            f"churn.test_as_of: {test_as_of.date()} leaves its {settings.horizon_days}-day horizon unobserved "
            f"(history ends {(latest + h).date()})"
        )
    valid_as_of = test_as_of - h
    train_dates = [
        valid_as_of - h - pd.Timedelta(days=k * settings.cutoff_step_days) for k in range(settings.train_cutoffs)
    ]
    first_signup = data_start(tables)
    train_dates = [d for d in train_dates if d > first_signup]
    if not train_dates:
        raise DataError(
            f"churn: no training as-of date after the first signup ({first_signup.date()}); the history is too "
            f"short for horizon_days={settings.horizon_days} (need about {3 * settings.horizon_days} days)"
        )
    splits = {
        "train": _stack([_frame(tables, d, settings, features) for d in sorted(train_dates)]),
        "valid": _frame(tables, valid_as_of, settings, features),
        "test": _frame(tables, test_as_of, settings, features),
    }
    for name, split in splits.items():
        if len(split) < max(20, settings.min_customers // 4):
            raise DataError(
                f"churn: {len(split)} customers in the {name} split; each split needs at least "
                f"{max(20, settings.min_customers // 4)} (a quarter of churn.min_customers = {settings.min_customers})"
            )
        _check_labels(split.y, f"{name} ({split.as_of.iloc[0].date()})")
    return splits


def snapshot_datasets(
    tables: Mapping[str, pd.DataFrame],
    settings: ChurnSettings,
    features: FeatureSettings | None = None,
    as_of: pd.Timestamp | None = None,
) -> dict[str, ChurnData]:
    """Stratified train / validation / test split of snapshot data labelled by ``churned``."""
    X, y, when = snapshot_frame(tables, features, as_of)
    if len(y) < settings.min_customers:
        raise DataError(
            f"churn: {len(y)} labelled customers; at least churn.min_customers = {settings.min_customers} are "
            "needed for a train / validation / test split"
        )
    _check_labels(y, "snapshot", hint="check the churned column of customers")
    rest_idx, test_idx = train_test_split(
        np.arange(len(y)), test_size=settings.test_share, stratify=y, random_state=settings.seed
    )
    valid_of_rest = settings.valid_share / (1 - settings.test_share)
    train_idx, valid_idx = train_test_split(
        rest_idx, test_size=valid_of_rest, stratify=y.iloc[rest_idx], random_state=settings.seed
    )
    return {
        name: ChurnData(X=X.iloc[idx], y=y.iloc[idx], as_of=pd.Series(when, index=X.index[idx], name="as_of"))
        for name, idx in (("train", train_idx), ("valid", valid_idx), ("test", test_idx))
    }


def snapshot_frame(
    tables: Mapping[str, pd.DataFrame], features: FeatureSettings | None = None, as_of: pd.Timestamp | None = None
) -> tuple[pd.DataFrame, pd.Series, pd.Timestamp]:
    """Features and ``churned`` label of every labelled customer of snapshot data, and its as-of date.

    The as-of date is ``as_of`` (the snapshot date), else the last signup day, else today (a table
    without dates: its features do not depend on the day).
    """
    customers = tables["customers"]
    if as_of is not None:
        when = pd.Timestamp(as_of).normalize()
    elif "signup_date" in customers.columns:
        when = customers["signup_date"].max().normalize()
    else:
        when = pd.Timestamp.today().normalize()
    X = build_features(tables, when, features)
    y = subscription_churn(customers, X.index)
    return X, y, when


def churn_datasets(
    tables: Mapping[str, pd.DataFrame],
    settings: ChurnSettings,
    features: FeatureSettings | None = None,
    snapshot_date: pd.Timestamp | None = None,
) -> tuple[str, dict[str, ChurnData]]:
    """The label kind (``transaction`` / ``subscription``) and its train / valid / test datasets.

    ``snapshot_date`` is the as-of date of snapshot data (see :func:`snapshot_frame`).
    """
    kind = label_kind(tables, settings.label)
    if kind == "transaction":
        return kind, temporal_datasets(tables, settings, features)
    return kind, snapshot_datasets(tables, settings, features, as_of=snapshot_date)


# --- baseline --------------------------------------------------------------------------------------


def _signed_log1p(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def make_baseline(numeric: list[str], categorical: list[str], seed: int = 0, C: float = 1.0) -> Pipeline:
    """Logistic-regression baseline: signed log, impute (+ indicators), scale, one-hot, L2 logistic.

    The signed log comes first, so that no later step sums raw values: any finite input (1e308 too)
    stays finite through imputation and scaling."""
    numeric_steps = make_pipeline(
        FunctionTransformer(_signed_log1p, feature_names_out="one-to-one"),
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=False),
        StandardScaler(),
    )
    categorical_steps = make_pipeline(
        SimpleImputer(strategy="constant", fill_value="missing"),
        OneHotEncoder(handle_unknown="ignore", min_frequency=5),
    )
    transformers = []
    if numeric:
        transformers.append(("numeric", numeric_steps, numeric))
    if categorical:
        transformers.append(("categorical", categorical_steps, categorical))
    return Pipeline(
        [
            ("prepare", ColumnTransformer(transformers)),
            ("model", LogisticRegression(C=C, max_iter=5000, random_state=seed)),
        ]
    )


def _baseline_input(X: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    # The imputer needs object columns for a constant text fill.
    X = X.copy()
    for column in categorical:
        X[column] = X[column].astype(object).where(X[column].notna(), np.nan)
    return X


# --- LightGBM ----------------------------------------------------------------------------------------


class ChurnModel(FeatureEncoder, TreeShapCache, ClassifierMixin, BaseEstimator):
    """Calibrated LightGBM churn classifier (scikit-learn conventions, never stores training data).

    Args:
        params: LightGBM parameters (tree shape, regularisation); defaults :data:`DEFAULT_LGBM_PARAMS`.
        learning_rate: boosting learning rate.
        max_trees: upper bound on boosting rounds; early stopping picks the number.
        early_stopping_rounds: rounds without improvement of the validation AUC before stopping.
        calibration: ``isotonic`` (centred, so that it keeps the ranking: :class:`CenteredIsotonic`),
            ``sigmoid``, ``auto`` (isotonic from 5,000 calibration rows, sigmoid below) or ``none``.
        class_weight: ``balanced`` weighs churners by non-churners / churners; ``none`` does not.
        n_folds: boosters cross-fitted when ``fit`` gets no validation set.
        linear_blend: also fit the logistic baseline and blend the two models' log-odds with the
            weight that ranks held-out customers best (0 = logistic only, 1 = trees only). Both
            parts have exact SHAP values, so the blend's are exact too.
        blend_weight: fixed weight of the trees in the blend; ``None`` chooses it on held-out data.
        seed: random seed (LightGBM runs deterministically on a fixed number of threads).
        n_jobs: threads.
        calibration_bootstraps: calibrators also fitted on this many bootstrap resamples of the
            calibration scores (``calibrator_draws_``), behind the churn probability intervals of
            :mod:`crmscore.intervals`; 0 = none.
        spread_folds: with a validation set, also cross-fit this many boosters on the training rows
            (``spread_boosters_``), each early-stopped on the fold it did not train on. They serve only
            the intervals: their spread is the booster's own uncertainty, which the calibrator bootstrap
            does not see. Predictions and SHAP values come from the one booster as before; 0 or 1 = none.

    Fitted attributes: ``boosters_``, ``linear_models_``, ``blend_weight_``, ``best_iterations_``,
    ``calibrator_``, ``calibrator_draws_``, ``spread_boosters_``, ``calibration_method_``, ``base_rate_`` (share
    of churners in training),
    ``feature_names_in_``,
    ``categories_`` (training categories per categorical column), ``dropped_features_``, ``classes_``.
    """

    _label = "churn model"

    def __init__(
        self,
        params: dict[str, Any] | None = None,
        learning_rate: float = 0.05,
        max_trees: int = 2000,
        early_stopping_rounds: int = 50,
        calibration: str = "auto",
        class_weight: str = "none",
        n_folds: int = 5,
        linear_blend: bool = True,
        blend_weight: float | None = None,
        seed: int = 42,
        n_jobs: int = 2,
        calibration_bootstraps: int = 0,
        spread_folds: int = 0,
    ) -> None:
        self.params = params
        self.learning_rate = learning_rate
        self.max_trees = max_trees
        self.early_stopping_rounds = early_stopping_rounds
        self.calibration = calibration
        self.class_weight = class_weight
        self.n_folds = n_folds
        self.linear_blend = linear_blend
        self.blend_weight = blend_weight
        self.seed = seed
        self.n_jobs = n_jobs
        self.calibration_bootstraps = calibration_bootstraps
        self.spread_folds = spread_folds

    # -- helpers ----------------------------------------------------------------------------------

    def _lgb_params(self, y: np.ndarray) -> dict[str, Any]:
        params = {**DEFAULT_LGBM_PARAMS, **(self.params or {})}
        params.update(
            objective="binary", metric="auc", **lightgbm_run_params(self.learning_rate, self.seed, self.n_jobs)
        )
        if self.class_weight == "balanced":
            positives = max(int(y.sum()), 1)
            params["scale_pos_weight"] = (len(y) - positives) / positives
        return params

    # -- estimator API ----------------------------------------------------------------------------

    def fit(self, X: pd.DataFrame, y: Any, X_valid: pd.DataFrame | None = None, y_valid: Any = None) -> ChurnModel:
        """Fit, early-stop and calibrate.

        With a validation set (a later as-of date in temporal validation), one booster is trained with
        early stopping on it and the calibrator is fitted on its scores there. Without one, the model
        is *cross-fitted*: ``n_folds`` boosters, each early-stopped on the fold it did not train on;
        the calibrator is fitted on those out-of-fold scores, and predictions average the boosters'
        log-odds (so every training row is used, and SHAP values stay exact: they average too).
        """
        y = np.asarray(y).astype(int)
        if len(np.unique(y)) < 2:
            raise DataError("churn model: the training label has only one class")
        self.base_rate_ = float(y.mean())  # the churn rate the reasons quote
        X_train = self._prepare(X, fitting=True)
        params = self._lgb_params(y)
        categorical = list(self.categories_) or "auto"
        self.classes_ = np.array([0, 1])
        self.linear_models_: list[LogisticBaseline] = []
        self.spread_boosters_: list[lgb.Booster] = []
        if X_valid is not None:
            y_valid = np.asarray(y_valid).astype(int)
            X_val = self._prepare(X_valid)
            booster = self._train(params, X_train, y, X_val, y_valid, categorical)
            self.boosters_ = [booster]
            tree_raw, y_calibration = self._raw(booster, X_val), y_valid
            if self.spread_folds >= 2 and self.calibration_bootstraps > 0:
                self.spread_boosters_ = self._cross_fit(
                    params, X_train, y, categorical, self.spread_folds, linear=False
                )[0]
            if self.linear_blend:
                self.linear_models_.append(LogisticBaseline(seed=self.seed).fit(X_train, y))
                linear_raw = self.linear_models_[0].decision_function(X_val)
        else:
            self.boosters_, tree_raw, linear_raw = self._cross_fit(
                params, X_train, y, categorical, self.n_folds, self.linear_blend
            )
            y_calibration = y
        self.best_iterations_ = [int(b.best_iteration or b.current_iteration()) for b in self.boosters_]
        # Weight of the trees against the logistic model, chosen on data neither was fitted on.
        if not self.linear_blend:
            self.blend_weight_ = 1.0
        elif self.blend_weight is not None:
            self.blend_weight_ = float(self.blend_weight)
        else:
            self.blend_weight_ = _best_blend(tree_raw, linear_raw, y_calibration)
        raw_calibration = (
            tree_raw if not self.linear_blend else self.blend_weight_ * tree_raw + (1 - self.blend_weight_) * linear_raw
        )
        self.calibration_method_ = _resolve_calibration(self.calibration, len(y_calibration))
        self.calibrator_ = _fit_calibrator(self.calibration_method_, raw_calibration, y_calibration)
        self.calibrator_draws_ = _bootstrap_calibrators(
            self.calibration_method_, raw_calibration, y_calibration, self.calibration_bootstraps, self.seed
        )
        return self

    def _cross_fit(self, params, X_train, y, categorical, n_folds: int, linear: bool):
        """``n_folds`` boosters, each early-stopped on the fold it did not train on, and the out-of-fold raw
        scores of the trees and (with ``linear``, whose fold models join ``linear_models_``) the logistic model."""
        folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=self.seed)
        tree_raw = np.zeros(len(y))
        linear_raw = np.zeros(len(y))
        boosters = []
        for train_idx, hold_idx in folds.split(X_train, y):
            fold_train, fold_hold = X_train.iloc[train_idx], X_train.iloc[hold_idx]
            booster = self._train(params, fold_train, y[train_idx], fold_hold, y[hold_idx], categorical)
            tree_raw[hold_idx] = self._raw(booster, fold_hold)
            boosters.append(booster)
            if linear:
                baseline = LogisticBaseline(seed=self.seed).fit(fold_train, y[train_idx])
                linear_raw[hold_idx] = baseline.decision_function(fold_hold)
                self.linear_models_.append(baseline)
        return boosters, tree_raw, linear_raw

    def _train(self, params, X_train, y_train, X_hold, y_hold, categorical) -> lgb.Booster:
        train_set = lgb.Dataset(X_train, y_train, categorical_feature=categorical, free_raw_data=True)
        hold_set = lgb.Dataset(X_hold, y_hold, reference=train_set)
        return lgb.train(
            params,
            train_set,
            num_boost_round=self.max_trees,
            valid_sets=[hold_set],
            callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
        )

    @staticmethod
    def _raw(booster: lgb.Booster, X: pd.DataFrame, **kwargs: Any) -> np.ndarray:
        return booster.predict(X, num_iteration=booster.best_iteration or None, raw_score=True, **kwargs)

    def _tree_raws(self, prepared: pd.DataFrame) -> np.ndarray:
        return np.array([self._raw(b, prepared) for b in self.boosters_])

    def _blend(self, tree_raw: np.ndarray, prepared: pd.DataFrame) -> np.ndarray:
        if self.blend_weight_ < 1.0:
            linear = np.mean([m.decision_function(prepared) for m in self.linear_models_], axis=0)
            return self.blend_weight_ * tree_raw + (1.0 - self.blend_weight_) * linear
        return tree_raw

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """Raw model output (mean log-odds of the boosters, before calibration): what SHAP values add up to."""
        check_is_fitted(self, "boosters_")
        prepared = self._prepare(X)
        return self._blend(np.mean(self._tree_raws(prepared), axis=0), prepared)

    def probability_draws(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        """Calibrated churn probabilities and their bootstrap draws (draws × customers; None without them).

        Draw k applies bootstrapped calibrator k to the raw score, moved by cross-fitted booster k mod K's
        deviation from the mean of the K, scaled by 1 / √(K − 1): the fold models of a cross-fitted model,
        or the ``spread_boosters_`` of a model early-stopped on a validation set (its one booster's own
        uncertainty; the scale is the one whose intervals cover the true churn rate of groups of simulated
        customers, ``benchmarks/clv_intervals.py``). The probabilities equal :meth:`predict_proba`'s.
        """
        check_is_fitted(self, "boosters_")
        prepared = self._prepare(X)
        trees = self._tree_raws(prepared)
        mean_tree = np.mean(trees, axis=0)
        raw = self._blend(mean_tree, prepared)
        p = _apply_calibrator(self.calibrator_, raw)
        calibrators = getattr(self, "calibrator_draws_", None)  # models trained before intervals have none
        if not calibrators:
            return p, None
        spread = getattr(self, "spread_boosters_", None)  # models trained before the spread boosters have none
        if spread:
            trees = np.array([self._raw(b, prepared) for b in spread])
            mean_tree = trees.mean(axis=0)
        k = len(trees)
        draws = np.empty((len(calibrators), len(raw)))
        for i, calibrator in enumerate(calibrators):
            shift = 0.0 if k < 2 else self.blend_weight_ * (trees[i % k] - mean_tree) / np.sqrt(k - 1)
            draws[i] = _apply_calibrator(calibrator, raw + shift)
        return p, draws

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probabilities ``[[P(stay), P(churn)], …]``."""
        check_is_fitted(self, "boosters_")
        p = _apply_calibrator(self.calibrator_, self.decision_function(X))
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame, threshold: float = 0.5) -> np.ndarray:
        """1 where the calibrated churn probability reaches ``threshold``."""
        return (self.predict_proba(X)[:, 1] >= threshold).astype(int)

    def shap_values(self, X: pd.DataFrame) -> tuple[np.ndarray, float]:
        """Exact TreeSHAP contributions in log-odds (n × features) and the base value.

        ``base + contributions.sum(axis=1)`` equals :meth:`decision_function`.
        """
        check_is_fitted(self, "boosters_")
        prepared = self._prepare(X)
        contrib = np.mean(
            [self._tree_shap(i, b, b.best_iteration or None).contrib(prepared) for i, b in enumerate(self.boosters_)],
            axis=0,
        )
        values, base = contrib[:, :-1], float(contrib[0, -1]) if len(contrib) else 0.0
        if self.blend_weight_ < 1.0:
            features = list(self.feature_names_in_)
            linear = [m.shap_values(prepared, features) for m in self.linear_models_]
            linear_values = np.mean([v for v, _ in linear], axis=0)
            linear_base = float(np.mean([b for _, b in linear]))
            values = self.blend_weight_ * values + (1.0 - self.blend_weight_) * linear_values
            base = self.blend_weight_ * base + (1.0 - self.blend_weight_) * linear_base
        return values, base

    def feature_importance(self) -> pd.Series:
        """Total gain per feature summed over the boosters, largest first."""
        check_is_fitted(self, "boosters_")
        gain = sum(b.feature_importance("gain", iteration=b.best_iteration or None) for b in self.boosters_)
        return pd.Series(gain, index=self.boosters_[0].feature_name()).sort_values(ascending=False)


def _best_blend(tree_raw: np.ndarray, linear_raw: np.ndarray, y: np.ndarray) -> float:
    """The weight of the trees (0–1 in steps of 0.1) whose blend ranks ``y`` best; ties favour trees."""
    best_weight, best_auc = 1.0, -np.inf
    for weight in np.linspace(1.0, 0.0, 11):
        auc = roc_auc(y, _sigmoid(weight * tree_raw + (1 - weight) * linear_raw))
        if auc > best_auc + 1e-9:
            best_weight, best_auc = float(weight), auc
    return round(best_weight, 1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _resolve_calibration(method: str, n: int) -> str:
    # Isotonic regression needs many rows to follow an irregular shape; on few a sigmoid is the
    # steadier fit. (Both keep the order of the scores: see CenteredIsotonic.)
    if method == "auto":
        return "isotonic" if n >= 5000 else "sigmoid"
    return method


class CenteredIsotonic:
    """Isotonic calibration that keeps the ranking (centred isotonic regression, Oron & Flournoy 2017).

    Plain isotonic regression is a step function: customers inside one step get the same probability
    although their scores differ, which throws ranking away (on Telco's 5×5 cross-validation it cost
    0.0011 AUC). This calibrator keeps the pooled step values of the isotonic fit but places each at
    the mean score of its step and interpolates linearly between them: strictly increasing between the
    outermost step centres, constant beyond them. Calibration is as good as the isotonic fit's; only
    the ties go.
    """

    def fit(self, raw: np.ndarray, y: np.ndarray) -> CenteredIsotonic:
        raw = np.asarray(raw, dtype=float)
        fitted = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y).predict(raw)
        # Equal fitted values form one contiguous run of scores (the fit is monotone, tied scores pooled).
        values, step = np.unique(fitted, return_inverse=True)
        self.centres_ = np.bincount(step, weights=raw) / np.bincount(step)
        self.values_ = values
        return self

    def predict(self, raw: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(raw, dtype=float), self.centres_, self.values_)


def _fit_calibrator(method: str, raw: np.ndarray, y: np.ndarray) -> Any:
    if method == "none":
        return None
    if method == "isotonic":
        return CenteredIsotonic().fit(raw, y)
    if method == "sigmoid":
        return LogisticRegression(C=1e6, max_iter=1000).fit(raw.reshape(-1, 1), y)
    raise ValueError(f"unknown calibration {method!r} (isotonic, sigmoid or none)")


def _bootstrap_calibrators(method: str, raw: np.ndarray, y: np.ndarray, n: int, seed: int) -> list[Any]:
    """Calibrators fitted on ``n`` seeded bootstrap resamples of the calibration scores (one-class ones skipped)."""
    rng = np.random.default_rng(seed)
    fitted = []
    for _ in range(n):
        rows = rng.integers(0, len(y), len(y))
        if 0 < y[rows].sum() < len(rows):
            fitted.append(_fit_calibrator(method, raw[rows], y[rows]))
    return fitted


def _apply_calibrator(calibrator: Any, raw: np.ndarray) -> np.ndarray:
    if calibrator is None:
        return 1.0 / (1.0 + np.exp(-raw))
    if isinstance(calibrator, (CenteredIsotonic, IsotonicRegression)):
        return np.clip(calibrator.predict(raw), 0.0, 1.0)
    return calibrator.predict_proba(raw.reshape(-1, 1))[:, 1]


# --- tuning --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class TuningResult:
    """Chosen parameters of the search and a summary of the study.

    ``best_params`` / ``best_value`` are the chosen configuration and its validation AUC: the best
    trial's, or the default's when the best trial does not beat it by one standard error
    (``kept_default``; see :func:`tune_lightgbm`). ``search_best_value`` is the best trial's AUC and
    ``standard_error`` its standard error.
    """

    best_params: dict[str, Any]
    best_value: float
    trials: int
    pruned: int
    seconds: float
    trials_table: pd.DataFrame
    search_best_value: float = float("nan")
    standard_error: float = float("nan")
    kept_default: bool = False


def auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Standard error of an AUC measured on ``positives`` × ``negatives`` (Hanley & McNeil, 1982)."""
    if positives < 1 or negatives < 1:
        return float("nan")
    q1, q2 = auc / (2.0 - auc), 2.0 * auc**2 / (1.0 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)) / (
        positives * negatives
    )
    return float(np.sqrt(max(variance, 0.0)))


def lightgbm_search_space(trial: optuna.Trial, min_child_samples_low: int = 10) -> dict[str, Any]:
    """The LightGBM hyper-parameters Optuna searches (tree shape and regularisation), shared by the models."""
    return {
        "num_leaves": trial.suggest_int("num_leaves", 4, 63, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", min_child_samples_low, 200, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.4, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
        "bagging_freq": 1,
        "lambda_l1": trial.suggest_float("lambda_l1", 1e-3, 10.0, log=True),
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 30.0, log=True),
        "min_split_gain": trial.suggest_float("min_split_gain", 0.0, 0.5),
        "cat_smooth": trial.suggest_float("cat_smooth", 1.0, 50.0, log=True),
        "max_cat_to_onehot": 8,
    }


def tune_lightgbm(
    train: ChurnData,
    valid: ChurnData,
    tuning: TuningSettings,
    seed: int = 42,
    class_weight: str = "none",
    n_jobs: int = 2,
) -> TuningResult:
    """Search LightGBM hyper-parameters on the validation AUC (seeded TPE, median pruning).

    The first trial is :data:`DEFAULT_LGBM_PARAMS`. The search stops after ``tuning.trials`` trials or
    ``tuning.timeout_seconds``, whichever comes first; with a generous timeout the same data and seed
    give the same result.

    The best of many trials on one validation set is an optimistic pick: on a small set the trials'
    AUCs differ mostly by noise, and the winner is the configuration that fitted that noise best (on
    Telco's 1,409 validation customers 30 trials spanned 0.825–0.832, and the winner ranked worse
    than the default in cross-validation). So the one-standard-error rule (Breiman et al., 1984;
    Hastie et al., *Elements of Statistical Learning*, §7.10) applies: the default is kept unless the
    best trial beats it by at least one standard error of the best validation AUC
    (:func:`auc_standard_error`). On large validation sets that error is small and the search
    decides.
    """
    started = time.perf_counter()
    probe = ChurnModel(seed=seed, class_weight=class_weight, n_jobs=n_jobs)
    X_train = probe._prepare(train.X, fitting=True)
    X_valid = probe._prepare(valid.X)
    y_train = train.y.to_numpy().astype(int)
    y_valid = valid.y.to_numpy().astype(int)
    categorical = list(probe.categories_) or "auto"
    # One Dataset serves every trial; pre-filtering would fix min_data_in_leaf to the first trial's value.
    train_set = lgb.Dataset(
        X_train, y_train, categorical_feature=categorical, free_raw_data=False, params={"feature_pre_filter": False}
    )
    valid_set = lgb.Dataset(
        X_valid, y_valid, reference=train_set, free_raw_data=False, params={"feature_pre_filter": False}
    )

    def objective(trial: optuna.Trial) -> float:
        params = probe._lgb_params(y_train) | lightgbm_search_space(trial) | {"learning_rate": tuning.learning_rate}

        def report(env: lgb.callback.CallbackEnv) -> None:
            if env.iteration % 25 == 0 and env.evaluation_result_list:
                trial.report(env.evaluation_result_list[0][2], env.iteration)
                if trial.should_prune():
                    raise optuna.TrialPruned()

        booster = lgb.train(
            params,
            train_set,
            num_boost_round=tuning.max_trees,
            valid_sets=[valid_set],
            callbacks=[lgb.early_stopping(tuning.early_stopping_rounds, verbose=False), report],
        )
        trial.set_user_attr("best_iteration", int(booster.best_iteration))
        return float(booster.best_score["valid_0"]["auc"])

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, tuning.trials)),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=50),
    )
    study.enqueue_trial(
        {k: v for k, v in DEFAULT_LGBM_PARAMS.items() if k not in {"bagging_freq", "max_cat_to_onehot"}}
    )
    study.optimize(objective, n_trials=tuning.trials, timeout=tuning.timeout_seconds, gc_after_trial=False)
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        raise DataError("churn tuning: no trial completed; raise churn.tuning.timeout_seconds")
    table = study.trials_dataframe(attrs=("number", "value", "state", "params", "duration", "user_attrs"))
    positives = int(y_valid.sum())
    standard_error = auc_standard_error(float(study.best_value), positives, len(y_valid) - positives)
    default = study.trials[0]
    kept_default = (
        default.state == optuna.trial.TrialState.COMPLETE
        and float(study.best_value) - float(default.value) < standard_error
    )
    chosen = default if kept_default else study.best_trial
    return TuningResult(
        best_params={**DEFAULT_LGBM_PARAMS, **chosen.params},
        best_value=float(chosen.value),
        trials=len(study.trials),
        pruned=sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
        seconds=time.perf_counter() - started,
        trials_table=table,
        search_best_value=float(study.best_value),
        standard_error=standard_error,
        kept_default=bool(kept_default),
    )


def model_from_settings(
    settings: ChurnSettings,
    params: dict[str, Any] | None = None,
    n_jobs: int = 2,
    calibration_bootstraps: int = 0,
    spread_folds: int = 0,
) -> ChurnModel:
    """A :class:`ChurnModel` configured from the ``churn`` section (and tuned ``params``); ``calibration_bootstraps``
    and ``spread_folds`` from ``intervals.calibration_bootstraps`` and ``intervals.churn_spread_folds``."""
    return ChurnModel(
        params=params,
        learning_rate=settings.tuning.learning_rate,
        max_trees=settings.tuning.max_trees,
        early_stopping_rounds=settings.tuning.early_stopping_rounds,
        calibration=settings.calibration,
        class_weight=settings.class_weight,
        n_folds=settings.cv_folds,
        seed=settings.seed,
        n_jobs=n_jobs,
        calibration_bootstraps=calibration_bootstraps,
        spread_folds=spread_folds,
    )


# --- cross-validation (snapshot data) -------------------------------------------------------------------


def cross_validate(
    X: pd.DataFrame,
    y: pd.Series,
    make_model: Any,
    folds: int = 5,
    repeats: int = 5,
    seed: int = 42,
) -> pd.DataFrame:
    """Repeated stratified k-fold: one row of :func:`~crmscore.evaluation.classification_metrics` per fold.

    ``make_model()`` returns a fresh unfitted estimator with ``fit(X, y)`` and ``predict_proba``.
    """
    splitter = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    rows = []
    y_arr = np.asarray(y).astype(int)
    for fold, (train_idx, test_idx) in enumerate(splitter.split(X, y_arr)):
        model = make_model()
        model.fit(X.iloc[train_idx], y_arr[train_idx])
        p = model.predict_proba(X.iloc[test_idx])[:, 1]
        rows.append({"fold": fold, **classification_metrics(y_arr[test_idx], p)})
    return pd.DataFrame(rows)


def snapshot_cv_folds(
    tables: Mapping[str, pd.DataFrame],
    settings: ChurnSettings,
    features: FeatureSettings | None = None,
    params: dict[str, Any] | None = None,
    snapshot_date: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Repeated stratified k-fold of the churn model on every labelled customer of snapshot data.

    ``churn.cv_repeats`` × ``churn.cv_folds`` fits of ``model_from_settings(settings, params)``, one row of
    metrics per fold (:func:`cross_validate`); :func:`cv_summary` turns them into the reported figure.
    """
    X, y, _ = snapshot_frame(tables, features, snapshot_date)
    return cross_validate(
        X,
        y,
        lambda: model_from_settings(settings, params),
        folds=settings.cv_folds,
        repeats=settings.cv_repeats,
        seed=settings.seed,
    )


def cv_summary(folds: pd.DataFrame, k: int) -> dict[str, float]:
    """Mean ROC AUC, PR AUC and Brier score over the folds of a repeated ``k``-fold, and the AUC's spread.

    ``cv_roc_auc_std`` is the spread of the fold AUCs; ``cv_roc_auc_se`` the standard error of their mean
    with the Nadeau–Bengio correction for overlapping training sets, ``std × sqrt(1 / n + 1 / (k − 1))``:
    the plain ``std / sqrt(n)`` would understate it, since every fold reuses most of the same customers.
    """
    n = len(folds)
    std = float(folds["roc_auc"].std(ddof=1)) if n > 1 else float("nan")
    return {
        "cv_roc_auc": float(folds["roc_auc"].mean()),
        "cv_roc_auc_std": std,
        "cv_roc_auc_se": std * float(np.sqrt(1.0 / n + 1.0 / max(k - 1, 1))) if n > 1 else float("nan"),
        "cv_pr_auc": float(folds["pr_auc"].mean()),
        "cv_brier": float(folds["brier"].mean()),
        "cv_folds": float(n),
    }


class LogisticBaseline(ClassifierMixin, BaseEstimator):
    """The logistic-regression baseline as an estimator on feature DataFrames (see :func:`make_baseline`)."""

    def __init__(self, C: float = 1.0, seed: int = 0) -> None:
        self.C = C
        self.seed = seed

    def fit(self, X: pd.DataFrame, y: Any) -> LogisticBaseline:
        """Fit on the columns of ``X`` that have at least one value."""
        numeric, categorical = feature_columns(X)
        self.numeric_ = [c for c in numeric if X[c].notna().any()]
        self.categorical_ = [c for c in categorical if X[c].notna().any()]
        self.pipeline_ = make_baseline(self.numeric_, self.categorical_, self.seed, self.C)
        prepared = _baseline_input(X, self.categorical_)
        self.pipeline_.fit(prepared, np.asarray(y).astype(int))
        self.classes_ = self.pipeline_.classes_
        # Mean of each model input over the training rows: the reference point of the linear SHAP values.
        self.input_means_ = np.asarray(_dense(self.pipeline_[:-1].transform(prepared)).mean(axis=0)).ravel()
        self.input_owner_ = self._owners()
        return self

    def _owners(self) -> np.ndarray:
        """For each model input (after imputation and one-hot), the feature column it came from."""
        names = self.pipeline_[:-1].get_feature_names_out()
        owners = []
        by_length = sorted(self.categorical_, key=len, reverse=True)
        for name in names:
            block, _, rest = name.partition("__")
            if block == "numeric":
                owners.append(rest.removeprefix("missingindicator_"))
            else:
                owners.append(next(c for c in by_length if rest.startswith(f"{c}_")))
        return np.array(owners, dtype=object)

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """Log-odds of churn.

        Each row's dot product is summed the same way whatever the batch (``einsum`` over the inputs,
        not BLAS, whose kernels treat the last rows of a block differently), so a customer's score does
        not depend on who else is scored with them: scoring in chunks gives bit-identical results.
        """
        check_is_fitted(self, "pipeline_")
        inputs = _dense(self.pipeline_[:-1].transform(_baseline_input(X, self.categorical_)))
        model = self.pipeline_[-1]
        return np.einsum("ij,j->i", inputs.astype(np.float64), model.coef_.ravel()) + model.intercept_[0]

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Probabilities ``[[P(stay), P(churn)], …]``."""
        p = _sigmoid(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def shap_values(self, X: pd.DataFrame, features: list[str]) -> tuple[np.ndarray, float]:
        """Exact SHAP values of the log-odds for a linear model (independent features): per feature,
        the sum over its model inputs of coefficient × (input − training mean); columns ordered as
        ``features`` (features the model does not use get 0). ``base + sum`` equals the log-odds."""
        check_is_fitted(self, "pipeline_")
        inputs = _dense(self.pipeline_[:-1].transform(_baseline_input(X, self.categorical_)))
        coef = self.pipeline_[-1].coef_.ravel()
        parts = (inputs - self.input_means_) * coef
        out = np.zeros((len(X), len(features)))
        position = {f: i for i, f in enumerate(features)}
        for j, owner in enumerate(self.input_owner_):
            out[:, position[owner]] += parts[:, j]
        base = float(self.pipeline_[-1].intercept_[0] + coef @ self.input_means_)
        return out, base


def _dense(matrix: Any) -> np.ndarray:
    return matrix.toarray() if hasattr(matrix, "toarray") else np.asarray(matrix)


def fit_baseline(train: ChurnData, seed: int = 0) -> Any:
    """Fit the logistic baseline on ``train`` (columns with no value at all are left out)."""
    return LogisticBaseline(seed=seed).fit(train.X, train.y.to_numpy().astype(int))


def evaluate(model: Any, data: ChurnData) -> dict[str, float]:
    """Classification metrics of ``model`` (anything with ``predict_proba``) on ``data``."""
    p = model.predict_proba(data.X)[:, 1]
    return classification_metrics(data.y.to_numpy().astype(int), p)
