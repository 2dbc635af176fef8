import numpy as np

from scalp_ml.evaluation.collapse import collapsed_heads
from scalp_ml.labels import INDICATOR_NAMES

HEALTHY = dict.fromkeys(INDICATOR_NAMES, 0.60)
BASELINE = dict.fromkeys(INDICATOR_NAMES, 0.22)


def varied_predictions() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 4, (50, 6))


def test_healthy_heads_are_not_flagged() -> None:
    assert collapsed_heads(varied_predictions(), HEALTHY, BASELINE) == {}


def test_a_head_predicting_one_grade_is_flagged() -> None:
    predicted = varied_predictions()
    predicted[:, 3] = 2
    reasons = collapsed_heads(predicted, HEALTHY, BASELINE)
    assert reasons == {"follicular_erythema_pustule": "predicts grade moderate for every image"}


def test_heads_within_the_margin_of_the_baseline_or_below_it_are_flagged() -> None:
    scores = HEALTHY | {"microkeratin": 0.235, "dandruff": 0.10, "hair_loss": 0.25}
    reasons = collapsed_heads(varied_predictions(), scores, BASELINE, margin=0.02)
    assert set(reasons) == {"microkeratin", "dandruff"}  # hair_loss: 0.03 above the baseline
    assert "0.235" in reasons["microkeratin"] and "0.220" in reasons["microkeratin"]
    assert set(collapsed_heads(varied_predictions(), scores, BASELINE, margin=0.05)) == {
        "microkeratin",
        "dandruff",
        "hair_loss",
    }
