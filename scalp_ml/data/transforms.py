"""Image transforms: letterbox to a square, training augmentation, normalisation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import albumentations as A
import cv2
from albumentations.pytorch import ToTensorV2


def letterbox(image_size: int) -> list[A.BasicTransform]:
    """Keeps the aspect ratio: shrinks the long side to ``image_size``, pads with black."""
    return [
        A.LongestMaxSize(max_size=image_size, interpolation=cv2.INTER_AREA),
        A.PadIfNeeded(image_size, image_size, border_mode=cv2.BORDER_CONSTANT, fill=0),
    ]


def augmentation(augment: Mapping[str, Any]) -> list[A.BasicTransform]:
    """The study's training augmentation, from config values.

    Args:
        augment: ``horizontal_flip`` (probability), ``color_jitter`` (``p``, ``brightness``,
            ``contrast``, ``saturation``, ``hue``) and ``affine`` (``p``, ``rotate`` in degrees,
            ``scale`` range).
    """
    affine = dict(augment["affine"])
    return [
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


def build_transform(
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    augment: Mapping[str, Any] | None = None,
    letterboxed: bool = False,
    normalize: bool = True,
    seed: int | None = None,
) -> A.Compose:
    """Letterbox, then (for training) augmentation, then normalisation to a CHW tensor.

    Args:
        image_size: Side of the letterboxed square.
        mean: Normalisation mean per RGB channel.
        std: Normalisation standard deviation per RGB channel.
        augment: Training augmentation values (see :func:`augmentation`); ``None`` for none.
        letterboxed: Inputs are already letterboxed (read from the decoded-image cache).
        normalize: Normalise to float32; ``False`` stops at a uint8 CHW tensor, normalised on
            the training device (:class:`scalp_ml.data.device_augment.DeviceAugmentation`).
        seed: Seed of the augmentation's own random state (albumentations ignores the global
            seeds); ``None`` draws one from the operating system.
    """
    steps = [] if letterboxed else letterbox(image_size)
    if augment is not None:
        steps += augmentation(augment)
    if normalize:
        steps.append(A.Normalize(mean=tuple(mean), std=tuple(std)))
    return A.Compose([*steps, ToTensorV2()], seed=seed)
