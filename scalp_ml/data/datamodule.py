"""The LightningDataModule: manifest, the saved 70:15:15 split, transforms and loaders."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import cv2
import lightning as L
import pandas as pd
import torch
from torch.utils.data import DataLoader

from scalp_ml.data.aihub import build_manifest
from scalp_ml.data.dataset import ScalpDataset
from scalp_ml.data.splits import SPLITS, default_split_path, file_sha256, load_or_create_split
from scalp_ml.data.transforms import build_transform
from scalp_ml.distributed import evaluation_sampler

log = logging.getLogger(__name__)


class ScalpDataModule(L.LightningDataModule):
    """AI Hub-layout scalp images split 70:15:15, stratified over the 24 (indicator, grade) pairs.

    Args:
        root: Dataset root (the AI Hub download or the synthetic set).
        image_size: Side of the letterboxed square fed to the model.
        batch_size: Images per batch.
        mean: Normalisation mean per RGB channel (ImageNet by default).
        std: Normalisation standard deviation per RGB channel.
        augment: Training augmentation values (see :func:`scalp_ml.data.transforms.augmentation`).
        split: ``ratios`` (train, val, test), ``seed`` and optional ``file``; without a file the
            split is saved under ``<root>/.scalp_ml/splits/``.
        num_workers: Loader processes; ``None`` uses every available core.
    """

    def __init__(
        self,
        root: str,
        image_size: int,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        augment: Mapping[str, Any],
        split: Mapping[str, Any],
        num_workers: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.root = Path(root)
        self.ratios = tuple(split["ratios"])
        self.seed = int(split["seed"])
        self.split_file = Path(
            split.get("file") or default_split_path(root, self.ratios, self.seed)
        )
        self.num_workers = len(os.sched_getaffinity(0)) if num_workers is None else num_workers
        self.datasets: dict[str, ScalpDataset] = {}

    @cached_property
    def manifest(self) -> pd.DataFrame:
        """One row per distinct image of the dataset root."""
        return build_manifest(self.root)

    @property
    def split_sha256(self) -> str:
        """SHA-256 of the split file every stage of this run uses."""
        return file_sha256(self.split_file)

    def prepare_data(self) -> None:
        """Creates the split file once (on the main process only under DDP)."""
        load_or_create_split(self.manifest, self.split_file, self.ratios, self.seed)

    def setup(self, stage: str | None = None) -> None:
        """Builds the three datasets from the saved split."""
        if self.datasets:
            return
        splits = load_or_create_split(self.manifest, self.split_file, self.ratios, self.seed)
        size, mean, std = self.hparams.image_size, self.hparams.mean, self.hparams.std
        for split in SPLITS:
            rows = self.manifest[self.manifest["name"].isin(set(splits[split]))]
            augment = self.hparams.augment if split == "train" else None
            transform = build_transform(size, mean, std, augment)
            self.datasets[split] = ScalpDataset(self.root, rows.reset_index(drop=True), transform)
        counts = {split: len(dataset) for split, dataset in self.datasets.items()}
        log.info("Split %s: %s", self.split_file, counts)

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches; the last incomplete batch is dropped."""
        return self.dataloader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Validation batches in file order."""
        return self.dataloader("val")

    def test_dataloader(self) -> DataLoader:
        """Test batches in file order."""
        return self.dataloader("test")

    def dataloader(self, split: str, shuffle: bool = False) -> DataLoader:
        """Batches of one split; training drops its last incomplete batch.

        Under DDP an evaluation split gives every image to exactly one rank (no padding).
        """
        return DataLoader(
            self.datasets[split],
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            sampler=None if shuffle else evaluation_sampler(self.datasets[split]),
            drop_last=shuffle and len(self.datasets[split]) > self.hparams.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            worker_init_fn=_one_opencv_thread,
        )


def _one_opencv_thread(_: int) -> None:
    """Keeps each loader process to one OpenCV thread: the processes are the parallelism."""
    cv2.setNumThreads(1)
