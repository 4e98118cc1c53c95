"""Embedded synthetic CRM data: four contract tables and the truth behind them.

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
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable

import numpy as np
import pandas as pd

__all__ = [
    "ProcessParameters",
    "SimulatedData",
    "simulate_crm",
    "PRODUCT_CATEGORIES",
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


@dataclasses.dataclass
class SimulatedData:
    """The four contract tables plus ``truth`` (see the module docstring)."""

    customers: pd.DataFrame
    transactions: pd.DataFrame
    payments: pd.DataFrame
    interactions: pd.DataFrame
    truth: pd.DataFrame

    def tables(self) -> dict[str, pd.DataFrame]:
        """The four contract tables by name (without ``truth``)."""
        return {
            "customers": self.customers,
            "transactions": self.transactions,
            "payments": self.payments,
            "interactions": self.interactions,
        }


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _choice(rng: np.random.Generator, options: tuple[str, ...], p: Iterable[float], size: int) -> np.ndarray:
    return rng.choice(len(options), size=size, p=np.asarray(list(p), dtype=float))


def _categorical(codes: np.ndarray, options: tuple[str, ...]) -> pd.Categorical:
    return pd.Categorical.from_codes(codes, categories=list(options))


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


def simulate_crm(
    customers: int,
    seed: int = 42,
    start_date: dt.date = dt.date(2023, 11, 1),
    end_date: dt.date = dt.date(2026, 10, 31),
    truth_as_of: dt.date = dt.date(2026, 7, 31),
    horizons_days: Iterable[int] = (90, 365),
    process: ProcessParameters | None = None,
) -> SimulatedData:
    """Simulate a customer base and return its four contract tables and the truth.

    Args:
        customers: number of customers acquired between ``start_date`` and ``end_date``.
        seed: random seed; the same arguments give identical tables.
        start_date, end_date: first and last day of the history (inclusive).
        truth_as_of: as-of date of ``truth`` (must lie in the history).
        horizons_days: horizons of ``truth``, in days (one block of rows per horizon).
        process: parameters of the data-generating process (defaults: :class:`ProcessParameters`).

    Returns:
        :class:`SimulatedData` with ``customers``, ``transactions``, ``payments``, ``interactions``
        and ``truth``.
    """
    if customers <= 0:
        raise ValueError(f"customers must be positive, got {customers}")
    if not start_date < truth_as_of <= end_date:
        raise ValueError("expected start_date < truth_as_of <= end_date")
    pp = process or ProcessParameters()
    rng = np.random.default_rng(seed)
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
    contract = np.where(
        corporate,
        _choice(rng, CONTRACTS, (0.3, 0.4, 0.3), n),
        _choice(rng, CONTRACTS, (0.6, 0.28, 0.12), n),
    )
    month_to_month = contract == 0

    type_rate = np.asarray(pp.type_rate_multiplier)[ctype]
    lam = rng.gamma(pp.purchase_rate_shape, pp.purchase_rate_mean / pp.purchase_rate_shape, n) * type_rate
    lam *= np.where(channel == 2, 1.15, 1.0)  # referred customers buy a little more often
    complaint_rate = rng.gamma(pp.complaint_rate_shape, pp.complaint_rate_mean / pp.complaint_rate_shape, n)
    contact_rate = rng.gamma(pp.contact_rate_shape, pp.contact_rate_mean / pp.contact_rate_shape, n)
    contact_rate *= np.where(corporate, 1.8, 1.0)
    late_prop = rng.beta(pp.late_payment_alpha, pp.late_payment_beta, n)
    late_prop = np.where(month_to_month, np.minimum(late_prop * 1.3, 0.95), late_prop)
    partial_prop = rng.beta(pp.partial_payment_alpha, pp.partial_payment_beta, n)
    breadth = 1 + rng.binomial(4, 0.35, n) + corporate.astype(np.int64)  # 1..6 categories
    breadth = np.minimum(breadth, len(PRODUCT_CATEGORIES))
    nu = rng.gamma(pp.spend_q, 1.0 / pp.spend_gamma, n)  # Gamma-Gamma scale heterogeneity
    spend_scale = np.asarray(pp.type_spend_multiplier)[ctype] / pp.type_spend_multiplier[0]
    mean_spend = pp.spend_p / nu * spend_scale  # E[amount | customer]

    engagement = np.log(contact_rate / pp.contact_rate_mean)
    base_logit = (
        rng.normal(pp.dropout_base_logit_mean, pp.dropout_base_logit_sd, n)
        + pp.dropout_late_payment * (late_prop - pp.late_payment_alpha / (pp.late_payment_alpha + pp.late_payment_beta))
        + pp.dropout_month_to_month * month_to_month
        - pp.dropout_breadth * (breadth - 1)
        - pp.dropout_engagement * engagement
        - np.where(ctype == 1, 0.4, 0.0)  # VIP programmes retain
    )

    # --- weekly grid aligned on truth_as_of --------------------------------------------------------
    as_of_offset = (truth_as_of - start_date).days  # day offset of the as-of date
    first_week_day = as_of_offset + 1 - 7 * int(np.ceil((as_of_offset + 1) / 7))  # ≤ 0
    n_weeks = int(np.ceil((history_days - first_week_day) / 7))
    as_of_week = (as_of_offset + 1 - first_week_day) // 7 - 1  # last full week ≤ as-of
    signup_week = (signup - first_week_day) // 7
    start_doy = start_date.timetuple().tm_yday

    def season(week: int | np.ndarray) -> np.ndarray:
        mid_doy = start_doy + first_week_day + 7 * np.asarray(week) + 3
        return 1.0 + pp.season_amplitude * np.cos(2 * np.pi * (mid_doy - 350) / 365.25)

    def weekly_hazard(week: int, state: np.ndarray, idx: np.ndarray) -> np.ndarray:
        tenure_weeks = week - signup_week[idx]
        logit = (
            base_logit[idx]
            + pp.dropout_complaint * state
            - pp.dropout_tenure * np.log1p(np.maximum(tenure_weeks, 0) / 13.0)
        )
        return _sigmoid(logit)

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

    for week in range(n_weeks):
        # Customers whose first purchase was in an earlier week are exposed this week.
        exposed = order[: np.searchsorted(sorted_signup_week, week, side="left")]
        if exposed.size:
            h = weekly_hazard(week, complaint_state[exposed], exposed)
            # Dropout at the start of the week, for those still alive.
            was_alive = alive[exposed]
            drops = was_alive & (rng.random(exposed.size) < h)
            dropout_week[exposed[drops]] = week
            alive[exposed[drops]] = False
            active = exposed[alive[exposed]]

            lam_eff = lam[exposed] * season(week) * np.exp(-pp.complaint_purchase_damping * complaint_state[exposed])
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
                hit = counts > 0
                records.append((exposed[hit], np.full(int(hit.sum()), week, dtype=np.int32), counts[hit]))

            # Forward filter: an observed event proves the customer alive; a silent week is
            # explained either by survival with no events or by a dropout (now or earlier).
            prior = p_alive[exposed]
            silent_alive = prior * (1.0 - h) * np.exp(-mu_total)
            silent_dead = (1.0 - prior) + prior * h
            posterior = silent_alive / (silent_alive + silent_dead)
            observed = (n_purchase + n_complaint + n_contact) > 0
            p_alive[exposed] = np.where(observed, 1.0, posterior)

            complaint_state[exposed] = pp.complaint_decay * complaint_state[exposed] + n_complaint
        if week == as_of_week:
            p_alive_at_as_of = p_alive.copy()
            state_at_as_of = complaint_state.copy()
            alive_at_as_of = alive.copy()

    assert p_alive_at_as_of is not None and state_at_as_of is not None

    # --- expand event records to dated rows ---------------------------------------------------------
    def expand(records: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        idx = np.concatenate([r[0] for r in records]) if records else np.empty(0, np.int64)
        wk = np.concatenate([r[1] for r in records]) if records else np.empty(0, np.int32)
        cnt = np.concatenate([r[2] for r in records]) if records else np.empty(0, np.int64)
        idx = np.repeat(idx, cnt)
        day = first_week_day + 7 * np.repeat(wk, cnt).astype(np.int64) + rng.integers(0, 7, idx.size)
        keep = day <= history_days - 1
        return idx[keep], day[keep]

    p_idx, p_day = expand(purchase_records)
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
    u = rng.random(p_idx.size, dtype=np.float32)
    product = np.zeros(p_idx.size, dtype=np.int8)
    for j in range(len(PRODUCT_CATEGORIES) - 1):
        product += u > cum[p_idx, j]

    amount = np.round(rng.gamma(pp.spend_p, 1.0, p_idx.size) / nu[p_idx] * spend_scale[p_idx], 2)
    amount = np.maximum(amount, 0.01)
    quantity = 1 + rng.poisson(np.where(corporate[p_idx], 3.0, 0.4))

    tx_order = np.lexsort((p_day, p_idx))
    p_idx, p_day, amount, product, quantity = (a[tx_order] for a in (p_idx, p_day, amount, product, quantity))
    start = np.datetime64(start_date, "D")
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
    c_idx, c_day = expand(complaint_records)
    o_idx, o_day = expand(contact_records)
    del complaint_records, contact_records
    is_visit = rng.random(o_idx.size) < np.where(corporate[o_idx], 0.45, 0.2)
    kind = np.concatenate([np.full(c_idx.size, 1, np.int8), np.where(is_visit, 2, 0).astype(np.int8)])
    i_idx = np.concatenate([c_idx, o_idx])
    i_day = np.concatenate([c_day, o_day])
    online = channel[i_idx] == 0
    remote = np.where(
        online,
        _choice(rng, CONTACT_CHANNELS[:4], (0.2, 0.3, 0.35, 0.15), i_idx.size),
        _choice(rng, CONTACT_CHANNELS[:4], (0.5, 0.3, 0.12, 0.08), i_idx.size),
    )
    visit_channel = np.where(corporate[i_idx], 5, 4)
    contact_channel = np.where(kind == 2, visit_channel, remote).astype(np.int8)
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
    tx_month = (start + p_day.astype("timedelta64[D]")).astype("datetime64[M]").astype(np.int64)
    key = p_idx.astype(np.int64) * 10_000 + (tx_month - tx_month.min())
    boundaries = np.flatnonzero(np.diff(key)) + 1  # rows are sorted by customer then day, so by key
    first = np.concatenate([[0], boundaries])
    amount_due = np.round(np.add.reduceat(amount, first), 2)
    inv_idx = p_idx[first]
    invoice_date = (tx_month[first] + 1).astype("datetime64[M]").astype("datetime64[D]")
    end = np.datetime64(end_date, "D")
    issued = invoice_date <= end
    inv_idx, invoice_date, amount_due = inv_idx[issued], invoice_date[issued], amount_due[issued]
    m = inv_idx.size
    terms = np.asarray(pp.payment_terms_days)[ctype[inv_idx]]
    due = invoice_date + terms.astype("timedelta64[D]")
    late = rng.random(m) < late_prop[inv_idx]
    days_late = np.ceil(rng.gamma(1.5, 12.0, m)).astype(np.int64)
    days_early = rng.integers(0, np.maximum(terms, 1))
    paid = np.where(late, due + days_late.astype("timedelta64[D]"), due - days_early.astype("timedelta64[D]"))
    never = rng.random(m) < 0.15 * late_prop[inv_idx]
    partial = rng.random(m) < partial_prop[inv_idx]
    amount_paid = np.where(partial, np.round(amount_due * rng.uniform(0.3, 0.95, m), 2), amount_due)
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
            "contract": _categorical(contract, CONTRACTS),
        }
    )

    # --- truth at the as-of date -----------------------------------------------------------------------
    known = np.flatnonzero(signup <= as_of_offset)
    truth_blocks = []
    for horizon in sorted(set(int(h) for h in horizons_days)):
        full_weeks, rest_days = divmod(horizon, 7)
        fractions = [1.0] * full_weeks + ([rest_days / 7.0] if rest_days else [])
        state = state_at_as_of[known].copy()
        alive_path = np.ones(known.size)  # P(alive at week j | alive at as-of)
        silent = np.ones(known.size)  # P(alive and no purchase so far | alive at as-of)
        died_silent = np.zeros(known.size)  # P(dropped out before any purchase)
        expected_purchases = np.zeros(known.size)
        for j, frac in enumerate(fractions, start=1):
            week = as_of_week + j
            h = 1.0 - (1.0 - weekly_hazard(week, state, known)) ** frac
            rate = frac * lam[known] * season(week) * np.exp(-pp.complaint_purchase_damping * state)
            died_silent += silent * h
            silent *= (1.0 - h) * np.exp(-rate)
            alive_path *= 1.0 - h
            expected_purchases += alive_path * rate
            state = pp.complaint_decay * state + frac * complaint_rate[known]
        pa = p_alive_at_as_of[known]
        drop_day = np.where(dropout_week[known] >= 0, first_week_day + 7 * dropout_week[known], -1)
        truth_blocks.append(
            pd.DataFrame(
                {
                    "customer_id": (known + 1).astype(np.int64),
                    "as_of": pd.Timestamp(truth_as_of),
                    "horizon_days": np.int32(horizon),
                    "alive": alive_at_as_of[known],
                    "dropout_date": pd.Series(
                        (start + np.maximum(drop_day, 0).astype("timedelta64[D]")).astype("datetime64[ns]")
                    ).where(drop_day >= 0),
                    "p_alive": pa,
                    "p_no_purchase": (1.0 - pa) + pa * (silent + died_silent),
                    "expected_purchases": pa * expected_purchases,
                    "expected_spend": pa * expected_purchases * mean_spend[known],
                    "mean_spend": mean_spend[known],
                }
            )
        )
    truth = pd.concat(truth_blocks, ignore_index=True)
    truth["as_of"] = truth["as_of"].astype("datetime64[ns]")

    return SimulatedData(
        customers=customers_df,
        transactions=transactions,
        payments=payments,
        interactions=interactions,
        truth=truth,
    )
