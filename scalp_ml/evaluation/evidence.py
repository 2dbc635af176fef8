"""How far the numbers can be trusted: session-bootstrap intervals and collapsed heads per split."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from scalp_ml.evaluation.bootstrap import Interval, bootstrap_intervals
from scalp_ml.evaluation.collapse import collapsed_heads
from scalp_ml.evaluation.predictions import Predictions
from scalp_ml.labels import INDICATOR_NAMES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvidenceSettings:
    """The ``evaluation`` config node.

    Attributes:
        resamples: Bootstrap resamples of the capture sessions.
        seed: Seed of the resampling (the same seed gives the same intervals).
        level: Coverage of the percentile intervals.
        collapse_margin: A head whose macro-F1 is at most this far above the majority-grade
            baseline's counts as collapsed.
    """

    resamples: int = 1000
    seed: int = 0
    level: float = 0.95
    collapse_margin: float = 0.02

    def context(self) -> dict[str, Any]:
        """The settings as ``metrics.json`` records them (``context.bootstrap``)."""
        return {
            "resamples": self.resamples,
            "seed": self.seed,
            "level": self.level,
            "unit": "session",
            "collapse_margin": self.collapse_margin,
        }


@dataclass(frozen=True)
class Evidence:
    """Uncertainty and collapse checks of an evaluation.

    Attributes:
        settings: How they were computed.
        intervals: Per split, an :class:`~scalp_ml.evaluation.bootstrap.Interval` per metric
            key (``macro_f1``, ``macro_f1/<indicator>``, ``hamming_acc``, ``qwk``,
            ``qwk/<indicator>``).
        collapsed: Per split, the reason per collapsed indicator (empty: none collapsed).
    """

    settings: EvidenceSettings
    intervals: dict[str, dict[str, Interval]]
    collapsed: dict[str, dict[str, str]]


def gather_evidence(
    predictions: Mapping[str, Predictions],
    results: Mapping[str, Mapping[str, torch.Tensor]],
    baseline: Mapping[str, Mapping[str, torch.Tensor]],
    settings: EvidenceSettings,
) -> Evidence:
    """Bootstraps each split over its capture sessions and finds its collapsed heads.

    Logs a warning per collapsed head, naming the split, the indicator and the reason.

    Args:
        predictions: Per split, the graded images.
        results: Per split, the model's metrics (``GradingMetrics.compute``).
        baseline: Per split, the majority-grade baseline's metrics on the same images.
        settings: Resamples, seed, level and collapse margin.
    """
    intervals, collapsed = {}, {}
    for split, found in predictions.items():
        predicted = found.predicted
        intervals[split] = bootstrap_intervals(
            found.sessions,
            found.grades,
            predicted,
            settings.resamples,
            settings.seed,
            settings.level,
        )
        collapsed[split] = collapsed_heads(
            predicted,
            _per_indicator_macro_f1(results[split]),
            _per_indicator_macro_f1(baseline[split]),
            settings.collapse_margin,
        )
        for name, reason in collapsed[split].items():
            log.warning("Collapsed head on the %s split: %s %s", split, name, reason)
    return Evidence(settings, intervals, collapsed)


def _per_indicator_macro_f1(values: Mapping[str, torch.Tensor]) -> dict[str, float]:
    return {name: float(values[f"macro_f1/{name}"]) for name in INDICATOR_NAMES}
