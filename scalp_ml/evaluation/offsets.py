"""Decision offsets: shifts of the grade log-probabilities that maximise validation macro-F1.

A head trained on imbalanced grades rarely predicts its rare grades: the argmax favours the
common one. Adding an offset to a rare grade's log-probability before the argmax trades a little
precision for recall. The offsets are fitted on the validation split only (coordinate ascent
over a grid of values, in a seeded order, grade 0 kept at 0 as the reference), shrunk toward 0
(of the values within ``min_gain`` of the best macro-F1, the one closest to 0 is kept), and then
stored in the model, so the checkpoint, the ONNX export and every command apply them alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from scalp_ml.labels import GRADES, INDICATOR_NAMES, NUM_GRADES

GRID = np.round(np.arange(-3.0, 3.01, 0.25), 2)  # log-probability shifts tried for each grade
ROUNDS = 3  # passes over the grades of an indicator
MIN_GAIN = 1e-3  # macro-F1 within this of the best counts as equally good (then: closest to 0)


def macro_f1(grades: np.ndarray, predicted: np.ndarray) -> float:
    """The mean over all four grades of their F1 (absent grades count as 0), one indicator."""
    scores = []
    for grade in range(NUM_GRADES):
        hits = np.sum((predicted == grade) & (grades == grade))
        denominator = np.sum(predicted == grade) + np.sum(grades == grade)
        scores.append(2 * hits / denominator if denominator else 0.0)
    return float(np.mean(scores))


def overall_macro_f1(grades: np.ndarray, predicted: np.ndarray) -> float:
    """Mean over the indicators of their macro-F1 (grades and predictions ``[N, 6]``)."""
    return float(np.mean([macro_f1(grades[:, i], predicted[:, i]) for i in range(grades.shape[1])]))


def apply_offsets(probabilities: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Probabilities ``[N, 6, 4]`` after adding ``offsets [6, 4]`` to their logarithms."""
    shifted = np.log(np.clip(probabilities, 1e-12, None)) + offsets
    shifted -= shifted.max(axis=-1, keepdims=True)
    exponent = np.exp(shifted)
    return exponent / exponent.sum(axis=-1, keepdims=True)


def fit_offsets(
    probabilities: np.ndarray,
    grades: np.ndarray,
    seed: int = 0,
    grid: np.ndarray = GRID,
    rounds: int = ROUNDS,
    min_gain: float = MIN_GAIN,
) -> np.ndarray:
    """Offsets ``[6, 4]`` that maximise each indicator's macro-F1 on these (validation) images.

    Args:
        probabilities: Grade probabilities ``[N, 6, 4]`` of the validation split.
        grades: Its true grades ``[N, 6]``.
        seed: Seeds the order in which grades are visited.
        grid: Offsets tried for each grade.
        rounds: Passes of coordinate ascent.
        min_gain: Shrinkage: of the values within this much macro-F1 of the best one, the one
            closest to 0 is kept.
    """
    rng = np.random.default_rng(seed)
    log_p = np.log(np.clip(probabilities, 1e-12, None))
    offsets = np.zeros(log_p.shape[1:])
    for indicator in range(log_p.shape[1]):
        scores, truth = log_p[:, indicator], grades[:, indicator]
        for _ in range(rounds):
            for grade in rng.permutation(np.arange(1, NUM_GRADES)):
                trial = offsets[indicator].copy()
                results = []
                for value in grid:
                    trial[grade] = value
                    results.append(macro_f1(truth, (scores + trial).argmax(axis=1)))
                near_best = grid[np.asarray(results) >= max(results) - min_gain]
                offsets[indicator, grade] = near_best[np.argmin(np.abs(near_best))]
    return offsets


@dataclass(frozen=True)
class OffsetsComparison:
    """Fitted offsets, and each split's metrics without them (the report shows both).

    Attributes:
        offsets: The offsets ``[6, 4]`` the graded model applies.
        without: Per split, the metrics of the same predictions without the offsets.
    """

    offsets: np.ndarray
    without: dict[str, dict[str, torch.Tensor]]

    def markdown(self, results: dict[str, dict[str, torch.Tensor]]) -> str:
        """Per indicator: the offsets, and each split's macro-F1 without and with them."""
        stages = list(results)
        header = ["indicator", *(f"offset {grade}" for grade in GRADES[1:])]
        header += [f"{stage} without -> with" for stage in stages]
        lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
        for index, name in enumerate((*INDICATOR_NAMES, "overall")):
            key = "macro_f1" if name == "overall" else f"macro_f1/{name}"
            shifts = (
                [""] * 3 if name == "overall" else [f"{v:+.2f}" for v in self.offsets[index, 1:]]
            )
            changes = [
                f"{float(self.without[stage][key]):.3f} -> {float(results[stage][key]):.3f}"
                for stage in stages
            ]
            lines.append("| " + " | ".join([name, *shifts, *changes]) + " |")
        return "\n".join(lines)
