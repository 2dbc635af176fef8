"""What ``python -m scalp_ml.evaluate`` does: a checkpoint or ONNX file graded on one split."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig

from scalp_ml.config import plain
from scalp_ml.data.datamodule import ScalpDataModule, check_graded_images
from scalp_ml.data.splits import split_file_for
from scalp_ml.evaluation.evidence import EvidenceSettings
from scalp_ml.evaluation.runner import evaluate_splits
from scalp_ml.inference.ensemble import member_paths
from scalp_ml.inference.predictor_grader import PredictorGrader
from scalp_ml.inference.predictors import (
    CheckpointPredictor,
    OnnxPredictor,
    Predictor,
    load_predictor,
)
from scalp_ml.training.quiet import silence_known_noise


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Grades ``cfg.split`` with ``cfg.ckpt_path`` and writes the report into ``cfg.out_dir``.

    ``ckpt_path`` is a checkpoint, an ONNX export, or an ensemble: a list of checkpoints or a
    folder of runs (:mod:`scalp_ml.inference.ensemble`), graded by the members' mean
    probabilities, with each member's own scores in the report's context.

    Returns:
        The split's scalar metrics, keyed ``<split>/<metric>``.

    Raises:
        FileNotFoundError: The checkpoint, or the data it was trained on, is not found (the
            message says which override points to the data).
        ValueError: An ensemble asked to grade another split than ``test`` (each member
            trained on other images of the train and validation splits).
    """
    silence_known_noise()
    paths = member_paths(plain(cfg.ckpt_path))  # one file, or an ensemble's members
    if len(paths) > 1:
        return _evaluate_ensemble(cfg, paths)
    checkpoint = Path(paths[0])
    predictor = load_predictor(checkpoint, plain(cfg.device), plain(cfg.tta))
    if isinstance(predictor, OnnxPredictor):
        if predictor.metadata.get("members"):
            _refuse_ensemble_split(cfg.split, checkpoint)
        module, accelerator = PredictorGrader(predictor), "cpu"
    else:
        assert isinstance(predictor, CheckpointPredictor)
        module, accelerator = predictor.module, predictor.device.type
    datamodule = _datamodule(predictor, cfg, checkpoint)
    return evaluate_splits(
        _trainer(accelerator),
        module,
        datamodule,
        [cfg.split],
        Path(cfg.out_dir),
        {"checkpoint": str(checkpoint)},
        metrics_csv=_training_log(checkpoint),
        settings=EvidenceSettings(**plain(cfg.evaluation)),
    )


def _evaluate_ensemble(cfg: DictConfig, paths: list[Path]) -> dict[str, float]:
    """The members' mean graded like one model; each member's own scores in the context."""
    from scalp_ml.evaluation.predictions import predict_split
    from scalp_ml.evaluation.runner import score
    from scalp_ml.inference.ensemble import EnsemblePredictor

    _refuse_ensemble_split(cfg.split, paths[0])
    ensemble = EnsemblePredictor(paths, plain(cfg.device), plain(cfg.tta))
    datamodule = _datamodule(ensemble, cfg, paths[0])
    trainer = _trainer(ensemble.device.type)
    members = []
    for member in ensemble.members:
        found = score(predict_split(trainer, member.model, datamodule.dataloader(cfg.split)))
        own = {key: float(found[key]) for key in ("macro_f1", "hamming_acc", "qwk")}
        members.append({"checkpoint": str(member.path), **own})
        member.model.to(ensemble.device)  # Lightning's teardown moved it to the CPU
    return evaluate_splits(
        _trainer("cpu"),
        PredictorGrader(ensemble),
        datamodule,
        [cfg.split],
        Path(cfg.out_dir),
        {"checkpoint": f"ensemble of {len(paths)} (mean probabilities)", "members": members},
        settings=EvidenceSettings(**plain(cfg.evaluation)),
    )


def _refuse_ensemble_split(split: str, source: Path) -> None:
    if split != "test":
        raise ValueError(
            f"split={split}: {source} is an ensemble, whose members trained on different "
            "parts of the train and validation splits; grade it on split=test"
        )


def _datamodule(predictor: Predictor, cfg: DictConfig, checkpoint: Path) -> ScalpDataModule:
    """The set-up datamodule of the data a model was trained on, its split checked.

    Raises:
        ValueError: The split to grade holds other images than the checkpoint recorded
            (unless ``split_file`` was given explicitly).
    """
    datamodule = ScalpDataModule(**data_settings(predictor.data, cfg, checkpoint))
    datamodule.setup()
    expected = predictor.graded_images
    if cfg.split_file is None and cfg.split in expected:
        check_graded_images({cfg.split: expected[cfg.split]}, datamodule, str(checkpoint))
    return datamodule


def _trainer(accelerator: str) -> L.Trainer:
    """A trainer that only runs prediction loops on one device."""
    return L.Trainer(
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )


def data_settings(trained: dict[str, Any], cfg: DictConfig, checkpoint: Path) -> dict[str, Any]:
    """The data settings a model was trained with, and the command's overrides.

    Paths stored in the checkpoint are only ever read, never written: its index file is
    replaced by the one beside the data (or ``manifest_file``), its decoded-image cache is not
    used, and a split file that is not here is made under ``out_dir`` (and then checked
    against the checkpoint's record of its images).

    Raises:
        FileNotFoundError: The data root does not exist here.
    """
    settings = {key: value for key, value in trained.items() if key != "augment_on"}
    settings |= {key: cfg[key] for key in ("batch_size", "num_workers") if cfg[key] is not None}
    if cfg.data_root is not None:
        settings["root"] = cfg.data_root
    settings["decode_on"] = "cpu"  # no device-side decoding: grading runs on any device
    settings["cache"] = "none"  # one pass: a cache would only be written (where it was trained)
    settings["manifest_file"] = cfg.manifest_file
    root = Path(settings["root"])
    if not root.is_dir():
        where = "" if root.is_absolute() else f" (relative to {os.getcwd()})"
        raise FileNotFoundError(
            f"The data {checkpoint} was trained on, {root}{where}, is not here: point to it "
            "with data_root=/path/to/the/data"
        )
    split = dict(settings["split"])
    if cfg.split_file is not None:
        split["file"] = cfg.split_file
    elif not split_file_for(root, split).is_file():
        split["file"] = str(Path(cfg.out_dir) / "split.json")
    settings["split"] = split
    return settings


def _training_log(checkpoint: Path) -> Path:
    """The ``metrics.csv`` of the run that wrote ``checkpoint`` (``<run>/checkpoints/x.ckpt``)."""
    return checkpoint.resolve().parent.parent / "metrics.csv"
