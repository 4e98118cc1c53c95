"""The review report's campaign section: uplift versions on their held-out customers and the latest plan."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd

from crmscore.planning import profit_curve
from crmscore.report import Comparison, ModelVersion, campaigns_section


class _Uplift:
    """What the section reads of a registered uplift model: its held-out customers and learner table."""

    def __init__(self, holdout: pd.DataFrame, name: str = "DR") -> None:
        self.holdout = holdout
        self.learner_name = name
        self.comparison = pd.DataFrame(
            {"qini": [0.01, 0.03], "auuc": [0.01, 0.03], "uplift_at_10": [0.1, 0.2], "seconds": [1.0, 2.0]},
            index=pd.Index(["T", "DR"], name="learner"),
        )


def _holdout(n: int = 2_000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    true = rng.uniform(-0.05, 0.2, n)
    t = rng.binomial(1, 0.5, n)
    y = rng.binomial(1, 0.5 + true * t)
    frame = pd.DataFrame(
        {"uplift": true + rng.normal(0, 0.05, n), "treated": t, "retained": y, "campaign": "spring"},
        index=pd.Index(np.arange(1, n + 1), name="customer_id"),
    )
    return frame, true


def test_campaign_section_shows_the_held_out_metrics_the_oracle_and_the_plan(tmp_path):
    holdout, true = _holdout()
    truth = pd.DataFrame(
        {"customer_id": holdout.index.to_numpy(), "campaign": "spring", "expected_uplift_active": true}
    )
    champion = ModelVersion("crmscore-uplift", "champion", 1, "run", _Uplift(holdout))
    plan_dir = tmp_path / "as_of=2026-10-31"
    plan_dir.mkdir()
    scores = pd.DataFrame({"customer_id": [1, 2, 3], "uplift": [0.2, 0.1, -0.1], "clv": [100.0, 100.0, 100.0]})
    profit_curve(scores, 5.0).to_csv(plan_dir / "profit_curve.csv", index=False)
    manifest = {
        "as_of": "2026-10-31",
        "contacted": 2,
        "customers_scored": 3,
        "contact_cost": 5.0,
        "budget": 10.0,
        "expected_profit": 20.0,
        "expected_profit_interval_95": [12.0, 31.0],
    }
    (plan_dir / "manifest.json").write_text(json.dumps(manifest))
    section = campaigns_section(Comparison(champion, None), plan_dir, truth)
    text = re.sub(r"<[^>]+>", " ", section.body)
    assert section.id == "campaigns"
    assert "Qini coefficient" in text and "Learners compared" in text and "seconds" not in text
    assert "Contact 2 of 3 customers at 5.00 each (budget 10)" in text
    assert "expected incremental profit 20 (95 % interval 12 to 31)" in text
    assert section.body.count("<img") == 2  # the Qini curves (with the oracle) and the profit curve
    assert "Qini curve of champion v1 on its 2,000 held-out customers" in text


def test_campaign_section_without_an_uplift_model_or_a_plan_says_what_to_run():
    section = campaigns_section(None, None, None)
    text = re.sub(r"<[^>]+>", " ", section.body)
    assert "crmscore train uplift" in text and "crmscore plan" in text
    assert "<img" not in section.body
