import io
import re

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from scalp_ml.data.datamodule import _collate_readable as collate_readable
from scalp_ml.data.dataset import ScalpDataset
from scalp_ml.data.images import BadImageError, decode_rgb, letterbox, probe
from scalp_ml.labels import INDICATOR_NAMES


def encode(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def jpeg(height: int = 480, width: int = 640, value: int = 200) -> bytes:
    return encode(np.full((height, width, 3), value, np.uint8), "JPEG")


@pytest.mark.parametrize(
    ("array", "fmt", "mode"),
    [
        (np.full((480, 640), 200, np.uint8), "JPEG", "L"),  # grayscale JPEG
        (np.full((480, 640), 200, np.uint8), "PNG", "L"),  # grayscale PNG
        (
            np.dstack([np.full((480, 640, 3), 200, np.uint8), np.full((480, 640), 255, np.uint8)]),
            "PNG",
            "RGBA",
        ),
        (np.full((480, 640, 3), 200, np.uint8), "PNG", "RGB"),
    ],
)
def test_grayscale_rgba_and_png_decode_to_rgb_and_their_header_is_recorded(
    array: np.ndarray, fmt: str, mode: str
) -> None:
    data = encode(array, fmt)
    header = probe(io.BytesIO(data), len(data), "x")
    assert (header.width, header.height, header.format, header.mode) == (640, 480, fmt, mode)
    rgb = decode_rgb(data, "x")
    assert rgb.shape == (480, 640, 3) and rgb.dtype == np.uint8
    assert np.abs(rgb.astype(int) - 200).max() <= 2


@pytest.mark.parametrize(("height", "width"), [(640, 480), (101, 37), (1200, 1600), (50, 50)])
def test_any_size_is_letterboxed_into_the_square_with_its_aspect_kept(
    height: int, width: int
) -> None:
    image = decode_rgb(jpeg(height, width, value=255), "x")
    boxed = letterbox(image, 64, 64)
    assert boxed.shape == (64, 64, 3)
    content = (boxed[..., 0] > 0).nonzero()
    rows = content[0].max() - content[0].min() + 1
    columns = content[1].max() - content[1].min() + 1
    assert max(rows, columns) == 64  # the long side fills the square
    assert abs(rows / columns - height / width) < 0.1  # the aspect is kept
    assert (boxed == 0).sum() == 3 * (64 * 64 - rows * columns)  # the rest is black padding


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "zero-byte file"),
        (jpeg()[:4000], "cannot decode the image (corrupt or truncated data)"),
        (b"\xff\xd8\xff" + bytes(500), "cannot decode the image (corrupt or truncated data)"),
    ],
)
def test_undecodable_images_name_the_file_and_the_problem(data: bytes, problem: str) -> None:
    with pytest.raises(BadImageError, match=re.escape(problem)) as error:
        decode_rgb(data, "Training/x.zip::a/b.jpg")
    assert str(error.value).startswith("Training/x.zip::a/b.jpg: ")


def test_a_truncated_jpeg_passes_the_header_check_and_fails_decoding() -> None:
    data = jpeg()[:4000]
    assert probe(io.BytesIO(data), len(data), "x").format == "JPEG"
    with pytest.raises(BadImageError):
        decode_rgb(data, "x")


def rows(tmp_path, contents: dict[str, bytes]) -> pd.DataFrame:
    for name, data in contents.items():
        (tmp_path / name).write_bytes(data)
    manifest = pd.DataFrame(
        {"image": list(contents), "name": list(contents), "session": list(contents)}
    )
    for column in INDICATOR_NAMES:
        manifest[column] = 1
    return manifest


def test_an_unreadable_image_at_load_time_errors_or_is_left_out_of_its_batch(tmp_path) -> None:
    manifest = rows(tmp_path, {"good.jpg": jpeg(), "cut.jpg": jpeg()[:3000], "also.jpg": jpeg()})
    strict = ScalpDataset(tmp_path, manifest, (32, 32), on_bad_image="error")
    with pytest.raises(BadImageError, match=r"cut\.jpg: cannot decode") as error:
        strict[1]
    assert "data.on_bad_image=skip" in str(error.value)
    lenient = ScalpDataset(tmp_path, manifest, (32, 32), on_bad_image="skip")
    batch = collate_readable([lenient[i] for i in range(3)])
    assert batch["name"] == ["good.jpg", "also.jpg"] and batch["image"].shape == (2, 3, 32, 32)
    assert torch.equal(batch["grades"], torch.ones(2, 6, dtype=torch.long))
    with pytest.raises(BadImageError, match="None of the 1 images of a batch"):
        collate_readable([lenient[1]])


def test_a_file_removed_after_indexing_is_named(tmp_path) -> None:
    manifest = rows(tmp_path, {"gone.jpg": jpeg()})
    (tmp_path / "gone.jpg").unlink()
    dataset = ScalpDataset(tmp_path, manifest, (32, 32))
    with pytest.raises(BadImageError, match=r"gone\.jpg"):
        dataset[0]


def test_cv2_and_pil_agree_on_a_jpeg() -> None:
    data = jpeg(value=90)
    reference = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    decoded = decode_rgb(data, "x")
    assert np.abs(decoded.astype(int) - reference).max() <= 2
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None
