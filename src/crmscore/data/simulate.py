"""Embedded synthetic CRM data: the contract tables and the truth behind them.

The simulator is the project's default data, so it is built to behave like a real customer base and
to carry a known answer:

* **Acquisition in cohorts.** Customers arrive month by month over the whole history (2–3 years by
  default) with a growth trend, a December peak and occasional campaign months; each is acquired by a
  first purchase on the signup day.
* **Purchases: a BG/NBD-like process with covariates.** While alive a customer buys as a Poisson
  process with a personal weekly rate λᵢ (gamma heterogeneity, higher for VIP and corporate customers),
  scaled by seasonality (December peak, summer dip) and depressed for a few weeks after complaints
  (the "falling purchase frequency" early-warning signal). Each week an alive customer drops out with
  hazard ``hᵢ(w) = sigmoid(bᵢ + β_c·complaints + β_l·late-payment propensity + β_m·month-to-month
  − β_t·log tenure − β_b·product breadth − β_e·engagement)``: dropout rises with recent complaints,
  late payments and month-to-month contracts and falls with tenure, breadth and engagement. Dropped
  customers neither buy nor contact the company again.
* **Spend: Gamma-Gamma.** Each purchase amount is gamma distributed around a personal mean spend that
  itself varies across customers (and by customer type); products come from a personal set of
  categories whose size is the customer's product breadth.
* **Payments.** Purchases are invoiced monthly; invoices are paid on time, late, partly or never
  according to personal propensities; invoices not yet paid when the history ends stay open.
* **Interactions.** Inquiries, complaints and visits by channel (phone, email, chat, web, store,
  field visit) at personal rates.

``truth`` holds, for ``truth_as_of`` and each horizon, what an oracle that knows every customer's
true parameters (but, like any model, not whether the customer is still alive) would predict:
``p_alive`` is the exact posterior probability of being alive given everything observed up to the
as-of date (a forward filter run alongside the simulation), ``p_no_purchase`` the probability of no
purchase in ``(as_of, as_of + horizon_days]``, and ``expected_purchases`` / ``expected_spend`` the
expected number and value of purchases in that window. Future complaints are random; the forward
projection uses their expected path (a mean-field step), which is the only approximation. The hidden
state (``alive``, ``dropout_date``) is included for diagnostics.

Time runs on a weekly grid aligned so that ``truth_as_of`` is the last day of a week; each event gets a
uniformly drawn day within its week. Same arguments and seed give identical tables.

**Drift scenarios (off by default)** give monitoring a world that changes mid-history, with a known
answer:

* a :class:`Shock` multiplies, from its date on, the weekly dropout probability of the customers of one
  region (or of a random share of all customers) by ``hazard_multiplier``, capped at
  ``MAX_SHOCKED_HAZARD`` — a competitor entering a region, say. It takes effect from the first week that
  starts on or after its date, so no event dated before the shock can change. The oracle of ``truth``
  knows the shock like every other true parameter.
* a :class:`Shift` moves the contract mix of customers acquired after its start: their share of
  month-to-month contracts moves linearly from the base share of their customer type (60 % of
  individuals, 30 % of corporate customers) on the start date to ``month_to_month_share`` on
  ``end_date``, the one-year and two-year contracts keeping their base proportions. Month-to-month
  contracts raise dropout (β_m) and late payments, so later cohorts churn more.

A scenario changes its own customers only. The simulation runs the world without the scenario exactly
as it would run alone (the same random numbers in the same order) and runs the scenario's customers
alongside: they share the weekly dropout draws, and while a customer is alive in both worlds its events
are the same; a customer alive only in the scenario (one who survives longer there) takes its events,
their days and details from a random stream of its own, and one that drops out earlier loses the events
after its dropout. So every other customer's rows, and everything dated before the shock, are identical
to a run without it, and ``hidden.dropout_date_without_scenario`` is each customer's dropout in that run.

**Retention campaigns** (none unless given; ``params.yaml`` ships three) give uplift modelling past
offers with a known effect:

* a :class:`Campaign` on ``date`` takes in every customer known (signed up) by then, dropped out or not,
  and offers each (``treated``) or holds it back as a control: a randomized campaign with probability
  ``share``, a targeted one with the propensity ``clip(sigmoid(a + b·logit rᵢ), 0.05, 0.95)`` (about 0.3
  on average), which rises with the customer's risk rᵢ of dropping out within 13 weeks at the week's
  hazard. ``campaigns`` (the contract's table) has one row per participant: ``treated``, ``cost`` (0 for
  controls) and ``propensity`` (the share, or the customer's propensity). Who is offered comes from a
  random stream of its own.
* From the first week starting on or after ``date``, for ``effect_weeks`` weeks, an offer moves a treated
  customer's weekly dropout logit by δᵢ, fixed when it takes effect: ``δᵢ = −s·mᵢ·exp(−(logit rᵢ −
  logit 0.3)²/2)`` helps medium risks most and extreme ones (a lapsed customer's) about nothing, more
  for month-to-month contracts (mᵢ); a customer with a recent complaint (complaint state ≥ 0.2: do not
  disturb) is annoyed instead, δᵢ = +1. A customer already dropped out stays so (δᵢ = 0). The same δ
  acts in both worlds of a drift scenario; it comes from the world without the scenario (its state,
  contract and hazard), so the campaigns table is the same with and without one.
* ``campaign_truth`` has, row for row with ``campaigns``, each participant's δ (given or, for a control,
  the one an offer would have given), ``alive_at_date`` (not dropped out when the offer takes effect) and
  the true effect of an offer on ``(date, date + campaign_horizon_days]`` given the hidden state then,
  projected like ``truth`` with and without δ: ``uplift_retention`` (the change in P(at least one purchase
  in the window)), ``uplift_active`` (in P(a purchase in the window's last ``active_days`` days, to the
  week): still buying at its end, the outcome crmscore's uplift model learns), ``uplift_alive`` (in
  P(alive at its end)) and ``uplift_spend`` (in expected spend); 0 for customers already dropped out.
  ``p_alive`` is the posterior P(alive) from the customer's events before the date and
  ``expected_uplift_active`` = ``p_alive`` × the effect on ``uplift_active`` were the customer alive: the
  best ranking anyone knowing every trait but not the hidden dropout could make (the oracle of the
  uplift benchmarks; it weighs by ``p_alive`` as ``truth`` does).
  ``truth`` has the same four columns for a hypothetical 13-week offer on ``truth_as_of`` (the rule
  applied to the state it projects from), weighted by ``p_alive`` like its other columns. Most customers
  alive at a campaign buy within 90 days anyway, so an offer moves P(alive) by several points, P(a
  purchase in the window) by about one and P(still buying at its end) by two to three.

``hidden`` holds each customer's hidden state (dropout date, whether shocked or shifted) and
:meth:`SimulatedData.outcomes` what actually happened after any as-of date, counted from the
simulator's own records, so monitoring can be checked against it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "ProcessParameters",
    "Campaign",
    "CAMPAIGN_COLUMNS",
    "CAMPAIGN_TRUTH_COLUMNS",
    "check_campaigns",
    "Shock",
    "Shift",
    "Scenario",
    "SimulatedData",
    "simulate_crm",
    "check_scenario",
    "PRODUCT_CATEGORIES",
    "REGIONS",
    "MAX_SHOCKED_HAZARD",
]

PRODUCT_CATEGORIES = (
    "electronics",
    "home",
    "apparel",
    "beauty",
    "grocery",
    "sports",
    "books",
    "toys",
)
_CATEGORY_POPULARITY = np.array([0.16, 0.16, 0.15, 0.11, 0.14, 0.1, 0.09, 0.09])

CUSTOMER_TYPES = ("individual", "vip", "corporate")
REGIONS = ("north", "south", "east", "west", "central")
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
INDUSTRIES = ("retail", "manufacturing", "services", "technology", "public sector", "healthcare")
ACQUISITION_CHANNELS = ("web", "store", "referral", "sales rep", "partner")
CONTRACTS = ("month-to-month", "one-year", "two-year")
CONTACT_CHANNELS = ("phone", "email", "chat", "web", "store", "field visit")
# Contract mix by customer type (corporate, everyone else); month-to-month first.
_CONTRACT_MIX_CORPORATE = np.array([0.3, 0.4, 0.3])
_CONTRACT_MIX_INDIVIDUAL = np.array([0.6, 0.28, 0.12])

# A shocked weekly dropout probability stays below 1, so even a huge multiplier leaves survivors.
MAX_SHOCKED_HAZARD = 0.99
# Weeks the hypothetical offer of ``truth`` (on its as-of date) acts.
TRUTH_OFFER_WEEKS = 13


@dataclasses.dataclass(frozen=True)
class ProcessParameters:
    """The data-generating process; defaults give about 20 purchases per customer over the history.

    Rates are per week and amounts in currency units. Changing these changes the world being
    simulated, not how the project models it, so they live here rather than in ``params.yaml``.
    """

    purchase_rate_shape: float = 0.9  # gamma shape r of λᵢ (purchases / week)
    purchase_rate_mean: float = 0.43  # mean λᵢ of an individual customer
    type_rate_multiplier: tuple[float, float, float] = (1.0, 1.6, 1.9)  # individual, vip, corporate
    season_amplitude: float = 0.22  # purchase rate × (1 + a·cos(2π(doy − 350)/365.25))
    complaint_purchase_damping: float = 0.25  # λ × exp(−d·complaint state)

    dropout_base_logit_mean: float = -4.2  # mean of bᵢ; weekly hazard ≈ 1.5 % for a new customer
    dropout_base_logit_sd: float = 0.9
    dropout_complaint: float = 0.8  # β_c per unit of decayed complaint count
    dropout_late_payment: float = 3.0  # β_l per unit of late-payment propensity (0–1)
    dropout_month_to_month: float = 0.7  # β_m
    dropout_tenure: float = 0.45  # β_t per unit of log(1 + tenure_weeks / 13)
    dropout_breadth: float = 0.18  # β_b per extra product category
    dropout_engagement: float = 0.3  # β_e per unit of log(contact rate / mean contact rate)
    complaint_decay: float = 0.8  # weekly decay of the complaint state

    complaint_rate_mean: float = 0.012  # complaints / week
    complaint_rate_shape: float = 0.6
    contact_rate_mean: float = 0.05  # inquiries + visits / week
    contact_rate_shape: float = 1.5

    spend_p: float = 4.0  # Gamma-Gamma: amount ~ Gamma(p, ν), ν ~ Gamma(q, γ)
    spend_q: float = 4.0
    spend_gamma: float = 15.0  # mean amount of an individual = p·γ / (q − 1) = 20 × 1 … about 60 with types
    type_spend_multiplier: tuple[float, float, float] = (2.4, 4.0, 7.0)

    late_payment_alpha: float = 1.2  # late-payment propensity ~ Beta(α, β)
    late_payment_beta: float = 7.0
    partial_payment_alpha: float = 1.0  # partial-payment propensity ~ Beta(α, β)
    partial_payment_beta: float = 14.0
    payment_terms_days: tuple[int, int, int] = (14, 30, 45)  # by customer type

    # Retention offers: a treated customer's weekly dropout logit moves by δ for the campaign's weeks,
    # δ = −s·m·exp(−(logit r − logit r*)²/2) with r the 13-week dropout risk when the offer arrives.
    offer_effect: float = 3.0  # s
    offer_contract_effect: tuple[float, float, float] = (1.3, 0.7, 0.7)  # m by contract (month-to-month first)
    offer_best_risk: float = 0.3  # r*: the 13-week dropout risk the offer helps most
    offer_risk_weeks: int = 13  # the risk r is that of dropping out within this many weeks
    do_not_disturb_complaint_state: float = 0.2  # from this complaint state on the offer annoys …
    do_not_disturb_shift: float = 1.0  # … and raises the dropout logit by this much instead
    targeting_intercept: float = 0.8  # targeted campaigns offer with clip(sigmoid(a + b·logit r), 0.05, 0.95)
    targeting_slope: float = 1.0


@dataclasses.dataclass(frozen=True)
class Shock:
    """From ``date`` on, the weekly dropout probability of the affected customers × ``hazard_multiplier``.

    Affected are the customers of ``region`` or, instead, a random ``share`` of all customers (each
    acquired at any time; drawn from a random stream of its own). The multiplier applies to the
    probability, not the odds, so that ``hazard_multiplier: 3`` means three times as many dropouts a
    week; the result is capped at ``MAX_SHOCKED_HAZARD`` (a probability already above it is left as is).
    """

    date: dt.date
    hazard_multiplier: float
    region: str | None = None
    share: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.hazard_multiplier, bool) or not self.hazard_multiplier > 0:
            raise ValueError(f"shock.hazard_multiplier must be > 0, got {self.hazard_multiplier!r}")
        if self.region is not None and self.share is not None:
            raise ValueError(f"shock: give region or share, not both (got {self.region!r} and {self.share!r})")
        if self.region is None and self.share is None:
            raise ValueError("shock: give the region it hits or the share of customers it hits")
        if self.region is not None and self.region not in REGIONS:
            raise ValueError(f"shock.region must be one of {', '.join(REGIONS)}, got {self.region!r}")
        if self.share is not None and not 0 < self.share <= 1:
            raise ValueError(f"shock.share must be in (0, 1], got {self.share!r}")


@dataclasses.dataclass(frozen=True)
class Shift:
    """Customers acquired after ``start`` take month-to-month contracts more (or less) often.

    Their month-to-month share moves linearly from their type's base share on ``start`` to
    ``month_to_month_share`` on the last day of the history (see the module docstring).
    """

    start: dt.date
    month_to_month_share: float

    def __post_init__(self) -> None:
        if isinstance(self.month_to_month_share, bool) or not 0 <= self.month_to_month_share <= 1:
            raise ValueError(f"shift.month_to_month_share must be in [0, 1], got {self.month_to_month_share!r}")


@dataclasses.dataclass(frozen=True)
class Scenario:
    """The drift scenario a simulation ran with; both parts ``None`` for the plain simulation."""

    shock: Shock | None = None
    shift: Shift | None = None


def check_scenario(shock: Shock | None, shift: Shift | None, start_date: dt.date, end_date: dt.date) -> None:
    """Raise ``ValueError`` (one line) when the shock or the shift falls outside the history."""
    if shock is not None and not start_date < shock.date <= end_date:
        raise ValueError(
            f"shock.date must lie in (start_date, end_date] = ({start_date}, {end_date}], got {shock.date}"
        )
    if shift is not None and not start_date <= shift.start < end_date:
        raise ValueError(
            f"shift.start must lie in [start_date, end_date) = [{start_date}, {end_date}), got {shift.start}"
        )


@dataclasses.dataclass(frozen=True)
class Campaign:
    """A past retention campaign: on ``date`` every customer known (signed up) by then is offered or held back.

    A randomized campaign offers each of them with probability ``share``; a targeted one (``targeted=True``
    or ``share=None``, which mean the same; ``share`` is then None) with a propensity that rises with the
    customer's dropout risk. Each offer costs ``cost``; it moves the customer's weekly dropout logit by the
    customer's δ for ``effect_weeks`` weeks from the first week starting on or after ``date`` (see the
    module docstring).
    """

    date: dt.date
    name: str
    share: float | None = 0.3
    targeted: bool = False
    cost: float = 5.0
    effect_weeks: int = 13

    def __post_init__(self) -> None:
        if self.share is None or self.targeted:
            object.__setattr__(self, "share", None)
            object.__setattr__(self, "targeted", True)
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"campaign.name must be a non-empty text, got {self.name!r}")
        if self.share is not None and (isinstance(self.share, bool) or not 0 < self.share < 1):
            raise ValueError(f"campaign {self.name!r}: share must be in (0, 1), got {self.share!r}")
        if isinstance(self.cost, bool) or not self.cost >= 0 or not np.isfinite(self.cost):
            raise ValueError(f"campaign {self.name!r}: cost must be a finite number >= 0, got {self.cost!r}")
        if isinstance(self.effect_weeks, bool) or not isinstance(self.effect_weeks, int) or self.effect_weeks <= 0:
            raise ValueError(
                f"campaign {self.name!r}: effect_weeks must be a positive integer, got {self.effect_weeks!r}"
            )


def check_campaigns(campaigns: Sequence[Campaign], start_date: dt.date, end_date: dt.date) -> None:
    """Raise ``ValueError`` (one line) when a campaign falls outside the history or two share a name."""
    names = [c.name for c in campaigns]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"campaign names must be distinct, {repeated[0]!r} is used more than once")
    for c in campaigns:
        if not start_date <= c.date <= end_date:
            raise ValueError(
                f"campaign {c.name!r}: date must lie in [start_date, end_date] = [{start_date}, {end_date}], "
                f"got {c.date}"
            )


#: Columns of :attr:`SimulatedData.campaigns` (the contract's campaigns table) and their types.
CAMPAIGN_COLUMNS = {
    "customer_id": "int64",
    "date": "datetime64[ns]",
    "campaign": "str",
    "treated": "int8",
    "cost": "float64",
    "propensity": "float64",
}
#: Columns of :attr:`SimulatedData.campaign_truth` and their types.
CAMPAIGN_TRUTH_COLUMNS = {
    "customer_id": "int64",
    "campaign": "str",
    "date": "datetime64[ns]",
    "alive_at_date": "bool",
    "delta": "float64",
    "uplift_retention": "float64",
    "uplift_active": "float64",
    "uplift_alive": "float64",
    "uplift_spend": "float64",
    "p_alive": "float64",
    "expected_uplift_active": "float64",
}


@dataclasses.dataclass
class SimulatedData:
    """The contract tables, ``truth`` and the hidden state behind them (see the module docstring).

    ``hidden`` has one row per customer: ``dropout_date`` (the first day of the week in which the customer
    dropped out, from which on it has no events; NaT if alive at the end), ``shocked`` and ``shifted``
    (hit by the scenario's shock; acquired after the shift's start) and ``dropout_date_without_scenario``
    (the dropout in the same run without shock and shift). ``scenario`` is the scenario it ran with.

    ``campaigns`` is the contract's campaigns table (:data:`CAMPAIGN_COLUMNS`; no rows without campaigns)
    and ``campaign_truth`` has, row for row, each participant's true effect of the offer
    (:data:`CAMPAIGN_TRUTH_COLUMNS`, see the module docstring).
    """

    customers: pd.DataFrame
    transactions: pd.DataFrame
    payments: pd.DataFrame
    interactions: pd.DataFrame
    campaigns: pd.DataFrame
    truth: pd.DataFrame
    campaign_truth: pd.DataFrame
    hidden: pd.DataFrame
    scenario: Scenario
    start_date: dt.date
    end_date: dt.date

    def tables(self) -> dict[str, pd.DataFrame]:
        """The contract tables by name (without ``truth``): the four always, ``campaigns`` when it has rows."""
        tables = {
            "customers": self.customers,
            "transactions": self.transactions,
            "payments": self.payments,
            "interactions": self.interactions,
        }
        if len(self.campaigns):
            tables["campaigns"] = self.campaigns
        return tables

    def outcomes(self, as_of: dt.date | str | pd.Timestamp, horizon_days: int) -> pd.DataFrame:
        """What happened to each customer known on ``as_of`` in the ``horizon_days`` days after it.

        One row per customer signed up on or before ``as_of``: ``purchases`` and ``spend`` in
        ``(as_of, as_of + horizon_days]`` counted from ``transactions``, ``no_purchase`` (1 when there was
        none), and from the hidden state ``alive_at_as_of`` and ``dropped_by_end`` (dropped out by the
        window's last day, ``as_of + horizon_days``, whether before or after ``as_of``). The window must lie
        within the history (``ValueError`` otherwise): what happens after it was never simulated.
        """
        if isinstance(horizon_days, bool) or not isinstance(horizon_days, (int, np.integer)) or horizon_days <= 0:
            raise ValueError(f"horizon_days must be a positive integer, got {horizon_days!r}")
        start = pd.Timestamp(as_of).normalize()
        end = start + pd.Timedelta(days=int(horizon_days))
        if not pd.Timestamp(self.start_date) <= start or end > pd.Timestamp(self.end_date):
            raise ValueError(
                f"outcomes need as_of … as_of + horizon_days within the history ({self.start_date} … "
                f"{self.end_date}), got {start.date()} … {end.date()}"
            )
        known = self.customers.loc[self.customers["signup_date"] <= start, "customer_id"]
        tx = self.transactions
        window = tx[(tx["date"] > start) & (tx["date"] <= end)].groupby("customer_id")["amount"]
        purchases = known.map(window.size()).fillna(0).astype(np.int64)
        dropout = known.map(self.hidden.set_index("customer_id")["dropout_date"])
        return pd.DataFrame(
            {
                "customer_id": known.to_numpy(),
                "purchases": purchases.to_numpy(),
                "spend": known.map(window.sum()).fillna(0.0).to_numpy(),
                "no_purchase": (purchases == 0).astype(np.int8).to_numpy(),
                "alive_at_as_of": (dropout.isna() | (dropout > start)).to_numpy(),
                "dropped_by_end": (dropout <= end).to_numpy(),
            }
        )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _choice(rng: np.random.Generator, options: tuple[str, ...], p: Iterable[float], size: int) -> np.ndarray:
    return rng.choice(len(options), size=size, p=np.asarray(list(p), dtype=float))


def _categorical(codes: np.ndarray, options: tuple[str, ...]) -> pd.Categorical:
    return pd.Categorical.from_codes(codes, categories=list(options))


def _contract_codes(u: np.ndarray, mix: np.ndarray, month_to_month_share: np.ndarray | None = None) -> np.ndarray:
    """Contract codes from uniforms ``u``, as ``Generator.choice(p=mix)`` turns its uniforms into codes.

    Where ``month_to_month_share`` is given (not NaN) the mix is moved to that month-to-month share, the
    other contracts keeping their proportions; the same uniform decides, so a shift changes no draw.
    """
    cdf = mix.cumsum()
    cdf /= cdf[-1]
    codes = cdf.searchsorted(u, side="right")
    if month_to_month_share is not None:
        moved = ~np.isnan(month_to_month_share)
        share, v = month_to_month_share[moved], u[moved]
        one_year_below = share + (1.0 - share) * mix[1] / (mix[1] + mix[2])
        codes[moved] = (v >= share).astype(np.int64) + (v >= one_year_below)
    return codes


def _shocked_customers(shock: Shock | None, region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Who the shock hits: the customers of its region, or a random share of all (from ``rng``)."""
    hit = np.zeros(region.size, dtype=bool)
    if shock is None:
        return hit
    if shock.region is not None:
        return region == REGIONS.index(shock.region)
    hit[rng.choice(region.size, size=int(round(shock.share * region.size)), replace=False)] = True
    return hit


def _p_alive_after_week(
    prior: np.ndarray, hazard: np.ndarray, mu_total: np.ndarray, observed: np.ndarray
) -> np.ndarray:
    """Forward filter: an observed event proves the customer alive; a silent week is explained either by
    survival with no events or by a dropout (now or earlier)."""
    silent_alive = prior * (1.0 - hazard) * np.exp(-mu_total)
    silent_dead = (1.0 - prior) + prior * hazard
    return np.where(observed, 1.0, silent_alive / (silent_alive + silent_dead))


def _record(records: list, idx: np.ndarray, week: int, counts: np.ndarray) -> None:
    """Append one week's events (customer index, week, count) of the customers with any."""
    hit = counts > 0
    records.append((idx[hit], np.full(int(hit.sum()), week, dtype=np.int32), counts[hit]))


class _ScenarioCustomers:
    """The customers a scenario changes, simulated alongside the world without the scenario.

    Each week they take that world's dropout uniform ``u`` against their own hazard. While alive in both
    worlds they share its events (their histories, and so complaint states, are the same); alive only here,
    they draw events from ``rng``; dropped out here, they have none. ``records`` keeps the events the world
    without the scenario lacks.
    """

    def __init__(
        self,
        members: np.ndarray,
        ranks: np.ndarray,
        hazard: Callable[[int, np.ndarray, np.ndarray], np.ndarray],
        purchase_rate: Callable[[int, np.ndarray, np.ndarray], np.ndarray],
        complaint_rate: np.ndarray,
        contact_rate: np.ndarray,
        complaint_decay: float,
        rng: np.random.Generator,
    ) -> None:
        by_rank = np.argsort(ranks, kind="stable")  # exposed customers are a prefix of the signup order
        self.members, self.ranks = members[by_rank], ranks[by_rank]
        self.hazard, self.purchase_rate, self.rng = hazard, purchase_rate, rng
        self.complaint_rate, self.contact_rate, self.complaint_decay = complaint_rate, contact_rate, complaint_decay
        self.alive = np.ones(self.members.size, dtype=bool)
        self.dropout_week = np.full(self.members.size, -1, dtype=np.int64)
        self.complaint_state = np.zeros(self.members.size)
        self.p_alive = np.ones(self.members.size)
        self.records: tuple[list, list, list] = ([], [], [])  # purchases, complaints, contacts

    def step(self, week: int, exposed: int, u: np.ndarray, counts: tuple, alive_without: np.ndarray) -> None:
        """One week for the members among the first ``exposed`` customers in signup order.

        ``u``, ``counts`` (purchases, complaints, contacts) and ``alive_without`` (alive after this week's
        dropouts) are the world without the scenario's, indexed by position in signup order.
        """
        m = int(np.searchsorted(self.ranks, exposed))
        if not m:
            return
        idx, pos = self.members[:m], self.ranks[:m]
        state = self.complaint_state[:m]
        h = self.hazard(week, state, idx)
        alive = self.alive[:m]  # a view: updated in place
        drops = alive & (u[pos] < h)
        self.dropout_week[:m][drops] = week
        alive &= ~drops
        shared = alive & alive_without[pos]
        alone = alive & ~alive_without[pos]
        rates = (self.purchase_rate(week, state, idx), self.complaint_rate[idx], self.contact_rate[idx])
        own = []
        for records, rate, without in zip(self.records, rates, counts, strict=True):
            n_events = np.where(shared, without[pos], 0)
            n_events[alone] = self.rng.poisson(rate[alone])
            _record(records, idx[alone], week, n_events[alone])
            own.append(n_events)
        observed = (own[0] + own[1] + own[2]) > 0
        self.p_alive[:m] = _p_alive_after_week(self.p_alive[:m], h, rates[0] + rates[1] + rates[2], observed)
        self.complaint_state[:m] = self.complaint_decay * state + own[1]

    def overlay(self, p_alive: np.ndarray, complaint_state: np.ndarray, alive: np.ndarray) -> None:
        """Write the members' current state over the arrays of the world without the scenario."""
        p_alive[self.members] = self.p_alive
        complaint_state[self.members] = self.complaint_state
        alive[self.members] = self.alive


@dataclasses.dataclass
class _CampaignRun:
    """A campaign while it is simulated: who takes part and, from its first week on, who is offered what."""

    campaign: Campaign
    week: int  # the first week of the effect: the first starting on or after the date
    lead_days: int  # days after the date before that week starts (−1 when it starts on the date)
    participants: np.ndarray  # the customers known on the date
    lead_rate: np.ndarray | None = None  # each one's expected purchases in the lead days
    propensity: np.ndarray | None = None
    treated: np.ndarray | None = None
    delta: np.ndarray | None = None  # the logit shift an offer gives each one (0 once dropped out)
    shift: np.ndarray | None = None  # δ of the treated, 0 for every other customer (indexed by customer)
    alive: np.ndarray | None = None  # alive when the effect starts, in the world simulated
    complaint_state: np.ndarray | None = None  # complaint state then, in the world simulated
    delta_if_alive: np.ndarray | None = None  # the δ an offer would give each one were they alive
    p_alive: np.ndarray | None = None  # the posterior P(alive | events so far) when the effect starts


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-9, 1.0 - 1e-9)
    return np.log(p / (1.0 - p))


def _dropout_risk_logit(pp: ProcessParameters, hazard: np.ndarray) -> np.ndarray:
    """Logit of the risk of dropping out within ``offer_risk_weeks`` weeks at this week's hazard."""
    return _logit(1.0 - (1.0 - hazard) ** pp.offer_risk_weeks)


def _offer_delta(
    pp: ProcessParameters, hazard: np.ndarray, complaint_state: np.ndarray, contract: np.ndarray
) -> np.ndarray:
    """The shift of the weekly dropout logit an offer gives: most for medium risk (about nothing where the
    risk is near 0 or 1), more for month-to-month contracts, and a rise for customers with a recent complaint."""
    z = _dropout_risk_logit(pp, hazard) - _logit(np.float64(pp.offer_best_risk))
    delta = -pp.offer_effect * np.asarray(pp.offer_contract_effect)[contract] * np.exp(-0.5 * z * z)
    return np.where(complaint_state >= pp.do_not_disturb_complaint_state, pp.do_not_disturb_shift, delta)


def _targeting_propensity(pp: ProcessParameters, hazard: np.ndarray) -> np.ndarray:
    """A targeted campaign's probability of offering: rises with the dropout risk, kept in [0.05, 0.95]."""
    score = pp.targeting_intercept + pp.targeting_slope * _dropout_risk_logit(pp, hazard)
    return np.clip(_sigmoid(score), 0.05, 0.95)


def _signup_days(rng: np.random.Generator, n: int, start: dt.date, end: dt.date) -> np.ndarray:
    """Signup day offsets from ``start``: monthly cohorts with growth, a December peak and campaigns."""
    months = pd.period_range(start, end, freq="M")
    k = np.arange(len(months))
    growth = np.exp(0.025 * k)
    december = np.where(months.month == 12, 1.35, 1.0)
    january = np.where(months.month == 1, 1.15, 1.0)
    campaign = np.where(rng.random(len(months)) < 0.12, 1.6, 1.0)
    weights = growth * december * january * campaign
    cohort = rng.choice(len(months), size=n, p=weights / weights.sum())
    first_day = np.array([(m.start_time.date() - start).days for m in months])
    month_days = np.array([m.days_in_month for m in months])
    day = first_day[cohort] + np.floor(rng.random(n) * month_days[cohort]).astype(np.int64)
    return np.clip(day, 0, (end - start).days)


def _typed_frame(parts: list[pd.DataFrame], columns: dict[str, str]) -> pd.DataFrame:
    """The row blocks stacked, with exactly ``columns`` in their types (no rows without blocks)."""
    if not parts:
        return pd.DataFrame({name: pd.Series(dtype=kind) for name, kind in columns.items()})
    frame = pd.concat(parts, ignore_index=True)[list(columns)]
    return frame.astype(columns)


def _stack(parts: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    """Concatenate row blocks given as tuples of columns."""
    return tuple(np.concatenate(columns) for columns in zip(*parts, strict=True))


def _take_or_draw(
    known_keys: np.ndarray, known: dict[str, np.ndarray], keys: np.ndarray, draw: Callable[[np.ndarray], dict]
) -> dict[str, np.ndarray]:
    """Per-row random numbers for ``keys``: those of ``known_keys`` (sorted) where the key is there,
    ``draw(missing rows)`` for the rest."""
    at = np.minimum(np.searchsorted(known_keys, keys), max(known_keys.size - 1, 0))
    found = known_keys[at] == keys if known_keys.size else np.zeros(keys.size, dtype=bool)
    fresh = draw(np.flatnonzero(~found))
    out = {}
    for name, values in known.items():
        column = np.empty(keys.size, dtype=values.dtype)
        column[found] = values[at[found]]
        column[~found] = fresh[name]
        out[name] = column
    return out


def simulate_crm(
    customers: int,
    seed: int = 42,
    start_date: dt.date = dt.date(2023, 11, 1),
    end_date: dt.date = dt.date(2026, 10, 31),
    truth_as_of: dt.date = dt.date(2026, 7, 31),
    horizons_days: Iterable[int] = (90, 365),
    process: ProcessParameters | None = None,
    shock: Shock | None = None,
    shift: Shift | None = None,
    campaigns: Sequence[Campaign] = (),
    campaign_horizon_days: int = 90,
    active_days: int = 30,
) -> SimulatedData:
    """Simulate a customer base and return its contract tables, the truth and the hidden state.

    Args:
        customers: number of customers acquired between ``start_date`` and ``end_date``.
        seed: random seed; the same arguments give identical tables.
        start_date, end_date: first and last day of the history (inclusive).
        truth_as_of: as-of date of ``truth`` (must lie in the history).
        horizons_days: horizons of ``truth``, in days (one block of rows per horizon).
        process: parameters of the data-generating process (defaults: :class:`ProcessParameters`).
        shock, shift: an optional drift scenario (see the module docstring); without them the tables
            are those of the plain simulation.
        campaigns: past retention campaigns (see the module docstring); without them the tables are
            those of a simulation without campaigns.
        campaign_horizon_days: horizon of the true effects in ``campaign_truth``, in days.
        active_days: ``uplift_active`` is the effect on a purchase in the last this many days of a window.

    Returns:
        :class:`SimulatedData` with ``customers``, ``transactions``, ``payments``, ``interactions``,
        ``campaigns``, ``truth``, ``campaign_truth``, ``hidden`` and ``scenario``.
    """
    if customers <= 0:
        raise ValueError(f"customers must be positive, got {customers}")
    if not start_date < truth_as_of <= end_date:
        raise ValueError("expected start_date < truth_as_of <= end_date")
    for name, days in (("campaign_horizon_days", campaign_horizon_days), ("active_days", active_days)):
        if isinstance(days, bool) or not isinstance(days, (int, np.integer)) or days <= 0:
            raise ValueError(f"{name} must be a positive integer, got {days!r}")
    check_scenario(shock, shift, start_date, end_date)
    campaigns = sorted(campaigns, key=lambda c: c.date)
    check_campaigns(campaigns, start_date, end_date)
    pp = process or ProcessParameters()
    rng = np.random.default_rng(seed)
    # The scenario's own random streams leave `rng` alone: who is shocked, and the event counts, the event
    # details and the invoices that only the scenario has (each drawn week by week or month by month, so a
    # later shock never changes an earlier draw). The campaigns draw who is offered from a stream of their own.
    select_rng, event_rng, detail_rng, invoice_rng, campaign_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)
    )
    n = int(customers)
    history_days = (end_date - start_date).days + 1

    # --- customers and their latent traits -------------------------------------------------------
    signup = _signup_days(rng, n, start_date, end_date)  # day offsets from start_date
    ctype = _choice(rng, CUSTOMER_TYPES, (0.78, 0.05, 0.17), n)
    corporate = ctype == 2
    region = _choice(rng, REGIONS, (0.22, 0.2, 0.25, 0.18, 0.15), n)
    age_band = _choice(rng, AGE_BANDS, (0.12, 0.24, 0.22, 0.18, 0.14, 0.1), n)
    industry = _choice(rng, INDUSTRIES, (0.22, 0.2, 0.24, 0.14, 0.08, 0.12), n)
    channel = np.where(
        corporate,
        _choice(rng, ACQUISITION_CHANNELS, (0.15, 0.05, 0.15, 0.5, 0.15), n),
        _choice(rng, ACQUISITION_CHANNELS, (0.45, 0.3, 0.15, 0.02, 0.08), n),
    )
    contract_u = (rng.random(n), rng.random(n))  # corporate, individual mix: the uniforms choice() would draw
    mixes = (_CONTRACT_MIX_CORPORATE, _CONTRACT_MIX_INDIVIDUAL)
    contract = np.where(corporate, *(_contract_codes(u, mix) for u, mix in zip(contract_u, mixes, strict=True)))
    shifted = np.zeros(n, dtype=bool)
    scenario_contract = contract
    if shift is not None:
        shift_day = (shift.start - start_date).days
        shifted = signup > shift_day
        progress = (signup - shift_day) / (end_date - shift.start).days  # 0 on shift.start, 1 on end_date
        moved = [
            _contract_codes(
                u, mix, np.where(shifted, mix[0] + (shift.month_to_month_share - mix[0]) * progress, np.nan)
            )
            for u, mix in zip(contract_u, mixes, strict=True)
        ]
        scenario_contract = np.where(corporate, *moved)

    type_rate = np.asarray(pp.type_rate_multiplier)[ctype]
    lam = rng.gamma(pp.purchase_rate_shape, pp.purchase_rate_mean / pp.purchase_rate_shape, n) * type_rate
    lam *= np.where(channel == 2, 1.15, 1.0)  # referred customers buy a little more often
    complaint_rate = rng.gamma(pp.complaint_rate_shape, pp.complaint_rate_mean / pp.complaint_rate_shape, n)
    contact_rate = rng.gamma(pp.contact_rate_shape, pp.contact_rate_mean / pp.contact_rate_shape, n)
    contact_rate *= np.where(corporate, 1.8, 1.0)
    late_draw = rng.beta(pp.late_payment_alpha, pp.late_payment_beta, n)
    partial_prop = rng.beta(pp.partial_payment_alpha, pp.partial_payment_beta, n)
    breadth = 1 + rng.binomial(4, 0.35, n) + corporate.astype(np.int64)  # 1..6 categories
    breadth = np.minimum(breadth, len(PRODUCT_CATEGORIES))
    nu = rng.gamma(pp.spend_q, 1.0 / pp.spend_gamma, n)  # Gamma-Gamma scale heterogeneity
    spend_scale = np.asarray(pp.type_spend_multiplier)[ctype] / pp.type_spend_multiplier[0]
    mean_spend = pp.spend_p / nu * spend_scale  # E[amount | customer]

    engagement = np.log(contact_rate / pp.contact_rate_mean)
    logit_noise = rng.normal(pp.dropout_base_logit_mean, pp.dropout_base_logit_sd, n)

    def late_propensity(month_to_month: np.ndarray) -> np.ndarray:
        return np.where(month_to_month, np.minimum(late_draw * 1.3, 0.95), late_draw)

    def dropout_logit(month_to_month: np.ndarray) -> np.ndarray:
        return (
            logit_noise
            + pp.dropout_late_payment
            * (late_propensity(month_to_month) - pp.late_payment_alpha / (pp.late_payment_alpha + pp.late_payment_beta))
            + pp.dropout_month_to_month * month_to_month
            - pp.dropout_breadth * (breadth - 1)
            - pp.dropout_engagement * engagement
            - np.where(ctype == 1, 0.4, 0.0)  # VIP programmes retain
        )

    base_logit = dropout_logit(contract == 0)
    late_prop = late_propensity(scenario_contract == 0)
    scenario_logit = base_logit if shift is None else dropout_logit(scenario_contract == 0)
    shocked = _shocked_customers(shock, region, select_rng)

    # --- weekly grid aligned on truth_as_of --------------------------------------------------------
    as_of_offset = (truth_as_of - start_date).days  # day offset of the as-of date
    first_week_day = as_of_offset + 1 - 7 * int(np.ceil((as_of_offset + 1) / 7))  # ≤ 0
    n_weeks = int(np.ceil((history_days - first_week_day) / 7))
    as_of_week = (as_of_offset + 1 - first_week_day) // 7 - 1  # last full week ≤ as-of
    signup_week = (signup - first_week_day) // 7
    start_doy = start_date.timetuple().tm_yday

    def first_week_from(day: int) -> int:
        """The first week that starts on day offset ``day`` or later."""
        return -((first_week_day - day) // 7)

    # The shock acts from the first week that starts on or after its date: nothing earlier can change.
    shock_week = first_week_from((shock.date - start_date).days) if shock is not None else 0

    def season(week: int | np.ndarray) -> np.ndarray:
        mid_doy = start_doy + first_week_day + 7 * np.asarray(week) + 3
        return 1.0 + pp.season_amplitude * np.cos(2 * np.pi * (mid_doy - 350) / 365.25)

    def weekly_hazard(
        week: int,
        state: np.ndarray,
        idx: np.ndarray,
        logit: np.ndarray = base_logit,
        shift: np.ndarray | None = None,
    ) -> np.ndarray:
        """The weekly dropout probability; ``shift`` (the offers' δ) is added to the logit."""
        tenure_weeks = week - signup_week[idx]
        logit = (
            logit[idx] + pp.dropout_complaint * state - pp.dropout_tenure * np.log1p(np.maximum(tenure_weeks, 0) / 13.0)
        )
        if shift is not None:
            logit = logit + shift
        return _sigmoid(logit)

    def scenario_hazard(week: int, state: np.ndarray, idx: np.ndarray, shift: np.ndarray | None = None) -> np.ndarray:
        """The hazard of the world simulated: the scenario's logits (+ ``shift``), × the shock from its week on."""
        h = weekly_hazard(week, state, idx, scenario_logit, shift)
        if shock is not None and week >= shock_week:
            h = np.where(shocked[idx], np.minimum(h * shock.hazard_multiplier, np.maximum(h, MAX_SHOCKED_HAZARD)), h)
        return h

    def campaign_run(campaign: Campaign) -> _CampaignRun:
        """The campaign on the weekly grid, with the customers known on its date."""
        day = (campaign.date - start_date).days
        week = first_week_from(day)
        return _CampaignRun(
            campaign=campaign,
            week=week,
            lead_days=first_week_day + 7 * week - day - 1,
            participants=np.flatnonzero(signup <= day),
        )

    runs = [campaign_run(c) for c in campaigns]

    def campaign_shift(week: int, idx: np.ndarray, skip: _CampaignRun | None = None) -> np.ndarray | None:
        """The logit shift of the offers in effect this week (None when there are none), but ``skip``'s."""
        total = None
        for run in runs:
            if run is not skip and run.shift is not None and run.week <= week < run.week + run.campaign.effect_weeks:
                total = run.shift[idx] if total is None else total + run.shift[idx]
        return total

    def world_hazard(
        week: int,
        state: np.ndarray,
        idx: np.ndarray,
        extra: np.ndarray | None = None,
        skip: _CampaignRun | None = None,
    ) -> np.ndarray:
        """The hazard of the world simulated, with the offers in effect (but ``skip``'s) and ``extra``: the
        scenario's customers step with it and the truth projects with it."""
        shift = campaign_shift(week, idx, skip)
        if extra is not None:
            shift = extra if shift is None else shift + extra
        return scenario_hazard(week, state, idx, shift)

    def purchase_rate(week: int, state: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return lam[idx] * season(week) * np.exp(-pp.complaint_purchase_damping * state)

    alive = np.ones(n, dtype=bool)
    dropout_week = np.full(n, -1, dtype=np.int64)
    complaint_state = np.zeros(n)
    p_alive = np.ones(n)  # oracle's posterior P(alive | observations), valid once signed up
    p_alive_at_as_of = None
    state_at_as_of = None

    purchase_records: list[tuple[np.ndarray, np.ndarray]] = []  # (customer index, count) per week
    complaint_records: list[tuple[np.ndarray, np.ndarray]] = []
    contact_records: list[tuple[np.ndarray, np.ndarray]] = []
    order = np.argsort(signup_week, kind="stable")
    sorted_signup_week = signup_week[order]
    members = np.flatnonzero(shocked | ((scenario_contract == 0) != (contract == 0)))
    scenario = None
    if members.size:
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        scenario = _ScenarioCustomers(
            members,
            rank[members],
            world_hazard,
            purchase_rate,
            complaint_rate,
            contact_rate,
            pp.complaint_decay,
            event_rng,
        )

    def world_state() -> tuple[np.ndarray, np.ndarray]:
        """Every customer's complaint state and alive flag in the world simulated (the scenario's where it has them)."""
        state, now_alive = complaint_state.copy(), alive.copy()
        if scenario is not None:
            scenario.overlay(np.empty(n), state, now_alive)
        return state, now_alive

    def campaign_week(week: int) -> None:
        """At the start of ``week``: the lead days' purchase rates of the campaigns dated in it, and the offers of
        those whose effect starts now. δ and the targeting come from the world without the scenario (one δ
        per customer serves both worlds); the state kept for their truth is the world simulated's."""
        for run in runs:
            idx = run.participants
            if run.lead_days > 0 and week == run.week - 1:
                state, _ = world_state()
                run.lead_rate = run.lead_days / 7.0 * purchase_rate(week, state[idx], idx) * (signup_week[idx] < week)
            if week != run.week:
                continue
            h = weekly_hazard(week, complaint_state[idx], idx)
            run.delta_if_alive = _offer_delta(pp, h, complaint_state[idx], contract[idx])
            run.delta = np.where(alive[idx], run.delta_if_alive, 0.0)
            run.p_alive = p_alive[idx].copy()
            share = run.campaign.share
            run.propensity = np.full(idx.size, share) if share is not None else _targeting_propensity(pp, h)
            run.treated = campaign_rng.random(idx.size) < run.propensity
            run.shift = np.zeros(n)
            run.shift[idx[run.treated]] = run.delta[run.treated]
            state, now_alive = world_state()
            run.complaint_state, run.alive = state[idx], now_alive[idx]

    for week in range(n_weeks):
        campaign_week(week)
        # Customers whose first purchase was in an earlier week are exposed this week.
        exposed = order[: np.searchsorted(sorted_signup_week, week, side="left")]
        if exposed.size:
            h = weekly_hazard(week, complaint_state[exposed], exposed, shift=campaign_shift(week, exposed))
            # Dropout at the start of the week, for those still alive.
            was_alive = alive[exposed]
            u = rng.random(exposed.size)
            drops = was_alive & (u < h)
            dropout_week[exposed[drops]] = week
            alive[exposed[drops]] = False
            active = exposed[alive[exposed]]

            lam_eff = purchase_rate(week, complaint_state[exposed], exposed)
            mu_total = lam_eff + complaint_rate[exposed] + contact_rate[exposed]

            # Events of alive customers.
            pos = alive[exposed]
            n_purchase = np.zeros(exposed.size, dtype=np.int64)
            n_complaint = np.zeros(exposed.size, dtype=np.int64)
            n_contact = np.zeros(exposed.size, dtype=np.int64)
            n_purchase[pos] = rng.poisson(lam_eff[pos])
            n_complaint[pos] = rng.poisson(complaint_rate[active])
            n_contact[pos] = rng.poisson(contact_rate[active])
            for records, counts in (
                (purchase_records, n_purchase),
                (complaint_records, n_complaint),
                (contact_records, n_contact),
            ):
                _record(records, exposed, week, counts)

            observed = (n_purchase + n_complaint + n_contact) > 0
            p_alive[exposed] = _p_alive_after_week(p_alive[exposed], h, mu_total, observed)

            complaint_state[exposed] = pp.complaint_decay * complaint_state[exposed] + n_complaint
            if scenario is not None:
                scenario.step(week, exposed.size, u, (n_purchase, n_complaint, n_contact), pos)
        if week == as_of_week:
            p_alive_at_as_of = p_alive.copy()
            state_at_as_of = complaint_state.copy()
            alive_at_as_of = alive.copy()
            if scenario is not None:
                scenario.overlay(p_alive_at_as_of, state_at_as_of, alive_at_as_of)

    for week in sorted({run.week for run in runs if run.week >= n_weeks}):
        campaign_week(week)  # a campaign in the history's last days takes effect after it

    assert p_alive_at_as_of is not None and state_at_as_of is not None
    dropout_week_without = dropout_week
    if scenario is not None:
        dropout_week = dropout_week.copy()
        dropout_week[scenario.members] = scenario.dropout_week
    # First day of the dropout week (the customer has no events from it on), −1 for no dropout.
    drop_day = np.where(dropout_week >= 0, first_week_day + 7 * dropout_week, -1)
    start = np.datetime64(start_date, "D")

    def dates(day: np.ndarray) -> pd.Series:
        """Day offsets as datetime64[ns]; −1 (no dropout) as NaT."""
        return pd.Series((start + np.maximum(day, 0).astype("timedelta64[D]")).astype("datetime64[ns]")).where(day >= 0)

    def before_dropout(idx: np.ndarray, day: np.ndarray) -> np.ndarray:
        """Rows of the world without the scenario that the scenario keeps: those before its dropout."""
        return (drop_day[idx] < 0) | (day < drop_day[idx])

    # --- expand event records to dated rows ---------------------------------------------------------
    def expand(
        generator: np.random.Generator, records: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    ) -> tuple[np.ndarray, np.ndarray]:
        idx = np.concatenate([r[0] for r in records]) if records else np.empty(0, np.int64)
        wk = np.concatenate([r[1] for r in records]) if records else np.empty(0, np.int32)
        cnt = np.concatenate([r[2] for r in records]) if records else np.empty(0, np.int64)
        idx = np.repeat(idx, cnt)
        day = first_week_day + 7 * np.repeat(wk, cnt).astype(np.int64) + generator.integers(0, 7, idx.size)
        keep = day <= history_days - 1
        return idx[keep], day[keep]

    p_idx, p_day = expand(rng, purchase_records)
    del purchase_records
    # First purchase on the signup day acquires the customer.
    p_idx = np.concatenate([np.arange(n), p_idx])
    p_day = np.concatenate([signup, p_day])

    # Products from each customer's own set of categories (its size is the product breadth).
    scores = rng.random((n, len(PRODUCT_CATEGORIES))) ** (1.0 / _CATEGORY_POPULARITY)  # weighted sampling
    ranks = np.argsort(-scores, axis=1)
    in_set = np.zeros((n, len(PRODUCT_CATEGORIES)), dtype=bool)
    np.put_along_axis(in_set, ranks, np.arange(len(PRODUCT_CATEGORIES))[None, :] < breadth[:, None], axis=1)
    pref = rng.dirichlet(np.ones(len(PRODUCT_CATEGORIES)), n) * in_set
    cum = np.cumsum(pref / pref.sum(axis=1, keepdims=True), axis=1).astype(np.float32)

    def purchase_rows(generator: np.random.Generator, idx: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, ...]:
        """Customer, day, amount, product and quantity of purchases, sorted by customer and day."""
        u = generator.random(idx.size, dtype=np.float32)
        product = np.zeros(idx.size, dtype=np.int8)
        for j in range(len(PRODUCT_CATEGORIES) - 1):
            product += u > cum[idx, j]
        amount = np.round(generator.gamma(pp.spend_p, 1.0, idx.size) / nu[idx] * spend_scale[idx], 2)
        amount = np.maximum(amount, 0.01)
        quantity = 1 + generator.poisson(np.where(corporate[idx], 3.0, 0.4))
        rows = (idx, day, amount, product, quantity)
        return tuple(a[np.lexsort((day, idx))] for a in rows)

    def interaction_rows(generator: np.random.Generator, complaints: list, contacts: list) -> tuple[np.ndarray, ...]:
        """Customer, day, kind and channel of complaints and contacts (inquiries and visits)."""
        c_idx, c_day = expand(generator, complaints)
        o_idx, o_day = expand(generator, contacts)
        is_visit = generator.random(o_idx.size) < np.where(corporate[o_idx], 0.45, 0.2)
        kind = np.concatenate([np.full(c_idx.size, 1, np.int8), np.where(is_visit, 2, 0).astype(np.int8)])
        i_idx = np.concatenate([c_idx, o_idx])
        i_day = np.concatenate([c_day, o_day])
        online = channel[i_idx] == 0
        remote = np.where(
            online,
            _choice(generator, CONTACT_CHANNELS[:4], (0.2, 0.3, 0.35, 0.15), i_idx.size),
            _choice(generator, CONTACT_CHANNELS[:4], (0.5, 0.3, 0.12, 0.08), i_idx.size),
        )
        visit_channel = np.where(corporate[i_idx], 5, 4)
        contact_channel = np.where(kind == 2, visit_channel, remote).astype(np.int8)
        return i_idx, i_day, kind, contact_channel

    purchases = purchase_rows(rng, p_idx, p_day)
    purchases_without = purchases
    if scenario is not None:  # the scenario's own rows, week by week
        own_weeks = [
            (
                purchase_rows(detail_rng, *expand(detail_rng, [bought])),
                interaction_rows(detail_rng, [complained], [contacted]),
            )
            for bought, complained, contacted in zip(*scenario.records, strict=True)
        ]
        own_purchases = _stack([purchase_rows(detail_rng, *expand(detail_rng, [])), *(w[0] for w in own_weeks)])
        own_contacts = _stack([interaction_rows(detail_rng, [], []), *(w[1] for w in own_weeks)])
        keep = before_dropout(purchases[0], purchases[1])
        merged = _stack([tuple(a[keep] for a in purchases), own_purchases])
        purchases = tuple(a[np.lexsort((merged[1], merged[0]))] for a in merged)
    p_idx, p_day, amount, product, quantity = purchases
    transactions = pd.DataFrame(
        {
            "customer_id": (p_idx + 1).astype(np.int64),
            "date": (start + p_day.astype("timedelta64[D]")).astype("datetime64[ns]"),
            "amount": amount,
            "product": _categorical(product, PRODUCT_CATEGORIES),
            "quantity": quantity.astype(np.int32),
        }
    )

    # --- interactions ---------------------------------------------------------------------------------
    contacts = interaction_rows(rng, complaint_records, contact_records)
    del complaint_records, contact_records
    if scenario is not None:
        keep = before_dropout(contacts[0], contacts[1])
        contacts = _stack([tuple(a[keep] for a in contacts), own_contacts])
    i_idx, i_day, kind, contact_channel = contacts
    i_order = np.lexsort((kind, i_day, i_idx))
    interactions = pd.DataFrame(
        {
            "customer_id": (i_idx[i_order] + 1).astype(np.int64),
            "date": (start + i_day[i_order].astype("timedelta64[D]")).astype("datetime64[ns]"),
            "channel": _categorical(contact_channel[i_order], CONTACT_CHANNELS),
            "kind": _categorical(kind[i_order], ("inquiry", "complaint", "visit")),
        }
    )

    # --- payments: one invoice per customer and month with purchases ----------------------------------
    end = np.datetime64(end_date, "D")

    def invoices(idx: np.ndarray, day: np.ndarray, amount: np.ndarray) -> tuple[np.ndarray, ...]:
        """Customer, key (customer and month), invoice date and amount due of the invoices issued by
        ``end_date``, from purchases sorted by customer and day."""
        tx_month = (start + day.astype("timedelta64[D]")).astype("datetime64[M]").astype(np.int64)
        key = idx.astype(np.int64) * 1_000_000 + tx_month
        first = np.concatenate([[0], np.flatnonzero(np.diff(key)) + 1])
        amount_due = np.round(np.add.reduceat(amount, first), 2)
        invoice_date = (tx_month[first] + 1).astype("datetime64[M]").astype("datetime64[D]")
        issued = invoice_date <= end
        return idx[first][issued], key[first][issued], invoice_date[issued], amount_due[issued]

    payment_terms = np.asarray(pp.payment_terms_days)

    def invoice_draws(generator: np.random.Generator, idx: np.ndarray) -> dict[str, np.ndarray]:
        """The random numbers of each invoice: lateness, days late or early, never paid, partly paid."""
        m = idx.size
        return {
            "late": generator.random(m),
            "days_late": np.ceil(generator.gamma(1.5, 12.0, m)).astype(np.int64),
            "days_early": generator.integers(0, np.maximum(payment_terms[ctype[idx]], 1)),
            "never": generator.random(m),
            "partial": generator.random(m),
            "paid_share": generator.uniform(0.3, 0.95, m),
        }

    def own_invoice_draws(rows: np.ndarray) -> dict[str, np.ndarray]:
        """``invoice_draws`` of the invoices only the scenario has, month by month."""
        month = inv_key[rows] % 1_000_000
        by_month = np.argsort(month, kind="stable")
        groups = np.split(rows[by_month], np.flatnonzero(np.diff(month[by_month])) + 1)
        parts = [invoice_draws(invoice_rng, inv_idx[group]) for group in groups]
        back = np.argsort(by_month)
        return {name: np.concatenate([part[name] for part in parts])[back] for name in parts[0]}

    inv_idx, inv_key, invoice_date, amount_due = invoices(*purchases_without[:3])
    draws = invoice_draws(rng, inv_idx)
    if scenario is not None:  # invoices the world without the scenario has keep their draws
        known_key = inv_key
        inv_idx, inv_key, invoice_date, amount_due = invoices(p_idx, p_day, amount)
        draws = _take_or_draw(known_key, draws, inv_key, own_invoice_draws)
    terms = payment_terms[ctype[inv_idx]]
    due = invoice_date + terms.astype("timedelta64[D]")
    late = draws["late"] < late_prop[inv_idx]
    paid = np.where(
        late, due + draws["days_late"].astype("timedelta64[D]"), due - draws["days_early"].astype("timedelta64[D]")
    )
    never = draws["never"] < 0.15 * late_prop[inv_idx]
    partial = draws["partial"] < partial_prop[inv_idx]
    amount_paid = np.where(partial, np.round(amount_due * draws["paid_share"], 2), amount_due)
    open_invoice = never | (paid > end)
    amount_paid = np.where(open_invoice, 0.0, amount_paid)
    payments = pd.DataFrame(
        {
            "customer_id": (inv_idx + 1).astype(np.int64),
            "invoice_date": invoice_date.astype("datetime64[ns]"),
            "due_date": due.astype("datetime64[ns]"),
            "amount_due": amount_due,
            "paid_date": pd.Series(paid.astype("datetime64[ns]")).where(~open_invoice),
            "amount_paid": amount_paid,
        }
    )

    customers_df = pd.DataFrame(
        {
            "customer_id": np.arange(1, n + 1, dtype=np.int64),
            "signup_date": (start + signup.astype("timedelta64[D]")).astype("datetime64[ns]"),
            "customer_type": _categorical(ctype, CUSTOMER_TYPES),
            "region": _categorical(region, REGIONS),
            "age_band": pd.Categorical.from_codes(np.where(corporate, -1, age_band), categories=list(AGE_BANDS)),
            "industry": pd.Categorical.from_codes(np.where(corporate, industry, -1), categories=list(INDUSTRIES)),
            "acquisition_channel": _categorical(channel, ACQUISITION_CHANNELS),
            "contract": _categorical(scenario_contract, CONTRACTS),
        }
    )

    # --- truth at the as-of date -----------------------------------------------------------------------
    def project(
        idx: np.ndarray,
        state: np.ndarray,
        first_week: int,
        days: int,
        shift: np.ndarray | None = None,
        shift_weeks: int = 0,
        skip: _CampaignRun | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """For customers alive at the start of ``first_week`` with complaint state ``state``: the probability
        of being alive after ``days`` days, of no purchase in them, the expected purchases, and the
        probability of no purchase in their last ``active_days`` days (to the week), the hazard shifted by
        ``shift`` in the first ``shift_weeks`` weeks (the offers in effect count, but ``skip``'s). Future
        complaints come at their expected rate (a mean-field step)."""
        full_weeks, rest_days = divmod(days, 7)
        fractions = [1.0] * full_weeks + ([rest_days / 7.0] if rest_days else [])
        tail_start = max(0, int(round((days - min(active_days, days)) / 7.0)))
        state = state.copy()
        alive_path = np.ones(idx.size)  # P(alive at week j | alive at the start)
        silent = np.ones(idx.size)  # P(alive and no purchase so far | alive at the start)
        died_silent = np.zeros(idx.size)  # P(dropped out before any purchase)
        expected_purchases = np.zeros(idx.size)
        tail_alive = tail_silent = tail_died = None  # the same from the start of the last active_days
        for j, frac in enumerate(fractions):
            week = first_week + j
            if j == tail_start:
                tail_alive, tail_silent, tail_died = alive_path.copy(), np.ones(idx.size), np.zeros(idx.size)
            h = 1.0 - (1.0 - world_hazard(week, state, idx, shift if j < shift_weeks else None, skip)) ** frac
            rate = frac * lam[idx] * season(week) * np.exp(-pp.complaint_purchase_damping * state)
            died_silent += silent * h
            silent *= (1.0 - h) * np.exp(-rate)
            if tail_silent is not None:
                tail_died += tail_silent * h
                tail_silent *= (1.0 - h) * np.exp(-rate)
            alive_path *= 1.0 - h
            expected_purchases += alive_path * rate
            state = pp.complaint_decay * state + frac * complaint_rate[idx]
        if tail_alive is None:
            tail_alive, tail_silent, tail_died = alive_path.copy(), np.ones(idx.size), np.zeros(idx.size)
        no_purchase_tail = (1.0 - tail_alive) + tail_alive * (tail_silent + tail_died)
        return alive_path, silent + died_silent, expected_purchases, no_purchase_tail

    known = np.flatnonzero(signup <= as_of_offset)
    # A hypothetical offer on the as-of date, δ from the state the truth projects from.
    offer_week = as_of_week + 1
    offer_delta = _offer_delta(
        pp, scenario_hazard(offer_week, state_at_as_of[known], known), state_at_as_of[known], scenario_contract[known]
    )
    truth_blocks = []
    for horizon in sorted(set(int(h) for h in horizons_days)):
        alive_end, no_purchase, expected_purchases, idle_end = project(
            known, state_at_as_of[known], offer_week, horizon
        )
        offer_alive_end, offer_no_purchase, offer_purchases, offer_idle_end = project(
            known, state_at_as_of[known], offer_week, horizon, offer_delta, TRUTH_OFFER_WEEKS
        )
        pa = p_alive_at_as_of[known]
        truth_blocks.append(
            pd.DataFrame(
                {
                    "customer_id": (known + 1).astype(np.int64),
                    "as_of": pd.Timestamp(truth_as_of),
                    "horizon_days": np.int32(horizon),
                    "alive": alive_at_as_of[known],
                    "dropout_date": dates(drop_day[known]),
                    "p_alive": pa,
                    "p_no_purchase": (1.0 - pa) + pa * no_purchase,
                    "expected_purchases": pa * expected_purchases,
                    "expected_spend": pa * expected_purchases * mean_spend[known],
                    "mean_spend": mean_spend[known],
                    "uplift_retention": pa * (no_purchase - offer_no_purchase),
                    "uplift_active": pa * (idle_end - offer_idle_end),
                    "uplift_alive": pa * (offer_alive_end - alive_end),
                    "uplift_spend": pa * (offer_purchases - expected_purchases) * mean_spend[known],
                }
            )
        )
    truth = pd.concat(truth_blocks, ignore_index=True)
    truth["as_of"] = truth["as_of"].astype("datetime64[ns]")

    # --- campaigns and their true effects ----------------------------------------------------------------
    campaign_rows, effect_rows = [], []
    for run in runs:
        assert run.treated is not None and run.delta is not None and run.alive is not None
        idx, c = run.participants, run.campaign
        effects = {
            name: np.zeros(idx.size) for name in ("uplift_retention", "uplift_active", "uplift_alive", "uplift_spend")
        }
        days = int(campaign_horizon_days) - max(run.lead_days, 0)  # of the window after the effect starts
        live = np.flatnonzero(run.alive)
        if days > 0 and live.size:
            sub, state = idx[live], run.complaint_state[live]
            alive_end, no_purchase, purchases, idle_end = project(sub, state, run.week, days, skip=run)
            offer_alive_end, offer_no_purchase, offer_purchases, offer_idle_end = project(
                sub, state, run.week, days, run.delta[live], c.effect_weeks, skip=run
            )
            # No purchase in the window also needs none in the lead days, which the offer cannot change.
            lead = np.exp(-run.lead_rate[live]) if run.lead_rate is not None else 1.0
            effects["uplift_retention"][live] = lead * (no_purchase - offer_no_purchase)
            effects["uplift_active"][live] = idle_end - offer_idle_end
            effects["uplift_alive"][live] = offer_alive_end - alive_end
            effects["uplift_spend"][live] = (offer_purchases - purchases) * mean_spend[sub]
        # What the offer is worth knowing the customer's traits and events but not whether they are still
        # alive: the effect were they alive, × the posterior P(alive), like ``truth`` (the oracle's ranking).
        expected = np.zeros(idx.size)
        if days > 0:
            state = run.complaint_state
            _, _, _, idle_end = project(idx, state, run.week, days, skip=run)
            _, _, _, offer_idle_end = project(idx, state, run.week, days, run.delta_if_alive, c.effect_weeks, skip=run)
            expected = run.p_alive * (idle_end - offer_idle_end)
        day = pd.Timestamp(c.date)
        campaign_rows.append(
            pd.DataFrame(
                {
                    "customer_id": (idx + 1).astype(np.int64),
                    "date": day,
                    "campaign": c.name,
                    "treated": run.treated.astype(np.int8),
                    "cost": np.where(run.treated, float(c.cost), 0.0),
                    "propensity": run.propensity,
                }
            )
        )
        effect_rows.append(
            pd.DataFrame(
                {
                    "customer_id": (idx + 1).astype(np.int64),
                    "campaign": c.name,
                    "date": day,
                    "alive_at_date": run.alive,
                    "delta": run.delta,
                    **effects,
                    "p_alive": run.p_alive,
                    "expected_uplift_active": expected,
                }
            )
        )
    campaigns_df = _typed_frame(campaign_rows, CAMPAIGN_COLUMNS)
    campaign_truth = _typed_frame(effect_rows, CAMPAIGN_TRUTH_COLUMNS)

    hidden = pd.DataFrame(
        {
            "customer_id": np.arange(1, n + 1, dtype=np.int64),
            "dropout_date": dates(drop_day),
            "shocked": shocked,
            "shifted": shifted,
            "dropout_date_without_scenario": dates(
                np.where(dropout_week_without >= 0, first_week_day + 7 * dropout_week_without, -1)
            ),
        }
    )
    return SimulatedData(
        customers=customers_df,
        transactions=transactions,
        payments=payments,
        interactions=interactions,
        campaigns=campaigns_df,
        truth=truth,
        campaign_truth=campaign_truth,
        hidden=hidden,
        scenario=Scenario(shock=shock, shift=shift),
        start_date=start_date,
        end_date=end_date,
    )
