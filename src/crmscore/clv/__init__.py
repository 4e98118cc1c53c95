"""Customer lifetime value: buy-till-you-die models, an ML model on point-in-time features, contractual CLV.

* :mod:`crmscore.clv.btyd` — BG/NBD, Pareto/NBD and Gamma-Gamma fitted by maximum likelihood, and
  :func:`~crmscore.clv.btyd.rfm_summary` that builds their calibration summary;
* :mod:`crmscore.clv.ml` — LightGBM predicting spend in the next horizon from the features of
  :func:`crmscore.features.build_features`, validated on a temporal holdout;
* :mod:`crmscore.clv.contractual` — subscription CLV from monthly revenue and the churn model's retention;
* :mod:`crmscore.clv.value` — the estimators the registry serves (BG/NBD × Gamma-Gamma, contractual), all
  with ``predict`` (expected spend) and ``clv`` (margin and discounting applied) on the feature frame.
"""
