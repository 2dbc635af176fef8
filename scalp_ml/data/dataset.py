"""Images ready for the network, from a manifest (training, evaluation) or from any files.

Both datasets give the same thing for an image: decoded to RGB, letterboxed into the network's
input size (:func:`~scalp_ml.data.images.letterbox`) and laid out ``[3, H, W]`` as uint8. The
network normalises it itself, so every command feeds it alike. Nothing here imports torch:
prediction with an ONNX file runs without it. (torch's ``DataLoader`` batches these samples,
turning arrays into tensors.)
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from scalp_ml.data.aihub.reader import Download
from scalp_ml.data.images import BadImageError, channels_first, decode_rgb, letterbox, read_rgb
from scalp_ml.labels import INDICATOR_NAMES

log = logging.getLogger(__name__)


class Augmentation(Protocol):
    """What the dataset needs of an augmentation: albumentations' ``Compose``."""

    def __call__(self, *, image: np.ndarray) -> dict[str, np.ndarray]:
        """``{"image": augmented}`` of a letterboxed uint8 image."""

    def set_random_seed(self, seed: int) -> None:
        """Reseeds the augmentation's own random state."""


class ScalpDataset:
    """The images of a manifest, read from files or zip archives in place.

    An image that cannot be read (changed since it was indexed and verified) raises with
    ``on_bad_image="error"``; with ``"skip"`` it is logged and its sample is ``None``, which the
    datamodule's collate function leaves out of the batch.

    Args:
        root: The download's root; manifest ``image`` locations are relative to it.
        manifest: Rows with ``image``, ``name``, ``session`` and the six grade columns.
        image_size: ``(height, width)`` of the network's input.
        augment: Training augmentation of letterboxed images; ``None`` for none.
        on_bad_image: ``error`` or ``skip``.
        decoded: Letterboxed images read from the decoded-image cache instead of the files
            (see :mod:`scalp_ml.data.cache`).
    """

    def __init__(
        self,
        root: str | Path,
        manifest: pd.DataFrame,
        image_size: tuple[int, int],
        augment: Augmentation | None = None,
        on_bad_image: Literal["error", "skip"] = "error",
        decoded: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        self.download = Download(root)
        self.locations = manifest["image"].tolist()
        self.names = manifest["name"].tolist()
        self.sessions = manifest["session"].astype(str).tolist()
        self.grades = manifest[list(INDICATOR_NAMES)].to_numpy(dtype=np.int64, copy=True)
        self.image_size = image_size
        self.augment = augment
        self.on_bad_image = on_bad_image
        self.decoded = decoded

    def __len__(self) -> int:
        return len(self.locations)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any] | None:
        """The sample of an index, or of ``(index, augmentation seed)``.

        The training samplers give the pairs (:class:`~scalp_ml.data.sampler.EpochSampler`).
        """
        index, augment_seed = key if isinstance(key, tuple) else (key, None)
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
        if self.augment is not None:
            if augment_seed is not None:
                self.augment.set_random_seed(augment_seed)
            image = self.augment(image=image)["image"]
        return {
            "image": channels_first(image),
            "grades": self.grades[index],
            "name": self.names[index],
            "session": self.sessions[index],
        }

    def augmented(self, augment: Augmentation) -> ScalpDataset:
        """The same images with training augmentation."""
        twin = copy.copy(self)
        twin.augment = augment
        return twin

    def read(self, location: str) -> np.ndarray:
        """The letterboxed RGB image at a manifest location (from the cache if there is one)."""
        if self.decoded is not None:
            return self.decoded[location]
        return letterbox(decode_rgb(self.download.read(location), location), *self.image_size)


class Photographs:
    """Any image files, prepared like :class:`ScalpDataset`'s; an unreadable one gives an error.

    A sample is ``{"image", "path", "error"}``: the image is blank (zeros) when ``error`` is set.
    """

    def __init__(self, paths: Sequence[Path], image_size: tuple[int, int]) -> None:
        self.paths = list(paths)
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.paths[index]
        try:
            image, error = letterbox(read_rgb(path), *self.image_size), ""
        except OSError as failure:
            image, error = np.zeros((*self.image_size, 3), np.uint8), str(failure)
        return {"image": channels_first(image), "path": str(path), "error": error}


def batches(
    dataset: Photographs, batch_size: int, threads: int = 2
) -> Iterator[dict[str, np.ndarray | list[str]]]:
    """The dataset's samples in order, stacked in batches; ``threads`` decode in parallel."""
    with ThreadPoolExecutor(max(threads, 1)) as pool:
        for start in range(0, len(dataset), batch_size):
            indices = range(start, min(start + batch_size, len(dataset)))
            samples = list(pool.map(dataset.__getitem__, indices))
            yield {
                "image": np.stack([sample["image"] for sample in samples]),
                "path": [sample["path"] for sample in samples],
                "error": [sample["error"] for sample in samples],
            }
