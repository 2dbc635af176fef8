"""Batched augmentation and normalisation on the training device (``data.augment_on=gpu``).

The CPU then only delivers letterboxed uint8 ``[B, 3, H, W]`` batches; flip, colour jitter,
rotation and scale run on the whole batch where the model runs, driven by the same config
values as the albumentations path (:func:`scalp_ml.data.transforms.augmentation`). The network
normalises its input itself, so the augmented batch stays on the 0-255 scale.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from scalp_ml.extras import require


class DeviceAugmentation(nn.Module):
    """Augments a training batch of uint8 images where the model runs.

    Args:
        augment: ``horizontal_flip``, ``color_jitter`` and ``affine`` values as in
            :func:`scalp_ml.data.transforms.augmentation`.
    """

    def __init__(self, augment: Mapping[str, Any]) -> None:
        super().__init__()
        self.augment = _augmentation(augment)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Augmented float32 images ``[B, 3, H, W]`` on the 0-255 scale of the input."""
        return self.augment(images.float().div_(255)).mul_(255)


def _augmentation(augment: Mapping[str, Any]) -> nn.Sequential:
    """The same steps, order and ranges as the albumentations training augmentation."""
    K = require("kornia.augmentation", "gpu", "data.augment_on=gpu (kornia augmentation)")
    jitter = dict(augment["color_jitter"])
    affine = dict(augment["affine"])
    crop = [K.RandomCrop(tuple(augment["crop"]))] if augment.get("crop") else []
    return nn.Sequential(
        *crop,
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
