"""Image files: a cheap header check for indexing, decoding to RGB, and the letterbox.

Indexing must stay fast (no pixel decoding), so it only reads each image's header: a zero-byte
file, one that is no image, or one larger than :data:`MAX_PIXELS` is caught there. Decoding
catches the rest: corrupt or truncated data, including JPEG data that libjpeg would only warn
about and fill with grey (JPEGs are decoded by libjpeg-turbo in strict mode, through
``simplejpeg``). Grayscale, RGBA, 16-bit and PNG images all decode to 8-bit RGB of their own
size, which
:func:`letterbox` then fits into the network's input size. Every command (training, the
decoded-image cache, evaluation, prediction, Grad-CAM) prepares images with these functions, and
none of them needs torch.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

# Decoding runs in many processes (loader workers, pools), one OpenCV thread each. It is set
# here, at import in the parent, so forked children inherit it: cv2.setNumThreads called in a
# forked child whose parent already used OpenCV's thread pool deadlocks.
cv2.setNumThreads(1)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
# Pillow's decompression-bomb threshold (about 89 megapixels): 280 times a 640x480 scalp photo.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS
# Pillow warns between one and two times its limit; such images are refused here with the limit.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
_JPEG_START = b"\xff\xd8\xff"
_JPEG_COLOUR_SPACES = frozenset({"YCbCr", "Gray", "RGB"})  # CMYK and YCCK go through OpenCV


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
        BadImageError: The file is empty, its header is not an image's, or it has more than
            :data:`MAX_PIXELS` pixels.
    """
    if size == 0:
        raise BadImageError(f"{location}: zero-byte file")
    try:
        with Image.open(stream) as image:
            header = ImageHeader(image.width, image.height, image.format or "", image.mode)
    except Image.DecompressionBombError as error:
        raise BadImageError(f"{location}: too large to decode ({error})") from error
    except UnidentifiedImageError as error:
        raise BadImageError(f"{location}: not an image file (no known image format)") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise BadImageError(f"{location}: not an image file ({error})") from error
    _check_pixels(header.width, header.height, location)
    return header


def decode_rgb(data: bytes, location: str) -> np.ndarray:
    """Decodes image bytes to an RGB uint8 array ``[H, W, 3]``.

    JPEGs are decoded strictly: data that libjpeg only warns about (and would fill with grey)
    is refused. Other formats (and CMYK JPEGs) go through OpenCV.

    Raises:
        BadImageError: The bytes are empty, corrupt, truncated, not an image, or an image of
            more than :data:`MAX_PIXELS` pixels.
    """
    if not data.startswith(_JPEG_START):
        probe(io.BytesIO(data), len(data), location)
        return _decode_opencv(data, location)
    try:
        height, width, colour_space, _ = simplejpeg.decode_jpeg_header(data)
        _check_pixels(width, height, location)
        if colour_space not in _JPEG_COLOUR_SPACES:
            return _decode_opencv(data, location)
        return simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
    except ValueError as error:
        raise BadImageError(f"{location}: {_CORRUPT}; libjpeg reports: {error}") from error


_CORRUPT = "cannot decode the image (corrupt or truncated data)"


def _decode_opencv(data: bytes, location: str) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise BadImageError(f"{location}: {_CORRUPT}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _check_pixels(width: int, height: int, location: str) -> None:
    if width * height > MAX_PIXELS:
        raise BadImageError(
            f"{location}: {width}x{height} pixels, more than the limit of {MAX_PIXELS:,} "
            "(PIL.Image.MAX_IMAGE_PIXELS); not decoded"
        )


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
        raise ValueError(
            f"data.image_size={size}: expected a positive side or [height, width], e.g. 448"
        )
    return sides


RESIZE = "letterbox: aspect kept, area-averaged, black padding centred"
"""How :func:`letterbox` resizes, as exports describe it."""


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
