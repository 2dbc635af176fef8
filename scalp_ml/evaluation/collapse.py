"""Collapsed heads: indicators whose head has learned nothing beyond the majority grade."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from scalp_ml.labels import GRADES, INDICATOR_NAMES


def collapsed_heads(
    predicted: np.ndarray,
    macro_f1: Mapping[str, float],
    majority_macro_f1: Mapping[str, float],
    margin: float = 0.02,
) -> dict[str, str]:
    """The collapsed heads and why.

    A head is collapsed when it predicts one grade for every image, or when its macro-F1 is
    at most ``margin`` above (or below) that of always predicting the majority grade.

    Args:
        predicted: Predicted grades ``[N, 6]``.
        macro_f1: The model's macro-F1 per indicator name, on the same images.
        majority_macro_f1: The majority-grade baseline's macro-F1 per indicator name.
        margin: How far above the baseline a head must score to count as learning.

    Returns:
        The reason per collapsed indicator name; empty when no head collapsed.
    """
    reasons = {}
    for index, name in enumerate(INDICATOR_NAMES):
        grades = np.unique(predicted[:, index])
        score, baseline = macro_f1[name], majority_macro_f1[name]
        if len(grades) == 1:
            reasons[name] = f"predicts grade {GRADES[grades[0]]} for every image"
        elif score - baseline <= margin:
            reasons[name] = (
                f"macro-F1 {score:.3f} is within {margin} of (or below) the majority-grade "
                f"baseline's {baseline:.3f}"
            )
    return reasons
