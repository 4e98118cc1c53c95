"""pymc-marketing's BG/NBD on a calibration summary: per-customer 80 % credible intervals of expected purchases.

Run by ``benchmarks/clv_intervals.py`` in an interpreter that has ``pymc-marketing`` (the ``bench-pymc`` extra),
possibly not the project's own: it reads only a CSV and writes only a CSV and one JSON line, and imports
nothing from crmscore.

    python benchmarks/pymc/bgnbd_intervals.py SUMMARY_CSV FUTURE_T OUT_CSV \
        [--level 0.8] [--draws 500] [--chains 2] [--seed 42]

SUMMARY_CSV has columns customer_id, frequency, recency, T (weeks). The model is fitted with NUTS (the
library's default sampler); ``expected_purchases`` over FUTURE_T gives, per customer, the posterior of the
*expected* number of purchases (parameter uncertainty only), whose quantiles are written as ``low``/``high``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("summary")
    parser.add_argument("future_t", type=float)
    parser.add_argument("out")
    parser.add_argument("--level", type=float, default=0.8)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import pymc_marketing
    from pymc_marketing.clv import BetaGeoModel

    data = pd.read_csv(args.summary)
    started = time.perf_counter()
    model = BetaGeoModel(data=data)
    model.fit(
        draws=args.draws,
        tune=args.draws,
        chains=args.chains,
        cores=args.chains,
        random_seed=args.seed,
        progressbar=False,
    )
    fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    expected = model.expected_purchases(data=data, future_t=args.future_t)
    samples = expected.stack(sample=("chain", "draw")).transpose("customer_id", "sample").values
    alpha = 1 - args.level
    out = pd.DataFrame(
        {
            "customer_id": data["customer_id"],
            "mean": samples.mean(axis=1),
            "low": np.quantile(samples, alpha / 2, axis=1),
            "high": np.quantile(samples, 1 - alpha / 2, axis=1),
        }
    )
    predict_seconds = time.perf_counter() - started
    out.to_csv(args.out, index=False)
    posterior = model.idata.posterior
    params = {name: float(posterior[name].mean()) for name in ("r", "alpha", "a", "b") if name in posterior}
    print(
        json.dumps(
            {
                "version": pymc_marketing.__version__,
                "fit_seconds": fit_seconds,
                "predict_seconds": predict_seconds,
                "params": params,
            }
        )
    )


if __name__ == "__main__":
    main()
