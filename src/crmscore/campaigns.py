"""Past retention campaigns: what each held, and whether its treated and control groups can teach uplift.

The ``campaigns`` table of the data contract (:mod:`crmscore.data.schemas`) has one row per customer
contacted — or deliberately held back — by a campaign: the day, the campaign, ``treated`` (offered the
retention action) or not (the control group), the cost, and for targeted rather than randomized campaigns
the known probability of being treated (``propensity``). Loading it never requires both groups; learning
the effect of an action on churn (uplift) does, and :func:`check_campaign_arms` says in one line what a
table lacks for it. :func:`campaign_summary` gives one row per campaign.

Both functions take the validated table (:func:`crmscore.data.load.load_tables`); a customer counts once
per campaign and group, however many rows the campaign has for them.

:func:`campaign_datasets` turns the campaigns whose outcome window has closed into the rows an uplift
model learns from: each participant's point-in-time features on the campaign's first day, whether they
were treated, whether they still buy at the end of the following ``horizon_days`` (retained) and what they
spent, and the probability of treatment (the given propensities of a targeted campaign; a randomized
campaign's one stated propensity, or else its treated share).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import pandas as pd

from crmscore.errors import DataError

__all__ = ["SUMMARY_COLUMNS", "UpliftData", "campaign_datasets", "campaign_summary", "check_campaign_arms"]

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


# --- learning rows -----------------------------------------------------------------------------------


@dataclasses.dataclass
class UpliftData:
    """The rows an uplift model learns from: one per campaign participant (a customer in two campaigns has
    two rows), features ``X`` indexed by customer id, and aligned arrays."""

    X: pd.DataFrame
    treated: np.ndarray  # 1 offered, 0 control group
    retained: np.ndarray  # 1 when the customer still buys at the window's end (its last active_days days)
    spend: np.ndarray  # spend in that window
    propensity: np.ndarray  # P(treated): given (targeted campaigns) or the campaign's treated share
    randomized: np.ndarray  # the row's campaign gave no propensities: treatment was assigned at random
    campaign: np.ndarray
    as_of: np.ndarray  # the campaign's first day, the as-of date of the features
    notes: list[str] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.treated)

    @property
    def customer_id(self) -> np.ndarray:
        return self.X.index.to_numpy()

    def take(self, rows: np.ndarray) -> UpliftData:
        """The rows at positions ``rows``."""
        fields = ("treated", "retained", "spend", "propensity", "randomized", "campaign", "as_of")
        return UpliftData(self.X.iloc[rows], *(getattr(self, f)[rows] for f in fields), notes=list(self.notes))


def campaign_datasets(
    tables: Mapping[str, pd.DataFrame],
    horizon_days: int,
    features,
    min_per_arm: int = 50,
    active_days: int | None = None,
) -> UpliftData:
    """Learning rows of every campaign whose ``horizon_days`` outcome window the data has closed.

    Each campaign is taken on its first day ``D``: its participants' features as of ``D``
    (:func:`crmscore.features.build_features` with the ``features`` settings; rows after ``D`` are never
    read), ``retained`` = still buying at the window's end, a purchase in its last ``active_days`` days
    ``(D + horizon_days − active_days, D + horizon_days]`` (``None``: anywhere in the window), and the spend
    in ``(D, D + horizon_days]``. A customer with
    treated and control rows in one campaign counts as treated; participants not yet signed up on ``D`` are
    left out (counted in ``notes``). A campaign whose window ends after the last transaction, or whose arms
    hold fewer than ``min_per_arm`` customers, is skipped with a note; none left is a one-line
    :class:`DataError`, as is a table without a randomized campaign (held-out comparisons need one). A
    campaign is randomized when it gives no propensity or one for everyone, targeted when they vary.
    """
    from crmscore.features import build_features, stack_frames
    from crmscore.labels import data_end, future_value

    campaigns = tables.get("campaigns")
    check_campaign_arms(campaigns, min_per_arm, pooled=True)
    if "transactions" not in tables:
        raise DataError("campaigns: uplift needs a transactions table: retention is a purchase after the campaign")
    end = data_end(tables)
    summary = campaign_summary(campaigns)
    parts, notes = [], []
    for name, row in summary.iterrows():
        as_of = pd.Timestamp(row["first_date"]).normalize()
        problem = _arm_problem(int(row["treated"]), int(row["controls"]), min_per_arm)
        if as_of + pd.Timedelta(days=horizon_days) > end:
            notes.append(
                f"campaign {name!r} ({as_of.date()}) skipped: its {horizon_days}-day outcome is not observed yet"
            )
            continue
        if problem:
            notes.append(f"campaign {name!r} skipped: {problem[0]}")
            continue
        rows = campaigns.loc[campaigns["campaign"].astype("string") == name]
        arm = rows.groupby("customer_id")["treated"].max().astype(np.int8)
        X = build_features(tables, as_of, features)
        known = arm.index.isin(X.index)
        if not known.all():
            notes.append(
                f"campaign {name!r}: {int((~known).sum()):,} participant(s) not signed up on {as_of.date()} left out"
            )
        arm = arm[known]
        X = X.loc[arm.index]
        outcome = future_value(tables["transactions"], arm.index, as_of, horizon_days)
        tail = min(active_days or horizon_days, horizon_days)
        late = future_value(tables["transactions"], arm.index, as_of + pd.Timedelta(days=horizon_days - tail), tail)
        given = "propensity" in rows.columns and bool(row["propensity_given"])
        # One propensity for everyone is a randomized campaign that states its share; varying ones a targeted one.
        targeted = given and rows["propensity"].nunique() > 1
        if targeted:
            propensity = rows.groupby("customer_id")["propensity"].mean().reindex(arm.index).to_numpy(dtype=float)
        else:
            propensity = np.full(len(arm), float(rows["propensity"].iloc[0]) if given else float(arm.mean()))
        parts.append(
            (
                X,
                arm.to_numpy(),
                (late["future_purchases"].to_numpy() > 0).astype(np.int8),
                outcome["future_spend"].to_numpy(dtype=float),
                propensity,
                np.full(len(arm), not targeted),
                np.full(len(arm), str(name), dtype=object),
                np.full(len(arm), as_of.to_datetime64()),
            )
        )
    if not parts:
        raise DataError("campaigns: no campaign can be learned from (" + "; ".join(notes) + ")")
    randomized = np.concatenate([p[5] for p in parts])
    if not randomized.any():
        raise DataError(
            "campaigns: no randomized campaign (every campaign gives varying propensities: targeted); the "
            "uplift models are compared on held-out customers of a randomized campaign"
        )
    X = stack_frames([p[0] for p in parts])
    arrays = [np.concatenate([p[k] for p in parts]) for k in range(1, 8)]
    return UpliftData(X, *arrays, notes=notes)
