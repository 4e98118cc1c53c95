"""Feature checks at scoring: values of the scored customers that the models never saw in training.

At fit time every model records a small *training profile* of its features
(:func:`crmscore.features.training_profile`, kept as the fitted attribute ``feature_profile_``, so it
travels with the registered model): for a categorical feature the categories seen, for a numeric one
the smallest and largest finite value, and for both the share of missing values. No training rows are
kept.

Scoring counts, per model and feature, the scored customers whose value

* is a category the model never saw (``unseen``): the model treats it as missing, so a whole column of
  new codes (a region ``mars``, a contract ``lifetime``) scores everyone as if their region were unknown;
* is a number outside the training [min, max] (``out_of_range``): trees treat it like the nearest
  training extreme, a logistic part extrapolates;
* is missing (``missing``), compared with the training share.

Counts are taken per chunk of customers (:func:`count_features`) and added up (:class:`FeatureCounts`:
plain integers and a few sorted example values), so the result is the same for any chunk size and on
either engine. :func:`feature_checks` turns the totals into the manifest's ``feature_checks`` list —
only what is worth a look: any unseen value, an out-of-range share above a threshold, a missing share
above training's by more than a set amount — most severe first. :func:`check_message` words one entry
for the console and :func:`check_unseen_share` stops a scoring with too many unseen values. Features
of the as-of date itself (:data:`~crmscore.features.DATE_FEATURES`) differ between any two dates and
are not range-checked; a customer's age (:data:`~crmscore.features.AGE_FEATURES`) is checked at its
lower end only, since a scoring after training sees older customers by construction. Models registered
before profiles existed have none and are not checked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from crmscore.errors import DataError
from crmscore.features import AGE_FEATURES, DATE_FEATURES

__all__ = [
    "CHECK_KINDS",
    "MAX_EXAMPLES",
    "FeatureCounts",
    "count_features",
    "feature_checks",
    "check_message",
    "check_unseen_share",
]

#: The kinds of check, in the order they are reported at equal severity.
CHECK_KINDS = ("unseen", "out_of_range", "missing")
#: Unseen values kept as examples per feature (the alphabetically first ones, whatever the chunking).
MAX_EXAMPLES = 3
# How the console names each model's output ("their churn and CLV …").
_OUTPUTS = {"churn": "churn", "clv": "CLV", "segments": "segment"}


@dataclasses.dataclass
class FeatureCounts:
    """Counts of one chunk of scored customers, or of several added up with ``+``.

    ``rows`` is the number of customers; ``models`` maps model role → feature → ``{"unseen": n,
    "out_of_range": n, "missing": n, "examples": [...]}`` (the first :data:`MAX_EXAMPLES` unseen values
    as text, sorted). Adding is exact, so any split of the customers gives the same total.
    """

    rows: int = 0
    models: dict[str, dict[str, dict[str, Any]]] = dataclasses.field(default_factory=dict)

    def __add__(self, other: FeatureCounts) -> FeatureCounts:
        models = {role: {f: dict(t) for f, t in features.items()} for role, features in self.models.items()}
        for role, features in other.models.items():
            mine = models.setdefault(role, {})
            for feature, tally in features.items():
                if feature not in mine:
                    mine[feature] = dict(tally)
                    continue
                total = mine[feature]
                for kind in CHECK_KINDS:
                    total[kind] += tally[kind]
                total["examples"] = sorted(set(total["examples"]) | set(tally["examples"]))[:MAX_EXAMPLES]
        return FeatureCounts(self.rows + other.rows, models)

    def to_dict(self) -> dict[str, Any]:
        """The counts as plain JSON-ready values (the Spark engine ships each bucket's counts to the driver as JSON)."""
        return {"rows": self.rows, "models": self.models}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureCounts:
        """The counts of :meth:`to_dict`."""
        return cls(int(data["rows"]), {role: dict(features) for role, features in data["models"].items()})


def count_features(X: pd.DataFrame, profiles: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> FeatureCounts:
    """Unseen, out-of-range and missing values of the customers in ``X``, per model and feature.

    ``profiles`` maps model role → training profile (:func:`~crmscore.features.training_profile`); a
    feature of a profile that ``X`` lacks is skipped (the model itself says so). Categorical values are
    compared with the training categories as the models compare them (as objects, after any
    ``category`` dtype), so "unseen" here is exactly what the model treats as missing.
    """
    models: dict[str, dict[str, dict[str, Any]]] = {}
    for role, profile in profiles.items():
        tallies = models.setdefault(role, {})
        for feature, info in profile.items():
            if feature not in X.columns:
                continue
            column = X[feature]
            present = column.notna().to_numpy()
            tally: dict[str, Any] = {"unseen": 0, "out_of_range": 0, "missing": int((~present).sum()), "examples": []}
            if info["kind"] == "categorical":
                values = column.astype(object)
                unseen = present & ~values.isin(info["categories"]).to_numpy()
                tally["unseen"] = int(unseen.sum())
                if tally["unseen"]:
                    tally["examples"] = sorted({str(v) for v in values[unseen]})[:MAX_EXAMPLES]
            elif info["min"] is not None and feature not in DATE_FEATURES:
                numbers = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
                high = np.inf if feature in AGE_FEATURES else info["max"]  # customers only grow older
                with np.errstate(invalid="ignore"):
                    tally["out_of_range"] = int(((numbers < info["min"]) | (numbers > high)).sum())
            tallies[feature] = tally
    return FeatureCounts(len(X), models)


def _share(count: int, rows: int) -> float:
    return round(count / rows, 6) if rows else 0.0


def feature_checks(
    counts: FeatureCounts,
    profiles: Mapping[str, Mapping[str, Mapping[str, Any]]],
    out_of_range_share: float,
    missing_increase: float,
) -> list[dict[str, Any]]:
    """What the manifest reports: one entry per feature and kind of check with something to say.

    Reported are every unseen value, an out-of-range share above ``out_of_range_share`` and a missing
    share above the training share by more than ``missing_increase``. A feature flagged for several
    models is one entry: ``models`` (in the order churn, clv, segments), ``count`` and ``share`` (of the
    scored customers; the largest over those models), ``examples`` (unseen: up to :data:`MAX_EXAMPLES`
    values, sorted), ``training_share`` (missing: the largest training share of those models),
    ``training_range`` (out of range: ``[min, max]`` of the model with the most values outside) and
    ``by_model`` (each model's own ``count``, ``share`` and training figure).

    Entries are sorted by severity — the share for unseen and out-of-range values, the increase over
    training for missing ones — then by kind (:data:`CHECK_KINDS`) and feature: the same counts always
    give the same list.
    """
    rows = counts.rows
    order = {role: i for i, role in enumerate(_OUTPUTS)}
    found: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    examples: dict[tuple[str, str], set[str]] = {}
    for role in sorted(counts.models, key=lambda r: (order.get(r, len(order)), r)):
        profile = profiles.get(role) or {}
        for feature, tally in sorted(counts.models[role].items()):
            info = profile.get(feature)
            if info is None:
                continue
            missing_share = _share(tally["missing"], rows)
            if tally["unseen"]:
                found.setdefault((feature, "unseen"), {})[role] = {
                    "count": tally["unseen"],
                    "share": _share(tally["unseen"], rows),
                }
                examples.setdefault((feature, "unseen"), set()).update(tally["examples"])
            if tally["out_of_range"] and _share(tally["out_of_range"], rows) > out_of_range_share:
                found.setdefault((feature, "out_of_range"), {})[role] = {
                    "count": tally["out_of_range"],
                    "share": _share(tally["out_of_range"], rows),
                    "training_range": [info["min"], info["max"]],
                }
            training = round(float(info["missing_share"]), 6)
            if tally["missing"] and missing_share - training > missing_increase:
                found.setdefault((feature, "missing"), {})[role] = {
                    "count": tally["missing"],
                    "share": missing_share,
                    "training_share": training,
                }
    entries = []
    for (feature, kind), by_model in found.items():
        worst = max(by_model.values(), key=lambda m: m["count"])  # the first model of the largest count
        entry: dict[str, Any] = {
            "feature": feature,
            "kind": kind,
            "models": list(by_model),
            "count": worst["count"],
            "share": worst["share"],
        }
        if kind == "unseen":
            entry["examples"] = sorted(examples[(feature, kind)])[:MAX_EXAMPLES]
        elif kind == "out_of_range":
            entry["training_range"] = worst["training_range"]
        else:
            entry["training_share"] = max(m["training_share"] for m in by_model.values())
        entry["by_model"] = by_model
        entries.append(entry)
    return sorted(entries, key=lambda e: (-_severity(e), CHECK_KINDS.index(e["kind"]), e["feature"]))


def _severity(entry: Mapping[str, Any]) -> float:
    if entry["kind"] == "missing":
        return round(entry["share"] - entry["training_share"], 6)
    return entry["share"]


def _percent(share: float) -> str:
    if 0 < share < 0.0005:
        return "< 0.1 %"
    return f"{share * 100:.1f} %"


def _outputs(models: Iterable[str]) -> tuple[str, str]:
    """``("churn and CLV", "models'")`` for ``["churn", "clv"]``: what is scored and whose handling applies."""
    names = [_OUTPUTS.get(m, m) for m in models]
    if len(names) == 1:
        return names[0], "model's"
    return f"{', '.join(names[:-1])} and {names[-1]}", "models'"


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:,.6g}"


def check_message(entry: Mapping[str, Any]) -> str:
    """One sentence for one entry of :func:`feature_checks`, e.g. ``region: 100.0 % of scored customers
    have values unseen in training (e.g. 'mars'); their churn and CLV scores use the models'
    unseen-category handling (as if missing)``."""
    feature, share = entry["feature"], _percent(entry["share"])
    outputs, whose = _outputs(entry["models"])
    if entry["kind"] == "unseen":
        shown = ", ".join(repr(v) for v in entry.get("examples", []))
        return (
            f"{feature}: {share} of scored customers have values unseen in training (e.g. {shown}); "
            f"their {outputs} scores use the {whose} unseen-category handling (as if missing)"
        )
    if entry["kind"] == "out_of_range":
        low, high = entry["training_range"]
        return (
            f"{feature}: {share} of scored customers have values outside the training range "
            f"{_number(low)} to {_number(high)}; their {outputs} scores are extrapolated"
        )
    return (
        f"{feature}: {share} of scored customers have no value, against {_percent(entry['training_share'])} "
        f"in training; their {outputs} scores use the {whose} missing-value handling"
    )


def check_unseen_share(entries: Iterable[Mapping[str, Any]], limit: float | None) -> None:
    """Raise a one-line :class:`~crmscore.errors.DataError` when a feature's unseen share exceeds ``limit``
    (``scoring.unseen_error_share``; ``None`` never stops), naming the worst feature, its share and the
    setting."""
    if limit is None:
        return
    over = [e for e in entries if e["kind"] == "unseen" and e["share"] > limit]
    if not over:
        return
    worst = max(over, key=lambda e: (e["share"], e["feature"]))
    more = f" (and {len(over) - 1} more feature(s))" if len(over) > 1 else ""
    shown = ", ".join(repr(v) for v in worst.get("examples", []))
    raise DataError(
        f"{worst['feature']}: {_percent(worst['share'])} of scored customers have values unseen in training "
        f"(e.g. {shown}){more}, more than scoring.unseen_error_share = {limit:g}; nothing was written "
        "(map the values to the training categories, retrain on data that has them, or raise the setting)"
    )
