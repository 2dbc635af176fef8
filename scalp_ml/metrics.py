"""The study's metrics, accumulated over batches (and synchronised across DDP ranks).

macro-F1 of an indicator is the mean of its four grades' F1, absent grades counting as 0,
as in the study and scikit-learn's ``f1_score(average="macro", labels=[0, 1, 2, 3],
zero_division=0)``. torchmetrics' own ``average="macro"`` drops a grade that has no TP, FP
or FN, so the per-grade scores (``average="none"``) are averaged here instead.
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)

from scalp_ml.labels import INDICATOR_NAMES, NUM_GRADES


class GradingMetrics(nn.Module):
    """Per-indicator macro-F1, overall macro-F1, Hamming accuracy and confusion matrices."""

    def __init__(self) -> None:
        super().__init__()
        self.f1 = nn.ModuleList(
            MulticlassF1Score(NUM_GRADES, average="none", zero_division=0) for _ in INDICATOR_NAMES
        )
        self.confusion = nn.ModuleList(
            MulticlassConfusionMatrix(NUM_GRADES) for _ in INDICATOR_NAMES
        )
        self.hamming = MulticlassAccuracy(NUM_GRADES, average="micro")

    def update(self, predictions: torch.Tensor, grades: torch.Tensor) -> None:
        """Adds a batch of predicted and true grades, both ``[B, 6]`` (or logits ``[B, 6, 4]``)."""
        if predictions.ndim == 3:
            predictions = predictions.argmax(dim=-1)
        for index, (f1, confusion) in enumerate(zip(self.f1, self.confusion, strict=True)):
            f1.update(predictions[:, index], grades[:, index])
            confusion.update(predictions[:, index], grades[:, index])
        self.hamming.update(predictions.flatten(), grades.flatten())

    def compute(self) -> dict[str, torch.Tensor]:
        """The accumulated metrics.

        Returns:
            Scalars ``macro_f1``, ``hamming_acc``, ``macro_f1/<indicator>`` and
            ``f1/<indicator>/<grade>``; 4x4 matrices ``confusion/<indicator>`` (rows: true grade).
        """
        results: dict[str, torch.Tensor] = {}
        per_indicator = []
        for name, f1, confusion in zip(INDICATOR_NAMES, self.f1, self.confusion, strict=True):
            per_grade = f1.compute()
            per_indicator.append(per_grade.mean())
            results[f"macro_f1/{name}"] = per_indicator[-1]
            results |= {f"f1/{name}/{grade}": value for grade, value in enumerate(per_grade)}
            results[f"confusion/{name}"] = confusion.compute()
        results["macro_f1"] = torch.stack(per_indicator).mean()
        results["hamming_acc"] = self.hamming.compute()
        return results

    def reset(self) -> None:
        """Clears the accumulated state."""
        for metric in (*self.f1, *self.confusion, self.hamming):
            metric.reset()
