"""A torch Dataset of manifest rows: dict samples with ``image``, ``grades`` and ``name``."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import albumentations as A
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, default_collate

from scalp_ml.data.aihub.reader import Download
from scalp_ml.data.images import BadImageError, decode_rgb
from scalp_ml.labels import INDICATOR_NAMES

log = logging.getLogger(__name__)


class ScalpDataset(Dataset):
    """Images of a manifest, read from files or zip archives in place, transformed.

    An image that cannot be read (changed since it was indexed and verified) raises with
    ``on_bad_image="error"``; with ``"skip"`` it is logged and its sample is ``None``, which
    :func:`collate_readable` leaves out of the batch.

    Args:
        root: The download's root; manifest ``image`` locations are relative to it.
        manifest: Rows with ``image``, ``name`` and the six grade columns.
        transform: Albumentations pipeline ending in a tensor.
        on_bad_image: ``error`` or ``skip``.
        decoded: Letterboxed images read from the decoded-image cache instead of the files
            (see :mod:`scalp_ml.data.cache`).
    """

    def __init__(
        self,
        root: str | Path,
        manifest: pd.DataFrame,
        transform: A.Compose,
        on_bad_image: Literal["error", "skip"] = "error",
        decoded: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        self.download = Download(root)
        self.locations = manifest["image"].tolist()
        self.names = manifest["name"].tolist()
        self.grades = torch.tensor(manifest[list(INDICATOR_NAMES)].to_numpy(), dtype=torch.long)
        self.transform = transform
        self.on_bad_image = on_bad_image
        self.decoded = decoded

    def __len__(self) -> int:
        return len(self.locations)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        location = self.locations[index]
        try:
            image = self.read(location)
        except OSError as error:
            if self.on_bad_image == "error":
                raise BadImageError(
                    f"{error} (set data.on_bad_image=skip to leave such images out; "
                    "data.verify_images=true finds them all before training)"
                ) from error
            log.warning("Skipping an unreadable image: %s", error)
            return None
        return {
            "image": self.transform(image=image)["image"],
            "grades": self.grades[index],
            "name": self.names[index],
        }

    def read(self, location: str) -> np.ndarray:
        """The RGB image at a manifest location: from the cache if there is one, else decoded."""
        if self.decoded is not None:
            return self.decoded[location]
        return decode_rgb(self.download.read(location), location)


def collate_readable(samples: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
    """Batches the samples whose image could be read.

    Raises:
        BadImageError: No image of the batch could be read.
    """
    readable = [sample for sample in samples if sample is not None]
    if not readable:
        raise BadImageError(f"None of the {len(samples)} images of a batch could be read")
    return default_collate(readable)
