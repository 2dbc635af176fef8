"""Grade splits through Lightning, score them and write the report: for train and evaluate alike."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from scalp_ml.atomic import atomic_write_text
from scalp_ml.data.datamodule import ScalpDataModule
from scalp_ml.data.splits import images_fingerprint
from scalp_ml.evaluation.evidence import EvidenceSettings, gather_evidence
from scalp_ml.evaluation.metrics import GradingMetrics, majority_baseline
from scalp_ml.evaluation.offsets import OffsetsComparison, apply_offsets
from scalp_ml.evaluation.predictions import Predictions, predict_split
from scalp_ml.evaluation.report import write_report
from scalp_ml.training.wandb_media import log_results

log = logging.getLogger(__name__)

Results = dict[str, dict[str, torch.Tensor]]


def score(predictions: Predictions) -> dict[str, torch.Tensor]:
    """The study's metrics and the ordinal extras of one split's predictions."""
    metrics = GradingMetrics(sync_on_compute=False)
    metrics.update(torch.from_numpy(predictions.predicted), torch.from_numpy(predictions.grades))
    return metrics.compute()


def evaluate_splits(
    trainer: L.Trainer,
    module: L.LightningModule,
    datamodule: ScalpDataModule,
    splits: Sequence[str],
    out_dir: Path,
    context: Mapping[str, Any],
    settings: EvidenceSettings,
    metrics_csv: Path | None = None,
    decision_offsets: np.ndarray | None = None,
) -> dict[str, float]:
    """Grades each split (never augmented), scores it and writes the report into ``out_dir``.

    Writes ``predictions_<split>.csv`` (per image: true and predicted grades, the four
    probabilities of each indicator), ``report.md``, ``metrics.json`` and the figures; logs the
    results, and copies these files, to the trainer's W&B loggers. Every number comes with its
    session-bootstrap interval, and heads that predict one grade only, or score within
    ``settings.collapse_margin`` of the majority-grade baseline, are flagged (and logged as
    warnings). Under DDP every rank grades its share, and the first process writes.

    Args:
        trainer: Runs the prediction loop.
        module: The grader (a :class:`~scalp_ml.module.ScalpGrader` or an ONNX adapter).
        datamodule: Set-up datamodule whose splits are graded.
        splits: Names of the splits (``train``, ``val``, ``test``).
        out_dir: Folder of the report.
        context: What the numbers belong to (checkpoint, ...); split facts are added.
        settings: Bootstrap resamples, seed and level, and the collapse margin.
        metrics_csv: The training run's CSV log, for the learning curves.
        decision_offsets: The offsets ``[6, 4]`` the module applies, if any: the report then
            also scores the predictions without them.

    Returns:
        Scalar metrics keyed ``<split>/<metric>`` (and ``<split>/without_offsets/<metric>``).
    """
    predictions = {
        split: predict_split(trainer, module, datamodule.dataloader(split)) for split in splits
    }
    results: Results = {split: score(found) for split, found in predictions.items()}
    offsets = None
    if decision_offsets is not None and np.any(decision_offsets):
        without = {  # undoing the offsets: the probabilities before them
            split: score(
                replace(found, probabilities=apply_offsets(found.probabilities, -decision_offsets))
            )
            for split, found in predictions.items()
        }
        offsets = OffsetsComparison(np.asarray(decision_offsets), without)
    if trainer.is_global_zero:
        train_grades = torch.from_numpy(datamodule.datasets["train"].grades)
        baseline = {
            split: majority_baseline(train_grades, torch.from_numpy(found.grades))
            for split, found in predictions.items()
        }
        context = {
            **context,
            "split_file": str(datamodule.split_file),
            "split_strategy": datamodule.strategy,
            "split_sha256": datamodule.split_sha256,
            "images_sha256": {  # what was graded: a fold split's test = the plain split's
                split: images_fingerprint(found.names) for split, found in predictions.items()
            },
            "images": {split: len(found.names) for split, found in predictions.items()},
            "sessions": {split: len(set(found.sessions)) for split, found in predictions.items()},
            "bootstrap": settings.context(),
        }
        for split, found in predictions.items():
            atomic_write_text(
                out_dir / f"predictions_{split}.csv", found.table().to_csv(index=False)
            )
        evidence = gather_evidence(predictions, results, baseline, settings)
        report = write_report(out_dir, results, baseline, evidence, context, metrics_csv, offsets)
        log_results(trainer, results, evidence, out_dir)
        log.info("Report written to %s", report)
    scalars = _scalars(results)
    if offsets is not None:
        scalars |= _scalars(offsets.without, "/without_offsets")
    return scalars


def _scalars(results: Results, infix: str = "") -> dict[str, float]:
    return {
        f"{split}{infix}/{key}": float(value)
        for split, values in results.items()
        for key, value in values.items()
        if value.ndim == 0
    }
