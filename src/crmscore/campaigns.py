"""Past retention campaigns: what each held, and whether its treated and control groups can teach uplift.

The ``campaigns`` table of the data contract (:mod:`crmscore.data.schemas`) has one row per customer
contacted — or deliberately held back — by a campaign: the day, the campaign, ``treated`` (offered the
retention action) or not (the control group), the cost, and for targeted rather than randomized campaigns
the known probability of being treated (``propensity``). Loading it never requires both groups; learning
the effect of an action on churn (uplift) does, and :func:`check_campaign_arms` says in one line what a
table lacks for it. :func:`campaign_summary` gives one row per campaign.

Both functions take the validated table (:func:`crmscore.data.load.load_tables`); a customer counts once
per campaign and group, however many rows the campaign has for them.
"""

from __future__ import annotations

import pandas as pd

from crmscore.errors import DataError

__all__ = ["SUMMARY_COLUMNS", "campaign_summary", "check_campaign_arms"]

#: The columns of :func:`campaign_summary`, indexed by campaign.
SUMMARY_COLUMNS = ["first_date", "last_date", "treated", "controls", "treated_share", "total_cost", "propensity_given"]
_NEEDED = ("customer_id", "date", "campaign", "treated")


def campaign_summary(campaigns: pd.DataFrame) -> pd.DataFrame:
    """One row per campaign, in order of its first date: its first and last contact day, the customers
    treated and in the control group, the treated share of them, the total cost (empty costs count as 0)
    and whether every row gives a propensity (a targeted campaign with known treatment probabilities).

    Args:
        campaigns: the validated campaigns table (``customer_id``, ``date``, ``campaign``, ``treated``,
            ``cost``, optionally ``propensity``).

    Returns:
        DataFrame indexed by ``campaign`` with :data:`SUMMARY_COLUMNS`; no rows for an empty table.
    """
    _require_columns(campaigns)
    frame = pd.DataFrame(
        {
            "campaign": campaigns["campaign"].astype("string").to_numpy(),
            "customer_id": campaigns["customer_id"].to_numpy(),
            "date": pd.to_datetime(campaigns["date"]).astype("datetime64[ns]").to_numpy(),
            "treated": campaigns["treated"].astype("boolean").fillna(False).to_numpy(dtype=bool),
            "cost": pd.to_numeric(campaigns["cost"], errors="coerce").fillna(0.0).to_numpy(dtype=float)
            if "cost" in campaigns.columns
            else 0.0,
            "propensity": campaigns["propensity"].notna().to_numpy(dtype=bool)
            if "propensity" in campaigns.columns
            else False,
        }
    )
    groups = frame.groupby("campaign", sort=False)
    arms = frame.drop_duplicates(["campaign", "customer_id", "treated"]).groupby(["campaign", "treated"]).size()
    arms = arms.unstack("treated").reindex(columns=[False, True]).fillna(0).astype("int64")
    out = pd.DataFrame(
        {
            "first_date": groups["date"].min(),
            "last_date": groups["date"].max(),
            "treated": arms[True],
            "controls": arms[False],
            "total_cost": groups["cost"].sum(),
            "propensity_given": groups["propensity"].all(),
        }
    )
    out["treated_share"] = out["treated"] / (out["treated"] + out["controls"])
    out = out.reset_index().sort_values(["first_date", "campaign"], kind="stable").set_index("campaign")
    return out[SUMMARY_COLUMNS]


def check_campaign_arms(campaigns: pd.DataFrame | None, min_per_arm: int = 50, *, pooled: bool = False) -> None:
    """Raise a one-line :class:`DataError` when the campaigns cannot teach uplift; return None when they can.

    Uplift compares the churn of treated customers with that of comparable customers left alone, so every
    campaign needs both groups, with at least ``min_per_arm`` customers each: no campaigns table or no
    rows, a campaign without a control group (everyone treated), one without treated customers, or one
    with fewer than ``min_per_arm`` treated or controls stops with the first such campaign (in order of
    first date) named, and how many others fail too. With ``pooled`` the campaigns are judged together
    (a model trained on all of them at once): only the totals over every campaign must have both groups.
    """
    if min_per_arm < 1:
        raise ValueError(f"min_per_arm {min_per_arm}: expected a positive integer")
    if campaigns is None:
        raise DataError(
            "campaigns: no campaigns table (campaigns.parquet or campaigns.csv in the input folder, or "
            "data.tables.campaigns.file); uplift needs past campaigns with treated and control customers"
        )
    if not len(campaigns):
        raise DataError(
            "campaigns: the table has no rows (none in the file, or every row rejected: see the rejects); "
            "uplift needs past campaigns with treated and control customers"
        )
    summary = campaign_summary(campaigns)
    if pooled:
        totals = summary[["treated", "controls"]].sum()
        problem = _arm_problem(int(totals["treated"]), int(totals["controls"]), min_per_arm)
        if problem:
            raise DataError(f"campaigns: the {len(summary):,} campaigns together have {problem[0]}; {problem[1]}")
        return
    problems = {
        name: problem
        for name, row in summary.iterrows()
        if (problem := _arm_problem(int(row["treated"]), int(row["controls"]), min_per_arm))
    }
    if problems:
        name, (what, why) = next(iter(problems.items()))
        others = len(problems) - 1
        more = f" ({others:,} other campaign{'s' if others != 1 else ''} too)" if others else ""
        raise DataError(f"campaigns: campaign {name!r} has {what}; {why}{more}")


def _arm_problem(treated: int, controls: int, min_per_arm: int) -> tuple[str, str] | None:
    """What one campaign (or the campaigns pooled) lacks for uplift and why it matters, or None."""
    if not controls:
        return f"no control group (all {treated:,} customers treated)", "uplift needs randomized controls"
    if not treated:
        return f"no treated customers (all {controls:,} in the control group)", "uplift needs treated customers"
    if controls < min_per_arm:
        return f"{_customers(controls)} in the control group, fewer than {min_per_arm:,}", (
            "uplift needs a larger control group"
        )
    if treated < min_per_arm:
        return f"{_customers(treated)} treated, fewer than {min_per_arm:,}", ("uplift needs more treated customers")
    return None


def _customers(n: int) -> str:
    return f"{n:,} customer{'s' if n != 1 else ''}"


def _require_columns(campaigns: pd.DataFrame) -> None:
    missing = [c for c in _NEEDED if c not in campaigns.columns]
    if missing:
        raise DataError(f"campaigns: column '{missing[0]}': required column is missing")
