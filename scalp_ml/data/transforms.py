"""The study's training augmentation (albumentations) on letterboxed uint8 images."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import albumentations as A
import cv2


def augmentation(augment: Mapping[str, Any], seed: int | None = None) -> A.Compose:
    """An optional random crop, then horizontal flip, colour jitter, rotation and scale.

    The result maps a letterboxed uint8 ``[H, W, 3]`` image to one of the same type: the same
    size, or ``crop``'s when set (training on crops of a larger input that evaluation sees
    whole; the networks are fully convolutional).

    Args:
        augment: ``horizontal_flip`` (probability), ``color_jitter`` (``p``, ``brightness``,
            ``contrast``, ``saturation``, ``hue``) and ``affine`` (``p``, ``rotate`` in degrees,
            ``scale`` range); optional ``crop``: ``[height, width]`` of a random training crop,
            or ``None``.
        seed: Seed of the augmentation's own random state (albumentations ignores the global
            seeds); ``None`` draws one from the operating system.
    """
    affine = dict(augment["affine"])
    crop = [A.RandomCrop(*augment["crop"])] if augment.get("crop") else []
    steps = [
        *crop,
        A.HorizontalFlip(p=augment["horizontal_flip"]),
        A.ColorJitter(**augment["color_jitter"]),
        A.Affine(
            rotate=tuple(affine.pop("rotate")),
            scale=tuple(affine.pop("scale")),
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
            **affine,
        ),
    ]
    return A.Compose(steps, seed=seed)
