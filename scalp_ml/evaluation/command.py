"""What ``python -m scalp_ml.evaluate`` does: a checkpoint or ONNX file graded on one split."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig

from scalp_ml.config import plain
from scalp_ml.data.datamodule import ScalpDataModule
from scalp_ml.evaluation.evidence import EvidenceSettings
from scalp_ml.evaluation.runner import evaluate_splits
from scalp_ml.inference.onnx_grader import OnnxGrader
from scalp_ml.inference.predictors import CheckpointPredictor, OnnxPredictor, load_predictor


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Grades ``cfg.split`` with ``cfg.ckpt_path`` and writes the report into ``cfg.out_dir``.

    Returns:
        The split's scalar metrics, keyed ``<split>/<metric>``.

    Raises:
        FileNotFoundError: The checkpoint, or the data it was trained on, is not found (the
            message says which override points to the data).
    """
    checkpoint = Path(cfg.ckpt_path)
    predictor = load_predictor(checkpoint, plain(cfg.device), plain(cfg.tta))
    datamodule = ScalpDataModule(**data_settings(predictor.data, cfg, checkpoint))
    datamodule.setup()
    if isinstance(predictor, OnnxPredictor):
        module, accelerator = OnnxGrader(predictor), "cpu"
    else:
        assert isinstance(predictor, CheckpointPredictor)
        module, accelerator = predictor.module, predictor.device.type
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    return evaluate_splits(
        trainer,
        module,
        datamodule,
        [cfg.split],
        Path(cfg.out_dir),
        {"checkpoint": str(checkpoint)},
        metrics_csv=_training_log(checkpoint),
        settings=EvidenceSettings(**plain(cfg.evaluation)),
    )


def data_settings(trained: dict[str, Any], cfg: DictConfig, checkpoint: Path) -> dict[str, Any]:
    """The data settings a model was trained with, and the command's overrides.

    Raises:
        FileNotFoundError: The data root does not exist here.
    """
    settings = {key: value for key, value in trained.items() if key != "augment_on"}
    settings |= {key: cfg[key] for key in ("batch_size", "num_workers") if cfg[key] is not None}
    if cfg.data_root is not None:
        settings["root"] = cfg.data_root
    settings["decode_on"] = "cpu"  # no device-side decoding: grading runs on any device
    root = Path(settings["root"])
    if not root.is_dir():
        where = "" if root.is_absolute() else f" (relative to {os.getcwd()})"
        raise FileNotFoundError(
            f"The data {checkpoint} was trained on, {root}{where}, is not here: point to it "
            "with data_root=/path/to/the/data"
        )
    return settings


def _training_log(checkpoint: Path) -> Path:
    """The ``metrics.csv`` of the run that wrote ``checkpoint`` (``<run>/checkpoints/x.ckpt``)."""
    return checkpoint.resolve().parent.parent / "metrics.csv"
