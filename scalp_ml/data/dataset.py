"""A torch Dataset of manifest rows: dict samples with ``image`` and ``grades``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from scalp_ml.labels import INDICATOR_NAMES


def read_rgb(path: Path) -> np.ndarray:
    """Decodes an image file to an RGB uint8 array.

    Raises:
        OSError: The file is missing, empty or not a decodable image (the message names it).
    """
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"Cannot decode image {path}: missing, empty or not an image file")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class ScalpDataset(Dataset):
    """Images of a manifest, transformed; each sample is ``{"image", "grades", "name"}``.

    Args:
        root: Folder the manifest's ``image`` paths are relative to.
        manifest: Rows with ``image``, ``name`` and the six grade columns.
        transform: Applied to each RGB uint8 image.
        decoded: Letterboxed images read from the decoded-image cache instead of the files
            (see :mod:`scalp_ml.data.cache`).
    """

    def __init__(
        self,
        root: str | Path,
        manifest: pd.DataFrame,
        transform: A.Compose,
        decoded: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        self.root = Path(root)
        self.paths = manifest["image"].tolist()
        self.names = manifest["name"].tolist()
        self.grades = torch.tensor(manifest[list(INDICATOR_NAMES)].to_numpy(), dtype=torch.long)
        self.transform = transform
        self.decoded = decoded

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        path = self.paths[index]
        image = read_rgb(self.root / path) if self.decoded is None else self.decoded[path]
        return {
            "image": self.transform(image=image)["image"],
            "grades": self.grades[index],
            "name": self.names[index],
        }
