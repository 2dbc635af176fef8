"""The LightningDataModule: the download's index, the saved 70:15:15 split, transforms, loaders."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import torch
from torch.utils.data import DataLoader, get_worker_info

from scalp_ml.data.aihub.index import load_manifest
from scalp_ml.data.cache import DecodedImages, open_cache
from scalp_ml.data.dataset import ScalpDataset, collate_readable
from scalp_ml.data.device_augment import DeviceAugmentation
from scalp_ml.data.gpu_decode import EncodedScalpDataset, collate_encoded, decode_letterboxed
from scalp_ml.data.splits import SPLITS, file_sha256, load_or_create_split, split_file_for
from scalp_ml.data.transforms import build_transform
from scalp_ml.training.distributed import evaluation_sampler

log = logging.getLogger(__name__)


class ScalpDataModule(L.LightningDataModule):
    """AI Hub scalp images split 70:15:15, stratified over the 24 (indicator, grade) pairs.

    Args:
        root: Dataset root: the AI Hub download (extracted, or its zip archives) or the
            synthetic set.
        image_size: Side of the letterboxed square fed to the model.
        batch_size: Images per batch.
        mean: Normalisation mean per RGB channel (ImageNet by default).
        std: Normalisation standard deviation per RGB channel.
        augment: Training augmentation values (see :func:`scalp_ml.data.transforms.augmentation`).
        split: ``strategy`` (``image``, the default of checkpoints that predate it,
            ``session`` or ``official``), ``ratios`` (train, val, test), ``seed`` and optional
            ``file``; without a file the split is saved under ``<root>/.scalp_ml/splits/``.
        num_workers: Loader processes; ``None`` uses every available core.
        manifest_file: Where the download's index is kept; ``None``: beside the data.
        verify_images: Decode every image once before the first run on a download.
        on_conflict: ``error`` or ``drop`` images whose label copies disagree.
        on_bad_image: ``error`` or ``skip`` images that cannot be read.
        on_bad_label: ``error`` or ``skip`` label files that cannot be parsed.
        cache: ``memmap`` letterboxes every image once into a uint8 file that later runs and
            sweep trials reuse (:mod:`scalp_ml.data.cache`); ``none`` decodes JPEGs each epoch.
        cache_dir: Where the cache lives; ``None``: ``<root>/.scalp_ml/cache/``.
        augment_on: ``cpu`` (albumentations in the loader workers) or ``gpu`` (the loader sends
            uint8 images; augmentation and normalisation run batched on the training device).
        decode_on: ``gpu`` decodes JPEG batches on the training device (needs
            ``augment_on=gpu`` and no cache); ``cpu`` decodes in the loader workers.
        prefetch_factor: Batches each loader process prepares ahead.
        normalize_on_device: Loaders send uint8 images (4x less to copy) that
            ``on_after_batch_transfer`` normalises; ``False`` for consumers outside Lightning
            that need normalised float32 batches (``augment_on=cpu`` only).
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
        manifest_file: str | None = None,
        verify_images: bool = False,
        on_conflict: str = "error",
        on_bad_image: str = "error",
        on_bad_label: str = "error",
        cache: str = "none",
        cache_dir: str | None = None,
        augment_on: str = "cpu",
        decode_on: str = "cpu",
        prefetch_factor: int = 4,
        normalize_on_device: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        _check_pipeline(cache, augment_on, decode_on, normalize_on_device)
        self.root = Path(root)
        self.ratios = tuple(split["ratios"])
        self.seed = int(split["seed"])
        self.strategy = split.get("strategy", "image")
        self.split_file = split_file_for(root, split)
        self.num_workers = len(os.sched_getaffinity(0)) if num_workers is None else num_workers
        self.datasets: dict[str, ScalpDataset] = {}
        self.cache_dir = Path(cache_dir) if cache_dir else self.root / ".scalp_ml" / "cache"
        self.device_augmentation = DeviceAugmentation(
            mean, std, augment if augment_on == "gpu" else None
        )

    @cached_property
    def manifest(self) -> pd.DataFrame:
        """The usable images of the dataset root, one row each (indexed once, then reused)."""
        hparams = self.hparams
        return load_manifest(
            self.root,
            hparams.manifest_file,
            hparams.verify_images,
            hparams.on_conflict,
            hparams.on_bad_image,
            hparams.on_bad_label,
        )

    @property
    def split_sha256(self) -> str:
        """SHA-256 of the split file every stage of this run uses."""
        return file_sha256(self.split_file)

    def prepare_data(self) -> None:
        """Creates the split file and the decoded-image cache once (one process under DDP)."""
        self._split()
        self.decoded_images()

    def _split(self) -> dict[str, list[str]]:
        return load_or_create_split(
            self.manifest, self.split_file, self.ratios, self.seed, self.strategy
        )

    def decoded_images(self) -> DecodedImages | None:
        """The decoded-image cache of the whole manifest (built if not current), if enabled."""
        if self.hparams.cache == "none":
            return None
        paths = self.manifest["image"].tolist()
        size = self.hparams.image_size
        return open_cache(self.root, paths, size, self.cache_dir, max(self.num_workers, 1))

    def setup(self, stage: str | None = None) -> None:
        """Builds the three datasets from the saved split."""
        if self.datasets:
            return
        splits = self._split()
        size, mean, std = self.hparams.image_size, self.hparams.mean, self.hparams.std
        decoded = self.decoded_images()
        dataset_type = EncodedScalpDataset if self.hparams.decode_on == "gpu" else ScalpDataset
        for split in SPLITS:
            rows = self.manifest[self.manifest["name"].isin(set(splits[split]))]
            on_cpu = split == "train" and self.hparams.augment_on == "cpu"
            augment = self.hparams.augment if on_cpu else None
            transform = build_transform(
                size,
                mean,
                std,
                augment,
                letterboxed=decoded is not None,
                normalize=not self.hparams.normalize_on_device,
                seed=torch.initial_seed() % 2**32,  # the run's seed (seed_everything)
            )
            self.datasets[split] = dataset_type(
                self.root,
                rows.reset_index(drop=True),
                transform,
                self.hparams.on_bad_image,
                decoded,
            )
        counts = {split: len(dataset) for split, dataset in self.datasets.items()}
        log.info("Split %s (%s): %s", self.split_file, self.strategy, counts)

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
            prefetch_factor=self.hparams.prefetch_factor if self.num_workers > 0 else None,
            pin_memory=torch.cuda.is_available(),
            worker_init_fn=_init_worker,
            collate_fn=collate_encoded if self.hparams.decode_on == "gpu" else collate_readable,
        )

    def on_before_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict:
        """With ``decode_on=gpu``: decodes and letterboxes the batch's JPEGs on the device."""
        if self.hparams.decode_on == "gpu":
            device = self.trainer.strategy.root_device
            size = self.hparams.image_size
            batch["image"] = decode_letterboxed(batch["image"], batch["name"], size, device)
        return batch

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict:
        """Normalises on the device; with ``augment_on=gpu`` augments training batches first."""
        if self.hparams.normalize_on_device:
            training = self.trainer is not None and self.trainer.training
            augmentation = self.device_augmentation.to(batch["image"].device)
            batch["image"] = augmentation(batch["image"], train=training)
        return batch


def _check_pipeline(cache: str, augment_on: str, decode_on: str, normalize_on_device: bool) -> None:
    """Raises ValueError naming the setting when the data pipeline options do not fit."""
    for name, value, allowed in (
        ("cache", cache, ("memmap", "none")),
        ("augment_on", augment_on, ("cpu", "gpu")),
        ("decode_on", decode_on, ("cpu", "gpu")),
    ):
        if value not in allowed:
            raise ValueError(f"data.{name}={value!r}: expected one of {allowed}")
    if decode_on == "gpu" and (augment_on != "gpu" or cache != "none"):
        raise ValueError(
            "data.decode_on=gpu needs data.augment_on=gpu and data.cache=none "
            f"(got augment_on={augment_on}, cache={cache})"
        )
    if augment_on == "gpu" and not normalize_on_device:
        raise ValueError("data.augment_on=gpu needs normalize_on_device=True")


def _init_worker(_: int) -> None:
    """Gives one loader process its own reproducible augmentation seed.

    Torch derives each process's seed from the run's seed. (OpenCV's one thread per process is
    set in the parent: see :mod:`scalp_ml.data.images`.)
    """
    worker = get_worker_info()
    worker.dataset.transform.set_random_seed(worker.seed % 2**32)
