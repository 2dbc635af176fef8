"""Collapsed heads: indicators whose head has learned nothing beyond the majority grade."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from scalp_ml.labels import GRADES, INDICATOR_NAMES, NUM_GRADES


def single_grade_heads(predicted_counts: np.ndarray) -> dict[str, str]:
    """The heads whose predictions all fall on one grade, and why.

    Args:
        predicted_counts: How often each grade was predicted, ``[6, 4]`` (the column sums of
            each indicator's confusion matrix).

    Returns:
        The reason per such indicator name; empty when every head predicts two grades or more
        (or nothing was graded).
    """
    counts = np.asarray(predicted_counts)
    return {
        name: f"predicts grade {GRADES[int(np.flatnonzero(row)[0])]} for every image"
        for name, row in zip(INDICATOR_NAMES, counts, strict=True)
        if np.count_nonzero(row) == 1
    }


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
        The reason per collapsed indicator name, in indicator order; empty when no head
        collapsed.
    """
    counts = [np.bincount(column, minlength=NUM_GRADES) for column in np.asarray(predicted).T]
    single = single_grade_heads(np.stack(counts))
    reasons = {}
    for name in INDICATOR_NAMES:
        score, baseline = macro_f1[name], majority_macro_f1[name]
        if name in single:
            reasons[name] = single[name]
        elif score - baseline <= margin:
            reasons[name] = (
                f"macro-F1 {score:.3f} is within {margin} of (or below) the majority-grade "
                f"baseline's {baseline:.3f}"
            )
    return reasons
