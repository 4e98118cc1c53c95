"""Batch scoring: every customer's churn risk, CLV, tier, segment, stage, action and reasons, as of a date.

:func:`score` is the whole step; :mod:`crmscore.stages` and the CLI call it. It

1. takes the champion models (:class:`ScoringModels`, loaded from the MLflow registry by the stage),
2. splits the customers known on the as-of date into chunks of ``scoring.chunk_size`` (with a progress
   bar) and, per chunk, builds the point-in-time features from that chunk's rows only, predicts churn
   probability and CLV, explains both models with exact TreeSHAP (top ``scoring.top_reasons`` reasons
   each), and assigns the segment — so memory follows the chunk, not the customer base;
3. then, over all customers, fits the tier scale (scorecard percentiles or pyramid thresholds) and
   assigns tier, risk band, lifecycle stage, value at risk and action, because tiers rank customers
   against each other;
4. writes ``scores.parquet``, ``explanations.parquet``, ``rejects/``, ``tier_migration.csv`` and
   ``manifest.json`` into a temporary folder that is renamed onto ``<out>/as_of=YYYY-MM-DD`` only when
   everything is written: a killed run leaves no partial output, and a rerun replaces the folder whole.

Every per-customer quantity depends only on that customer's rows and the models, and the tier scale on
all customers, so the results are identical for any chunk size.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["customer_chunks", "atomic_dir", "scoring_dir", "previous_scoring"]


def customer_chunks(
    tables: Mapping[str, pd.DataFrame], as_of: pd.Timestamp, chunk_size: int
) -> Iterator[dict[str, pd.DataFrame]]:
    """The tables restricted to consecutive chunks of the customers signed up by ``as_of``.

    Customers are taken in id order; every other table is sorted by customer once, and each chunk gets
    the slice of rows of its customers (all dates: the feature builder itself ignores later rows).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size {chunk_size}: expected a positive integer")
    customers = tables["customers"]
    known = customers.loc[customers["signup_date"] <= as_of].sort_values("customer_id", kind="stable")
    ids = known["customer_id"].to_numpy()
    others: dict[str, tuple[pd.DataFrame, np.ndarray]] = {}
    for name, table in tables.items():
        if name == "customers" or table is None:
            continue
        ordered = table.sort_values("customer_id", kind="stable")
        others[name] = (ordered, ordered["customer_id"].to_numpy())
    for start in range(0, len(ids), chunk_size):
        chunk_ids = ids[start : start + chunk_size]
        lo_id, hi_id = chunk_ids[0], chunk_ids[-1]
        chunk = {"customers": known.iloc[start : start + chunk_size]}
        for name, (ordered, keys) in others.items():
            lo = np.searchsorted(keys, lo_id, side="left")
            hi = np.searchsorted(keys, hi_id, side="right")
            part = ordered.iloc[lo:hi]
            # Ids are contiguous in the sorted customers, but another table may hold ids of customers who
            # signed up after as_of; keep only this chunk's customers.
            chunk[name] = part.loc[part["customer_id"].isin(chunk_ids)] if len(part) else part
        yield chunk


def scoring_dir(out_dir: str | os.PathLike, as_of: pd.Timestamp) -> Path:
    """The folder of one scoring: ``<out>/as_of=YYYY-MM-DD``."""
    return Path(out_dir) / f"as_of={pd.Timestamp(as_of).date()}"


def previous_scoring(out_dir: str | os.PathLike, as_of: pd.Timestamp) -> Path | None:
    """The latest earlier scoring in ``out_dir`` (by as-of date), if any."""
    out = Path(out_dir)
    if not out.is_dir():
        return None
    earlier = []
    for child in out.iterdir():
        if child.is_dir() and child.name.startswith("as_of=") and (child / "scores.parquet").exists():
            with contextlib.suppress(ValueError):
                when = pd.Timestamp(child.name.removeprefix("as_of="))
                if when < pd.Timestamp(as_of):
                    earlier.append((when, child))
    return max(earlier)[1] if earlier else None


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target``; on success it replaces ``target`` whole.

    On an exception (or a kill) the temporary folder is removed (or left as a hidden ``.tmp`` folder
    that the next run ignores) and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.{os.getpid()}.old")
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
