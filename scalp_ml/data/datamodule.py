"""The LightningDataModule: the download's index, the saved 70:15:15 split, augmentation, loaders.

Every split gives uint8 letterboxed images ``[B, 3, H, W]`` (the network normalises them
itself); only training batches are augmented, in the loader processes (albumentations) or on
the training device (kornia).
"""

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
from torch.utils.data import DataLoader, Sampler, default_collate

from scalp_ml.data.aihub.index import load_manifest
from scalp_ml.data.cache import DecodedImages, open_cache
from scalp_ml.data.dataset import ScalpDataset
from scalp_ml.data.device_augment import DeviceAugmentation
from scalp_ml.data.gpu_decode import EncodedScalpDataset, collate_encoded, decode_letterboxed
from scalp_ml.data.images import BadImageError, input_size
from scalp_ml.data.sampler import (
    BalancedSampler,
    EpochSampler,
    ShuffledSampler,
    grade_counts,
    rarity_weights,
)
from scalp_ml.data.splits import (
    SPLITS,
    check_fold,
    file_sha256,
    images_fingerprint,
    load_or_create_split,
    split_file_for,
)
from scalp_ml.data.transforms import augmentation
from scalp_ml.training.distributed import evaluation_sampler

log = logging.getLogger(__name__)


class ScalpDataModule(L.LightningDataModule):
    """AI Hub scalp images split 70:15:15, stratified over the 24 (indicator, grade) pairs.

    Args:
        root: Dataset root: the AI Hub download (extracted, or its zip archives) or the
            synthetic set.
        image_size: The network's input: a side (the study's letterboxed square) or
            ``[height, width]``.
        batch_size: Images per batch.
        augment: Training augmentation values (see :func:`scalp_ml.data.transforms.augmentation`).
        split: ``strategy`` (``image``, the default of checkpoints that predate it,
            ``session`` or ``official``), ``ratios`` (train, val, test), ``seed`` and optional
            ``file``; without a file the split is saved under ``<root>/.scalp_ml/splits/``.
            Cross-validation: ``folds`` (k) and ``fold`` (the one validating; the other k-1
            train, test unchanged).
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
        sampler: Training order: ``shuffle`` (the study's) or ``balanced``, images drawn with
            replacement by the rarity of their grades (:mod:`scalp_ml.data.sampler`).
        sampler_alpha: Strength of the balanced sampler's re-weighting (0: uniform draws).
        seed: The run's seed; the balanced sampler draws epoch e from ``seed + e``.
    """

    def __init__(
        self,
        root: str,
        image_size: int | Sequence[int],
        batch_size: int,
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
        sampler: str = "shuffle",
        sampler_alpha: float = 0.5,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)  # the training job logs the whole config
        _check_pipeline(cache, augment_on, decode_on)
        self.root = Path(root)
        self.image_size = input_size(image_size)
        _check_crop(augment.get("crop"), self.image_size)
        self.ratios = tuple(split["ratios"])
        self.split_seed = int(split["seed"])
        self.strategy = split.get("strategy", "image")
        self.folds: int | None = split.get("folds")
        self.fold = int(split.get("fold") or 0)
        check_fold(self.folds, self.fold)
        self.split_file = split_file_for(root, split)
        self.num_workers = len(os.sched_getaffinity(0)) if num_workers is None else num_workers
        self.datasets: dict[str, ScalpDataset] = {}
        self.cache_dir = Path(cache_dir) if cache_dir else self.root / ".scalp_ml" / "cache"
        self.device_augmentation = DeviceAugmentation(augment) if augment_on == "gpu" else None
        self._resume_at: list[int] | None = None  # [epoch, batches trained] of a stopped epoch

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
            self.manifest,
            self.split_file,
            self.ratios,
            self.split_seed,
            self.strategy,
            self.folds,
            self.fold,
        )

    def decoded_images(self) -> DecodedImages | None:
        """The decoded-image cache of the whole manifest (built if not current), if enabled."""
        if self.hparams.cache == "none":
            return None
        paths = self.manifest["image"].tolist()
        workers = max(self.num_workers, 1)
        return open_cache(self.root, paths, self.image_size, self.cache_dir, workers)

    def setup(self, stage: str | None = None) -> None:
        """Builds the three datasets from the saved split (none of them augmented)."""
        if self.datasets:
            return
        splits = self._split()
        decoded = self.decoded_images()
        for split in SPLITS:
            rows = self.manifest[self.manifest["name"].isin(set(splits[split]))]
            self.datasets[split] = ScalpDataset(
                self.root,
                rows.reset_index(drop=True),
                self.image_size,
                on_bad_image=self.hparams.on_bad_image,
                decoded=decoded,
            )
        counts = {split: len(dataset) for split, dataset in self.datasets.items()}
        fold = f", fold {self.fold} of {self.folds}" if self.folds else ""
        log.info("Split %s (%s%s): %s", self.split_file, self.strategy, fold, counts)

    def graded_images(self) -> dict[str, str]:
        """SHA-256 of each split's image names (:func:`images_fingerprint`); sets up if needed."""
        self.setup()
        return {split: images_fingerprint(data.names) for split, data in self.datasets.items()}

    def state_dict(self) -> dict[str, Any]:
        """What every checkpoint records of the data: its split, and where training stopped.

        The split is the split file's hash and each split's image hash: ``evaluate`` refuses to
        grade a split whose images differ from the checkpoint's (a changed copy of the data
        would otherwise be split anew, test images leaking into training); a resumed run
        refuses another split the same way. A checkpoint saved mid-epoch (SIGTERM) records
        the epoch and its batches trained, which the resumed run's sampler skips.
        """
        return {
            "split_sha256": self.split_sha256,
            "images_sha256": self.graded_images(),
            "resume_at": _stopped_mid_epoch(self.trainer),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """On resume: the checkpoint's splits must be this run's.

        Raises:
            ValueError: A split holds other images than when the checkpoint was saved.
        """
        check_graded_images(state_dict.get("images_sha256", {}), self, "the resumed checkpoint")
        self._resume_at = state_dict.get("resume_at")

    def train_grade_counts(self) -> list[list[int]]:
        """Training images per indicator and grade ``[6, 4]``, from the saved split.

        Plain lists (they go into checkpoints). Sets the datamodule up if it is not yet.
        """
        self.setup()
        return grade_counts(self.datasets["train"].grades).tolist()

    def train_dataloader(self) -> DataLoader:
        """Shuffled (or balanced), augmented training batches; a last incomplete one is dropped.

        The sampler draws the trainer's current epoch (:mod:`scalp_ml.data.sampler`); in an
        epoch resumed mid-way it skips the images trained before the stop. With
        ``decode_on=gpu`` the batches hold the files' bytes, decoded on the device; with
        ``augment_on=gpu`` they are augmented there.
        """
        train = self.datasets["train"]
        on_cpu = self.hparams.decode_on == "cpu" and self.hparams.augment_on == "cpu"
        sampler = self._training_sampler(train, augment_seeds=on_cpu)
        if self.hparams.decode_on == "gpu":
            train = EncodedScalpDataset(train)
        elif on_cpu:
            train = train.augmented(augmentation(self.hparams.augment))
        return self._loader(train, training=True, sampler=sampler)

    def _training_sampler(self, train: ScalpDataset, augment_seeds: bool) -> EpochSampler:
        seed = self.hparams.seed
        if self.hparams.sampler == "balanced":
            weights = rarity_weights(train.grades, self.hparams.sampler_alpha)
            sampler = BalancedSampler(weights, seed=seed, augment_seeds=augment_seeds)
        else:
            sampler = ShuffledSampler(len(train), seed=seed, augment_seeds=augment_seeds)
        if self.trainer is not None:  # a resumed run's first epoch is not 0
            sampler.set_epoch(self.trainer.current_epoch)
        if self._resume_at is not None:
            epoch, batches = self._resume_at
            sampler.resume(epoch, batches * self.hparams.batch_size)
        return sampler

    def val_dataloader(self) -> DataLoader:
        """Validation batches in file order."""
        return self.dataloader("val")

    def dataloader(self, split: str) -> DataLoader:
        """Batches of one split in file order, never augmented: what evaluation grades.

        Under DDP every image goes to exactly one rank (no padding).
        """
        dataset = self.datasets[split]
        return self._loader(dataset, training=False, sampler=evaluation_sampler(dataset))

    def _loader(
        self,
        dataset: ScalpDataset | EncodedScalpDataset,
        training: bool,
        sampler: Sampler | None,
    ) -> DataLoader:
        """Batches in the sampler's order (``None``: the dataset's)."""
        encoded = isinstance(dataset, EncodedScalpDataset)
        return DataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            sampler=sampler,
            drop_last=training and len(dataset) > self.hparams.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            prefetch_factor=self.hparams.prefetch_factor if self.num_workers > 0 else None,
            pin_memory=torch.cuda.is_available(),
            collate_fn=collate_encoded if encoded else _collate_readable,
        )

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """With ``decode_on=gpu``: decodes and letterboxes training JPEGs on the device.

        Anything but a batch dict (the model summary's example images) passes unchanged.
        """
        if isinstance(batch, dict) and isinstance(batch["image"], list):  # encoded bytes
            device = self.trainer.strategy.root_device
            batch["image"] = decode_letterboxed(
                batch["image"], batch["name"], self.image_size, device
            )
        return batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """With ``augment_on=gpu``: augments training batches (dicts) on the device."""
        augmenting = self.device_augmentation is not None and self.trainer.training
        if augmenting and isinstance(batch, dict):
            batch["image"] = self.device_augmentation.to(batch["image"].device)(batch["image"])
        return batch


def check_graded_images(
    expected: Mapping[str, str], datamodule: ScalpDataModule, source: str
) -> None:
    """Refuses splits whose images differ from those ``source`` recorded (see ``state_dict``).

    Raises:
        ValueError: Names the split, the data, the split file and what to do.
    """
    found = datamodule.graded_images()
    for split, fingerprint in expected.items():
        if found.get(split) != fingerprint:
            raise ValueError(
                f"The {split} split here ({len(datamodule.datasets[split])} images of "
                f"{datamodule.root}, split file {datamodule.split_file}) is not the one "
                f"{source} was trained with: its images differ, so grading or training on it "
                "could score images the model trained on (a leak). Use the data and the split "
                "file it was trained with (its run_info.json names the split file), or pass "
                "a split file explicitly (evaluate: split_file=<file>)."
            )


def _stopped_mid_epoch(trainer: L.Trainer | None) -> list[int] | None:
    """``[epoch, batches trained]`` while training is part-way through an epoch, else None."""
    if trainer is None or not trainer.training:
        return None
    trained = trainer.fit_loop.epoch_loop.batch_progress.current.completed
    if 0 < trained < trainer.num_training_batches:
        return [trainer.current_epoch, trained]
    return None


def _check_pipeline(cache: str, augment_on: str, decode_on: str) -> None:
    """Raises ValueError naming the setting when the data pipeline options do not fit."""
    if decode_on == "gpu" and (augment_on != "gpu" or cache != "none"):
        raise ValueError(
            "data.decode_on=gpu needs data.augment_on=gpu and data.cache=none "
            f"(got augment_on={augment_on}, cache={cache})"
        )


def _check_crop(crop: Sequence[int] | None, image_size: tuple[int, int]) -> None:
    """Raises ValueError naming the settings when a training crop does not fit the input."""
    if crop is None:
        return
    height, width = input_size(crop)
    if height > image_size[0] or width > image_size[1]:
        raise ValueError(
            f"data.augment.crop={list(crop)} does not fit in data.image_size={list(image_size)}: "
            "the crop is cut from the input, e.g. data.image_size=[480,640] "
            "data.augment.crop=[240,320]"
        )


def _collate_readable(samples: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
    """Batches the samples whose image could be read.

    Raises:
        BadImageError: No image of the batch could be read.
    """
    readable = [sample for sample in samples if sample is not None]
    if not readable:
        raise BadImageError(f"None of the {len(samples)} images of a batch could be read")
    return default_collate(readable)
