"""The study's metrics and ordinal extras, accumulated over batches (synchronised under DDP).

macro-F1 of an indicator is the mean of its four grades' F1, absent grades counting as 0,
as in the study and scikit-learn's ``f1_score(average="macro", labels=[0, 1, 2, 3],
zero_division=0)``. torchmetrics' own ``average="macro"`` drops a grade that has no TP, FP
or FN, so the per-grade scores (``average="none"``) are averaged here instead.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassCohenKappa,
    MulticlassConfusionMatrix,
    MulticlassExactMatch,
    MulticlassF1Score,
)

from scalp_ml.labels import INDICATOR_NAMES, NUM_GRADES

# Headline numbers of a result, in report order.
SUMMARY_KEYS = ("macro_f1", "hamming_acc", "exact_match", "qwk", "mae", "within_one")


def each_indicator(factory: Callable[[], Metric]) -> nn.ModuleList:
    """One fresh metric object per indicator."""
    return nn.ModuleList(factory() for _ in INDICATOR_NAMES)


def confusion_statistics(confusion: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-grade precision, recall and support, and the ordinal errors, of a 4x4 confusion.

    Rows are true grades, columns predicted ones. A precision or recall with an empty
    denominator is 0. ``mae`` is the mean absolute grade error, ``within_one`` the share of
    predictions at most one grade off.
    """
    counts = confusion.double()
    hits = counts.diagonal()
    predicted, support = counts.sum(dim=0), counts.sum(dim=1)
    grades = torch.arange(len(counts), dtype=torch.double)
    distance = (grades[:, None] - grades[None, :]).abs()
    total = counts.sum().clamp(min=1)
    return {
        "precision": torch.where(predicted > 0, hits / predicted.clamp(min=1), 0.0),
        "recall": torch.where(support > 0, hits / support.clamp(min=1), 0.0),
        "support": support,
        "mae": (counts * distance).sum() / total,
        "within_one": counts[distance <= 1].sum() / total,
    }


class GradingMetrics(nn.Module):
    """Everything the reports show, per indicator and overall.

    Per indicator: macro-F1, per-grade F1 / precision / recall / support, quadratic-weighted
    kappa, mean absolute grade error, within-one-grade accuracy and the confusion matrix.
    Overall: the mean macro-F1 (the study's overall macro-F1), Hamming accuracy, exact match
    (all six grades right) and the means of kappa, MAE and within-one accuracy.
    """

    def __init__(self, sync_on_compute: bool = True) -> None:
        super().__init__()
        # sync_on_compute=False: a local evaluation that must not wait for other DDP ranks.
        sync = {"sync_on_compute": sync_on_compute}
        self.f1 = each_indicator(
            lambda: MulticlassF1Score(NUM_GRADES, average="none", zero_division=0, **sync)
        )
        self.confusion = each_indicator(lambda: MulticlassConfusionMatrix(NUM_GRADES, **sync))
        self.qwk = each_indicator(
            lambda: MulticlassCohenKappa(NUM_GRADES, weights="quadratic", **sync)
        )
        self.hamming = MulticlassAccuracy(NUM_GRADES, average="micro", **sync)
        self.exact_match = MulticlassExactMatch(NUM_GRADES, multidim_average="global", **sync)

    def update(self, predictions: torch.Tensor, grades: torch.Tensor) -> None:
        """Adds a batch of predicted and true grades, both ``[B, 6]`` (or logits ``[B, 6, 4]``)."""
        if predictions.ndim == 3:
            predictions = predictions.argmax(dim=-1)
        for index, metrics in enumerate(zip(self.f1, self.confusion, self.qwk, strict=True)):
            for metric in metrics:
                metric.update(predictions[:, index], grades[:, index])
        self.hamming.update(predictions.flatten(), grades.flatten())
        self.exact_match.update(predictions, grades)

    def compute(self) -> dict[str, torch.Tensor]:
        """The accumulated metrics.

        Returns:
            Scalars keyed ``<metric>`` (overall, see ``SUMMARY_KEYS``), ``<metric>/<indicator>``
            (``macro_f1``, ``qwk``, ``mae``, ``within_one``) and ``<metric>/<indicator>/<grade>``
            (``f1``, ``precision``, ``recall``, ``support``); 4x4 matrices
            ``confusion/<indicator>`` (rows: true grade).
        """
        results: dict[str, torch.Tensor] = {}
        for index, name in enumerate(INDICATOR_NAMES):
            f1 = self.f1[index].compute()
            confusion = self.confusion[index].compute()
            statistics = confusion_statistics(confusion)
            results[f"macro_f1/{name}"] = f1.mean()
            results[f"qwk/{name}"] = self.qwk[index].compute()
            for key in ("mae", "within_one"):
                results[f"{key}/{name}"] = statistics[key].float()
            per_grade = {"f1": f1} | {k: statistics[k] for k in ("precision", "recall", "support")}
            for key, values in per_grade.items():
                results |= {f"{key}/{name}/{grade}": v.float() for grade, v in enumerate(values)}
            results[f"confusion/{name}"] = confusion
        for key in ("macro_f1", "qwk", "mae", "within_one"):
            results[key] = torch.stack(
                [results[f"{key}/{name}"] for name in INDICATOR_NAMES]
            ).mean()
        results["hamming_acc"] = self.hamming.compute()
        results["exact_match"] = self.exact_match.compute()
        return results

    def reset(self) -> None:
        """Clears the accumulated state."""
        for metric in (*self.f1, *self.confusion, *self.qwk, self.hamming, self.exact_match):
            metric.reset()


def majority_grades(train_grades: torch.Tensor) -> torch.Tensor:
    """Each indicator's most frequent grade in ``[N, 6]`` training grades (ties: lower)."""
    counts = torch.stack(
        [torch.bincount(column, minlength=NUM_GRADES) for column in train_grades.T]
    )
    return counts.argmax(dim=1)


def majority_baseline(train_grades: torch.Tensor, grades: torch.Tensor) -> dict[str, torch.Tensor]:
    """Metrics of always predicting each indicator's most frequent training grade."""
    metrics = GradingMetrics(sync_on_compute=False)
    metrics.update(majority_grades(train_grades).expand_as(grades), grades)
    return metrics.compute()
