"""Image files: a cheap header check for indexing, decoding to RGB, and the letterbox.

Indexing must stay fast (no pixel decoding), so it only reads each image's header: a zero-byte
file or one that is no image is caught there. Decoding catches the rest (corrupt or truncated
data); grayscale, RGBA, 16-bit and PNG images all decode to 8-bit RGB of their own size, which
:func:`letterbox` then fits into the network's input size. Every command (training, the
decoded-image cache, evaluation, prediction, Grad-CAM) prepares images with these functions, and
none of them needs torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from PIL import Image

# Decoding runs in many processes (loader workers, pools), one OpenCV thread each. It is set
# here, at import in the parent, so forked children inherit it: cv2.setNumThreads called in a
# forked child whose parent already used OpenCV's thread pool deadlocks.
cv2.setNumThreads(1)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})


class BadImageError(OSError):
    """An image that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class ImageHeader:
    """What an image's header says, read without decoding its pixels."""

    width: int
    height: int
    format: str
    mode: str


def probe(stream: BinaryIO, size: int, location: str) -> ImageHeader:
    """Reads an image's header.

    Args:
        stream: The file, opened for reading.
        size: The file's size in bytes.
        location: Where the file is, for the error message.

    Raises:
        BadImageError: The file is empty or its header is not an image's.
    """
    if size == 0:
        raise BadImageError(f"{location}: zero-byte file")
    try:
        with Image.open(stream) as image:
            return ImageHeader(image.width, image.height, image.format or "", image.mode)
    except (OSError, SyntaxError, ValueError) as error:
        raise BadImageError(f"{location}: not an image file ({error})") from error


def decode_rgb(data: bytes, location: str) -> np.ndarray:
    """Decodes image bytes to an RGB uint8 array ``[H, W, 3]``.

    Raises:
        BadImageError: The bytes are empty, corrupt, truncated or not an image.
    """
    if not data:
        raise BadImageError(f"{location}: zero-byte file")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise BadImageError(f"{location}: cannot decode the image (corrupt or truncated data)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_rgb(path: Path) -> np.ndarray:
    """Decodes an image file to an RGB uint8 array.

    Raises:
        BadImageError: The file is missing, empty or not a decodable image (the message names
            it).
    """
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise BadImageError(f"{path}: cannot read the file ({error.strerror})") from error
    return decode_rgb(data, str(path))


def input_size(size: int | Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` of the network's input from a config value: a side or a pair.

    Raises:
        ValueError: Not one positive side or a (height, width) pair of them.
    """
    sides = (size, size) if isinstance(size, int) else tuple(int(side) for side in size)
    if len(sides) != 2 or min(sides) < 1:
        raise ValueError(f"image_size={size}: expected a side or [height, width], e.g. 448")
    return sides


def letterbox(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Fits an RGB image into ``height x width``: aspect kept, area-averaged, black padding.

    The image is scaled by the largest factor that fits both sides, then centred; the padding
    splits as evenly as possible (one row or column more at the bottom or right).
    """
    scale = min(height / image.shape[0], width / image.shape[1])
    inner_height = min(height, max(1, round(image.shape[0] * scale)))
    inner_width = min(width, max(1, round(image.shape[1] * scale)))
    if (inner_height, inner_width) != image.shape[:2]:
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, (inner_width, inner_height), interpolation=interpolation)
    top, left = (height - inner_height) // 2, (width - inner_width) // 2
    boxed = np.zeros((height, width, 3), dtype=np.uint8)
    boxed[top : top + inner_height, left : left + inner_width] = image
    return boxed


def unletterbox(boxed: np.ndarray, height: int, width: int) -> np.ndarray:
    """The inverse of :func:`letterbox` for a map of the network's input size.

    Crops the padding off ``boxed`` (``[h, w]`` or ``[h, w, c]``) and resizes it onto the
    original ``height x width`` photograph.
    """
    scale = min(boxed.shape[0] / height, boxed.shape[1] / width)
    inner_height = min(boxed.shape[0], max(1, round(height * scale)))
    inner_width = min(boxed.shape[1], max(1, round(width * scale)))
    top, left = (boxed.shape[0] - inner_height) // 2, (boxed.shape[1] - inner_width) // 2
    inner = boxed[top : top + inner_height, left : left + inner_width]
    return cv2.resize(inner, (width, height), interpolation=cv2.INTER_LINEAR)


def channels_first(image: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` to a contiguous ``[3, H, W]`` array: the layout the network reads."""
    return np.ascontiguousarray(image.transpose(2, 0, 1))
