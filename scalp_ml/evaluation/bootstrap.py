"""Session bootstrap confidence intervals of the study's metrics, from confusion counts.

Shots of one person (a capture session) are not independent, so the intervals resample
whole sessions with replacement. Each session's predictions are first reduced to six 4x4
confusion matrices; a resample is then a weighted sum of those counts (one matrix product
for all resamples), so a thousand resamples of a few thousand images take milliseconds.
An image bootstrap is the same computation with each image as its own session.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scalp_ml.labels import INDICATOR_NAMES, NUM_GRADES, NUM_INDICATORS

# The metrics whose paired differences are reported, in report order.
DIFFERENCE_KEYS = (
    "macro_f1",
    *(f"macro_f1/{name}" for name in INDICATOR_NAMES),
    "hamming_acc",
    "qwk",
)


@dataclass(frozen=True)
class Interval:
    """A metric on the full set and its bootstrap percentile interval."""

    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class Difference:
    """A paired difference B - A of one metric, its interval and two-sided p-value."""

    difference: float
    low: float
    high: float
    p_value: float


def session_confusions(
    sessions: Sequence[str], grades: np.ndarray, predicted: np.ndarray
) -> np.ndarray:
    """Per-session confusion counts of the six indicators.

    Args:
        sessions: The capture session of each of the N images.
        grades: True grades, integers ``[N, 6]`` in 0..3.
        predicted: Predicted grades, integers ``[N, 6]`` in 0..3.

    Returns:
        Counts ``[S, 6, 4, 4]`` (rows: true grade, columns: predicted), one per distinct
        session, sessions in sorted order.

    Raises:
        ValueError: Shapes disagree or a grade lies outside 0..3.
    """
    grades, predicted = np.asarray(grades), np.asarray(predicted)
    shape = (len(sessions), NUM_INDICATORS)
    for label, values in (("grades", grades), ("predicted", predicted)):
        if values.shape != shape:
            raise ValueError(f"{label} has shape {values.shape}; expected {shape}")
        if values.size and (values.min() < 0 or values.max() >= NUM_GRADES):
            raise ValueError(f"{label} holds grades outside 0..{NUM_GRADES - 1}")
    names, session_index = np.unique(np.asarray(sessions), return_inverse=True)
    cell = session_index[:, None] * NUM_INDICATORS + np.arange(NUM_INDICATORS)
    cell = (cell * NUM_GRADES + grades) * NUM_GRADES + predicted
    size = len(names) * NUM_INDICATORS * NUM_GRADES**2
    counts = np.bincount(cell.ravel(), minlength=size)
    return counts.reshape(len(names), NUM_INDICATORS, NUM_GRADES, NUM_GRADES)


def metrics_from_confusions(confusions: np.ndarray) -> dict[str, np.ndarray]:
    """The study's metrics and quadratic kappa of confusion counts ``[..., 6, 4, 4]``.

    Every metric is computed over the leading axes at once. F1 of a grade with no true
    positive, false positive or false negative is 0, as in scikit-learn's ``f1_score(...,
    labels=[0, 1, 2, 3], zero_division=0)``. Quadratic-weighted kappa equals scikit-learn's
    ``cohen_kappa_score(..., weights="quadratic", labels=[0, 1, 2, 3])``; it is NaN where
    undefined (no images, or only one grade in truth and prediction alike), and the overall
    ``qwk`` is the mean over the indicators where it is defined (NaN if none is).

    Returns:
        Arrays of the leading shape keyed ``macro_f1``, ``macro_f1/<indicator>``,
        ``hamming_acc``, ``qwk`` and ``qwk/<indicator>``.
    """
    counts = np.asarray(confusions, dtype=np.float64)
    hits = np.diagonal(counts, axis1=-2, axis2=-1)
    support, predicted = counts.sum(axis=-1), counts.sum(axis=-2)
    # F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (support + predicted count).
    denominator = support + predicted
    f1 = np.divide(2 * hits, denominator, out=np.zeros_like(hits), where=denominator > 0)
    macro_f1 = f1.mean(axis=-1)
    total = counts.sum(axis=(-2, -1))
    grade = np.arange(NUM_GRADES)
    weights = (grade[:, None] - grade[None, :]) ** 2.0
    observed = (counts * weights).sum(axis=(-2, -1))
    chance = np.einsum("...i,...j,ij->...", support, predicted, weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = chance / total
        qwk = np.where(expected > 0, 1 - observed / expected, np.nan)
        hamming = hits.sum(axis=(-2, -1)) / total.sum(axis=-1)
    defined = ~np.isnan(qwk)
    with np.errstate(divide="ignore", invalid="ignore"):
        qwk_mean = np.where(defined, qwk, 0).sum(axis=-1) / defined.sum(axis=-1)
    results = {"macro_f1": macro_f1.mean(axis=-1), "hamming_acc": hamming, "qwk": qwk_mean}
    for index, name in enumerate(INDICATOR_NAMES):
        results[f"macro_f1/{name}"] = macro_f1[..., index]
        results[f"qwk/{name}"] = qwk[..., index]
    return results


def bootstrap_intervals(
    sessions: Sequence[str],
    grades: np.ndarray,
    predicted: np.ndarray,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Interval]:
    """Session bootstrap percentile intervals of every metric of :func:`metrics_from_confusions`.

    Args:
        sessions: The capture session of each image; pass one distinct value per image
            (e.g. its name) for an image bootstrap.
        grades: True grades ``[N, 6]``.
        predicted: Predicted grades ``[N, 6]``.
        resamples: Number of bootstrap resamples of the sessions.
        seed: Seed of the resampling: the same seed gives the same intervals.
        level: Coverage of the intervals.

    Returns:
        An :class:`Interval` per metric key. Resamples where a metric is undefined (NaN,
        possible for kappa) are left out of its interval.
    """
    confusions = session_confusions(sessions, grades, predicted)
    full, resampled = _resampled_metrics(confusions, resamples, seed)
    return {
        key: Interval(float(full[key]), *_percentile_interval(resampled[key], level))
        for key in full
    }


def paired_difference(
    sessions: Sequence[str],
    grades: np.ndarray,
    predicted_a: np.ndarray,
    predicted_b: np.ndarray,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Difference]:
    """Paired session bootstrap of model B's metrics minus model A's on the same images.

    Each resample of the sessions is applied to both models' confusion counts, so the
    interval reflects only the difference between the models, not which images were drawn.
    The two-sided p-value is ``min(1, 2 * min(share of resampled differences <= 0, share
    >= 0))``: 1 for identical predictions, small when nearly every resample favours one model,
    0 when every resample does (the p-value is then below ``2 / resamples``).

    Args:
        sessions: The capture session of each image (one value per image: image bootstrap).
        grades: True grades ``[N, 6]``.
        predicted_a: Model A's predicted grades ``[N, 6]``.
        predicted_b: Model B's predicted grades ``[N, 6]``.
        resamples: Number of bootstrap resamples of the sessions.
        seed: Seed of the resampling.
        level: Coverage of the intervals.

    Returns:
        A :class:`Difference` per key of ``DIFFERENCE_KEYS``. Resamples where a difference is
        undefined (NaN kappa) are left out of its interval and p-value.
    """
    models = (predicted_a, predicted_b)
    confusions = np.stack([session_confusions(sessions, grades, p) for p in models], axis=1)
    full, resampled = _resampled_metrics(confusions, resamples, seed)
    differences = {}
    for key in DIFFERENCE_KEYS:
        values = resampled[key][:, 1] - resampled[key][:, 0]
        values = values[~np.isnan(values)]
        shares = (values <= 0).mean(), (values >= 0).mean()
        p_value = min(1.0, 2 * float(min(shares))) if values.size else float("nan")
        difference = float(full[key][1] - full[key][0])
        differences[key] = Difference(difference, *_percentile_interval(values, level), p_value)
    return differences


def _resampled_metrics(
    confusions: np.ndarray, resamples: int, seed: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Metrics of the summed counts ``[S, ...]`` and of each resample of its S sessions."""
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, not {resamples}")
    count = len(confusions)
    if count == 0:
        raise ValueError("Cannot bootstrap an empty set of images")
    # How often each session is drawn in each resample: counts of sampled indices, row by row.
    drawn = np.random.default_rng(seed).integers(0, count, size=(resamples, count))
    drawn += count * np.arange(resamples)[:, None]
    multiplicities = np.bincount(drawn.ravel(), minlength=resamples * count)
    multiplicities = multiplicities.reshape(resamples, count)
    flat = confusions.reshape(count, -1).astype(np.float64)
    totals = (multiplicities.astype(np.float64) @ flat).reshape(resamples, *confusions.shape[1:])
    return metrics_from_confusions(confusions.sum(axis=0)), metrics_from_confusions(totals)


def _percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` percentile interval of ``values``, NaNs left out (NaN if all are)."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, not {level}")
    values = values[~np.isnan(values)]
    if not values.size:
        return float("nan"), float("nan")
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)
