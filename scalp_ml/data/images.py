"""Image files: a cheap header check for indexing, and decoding to RGB for training.

Indexing must stay fast (no pixel decoding), so it only reads each image's header: a zero-byte
file or one that is no image is caught there. Decoding catches the rest (corrupt or truncated
data); grayscale, RGBA, 16-bit and PNG images all decode to 8-bit RGB of their own size, which
the letterbox transform then fits to the square.
"""

from __future__ import annotations

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
