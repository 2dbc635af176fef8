"""Batched augmentation and normalisation on the training device (``data.augment_on=gpu``).

The CPU then only delivers letterboxed uint8 ``[B, 3, H, W]`` batches (4x less to copy than
float32); flip, colour jitter, rotation and scale run on the whole batch where the model runs,
driven by the same config values as the albumentations path
(:func:`scalp_ml.data.transforms.augmentation`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import kornia.augmentation as K
import torch
from torch import nn


class DeviceAugmentation(nn.Module):
    """uint8 image batches to normalised float32 ones, augmented for training.

    Args:
        mean: Normalisation mean per RGB channel.
        std: Normalisation standard deviation per RGB channel.
        augment: ``horizontal_flip``, ``color_jitter`` and ``affine`` values as in
            :func:`scalp_ml.data.transforms.augmentation`; ``None`` for none.
    """

    def __init__(
        self, mean: Sequence[float], std: Sequence[float], augment: Mapping[str, Any] | None
    ) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.augment = None if augment is None else _augmentation(augment)

    def forward(self, images: torch.Tensor, train: bool) -> torch.Tensor:
        """Normalised ``[B, 3, H, W]`` float32 images; augmented when ``train``."""
        scaled = images.float().div_(255)
        if train and self.augment is not None:
            scaled = self.augment(scaled)
        return (scaled - self.mean) / self.std


def _augmentation(augment: Mapping[str, Any]) -> nn.Sequential:
    """The same steps, order and ranges as the albumentations training augmentation."""
    jitter = dict(augment["color_jitter"])
    affine = dict(augment["affine"])
    return nn.Sequential(
        K.RandomHorizontalFlip(p=augment["horizontal_flip"]),
        K.ColorJitter(
            brightness=jitter["brightness"],
            contrast=jitter["contrast"],
            saturation=jitter["saturation"],
            hue=jitter["hue"],
            p=jitter["p"],
        ),
        K.RandomAffine(  # kornia turns positive angles the other way round
            degrees=(-affine["rotate"][1], -affine["rotate"][0]),
            scale=tuple(affine["scale"]),
            padding_mode="zeros",
            p=affine["p"],
        ),
    )
