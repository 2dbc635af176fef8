"""Evaluation entry: ``python -m scalp_ml.evaluate ckpt_path=... [split=test]``.

Loads a checkpoint with the data settings it was trained with, grades the chosen split and
writes the report (study's Table 2 layout, majority baseline, per-grade detail, figures).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from scalp_ml.atomic import atomic_write_text
from scalp_ml.data.datamodule import ScalpDataModule
from scalp_ml.evaluation.metrics import GradingMetrics, majority_baseline
from scalp_ml.evaluation.report import write_report
from scalp_ml.inference.predictors import TorchPredictor, graded_batches
from scalp_ml.labels import INDICATOR_NAMES

log = logging.getLogger(__name__)


def write_evaluation(
    out_dir: Path,
    datamodule: ScalpDataModule,
    results: Mapping[str, Mapping[str, torch.Tensor]],
    checkpoint: str,
    metrics_csv: Path | None = None,
) -> Path:
    """Writes the report of ``results`` (per split) with the majority baseline beside them."""
    train_grades = datamodule.datasets["train"].grades
    baseline = {
        split: majority_baseline(train_grades, datamodule.datasets[split].grades)
        for split in results
    }
    context = {
        "checkpoint": checkpoint,
        "split_file": str(datamodule.split_file),
        "split_strategy": json.loads(datamodule.split_file.read_text()).get("strategy"),
        "split_sha256": datamodule.split_sha256,
        "images": {split: len(datamodule.datasets[split]) for split in results},
    }
    return write_report(out_dir, results, baseline, context, metrics_csv)


def grades_table(names: list[str], grades: torch.Tensor, predicted: torch.Tensor) -> pd.DataFrame:
    """Per image: true and predicted grade of every indicator (for error analysis)."""
    table = pd.DataFrame({"name": names})
    for index, name in enumerate(INDICATOR_NAMES):
        table[f"{name}_true"] = grades[:, index].numpy()
        table[f"{name}_predicted"] = predicted[:, index].numpy()
    return table


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Grades one split with a checkpoint and writes the report into ``cfg.out_dir``.

    Returns:
        The split's scalar metrics, keyed ``<split>/<metric>``.
    """
    checkpoint = Path(cfg.ckpt_path)
    predictor = TorchPredictor(checkpoint, cfg.device)
    data = dict(predictor.data)
    data |= {key: cfg[key] for key in ("batch_size", "num_workers") if cfg[key] is not None}
    # The predictor takes normalised float images: prepare them in the loader.
    data |= {"augment_on": "cpu", "decode_on": "cpu", "normalize_on_device": False}
    if cfg.data_root is not None:
        data["root"] = cfg.data_root
    datamodule = ScalpDataModule(**data)
    datamodule.setup()
    loader = datamodule.dataloader(cfg.split)
    # Names and grades come with the batches: an image skipped as unreadable is in neither.
    names, grade_batches, probabilities = [], [], []
    for batch, batch_probabilities in graded_batches(predictor, loader):
        names += batch["name"]
        grade_batches.append(batch["grades"])
        probabilities.append(batch_probabilities)
    grades = torch.cat(grade_batches)
    predicted = torch.from_numpy(np.concatenate(probabilities)).argmax(dim=-1)
    metrics = GradingMetrics()
    metrics.update(predicted, grades)
    results = {cfg.split: metrics.compute()}
    out_dir = Path(cfg.out_dir)
    atomic_write_text(
        out_dir / "predictions.csv", grades_table(names, grades, predicted).to_csv(index=False)
    )
    run_dir = checkpoint.resolve().parent.parent
    report = write_evaluation(
        out_dir, datamodule, results, str(checkpoint), run_dir / "metrics.csv"
    )
    log.info("Report written to %s", report)
    return {f"{cfg.split}/{key}": float(v) for key, v in results[cfg.split].items() if v.ndim == 0}


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    """Hydra entry."""
    evaluate(cfg)


if __name__ == "__main__":
    main()
